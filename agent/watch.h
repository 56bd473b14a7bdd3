/*
 * watch.h - snapshots: the timeline record, the alert engine and the
 * per-stack history behind an alert's record (watch.c) (agent/, private).
 *
 * The snapshots, the start, the last rates and the close run under the
 * work lock (core.h, asserted in the debug agent), on the background
 * thread's job worker, an allocating thread doing due jobs, or the exit;
 * agent_watch_init runs at start-up and agent_watch_postfork_child in a
 * forked child, before any other thread can be.
 */
#ifndef HEAPWATCH_AGENT_WATCH_H
#define HEAPWATCH_AGENT_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/agent.h"
#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* agent_watch_init: the alert engine for conf, output into out_dir (both
 * kept by reference). start_mono_ns: program start (CLOCK_MONOTONIC). */
struct agent_conf_s;
void agent_watch_init(const struct agent_conf_s *conf, const char *out_dir, uint64_t start_mono_ns);

/* agent_watch_snapshot: one snapshot of the counters c: the timeline
 * record, the alert evaluation (not when final: the exit record) and the
 * per-stack history. Background thread (or exit), under the work lock. */
void agent_watch_snapshot(const heapwatch_counters_t *c, uint64_t mono_ns, uint64_t real_ns,
                          uint64_t start_real_ns, bool final);

/* agent_watch_start: the snapshot at start (background thread start, in
 * the process or a forked child): a base for the rates, no record. */
void agent_watch_start(const heapwatch_counters_t *c, uint64_t mono_ns);

/* agent_watch_close: ends the timeline (exit). */
void agent_watch_close(void);

/* agent_watch_postfork_child: the child lets the parent's timeline go and
 * starts its own alert state. */
void agent_watch_postfork_child(uint64_t start_mono_ns);

/* agent_watch_last: the rates and level of the last snapshot (zeros
 * before the first rate). Under the work lock. */
void agent_watch_last(double *objects_rate, double *bytes_rate, int *level);

/* agent_watch_wrote: a timeline record or an alert was written (the
 * timeline is open, or the alerts file exists). Under the work lock. */
bool agent_watch_wrote(void);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_WATCH_H */
