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
 * Names: system_name is the linker's symbol; name is the same, except for
 * a C++ symbol, demangled (`hwtest::Widget::grow(unsigned long)` for
 * `_ZN6hwtest6Widget4growEm`) by pprof_demangle.c at the end of each
 * call, so that the profile reads the same in go tool pprof (which keeps
 * a name that differs from its system_name), in heapwatch's report and in
 * alert records. Names too long to demangle safely stay mangled (bounds
 * there).
 *
 * Separate debug files. A stripped file (Debian's binaries: .dynsym
 * only, or no symbols at all) is named from its separate debug file when
 * one is installed, found as gdb finds it (pprof_elf.c, "Debug files"):
 * /usr/lib/debug/.build-id/xx/rest.debug, then .gnu_debuglink. Its
 * .symtab is read as the file's own would be; the profile carries the
 * names, so it stays self-contained.
 *
 * Once: a profile that is the last one a process writes (its exit), or
 * one symbolized without a cache, has no later use for a loaded table.
 * pprof_builder_symbolize_once names the locations of a file the cache
 * does not hold by one pass over its symbol section (pp_symcache_scan_fd:
 * the same names, nothing sorted, only the names needed read, nothing
 * kept); pprof_builder_symbolize without a cache does the same. Files the
 * cache holds are looked up as usual, and so is a file with more than
 * PP_ELF_SCAN_MAX locations (a binary search per symbol and location
 * would then cost more than the sort).
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
    return pp_symcache_open_fd(c, fd, path);
}

/* name_group: names the locations idx[0..n) of mapping m from entry e. */
static pprof_err_t name_group(pprof_builder_t *b, const pp_elf_t *e, const pp_mapping_t *m,
                              const uint32_t *idx, size_t n)
{
    pp_loc_t *locs = b->locs.data;
    for (size_t i = 0; i < n; i++) {
        pp_loc_t *l = &locs[idx[i]];
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

/* name_one: names location idx[i] (pp_symcache_scan_fd's callback). */
typedef struct scan_ctx_s {
    pprof_builder_t *b;
    const uint32_t *idx;
} scan_ctx_t;

static pprof_err_t name_one(void *ctx, size_t i, const char *name, size_t len)
{
    scan_ctx_t *sc = ctx;
    pp_loc_t *l = &((pp_loc_t *)sc->b->locs.data)[sc->idx[i]];
    uint32_t s, f;
    PP_TRY(pp_str_intern(sc->b, name, len, &s));
    PP_TRY(pp_func_intern(sc->b, s, s, 0, &f));
    l->function = f + 1;
    return PPROF_OK;
}

/* scan_group: names the locations idx[0..n) of the file mapping m without
 * loading its table into the cache (pp_symcache_scan_fd). */
static pprof_err_t scan_group(pprof_builder_t *b, pprof_symcache_t *c, const pp_mapping_t *m,
                              const uint32_t *idx, size_t n)
{
    const char *path = pp_str(b, m->filename);
    if (!m->from_proc && path[0] != '/') return PPROF_OK;
    uint64_t *fo = b->a.alloc(b->a.ctx, n * sizeof(uint64_t));
    if (!fo) return PPROF_ERR_NOMEM;
    const pp_loc_t *locs = b->locs.data;
    for (size_t i = 0; i < n; i++) fo[i] = locs[idx[i]].addr - m->start + m->offset;
    pprof_err_t err = PPROF_OK;
    int fd = pp_open_mapping(m, path);
    if (fd >= 0) {
        scan_ctx_t sc = { b, idx };
        err = pp_symcache_scan_fd(c, fd, path, fo, n, name_one, &sc);
    }
    b->a.free(b->a.ctx, fo);
    return err;
}

static bool to_name(const pp_loc_t *l) { return l->mapping != 0 && l->function == 0; }

/* symbolize: pprof_builder_symbolize; with once, files the cache does not
 * hold are named by one pass and not loaded (up to PP_ELF_SCAN_MAX
 * locations in a file; more are loaded as usual). */
static pprof_err_t symbolize(pprof_builder_t *b, pprof_symcache_t *cache, bool once)
{
    if (!b) return PPROF_ERR_INVALID;
    pprof_symcache_t *c = cache;
    if (!c) PP_TRY(pprof_symcache_new(&b->a, &c));
    pprof_err_t err = pp_attach_locations(b);
    const pp_loc_t *locs = b->locs.data;
    size_t nmaps = b->maps.len, n = 0;
    /* The locations to name grouped by mapping (a counting sort): first[i]
     * is where mapping i's group starts in idx, first[nmaps] its end. */
    uint32_t *first = NULL, *idx = NULL;
    for (size_t i = 0; err == PPROF_OK && i < b->locs.len; i++) n += to_name(&locs[i]);
    if (err == PPROF_OK && n) {
        first = b->a.alloc(b->a.ctx, (nmaps + 1) * sizeof(uint32_t));
        idx = first ? b->a.alloc(b->a.ctx, n * sizeof(uint32_t)) : NULL;
        if (!idx) err = PPROF_ERR_NOMEM;
    }
    if (idx) {
        memset(first, 0, (nmaps + 1) * sizeof(uint32_t));
        for (size_t i = 0; i < b->locs.len; i++)
            if (to_name(&locs[i])) first[locs[i].mapping]++;   /* counts, shifted by one */
        for (size_t m = 1; m <= nmaps; m++) first[m] += first[m - 1];
        /* first[m] is now the end of group m - 1, i.e. the start of group
         * m; filling moves each start up to its group's end. */
        for (size_t i = 0; i < b->locs.len; i++)
            if (to_name(&locs[i])) idx[first[locs[i].mapping - 1]++] = (uint32_t)i;
    }
    for (size_t m = 0, start = 0; err == PPROF_OK && idx && m < nmaps; m++) {
        size_t end = first[m];
        if (end == start) continue;
        const pp_mapping_t *mp = &PP_VEC_AT(&b->maps, pp_mapping_t, m);
        if (once && !mp->vdso && end - start <= PP_ELF_SCAN_MAX) {
            err = scan_group(b, c, mp, idx + start, end - start);
        } else {
            const pp_elf_t *e = resolve(b, c, mp);
            if (e) err = name_group(b, e, mp, idx + start, end - start);
        }
        start = end;
    }
    if (err == PPROF_OK) err = pp_demangle_functions(b);
    if (idx) b->a.free(b->a.ctx, idx);
    if (first) b->a.free(b->a.ctx, first);
    if (!cache) pprof_symcache_free(c);
    return err;
}

pprof_err_t pprof_builder_symbolize(pprof_builder_t *b, pprof_symcache_t *cache)
{
    /* Without a cache of the caller's, nothing read is kept anyway. */
    return symbolize(b, cache, cache == NULL);
}

pprof_err_t pprof_builder_symbolize_once(pprof_builder_t *b, pprof_symcache_t *cache)
{
    return symbolize(b, cache, true);
}
