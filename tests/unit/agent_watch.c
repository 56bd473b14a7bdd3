/*
 * agent_watch.c - the snapshot logic (agent/watch.c) through the core's
 * output services (agent/output.c, out.c), without any preload: a
 * temporary HEAPWATCH_OUT (agent_output_start on a mkdtemp directory), a
 * configuration of short times (interval 0.1 s, window 1 s, warn 100/s,
 * crit 1000/s, sustain 0.3 s, grace 0.5 s), the component inits that
 * agent_init would call (agent_fds_init, agent_unwind_init, agent_stacks_init,
 * agent_watch_init), then agent_watch_start and agent_watch_snapshot with
 * synthetic counters and times, each under the work lock as the
 * background thread holds it (the debug build asserts it).
 *
 *   - a steady series (churn, live constant) and a slow leak (below
 *     warn): the timeline appears, decodes (libzstd) to one JSON line per
 *     snapshot with the counters given, also before it is closed (each
 *     record is flushed); no alerts file; agent_watch_last reports the
 *     rates;
 *   - a leak of 5000 objects/s: crit is entered at 0.8 s (eligible from
 *     half the window, 0.5 s, plus the 0.3 s sustain; grace over), with
 *     one record in alerts.<tag>.jsonl (the rates, the growth, the
 *     profile written for it, the growing stack named) and one stderr
 *     line; when the leak stops, a recovery record and no line; the final
 *     (exit) snapshot raises nothing, even where an alert was due;
 *   - a snapshot without the work lock dies on the debug build's check.
 *
 * Every test starts from the state a forked child gets
 * (agent_watch_postfork_child: no timeline, no alerts file, a fresh alert
 * state and stack history), in a directory of its own.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>
#include <cmocka.h>

#include "agent/conf.h"
#include "agent/core.h"
#include "agent/fds.h"
#include "agent/output.h"
#include "agent/sample.h"
#include "agent/stacks.h"
#include "agent/unwind.h"
#include "agent/watch.h"
#include "test_child.h"

#define MS 1000000ull
#define S 1000000000ull
#define T0 (1000 * S)                  /* CLOCK_MONOTONIC of "start" */
#define REAL0 (1700000000ull * S)      /* CLOCK_REALTIME of "start" */
#define INTERVAL (100 * MS)

static agent_conf_t conf;              /* kept by reference by watch.c */
static char dir[256];
static char tag[32];

/* ------------------------------------------------------------------------ */
/* Fixture                                                                  */
/* ------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    agent_fds_init();
    agent_unwind_init();
    if (agent_stacks_init() != 0) return -1;
    snprintf(tag, sizeof tag, "%d", (int)getpid());
    return 0;
}

static void remove_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *de;
    char p[1024];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(path);
}

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/hw_watch_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    agent_output_start(dir);
    agent_conf_defaults(&conf);
    conf.interval_ns = INTERVAL;
    conf.window_ns = 1 * S;
    conf.warn = 100;
    conf.crit = 1000;
    conf.sustain_ns = 300 * MS;
    conf.grace_ns = 500 * MS;
    agent_watch_postfork_child(T0);   /* a clean slate, as a forked child has */
    agent_watch_init(&conf, agent_output_path(), T0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    agent_work_lock();
    agent_watch_close();
    agent_work_unlock();
    remove_dir(dir);
    return 0;
}

/* start / snap: agent_watch_start and agent_watch_snapshot at interval k
 * (time T0 + k * INTERVAL), under the work lock. */
static void start(uint64_t mallocs, uint64_t frees, uint64_t bytes_each)
{
    heapwatch_counters_t c = { mallocs, frees, mallocs * bytes_each, frees * bytes_each };
    agent_work_lock();
    agent_watch_start(&c, T0);
    agent_work_unlock();
}

