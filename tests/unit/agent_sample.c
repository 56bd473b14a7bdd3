/*
 * agent_sample.c - Poisson sampling by bytes (agent/sample.c), without any
 * preload: the test owns its thread blocks (agent_thread_t) and drives
 * the hot path's countdown (agent_count_alloc, hot.h) by hand.
 *
 *   - agent_sample_gap at a fixed seed (t->rng), rates 512 KiB and 4 KiB:
 *     the mean within 4 standard errors, the Kolmogorov-Smirnov distance
 *     to the exponential law below its p = 0.001 critical value, and no
 *     lag-1 correlation; the same statistics reject a deliberately wrong
 *     law (uniform gaps of mean R; exponential gaps of mean 1.1 R), so
 *     the test can fail;
 *   - rate 0 never samples, rate 1 samples every allocation (of 0 bytes
 *     too), from agent_sample_thread_init's countdown;
 *   - ticks (agent_tick_bytes): a copy of a block whose countdown is cut
 *     into pieces samples exactly the allocations the uncut one samples,
 *     its countdown (piece + rest) always equals the uncut one and no
 *     piece is longer than a tick; at rate 0 the cut countdown still ends
 *     every tick without sampling.
 */
#define _GNU_SOURCE
#include <math.h>
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
#include "agent/sample.h"
#include "agent/stacks.h"
#include "agent/unwind.h"
#include "agent/thread.h"
#include "test_util.h"

#define N_DRAWS 20000
#define KS_P001 1.9495          /* sqrt(n) * D above this: p < 0.001 (Kolmogorov) */
#define BINS 12                 /* chi-square bins between quantiles */
#define CHI2_11_P001 31.264     /* chi-square, 11 degrees of freedom, p = 0.001 */
#define HEAP UINT64_C(0x00005555a0000000)

static uint64_t saved_rate;

static int group_setup(void **state)
{
    (void)state;
    saved_rate = agent_sample_rate;
    agent_unwind_init();   /* as agent_init: the walker first, then the table */
    return agent_stacks_init();   /* sampled allocations get stacks */
}

