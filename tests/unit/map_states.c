/*
 * map_states.c - white-box tests of every state transition of map/:
 * tombstones and emptyRest propagation across overflow chains, reuse of
 * emptyOne slots, doubling, same-size growth, evacuation progress,
 * iteration during growth, clear, and allocation failure in the middle of
 * a growth (the test allocator fails the Nth call).
 *
 * Keys are chosen by brute force so that they land in a chosen bucket
 * (map_debug_hash gives the map's own hash), and bucket contents are read
 * back with map_debug_chain. map_debug_check runs after every step.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "map/map_internal.h"
#include "test_util.h"

#define VALUE_SIZE 24

typedef struct { uint64_t a, b, c; } value_t;

static void check_map(const map_t *m)
{
    char why[256];
    if (map_debug_check(m, why, sizeof why) != 0) fail_msg("invariant broken: %s", why);
}

/* keys_in_bucket: n malloc-like keys (16-aligned) whose hash & mask == want,
 * starting the search at *cursor. */
static void keys_in_bucket(const map_t *m, uint64_t mask, uint64_t want, size_t n,
                           uint64_t *out, uint64_t *cursor)
{
    size_t found = 0;
    while (found < n) {
        uint64_t k = 0x7f0000100000ull + (*cursor)++ * 16;
        if ((map_debug_hash(m, &k) & mask) == want) out[found++] = k;
    }
}

static map_t *new_map(test_alloc_t *ta, size_t hint)
{
    map_allocator_t a = test_allocator(ta);
    map_t *m = NULL;
    assert_int_equal(map_new(8, VALUE_SIZE, hint, &a, &m), MAP_OK);
    return m;
}

static void insert_key(map_t *m, uint64_t k)
{
    value_t v = { k, ~k, k * 3 };
    assert_int_equal(map_insert64(m, k, &v), MAP_OK);
    check_map(m);
}

static void assert_present(const map_t *m, uint64_t k)
{
    value_t *v = map_lookup64(m, k);
    assert_non_null(v);
    assert_true(v->a == k && v->b == ~k && v->c == k * 3);
}

/* chain_str: the chain's tophashes as "L" (live), "1", "0", "X", "Y", "E". */
static const char *chain_str(const map_t *m, bool old, size_t bucket)
{
    static char buf[8 * 16 + 16];
    uint8_t th[8 * 16];
    size_t nb = map_debug_chain(m, old, bucket, th, sizeof th);
    size_t o = 0;
    for (size_t b = 0; b < nb && b < 16; b++) {
        if (b) buf[o++] = '|';
        for (int i = 0; i < 8; i++) {
            uint8_t t = th[b * 8 + i];
            buf[o++] = t >= 5 ? 'L' : "01XYE"[t];
        }
    }
    buf[o] = 0;
    return buf;
}

static void test_new_map_is_empty(void **state)
{
    (void)state;
    test_alloc_t ta = {0};
    map_t *m = new_map(&ta, 0);
    map_stats_t st;
    map_get_stats(m, &st);
    assert_int_equal(st.count, 0);
    assert_int_equal(st.B, 0);
    assert_int_equal(ta.live_blocks, 1);   /* the header only: B = 0 arrays are lazy */
    assert_null(map_lookup64(m, 42));
    assert_false(map_delete64(m, 42, NULL));
    map_iter_t it;
    map_iter_init(m, &it);
    assert_false(map_iter_next(&it, NULL, NULL));
    map_iter_done(&it);
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);

    /* hint sizes the array: 1000 entries need 2^8 buckets (6.5 * 256 = 1664). */
    m = new_map(&ta, 1000);
    map_get_stats(m, &st);
    assert_int_equal(st.B, 8);
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);

    map_allocator_t a = test_allocator(&ta);
    map_t *bad;
    assert_int_equal(map_new(0, 8, 0, &a, &bad), MAP_ERR_INVALID);
    assert_int_equal(map_new(129, 8, 0, &a, &bad), MAP_ERR_INVALID);
    assert_int_equal(map_new(8, 129, 0, &a, &bad), MAP_ERR_INVALID);
    assert_string_equal(map_strerror(MAP_ERR_NOMEM), "out of memory");
}

/* map_prefetch64 is only a hint: on a map with no array yet, and from
 * another thread, without a lock, while the owner grows the map through
 * several doublings, it changes nothing and faults on nothing. */
typedef struct prefetcher_s {
    const map_t *m;
    volatile int stop;
    unsigned long calls;
} prefetcher_t;

