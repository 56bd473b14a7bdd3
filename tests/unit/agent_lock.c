/*
 * agent_lock.c - the debug agent's lock checks (agent/lock.c, the work
 * lock in agent/core.c) and bounded locking, without any preload. Unit
 * tests build with HEAPWATCH_TEST, so AGENT_DEBUG (and AGENT_ASSERT) is on.
 *
 *   - agent_work_held: false, true under agent_work_lock, false after;
 *     false on another thread; true on a thread the lock is lent to
 *     (agent_work_lend / _unlend), as the job worker is;
 *   - ranks: taking locks in rank order is fine and counted
 *     (agent_rank_held); blocking on a lock of a lower or equal rank while
 *     holding a higher one aborts with "heapwatch: assertion failed" and
 *     "lock order" on stderr (a forked child, its stderr through a pipe,
 *     dead of SIGABRT); so do a second agent_work_lock, an unlock of a
 *     work lock not held and an unlock of a rank never taken; a try
 *     (agent_lock_ranked_until with deadline 0) or a bounded wait out of
 *     order does not abort;
 *   - bounded stretches: agent_lock gives up at the deadline, the note
 *     goes to the "incomplete" list once.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent/buf.h"
#include "agent/core.h"
#include "agent/lock.h"
#include "agent/output.h"
#include "test_child.h"

static pthread_mutex_t m[AGENT_RANKS][2];   /* two locks of each rank */

static int group_setup(void **state)
{
    (void)state;
    for (int r = 0; r < AGENT_RANKS; r++)
        for (int i = 0; i < 2; i++) pthread_mutex_init(&m[r][i], NULL);
    return 0;
}

/* teardown: a test that failed holding the work lock lets it go, so the
 * next one starts clean. */
static int teardown(void **state)
{
    (void)state;
    if (agent_work_held()) agent_work_unlock();
    return 0;
}

static void assert_none_held(void)
{
    for (int r = 0; r < AGENT_RANKS; r++) assert_false(agent_rank_held((agent_rank_t)r));
}

/* ------------------------------------------------------------------------ */
/* In a child                                                               */
/* ------------------------------------------------------------------------ */

static void assert_clean_exit(const child_t *c)
{
    if (!WIFEXITED(c->status) || WEXITSTATUS(c->status) != 0 || c->err[0])
        fail_msg("the child did not exit cleanly (status %#x); stderr: \"%s\"", c->status, c->err);
}

/* ------------------------------------------------------------------------ */
/* The work lock                                                            */
/* ------------------------------------------------------------------------ */

static bool other_held;
static bool other_try;

static void *other_thread(void *arg)
{
    (void)arg;
    other_held = agent_work_held();
    other_try = agent_work_trylock();
    if (other_try) agent_work_unlock();
    return NULL;
}

static void *borrower_thread(void *arg)
{
    bool *seen = arg;
    seen[0] = agent_work_held();
    agent_work_lend();
    seen[1] = agent_work_held();
    agent_work_unlend();
    seen[2] = agent_work_held();
    return NULL;
}

static void test_work_held(void **state)
{
    (void)state;
    assert_false(agent_work_held());
    agent_work_lock();
    assert_true(agent_work_held());
    assert_true(agent_rank_held(AGENT_RANK_WORK));
    /* another thread: not its lock, and it cannot take it */
    pthread_t th;
    other_held = true;
    other_try = true;
    assert_int_equal(pthread_create(&th, NULL, other_thread, NULL), 0);
    pthread_join(th, NULL);
    assert_false(other_held);
    assert_false(other_try);
    agent_work_unlock();
    assert_false(agent_work_held());
    assert_none_held();
    /* the other ways in */
    assert_true(agent_work_trylock());
    assert_true(agent_work_held());
    agent_work_unlock();
    assert_true(agent_work_lock_until(agent_mono_ns() + 1000000));
    assert_true(agent_work_held());
    agent_work_unlock();
    assert_true(agent_work_lock_bounded());
    assert_true(agent_work_held());
    agent_work_unlock();
    assert_false(agent_work_held());
    assert_none_held();
}

