/*
 * tools_check.c - `heapwatch check`'s limits (tools/check.c), run
 * in-process on real result files: each limit passes at the value it
 * limits and fails just over it, with the line that says so; a limit on a
 * field the results lack falls back where check says it does, or is noted
 * and not failed; the exit status orders a broken limit before an
 * unreadable file.
 */
#include "tools_test.h"

#define T0 1700000000.0

static char out[65536];

/* The leaky process of the integration fixtures, at the agent's format:
 * live at exit 3145728 bytes in 36000 objects, peak 4194304 bytes. */
static void write_summary(const char *omit)
{
    static const char *const lines[] = {
        "\"pid\": 200", "\"ppid\": 1", "\"exe\": \"/opt/app/leaky\"", "\"start_time\": 1700000000.000000",
        "\"end_time\": 1700000012.000000", "\"duration_s\": 12.000000", "\"mallocs\": 60000", "\"frees\": 24000",
        "\"live_objects\": 36000", "\"live_bytes\": 3145728", "\"peak_live_bytes\": 4194304",
        "\"alloc_bytes\": 9000000", "\"free_bytes\": 5854272", "\"rate\": 524288",
    };
    char text[2048] = "{";
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        if (omit && strncmp(lines[i] + 1, omit, strlen(omit)) == 0 && lines[i][strlen(omit) + 1] == '"') continue;
        strcat(text, strlen(text) > 1 ? ",\n  " : "\n  ");
        strcat(text, lines[i]);
    }
    strcat(text, "\n}\n");
    tt_write_str("summary.200.json", text);
}

/* Twelve records, one a second: the objects_rate peaks at 5012/s at +5 s,
 * bytes_rate at 262144 B/s at +6 s; live bytes end at 3000000, the
 * highest live bytes is 3500000 at +10 s (no peak field: omit_peak). */
static void write_timeline(bool with_rates, bool omit_peak)
{
    tt_zstd_t z;
    tt_zstd_open(&z, "timeline.200.jsonl.zst");
    for (int i = 1; i <= 12; i++) {
        double live = i == 10 ? 3500000 : i == 12 ? 3000000 : 250000.0 * i;
        char line[1024];
        snprintf(line, sizeof line, "%s", tt_record(T0, i, 5000.0 * i, 2000.0 * i, live, i == 5 ? 5012 : 100,
                                                     i == 6 ? 262144 : 1024));
        if (!with_rates) {
            char *r = strstr(line, "\"objects_rate\"");
            char *e = strstr(line, "\"window_s\"");
            memmove(r, e, strlen(e) + 1);
        }
        if (omit_peak) {
            char *r = strstr(line, ", \"peak_live_bytes\"");
            char *e = strstr(line, ", \"map_count\"");
            memmove(r, e, strlen(e) + 1);
        }
        tt_zstd_line(&z, line);
    }
    tt_zstd_close(&z, 1);
}

static void write_alerts(const char *levels)
{
    FILE *f = fopen(tt_path("alerts.200.jsonl"), "w");
    assert_non_null(f);
    for (const char *l = levels; *l; l++) {
        bool crit = *l == 'C' || *l == 'c', recovery = *l == 'c' || *l == 'w';
        fprintf(f,
                "{\"time\": %.6f, \"pid\": 200, \"exe\": \"leaky\", \"event\": \"%s\", \"level\": \"%s\", "
                "\"metric\": \"objects_rate\", \"value\": %s, \"threshold\": %d, \"window_s\": 5.000, "
                "\"live_objects\": 25000, \"live_bytes\": 2000000, \"bytes_rate\": 1.000, \"growth_objects\": 1, "
                "\"growth_bytes\": 1, \"profile\": null, \"top\": [{\"stack\": [\"malloc\", \"leak_node\", "
                "\"build_list\"], \"function\": \"leak_node\", \"growth_bytes\": 1048576, \"growth_objects\": 20000}]}\n",
                T0 + 3 + (double)(l - levels), recovery ? "recovery" : "alert", crit ? "crit" : "warn",
                crit ? "5012.000" : "612.000", crit ? 2000 : 500);
    }
    fclose(f);
}

/* check: runs check on the scratch directory; *rc its status. */
#define check(rc, ...) ((rc) = tt_run_check(out, sizeof out, __VA_ARGS__, (char *)NULL))