static void *prefetch_loop(void *arg)
{
    prefetcher_t *p = arg;
    uint64_t k = 1;
    while (!p->stop) {
        map_prefetch64(p->m, k);
        k = k * 6364136223846793005ull + 1442695040888963407ull;
        p->calls++;
    }
    return NULL;
}

static void test_prefetch_is_only_a_hint(void **state)
{
    (void)state;
    test_alloc_t ta = {0};
    map_t *m = new_map(&ta, 0);
    map_prefetch64(m, 42);                     /* B = 0: no array to prefetch */
    assert_int_equal(map_count(m), 0);
    prefetcher_t p = { .m = m };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, prefetch_loop, &p), 0);
    enum { N = 200000 };
    for (uint64_t k = 0; k < N; k++) {
        unsigned char v[VALUE_SIZE] = {0};
        uint64_t tag = k * 3;
        memcpy(v, &tag, sizeof tag);
        assert_int_equal(map_insert64(m, k * 16 + 0x5555a0000000ull, v), MAP_OK);
        if (k % 4 == 0) map_prefetch64(m, k);   /* the owner's own hints too */
    }
    p.stop = 1;
    pthread_join(th, NULL);
    assert_true(p.calls > 0);
    assert_int_equal(map_count(m), N);
    for (uint64_t k = 0; k < N; k++) {
        const unsigned char *v = map_lookup64(m, k * 16 + 0x5555a0000000ull);
        assert_non_null(v);
        uint64_t tag;
        memcpy(&tag, v, sizeof tag);
        assert_int_equal(tag, k * 3);
    }
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);
}

/* The worked example of gomap.md section 2.4: a primary bucket P and one
 * overflow bucket O. */
static void test_empty_rest_propagation(void **state)
{
    (void)state;
    test_alloc_t ta = {0};
    map_t *m = new_map(&ta, 20);           /* B = 2: no growth below 27 entries */
    uint64_t cursor = 0, k[12];
    keys_in_bucket(m, 3, 0, 12, k, &cursor);
    for (int i = 0; i < 10; i++) insert_key(m, k[i]);
    assert_string_equal(chain_str(m, false, 0), "LLLLLLLL|LL000000");

    assert_true(map_delete64(m, k[9], NULL));   /* O[1]: next is emptyRest */
    check_map(m);
    assert_string_equal(chain_str(m, false, 0), "LLLLLLLL|L0000000");
    assert_true(map_delete64(m, k[8], NULL));   /* O[0]: back into P[7], live: stop */
    check_map(m);
    assert_string_equal(chain_str(m, false, 0), "LLLLLLLL|00000000");
    assert_true(map_delete64(m, k[3], NULL));   /* P[3]: P[4] live: tombstone */
    check_map(m);
    assert_string_equal(chain_str(m, false, 0), "LLL1LLLL|00000000");
    assert_true(map_delete64(m, k[7], NULL));   /* P[7]: O[0] is emptyRest */
    check_map(m);
    assert_string_equal(chain_str(m, false, 0), "LLL1LLL0|00000000");
    assert_true(map_delete64(m, k[4], NULL));
    assert_true(map_delete64(m, k[5], NULL));
    check_map(m);
    assert_string_equal(chain_str(m, false, 0), "LLL111L0|00000000");
    assert_true(map_delete64(m, k[6], NULL));   /* converts P[3..6] too */
    check_map(m);
    assert_string_equal(chain_str(m, false, 0), "LLL00000|00000000");
    for (int i = 0; i < 3; i++) assert_present(m, k[i]);
    for (int i = 3; i < 10; i++) assert_null(map_lookup64(m, k[i]));
    assert_int_equal(map_count(m), 3);
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);
}

/* emptyRest propagates backwards from an overflow bucket into the
 * previous bucket of the chain, converting its trailing tombstones. */