/* The job worker works under the lock its parent holds: lent, it is held
 * there; unlent, not any more; the lender still holds it throughout. */
static void test_work_lend(void **state)
{
    (void)state;
    agent_work_lock();
    bool seen[3] = { true, false, true };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, borrower_thread, seen), 0);
    pthread_join(th, NULL);
    assert_false(seen[0]);
    assert_true(seen[1]);
    assert_false(seen[2]);
    assert_true(agent_work_held());
    agent_work_unlock();
    assert_false(agent_work_held());
}

static void child_work_twice(void)
{
    agent_work_lock();
    agent_work_lock();   /* not recursive: the assert, not a deadlock */
}

static void child_unlock_unheld(void) { agent_work_unlock(); }

static void child_lend_unheld(void) { agent_work_lend(); }

static void test_work_misuse_aborts(void **state)
{
    (void)state;
    child_t c = in_child(child_work_twice);
    assert_aborted(&c, "agent_work_held");
    c = in_child(child_unlock_unheld);
    assert_aborted(&c, "work_owner");
    c = in_child(child_lend_unheld);
    assert_aborted(&c, "work_owner");
}

/* ------------------------------------------------------------------------ */
/* Ranks                                                                    */
/* ------------------------------------------------------------------------ */

static void test_ranks_in_order(void **state)
{
    (void)state;
    for (int r = 0; r < AGENT_RANKS; r++) {
        agent_lock_ranked(&m[r][0], (agent_rank_t)r);
        for (int q = 0; q < AGENT_RANKS; q++) assert_int_equal(agent_rank_held((agent_rank_t)q), q <= r);
    }
    for (int r = AGENT_RANKS; r-- > 0;) {
        agent_unlock_ranked(&m[r][0], (agent_rank_t)r);
        assert_false(agent_rank_held((agent_rank_t)r));
    }
    assert_none_held();
    /* skipping ranks is fine too; so is agent_lock_ranked_note in order */
    agent_lock_ranked(&m[AGENT_RANK_PROFILE][0], AGENT_RANK_PROFILE);
    assert_true(agent_lock_ranked_note(&m[AGENT_RANK_SHARD][0], AGENT_RANK_SHARD, "test"));
    agent_unlock_ranked(&m[AGENT_RANK_SHARD][0], AGENT_RANK_SHARD);
    agent_unlock_ranked(&m[AGENT_RANK_PROFILE][0], AGENT_RANK_PROFILE);
    assert_none_held();
}

static void child_shard_then_registry(void)
{
    agent_lock_ranked(&m[AGENT_RANK_SHARD][0], AGENT_RANK_SHARD);
    agent_lock_ranked(&m[AGENT_RANK_REGISTRY][0], AGENT_RANK_REGISTRY);
}

static void child_two_stripes(void)
{
    agent_lock_ranked(&m[AGENT_RANK_STRIPE][0], AGENT_RANK_STRIPE);
    agent_lock_ranked(&m[AGENT_RANK_STRIPE][1], AGENT_RANK_STRIPE);
}

static void child_work_under_profile(void)
{
    agent_lock_ranked(&m[AGENT_RANK_PROFILE][0], AGENT_RANK_PROFILE);
    agent_work_lock();
}

static void child_note_out_of_order(void)
{
    agent_lock_ranked(&m[AGENT_RANK_SHARD][0], AGENT_RANK_SHARD);
    (void)agent_lock_ranked_note(&m[AGENT_RANK_STRIPE][0], AGENT_RANK_STRIPE, "test");
}

static void child_unlock_never_taken(void)
{
    agent_unlock_ranked(&m[AGENT_RANK_SHARD][1], AGENT_RANK_SHARD);
}

