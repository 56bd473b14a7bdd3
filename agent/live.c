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
 * Solo. Most programs sampled at rate 1 have one thread (python3, perl,
 * cc1), and the shard mutexes' lock and unlock were 4.8 % of python3's
 * samples there, for no other thread. So the first thread that changes a
 * shard becomes its owner, and while no other thread has come near the
 * shards it changes them without a lock: it sets its busy mark, reads the
 * state and goes on unlocked only if that is still SOLO_ON with no guest.
 * Another thread that changes a shard leaves solo for good (SOLO_LEAVING,
 * then SOLO_GONE: everyone locks); one that only reads (statistics,
 * fork's prepare handler) visits as a guest for the time of its reads,
 * with the shards' locks, and never becomes the owner. Either publishes
 * what it is about to do, then makes every thread of the process pass a
 * full memory barrier (membarrier's private expedited command,
 * registered at start while the process has one thread: refused, there
 * is no solo), after which the owner either sees it (and locks) or its
 * busy mark is visible; it then waits for the mark to go, which is one
 * map operation of the owner's. The wait is bounded: the paths that must
 * not block wait until their deadline and count the shards as busy; the
 * others wait a second (SOLO_STUCK_NS), then give the live map up (lost)
 * rather than stop every thread behind an owner that will not come out
 * (one that left a handler by siglongjmp from inside its change, say),
 * as they do when the barrier is refused later (a seccomp filter). The
 * waits never reach a cancellation point: they run inside malloc and
 * free. A signal handler on the owner never meets the owner's own
 * unlocked change: the sampling paths that make them are quiet, and a
 * handler there only counts (sample.c); one that reads (an exit from a
 * handler) sees the mark and counts the shards as busy. A fork child has
 * one thread and every shard taken by prefork: solo again, no owner.
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
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/hot.h"
#include "agent/live.h"
#include "agent/lock.h"
#include "agent/thread.h"
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

static bool lost;                        /* child of a fork that missed a shard; no barrier */
static AGENT_TLS bool prefork_took[SHARDS];  /* shards this thread's prepare handler holds */

/* Solo (see the design comment). All atomic. */
enum { SOLO_GONE = 0, SOLO_LEAVING = 1, SOLO_ON = 2 };
static unsigned char solo_state = SOLO_ON;
static const agent_tls_t *solo_owner;    /* the thread that changes the shards unlocked */
static bool solo_busy;                   /* the owner is inside such a change */
static unsigned solo_guests;             /* readers visiting with the locks */
static AGENT_TLS bool prefork_guest;     /* this thread's prepare handler visits as a guest */
/* How long an ordinary path waits for the owner's change before it gives
 * the live map up: a thread that left the sampling path by siglongjmp
 * from a handler, or stays in a handler that waits for another thread,
 * would otherwise stop every thread at its next sample. */
#define SOLO_STUCK_NS 1000000000ull

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

/* ------------------------------------------------------------------------ */
/* Solo                                                                     */
/* ------------------------------------------------------------------------ */

/* barrier_all: a full memory barrier on every thread of the process
 * (membarrier's private expedited command; registered at start, by
 * agent_live_solo_init, and again in a fork child whose address space
 * is not). @return false when it was refused. */
static bool barrier_all(void)
{
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return true;
    return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
           syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

void agent_live_solo_init(void)
{
    /* Now, while the process has one thread: registering then is a flag
     * (with threads, the kernel waits for an RCU grace period: 12 ms
     * measured, inside a malloc). Refused (seccomp, no membarrier in the
     * kernel): no solo, every change locks. */
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0)
        __atomic_store_n(&solo_state, SOLO_GONE, __ATOMIC_RELEASE);
}

/* solo_mine: the calling thread owns the shards (claimed now if no thread
 * did: only a change claims). */
static inline bool solo_mine(void)
{
    const agent_tls_t *owner = __atomic_load_n(&solo_owner, __ATOMIC_ACQUIRE);
    if (AGENT_LIKELY(owner == &agent_tls)) return true;
    if (owner) return false;
    if (!__atomic_compare_exchange_n(&solo_owner, &owner, &agent_tls, false,
                                     __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE))
        return false;
    /* Against a guest that saw no owner (solo_visit): one of the two sees
     * the other's write. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return true;
}

/* solo_pause: waits a little, more the longer it has waited. Never a
 * cancellation point: it runs inside malloc and free (nanosleep through
 * syscall(), not glibc's cancellable wrapper). */
static void solo_pause(unsigned spins)
{
    if (spins < 64) __builtin_ia32_pause();
    else if (spins < 256) sched_yield();
    else {
        struct timespec ts = { 0, 50000 };
        (void)syscall(SYS_nanosleep, &ts, NULL);
    }
}

/* solo_wait_owner: waits until the owner is not busy, until limit_ns
 * (CLOCK_MONOTONIC; 0: one look). Called after barrier_all: a busy mark
 * set before it is seen; one set after it is let go at once (its owner
 * sees why). @return true when not busy. */
static bool solo_wait_owner(uint64_t limit_ns)
{
    for (unsigned spins = 0; __atomic_load_n(&solo_busy, __ATOMIC_ACQUIRE); spins++) {
        if (limit_ns == 0 || agent_mono_ns() >= limit_ns) return false;
        solo_pause(spins);
    }
    return true;
}

/* solo_limit: how long a wait may last: the stretch's deadline when
 * bounded, else SOLO_STUCK_NS from now. */
static uint64_t solo_limit(bool bounded, uint64_t deadline_ns)
{
    return bounded ? deadline_ns : agent_mono_ns() + SOLO_STUCK_NS;
}

/* solo_give_up: the live map is given up for good (lost): nothing may
 * touch it again unless it knows the owner is out (see the callers). */
static void solo_give_up(const char *why)
{
    __atomic_store_n(&lost, true, __ATOMIC_RELAXED);
    agent_incomplete_add(why);
}

/* solo_leave: the shards are shared from now on (SOLO_GONE). Every
 * thread that needs it makes the barrier and the wait itself, so none
 * depends on another to finish the handover. Bounded paths give up at
 * their deadline (@return false, the state stays SOLO_LEAVING); an
 * ordinary path that waits SOLO_STUCK_NS, or finds no barrier, gives the
 * live map up (lost) and goes on. @return true when SOLO_GONE. */
static bool solo_leave(bool bounded, uint64_t deadline_ns)
{
    unsigned char on = SOLO_ON;
    (void)__atomic_compare_exchange_n(&solo_state, &on, SOLO_LEAVING, false,
                                      __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&solo_state, __ATOMIC_ACQUIRE) == SOLO_GONE) return true;
    if (!barrier_all()) {
        solo_give_up("live map: no memory barrier could be had to share it; sampling stopped");
    } else if (!solo_wait_owner(solo_limit(bounded, deadline_ns))) {
        if (bounded) return false;
        solo_give_up("live map: a thread stayed inside a change of it for over a second; sampling stopped");
    }
    __atomic_store_n(&solo_state, SOLO_GONE, __ATOMIC_RELEASE);
    return true;
}

static void solo_visit_end(bool guest);

/* solo_visit: before a reader takes shard locks (statistics, fork's
 * prepare handler). In solo, the owner reads as it likes unless a signal
 * handler on it interrupted its change (@return false: the shards count
 * as busy); any other thread is a guest (*guest set: solo_visit_end(true)
 * after its reads) and never claims the shards. Bounded by the stretch or
 * by deadline_ns (bounded), else by SOLO_STUCK_NS. */
static bool solo_visit(bool bounded, uint64_t deadline_ns, bool *guest)
{
    *guest = false;
    unsigned char st = __atomic_load_n(&solo_state, __ATOMIC_ACQUIRE);
    if (st == SOLO_GONE) return true;
    if (st == SOLO_LEAVING) return solo_leave(bounded, deadline_ns);
    if (__atomic_load_n(&solo_owner, __ATOMIC_ACQUIRE) == &agent_tls)
        return !__atomic_load_n(&solo_busy, __ATOMIC_RELAXED);
    __atomic_add_fetch(&solo_guests, 1, __ATOMIC_SEQ_CST);
    *guest = true;
    /* No owner yet: one that claims now sees this guest (solo_mine). */
    if (!__atomic_load_n(&solo_owner, __ATOMIC_SEQ_CST)) return true;
    const char *why = NULL;
    if (!barrier_all()) why = "live map statistics: no memory barrier could be had";
    else if (!solo_wait_owner(solo_limit(bounded, deadline_ns))) why = "live map statistics: a shard was busy";
    if (!why) return true;
    solo_visit_end(true);
    *guest = false;
    agent_note_busy(why);
    return false;
}

/* solo_visit_end: after the reads of a solo_visit that made a guest. */
static void solo_visit_end(bool guest)
{
    if (guest) __atomic_sub_fetch(&solo_guests, 1, __ATOMIC_RELEASE);
}

/* solo_visit_here: solo_visit with the calling thread's stretch. */
static bool solo_visit_here(bool *guest)
{
    uint64_t deadline;
    bool bounded = agent_bounded_now(&deadline);
    return solo_visit(bounded, deadline, guest);
}

/* change_begin: the right to change shard s (agent_live_put, _remove):
 * for the owner in solo, its busy mark; else the shard's lock, after
 * leaving solo. @return true when the lock was taken (change_end gives
 * it back). */
static inline bool change_begin(shard_t *s)
{
    if (__atomic_load_n(&solo_state, __ATOMIC_RELAXED) == SOLO_ON && solo_mine()) {
        __atomic_store_n(&solo_busy, true, __ATOMIC_RELAXED);
        /* The barrier_all of a leaver or a guest orders the mark before
         * these loads; the compiler must too. */
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        if (AGENT_LIKELY(__atomic_load_n(&solo_state, __ATOMIC_ACQUIRE) == SOLO_ON &&
                         __atomic_load_n(&solo_guests, __ATOMIC_ACQUIRE) == 0))
            return false;
        __atomic_store_n(&solo_busy, false, __ATOMIC_RELEASE);
        if (__atomic_load_n(&solo_state, __ATOMIC_ACQUIRE) == SOLO_ON) {
            /* A guest reads: lock, as it does (the owner stays the owner). */
            agent_lock_ranked(&s->lock, AGENT_RANK_SHARD);
            return true;
        }
    }
    if (__atomic_load_n(&solo_state, __ATOMIC_ACQUIRE) != SOLO_GONE) (void)solo_leave(false, 0);
    agent_lock_ranked(&s->lock, AGENT_RANK_SHARD);
    return true;
}

static inline void change_end(shard_t *s, bool locked)
{
    if (locked) {
        agent_unlock_ranked(&s->lock, AGENT_RANK_SHARD);
        return;
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&solo_busy, false, __ATOMIC_RELEASE);   /* after the map's writes */
}
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
    bool locked = change_begin(s);
    if (AGENT_UNLIKELY(locked && __atomic_load_n(&lost, __ATOMIC_RELAXED))) {
        change_end(s, locked);   /* given up meanwhile (no barrier): the owner may be changing it */
        return AGENT_LIVE_FAILED;
    }
#ifdef HEAPWATCH_TEST
    if (agent_live_test_in_change) agent_live_test_in_change();
#endif
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
    change_end(s, locked);
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
    bool locked = change_begin(s);
    if (AGENT_UNLIKELY(locked && __atomic_load_n(&lost, __ATOMIC_RELAXED))) {
        change_end(s, locked);
        return false;
    }
#ifdef HEAPWATCH_TEST
    if (agent_live_test_in_change) agent_live_test_in_change();
#endif
    if (MAP_OF(s) && map_delete64(MAP_OF(s), (uint64_t)(uintptr_t)ptr, value)) {
        filter_uncount(ptr);
        found = true;
    }
    change_end(s, locked);
    return found;
}

