/*
 * pprof_symbolize.c - in-process symbolization: this (PIE) test binary's
 * static functions (.symtab), libz and libc (.dynsym of stripped
 * distribution libraries), the vdso (from memory), a deleted file (through
 * /proc/self/map_files/, and unnamed but still mapped when that is
 * blocked), manual mappings, return-address adjustment, and the symbol
 * cache (lazy, reused, freed; bounded in files and bytes with LRU
 * eviction; a file changed in place is read afresh, its old entry dropped),
 * and the one-pass naming (pp_symcache_scan_fd) against the sorted table:
 * ties, aliases, zero-size and nested symbols in a synthetic file, and
 * real files offset by offset.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pprof_test.h"
#include "pprof/pprof_internal.h"

static test_alloc_t ta;
static map_allocator_t alloc;

static int setup(void **state)
{
    memset(&ta, 0, sizeof(ta));
    alloc = test_allocator(&ta);
    return 0;
}

static int teardown(void **state)
{
    assert_int_equal(ta.live_blocks, 0);
    return 0;
}

__attribute__((noinline)) static int sym_target_static(int x)
{
    __asm__ volatile("" ::: "memory");
    return x * 3 + 1;
}

__attribute__((noinline)) int sym_target_global(int x);
__attribute__((noinline)) int sym_target_global(int x)
{
    __asm__ volatile("" ::: "memory");
    return x * 5 + 2;
}

static uint64_t addr_of(const void *p) { return (uint64_t)(uintptr_t)p; }

/* build: a heap builder with one sample per pc (each a depth-1 stack). */
static pprof_builder_t *build(const uint64_t *pcs, size_t n, pprof_pc_kind_t kind)
{
    pprof_builder_t *b;
    assert_int_equal(pprof_builder_new(&alloc, &b), PPROF_OK);
    assert_int_equal(pprof_builder_set_pc_kind(b, kind), PPROF_OK);
    assert_int_equal(pprof_builder_set_heap_types(b, 1), PPROF_OK);
    pprof_heap_counts_t c = { 1, 8, 1, 8, 0 };
    for (size_t i = 0; i < n; i++) assert_int_equal(pprof_heap_add(b, &pcs[i], 1, &c), PPROF_OK);
    return b;
}

static const Perftools__Profiles__Mapping *map_of_loc(const pb_profile_t *p, uint64_t addr)
{
    for (size_t i = 0; i < p->n_location; i++)
        if (p->location[i]->address == addr) return t_map(p, p->location[i]->mapping_id);
    return NULL;
}

static void test_names(void **state)
{
    uint64_t pcs[5];
    pcs[0] = addr_of((void *)sym_target_static) + 1;   /* return addresses */
    pcs[1] = addr_of((void *)sym_target_global) + 1;
    pcs[2] = addr_of((void *)deflate) + 1;
    pcs[3] = addr_of((void *)getauxval) + 1;
    void *vdso = dlopen("linux-vdso.so.1", RTLD_NOW | RTLD_NOLOAD);
    void *cg = vdso ? dlsym(vdso, "__vdso_clock_gettime") : NULL;
    if (getauxval(AT_SYSINFO_EHDR)) assert_non_null(cg);   /* a vdso exists: test it */
    pcs[4] = cg ? addr_of(cg) + 1 : 0;
    pprof_builder_t *b = build(pcs, cg ? 5 : 4, PPROF_PCS_RETURN);
    assert_int_equal(pprof_builder_add_mappings_from_proc(b), PPROF_OK);
    assert_int_equal(pprof_builder_symbolize(b, NULL), PPROF_OK);
    pb_profile_t *p = t_roundtrip(b, &alloc);

    assert_string_equal(t_name_of_addr(p, pcs[0] - 1), "sym_target_static");
    assert_string_equal(t_name_of_addr(p, pcs[1] - 1), "sym_target_global");
    assert_string_equal(t_name_of_addr(p, pcs[2] - 1), "deflate");
    assert_non_null(strstr(t_name_of_addr(p, pcs[3] - 1), "getauxval"));
    /* C names: name == system_name (only C++ names are demangled). */
    for (size_t i = 0; i < p->n_function; i++)
        assert_int_equal(p->function[i]->name, p->function[i]->system_name);

    /* Mapping 1 is this executable, with its build ID and [FN]. */
    const Perftools__Profiles__Mapping *m1 = t_map(p, 1);
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    assert_string_equal(t_str(p, m1->filename), exe);
    assert_int_equal(strlen(t_str(p, m1->build_id)), 40);
    assert_ptr_equal(map_of_loc(p, pcs[0] - 1), m1);
    assert_true(m1->has_functions);
    const Perftools__Profiles__Mapping *mz = map_of_loc(p, pcs[2] - 1);
    assert_non_null(strstr(t_str(p, mz->filename), "libz.so"));
    assert_true(mz->has_functions);
    assert_true(mz->memory_start <= pcs[2] && pcs[2] < mz->memory_limit);
    if (cg) {
        assert_non_null(strstr(t_name_of_addr(p, pcs[4] - 1), "clock_gettime"));
        const Perftools__Profiles__Mapping *mv = map_of_loc(p, pcs[4] - 1);
        assert_string_equal(t_str(p, mv->filename), "[vdso]");
        assert_true(mv->memory_start == getauxval(AT_SYSINFO_EHDR));
        assert_true(mv->has_functions);
    }
    /* Every mapping is executable memory of this process. */
    for (size_t i = 0; i < p->n_mapping; i++)
        assert_true(p->mapping[i]->memory_limit > p->mapping[i]->memory_start);
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);
}

/* The adjustment: a return address equal to a function's first byte
 * belongs to the call at the end of whatever precedes it, not to that
 * function; an exact PC there is the function. */
