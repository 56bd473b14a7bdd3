/*
 * agent_churn.c - the malloc+free churn loop the agent benchmark measures
 * (tests/bench/agent_bench.py, parts 1 and 2). It links nothing of
 * heapwatch: the agent, when wanted, is preloaded.
 *
 * Each iteration of churn_loop is one malloc and one free, sizes cycling
 * through a fixed table of 64 pseudo-random sizes in 16..512 (glibc's
 * tcache serves these, as it serves most small requests of real
 * programs). Two patterns:
 *   pair  p = malloc(size); touch p; free(p): the block is freed at once
 *         (tcache hit on both sides, the cheapest glibc pair);
 *   live  a ring of --live K blocks (default 256) stays allocated: each
 *         iteration frees the oldest block and allocates a new one in its
 *         slot, so frees land in bins other than the next request's and
 *         glibc also goes past the tcache (fastbins, unsorted bin).
 * The ring is filled before churn_loop and emptied after it, so
 * churn_loop itself does exactly N mallocs and N frees.
 *
 * churn_loop is noinline and keeps its name so callgrind can collect
 * inside it only (--collect-atstart=no --toggle-collect=churn_loop).
 *
 * --threads T runs T threads, each its own churn_loop (its own ring), 1
 * runs it on the main thread (no pthread_create: a single-threaded
 * program, as glibc sees it). Each thread times its own loop, by the
 * monotonic clock and by its own CPU-time clock (which leaves out the time
 * the thread was descheduled: the machines are shared); the line printed is
 *   churn pattern=pair threads=T n=N live=K ns_per_pair=X cpu_ns_per_pair=Y checksum=C
 * with X and Y the means over threads of (loop time / N).
 *
 * usage: agent_churn [--pattern pair|live] [--n N] [--threads T] [--live K]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NSIZES 64          /* size table length (a power of two) */
#define MAX_THREADS 64

static size_t sizes[NSIZES];

typedef struct churn_arg_s {
    int live;              /* 0: pair pattern; else the ring size */
    uint64_t n;            /* iterations */
    unsigned seed;         /* where in the size table this thread starts */
    double ns;             /* out: loop time in ns (monotonic clock) */
    double cpu_ns;         /* out: loop time in ns on this thread's CPU clock */
    uint64_t checksum;     /* out: keeps the work observable */
} churn_arg_t;

/* keep: makes p observable, so the compiler cannot drop a malloc/free pair. */
static inline void keep(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static double now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void fill_sizes(void)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < NSIZES; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sizes[i] = 16 + (size_t)(x % 497);   /* 16..512 */
    }
}

/* churn_loop_pair: n iterations of p = malloc; touch; free. */
__attribute__((noinline)) uint64_t churn_loop_pair(uint64_t n, unsigned seed);
__attribute__((noinline)) uint64_t churn_loop_pair(uint64_t n, unsigned seed)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        size_t sz = sizes[(i + seed) & (NSIZES - 1)];
        unsigned char *p = malloc(sz);
        if (!p) abort();
        p[0] = (unsigned char)i;
        keep(p);
        sum += p[0];
        free(p);
    }
    return sum;
}

/* churn_loop_live: n iterations of free(ring[j]); ring[j] = malloc. */
__attribute__((noinline)) uint64_t churn_loop_live(uint64_t n, unsigned seed, unsigned char **ring, int k);
__attribute__((noinline)) uint64_t churn_loop_live(uint64_t n, unsigned seed, unsigned char **ring, int k)
{
    uint64_t sum = 0;
    int j = 0;
    for (uint64_t i = 0; i < n; i++) {
        free(ring[j]);
        size_t sz = sizes[(i * 7 + seed) & (NSIZES - 1)];
        unsigned char *p = malloc(sz);
        if (!p) abort();
        p[0] = (unsigned char)i;
        keep(p);
        sum += p[0];
        ring[j] = p;
        if (++j == k) j = 0;
    }
    return sum;
}

/* churn_loop: the measured region (callgrind toggles collection on it). */
__attribute__((noinline)) uint64_t churn_loop(churn_arg_t *a, unsigned char **ring);
__attribute__((noinline)) uint64_t churn_loop(churn_arg_t *a, unsigned char **ring)
{
    if (a->live) return churn_loop_live(a->n, a->seed, ring, a->live);
    return churn_loop_pair(a->n, a->seed);
}

static pthread_barrier_t start_line;
static int use_barrier;

static void *churn_thread(void *arg)
{
    churn_arg_t *a = arg;
    unsigned char **ring = NULL;
    if (a->live) {
        ring = malloc((size_t)a->live * sizeof *ring);
        if (!ring) abort();
        for (int i = 0; i < a->live; i++) {
            ring[i] = malloc(sizes[(unsigned)i & (NSIZES - 1)]);
            if (!ring[i]) abort();
        }
    }
    if (use_barrier) pthread_barrier_wait(&start_line);
    double t0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    a->checksum = churn_loop(a, ring);
    a->cpu_ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    a->ns = now_ns(CLOCK_MONOTONIC) - t0;
    if (ring) {
        for (int i = 0; i < a->live; i++) free(ring[i]);
        free(ring);
    }
    return NULL;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: agent_churn [--pattern pair|live] [--n N] [--threads T] [--live K]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    uint64_t n = 1000000, threads = 1, live = 256;
    int pattern_live = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--pattern")) {
            if (!strcmp(v, "pair")) pattern_live = 0;
            else if (!strcmp(v, "live")) pattern_live = 1;
            else usage();
        } else if (!strcmp(k, "--n")) {
            if (parse_u64(v, &n)) usage();
        } else if (!strcmp(k, "--threads")) {
            if (parse_u64(v, &threads) || threads < 1 || threads > MAX_THREADS) usage();
        } else if (!strcmp(k, "--live")) {
            if (parse_u64(v, &live) || live < 1 || live > 1000000) usage();
        } else {
            usage();
        }
    }
    fill_sizes();

    churn_arg_t args[MAX_THREADS];
    memset(args, 0, sizeof args);
    for (unsigned t = 0; t < threads; t++) {
        args[t].live = pattern_live ? (int)live : 0;
        args[t].n = n;
        args[t].seed = t * 13;
    }
    if (threads == 1) {
        churn_thread(&args[0]);
    } else {
        pthread_t tid[MAX_THREADS];
        use_barrier = 1;
        pthread_barrier_init(&start_line, NULL, (unsigned)threads);
        for (unsigned t = 0; t < threads; t++)
            if (pthread_create(&tid[t], NULL, churn_thread, &args[t]) != 0) {
                fprintf(stderr, "agent_churn: pthread_create failed\n");
                return 1;
            }
        for (unsigned t = 0; t < threads; t++) pthread_join(tid[t], NULL);
        pthread_barrier_destroy(&start_line);
    }

    double ns = 0, cpu_ns = 0;
    uint64_t sum = 0;
    for (unsigned t = 0; t < threads; t++) {
        ns += args[t].ns;
        cpu_ns += args[t].cpu_ns;
        sum += args[t].checksum;
    }
    double per = n ? 1.0 / (double)threads / (double)n : 0.0;
    printf("churn pattern=%s threads=%" PRIu64 " n=%" PRIu64 " live=%" PRIu64
           " ns_per_pair=%.3f cpu_ns_per_pair=%.3f checksum=%" PRIu64 "\n",
           pattern_live ? "live" : "pair", threads, n, pattern_live ? live : 0, ns * per,
           cpu_ns * per, sum);
    return 0;
}