static void test_empty_rest_crosses_buckets(void **state)
{
    (void)state;
    test_alloc_t ta = {0};
    map_t *m = new_map(&ta, 20);
    uint64_t cursor = 0, k[20];
    keys_in_bucket(m, 3, 0, 20, k, &cursor);
    for (int i = 0; i < 20; i++) insert_key(m, k[i]);
    assert_string_equal(chain_str(m, false, 0), "LLLLLLLL|LLLLLLLL|LLLL0000");
    /* Tombstones at the end of P and of the first overflow bucket. */
    assert_true(map_delete64(m, k[6], NULL));
    assert_true(map_delete64(m, k[7], NULL));
    assert_true(map_delete64(m, k[15], NULL));
    assert_string_equal(chain_str(m, false, 0), "LLLLLL11|LLLLLLL1|LLLL0000");
    for (int i = 19; i >= 16; i--) assert_true(map_delete64(m, k[i], NULL));
    check_map(m);
    /* The last bucket is empty: O1[7] becomes emptyRest, O1[6] is live. */
    assert_string_equal(chain_str(m, false, 0), "LLLLLL11|LLLLLLL0|00000000");
    for (int i = 14; i >= 8; i--) assert_true(map_delete64(m, k[i], NULL));
    check_map(m);
    /* Walking back from O1[0] reaches P[7] and P[6], both tombstones. */
    assert_string_equal(chain_str(m, false, 0), "LLLLLL00|00000000|00000000");
    for (int i = 0; i < 6; i++) assert_present(m, k[i]);
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);
}

/* An insert takes the first empty slot in chain order: a tombstone before
 * an emptyRest, and never a slot after a live entry's gap is skipped. */
static void test_tombstone_reuse(void **state)
{
    (void)state;
    test_alloc_t ta = {0};
    map_t *m = new_map(&ta, 20);
    uint64_t cursor = 0, k[16];
    keys_in_bucket(m, 3, 0, 16, k, &cursor);
    for (int i = 0; i < 12; i++) insert_key(m, k[i]);
    assert_true(map_delete64(m, k[2], NULL));
    assert_true(map_delete64(m, k[9], NULL));
    assert_string_equal(chain_str(m, false, 0), "LL1LLLLL|L1LL0000");
    insert_key(m, k[12]);                      /* reuses P[2] */
    assert_string_equal(chain_str(m, false, 0), "LLLLLLLL|L1LL0000");
    insert_key(m, k[13]);                      /* reuses O[1] */
    assert_string_equal(chain_str(m, false, 0), "LLLLLLLL|LLLL0000");
    insert_key(m, k[14]);                      /* the first emptyRest */
    assert_string_equal(chain_str(m, false, 0), "LLLLLLLL|LLLLL000");
    /* Re-inserting an existing key updates in place. */
    value_t v = { 1, 2, 3 };
    assert_int_equal(map_insert64(m, k[13], &v), MAP_OK);
    assert_int_equal(map_count(m), 13);
    assert_int_equal(((value_t *)map_lookup64(m, k[13]))->c, 3);
    assert_string_equal(chain_str(m, false, 0), "LLLLLLLL|LLLLL000");
    check_map(m);
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);
}

/* Doubling starts at count > 6.5 * 2^B and moves at most two old chains
 * per write; lookups never evacuate. */
static void test_doubling_and_evacuation_progress(void **state)
{
    (void)state;
    test_alloc_t ta = {0};
    map_t *m = new_map(&ta, 0);
    map_stats_t st;
    for (uint64_t i = 1; i <= 8; i++) insert_key(m, i * 16);
    map_get_stats(m, &st);
    assert_int_equal(st.B, 0);
    insert_key(m, 9 * 16);                    /* B = 0 grows at the 9th entry */
    map_get_stats(m, &st);
    assert_int_equal(st.B, 1);

    m = (map_free(m), new_map(&ta, 100));    /* B = 4: 104 entries fit */
    map_get_stats(m, &st);
    assert_int_equal(st.B, 4);
    uint64_t next = 1;
    for (; next <= 104; next++) insert_key(m, next * 16);
    map_get_stats(m, &st);
    assert_false(st.growing);
    assert_int_equal(st.B, 4);
    insert_key(m, next++ * 16);               /* the 105th starts a doubling */
    map_get_stats(m, &st);
    assert_true(st.growing);
    assert_false(st.same_size_grow);
    assert_int_equal(st.B, 5);
    assert_int_equal(st.noldbuckets, 16);
    size_t nev = st.nevacuate;
    assert_true(nev >= 1 && nev <= 2);

    for (uint64_t i = 1; i < next; i++) assert_present(m, i * 16);
    map_get_stats(m, &st);
    assert_int_equal(st.nevacuate, nev);      /* readers never evacuate */

    /* Each write advances nevacuate by at least one (a delete of an absent
     * key too): 16 old buckets finish in at most 15 more writes. */
    int writes = 0;
    while (st.growing) {
        assert_false(map_delete64(m, 0xdead0000ull + (uint64_t)writes * 16, NULL));
        check_map(m);
        writes++;
        map_stats_t now;
        map_get_stats(m, &now);
        if (now.growing) assert_true(now.nevacuate > st.nevacuate);
        st = now;
    }
    assert_true(writes <= 15);
    for (uint64_t i = 1; i < next; i++) assert_present(m, i * 16);
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);
}

