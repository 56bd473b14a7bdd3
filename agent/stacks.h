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
#include "agent/thread.h"   /* agent_tally_add */

#pragma GCC visibility push(hidden)

/*
 * Totals in shares. A stack's sampled totals are kept in AGENT_STACK_SHARES
 * shares, each on a cache line of its own; a thread writes only the share
 * of its thread block (agent_thread_t.share, fixed when the block is made
 * and kept when a later thread adopts it): the first AGENT_STACK_SHARED
 * blocks (the main thread's, as a rule, and the next ones) own a share
 * each, and every later block writes the last, shared one. A thread adds
 * to a share it owns with agent_tally_add, one instruction without a
 * `lock` prefix that a signal cannot split (as the thread counters, see
 * thread.h), and to the shared share with atomic adds. Readers sum the
 * shares, freed totals first (agent_stack_read). Why: at rate 1 every
 * sampled malloc and free added to one line with two locked adds, some 20
 * cycles each on a single thread, and between threads that sample the
 * same stack the line went back and forth at every operation (2-thread
 * churn: a fifth of the run).
 */
#define AGENT_STACK_SHARES 4
#define AGENT_STACK_SHARED (AGENT_STACK_SHARES - 1)   /* the share of every later block */

typedef struct agent_stack_share_s {
    uint64_t alloc_objects;      /* sampled allocations made here */
    uint64_t alloc_bytes;
    uint64_t free_objects;       /* ...of which freed */
    uint64_t free_bytes;
} __attribute__((aligned(64))) agent_stack_share_t;

/*
 * agent_stack_t: one distinct call stack, stored once, never freed, with
 * the sampled totals of the allocations made from it. pcs[0] is the
 * allocation function's caller (a return address), pcs[depth-1] the
 * outermost frame. Totals are raw samples (not unsampled), in shares (see
 * above). A record starts on a cache line, so that each share, and what
 * interning reads on every sample (hash, depth, pcs), has lines of its
 * own: two threads sampling one stack used to make each interning read a
 * line the other had just written.
 */
typedef struct agent_stack_s {
    agent_stack_share_t shares[AGENT_STACK_SHARES];
    uint64_t hash;               /* of the frames */
    uint32_t id;                 /* index in the table; 0 is "no stack" */
    uint32_t depth;
    uint64_t pcs[];
} __attribute__((aligned(64))) agent_stack_t;

/* agent_share_count: one more object of `bytes` in a share's pair of counters;
 * unlocked in a share the thread owns, atomic in the shared one. */
static inline void agent_share_count(uint64_t *objects, uint64_t *total, unsigned share, uint64_t bytes)
{
    if (AGENT_LIKELY(share < AGENT_STACK_SHARED)) {
        agent_tally_add(objects, 1);
        agent_tally_add(total, bytes);
    } else {
        __atomic_add_fetch(objects, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(total, bytes, __ATOMIC_RELAXED);
    }
}

/* agent_stack_count_alloc / agent_stack_count_free: one sampled allocation
 * of `bytes` made (freed) from s, by a thread whose block has `share`. */
static inline void agent_stack_count_alloc(agent_stack_t *s, unsigned share, uint64_t bytes)
{
    agent_share_count(&s->shares[share].alloc_objects, &s->shares[share].alloc_bytes, share, bytes);
}
static inline void agent_stack_count_free(agent_stack_t *s, unsigned share, uint64_t bytes)
{
    agent_share_count(&s->shares[share].free_objects, &s->shares[share].free_bytes, share, bytes);
}

/* agent_stack_totals_t: what a stack's totals say, read at one moment. */
typedef struct agent_stack_totals_s {
    int64_t alloc_objects, alloc_bytes;   /* sampled allocations */
    int64_t inuse_objects, inuse_bytes;   /* ...not freed yet */
} agent_stack_totals_t;

/* agent_stack_read: s's totals, the sum of its shares. Every share's freed
 * totals are read before any allocated ones: a free is counted after its
 * allocation (the live map's lock orders the two, whichever threads and
 * shares they went to), so in-use is never negative even while other
 * threads allocate and free. */
static inline void agent_stack_read(agent_stack_t *s, agent_stack_totals_t *t)
{
    uint64_t free_objects = 0, free_bytes = 0, alloc_objects = 0, alloc_bytes = 0;
    for (unsigned i = 0; i < AGENT_STACK_SHARES; i++) {
        free_objects += __atomic_load_n(&s->shares[i].free_objects, __ATOMIC_ACQUIRE);
        free_bytes += __atomic_load_n(&s->shares[i].free_bytes, __ATOMIC_ACQUIRE);
    }
    for (unsigned i = 0; i < AGENT_STACK_SHARES; i++) {
        alloc_objects += __atomic_load_n(&s->shares[i].alloc_objects, __ATOMIC_ACQUIRE);
        alloc_bytes += __atomic_load_n(&s->shares[i].alloc_bytes, __ATOMIC_ACQUIRE);
    }
    t->alloc_objects = (int64_t)alloc_objects;
    t->alloc_bytes = (int64_t)alloc_bytes;
    t->inuse_objects = (int64_t)(alloc_objects - free_objects);
    t->inuse_bytes = (int64_t)(alloc_bytes - free_bytes);
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