static void test_return_address_adjustment(void **state)
{
    uint64_t f = addr_of((void *)sym_target_global);
    uint64_t pcs[2] = { f, f + 1 };
    pprof_builder_t *b = build(pcs, 2, PPROF_PCS_RETURN);
    assert_int_equal(pprof_builder_add_mappings_from_proc(b), PPROF_OK);
    assert_int_equal(pprof_builder_symbolize(b, NULL), PPROF_OK);
    pb_profile_t *p = t_roundtrip(b, &alloc);
    const char *before = t_name_of_addr(p, f - 1);
    assert_true(before == NULL || strcmp(before, "sym_target_global") != 0);
    assert_string_equal(t_name_of_addr(p, f), "sym_target_global");
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);

    b = build(pcs, 1, PPROF_PCS_EXACT);
    assert_int_equal(pprof_builder_add_mappings_from_proc(b), PPROF_OK);
    assert_int_equal(pprof_builder_symbolize(b, NULL), PPROF_OK);
    p = t_roundtrip(b, &alloc);
    assert_string_equal(t_name_of_addr(p, f), "sym_target_global");
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);
}

/* find_xmap: the r-xp line of the mapping holding addr (path, start, offset). */
static int find_xmap(uint64_t addr, char *path, uint64_t *start, uint64_t *end, uint64_t *off)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[8192];
    int found = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long s, e, o;
        char perms[5];
        int pos = 0;
        if (sscanf(line, "%llx-%llx %4s %llx %*s %*s %n", &s, &e, perms, &o, &pos) < 4) continue;
        if (addr >= s && addr < e && perms[2] == 'x') {
            *start = s;
            *end = e;
            *off = o;
            strcpy(path, line + pos);
            path[strcspn(path, "\n")] = '\0';
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

/* A copy of libz's code segment mapped from a file that is then deleted. */
typedef struct deleted_s {
    void *base;
    size_t len;
    uint64_t addr;        /* where deflate is in the copy (plus 1: a return address) */
    char path[4096];
} deleted_t;

static void map_deleted(deleted_t *d)
{
    char zpath[4096];
    uint64_t zs, ze, zo;
    assert_true(find_xmap(addr_of((void *)deflate), zpath, &zs, &ze, &zo));
    strcpy(d->path, "/tmp/pprof_sym_deleted.XXXXXX");
    int out = mkstemp(d->path);
    int in = open(zpath, O_RDONLY);
    assert_true(out >= 0 && in >= 0);
    char buf[65536];
    ssize_t r;
    while ((r = read(in, buf, sizeof(buf))) > 0) assert_int_equal(write(out, buf, (size_t)r), r);
    close(in);
    d->len = ze - zs;
    d->base = mmap(NULL, d->len, PROT_READ | PROT_EXEC, MAP_PRIVATE, out, (off_t)zo);
    assert_true(d->base != MAP_FAILED);
    close(out);
    assert_int_equal(unlink(d->path), 0);
    d->addr = addr_of(d->base) + (addr_of((void *)deflate) - zs) + 1;
}

static int (*real_open)(const char *, int, mode_t);
static int open_no_map_files(const char *path, int flags, mode_t mode)
{
    if (strncmp(path, "/proc/self/map_files/", 21) == 0) {
        errno = EPERM;   /* what an unprivileged process gets */
        return -1;
    }
    return real_open(path, flags, mode);
}

static void test_deleted_file(void **state)
{
    deleted_t d;
    map_deleted(&d);
    char mf[128];
    snprintf(mf, sizeof(mf), "/proc/self/map_files/%llx-%llx",
             (unsigned long long)addr_of(d.base), (unsigned long long)(addr_of(d.base) + d.len));
    int probe = open(mf, O_RDONLY);
    bool can_map_files = probe >= 0;
    if (probe >= 0) close(probe);

    pprof_builder_t *b = build(&d.addr, 1, PPROF_PCS_RETURN);
    assert_int_equal(pprof_builder_add_mappings_from_proc(b), PPROF_OK);
    assert_int_equal(pprof_builder_symbolize(b, NULL), PPROF_OK);
    pb_profile_t *p = t_roundtrip(b, &alloc);
    const Perftools__Profiles__Mapping *m = map_of_loc(p, d.addr - 1);
    assert_non_null(m);
    assert_string_equal(t_str(p, m->filename), d.path);   /* " (deleted)" removed */
    if (can_map_files) {
        assert_string_equal(t_name_of_addr(p, d.addr - 1), "deflate");
        assert_true(m->has_functions);
        assert_true(strlen(t_str(p, m->build_id)) > 0);
    }
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);

    /* No map_files (unprivileged) and no file at the path: the address
     * cannot be named, so it keeps its mapping for pprof to try. */
    real_open = pp_sys_open;
    pp_sys_open = open_no_map_files;
    b = build(&d.addr, 1, PPROF_PCS_RETURN);
    assert_int_equal(pprof_builder_add_mappings_from_proc(b), PPROF_OK);
    assert_int_equal(pprof_builder_symbolize(b, NULL), PPROF_OK);
    p = t_roundtrip(b, &alloc);
    pp_sys_open = real_open;
    m = map_of_loc(p, d.addr - 1);
    assert_non_null(m);
    assert_string_equal(t_str(p, m->filename), d.path);
    assert_null(t_name_of_addr(p, d.addr - 1));
    assert_false(m->has_functions);
    assert_string_equal(t_str(p, m->build_id), "");
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);

    /* A new file at the deleted path is another file: not used. */
    int fd = open(d.path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    char zpath[4096];
    uint64_t zs, ze, zo;
    assert_true(find_xmap(addr_of((void *)deflate), zpath, &zs, &ze, &zo));
    int in = open(zpath, O_RDONLY);
    char buf[65536];
    ssize_t r;
    while ((r = read(in, buf, sizeof(buf))) > 0) assert_int_equal(write(fd, buf, (size_t)r), r);
    close(in);
    close(fd);
    pp_sys_open = open_no_map_files;
    b = build(&d.addr, 1, PPROF_PCS_RETURN);
    assert_int_equal(pprof_builder_add_mappings_from_proc(b), PPROF_OK);
    assert_int_equal(pprof_builder_symbolize(b, NULL), PPROF_OK);
    p = t_roundtrip(b, &alloc);
    pp_sys_open = real_open;
    assert_null(t_name_of_addr(p, d.addr - 1));
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);
    unlink(d.path);
    munmap(d.base, d.len);
    if (!can_map_files) skip();   /* the named half needs CAP_SYS_ADMIN */
}

