/*
 * alert.h - the growth-rate and alert-level engine (agent/, private).
 *
 * Pure state: no I/O, no clock reads, no locks. The agent's background
 * thread pushes one snapshot of the exact counters per HEAPWATCH_INTERVAL
 * (with a monotonic time it read itself) and gets back the window's rates
 * and, at most once per push, a level transition to write to
 * alerts.<pid>.jsonl. Tests drive it with synthetic sequences.
 *
 * Semantics (the reasons are in the essay at the top of alert.c):
 *   rate       Δ(mallocs - frees) / Δt and Δ(alloc_bytes - free_bytes) / Δt
 *              between the base snapshot (the newest one at or before
 *              now - window; the oldest one kept while less than a window
 *              has passed) and the snapshot just pushed.
 *   partial    before a full window has passed the rate is still reported,
 *              but it may count toward an alert only once its span is at
 *              least half the window ("eligible").
 *   above      strictly greater: rate > threshold, compared exactly.
 *   sustain    a level is entered once every eligible evaluation over the
 *              last sustain_ns was above its threshold (0: the first one).
 *   grace      no transition while now - start_ns < grace_ns; the sustain
 *              clocks run during grace, so a leak that has been above for
 *              sustain_ns fires at the first push after grace.
 *   escalate   none->crit and warn->crit report ENTER_CRIT; one event per
 *              push, the highest level wins.
 *   recover    level -> none (RECOVER) once the rate has stayed below 3/4 of
 *              warn for sustain_ns; re-arming is implicit: entering again
 *              needs a new sustained run above warn.
 *   de-escalate crit -> warn, silently (no event), once the rate has stayed
 *              below 3/4 of crit for sustain_ns; a later sustained run above
 *              crit reports ENTER_CRIT again.
 */
#ifndef HEAPWATCH_AGENT_ALERT_H
#define HEAPWATCH_AGENT_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "map/map.h"

#pragma GCC visibility push(hidden)

/* alert_err_t: the module's error codes. Values are stable. */
typedef enum {
    ALERT_OK = 0,
    ALERT_ERR_NOMEM = 1,    /* the allocator returned NULL */
    ALERT_ERR_INVALID = 2,  /* bad configuration or NULL argument */
    ALERT_ERR_TIME = 3,     /* a snapshot not later than the previous one */
} alert_err_t;

/* alert_strerror: a static, human-readable text for an error code. */
const char *alert_strerror(alert_err_t err);

/* alert_level_t: ordered, so a higher level compares greater. */
typedef enum {
    ALERT_LEVEL_NONE = 0,
    ALERT_LEVEL_WARN = 1,
    ALERT_LEVEL_CRIT = 2,
} alert_level_t;

/* alert_level_name: "none", "warn" or "crit" (the SPEC's level strings). */
const char *alert_level_name(alert_level_t level);

/* alert_event_t: what a push changed. Only transitions are reported. */
typedef enum {
    ALERT_EVENT_NONE = 0,
    ALERT_EVENT_ENTER_WARN = 1,  /* none -> warn */
    ALERT_EVENT_ENTER_CRIT = 2,  /* none -> crit or warn -> crit */
    ALERT_EVENT_RECOVER = 3,     /* warn or crit -> none */
} alert_event_t;

/* alert_event_name: "none", "enter_warn", "enter_crit" or "recover". */
const char *alert_event_name(alert_event_t event);

/* ALERT_RING_MAX: the most snapshots kept. A window holding more snapshots
 * than this (e.g. 0.01 s intervals over a 60 s window) keeps every
 * ALERT_RING_MAX-th or so instead: see alert_engine_init. 32 bytes each. */
#define ALERT_RING_MAX 4096u

/* ALERT_RECOVER_NUM / ALERT_RECOVER_DEN: recovery (and de-escalation)
 * needs the rate below threshold * 3/4. */
#define ALERT_RECOVER_NUM 3u
#define ALERT_RECOVER_DEN 4u

/* alert_conf_t: the engine's settings (the agent copies them from
 * agent_conf_t; conf.c already guarantees 1 <= warn <= crit and
 * interval, window >= 0.01 s). Times are nanoseconds. */
typedef struct alert_conf_s {
    uint64_t warn;          /* objects/s; above it (sustained) -> warn; >= 1 */
    uint64_t crit;          /* objects/s; above it (sustained) -> crit; >= warn */
    uint64_t window_ns;     /* span the rates are computed over; > 0 */
    uint64_t interval_ns;   /* expected time between pushes; > 0 (sizes the ring) */
    uint64_t sustain_ns;    /* time above a threshold before it fires; 0 = at once */
    uint64_t grace_ns;      /* no transition before start_ns + grace_ns; 0 = none */
    uint64_t start_ns;      /* program start, on the clock the pushes use */
} alert_conf_t;

/* alert_snap_t: one snapshot of the agent's exact counters. The counters
 * may wrap (differences are taken modulo 2^64); only differences matter. */
typedef struct alert_snap_s {
    uint64_t t_ns;          /* monotonic time the counters were read */
    uint64_t mallocs;
    uint64_t frees;
    uint64_t alloc_bytes;
    uint64_t free_bytes;
} alert_snap_t;

