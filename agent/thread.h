/*
 * thread.h - the recursion guard, the per-thread state and the thread
 * registry (thread.c) (agent/, private).
 *
 * Every thread that allocates owns an agent_thread_t, its counter block;
 * the registry is the append-only list of all blocks. The guard
 * (agent_enter / agent_leave) marks agent code on a thread's stack: while
 * it is up, the shim passes every allocation straight through, untracked.
 */
#ifndef HEAPWATCH_AGENT_THREAD_H
#define HEAPWATCH_AGENT_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/agent.h"
#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* agent_usable_is_glibc: the next allocator is glibc's (its malloc and its
 * malloc_usable_size both), so the usable size can be read inline. (shim.c) */
extern bool agent_usable_is_glibc;

/* agent_live_unfiltered: the live filter (hot.h) is set aside, for good
 * (HEAPWATCH_RATE=1; set at start-up by live.c): nothing is counted in
 * it, no thread takes the fast paths (agent_refresh_fast), and the slow
 * paths send every free to the live map (agent_free_maybe_sampled). At
 * rate 1 nearly every free is of a sampled block: the filter answered
 * "maybe" to nearly all of them after a read of its 2 MiB array that
 * missed the cache, and counting each sample in and out of it took four
 * atomic read-modify-writes per malloc and free, on lines the program's
 * threads share (addresses 16 MiB apart share a slot, and glibc's
 * per-thread arenas are 64 MiB apart). */
extern bool agent_live_unfiltered;

/* ------------------------------------------------------------------------ */
/* Recursion guard                                                          */
/* ------------------------------------------------------------------------ */

struct agent_thread_s;

/* agent_tls_t: the agent's whole thread-local state, one TLS object so the
 * hot path computes one TLS address.
 *
 * `fast` folds every reason to leave the fast path into one pointer: it is
 * the thread's block when the thread is registered, outside the agent
 * (depth 0) and the next allocator is glibc's (usable size read inline),
 * and NULL otherwise. The hot path tests one TLS word instead of three. */
typedef struct agent_tls_s {
    struct agent_thread_s *fast;    /* block for the fast path, or NULL */
    struct agent_thread_s *thread;  /* this thread's counter block, or NULL */
    int depth;                      /* agent code on this thread's stack */
    int quiet;                      /* in a stretch of agent code that makes no
                                     * allocation of its own (a sampled
                                     * allocation's or free's slow path, thread
                                     * registration): an allocation made
                                     * meanwhile is a signal handler's, and is
                                     * counted (agent_count_handler); so no
                                     * agent work that allocates through libc
                                     * starts while it is up (agent_tick_slow) */
    uint64_t pending[4];            /* a handler's counts made before the thread
                                     * had a block, at AGENT_COUNT_MALLOCS (+1:
                                     * their bytes) and AGENT_COUNT_FREES (+1);
                                     * registration moves them into the block */
} agent_tls_t;

extern AGENT_TLS agent_tls_t agent_tls;

/* agent_refresh_fast: recomputes agent_tls.fast after any of its inputs
 * changed (registration, depth, exit). */
static inline void agent_refresh_fast(void)
{
    agent_tls.fast = (agent_tls.depth == 0 && agent_usable_is_glibc && !agent_live_unfiltered) ? agent_tls.thread : NULL;
}

/* While depth is above zero, the shim's calls pass straight through to the
 * real allocator, untracked.
 *
 * The order of the two stores matters to a signal handler that allocates
 * between them, and the compiler may swap them (both plain stores to one
 * TLS object), hence the signal fences. Entering, depth goes up first: a
 * handler then finds depth 1 with fast still set and is counted (and may
 * be sampled) on the fast path, like a call just before ours, and fast
 * ends up NULL as it must. The other order let it find depth 0 with fast
 * already NULL: the slow path found the thread outside the agent, sampled
 * the handler's allocation, and that sample's own agent_leave set fast
 * again, so the agent ran on with fast set: every later handler
 * allocation took the fast path and could be sampled while the agent held
 * a shard lock (tests/integration/progs/life_step.c found it, now and
 * then: "blocking on a stripe lock while holding a shard lock"). Leaving,
 * depth comes down first, then fast is recomputed. */
static inline void agent_enter(void)
{
    agent_tls.depth++;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    agent_tls.fast = NULL;
}
static inline void agent_leave(void)
{
    AGENT_ASSERT(agent_tls.depth > 0);   /* every leave has its enter */
    int depth = --agent_tls.depth;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (depth == 0) agent_refresh_fast();
}
static inline bool agent_inside(void) { return agent_tls.depth > 0; }
/* ------------------------------------------------------------------------ */
/* Per-thread counters                                                      */
/* ------------------------------------------------------------------------ */

