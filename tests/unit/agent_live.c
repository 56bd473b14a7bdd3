/*
 * agent_live.c - the live map and its filter (agent/live.c, the filter's
 * inline test in agent/hot.h), without any preload.
 *
 * Addresses here are numbers shaped like glibc's (16-byte aligned, in the
 * ranges a 64-bit heap uses); the live map never dereferences them. The
 * map and the filter are process-wide, so every test leaves them as it
 * found them: no entry, every filter slot zero (checked at each test's
 * end), except test_stuck_slots, which pins slots for good and runs last.
 * So that one failing test does not fail the others, each insert is
 * noted and the teardown takes every noted address out and clears the
 * filter (after the test's own checks).
 *
 * What is checked:
 *   - insert/remove round trips with packed values (stack id, clamped
 *     size); remove of an absent pointer; a present address inserted again
 *     (the new record wins, the filter counts the address once);
 *   - the filter against a model: a slot is non-zero exactly while some
 *     live sampled address maps there, and holds how many do; so does
 *     each summary counter for its group of 64 slots; two addresses 16 MiB
 *     apart share a slot (a false positive for the one not sampled, and
 *     its remove must not uncount the other); an address in a live
 *     sample's group but not its slot is cleared by the slot level;
 *   - concurrency: threads updating one slot, and one group through
 *     different slots, under different shard locks keep both levels
 *     exact, and a live address is "maybe" at every instant (neither
 *     level ever reads zero for it while other threads count and uncount
 *     around it);
 *   - the stuck slot: agent_live_filter_pin (both levels), a slot counter
 *     that reaches 0xffff (65536 live addresses in one slot) stays there,
 *     and so does a summary counter that reaches 0xff, whose group is
 *     then answered by its slots alone;
 *   - shard distribution (agent_live_shard_counts, a HEAPWATCH_TEST-only
 *     reader): glibc-like consecutive chunks of several sizes and
 *     page-spaced mmap chunks in one 64 MiB region spread over a window
 *     of 32 shards, 16 arenas 64 MiB apart each over its own window (at
 *     different starts), 2 MiB-spaced mmap chunks and random addresses
 *     over all 64 (chi-square at p = 0.001, and max/min within 25% of
 *     the mean);
 *   - the filter set aside (agent_live_unfilter, HEAPWATCH_RATE=1): no
 *     counter moves, every free asks the map, no fast path;
 *   - solo: one thread changes the shards without their locks (state
 *     solo throughout, and a reader on another thread - a guest - leaves
 *     it so); the first change by another thread ends it for good; both
 *     the guest and that thread wait while the owner is inside a change
 *     (a hook holds it there until the other is seen waiting, and 50 ms
 *     more: neither finishes meanwhile; nor is the wait a cancellation
 *     point: a thread with a cancellation pending finishes its change,
 *     inside what would be a program's malloc); while a guest reads, the
 *     owner's changes take the locks (one waits for a lock the guest
 *     holds); fork's prepare handler on another thread gives up at its
 *     deadline while the owner is inside a change, and leaves no guest;
 *   - agent_live_get_stats: the count, and buckets as Go's load factor
 *     leaves them (count <= 6.5 buckets per shard, and no shard larger
 *     than its count needs).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agent/hot.h"
#include "agent/live.h"
#include "agent/thread.h"
#include "test_util.h"

#define SHARDS 128
#define MIB (UINT64_C(1) << 20)
#define SLOT_SPAN (16 * MIB)                 /* addresses this far apart share a slot */
#define HEAP UINT64_C(0x00005555a0000000)    /* a PIE program's brk heap */
#define MMAPS UINT64_C(0x00007f3c00000000)   /* where mmap'd chunks and arenas live */

static const void *A(uint64_t a) { return (const void *)(uintptr_t)a; }

/* The addresses a test inserted, for the teardown. */
#define NOTED_MAX 600000
static uint64_t noted[NOTED_MAX];
static size_t nnoted;

/* ins: agent_live_insert, noted. */
static bool ins(uint64_t a, uint64_t value)
{
    if (nnoted < NOTED_MAX) noted[nnoted++] = a;
    return agent_live_insert(A(a), value);
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < nnoted; i++) (void)agent_live_remove(A(noted[i]), NULL);
    nnoted = 0;
    memset(agent_live_filter, 0, sizeof agent_live_filter);
    memset(agent_live_summary, 0, sizeof agent_live_summary);
    /* No other thread now: the next test starts solo again, so that one
     * thread's tests run unlocked and threaded ones leave solo anew. */
    agent_live_test_in_change = NULL;
    agent_live_test_solo_reset();
    return 0;
}

/* nonzero_slots: filter slots that are not zero, over the whole array. */
static size_t nonzero_slots(void)
{
    size_t n = 0;
    for (size_t i = 0; i < (1u << AGENT_FILTER_BITS); i++) n += agent_live_filter[i] != 0;
    return n;
}

/* nonzero_groups: summary counters that are not zero. */
static size_t nonzero_groups(void)
{
    size_t n = 0;
    for (size_t i = 0; i < (1u << AGENT_SUMMARY_BITS); i++) n += agent_live_summary[i] != 0;
    return n;
}

/* group_of: the summary counter of address a. */
static uint8_t group_of(uint64_t a)
{
    return agent_live_summary[agent_summary_slot((const void *)(uintptr_t)a)];
}

static uint64_t live_count(void)
{
    agent_live_stats_t st;
    assert_true(agent_live_get_stats(&st));
    return st.count;
}

/* clean: what every test but the last leaves behind: nothing. */
static void assert_clean(void)
{
    assert_int_equal(live_count(), 0);
    assert_int_equal(nonzero_slots(), 0);
    assert_int_equal(nonzero_groups(), 0);
}

/* random_addr: a random 16-byte-aligned user address (47 bits). */
static uint64_t random_addr(uint64_t *rng)
{
    return (test_rand(rng) & ((UINT64_C(1) << 47) - 1) & ~UINT64_C(15)) | 0x10000;
}

/* ------------------------------------------------------------------------ */
/* Solo                                                                     */
/* ------------------------------------------------------------------------ */

enum { SOLO_GONE_STATE = 0, SOLO_ON_STATE = 2 };
#define SOLO_BASE (HEAP + 0x7000000)
#define SOLO_OTHER (MMAPS + 0x40000000)       /* another 64 MiB region */

static void *other_insert(void *arg)
{
    return (void *)(uintptr_t)ins((uint64_t)(uintptr_t)arg, 7);
}

static void *other_counts(void *arg)
{
    (void)arg;
    uint64_t counts[SHARDS], sum = 0;
    unsigned n = agent_live_shard_counts(counts, SHARDS);
    for (unsigned i = 0; i < n; i++) sum += counts[i];
    return (void *)(uintptr_t)sum;
}