/* A mapping added by hand is symbolized through its path. */
static void test_manual_mapping(void **state)
{
    char zpath[4096];
    uint64_t zs, ze, zo;
    assert_true(find_xmap(addr_of((void *)deflate), zpath, &zs, &ze, &zo));
    /* Pretend libz was loaded elsewhere (another process's layout). */
    uint64_t base = 0x10000000;
    uint64_t pc = base + (addr_of((void *)deflate) - zs) + 1;
    pprof_builder_t *b = build(&pc, 1, PPROF_PCS_RETURN);
    pprof_mapping_t m = { base, base + (ze - zs), zo, zpath, NULL };
    assert_int_equal(pprof_builder_add_mapping(b, &m), PPROF_OK);
    assert_int_equal(pprof_builder_symbolize(b, NULL), PPROF_OK);
    pb_profile_t *p = t_roundtrip(b, &alloc);
    assert_string_equal(t_name_of_addr(p, pc - 1), "deflate");
    assert_true(t_map(p, 1)->has_functions);
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);
}

static void test_cache(void **state)
{
    pprof_symcache_t *c;
    assert_int_equal(pprof_symcache_new(&alloc, &c), PPROF_OK);
    pprof_symcache_stats_t s0, s1, s2;
    pprof_symcache_get_stats(c, &s0);
    assert_int_equal(s0.files, 0);
    uint64_t pcs[2] = { addr_of((void *)sym_target_static) + 1, addr_of((void *)deflate) + 1 };
    pprof_builder_t *b = build(pcs, 2, PPROF_PCS_RETURN);
    assert_int_equal(pprof_builder_add_mappings_from_proc(b), PPROF_OK);
    pprof_builder_stats_t bs;
    pprof_builder_get_stats(b, &bs);
    assert_true(bs.mappings >= 3);
    assert_int_equal(pprof_builder_symbolize(b, c), PPROF_OK);
    pprof_symcache_get_stats(c, &s1);
    /* Lazy: only the two files that hold locations were opened. */
    assert_int_equal(s1.files, 2);
    assert_int_equal(s1.tables, 2);
    assert_true(s1.symbols > 100);
    assert_true(s1.bytes >= s1.symbols * 16);
    pprof_builder_free(b);

    b = build(pcs, 2, PPROF_PCS_RETURN);
    assert_int_equal(pprof_builder_add_mappings_from_proc(b), PPROF_OK);
    assert_int_equal(pprof_builder_symbolize(b, c), PPROF_OK);
    pprof_symcache_get_stats(c, &s2);
    assert_int_equal(s2.files, s1.files);     /* reused, not reloaded */
    assert_int_equal(s2.tables, s1.tables);
    assert_int_equal(s2.bytes, s1.bytes);
    pb_profile_t *p = t_roundtrip(b, &alloc);
    assert_string_equal(t_name_of_addr(p, pcs[1] - 1), "deflate");
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);
    pprof_symcache_free(c);   /* teardown checks every block came back */
}

/* ------------------------------------------------------------------------ */
/* The cache's bounds and change detection (issue 11: mapped files)         */
/* ------------------------------------------------------------------------ */

/* zcopy_t: copies of libz in a scratch directory, each a distinct inode;
 * a profile maps copy i at ZBASE(i) and has one location in its deflate. */
#define ZCOPIES 70
#define ZBASE(i) (0x10000000ull + (uint64_t)(i) * 0x1000000ull)
typedef struct zcopy_s {
    char dir[64];
    char zpath[4096];
    uint64_t zs, ze, zo;     /* libz's executable mapping in this process */
    unsigned char *bytes;    /* libz's file */
    size_t len;
} zcopy_t;

static void zcopy_path(const zcopy_t *z, int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/libz.%d.so", z->dir, i);
}

