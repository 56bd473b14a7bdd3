/*
 * stacks.h - call stacks: interning into a table of records that hold
 * each stack's sampled totals (stacks.c; the design is there) (agent/,
 * private). Capture is unwind.h's.
 */
#ifndef HEAPWATCH_AGENT_STACKS_H
#define HEAPWATCH_AGENT_STACKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/*
 * agent_stack_t: one distinct call stack, stored once, never freed, with
 * the sampled totals of the allocations made from it. pcs[0] is the
 * allocation function's caller (a return address), pcs[depth-1] the
 * outermost frame. Totals are raw samples (not unsampled), updated with
 * relaxed atomic adds by the allocating and freeing threads.
 */
typedef struct agent_stack_s {
    /* The totals, written by every thread that samples or frees here,
     * never on a cache line with what interning reads (hash, depth, pcs)
     * on every sample: a record's first 32 bytes, then 64 bytes of
     * nothing before the rest, so the two parts are on different lines
     * wherever the (16-byte aligned) record starts.
     * Two threads sampling one stack used to make each interning read a
     * line the other had just written (rate 1, 2-thread churn: a sixth of
     * the run). */
    uint64_t alloc_objects;      /* sampled allocations made here */
    uint64_t alloc_bytes;
    uint64_t free_objects;       /* ...of which freed */
    uint64_t free_bytes;
    unsigned char apart[64];
    uint64_t hash;               /* of the frames */
    uint32_t id;                 /* index in the table; 0 is "no stack" */
    uint32_t depth;
    uint64_t pcs[];
} agent_stack_t;

/* agent_stack_totals_t: what a stack's totals say, read at one moment. */
typedef struct agent_stack_totals_s {
    int64_t alloc_objects, alloc_bytes;   /* sampled allocations */
    int64_t inuse_objects, inuse_bytes;   /* ...not freed yet */
} agent_stack_totals_t;

/* agent_stack_read: s's totals. The freed totals are read first: a free
 * is counted after its allocation, so in-use is never negative even while
 * other threads allocate and free. */
static inline void agent_stack_read(agent_stack_t *s, agent_stack_totals_t *t)
{
    int64_t free_objects = (int64_t)__atomic_load_n(&s->free_objects, __ATOMIC_ACQUIRE);
    int64_t free_bytes = (int64_t)__atomic_load_n(&s->free_bytes, __ATOMIC_ACQUIRE);
    t->alloc_objects = (int64_t)__atomic_load_n(&s->alloc_objects, __ATOMIC_ACQUIRE);
    t->alloc_bytes = (int64_t)__atomic_load_n(&s->alloc_bytes, __ATOMIC_ACQUIRE);
    t->inuse_objects = t->alloc_objects - free_objects;
    t->inuse_bytes = t->alloc_bytes - free_bytes;
}

/* agent_stacks_init: the table, and its record 0 (the empty stack).
 * @return 0, or -ENOMEM (sampling then records empty stacks). */
int agent_stacks_init(void);

/* agent_stack_intern: the one record for this stack, created if new;
 * the "no stack" record (id 0) for an empty stack (depth 0), or when the
 * table is full or out of memory. */
agent_stack_t *agent_stack_intern(const uint64_t *pcs, size_t depth);

/* agent_stack_get: record number id (< agent_stacks_count()), or NULL. */
agent_stack_t *agent_stack_get(uint32_t id);

/* agent_stacks_count: records created so far (ids 0 .. count-1). */
uint32_t agent_stacks_count(void);
/* agent_stacks_distinct: the distinct stacks recorded (record 0, the empty
 * stack, not counted): what the summary, the timeline and /metrics call
 * "stacks". */
uint32_t agent_stacks_distinct(void);

/* agent_stacks_bytes: memory held by the table and its records. */
size_t agent_stacks_bytes(void);

/* agent_stacks_bytes takes each stripe with agent_lock (a busy one is
 * skipped at exit). fork: agent_stacks_prefork takes every stripe, waiting
 * at most until deadline_ns (lock.c), and says whether it has them all;
 * agent_stacks_postfork_child returns false when one was missed: the child
 * then interns no stack again. */
bool agent_stacks_prefork(uint64_t deadline_ns);
void agent_stacks_postfork_parent(void);
bool agent_stacks_postfork_child(void);

#ifdef HEAPWATCH_TEST
/* Unit-test seams (HEAPWATCH_TEST builds only; the release and debug
 * agents have none of these):
 * agent_stacks_test_max: ids handed out at most (AGENT_STACKS_MAX, 2^24,
 *   too many records to fill in a unit test); lower it to reach the full
 *   table.
 * agent_stacks_test_hash: when set, replaces the frames' hash, so that
 *   tests can make different stacks collide.
 * agent_stacks_test_own_range: the code whose leading frames a capture
 *   drops ([lo, hi); at start, the executable segment that holds the
 *   agent: libheapwatch.so's, but in a unit test the whole test binary,
 *   the test's own frames included). */
extern uint32_t agent_stacks_test_max;
extern uint64_t (*agent_stacks_test_hash)(const uint64_t *pcs, size_t depth);
void agent_stacks_test_own_range(uintptr_t lo, uintptr_t hi);
#endif


#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_STACKS_H */