/* at_limit: the limit passes at value and fails one unit over (with the
 * FAIL line holding want). */
static void at_limit(const char *opt, const char *at, const char *under, const char *want)
{
    int rc;
    check(rc, "--fail-on", "none", opt, at);
    if (rc != 0) fail_msg("%s %s: exit %d, expected 0:\n%s", opt, at, rc, out);
    assert_contains(out, "heapwatch check: ok   pid 200 (leaky)");
    check(rc, "--fail-on", "none", opt, under);
    if (rc != 1) fail_msg("%s %s: exit %d, expected 1:\n%s", opt, under, rc, out);
    assert_contains(out, want);
}

static void test_max_live_bytes(void **state)
{
    (void)state;
    write_summary(NULL);
    write_timeline(true, false);
    at_limit("--max-live-bytes", "3145728", "3145727",
             "FAIL pid 200 (leaky): live_bytes at exit 3145728 (3.00 MiB) > 3145727 (3.00 MiB) (--max-live-bytes)\n");
    at_limit("--max-live-bytes", "3M", "3145727B", "> 3145727 (3.00 MiB)");
    at_limit("--max-live-bytes", "3MiB", "2.99M", "(--max-live-bytes)");
    at_limit("--max-live-bytes", "0.003G", "0.0029G", "(--max-live-bytes)");
}

static void test_max_live_objects(void **state)
{
    (void)state;
    write_summary(NULL);
    write_timeline(true, false);
    at_limit("--max-live-objects", "36000", "35999",
             "FAIL pid 200 (leaky): live_objects at exit 36,000 > 35,999 (--max-live-objects)\n");
    at_limit("--max-live-objects", "36k", "35.999k", "> 35,999");
}

static void test_max_peak_bytes(void **state)
{
    (void)state;
    write_summary(NULL);
    write_timeline(true, false);
    at_limit("--max-peak-bytes", "4194304", "4194303",
             "FAIL pid 200 (leaky): peak_live_bytes 4194304 (4.00 MiB) > 4194303 (4.00 MiB) (--max-peak-bytes)\n");
    at_limit("--max-peak-bytes", "4M", "4095.99K", "(--max-peak-bytes)");
}

static void test_max_objects_rate(void **state)
{
    (void)state;
    write_summary(NULL);
    write_timeline(true, false);
    at_limit("--max-objects-rate", "5012", "5011.999",
             "FAIL pid 200 (leaky): objects_rate 5012/s > 5012/s (--max-objects-rate) at +5.0s; 1 of 12 timeline "
             "records above\n");
    at_limit("--max-objects-rate", "5.012k", "5011", "objects_rate 5012/s > 5011/s (--max-objects-rate)");
}

static void test_max_bytes_rate(void **state)
{
    (void)state;
    write_summary(NULL);
    write_timeline(true, false);
    at_limit("--max-bytes-rate", "256K", "262143",
             "FAIL pid 200 (leaky): bytes_rate 256.0 KiB/s > 256.0 KiB/s (--max-bytes-rate) at +6.0s; 1 of 12 "
             "timeline records above\n");
}

/* --fail-on: an alert of the level or higher fails; a recovery never;
 * below the level it is a note. */
static void test_fail_on(void **state)
{
    (void)state;
    int rc;
    write_summary(NULL);
    write_alerts("WwW");
    check(rc, "--fail-on", "warn");
    assert_int_equal(rc, 1);
    assert_contains(out, "FAIL pid 200 (leaky): warn alert (the first of 2): objects_rate 612/s > 500/s at +3.0s; "
                         "top: leak_node <- build_list (+1.00 MiB, +20,000 objects)\n");
    check(rc, NULL);   /* crit, the default */
    assert_int_equal(rc, 0);
    assert_contains(out, "note pid 200 (leaky): raised warn alert(s), below --fail-on crit");
    write_alerts("WCc");
    check(rc, NULL);
    assert_int_equal(rc, 1);
    assert_contains(out, "FAIL pid 200 (leaky): crit alert: objects_rate 5012/s > 2000/s at +4.0s");
    check(rc, "--fail-on", "none");
    assert_int_equal(rc, 0);
    assert_contains(out, "raised crit alert(s), below --fail-on none");
    write_alerts("wc");   /* recoveries only */
    check(rc, "--fail-on", "warn");
    assert_int_equal(rc, 0);
    check(rc, "--fail-on", "sometimes");
    assert_int_equal(rc, 2);
    assert_contains(out, "warn, crit or none");
}

