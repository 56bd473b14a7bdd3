/*
 * agent_stacks.c - stack interning (agent/stacks.c) and capture (agent/unwind.c), without
 * any preload.
 *
 * Interning: the same frames give the same record, different frames (one
 * frame, or one frame more) a different one; stacks whose hashes collide
 * (forced through agent_stacks_test_hash) are told apart by probing, up to
 * PROBES (8) per hash, and the one beyond gets the "no stack" record;
 * threads interning at once each get one record per stack; the
 * full table (its bound is AGENT_STACKS_MAX, 2^24 ids: lowered here
 * through agent_stacks_test_max) gives the "no stack" record, id 0, to new
 * stacks while known ones are still found. Totals: agent_stack_read over the
 * shares, threads writing their shares at once while a reader sums, and a
 * sampled allocation and its free through sample.c at rate 1.
 *
 * Capture: in a unit test the agent is linked into the test binary, so the
 * "agent's own code" whose leading frames a capture drops would be the
 * whole binary; agent_stacks_test_own_range narrows it. A capture from a
 * known chain of noinline functions finds their return addresses
 * (__builtin_return_address) in order, from a signal handler too.
 *
 * The stack table is process-wide and append-only: tests count records as
 * differences; the seams are reset by every test's teardown.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "agent/hot.h"
#include "agent/live.h"
#include "agent/sample.h"
#include "agent/stacks.h"
#include "agent/unwind.h"
#include "agent/thread.h"
#include "test_util.h"

#define PROBES 8                          /* stacks.c: hash collisions tolerated */
#define CODE UINT64_C(0x0000555555554000) /* fake return addresses: never read */

static int group_setup(void **state)
{
    (void)state;
    agent_unwind_init();   /* as agent_init: the walker first, then the table */
    return agent_stacks_init();
}

static int teardown(void **state)
{
    (void)state;
    agent_stacks_test_hash = NULL;
    agent_stacks_test_max = AGENT_STACKS_MAX;
    agent_stacks_test_own_range(0, 0);
    return 0;
}

/* make_stack: depth frames, all from seed (distinct seeds: distinct stacks). */
static void make_stack(uint64_t *pcs, size_t depth, uint64_t seed)
{
    for (size_t i = 0; i < depth; i++) pcs[i] = CODE + 0x1000 * (i + 1) + 4 * (seed % 1000) + (seed / 1000) * 0x100000;
}

static void assert_record(const agent_stack_t *r, const uint64_t *pcs, size_t depth)
{
    assert_non_null(r);
    assert_int_equal(r->depth, depth);
    if (depth) assert_memory_equal(r->pcs, pcs, depth * sizeof pcs[0]);
    assert_ptr_equal(agent_stack_get(r->id), r);
}

/* ------------------------------------------------------------------------ */
/* Interning                                                                */
/* ------------------------------------------------------------------------ */

static void test_no_stack_record(void **state)
{
    (void)state;
    agent_stack_t *z = agent_stack_get(0);
    assert_non_null(z);
    assert_int_equal(z->id, 0);
    assert_int_equal(z->depth, 0);
    assert_true(agent_stacks_count() >= 1);
    assert_null(agent_stack_get(agent_stacks_count()));   /* not handed out yet */
    assert_null(agent_stack_get(AGENT_STACKS_MAX));
    assert_null(agent_stack_get(UINT32_MAX));
}

/* A capture that found no frame (libunwind unavailable, a walk that ends
 * at once) is the empty stack, record 0: not a second empty record that
 * profiles would show beside it. */
static void test_empty_capture_is_record_0(void **state)
{
    (void)state;
    uint32_t before = agent_stacks_count();
    uint64_t pcs[1] = { 0 };
    agent_stack_t *s = agent_stack_intern(pcs, 0);
    assert_non_null(s);
    assert_int_equal(s->id, 0);
    assert_int_equal(agent_stacks_count(), before);
}

static void test_same_and_different(void **state)
{
    (void)state;
    uint64_t a[6], b[6];
    make_stack(a, 6, 1);
    uint32_t before = agent_stacks_count();
    agent_stack_t *ra = agent_stack_intern(a, 6);
    assert_record(ra, a, 6);
    assert_true(ra->id != 0);
    assert_int_equal(agent_stacks_count(), before + 1);
    /* the same frames, from another buffer: the same record, no new id */
    memcpy(b, a, sizeof a);
    assert_ptr_equal(agent_stack_intern(b, 6), ra);
    assert_int_equal(agent_stacks_count(), before + 1);
    /* one frame different, anywhere: another record */
    for (size_t i = 0; i < 6; i++) {
        memcpy(b, a, sizeof a);
        b[i] += 1;
        agent_stack_t *rb = agent_stack_intern(b, 6);
        assert_record(rb, b, 6);
        assert_true(rb != ra && rb->id != ra->id && rb->id != 0);
        assert_ptr_equal(agent_stack_intern(b, 6), rb);
    }
    /* a prefix, and the same frames in another order: other records */
    agent_stack_t *rp = agent_stack_intern(a, 5);
    assert_record(rp, a, 5);
    assert_true(rp != ra);
    uint64_t rev[6];
    for (size_t i = 0; i < 6; i++) rev[i] = a[5 - i];
    agent_stack_t *rr = agent_stack_intern(rev, 6);
    assert_record(rr, rev, 6);
    assert_true(rr != ra && rr != rp);
    assert_int_equal(agent_stacks_count(), before + 1 + 6 + 2);
    /* and the first is still itself */
    assert_ptr_equal(agent_stack_intern(a, 6), ra);
}

