/*
 * pprof_edge.c - writes the edge-case profiles that
 * tests/integration/pprof_gotool.sh feeds to the real `go tool pprof`:
 *
 *   empty.pb.gz     heap types and mappings, no samples
 *   depth1.pb.gz    one sample of depth 1 (named edge_leaf)
 *   depth128.pb.gz  one sample of depth 128 (real recursion in edge_rec)
 *   many.pb.gz      100000 distinct stacks of depth 32
 *   paths.pb.gz     a library loaded from a long (>1000 bytes), non-ASCII
 *                   path, and one linked without a build ID
 *
 * usage: pprof_edge OUTDIR DLLIB   (DLLIB: libpprof_sites_dl.so to copy)
 */
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pprof/pprof.h"
#include "pprof_sites.h"

static void *frames[256];
static int nframes;

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

static map_allocator_t alloc = { t_alloc, t_free, NULL };

static void check(pprof_err_t err, const char *what)
{
    if (err != PPROF_OK) {
        fprintf(stderr, "pprof_edge: %s: %s\n", what, pprof_strerror(err));
        exit(1);
    }
}

/* record: keeps the caller's stack (frames[0] = the caller). */
__attribute__((noinline)) static void *record(size_t n)
{
    void *f[257];
    int d = backtrace(f, 257);
    nframes = d - 1;
    memcpy(frames, f + 1, sizeof(void *) * (size_t)nframes);
    return malloc(n);
}

__attribute__((noinline)) static void edge_leaf(void)
{
    free(record(16));
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void edge_rec(int n)
{
    if (n == 0)
        edge_leaf();
    else
        edge_rec(n - 1);
    __asm__ volatile("" ::: "memory");
}

static pprof_builder_t *heap_builder(void)
{
    pprof_builder_t *b;
    check(pprof_builder_new(&alloc, &b), "new");
    check(pprof_builder_set_heap_types(b, 1), "types");
    return b;
}

static void finish(pprof_builder_t *b, const char *dir, const char *name)
{
    check(pprof_builder_add_mappings_from_proc(b), "mappings");
    check(pprof_builder_symbolize(b, NULL), "symbolize");
    check(pprof_builder_write_gz(b, dir, name), name);
    pprof_builder_free(b);
}

static void add_frames(pprof_builder_t *b, int depth)
{
    uint64_t pcs[256];
    for (int i = 0; i < depth; i++) pcs[i] = (uint64_t)(uintptr_t)frames[i];
    pprof_heap_counts_t c = { 1, 16, 1, 16, 0 };
    check(pprof_heap_add(b, pcs, (size_t)depth, &c), "add");
}

/* long_utf8_dir: creates and returns a > 1000-byte directory path whose
 * components are non-ASCII (UTF-8). */
static char *long_utf8_dir(const char *base)
{
    static const char comp[] = "d\xc3\xa9j\xc3\xa0-vu_\xe6\xb5\x8b\xe8\xaf\x95_\xf0\x9f\x94\xa5_"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    char *path = malloc(4096);
    strcpy(path, base);
    while (strlen(path) < 1100) {
        strcat(path, "/");
        strcat(path, comp);
        if (mkdir(path, 0755) != 0 && access(path, F_OK) != 0) {
            perror("mkdir");
            exit(1);
        }
    }
    return path;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: pprof_edge OUTDIR DLLIB\n");
        return 2;
    }
    const char *dir = argv[1];

    finish(heap_builder(), dir, "empty.pb.gz");

    edge_leaf();
    pprof_builder_t *b = heap_builder();
    add_frames(b, 1);
    finish(b, dir, "depth1.pb.gz");

    edge_rec(200);
    if (nframes < 128) {
        fprintf(stderr, "pprof_edge: only %d frames\n", nframes);
        return 1;
    }
    b = heap_builder();
    add_frames(b, 128);
    finish(b, dir, "depth128.pb.gz");

    /* 100k distinct stacks: distinct leaves, callers from a pool of 4096
     * addresses inside edge_rec's neighbourhood (real code addresses). */
    b = heap_builder();
    uint64_t base = (uint64_t)(uintptr_t)frames[1];
    uint64_t rng = 1;
    for (uint64_t i = 0; i < 100000; i++) {
        uint64_t pcs[32];
        pcs[0] = 0x10000000 + i * 4;
        for (int d = 1; d < 32; d++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            pcs[d] = base + (rng >> 33) % 4096;
        }
        pprof_heap_counts_t c = { 1, 64, 1, 64, 0 };
        check(pprof_heap_add(b, pcs, 32, &c), "add many");
    }
    finish(b, dir, "many.pb.gz");

    /* A long non-ASCII path, and a library without build ID. */
    char *ldir = long_utf8_dir(dir);
    char *lib = malloc(strlen(ldir) + 64);
    sprintf(lib, "%s/libd\xc3\xa9j\xc3\xa0_\xe6\xb5\x8b.so", ldir);
    int in = open(argv[2], O_RDONLY), out = open(lib, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (in < 0 || out < 0) {
        perror("copy");
        return 1;
    }
    char buf[65536];
    ssize_t r;
    while ((r = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)r) != r) return 1;
    close(in);
    close(out);
    void *h = dlopen(lib, RTLD_NOW);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    void *(*dl_alloc)(size_t, sites_alloc_fn) =
        (void *(*)(size_t, sites_alloc_fn))dlsym(h, "pprof_dl_alloc");
    b = heap_builder();
    free(dl_alloc(32, record));
    add_frames(b, nframes);
    free(pprof_nobid_alloc(48, record));
    add_frames(b, nframes);
    finish(b, dir, "paths.pb.gz");
    printf("%s\n", lib);
    dlclose(h);
    free(lib);
    free(ldir);
    return 0;
}
