/*
 * agent_internal.h - private declarations of agent/: the narrow core API the
 * interposition shim calls, the recursion guard, per-thread state, and the
 * agent's own no-malloc output helpers.
 *
 * The shim (shim.c) knows nothing of tracking; the core (core.c) never calls
 * dlsym. Everything the core does that may allocate or block runs under the
 * recursion guard, and allocations made while the guard is held pass through
 * untracked.
 */
#ifndef HEAPWATCH_AGENT_INTERNAL_H
#define HEAPWATCH_AGENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/agent.h"

/* Everything declared below is internal to libheapwatch.so: hidden, so the
 * compiler reaches it without going through the GOT. */
#pragma GCC visibility push(hidden)

/* AGENT_EXPORT: the only symbols the shared library exports (-fvisibility=hidden). */
#define AGENT_EXPORT __attribute__((visibility("default")))
#define AGENT_TLS __thread __attribute__((tls_model("initial-exec")))
#define AGENT_LIKELY(x) __builtin_expect(!!(x), 1)
#define AGENT_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------------------------------ */
/* The real allocator (resolved by the shim)                                */
/* ------------------------------------------------------------------------ */

/* agent_real_usable_size: the next allocator's malloc_usable_size. */
extern size_t (*agent_real_usable_size)(void *);

/* agent_usable_is_glibc: the next allocator is glibc's (its malloc and its
 * malloc_usable_size both), so the usable size can be read inline. */
extern bool agent_usable_is_glibc;

/* agent_glibc_usable_size: the usable size of a live glibc block: its
 * musable() inline: the chunk's size field (flags in the low 3 bits)
 * minus the header that precedes the user pointer, 16 bytes for an mmap'd
 * chunk (flag 2) and 8 otherwise (the next chunk's prev_size field is
 * usable while this one is in use). tests/integration/progs/agent_truth.c
 * checks it, byte for byte, against the real malloc_usable_size. */
static inline size_t agent_glibc_usable_size(const void *ptr)
{
    size_t head = ((const size_t *)ptr)[-1];   /* agent_glibc_head, defined below */
    return (head & ~(size_t)7) - 8 - ((head & 2) << 2);   /* 8 more if mmap'd */
}

/* agent_usable_size: the usable size of a live block, whatever the
 * allocator. */
static inline size_t agent_usable_size(void *ptr)
{
    if (AGENT_LIKELY(agent_usable_is_glibc)) return agent_glibc_usable_size(ptr);
    return agent_real_usable_size(ptr);
}

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
                                     * counted (agent_count_handler) */
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
    agent_tls.fast = (agent_tls.depth == 0 && agent_usable_is_glibc) ? agent_tls.thread : NULL;
}

/* While depth is above zero, the shim's calls pass straight through to the
 * real allocator, untracked. */
