/*
 * life_exit.c - the process ends while other threads allocate.
 *
 * usage: life_exit MODE
 *   thread-exit    8 threads allocate and free in tight loops; a 9th calls
 *                  exit(3) once each of them has done some work
 *   main-return    8 detached threads allocate; main returns 4 meanwhile
 *   pthread-exit   main calls pthread_exit; the 8 threads finish a bounded
 *                  amount of work and the process exits 0 after the last
 *
 * The exit summary is written while the threads still allocate (all but
 * pthread-exit): nothing may crash or hang, and the status is the one the
 * program gave. stdout: one line, the same with and without the agent.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>

#include "life_common.h"

#define THREADS 8
#define WARMUP 2000          /* iterations each thread does before the exit */
#define BOUNDED 20000        /* iterations per thread in pthread-exit mode */

static int started;          /* threads past their warm-up (atomic) */
static int bounded;          /* pthread-exit: stop after BOUNDED iterations */

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u;
    void *ring[64] = { 0 };
    for (long i = 0;; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned slot = (seed >> 8) % 64;
        free(ring[slot]);
        switch ((seed >> 16) % 4) {
        case 0: ring[slot] = malloc(1 + (seed >> 4) % 4000); break;
        case 1: ring[slot] = calloc(1 + (seed >> 4) % 20, 16); break;
        case 2: ring[slot] = realloc(NULL, 1 + (seed >> 4) % 100000); break;
        default: ring[slot] = aligned_alloc(64, 64 * (1 + (seed >> 4) % 8)); break;
        }
        if (i == WARMUP) __atomic_add_fetch(&started, 1, __ATOMIC_RELEASE);
        if (bounded && i == BOUNDED) break;
    }
    for (int s = 0; s < 64; s++) free(ring[s]);
    return NULL;
}

static void wait_warm(void)
{
    while (__atomic_load_n(&started, __ATOMIC_ACQUIRE) < THREADS) sched_yield();
}

static void *exiter(void *arg)
{
    (void)arg;
    wait_warm();
    exit(3);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    bounded = strcmp(mode, "pthread-exit") == 0;
    if (strcmp(mode, "thread-exit") && strcmp(mode, "main-return") && !bounded) {
        fprintf(stderr, "usage: life_exit thread-exit|main-return|pthread-exit\n");
        return 2;
    }
    printf("life_exit %s\n", mode);
    fflush(stdout);
    for (long i = 0; i < THREADS; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, worker, (void *)(i + 1)) != 0) return 10;
    }
    if (!strcmp(mode, "thread-exit")) {
        pthread_t t;
        if (pthread_create(&t, &attr, exiter, NULL) != 0) return 10;
        for (;;) pause();       /* the exiter ends the process */
    }
    if (!strcmp(mode, "main-return")) {
        wait_warm();
        return 4;
    }
    pthread_exit(NULL);         /* the process ends with the last thread: 0 */
}