/* 20000 stacks of 12 frames that differ in one frame only (the innermost,
 * the outermost, or one in the middle): 20000 records, each found again. */
static void test_many_one_frame_apart(void **state)
{
    (void)state;
    enum { N = 20000, D = 12 };
    static uint32_t ids[N];
    uint64_t pcs[D];
    uint32_t before = agent_stacks_count();
    for (unsigned i = 0; i < N; i++) {
        make_stack(pcs, D, 777);
        pcs[(i % 3) * (D - 1) / 2] += 16 * (uint64_t)(i / 3 + 1);
        agent_stack_t *r = agent_stack_intern(pcs, D);
        assert_record(r, pcs, D);
        ids[i] = r->id;
    }
    assert_int_equal(agent_stacks_count(), before + N);
    for (unsigned i = 0; i < N; i++) {
        make_stack(pcs, D, 777);
        pcs[(i % 3) * (D - 1) / 2] += 16 * (uint64_t)(i / 3 + 1);
        assert_int_equal(agent_stack_intern(pcs, D)->id, ids[i]);
    }
    assert_int_equal(agent_stacks_count(), before + N);
    assert_true(agent_stacks_bytes() > (size_t)N * D * sizeof(uint64_t));
}

/* Threads interning at once (every stripe, new directory chunks made by
 * several stripes at a time, 4096 ids each): every stack gets one record,
 * found by its id, and a stack interned by all threads at once gets one. */
enum { RACERS = 4, RACE_STACKS = 6000 };
static agent_stack_t *raced[RACERS][RACE_STACKS];
static agent_stack_t *shared[RACERS][64];
static pthread_barrier_t race_start;

static void *intern_thread(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    uint64_t pcs[5];
    pthread_barrier_wait(&race_start);   /* all at once, not one after another */
    for (unsigned i = 0; i < RACE_STACKS; i++) {
        make_stack(pcs, 5, 200000 + me * RACE_STACKS + i);
        raced[me][i] = agent_stack_intern(pcs, 5);
        if (i % 100 == 0) {   /* and one that every thread interns */
            make_stack(pcs, 5, 190000 + i / 100);
            shared[me][i / 100] = agent_stack_intern(pcs, 5);
        }
    }
    return NULL;
}

static void test_concurrent_intern(void **state)
{
    (void)state;
    uint32_t before = agent_stacks_count();
    pthread_t th[RACERS];
    assert_int_equal(pthread_barrier_init(&race_start, NULL, RACERS), 0);
    for (uintptr_t i = 0; i < RACERS; i++) assert_int_equal(pthread_create(&th[i], NULL, intern_thread, (void *)i), 0);
    for (unsigned i = 0; i < RACERS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&race_start);
    assert_int_equal(agent_stacks_count(), before + RACERS * RACE_STACKS + RACE_STACKS / 100);
    uint64_t pcs[5];
    for (unsigned t = 0; t < RACERS; t++)
        for (unsigned i = 0; i < RACE_STACKS; i++) {
            make_stack(pcs, 5, 200000 + t * RACE_STACKS + i);
            assert_record(raced[t][i], pcs, 5);
            assert_true(raced[t][i]->id >= before);
        }
    for (unsigned k = 0; k < RACE_STACKS / 100; k++)
        for (unsigned t = 1; t < RACERS; t++) assert_ptr_equal(shared[t][k], shared[0][k]);
    /* every id handed out is published */
    for (uint32_t id = before; id < agent_stacks_count(); id++) assert_non_null(agent_stack_get(id));
}

static uint64_t same_hash(const uint64_t *pcs, size_t depth)
{
    (void)pcs, (void)depth;
    return UINT64_C(0xfeedfacecafebeef);
}

/* Every stack hashes alike: the first PROBES get records of their own,
 * each found again by its frames; the next one cannot be placed and gets
 * the "no stack" record. */