bool agent_live_get_stats(agent_live_stats_t *out)
{
    *out = (agent_live_stats_t){ .shards = SHARDS, .filter_bytes = sizeof agent_live_filter + sizeof agent_live_summary };
    if (__atomic_load_n(&lost, __ATOMIC_RELAXED)) return false;
    bool guest;
    if (!solo_visit_here(&guest)) return false;   /* noted by solo_visit */
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
    solo_visit_end(guest);
    while (out->log2_buckets < 63 && (UINT64_C(1) << out->log2_buckets) < out->buckets) out->log2_buckets++;
    return complete;
}

bool agent_live_prefork(uint64_t deadline_ns)
{
    if (!solo_visit(true, deadline_ns, &prefork_guest)) return false;   /* prefork_took all false: the child gives up */
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
    solo_visit_end(prefork_guest);
    prefork_guest = false;
}

bool agent_live_postfork_child(void)
{
    for (unsigned i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&shards[i].lock, NULL);
        if (!prefork_took[i]) __atomic_store_n(&lost, true, __ATOMIC_RELAXED);
        prefork_took[i] = false;
    }
    /* One thread now, the forker, and every shard was taken (or the map
     * is lost): solo again, with no owner, once this address space may
     * use the barrier (registering with one thread costs a flag). */
    prefork_guest = false;
    solo_guests = 0;
    solo_busy = false;
    solo_owner = NULL;
    solo_state = !lost && syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0
                     ? SOLO_ON : SOLO_GONE;
    return !__atomic_load_n(&lost, __ATOMIC_RELAXED);
}

