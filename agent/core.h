/*
 * core.h - the core's few shared services (core.c): start-up and exit,
 * the configuration in force, the work lock, snapshots of the counters
 * and the peak (agent/, private).
 *
 * The work lock serialises every round of output (snapshots, profiles, the
 * summary): one output job at a time, whoever runs it (the background
 * thread's job worker, an allocating thread doing due jobs, the HTTP
 * thread, the exit). Functions whose comments say "under the work lock"
 * check it in the debug agent (AGENT_ASSERT_WORK_HELD).
 */
#ifndef HEAPWATCH_AGENT_CORE_H
#define HEAPWATCH_AGENT_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/agent.h"
#include "agent/base.h"
#include "agent/conf.h"

#pragma GCC visibility push(hidden)

/* agent_conf: the configuration in force (read at start, then constant). */
extern agent_conf_t agent_conf;

/* agent_start_real_ns: CLOCK_REALTIME at start (in a forked child: at the
 * fork). */
extern uint64_t agent_start_real_ns;

/* agent_init: reads the configuration and sets tracking up (idempotent;
 * the first allocation may call it before the constructor does). */
void agent_init(void);
/* agent_ready: agent_init has finished (in any thread). */
bool agent_ready(void);

/* agent_start: what the constructor does once agent_init is done and the
 * exit handler registered: the profile signal, the first base of the
 * growth rates, the background thread when wanted at once, HTTP. */
void agent_start(void);

/* agent_exit_output: the exit profile, the last timeline record and the
 * summary, once per process, never blocking (bounded: see core.c). Called
 * by the exit handler (preload.c) and by the shim's _exit. */
void agent_exit_output(void);
/* agent_on_quick_exit: the process is leaving through _exit/_Exit, which
 * skips exit handlers: agent_exit_output, except in a vfork or
 * posix_spawn child (which shares its parent's memory). */
void agent_on_quick_exit(void);
/* agent_exiting: the exit output has begun: no other job starts. */
bool agent_exiting(void);
/* agent_own_process: not a vfork or posix_spawn child. */
bool agent_own_process(void);

/* The work lock. agent_work_lock blocks; _trylock and _lock_until do not
 * (the latter waits until deadline_ns at most, in a bounded stretch as
 * agent_lock does). agent_work_unlock ends a round of output: the output
 * directory's descriptor is closed first (none of ours stays in the
 * program's table between rounds). */
void agent_work_lock(void);
bool agent_work_trylock(void);
bool agent_work_lock_until(uint64_t deadline_ns);
bool agent_work_lock_bounded(void);   /* agent_lock: bounded inside a stretch */
void agent_work_unlock(void);
/* agent_work_held: the calling thread holds the work lock, or it was lent
 * to it (tracked in the debug agent only; always true in the release
 * agent). agent_work_lend / _unlend: the job worker works under the lock
 * its parent, the background thread, holds and waits with. */
bool agent_work_held(void);
void agent_work_lend(void);
void agent_work_unlend(void);
#define AGENT_ASSERT_WORK_HELD() AGENT_ASSERT(agent_work_held())
/* AGENT_ASSERT_OUTPUT_SERIAL: the work lock is held, or the exit output
 * has begun: an exit that could not have the lock in time (another agent
 * thread kept it) still writes the summary (core.c, "Exit"), and the
 * output services it uses say so. */
#define AGENT_ASSERT_OUTPUT_SERIAL() AGENT_ASSERT(agent_work_held() || agent_exiting())

/* agent_snapshot: reads the counters into *c and updates the peak of live
 * bytes. */
void agent_snapshot(heapwatch_counters_t *c);
/* agent_peak_live_bytes: the peak of live bytes seen so far: at snapshots,
 * at sampled allocations (sample.c, PEAK_STEP) and at exit. */
uint64_t agent_peak_live_bytes(void);
/* agent_peak_time_ns: CLOCK_REALTIME when that peak was seen (0: none yet). */
uint64_t agent_peak_time_ns(void);

/* agent_core_postfork_child: the child's own work lock, pid and start. */
void agent_core_postfork_child(void);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_CORE_H */