static void test_forced_collisions(void **state)
{
    (void)state;
    agent_stacks_test_hash = same_hash;
    uint64_t pcs[PROBES + 1][4];
    agent_stack_t *r[PROBES];
    for (unsigned i = 0; i < PROBES; i++) {
        make_stack(pcs[i], 4, 5000 + i);
        r[i] = agent_stack_intern(pcs[i], 4);
        assert_record(r[i], pcs[i], 4);
        assert_int_equal(r[i]->hash, same_hash(NULL, 0));
        for (unsigned j = 0; j < i; j++) assert_true(r[i] != r[j]);
    }
    for (unsigned i = PROBES; i-- > 0;) assert_ptr_equal(agent_stack_intern(pcs[i], 4), r[i]);
    make_stack(pcs[PROBES], 4, 5000 + PROBES);
    uint32_t before = agent_stacks_count();
    assert_ptr_equal(agent_stack_intern(pcs[PROBES], 4), agent_stack_get(0));
    assert_int_equal(agent_stacks_count(), before);   /* no id spent */
    for (unsigned i = 0; i < PROBES; i++) assert_ptr_equal(agent_stack_intern(pcs[i], 4), r[i]);
}

static uint64_t first_frame_hash(const uint64_t *pcs, size_t depth)
{
    return depth ? pcs[0] : 0;
}

/* Probe chains that meet: stack A and B hash to h (B probes to h+1), C
 * hashes to h+1 (taken by B: it probes to h+2), D to h+2 (taken by C).
 * Each is found again, whatever the order of the lookups. */
static void test_chains_meet(void **state)
{
    (void)state;
    agent_stacks_test_hash = first_frame_hash;
    const uint64_t h = CODE + 0xabc000;
    uint64_t s[4][3] = {
        { h, 1, 2 }, { h, 3, 4 }, { h + 1, 5, 6 }, { h + 2, 7, 8 },
    };
    agent_stack_t *r[4];
    for (unsigned i = 0; i < 4; i++) {
        r[i] = agent_stack_intern(s[i], 3);
        assert_record(r[i], s[i], 3);
    }
    for (unsigned i = 0; i < 4; i++)
        for (unsigned j = 0; j < i; j++) assert_true(r[i] != r[j]);
    static const unsigned order[4] = { 3, 1, 2, 0 };
    for (unsigned k = 0; k < 4; k++) assert_ptr_equal(agent_stack_intern(s[order[k]], 3), r[order[k]]);
}

/* The full table: with the bound lowered to 40 more ids, 40 new stacks get
 * records, the 41st and later get the "no stack" record (id 0, depth 0),
 * known stacks are still found, and the count stops at the bound. */
static void test_full_table(void **state)
{
    (void)state;
    enum { ROOM = 40 };
    uint32_t before = agent_stacks_count();
    agent_stacks_test_max = before + ROOM;
    uint64_t pcs[8];
    agent_stack_t *r[ROOM];
    for (unsigned i = 0; i < ROOM; i++) {
        make_stack(pcs, 8, 90000 + i);
        r[i] = agent_stack_intern(pcs, 8);
        assert_record(r[i], pcs, 8);
        assert_int_equal(r[i]->id, before + i);
    }
    assert_int_equal(agent_stacks_count(), before + ROOM);
    for (unsigned i = 0; i < 100; i++) {
        make_stack(pcs, 8, 91000 + i);
        agent_stack_t *z = agent_stack_intern(pcs, 8);
        assert_ptr_equal(z, agent_stack_get(0));
        assert_int_equal(z->id, 0);
        assert_int_equal(z->depth, 0);
        assert_int_equal(agent_stacks_count(), before + ROOM);
    }
    for (unsigned i = 0; i < ROOM; i++) {
        make_stack(pcs, 8, 90000 + i);
        assert_ptr_equal(agent_stack_intern(pcs, 8), r[i]);
    }
    assert_null(agent_stack_get(before + ROOM));
    /* Room again: the next new stack takes the next id (none was lost). */
    agent_stacks_test_max = AGENT_STACKS_MAX;
    make_stack(pcs, 8, 91000);
    agent_stack_t *n = agent_stack_intern(pcs, 8);
    assert_record(n, pcs, 8);
    assert_int_equal(n->id, before + ROOM);
}

/* ------------------------------------------------------------------------ */
/* Totals                                                                   */
/* ------------------------------------------------------------------------ */