/* Deletes leave overflow buckets behind; when there are as many as
 * buckets, the next new key starts a same-size growth that compacts. */
static void test_same_size_growth(void **state)
{
    (void)state;
    test_alloc_t ta = {0};
    map_t *m = new_map(&ta, 10);              /* B = 1: 13 entries fit */
    map_stats_t st;
    map_get_stats(m, &st);
    assert_int_equal(st.B, 1);
    uint64_t cursor = 0, k0[9], k1[9], extra[1];
    keys_in_bucket(m, 1, 0, 9, k0, &cursor);
    keys_in_bucket(m, 1, 1, 9, k1, &cursor);
    for (int i = 0; i < 9; i++) insert_key(m, k0[i]);   /* one overflow bucket */
    for (int i = 1; i < 9; i++) assert_true(map_delete64(m, k0[i], NULL));
    for (int i = 0; i < 9; i++) insert_key(m, k1[i]);   /* a second one */
    map_get_stats(m, &st);
    assert_string_equal(chain_str(m, false, 0), "L0000000|00000000");  /* still two buckets */
    assert_int_equal(st.noverflow, 2);
    assert_int_equal(st.count, 10);
    assert_false(st.growing);

    keys_in_bucket(m, 1, 0, 1, extra, &cursor);
    insert_key(m, extra[0]);                  /* noverflow >= 2^B: same-size grow */
    map_get_stats(m, &st);
    assert_int_equal(st.B, 1);
    assert_true(st.same_size_grow || !st.growing);
    while (st.growing) {
        assert_false(map_delete64(m, 0xbeef0000ull, NULL));
        check_map(m);
        map_get_stats(m, &st);
    }
    /* Bucket 0 now holds k0[0] and extra in one bucket; bucket 1 needs one
     * overflow bucket for its 9 keys. */
    assert_int_equal(st.overflow_buckets, 1);
    assert_string_equal(chain_str(m, false, 0), "LL000000");
    assert_present(m, k0[0]);
    assert_present(m, extra[0]);
    for (int i = 0; i < 9; i++) assert_present(m, k1[i]);
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);
}

/* An iterator begun before a growth, continued while the map doubles
 * twice with deletes in between, produces each surviving entry once, and
 * keeps retired arrays alive until it ends. */
static void test_iteration_during_growth(void **state)
{
    (void)state;
    test_alloc_t ta = {0};
    map_t *m = new_map(&ta, 0);
    enum { N = 200, MORE = 3000 };
    for (uint64_t i = 0; i < N; i++) insert_key(m, 0x1000 + i * 16);
    static int seen[N + MORE];
    memset(seen, 0, sizeof seen);

    map_iter_t it;
    map_iter_init(m, &it);
    const void *kp;
    void *vp;
    int produced = 0;
    uint64_t added = 0;
    while (map_iter_next(&it, &kp, &vp)) {
        uint64_t k = *(const uint64_t *)kp;
        assert_true(((value_t *)vp)->a == k);
        uint64_t idx = (k - 0x1000) / 16;
        assert_true(idx < N + MORE);
        assert_int_equal(seen[idx], 0);       /* never twice */
        seen[idx] = 1;
        produced++;
        /* Grow the map under the iterator, and delete keys not reached. */
        for (int j = 0; j < 15 && added < MORE; j++, added++)
            insert_key(m, 0x1000 + (N + added) * 16);
        uint64_t victim = (idx * 7 + 3) % N;
        if (!seen[victim] && map_delete64(m, 0x1000 + victim * 16, NULL)) seen[victim] = -1;
    }
    map_stats_t st;
    map_get_stats(m, &st);
    assert_true(st.B >= 8);                  /* it grew from B = 5 under the iterator */
    assert_true(st.retired_bytes > 0);       /* old arrays parked for the iterator */
    map_iter_done(&it);
    map_get_stats(m, &st);
    assert_int_equal(st.retired_bytes, 0);
    for (int i = 0; i < N; i++) assert_true(seen[i] != 0);   /* every survivor produced */
    for (int i = 0; i < N; i++)
        if (seen[i] == -1) assert_null(map_lookup64(m, 0x1000 + (uint64_t)i * 16));
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);
}

