/*
 * agent_conf.c - the HEAPWATCH_* parsers and loader (agent/conf.c), and the
 * no-malloc text buffer (agent/out.c), without any preload.
 *
 * The loader reads variables through a table here instead of the
 * environment and reports through a capture function, so every bad value
 * can be checked for: the default kept, exactly one line, naming the
 * variable and the accepted form.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "agent/agent_internal.h"

static void test_parse_u64(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_true(agent_conf_parse_u64("0", 0, 10, &v) && v == 0);
    assert_true(agent_conf_parse_u64("524288", 0, 1u << 30, &v) && v == 524288);
    assert_true(agent_conf_parse_u64("18446744073709551615", 0, UINT64_MAX, &v) && v == UINT64_MAX);
    v = 7;
    assert_false(agent_conf_parse_u64("18446744073709551616", 0, UINT64_MAX, &v));
    assert_false(agent_conf_parse_u64("", 0, 10, &v));
    assert_false(agent_conf_parse_u64("-1", 0, 10, &v));
    assert_false(agent_conf_parse_u64(" 1", 0, 10, &v));
    assert_false(agent_conf_parse_u64("1 ", 0, 10, &v));
    assert_false(agent_conf_parse_u64("1k", 0, 10000, &v));
    assert_false(agent_conf_parse_u64("0x10", 0, 100, &v));
    assert_false(agent_conf_parse_u64("11", 0, 10, &v));
    assert_false(agent_conf_parse_u64("4", 5, 10, &v));
    assert_false(agent_conf_parse_u64(NULL, 0, 10, &v));
    assert_int_equal(v, 7);    /* untouched on failure */
}

static void test_parse_seconds(void **state)
{
    (void)state;
    uint64_t ns = 0;
    const uint64_t max = 100ull * 365 * 24 * 3600 * 1000000000ull;
    assert_true(agent_conf_parse_seconds("1", 0, max, &ns) && ns == 1000000000ull);
    assert_true(agent_conf_parse_seconds("0.25", 0, max, &ns) && ns == 250000000ull);
    assert_true(agent_conf_parse_seconds(".5", 0, max, &ns) && ns == 500000000ull);
    assert_true(agent_conf_parse_seconds("2.000000001", 0, max, &ns) && ns == 2000000001ull);
    assert_true(agent_conf_parse_seconds("0", 0, max, &ns) && ns == 0);
    assert_false(agent_conf_parse_seconds("0.0000000001", 0, max, &ns));   /* 10 digits */
    assert_false(agent_conf_parse_seconds("1.", 0, max, &ns));
    assert_false(agent_conf_parse_seconds(".", 0, max, &ns));
    assert_false(agent_conf_parse_seconds("1s", 0, max, &ns));
    assert_false(agent_conf_parse_seconds("-1", 0, max, &ns));
    assert_false(agent_conf_parse_seconds("1e3", 0, max, &ns));
    assert_false(agent_conf_parse_seconds("nan", 0, max, &ns));
    assert_false(agent_conf_parse_seconds("0.001", 10000000, max, &ns));   /* below min */
    assert_false(agent_conf_parse_seconds("99999999999999999999", 0, max, &ns));
}

static void test_parse_signal(void **state)
{
    (void)state;
    int s = 0;
    assert_true(agent_conf_parse_signal("USR1", &s) && s == SIGUSR1);
    assert_true(agent_conf_parse_signal("sigusr2", &s) && s == SIGUSR2);
    assert_true(agent_conf_parse_signal("SIGPROF", &s) && s == SIGPROF);
    assert_true(agent_conf_parse_signal("12", &s) && s == 12);
    assert_true(agent_conf_parse_signal("RTMIN", &s) && s == SIGRTMIN);
    assert_true(agent_conf_parse_signal("SIGRTMIN+3", &s) && s == SIGRTMIN + 3);
    assert_false(agent_conf_parse_signal("KILL", &s));
    assert_false(agent_conf_parse_signal("9", &s));
    assert_false(agent_conf_parse_signal("SEGV", &s));
    assert_false(agent_conf_parse_signal("SIGSTOP", &s));
    assert_false(agent_conf_parse_signal("0", &s));
    assert_false(agent_conf_parse_signal("65", &s));
    assert_false(agent_conf_parse_signal("RTMIN+99", &s));
    assert_false(agent_conf_parse_signal("RTMIN-1", &s));
    assert_false(agent_conf_parse_signal("USR3", &s));
    assert_false(agent_conf_parse_signal("", &s));
}

