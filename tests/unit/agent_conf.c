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

#include "agent/buf.h"
#include "agent/conf.h"

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
    /* The accepted set: USR1, USR2, the real-time signals. */
    assert_true(agent_conf_parse_signal("USR1", &s) && s == SIGUSR1);
    assert_true(agent_conf_parse_signal("sigusr2", &s) && s == SIGUSR2);
    assert_true(agent_conf_parse_signal("SIGUSR1", &s) && s == SIGUSR1);
    assert_true(agent_conf_parse_signal("10", &s) && s == SIGUSR1);
    assert_true(agent_conf_parse_signal("12", &s) && s == SIGUSR2);
    assert_true(agent_conf_parse_signal("RTMIN", &s) && s == SIGRTMIN);
    assert_true(agent_conf_parse_signal("SIGRTMIN+3", &s) && s == SIGRTMIN + 3);
    assert_true(agent_conf_parse_signal("rtmin+1", &s) && s == SIGRTMIN + 1);
    assert_true(agent_conf_parse_signal("RTMAX", &s) && s == SIGRTMAX);
    assert_true(agent_conf_parse_signal("SIGRTMAX-2", &s) && s == SIGRTMAX - 2);
    char num[32];
    snprintf(num, sizeof num, "%d", SIGRTMIN);
    assert_true(agent_conf_parse_signal(num, &s) && s == SIGRTMIN);
    snprintf(num, sizeof num, "%d", SIGRTMAX);
    assert_true(agent_conf_parse_signal(num, &s) && s == SIGRTMAX);
    snprintf(num, sizeof num, "RTMIN+%d", SIGRTMAX - SIGRTMIN);
    assert_true(agent_conf_parse_signal(num, &s) && s == SIGRTMAX);
    /* Signals with a meaning of their own, by name and by number. */
    static const char *refused[] = {
        "TERM", "SIGTERM", "15", "INT", "2", "CHLD", "17", "PIPE", "13", "TSTP", "20",
        "HUP", "QUIT", "ALRM", "CONT", "TTIN", "TTOU", "URG", "WINCH", "IO", "PROF",
        "VTALRM", "XCPU", "XFSZ", "PWR", "KILL", "9", "SEGV", "SIGSTOP", "ABRT", "BUS",
        "0", "32", "33", "65", "RTMIN+99", "RTMIN-1", "RTMAX+1", "RTMAX-99", "RTMIN+",
        "RTMIN+x", "USR3", "USR1 ", " USR1", "USR1\n", "", "SIG", "-10", "+10",
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        s = 77;
        if (agent_conf_parse_signal(refused[i], &s)) fail_msg("accepted \"%s\"", refused[i]);
        assert_int_equal(s, 77);   /* untouched */
    }
    snprintf(num, sizeof num, "%d", SIGRTMIN - 1);
    assert_false(agent_conf_parse_signal(num, &s));
    assert_false(agent_conf_parse_signal(NULL, &s));
    for (int sig = 1; sig < NSIG; sig++)
        assert_int_equal(agent_conf_signal_allowed(sig),
                         sig == SIGUSR1 || sig == SIGUSR2 || (sig >= SIGRTMIN && sig <= SIGRTMAX));
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
    assert_true(agent_conf_parse_hostport("h:0", host, sizeof host, &port));   /* each process its own */
    assert_int_equal(port, 0);
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
        { "HEAPWATCH_SIGNAL", "TERM" }, { "HEAPWATCH_SIGNAL", "CHLD" }, { "HEAPWATCH_SIGNAL", "PIPE" },
        { "HEAPWATCH_SIGNAL", "INT" }, { "HEAPWATCH_SIGNAL", "TSTP" }, { "HEAPWATCH_SIGNAL", "15" },
        { "HEAPWATCH_SIGNAL", "TERM\nx" }, { "HEAPWATCH_HTTP", "a\nb:6060" },
        { "HEAPWATCH_HTTP", "a b:6060" }, { "HEAPWATCH_RATE", "12\nx" }, { "HEAPWATCH_RATE", "1\r\n\t" },
        { "HEAPWATCH_HTTP", "6060" }, { "HEAPWATCH_HTTP", "host:99999" },
        { "HEAPWATCH_FSYNC", "yes" }, { "HEAPWATCH_FSYNC", "2" }, { "HEAPWATCH_FSYNC", "exit" },
        { "HEAPWATCH_FSYNC", " on" }, { "HEAPWATCH_FSYNC", "on\nx" },
        { "HEAPWATCH_ONLY", "a/b" }, { "HEAPWATCH_ONLY", "a,,b" }, { "HEAPWATCH_ONLY", "," },
        { "HEAPWATCH_EXCLUDE", "sh, " }, { "HEAPWATCH_EXCLUDE", "x\ny" }, { "HEAPWATCH_ONLY", " " },
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

