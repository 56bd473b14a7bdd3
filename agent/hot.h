/*
 * hot.h - the hot path: the contract between the shim (shim.c), which
 * interposes the allocation functions, and the core that counts (agent/,
 * private).
 *
 * The shim calls agent_on_alloc after the real allocator returned a block,
 * and before it frees one asks the filter (agent_maybe_sampled), then
 * counts the free (agent_free_fast, or agent_on_free_slow); these are
 * inline here so that an unsampled malloc/free pair costs a few
 * instructions: one TLS word (agent_tls.fast), two `add`s to memory, one
 * `sub` and a sign test for the sampling countdown, and for a free one
 * load of the live filter's summary (and of its slot, near a sample).
 * Everything else (a thread's first call, calls from inside the agent,
 * another allocator, a sampled block) leaves through the out-of-line slow
 * paths.
 *
 * The shim knows nothing of tracking; the core never calls dlsym.
 */
#ifndef HEAPWATCH_AGENT_HOT_H
#define HEAPWATCH_AGENT_HOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/base.h"
#include "agent/thread.h"

#pragma GCC visibility push(hidden)

/* ------------------------------------------------------------------------ */
/* The real allocator (resolved by the shim)                                */
/* ------------------------------------------------------------------------ */
/* agent_real_usable_size: the next allocator's malloc_usable_size. */
extern size_t (*agent_real_usable_size)(void *);


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


/*
 * The live filter (live.c): a counting bitmap in front of the live map,
 * in two levels, so that the common free() reads a line that stays in
 * cache.
 *
 * Slots: slot h(p) counts the sampled live allocations whose address
 * hashes there, so a zero slot proves p was not sampled and its free()
 * needs no lock and no map lookup. The slot is the address bits just above
 * glibc's 16-byte alignment (bits 4..23): consecutive chunks fall in
 * consecutive slots, and two addresses share a slot only when they are a
 * multiple of 16 MiB apart. Slots are 16-bit counters that stick at their
 * maximum (a stuck slot only costs false positives). 2^20 of them, 2 MiB
 * in .bss: pages never touched cost nothing, and reading one only maps the
 * shared zero page.
 *
 * Summary: one 8-bit counter per group of AGENT_FILTER_GROUP consecutive
 * slots (1 KiB of address space, modulo 16 MiB) counts the sampled live
 * allocations of the whole group, 16 KiB in all. free() reads the summary
 * first: a program's frees land all over its heap, and a random line of
 * the 2 MiB slot array missed the cache (and often the TLB) on nearly
 * every free, where the summary stays in L1/L2. Only a free near a
 * sampled allocation (its group is non-zero) reads its slot too. A summary
 * counter that reaches 0xff sticks, and then its group's frees all read
 * their slots, as before the summary existed.
 */
#define AGENT_FILTER_BITS 20                 /* 2^20 slots: address bits 4..23 */
#define AGENT_FILTER_GROUP_BITS 6            /* 64 slots (1 KiB) per summary counter */
#define AGENT_FILTER_GROUP (1u << AGENT_FILTER_GROUP_BITS)
#define AGENT_SUMMARY_BITS (AGENT_FILTER_BITS - AGENT_FILTER_GROUP_BITS)
extern uint16_t agent_live_filter[1u << AGENT_FILTER_BITS];
extern uint8_t agent_live_summary[1u << AGENT_SUMMARY_BITS];

static inline size_t agent_filter_slot(const void *ptr)
{
    return ((uintptr_t)ptr >> 4) & ((1u << AGENT_FILTER_BITS) - 1);
}

/* agent_summary_slot: ptr's group: agent_filter_slot(ptr) / AGENT_FILTER_GROUP. */
static inline size_t agent_summary_slot(const void *ptr)
{
    return ((uintptr_t)ptr >> (4 + AGENT_FILTER_GROUP_BITS)) & ((1u << AGENT_SUMMARY_BITS) - 1);
}

/* agent_maybe_sampled: false proves ptr is not a live sampled allocation
 * (while the filter is in use: see agent_free_maybe_sampled). */
static inline bool agent_maybe_sampled(const void *ptr)
{
    /* Plain reads (they let the compiler test the counters in memory);
     * counters are only ever changed with atomic operations, and aligned
     * 8- and 16-bit loads cannot tear. A sampled allocation is counted in
     * both levels before malloc returns it, and uncounted only at its
     * free: whoever frees it has seen both counts. */
    if (AGENT_LIKELY(agent_live_summary[agent_summary_slot(ptr)] == 0)) return false;
    return agent_live_filter[agent_filter_slot(ptr)] != 0;
}

/* agent_free_maybe_sampled: agent_maybe_sampled, for the slow paths,
 * where the filter may be set aside (agent_live_unfiltered). */
static inline bool agent_free_maybe_sampled(const void *ptr)
{
    return AGENT_UNLIKELY(agent_live_unfiltered) || agent_maybe_sampled(ptr);
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

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_HOT_H */
