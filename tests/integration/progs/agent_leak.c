/*
 * agent_leak.c - live-object growth at a known rate, for the alert tests
 * (tests/integration/agent_alerts.sh).
 *
 *   agent_leak leak RATE SECS    leaks RATE objects/s from leak_node (
 *                                512 bytes each) for SECS seconds, while
 *                                churn_work allocates and frees ~200k
 *                                objects/s with a constant live set
 *   agent_leak load N SECS       a load phase: N objects kept in the first
 *                                ~second (load_table), then steady churn
 *
 * The leak is paced by the clock in 10 ms steps, so the rate holds on a
 * loaded machine. Prints what it did.
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

struct node { struct node *next; char pad[504]; };
static struct node *leaked;
static long nleaked;

NOINLINE void leak_node(void)
{
    struct node *n = malloc(sizeof *n);
    n->next = leaked;
    leaked = n;
    nleaked++;
}

static void *ring[1024];

/* churn_work: n allocations, each replacing one of 1024 live blocks (a
 * small live set: built at start, it adds ~340 objects/s to a 3 s window). */
NOINLINE void churn_work(long n)
{
    static unsigned long k;
    for (long i = 0; i < n; i++, k++) {
        unsigned slot = (unsigned)(k * 2654435761u) & 1023;
        free(ring[slot]);
        ring[slot] = malloc(16 + (k & 127));
    }
}

/* The table is read at the end (load_checksum): otherwise the compiler
 * may drop allocations whose results are never used. */
static void **table;

NOINLINE void load_table(long n)
{
    table = malloc((size_t)n * sizeof *table);
    for (long i = 0; i < n; i++) table[i] = malloc(32);
}

static unsigned long load_checksum(long n)
{
    unsigned long sum = 0;
    for (long i = 0; i < n; i++) sum += table[i] != NULL;
    return sum;
}

static void run(double rate, double secs)
{
    double start = now(), owed = 0, last = start;
    while (now() - start < secs) {
        double t = now();
        owed += (t - last) * rate;
        last = t;
        for (; owed >= 1; owed--) leak_node();
        churn_work(2000);
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "leak")) {
        run(atof(argv[2]), atof(argv[3]));
        printf("leaked %ld objects\n", nleaked);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "load")) {
        load_table(atol(argv[2]));
        run(0, atof(argv[3]));
        printf("loaded %lu objects\n", load_checksum(atol(argv[2])));
        return 0;
    }
    fprintf(stderr, "usage: agent_leak leak RATE SECS | load N SECS\n");
    return 2;
}
