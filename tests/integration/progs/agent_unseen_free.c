/*
 * agent_unseen_free.c - frees the agent cannot see (issue 13's one-operation
 * insert): site_lost allocates N blocks and hands them back through glibc's
 * __libc_free, past the interposed free(); site_reuse then allocates N
 * blocks of the same size, which glibc serves from the same addresses, and
 * frees them normally; site_keep keeps KEEP blocks live to the end.
 * At HEAPWATCH_RATE=1 the exit profile must show site_lost's blocks gone
 * (each was replaced in the live map by a site_reuse block at its address
 * and counted freed then), site_reuse's gone, and site_keep's in use.
 * Prints "reused R" (how many site_reuse blocks got a site_lost address),
 * so the test knows the reuse really happened.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define N 200
#define KEEP 7
#define SIZE 40
#define NOINLINE __attribute__((noinline))

extern void __libc_free(void *);

static void *lost[N], *reuse[N], *keep[KEEP];

NOINLINE static void site_lost(void)
{
    for (int i = 0; i < N; i++) lost[i] = malloc(SIZE);
    for (int i = N; i-- > 0;) __libc_free(lost[i]);   /* unseen by the agent */
}

NOINLINE static void site_reuse(void)
{
    for (int i = 0; i < N; i++) reuse[i] = malloc(SIZE);
}

NOINLINE static void site_keep(void)
{
    for (int i = 0; i < KEEP; i++) keep[i] = malloc(SIZE);
}

int main(void)
{
    site_keep();
    site_lost();
    site_reuse();
    int reused = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (reuse[i] == lost[j]) reused++;
    for (int i = 0; i < N; i++) free(reuse[i]);
    printf("reused %d\n", reused);
    __asm__ volatile("" ::"r"(keep) : "memory");
    return 0;
}