/* HEAPWATCH_FSYNC: off by default; off/0 and on/1/all in any case; a bad
 * value names the variable and keeps off (above). */
static void test_load_fsync(void **state)
{
    (void)state;
    agent_conf_t c;
    set_env((const char *[]){ NULL });
    assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 0);
    assert_false(c.fsync);
    static const char *on[] = { "on", "ON", "1", "all", "All" }, *off[] = { "off", "Off", "0", "" };
    for (size_t i = 0; i < sizeof on / sizeof *on; i++) {
        set_env((const char *[]){ "HEAPWATCH_FSYNC", on[i], NULL });
        assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 0);
        assert_true(c.fsync);
    }
    for (size_t i = 0; i < sizeof off / sizeof *off; i++) {
        set_env((const char *[]){ "HEAPWATCH_FSYNC", off[i], NULL });
        assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 0);
        assert_false(c.fsync);
    }
    set_env((const char *[]){ "HEAPWATCH_FSYNC", "sometimes", NULL });
    assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 1);
    assert_false(c.fsync);
    assert_non_null(strstr(reported[0], "HEAPWATCH_FSYNC=\"sometimes\" is not valid"));
    assert_non_null(strstr(reported[0], "using off"));
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

/* escaped: agent_buf_str_escaped(s, max) into a fresh buffer. */
static const char *escaped(const char *s, size_t max)
{
    static char mem[2048];
    agent_buf_t b;
    agent_buf_init(&b, mem, sizeof mem);
    agent_buf_str_escaped(&b, s, max);
    assert_false(b.overflow);
    return mem;
}

static void test_escaped(void **state)
{
    (void)state;
    assert_string_equal(escaped("", 200), "");
    assert_string_equal(escaped("/tmp/out dir", 200), "/tmp/out dir");
    assert_string_equal(escaped("a\nb", 200), "a\\nb");
    assert_string_equal(escaped("a\tb", 200), "a\\tb");
    assert_string_equal(escaped("a\\b\"c", 200), "a\\\\b\\\"c");
    assert_string_equal(escaped("\r\x01\x1b[31m\x7f", 200), "\\x0d\\x01\\x1b[31m\\x7f");
    assert_string_equal(escaped("caf\xc3\xa9 \xe2\x82\xac", 200), "caf\xc3\xa9 \xe2\x82\xac");   /* UTF-8 kept */
    assert_string_equal(escaped("\x80\xff", 200), "\x80\xff");   /* other bytes pass */
    /* The cap: at most max bytes of the value, then "...". */
    assert_string_equal(escaped("abcdef", 6), "abcdef");
    assert_string_equal(escaped("abcdefg", 6), "abcdef...");
    assert_string_equal(escaped("abcd\n", 5), "abcd...");   /* never half an escape */
    assert_string_equal(escaped("abcd\x01", 7), "abcd...");
    assert_string_equal(escaped("abcd\xc3\xa9", 5), "abcd...");   /* never half a character */
    static char big[5000];
    memset(big, '\n', sizeof big - 1);
    const char *e = escaped(big, AGENT_QUOTE_MAX);
    assert_int_equal(strlen(e), AGENT_QUOTE_MAX + 3);
    assert_null(strchr(e, '\n'));
    for (int c = 1; c < 256; c++) {   /* no byte makes a second line or a terminal escape */
        char one[2] = { (char)c, 0 };
        e = escaped(one, 200);
        assert_null(strchr(e, '\n'));
        assert_null(strchr(e, '\r'));
        assert_null(strchr(e, '\033'));
        assert_null(strchr(e, '\x7f'));
    }
}

/* A newline in HEAPWATCH_OUT: the loader keeps it (a directory may be so
 * named), the message about it is escaped elsewhere (output.c, report_out_dir). Here: every
 * bad value's line quotes it escaped. */
