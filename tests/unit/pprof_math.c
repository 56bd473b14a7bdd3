/*
 * pprof_math.c - pprof_exp, pprof_log and pprof_round_i64 (pprof/pprof_math.c)
 * against libm: within a few units in the last place over their domains,
 * the same edge values.
 */
#include <float.h>
#include <math.h>

#include "pprof_test.h"

/* ulps: the distance between a and b in units in the last place of b. */
static double ulps(double a, double b)
{
    if (a == b) return 0;
    double u = nextafter(fabs(b), INFINITY) - fabs(b);
    return fabs(a - b) / u;
}

/* xorshift: a fixed-seed generator (no rand(): reproducible everywhere). */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

static double uniform(double lo, double hi)
{
    return lo + (hi - lo) * (double)(next() >> 11) * 0x1.0p-53;
}

#define N 1000000
#define MAX_ULPS 4.0

static void test_log_sampler_domain(void **state)
{
    (void)state;
    /* What agent_sample_gap feeds it: U = (53 random bits + 1) / 2^53. */
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double u = (double)((next() >> 11) + 1) * 0x1.0p-53;
        double d = ulps(pprof_log(u), log(u));
        if (d > worst) worst = d;
    }
    /* And the ends: the smallest U (2^-53) and U = 1 (log 0 exactly). */
    assert_true(pprof_log(0x1.0p-53) == log(0x1.0p-53));
    assert_true(pprof_log(1.0) == 0.0);
    print_message("log on the sampler's (0, 1]: worst %.2f ulp\n", worst);
    assert_true(worst <= MAX_ULPS);
}

static void test_log_whole_range(void **state)
{
    (void)state;
    double worst = 0, worst_near1 = 0;
    for (int i = 0; i < N; i++) {
        /* Every binade: a random exponent and mantissa. */
        double x = ldexp(uniform(1.0, 2.0), (int)(next() % 2044) - 1074 + 2);
        if (!(x > 0) || isinf(x)) continue;
        double d = ulps(pprof_log(x), log(x));
        if (d > worst) worst = d;
        /* Near 1, where log x is small and cancellation would show. */
        double y = 1.0 + uniform(-0.3, 0.4);
        d = ulps(pprof_log(y), log(y));
        if (d > worst_near1) worst_near1 = d;
    }
    print_message("log over (0, inf): worst %.2f ulp; near 1: %.2f ulp\n", worst, worst_near1);
    assert_true(worst <= MAX_ULPS);
    assert_true(worst_near1 <= MAX_ULPS);
}

static void test_log_edges(void **state)
{
    (void)state;
    assert_true(isinf(pprof_log(0.0)) && pprof_log(0.0) < 0);
    assert_true(isinf(pprof_log(-0.0)) && pprof_log(-0.0) < 0);
    assert_true(isnan(pprof_log(-1.0)));
    assert_true(isnan(pprof_log(NAN)));
    assert_true(isinf(pprof_log(INFINITY)) && pprof_log(INFINITY) > 0);
    assert_true(ulps(pprof_log(DBL_TRUE_MIN), log(DBL_TRUE_MIN)) <= MAX_ULPS);
    assert_true(ulps(pprof_log(DBL_MIN), log(DBL_MIN)) <= MAX_ULPS);
    assert_true(ulps(pprof_log(DBL_MAX), log(DBL_MAX)) <= MAX_ULPS);
    assert_true(ulps(pprof_log(2.0), M_LN2) <= 1);
    assert_true(ulps(pprof_log(M_E), 1.0) <= 1);
}