/* Clear empties the map, keeps B, frees overflow slabs when no iterator is
 * live, and stops live iterators. */
static void test_clear(void **state)
{
    (void)state;
    test_alloc_t ta = {0};
    map_t *m = new_map(&ta, 0);
    for (uint64_t i = 0; i < 5000; i++) insert_key(m, 0x40000 + i * 16);
    map_stats_t before, after;
    map_get_stats(m, &before);

    map_iter_t it;
    map_iter_init(m, &it);
    const void *kp;
    for (int i = 0; i < 100; i++) assert_true(map_iter_next(&it, &kp, NULL));
    map_clear(m);
    check_map(m);
    assert_false(map_iter_next(&it, &kp, NULL));
    map_iter_done(&it);

    map_get_stats(m, &after);
    assert_int_equal(after.count, 0);
    assert_int_equal(after.B, before.B);
    assert_false(after.growing);
    assert_int_equal(after.overflow_buckets, 0);
    assert_true(after.bytes <= before.bytes);
    for (uint64_t i = 0; i < 5000; i++) assert_null(map_lookup64(m, 0x40000 + i * 16));
    for (uint64_t i = 0; i < 100; i++) insert_key(m, 0x90000 + i * 16);
    assert_int_equal(map_count(m), 100);
    map_clear(m);
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);
}

/* The new array of a growth cannot be allocated: the insert still
 * succeeds in the old table, the failure is counted, growth is retried
 * after 1/8 more entries. */
static void test_grow_failure_keeps_table(void **state)
{
    (void)state;
    test_alloc_t ta = {0};
    map_t *m = new_map(&ta, 100);             /* B = 4, spares in the array */
    uint64_t i = 0;
    for (; i < 104; i++) insert_key(m, 0x5000 + i * 16);
    test_alloc_fail_nth(&ta, 1, 1);           /* every allocation fails from now */
    map_stats_t st;
    for (; i < 110; i++) {
        value_t v = { 0x5000 + i * 16, ~(0x5000 + i * 16), (0x5000 + i * 16) * 3 };
        map_err_t err = map_insert64(m, 0x5000 + i * 16, &v);
        check_map(m);
        if (err != MAP_OK) {
            /* Only when the chain was full and the spares are gone. */
            assert_int_equal(err, MAP_ERR_NOMEM);
            assert_null(map_lookup64(m, 0x5000 + i * 16));
            break;
        }
    }
    map_get_stats(m, &st);
    assert_int_equal(st.B, 4);
    assert_false(st.growing);
    assert_int_equal(st.grow_failures, 1);    /* retried only after 1/8 more */
    assert_int_equal(st.last_error, MAP_ERR_NOMEM);
    test_alloc_heal(&ta);
    uint64_t end = i + 40;
    for (; i < end; i++) insert_key(m, 0x5000 + i * 16);
    map_get_stats(m, &st);
    assert_true(st.B == 5 || st.growing);
    for (uint64_t j = 0; j < end; j++)
        if (map_lookup64(m, 0x5000 + j * 16)) assert_present(m, 0x5000 + j * 16);
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);
}

/* Evacuation needs an overflow bucket that cannot be allocated: the old
 * bucket stays unevacuated and authoritative, writes use it, and once
 * memory is back the growth completes. */