static void snap(uint64_t k, uint64_t mallocs, uint64_t frees, uint64_t bytes_each, bool final)
{
    heapwatch_counters_t c = { mallocs, frees, mallocs * bytes_each, frees * bytes_each };
    agent_work_lock();
    assert_true(agent_work_held());
    agent_watch_snapshot(&c, T0 + k * INTERVAL, REAL0 + k * INTERVAL, REAL0, final);
    agent_work_unlock();
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* ------------------------------------------------------------------------ */

static char *read_file(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static bool file_exists(const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/* timeline_text: the timeline decoded (every record flushed so far, from
 * a closed file or one still being written). */
static char *timeline_text(void)
{
    char name[96];
    snprintf(name, sizeof name, "timeline.%s.jsonl.zst", tag);
    size_t len;
    char *z = read_file(name, &len);
    if (!z) fail_msg("no %s in %s", name, dir);
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    assert_non_null(dc);
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap + 1);
    ZSTD_inBuffer in = { z, len, 0 };
    while (in.pos < in.size) {
        if (cap - n < 4096) out = realloc(out, (cap *= 2) + 1);
        ZSTD_outBuffer ob = { out + n, cap - n, 0 };
        size_t ret = ZSTD_decompressStream(dc, &ob, &in);
        if (ZSTD_isError(ret)) fail_msg("zstd: %s", ZSTD_getErrorName(ret));
        n += ob.pos;
        if (ob.pos == 0 && ret != 0 && in.pos == in.size) break;
    }
    for (;;) {   /* what the decoder still holds */
        if (cap - n < 4096) out = realloc(out, (cap *= 2) + 1);
        ZSTD_outBuffer ob = { out + n, cap - n, 0 };
        ZSTD_inBuffer none = { NULL, 0, 0 };
        size_t ret = ZSTD_decompressStream(dc, &ob, &none);
        if (ZSTD_isError(ret)) fail_msg("zstd: %s", ZSTD_getErrorName(ret));
        n += ob.pos;
        if (ob.pos == 0) break;
    }
    ZSTD_freeDCtx(dc);
    free(z);
    out[n] = 0;
    return out;
}

/* line_at: the i-th line (0-based) of text, NUL-terminated into out. */
static bool line_at(const char *text, unsigned i, char *out, size_t cap)
{
    const char *p = text;
    for (unsigned k = 0; k < i; k++) {
        p = strchr(p, '\n');
        if (!p) return false;
        p++;
    }
    const char *e = strchr(p, '\n');
    if (!e) return false;
    size_t n = (size_t)(e - p) < cap - 1 ? (size_t)(e - p) : cap - 1;
    memcpy(out, p, n);
    out[n] = 0;
    return true;
}

static unsigned count_lines(const char *text)
{
    unsigned n = 0;
    for (const char *p = text; (p = strchr(p, '\n')); p++) n++;
    return n;
}

/* json_num / json_str: the value of "key" in a one-line JSON object (the
 * agent's own formatting: "key": value), NaN / "" when absent. */
static double json_num(const char *line, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(line, k);
    if (!p) fail_msg("no \"%s\" in %s", key, line);
    return strtod(p + strlen(k), NULL);
}

static const char *json_str(const char *line, const char *key, char *out, size_t cap)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": \"", key);
    const char *p = strstr(line, k);
    if (!p) fail_msg("no string \"%s\" in %s", key, line);
    p += strlen(k);
    size_t n = 0;
    while (p[n] && p[n] != '"' && n < cap - 1) n++;
    memcpy(out, p, n);
    out[n] = 0;
    return out;
}

/* assert_valid_json_line: one object, braces balanced outside strings. */
static void assert_valid_json_line(const char *line)
{
    assert_int_equal(line[0], '{');
    int depth = 0;
    bool in_str = false;
    for (const char *p = line; *p; p++) {
        if (in_str) {
            if (*p == '\\') p++;
            else if (*p == '"') in_str = false;
            continue;
        }
        if (*p == '"') in_str = true;
        else if (*p == '{' || *p == '[') depth++;
        else if (*p == '}' || *p == ']') depth--;
        assert_true(depth >= 0);
        if (depth == 0) assert_int_equal(p[1], 0);   /* nothing after the object */
    }
    assert_false(in_str);
    assert_int_equal(depth, 0);
}

/* ------------------------------------------------------------------------ */
/* No alert                                                                 */
/* ------------------------------------------------------------------------ */