static int teardown(void **state)
{
    (void)state;
    agent_sample_rate = saved_rate;
    agent_tick_bytes = 0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                               */
/* ------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* law_t: what a set of gaps says against the exponential law of mean R. */
typedef struct {
    double mean, mean_z;        /* sample mean; its distance from R in standard errors */
    double ks;                  /* sqrt(n) * the KS distance */
    double chi2;                /* over bins between the law's quantiles (tails included) */
    double lag1;                /* lag-1 correlation, times sqrt(n) */
} law_t;

static law_t against_exponential(const double *gaps, size_t n, double R)
{
    law_t l;
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += gaps[i];
    l.mean = sum / (double)n;
    l.mean_z = (l.mean - R) / (R / sqrt((double)n));   /* the exponential's sd is R */
    double cov = 0, var = 0;
    for (size_t i = 0; i < n; i++) {
        var += (gaps[i] - l.mean) * (gaps[i] - l.mean);
        if (i) cov += (gaps[i] - l.mean) * (gaps[i - 1] - l.mean);
    }
    l.lag1 = cov / var * sqrt((double)n);
    double *s = malloc(n * sizeof *s);
    assert_non_null(s);
    memcpy(s, gaps, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double F = 1.0 - exp(-s[i] / R);
        double above = (double)(i + 1) / (double)n - F, below = F - (double)i / (double)n;
        if (above > d) d = above;
        if (below > d) d = below;
    }
    free(s);
    l.ks = d * sqrt((double)n);
    /* Chi-square over BINS bins cut at the law's quantiles: the deciles,
     * then 0.99 and 0.999, where KS is blind (a draw with too few random
     * bits has no long gaps). */
    static const double cut[BINS - 1] = { .1, .2, .3, .4, .5, .6, .7, .8, .9, .99, .999 };
    unsigned count[BINS] = { 0 };
    for (size_t i = 0; i < n; i++) {
        unsigned b = 0;
        while (b < BINS - 1 && gaps[i] >= -R * log1p(-cut[b])) b++;
        count[b]++;
    }
    l.chi2 = 0;
    for (unsigned b = 0; b < BINS; b++) {
        double p = (b < BINS - 1 ? cut[b] : 1.0) - (b ? cut[b - 1] : 0.0);
        double e = p * (double)n;
        l.chi2 += ((double)count[b] - e) * ((double)count[b] - e) / e;
    }
    return l;
}

static bool law_holds(const law_t *l)
{
    return fabs(l->mean_z) < 4 && l->ks < KS_P001 && l->chi2 < CHI2_11_P001 && fabs(l->lag1) < 4;
}

static void check_rate(uint64_t R, uint64_t seed)
{
    static double gaps[N_DRAWS];
    agent_thread_t t;
    memset(&t, 0, sizeof t);
    t.rng = seed;
    agent_sample_rate = R;
    for (size_t i = 0; i < N_DRAWS; i++) {
        uint64_t g = agent_sample_gap(&t);
        assert_true(g <= (UINT64_C(1) << 62));
        gaps[i] = (double)g;
    }
    law_t l = against_exponential(gaps, N_DRAWS, (double)R);
    if (!law_holds(&l))
        fail_msg("rate %llu, seed %llu: mean %.1f (%.2f standard errors), KS sqrt(n)D %.3f "
                 "(limit %.3f), chi-square %.1f (limit %.1f), lag-1 correlation x sqrt(n) %.2f",
                 (unsigned long long)R, (unsigned long long)seed, l.mean, l.mean_z, l.ks,
                 KS_P001, l.chi2, CHI2_11_P001, l.lag1);
}

static void test_gap_law_512k(void **state)
{
    (void)state;
    check_rate(512 * 1024, 0x9e3779b97f4a7c15ull);
    check_rate(512 * 1024, 12345);
}

static void test_gap_law_4k(void **state)
{
    (void)state;
    check_rate(4096, 0x2545f4914f6cdd1dull);
    check_rate(4096, 777);
}

/* The same statistics on wrong laws: they must say no. */
static void test_wrong_law_fails(void **state)
{
    (void)state;
    static double gaps[N_DRAWS];
    const double R = 512 * 1024;
    uint64_t rng = 1;
    /* uniform on [0, 2R): the right mean, the wrong shape */
    for (size_t i = 0; i < N_DRAWS; i++) gaps[i] = (double)(test_rand(&rng) % (uint64_t)(2 * R));
    law_t l = against_exponential(gaps, N_DRAWS, R);
    assert_true(fabs(l.mean_z) < 4);   /* the mean alone cannot tell */
    assert_true(l.ks > 3 * KS_P001);
    assert_true(l.chi2 > 3 * CHI2_11_P001);
    assert_false(law_holds(&l));
    /* the agent's draws, 10% too long */
    agent_thread_t t;
    memset(&t, 0, sizeof t);
    t.rng = 0x9e3779b97f4a7c15ull;
    agent_sample_rate = (uint64_t)R;
    for (size_t i = 0; i < N_DRAWS; i++) gaps[i] = 1.1 * (double)agent_sample_gap(&t);
    l = against_exponential(gaps, N_DRAWS, R);
    assert_true(l.ks > KS_P001);
    assert_true(l.mean_z > 4);
    assert_false(law_holds(&l));
    /* the agent's draws, each repeated: correlated */
    t.rng = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < N_DRAWS; i += 2) gaps[i] = gaps[i + 1] = (double)agent_sample_gap(&t);
    l = against_exponential(gaps, N_DRAWS, R);
    assert_true(l.lag1 > 4);
    assert_false(law_holds(&l));
    /* the agent's law from an 8-bit uniform: the right shape but for its
     * tail (no gap beyond ln(256) R = 5.5 R); only the tail bins see it */
    for (size_t i = 0; i < N_DRAWS; i++) gaps[i] = -R * log((double)(test_rand(&rng) % 256 + 1) / 256.0);
    l = against_exponential(gaps, N_DRAWS, R);
    assert_true(l.ks < KS_P001);
    assert_true(l.chi2 > CHI2_11_P001);
    assert_false(law_holds(&l));
}

/* A huge rate: draws are capped at 2^62 (the countdown is an int64_t). */
static void test_gap_cap(void **state)
{
    (void)state;
    agent_thread_t t;
    memset(&t, 0, sizeof t);
    t.rng = 99;
    agent_sample_rate = UINT64_C(1) << 63;
    unsigned capped = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t g = agent_sample_gap(&t);
        assert_true(g <= (UINT64_C(1) << 62));
        capped += g == (UINT64_C(1) << 62);
    }
    /* capped when -ln(U) > 1/2: P = exp(-1/2) = 61% */
    assert_true(capped > 540 && capped < 670);
}

/* Two blocks seeded at one address: different generators (the per-block
 * counter), so threads draw different sequences. */
