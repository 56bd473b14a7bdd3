/*
 * agent.h - the control API of libheapwatch.so, for programs that want to
 * talk to the agent they run under.
 *
 * Everything here is exported by libheapwatch.so. A program that must also
 * run without the agent looks the functions up at run time:
 *
 *     void (*rd)(heapwatch_counters_t *) =
 *         (void (*)(heapwatch_counters_t *))dlsym(RTLD_DEFAULT, "heapwatch_read_counters");
 *     if (rd) { heapwatch_counters_t c; rd(&c); ... }
 */
#ifndef HEAPWATCH_AGENT_H
#define HEAPWATCH_AGENT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* heapwatch_counters_t: the agent's exact counters. live objects are
 * mallocs - frees, live bytes alloc_bytes - free_bytes (usable sizes). */
typedef struct heapwatch_counters_s {
    uint64_t mallocs;       /* successful allocations (realloc: see README) */
    uint64_t frees;         /* frees of non-NULL pointers */
    uint64_t alloc_bytes;   /* usable bytes of those allocations */
    uint64_t free_bytes;    /* usable bytes of those frees */
} heapwatch_counters_t;

/* heapwatch_read_counters: the process's counters now (all threads). */
void heapwatch_read_counters(heapwatch_counters_t *out);

#ifdef __cplusplus
}
#endif

#endif /* HEAPWATCH_AGENT_H */