static inline void agent_enter(void)
{
    agent_tls.depth++;
    agent_tls.fast = NULL;
}
static inline void agent_leave(void)
{
    if (--agent_tls.depth == 0) agent_refresh_fast();
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
    struct agent_thread_s *next;/* registry link (all blocks, live or dead) */
    int alive;                  /* owned by a running thread */
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

/* agent_thread_slow: registers the calling thread; NULL if impossible
 * (agent off, or inside the agent). */
agent_thread_t *agent_thread_slow(void);

/* ------------------------------------------------------------------------ */
/* Core API called by the shim                                              */
/* ------------------------------------------------------------------------ */

/* agent_enabled: tracking is on (set once at start; cleared on a fatal
 * error or in a setuid process). */
extern int agent_enabled;

/*
 * The live filter (live.c): a counting bitmap in front of the live map.
 * Slot h(p) counts the sampled live allocations whose address hashes
 * there, so a zero slot proves p was not sampled and its free() needs no
 * lock and no map lookup. The slot is the address bits just above glibc's
 * 16-byte alignment: consecutive chunks fall in consecutive slots, and two
 * addresses share a slot only when they are a multiple of 16 MiB apart.
 * Slots are 16-bit counters that stick at their maximum (a stuck slot only
 * costs false positives). The array is in .bss: pages never touched cost
 * nothing, and reading one only maps the shared zero page.
 */
#define AGENT_FILTER_BITS 20
extern uint16_t agent_live_filter[1u << AGENT_FILTER_BITS];

static inline size_t agent_filter_slot(const void *ptr)
{
    return ((uintptr_t)ptr >> 4) & ((1u << AGENT_FILTER_BITS) - 1);
}

/* agent_maybe_sampled: false proves ptr is not a live sampled allocation. */
static inline bool agent_maybe_sampled(const void *ptr)
{
    /* A plain read (it lets the compiler test the slot in memory); slots
     * are only ever changed with atomic operations, and an aligned 16-bit
     * load cannot tear. */
    return agent_live_filter[agent_filter_slot(ptr)] != 0;
}

/* agent_sample_slow: the allocation ptr (usable bytes) reached the
 * thread's sampling point: records its stack in the live map and draws the
 * next point. @return ptr. (sample.c) */
void *agent_sample_slow(struct agent_thread_s *t, void *ptr, size_t usable);

/* agent_free_sampled: ptr may be sampled (the filter said so) and is about
 * to be freed by thread t (outside the agent): removes it from the live
 * map and adds it to its stack's freed totals. (sample.c) */
void agent_free_sampled(struct agent_thread_s *t, void *ptr);

/*
 * Block bytes. Byte counters hold usable bytes plus AGENT_BLOCK_EXTRA (8)
 * per block, and agent_counters_read takes 8 x mallocs (frees) back off;
 * the sampling countdown counts the same usable + 8 per allocation. The
 * reason is the hot path: an in-use glibc chunk that is not mmap'd has
 * usable size = chunk size - 8, and its size field is the chunk size with 3
 * flag bits, so what the fast paths subtract and add is `head & ~7`, one
 * instruction, where the usable size would take four more. Every other
 * path uses usable + 8. Sampling by usable + 8 only changes the sampling
 * probability of an allocation to 1 - exp(-(usable + 8)/rate), which the
 * profile's unsampling uses (pprof_heap_counts_t.extra_bytes): estimates
 * stay unbiased, and profiles still report usable sizes.
 */
#define AGENT_BLOCK_EXTRA 8u

/* agent_count_alloc: counts an allocation of `usable` bytes; samples it
 * when the thread's countdown to its next sample goes below zero (one
 * `sub` to memory and a sign test). @return ptr. */
static inline void *agent_count_alloc(agent_thread_t *t, void *ptr, size_t usable)
{
    agent_tally_add(&t->mallocs, 1);
    agent_tally_add(&t->alloc_bytes, usable + AGENT_BLOCK_EXTRA);
    if (AGENT_UNLIKELY(agent_tally_countdown(&t->sample_left, (int64_t)(usable + AGENT_BLOCK_EXTRA))))
        return agent_sample_slow(t, ptr, usable);
    return ptr;
}

/* agent_count_free: counts a free of `usable` bytes (the live filter is the
 * caller's business). */
static inline void agent_count_free(agent_thread_t *t, size_t usable)
{
    agent_tally_add(&t->frees, 1);
    agent_tally_add(&t->free_bytes, usable + AGENT_BLOCK_EXTRA);
}

/* agent_in_handler: inside the agent, in a quiet stretch (agent_tls_t):
 * what is allocated or freed now comes from a signal handler that
 * interrupted it. It is counted with agent_count_handler, not sampled (the
 * interrupted code may hold the live map's lock). */
static inline bool agent_in_handler(void)
{
    return agent_tls.quiet && agent_tls.depth == 1;
}

/* Which counters agent_count_handler adds to (and where in pending). */
enum { AGENT_COUNT_MALLOCS = 0, AGENT_COUNT_FREES = 2 };

/* agent_count_handler: adds n blocks of `bytes` in all (AGENT_BLOCK_EXTRA
 * included; both modulo 2^64, so a count can be taken back) to the
 * mallocs or the frees (which) of the thread's block, or of
 * agent_tls.pending while it has none. */
static inline void agent_count_handler(int which, uint64_t n, uint64_t bytes)
{
    agent_thread_t *t = agent_tls.thread;
    bool mallocs = which == AGENT_COUNT_MALLOCS;
    if (t) {
        agent_tally_add(mallocs ? &t->mallocs : &t->frees, n);
        agent_tally_add(mallocs ? &t->alloc_bytes : &t->free_bytes, bytes);
    } else {
        agent_tally_add(&agent_tls.pending[which], n);
        agent_tally_add(&agent_tls.pending[which + 1], bytes);
    }
}

/* agent_glibc_head: the size field of a glibc chunk: its size | flags. */
static inline size_t agent_glibc_head(const void *ptr)
{
    return ((const size_t *)ptr)[-1];
}
#define AGENT_GLIBC_MMAPPED 2u          /* the chunk was mmap'd alone */

/* agent_on_alloc_slow / agent_on_free_slow: the first call of a thread,
 * calls from inside the agent, a disabled agent, an allocator other than
 * glibc, and (free) pointers the live filter does not clear. Out of line,
 * and called in tail position (alloc returns its argument), so the fast
 * paths need no stack frame. */
void *agent_on_alloc_slow(void *ptr);
void agent_on_free_slow(void *ptr);

/* agent_count_alloc_mmapped: agent_count_alloc for an mmap'd glibc chunk,
 * out of line. (sample.c) */
void *agent_count_alloc_mmapped(agent_thread_t *t, void *ptr);

/* agent_count_alloc_glibc: agent_count_alloc on the fast path (thread t
 * from agent_tls.fast, glibc's allocator). @return ptr. */
static inline void *agent_count_alloc_glibc(agent_thread_t *t, void *ptr)
{
    size_t head = agent_glibc_head(ptr);
    if (AGENT_UNLIKELY(head & AGENT_GLIBC_MMAPPED)) return agent_count_alloc_mmapped(t, ptr);
    size_t chunk = head & ~(size_t)7;   /* usable + AGENT_BLOCK_EXTRA */
    agent_tally_add(&t->mallocs, 1);
    agent_tally_add(&t->alloc_bytes, chunk);
    if (AGENT_UNLIKELY(agent_tally_countdown(&t->sample_left, (int64_t)chunk)))
        return agent_sample_slow(t, ptr, chunk - AGENT_BLOCK_EXTRA);
    return ptr;
}

/* agent_on_alloc: ptr (non-NULL) was just returned by the real allocator.
 * @return ptr. */
static inline void *agent_on_alloc(void *ptr)
{
    agent_thread_t *t = agent_tls.fast;
    if (AGENT_UNLIKELY(!t)) return agent_on_alloc_slow(ptr);
    return agent_count_alloc_glibc(t, ptr);
}

/* agent_free_fast: thread t may take the fast path (agent_tls.fast) and
 * the filter proved ptr unsampled: counts its free. @return false, having
 * done nothing, for an mmap'd chunk (the caller takes the slow path). */
static inline bool agent_free_fast(agent_thread_t *t, void *ptr)
{
    size_t head = agent_glibc_head(ptr);
    if (AGENT_UNLIKELY(head & AGENT_GLIBC_MMAPPED)) return false;
    agent_tally_add(&t->frees, 1);
    agent_tally_add(&t->free_bytes, head & ~(size_t)7);
    return true;
}

/* agent_realloc_t: what agent_on_realloc_before did, for _after. */
typedef struct agent_realloc_s {
    bool counted;               /* the free of the old block was counted */
    bool by_handler;            /* ...as a signal handler's (agent_in_handler) */
    bool was_sampled;           /* ...and it left the live map */
    size_t usable;              /* the old block's usable size */
    uint64_t live_value;        /* its live-map value, to restore on failure */
} agent_realloc_t;

/* agent_on_realloc_before: ptr (non-NULL) is about to be given to the real
 * realloc; counts it freed (and takes it out of the live map: once the
 * real realloc returns, its address may belong to another thread). */
void agent_on_realloc_before(void *ptr, agent_realloc_t *r);

/* agent_on_realloc_after: the real realloc(old, size) returned result;
 * on failure the old block is intact and is counted back in. */
void agent_on_realloc_after(const agent_realloc_t *r, void *old, void *result, size_t size);

/* agent_counters_read: sums every thread block (exact at the instant each
 * block is read). */
void agent_counters_read(heapwatch_counters_t *out);

/* ------------------------------------------------------------------------ */
/* Sampling (sample.c)                                                      */
/* ------------------------------------------------------------------------ */

/* agent_sample_rate: HEAPWATCH_RATE, the mean bytes between samples
 * (0 = none, 1 = every allocation); set once at start. */
extern uint64_t agent_sample_rate;

/* agent_sample_thread_init: seeds a new or adopted thread block's
 * generator and draws its first sampling point. */
void agent_sample_thread_init(agent_thread_t *t);

/*
 * Ticks: how the allocating threads notice that work is due while the agent
 * has no background thread (HEAPWATCH_THREAD, core.c). While
 * agent_tick_bytes is not 0, a countdown longer than that is cut into
 * pieces of agent_tick_bytes (the rest in sample_rest), so the sampling
 * slow path runs at least once per agent_tick_bytes allocated, whatever the
 * rate, even 0; there it calls agent_tick, which compares a coarse clock
 * with agent_tick_due. The fast path is unchanged. Sampling is not: a piece
 * that runs out only carries the overshoot into the next piece, so the
 * sampled bytes are exactly those of the uncut countdown.
 */
#define AGENT_TICK_BYTES (32u * 1024)
extern uint64_t agent_tick_bytes;   /* 0 or AGENT_TICK_BYTES (sample.c; atomic) */
extern uint64_t agent_tick_due;     /* CLOCK_MONOTONIC ns; UINT64_MAX: nothing due (core.c; atomic) */

/* agent_tick_slow: agent_tick_due has passed: start the background thread,
 * or do the due work on this thread (core.c). Called outside the agent. */
void agent_tick_slow(void);

/* agent_tick: from the sampling slow path, outside the agent. */
void agent_tick(void);

/* agent_sample_rearm: recuts the calling thread's countdown t (its own
 * block) after agent_tick_bytes changed. (sample.c) */
void agent_sample_rearm(agent_thread_t *t);

/* agent_thread_pause / agent_thread_resume: around unshare and setns (shim):
 * the background thread leaves, and the process has one thread less when
 * pause returns (bounded: see core.c); resume arranges its restart. */
void agent_thread_pause(void);
void agent_thread_resume(void);

/* agent_current_thread: the calling thread's block when it may count
 * (registering it if new), NULL inside the agent or when it is off. (core.c) */
agent_thread_t *agent_current_thread(void);

/* ------------------------------------------------------------------------ */
/* Stacks (stacks.c): capture with libunwind and interning                  */
/* ------------------------------------------------------------------------ */

#define AGENT_MAX_FRAMES 64

/*
 * agent_stack_t: one distinct call stack, stored once, never freed, with
 * the sampled totals of the allocations made from it. pcs[0] is the
 * allocation function's caller (a return address), pcs[depth-1] the
 * outermost frame. Totals are raw samples (not unsampled), updated with
 * relaxed atomic adds by the allocating and freeing threads.
 */
typedef struct agent_stack_s {
    uint64_t hash;               /* of the frames */
    uint32_t id;                 /* index in the table; 0 is "no stack" */
    uint32_t depth;
    uint64_t alloc_objects;      /* sampled allocations made here */
    uint64_t alloc_bytes;
    uint64_t free_objects;       /* ...of which freed */
    uint64_t free_bytes;
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

/* agent_stacks_init: the table, and libunwind's address space for this
 * process (its init pipe closed: stacks.c). @return 0, or -1 when no
 * memory (sampling then records empty stacks). */
int agent_stacks_init(void);
/* agent_stacks_code_unloaded: code may have been unmapped (dlclose): the
 * unwind recipes learnt so far are forgotten. Async-signal-safe. */
void agent_stacks_code_unloaded(void);

/* agent_stack_capture: unwinds the calling thread into pcs (at most max
 * frames), dropping the agent's own frames. @return the depth. */
size_t agent_stack_capture(uint64_t *pcs, size_t max);

/* agent_stack_intern: the one record for this stack, created if new;
 * the "no stack" record (id 0) when the table is full or out of memory. */
agent_stack_t *agent_stack_intern(const uint64_t *pcs, size_t depth);

/* agent_stack_get: record number id (< agent_stacks_count()), or NULL. */
agent_stack_t *agent_stack_get(uint32_t id);

/* agent_stacks_count: records created so far (ids 0 .. count-1). */
uint32_t agent_stacks_count(void);

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

/* ------------------------------------------------------------------------ */
/* The live map (live.c): sampled live allocations, sharded                 */
/* ------------------------------------------------------------------------ */

/* A live-map value packs the stack id (high 24 bits) and the usable size
 * (low 40 bits, clamped). */
#define AGENT_LIVE_SIZE_BITS 40
#define AGENT_LIVE_SIZE_MAX ((UINT64_C(1) << AGENT_LIVE_SIZE_BITS) - 1)
#define AGENT_STACKS_MAX (UINT32_C(1) << (64 - AGENT_LIVE_SIZE_BITS))

/* agent_live_clamp: a size as the live map keeps it. */
static inline uint64_t agent_live_clamp(size_t usable)
{
    return usable < AGENT_LIVE_SIZE_MAX ? usable : AGENT_LIVE_SIZE_MAX;
}
static inline uint64_t agent_live_pack(uint32_t stack_id, size_t usable)
{
    return ((uint64_t)stack_id << AGENT_LIVE_SIZE_BITS) | agent_live_clamp(usable);
}
static inline uint32_t agent_live_stack(uint64_t v) { return (uint32_t)(v >> AGENT_LIVE_SIZE_BITS); }
static inline uint64_t agent_live_size(uint64_t v) { return v & AGENT_LIVE_SIZE_MAX; }

/* agent_live_filter_pin: marks the filter slots of [lo, lo+len) for good,
 * so that free() of any address there always takes the slow path (the
 * shim's boot buffer, and NULL). */
void agent_live_filter_pin(const void *lo, size_t len);

/* agent_live_insert: ptr -> value; counts ptr in the filter.
 * @return false when no memory (nothing recorded). */
bool agent_live_insert(const void *ptr, uint64_t value);

/* agent_live_remove: takes ptr out; @return true and *value when it was there. */
bool agent_live_remove(const void *ptr, uint64_t *value);

/* agent_live_stats_t: the live map's state, summed over its shards. */
typedef struct agent_live_stats_s {
    uint64_t count;              /* live sampled allocations */
    uint64_t bytes;              /* memory of the maps */
    unsigned shards;
    unsigned max_B;              /* largest shard's log2 bucket count */
    uint64_t buckets;            /* bucket count over all shards */
    uint64_t noverflow;          /* Go's overflow estimate, summed */
    uint64_t overflow_buckets;   /* exact, summed */
    uint64_t grow_failures;
    uint64_t filter_bytes;       /* size of the filter array (virtual) */
} agent_live_stats_t;
/* agent_live_get_stats: takes each shard with agent_lock; @return false
 * when a shard was busy (bounded stretch) or the map was lost at a fork:
 * the figures then miss it. */
bool agent_live_get_stats(agent_live_stats_t *out);

/* fork: as the stack table's (agent_stacks_prefork); a child that missed
 * a shard never touches the live map again (inserts and removes fail). */
bool agent_live_prefork(uint64_t deadline_ns);
void agent_live_postfork_parent(void);
bool agent_live_postfork_child(void);

/* ------------------------------------------------------------------------ */
/* Heap profiles (profile.c)                                                */
/* ------------------------------------------------------------------------ */

/* agent_profile_write: writes heap.<tag>.<seq>.<reason>.pb.gz into the
 * directory dirfd from the stack table (temporary file O_EXCL|O_NOFOLLOW,
 * published by agent_output_publish: never replacing a file); name
 * (optional, namecap bytes) receives the file name; with keep_fd, the
 * file's descriptor at offset 0 goes to *keep_fd (the caller closes it).
 * Runs under the recursion guard; serialised by its own lock, taken with
 * agent_lock (in a bounded stretch a busy writer is noted and nothing is
 * written: AGENT_PROFILE_BUSY); the caller holds the work lock.
 * @return 0, AGENT_PROFILE_BUSY, or a pprof_err_t value. */
#define AGENT_PROFILE_BUSY (-1)
int agent_profile_write(int dirfd, const char *reason, char *name, size_t namecap, int *keep_fd);

/* agent_profile_name_stacks: names the frames of n stacks: builds a
 * throwaway profile of them, symbolizes it with the profile writer's symbol
 * cache, and calls fn once, with that builder (read names with
 * pprof_builder_frame_name) or with NULL when naming failed.
 * @return 0, or a pprof_err_t value. */
struct pprof_builder_s;
int agent_profile_name_stacks(agent_stack_t *const *stacks, size_t n,
                              void (*fn)(struct pprof_builder_s *b, void *ctx), void *ctx);

/* agent_profile_name_pcs: agent_profile_name_stacks for n exact
 * instruction addresses (as a profile's locations hold them); read each
 * name with pprof_builder_frame_name(b, pcs, i). */
int agent_profile_name_pcs(const uint64_t *pcs, size_t n,
                           void (*fn)(struct pprof_builder_s *b, void *ctx), void *ctx);

/* agent_profile_postfork_child: a new process: sequence numbers restart
 * and the lock is re-created. */
void agent_profile_postfork_child(void);

/* ------------------------------------------------------------------------ */
/* Snapshots, timeline and alerts (watch.c)                                 */
/* ------------------------------------------------------------------------ */

/* agent_watch_init: the alert engine for conf, output into out_dir (both
 * kept by reference). start_mono_ns: program start (CLOCK_MONOTONIC). */
struct agent_conf_s;
void agent_watch_init(const struct agent_conf_s *conf, const char *out_dir, uint64_t start_mono_ns);

/* agent_watch_snapshot: one snapshot of the counters c: the timeline
 * record, the alert evaluation (not when final: the exit record) and the
 * per-stack history. Background thread (or exit), under the work lock. */
void agent_watch_snapshot(const heapwatch_counters_t *c, uint64_t mono_ns, uint64_t real_ns,
                          uint64_t start_real_ns, bool final);

/* agent_watch_start: the snapshot at start (background thread start, in
 * the process or a forked child): a base for the rates, no record. */
void agent_watch_start(const heapwatch_counters_t *c, uint64_t mono_ns);

/* agent_watch_close: ends the timeline (exit). */
void agent_watch_close(void);

/* agent_watch_postfork_child: the child lets the parent's timeline go and
 * starts its own alert state. */
void agent_watch_postfork_child(uint64_t start_mono_ns);

/* Output services of the core for watch.c (under the work lock):
 * agent_output_ready: the output directory exists and may be written;
 * agent_output_remember: a file written, for the summary's list;
 * agent_output_profile: writes a heap profile, its name into name ("" if none);
 * agent_peak_live_bytes: the peak of live bytes seen so far. */
bool agent_output_ready(void);
void agent_output_remember(const char *name);
/* agent_output_dirfd: the verified output directory descriptor (borrowed),
 * or -1 once there is no output (reported once).
 * agent_output_tag: this process's file tag, "<pid>" or "<pid>-<n>".
 * agent_output_publish: renames tmp (in dirfd) to prefix + tag + suffix,
 * never replacing a file (a taken name moves the process to its next
 * tag); the name into name. @return 0 or -errno. */
int agent_output_dirfd(void);
const char *agent_output_tag(void);
int agent_output_publish(int dirfd, const char *tmp, const char *prefix, const char *suffix,
                         char *name, size_t cap);
void agent_output_profile(const char *reason, char *name, size_t cap);
uint64_t agent_peak_live_bytes(void);

/* agent_watch_last: the rates and level of the last snapshot (zeros
 * before the first rate). Under the work lock. */
void agent_watch_last(double *objects_rate, double *bytes_rate, int *level);

/* ------------------------------------------------------------------------ */
/* HEAPWATCH_HTTP (http.c) and the core services it uses                    */
/* ------------------------------------------------------------------------ */

/* agent_spawn_thread: a detached agent thread running fn(NULL), with
 * every signal blocked (the host's signals are never delivered to it) and
 * a 256 KiB stack, that names itself name (static storage; no descriptor
 * opened). @return 0, ENOMEM or the pthread_create error. */
int agent_spawn_thread(void *(*fn)(void *), const char *name);

/* agent_http_start: binds host:port and starts the server thread (a
 * failure is one stderr line; the program runs on). */
void agent_http_start(const char *host, uint16_t port);
/* agent_http_threads: 1 while the server thread exists, else 0. */
int agent_http_threads(void);
/* agent_http_postfork_child: the child closes the listening socket. */
void agent_http_postfork_child(void);

/* agent_metrics_t: what /metrics shows, read at one moment. */
typedef struct agent_metrics_s {
    heapwatch_counters_t counters;
    uint64_t peak_live_bytes;
    double objects_rate, bytes_rate;   /* at the last snapshot */
    int alert_level;                   /* 0 none, 1 warn, 2 crit */
    uint64_t rate;                     /* HEAPWATCH_RATE */
    uint64_t samples, samples_dropped;
    uint64_t map_count, map_B, map_noverflow, stacks;
    uint64_t agent_memory_bytes;
    uint64_t start_real_ns;
} agent_metrics_t;

/* agent_metrics_read: fills *m (takes the work lock). */
void agent_metrics_read(agent_metrics_t *m);

/* agent_output_profile_fd: writes a heap profile for `reason` (takes the
 * work lock), its file name into name and a descriptor of the very file
 * written into *fd (at offset 0; the caller closes it), so that what is
 * sent is what was written, never a file reopened by name. @return 0,
 * -ESHUTDOWN once the exit output has begun, or -EIO when no profile
 * could be written. */
int agent_output_profile_fd(const char *reason, char *name, size_t cap, int *fd);

/* agent_shim_init: resolves the real allocation functions now. */
void agent_shim_init(void);

/* agent_shim_aside_reason: why the agent steps aside in this process
 * (agent_enabled is then 0), as a phrase ("AddressSanitizer runtime"): a
 * sanitizer runtime found at resolution (ASan, TSan, MSan, LSan, HWASan),
 * or a malloc found before the agent's; NULL when it does not. (shim.c) */
const char *agent_shim_aside_reason(void);

/* agent_init: reads the configuration and starts tracking (idempotent). */
void agent_init(void);

/* agent_on_quick_exit: the process is leaving through _exit/_Exit, which
 * skips destructors: write what exit would have written. */
void agent_on_quick_exit(void);

/* ------------------------------------------------------------------------ */
/* Bounded locking for exit, fork and /metrics (lock.c; design there)       */
/* ------------------------------------------------------------------------ */

/* How long the paths that must not block wait in all for locks that
 * other running threads hold (none when the thread itself was inside the
 * agent: agent_bound_deadline). Exit: the background thread may be
 * writing a profile. fork: only short sampling-path holds. /metrics: the
 * HTTP thread must answer. */
#define AGENT_EXIT_WAIT_NS 2000000000ull     /* 2 s */
#define AGENT_FORK_WAIT_NS 500000000ull      /* 0.5 s */
#define AGENT_METRICS_WAIT_NS 200000000ull   /* 0.2 s */

/* Distinct notes kept for the summary's "incomplete" list. */
#define AGENT_NOTES_MAX 8

/* agent_mono_ns: CLOCK_MONOTONIC in ns. */
uint64_t agent_mono_ns(void);

/* agent_bound_deadline: the deadline for a path that must not block,
 * called before that path's agent_enter: 0 (one try per lock) when the
 * calling thread is inside the agent (a signal handler interrupted agent
 * code, which may hold any agent lock), else now + wait_ns. */
uint64_t agent_bound_deadline(uint64_t wait_ns);

/* agent_lock_until: takes m, waiting at most until deadline_ns
 * (CLOCK_MONOTONIC; 0: one try). @return true when taken. */
bool agent_lock_until(pthread_mutex_t *m, uint64_t deadline_ns);

/* agent_bounded_begin / _end: a bounded stretch on this thread (they
 * nest): agent_lock waits until deadline_ns at most, and the arena never
 * waits (map_arena_set_nowait). notes_to_summary: agent_lock_note's
 * failures go to the summary's "incomplete" list. */
void agent_bounded_begin(uint64_t deadline_ns, bool notes_to_summary);
void agent_bounded_end(void);

/* agent_lock: pthread_mutex_lock outside a bounded stretch; inside, waits
 * until its deadline at most. @return true when taken. */
bool agent_lock(pthread_mutex_t *m);

/* agent_lock_note: agent_lock, and when the lock is not had, `what` (a
 * static string) is noted for the summary if the stretch says so. */
bool agent_lock_note(pthread_mutex_t *m, const char *what);

/* agent_incomplete_add: notes `what` (a static string; once) for the
 * summary's "incomplete" list. Lock-free. */
void agent_incomplete_add(const char *what);

/* agent_incomplete_json: the notes as a JSON array of strings ("[]"). */
struct agent_buf_s;
void agent_incomplete_json(struct agent_buf_s *b);

/* agent_incomplete_reset: no notes (a fork child starts its own list). */
void agent_incomplete_reset(void);

/* ------------------------------------------------------------------------ */
/* Configuration (conf.c): the HEAPWATCH_* variables of SPEC.md, parsed once */
/* at start by pure, allocation-free functions. A bad value never stops the  */
/* program: one line names the variable and the accepted form, the default  */
/* is kept.                                                                  */
/* ------------------------------------------------------------------------ */


#define CONF_PATH_MAX 4096
#define CONF_HOST_MAX 256

typedef struct agent_conf_s {
    char out_dir[CONF_PATH_MAX];   /* HEAPWATCH_OUT, as given (made absolute by the agent) */
    uint64_t rate;                 /* HEAPWATCH_RATE: mean bytes between samples; 0 = none */
    uint64_t interval_ns;          /* HEAPWATCH_INTERVAL */
    uint64_t window_ns;            /* HEAPWATCH_WINDOW */
    uint64_t warn;                 /* HEAPWATCH_WARN: objects/s */
    uint64_t crit;                 /* HEAPWATCH_CRIT: objects/s */
    uint64_t sustain_ns;           /* HEAPWATCH_SUSTAIN */
    uint64_t grace_ns;             /* HEAPWATCH_GRACE */
    uint64_t profile_interval_ns;  /* HEAPWATCH_PROFILE_INTERVAL; 0 = off */
    int signal;                    /* HEAPWATCH_SIGNAL; 0 = off */
    char http_host[CONF_HOST_MAX]; /* HEAPWATCH_HTTP host; "" = off */
    uint16_t http_port;
    int thread;                    /* HEAPWATCH_THREAD: CONF_THREAD_* */
    uint64_t max_profiles;         /* HEAPWATCH_MAX_PROFILES: interval, signal, http kept */
} agent_conf_t;

/* HEAPWATCH_THREAD: when the agent runs its background thread (core.c). */
enum {
    CONF_THREAD_AUTO = 0,          /* "auto" (default): only once it is needed */
    CONF_THREAD_ON = 1,            /* "on", "1": from start-up */
    CONF_THREAD_OFF = 2,           /* "off", "0": never; work done by the allocating thread */
};

/* Defaults (SPEC.md; SUSTAIN and GRACE are ours, see README). */
#define CONF_DEFAULT_OUT "heapwatch-out"
#define CONF_DEFAULT_RATE 524288u
#define CONF_DEFAULT_INTERVAL_NS 1000000000ull
#define CONF_DEFAULT_WINDOW_NS 5000000000ull
#define CONF_DEFAULT_WARN 500u
#define CONF_DEFAULT_CRIT 2000u
#define CONF_DEFAULT_SUSTAIN_NS 3000000000ull
#define CONF_DEFAULT_GRACE_NS 10000000000ull
#define CONF_DEFAULT_MAX_PROFILES 64u
#define CONF_MAX_PROFILES_MAX 4096u   /* bounds the core's list of kept names (64 B each) */

/* agent_conf_defaults: fills *c with every default. */
void agent_conf_defaults(agent_conf_t *c);

/* agent_conf_parse_u64: a whole decimal number in [min, max], nothing else.
 * @return true on success. */
bool agent_conf_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* agent_conf_parse_seconds: seconds as a decimal number with an optional
 * fraction ("1", "0.25", "2.5"), at most 9 fraction digits, in
 * [min_ns, max_ns] once converted to nanoseconds. @return true on success. */
bool agent_conf_parse_seconds(const char *s, uint64_t min_ns, uint64_t max_ns, uint64_t *out_ns);

/* agent_conf_parse_signal: the profile signal: USR1, USR2 or a real-time
 * signal, by name ("USR1", "SIGUSR2", "RTMIN+2", "SIGRTMAX-1",
 * case-insensitive) or number ("10", "12", "34".."64"). Every other signal
 * means something to the program (TERM, INT, CHLD, PIPE, TSTP...) and is
 * refused, as are KILL, STOP and the crash signals. @return true on success. */
bool agent_conf_parse_signal(const char *s, int *out);
/* agent_conf_signal_allowed: signo is USR1, USR2 or SIGRTMIN..SIGRTMAX. */
bool agent_conf_signal_allowed(int signo);

/* agent_conf_parse_hostport: "host:port" or "[v6]:port", port 1..65535, host
 * non-empty and shorter than CONF_HOST_MAX. @return true on success. */
bool agent_conf_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

/*
 * agent_conf_load: reads every variable through getenv_fn (secure_getenv in the
 * agent, a table in tests) into *c, starting from the defaults. Each bad
 * value is reported once through report(line) as a complete line such as
 *   heapwatch: HEAPWATCH_RATE="abc" is not valid: expected ...; using 524288
 * and the default is kept. @return the number of bad values.
 */
int agent_conf_load(agent_conf_t *c, const char *(*getenv_fn)(const char *),
              void (*report)(const char *line));

/* ------------------------------------------------------------------------ */
/* Output without malloc (out.c)                                            */
/* ------------------------------------------------------------------------ */

/* agent_buf_t: text built into caller-provided memory; always NUL-terminated;
 * overflow is sticky and truncates. */
typedef struct agent_buf_s {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
} agent_buf_t;

void agent_buf_init(agent_buf_t *b, char *mem, size_t cap);
void agent_buf_mem(agent_buf_t *b, const void *p, size_t n);
void agent_buf_str(agent_buf_t *b, const char *s);
void agent_buf_u64(agent_buf_t *b, uint64_t v);
void agent_buf_i64(agent_buf_t *b, int64_t v);
/* agent_buf_fixed: writes v / 10^decimals, e.g. (1234567, 3) -> "1234.567". */
void agent_buf_fixed(agent_buf_t *b, int64_t v, unsigned decimals);
/* agent_buf_json_str: s as a quoted JSON string (escapes ", \ and controls). */
void agent_buf_json_str(agent_buf_t *b, const char *s);

/* agent_buf_str_escaped: s for a one-line message: control bytes as \n,
 * \t or \xNN (DEL too), \\ and \" escaped, at most max bytes of it, then
 * "..." when cut. Used wherever a message quotes a value from outside. */
void agent_buf_str_escaped(agent_buf_t *b, const char *s, size_t max);
#define AGENT_QUOTE_MAX 200   /* bytes of a quoted value in a message */
/* agent_buf_json_key: `"key": ` inside a JSON object being built in b
 * (which starts with its "{"), preceded by the separator it needs: one
 * member per line when pretty, else all on one line. */
void agent_buf_json_key(agent_buf_t *b, const char *key, bool pretty);
/* agent_buf_json_u64: a member with an unsigned number. */
void agent_buf_json_u64(agent_buf_t *b, const char *key, uint64_t v, bool pretty);

/* agent_fd_t: a descriptor the agent opened, with the file it was then
 * (fds.c: checked before every use, never closed once the program took
 * the number back). */
typedef struct agent_fd_s {
    int fd;                  /* -1: none */
    dev_t dev;
    ino_t ino;
} agent_fd_t;

/* agent_fd_open: opens path with flags | O_CLOEXEC and records the file.
 * @return success (errno set on failure). */
bool agent_fd_open(agent_fd_t *f, const char *path, int flags);
/* agent_fd_ours: f's number still holds that file, close-on-exec. */
bool agent_fd_ours(const agent_fd_t *f);
/* agent_fd_close: closes f if still ours; f->fd becomes -1 either way. */
void agent_fd_close(agent_fd_t *f);

/* agent_write_all: writes everything, retrying on EINTR. @return 0 or -errno. */
int agent_write_all(int fd, const void *data, size_t len);
/* agent_log: one line to stderr, errno preserved; nothing once descriptor
 * 2 is no longer the file it was at agent_log_remember_stderr. */
void agent_log(const char *line);
void agent_log_remember_stderr(void);
/* The output directory and its files (out.c; callers serialise, core.c's
 * work lock). See out.c's design comment for the rules.
 * agent_outdir_init: remembers the absolute path, creates it (0755) and
 *   opens it, every component checked; @return 0 or -errno with the
 *   reason (one line, escaped) in why.
 * agent_outdir_fd: the verified directory descriptor (reopened by path,
 *   with every check, when the program closed or reused it or the
 *   directory was removed or replaced); @return it or -errno, why filled.
 * agent_tmp_create: creates ".<name>.tmp.<random>" in dirfd with
 *   O_CREAT|O_EXCL|O_NOFOLLOW, mode 0644, its name into tmp; @return the
 *   descriptor (O_RDWR) or -errno.
 * agent_publish_at: renames tmp to name within dirfd, never replacing a
 *   file: @return 0, -EEXIST when name exists, or -errno.
 * agent_file_check: fd is still the regular file (dev, ino) we created:
 *   close-on-exec set, owned by us. @return 0, -EBADF or -ESTALE.
 * agent_write_at: dirfd/name appears whole with data, or not at all; an
 *   existing name is never replaced (-EEXIST). @return 0 or -errno.
 * Descriptors (fds.c's design comment): every descriptor the agent opens
 * goes through these, so that none it closes is the program's.
 * agent_fd_claimat: openat(dirfd, name, flags | O_CLOEXEC, mode), claimed:
 *   moved to a high number, its identity (device, inode: of the file the
 *   name leads to) recorded; @return it or -errno (-ESTALE: the program
 *   took the number meanwhile; nothing of ours is left open).
 * agent_fd_claim: the same for a descriptor just returned by socket or
 *   accept (its identity: what it holds now); passes a negative fd on.
 * agent_fd_release: closes a claimed descriptor if it still holds its file;
 *   otherwise only forgets it.
 * agent_fd_forget: forgets a claimed descriptor, never closing it.
 * agent_fds_private: gives the calling agent thread a descriptor table of
 *   its own, empty (close_range(CLOSE_RANGE_UNSHARE)): nothing it opens or
 *   closes can then meet the program's numbers. @return false when the
 *   kernel refused (the thread goes on in the shared table, with claims).
 * agent_fds_are_private: the calling thread has such a table. */
int agent_fd_claimat(int dirfd, const char *name, int flags, mode_t mode);
int agent_fd_claim(int fd);
void agent_fd_release(int fd);
void agent_fd_forget(int fd);
bool agent_fds_private(void);
/* agent_fds_postfork_child: closes what the agent's threads held (they
 * did not survive the fork), each only while it is still the agent's. */
void agent_fds_postfork_child(void);
/* agent_fds_init: pprof/'s file opens and closes go through these rules
 * too (pprof_set_fd_hooks). */
void agent_fds_init(void);
bool agent_fds_are_private(void);
int agent_outdir_init(const char *path, char *why, size_t whycap);
int agent_outdir_fd(char *why, size_t whycap);
/* agent_outdir_drop: closes this table's handle of the directory (the end
 * of a round of output: no descriptor of ours stays in the program's). */
void agent_outdir_drop(void);
int agent_tmp_create(int dirfd, const char *name, char *tmp, size_t cap);
int agent_publish_at(int dirfd, const char *tmp, const char *name);
int agent_file_check(int fd, dev_t dev, ino_t ino);
int agent_write_at(int dirfd, const char *name, const void *data, size_t len);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_INTERNAL_H */
