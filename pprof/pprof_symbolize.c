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
 * Mappings are resolved to cache entries once per call: the vdso from its
 * image in memory (getauxval(AT_SYSINFO_EHDR)), a file through
 * pp_open_mapping; pseudo mappings ([vsyscall], anonymous JIT code) and
 * files that cannot be opened stay unnamed.
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

pprof_err_t pprof_builder_symbolize(pprof_builder_t *b, pprof_symcache_t *cache)
{
    if (!b) return PPROF_ERR_INVALID;
    pprof_symcache_t *c = cache;
    if (!c) PP_TRY(pprof_symcache_new(&b->a, &c));
    pprof_err_t err = pp_attach_locations(b);
    size_t nmaps = b->maps.len;
    /* elfs[i]: the entry of mapping i; resolved[i]: looked up already. */
    pp_elf_t **elfs = NULL;
    if (err == PPROF_OK && nmaps) {
        elfs = b->a.alloc(b->a.ctx, nmaps * (sizeof(pp_elf_t *) + 1));
        if (!elfs) err = PPROF_ERR_NOMEM;
    }
    unsigned char *resolved = elfs ? (unsigned char *)(elfs + nmaps) : NULL;
    pp_loc_t *locs = b->locs.data;
    for (size_t i = 0; err == PPROF_OK && elfs && i < b->locs.len; i++) {
        pp_loc_t *l = &locs[i];
        if (l->mapping == 0 || l->function != 0) continue;
        size_t mi = l->mapping - 1;
        const pp_mapping_t *m = &PP_VEC_AT(&b->maps, pp_mapping_t, mi);
        if (!resolved[mi]) {
            resolved[mi] = 1;
            elfs[mi] = resolve(b, c, m);
        }
        if (!elfs[mi]) continue;
        size_t len;
        const char *name = pp_elf_lookup(c, elfs[mi], l->addr - m->start + m->offset, &len);
        if (!name || len == 0) continue;
        uint32_t s, f;
        err = pp_str_intern(b, name, len, &s);
        if (err == PPROF_OK) err = pp_func_intern(b, s, s, 0, &f);
        if (err == PPROF_OK) l->function = f + 1;
    }
    if (elfs) b->a.free(b->a.ctx, elfs);
    if (!cache) pprof_symcache_free(c);
    return err;
}
