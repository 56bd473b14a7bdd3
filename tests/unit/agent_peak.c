/*
 * agent_peak.c - the copy of the stacks at the peak (agent/peak.c),
 * without any preload.
 *
 * A rise of live bytes copies the stacks with something in use; a rise of
 * less than AGENT_PEAK_MARGIN_PCT over the last copy does not replace it,
 * a larger one does; the copy holds each stack's totals as they were when
 * it was taken, not as they are when read; a copy held by a reader (the
 * exit) is neither replaced nor waited for, and a second reader is told
 * it is busy; the fork child can copy again.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "agent/peak.h"
#include "agent/stacks.h"
#include "agent/unwind.h"
#include "test_util.h"

#define CODE UINT64_C(0x0000555555554000) /* fake return addresses: never read */

static agent_stack_t *a, *b;

static int group_setup(void **state)
{
    (void)state;
    agent_unwind_init();
    if (agent_stacks_init() != 0) return -1;
    uint64_t pa[2] = { CODE + 0x10, CODE + 0x20 };
    uint64_t pb[2] = { CODE + 0x30, CODE + 0x40 };
    a = agent_stack_intern(pa, 2);
    b = agent_stack_intern(pb, 2);
    return a && b && a != b ? 0 : -1;
}

static void sample(agent_stack_t *s, uint64_t bytes)
{
    __atomic_add_fetch(&s->shares[AGENT_STACK_SHARED].alloc_objects, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->shares[AGENT_STACK_SHARED].alloc_bytes, bytes, __ATOMIC_RELAXED);
}

static void sample_freed(agent_stack_t *s, uint64_t bytes)
{
    __atomic_add_fetch(&s->shares[AGENT_STACK_SHARED].free_objects, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->shares[AGENT_STACK_SHARED].free_bytes, bytes, __ATOMIC_RELAXED);
}

/* held_for: the totals of s in the copy, or NULL when s is not in it. */
static const agent_peak_entry_t *held_for(const agent_peak_entry_t *e, size_t n, const agent_stack_t *s)
{
    for (size_t i = 0; i < n; i++)
        if (e[i].stack == s) return &e[i];
    return NULL;
}

static void test_copies_and_margin(void **state)
{
    (void)state;
    const agent_peak_entry_t *e;
    size_t n;
    uint64_t live, ns;
    assert_int_equal(agent_peak_take(&e, &n, &live, &ns), 0);   /* no copy yet */

    sample(a, 1000);
    agent_peak_raised(1000, 7);
    assert_int_equal(agent_peak_take(&e, &n, &live, &ns), 1);
    assert_int_equal(live, 1000);
    assert_int_equal(ns, 7);
    assert_non_null(held_for(e, n, a));
    assert_null(held_for(e, n, b));   /* nothing in use: not copied */
    agent_peak_give();

    /* b grows, a is freed: a rise of 9 % keeps the old copy... */
    sample(b, 5000);
    sample_freed(a, 1000);
    agent_peak_raised(1090, 8);
    assert_int_equal(agent_peak_take(&e, &n, &live, &ns), 1);
    assert_int_equal(live, 1000);
    const agent_peak_entry_t *ea = held_for(e, n, a);
    assert_non_null(ea);
    assert_int_equal(ea->totals.inuse_bytes, 1000);   /* as it was, not as it is */
    agent_peak_give();

    /* ...one of 10 % replaces it. */
    agent_peak_raised(1100, 9);
    assert_int_equal(agent_peak_take(&e, &n, &live, &ns), 1);
    assert_int_equal(live, 1100);
    assert_null(held_for(e, n, a));
    const agent_peak_entry_t *eb = held_for(e, n, b);
    assert_non_null(eb);
    assert_int_equal(eb->totals.inuse_bytes, 5000);
    assert_int_equal(eb->totals.inuse_objects, 1);
    agent_peak_give();
}

static void test_held_copy_is_not_replaced_nor_waited_for(void **state)
{
    (void)state;
    const agent_peak_entry_t *e, *e2;
    size_t n, n2;
    uint64_t live, ns, live2, ns2;
    assert_int_equal(agent_peak_take(&e, &n, &live, &ns), 1);
    uint64_t before = live;
    agent_peak_raised(before * 4, 10);                               /* skipped, not waited */
    assert_int_equal(agent_peak_take(&e2, &n2, &live2, &ns2), -1);  /* a second reader: busy */
    agent_peak_give();
    assert_int_equal(agent_peak_take(&e, &n, &live, &ns), 1);
    assert_int_equal(live, before);
    agent_peak_give();
    /* The next rise takes the copy that was skipped. */
    agent_peak_raised(before * 4, 11);
    assert_int_equal(agent_peak_take(&e, &n, &live, &ns), 1);
    assert_int_equal(live, before * 4);
    agent_peak_give();
}

static void test_fork_child_copies_again(void **state)
{
    (void)state;
    const agent_peak_entry_t *e;
    size_t n;
    uint64_t live, ns;
    /* A fork while the copies were held: the holder is not in the child. */
    assert_int_equal(agent_peak_take(&e, &n, &live, &ns), 1);
    agent_peak_postfork_child();
    agent_peak_raised(live * 2, 12);
    assert_int_equal(agent_peak_take(&e, &n, &live, &ns), 1);
    assert_int_equal(ns, 12);
    agent_peak_give();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copies_and_margin),
        cmocka_unit_test(test_held_copy_is_not_replaced_nor_waited_for),
        cmocka_unit_test(test_fork_child_copies_again),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