static void test_seeds_differ(void **state)
{
    (void)state;
    agent_sample_rate = 4096;
    agent_thread_t t;
    memset(&t, 0, sizeof t);
    agent_sample_thread_init(&t);
    uint64_t first = t.rng;
    assert_true(first != 0);
    memset(&t, 0, sizeof t);
    agent_sample_thread_init(&t);
    assert_true(t.rng != first);
}

/* ------------------------------------------------------------------------ */
/* Rates 0 and 1                                                            */
/* ------------------------------------------------------------------------ */

/* sampled: t's samples, whether they found room or not. */
static uint64_t sampled(const agent_thread_t *t) { return t->samples + t->dropped; }

static void test_rate_0_never(void **state)
{
    (void)state;
    agent_sample_rate = 0;
    agent_thread_t t;
    memset(&t, 0, sizeof t);
    agent_sample_thread_init(&t);
    assert_int_equal(t.sample_left, INT64_MAX);
    uint64_t rng = 5, bytes = 0;
    for (uint64_t i = 0; i < 100000; i++) {
        size_t size = (size_t)(test_rand(&rng) % (1u << 20));
        void *p = (void *)(uintptr_t)(HEAP + 16 * i);
        assert_ptr_equal(agent_count_alloc(&t, p, size), p);
        bytes += size + AGENT_BLOCK_EXTRA;
    }
    assert_int_equal(sampled(&t), 0);
    assert_int_equal(t.mallocs, 100000);
    assert_int_equal(t.alloc_bytes, bytes);
    assert_int_equal(t.sample_left, INT64_MAX - (int64_t)bytes);
}

static void test_rate_1_every(void **state)
{
    (void)state;
    agent_sample_rate = 1;
    agent_thread_t t;
    memset(&t, 0, sizeof t);
    agent_sample_thread_init(&t);
    assert_true(t.sample_left < 0 || t.sample_left == -1);
    enum { N = 3000 };
    uint64_t rng = 6;
    for (uint64_t i = 0; i < N; i++) {
        size_t size = i % 10 == 0 ? 0 : (size_t)(test_rand(&rng) % 100000);   /* 0 bytes too */
        void *p = (void *)(uintptr_t)(HEAP + 0x1000000 + 16 * i);
        assert_ptr_equal(agent_count_alloc(&t, p, size), p);
        assert_int_equal(sampled(&t), i + 1);
        assert_true(agent_maybe_sampled(p));
    }
    assert_int_equal(t.samples, N);
    assert_int_equal(t.dropped, 0);
    /* each is in the live map with its size; free them all */
    agent_live_stats_t st;
    assert_true(agent_live_get_stats(&st));
    assert_int_equal(st.count, N);
    for (uint64_t i = 0; i < N; i++) agent_free_sampled(&t, (void *)(uintptr_t)(HEAP + 0x1000000 + 16 * i));
    assert_int_equal(t.filter_hits, N);
    assert_int_equal(t.filter_false, 0);
    assert_true(agent_live_get_stats(&st));
    assert_int_equal(st.count, 0);
}

/* ------------------------------------------------------------------------ */
/* Ticks                                                                    */
/* ------------------------------------------------------------------------ */

/* alloc_size: a mix of sizes: mostly small, some of a few ticks, a few of
 * many ticks (an allocation may end several pieces at once). */
static size_t alloc_size(uint64_t *rng)
{
    uint64_t r = test_rand(rng);
    switch (r % 16) {
    case 0: return (size_t)(r >> 8) % (3u << 20);                 /* up to 3 MiB */
    case 1: case 2: return (size_t)(r >> 8) % (128u << 10);       /* up to 128 KiB */
    default: return (size_t)(r >> 8) % 1024;
    }
}

/* run_cut_and_uncut: allocations of the same sizes on a block with an
 * uncut countdown (a) and on a copy whose countdown is cut into ticks (b):
 * the same allocations are sampled. @return how many. */
