/*
 * agent_alert.c - the rate and alert-level engine (agent/alert.c) driven
 * with exact synthetic counter sequences: every test states at which push
 * (in seconds since start) an event must happen, and that no other push
 * reports one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "agent/alert.h"
#include "test_util.h"

#define S 1000000000ull     /* one second in ns */
#define MS 1000000ull

/* conf_base: SPEC defaults for thresholds, window and interval, with
 * sustain and grace off (each test sets what it studies). */
static alert_conf_t conf_base(void)
{
    alert_conf_t c = {
        .warn = 500, .crit = 2000, .window_ns = 5 * S, .interval_ns = S,
        .sustain_ns = 0, .grace_ns = 0, .start_ns = 0,
    };
    return c;
}

/* conf_agent: the defaults the agent uses (README: SUSTAIN 3 s, GRACE 10 s). */
static alert_conf_t conf_agent(void)
{
    alert_conf_t c = conf_base();
    c.sustain_ns = 3 * S;
    c.grace_ns = 10 * S;
    return c;
}

static test_alloc_t ta;
static map_allocator_t alloc;

static void init(alert_engine_t *e, alert_conf_t c)
{
    memset(&ta, 0, sizeof ta);
    alloc = test_allocator(&ta);
    assert_int_equal(alert_engine_init(e, &c, &alloc), ALERT_OK);
}

static void fini(alert_engine_t *e)
{
    alert_engine_free(e);
    assert_int_equal(ta.live_blocks, 0);
}

/* push: live objects `live` (as 1e6 + live mallocs and 1e6 frees: some
 * churn underneath) and 64 bytes each, at time t. */
static alert_result_t push(alert_engine_t *e, uint64_t t, uint64_t live)
{
    alert_snap_t s = {
        .t_ns = t, .mallocs = 1000000 + live, .frees = 1000000,
        .alloc_bytes = 64 * (1000000 + live), .free_bytes = 64 * 1000000,
    };
    alert_result_t r;
    assert_int_equal(alert_engine_push(e, &s, &r), ALERT_OK);
    return r;
}

/* event_log_t: the events of a run, by push time. */
typedef struct {
    size_t n;
    uint64_t t[64];
    alert_event_t ev[64];
    alert_level_t prev[64];
    uint64_t threshold[64];
} event_log_t;

static void log_event(event_log_t *log, uint64_t t, const alert_result_t *r)
{
    if (r->event == ALERT_EVENT_NONE) return;
    assert_true(log->n < 64);
    log->t[log->n] = t;
    log->ev[log->n] = r->event;
    log->prev[log->n] = r->prev_level;
    log->threshold[log->n] = r->threshold;
    log->n++;
}

/* run_rate: pushes every second from 0 to `seconds`, live objects growing
 * by per_second[i] during second i (the last value repeats). */
static void run_rates(alert_engine_t *e, const uint64_t *per_second, size_t n,
                      uint64_t seconds, event_log_t *log)
{
    uint64_t live = 0;
    memset(log, 0, sizeof *log);
    for (uint64_t i = 0; i <= seconds; i++) {
        if (i > 0) live += per_second[i - 1 < n ? i - 1 : n - 1];
        alert_result_t r = push(e, i * S, live);
        log_event(log, i * S, &r);
    }
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(alert_strerror(ALERT_OK), "ok");
    assert_string_equal(alert_strerror(ALERT_ERR_NOMEM), "out of memory");
    assert_string_equal(alert_strerror((alert_err_t)99), "unknown error");
    assert_string_equal(alert_level_name(ALERT_LEVEL_WARN), "warn");
    assert_string_equal(alert_level_name(ALERT_LEVEL_CRIT), "crit");
    assert_string_equal(alert_event_name(ALERT_EVENT_RECOVER), "recover");
}

/* Allocations and frees at 100k/s each, live objects flat: rate 0, never
 * an alert, even with sustain and grace off. */