static void test_evacuation_failure_mid_growth(void **state)
{
    (void)state;
    test_alloc_t ta = {0};
    map_t *m = new_map(&ta, 20);              /* B = 2, no spares below B = 4 */
    uint64_t cursor = 0, x[24], other[2], late[4];
    /* 24 keys in bucket 0 that all stay in bucket 0 (X) after doubling:
     * their evacuation needs two overflow buckets. */
    keys_in_bucket(m, 7, 0, 24, x, &cursor);
    keys_in_bucket(m, 3, 1, 2, other, &cursor);
    for (int i = 0; i < 24; i++) insert_key(m, x[i]);
    for (int i = 0; i < 2; i++) insert_key(m, other[i]);
    assert_string_equal(chain_str(m, false, 0), "LLLLLLLL|LLLLLLLL|LLLLLLLL");

    /* The next new key in bucket 0 starts the doubling (27 > 26): the
     * array allocation succeeds, evacuation's reservation fails, and the
     * full old chain cannot take the key: NOMEM, nothing stored. */
    keys_in_bucket(m, 7, 0, 4, late, &cursor);
    test_alloc_fail_nth(&ta, 2, 1);
    value_t v = { late[0], ~late[0], late[0] * 3 };
    assert_int_equal(map_insert64(m, late[0], &v), MAP_ERR_NOMEM);
    check_map(m);
    map_stats_t st;
    map_get_stats(m, &st);
    assert_true(st.growing);
    assert_int_equal(st.count, 26);
    assert_null(map_lookup64(m, late[0]));
    assert_string_equal(chain_str(m, true, 0), "LLLLLLLL|LLLLLLLL|LLLLLLLL");

    /* A delete works in the old chain; then an insert reuses its slot. */
    assert_true(map_delete64(m, x[5], NULL));
    check_map(m);
    assert_string_equal(chain_str(m, true, 0), "LLLLL1LL|LLLLLLLL|LLLLLLLL");
    insert_key(m, late[1]);
    assert_string_equal(chain_str(m, true, 0), "LLLLLLLL|LLLLLLLL|LLLLLLLL");
    for (int i = 0; i < 24; i++) if (i != 5) assert_present(m, x[i]);
    assert_present(m, late[1]);

    /* Memory is back: writes finish the growth. */
    test_alloc_heal(&ta);
    insert_key(m, late[2]);
    map_get_stats(m, &st);
    while (st.growing) {
        assert_false(map_delete64(m, 0xabc000ull, NULL));
        check_map(m);
        map_get_stats(m, &st);
    }
    assert_int_equal(st.B, 3);
    for (int i = 0; i < 24; i++) if (i != 5) assert_present(m, x[i]);
    assert_present(m, late[1]);
    assert_present(m, late[2]);
    assert_int_equal(map_count(m), 27);
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);
}

/* Every allocation of a map's life can fail, one at a time: nothing leaks,
 * the map stays valid, and every stored key stays findable. */
static void test_fail_every_allocation(void **state)
{
    (void)state;
    for (size_t nth = 1; nth <= 40; nth++) {
        test_alloc_t ta = {0};
        map_allocator_t a = test_allocator(&ta);
        map_t *m = NULL;
        test_alloc_fail_nth(&ta, nth, 0);
        if (map_new(8, VALUE_SIZE, 0, &a, &m) != MAP_OK) {
            assert_int_equal(ta.live_blocks, 0);
            continue;
        }
        static uint8_t stored[3000];
        memset(stored, 0, sizeof stored);
        for (uint64_t i = 0; i < 3000; i++) {
            value_t v = { i, ~i, i * 3 };
            map_err_t err = map_insert64(m, 0x100000 + i * 32, &v);
            assert_true(err == MAP_OK || err == MAP_ERR_NOMEM);
            stored[i] = err == MAP_OK;
            if (i % 3 == 0) {
                map_delete64(m, 0x100000 + (i / 2) * 32, NULL);
                stored[i / 2] = 0;
            }
        }
        check_map(m);
        size_t n = 0;
        for (uint64_t i = 0; i < 3000; i++) {
            value_t *v = map_lookup64(m, 0x100000 + i * 32);
            assert_int_equal(v != NULL, stored[i]);
            if (v) assert_true(v->a == i && v->c == i * 3);
            n += stored[i];
        }
        assert_int_equal(map_count(m), n);
        map_free(m);
        assert_int_equal(ta.live_blocks, 0);
    }
}

/* Generic keys of odd sizes and zero-size values share the same machinery. */
static void test_generic_sizes(void **state)
{
    (void)state;
    static const size_t ksizes[] = { 1, 3, 8, 12, 33, 128 };
    static const size_t vsizes[] = { 0, 1, 7, 24, 128 };
    for (size_t a = 0; a < sizeof ksizes / sizeof *ksizes; a++) {
        for (size_t b = 0; b < sizeof vsizes / sizeof *vsizes; b++) {
            test_alloc_t ta = {0};
            map_allocator_t al = test_allocator(&ta);
            map_t *m;
            size_t ks = ksizes[a], vs = vsizes[b];
            assert_int_equal(map_new(ks, vs, 0, &al, &m), MAP_OK);
            size_t n = ks == 1 ? 256 : 2000;
            unsigned char key[128], val[128];
            for (size_t i = 0; i < n; i++) {
                memset(key, 0, sizeof key);
                memcpy(key, &i, ks < sizeof i ? ks : sizeof i);
                memset(val, (int)(i & 0xff), vs);
                assert_int_equal(map_insert(m, key, val), MAP_OK);
            }
            check_map(m);
            assert_int_equal(map_count(m), n);
            for (size_t i = 0; i < n; i++) {
                memset(key, 0, sizeof key);
                memcpy(key, &i, ks < sizeof i ? ks : sizeof i);
                unsigned char *v = map_lookup(m, key);
                assert_non_null(v);
                for (size_t j = 0; j < vs; j++) assert_int_equal(v[j], i & 0xff);
                if (i % 2) assert_true(map_delete(m, key, val));
            }
            check_map(m);
            assert_int_equal(map_count(m), n - n / 2);
            map_free(m);
            assert_int_equal(ta.live_blocks, 0);
        }
    }
}

