/*
 * live.h - the live map: the sampled allocations still live, sharded, and
 * the filter in front of it (live.c; the filter's inline test is in hot.h)
 * (agent/, private).
 */
#ifndef HEAPWATCH_AGENT_LIVE_H
#define HEAPWATCH_AGENT_LIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

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

/* agent_live_unfilter: the filter is set aside for good (hot.h,
 * agent_live_unfiltered). Start-up only, before any thread registers. */
void agent_live_unfilter(void);

/* agent_live_put: ptr -> value; counts ptr in the filter when it is new.
 * When ptr was already there (its free went unseen), the new value wins
 * and *old (unless NULL) is the previous one: one map operation where a
 * remove and an insert were two (at rate 1 nearly every address is in
 * the filter, so the remove was tried on every allocation). */
typedef enum {
    AGENT_LIVE_FAILED,                   /* no memory, or the map was lost at a fork */
    AGENT_LIVE_ADDED,
    AGENT_LIVE_REPLACED,
} agent_live_put_t;
agent_live_put_t agent_live_put(const void *ptr, uint64_t value, uint64_t *old);

/* agent_live_insert: agent_live_put without the old value.
 * @return false when no memory (nothing recorded). */
bool agent_live_insert(const void *ptr, uint64_t value);

/* agent_live_prefetch: starts loading ptr's bucket in its shard's map,
 * without the shard's lock (map_prefetch64): issued before a capture or
 * a free's other work, the cache miss of a large map overlaps them. */
void agent_live_prefetch(const void *ptr);

/* agent_live_remove: takes ptr out; @return true and *value when it was there. */
bool agent_live_remove(const void *ptr, uint64_t *value);

/* agent_live_stats_t: the live map's state over the whole map: summed
 * over its shards, each read under its lock, so count and buckets are of
 * the same moment shard by shard. Every shard holds Go's invariant
 * count <= 6.5 x buckets (they start at 2 buckets: live.c), so the whole
 * map does: count <= 6.5 x buckets <= 6.5 x 2^log2_buckets, unless a
 * growth failed for lack of memory (grow_failures). */
typedef struct agent_live_stats_s {
    uint64_t count;              /* live sampled allocations */
    uint64_t bytes;              /* memory of the maps */
    unsigned shards;             /* shards of the map (created or not) */
    unsigned log2_buckets;       /* ceil(log2(buckets)): the B of one Go map with at least
                                    as many buckets (exact when every shard has the same
                                    size); 0 when there is no bucket */
    uint64_t buckets;            /* bucket count over all shards (each shard's 2^B: its
                                    current table, the new one while it grows) */
    uint64_t noverflow;          /* Go's overflow estimate, summed */
    uint64_t overflow_buckets;   /* exact, summed */
    unsigned shards_growing;     /* shards evacuating their old table */
    uint64_t nevacuate;          /* old buckets evacuated so far (Go's nevacuate), summed over
                                    the growing shards */
    uint64_t noldbuckets;        /* old buckets of the growing shards: nevacuate / noldbuckets
                                    is the evacuation's progress (0 / 0: none grows) */
    uint64_t grow_failures;
    uint64_t filter_bytes;       /* size of the filter arrays, slots and summary (virtual) */
} agent_live_stats_t;
/* agent_live_get_stats: takes each shard with agent_lock; @return false
 * when a shard was busy (bounded stretch) or the map was lost at a fork:
 * the figures then miss it. */
bool agent_live_get_stats(agent_live_stats_t *out);

/* agent_live_solo_init: at start, while the process has one thread:
 * readies the memory barrier that ends solo (live.c), or does without
 * solo when the kernel refuses it. */
void agent_live_solo_init(void);

/* fork: as the stack table's (agent_stacks_prefork); a child that missed
 * a shard never touches the live map again (inserts and removes fail). */
bool agent_live_prefork(uint64_t deadline_ns);
void agent_live_postfork_parent(void);
bool agent_live_postfork_child(void);

#ifdef HEAPWATCH_TEST
/* agent_live_shard_counts (unit tests only): the entries of each shard
 * into counts[0 .. cap-1], each shard under its lock. @return the number
 * of shards. */
unsigned agent_live_shard_counts(uint64_t *counts, unsigned cap);

/* Solo (live.c's design comment), for unit tests: back to solo with no
 * owner (no other thread may touch the shards then); the state (0 gone,
 * 1 leaving, 2 solo); a hook called inside each change, after the right
 * to make it was had (the owner's unlocked ones included). */
void agent_live_test_solo_reset(void);
int agent_live_test_solo_state(void);
unsigned agent_live_test_solo_guests(void);
/* agent_live_test_lock_shard: takes (lock) or gives back the lock of
 * ptr's shard; agent_live_test_visit: begins (begin) or ends a reader's
 * visit as the statistics make it (one at a time). */
bool agent_live_test_lock_shard(const void *ptr, bool lock);
bool agent_live_test_visit(bool begin);
extern void (*agent_live_test_in_change)(void);
#endif

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_LIVE_H */