/* alert_result_t: what one push computed. */
typedef struct alert_result_s {
    uint64_t seq;               /* this snapshot's sequence number (0 = first push) */
    bool has_rate;              /* false at the first push: no span yet, rates 0 */
    bool eligible;              /* span >= window / 2: may count toward alerts */
    bool window_full;           /* span >= window */
    double objects_rate;        /* live objects/s over the span (may be negative) */
    double bytes_rate;          /* live bytes/s over the span (may be negative) */
    int64_t delta_objects;      /* exact Δ(mallocs - frees) over the span */
    int64_t delta_bytes;        /* exact Δ(alloc_bytes - free_bytes) over the span */
    uint64_t window_start_seq;  /* sequence number of the base snapshot */
    uint64_t window_start_ns;   /* its time */
    uint64_t window_span_ns;    /* t_ns - window_start_ns (0 without a rate) */
    alert_level_t level;        /* the level after this push */
    alert_level_t prev_level;   /* the level before it */
    alert_event_t event;        /* the transition, if any */
    uint64_t threshold;         /* ENTER_WARN: warn; ENTER_CRIT: crit;
                                   RECOVER: warn; otherwise 0 */
} alert_result_t;

/* alert_entry_t: a kept snapshot, reduced to what rates need. */
typedef struct alert_entry_s {
    uint64_t t_ns;
    uint64_t live_objects;      /* mallocs - frees, modulo 2^64 */
    uint64_t live_bytes;        /* alloc_bytes - free_bytes, modulo 2^64 */
    uint64_t seq;
} alert_entry_t;

/* alert_run_t: a run of consecutive eligible evaluations meeting a
 * condition; `since` is the time of the first one. */
typedef struct alert_run_s {
    bool on;
    uint64_t since;
} alert_run_t;

/*
 * alert_engine_t: caller-allocated (e.g. a static); every field is private
 * to alert.c. The ring is the only memory the engine owns.
 */
typedef struct alert_engine_s {
    alert_conf_t conf;
    map_allocator_t allocator;  /* copied at init */
    alert_entry_t *ring;        /* cap entries from the allocator */
    size_t cap;                 /* ring capacity */
    uint64_t spacing_ns;        /* keep a snapshot only this long after the
                                   last kept one (0: keep every one) */
    uint64_t kept;              /* snapshots ever kept: entry k is ring[k % cap] */
    size_t count;               /* kept snapshots still in the ring */
    uint64_t base;              /* kept index of the current base snapshot */
    alert_entry_t last;         /* the newest snapshot pushed (kept or not) */
    uint64_t pushes;            /* snapshots pushed since init/reset */
    alert_level_t level;
    alert_run_t above_warn;     /* rate > warn */
    alert_run_t above_crit;     /* rate > crit */
    alert_run_t calm;           /* rate < warn * 3/4 (recovery) */
    alert_run_t below_crit;     /* rate < crit * 3/4 (de-escalation) */
} alert_engine_t;

/*
 * alert_engine_init: validates conf, copies it and the allocator, and
 * allocates the ring: ceil(window / interval) + 2 entries (one base at or
 * before now - window, the snapshots after it, one spare for a push that
 * comes a little early), at most ALERT_RING_MAX. When the window needs
 * more than that, only snapshots at least ceil(window / (ALERT_RING_MAX -
 * 2)) after the previously kept one are kept: the base is then up to one
 * such spacing plus one interval older than now - window, the span that
 * much longer than the window (reported in window_span_ns); the newest
 * snapshot is always the end of the span.
 * @return ALERT_OK; ALERT_ERR_INVALID (NULL, warn 0, warn > crit, window or
 *         interval 0), the engine untouched; ALERT_ERR_NOMEM, the engine
 *         zeroed (alert_engine_free on it is harmless).
 */
alert_err_t alert_engine_init(alert_engine_t *e, const alert_conf_t *conf,
                              const map_allocator_t *allocator);

/* alert_engine_free: returns the ring to the allocator and zeroes *e.
 * Harmless on a zeroed or already-freed engine. */
void alert_engine_free(alert_engine_t *e);

/*
 * alert_engine_reset: forgets every snapshot, the level and the sustain
 * clocks, keeps the ring memory, and counts grace from start_ns. For a
 * forked child that wants its alerts to start afresh (it may also keep the
 * inherited state: it is plain memory, valid in the child).
 */
void alert_engine_reset(alert_engine_t *e, uint64_t start_ns);

/*
 * alert_engine_push: adds a snapshot and evaluates the window.
 * @return ALERT_OK and *out filled; ALERT_ERR_TIME when snap->t_ns is not
 *         later than the previous push (nothing changes, *out untouched);
 *         ALERT_ERR_INVALID on NULL arguments or an engine without a ring.
 */
alert_err_t alert_engine_push(alert_engine_t *e, const alert_snap_t *snap,
                              alert_result_t *out);

/* alert_engine_level: the current level. */
alert_level_t alert_engine_level(const alert_engine_t *e);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_ALERT_H */
