/*
 * lock.c - bounded locking for the paths that must never block: exit, fork,
 * and the /metrics reader.
 *
 * The rule (issue 11, class 2): no exit path (exit, _exit, _Exit, exit from
 * a thread or from a signal handler, the background thread's exit on the
 * program's behalf) and no fork ever blocks on a lock that the calling
 * thread, or a thread stopped inside the agent, may hold. A signal handler
 * that interrupts agent code (a sampled allocation holds a live-map shard,
 * a stack stripe or the arena lock) and then calls _exit would otherwise
 * wait forever for a lock its own thread holds.
 *
 * So those paths run in a bounded stretch (agent_bounded_begin .. _end).
 * Inside it agent_lock waits at most until the stretch's deadline and then
 * gives up: the caller skips what the lock guards, and agent_lock_note
 * records what was skipped (agent_incomplete_add) for the summary's
 * "incomplete" list. Outside a stretch agent_lock is pthread_mutex_lock.
 *
 * The deadline (chosen by the caller: core.c for exit, fork.c, summary.c): "now" (one try per
 * lock) when the thread was itself inside the agent as the path began: it
 * may hold any agent lock, and waiting cannot help; otherwise a bounded
 * time for locks that other running threads hold briefly (a shard or a
 * stripe: microseconds; the background thread's work lock: the time of
 * one profile), after which every lock is tried once. (The exit output
 * waits for the work lock in either case: only agent threads hold it; see
 * core.c.) So an exit waits AGENT_EXIT_WAIT_NS (2 s) at most in all, a
 * fork AGENT_FORK_WAIT_NS (0.5 s), a /metrics read AGENT_METRICS_WAIT_NS
 * (0.2 s).
 *
 * The arena (map/map_arena.c) never waits inside a stretch: when its lock
 * is busy it serves small blocks from a chunk of the thread's own
 * (map_arena_set_nowait), so the exit output still has memory.
 *
 * Lock order, every lock of the agent (a path that holds several takes
 * them in this order, never the other way round):
 *   work_lock (core.c) -> profile_lock (profile.c) -> registry_lock
 *   (thread.c) -> unwind_lock (unwind.c; only ever tried) -> a stack
 *   stripe (stacks.c, by index) -> a live-map shard (live.c, by index)
 *   -> arena_lock (map/map_arena.c).
 * The sampling path takes a stripe or a shard (never both at once), each
 * then perhaps the arena's; fork's prepare handler (fork.c) takes
 * registry_lock, every stripe, then tries unwind_lock (against the order,
 * but only ever a try), every shard, then the arena's.
 *
 * Ranks (lock.h) are this order as numbers, arena_lock aside (map/ checks
 * its own). The debug agent counts, per thread, the locks it holds by rank:
 * a blocking acquisition while a lock of the same or a later rank is held
 * aborts with "lock order" (a try or a bounded wait may go against the
 * order: it cannot deadlock), and AGENT_ASSERT_HELD / the work lock's
 * owner check what the comments say is held. The release agent keeps no
 * count: the checks compile away.
 *
 * Notes are static strings, at most AGENT_NOTES_MAX distinct ones per
 * process (more are dropped; the list says so with a last "..." entry).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/buf.h"
#include "agent/lock.h"
#include "agent/thread.h"
#include "map/map.h"

static AGENT_TLS uint64_t bound_deadline;  /* CLOCK_MONOTONIC ns; 0: one try */
static AGENT_TLS int bounded;              /* stretches open on this thread */
static AGENT_TLS bool bound_notes;         /* failures go to the summary */

static const char *notes[AGENT_NOTES_MAX];
static unsigned nnotes;                    /* claimed slots (atomic) */
static bool notes_overflow;

uint64_t agent_bound_deadline(uint64_t wait_ns)
{
    return agent_inside() ? 0 : agent_mono_ns() + wait_ns;
}

bool agent_lock_until(pthread_mutex_t *m, uint64_t deadline_ns)
{
    if (pthread_mutex_trylock(m) == 0) return true;
    if (deadline_ns == 0) return false;
    struct timespec ts = { (time_t)(deadline_ns / 1000000000ull), (long)(deadline_ns % 1000000000ull) };
    /* A deadline already past: one more try, then ETIMEDOUT (POSIX). */
    return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts) == 0;
}

void agent_bounded_begin(uint64_t deadline_ns, bool notes_to_summary)
{
    if (bounded++ == 0) {
        bound_deadline = deadline_ns;
        bound_notes = notes_to_summary;
    }
    map_arena_set_nowait(true);
}

bool agent_bounded_now(uint64_t *deadline_ns)
{
    *deadline_ns = bound_deadline;
    return bounded > 0;
}

void agent_bounded_end(void)
{
    if (--bounded == 0) map_arena_set_nowait(false);
}

bool agent_lock(pthread_mutex_t *m)
{
    if (!bounded) {
        pthread_mutex_lock(m);
        return true;
    }
    return agent_lock_until(m, bound_deadline);
}

bool agent_lock_note(pthread_mutex_t *m, const char *what)
{
    if (agent_lock(m)) return true;
    agent_note_busy(what);
    return false;
}

