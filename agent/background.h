/*
 * background.h - the background thread and the jobs it runs (snapshots,
 * periodic and signal profiles), the ticks by which allocating threads run
 * them when there is no such thread, and the pause around unshare and
 * setns (background.c; the design is there) (agent/, private).
 */
#ifndef HEAPWATCH_AGENT_BACKGROUND_H
#define HEAPWATCH_AGENT_BACKGROUND_H

#include <stdint.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* agent_bg_init: the wake-up semaphore and the first deadlines; the ticks
 * armed unless HEAPWATCH_THREAD=on. Start-up, before any thread registers
 * (so that every countdown is cut). */
void agent_bg_init(void);

/* agent_bg_install_signal: HEAPWATCH_SIGNAL's handler, only where the
 * signal is still at its default. */
void agent_bg_install_signal(void);

/* agent_bg_start_watch: the first base of the growth rates, at start and
 * in a forked child (takes the work lock, signals blocked). */
void agent_bg_start_watch(uint64_t now_mono_ns);

/* agent_bg_start: starts the background thread in this process unless it
 * runs, is not wanted (off), or unshare/setns is under way; if it cannot
 * start, the allocating threads do its jobs. */
void agent_bg_start(void);

/* agent_bg_new_thread: a thread of the program's own has registered:
 * with HEAPWATCH_THREAD=auto the agent's thread starts now (the process is
 * multi-threaded anyway). Outside the agent. */
void agent_bg_new_thread(void);

/* agent_bg_pause / agent_bg_resume: around unshare and setns
 * (shim): the background thread leaves, and the process has one thread
 * less when pause returns (bounded); resume arranges its restart. */
void agent_bg_pause(void);
void agent_bg_resume(void);

/* agent_bg_postfork_child: the parent's thread is not in the child: it
 * gets its own at its first due job; a new base for the rates. */
void agent_bg_postfork_child(uint64_t now_mono_ns);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_BACKGROUND_H */