static void test_order_violation_aborts(void **state)
{
    (void)state;
    child_t c = in_child(child_shard_then_registry);
    assert_aborted(&c, "lock order: blocking on a registry lock while holding a shard lock");
    c = in_child(child_two_stripes);
    assert_aborted(&c, "lock order: blocking on a stripe lock while holding a stripe lock");
    c = in_child(child_work_under_profile);
    assert_aborted(&c, "lock order: blocking on a work lock while holding a profile lock");
    c = in_child(child_note_out_of_order);
    assert_aborted(&c, "lock order: blocking on a stripe lock while holding a shard lock");
    c = in_child(child_unlock_never_taken);
    assert_aborted(&c, "delta > 0 || held[r] > 0");
}

/* Out of order but without blocking: a try, a bounded wait, a note in a
 * bounded stretch. None aborts, taken or not. */
static void *hold_stripe(void *arg)
{
    pthread_mutex_lock(&m[AGENT_RANK_STRIPE][1]);
    __atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n((int *)arg, __ATOMIC_ACQUIRE) != 2) usleep(100);
    pthread_mutex_unlock(&m[AGENT_RANK_STRIPE][1]);
    return NULL;
}

static void child_tries_out_of_order(void)
{
    agent_lock_ranked(&m[AGENT_RANK_SHARD][0], AGENT_RANK_SHARD);
    /* a free lock: taken */
    if (!agent_lock_ranked_until(&m[AGENT_RANK_REGISTRY][0], AGENT_RANK_REGISTRY, 0)) _exit(3);
    if (!agent_rank_held(AGENT_RANK_REGISTRY)) _exit(4);
    agent_unlock_ranked(&m[AGENT_RANK_REGISTRY][0], AGENT_RANK_REGISTRY);
    /* a lock another thread holds: one try, or a bounded wait, then no */
    int flag = 0;
    pthread_t th;
    if (pthread_create(&th, NULL, hold_stripe, &flag) != 0) _exit(5);
    while (__atomic_load_n(&flag, __ATOMIC_ACQUIRE) != 1) usleep(100);
    if (agent_lock_ranked_until(&m[AGENT_RANK_STRIPE][1], AGENT_RANK_STRIPE, 0)) _exit(6);
    if (agent_lock_ranked_until(&m[AGENT_RANK_STRIPE][1], AGENT_RANK_STRIPE, agent_mono_ns() + 5000000)) _exit(7);
    if (agent_rank_held(AGENT_RANK_STRIPE)) _exit(8);
    /* a bounded stretch: agent_lock_ranked_note checks no order, waits
     * until the deadline at most */
    agent_bounded_begin(agent_mono_ns() + 5000000, false);
    if (agent_lock_ranked_note(&m[AGENT_RANK_STRIPE][1], AGENT_RANK_STRIPE, "test")) _exit(9);
    if (!agent_lock_ranked_note(&m[AGENT_RANK_STRIPE][0], AGENT_RANK_STRIPE, "test")) _exit(10);
    agent_unlock_ranked(&m[AGENT_RANK_STRIPE][0], AGENT_RANK_STRIPE);
    agent_bounded_end();
    __atomic_store_n(&flag, 2, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    agent_unlock_ranked(&m[AGENT_RANK_SHARD][0], AGENT_RANK_SHARD);
}

static void test_try_out_of_order_is_fine(void **state)
{
    (void)state;
    child_t c = in_child(child_tries_out_of_order);
    assert_clean_exit(&c);
}

/* ------------------------------------------------------------------------ */
/* Bounded stretches                                                        */
/* ------------------------------------------------------------------------ */

static void *hold_registry(void *arg)
{
    pthread_mutex_lock(&m[AGENT_RANK_REGISTRY][1]);
    __atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n((int *)arg, __ATOMIC_ACQUIRE) != 2) usleep(100);
    pthread_mutex_unlock(&m[AGENT_RANK_REGISTRY][1]);
    return NULL;
}

