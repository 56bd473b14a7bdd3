/*
 * agent_solo.c - the live map's solo mode (agent/live.c) ending under
 * load, for tests/integration/agent_profiles.sh.
 *
 *   agent_solo CHILDREN
 *
 * Runs CHILDREN forked children one after the other (each a process the
 * agent starts in solo again) and exits 0 when every child did. Each
 * child, under HEAPWATCH_RATE=1 (every block in the live map):
 *   - allocates BLOCKS blocks alone (the main thread owns the shards and
 *     changes them without their locks);
 *   - starts THREADS threads while it goes on allocating and freeing:
 *     each thread frees its share of the main thread's blocks (frees of
 *     another thread's samples) and churns blocks of its own, so that the
 *     first change by another thread, which ends solo, meets the main
 *     thread inside changes of its own;
 *   - keeps KEEP blocks of each thread and of its own live, and exits.
 * Then the child's summary must say sampled_live == live_objects (every
 * live block is in the map once: no change lost or doubled in the
 * handover), which the script checks.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

enum { BLOCKS = 20000, THREADS = 4, CHURN = 20000, KEEP = 100 };

static void *blocks[BLOCKS];
static void *kept[THREADS + 1][KEEP];
static volatile int go;

/* churn: n allocations of varied sizes, each freed at once but the last
 * KEEP, which stay in keep[]. */
static void churn(unsigned seed, int n, void **keep)
{
    for (int i = 0; i < n; i++) {
        void *p = malloc(16 + (seed = seed * 1103515245u + 12345u) % 400);
        if (!p) abort();
        if (i >= n - KEEP) keep[i - (n - KEEP)] = p;
        else free(p);
    }
}

static void *thread_main(void *arg)
{
    int me = (int)(long)arg;
    while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE)) { }
    for (int i = me; i < BLOCKS; i += THREADS) free(blocks[i]);   /* the main thread's */
    churn(1000u + (unsigned)me, CHURN, kept[me]);
    return NULL;
}

static int child(void)
{
    for (int i = 0; i < BLOCKS; i++)
        if (!(blocks[i] = malloc(24 + i % 200))) abort();
    pthread_t th[THREADS];
    for (long i = 0; i < THREADS; i++)
        if (pthread_create(&th[i], NULL, thread_main, (void *)i) != 0) return 1;
    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    churn(7u, CHURN, kept[THREADS]);   /* meanwhile, the main thread's own changes */
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    return 0;
}

int main(int argc, char **argv)
{
    int children = argc > 1 ? atoi(argv[1]) : 1;
    for (int c = 0; c < children; c++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) _exit(child());
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "agent_solo: child %d failed (status %d)\n", c, st);
            return 1;
        }
    }
    return 0;
}
