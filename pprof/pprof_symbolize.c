/*
 * pprof_symbolize.c - names for locations, in the process.
 *
 * Why in the process: `go tool pprof` symbolizes C code only from DWARF, has
 * no symbol-table fallback, and rejects every binary whose build ID does not
 * match its own (always empty) reading of it (docs/pprof.md, 1d). A profile
 * that carries Function names with has_functions set is read as is, on any
 * machine, with or without the binaries. So we name what we can here, from
 * the ELF symbol tables of the files the process has mapped.
 *
 * Per location: its address is already the one to symbolize (return
 * addresses were stored minus 1 by the builder); its mapping gives the file
 * offset (address - start + offset) that pp_elf_lookup turns into a symbol.
 * The locations to name are sorted by mapping, and each mapping is
 * resolved to a cache entry once per call and used for all its locations
 * before the next one is resolved (the cache may evict an entry when it
 * reads another file): the vdso from its image in memory
 * (getauxval(AT_SYSINFO_EHDR)), a file through pp_open_mapping (read with
 * pread, never mapped: see pprof_elf.c); pseudo mappings ([vsyscall],
 * anonymous JIT code) and files that cannot be opened or read stay
 * unnamed.
 *
 * Names: name = system_name = the linker's symbol. C++ symbols stay mangled
 * (`_ZN6Widget4makeEm`): after loading, pprof runs its demangler over every
 * function whose name equals its system_name, and shows the simplified
 * form (`Widget::make`) in -top, -traces and the web UI (Go 1.19's
 * symbolizer.Demangle; it runs even for mappings with has_functions). That
 * keeps the module free of a demangler (__cxa_demangle mallocs) and lets
 * pprof's -symbolize=demangle=full|templates|none options work.
 *
 * has_functions is set on a mapping (when encoding) only if every one of
 * its locations got a name, as Go does: pprof then never overwrites our
 * names, and a mapping with holes stays open to pprof's own attempt.
 */
#include <string.h>
#include <sys/auxv.h>

#include "pprof/pprof_internal.h"

/* resolve: the cache entry for mapping m, or NULL (no file to read). */
static pp_elf_t *resolve(pprof_builder_t *b, pprof_symcache_t *c, const pp_mapping_t *m)
{
    if (m->vdso) {
        unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
        if (vdso != m->start) return NULL;
        return pp_symcache_vdso(c, (const void *)(uintptr_t)vdso, (size_t)(m->limit - m->start));
    }
    const char *path = pp_str(b, m->filename);
    if (!m->from_proc && path[0] != '/') return NULL;
    int fd = pp_open_mapping(m, path);
    if (fd < 0) return NULL;
    return pp_symcache_open_fd(c, fd);
}

/* todo_t: a location to name, sorted by mapping so that each mapping's
 * file is resolved once and used before the next one is (an entry of the
 * cache is valid only until the next file is resolved). */
typedef struct todo_s {
    uint32_t mapping;        /* mapping index */
    uint32_t loc;            /* location index */
} todo_t;

static int cmp_todo(const void *x, const void *y)
{
    const todo_t *a = x, *b = y;
    if (a->mapping != b->mapping) return a->mapping < b->mapping ? -1 : 1;
    return a->loc < b->loc ? -1 : a->loc > b->loc;
}

/* name_group: names the locations todo[0..n) of mapping m from entry e. */
static pprof_err_t name_group(pprof_builder_t *b, const pp_elf_t *e, const pp_mapping_t *m,
                              const todo_t *todo, size_t n)
{
    pp_loc_t *locs = b->locs.data;
    for (size_t i = 0; i < n; i++) {
        pp_loc_t *l = &locs[todo[i].loc];
        size_t len;
        const char *name = pp_elf_lookup(e, l->addr - m->start + m->offset, &len);
        if (!name || len == 0) continue;
        uint32_t s, f;
        PP_TRY(pp_str_intern(b, name, len, &s));
        PP_TRY(pp_func_intern(b, s, s, 0, &f));
        l->function = f + 1;
    }
    return PPROF_OK;
}

pprof_err_t pprof_builder_symbolize(pprof_builder_t *b, pprof_symcache_t *cache)
{
    if (!b) return PPROF_ERR_INVALID;
    pprof_symcache_t *c = cache;
    if (!c) PP_TRY(pprof_symcache_new(&b->a, &c));
    pprof_err_t err = pp_attach_locations(b);
    const pp_loc_t *locs = b->locs.data;
    size_t n = 0;
    for (size_t i = 0; err == PPROF_OK && i < b->locs.len; i++)
        if (locs[i].mapping != 0 && locs[i].function == 0) n++;
    todo_t *todo = NULL;
    if (err == PPROF_OK && n) {
        todo = b->a.alloc(b->a.ctx, n * sizeof(todo_t));
        if (!todo) err = PPROF_ERR_NOMEM;
    }
    if (todo) {
        size_t k = 0;
        for (size_t i = 0; i < b->locs.len; i++)
            if (locs[i].mapping != 0 && locs[i].function == 0)
                todo[k++] = (todo_t){ locs[i].mapping - 1, (uint32_t)i };
        pp_heapsort(todo, n, sizeof(todo_t), cmp_todo);
    }
    for (size_t i = 0; err == PPROF_OK && todo && i < n;) {
        size_t j = i + 1;
        while (j < n && todo[j].mapping == todo[i].mapping) j++;
        const pp_mapping_t *m = &PP_VEC_AT(&b->maps, pp_mapping_t, todo[i].mapping);
        const pp_elf_t *e = resolve(b, c, m);
        if (e) err = name_group(b, e, m, todo + i, j - i);
        i = j;
    }
    if (todo) b->a.free(b->a.ctx, todo);
    if (!cache) pprof_symcache_free(c);
    return err;
}