/* Churn: 1000 allocations and 1000 frees per interval, 500 live. */
static void test_steady_no_alert(void **state)
{
    (void)state;
    agent_sample_rate = 0;
    start(500, 0, 64);
    for (uint64_t k = 1; k <= 30; k++) snap(k, 500 + 1000 * k, 1000 * k, 64, false);

    /* The timeline, still open: every record is already there. */
    char *text = timeline_text();
    assert_int_equal(count_lines(text), 30);
    char line[2048], s[32];
    for (unsigned i = 0; i < 30; i++) {
        assert_true(line_at(text, i, line, sizeof line));
        assert_valid_json_line(line);
        assert_true(json_num(line, "mallocs") == 500 + 1000.0 * (i + 1));
        assert_true(json_num(line, "frees") == 1000.0 * (i + 1));
        assert_true(json_num(line, "live_objects") == 500);
        assert_true(json_num(line, "live_bytes") == 500 * 64);
        assert_true(json_num(line, "objects_rate") == 0);
        assert_true(json_num(line, "bytes_rate") == 0);
        assert_string_equal(json_str(line, "level", s, sizeof s), "none");
        /* time: REAL0 + k intervals, in seconds with 6 decimals */
        assert_true(json_num(line, "elapsed_s") > 0.1 * (i + 1) - 1e-9 &&
                    json_num(line, "elapsed_s") < 0.1 * (i + 1) + 1e-9);
    }
    free(text);
    char name[96];
    snprintf(name, sizeof name, "alerts.%s.jsonl", tag);
    assert_false(file_exists(name));
    double orate = -1, brate = -1;
    int level = -1;
    agent_work_lock();
    agent_watch_last(&orate, &brate, &level);
    agent_work_unlock();
    assert_true(orate == 0 && brate == 0);
    assert_int_equal(level, 0);

    /* The final snapshot, then close: one more record, a whole file. */
    snap(31, 500 + 31000, 31000, 64, true);
    agent_work_lock();
    agent_watch_close();
    agent_work_unlock();
    text = timeline_text();
    assert_int_equal(count_lines(text), 31);
    assert_true(line_at(text, 30, line, sizeof line));
    assert_true(json_num(line, "mallocs") == 31500);
    free(text);
}

/* 50 live objects/s (half of warn) for 3 s: rates reported, no alert. */
static void test_slow_leak_no_alert(void **state)
{
    (void)state;
    agent_sample_rate = 0;
    start(0, 0, 32);
    for (uint64_t k = 1; k <= 30; k++) snap(k, 1000 * k + 5 * k, 1000 * k, 32, false);
    char name[96];
    snprintf(name, sizeof name, "alerts.%s.jsonl", tag);
    assert_false(file_exists(name));
    double orate, brate;
    int level;
    agent_work_lock();
    agent_watch_last(&orate, &brate, &level);
    agent_work_unlock();
    assert_true(orate > 49.999 && orate < 50.001);
    assert_true(brate > 50 * 32 - 0.01 && brate < 50 * 32 + 0.01);
    assert_int_equal(level, 0);
    char *text = timeline_text();
    char line[2048];
    assert_int_equal(count_lines(text), 30);
    assert_true(line_at(text, 29, line, sizeof line));
    assert_true(json_num(line, "objects_rate") == 50);
    assert_true(json_num(line, "window_s") == 1);
    free(text);
}

/* ------------------------------------------------------------------------ */
/* A leak                                                                   */
/* ------------------------------------------------------------------------ */

/* leaky_site: the function the leak's stack names (never called; its
 * code is what the stack's return address points into). */
static __attribute__((noinline, used)) void leaky_site(void)
{
    __asm__ volatile("nop; nop; nop; nop; nop; nop; nop; nop; nop; nop; nop; nop; nop; nop; nop; nop");
}

