/*
 * live.c - the live map: every sampled allocation still live, pointer ->
 * (stack id, usable size), and the counting filter that lets the free() of
 * an unsampled pointer skip it without a lock.
 *
 * Sharding. SHARDS independent map/ maps, each under its own mutex, so
 * the threads of a program sampling at rate 1 do not queue on one lock.
 * A pointer's shard follows its 64 MiB region: a hash of the region picks
 * a window of WINDOW consecutive shards (mod SHARDS), and the pointer's
 * 4 KiB page (mixed with its 2 MiB page) one shard in it. glibc gives
 * each thread an arena of its own (up to 8 per CPU), and a thread arena's
 * heaps are 64 MiB-aligned, so threads mostly keep to shards of their
 * own: with a hash of every address, each thread's pointers covered all
 * the shards and every lock, map header and bucket line went back and
 * forth between the CPUs (rate 1, paired added CPU against that: 2-thread
 * churn 0.72, 16 threads 0.84; with MALLOC_ARENA_MAX=1, where the threads
 * share one arena, 0.91 and 0.99; with jemalloc as the next allocator,
 * churn 0.90). WINDOW is 32 shards: a window of 16 (without the 2 MiB
 * mixing) gained more with per-thread arenas (churn 0.58) but lost where
 * the threads share an arena (1.09; jemalloc 1.20). There are 128 shards,
 * so two threads' windows overlap by a quarter on average, not a half as
 * among 64 (rate 1, paired added CPU, 128 against 64: 2-thread churn
 * 0.78, 16 threads 0.93 to 0.95, one arena 0.99, python3 1.01; 256 gained
 * no more). A shard's
 * map is created on its first insert,
 * with 2 buckets (SHARD_HINT: Go's invariant count <= 6.5 x buckets then
 * holds for each shard, and so for the whole map the statistics report).
 *
 * Cache misses. At rate 1 the maps hold every live allocation, and each
 * insert and remove lands in a random bucket: a cache (and TLB) miss per
 * operation, the largest cost of a rate-1 run. So a sample is one map
 * operation, not two (agent_live_put replaces the record of an address
 * whose free went unseen and hands it back, where a remove was tried
 * first on every sample), and its bucket is prefetched before the stack
 * capture (agent_live_prefetch: no lock, map_prefetch64), so the miss
 * overlaps the walk. (Prefetching a free's bucket ahead of its size word
 * was tried: no gain measured.)
 *
 * The filter (declared in hot.h, where free() reads it inline): two
 * levels of counters, 2^20 16-bit slots (slot = address bits 4..23) and a
 * summary of 2^14 8-bit counters, one per group of 64 consecutive slots.
 * A sampled pointer is counted in its slot and its group after it is
 * stored in the map and uncounted after it leaves, both under the shard
 * lock, with atomic read-modify-writes since two shards can share a slot
 * or a group. Each level counts the pointer on its own (the summary does
 * not follow the slots: no "group became empty" to detect, so nothing to
 * clear and no race between a clear and another shard's insert), so a
 * group's counter is at least the number of live sampled pointers in its
 * slots at every instant, and zero only when there are none. The free()
 * of a sampled pointer happens after the program received it from malloc,
 * so it always sees both counts.
 * A counter that reaches its maximum (0xffff, 0xff) stays there for good:
 * it can no longer be uncounted exactly; a stuck slot only sends more
 * frees to the map, a stuck group more frees to its slots.
 * At HEAPWATCH_RATE=1 the filter is set aside (agent_live_unfilter; the
 * why is at agent_live_unfiltered in thread.h): nothing is counted, and
 * every free asks the map.
 * False positives (slot > 0, pointer not in the map) are counted per thread
 * (filter_false) and reported in the summary; at the default rate they are
 * about live samples / 2^20. A free whose group is non-zero but whose slot
 * is zero costs only the read of the slot (the miss the summary avoids
 * for the others): at the default rate, the frees within 1 KiB of a live
 * sample.
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

#define SHARDS 128                       /* power of two */
/* A shard's map starts with 2 buckets (B = 1: 13 entries fit), not Go's 1:
 * at B = 0 Go lets 8 entries sit in the one bucket, past its load factor
 * 6.5, and SHARDS such shards would break the whole map's count <= 6.5
 * x buckets that the statistics report (live.h). 144 bytes more per
 * shard. */
#define SHARD_HINT 13
#define FILTER_STUCK 0xffffu
#define SUMMARY_STUCK 0xffu