static void test_load_value_escaped(void **state)
{
    (void)state;
    agent_conf_t c;
    set_env((const char *[]){ "HEAPWATCH_RATE", "12\nx\x1b", NULL });
    assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 1);
    assert_int_equal(nreported, 1);
    assert_non_null(strstr(reported[0], "HEAPWATCH_RATE=\"12\\nx\\x1b\" is not valid"));
    set_env((const char *[]){ "HEAPWATCH_SIGNAL", "TERM", NULL });
    assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 1);
    assert_int_equal(c.signal, 0);
    assert_non_null(strstr(reported[0], "HEAPWATCH_SIGNAL=\"TERM\""));
    assert_non_null(strstr(reported[0], "USR1, USR2, RTMIN+n"));
}

/* HEAPWATCH_ONLY / HEAPWATCH_EXCLUDE: globs as a shell's, matched against
 * the executable's name or argv[0]'s; spaces around a glob dropped. */
static void test_glob(void **state)
{
    (void)state;
    static const struct { const char *pat, *name; bool match; } cases[] = {
        { "sort", "sort", true }, { "sort", "sorts", false }, { "sort", "sor", false },
        { "*", "anything", true }, { "*", "", true }, { "test_*", "test_map", true },
        { "test_*", "mytest_map", false }, { "*_test", "map_test", true }, { "*a*b*", "xxaxxbxx", true },
        { "*a*b*", "xxbxxaxx", false }, { "?", "a", true }, { "?", "ab", false },
        { "gcc-1[0-9]", "gcc-12", true }, { "gcc-1[0-9]", "gcc-1x", false }, { "[!s]*", "sh", false },
        { "[!s]*", "bash", true }, { "[^s]*", "bash", true }, { "[]]", "]", true },
        { "[a-]", "-", true }, { "a\\*", "a*", true }, { "a\\*", "ab", false }, { "[abc", "[abc", true },
        { "[abc", "a", false }, { "**x", "aax", true }, { "*.py", "a.py.bak", false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_int_equal(agent_conf_glob(cases[i].pat, strlen(cases[i].pat), cases[i].name), cases[i].match);
    /* len bounds the pattern: a list's element is matched in place. */
    assert_true(agent_conf_glob("sort,sh", 4, "sort"));
    assert_false(agent_conf_glob("sort,sh", 4, "sort,sh"));
}

static void test_only_exclude(void **state)
{
    (void)state;
    agent_conf_t c;
    set_env((const char *[]){ "HEAPWATCH_ONLY", " test_*, map_bench ", "HEAPWATCH_EXCLUDE", "test_slow", NULL });
    assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 0);
    assert_string_equal(c.only, "test_*,map_bench");
    assert_true(agent_conf_profiles(&c, "test_map", "test_map"));
    assert_true(agent_conf_profiles(&c, "map_bench", NULL));
    assert_true(agent_conf_profiles(&c, "python3.11", "test_x"));   /* by argv[0] */
    assert_false(agent_conf_profiles(&c, "sh", "sh"));
    assert_false(agent_conf_profiles(&c, NULL, NULL));
    assert_false(agent_conf_profiles(&c, "test_slow", "test_slow"));
    set_env((const char *[]){ "HEAPWATCH_EXCLUDE", "sh,make,sed", NULL });
    assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 0);
    assert_true(agent_conf_profiles(&c, "cc1", "cc1"));
    assert_true(agent_conf_profiles(&c, NULL, NULL));
    assert_false(agent_conf_profiles(&c, "dash", "sh"));   /* either name */
    set_env((const char *[]){ NULL });
    assert_int_equal(agent_conf_load(&c, fake_getenv, capture), 0);
    assert_true(agent_conf_profiles(&c, "anything", NULL));
    char big[2 * CONF_NAMES_MAX];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char out[CONF_NAMES_MAX];
    assert_false(agent_conf_parse_names(big, out, sizeof out));
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
        cmocka_unit_test(test_load_fsync),
        cmocka_unit_test(test_load_hostile_value_stays_one_line),
        cmocka_unit_test(test_text_buffer),
        cmocka_unit_test(test_escaped),
        cmocka_unit_test(test_load_value_escaped),
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_only_exclude),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