static void test_bounded(void **state)
{
    (void)state;
    int flag = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hold_registry, &flag), 0);
    while (__atomic_load_n(&flag, __ATOMIC_ACQUIRE) != 1) usleep(100);
    pthread_mutex_t *busy = &m[AGENT_RANK_REGISTRY][1];
    /* outside a stretch agent_lock would block; inside, it gives up at
     * the deadline (20 ms here), and the note is kept once */
    uint64_t t0 = agent_mono_ns();
    agent_bounded_begin(t0 + 20000000, true);
    assert_false(agent_lock_note(busy, "registry busy (test)"));
    uint64_t waited = agent_mono_ns() - t0;
    assert_false(agent_lock_ranked_note(busy, AGENT_RANK_REGISTRY, "registry busy (test)"));
    assert_false(agent_rank_held(AGENT_RANK_REGISTRY));
    agent_bounded_end();
    assert_true(waited >= 19000000 && waited < 2000000000);
    char text[256];
    agent_buf_t b;
    agent_buf_init(&b, text, sizeof text);
    agent_incomplete_json(&b);
    assert_string_equal(text, "[\"registry busy (test)\"]");
    /* the deadline 0: one try (agent_lock_until) */
    t0 = agent_mono_ns();
    assert_false(agent_lock_until(busy, 0));
    assert_true(agent_mono_ns() - t0 < 10000000);
    __atomic_store_n(&flag, 2, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    assert_true(agent_lock_until(busy, 0));
    pthread_mutex_unlock(busy);
    agent_incomplete_reset();
    assert_none_held();
}

/* ------------------------------------------------------------------------ */
/* An exit without the work lock                                            */
/* ------------------------------------------------------------------------ */

/* An exit that cannot have the work lock in time (another agent thread
 * keeps it: here a thread that holds it across the fork, so the child sees
 * it held for good) still writes the summary, noting what it skipped; the
 * output services it uses must not take that for misuse. Before
 * AGENT_ASSERT_OUTPUT_SERIAL the debug build aborted here. */
static pthread_mutex_t keeper_go = PTHREAD_MUTEX_INITIALIZER;
static char exit_dir[64];

static void *keep_work_lock(void *arg)
{
    (void)arg;
    agent_work_lock();
    pthread_mutex_lock(&keeper_go);   /* held until the test lets it go */
    pthread_mutex_unlock(&keeper_go);
    agent_work_unlock();
    return NULL;
}

static void exit_without_work_lock(void)
{
    agent_conf_defaults(&agent_conf);
    agent_output_start(exit_dir);
    agent_exit_output();   /* waits AGENT_EXIT_WAIT_NS for the lock, then goes on */
    DIR *d = opendir(exit_dir);
    struct dirent *e;
    bool summary = false;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, "summary.", 8) == 0) summary = true;
    if (d) closedir(d);
    _exit(summary ? 0 : 3);
}

static void test_exit_without_work_lock(void **state)
{
    (void)state;
    strcpy(exit_dir, "/tmp/hw-lock-test.XXXXXX");
    assert_non_null(mkdtemp(exit_dir));
    pthread_mutex_lock(&keeper_go);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, keep_work_lock, NULL), 0);
    for (int i = 0; i < 1000 && agent_work_trylock(); i++) {   /* wait until the keeper has it */
        agent_work_unlock();
        usleep(1000);
    }
    child_t c = in_child(exit_without_work_lock);
    pthread_mutex_unlock(&keeper_go);
    pthread_join(t, NULL);
    if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0)
        fail_msg("the exit without the work lock did not write its summary (status %#x): \"%s\"",
                 c.status, c.err);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", exit_dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_work_held, teardown),
        cmocka_unit_test_teardown(test_work_lend, teardown),
        cmocka_unit_test(test_work_misuse_aborts),
        cmocka_unit_test(test_ranks_in_order),
        cmocka_unit_test(test_order_violation_aborts),
        cmocka_unit_test(test_try_out_of_order_is_fine),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_exit_without_work_lock),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