static void test_read_totals(void **state)
{
    (void)state;
    uint64_t pcs[3];
    make_stack(pcs, 3, 424242);
    agent_stack_t *s = agent_stack_intern(pcs, 3);
    agent_stack_totals_t t;
    agent_stack_read(s, &t);
    assert_true(t.alloc_objects == 0 && t.alloc_bytes == 0 && t.inuse_objects == 0 && t.inuse_bytes == 0);
    /* as sample.c counts: 3 allocations of 100, 200, 300, by threads of
     * different shares; the 200 freed by a third */
    agent_stack_count_alloc(s, 0, 100);
    agent_stack_count_alloc(s, AGENT_STACK_SHARED, 200);
    agent_stack_count_alloc(s, 1, 300);
    agent_stack_count_free(s, 2, 200);
    agent_stack_read(s, &t);
    assert_int_equal(t.alloc_objects, 3);
    assert_int_equal(t.alloc_bytes, 600);
    assert_int_equal(t.inuse_objects, 2);
    assert_int_equal(t.inuse_bytes, 400);
}

/* Shares: threads that own shares 0 .. AGENT_STACK_SHARED-1 (one each, as
 * thread blocks do) and threads that all write the shared one count
 * allocations and frees of one stack at once, while a reader sums: the
 * reader never sees more freed than allocated, and the end totals are
 * exact (an owned share written by two threads, or the shared one without
 * its atomic adds, loses updates). Each share, and the frames, have cache
 * lines of their own. */
enum { SHARE_WRITERS = AGENT_STACK_SHARED + 3, SHARE_ROUNDS = 200000 };
static agent_stack_t *share_stack;
static int share_writers_done;