/* zcopy_write: copy i's content (len bytes of data), in place (same inode). */
static void zcopy_write(const zcopy_t *z, int i, const void *data, size_t len)
{
    char path[128];
    zcopy_path(z, i, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void zcopy_init(zcopy_t *z, int n)
{
    assert_true(find_xmap(addr_of((void *)deflate), z->zpath, &z->zs, &z->ze, &z->zo));
    strcpy(z->dir, "/tmp/pprof_sym_cache.XXXXXX");
    assert_non_null(mkdtemp(z->dir));
    int in = open(z->zpath, O_RDONLY);
    assert_true(in >= 0);
    struct stat st;
    assert_int_equal(fstat(in, &st), 0);
    z->len = (size_t)st.st_size;
    z->bytes = malloc(z->len);
    assert_int_equal(read(in, z->bytes, z->len), (ssize_t)z->len);
    close(in);
    for (int i = 0; i < n; i++) zcopy_write(z, i, z->bytes, z->len);
}

static void zcopy_fini(zcopy_t *z, int n)
{
    char path[128];
    for (int i = 0; i < n; i++) {
        zcopy_path(z, i, path, sizeof path);
        unlink(path);
    }
    rmdir(z->dir);
    free(z->bytes);
}

/* zcopy_names: symbolizes one location in each of copies [0, n) with c and
 * returns how many were named "deflate" (named: a bitmap of which). */
static int zcopy_names(const zcopy_t *z, int n, pprof_symcache_t *c, bool *named)
{
    uint64_t pcs[ZCOPIES] = { 0 };
    for (int i = 0; i < n; i++) pcs[i] = ZBASE(i) + (addr_of((void *)deflate) - z->zs) + 1;
    pprof_builder_t *b = build(pcs, (size_t)n, PPROF_PCS_RETURN);
    for (int i = 0; i < n; i++) {
        char path[128];
        zcopy_path(z, i, path, sizeof path);
        pprof_mapping_t m = { ZBASE(i), ZBASE(i) + (z->ze - z->zs), z->zo, path, NULL };
        assert_int_equal(pprof_builder_add_mapping(b, &m), PPROF_OK);
    }
    assert_int_equal(pprof_builder_symbolize(b, c), PPROF_OK);
    int k = 0;
    for (int i = 0; i < n; i++) {
        const char *name = pprof_builder_frame_name(b, &pcs[i], 0);
        bool ok = name && strcmp(name, "deflate") == 0;
        if (named) named[i] = ok;
        k += ok;
    }
    pprof_builder_free(b);
    return k;
}

/* More files than the cache keeps: every one named, at most 64 held (the
 * least recently used evicted), and the byte bound holds too. */
static void test_cache_bound(void **state)
{
    zcopy_t z;
    zcopy_init(&z, ZCOPIES);
    pprof_symcache_t *c;
    assert_int_equal(pprof_symcache_new(&alloc, &c), PPROF_OK);
    pprof_symcache_stats_t s;

    assert_int_equal(zcopy_names(&z, ZCOPIES, c, NULL), ZCOPIES);
    pprof_symcache_get_stats(c, &s);
    assert_int_equal(s.files, PP_SYMCACHE_MAX_FILES);
    assert_int_equal(s.tables, PP_SYMCACHE_MAX_FILES);
    assert_int_equal(s.evicted, ZCOPIES - PP_SYMCACHE_MAX_FILES);
    assert_true(s.bytes <= PP_SYMCACHE_MAX_BYTES);
    size_t per_file = (s.bytes - sizeof(*c)) / s.files;

    /* Again: the last 64 are hits, the first 6 are read again, evicting
     * the least recently used (copies 6..11), never the one in use. */
    assert_int_equal(zcopy_names(&z, ZCOPIES, c, NULL), ZCOPIES);
    pprof_symcache_get_stats(c, &s);
    assert_int_equal(s.files, PP_SYMCACHE_MAX_FILES);

    /* A byte bound of 3.5 files: at most 3 held, all still named. */
    pp_symcache_set_limits(c, PP_SYMCACHE_MAX_FILES, sizeof(*c) + per_file * 7 / 2);
    assert_int_equal(zcopy_names(&z, 10, c, NULL), 10);
    pprof_symcache_get_stats(c, &s);
    assert_true(s.files <= 3);
    assert_true(s.bytes <= sizeof(*c) + per_file * 7 / 2);

    /* A bound smaller than one file: the file in use is still read and
     * named, alone in the cache. */
    pp_symcache_set_limits(c, 1, 1);
    assert_int_equal(zcopy_names(&z, 5, c, NULL), 5);
    pprof_symcache_get_stats(c, &s);
    assert_int_equal(s.files, 1);

    pprof_symcache_free(c);   /* teardown checks every block came back */
    zcopy_fini(&z, ZCOPIES);
}

/* set_mtime: puts back the file's mtime (what cp -p or rsync -t do). */
static void set_mtime(const char *path, const struct stat *st)
{
    struct timespec ts[2] = { st->st_atim, st->st_mtim };
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* A file changed in place (same inode) is read afresh and its old entry
 * dropped: garbage of the same size with the mtime put back, a truncated
 * file, a file cut in its tables, the original bytes again. */
static void test_cache_change(void **state)
{
    zcopy_t z;
    zcopy_init(&z, 1);
    char path[128];
    zcopy_path(&z, 0, path, sizeof path);
    pprof_symcache_t *c;
    assert_int_equal(pprof_symcache_new(&alloc, &c), PPROF_OK);
    pprof_symcache_stats_t s;

    assert_int_equal(zcopy_names(&z, 1, c, NULL), 1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);

    unsigned char *junk = malloc(z.len);
    for (size_t i = 0; i < z.len; i++) junk[i] = (unsigned char)(i * 7 + 3);
    memcpy(junk, z.bytes, 64);   /* a valid ELF header over garbage */
    zcopy_write(&z, 0, junk, z.len);
    set_mtime(path, &st);
    assert_int_equal(zcopy_names(&z, 1, c, NULL), 0);
    pprof_symcache_get_stats(c, &s);
    assert_int_equal(s.files, 1);
    assert_int_equal(s.dropped, 1);

    zcopy_write(&z, 0, z.bytes, 100);   /* truncated: a header, nothing else */
    assert_int_equal(zcopy_names(&z, 1, c, NULL), 0);
    zcopy_write(&z, 0, z.bytes, z.len / 2);   /* cut in its tables */
    zcopy_names(&z, 1, c, NULL);   /* named or not: read within the cut */
    zcopy_write(&z, 0, "", 0);   /* empty */
    assert_int_equal(zcopy_names(&z, 1, c, NULL), 0);
    pprof_symcache_get_stats(c, &s);
    assert_int_equal(s.files, 1);
    assert_int_equal(s.dropped, 4);

    zcopy_write(&z, 0, z.bytes, z.len);   /* cp over: named again */
    assert_int_equal(zcopy_names(&z, 1, c, NULL), 1);
    pprof_symcache_get_stats(c, &s);
    assert_int_equal(s.files, 1);
    assert_int_equal(s.tables, 1);
    assert_int_equal(s.dropped, 5);

    free(junk);
    pprof_symcache_free(c);
    zcopy_fini(&z, 1);
}

/* elf_image: len zeroed bytes holding an ELF header (x86-64, ET_DYN), one
 * PT_LOAD (file offset = address, 1 MiB, r-x) and, at sh_off, the section
 * headers of a .symtab of nsym entries (the null one included) at sym_off
 * and its string table of strsz bytes at str_off: every synthetic file of
 * these tests; the caller fills the symbols and the names in. */
static unsigned char *elf_image(size_t len, size_t sh_off, size_t sym_off, size_t nsym,
                                size_t str_off, size_t strsz)
{
    unsigned char *img = calloc(1, len);
    assert_non_null(img);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_DYN;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_phoff = sizeof(Elf64_Ehdr);
    eh->e_shoff = sh_off;
    eh->e_ehsize = sizeof(Elf64_Ehdr);
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = 1;
    eh->e_shentsize = sizeof(Elf64_Shdr);
    eh->e_shnum = 3;
    Elf64_Phdr ph = { .p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = 0, .p_vaddr = 0,
                      .p_filesz = 0x100000, .p_memsz = 0x100000, .p_align = 0x1000 };
    memcpy(img + eh->e_phoff, &ph, sizeof ph);
    Elf64_Shdr sh[3];
    memset(sh, 0, sizeof sh);
    sh[1].sh_type = SHT_SYMTAB;
    sh[1].sh_offset = sym_off;
    sh[1].sh_size = nsym * sizeof(Elf64_Sym);
    sh[1].sh_entsize = sizeof(Elf64_Sym);
    sh[1].sh_link = 2;
    sh[2].sh_type = SHT_STRTAB;
    sh[2].sh_offset = str_off;
    sh[2].sh_size = strsz;
    memcpy(img + sh_off, sh, sizeof sh);
    return img;
}

/* A hostile file: 2000 function symbols sharing one name of 4000 bytes.
 * Packing the names would take 8 MB; the cache keeps the 4 KB string
 * section instead, and still names every address. */
static void test_cache_shared_names(void **state)
{
    enum { NSYM = 2000, NAMELEN = 4000 };
    char path[] = "/tmp/pprof_sym_shared.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t sym_off = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);
    size_t str_off = sym_off + (NSYM + 1) * sizeof(Elf64_Sym);
    size_t strsz = NAMELEN + 2;
    size_t sh_off = (str_off + strsz + 7) & ~(size_t)7;
    size_t len = sh_off + 3 * sizeof(Elf64_Shdr);
    unsigned char *img = elf_image(len, sh_off, sym_off, (size_t)NSYM + 1, str_off, strsz);
    for (int i = 1; i <= NSYM; i++) {
        Elf64_Sym sym = { .st_name = 1, .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC),
                          .st_shndx = 1, .st_value = 0x1000 + (uint64_t)i * 16, .st_size = 16 };
        memcpy(img + sym_off + (size_t)i * sizeof(sym), &sym, sizeof sym);
    }
    memset(img + str_off + 1, 'f', NAMELEN);
    assert_int_equal(write(fd, img, len), (ssize_t)len);
    close(fd);
    free(img);

    uint64_t base = 0x20000000, pcs[3];
    for (int i = 0; i < 3; i++) pcs[i] = base + 0x1000 + (uint64_t)(1 + i * 999) * 16 + 4;
    pprof_builder_t *b = build(pcs, 3, PPROF_PCS_EXACT);
    pprof_mapping_t m = { base, base + 0x100000, 0, path, NULL };
    assert_int_equal(pprof_builder_add_mapping(b, &m), PPROF_OK);
    pprof_symcache_t *c;
    assert_int_equal(pprof_symcache_new(&alloc, &c), PPROF_OK);
    assert_int_equal(pprof_builder_symbolize(b, c), PPROF_OK);
    for (int i = 0; i < 3; i++) {
        const char *name = pprof_builder_frame_name(b, &pcs[i], 0);
        assert_non_null(name);
        assert_int_equal(strlen(name), NAMELEN);
    }
    pprof_symcache_stats_t s;
    pprof_symcache_get_stats(c, &s);
    assert_int_equal(s.symbols, NSYM);
    assert_true(s.bytes < NSYM * sizeof(pp_sym_t) + strsz + 4096);
    pprof_symcache_free(c);
    pprof_builder_free(b);
    unlink(path);
}

/* Out of memory while symbolizing: an error or fewer names, never a crash
 * or a leak. */
static void test_symbolize_oom(void **state)
{
    uint64_t pcs[2] = { addr_of((void *)sym_target_static) + 1, addr_of((void *)deflate) + 1 };
    for (size_t nth = 1; nth < 200; nth++) {
        pprof_builder_t *b = build(pcs, 2, PPROF_PCS_RETURN);
        assert_int_equal(pprof_builder_add_mappings_from_proc(b), PPROF_OK);
        test_alloc_fail_nth(&ta, nth, 0);
        pprof_err_t err = pprof_builder_symbolize(b, NULL);
        bool failed = ta.fail_at <= ta.calls;   /* the armed call happened */
        test_alloc_heal(&ta);
        assert_true(err == PPROF_OK || err == PPROF_ERR_NOMEM);
        void *data;
        size_t len;
        assert_int_equal(pprof_builder_encode(b, true, &data, &len), PPROF_OK);
        assert_int_equal(pprof_validate(&alloc, data, len, NULL, 0), PPROF_OK);
        alloc.free(alloc.ctx, data);
        pprof_builder_free(b);
        if (!failed) break;
    }
}

/* ------------------------------------------------------------------------ */
/* One pass (pp_symcache_scan_fd) against the sorted table (open + lookup)  */
/* ------------------------------------------------------------------------ */

/* sorted_names / scan_names: names of fo[0..n) in the file at path, by
 * loading the table into a fresh cache and looking each up, or by one
 * pass; "" for none. */
typedef struct names_s {
    char (*name)[PP_ELF_MAX_NAME + 1];
    size_t n;
} names_t;

static void names_init(names_t *nm, size_t n)
{
    nm->name = calloc(n, sizeof *nm->name);
    nm->n = n;
    assert_non_null(nm->name);
}

static void sorted_names(const char *path, const uint64_t *fo, size_t n, names_t *nm)
{
    names_init(nm, n);
    pprof_symcache_t *c;
    assert_int_equal(pprof_symcache_new(&alloc, &c), PPROF_OK);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    pp_elf_t *e = pp_symcache_open_fd(c, fd, path);
    assert_non_null(e);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *name = pp_elf_lookup(e, fo[i], &len);
        if (name && len) memcpy(nm->name[i], name, len);
    }
    pprof_symcache_free(c);
}

static pprof_err_t take_name(void *ctx, size_t i, const char *name, size_t len)
{
    names_t *nm = ctx;
    assert_true(i < nm->n);
    assert_int_equal(nm->name[i][0], 0);   /* once per offset */
    assert_true(len <= PP_ELF_MAX_NAME);
    memcpy(nm->name[i], name, len);
    return PPROF_OK;
}

static void scan_names(const char *path, const uint64_t *fo, size_t n, names_t *nm)
{
    names_init(nm, n);
    pprof_symcache_t *c;
    assert_int_equal(pprof_symcache_new(&alloc, &c), PPROF_OK);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pp_symcache_scan_fd(c, fd, path, fo, n, take_name, nm), PPROF_OK);
    pprof_symcache_stats_t s;
    pprof_symcache_get_stats(c, &s);
    assert_int_equal(s.files, 0);   /* nothing kept */
    pprof_symcache_free(c);
}

