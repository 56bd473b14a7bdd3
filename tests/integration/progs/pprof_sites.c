/*
 * pprof_sites.c - a test program with known allocation sites that records
 * its own stacks (glibc backtrace()) and writes a heap profile through the
 * pprof module, for tests/integration/pprof_gotool.sh.
 *
 * usage: pprof_sites OUTDIR NAME [options]
 *   --scale N        multiply every site's allocation count by N (default 1)
 *   --rate R         the profile's sampling rate (default 1: values exact;
 *                    the raw counts are then unsampled with Go's formula)
 *   --delete-self    unlink our own executable before writing the profile
 *   --dl LIB         dlopen a copy of LIB, delete the copy, allocate in it
 *   --cache          symbolize twice through one symbol cache (reuse check)
 *
 * Sites (per unit of scale):
 *   site_static_c    static C function       10 x 1000 B, 4 freed
 *   site_global_c    exported C function      8 x  700 B, none freed
 *   hwtest::Widget::grow  C++ method         20 x 2048 B, none freed
 *   pprof_lib_alloc  shared library           5 x 4096 B, all freed
 *   pprof_nobid_alloc  library w/o build ID   3 x  512 B, none freed
 *   pprof_dl_alloc   dlopen'ed deleted copy   7 x  300 B, none freed
 *
 * Test programs may use malloc and stdio; the pprof module itself does not.
 */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pprof/pprof.h"
#include "pprof_sites.h"

#define MAX_DEPTH 64
#define MAX_STACKS 64
#define MAX_LIVE 100000

typedef struct stack_rec {
    uint64_t pcs[MAX_DEPTH];
    int depth;
    pprof_heap_counts_t c;
} stack_rec;

static stack_rec stacks[MAX_STACKS];
static int nstacks;
static struct {
    void *p;
    int stack;
    size_t n;
} live[MAX_LIVE];
static int nlive;

__attribute__((noinline)) void *sites_alloc(size_t n)
{
    void *frames[MAX_DEPTH + 1];
    int depth = backtrace(frames, MAX_DEPTH + 1);
    /* frames[0] is inside sites_alloc: the stack starts at its caller. */
    stack_rec key;
    memset(&key, 0, sizeof(key));
    key.depth = depth - 1;
    for (int i = 1; i < depth; i++) key.pcs[i - 1] = (uint64_t)(uintptr_t)frames[i];
    int s;
    for (s = 0; s < nstacks; s++)
        if (stacks[s].depth == key.depth &&
            memcmp(stacks[s].pcs, key.pcs, sizeof(uint64_t) * (size_t)key.depth) == 0)
            break;
    if (s == nstacks) {
        if (nstacks == MAX_STACKS) abort();
        stacks[nstacks++] = key;
    }
    stacks[s].c.alloc_objects++;
    stacks[s].c.alloc_bytes += (int64_t)n;
    stacks[s].c.inuse_objects++;
    stacks[s].c.inuse_bytes += (int64_t)n;
    void *p = malloc(n);
    if (nlive == MAX_LIVE) abort();
    live[nlive].p = p;
    live[nlive].stack = s;
    live[nlive].n = n;
    nlive++;
    return p;
}

void sites_free(void *p)
{
    for (int i = 0; i < nlive; i++) {
        if (live[i].p == p) {
            stacks[live[i].stack].c.inuse_objects--;
            stacks[live[i].stack].c.inuse_bytes -= (int64_t)live[i].n;
            live[i] = live[--nlive];
            break;
        }
    }
    free(p);
}

