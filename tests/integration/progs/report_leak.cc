/*
 * report_leak.cc - a program that leaks from known functions, for the
 * report's leaks at exit and peak (tests/integration/tools_leaks.sh).
 *
 *   report_leak [SCALE]
 *
 * In order: churn (allocates and frees 64 MiB, nothing left), peak_holder
 * (holds 96 MiB at once, then frees it all: the peak, not a leak), then
 * the leaks, kept live until exit: leak_from_here (32 MiB in 4 KiB
 * blocks, malloc), leak_via_xmalloc (8 MiB through xmalloc, a wrapper the
 * report must look through), cxx_leak_here (8 MiB through new[], i.e.
 * operator new[] and operator new in libstdc++). SCALE (default 1)
 * multiplies every amount. Prints the ground truth, one line each:
 *
 *   truth FUNCTION BYTES OBJECTS
 *
 * The functions are extern "C" (plain names whatever the demangler) and
 * noinline, so each keeps its frame.
 */
#include <cstdio>
#include <cstdlib>
#include <cstring>

#define NOINLINE __attribute__((noinline))
#define BLOCK 4096

static void **keep;          /* the leaks: live until exit */
static size_t nkeep;

extern "C" {

NOINLINE void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) abort();
    return p;
}

NOINLINE void churn(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *p = static_cast<char *>(malloc(BLOCK));
        if (!p) abort();
        p[0] = static_cast<char>(i);
        free(p);
    }
}

NOINLINE void peak_holder(size_t n)
{
    void **held = static_cast<void **>(calloc(n, sizeof *held));
    if (!held) abort();
    for (size_t i = 0; i < n; i++) {
        held[i] = malloc(BLOCK);
        if (!held[i]) abort();
        memset(held[i], 1, 64);
    }
    for (size_t i = 0; i < n; i++) free(held[i]);
    free(held);
}

NOINLINE void leak_from_here(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        keep[nkeep] = malloc(BLOCK);
        if (!keep[nkeep]) abort();
        memset(keep[nkeep++], 2, 64);
    }
}

NOINLINE void leak_via_xmalloc(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        keep[nkeep] = xmalloc(BLOCK);
        memset(keep[nkeep++], 3, 64);
    }
}

NOINLINE void cxx_leak_here(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *p = new char[BLOCK];
        memset(p, 4, 64);
        keep[nkeep++] = p;
    }
}

}

int main(int argc, char **argv)
{
    size_t scale = argc > 1 ? strtoul(argv[1], NULL, 10) : 1;
    if (scale < 1 || scale > 64) scale = 1;
    const size_t mib = 1024 * 1024 / BLOCK;   /* blocks per MiB */
    size_t n_leak = 32 * mib * scale, n_x = 8 * mib * scale, n_cxx = 8 * mib * scale;
    keep = static_cast<void **>(malloc((n_leak + n_x + n_cxx) * sizeof *keep));
    if (!keep) abort();
    churn(64 * mib * scale);
    peak_holder(96 * mib * scale);
    leak_from_here(n_leak);
    leak_via_xmalloc(n_x);
    cxx_leak_here(n_cxx);
    printf("truth leak_from_here %zu %zu\n", n_leak * BLOCK, n_leak);
    printf("truth leak_via_xmalloc %zu %zu\n", n_x * BLOCK, n_x);
    printf("truth cxx_leak_here %zu %zu\n", n_cxx * BLOCK, n_cxx);
    printf("truth peak_holder %zu %zu\n", 96 * mib * scale * BLOCK, 96 * mib * scale);
    printf("truth leaks %zu %zu\n", (n_leak + n_x + n_cxx) * BLOCK, n_leak + n_x + n_cxx);
    return 0;
}