static void test_constant_churn(void **state)
{
    (void)state;
    alert_engine_t e;
    init(&e, conf_base());
    for (uint64_t i = 0; i <= 120; i++) {
        alert_snap_t s = { i * S, 100000 * i + 7, 100000 * i, 4096 * i + 99, 4096 * i };
        alert_result_t r;
        assert_int_equal(alert_engine_push(&e, &s, &r), ALERT_OK);
        assert_int_equal(r.event, ALERT_EVENT_NONE);
        assert_int_equal(r.level, ALERT_LEVEL_NONE);
        assert_int_equal(r.delta_objects, 0);
        assert_true(r.objects_rate == 0.0 && r.bytes_rate == 0.0);
        assert_int_equal(r.has_rate, i > 0);
    }
    fini(&e);
}

/* 5000 objects/s, sustain 0, grace 0: the rate is 5000 from the second
 * push, but a span under half the window (1 s, 2 s of 5) may not alert;
 * crit fires at 3 s, straight from none (no warn first), then nothing. */
static void test_leak_crit(void **state)
{
    (void)state;
    alert_engine_t e;
    init(&e, conf_base());
    alert_result_t r = push(&e, 0, 0);
    assert_false(r.has_rate);
    assert_int_equal(r.seq, 0);
    for (uint64_t i = 1; i <= 2; i++) {
        r = push(&e, i * S, 5000 * i);
        assert_true(r.has_rate);
        assert_false(r.eligible);
        assert_true(r.objects_rate == 5000.0);
        assert_true(r.bytes_rate == 5000.0 * 64);
        assert_int_equal(r.event, ALERT_EVENT_NONE);
    }
    r = push(&e, 3 * S, 15000);
    assert_true(r.eligible);
    assert_false(r.window_full);
    assert_int_equal(r.event, ALERT_EVENT_ENTER_CRIT);
    assert_int_equal(r.prev_level, ALERT_LEVEL_NONE);
    assert_int_equal(r.level, ALERT_LEVEL_CRIT);
    assert_int_equal(r.threshold, 2000);
    assert_int_equal(r.window_start_seq, 0);
    assert_int_equal(r.window_start_ns, 0);
    assert_int_equal(r.window_span_ns, 3 * S);
    assert_int_equal(r.delta_objects, 15000);
    for (uint64_t i = 4; i <= 60; i++) {
        r = push(&e, i * S, 5000 * i);
        assert_int_equal(r.event, ALERT_EVENT_NONE);
        assert_int_equal(r.level, ALERT_LEVEL_CRIT);
        if (i >= 5) {
            assert_true(r.window_full);
            assert_int_equal(r.window_span_ns, 5 * S);
            assert_int_equal(r.window_start_seq, i - 5);
            assert_int_equal(r.window_start_ns, (i - 5) * S);
        }
    }
    fini(&e);
}

/* 1000 objects/s: warn at 3 s, never crit. */
static void test_leak_warn_only(void **state)
{
    (void)state;
    alert_engine_t e;
    event_log_t log;
    init(&e, conf_base());
    const uint64_t rate[] = { 1000 };
    run_rates(&e, rate, 1, 300, &log);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.t[0], 3 * S);
    assert_int_equal(log.ev[0], ALERT_EVENT_ENTER_WARN);
    assert_int_equal(log.threshold[0], 500);
    assert_int_equal(alert_engine_level(&e), ALERT_LEVEL_WARN);
    fini(&e);
}

/* A rate exactly at a threshold is not above it: 2000/s is warn only. */
static void test_exactly_at_threshold(void **state)
{
    (void)state;
    alert_engine_t e;
    event_log_t log;
    init(&e, conf_base());
    const uint64_t rate[] = { 2000 };
    run_rates(&e, rate, 1, 60, &log);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.ev[0], ALERT_EVENT_ENTER_WARN);
    fini(&e);

    alert_conf_t c = conf_base();
    c.warn = 2000;              /* warn == crit: one threshold */
    init(&e, c);
    run_rates(&e, rate, 1, 60, &log);
    assert_int_equal(log.n, 0);
    const uint64_t above[] = { 2001 };
    alert_engine_reset(&e, 0);
    run_rates(&e, above, 1, 60, &log);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.ev[0], ALERT_EVENT_ENTER_CRIT);
    fini(&e);
}