/* expect_same: both ways name fo[0..n) identically; @return how many
 * were named. */
static size_t expect_same(const char *path, const uint64_t *fo, size_t n)
{
    names_t a, b;
    sorted_names(path, fo, n, &a);
    scan_names(path, fo, n, &b);
    size_t named = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(a.name[i], b.name[i]) != 0)
            fail_msg("%s: offset 0x%llx: sorted \"%.80s\", one pass \"%.80s\"", path,
                     (unsigned long long)fo[i], a.name[i], b.name[i]);
        named += a.name[i][0] != 0;
    }
    free(a.name);
    free(b.name);
    return named;
}

/* esym_t: a symbol of a synthetic ELF file. */
typedef struct esym_s {
    const char *name;
    uint64_t value, size;
    unsigned bind, type;
} esym_t;

/* write_elf: an ELF file with one PT_LOAD (file offset = address, 1 MiB)
 * and a .symtab of syms[0..n) (after the null symbol), at path. */
static void write_elf(const char *path, const esym_t *syms, size_t n)
{
    size_t strsz = 1;
    for (size_t i = 0; i < n; i++) strsz += strlen(syms[i].name) + 1;
    size_t sym_off = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);
    size_t str_off = sym_off + (n + 1) * sizeof(Elf64_Sym);
    size_t sh_off = (str_off + strsz + 7) & ~(size_t)7;
    size_t len = sh_off + 3 * sizeof(Elf64_Shdr);
    unsigned char *img = elf_image(len, sh_off, sym_off, n + 1, str_off, strsz);
    size_t at = 1;
    for (size_t i = 0; i < n; i++) {
        Elf64_Sym sym = { .st_name = (uint32_t)at, .st_info = ELF64_ST_INFO(syms[i].bind, syms[i].type),
                          .st_shndx = 1, .st_value = syms[i].value, .st_size = syms[i].size };
        memcpy(img + sym_off + (i + 1) * sizeof sym, &sym, sizeof sym);
        memcpy(img + str_off + at, syms[i].name, strlen(syms[i].name) + 1);
        at += strlen(syms[i].name) + 1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, img, len), (ssize_t)len);
    close(fd);
    free(img);
}