static void test_solo_owner_guest_leave(void **state)
{
    (void)state;
    assert_int_equal(agent_live_test_solo_state(), SOLO_ON_STATE);
    /* A reader before any change (the background thread's first
     * snapshot) does not take the shards: the first change does. */
    pthread_t th;
    void *ret;
    assert_int_equal(pthread_create(&th, NULL, other_counts, NULL), 0);
    pthread_join(th, &ret);
    assert_int_equal((uintptr_t)ret, 0);
    for (unsigned i = 0; i < 100; i++) assert_true(ins(SOLO_BASE + 16 * i, i));
    assert_int_equal(live_count(), 100);
    assert_int_equal(agent_live_test_solo_state(), SOLO_ON_STATE);
    /* A reader on another thread visits: solo stays. */
    assert_int_equal(pthread_create(&th, NULL, other_counts, NULL), 0);
    pthread_join(th, &ret);
    assert_int_equal((uintptr_t)ret, 100);
    assert_int_equal(agent_live_test_solo_state(), SOLO_ON_STATE);
    uint64_t v;
    assert_true(agent_live_remove(A(SOLO_BASE), &v));
    assert_int_equal(v, 0);
    assert_int_equal(agent_live_test_solo_state(), SOLO_ON_STATE);
    /* A change on another thread ends it. */
    assert_int_equal(pthread_create(&th, NULL, other_insert, (void *)(uintptr_t)SOLO_OTHER), 0);
    pthread_join(th, &ret);
    assert_true(ret != NULL);
    assert_int_equal(agent_live_test_solo_state(), SOLO_GONE_STATE);
    assert_int_equal(live_count(), 100);   /* 99 of the owner's and the other's */
    assert_true(agent_live_remove(A(SOLO_OTHER), &v));
    assert_int_equal(v, 7);
}

/* The owner is held inside a change (the hook) while another thread
 * changes (wait_kind 0) or reads (1): that thread must not finish before
 * the owner's change does. */
static pthread_t hold_owner;
static volatile int hold_armed, other_done, other_done_while_held;
static int wait_kind;

static void *other_then_done(void *arg)
{
    (void)arg;
    if (wait_kind == 2) {
        /* A cancellation pending: the wait inside the change (inside a
         * program's malloc or free) must not act on it. */
        pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, NULL);
        pthread_cancel(pthread_self());
        (void)ins(SOLO_OTHER, 9);
        __atomic_store_n(&other_done, 1, __ATOMIC_SEQ_CST);
        pthread_testcancel();
        return NULL;
    }
    if (wait_kind == 0) {
        (void)ins(SOLO_OTHER, 9);
    } else {
        agent_live_stats_t st;
        (void)agent_live_get_stats(&st);
    }
    __atomic_store_n(&other_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static pthread_t other_thread;

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* hold_hook: inside the owner's change, starts the other thread and
 * waits until it is visibly waiting for the owner (the state leaving,
 * or a guest counted), then 50 ms more, and notes whether it finished. */
static void hold_hook(void)
{
    if (!pthread_equal(pthread_self(), hold_owner) || !hold_armed) return;
    hold_armed = 0;
    assert_int_equal(pthread_create(&other_thread, NULL, other_then_done, NULL), 0);
    for (int i = 0; i < 5000; i++) {
        if (wait_kind != 1 ? agent_live_test_solo_state() == 1 : agent_live_test_solo_guests() == 1) break;
        sleep_ms(1);
    }
    sleep_ms(50);
    other_done_while_held = __atomic_load_n(&other_done, __ATOMIC_SEQ_CST);
}

static void solo_hold(int kind)
{
    assert_int_equal(agent_live_test_solo_state(), SOLO_ON_STATE);
    wait_kind = kind;
    other_done = other_done_while_held = 0;
    hold_owner = pthread_self();
    hold_armed = 1;
    agent_live_test_in_change = hold_hook;
    assert_true(ins(SOLO_BASE, 1));   /* held inside, unlocked: the owner's */
    agent_live_test_in_change = NULL;
    void *ret;
    pthread_join(other_thread, &ret);
    assert_int_equal(other_done_while_held, 0);
    assert_int_equal(other_done, 1);   /* kind 2: the change returned, then the cancellation acted */
    if (kind == 2) assert_true(ret == PTHREAD_CANCELED);
    assert_int_equal(agent_live_test_solo_state(), kind != 1 ? SOLO_GONE_STATE : SOLO_ON_STATE);
    assert_int_equal(live_count(), kind != 1 ? 2 : 1);
}

static void test_solo_change_waits_for_owner(void **state)
{
    (void)state;
    solo_hold(0);
}

static void test_solo_guest_waits_for_owner(void **state)
{
    (void)state;
    solo_hold(1);
}

static void test_solo_wait_is_no_cancellation_point(void **state)
{
    (void)state;
    solo_hold(2);
}

/* While a guest reads, the owner's changes take the shard locks: one
 * that needs a lock the guest holds waits for it. */
static volatile int owner_done;
static uint64_t guest_addr;
static volatile int guest_ready, owner_done_while_locked;

static void *guest_holding_lock(void *arg)
{
    (void)arg;
    assert_true(agent_live_test_visit(true));
    agent_live_test_lock_shard(A(guest_addr), true);
    __atomic_store_n(&guest_ready, 1, __ATOMIC_SEQ_CST);
    sleep_ms(100);
    owner_done_while_locked = __atomic_load_n(&owner_done, __ATOMIC_SEQ_CST);
    agent_live_test_lock_shard(A(guest_addr), false);
    agent_live_test_visit(false);
    return NULL;
}

static void test_solo_owner_locks_while_guest_reads(void **state)
{
    (void)state;
    assert_true(ins(SOLO_BASE, 1));   /* the owner */
    guest_addr = SOLO_BASE + 4096;
    owner_done = guest_ready = owner_done_while_locked = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, guest_holding_lock, NULL), 0);
    while (!__atomic_load_n(&guest_ready, __ATOMIC_SEQ_CST)) sleep_ms(1);
    assert_true(ins(guest_addr, 2));   /* must wait for the guest's lock */
    __atomic_store_n(&owner_done, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    assert_int_equal(owner_done_while_locked, 0);
    assert_int_equal(agent_live_test_solo_state(), SOLO_ON_STATE);   /* a guest does not end solo */
    assert_int_equal(agent_live_test_solo_guests(), 0);
    assert_int_equal(live_count(), 2);
}

/* fork's prepare handler on another thread while the owner is inside a
 * change: it waits until its deadline, gives up (the child would lose
 * the live map), and leaves no guest behind. */
