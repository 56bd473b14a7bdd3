/*
 * fork.c - the agent across fork: the handlers pthread_atfork runs.
 *
 * The prepare handler takes the registry lock, every stack stripe, every
 * live-map shard and the arena lock (in that order: lock.c has the
 * agent's whole order), each waiting at most until one deadline
 * (AGENT_FORK_WAIT_NS in all; never, when fork is called from a signal
 * handler that interrupted agent code on this thread: one try each, since
 * that code may hold any of them). After the stripes it tries the unwind
 * lock (unwind.c), a bounded number of times, never blocking on it. The
 * parent releases what was taken, in reverse; the child re-creates them
 * all. A lock that could not be had guards a structure that may be
 * mid-update in the child: the child never touches that stack table or
 * live map again (a missed shard drops every new sample, counted in
 * samples_dropped; a missed stripe gives new samples the empty stack), a
 * missed arena lock leaves the child its own arena chunks (map_arena.c);
 * the registry is an append-only list, consistent at every instant. The
 * child's summary says so under "incomplete". A missed unwind lock leaves
 * libunwind's caches mid-update in the child: it unwinds with the recipes
 * it inherited and never calls libunwind again (a stack ends at a frame
 * that has none; not noted in the summary).
 *
 * The work lock and the profile lock are not taken: a fork must not wait
 * for a profile being written. Only the parent's background and HTTP
 * threads, or a thread doing a due job (HEAPWATCH_THREAD=off, its signals
 * blocked), could hold them, and none of those is in the child, which
 * re-creates both.
 *
 * Child policy: the child keeps tracking, with its own pid in its file
 * names and the counters it inherited, as Go would see it: the parent's
 * live heap is really live in the child (copy-on-write), so live_objects
 * starts from the parent's value. Blocks of threads that did not survive
 * the fork are marked dead; the child, single-threaded, gets its own
 * background thread as any process does, at its first due job
 * (background.c), and with HEAPWATCH_HTTP=host:0 its own HTTP server on
 * a port of its own at the same moment (http.c); the parent's listening
 * socket and its http.<tag>.addr stay the parent's (targets.c).
 *
 * exec. LD_PRELOAD is left as the user set it, so a program exec'ed by the
 * profiled one is profiled too, under its own pid.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/background.h"
#include "agent/core.h"
#include "agent/fds.h"
#include "agent/fork.h"
#include "agent/http.h"
#include "agent/live.h"
#include "agent/lock.h"
#include "agent/output.h"
#include "agent/peak.h"
#include "agent/profile.h"
#include "agent/stacks.h"
#include "agent/thread.h"
#include "agent/unwind.h"
#include "agent/watch.h"
#include "map/map.h"

static AGENT_TLS bool fork_took_registry;   /* per thread: two threads may fork at once */

static void prefork(void)
{
    uint64_t deadline = agent_bound_deadline(AGENT_FORK_WAIT_NS);
    agent_enter();
    agent_ranks_save();
    fork_took_registry = agent_threads_prefork(deadline);
    agent_stacks_prefork(deadline);
    agent_unwind_prefork(deadline);
    agent_live_prefork(deadline);
    map_arena_prefork(deadline);
}

static void postfork_parent(void)
{
    map_arena_postfork_parent();
    agent_live_postfork_parent();
    agent_unwind_postfork_parent();
    agent_stacks_postfork_parent();
    agent_threads_postfork_parent();
    agent_leave();
}

/* postfork_child_notes: what the child lost at the fork (see above), noted
 * for its summary. (Sampling needs no switch: a lost live map drops every
 * new sample, a lost stack table gives each the empty stack;
 * agent_sample_rate stays, for the samples the child inherited.) */
static void postfork_child_notes(bool arena_ok, bool live_ok, bool stacks_ok)
{
    agent_incomplete_reset();
    if (!fork_took_registry) agent_incomplete_add("fork: thread registry busy at fork");
    if (!arena_ok) agent_incomplete_add("fork: agent memory busy at fork: this process allocates from its own chunks");
    if (!live_ok) agent_incomplete_add("fork: live map busy at fork: new samples are dropped in this process");
    if (!stacks_ok) agent_incomplete_add("fork: stack table busy at fork: new samples have no stack in this process");
}

static void postfork_child(void)
{
    agent_ranks_restore();   /* every lock is re-created below: none held */
    agent_fds_postfork_child();
    bool arena_ok = map_arena_postfork_child();
    bool live_ok = agent_live_postfork_child();
    agent_unwind_postfork_child();
    bool stacks_ok = agent_stacks_postfork_child();
    postfork_child_notes(arena_ok, live_ok, stacks_ok);
    agent_profile_postfork_child();
    agent_peak_postfork_child();
    agent_http_postfork_child();
    agent_threads_postfork_child();
    agent_core_postfork_child();
    agent_output_postfork_child();
    uint64_t now = agent_mono_ns();
    agent_watch_postfork_child(now);
    agent_bg_postfork_child(now);
    agent_leave();
}

void agent_fork_init(void)
{
    pthread_atfork(prefork, postfork_parent, postfork_child);
}