/* Sustain 3 s delays the 5000/s crit by exactly 3 s: 6 s instead of 3 s.
 * Again with 0.25 s pushes over a 1 s window: eligible from 0.5 s, so
 * 0.5 s without sustain and 3.5 s with it. */
static void test_sustain_delays_exactly(void **state)
{
    (void)state;
    alert_engine_t e;
    event_log_t log;
    const uint64_t rate[] = { 5000 };
    alert_conf_t c = conf_base();
    c.sustain_ns = 3 * S;
    init(&e, c);
    run_rates(&e, rate, 1, 60, &log);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.t[0], 6 * S);
    assert_int_equal(log.ev[0], ALERT_EVENT_ENTER_CRIT);
    fini(&e);

    for (int sustain = 0; sustain <= 1; sustain++) {
        c = conf_base();
        c.window_ns = S;
        c.interval_ns = S / 4;
        c.sustain_ns = sustain ? 3 * S : 0;
        init(&e, c);
        uint64_t fired = 0;
        for (uint64_t i = 0; i <= 80; i++) {
            alert_result_t r = push(&e, i * S / 4, 1250 * i);    /* 5000/s */
            if (r.event != ALERT_EVENT_NONE) {
                assert_int_equal(r.event, ALERT_EVENT_ENTER_CRIT);
                assert_int_equal(fired, 0);
                fired = r.seq * S / 4;
            }
        }
        assert_int_equal(fired, sustain ? 3 * S + S / 2 : S / 2);
        fini(&e);
    }
}

/* Grace: with a leak from the start, nothing fires before 10 s; the
 * sustain clock ran during grace, so crit fires at 10 s exactly (with
 * sustain 0 and with sustain 3). A leak starting at 8 s escalates after
 * grace: warn at 12 s (its run began at 9 s), crit at 14 s (from 11 s). */
static void test_grace(void **state)
{
    (void)state;
    alert_engine_t e;
    event_log_t log;
    const uint64_t rate[] = { 5000 };
    for (int sustain = 0; sustain <= 1; sustain++) {
        alert_conf_t c = conf_base();
        c.grace_ns = 10 * S;
        c.sustain_ns = sustain ? 3 * S : 0;
        init(&e, c);
        run_rates(&e, rate, 1, 60, &log);
        assert_int_equal(log.n, 1);
        assert_int_equal(log.t[0], 10 * S);
        assert_int_equal(log.ev[0], ALERT_EVENT_ENTER_CRIT);
        fini(&e);
    }

    init(&e, conf_agent());
    const uint64_t late[] = { 0, 0, 0, 0, 0, 0, 0, 0, 5000 };
    run_rates(&e, late, 9, 60, &log);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.t[0], 12 * S);
    assert_int_equal(log.ev[0], ALERT_EVENT_ENTER_WARN);
    assert_int_equal(log.t[1], 14 * S);
    assert_int_equal(log.ev[1], ALERT_EVENT_ENTER_CRIT);
    assert_int_equal(log.prev[1], ALERT_LEVEL_WARN);
    assert_int_equal(log.threshold[1], 2000);
    fini(&e);

    /* Grace counts from start_ns, not from the first push. */
    alert_conf_t c = conf_base();
    c.grace_ns = 10 * S;
    c.start_ns = 100 * S;
    init(&e, c);
    uint64_t fired = 0;
    for (uint64_t i = 100; i <= 130; i++) {
        alert_result_t r = push(&e, i * S, 5000 * (i - 100));
        if (r.event) fired = i;
    }
    assert_int_equal(fired, 110);
    fini(&e);
}

/* window = interval = 1 s, so each push's rate is the last second's growth.
 * Sustain 0: warn at 600; a rate wandering between 380 and 590 neither
 * recovers nor re-fires; 300 (< 375 = 3/4 of warn) recovers; 450, 499 and
 * exactly 500 stay quiet; 501 fires warn again (and stays). */