static void test_parse_hostport(void **state)
{
    (void)state;
    char host[64];
    uint16_t port = 0;
    assert_true(agent_conf_parse_hostport("127.0.0.1:6060", host, sizeof host, &port));
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6060);
    assert_true(agent_conf_parse_hostport("localhost:1", host, sizeof host, &port));
    assert_true(agent_conf_parse_hostport("[::1]:65535", host, sizeof host, &port));
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
    assert_false(agent_conf_parse_hostport("::1:80", host, sizeof host, &port));
    assert_false(agent_conf_parse_hostport("host", host, sizeof host, &port));
    assert_false(agent_conf_parse_hostport(":80", host, sizeof host, &port));
    assert_false(agent_conf_parse_hostport("h:0", host, sizeof host, &port));
    assert_false(agent_conf_parse_hostport("h:65536", host, sizeof host, &port));
    assert_false(agent_conf_parse_hostport("h:80x", host, sizeof host, &port));
    assert_false(agent_conf_parse_hostport("[::1]80", host, sizeof host, &port));
    char tiny[4];
    assert_false(agent_conf_parse_hostport("longhost:80", tiny, sizeof tiny, &port));
}

/* A fake environment and a capture of reported lines. */
static const char *fake_env[32][2];
static char reported[16][600];
static int nreported;

static const char *fake_getenv(const char *name)
{
    for (int i = 0; fake_env[i][0]; i++)
        if (strcmp(fake_env[i][0], name) == 0) return fake_env[i][1];
    return NULL;
}

static void capture(const char *line)
{
    if (nreported < 16) snprintf(reported[nreported], sizeof reported[0], "%s", line);
    nreported++;
}

static void set_env(const char *const *pairs)
{
    memset(fake_env, 0, sizeof fake_env);
    for (int i = 0; pairs[2 * i]; i++) {
        fake_env[i][0] = pairs[2 * i];
        fake_env[i][1] = pairs[2 * i + 1];
    }
    nreported = 0;
}

static void test_load_defaults(void **state)
{
    (void)state;
    agent_conf_t c;
    set_env((const char *[]){ NULL });
    assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 0);
    assert_int_equal(nreported, 0);
    assert_string_equal(c.out_dir, "heapwatch-out");
    assert_int_equal(c.rate, 524288);
    assert_int_equal(c.interval_ns, 1000000000ull);
    assert_int_equal(c.window_ns, 5000000000ull);
    assert_int_equal(c.warn, 500);
    assert_int_equal(c.crit, 2000);
    assert_int_equal(c.profile_interval_ns, 0);
    assert_int_equal(c.signal, 0);
    assert_string_equal(c.http_host, "");
}

static void test_load_good_values(void **state)
{
    (void)state;
    agent_conf_t c;
    set_env((const char *[]){ "HEAPWATCH_OUT", "/tmp/x", "HEAPWATCH_RATE", "1",
                              "HEAPWATCH_INTERVAL", "0.5", "HEAPWATCH_WINDOW", "2",
                              "HEAPWATCH_WARN", "10", "HEAPWATCH_CRIT", "20",
                              "HEAPWATCH_SUSTAIN", "0", "HEAPWATCH_GRACE", "0",
                              "HEAPWATCH_PROFILE_INTERVAL", "1.5", "HEAPWATCH_SIGNAL", "USR2",
                              "HEAPWATCH_HTTP", "127.0.0.1:6060", NULL });
    assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 0);
    assert_int_equal(nreported, 0);
    assert_string_equal(c.out_dir, "/tmp/x");
    assert_int_equal(c.rate, 1);
    assert_int_equal(c.interval_ns, 500000000ull);
    assert_int_equal(c.window_ns, 2000000000ull);
    assert_int_equal(c.warn, 10);
    assert_int_equal(c.crit, 20);
    assert_int_equal(c.sustain_ns, 0);
    assert_int_equal(c.grace_ns, 0);
    assert_int_equal(c.profile_interval_ns, 1500000000ull);
    assert_int_equal(c.signal, SIGUSR2);
    assert_string_equal(c.http_host, "127.0.0.1");
    assert_int_equal(c.http_port, 6060);
}