void agent_note_busy(const char *what)
{
    if (bound_notes && what) agent_incomplete_add(what);
}

/* ------------------------------------------------------------------------ */
/* Lock ranks (the debug agent's checks)                                    */
/* ------------------------------------------------------------------------ */

static AGENT_TLS unsigned char held[AGENT_RANKS];   /* locks held by this thread, by rank */
static AGENT_TLS unsigned char forgiven[AGENT_RANKS];   /* gives owed to locks a fork re-created */

static const char *const rank_names[AGENT_RANKS] = {
    "work", "profile", "registry", "unwind", "stripe", "shard",
};

void agent_rank_check_order(agent_rank_t r)
{
    for (int above = r; above < AGENT_RANKS; above++) {
        if (!held[above]) continue;
        char line[160];
        agent_buf_t b;
        agent_buf_init(&b, line, sizeof line);
        agent_buf_str(&b, "lock order: blocking on a ");
        agent_buf_str(&b, rank_names[r]);
        agent_buf_str(&b, " lock while holding a ");
        agent_buf_str(&b, rank_names[above]);
        agent_buf_str(&b, " lock");
        agent_assert_fail(__FILE__, __LINE__, line);
    }
}

void agent_rank_count(agent_rank_t r, int delta)
{
    if (delta < 0 && held[r] == 0 && forgiven[r] > 0) {
        forgiven[r]--;   /* taken before a fork, re-created in this child */
        return;
    }
    AGENT_ASSERT(delta > 0 || held[r] > 0);   /* given back, never taken */
    held[r] = (unsigned char)(held[r] + delta);
}

bool agent_rank_held(agent_rank_t r) { return held[r] > 0; }

static AGENT_TLS unsigned char held_before_fork[AGENT_RANKS];

void agent_ranks_save(void) { memcpy(held_before_fork, held, sizeof held); }

/* In a forked child every lock is new and none is held; but a fork made
 * from a signal handler that interrupted agent code returns to code that
 * will give back what it held before: those gives are owed, not misuse. */
void agent_ranks_restore(void)
{
    memcpy(forgiven, held_before_fork, sizeof forgiven);
    memset(held, 0, sizeof held);
}

bool agent_lock_ranked_note(pthread_mutex_t *m, agent_rank_t r, const char *what)
{
    if (AGENT_DEBUG && !bounded) agent_rank_check_order(r);
    if (!agent_lock_note(m, what)) return false;
    agent_rank_taken(r);
    return true;
}

_Noreturn void agent_assert_fail(const char *file, int line, const char *cond)
{
    char text[512];
    agent_buf_t b;
    agent_buf_init(&b, text, sizeof text);
    agent_buf_str(&b, "heapwatch: assertion failed: ");
    agent_buf_str(&b, file);
    agent_buf_str(&b, ":");
    agent_buf_u64(&b, (uint64_t)line);
    agent_buf_str(&b, ": ");
    agent_buf_str(&b, cond);
    agent_buf_str(&b, "\n");
    if (b.overflow) text[sizeof text - 2] = '\n';
    (void)!write(2, text, strlen(text));   /* not agent_log: the state may be broken */
    /* The test suite also collects the line from a file of its choosing:
     * the programs it runs often send their stderr elsewhere. */
    const char *log = AGENT_DEBUG ? getenv("HEAPWATCH_ASSERT_LOG") : NULL;
    int fd = log && log[0] ? open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
    if (fd >= 0) {
        (void)!write(fd, text, strlen(text));
        close(fd);
    }
    abort();
}

void agent_incomplete_add(const char *what)
{
    unsigned n = __atomic_load_n(&nnotes, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n && i < AGENT_NOTES_MAX; i++) {
        const char *s = __atomic_load_n(&notes[i], __ATOMIC_ACQUIRE);
        if (s && strcmp(s, what) == 0) return;
    }
    unsigned slot = __atomic_fetch_add(&nnotes, 1, __ATOMIC_ACQ_REL);
    if (slot < AGENT_NOTES_MAX) __atomic_store_n(&notes[slot], what, __ATOMIC_RELEASE);
    else __atomic_store_n(&notes_overflow, true, __ATOMIC_RELAXED);
}

void agent_incomplete_json(agent_buf_t *b)
{
    unsigned n = __atomic_load_n(&nnotes, __ATOMIC_ACQUIRE);
    if (n > AGENT_NOTES_MAX) n = AGENT_NOTES_MAX;
    agent_buf_str(b, "[");
    bool first = true;
    for (unsigned i = 0; i < n; i++) {
        const char *s = __atomic_load_n(&notes[i], __ATOMIC_ACQUIRE);
        if (!s) continue;   /* claimed, not yet stored */
        agent_buf_str(b, first ? "" : ", ");
        agent_buf_json_str(b, s);
        first = false;
    }
    if (__atomic_load_n(&notes_overflow, __ATOMIC_RELAXED)) {
        agent_buf_str(b, first ? "" : ", ");
        agent_buf_json_str(b, "...");
    }
    agent_buf_str(b, "]");
}

void agent_incomplete_reset(void)
{
    memset(notes, 0, sizeof notes);
    nnotes = 0;
    notes_overflow = false;
}