/* The 8-byte generic path and the fast path see the same entries. */
static void test_fast_and_generic_agree(void **state)
{
    (void)state;
    test_alloc_t ta = {0};
    map_t *m = new_map(&ta, 0);
    for (uint64_t i = 0; i < 1000; i++) {
        uint64_t k = 0x7000 + i * 48;
        value_t v = { k, ~k, k * 3 };
        if (i % 2) assert_int_equal(map_insert64(m, k, &v), MAP_OK);
        else assert_int_equal(map_insert(m, &k, &v), MAP_OK);
    }
    for (uint64_t i = 0; i < 1000; i++) {
        uint64_t k = 0x7000 + i * 48;
        assert_ptr_equal(map_lookup(m, &k), map_lookup64(m, k));
        assert_non_null(map_lookup64(m, k));
    }
    void *slot;
    bool inserted;
    assert_int_equal(map_assign64(m, 0x7000, &slot, &inserted), MAP_OK);
    assert_false(inserted);
    assert_int_equal(map_assign64(m, 0x1, &slot, &inserted), MAP_OK);
    assert_true(inserted);
    assert_true(((value_t *)slot)->a == 0 && ((value_t *)slot)->c == 0);
    check_map(m);
    map_free(m);
    assert_int_equal(ta.live_blocks, 0);
}

/* map_debug_set_seed: two maps seeded alike hash alike and iterate in the
 * same order (across growth, a delete-to-empty re-seed and a re-fill);
 * refused on a map that is not empty. */
static void fill_and_order(map_t *m, uint64_t *order, size_t n)
{
    for (uint64_t i = 0; i < n; i++) insert_key(m, 0x7f0000200000ull + i * 32);
    for (uint64_t i = 0; i < n; i++)
        assert_true(map_delete64(m, 0x7f0000200000ull + i * 32, NULL));
    for (uint64_t i = 0; i < n; i++) insert_key(m, 0x7f0000200000ull + i * 32);
    map_iter_t it;
    const void *k;
    size_t got = 0;
    map_iter_init(m, &it);
    while (map_iter_next(&it, &k, NULL)) {
        assert_true(got < n);
        memcpy(&order[got++], k, 8);
    }
    map_iter_done(&it);
    assert_int_equal(got, n);
}

static void test_debug_set_seed(void **state)
{
    (void)state;
    enum { N = 300 };
    test_alloc_t ta = {0};
    map_t *a = new_map(&ta, 0), *b = new_map(&ta, 0), *c = new_map(&ta, 0);
    assert_int_equal(map_debug_set_seed(a, 42), MAP_OK);
    assert_int_equal(map_debug_set_seed(b, 42), MAP_OK);
    assert_int_equal(map_debug_set_seed(c, 43), MAP_OK);
    uint64_t k = 0x7f0000123450ull;
    assert_true(map_debug_hash(a, &k) == map_debug_hash(b, &k));
    assert_true(map_debug_hash(a, &k) != map_debug_hash(c, &k));
    uint64_t oa[N], ob[N], oc[N];
    fill_and_order(a, oa, N);
    fill_and_order(b, ob, N);
    fill_and_order(c, oc, N);
    assert_memory_equal(oa, ob, sizeof oa);
    assert_memory_not_equal(oa, oc, sizeof oa);
    assert_int_equal(map_debug_set_seed(a, 7), MAP_ERR_INVALID);   /* not empty */
    assert_int_equal(map_debug_set_seed(NULL, 7), MAP_ERR_INVALID);
    map_free(a);
    map_free(b);
    map_free(c);
    assert_int_equal(ta.live_blocks, 0);
}