/* Line-aligned: no hot variable of the agent's shares a line with them. */
uint16_t agent_live_filter[1u << AGENT_FILTER_BITS] __attribute__((aligned(64)));
uint8_t agent_live_summary[1u << AGENT_SUMMARY_BITS] __attribute__((aligned(64)));
_Static_assert(sizeof agent_live_summary * AGENT_FILTER_GROUP == 1u << AGENT_FILTER_BITS,
               "a group is AGENT_FILTER_GROUP consecutive slots");

typedef struct shard_s {
    pthread_mutex_t lock;
} __attribute__((aligned(64))) shard_t;

static shard_t shards[SHARDS] = {
    [0 ... SHARDS - 1] = { .lock = PTHREAD_MUTEX_INITIALIZER },
};

/* Each shard's map, created on its first insert (under the shard's lock),
 * never replaced: apart from the locks, because agent_live_prefetch reads
 * it without the lock, and beside the lock it was on a line that every
 * operation on the shard writes (another thread's prefetch then missed
 * it). */
static map_t *shard_maps[SHARDS] __attribute__((aligned(64)));

#define MAP_OF(s) shard_maps[(s) - shards]

static bool lost;                        /* child of a fork that missed a shard */
static AGENT_TLS bool prefork_took[SHARDS];  /* shards this thread's prepare handler holds */

#define REGION_SHIFT 26                  /* 64 MiB: glibc's HEAP_MAX_SIZE on 64-bit */
#define WINDOW 32                        /* shards a region's pointers spread over */

static shard_t *shard_of(const void *ptr)
{
    uint64_t a = (uint64_t)(uintptr_t)ptr;
    uint64_t window = ((a >> REGION_SHIFT) * 0x9e3779b97f4a7c15ull) >> (64 - 7);
    uint64_t within = ((a >> 12) ^ (a >> 21)) & (WINDOW - 1);   /* 2 MiB-spaced chunks spread too */
    return &shards[(window + within) & (SHARDS - 1)];
}
_Static_assert(SHARDS == 1 << 7 && WINDOW <= SHARDS && (WINDOW & (WINDOW - 1)) == 0,
               "shard_of takes 7 bits for the window");
/* prefork holds every shard at once, and the debug agent counts the locks
 * a thread holds per rank in an unsigned char (lock.c). */
_Static_assert(SHARDS < 256, "the debug agent's per-rank count of held locks");

/* COUNT_UP / COUNT_DOWN: a counter of either level, by one, atomically,
 * except at `stuck` (and, down, at 0: a remove that found its pointer
 * always finds it counted). */
#define COUNT_UP(c, stuck)                                                  \
    do {                                                                    \
        __typeof__(*(c)) old_ = __atomic_load_n((c), __ATOMIC_RELAXED);     \
        while (old_ != (stuck) &&                                           \
               !__atomic_compare_exchange_n((c), &old_, (__typeof__(old_))(old_ + 1), 1, \
                                            __ATOMIC_RELAXED, __ATOMIC_RELAXED)) { \
        }                                                                   \
    } while (0)
#define COUNT_DOWN(c, stuck)                                                \
    do {                                                                    \
        __typeof__(*(c)) old_ = __atomic_load_n((c), __ATOMIC_RELAXED);     \
        while (old_ != (stuck) && old_ != 0 &&                              \
               !__atomic_compare_exchange_n((c), &old_, (__typeof__(old_))(old_ - 1), 1, \
                                            __ATOMIC_RELAXED, __ATOMIC_RELAXED)) { \
        }                                                                   \
    } while (0)

bool agent_live_unfiltered;

static void filter_count(const void *ptr)
{
    if (agent_live_unfiltered) return;
    COUNT_UP(&agent_live_filter[agent_filter_slot(ptr)], FILTER_STUCK);
    COUNT_UP(&agent_live_summary[agent_summary_slot(ptr)], SUMMARY_STUCK);
}

static void filter_uncount(const void *ptr)
{
    if (agent_live_unfiltered) return;
    COUNT_DOWN(&agent_live_filter[agent_filter_slot(ptr)], FILTER_STUCK);
    COUNT_DOWN(&agent_live_summary[agent_summary_slot(ptr)], SUMMARY_STUCK);
}

void agent_live_filter_pin(const void *lo, size_t len)
{
    uintptr_t end = (uintptr_t)lo + (len ? len : 1);   /* NULL: its one slot */
    for (uintptr_t a = (uintptr_t)lo & ~(uintptr_t)15; a < end; a += 16) {
        __atomic_store_n(&agent_live_filter[agent_filter_slot((const void *)a)], FILTER_STUCK, __ATOMIC_RELAXED);
        __atomic_store_n(&agent_live_summary[agent_summary_slot((const void *)a)], SUMMARY_STUCK, __ATOMIC_RELAXED);
    }
}