__attribute__((noinline)) static void *site_static_c(size_t n)
{
    void *p = sites_alloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

__attribute__((noinline)) void *site_global_c(size_t n)
{
    void *p = sites_alloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

/* A malloc-backed allocator for the module (the agent uses its arena). */
static void *t_alloc(void *ctx, size_t n)
{
    (void)ctx;
    return calloc(1, n);
}

static void t_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static void die(const char *what, pprof_err_t err)
{
    fprintf(stderr, "pprof_sites: %s: %s\n", what, pprof_strerror(err));
    exit(1);
}

static void *dl_copy(const char *lib, void **fnp)
{
    char tmpl[] = "/tmp/pprof_sites_dl.XXXXXX";
    int out = mkstemp(tmpl);
    int in = open(lib, O_RDONLY);
    if (out < 0 || in < 0) {
        perror("dl_copy");
        exit(1);
    }
    char buf[65536];
    ssize_t r;
    while ((r = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)r) != r) abort();
    close(in);
    close(out);
    void *h = dlopen(tmpl, RTLD_NOW);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        exit(1);
    }
    unlink(tmpl);
    *fnp = dlsym(h, "pprof_dl_alloc");
    if (!*fnp) abort();
    return h;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pprof_sites OUTDIR NAME [--scale N] [--rate R] "
                        "[--delete-self] [--dl LIB] [--cache]\n");
        return 2;
    }
    const char *outdir = argv[1], *name = argv[2], *dl = NULL;
    int scale = 1, delete_self = 0, use_cache = 0;
    long rate = 1;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--scale") && i + 1 < argc) scale = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rate") && i + 1 < argc) rate = atol(argv[++i]);
        else if (!strcmp(argv[i], "--delete-self")) delete_self = 1;
        else if (!strcmp(argv[i], "--dl") && i + 1 < argc) dl = argv[++i];
        else if (!strcmp(argv[i], "--cache")) use_cache = 1;
        else {
            fprintf(stderr, "pprof_sites: unknown option %s\n", argv[i]);
            return 2;
        }
    }

    void *keep[4096];
    int nkeep = 0;
    for (int k = 0; k < scale; k++) {
        void *tofree[4];
        for (int i = 0; i < 10; i++) {
            void *p = site_static_c(1000);
            if (i < 4) tofree[i] = p;
            else keep[nkeep++] = p;
        }
        for (int i = 0; i < 4; i++) sites_free(tofree[i]);
        for (int i = 0; i < 8; i++) keep[nkeep++] = site_global_c(700);
        for (int i = 0; i < 20; i++) keep[nkeep++] = sites_cxx_alloc(2048);
        for (int i = 0; i < 5; i++) sites_free(pprof_lib_alloc(4096, sites_alloc));
        for (int i = 0; i < 3; i++) keep[nkeep++] = pprof_nobid_alloc(512, sites_alloc);
    }
    void *dlh = NULL;
    if (dl) {
        void *fn;
        dlh = dl_copy(dl, &fn);
        void *(*f)(size_t, sites_alloc_fn) = (void *(*)(size_t, sites_alloc_fn))fn;
        for (int k = 0; k < scale; k++)
            for (int i = 0; i < 7; i++) keep[nkeep++] = f(300, sites_alloc);
    }

    if (delete_self) {
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0) abort();
        self[n] = '\0';
        if (unlink(self) != 0) {
            perror("unlink self");
            return 1;
        }
    }

    map_allocator_t a = { t_alloc, t_free, NULL };
    pprof_builder_t *b;
    pprof_err_t err = pprof_builder_new(&a, &b);
    if (err) die("new", err);
    if ((err = pprof_builder_set_heap_types(b, rate))) die("heap types", err);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pprof_builder_set_time(b, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, 0);
    for (int s = 0; s < nstacks; s++) {
        /* At rate R the recorded counts stand for sampled ones: unsample. */
        if ((err = pprof_heap_add(b, stacks[s].pcs, (size_t)stacks[s].depth, &stacks[s].c)))
            die("heap_add", err);
    }
    if ((err = pprof_builder_add_mappings_from_proc(b))) die("mappings", err);
    pprof_symcache_t *cache = NULL;
    if (use_cache && (err = pprof_symcache_new(&a, &cache))) die("symcache", err);
    if ((err = pprof_builder_symbolize(b, cache))) die("symbolize", err);
    if (cache) {
        pprof_symcache_stats_t s1, s2;
        pprof_symcache_get_stats(cache, &s1);
        if ((err = pprof_builder_symbolize(b, cache))) die("symbolize again", err);
        pprof_symcache_get_stats(cache, &s2);
        if (s1.files != s2.files || s1.tables != s2.tables || s1.tables == 0) {
            fprintf(stderr, "pprof_sites: cache not reused (%zu/%zu files, %zu/%zu tables)\n",
                    s1.files, s2.files, s1.tables, s2.tables);
            return 1;
        }
        fprintf(stderr, "pprof_sites: cache: %zu files, %zu tables, %zu symbols, %zu bytes\n",
                s2.files, s2.tables, s2.symbols, s2.bytes);
        pprof_symcache_free(cache);
    }
    if ((err = pprof_builder_write_gz(b, outdir, name))) die("write", err);
    pprof_builder_free(b);
    for (int i = 0; i < nkeep; i++) sites_free(keep[i]);
    if (dlh) dlclose(dlh);
    return 0;
}