/* xorshift: the tests' fixed-seed generator. */
static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* expect_same_sparse: every offset in [lo, hi), then 200 random subsets
 * of 1 to 24 offsets (sparse queries: buckets far apart). */
static void expect_same_sparse(const char *path, uint64_t lo, uint64_t hi, size_t min_named)
{
    size_t n = (size_t)(hi - lo);
    uint64_t *fo = malloc(n * sizeof *fo);
    for (size_t i = 0; i < n; i++) fo[i] = lo + i;
    size_t named = expect_same(path, fo, n);
    print_message("# %s: %zu of %zu offsets named\n", path, named, n);
    assert_true(named >= min_named);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 200; round++) {
        size_t k = 1 + xorshift(&seed) % 24;
        for (size_t i = 0; i < k; i++) fo[i] = lo + xorshift(&seed) % n;
        expect_same(path, fo, k);
    }
    free(fo);
}

/* Ties, aliases and zero-size symbols: the one pass names every offset as
 * the sorted table does. */
static void test_scan_same_synthetic(void **state)
{
    static char longname[5000];
    memset(longname, 'L', sizeof longname - 1);
    const esym_t syms[] = {
        /* aliases at 0x2000: the global wins over weak and local, the
         * largest size (0x20) covers */
        { "foo_weak", 0x2000, 0x20, STB_WEAK, STT_FUNC },
        { "_foo_local", 0x2000, 0, STB_LOCAL, STT_FUNC },
        { "foo", 0x2000, 0x10, STB_GLOBAL, STT_FUNC },
        /* equal ranks (C++ C1/C2 constructors): the first in the section */
        { "_ZN1AC2Ev", 0x3000, 0x10, STB_GLOBAL, STT_FUNC },
        { "_ZN1AC1Ev", 0x3000, 0x10, STB_GLOBAL, STT_FUNC },
        { "_ZN1BC1Ev", 0x3100, 0x10, STB_WEAK, STT_FUNC },
        { "_ZN1BC2Ev", 0x3100, 0x10, STB_WEAK, STT_FUNC },
        /* fewer leading underscores, then shorter */
        { "__libc_x", 0x3200, 8, STB_GLOBAL, STT_FUNC },
        { "x", 0x3200, 8, STB_GLOBAL, STT_FUNC },
        { "longer", 0x3300, 8, STB_GLOBAL, STT_GNU_IFUNC },
        { "short", 0x3300, 8, STB_GLOBAL, STT_FUNC },
        /* zero size: up to the next symbol */
        { "zero", 0x4000, 0, STB_GLOBAL, STT_FUNC },
        { "next", 0x5000, 4, STB_GLOBAL, STT_FUNC },
        /* nested: the last symbol at or below decides */
        { "outer", 0x6000, 0x100, STB_GLOBAL, STT_FUNC },
        { "inner", 0x6010, 0x10, STB_LOCAL, STT_FUNC },
        /* ignored: objects, undefined, value 0 */
        { "object", 0x6020, 0x100, STB_GLOBAL, STT_OBJECT },
        { "at_zero", 0, 0x100, STB_GLOBAL, STT_FUNC },
        /* a name past PP_ELF_MAX_NAME: cut */
        { longname, 0x7000, 0x10, STB_GLOBAL, STT_FUNC },
        /* out of order in the section, a symbol sized 0 and an alias sized */
        { "late_low", 0x1800, 0x20, STB_GLOBAL, STT_FUNC },
        { "z0", 0x8000, 0, STB_GLOBAL, STT_FUNC },
        { "z0_sized", 0x8000, 0x8, STB_LOCAL, STT_FUNC },
        /* versioned names of a .symtab (glibc's, from libc6-dbg): the
         * default version's "@@" suffix is dropped, an older version's
         * "@" kept (it is another function) */
        { "vdefault@@GLIBC_2.34", 0x8800, 0x10, STB_GLOBAL, STT_FUNC },
        { "vcompat@GLIBC_2.2.5", 0x8810, 0x10, STB_GLOBAL, STT_FUNC },
        { "@@", 0x8820, 0x10, STB_GLOBAL, STT_FUNC },
        /* the last symbol, sized 0: covers nothing */
        { "last_zero", 0x9000, 0, STB_GLOBAL, STT_FUNC },
    };
    char path[] = "/tmp/pprof_scan_synth.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_elf(path, syms, sizeof syms / sizeof syms[0]);
    expect_same_sparse(path, 0x1700, 0x9100, 0x1000);

    /* The expected names, by the rules (and so for both ways). */
    uint64_t fo[] = { 0x2000, 0x201f, 0x2020, 0x3004, 0x3104, 0x3200, 0x3300, 0x4800, 0x5003,
                      0x5004, 0x6050, 0x6015, 0x7000, 0x8004, 0x8008, 0x9000, 0x1000, 0x1810,
                      0x8804, 0x8814, 0x8824 };
    const char *want[] = { "foo", "foo", "", "_ZN1AC2Ev", "_ZN1BC1Ev", "x", "short", "zero", "next",
                           "", "", "inner", NULL, "z0", "", "", "", "late_low",
                           "vdefault", "vcompat@GLIBC_2.2.5", "@@" };
    names_t nm;
    scan_names(path, fo, sizeof fo / sizeof fo[0], &nm);
    for (size_t i = 0; i < sizeof fo / sizeof fo[0]; i++) {
        if (!want[i]) assert_int_equal(strlen(nm.name[i]), PP_ELF_MAX_NAME);
        else assert_string_equal(nm.name[i], want[i]);
    }
    free(nm.name);
    unlink(path);
}

