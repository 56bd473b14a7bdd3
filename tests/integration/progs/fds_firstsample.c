/*
 * fds_firstsample.c - the agent's first sample, mid-run, while another
 * thread makes and closes pipes: no descriptor appears or goes.
 *
 * The agent sets libunwind up at the process's first sample, not at start
 * (agent/unwind.c, as_ready), and libunwind's set-up would open a pipe for
 * a validation the agent never uses; the agent makes that pipe2 fail
 * (agent/unwind_as.c, "The validation pipe"). This program takes that
 * moment mid-run: main notes which descriptors 0..1023 are open, then
 * allocates BLOCKS blocks of 16 MiB (mapped by glibc, never touched) in
 * big_alloc, so that at HEAPWATCH_RATE=268435456 (256 MiB) the first
 * sample falls here (16 expected; the start-up's few kilobytes almost never
 * sample), while a thread calls pipe2 and closes both ends in a loop. Then
 * it stops the thread and looks again.
 *
 * stdout (the same with and without the agent): "pipe2 calls: ok",
 * "descriptors: same"; exit 0. A pipe2 of the program that failed, or a
 * descriptor opened or closed across the allocations, says so and exits 1.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_FD 1024
#define BLOCKS 256
#define BLOCK (16u << 20)

static volatile int stop;
static unsigned long pipes_made, pipes_failed;

static void *pipe_churn(void *arg)
{
    (void)arg;
    while (!stop) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
            pipes_failed++;
            continue;
        }
        __atomic_add_fetch(&pipes_made, 1, __ATOMIC_RELAXED);
        close(p[0]);
        close(p[1]);
    }
    return NULL;
}

static void open_fds(unsigned char *open)
{
    for (int fd = 0; fd < MAX_FD; fd++) open[fd] = fcntl(fd, F_GETFD) != -1;
}

__attribute__((noinline)) static void *big_alloc(void)
{
    void *p = malloc(BLOCK);
    __asm__ volatile("" ::"r"(p) : "memory");   /* kept: not folded with free */
    return p;
}

int main(void)
{
    static unsigned char before[MAX_FD], after[MAX_FD];
    open_fds(before);
    pthread_t th;
    if (pthread_create(&th, NULL, pipe_churn, NULL) != 0) return 2;
    while (!__atomic_load_n(&pipes_made, __ATOMIC_RELAXED) && !__atomic_load_n(&pipes_failed, __ATOMIC_RELAXED))
        sched_yield();   /* the churn runs before the first block */
    for (int i = 0; i < BLOCKS; i++) free(big_alloc());
    stop = 1;
    pthread_join(th, NULL);
    open_fds(after);
    int bad = 0;
    if (pipes_failed || !pipes_made) {
        printf("pipe2 calls: %lu of %lu failed\n", pipes_failed, pipes_made + pipes_failed);
        bad = 1;
    } else {
        printf("pipe2 calls: ok\n");
    }
    if (memcmp(before, after, sizeof before) != 0) {
        printf("descriptors: changed:");
        for (int fd = 0; fd < MAX_FD; fd++)
            if (before[fd] != after[fd]) printf(" %d %s", fd, after[fd] ? "opened" : "closed");
        printf("\n");
        bad = 1;
    } else {
        printf("descriptors: same\n");
    }
    return bad;
}