static void test_recover_rearm_no_flapping(void **state)
{
    (void)state;
    alert_engine_t e;
    event_log_t log;
    alert_conf_t c = conf_base();
    c.window_ns = S;
    init(&e, c);
    const uint64_t seq[] = { 100, 600, 450, 560, 420, 590, 480, 380, 376,
                             300, 450, 499, 500, 501 };
    run_rates(&e, seq, sizeof seq / sizeof seq[0], 40, &log);
    assert_int_equal(log.n, 3);
    assert_int_equal(log.t[0], 2 * S);
    assert_int_equal(log.ev[0], ALERT_EVENT_ENTER_WARN);
    assert_int_equal(log.t[1], 10 * S);
    assert_int_equal(log.ev[1], ALERT_EVENT_RECOVER);
    assert_int_equal(log.prev[1], ALERT_LEVEL_WARN);
    assert_int_equal(log.threshold[1], 500);
    assert_int_equal(log.t[2], 14 * S);
    assert_int_equal(log.ev[2], ALERT_EVENT_ENTER_WARN);
    fini(&e);

    /* Sustain 2 s: three pushes above to enter, three in a row below the
     * band to recover; one interruption restarts the count. */
    c.sustain_ns = 2 * S;
    init(&e, c);
    const uint64_t seq2[] = { 600, 600, 600, 300, 400, 300, 300, 300, 0 };
    run_rates(&e, seq2, sizeof seq2 / sizeof seq2[0], 30, &log);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.t[0], 3 * S);
    assert_int_equal(log.ev[0], ALERT_EVENT_ENTER_WARN);
    assert_int_equal(log.t[1], 8 * S);
    assert_int_equal(log.ev[1], ALERT_EVENT_RECOVER);
    fini(&e);
}

/* crit -> warn is silent (below 1500 = 3/4 of crit), and a second crit
 * episode is reported; crit -> none is a RECOVER. */
static void test_deescalation(void **state)
{
    (void)state;
    alert_engine_t e;
    event_log_t log;
    alert_conf_t c = conf_base();
    c.window_ns = S;
    init(&e, c);
    const uint64_t seq[] = { 2500, 1600, 1400, 1800, 2100, 100, 0 };
    uint64_t live = 0;
    const alert_level_t want[] = { ALERT_LEVEL_CRIT, ALERT_LEVEL_CRIT, ALERT_LEVEL_WARN,
                                   ALERT_LEVEL_WARN, ALERT_LEVEL_CRIT, ALERT_LEVEL_NONE,
                                   ALERT_LEVEL_NONE };
    memset(&log, 0, sizeof log);
    push(&e, 0, 0);
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        live += seq[i];
        alert_result_t r = push(&e, (i + 1) * S, live);
        assert_int_equal(r.level, want[i]);
        log_event(&log, (i + 1) * S, &r);
    }
    assert_int_equal(log.n, 3);
    assert_int_equal(log.ev[0], ALERT_EVENT_ENTER_CRIT);
    assert_int_equal(log.t[1], 5 * S);
    assert_int_equal(log.ev[1], ALERT_EVENT_ENTER_CRIT);
    assert_int_equal(log.prev[1], ALERT_LEVEL_WARN);
    assert_int_equal(log.t[2], 6 * S);
    assert_int_equal(log.ev[2], ALERT_EVENT_RECOVER);
    assert_int_equal(log.prev[2], ALERT_LEVEL_CRIT);
    fini(&e);
}

/* A load phase: 1 M objects in the first 2 s, then flat. With the agent's
 * defaults (sustain 3, grace 10, window 5, interval 1) nothing fires: the
 * rate is far above crit from 3 s (first eligible push) to 6 s, but the
 * load leaves the 5 s window at 7 s, before grace ends at 10 s. Without
 * grace it would be a crit at 6 s (3 s sustained from 3 s) and a recovery
 * at 10 s (3 s below the band from 7 s). */
