/*
 * live.c - the live map: every sampled allocation still live, pointer ->
 * (stack id, usable size), and the counting filter that lets the free() of
 * an unsampled pointer skip it without a lock.
 *
 * Sharding. SHARDS independent map/ maps, each under its own mutex; a
 * pointer's shard comes from a multiplicative hash of its address, so the
 * threads of a program sampling at rate 1 spread over the shards instead
 * of queueing on one lock. A shard's map is created on its first insert.
 *
 * The filter (declared in hot.h, where free() reads it inline):
 * 2^20 16-bit counters; slot = address bits 4..23. A sampled pointer is
 * counted in its slot after it is stored in the map and uncounted after it
 * leaves, both under the shard lock, with atomic read-modify-writes since
 * two shards can share a slot. The free() of that pointer happens after
 * the program received it from malloc, so it always sees the count.
 * A counter that reaches 0xffff stays there for good: it can no longer be
 * uncounted exactly, and a stuck slot only sends more frees to the map.
 * False positives (slot > 0, pointer not in the map) are counted per thread
 * (filter_false) and reported in the summary; at the default rate they are
 * about live samples / 2^20.
 *
 * Lock order: a shard lock, then the arena's (the whole order is in
 * lock.c). fork: prefork takes every shard in index order, each waiting at
 * most until the fork's deadline (agent/lock.c). A shard it could not take
 * may be mid-update in the child, so the child never touches the live map
 * again (lost): inserts and removes fail, which the caller counts as
 * dropped samples and filter false positives; fork.c notes it in the
 * child's summary. The statistics reader
 * takes each shard with agent_lock: at exit (a bounded stretch) a busy
 * shard is skipped and noted.
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "agent/hot.h"
#include "agent/live.h"
#include "agent/lock.h"
#include "map/map.h"

#define SHARDS 64                        /* power of two */
#define FILTER_STUCK 0xffffu

uint16_t agent_live_filter[1u << AGENT_FILTER_BITS];

typedef struct shard_s {
    pthread_mutex_t lock;
    map_t *map;                          /* created on first insert */
} __attribute__((aligned(64))) shard_t;

static shard_t shards[SHARDS] = {
    [0 ... SHARDS - 1] = { .lock = PTHREAD_MUTEX_INITIALIZER, .map = NULL },
};

static bool lost;                        /* child of a fork that missed a shard */
static AGENT_TLS bool prefork_took[SHARDS];  /* shards this thread's prepare handler holds */

static shard_t *shard_of(const void *ptr)
{
    uint64_t h = ((uint64_t)(uintptr_t)ptr >> 4) * 0x9e3779b97f4a7c15ull;
    return &shards[h >> (64 - 6)];
}
_Static_assert(SHARDS == 1 << 6, "shard_of takes 6 bits");

