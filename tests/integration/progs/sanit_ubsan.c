/*
 * sanit_ubsan.c - a UBSan-only program (built by safety_sanit.mk with
 * -fsanitize=undefined): UBSan has no allocator of its own, so the agent
 * profiles it normally. It checks the agent's exact counters against its
 * own count of what it allocates and frees (heapwatch_read_counters, found
 * with dlsym: the program also runs bare), as agent_truth.c does, and
 * with argument "overflow" also makes a signed overflow UBSan reports
 * (and recovers from).
 *
 * Output: "counts: mallocs M/M frees F/F alloc_bytes A/A free_bytes B/B"
 * (agent/own) and "agent: yes|no". Exit 0 when the counts matched or there
 * is no agent, 1 otherwise.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"

int main(int argc, char **argv)
{
    void (*rd)(heapwatch_counters_t *) =
        (void (*)(heapwatch_counters_t *))dlsym(RTLD_DEFAULT, "heapwatch_read_counters");
    setvbuf(stdout, NULL, _IONBF, 0);   /* stdio allocates nothing later */
    heapwatch_counters_t before = {0}, after = {0};
    unsigned long long mallocs = 0, frees = 0, abytes = 0, fbytes = 0;
    static void *blocks[3000];
    if (rd) rd(&before);
    for (int i = 0; i < 3000; i++) {
        blocks[i] = malloc((size_t)(1 + i % 500));
        mallocs++;
        abytes += malloc_usable_size(blocks[i]);
    }
    for (int i = 0; i < 3000; i += 3) {
        fbytes += malloc_usable_size(blocks[i]);
        free(blocks[i]);
        frees++;
        blocks[i] = NULL;
    }
    free(NULL);                                    /* not a free */
    if (rd) rd(&after);
    int x = INT_MAX - 1;
    if (argc > 1 && strcmp(argv[1], "overflow") == 0) x += argc;   /* UBSan: signed overflow */
    unsigned long long m = after.mallocs - before.mallocs, f = after.frees - before.frees;
    unsigned long long ab = after.alloc_bytes - before.alloc_bytes;
    unsigned long long fb = after.free_bytes - before.free_bytes;
    int ok = m == mallocs && f == frees && ab == abytes && fb == fbytes;
    printf("x %d\n", x);
    printf("agent: %s\n", rd ? "yes" : "no");
    if (rd)
        printf("counts: mallocs %llu/%llu frees %llu/%llu alloc_bytes %llu/%llu free_bytes %llu/%llu\n",
               m, mallocs, f, frees, ab, abytes, fb, fbytes);
    for (int i = 0; i < 3000; i++) free(blocks[i]);
    return rd && !ok;
}
