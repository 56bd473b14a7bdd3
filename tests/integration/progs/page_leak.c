/*
 * page_leak.c - a program with a leak to find on the report page
 * (tests/integration/report_page.sh):
 *
 *   page_leak SECS   for SECS seconds (paced in 10 ms steps): leak_from_here
 *                    keeps 2000 blocks of 1 KiB a second, churn_here
 *                    allocates and frees a small rotating set; halfway,
 *                    hold_peak holds 48 MiB for 0.2 s and frees it.
 *   page_leak 0 N    at once: leak_from_here keeps N blocks of 1 KiB,
 *                    churn_here runs 1000 times; no peak (for runs of
 *                    hundreds of small processes).
 *
 * Leaks and peak come from distinct, non-inlined functions, so the page's
 * flame graphs can be checked for them by name. Prints what it leaked.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void **leaked;
static long nleaked, leaked_cap;

NOINLINE void leak_from_here(long n)
{
    for (long i = 0; i < n && nleaked < leaked_cap; i++) {
        leaked[nleaked] = malloc(1024);
        memset(leaked[nleaked], (int)i, 1024);
        nleaked++;
    }
}

static void *ring[256];

NOINLINE void churn_here(long n)
{
    static unsigned long k;
    for (long i = 0; i < n; i++, k++) {
        unsigned slot = (unsigned)(k * 2654435761u) & 255;
        free(ring[slot]);
        ring[slot] = malloc(32 + (k & 255));
    }
}

NOINLINE void hold_peak(void)
{
    enum { N = 48 };
    void *blocks[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(1 << 20);
        memset(blocks[i], i, 1 << 20);
    }
    struct timespec ts = { 0, 200 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    for (int i = 0; i < N; i++) free(blocks[i]);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 3;
    long once = argc > 2 ? atol(argv[2]) : 50;
    leaked_cap = (long)(secs * 2000) + (once > 0 ? once : 0) + 100;
    leaked = calloc((size_t)leaked_cap, sizeof *leaked);
    if (!leaked) return 1;
    if (secs <= 0) {
        leak_from_here(once);
        churn_here(1000);
    }
    double t0 = now(), next = t0;
    int peaked = 0;
    while (now() - t0 < secs) {
        leak_from_here(20);   /* 2000/s in 10 ms steps */
        churn_here(500);
        if (!peaked && now() - t0 >= secs / 2) {
            hold_peak();
            peaked = 1;
        }
        next += 0.01;
        double wait = next - now();
        if (wait > 0) {
            struct timespec ts = { 0, (long)(wait * 1e9) };
            nanosleep(&ts, NULL);
        }
    }
    printf("page_leak: leaked %ld blocks of 1 KiB from leak_from_here\n", nleaked);
    return 0;
}
