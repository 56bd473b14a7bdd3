/*
 * life_threads.c - 200 short-lived threads, created and joined in waves of
 * 20. Each thread allocates its own blocks and frees the blocks a thread
 * of the previous wave allocated (so every free happens on another thread
 * than its malloc, often one that has exited), and counts what it did;
 * main frees the last wave's blocks. The agent's counters must have moved
 * by exactly the sum. Thread blocks are reused, so the summary's
 * thread_blocks stays near one wave, not 200 (checked by the script).
 *
 * glibc allocates a new thread's dynamic TLS vector with calloc (through
 * the agent: that is the process allocating, and is counted) unless the
 * thread reuses a cached stack. So a warm-up wave of idle threads with
 * small stacks fills glibc's stack cache first; the measured waves then
 * reuse those stacks and allocate nothing but their own blocks.
 *
 * Exit status: 0 when exact, 1 otherwise, 77 without the agent.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>

#include "life_common.h"

#define WAVES 10
#define PER_WAVE 20
#define BLOCKS 300

typedef struct {
    void *blocks[BLOCKS];     /* allocated by this thread */
    void **victims;           /* a previous wave's thread's blocks, or NULL */
    uint64_t mallocs, frees, alloc_bytes, free_bytes;
    int id;
} job_t;

static job_t jobs[WAVES][PER_WAVE];

static void *idle(void *arg) { return arg; }

static void *run(void *arg)
{
    job_t *j = arg;
    for (int i = 0; i < BLOCKS; i++) {
        size_t size = 1 + (size_t)((i * 131 + j->id * 17) % 5000);
        void *p = (i % 3 == 0) ? calloc(1, size) : malloc(size);
        if (!p) abort();
        j->mallocs++;
        j->alloc_bytes += malloc_usable_size(p);
        if (i % 7 == 0) {                            /* a realloc: one free, one malloc */
            j->frees++;
            j->free_bytes += malloc_usable_size(p);
            p = realloc(p, size * 3);
            if (!p) abort();
            j->mallocs++;
            j->alloc_bytes += malloc_usable_size(p);
        }
        j->blocks[i] = p;
    }
    if (j->victims) {
        for (int i = 0; i < BLOCKS; i++) {
            j->free_bytes += malloc_usable_size(j->victims[i]);
            j->frees++;
            free(j->victims[i]);
        }
    }
    return NULL;
}

int main(void)
{
    life_require_agent("life_threads");
    printf("# life_threads: %d waves of %d threads\n", WAVES, PER_WAVE);
    fflush(stdout);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t t[PER_WAVE];
    for (int k = 0; k < PER_WAVE; k++)
        if (pthread_create(&t[k], &attr, idle, NULL) != 0) return 1;
    for (int k = 0; k < PER_WAVE; k++) pthread_join(t[k], NULL);

    heapwatch_counters_t before = life_read();
    for (int w = 0; w < WAVES; w++) {
        for (int k = 0; k < PER_WAVE; k++) {
            job_t *j = &jobs[w][k];
            j->id = w * PER_WAVE + k;
            /* wave w frees the blocks of wave w-1, shifted by one thread */
            j->victims = w ? jobs[w - 1][(k + 1) % PER_WAVE].blocks : NULL;
            if (pthread_create(&t[k], &attr, run, j) != 0) {
                life_tap(0, "pthread_create in wave %d", w);
                return 1;
            }
        }
        for (int k = 0; k < PER_WAVE; k++) pthread_join(t[k], NULL);
    }
    uint64_t m = 0, f = 0, ab = 0, fb = 0;
    for (int k = 0; k < PER_WAVE; k++) {           /* main frees the last wave's */
        for (int i = 0; i < BLOCKS; i++) {
            fb += malloc_usable_size(jobs[WAVES - 1][k].blocks[i]);
            f++;
            free(jobs[WAVES - 1][k].blocks[i]);
        }
    }
    for (int w = 0; w < WAVES; w++) {
        for (int k = 0; k < PER_WAVE; k++) {
            m += jobs[w][k].mallocs;
            f += jobs[w][k].frees;
            ab += jobs[w][k].alloc_bytes;
            fb += jobs[w][k].free_bytes;
        }
    }
    life_expect("200 threads in waves, frees on other threads than the mallocs",
                &before, m, f, ab, fb);
    return life_failures ? 1 : 0;
}
