/*
 * alert.c - growth rates over a sliding window, and alert levels with
 * hysteresis.
 *
 * Why a ring of snapshots and not a moving average. SPEC defines the rate
 * as live objects per second "over the window", and an alert must name the
 * stacks that grew most over that same window. An exponential average has
 * no start point to diff stacks against; a ring of exact counter snapshots
 * does: the rate is (newest - base) / (t_newest - t_base), exact, and the
 * base's sequence number tells the caller which of its own per-interval
 * stack snapshots to diff against.
 *
 * The base. The newest kept snapshot at or before now - window, so that
 * once a window has passed the span is never shorter than the window (a
 * shorter span would make the threshold easier to cross than configured).
 * With pushes every interval the span is the window plus at most the
 * jitter of one push. The base only moves forward, so finding it is
 * amortised O(1). The ring holds ceil(window/interval) + 2 entries: the
 * base, the snapshots after it, and one spare for a push that comes early.
 * If the pushes come faster than the interval promised, the oldest entry
 * is evicted anyway and the span shrinks a little; the span is reported,
 * so nothing lies. Beyond ALERT_RING_MAX entries (tiny interval, long
 * window) we keep snapshots spaced by window / (ALERT_RING_MAX - 2): the
 * ring still covers the window, the base is at most one spacing older.
 *
 * The partial window. Before a whole window has passed there is no base at
 * or before now - window; the oldest snapshot serves, and the rate is
 * reported (the timeline wants a value from the second snapshot on). It
 * may count toward an alert only once its span is at least half the
 * window. A CI run wants a real leak caught quickly, but a rate taken over
 * the first 0.1 s (interval 0.01) is start-up noise; half a window loses at
 * most a factor 2 of the smoothing the user asked for and catches a steady
 * leak at window/2 (2.5 s with the defaults, when grace allows).
 *
 * Exactness. Thresholds are compared in 128-bit integers: delta * 1e9 *
 * den against threshold * num * span, so a rate exactly at a threshold
 * never fires, and the tests can assert the very push an alert fires on.
 * Counters are differenced modulo 2^64, so huge or wrapping values work;
 * doubles are only for the reported rates.
 *
 * Sustain. A run is a sequence of consecutive eligible evaluations that
 * meet a condition; `since` is the time of its first. A level is entered
 * when its run has lasted sustain_ns, so with pushes every second a
 * sustain of 3 s fires on the fourth evaluation above, exactly 3 s after
 * sustain 0 would. Any evaluation that fails the condition (or is not
 * eligible) ends the run.
 *
 * Grace. No transition happens before start + grace, but the runs are
 * tracked throughout: a leak that has been above the threshold for the
 * sustain time when grace ends fires at once, while a start-up load that
 * has left the window by then (the window is shorter than the grace with
 * the defaults: 5 s against 10 s) fires nothing.
 *
 * Hysteresis. Leaving a level needs the rate below 3/4 of its threshold for
 * sustain_ns. The band alone stops a rate hovering around the threshold
 * from flapping even with sustain 0; the sustain alone would not (with
 * sustain 0 every crossing would toggle), and it stops one quiet interval
 * from closing an episode. A leak that merely slows to just under warn
 * keeps its level: it still leaks almost as fast; a fixed leak drops to
 * about 0, far below the band. Re-arming needs nothing more: entering a
 * level again needs a new run above the threshold, which the drop ended.
 *
 * Escalation and de-escalation. warn -> crit is a new alert (ENTER_CRIT).
 * crit -> warn is silent: the alerts file records problems, and "less bad
 * but still bad" is not one; remembering it means a second crit episode is
 * reported when it comes. crit -> none is a RECOVER like warn -> none. A
 * push reports at most one event; a rate that qualifies for crit and warn
 * at once reports ENTER_CRIT only.
 */
#include <string.h>

#include "agent/alert.h"

typedef unsigned __int128 u128;

#define NS_PER_S 1000000000u

const char *alert_strerror(alert_err_t err)
{
    switch (err) {
    case ALERT_OK: return "ok";
    case ALERT_ERR_NOMEM: return "out of memory";
    case ALERT_ERR_INVALID: return "invalid argument";
    case ALERT_ERR_TIME: return "snapshot not later than the previous one";
    }
    return "unknown error";
}

const char *alert_level_name(alert_level_t level)
{
    switch (level) {
    case ALERT_LEVEL_NONE: return "none";
    case ALERT_LEVEL_WARN: return "warn";
    case ALERT_LEVEL_CRIT: return "crit";
    }
    return "unknown";
}

