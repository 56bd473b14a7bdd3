/*
 * pprof_math.c - exp, log and round-to-integer without libm.
 *
 * Why: libheapwatch.so is loaded into every process of a job, and each
 * library in its DT_NEEDED list costs the dynamic loader an open, five
 * mmaps, relocations and page faults in every one of them (libm alone:
 * 0.12-0.19 ms per process, measured with tests/bench/agent_exit.py's
 * "libraries only"). The agent needs three functions of it: the sampler's
 * exponential draw (log), the unsampling scale 1 / (1 - exp(-avg / rate))
 * here and in agent/watch.c (exp), and rounding for its fixed-point text
 * (llround). Accuracy, not speed, is what matters: the sampler calls log
 * once per sample, exp runs at output time.
 *
 * How (the classic reductions, as in fdlibm's e_log.c and e_exp.c, with
 * plain series instead of minimax polynomials: a few more terms, no
 * tables to get wrong):
 *
 *   log x: x = m * 2^e with m in [sqrt(1/2), sqrt(2)); with
 *          s = (m - 1) / (m + 1), |s| <= 0.1716, log m = 2 atanh s
 *          = 2 (s + s^3/3 + s^5/5 + ...); s^2 <= 0.0295, so 12 terms
 *          leave a truncation error below 2^-64 of the result; then
 *          log x = e * ln2 + log m, ln2 in two parts (hi has its low bits
 *          zero, so e * ln2_hi is exact for any e of a double).
 *   exp x: k = round(x / ln2), r = x - k * ln2 (two parts again), |r| <=
 *          0.347; exp r by its Taylor series to r^15/15! (truncation below
 *          2^-60 of the result), then scaled by 2^k through the exponent
 *          bits (in two steps where 2^k alone is not a normal double).
 *
 * Both are within one unit in the last place of libm's over their
 * domains; tests/unit/pprof_math.c compares them with libm on a million
 * points (exp over [-745, 709.7], log over the sampler's (0, 1] and the
 * whole positive range) and checks the edge values (0, 1, inf, NaN,
 * subnormals, overflow).
 */
#include <stdint.h>
#include <string.h>

#include "pprof/pprof.h"

static const double ln2_hi = 6.93147180369123816490e-01;   /* 0x3fe62e42fee00000 */
static const double ln2_lo = 1.90821492927058770002e-10;   /* ln 2 - ln2_hi */
static const double inv_ln2 = 1.44269504088896338700e+00;

static uint64_t bits_of(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static double double_of(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* pow2: 2^k for -1022 <= k <= 1023 (a normal double). */
static double pow2(int k)
{
    return double_of((uint64_t)(k + 1023) << 52);
}

double pprof_log(double x)
{
    if (x != x) return x;                       /* NaN */
    if (x < 0) return (x - x) / 0.0;            /* NaN, as libm (invalid) */
    if (x == 0) return -1.0 / 0.0;              /* -inf */
    if (x == 1.0 / 0.0) return x;
    int e = 0;
    if (x < 0x1.0p-1022) {                      /* subnormal: make it normal */
        x *= 0x1.0p54;
        e = -54;
    }
    uint64_t u = bits_of(x);
    e += (int)((u >> 52) & 0x7ff) - 1023;
    double m = double_of((u & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1023) << 52));  /* [1, 2) */
    if (m > 1.41421356237309504880) {           /* to [sqrt(1/2), sqrt(2)) */
        m *= 0.5;
        e += 1;
    }
    double f = m - 1.0;                          /* exact (Sterbenz) */
    double s = f / (2.0 + f);
    double s2 = s * s;
    /* 2 atanh s = 2s + s * (2/3 s^2 + 2/5 s^4 + ...), Horner from the smallest term. */
    double p = 0.0;
    for (int k = 25; k >= 3; k -= 2) p = p * s2 + 2.0 / k;
    double r = s * s2 * p;                      /* the tail, beside 2s */
    /* log m = f - (f - 2s) + r: 2s = f - f*s, so f - 2s = s*f; keeps f exact. */
    double log_m = f - (s * f - r);
    return (double)e * ln2_hi + (log_m + (double)e * ln2_lo);
}

double pprof_exp(double x)
{
    if (x != x) return x;                       /* NaN */
    if (x > 709.782712893383973096) return 1.0 / 0.0;
    if (x < -745.133219101941108420) return 0.0;
    double kf = x * inv_ln2;
    int k = (int)(kf < 0 ? kf - 0.5 : kf + 0.5);
    double hi = x - (double)k * ln2_hi;          /* exact: k has at most 11 bits */
    double r = hi - (double)k * ln2_lo;
    /* exp r = 1 + r + r^2/2! + ... + r^15/15!, Horner. */
    double p = 1.0;
    for (int n = 15; n >= 1; n--) p = 1.0 + p * r / n;
    if (k > 1023) return p * 2.0 * pow2(k - 1);  /* x near the top: exp r < 2 */
    if (k < -1021) return p * pow2(k + 1000) * 0x1.0p-1000;   /* subnormal results */
    return p * pow2(k);
}

int64_t pprof_round_i64(double x)
{
    if (!(x > -0x1.0p63 && x < 0x1.0p63)) return x < 0 ? INT64_MIN : x > 0 ? INT64_MAX : 0;
    int64_t t = (int64_t)x;                      /* towards zero, exact for |x| < 2^63 */
    double frac = x - (double)t;                 /* exact: |x| < 2^52, or frac is 0 */
    if (frac >= 0.5) return t + 1;
    if (frac <= -0.5) return t - 1;
    return t;
}