static void test_load_phase(void **state)
{
    (void)state;
    alert_engine_t e;
    event_log_t log;
    const uint64_t load[] = { 500000, 500000, 0 };
    init(&e, conf_agent());
    run_rates(&e, load, 3, 600, &log);
    assert_int_equal(log.n, 0);
    fini(&e);

    alert_conf_t c = conf_agent();
    c.grace_ns = 0;
    init(&e, c);
    run_rates(&e, load, 3, 600, &log);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.t[0], 6 * S);
    assert_int_equal(log.ev[0], ALERT_EVENT_ENTER_CRIT);
    assert_int_equal(log.t[1], 10 * S);
    assert_int_equal(log.ev[1], ALERT_EVENT_RECOVER);
    fini(&e);
}

/* Counters near 2^64 and wrapping past it: differences are exact. */
static void test_huge_counters(void **state)
{
    (void)state;
    alert_engine_t e;
    init(&e, conf_base());
    const uint64_t m0 = UINT64_MAX - 2500, f0 = UINT64_MAX - 1000000;
    for (uint64_t i = 0; i <= 20; i++) {
        alert_snap_t s = {
            .t_ns = (1ull << 62) + i * S,   /* a late monotonic clock too */
            .mallocs = m0 + 1001000 * i,    /* wraps at the first step */
            .frees = f0 + 1000000 * i,
            .alloc_bytes = m0 + 3 * i, .free_bytes = 5,
        };
        alert_result_t r;
        assert_int_equal(alert_engine_push(&e, &s, &r), ALERT_OK);
        if (i == 0) continue;
        assert_true(r.objects_rate == 1000.0);
        assert_true(r.bytes_rate == 3.0);
        if (i == 3) assert_int_equal(r.event, ALERT_EVENT_ENTER_WARN);
        else assert_int_equal(r.event, ALERT_EVENT_NONE);
    }
    fini(&e);

    /* A delta near 2^62 objects in one second: no overflow in the exact
     * comparison; huge thresholds are never crossed by small rates. */
    alert_conf_t c = conf_base();
    c.crit = UINT64_MAX;
    c.warn = UINT64_MAX / 2;
    c.window_ns = S;
    init(&e, c);
    alert_snap_t s0 = { 0, 0, 0, 0, 0 }, s1 = { S, 1ull << 62, 0, 0, 0 };
    alert_snap_t s2 = { UINT64_MAX / 2, (1ull << 62) + 5, 0, 0, 0 };
    alert_result_t r;
    assert_int_equal(alert_engine_push(&e, &s0, &r), ALERT_OK);
    assert_int_equal(alert_engine_push(&e, &s1, &r), ALERT_OK);
    assert_int_equal(r.event, ALERT_EVENT_NONE);     /* 2^62 < UINT64_MAX / 2 */
    assert_int_equal(alert_engine_push(&e, &s2, &r), ALERT_OK);
    assert_int_equal(r.event, ALERT_EVENT_NONE);
    assert_int_equal(r.window_span_ns, UINT64_MAX / 2 - S);
    fini(&e);
}

/* Interval 4 s over a 1 s window: every span is one interval (4 s), full,
 * and the ring needs only 3 entries. */
static void test_interval_longer_than_window(void **state)
{
    (void)state;
    alert_engine_t e;
    alert_conf_t c = conf_base();
    c.window_ns = S;
    c.interval_ns = 4 * S;
    init(&e, c);
    assert_int_equal(e.cap, 3);
    push(&e, 0, 0);
    alert_result_t r = push(&e, 4 * S, 20000);
    assert_true(r.window_full);
    assert_int_equal(r.window_span_ns, 4 * S);
    assert_true(r.objects_rate == 5000.0);
    assert_int_equal(r.event, ALERT_EVENT_ENTER_CRIT);
    for (uint64_t i = 2; i < 50; i++) {
        r = push(&e, i * 4 * S, 20000 * i);
        assert_int_equal(r.window_span_ns, 4 * S);
        assert_int_equal(r.window_start_seq, i - 1);
        assert_int_equal(r.event, ALERT_EVENT_NONE);
    }
    fini(&e);
}

