/*
 * lock.h - bounded locking for the paths that must never block (exit,
 * fork, /metrics), the summary's "incomplete" notes, and the lock ranks
 * the debug agent checks (lock.c; the design is there) (agent/, private).
 */
#ifndef HEAPWATCH_AGENT_LOCK_H
#define HEAPWATCH_AGENT_LOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* How long the paths that must not block wait in all for locks that
 * other running threads hold (none when the thread itself was inside the
 * agent: agent_bound_deadline). Exit: the background thread may be
 * writing a profile. fork: only short sampling-path holds. /metrics: the
 * HTTP thread must answer. */
#define AGENT_EXIT_WAIT_NS 2000000000ull     /* 2 s */
#define AGENT_FORK_WAIT_NS 500000000ull      /* 0.5 s */
#define AGENT_METRICS_WAIT_NS 200000000ull   /* 0.2 s */

/* Distinct notes kept for the summary's "incomplete" list. */
#define AGENT_NOTES_MAX 8


/* agent_bound_deadline: the deadline for a path that must not block,
 * called before that path's agent_enter: 0 (one try per lock) when the
 * calling thread is inside the agent (a signal handler interrupted agent
 * code, which may hold any agent lock), else now + wait_ns. */
uint64_t agent_bound_deadline(uint64_t wait_ns);

/* agent_lock_until: takes m, waiting at most until deadline_ns
 * (CLOCK_MONOTONIC; 0: one try). @return true when taken. */
bool agent_lock_until(pthread_mutex_t *m, uint64_t deadline_ns);

/* agent_bounded_begin / _end: a bounded stretch on this thread (they
 * nest): agent_lock waits until deadline_ns at most, and the arena never
 * waits (map_arena_set_nowait). notes_to_summary: agent_lock_note's
 * failures go to the summary's "incomplete" list. */
void agent_bounded_begin(uint64_t deadline_ns, bool notes_to_summary);
void agent_bounded_end(void);

/* agent_bounded_now: whether this thread is in a bounded stretch, and
 * its deadline (*deadline_ns; 0: one try) when it is. */
bool agent_bounded_now(uint64_t *deadline_ns);

/* agent_lock: pthread_mutex_lock outside a bounded stretch; inside, waits
 * until its deadline at most. @return true when taken. */
bool agent_lock(pthread_mutex_t *m);

/* agent_lock_note: agent_lock, and when the lock is not had, `what` (a
 * static string) is noted for the summary if the stretch says so. */
bool agent_lock_note(pthread_mutex_t *m, const char *what);

/* agent_note_busy: what agent_lock_note does when it could not have its
 * lock, for a wait of another kind: `what` noted for the summary if the
 * stretch says so. */
void agent_note_busy(const char *what);

/* agent_incomplete_add: notes `what` (a static string; once) for the
 * summary's "incomplete" list. Lock-free. */
void agent_incomplete_add(const char *what);

/* agent_incomplete_json: the notes as a JSON array of strings ("[]"). */
struct agent_buf_s;
void agent_incomplete_json(struct agent_buf_s *b);

/* agent_incomplete_reset: no notes (a fork child starts its own list). */
void agent_incomplete_reset(void);


/*
 * Lock ranks: the agent's lock order (lock.c's design comment) as numbers.
 * A thread that blocks on a lock must hold none of its rank or above; tries
 * and bounded waits may break the order (they cannot deadlock). The debug
 * agent keeps, per thread, how many locks of each rank it holds, and
 * checks the order on every blocking acquisition, and the holding where a
 * comment says a lock is held; in the release agent these are plain
 * pthread calls.
 */
typedef enum agent_rank_e {
    AGENT_RANK_WORK = 0,      /* core.c: one round of output at a time */
    AGENT_RANK_PROFILE,       /* profile.c: the profile writer */
    AGENT_RANK_REGISTRY,      /* thread.c: the registry's writers */
    AGENT_RANK_UNWIND,        /* unwind.c: libunwind (only ever tried) */
    AGENT_RANK_STRIPE,        /* stacks.c: a stripe of the stack table */
    AGENT_RANK_SHARD,         /* live.c: a shard of the live map */
    AGENT_RANKS
} agent_rank_t;

/* Debug agent only (lock.c): the bookkeeping and its checks. */
void agent_rank_check_order(agent_rank_t r);
void agent_rank_count(agent_rank_t r, int delta);
bool agent_rank_held(agent_rank_t r);
/* agent_ranks_save / agent_ranks_restore: fork's prepare handler notes
 * what this thread held before it took every lock; a forked child, which
 * re-creates every lock, holds none, but a handler that forked may return
 * to agent code that will give back what it held: those gives are
 * accepted, once each. */
void agent_ranks_save(void);
void agent_ranks_restore(void);

static inline void agent_rank_taken(agent_rank_t r)
{
    if (AGENT_DEBUG) agent_rank_count(r, +1);
}
static inline void agent_rank_given(agent_rank_t r)
{
    if (AGENT_DEBUG) agent_rank_count(r, -1);
}

/* agent_lock_ranked / agent_unlock_ranked: pthread_mutex_lock and _unlock
 * of a lock of rank r. */
static inline void agent_lock_ranked(pthread_mutex_t *m, agent_rank_t r)
{
    if (AGENT_DEBUG) agent_rank_check_order(r);
    pthread_mutex_lock(m);
    agent_rank_taken(r);
}
static inline void agent_unlock_ranked(pthread_mutex_t *m, agent_rank_t r)
{
    agent_rank_given(r);
    pthread_mutex_unlock(m);
}

/* agent_lock_ranked_until: agent_lock_until for a lock of rank r. */
static inline bool agent_lock_ranked_until(pthread_mutex_t *m, agent_rank_t r, uint64_t deadline_ns)
{
    if (!agent_lock_until(m, deadline_ns)) return false;
    agent_rank_taken(r);
    return true;
}

/* agent_lock_ranked_note: agent_lock_note for a lock of rank r (the order
 * is checked when it blocks: outside a bounded stretch). */
bool agent_lock_ranked_note(pthread_mutex_t *m, agent_rank_t r, const char *what);

#define AGENT_ASSERT_HELD(rank) AGENT_ASSERT(agent_rank_held(rank))

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_LOCK_H */