void agent_live_unfilter(void)
{
    agent_live_unfiltered = true;
}

agent_live_put_t agent_live_put(const void *ptr, uint64_t value, uint64_t *old)
{
    if (__atomic_load_n(&lost, __ATOMIC_RELAXED)) return AGENT_LIVE_FAILED;
    shard_t *s = shard_of(ptr);
    agent_live_put_t put = AGENT_LIVE_FAILED;
    agent_lock_ranked(&s->lock, AGENT_RANK_SHARD);
    if (!MAP_OF(s)) {
        map_allocator_t a = map_arena_huge_allocator();   /* see map.c, "Pages" */
        map_t *m;
        if (map_new(8, 8, SHARD_HINT, &a, &m) == MAP_OK) __atomic_store_n(&MAP_OF(s), m, __ATOMIC_RELEASE);
    }
    if (MAP_OF(s)) {
        void *slot;
        bool inserted;
        if (map_assign64(MAP_OF(s), (uint64_t)(uintptr_t)ptr, &slot, &inserted) == MAP_OK) {
            if (inserted) {
                filter_count(ptr);
                put = AGENT_LIVE_ADDED;
            } else {
                /* The address was recorded and never freed as far as we
                 * saw (a free we could not observe): the new record wins,
                 * the caller counts the old one gone. */
                if (old) __builtin_memcpy(old, slot, sizeof *old);
                put = AGENT_LIVE_REPLACED;
            }
            __builtin_memcpy(slot, &value, sizeof value);
        }
    }
    agent_unlock_ranked(&s->lock, AGENT_RANK_SHARD);
    return put;
}

bool agent_live_insert(const void *ptr, uint64_t value)
{
    return agent_live_put(ptr, value, NULL) != AGENT_LIVE_FAILED;
}

void agent_live_prefetch(const void *ptr)
{
    const map_t *m = __atomic_load_n(&MAP_OF(shard_of(ptr)), __ATOMIC_RELAXED);
    if (m) map_prefetch64(m, (uint64_t)(uintptr_t)ptr);
}

bool agent_live_remove(const void *ptr, uint64_t *value)
{
    if (__atomic_load_n(&lost, __ATOMIC_RELAXED)) return false;
    shard_t *s = shard_of(ptr);
    bool found = false;
    agent_lock_ranked(&s->lock, AGENT_RANK_SHARD);
    if (MAP_OF(s) && map_delete64(MAP_OF(s), (uint64_t)(uintptr_t)ptr, value)) {
        filter_uncount(ptr);
        found = true;
    }
    agent_unlock_ranked(&s->lock, AGENT_RANK_SHARD);
    return found;
}

bool agent_live_get_stats(agent_live_stats_t *out)
{
    *out = (agent_live_stats_t){ .shards = SHARDS, .filter_bytes = sizeof agent_live_filter + sizeof agent_live_summary };
    if (__atomic_load_n(&lost, __ATOMIC_RELAXED)) return false;
    bool complete = true;
    for (unsigned i = 0; i < SHARDS; i++) {
        if (!agent_lock_ranked_note(&shards[i].lock, AGENT_RANK_SHARD, "live map statistics: a shard was busy")) {
            complete = false;
            continue;
        }
        if (shard_maps[i]) {
            map_stats_t st;
            map_get_stats(shard_maps[i], &st);
            out->count += st.count;
            out->bytes += st.bytes;
            out->buckets += st.buckets;
            out->noverflow += st.noverflow;
            out->overflow_buckets += st.overflow_buckets;
            out->grow_failures += st.grow_failures;
            if (st.growing) {
                out->shards_growing++;
                out->nevacuate += st.nevacuate;
                out->noldbuckets += st.noldbuckets;
            }
        }
        agent_unlock_ranked(&shards[i].lock, AGENT_RANK_SHARD);
    }
    while (out->log2_buckets < 63 && (UINT64_C(1) << out->log2_buckets) < out->buckets) out->log2_buckets++;
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
        if (shard_maps[i]) {
            map_stats_t st;
            map_get_stats(shard_maps[i], &st);
            counts[i] = st.count;
        }
        agent_unlock_ranked(&shards[i].lock, AGENT_RANK_SHARD);
    }
    return SHARDS;
}
#endif