/* 0.01 s pushes over a 60 s window need 6002 entries: the ring stops at
 * ALERT_RING_MAX and keeps every other push; the span stays between the
 * window and the window plus one spacing and one interval, and the rate
 * exact. */
static void test_ring_cap_coarse(void **state)
{
    (void)state;
    alert_engine_t e;
    alert_conf_t c = conf_base();
    c.window_ns = 60 * S;
    c.interval_ns = 10 * MS;
    c.warn = 5000;
    c.crit = 10000;
    init(&e, c);
    assert_int_equal(e.cap, ALERT_RING_MAX);
    assert_int_equal(ta.live_bytes, ALERT_RING_MAX * sizeof(alert_entry_t));
    const uint64_t spacing = e.spacing_ns;
    assert_true(spacing >= (60 * S) / (ALERT_RING_MAX - 2));
    for (uint64_t i = 0; i <= 18000; i++) {
        uint64_t t = i * 10 * MS;
        alert_result_t r = push(&e, t, 10 * i);     /* 1000 objects/s */
        if (i == 0) continue;
        assert_int_equal(r.delta_objects * 10 * MS, 10 * r.window_span_ns);
        assert_true(r.objects_rate > 999.999999 && r.objects_rate < 1000.000001);
        assert_int_equal(r.window_start_ns, r.window_start_seq * 10 * MS);
        if (t >= 60 * S) {
            assert_true(r.window_full);
            assert_true(r.window_span_ns >= 60 * S);
            assert_true(r.window_span_ns < 60 * S + spacing + 10 * MS);
        }
        assert_int_equal(r.event, ALERT_EVENT_NONE);
    }
    fini(&e);
}

/* Pushes that come faster than the interval (extra snapshots, jitter)
 * evict a needed base: the span shrinks, but stays reported and exact. */
static void test_early_pushes(void **state)
{
    (void)state;
    alert_engine_t e;
    init(&e, conf_base());
    assert_int_equal(e.cap, 7);
    for (uint64_t i = 0; i <= 40; i++) {
        alert_result_t r = push(&e, i * S / 2, 1000 * i);   /* 2000/s at twice the pace */
        if (i < 6) continue;
        assert_int_equal(r.window_span_ns, 3 * S);          /* 7 entries: 6 gaps of 0.5 s */
        assert_true(r.objects_rate == 2000.0);
    }
    fini(&e);
}

/* A time that does not advance is refused and changes nothing. */
static void test_time_not_advancing(void **state)
{
    (void)state;
    alert_engine_t e;
    init(&e, conf_base());
    push(&e, 0, 0);
    push(&e, S, 100);
    alert_snap_t s = { S, 5, 0, 0, 0 };
    alert_result_t r;
    memset(&r, 0x5a, sizeof r);
    assert_int_equal(alert_engine_push(&e, &s, &r), ALERT_ERR_TIME);
    assert_int_equal(r.seq, 0x5a5a5a5a5a5a5a5aull);      /* untouched */
    s.t_ns = S / 2;
    assert_int_equal(alert_engine_push(&e, &s, &r), ALERT_ERR_TIME);
    r = push(&e, 2 * S, 200);
    assert_int_equal(r.seq, 2);
    assert_true(r.objects_rate == 100.0);
    assert_int_equal(alert_engine_push(NULL, &s, &r), ALERT_ERR_INVALID);
    assert_int_equal(alert_engine_push(&e, NULL, &r), ALERT_ERR_INVALID);
    fini(&e);
}