/* exec_range: the file offsets of path's first executable PT_LOAD. */
static bool exec_range(const char *path, uint64_t *lo, uint64_t *hi)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return false;
    Elf64_Ehdr eh;
    bool ok = pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh;
    for (unsigned i = 0; ok && i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        ok = pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + i * sizeof ph)) == (ssize_t)sizeof ph;
        if (ok && ph.p_type == PT_LOAD && (ph.p_flags & PF_X)) {
            *lo = ph.p_offset;
            *hi = ph.p_offset + ph.p_filesz;
            close(fd);
            return true;
        }
    }
    close(fd);
    return false;
}

/* Real files: this test binary (.symtab), libz and libc (.dynsym), and
 * cc1 when gcc is installed (a .symtab of ~29k functions): the first
 * 256 KiB of code offset by offset, and sparse random subsets of it all. */
static void test_scan_same_real(void **state)
{
    char self[4096], zpath[4096], cpath[4096];
    uint64_t s, e, o;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = 0;
    assert_true(find_xmap(addr_of((void *)deflate), zpath, &s, &e, &o));
    assert_true(find_xmap(addr_of((void *)strlen), cpath, &s, &e, &o));
    const char *paths[] = { self, zpath, cpath, "/usr/lib/gcc/x86_64-linux-gnu/12/cc1" };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        uint64_t lo, hi;
        if (!exec_range(paths[i], &lo, &hi)) {
            assert_true(i == 3);   /* only cc1 may be missing */
            continue;
        }
        if (hi - lo > (256u << 10)) hi = lo + (256u << 10);
        expect_same_sparse(paths[i], lo, hi, 1);
    }
}

/* add_mappings_from_proc_used: the executable's mapping and the one that
 * holds the location (libz), nothing else (libc, libprotobuf-c... are
 * mapped but hold none); the location still named, with its build ID. */
static void test_mappings_used(void **state)
{
    uint64_t pcs[1] = { addr_of((void *)deflate) + 1 };
    pprof_builder_t *b = build(pcs, 1, PPROF_PCS_RETURN);
    assert_int_equal(pprof_builder_add_mappings_from_proc_used(b), PPROF_OK);
    pprof_builder_stats_t bs;
    pprof_builder_get_stats(b, &bs);
    assert_true(bs.mappings >= 2);
    assert_int_equal(pprof_builder_symbolize(b, NULL), PPROF_OK);
    pb_profile_t *p = t_roundtrip(b, &alloc);
    assert_string_equal(t_name_of_addr(p, pcs[0] - 1), "deflate");
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = 0;
    assert_string_equal(t_str(p, t_map(p, 1)->filename), self);   /* the executable first */
    for (size_t i = 0; i < p->n_mapping; i++) {
        const char *file = t_str(p, p->mapping[i]->filename);
        assert_true(strcmp(file, self) == 0 || strstr(file, "libz.so"));
        assert_true(strlen(t_str(p, p->mapping[i]->build_id)) > 0);
    }
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);
    b = build(pcs, 1, PPROF_PCS_RETURN);
    assert_int_equal(pprof_builder_add_mappings_from_proc(b), PPROF_OK);
    pprof_builder_stats_t all;
    pprof_builder_get_stats(b, &all);
    assert_true(all.mappings > bs.mappings);   /* libc at least besides */
    pprof_builder_free(b);
}

/* ------------------------------------------------------------------------ */
/* C++ names demangled; .gnu_debuglink parsed                               */
/* ------------------------------------------------------------------------ */