static uint64_t run_cut_and_uncut(uint64_t rate, unsigned n)
{
    const int64_t tick = AGENT_TICK_BYTES;
    agent_sample_rate = rate;
    agent_tick_bytes = 0;
    agent_thread_t a, b;
    memset(&a, 0, sizeof a);
    agent_sample_thread_init(&a);
    b = a;
    agent_tick_bytes = (uint64_t)tick;
    agent_sample_rearm(&b);
    assert_int_equal(b.sample_left + b.sample_rest, a.sample_left);
    assert_true(b.sample_left <= tick);
    uint64_t rng = rate, since = 0;   /* bytes since b's slow path last ran */
    for (unsigned i = 0; i < n; i++) {
        size_t size = alloc_size(&rng);
        void *pa = (void *)(uintptr_t)(HEAP + 0x10000000 + 16 * (uint64_t)i);
        void *pb = (void *)(uintptr_t)(HEAP + 0x20000000 + 16 * (uint64_t)i);
        uint64_t sa = sampled(&a), sb = sampled(&b);
        int64_t b_left = b.sample_left;
        agent_tick_bytes = 0;                 /* a's countdown is never cut */
        agent_count_alloc(&a, pa, size);
        agent_tick_bytes = (uint64_t)tick;    /* b's always is */
        agent_count_alloc(&b, pb, size);
        bool in_a = sampled(&a) != sa, in_b = sampled(&b) != sb;
        if (in_a != in_b)
            fail_msg("rate %llu, allocation %u (%zu bytes): sampled %s the cut countdown but %s the uncut one",
                     (unsigned long long)rate, i, size, in_b ? "with" : "not with", in_a ? "with" : "not with");
        /* the cut countdown is the uncut one, in pieces of a tick at most */
        assert_int_equal(b.sample_left + b.sample_rest, a.sample_left);
        assert_true(b.sample_left <= tick);
        assert_int_equal(a.rng, b.rng);
        /* b's slow path runs at least once per tick allocated */
        if (b_left - (int64_t)(size + AGENT_BLOCK_EXTRA) < 0) since = 0;
        else since += size + AGENT_BLOCK_EXTRA;
        assert_true(since <= (uint64_t)tick);
        if (in_a) {                           /* keep the live map small */
            agent_free_sampled(&a, pa);
            agent_free_sampled(&b, pb);
        }
    }
    /* Ticks off: the countdown is whole again. */
    agent_tick_bytes = 0;
    agent_sample_rearm(&b);
    assert_int_equal(b.sample_left, a.sample_left);
    assert_int_equal(b.sample_rest, 0);
    return sampled(&a);
}

static void test_ticks_same_samples(void **state)
{
    (void)state;
    assert_true(run_cut_and_uncut(512 * 1024, 20000) > 50);
    assert_true(run_cut_and_uncut(64 * 1024, 20000) > 500);
    assert_true(run_cut_and_uncut(4 * 1024, 5000) > 1000);   /* gaps mostly within one tick */
}

/* Rate 0 with ticks: the countdown (INT64_MAX) is cut, the slow path runs
 * every tick, and nothing is ever sampled. */
static void test_ticks_rate_0(void **state)
{
    (void)state;
    const int64_t tick = AGENT_TICK_BYTES;
    agent_sample_rate = 0;
    agent_tick_bytes = (uint64_t)tick;
    agent_thread_t t;
    memset(&t, 0, sizeof t);
    agent_sample_thread_init(&t);
    assert_int_equal(t.sample_left, tick);
    assert_int_equal(t.sample_rest, INT64_MAX - tick);
    uint64_t ends = 0, total = 0, since = 0;
    for (uint64_t i = 0; i < 20000; i++) {
        int64_t before = t.sample_left;
        size_t size = 1000 + (size_t)(i % 7) * 1000;
        agent_count_alloc(&t, (void *)(uintptr_t)(HEAP + 16 * i), size);
        total += size + AGENT_BLOCK_EXTRA;
        if (before - (int64_t)(size + AGENT_BLOCK_EXTRA) < 0) {
            ends++;                           /* the slow path ran */
            since = 0;
        } else {
            since += size + AGENT_BLOCK_EXTRA;
        }
        assert_true(since <= (uint64_t)tick);
        assert_true(t.sample_left <= tick && t.sample_left >= 0);
        assert_int_equal(t.sample_left + t.sample_rest, INT64_MAX - (int64_t)total);
    }
    assert_int_equal(sampled(&t), 0);
    /* a piece ends within one allocation (at most 7 KiB here) past a tick */
    assert_true(ends >= total / (uint64_t)(tick + 7008));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_gap_law_512k, teardown),
        cmocka_unit_test_teardown(test_gap_law_4k, teardown),
        cmocka_unit_test_teardown(test_wrong_law_fails, teardown),
        cmocka_unit_test_teardown(test_gap_cap, teardown),
        cmocka_unit_test_teardown(test_seeds_differ, teardown),
        cmocka_unit_test_teardown(test_rate_0_never, teardown),
        cmocka_unit_test_teardown(test_rate_1_every, teardown),
        cmocka_unit_test_teardown(test_ticks_same_samples, teardown),
        cmocka_unit_test_teardown(test_ticks_rate_0, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
