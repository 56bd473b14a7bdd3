/*
 * pprof_bench.c - cost of building and writing heap profiles, and of
 * symbolizing, with the release objects (-O2).
 *
 *   build+write  1k, 10k, 100k distinct stacks of depth 32: time to add the
 *                samples, time to encode + gzip + write atomically, and
 *                peak memory = the allocator's high-water mark (every byte
 *                the module holds, zlib's state included). Two shapes:
 *                "shared" (callers drawn from 4096 frames, as real programs
 *                share most of their frames) and "distinct" (every frame a
 *                new address: 32 locations per stack, the worst case).
 *   symbolize    a process mapping libc, libstdc++ and libz (and this
 *                binary): 20000 locations spread over their code;
 *                /proc/self/maps, a cold symbolization (ELF files mapped,
 *                symbol tables parsed) and a warm one (cache reused).
 *   once         naming N addresses (1 to 4096) in one large file not
 *                cached (cc1, a .symtab of ~29k functions, or this
 *                binary's libc when gcc is missing), through a manual
 *                mapping: a load and sort of its table
 *                (pprof_builder_symbolize with a fresh cache) against one
 *                pass (pprof_builder_symbolize_once), medians of 9.
 *
 * Target (issue 3): 10k stacks written in under 100 ms with under 64 MiB.
 * usage: pprof_bench [OUTDIR]   (default /tmp)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "pprof/pprof.h"

/* A malloc-backed allocator that tracks the high-water mark. */
typedef struct hw_s {
    size_t cur, peak;
} hw_t;

static void *hw_alloc(void *ctx, size_t n)
{
    hw_t *h = ctx;
    size_t *p = calloc(1, n + 16);
    if (!p) return NULL;
    p[0] = n;
    h->cur += n;
    if (h->cur > h->peak) h->peak = h->cur;
    return (char *)p + 16;
}

static void hw_free(void *ctx, void *ptr)
{
    hw_t *h = ctx;
    size_t *p = (size_t *)(void *)((char *)ptr - 16);
    h->cur -= p[0];
    free(p);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void check(pprof_err_t e, const char *what)
{
    if (e != PPROF_OK) {
        fprintf(stderr, "pprof_bench: %s: %s\n", what, pprof_strerror(e));
        exit(1);
    }
}

static void bench_build_write(const char *dir, size_t nstacks, int distinct, int reps)
{
    double best_add = 1e18, best_write = 1e18;
    size_t peak = 0, file = 0, locs = 0;
    for (int r = 0; r < reps; r++) {
        hw_t h = { 0, 0 };
        map_allocator_t a = { hw_alloc, hw_free, &h };
        pprof_builder_t *b;
        uint64_t s = 99;
        double t0 = now_ms();
        check(pprof_builder_new(&a, &b), "new");
        check(pprof_builder_set_heap_types(b, 524288), "types");
        for (size_t i = 0; i < nstacks; i++) {
            uint64_t pcs[32];
            pcs[0] = 0x400000 + i * 16;
            for (int d = 1; d < 32; d++)
                pcs[d] = distinct ? 0x10000000 + (i * 32 + (size_t)d) * 16
                                  : 0x800000 + (rng_next(&s) % 4096) * 16;
            pprof_heap_counts_t c = { 3, 3 * 4096, 1, 4096, 0 };
            check(pprof_heap_add(b, pcs, 32, &c), "add");
        }
        double t1 = now_ms();
        check(pprof_builder_write_gz(b, dir, "pprof_bench.pb.gz"), "write");
        double t2 = now_ms();
        pprof_builder_stats_t st;
        pprof_builder_get_stats(b, &st);
        locs = st.locations;
        pprof_builder_free(b);
        if (h.cur != 0) {
            fprintf(stderr, "pprof_bench: leak of %zu bytes\n", h.cur);
            exit(1);
        }
        if (t1 - t0 < best_add) best_add = t1 - t0;
        if (t2 - t1 < best_write) best_write = t2 - t1;
        peak = h.peak;
        struct stat sb;
        char path[4096];
        snprintf(path, sizeof(path), "%s/pprof_bench.pb.gz", dir);
        if (stat(path, &sb) == 0) file = (size_t)sb.st_size;
        unlink(path);
    }
    printf("build+write %-8s %7zu stacks x 32: add %8.2f ms  write %8.2f ms  total %8.2f ms"
           "  peak %7.2f MiB  locations %8zu  file %7.2f MiB\n",
           distinct ? "distinct" : "shared", nstacks, best_add, best_write, best_add + best_write,
           peak / 1048576.0, locs, file / 1048576.0);
}

/* xrange: the r-xp mapping of /proc/self/maps that contains p. */
static int xrange(const void *p, uint64_t *lo, uint64_t *hi)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long s, e;
        char perms[5];
        if (sscanf(line, "%llx-%llx %4s", &s, &e, perms) != 3) continue;
        if ((uint64_t)(uintptr_t)p >= s && (uint64_t)(uintptr_t)p < e && perms[2] == 'x') {
            *lo = s;
            *hi = e;
            found = 1;
        }
    }
    fclose(f);
    return found;
}