#ifdef HEAPWATCH_TEST
void agent_live_test_solo_reset(void)
{
    solo_state = SOLO_ON;
    solo_owner = NULL;
    solo_busy = prefork_guest = false;
    solo_guests = 0;
}

int agent_live_test_solo_state(void) { return __atomic_load_n(&solo_state, __ATOMIC_ACQUIRE); }
unsigned agent_live_test_solo_guests(void) { return __atomic_load_n(&solo_guests, __ATOMIC_ACQUIRE); }

bool agent_live_test_lock_shard(const void *ptr, bool lock)
{
    shard_t *s = shard_of(ptr);
    if (lock) agent_lock_ranked(&s->lock, AGENT_RANK_SHARD);
    else agent_unlock_ranked(&s->lock, AGENT_RANK_SHARD);
    return true;
}

bool agent_live_test_visit(bool begin)
{
    static bool guest;
    if (!begin) {
        solo_visit_end(guest);
        return true;
    }
    return solo_visit(false, 0, &guest);
}

void (*agent_live_test_in_change)(void);

unsigned agent_live_shard_counts(uint64_t *counts, unsigned cap)
{
    bool guest;
    (void)solo_visit(false, 0, &guest);
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
    solo_visit_end(guest);
    return SHARDS;
}
#endif