static void *share_writer(void *arg)
{
    unsigned share = (unsigned)(uintptr_t)arg;
    for (uint64_t i = 0; i < SHARE_ROUNDS; i++) {
        agent_stack_count_alloc(share_stack, share, 16 + i % 7);
        if (i % 4 != 3) agent_stack_count_free(share_stack, share, 16 + i % 7);
    }
    __atomic_add_fetch(&share_writers_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *share_reader(void *arg)
{
    (void)arg;
    uint64_t reads = 0;
    while (__atomic_load_n(&share_writers_done, __ATOMIC_ACQUIRE) < SHARE_WRITERS || reads == 0) {
        agent_stack_totals_t t;
        agent_stack_read(share_stack, &t);
        if (t.inuse_objects < 0 || t.inuse_bytes < 0 || t.inuse_objects > t.alloc_objects) return (void *)1;
        reads++;
    }
    return NULL;
}

static void test_totals_in_shares(void **state)
{
    (void)state;
    uint64_t pcs[3];
    make_stack(pcs, 3, 515151);
    share_stack = agent_stack_intern(pcs, 3);
    assert_non_null(share_stack);
    assert_int_equal((uintptr_t)share_stack % 64, 0);
    assert_int_equal(sizeof share_stack->shares[0], 64);
    assert_int_equal(offsetof(agent_stack_t, hash) % 64, 0);
    share_writers_done = 0;
    pthread_t reader, writers[SHARE_WRITERS];
    assert_int_equal(pthread_create(&reader, NULL, share_reader, NULL), 0);
    for (unsigned i = 0; i < SHARE_WRITERS; i++) {
        unsigned share = i < AGENT_STACK_SHARED ? i : AGENT_STACK_SHARED;
        assert_int_equal(pthread_create(&writers[i], NULL, share_writer, (void *)(uintptr_t)share), 0);
    }
    for (unsigned i = 0; i < SHARE_WRITERS; i++) pthread_join(writers[i], NULL);
    void *ret;
    pthread_join(reader, &ret);
    assert_null(ret);
    uint64_t bytes = 0, kept_bytes = 0, kept = 0;
    for (uint64_t i = 0; i < SHARE_ROUNDS; i++) {
        bytes += 16 + i % 7;
        if (i % 4 == 3) kept_bytes += 16 + i % 7, kept++;
    }
    agent_stack_totals_t t;
    agent_stack_read(share_stack, &t);
    assert_int_equal(t.alloc_objects, (int64_t)SHARE_WRITERS * SHARE_ROUNDS);
    assert_int_equal(t.alloc_bytes, (int64_t)(SHARE_WRITERS * bytes));
    assert_int_equal(t.inuse_objects, (int64_t)(SHARE_WRITERS * kept));
    assert_int_equal(t.inuse_bytes, (int64_t)(SHARE_WRITERS * kept_bytes));
}

/* sampled_here: n sampled allocations from one stack of their own (one
 * call site in this function), through sample.c's slow path at rate 1. */
static uint64_t sampled_here_ra;          /* where sampled_here returns to */

static __attribute__((noinline)) void sampled_here(agent_thread_t *t, void *const *ptrs,
                                                   const size_t *sizes, int n)
{
    sampled_here_ra = (uint64_t)(uintptr_t)__builtin_return_address(0);
    __asm__ volatile("" : "+r"(n));   /* n unknown to the compiler: no unrolled copies */
    for (int i = 0; i < n; i++) {
        agent_sample_slow(t, ptrs[i], sizes[i]);
        __asm__ volatile("");
    }
}

/* A sampled allocation and its free, through sample.c: the record of the
 * captured stack counts the allocation (its size clamped as the live map
 * keeps it), then the free. */
static void test_totals_through_sampling(void **state)
{
    (void)state;
    agent_stacks_test_own_range(0, 0);   /* nothing dropped: the stack is new */
    uint64_t saved_rate = agent_sample_rate;
    agent_sample_rate = 1;
    agent_thread_t t;
    memset(&t, 0, sizeof t);
    agent_sample_thread_init(&t);
    void *p = (void *)(uintptr_t)UINT64_C(0x00005555a0001230);
    void *q = (void *)(uintptr_t)UINT64_C(0x00005555a0001270);
    size_t huge = (size_t)1 << 41;
    uint32_t before = agent_stacks_count();
    void *ptrs[2] = { p, q };
    size_t sizes[2] = { 100, huge };
    sampled_here(&t, ptrs, sizes, 2);
    assert_int_equal(agent_stacks_count(), before + 1);   /* a stack never seen before */
    agent_stack_t *s = agent_stack_get(before);
    assert_non_null(s);
    assert_true(s->depth >= 3);
    /* The walk starts at the frame that called agent_sample_slow (its
     * entry stub, sample.c), though no agent frame is dropped here: the
     * call site in sampled_here, then where sampled_here returns. */
    assert_true(s->pcs[0] > (uint64_t)(uintptr_t)sampled_here &&
                s->pcs[0] < (uint64_t)(uintptr_t)sampled_here + 512);
    assert_int_equal(s->pcs[1], sampled_here_ra);
    assert_int_equal(t.samples, 2);
    assert_int_equal(t.dropped, 0);
    agent_stack_totals_t tot;
    agent_stack_read(s, &tot);
    assert_int_equal(tot.alloc_objects, 2);
    assert_int_equal(tot.alloc_bytes, 100 + AGENT_LIVE_SIZE_MAX);
    assert_int_equal(tot.inuse_objects, 2);
    assert_int_equal(tot.inuse_bytes, 100 + AGENT_LIVE_SIZE_MAX);

    assert_true(agent_maybe_sampled(p));
    agent_free_sampled(&t, p);
    agent_stack_read(s, &tot);
    assert_int_equal(tot.alloc_objects, 2);
    assert_int_equal(tot.inuse_objects, 1);
    assert_int_equal(tot.inuse_bytes, AGENT_LIVE_SIZE_MAX);
    agent_free_sampled(&t, q);
    agent_stack_read(s, &tot);
    assert_int_equal(tot.inuse_objects, 0);
    assert_int_equal(tot.inuse_bytes, 0);
    assert_int_equal(tot.alloc_bytes, 100 + AGENT_LIVE_SIZE_MAX);
    assert_int_equal(t.filter_hits, 2);
    assert_int_equal(t.filter_false, 0);
    /* a free the filter sent to the map, not sampled: a false positive,
     * no stack touched */
    agent_free_sampled(&t, p);
    assert_int_equal(t.filter_false, 1);
    agent_stack_read(s, &tot);
    assert_int_equal(tot.inuse_objects, 0);
    agent_sample_rate = saved_rate;
}

/* ------------------------------------------------------------------------ */
/* Capture                                                                  */
/* ------------------------------------------------------------------------ */

static uint64_t cap_pcs[AGENT_MAX_FRAMES];
static size_t cap_depth;
static void *ra[3];                       /* return addresses: into mid, outer, the test */
static size_t cap_max = AGENT_MAX_FRAMES;
static bool from_handler;

static void on_signal(int sig)
{
    (void)sig;
    cap_depth = agent_stack_capture(cap_pcs, cap_max, NULL);
}

static __attribute__((noinline)) void leaf(void)
{
    ra[0] = __builtin_return_address(0);
    if (from_handler) raise(SIGUSR1);
    else cap_depth = agent_stack_capture(cap_pcs, cap_max, NULL);
    __asm__ volatile("");                 /* no tail call */
}

static __attribute__((noinline)) void mid(void)
{
    ra[1] = __builtin_return_address(0);
    leaf();
    __asm__ volatile("");
}

static __attribute__((noinline)) void outer(void)
{
    ra[2] = __builtin_return_address(0);
    mid();
    __asm__ volatile("");
}

/* find_chain: the index in cap_pcs where ra[0], ra[1], ra[2] follow each
 * other, or -1. */
static int find_chain(void)
{
    for (size_t i = 0; i + 3 <= cap_depth; i++)
        if (cap_pcs[i] == (uintptr_t)ra[0] && cap_pcs[i + 1] == (uintptr_t)ra[1] &&
            cap_pcs[i + 2] == (uintptr_t)ra[2])
            return (int)i;
    return -1;
}

/* near_after: pc lies in the code just after fn's entry (within 16 KiB:
 * agent_stack_capture, with walk inlined and ASan's instrumentation, is
 * several KiB; the exact checks are the return addresses). */
static bool near_after(uint64_t pc, const void *fn)
{
    return pc > (uintptr_t)fn && pc < (uintptr_t)fn + 16384;
}

static void test_capture_known_chain(void **state)
{
    (void)state;
    /* Nothing dropped: the capture's own frame, then leaf, mid, outer. */
    agent_stacks_test_own_range(0, 0);
    from_handler = false;
    outer();
    assert_true(cap_depth >= 5);
    assert_true(near_after(cap_pcs[0], (const void *)agent_stack_capture));
    assert_true(near_after(cap_pcs[1], (const void *)leaf));
    assert_int_equal(find_chain(), 2);
    /* ...down to main and libc's start: more frames after ours. */
    assert_true(cap_depth > 5);
    /* The agent's code dropped (here: agent_stack_capture up to the pc it
     * records): the stack starts in the caller, leaf. */
    agent_stacks_test_own_range((uintptr_t)agent_stack_capture, (uintptr_t)cap_pcs[0] + 1);
    uint64_t first[AGENT_MAX_FRAMES];
    size_t first_depth = cap_depth;
    memcpy(first, cap_pcs, sizeof first);
    outer();
    assert_int_equal(cap_depth, first_depth - 1);
    assert_true(near_after(cap_pcs[0], (const void *)leaf));
    assert_int_equal(find_chain(), 1);
    assert_memory_equal(cap_pcs, first + 1, 2 * sizeof cap_pcs[0]);   /* leaf, mid: as before */
    /* The bound on frames counts the frames kept. */
    cap_max = 2;
    outer();
    cap_max = AGENT_MAX_FRAMES;
    assert_int_equal(cap_depth, 2);
    assert_true(near_after(cap_pcs[0], (const void *)leaf));
    assert_int_equal(cap_pcs[1], (uintptr_t)ra[0]);
}

/* From a signal handler: the handler's frame, the kernel's trampoline,
 * the interrupted code (raise, in libc), then leaf, mid, outer. */
static void test_capture_from_handler(void **state)
{
    (void)state;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    agent_stacks_test_own_range(0, 0);
    from_handler = true;
    outer();
    from_handler = false;
    sigaction(SIGUSR1, &old, NULL);
    assert_true(near_after(cap_pcs[0], (const void *)agent_stack_capture));
    assert_true(near_after(cap_pcs[1], (const void *)on_signal));
    int at = find_chain();
    assert_true(at >= 4);   /* capture, handler, trampoline, raise (libc), ..., leaf */
    assert_true(near_after(cap_pcs[at - 1], (const void *)leaf));   /* raise's call site */
}

/* A recursion deeper than AGENT_MAX_FRAMES: the capture stops at the bound. */
static __attribute__((noinline)) size_t deep(unsigned n, uint64_t *pcs)
{
    if (n == 0) return agent_stack_capture(pcs, AGENT_MAX_FRAMES, NULL);
    size_t d = deep(n - 1, pcs);
    __asm__ volatile("");
    return d;
}

static void test_capture_bound(void **state)
{
    (void)state;
    agent_stacks_test_own_range(0, 0);
    uint64_t pcs[AGENT_MAX_FRAMES];
    assert_int_equal(deep(AGENT_MAX_FRAMES + 20, pcs), AGENT_MAX_FRAMES);
    for (size_t i = 2; i < AGENT_MAX_FRAMES; i++) assert_int_equal(pcs[i], pcs[2]);   /* deep's own call site */
}

/* ------------------------------------------------------------------------ */
/* Replay of the last walk (agent_walk_memo_t)                              */
/* ------------------------------------------------------------------------ */

static agent_walk_memo_t *memo;
static volatile int sink;

/* grab: a capture into pcs, through the memo or not. */
static __attribute__((noinline)) size_t grab(uint64_t *pcs, bool with_memo)
{
    size_t d = agent_stack_capture(pcs, AGENT_MAX_FRAMES, with_memo ? memo : NULL);
    __asm__ volatile("");
    return d;
}

/* inner_b -> inner_a -> grab: called from path_x and from path_y, two
 * functions of the same shape called from the same place, so that inner_b
 * and inner_a run at the same stack addresses with the same return
 * addresses under both, and only the word above (the return address into
 * path_x or path_y) tells the two stacks apart. */
static __attribute__((noinline)) size_t inner_a(uint64_t *pcs, bool with_memo)
{
    size_t d = grab(pcs, with_memo);
    __asm__ volatile("");
    return d;
}

static void *ra_b;                       /* inner_b's return address: into path_x or path_y */

static __attribute__((noinline)) size_t inner_b(uint64_t *pcs, bool with_memo)
{
    ra_b = __builtin_return_address(0);
    size_t d = inner_a(pcs, with_memo);
    __asm__ volatile("");
    return d;
}

static __attribute__((noinline)) size_t path_x(uint64_t *pcs, bool with_memo)
{
    sink = 1;
    size_t d = inner_b(pcs, with_memo);
    __asm__ volatile("");
    return d;
}

static __attribute__((noinline)) size_t path_y(uint64_t *pcs, bool with_memo)
{
    sink = 2;
    size_t d = inner_b(pcs, with_memo);
    __asm__ volatile("");
    return d;
}

static __attribute__((noinline)) size_t via(bool y, uint64_t *pcs, bool with_memo)
{
    size_t d = y ? path_y(pcs, with_memo) : path_x(pcs, with_memo);
    __asm__ volatile("");
    return d;
}

static bool has_pc(const uint64_t *pcs, size_t depth, const void *pc)
{
    for (size_t i = 0; i < depth; i++)
        if (pcs[i] == (uintptr_t)pc) return true;
    return false;
}

/* rec: a recursion n deep above grab. */
static __attribute__((noinline)) size_t rec(unsigned n, uint64_t *pcs, bool with_memo)
{
    if (n == 0) return grab(pcs, with_memo);
    size_t d = rec(n - 1, pcs, with_memo);
    __asm__ volatile("");
    return d;
}

/* capture_t: one capture of a batch, all made from one call site (run),
 * so that the frames above via and rec are the same for all. */
typedef struct capture_s {
    bool y, with_memo;                   /* through path_y (else path_x); through the memo */
    unsigned depth;                      /* rec's depth (recursion batches) */
    uint64_t pcs[AGENT_MAX_FRAMES];
    size_t n;                            /* frames captured */
    void *ra_b;                          /* inner_b's return address then */
    uint64_t replayed;                   /* frames the capture replayed */
} capture_t;

/* padded: the capture c asks for, under `pad` more frames: a walk is
 * replayed only when the last one was 10 frames deep or more (unwind.c,
 * REPLAY_MIN_DEPTH), and a test's own stack may be shallower. */
static __attribute__((noinline)) size_t padded(unsigned pad, capture_t *c, bool recursion)
{
    if (pad == 0) return recursion ? rec(c->depth, c->pcs, c->with_memo) : via(c->y, c->pcs, c->with_memo);
    size_t d = padded(pad - 1, c, recursion);
    __asm__ volatile("");
    return d;
}

static unsigned run_pad = 16;            /* frames padded() adds */

static __attribute__((noinline)) void run(capture_t *c, size_t n, bool recursion)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t before = agent_unwind_test_replayed();
        c[i].n = padded(run_pad, &c[i], recursion);
        c[i].replayed = agent_unwind_test_replayed() - before;
        c[i].ra_b = ra_b;
    }
}