/* reset: a forked child's fresh start keeps the ring memory. */
static void test_reset(void **state)
{
    (void)state;
    alert_engine_t e;
    event_log_t log;
    init(&e, conf_base());
    const uint64_t rate[] = { 5000 };
    run_rates(&e, rate, 1, 10, &log);
    assert_int_equal(alert_engine_level(&e), ALERT_LEVEL_CRIT);
    size_t blocks = ta.live_blocks;
    alert_engine_reset(&e, 50 * S);
    assert_int_equal(ta.live_blocks, blocks);
    assert_int_equal(alert_engine_level(&e), ALERT_LEVEL_NONE);
    alert_result_t r = push(&e, 50 * S, 0);
    assert_false(r.has_rate);
    assert_int_equal(r.seq, 0);
    r = push(&e, 53 * S, 15000);
    assert_int_equal(r.event, ALERT_EVENT_ENTER_CRIT);
    fini(&e);
}

/* Bad configurations are refused with the engine untouched; a failing
 * allocator gives NOMEM and an engine that is safe to free; free twice is
 * harmless; the arena gets back what it gave. */
static void test_init_errors(void **state)
{
    (void)state;
    alert_engine_t e;
    alert_conf_t c = conf_base();
    memset(&ta, 0, sizeof ta);
    alloc = test_allocator(&ta);
    memset(&e, 0x77, sizeof e);
    alert_conf_t bad = c;
    bad.warn = 0;
    assert_int_equal(alert_engine_init(&e, &bad, &alloc), ALERT_ERR_INVALID);
    bad = c;
    bad.warn = 2001;
    assert_int_equal(alert_engine_init(&e, &bad, &alloc), ALERT_ERR_INVALID);
    bad = c;
    bad.window_ns = 0;
    assert_int_equal(alert_engine_init(&e, &bad, &alloc), ALERT_ERR_INVALID);
    bad = c;
    bad.interval_ns = 0;
    assert_int_equal(alert_engine_init(&e, &bad, &alloc), ALERT_ERR_INVALID);
    assert_int_equal(alert_engine_init(&e, NULL, &alloc), ALERT_ERR_INVALID);
    assert_int_equal(alert_engine_init(&e, &c, NULL), ALERT_ERR_INVALID);
    assert_int_equal(alert_engine_init(NULL, &c, &alloc), ALERT_ERR_INVALID);
    assert_int_equal(ta.calls, 0);

    test_alloc_fail_nth(&ta, 1, 0);
    assert_int_equal(alert_engine_init(&e, &c, &alloc), ALERT_ERR_NOMEM);
    assert_null(e.ring);
    alert_snap_t s = { 0, 0, 0, 0, 0 };
    alert_result_t r;
    assert_int_equal(alert_engine_push(&e, &s, &r), ALERT_ERR_INVALID);
    alert_engine_free(&e);
    alert_engine_free(NULL);
    assert_int_equal(ta.live_blocks, 0);

    test_alloc_heal(&ta);
    assert_int_equal(alert_engine_init(&e, &c, &alloc), ALERT_OK);
    assert_int_equal(ta.live_blocks, 1);
    alert_engine_free(&e);
    alert_engine_free(&e);
    assert_int_equal(ta.live_blocks, 0);

    map_allocator_t arena = map_arena_allocator();
    map_arena_stats_t before, during, after;
    map_arena_get_stats(&before);
    assert_int_equal(alert_engine_init(&e, &c, &arena), ALERT_OK);
    map_arena_get_stats(&during);
    assert_true(during.inuse_bytes > before.inuse_bytes);
    alert_engine_free(&e);
    map_arena_get_stats(&after);
    assert_int_equal(after.inuse_bytes, before.inuse_bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_constant_churn),
        cmocka_unit_test(test_leak_crit),
        cmocka_unit_test(test_leak_warn_only),
        cmocka_unit_test(test_exactly_at_threshold),
        cmocka_unit_test(test_sustain_delays_exactly),
        cmocka_unit_test(test_grace),
        cmocka_unit_test(test_recover_rearm_no_flapping),
        cmocka_unit_test(test_deescalation),
        cmocka_unit_test(test_load_phase),
        cmocka_unit_test(test_huge_counters),
        cmocka_unit_test(test_interval_longer_than_window),
        cmocka_unit_test(test_ring_cap_coarse),
        cmocka_unit_test(test_early_pushes),
        cmocka_unit_test(test_time_not_advancing),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_init_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