static void bench_symbolize(void)
{
    const void *anchors[4];
    anchors[0] = (const void *)(uintptr_t)deflate;                      /* libz */
    anchors[1] = (const void *)(uintptr_t)qsort;                        /* libc */
    anchors[2] = dlsym(RTLD_DEFAULT, "_ZSt9terminatev");                /* libstdc++ */
    anchors[3] = (const void *)(uintptr_t)bench_symbolize;              /* this binary */
    const char *names[4] = { "libz", "libc", "libstdc++", "exe" };
    uint64_t lo[4], hi[4];
    for (int i = 0; i < 4; i++) {
        if (!anchors[i] || !xrange(anchors[i], &lo[i], &hi[i])) {
            fprintf(stderr, "pprof_bench: %s is not mapped\n", names[i]);
            exit(1);
        }
    }
    hw_t h = { 0, 0 };
    map_allocator_t a = { hw_alloc, hw_free, &h };
    pprof_symcache_t *c;
    check(pprof_symcache_new(&a, &c), "symcache");
    double cold = 0, warm = 0, maps = 0;
    size_t named = 0, total = 0;
    for (int pass = 0; pass < 2; pass++) {
        pprof_builder_t *b;
        check(pprof_builder_new(&a, &b), "new");
        check(pprof_builder_set_heap_types(b, 1), "types");
        uint64_t s = 5;
        for (int i = 0; i < 5000; i++) {
            uint64_t pcs[4];
            for (int k = 0; k < 4; k++) pcs[k] = lo[k] + rng_next(&s) % (hi[k] - lo[k]);
            pprof_heap_counts_t cnt = { 1, 8, 1, 8, 0 };
            check(pprof_heap_add(b, pcs, 4, &cnt), "add");
        }
        double t0 = now_ms();
        check(pprof_builder_add_mappings_from_proc(b), "maps");
        double t1 = now_ms();
        check(pprof_builder_symbolize(b, c), "symbolize");
        double t2 = now_ms();
        maps = t1 - t0;
        if (pass == 0) cold = t2 - t1;
        else warm = t2 - t1;
        void *data;
        size_t len;
        check(pprof_builder_encode(b, false, &data, &len), "encode");
        a.free(a.ctx, data);
        pprof_builder_stats_t st;
        pprof_builder_get_stats(b, &st);
        total = st.locations;
        named = st.functions;
        pprof_builder_free(b);
    }
    pprof_symcache_stats_t cs;
    pprof_symcache_get_stats(c, &cs);
    printf("symbolize   libc+libstdc+++libz+exe, %zu locations (%zu functions): /proc/self/maps %.2f ms,"
           " cold %.2f ms, warm %.2f ms; cache %zu files, %zu tables, %zu symbols, %.2f MiB\n",
           total, named, maps, cold, warm, cs.files, cs.tables, cs.symbols, cs.bytes / 1048576.0);
    pprof_symcache_free(c);
}

/* bench_once: see the header. */
static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static void bench_once(void)
{
    const char *path = "/usr/lib/gcc/x86_64-linux-gnu/12/cc1";
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("once        skipped: %s is missing\n", path);
        return;
    }
    /* The first executable PT_LOAD, from the file's headers. */
    unsigned char eh[64];
    uint64_t off = 0, filesz = 0, phoff;
    uint16_t phnum;
    if (fread(eh, 1, 64, f) != 64) exit(1);
    memcpy(&phoff, eh + 32, 8);
    memcpy(&phnum, eh + 56, 2);
    for (unsigned i = 0; i < phnum; i++) {
        unsigned char ph[56];
        uint32_t type, flags;
        if (fseek(f, (long)(phoff + i * 56), SEEK_SET) || fread(ph, 1, 56, f) != 56) exit(1);
        memcpy(&type, ph, 4);
        memcpy(&flags, ph + 4, 4);
        if (type == 1 && (flags & 1)) {
            memcpy(&off, ph + 8, 8);
            memcpy(&filesz, ph + 32, 8);
            break;
        }
    }
    fclose(f);
    const uint64_t base = 0x40000000000ull;
    hw_t h = { 0, 0 };
    map_allocator_t a = { hw_alloc, hw_free, &h };
    printf("once        %s, N addresses in its code, not cached: load+sort vs one pass (ms, median of 9)\n", path);
    size_t ns[] = { 1, 16, 64, 256, 1024, 4096 };
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        double t[2][9];
        size_t named[2] = { 0, 0 };
        for (int rep = 0; rep < 9; rep++) {
            for (int way = 0; way < 2; way++) {
                pprof_builder_t *b;
                check(pprof_builder_new(&a, &b), "new");
                check(pprof_builder_set_heap_types(b, 1), "types");
                uint64_t s = 11 + rep;
                for (size_t i = 0; i < ns[k]; i++) {
                    uint64_t pc = base + rng_next(&s) % filesz + 1;
                    pprof_heap_counts_t cnt = { 1, 8, 1, 8, 0 };
                    check(pprof_heap_add(b, &pc, 1, &cnt), "add");
                }
                pprof_mapping_t m = { base, base + filesz, off, path, NULL };
                check(pprof_builder_add_mapping(b, &m), "mapping");
                pprof_symcache_t *c;
                check(pprof_symcache_new(&a, &c), "symcache");
                double t0 = now_ms();
                check(way ? pprof_builder_symbolize_once(b, c) : pprof_builder_symbolize(b, c), "symbolize");
                t[way][rep] = now_ms() - t0;
                pprof_builder_stats_t st;
                pprof_builder_get_stats(b, &st);
                named[way] = st.functions;
                pprof_symcache_free(c);
                pprof_builder_free(b);
            }
        }
        qsort(t[0], 9, sizeof(double), cmp_double);
        qsort(t[1], 9, sizeof(double), cmp_double);
        printf("once        N=%-5zu load+sort %7.3f ms, one pass %7.3f ms (%.1fx); functions named %zu / %zu\n",
               ns[k], t[0][4], t[1][4], t[0][4] / t[1][4], named[0], named[1]);
    }
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    size_t sizes[3] = { 1000, 10000, 100000 };
    for (int distinct = 0; distinct < 2; distinct++)
        for (int i = 0; i < 3; i++) bench_build_write(dir, sizes[i], distinct, i == 2 ? 2 : 5);
    bench_symbolize();
    bench_once();
    return 0;
}