static void assert_same_capture(const capture_t *a, const capture_t *b)
{
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->pcs, b->pcs, a->n * sizeof a->pcs[0]);
}

/* replay_setup: every replay test captures through the one memo, with
 * no frame dropped as the agent's. */
static int replay_setup(void **state)
{
    (void)state;
    agent_stacks_test_own_range(0, 0);
    if (!memo) memo = agent_walk_memo_new();
    return memo ? 0 : -1;
}

static void test_replay_same_stack(void **state)
{
    (void)state;
    static capture_t c[5] = {{.with_memo = false}, {.with_memo = true}, {.with_memo = true}, {.with_memo = true},
                             {.with_memo = true}};
    static volatile int passes = 2;      /* not unrolled: one call site for both */
    for (int pass = 0; pass < passes; pass++) {
        /* Then code unloaded (dlclose): the log is of another generation. */
        if (pass == 1) agent_unwind_code_unloaded();
        run(c + 4 * pass, pass ? 1 : 4, false);
    }
    /* The same stack: every frame but the first comes from the log (c[2]
     * is logged, after c[1], a deep walk; c[1] maybe not, after the last
     * test's walk). */
    assert_true(c[0].n > 6);
    assert_same_capture(&c[1], &c[0]);
    assert_same_capture(&c[2], &c[0]);
    assert_same_capture(&c[3], &c[0]);
    assert_true(c[3].replayed + 1 >= c[0].n);
    assert_int_equal(c[4].replayed, 0);
    assert_same_capture(&c[4], &c[0]);
}