static void filter_count(const void *ptr)
{
    uint16_t *slot = &agent_live_filter[agent_filter_slot(ptr)];
    uint16_t old = __atomic_load_n(slot, __ATOMIC_RELAXED);
    while (old != FILTER_STUCK &&
           !__atomic_compare_exchange_n(slot, &old, (uint16_t)(old + 1), 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

static void filter_uncount(const void *ptr)
{
    uint16_t *slot = &agent_live_filter[agent_filter_slot(ptr)];
    uint16_t old = __atomic_load_n(slot, __ATOMIC_RELAXED);
    while (old != FILTER_STUCK && old != 0 &&
           !__atomic_compare_exchange_n(slot, &old, (uint16_t)(old - 1), 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

void agent_live_filter_pin(const void *lo, size_t len)
{
    uintptr_t end = (uintptr_t)lo + (len ? len : 1);   /* NULL: its one slot */
    for (uintptr_t a = (uintptr_t)lo & ~(uintptr_t)15; a < end; a += 16)
        __atomic_store_n(&agent_live_filter[agent_filter_slot((const void *)a)], FILTER_STUCK, __ATOMIC_RELAXED);
}

bool agent_live_insert(const void *ptr, uint64_t value)
{
    if (__atomic_load_n(&lost, __ATOMIC_RELAXED)) return false;
    shard_t *s = shard_of(ptr);
    bool ok = false;
    agent_lock_ranked(&s->lock, AGENT_RANK_SHARD);
    if (!s->map) {
        map_allocator_t a = map_arena_allocator();
        if (map_new(8, 8, 0, &a, &s->map) != MAP_OK) s->map = NULL;
    }
    if (s->map) {
        void *slot;
        bool inserted;
        if (map_assign64(s->map, (uint64_t)(uintptr_t)ptr, &slot, &inserted) == MAP_OK) {
            /* Not inserted: the address was recorded and never freed as far
             * as we saw (a free we could not observe); the new record wins. */
            __builtin_memcpy(slot, &value, sizeof value);
            if (inserted) filter_count(ptr);
            ok = true;
        }
    }
    agent_unlock_ranked(&s->lock, AGENT_RANK_SHARD);
    return ok;
}

bool agent_live_remove(const void *ptr, uint64_t *value)
{
    if (__atomic_load_n(&lost, __ATOMIC_RELAXED)) return false;
    shard_t *s = shard_of(ptr);
    bool found = false;
    agent_lock_ranked(&s->lock, AGENT_RANK_SHARD);
    if (s->map && map_delete64(s->map, (uint64_t)(uintptr_t)ptr, value)) {
        filter_uncount(ptr);
        found = true;
    }
    agent_unlock_ranked(&s->lock, AGENT_RANK_SHARD);
    return found;
}

bool agent_live_get_stats(agent_live_stats_t *out)
{
    *out = (agent_live_stats_t){ .shards = SHARDS, .filter_bytes = sizeof agent_live_filter };
    if (__atomic_load_n(&lost, __ATOMIC_RELAXED)) return false;
    bool complete = true;
    for (unsigned i = 0; i < SHARDS; i++) {
        if (!agent_lock_ranked_note(&shards[i].lock, AGENT_RANK_SHARD, "live map statistics: a shard was busy")) {
            complete = false;
            continue;
        }
        if (shards[i].map) {
            map_stats_t st;
            map_get_stats(shards[i].map, &st);
            out->count += st.count;
            out->bytes += st.bytes;
            out->buckets += st.buckets;
            out->noverflow += st.noverflow;
            out->overflow_buckets += st.overflow_buckets;
            out->grow_failures += st.grow_failures;
            if (st.B > out->max_B) out->max_B = st.B;
        }
        agent_unlock_ranked(&shards[i].lock, AGENT_RANK_SHARD);
    }
    return complete;
}

bool agent_live_prefork(uint64_t deadline_ns)
{
    bool all = true;
    for (unsigned i = 0; i < SHARDS; i++) {
        prefork_took[i] = agent_lock_ranked_until(&shards[i].lock, AGENT_RANK_SHARD, deadline_ns);
        all &= prefork_took[i];
    }
    return all;
}

void agent_live_postfork_parent(void)
{
    for (unsigned i = SHARDS; i-- > 0;) {
        if (prefork_took[i]) agent_unlock_ranked(&shards[i].lock, AGENT_RANK_SHARD);
        prefork_took[i] = false;
    }
}

bool agent_live_postfork_child(void)
{
    for (unsigned i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&shards[i].lock, NULL);
        if (!prefork_took[i]) __atomic_store_n(&lost, true, __ATOMIC_RELAXED);
        prefork_took[i] = false;
    }
    return !__atomic_load_n(&lost, __ATOMIC_RELAXED);
}

#ifdef HEAPWATCH_TEST
unsigned agent_live_shard_counts(uint64_t *counts, unsigned cap)
{
    for (unsigned i = 0; i < SHARDS && i < cap; i++) {
        agent_lock_ranked(&shards[i].lock, AGENT_RANK_SHARD);
        counts[i] = 0;
        if (shards[i].map) {
            map_stats_t st;
            map_get_stats(shards[i].map, &st);
            counts[i] = st.count;
        }
        agent_unlock_ranked(&shards[i].lock, AGENT_RANK_SHARD);
    }
    return SHARDS;
}
#endif