static volatile int prefork_result = -1;

static void *prefork_now(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    prefork_result = agent_live_prefork(now + 30000000ull);   /* 30 ms */
    agent_live_postfork_parent();
    __atomic_store_n(&other_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void prefork_hook(void)
{
    if (!pthread_equal(pthread_self(), hold_owner) || !hold_armed) return;
    hold_armed = 0;
    assert_int_equal(pthread_create(&other_thread, NULL, prefork_now, NULL), 0);
    for (int i = 0; i < 5000 && !__atomic_load_n(&other_done, __ATOMIC_SEQ_CST); i++) sleep_ms(1);
}

static void test_solo_prefork_bounded(void **state)
{
    (void)state;
    other_done = 0;
    prefork_result = -1;
    hold_owner = pthread_self();
    hold_armed = 1;
    agent_live_test_in_change = prefork_hook;
    assert_true(ins(SOLO_BASE, 1));
    agent_live_test_in_change = NULL;
    pthread_join(other_thread, NULL);
    assert_int_equal(prefork_result, 0);
    assert_int_equal(agent_live_test_solo_guests(), 0);
    assert_int_equal(agent_live_test_solo_state(), SOLO_ON_STATE);
    /* Out of the change, the same prepare handler takes every shard. */
    assert_int_equal(pthread_create(&other_thread, NULL, prefork_now, NULL), 0);
    pthread_join(other_thread, NULL);
    assert_int_equal(prefork_result, 1);
    assert_int_equal(agent_live_test_solo_guests(), 0);
}

/* ------------------------------------------------------------------------ */
/* Statistics (first: the shards' maps are fresh)                           */
/* ------------------------------------------------------------------------ */

/* min_B: the fewest buckets (log2) a map/ map holding n entries has after
 * inserts alone: Go's rule, grow when count > 8 and count > 6.5 * 2^B. */
static unsigned min_B(uint64_t n)
{
    unsigned B = 0;
    while (n > 8 && n > 13 * ((UINT64_C(1) << B) / 2)) B++;
    return B;
}

/* test_stats_small_shards: every shard filled to 8 entries, the most a Go
 * map keeps in one bucket (8 > 6.5): the shards start at 2 buckets, so the
 * whole map still holds count <= 6.5 x buckets <= 6.5 x 2^log2_buckets.
 * Then inserts until a stats read finds a shard growing: the evacuation's
 * progress is reported (nevacuate of noldbuckets). */
static void test_stats_small_shards(void **state)
{
    (void)state;
    uint64_t before[SHARDS], after[SHARDS];
    static uint64_t addrs[4096];
    size_t n = 0;
    uint64_t rng = 5;
    agent_live_stats_t st;
    for (unsigned full = 0; full < SHARDS && n < 4096;) {
        uint64_t a = random_addr(&rng);
        agent_live_shard_counts(before, SHARDS);
        assert_true(ins(a, agent_live_pack(1, 32)));
        agent_live_shard_counts(after, SHARDS);
        unsigned s = 0;
        while (s < SHARDS && after[s] == before[s]) s++;
        assert_true(s < SHARDS);
        if (after[s] > 8) {
            assert_true(agent_live_remove(A(a), NULL));
            continue;
        }
        addrs[n++] = a;
        if (after[s] == 8) full++;
    }
    assert_true(agent_live_get_stats(&st));
    assert_int_equal(st.count, 8 * SHARDS);
    assert_int_equal(st.buckets, 2 * SHARDS);
    assert_int_equal(1u << st.log2_buckets, 2 * SHARDS);   /* a power of two */
    assert_true((double)st.count <= 6.5 * (double)st.buckets);
    assert_int_equal(st.shards_growing, 0);
    assert_int_equal(st.nevacuate, 0);
    assert_int_equal(st.noldbuckets, 0);

    /* Grow until a read finds a shard mid-evacuation. */
    bool seen = false;
    while (!seen && n < 4096) {
        uint64_t a = random_addr(&rng);
        assert_true(ins(a, agent_live_pack(1, 32)));
        addrs[n++] = a;
        assert_true(agent_live_get_stats(&st));
        assert_true((double)st.count <= 6.5 * (double)st.buckets);
        assert_true((double)st.count <= 6.5 * (double)(UINT64_C(1) << st.log2_buckets));
        assert_true(st.nevacuate <= st.noldbuckets);
        if (st.shards_growing > 0) {
            seen = true;
            assert_true(st.noldbuckets >= 2 * st.shards_growing);   /* old tables of 2 buckets or more */
            assert_true(st.nevacuate < st.noldbuckets);
        } else {
            assert_int_equal(st.noldbuckets, 0);
        }
    }
    assert_true(seen);
    for (size_t i = 0; i < n; i++) assert_true(agent_live_remove(A(addrs[i]), NULL));
    assert_clean();
}

static void test_stats(void **state)
{
    (void)state;
    agent_live_stats_t st;
    assert_true(agent_live_get_stats(&st));
    assert_int_equal(st.count, 0);
    assert_int_equal(st.shards, SHARDS);
    assert_int_equal(st.filter_bytes, (sizeof(uint16_t) << AGENT_FILTER_BITS) + (1u << AGENT_SUMMARY_BITS));

    enum { N = 20000 };
    static uint64_t addrs[N];
    uint64_t rng = 11;
    for (size_t i = 0; i < N; i++) {
        addrs[i] = random_addr(&rng);
        assert_true(ins(addrs[i], agent_live_pack(1, 32)));
        if ((i + 1) % 5000) continue;
        /* Along the way: the count is exact, and Go's load factor holds. */
        assert_true(agent_live_get_stats(&st));
        assert_int_equal(st.count, i + 1);
        assert_true((double)st.count <= 6.5 * (double)st.buckets);
    }
    uint64_t per_shard[SHARDS];
    assert_int_equal(agent_live_shard_counts(per_shard, SHARDS), SHARDS);
    uint64_t sum = 0, buckets = 0;
    for (unsigned i = 0; i < SHARDS; i++) {
        sum += per_shard[i];
        unsigned B = min_B(per_shard[i]);
        /* every shard is past its first bucket: 6.5 per bucket, strictly */
        assert_true(per_shard[i] > 8);
        assert_true((double)per_shard[i] <= 6.5 * (double)(UINT64_C(1) << B));
        buckets += UINT64_C(1) << B;
    }
    assert_true(agent_live_get_stats(&st));
    assert_int_equal(sum, N);
    assert_int_equal(st.count, N);
    /* Each shard grew only as far as its count needs (inserts only): the
     * sum of buckets is exactly Go's, and B is log2 of it, rounded up. */
    assert_int_equal(st.buckets, buckets);
    assert_true((UINT64_C(1) << st.log2_buckets) >= st.buckets);
    assert_true((UINT64_C(1) << st.log2_buckets) < 2 * st.buckets);
    assert_true((double)st.count <= 6.5 * (double)(UINT64_C(1) << st.log2_buckets));
    assert_true(st.shards_growing <= st.shards);
    assert_true(st.nevacuate <= st.noldbuckets);
    assert_int_equal(st.shards_growing == 0, st.noldbuckets == 0);
    assert_true((double)st.count <= 6.5 * (double)st.buckets);
    assert_true((double)st.count > 3.25 * (double)st.buckets);   /* not over-grown */
    assert_true(st.bytes >= st.buckets * 8 * 16);   /* 8 slots of key and value per bucket */
    assert_true(st.overflow_buckets <= st.buckets);
    assert_int_equal(st.grow_failures, 0);

    for (size_t i = 0; i < N; i++) {
        uint64_t v = 0;
        assert_true(agent_live_remove(A(addrs[i]), &v));
        assert_int_equal(v, agent_live_pack(1, 32));
    }
    assert_true(agent_live_get_stats(&st));
    assert_int_equal(st.count, 0);
    assert_true(st.buckets >= buckets);   /* maps never shrink */
    assert_clean();
}

/* ------------------------------------------------------------------------ */
/* Round trips                                                              */
/* ------------------------------------------------------------------------ */

static void test_pack(void **state)
{
    (void)state;
    uint64_t v = agent_live_pack(AGENT_STACKS_MAX - 1, 12345);
    assert_int_equal(agent_live_stack(v), AGENT_STACKS_MAX - 1);
    assert_int_equal(agent_live_size(v), 12345);
    v = agent_live_pack(7, (size_t)1 << 45);           /* clamped, not wrapped */
    assert_int_equal(agent_live_stack(v), 7);
    assert_int_equal(agent_live_size(v), AGENT_LIVE_SIZE_MAX);
    v = agent_live_pack(0, 0);
    assert_int_equal(v, 0);
}

static void test_round_trip(void **state)
{
    (void)state;
    enum { N = 3000 };
    static uint64_t addrs[N], vals[N];
    uint64_t rng = 1;
    /* glibc-like: a run of consecutive chunks of mixed sizes, then
     * random addresses, with values spanning both fields. */
    uint64_t a = HEAP + 0x2a0;
    for (size_t i = 0; i < N; i++) {
        if (i < N / 2) {
            addrs[i] = a;
            a += 32 + 16 * (test_rand(&rng) % 64);
        } else {
            addrs[i] = random_addr(&rng);
        }
        uint32_t id = (uint32_t)(test_rand(&rng) % AGENT_STACKS_MAX);
        size_t size = (size_t)(test_rand(&rng) >> (test_rand(&rng) % 64));
        vals[i] = agent_live_pack(id, size);
        assert_true(ins(addrs[i], vals[i]));
        assert_true(agent_maybe_sampled(A(addrs[i])));
    }
    assert_int_equal(live_count(), N);
    /* Removed in another order than inserted: each gives its own value
     * back, once. */
    for (size_t k = 0; k < N; k++) {
        size_t i = (k * 7919) % N;
        uint64_t v = ~UINT64_C(0);
        assert_true(agent_live_remove(A(addrs[i]), &v));
        assert_int_equal(v, vals[i]);
        v = 42;
        assert_false(agent_live_remove(A(addrs[i]), &v));
        assert_int_equal(v, 42);   /* untouched */
    }
    assert_clean();
}

static void test_remove_absent(void **state)
{
    (void)state;
    uint64_t v = 99;
    assert_false(agent_live_remove(A(HEAP + 0x1000), &v));   /* a shard never used */
    assert_int_equal(v, 99);
    assert_true(ins(HEAP + 0x1000, agent_live_pack(3, 48)));
    /* Its neighbours, 16 bytes either side: other slots, not in the map. */
    assert_false(agent_maybe_sampled(A(HEAP + 0x1010)));
    assert_false(agent_maybe_sampled(A(HEAP + 0x0ff0)));
    assert_false(agent_live_remove(A(HEAP + 0x1010), &v));
    assert_false(agent_live_remove(A(HEAP + 0x0ff0), &v));
    assert_int_equal(v, 99);
    assert_int_equal(agent_live_filter[agent_filter_slot(A(HEAP + 0x1000))], 1);
    assert_true(agent_live_remove(A(HEAP + 0x1000), &v));
    assert_int_equal(v, agent_live_pack(3, 48));
    assert_clean();
}

/* An address recorded and never seen freed (a free the shim could not
 * observe), sampled again: the new record replaces the old, and the
 * filter counts the address once, so one remove clears it. */
static void test_reinsert_new_wins(void **state)
{
    (void)state;
    const void *p = A(MMAPS + 0x10);
    assert_true(ins(MMAPS + 0x10, agent_live_pack(5, 100)));
    assert_true(ins(MMAPS + 0x10, agent_live_pack(6, 200)));
    assert_int_equal(live_count(), 1);
    assert_int_equal(agent_live_filter[agent_filter_slot(p)], 1);
    uint64_t v = 0;
    assert_true(agent_live_remove(p, &v));
    assert_int_equal(agent_live_stack(v), 6);
    assert_int_equal(agent_live_size(v), 200);
    assert_false(agent_maybe_sampled(p));
    assert_false(agent_live_remove(p, &v));
    assert_clean();
}

/* agent_live_put: a new address is ADDED and counted; the same address
 * again is REPLACED, hands back the old value and is not counted twice;
 * the prefetch (no lock) changes nothing. */
static void test_put_replaced(void **state)
{
    (void)state;
    const void *p = A(MMAPS + 0x2010);
    if (nnoted < NOTED_MAX) noted[nnoted++] = MMAPS + 0x2010;
    uint64_t old = 12345;
    agent_live_prefetch(p);                              /* a shard with no map yet, maybe */
    assert_int_equal(agent_live_put(p, agent_live_pack(3, 30), &old), AGENT_LIVE_ADDED);
    assert_int_equal(old, 12345);                        /* untouched when added */
    agent_live_prefetch(p);
    assert_int_equal(agent_live_put(p, agent_live_pack(4, 40), &old), AGENT_LIVE_REPLACED);
    assert_int_equal(agent_live_stack(old), 3);
    assert_int_equal(agent_live_size(old), 30);
    assert_int_equal(agent_live_put(p, agent_live_pack(5, 50), NULL), AGENT_LIVE_REPLACED);
    assert_int_equal(live_count(), 1);
    assert_int_equal(agent_live_filter[agent_filter_slot(p)], 1);
    uint64_t v = 0;
    assert_true(agent_live_remove(p, &v));
    assert_int_equal(agent_live_stack(v), 5);
    assert_false(agent_maybe_sampled(p));
    assert_clean();
}

/* ------------------------------------------------------------------------ */
/* The filter                                                               */
/* ------------------------------------------------------------------------ */

/* Two addresses 16 MiB apart share a slot: while one is live the other is
 * a false positive, whose remove finds nothing and must leave the count
 * alone; the slot counts both when both are live. */
static void test_false_positive_16mib(void **state)
{
    (void)state;
    const void *a = A(HEAP + 0x5430);
    const void *b = A(HEAP + 0x5430 + SLOT_SPAN);
    const void *c = A(HEAP + 0x5430 + 3 * SLOT_SPAN);
    assert_int_equal(agent_filter_slot(a), agent_filter_slot(b));
    assert_int_equal(agent_filter_slot(a), agent_filter_slot(c));
    assert_true(agent_filter_slot(a) != agent_filter_slot(A(HEAP + 0x5430 + SLOT_SPAN / 2)));
    size_t slot = agent_filter_slot(a);

    assert_true(ins(HEAP + 0x5430, agent_live_pack(1, 1)));
    assert_true(agent_maybe_sampled(b));        /* the false positive */
    uint64_t v = 7;
    assert_false(agent_live_remove(b, &v));     /* what agent_free_sampled meets */
    assert_int_equal(v, 7);
    assert_int_equal(agent_live_filter[slot], 1);
    assert_true(agent_maybe_sampled(a));        /* a is still covered */

    assert_true(ins(HEAP + 0x5430 + SLOT_SPAN, agent_live_pack(2, 2)));
    assert_int_equal(agent_live_filter[slot], 2);
    assert_true(agent_live_remove(a, &v));
    assert_int_equal(v, agent_live_pack(1, 1));
    assert_int_equal(agent_live_filter[slot], 1);
    assert_true(agent_maybe_sampled(b));
    assert_true(agent_maybe_sampled(c));        /* still a false positive */
    assert_true(agent_live_remove(b, &v));
    assert_int_equal(v, agent_live_pack(2, 2));
    assert_false(agent_maybe_sampled(a));
    assert_false(agent_maybe_sampled(b));
    assert_false(agent_maybe_sampled(c));
    assert_clean();
}

/* A random walk of inserts and removes over 48 slots, 4 addresses each
 * (16 MiB apart), against a model: after every step, each slot holds how
 * many of its addresses are live, each summary counter how many of its
 * group's, and agent_maybe_sampled says "maybe" for exactly the addresses
 * of non-zero slots, whatever their group holds. The first 24 slots are
 * consecutive 48-byte chunks, several to a group; the others a page apart,
 * one to a group. */
static void test_filter_model(void **state)
{
    (void)state;
    enum { SLOTS = 48, ALIASES = 4, STEPS = 20000 };
    static bool live[SLOTS][ALIASES];
    static uint64_t val[SLOTS][ALIASES];
    unsigned group_only = 0;   /* steps where q's group was non-zero */
    memset(live, 0, sizeof live);
    uint64_t rng = 7;
    uint64_t base[SLOTS];
    for (unsigned s = 0; s < SLOTS; s++)   /* consecutive chunks, then a few far away */
        base[s] = s < SLOTS / 2 ? HEAP + 0x100000 + 48 * s : MMAPS + 0x10 + 4096 * (s - SLOTS / 2);
    for (unsigned step = 0; step < STEPS; step++) {
        unsigned s = (unsigned)(test_rand(&rng) % SLOTS), k = (unsigned)(test_rand(&rng) % ALIASES);
        uint64_t pa = base[s] + k * SLOT_SPAN;
        const void *p = A(pa);
        uint64_t v = 0;
        if (live[s][k]) {
            assert_true(agent_live_remove(p, &v));
            assert_int_equal(v, val[s][k]);
            live[s][k] = false;
        } else {
            val[s][k] = agent_live_pack((uint32_t)step, step * 16);
            assert_true(ins(pa, val[s][k]));
            live[s][k] = true;
        }
        unsigned n = 0;
        for (unsigned j = 0; j < ALIASES; j++) n += live[s][j];
        assert_int_equal(agent_live_filter[agent_filter_slot(p)], n);
        for (unsigned j = 0; j < ALIASES; j++)
            assert_int_equal(agent_maybe_sampled(A(base[s] + j * SLOT_SPAN)), n > 0);
        /* and a miss in any slot but the model's says "not sampled" */
        assert_false(agent_maybe_sampled(A(base[s] + 8 * SLOT_SPAN + 16 * 3000)));
        /* The summary: the live addresses of the whole group. */
        unsigned g = 0;
        for (unsigned s2 = 0; s2 < SLOTS; s2++)
            if (agent_summary_slot(A(base[s2])) == agent_summary_slot(p))
                for (unsigned j = 0; j < ALIASES; j++) g += live[s2][j];
        assert_int_equal(group_of(pa), g);
        assert_true(g >= n);
        /* An address of the group in no model slot (16 bytes past or
         * before a 48-byte chunk, or past a page's chunk): its slot clears
         * it even while the group says "maybe". */
        uint64_t q = pa + 16;
        if (agent_summary_slot(A(q)) != agent_summary_slot(p)) q = pa - 16;
        assert_int_equal(agent_summary_slot(A(q)), agent_summary_slot(p));
        assert_false(agent_maybe_sampled(A(q)));
        group_only += g > 0;
    }
    assert_true(group_only > STEPS / 2);   /* the slot level was asked, often */
    /* Counts drop back to zero. */
    for (unsigned s = 0; s < SLOTS; s++)
        for (unsigned k = 0; k < ALIASES; k++)
            if (live[s][k]) assert_true(agent_live_remove(A(base[s] + k * SLOT_SPAN), NULL));
    assert_clean();
}

/* Threads insert and remove addresses that share filter slots (16 MiB
 * apart) but not shards: the slot's count is changed under different
 * shard locks at once, so only atomic updates keep it exact. At the end
 * every slot is back at zero; meanwhile a live address is always
 * "maybe". */
enum { RACE_THREADS = 4, RACE_SLOTS = 8, RACE_ROUNDS = 40000 };

static void *race_thread(void *arg)
{
    uint64_t me = (uint64_t)(uintptr_t)arg;
    for (unsigned round = 0; round < RACE_ROUNDS; round++) {
        uint64_t a = HEAP + 0x3000000 + 16 * (round % RACE_SLOTS) + (1 + me) * SLOT_SPAN;
        if (!agent_live_insert(A(a), agent_live_pack((uint32_t)me, round))) return (void *)1;
        if (!agent_maybe_sampled(A(a))) return (void *)2;
        uint64_t v;
        if (!agent_live_remove(A(a), &v) || v != agent_live_pack((uint32_t)me, round)) return (void *)3;
    }
    return NULL;
}

static void test_filter_concurrent(void **state)
{
    (void)state;
    pthread_t th[RACE_THREADS];
    for (uintptr_t i = 0; i < RACE_THREADS; i++) {
        for (unsigned s = 0; s < RACE_SLOTS; s++)   /* noted for the teardown */
            noted[nnoted++] = HEAP + 0x3000000 + 16 * s + (1 + i) * SLOT_SPAN;
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, (void *)i), 0);
    }
    for (unsigned i = 0; i < RACE_THREADS; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    assert_clean();
}

/* Threads insert and remove addresses of one summary group, each in its
 * own slots (and their 16 MiB aliases), so under different shard locks,
 * while one address of the group (the witness, inserted before they start)
 * stays live throughout: the group's counter moves under every thread at
 * once and must never read zero, nor the witness ever be "not sampled";
 * a lost update would either drift it to zero meanwhile or leave it
 * non-zero at the end (assert_clean). */
enum { GROUP_THREADS = 4, GROUP_SLOTS = 8, GROUP_ROUNDS = 200000 };
#define GROUP_BASE (HEAP + 0x5000000)                       /* 1 KiB-aligned: a group's start */
#define GROUP_WITNESS (GROUP_BASE + 16 * (AGENT_FILTER_GROUP - 1))   /* its last slot */

static uint64_t group_addr(uint64_t me, unsigned round)
{
    return GROUP_BASE + 16 * (me * GROUP_SLOTS + round % GROUP_SLOTS) + (round / GROUP_SLOTS % 3) * SLOT_SPAN;
}

static void *group_thread(void *arg)
{
    uint64_t me = (uint64_t)(uintptr_t)arg;
    for (unsigned round = 0; round < GROUP_ROUNDS; round++) {
        uint64_t a = group_addr(me, round);
        if (!agent_live_insert(A(a), agent_live_pack((uint32_t)me, round))) return (void *)1;
        if (!agent_maybe_sampled(A(a)) || group_of(a) == 0) return (void *)2;
        if (!agent_maybe_sampled(A(GROUP_WITNESS))) return (void *)4;
        uint64_t v;
        if (!agent_live_remove(A(a), &v) || v != agent_live_pack((uint32_t)me, round)) return (void *)3;
        if (group_of(GROUP_WITNESS) == 0 || !agent_maybe_sampled(A(GROUP_WITNESS))) return (void *)4;
    }
    return NULL;
}

static void test_summary_concurrent(void **state)
{
    (void)state;
    _Static_assert(GROUP_THREADS * GROUP_SLOTS < AGENT_FILTER_GROUP, "the witness has a slot of its own");
    assert_int_equal(agent_summary_slot(A(group_addr(GROUP_THREADS - 1, GROUP_ROUNDS - 1))),
                     agent_summary_slot(A(GROUP_BASE)));
    assert_int_equal(agent_summary_slot(A(GROUP_WITNESS)), agent_summary_slot(A(GROUP_BASE)));
    assert_true(ins(GROUP_WITNESS, agent_live_pack(9, 9)));
    pthread_t th[GROUP_THREADS];
    for (uintptr_t i = 0; i < GROUP_THREADS; i++) {
        for (unsigned r = 0; r < 3 * GROUP_SLOTS; r++) noted[nnoted++] = group_addr(i, r);
        assert_int_equal(pthread_create(&th[i], NULL, group_thread, (void *)i), 0);
    }
    for (unsigned i = 0; i < GROUP_THREADS; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    /* Exact: the witness alone is left, in its slot and in its group. */
    assert_int_equal(group_of(GROUP_WITNESS), 1);
    assert_int_equal(agent_live_filter[agent_filter_slot(A(GROUP_WITNESS))], 1);
    assert_int_equal(nonzero_slots(), 1);
    assert_int_equal(nonzero_groups(), 1);
    assert_true(agent_live_remove(A(GROUP_WITNESS), NULL));
    assert_clean();
}

/* ------------------------------------------------------------------------ */
/* Shards                                                                   */
/* ------------------------------------------------------------------------ */

/* CHI2_127_P001: the chi-square quantile for 127 degrees of freedom at
 * p = 0.001 (a fair spread exceeds it once in a thousand seeds), by
 * Wilson-Hilferty (which gives 103.5 for 63, where tables say 103.44). */
#define CHI2_127_P001 182.0

/* spread: inserts n addresses from gen and checks how they spread: over
 * `want` shards exactly (all of them, or a region's window), each within
 * 25 % of the mean over those, and a chi-square at p = 0.001 over them
 * (CHI2_127_P001 for 128; CHI2_31_P001 for a window of 32). Takes them
 * out again. @return the bitmap of the shards used. */
#define CHI2_31_P001 61.10
typedef unsigned __int128 shard_set_t;   /* a bit per shard */
_Static_assert(sizeof(shard_set_t) * 8 == SHARDS, "a bit per shard");

static unsigned shard_set_count(shard_set_t set)
{
    return (unsigned)(__builtin_popcountll((uint64_t)set) + __builtin_popcountll((uint64_t)(set >> 64)));
}

static bool shard_set_has(shard_set_t set, unsigned i)
{
    return (set >> i) & 1;
}

static shard_set_t spread(const char *what, uint64_t (*gen)(uint64_t i, uint64_t *rng), unsigned n,
                       unsigned want)
{
    static uint64_t addrs[64000];
    assert_true(n <= sizeof addrs / sizeof addrs[0]);
    uint64_t rng = 3;
    for (unsigned i = 0; i < n; i++) {
        addrs[i] = gen(i, &rng);
        assert_true(ins(addrs[i], agent_live_pack(1, 16)));
    }
    uint64_t c[SHARDS];
    assert_int_equal(agent_live_shard_counts(c, SHARDS), SHARDS);
    shard_set_t used = 0;
    uint64_t total = 0;
    for (unsigned i = 0; i < SHARDS; i++) {
        if (c[i]) used |= (shard_set_t)1 << i;
        total += c[i];
    }
    assert_int_equal(total, n);
    unsigned nused = shard_set_count(used);
    double mean = (double)n / nused, chi2 = 0;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (unsigned i = 0; i < SHARDS; i++) {
        if (!c[i]) continue;
        chi2 += ((double)c[i] - mean) * ((double)c[i] - mean) / mean;
        if (c[i] < lo) lo = c[i];
        if (c[i] > hi) hi = c[i];
    }
    double limit = want == SHARDS ? CHI2_127_P001 : CHI2_31_P001;
    if (nused != want || chi2 > limit || (double)lo < 0.75 * mean || (double)hi > 1.25 * mean)
        fail_msg("%s: %u addresses over %u shards (want %u): chi-square %.1f (limit %.1f), "
                 "min %llu, max %llu (mean %.1f, allowed 25%%)",
                 what, n, nused, want, chi2, limit, (unsigned long long)lo,
                 (unsigned long long)hi, mean);
    for (unsigned i = 0; i < n; i++) assert_true(agent_live_remove(A(addrs[i]), NULL));
    return used;
}

static uint64_t gen_consecutive_32(uint64_t i, uint64_t *rng) { (void)rng; return HEAP + 0x2a0 + 32 * i; }
static uint64_t gen_consecutive_48(uint64_t i, uint64_t *rng) { (void)rng; return HEAP + 0x2a0 + 48 * i; }
static uint64_t gen_consecutive_64(uint64_t i, uint64_t *rng) { (void)rng; return HEAP + 0x2a0 + 64 * i; }
static uint64_t gen_consecutive_1040(uint64_t i, uint64_t *rng) { (void)rng; return HEAP + 0x2a0 + 1040 * i; }
static uint64_t gen_mixed_run(uint64_t i, uint64_t *rng)
{
    static uint64_t a;
    if (i == 0) a = HEAP + 0x2a0;
    uint64_t p = a;
    a += 32 + 16 * (test_rand(rng) % 32);   /* 32 .. 528-byte chunks, back to back */
    return p;
}
/* mmap'd chunks: page-aligned + 16 (the chunk header), a page or 2 MiB apart */
static uint64_t gen_pages(uint64_t i, uint64_t *rng) { (void)rng; return MMAPS + 4096 * i + 16; }
static uint64_t gen_2mib(uint64_t i, uint64_t *rng) { (void)rng; return MMAPS + 2 * MIB * i + 16; }
static uint64_t gen_random(uint64_t i, uint64_t *rng) { (void)i; return random_addr(rng); }
/* per-thread arenas: 64 MiB apart (glibc's HEAP_MAX), consecutive inside;
 * arena_k's chunks */
static unsigned arena_k;
static uint64_t gen_one_arena(uint64_t i, uint64_t *rng)
{
    (void)rng;
    return MMAPS + 64 * MIB * arena_k + 64 * i;   /* whole pages: 4 per shard of the window */
}

/* A 64 MiB region's pointers (a glibc arena's heap) spread over a window
 * of 32 shards (a quarter), evenly, whatever their sizes; other regions (other
 * threads' arenas) get other windows; 2 MiB-spaced mmap'd chunks and
 * random addresses spread over all the shards. */
static void test_shard_distribution(void **state)
{
    (void)state;
    enum { WINDOW = 32 };
    spread("consecutive 32-byte chunks", gen_consecutive_32, 64000, WINDOW);
    spread("consecutive 48-byte chunks", gen_consecutive_48, 64000, WINDOW);
    spread("consecutive 64-byte chunks", gen_consecutive_64, 64000, WINDOW);
    spread("consecutive 1040-byte chunks", gen_consecutive_1040, 60000, WINDOW);   /* 62 MB: one region */
    spread("a run of mixed chunks", gen_mixed_run, 64000, WINDOW);
    spread("page-spaced mmap chunks", gen_pages, 16000, WINDOW);                   /* one region */
    spread("2 MiB-spaced mmap chunks", gen_2mib, 64000, SHARDS);
    spread("random addresses", gen_random, 64000, SHARDS);
    /* 16 arenas 64 MiB apart: each on a window of its own; the windows
     * start at different shards (a hash of the region). */
    shard_set_t starts = 0;
    for (arena_k = 0; arena_k < 16; arena_k++) {
        shard_set_t used = spread("one arena's consecutive 64-byte chunks", gen_one_arena, 8192, WINDOW);
        unsigned start = 0;   /* the window's first shard: used wraps around mod SHARDS */
        while (!shard_set_has(used, start) || shard_set_has(used, (start + SHARDS - 1) % SHARDS)) start++;
        starts |= (shard_set_t)1 << start;
    }
    assert_true(shard_set_count(starts) >= 12);   /* 16 hashed into 128: collisions are few */
    /* Thousands of these addresses fell in one group (2 MiB-spaced chunks:
     * 8 groups modulo 16 MiB): those summary counters stuck at 0xff, the
     * others are back at zero, as is every slot. */
    assert_int_equal(live_count(), 0);
    assert_int_equal(nonzero_slots(), 0);
    size_t stuck = 0;
    for (size_t i = 0; i < (1u << AGENT_SUMMARY_BITS); i++) {
        assert_true(agent_live_summary[i] == 0 || agent_live_summary[i] == 0xff);
        stuck += agent_live_summary[i] == 0xff;
    }
    assert_true(stuck >= 8);
}

/* ------------------------------------------------------------------------ */
/* The filter set aside (HEAPWATCH_RATE=1)                                  */
/* ------------------------------------------------------------------------ */

/* agent_live_unfilter: inserts and removes leave every counter at zero,
 * the slow paths' test says "maybe" for every address (the live map
 * answers), and no thread gets the fast paths, which read the filter. */
static void test_unfiltered(void **state)
{
    (void)state;
    bool saved_glibc = agent_usable_is_glibc;
    agent_thread_t *saved_thread = agent_tls.thread;
    agent_thread_t block;
    memset(&block, 0, sizeof block);
    agent_usable_is_glibc = true;
    agent_tls.thread = &block;
    agent_refresh_fast();
    assert_ptr_equal(agent_tls.fast, &block);   /* the fast paths, while the filter is on */

    agent_live_unfilter();
    agent_refresh_fast();
    assert_null(agent_tls.fast);
    enum { N = 2000 };
    static uint64_t addrs[N];
    uint64_t rng = 11;
    for (unsigned i = 0; i < N; i++) {
        addrs[i] = random_addr(&rng);
        assert_true(ins(addrs[i], agent_live_pack(2, i)));
        assert_false(agent_maybe_sampled(A(addrs[i])));   /* the filter counted nothing */
        assert_true(agent_free_maybe_sampled(A(addrs[i])));
    }
    assert_int_equal(nonzero_slots(), 0);
    assert_int_equal(nonzero_groups(), 0);
    assert_int_equal(live_count(), N);
    assert_true(agent_free_maybe_sampled(A(random_addr(&rng))));   /* never sampled: the map says no */
    assert_false(agent_live_remove(A(HEAP + 0x123450), NULL));
    for (unsigned i = 0; i < N; i++) {
        uint64_t v;
        assert_true(agent_live_remove(A(addrs[i]), &v));
        assert_int_equal(v, agent_live_pack(2, i));
    }
    assert_clean();

    agent_live_unfiltered = false;   /* the rest of the tests use the filter */
    agent_usable_is_glibc = saved_glibc;
    agent_tls.thread = saved_thread;
    agent_refresh_fast();
}

/* ------------------------------------------------------------------------ */
/* Stuck slots (last: they stay stuck)                                      */
/* ------------------------------------------------------------------------ */

static void test_stuck_slots(void **state)
{
    (void)state;
    /* Pinned: a 64-byte range (four slots), and NULL's one slot. */
    uint64_t lo = HEAP + 0x777000;
    agent_live_filter_pin(A(lo + 8), 56);   /* unaligned start: its slot too */
    agent_live_filter_pin(NULL, 0);
    assert_int_equal(nonzero_slots(), 5);
    assert_int_equal(nonzero_groups(), 2);   /* and their groups, for good */
    assert_int_equal(group_of(lo), 0xff);
    assert_int_equal(group_of(0), 0xff);
    for (uint64_t a = lo; a < lo + 64; a += 16) {
        assert_int_equal(agent_live_filter[agent_filter_slot(A(a))], 0xffff);
        assert_true(agent_maybe_sampled(A(a)));
    }
    /* In the pinned group, other slots still answer "not sampled". */
    assert_false(agent_maybe_sampled(A(lo + 64)));
    assert_false(agent_maybe_sampled(A(lo - 16)));
    assert_false(agent_maybe_sampled(A(16)));
    assert_true(agent_maybe_sampled(NULL));
    /* A pinned slot is neither counted nor uncounted, nor its group. */
    assert_true(ins(lo + 16, agent_live_pack(1, 1)));
    assert_true(agent_live_remove(A(lo + 16), NULL));
    assert_false(agent_live_remove(A(lo + 16), NULL));
    assert_int_equal(agent_live_filter[agent_filter_slot(A(lo + 16))], 0xffff);
    assert_int_equal(group_of(lo), 0xff);

    /* A summary counter that reaches 0xff sticks: the 64 slots of one
     * group, 4 addresses each (16 MiB apart), 256 live addresses. Its
     * counter counts them up to 254, sticks at the 255th, and stays when
     * they all leave; the slots, back at zero, then answer alone, and
     * still exactly. */
    uint64_t g = MMAPS + 0x9000;   /* a group's start */
    for (uint64_t k = 0; k < 4 * AGENT_FILTER_GROUP; k++) {
        uint64_t a = g + 16 * (k % AGENT_FILTER_GROUP) + (k / AGENT_FILTER_GROUP) * SLOT_SPAN;
        assert_int_equal(agent_summary_slot(A(a)), agent_summary_slot(A(g)));
        assert_true(ins(a, agent_live_pack(1, 1)));
        assert_int_equal(group_of(g), k + 1 < 0xff ? k + 1 : 0xff);
        assert_true(agent_maybe_sampled(A(a)));
    }
    for (uint64_t k = 0; k < 4 * AGENT_FILTER_GROUP; k++) {
        uint64_t a = g + 16 * (k % AGENT_FILTER_GROUP) + (k / AGENT_FILTER_GROUP) * SLOT_SPAN;
        assert_true(agent_live_remove(A(a), NULL));
        assert_int_equal(group_of(g), 0xff);
        assert_false(agent_maybe_sampled(A(a)) && k >= 3 * AGENT_FILTER_GROUP);   /* its slot's last */
    }
    assert_int_equal(nonzero_slots(), 5);
    assert_int_equal(nonzero_groups(), 3);
    for (uint64_t a = g; a < g + 16 * AGENT_FILTER_GROUP; a += 16) assert_false(agent_maybe_sampled(A(a)));
    assert_true(ins(g + 32, agent_live_pack(1, 1)));
    assert_true(agent_maybe_sampled(A(g + 32)));
    assert_false(agent_maybe_sampled(A(g + 48)));
    assert_true(agent_live_remove(A(g + 32), NULL));
    assert_false(agent_maybe_sampled(A(g + 32)));

    /* A counter that reaches 0xffff sticks: 65535 live addresses in one
     * slot (16 MiB apart), and one more; every one of them is still
     * "maybe" (a counter that wrapped to 0 would hide them all from
     * free()), and after they all leave the slot stays stuck. */
    enum { N = 0xffff + 1 };
    uint64_t s = MMAPS + 0x3450;
    size_t slot = agent_filter_slot(A(s));
    for (uint64_t k = 0; k < N; k++) assert_true(ins(s + k * SLOT_SPAN, agent_live_pack(1, 1)));
    assert_int_equal(agent_live_filter[slot], 0xffff);
    assert_true(agent_maybe_sampled(A(s)));
    assert_int_equal(live_count(), N);
    for (uint64_t k = 0; k < N; k++) assert_true(agent_live_remove(A(s + k * SLOT_SPAN), NULL));
    assert_int_equal(live_count(), 0);
    assert_int_equal(agent_live_filter[slot], 0xffff);
    assert_int_equal(nonzero_slots(), 6);
    assert_int_equal(nonzero_groups(), 4);   /* its group stuck too */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_stats_small_shards, teardown),   /* first: fresh shard maps */
        cmocka_unit_test_teardown(test_solo_owner_guest_leave, teardown),
        cmocka_unit_test_teardown(test_solo_change_waits_for_owner, teardown),
        cmocka_unit_test_teardown(test_solo_guest_waits_for_owner, teardown),
        cmocka_unit_test_teardown(test_solo_wait_is_no_cancellation_point, teardown),
        cmocka_unit_test_teardown(test_solo_owner_locks_while_guest_reads, teardown),
        cmocka_unit_test_teardown(test_solo_prefork_bounded, teardown),
        cmocka_unit_test_teardown(test_stats, teardown),
        cmocka_unit_test_teardown(test_pack, teardown),
        cmocka_unit_test_teardown(test_round_trip, teardown),
        cmocka_unit_test_teardown(test_remove_absent, teardown),
        cmocka_unit_test_teardown(test_reinsert_new_wins, teardown),
        cmocka_unit_test_teardown(test_put_replaced, teardown),
        cmocka_unit_test_teardown(test_false_positive_16mib, teardown),
        cmocka_unit_test_teardown(test_filter_model, teardown),
        cmocka_unit_test_teardown(test_filter_concurrent, teardown),
        cmocka_unit_test_teardown(test_summary_concurrent, teardown),
        cmocka_unit_test_teardown(test_shard_distribution, teardown),
        cmocka_unit_test_teardown(test_unfiltered, teardown),
        cmocka_unit_test(test_stuck_slots),   /* last: its slots stay stuck */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