static void test_replay_stops_where_the_stack_differs(void **state)
{
    (void)state;
    /* references without the memo, then x and y in turn through it */
    static capture_t c[2 + 8];
    for (size_t i = 0; i < 10; i++) {
        c[i].y = i & 1;
        c[i].with_memo = i >= 2;
    }
    run(c, 10, false);
    void *ra_x = c[0].ra_b, *ra_y = c[1].ra_b;
    assert_ptr_not_equal(ra_x, ra_y);
    assert_true(has_pc(c[0].pcs, c[0].n, ra_x) && !has_pc(c[0].pcs, c[0].n, ra_y));
    assert_true(has_pc(c[1].pcs, c[1].n, ra_y) && !has_pc(c[1].pcs, c[1].n, ra_x));
    for (size_t i = 3; i < 10; i++) {
        /* grab, inner_a, inner_b are at the same places under both paths:
         * their frames are replayed, and the walk resumes where the return
         * address differs. */
        assert_true(c[i].replayed >= 2);
        assert_same_capture(&c[i], &c[i & 1]);
        assert_false(has_pc(c[i].pcs, c[i].n, c[i].y ? ra_x : ra_y));
    }
}

/* run_shallow: run's captures with no padding and none of run's frames,
 * as a thread's first function: the shallowest stack these tests make. */