/* t_func_of_addr: the Function of the location at address. */
static const Perftools__Profiles__Function *t_func_of_addr(const pb_profile_t *p, uint64_t addr)
{
    for (size_t i = 0; i < p->n_location; i++) {
        const Perftools__Profiles__Location *l = p->location[i];
        if (l->address != addr || l->n_line == 0) continue;
        for (size_t j = 0; j < p->n_function; j++)
            if (p->function[j]->id == l->line[0]->function_id) return p->function[j];
    }
    return NULL;
}

static void test_demangle(void **state)
{
    /* A mangled name just over PP_DEMANGLE_MAX_MANGLED: stays mangled. */
    static char longname[PP_DEMANGLE_MAX_MANGLED + 16];
    size_t at = 0;
    at += (size_t)snprintf(longname, sizeof longname, "_ZN%uL", PP_DEMANGLE_MAX_MANGLED);
    memset(longname + at, 'x', PP_DEMANGLE_MAX_MANGLED);
    longname[at + PP_DEMANGLE_MAX_MANGLED - 2] = 0;   /* length: just over the bound */
    const esym_t syms[] = {
        { "_ZN5names4Pool4growEm", 0x2000, 0x10, STB_GLOBAL, STT_FUNC },
        { "_ZN5names4Pool4holdEm.cold", 0x2100, 0x10, STB_LOCAL, STT_FUNC },
        { "plain_c", 0x2200, 0x10, STB_GLOBAL, STT_FUNC },
        { "_Znot_valid", 0x2300, 0x10, STB_GLOBAL, STT_FUNC },
        { longname, 0x2400, 0x10, STB_GLOBAL, STT_FUNC },
    };
    assert_true(strlen(longname) > PP_DEMANGLE_MAX_MANGLED);
    char path[] = "/tmp/pprof_demangle.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_elf(path, syms, sizeof syms / sizeof syms[0]);
    uint64_t base = 0x10000000, pcs[5];
    for (size_t i = 0; i < 5; i++) pcs[i] = base + syms[i].value + 5;   /* return addresses */
    for (int once = 0; once < 2; once++) {
        pprof_builder_t *b = build(pcs, 5, PPROF_PCS_RETURN);
        pprof_mapping_t m = { base, base + 0x100000, 0, path, NULL };
        assert_int_equal(pprof_builder_add_mapping(b, &m), PPROF_OK);
        assert_int_equal(once ? pprof_builder_symbolize_once(b, NULL) : pprof_builder_symbolize(b, NULL),
                         PPROF_OK);
        assert_string_equal(pprof_builder_frame_name(b, pcs, 0), "names::Pool::grow(unsigned long)");
        pprof_frame_info_t fi;
        assert_true(pprof_builder_frame_info(b, pcs, 0, &fi));
        assert_string_equal(fi.system_name, "_ZN5names4Pool4growEm");
        assert_string_equal(fi.file, path);
        assert_int_equal(fi.file_offset, 0x2004);
        pb_profile_t *p = t_roundtrip(b, &alloc);
        const Perftools__Profiles__Function *f = t_func_of_addr(p, pcs[0] - 1);
        assert_non_null(f);
        assert_string_equal(t_str(p, f->name), "names::Pool::grow(unsigned long)");
        assert_string_equal(t_str(p, f->system_name), "_ZN5names4Pool4growEm");
        assert_string_equal(t_name_of_addr(p, pcs[1] - 1), "names::Pool::hold(unsigned long) [clone .cold]");
        assert_string_equal(t_name_of_addr(p, pcs[2] - 1), "plain_c");
        assert_string_equal(t_name_of_addr(p, pcs[3] - 1), "_Znot_valid");   /* refused: kept */
        assert_string_equal(t_name_of_addr(p, pcs[4] - 1), longname);         /* too long: kept */
        f = t_func_of_addr(p, pcs[4] - 1);
        assert_string_equal(t_str(p, f->system_name), longname);
        perftools__profiles__profile__free_unpacked(p, NULL);
        /* Symbolizing again demangles nothing twice and keeps the names. */
        assert_int_equal(pprof_builder_symbolize(b, NULL), PPROF_OK);
        assert_string_equal(pprof_builder_frame_name(b, pcs, 0), "names::Pool::grow(unsigned long)");
        pprof_builder_free(b);
    }
    unlink(path);
}

static void test_debuglink_parse(void **state)
{
    char name[PP_DEBUGLINK_NAME_MAX + 1];
    uint32_t crc = 0;
    /* "prog.debug\0" (11 bytes), padded to 12, then the CRC, little-endian. */
    unsigned char sec[16] = "prog.debug";
    sec[12] = 0x78; sec[13] = 0x56; sec[14] = 0x34; sec[15] = 0x12;
    assert_true(pp_elf_parse_debuglink(sec, sizeof sec, name, &crc));
    assert_string_equal(name, "prog.debug");
    assert_int_equal(crc, 0x12345678);
    /* No room for the CRC after the padding. */
    assert_false(pp_elf_parse_debuglink(sec, 15, name, &crc));
    /* A name of 12 bytes: NUL at 12, padded to 16, CRC at 16..20. */
    unsigned char sec2[20] = "abcdefghijkl";
    assert_true(pp_elf_parse_debuglink(sec2, sizeof sec2, name, &crc));
    assert_false(pp_elf_parse_debuglink(sec2, 19, name, &crc));
    /* Unterminated, empty, or not a base name. */
    unsigned char full[8];
    memset(full, 'a', sizeof full);
    assert_false(pp_elf_parse_debuglink(full, sizeof full, name, &crc));
    unsigned char empty[8] = { 0 };
    assert_false(pp_elf_parse_debuglink(empty, sizeof empty, name, &crc));
    unsigned char dir[16] = "../etc/x";
    assert_false(pp_elf_parse_debuglink(dir, sizeof dir, name, &crc));
    unsigned char dots[8] = "..";
    assert_false(pp_elf_parse_debuglink(dots, sizeof dots, name, &crc));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_return_address_adjustment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manual_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symbolize_oom, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_shared_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_same_synthetic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_same_real, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mappings_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_demangle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debuglink_parse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