/* A summary without the field: the last timeline record that has it
 * (saying so); without either, the limit is noted, not failed. */
static void test_missing_field(void **state)
{
    (void)state;
    int rc;
    write_summary("live_bytes");
    write_timeline(true, false);
    check(rc, "--max-live-bytes", "3000000");
    assert_int_equal(rc, 0);
    check(rc, "--max-live-bytes", "2999999");
    assert_int_equal(rc, 1);
    assert_contains(out, "live_bytes at exit 3000000 (2.86 MiB) > 2999999 (2.86 MiB) (--max-live-bytes) (the summary "
                         "has no live_bytes; from the last timeline record, at +12.0s)\n");

    write_summary("peak_live_bytes");
    check(rc, "--max-peak-bytes", "3500000");
    assert_int_equal(rc, 0);
    check(rc, "--max-peak-bytes", "3499999");
    assert_int_equal(rc, 1);
    assert_contains(out, "peak_live_bytes 3500000 (3.34 MiB) > 3499999 (3.34 MiB) (--max-peak-bytes) (the summary "
                         "has no peak_live_bytes: the highest in the timeline)\n");
    write_timeline(true, true);   /* no peak in the records either: their live bytes */
    check(rc, "--max-peak-bytes", "3499999");
    assert_int_equal(rc, 1);
    assert_contains(out, "peak_live_bytes 3500000");

    unlink(tt_path("timeline.200.jsonl.zst"));
    write_summary("live_objects");
    check(rc, "--max-live-objects", "1");
    assert_int_equal(rc, 0);
    assert_contains(out, "note pid 200 (leaky): the summary has no live_objects and there is no timeline record with "
                         "it: --max-live-objects not checked\n");
    write_summary("peak_live_bytes");
    check(rc, "--max-peak-bytes", "1");
    assert_int_equal(rc, 0);
    assert_contains(out, "the summary has no peak_live_bytes and there is no timeline: --max-peak-bytes not checked\n");

    write_timeline(false, false);   /* records without rates */
    check(rc, "--max-objects-rate", "1", "--max-bytes-rate", "1");
    assert_int_equal(rc, 0);
    assert_contains(out, "no timeline records with objects_rate: --max-objects-rate not checked");
    assert_contains(out, "no timeline records with bytes_rate: --max-bytes-rate not checked");
}

/* No summary at all (killed): the last record, said so. */
static void test_no_summary(void **state)
{
    (void)state;
    int rc;
    write_timeline(true, false);
    check(rc, "--max-live-bytes", "3000000", "--max-peak-bytes", "3500000");
    assert_int_equal(rc, 0);
    check(rc, "--max-live-bytes", "2999999");
    assert_int_equal(rc, 1);
    assert_contains(out, "live_bytes at exit 3000000 (2.86 MiB) > 2999999 (2.86 MiB) (--max-live-bytes) (no summary: the "
                         "process did not exit normally; from the last timeline record, at +12.0s)\n");
    check(rc, "--max-peak-bytes", "3499999");
    assert_int_equal(rc, 1);
    assert_contains(out, "(no summary: the highest in the timeline)\n");
}

/* Exit status: 1 for a broken limit even when a file is unreadable, 2 for
 * an unreadable file alone. */
static void test_exit_status(void **state)
{
    (void)state;
    int rc;
    write_summary(NULL);
    tt_write_str("alerts.200.jsonl", "{\"time\": 1, \"level\": \"loud\"}\n");
    check(rc, NULL);
    assert_int_equal(rc, 2);
    assert_contains(out, "ERROR pid 200 (leaky): alerts.200.jsonl: line 1: \"level\" is neither \"warn\" nor \"crit\"");
    check(rc, "--max-live-bytes", "1");
    assert_int_equal(rc, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_max_live_bytes, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_max_live_objects, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_max_peak_bytes, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_max_objects_rate, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_max_bytes_rate, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_fail_on, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_missing_field, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_no_summary, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_exit_status, tt_setup, tt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