static void *run_shallow(void *arg)
{
    capture_t *c = arg;
    for (size_t i = 0; i < 3; i++) {
        uint64_t before = agent_unwind_test_replayed();
        c[i].n = via(c[i].y, c[i].pcs, c[i].with_memo);
        c[i].replayed = agent_unwind_test_replayed() - before;
    }
    return NULL;
}

/* A shallow stack (under 10 frames) is walked afresh every time, and is
 * still the walk's own; a walk after a shallow one is not logged, so the
 * deep walk after it is walked afresh too, and the next one replayed. */
static void test_no_replay_when_shallow(void **state)
{
    (void)state;
    static capture_t c[3] = {{.with_memo = false}, {.with_memo = true}, {.with_memo = true}};
    static capture_t deep[4] = {{.with_memo = false}, {.with_memo = true}, {.with_memo = true}, {.with_memo = true}};
    /* On a thread of its own, whose stack starts a few frames above. */
    pthread_t shallow;
    assert_int_equal(pthread_create(&shallow, NULL, run_shallow, c), 0);
    pthread_join(shallow, NULL);
    assert_true(c[0].n < 10);            /* or this test says nothing */
    assert_int_equal(c[2].replayed, 0);
    assert_same_capture(&c[2], &c[0]);
    run(deep, 4, false);                 /* right after c[2], a shallow walk */
    assert_true(deep[0].n >= 10);
    assert_int_equal(deep[1].replayed, 0);   /* not logged: after a shallow walk */
    assert_int_equal(deep[2].replayed, 0);   /* not replayed: deep[1] was not logged */
    assert_true(deep[3].replayed + 1 >= deep[0].n);
    for (size_t i = 1; i < 4; i++) assert_same_capture(&deep[i], &deep[0]);
}

/* Recursions of every depth up to past the bound, in a shuffled order,
 * through the memo: each capture is the one without it. */
static void test_replay_any_depth(void **state)
{
    (void)state;
    static capture_t c[2];
    uint64_t replayed = 0;
    unsigned n = 7;
    for (unsigned i = 0; i < 300; i++) {
        n = (n * 37 + 11) % (AGENT_MAX_FRAMES + 12);
        c[0] = (capture_t){.depth = n, .with_memo = false};
        c[1] = (capture_t){.depth = n, .with_memo = true};
        run(c, 2, true);
        assert_same_capture(&c[1], &c[0]);
        replayed += c[1].replayed;
    }
    assert_true(replayed > 300);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_no_stack_record, teardown),
        cmocka_unit_test_teardown(test_empty_capture_is_record_0, teardown),
        cmocka_unit_test_teardown(test_same_and_different, teardown),
        cmocka_unit_test_teardown(test_many_one_frame_apart, teardown),
        cmocka_unit_test_teardown(test_concurrent_intern, teardown),
        cmocka_unit_test_teardown(test_forced_collisions, teardown),
        cmocka_unit_test_teardown(test_chains_meet, teardown),
        cmocka_unit_test_teardown(test_full_table, teardown),
        cmocka_unit_test_teardown(test_read_totals, teardown),
        cmocka_unit_test_teardown(test_totals_in_shares, teardown),
        cmocka_unit_test_teardown(test_totals_through_sampling, teardown),
        cmocka_unit_test_teardown(test_capture_known_chain, teardown),
        cmocka_unit_test_teardown(test_capture_from_handler, teardown),
        cmocka_unit_test_teardown(test_capture_bound, teardown),
        cmocka_unit_test_setup_teardown(test_replay_same_stack, replay_setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_stops_where_the_stack_differs, replay_setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_replay_when_shallow, replay_setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_any_depth, replay_setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