/* The arena: classes, recycling (zeroed again), large blocks, stats. */
static void test_arena(void **state)
{
    (void)state;
    map_arena_stats_t s0, s1;
    map_arena_get_stats(&s0);
    unsigned char *small = map_arena_alloc(100);
    unsigned char *large = map_arena_alloc(1u << 20);
    assert_non_null(small);
    assert_non_null(large);
    assert_int_equal((uintptr_t)small % 16, 0);
    assert_int_equal((uintptr_t)large % 16, 0);
    for (int i = 0; i < 100; i++) assert_int_equal(small[i], 0);
    memset(small, 0xab, 100);
    memset(large, 0xcd, 1u << 20);
    map_arena_get_stats(&s1);
    assert_true(s1.inuse_bytes >= s0.inuse_bytes + 100 + (1u << 20));
    map_arena_free(small);
    unsigned char *again = map_arena_alloc(90);   /* same class: recycled */
    assert_ptr_equal(again, small);
    for (int i = 0; i < 90; i++) assert_int_equal(again[i], 0);
    map_arena_free(again);
    map_arena_free(large);
    map_arena_get_stats(&s1);
    assert_int_equal(s1.inuse_bytes, s0.inuse_bytes);
    assert_int_equal(s1.allocs - s0.allocs, 3);
    assert_int_equal(s1.frees - s0.frees, 3);

    /* Large blocks: a freed mapping of up to 2 MiB is kept and handed out
     * again, zeroed, to a request it fits; a bigger one is unmapped. */
    unsigned char *big = map_arena_alloc(100000);
    assert_non_null(big);
    memset(big, 0xcd, 100000);
    map_arena_get_stats(&s0);
    map_arena_free(big);
    map_arena_get_stats(&s1);
    assert_true(s1.cached_bytes >= s0.cached_bytes + 100000);
    assert_int_equal(s1.mapped_bytes, s0.mapped_bytes);
    unsigned char *reused = map_arena_alloc(90000);
    assert_ptr_equal(reused, big);
    for (int i = 0; i < 90000; i++) assert_int_equal(reused[i], 0);
    map_arena_free(reused);
    unsigned char *mb15 = map_arena_alloc(1536u * 1024u);
    assert_non_null(mb15);
    map_arena_free(mb15);
    unsigned char *third = map_arena_alloc(600000);   /* under half of it: not reused */
    assert_ptr_not_equal(third, mb15);
    unsigned char *most = map_arena_alloc(1400000);   /* fits it */
    assert_ptr_equal(most, mb15);
    map_arena_free(third);
    map_arena_free(most);
    unsigned char *huge = map_arena_alloc(3u << 20);
    assert_non_null(huge);
    map_arena_get_stats(&s0);
    map_arena_free(huge);
    map_arena_get_stats(&s1);
    assert_int_equal(s1.cached_bytes, s0.cached_bytes);
    assert_true(s1.mapped_bytes + (3u << 20) <= s0.mapped_bytes);
    /* The cache stays within its bounds however much is freed. */
    unsigned char *blocks[12];
    for (int i = 0; i < 12; i++) assert_non_null(blocks[i] = map_arena_alloc(1u << 20));
    for (int i = 0; i < 12; i++) map_arena_free(blocks[i]);
    map_arena_get_stats(&s1);
    assert_true(s1.cached_bytes <= (8u << 20));

    /* A map on the arena returns everything it took. */
    map_allocator_t a = map_arena_allocator();
    map_t *m;
    map_arena_get_stats(&s0);
    assert_int_equal(map_new(8, VALUE_SIZE, 0, &a, &m), MAP_OK);
    for (uint64_t i = 0; i < 100000; i++) {
        value_t v = { i, i, i };
        assert_int_equal(map_insert64(m, i * 16, &v), MAP_OK);
    }
    map_free(m);
    map_arena_get_stats(&s1);
    assert_int_equal(s1.inuse_bytes, s0.inuse_bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_map_is_empty),
        cmocka_unit_test(test_prefetch_is_only_a_hint),
        cmocka_unit_test(test_empty_rest_propagation),
        cmocka_unit_test(test_empty_rest_crosses_buckets),
        cmocka_unit_test(test_tombstone_reuse),
        cmocka_unit_test(test_doubling_and_evacuation_progress),
        cmocka_unit_test(test_same_size_growth),
        cmocka_unit_test(test_iteration_during_growth),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_grow_failure_keeps_table),
        cmocka_unit_test(test_evacuation_failure_mid_growth),
        cmocka_unit_test(test_fail_every_allocation),
        cmocka_unit_test(test_generic_sizes),
        cmocka_unit_test(test_fast_and_generic_agree),
        cmocka_unit_test(test_debug_set_seed),
        cmocka_unit_test(test_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