static void test_exp_range(void **state)
{
    (void)state;
    double worst = 0, worst_small = 0, worst_sub = 0;
    for (int i = 0; i < N; i++) {
        double x = uniform(-708.0, 709.7);
        double d = ulps(pprof_exp(x), exp(x));
        if (d > worst) worst = d;
        /* What unsampling feeds it: -avg/rate, mostly tiny or moderate. */
        double y = -ldexp(uniform(1.0, 2.0), (int)(next() % 60) - 50);
        d = ulps(pprof_exp(y), exp(y));
        if (d > worst_small) worst_small = d;
        /* Subnormal results: compared in absolute terms (2^-1074 steps). */
        double z = uniform(-745.1, -708.4);
        d = fabs(pprof_exp(z) - exp(z)) / DBL_TRUE_MIN;
        if (d > worst_sub) worst_sub = d;
    }
    print_message("exp on [-708, 709.7]: worst %.2f ulp; on -[2^-50, 2^10): %.2f ulp; "
                  "subnormal results: %.2f x 2^-1074\n", worst, worst_small, worst_sub);
    assert_true(worst <= MAX_ULPS);
    assert_true(worst_small <= MAX_ULPS);
    assert_true(worst_sub <= 1.0);
}

static void test_exp_edges(void **state)
{
    (void)state;
    assert_true(pprof_exp(0.0) == 1.0);
    assert_true(pprof_exp(-0.0) == 1.0);
    assert_true(isnan(pprof_exp(NAN)));
    assert_true(isinf(pprof_exp(INFINITY)) && pprof_exp(INFINITY) > 0);
    assert_true(pprof_exp(-INFINITY) == 0.0);
    assert_true(isinf(pprof_exp(710.0)));
    assert_true(pprof_exp(-746.0) == 0.0);
    assert_true(ulps(pprof_exp(709.78), exp(709.78)) <= MAX_ULPS);   /* k = 1024 */
    assert_true(ulps(pprof_exp(1.0), M_E) <= 1);
    assert_true(ulps(pprof_exp(M_LN2), 2.0) <= 1);
    assert_true(ulps(pprof_exp(-1e-300), 1.0) <= 1);
    /* Go's own figure (pprof_heap): 1/(1 - e^-2) = 1.15651764274966565. */
    assert_true(fabs(1.0 / (1.0 - pprof_exp(-2.0)) - 1.15651764274966565) < 1e-15);
}

static void test_round(void **state)
{
    (void)state;
    static const double xs[] = { 0.0, -0.0, 0.4, 0.5, 0.6, 1.5, 2.5, -0.4, -0.5, -0.6, -1.5,
                                 -2.5, 0.49999999999999994, -0.49999999999999994,
                                 4503599627370495.5, -4503599627370495.5, 4503599627370497.0,
                                 9007199254740993.0, 1e18, -1e18, 9.2e18, -9.2e18,
                                 123456.789, -123456.789 };
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        if (pprof_round_i64(xs[i]) != llround(xs[i]))
            fprintf(stderr, "round(%.17g) = %lld, llround %lld\n", xs[i],
                    (long long)pprof_round_i64(xs[i]), (long long)llround(xs[i]));
        assert_true(pprof_round_i64(xs[i]) == llround(xs[i]));
    }
    for (int i = 0; i < N; i++) {
        double x = ldexp(uniform(-1.0, 1.0), (int)(next() % 62));
        assert_true(pprof_round_i64(x) == llround(x));
        double h = (double)((int64_t)(next() >> 20) - (INT64_C(1) << 43)) + 0.5;   /* halves */
        assert_true(pprof_round_i64(h) == llround(h));
    }
    /* Beyond int64 (llround's result is unspecified there): saturated; NaN 0. */
    assert_true(pprof_round_i64(1e19) == INT64_MAX);
    assert_true(pprof_round_i64(-1e19) == INT64_MIN);
    assert_true(pprof_round_i64(INFINITY) == INT64_MAX);
    assert_true(pprof_round_i64(-INFINITY) == INT64_MIN);
    assert_true(pprof_round_i64(NAN) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_sampler_domain),
        cmocka_unit_test(test_log_whole_range),
        cmocka_unit_test(test_log_edges),
        cmocka_unit_test(test_exp_range),
        cmocka_unit_test(test_exp_edges),
        cmocka_unit_test(test_round),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