/* Every variable, one bad value at a time: one line naming it, default kept. */
static void test_load_each_bad_value(void **state)
{
    (void)state;
    static const char *bad[][2] = {
        { "HEAPWATCH_OUT", "" }, { "HEAPWATCH_RATE", "abc" }, { "HEAPWATCH_RATE", "-5" },
        { "HEAPWATCH_RATE", "99999999999999999999" }, { "HEAPWATCH_INTERVAL", "0" },
        { "HEAPWATCH_INTERVAL", "fast" }, { "HEAPWATCH_WINDOW", "-1" },
        { "HEAPWATCH_WARN", "0" }, { "HEAPWATCH_WARN", "1.5" }, { "HEAPWATCH_CRIT", "x" },
        { "HEAPWATCH_SUSTAIN", "forever" }, { "HEAPWATCH_GRACE", "-3" },
        { "HEAPWATCH_PROFILE_INTERVAL", "0.01" }, { "HEAPWATCH_PROFILE_INTERVAL", "1m" },
        { "HEAPWATCH_SIGNAL", "KILL" }, { "HEAPWATCH_SIGNAL", "BOGUS" },
        { "HEAPWATCH_HTTP", "6060" }, { "HEAPWATCH_HTTP", "host:99999" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        agent_conf_t c, d;
        agent_conf_defaults(&d);
        set_env((const char *[]){ bad[i][0], bad[i][1], NULL });
        assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 1);
        assert_int_equal(nreported, 1);
        const char *line = reported[0];
        assert_non_null(strstr(line, bad[i][0]));
        assert_non_null(strstr(line, "expected"));
        assert_true(strncmp(line, "heapwatch: ", 11) == 0);
        assert_int_equal(line[strlen(line) - 1], '\n');
        assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);   /* one line */
        assert_memory_equal(&c, &d, sizeof c);   /* every default kept */
    }
}

static void test_load_hostile_value_stays_one_line(void **state)
{
    (void)state;
    agent_conf_t c;
    static char longval[5000];
    memset(longval, 'x', sizeof longval - 1);
    longval[10] = '\n';
    longval[20] = '\033';
    set_env((const char *[]){ "HEAPWATCH_RATE", longval, NULL });
    assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 1);
    assert_int_equal(nreported, 1);
    assert_true(strlen(reported[0]) < 400);
    assert_ptr_equal(strchr(reported[0], '\n'), reported[0] + strlen(reported[0]) - 1);
    assert_null(strchr(reported[0], '\033'));
    /* warn above crit: crit wins, reported once. */
    set_env((const char *[]){ "HEAPWATCH_WARN", "3000", NULL });
    assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 1);
    assert_int_equal(c.warn, 2000);
    assert_non_null(strstr(reported[0], "HEAPWATCH_WARN"));
}

static void test_text_buffer(void **state)
{
    (void)state;
    char mem[64];
    agent_buf_t b;
    agent_buf_init(&b, mem, sizeof mem);
    agent_buf_u64(&b, 0);
    agent_buf_str(&b, " ");
    agent_buf_u64(&b, UINT64_MAX);
    agent_buf_str(&b, " ");
    agent_buf_i64(&b, INT64_MIN);
    assert_string_equal(mem, "0 18446744073709551615 -9223372036854775808");
    assert_false(b.overflow);
    agent_buf_init(&b, mem, sizeof mem);
    agent_buf_fixed(&b, 1234567, 3);
    agent_buf_str(&b, " ");
    agent_buf_fixed(&b, -5, 2);
    agent_buf_str(&b, " ");
    agent_buf_fixed(&b, 42, 0);
    assert_string_equal(mem, "1234.567 -0.05 42");
    agent_buf_init(&b, mem, sizeof mem);
    agent_buf_json_str(&b, "a\"b\\c\n\x01");
    assert_string_equal(mem, "\"a\\\"b\\\\c\\u000a\\u0001\"");
    char tiny[8];
    agent_buf_init(&b, tiny, sizeof tiny);
    agent_buf_str(&b, "0123456789");
    assert_true(b.overflow);
    assert_string_equal(tiny, "0123456");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_parse_seconds),
        cmocka_unit_test(test_parse_signal),
        cmocka_unit_test(test_parse_hostport),
        cmocka_unit_test(test_load_defaults),
        cmocka_unit_test(test_load_good_values),
        cmocka_unit_test(test_load_each_bad_value),
        cmocka_unit_test(test_load_hostile_value_stays_one_line),
        cmocka_unit_test(test_text_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