static void test_leak_alert_and_recovery(void **state)
{
    (void)state;
    agent_sample_rate = 1;   /* the stack's samples are its objects: no unsampling */
    uint64_t pcs[2] = { (uintptr_t)leaky_site + 8, (uintptr_t)test_leak_alert_and_recovery + 8 };
    agent_stack_t *site = agent_stack_intern(pcs, 2);
    assert_true(site->id != 0);
    const uint64_t per = 500, size = 64;   /* 500 objects per 0.1 s: 5000/s */
    const uint64_t before = 1000;          /* live at start, from the same stack */
    __atomic_add_fetch(&site->shares[AGENT_STACK_SHARED].alloc_objects, before, __ATOMIC_RELAXED);
    __atomic_add_fetch(&site->shares[AGENT_STACK_SHARED].alloc_bytes, before * size, __ATOMIC_RELAXED);

    /* stderr into a file while the snapshots run (the alert's line) */
    char errpath[300];
    snprintf(errpath, sizeof errpath, "%s.stderr", dir);
    int errfd = open(errpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(errfd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(errfd, 2);

    start(before, 0, size);
    uint64_t live = before;
    double orate = 0, brate = 0;
    int level = -1;
    unsigned alert_at = 0;
    char name[96];
    snprintf(name, sizeof name, "alerts.%s.jsonl", tag);
    for (uint64_t k = 1; k <= 40; k++) {
        if (k <= 20) {   /* the leak: 2 s, then nothing grows */
            live += per;
            __atomic_add_fetch(&site->shares[AGENT_STACK_SHARED].alloc_objects, per, __ATOMIC_RELAXED);
            __atomic_add_fetch(&site->shares[AGENT_STACK_SHARED].alloc_bytes, per * size, __ATOMIC_RELAXED);
        }
        snap(k, 7000 * k + live, 7000 * k, size, false);   /* churn besides */
        if (!alert_at && file_exists(name)) {
            alert_at = (unsigned)k;
            agent_work_lock();
            agent_watch_last(&orate, &brate, &level);
            agent_work_unlock();
        }
    }
    snap(41, 7000 * 41 + live, 7000 * 41, size, true);   /* the exit's record */
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char errtext[4096];
    ssize_t en = pread(errfd, errtext, sizeof errtext - 1, 0);
    errtext[en > 0 ? en : 0] = 0;
    close(errfd);
    unlink(errpath);

    /* Eligible from 0.5 s (half the window), above crit for the 0.3 s of
     * sustain: crit at 0.8 s, straight from none. */
    assert_int_equal(alert_at, 8);
    assert_true(orate == 5000);
    assert_true(brate == 5000.0 * size);
    assert_int_equal(level, 2);

    size_t len;
    char *alerts = read_file(name, &len);
    assert_non_null(alerts);
    assert_int_equal(count_lines(alerts), 2);   /* the alert, the recovery; not the exit */
    char line[8192], s[256];
    assert_true(line_at(alerts, 0, line, sizeof line));
    assert_valid_json_line(line);
    assert_string_equal(json_str(line, "event", s, sizeof s), "alert");
    assert_string_equal(json_str(line, "level", s, sizeof s), "crit");
    assert_string_equal(json_str(line, "metric", s, sizeof s), "objects_rate");
    assert_true(json_num(line, "value") == 5000);
    assert_true(json_num(line, "threshold") == 1000);
    assert_true(json_num(line, "window_s") == 0.8);
    assert_true(json_num(line, "bytes_rate") == 5000.0 * size);
    assert_true(json_num(line, "live_objects") == before + 4000);
    assert_true(json_num(line, "live_bytes") == (before + 4000.0) * size);
    assert_true(json_num(line, "growth_objects") == 4000);
    assert_true(json_num(line, "growth_bytes") == 4000.0 * size);
    assert_true(json_num(line, "pid") == getpid());
    assert_string_equal(json_str(line, "exe", s, sizeof s), "agent_watch");
    /* the profile written for it exists */
    json_str(line, "profile", s, sizeof s);
    char want[64];
    snprintf(want, sizeof want, "heap.%s.", tag);
    assert_true(strncmp(s, want, strlen(want)) == 0);
    assert_non_null(strstr(s, ".alert.pb.gz"));
    assert_true(file_exists(s));
    char profile[256];
    snprintf(profile, sizeof profile, "%s", s);
    /* the growing stack, named, with its growth since the window's start
     * (not its whole in-use: the copy taken at start is the base) */
    assert_non_null(strstr(line, "\"top\": [{"));
    assert_string_equal(json_str(line, "function", s, sizeof s), "leaky_site");
    const char *top = strstr(line, "\"top\": ");
    assert_true(json_num(top, "growth_bytes") == 4000.0 * size);
    assert_true(json_num(top, "growth_objects") == 4000);

    /* The leak stopped at 2 s: the window's rate falls below 3/4 of crit
     * (crit -> warn, silently), then below 3/4 of warn once the leak has
     * left the window (3 s), and stays there for the sustain: the
     * recovery, from warn. */
    assert_true(line_at(alerts, 1, line, sizeof line));
    assert_valid_json_line(line);
    assert_string_equal(json_str(line, "event", s, sizeof s), "recovery");
    assert_string_equal(json_str(line, "level", s, sizeof s), "warn");
    assert_true(json_num(line, "value") < 75);
    assert_non_null(strstr(line, "\"profile\": null"));
    assert_non_null(strstr(line, "\"top\": []"));
    free(alerts);

    /* One stderr line: the alert's, naming the rate, the threshold, the
     * stack and the profile; none for the recovery. */
    assert_int_equal(count_lines(errtext), 1);
    char expect[512];
    snprintf(expect, sizeof expect,
             "heapwatch: crit: agent_watch (pid %d): live objects growing 5000/s over 0.8 s "
             "(HEAPWATCH_CRIT 1000/s); top: leaky_site +%llu bytes; profile %s\n",
             (int)getpid(), (unsigned long long)(4000 * size), profile);
    assert_string_equal(errtext, expect);

    /* The timeline: 41 records; the level none until 0.8 s, crit, then
     * (silently: no record) warn as the rate falls below 3/4 of crit,
     * and none once it has stayed below 3/4 of warn (after 3 s, when the
     * leak has left the window). */
    char *text = timeline_text();
    assert_int_equal(count_lines(text), 41);
    unsigned recovered_at = 0, prev = 2;
    for (unsigned k = 1; k <= 41; k++) {
        assert_true(line_at(text, k - 1, line, sizeof line));
        assert_valid_json_line(line);
        assert_true(json_num(line, "live_objects") == (double)(before + per * (k < 20 ? k : 20)));
        const char *lv = json_str(line, "level", s, sizeof s);
        unsigned n = strcmp(lv, "crit") == 0 ? 2 : strcmp(lv, "warn") == 0 ? 1 : 0;
        assert_true(n != 0 || strcmp(lv, "none") == 0);
        if (k < 8) {
            assert_int_equal(n, 0);
            continue;
        }
        if (k == 8) assert_int_equal(n, 2);
        assert_true(n <= prev);
        prev = n;
        if (n == 0 && !recovered_at) recovered_at = k;
    }
    assert_true(recovered_at > 30 && recovered_at <= 40);
    assert_true(line_at(text, 7, line, sizeof line));
    assert_true(json_num(line, "objects_rate") == 5000);
    free(text);

    /* the last rates: nothing grows any more */
    agent_work_lock();
    agent_watch_last(&orate, &brate, &level);
    agent_work_unlock();
    assert_true(orate == 0 && brate == 0);
    assert_int_equal(level, 0);
}

/* The exit's record (final) is evaluated like any other but raises
 * nothing: a leak whose alert would come at 0.8 s, with the final
 * snapshot at 0.8 s. */
static void test_final_raises_nothing(void **state)
{
    (void)state;
    agent_sample_rate = 0;
    start(0, 0, 16);
    for (uint64_t k = 1; k <= 7; k++) snap(k, 500 * k, 0, 16, false);
    snap(8, 500 * 8, 0, 16, true);
    char name[96];
    snprintf(name, sizeof name, "alerts.%s.jsonl", tag);
    assert_false(file_exists(name));
    char *text = timeline_text();
    char line[2048], s[32];
    assert_int_equal(count_lines(text), 8);
    assert_true(line_at(text, 7, line, sizeof line));
    assert_string_equal(json_str(line, "level", s, sizeof s), "crit");
    free(text);
}

/* Without the work lock, a snapshot dies on the debug build's check
 * (output.c: AGENT_ASSERT_WORK_HELD) before it touches a file. */
static void snapshot_unlocked(void)
{
    heapwatch_counters_t c = { 10, 0, 160, 0 };
    agent_watch_snapshot(&c, T0 + INTERVAL, REAL0 + INTERVAL, REAL0, false);
}

static void test_snapshot_needs_work_lock(void **state)
{
    (void)state;
    child_t c = in_child(snapshot_unlocked);
    assert_aborted(&c, "agent_work_held()");
    char name[96];
    snprintf(name, sizeof name, "timeline.%s.jsonl.zst", tag);
    assert_false(file_exists(name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_steady_no_alert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_leak_no_alert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leak_alert_and_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_final_raises_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_needs_work_lock, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
