/*
 * agent_conf_thread.c - HEAPWATCH_THREAD (agent/conf.c): the accepted
 * values, the default, and one message line for anything else, with the
 * default kept. The loader reads a table here instead of the environment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "agent/conf.h"

static const char *thread_value;     /* HEAPWATCH_THREAD, or NULL */
static char reported[4][600];
static int nreported;

static const char *fake_getenv(const char *name)
{
    return strcmp(name, "HEAPWATCH_THREAD") == 0 ? thread_value : NULL;
}

static void capture(const char *line)
{
    if (nreported < 4) snprintf(reported[nreported], sizeof reported[0], "%s", line);
    nreported++;
}

/* load: the thread mode for value; *bad: the number of messages. */
static int load(const char *value, int *bad)
{
    agent_conf_t c;
    thread_value = value;
    nreported = 0;
    int n = agent_conf_load(&c, fake_getenv, capture);
    assert_int_equal(n, nreported);
    *bad = n;
    return c.thread;
}

static void test_thread_values(void **state)
{
    (void)state;
    int bad;
    assert_int_equal(load(NULL, &bad), CONF_THREAD_AUTO);
    assert_int_equal(bad, 0);
    assert_int_equal(load("", &bad), CONF_THREAD_AUTO);
    assert_int_equal(load("auto", &bad), CONF_THREAD_AUTO);
    assert_int_equal(load("AUTO", &bad), CONF_THREAD_AUTO);
    assert_int_equal(load("on", &bad), CONF_THREAD_ON);
    assert_int_equal(load("1", &bad), CONF_THREAD_ON);
    assert_int_equal(load("off", &bad), CONF_THREAD_OFF);
    assert_int_equal(load("Off", &bad), CONF_THREAD_OFF);
    assert_int_equal(load("0", &bad), CONF_THREAD_OFF);
    assert_int_equal(bad, 0);
}

static void test_thread_bad_values(void **state)
{
    (void)state;
    const char *bad_values[] = { "2", "yes", "00", " off", "off ", "o\nn", "\033[2Joff" };
    for (size_t i = 0; i < sizeof bad_values / sizeof *bad_values; i++) {
        int bad;
        assert_int_equal(load(bad_values[i], &bad), CONF_THREAD_AUTO);   /* the default kept */
        assert_int_equal(bad, 1);
        assert_non_null(strstr(reported[0], "HEAPWATCH_THREAD="));
        assert_non_null(strstr(reported[0], "using auto"));
        /* One line: the only newline ends it, no control character. */
        const char *nl = strchr(reported[0], '\n');
        assert_non_null(nl);
        assert_int_equal(nl[1], 0);
        for (const char *p = reported[0]; p < nl; p++) assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_values),
        cmocka_unit_test(test_thread_bad_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