const char *alert_event_name(alert_event_t event)
{
    switch (event) {
    case ALERT_EVENT_NONE: return "none";
    case ALERT_EVENT_ENTER_WARN: return "enter_warn";
    case ALERT_EVENT_ENTER_CRIT: return "enter_crit";
    case ALERT_EVENT_RECOVER: return "recover";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                               */
/* ------------------------------------------------------------------------ */

static bool conf_valid(const alert_conf_t *c)
{
    return c->warn >= 1 && c->crit >= c->warn && c->window_ns > 0 && c->interval_ns > 0;
}

/* ring_geometry: capacity and spacing for conf (see alert_engine_init). */
static void ring_geometry(const alert_conf_t *c, size_t *cap, uint64_t *spacing)
{
    uint64_t per_window = c->window_ns / c->interval_ns + (c->window_ns % c->interval_ns != 0);
    if (per_window <= ALERT_RING_MAX - 2) {
        *cap = (size_t)per_window + 2;
        *spacing = 0;
        return;
    }
    const uint64_t gaps = ALERT_RING_MAX - 2;
    *cap = ALERT_RING_MAX;
    *spacing = c->window_ns / gaps + (c->window_ns % gaps != 0);
}

alert_err_t alert_engine_init(alert_engine_t *e, const alert_conf_t *conf,
                              const map_allocator_t *allocator)
{
    if (!e || !conf || !allocator || !allocator->alloc || !allocator->free || !conf_valid(conf))
        return ALERT_ERR_INVALID;
    memset(e, 0, sizeof *e);
    size_t cap;
    uint64_t spacing;
    ring_geometry(conf, &cap, &spacing);
    alert_entry_t *ring = allocator->alloc(allocator->ctx, cap * sizeof *ring);
    if (!ring) return ALERT_ERR_NOMEM;
    e->conf = *conf;
    e->allocator = *allocator;
    e->ring = ring;
    e->cap = cap;
    e->spacing_ns = spacing;
    return ALERT_OK;
}

void alert_engine_free(alert_engine_t *e)
{
    if (!e) return;
    if (e->ring) e->allocator.free(e->allocator.ctx, e->ring);
    memset(e, 0, sizeof *e);
}

void alert_engine_reset(alert_engine_t *e, uint64_t start_ns)
{
    e->conf.start_ns = start_ns;
    e->kept = 0;
    e->count = 0;
    e->base = 0;
    e->pushes = 0;
    memset(&e->last, 0, sizeof e->last);
    e->level = ALERT_LEVEL_NONE;
    memset(&e->above_warn, 0, sizeof e->above_warn);
    memset(&e->above_crit, 0, sizeof e->above_crit);
    memset(&e->calm, 0, sizeof e->calm);
    memset(&e->below_crit, 0, sizeof e->below_crit);
}

alert_level_t alert_engine_level(const alert_engine_t *e)
{
    return e->level;
}

/* ------------------------------------------------------------------------ */
/* The ring                                                                 */
/* ------------------------------------------------------------------------ */

static alert_entry_t *entry(const alert_engine_t *e, uint64_t k)
{
    return &e->ring[k % e->cap];
}

/* keep: appends cur to the ring unless spacing says it is too close to the
 * newest kept one. Evicting the oldest drags the base along if needed. */
static void keep(alert_engine_t *e, const alert_entry_t *cur)
{
    if (e->count && e->spacing_ns && cur->t_ns - entry(e, e->kept - 1)->t_ns < e->spacing_ns)
        return;
    if (e->count == e->cap) {
        e->count--;
        uint64_t oldest = e->kept - e->count;
        if (e->base < oldest) e->base = oldest;
    }
    *entry(e, e->kept) = *cur;
    e->kept++;
    e->count++;
}

/* advance_base: moves the base to the newest kept snapshot at or before
 * now - window (it stays on the oldest while none is). */
static void advance_base(alert_engine_t *e, uint64_t now)
{
    if (now < e->conf.window_ns) return;
    uint64_t limit = now - e->conf.window_ns;
    while (e->base + 1 < e->kept && entry(e, e->base + 1)->t_ns <= limit) e->base++;
}

/* ------------------------------------------------------------------------ */
/* Rates and comparisons                                                    */
/* ------------------------------------------------------------------------ */

/* mul_sat: a * b, saturated at the largest u128 (only compared, never used). */
static u128 mul_sat(u128 a, uint64_t b)
{
    if (a != 0 && b > ~(u128)0 / a) return ~(u128)0;
    return a * b;
}

/* rate_cmp: the sign of (delta / span_ns * 1e9) - threshold * num / den,
 * exactly. */
static int rate_cmp(int64_t delta, uint64_t span_ns, uint64_t threshold, unsigned num,
                    unsigned den)
{
    u128 rhs = mul_sat(mul_sat(threshold, num), span_ns);
    if (delta <= 0) return (delta == 0 && rhs == 0) ? 0 : -1;
    /* |delta| < 2^63, so lhs < 2^95: no overflow. */
    u128 lhs = (u128)(uint64_t)delta * NS_PER_S * den;
    return lhs > rhs ? 1 : lhs < rhs ? -1 : 0;
}

static double per_second(int64_t delta, uint64_t span_ns)
{
    return (double)delta * 1e9 / (double)span_ns;
}

/* ------------------------------------------------------------------------ */
/* Levels                                                                   */
/* ------------------------------------------------------------------------ */

/* track: continues, starts or ends a run at time now. */
static void track(alert_run_t *r, bool cond, uint64_t now)
{
    if (!cond) {
        r->on = false;
    } else if (!r->on) {
        r->on = true;
        r->since = now;
    }
}

/* held: the run has lasted the sustain time. */
static bool held(const alert_engine_t *e, const alert_run_t *r, uint64_t now)
{
    return r->on && now - r->since >= e->conf.sustain_ns;
}

static bool in_grace(const alert_engine_t *e, uint64_t now)
{
    const alert_conf_t *c = &e->conf;
    return c->grace_ns && (now < c->start_ns || now - c->start_ns < c->grace_ns);
}

/* update_runs: one eligible (or not) evaluation of the four conditions. */
static void update_runs(alert_engine_t *e, const alert_result_t *r, uint64_t now)
{
    const alert_conf_t *c = &e->conf;
    bool ok = r->eligible;
    int64_t d = r->delta_objects;
    uint64_t span = r->window_span_ns;
    track(&e->above_warn, ok && rate_cmp(d, span, c->warn, 1, 1) > 0, now);
    track(&e->above_crit, ok && rate_cmp(d, span, c->crit, 1, 1) > 0, now);
    track(&e->calm, ok && rate_cmp(d, span, c->warn, ALERT_RECOVER_NUM, ALERT_RECOVER_DEN) < 0,
          now);
    track(&e->below_crit,
          ok && rate_cmp(d, span, c->crit, ALERT_RECOVER_NUM, ALERT_RECOVER_DEN) < 0, now);
}

/* transition: at most one level change per push, highest level first. */
static void transition(alert_engine_t *e, alert_result_t *r, uint64_t now)
{
    if (in_grace(e, now)) return;
    const alert_conf_t *c = &e->conf;
    if (e->level < ALERT_LEVEL_CRIT && held(e, &e->above_crit, now)) {
        e->level = ALERT_LEVEL_CRIT;
        r->event = ALERT_EVENT_ENTER_CRIT;
        r->threshold = c->crit;
    } else if (e->level == ALERT_LEVEL_NONE && held(e, &e->above_warn, now)) {
        e->level = ALERT_LEVEL_WARN;
        r->event = ALERT_EVENT_ENTER_WARN;
        r->threshold = c->warn;
    } else if (e->level != ALERT_LEVEL_NONE && held(e, &e->calm, now)) {
        e->level = ALERT_LEVEL_NONE;
        r->event = ALERT_EVENT_RECOVER;
        r->threshold = c->warn;
    } else if (e->level == ALERT_LEVEL_CRIT && held(e, &e->below_crit, now)) {
        e->level = ALERT_LEVEL_WARN;   /* silent de-escalation */
    }
}

/* ------------------------------------------------------------------------ */
/* Push                                                                     */
/* ------------------------------------------------------------------------ */

alert_err_t alert_engine_push(alert_engine_t *e, const alert_snap_t *snap, alert_result_t *out)
{
    if (!e || !snap || !out || !e->ring) return ALERT_ERR_INVALID;
    if (e->pushes && snap->t_ns <= e->last.t_ns) return ALERT_ERR_TIME;

    alert_entry_t cur = {
        .t_ns = snap->t_ns,
        .live_objects = snap->mallocs - snap->frees,
        .live_bytes = snap->alloc_bytes - snap->free_bytes,
        .seq = e->pushes,
    };
    keep(e, &cur);
    e->last = cur;
    e->pushes++;

    memset(out, 0, sizeof *out);
    out->seq = cur.seq;
    out->level = out->prev_level = e->level;
    out->window_start_seq = cur.seq;
    out->window_start_ns = cur.t_ns;
    if (cur.seq == 0) return ALERT_OK;   /* nothing to difference against */

    advance_base(e, cur.t_ns);
    const alert_entry_t *b = entry(e, e->base);
    uint64_t span = cur.t_ns - b->t_ns;
    out->has_rate = true;
    out->window_start_seq = b->seq;
    out->window_start_ns = b->t_ns;
    out->window_span_ns = span;
    out->window_full = span >= e->conf.window_ns;
    out->eligible = span >= e->conf.window_ns - e->conf.window_ns / 2;
    out->delta_objects = (int64_t)(cur.live_objects - b->live_objects);
    out->delta_bytes = (int64_t)(cur.live_bytes - b->live_bytes);
    out->objects_rate = per_second(out->delta_objects, span);
    out->bytes_rate = per_second(out->delta_bytes, span);

    update_runs(e, out, cur.t_ns);
    transition(e, out, cur.t_ns);
    out->level = e->level;
    return ALERT_OK;
}