/*
 * agent_thread_t: one per thread that allocates, from the arena, never
 * freed: a thread that exits marks its block dead and a later thread reuses
 * it, counters and all, so the sum over every block is always exact with
 * no folding step. Counters are written only by the owning thread, through
 * agent_tally_add / agent_tally_countdown, and read by anyone with atomic
 * loads: aligned 8-byte accesses cannot tear on the 64-bit targets we build
 * for, and a reader only needs some recent value.
 *
 * The one writer that is not the thread itself is a signal handler that
 * interrupts it and allocates. A C `t->free_bytes += n` may be compiled
 * to load, add, store (gcc does so where it folds the addend into an
 * `lea`), and a handler that runs between the load and the store has its
 * own update overwritten: counts lost for good. So every update is one
 * read-modify-write instruction, which a signal cannot split. On x86-64
 * that is a plain `add` to memory, written as inline asm so the compiler
 * cannot split it; a `lock` prefix would cost some 20 cycles and buys
 * nothing here (no other thread writes the block). Elsewhere a relaxed
 * atomic read-modify-write gives the same guarantee.
 */
typedef struct agent_thread_s {
    uint64_t mallocs;           /* successful allocations */
    uint64_t alloc_bytes;       /* usable bytes allocated + AGENT_BLOCK_EXTRA per allocation */
    int64_t sample_left;        /* bytes before the next sample; below 0: sample */
    uint64_t frees;             /* frees of non-NULL pointers */
    uint64_t free_bytes;        /* usable bytes freed + AGENT_BLOCK_EXTRA per free */
    uint64_t rng;               /* sampling generator state (sample.c) */
    uint64_t samples;           /* allocations sampled by this thread */
    uint64_t dropped;           /* samples lost for lack of memory */
    uint64_t filter_hits;       /* frees the live filter sent to the live map */
    uint64_t filter_false;      /* ...that were not sampled (false positives) */
    int64_t sample_rest;        /* bytes of the gap beyond sample_left when the
                                 * countdown is cut into ticks (sample.c) */
    uint64_t peak_looked_at;    /* alloc_bytes when this thread last looked
                                 * for a new peak (sample.c) */
    struct agent_thread_s *next;/* registry link (all blocks, live or dead) */
    struct agent_walk_memo_s *walk_memo;   /* the last stack walk (unwind.h), made
                                 * at the first sample; kept when a later
                                 * thread reuses the block (a replay checks
                                 * every word it reuses) */
    int alive;                  /* owned by a running thread */
    unsigned share;             /* the share of a stack's totals this block
                                 * writes (stacks.h, "Totals in shares"):
                                 * its own for the first blocks made */
} agent_thread_t;

/* agent_tally_add: *c += v in one instruction a signal cannot split. */
static inline void agent_tally_add(uint64_t *c, uint64_t v)
{
#if defined(__x86_64__)
    __asm__ volatile("addq %1, %0" : "+m"(*c) : "er"(v));
#else
    __atomic_fetch_add(c, v, __ATOMIC_RELAXED);
#endif
}

/* agent_tally_countdown: *c -= v in one instruction a signal cannot split.
 * @return the new *c is below zero (on x86-64 the sign flag of the same
 * `sub`, so the test costs no load). */
static inline bool agent_tally_countdown(int64_t *c, int64_t v)
{
#if defined(__x86_64__)
    bool negative;
    __asm__ volatile("subq %2, %0" : "+m"(*c), "=@ccs"(negative) : "er"(v));
    return negative;
#else
    return __atomic_sub_fetch(c, v, __ATOMIC_RELAXED) < 0;
#endif
}

/* agent_enabled: tracking is on (set once at start; cleared on a fatal
 * error, in a setuid process, or when the agent steps aside). (core.c) */
extern int agent_enabled;

/* agent_thread_slow: registers the calling thread; NULL if impossible
 * (agent off, or inside the agent). errno is kept. */
agent_thread_t *agent_thread_slow(void);

/* agent_current_thread: the calling thread's block when it may count
 * (registering it if new), NULL inside the agent or when it is off. */
agent_thread_t *agent_current_thread(void);

/* agent_counters_read: sums every thread block (exact at the instant each
 * block is read). */
void agent_counters_read(heapwatch_counters_t *out);

/* agent_thread_sums_t: the sampling counters of every thread block. */
typedef struct agent_thread_sums_s {
    uint64_t samples, dropped, filter_hits, filter_false, blocks;
} agent_thread_sums_t;
void agent_threads_sum(agent_thread_sums_t *out);

/* agent_threads_init: the key whose destructor marks an exiting thread's
 * block dead. Start-up, before any thread registers. */
void agent_threads_init(void);

/* fork (fork.c): the prepare handler takes the registry lock (bounded:
 * @return taken); the parent lets it go; the child re-creates it and marks
 * every block but its own dead (only the forking thread survived). */
bool agent_threads_prefork(uint64_t deadline_ns);
void agent_threads_postfork_parent(void);
void agent_threads_postfork_child(void);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_THREAD_H */
