/*
 * tools_rundir.c - reading a results directory (tools/rundir.h): real
 * summary, timeline and alerts files in a scratch directory, the timelines
 * written with libzstd as the agent writes them (a block flushed per
 * record, frames ended or left unfinished), and every way the reader's
 * input can be wrong or too big: a stream cut at every byte, a line at and
 * past LINE_MAX_BYTES, a missing field, a duplicate key, numbers past 2^53
 * and past the double range, broken strings, nesting at and past the depth
 * bound, alerts past their cap, a timeline longer than the samples kept.
 */
#include "tools_test.h"

#include "tools/rundir.h"

#include <math.h>
#include <sched.h>
#include <stdint.h>

#define T0 1700000000.0        /* the processes' start, Unix seconds */
#define LINE_MAX_BYTES (1u << 20)   /* tools/rundir_internal.h */

static rundir_t rd;

static int setup(void **state)
{
    memset(&rd, 0, sizeof rd);
    return tt_setup(state);
}

static int teardown(void **state)
{
    rundir_free(&rd);
    return tt_teardown(state);
}

/* load: reads the scratch directory; it must be readable. */
static void load(void)
{
    rundir_free(&rd);
    char msg[512] = "";
    rundir_err_t err = rundir_load(tt_dir, &rd, msg, sizeof msg);
    if (err != RUNDIR_OK) fail_msg("rundir_load: %d %s", err, msg);
}

/* load_cpus: load(), with `ncpus` CPUs allowed (the reader starts one
 * thread per CPU it may use). */
static void load_cpus(int ncpus)
{
    cpu_set_t all, some;
    assert_int_equal(sched_getaffinity(0, sizeof all, &all), 0);
    CPU_ZERO(&some);
    for (int c = 0, k = 0; c < CPU_SETSIZE && k < ncpus; c++)
        if (CPU_ISSET(c, &all)) {
            CPU_SET(c, &some);
            k++;
        }
    assert_int_equal(sched_setaffinity(0, sizeof some, &some), 0);
    load();
    assert_int_equal(sched_setaffinity(0, sizeof all, &all), 0);
}

/* proc: the process tagged tag (it must be there). */
static const rundir_proc_t *proc(const char *tag)
{
    for (size_t i = 0; i < rd.nprocs; i++)
        if (strcmp(rd.procs[i].tag, tag) == 0) return &rd.procs[i];
    fail_msg("no process %s in %zu", tag, rd.nprocs);
    return NULL;
}

/* line_with: the first line of list[0..n) holding sub, or NULL. */
static const char *line_with(char **list, size_t n, const char *sub)
{
    for (size_t i = 0; i < n; i++)
        if (strstr(list[i], sub)) return list[i];
    return NULL;
}

/* The agent's summary, one key per line, in HEAPWATCH_SUMMARY_FIELDS order. */
static const char summary_100[] =
    "{\n  \"pid\": 100,\n  \"ppid\": 1,\n  \"exe\": \"/opt/app/leaky\",\n  \"start_time\": 1700000000.000000,\n"
    "  \"end_time\": 1700000012.500000,\n  \"duration_s\": 12.500000,\n  \"mallocs\": 60000,\n  \"frees\": 24000,\n"
    "  \"live_objects\": 36000,\n  \"live_bytes\": 3145728,\n  \"peak_live_bytes\": 4194304,\n"
    "  \"alloc_bytes\": 9000000,\n  \"free_bytes\": 5854272,\n  \"rate\": 524288,\n  \"samples\": 17,\n"
    "  \"samples_dropped\": 0,\n  \"sampled_live\": 9,\n  \"stacks\": 5,\n  \"stacks_bytes\": 4096,\n"
    "  \"map_count\": 9,\n  \"map_B\": 0,\n  \"map_noverflow\": 0,\n  \"map_shards\": 64,\n  \"map_buckets\": 64,\n"
    "  \"map_overflow_buckets\": 0,\n  \"map_bytes\": 65536,\n  \"map_grow_failures\": 0,\n  \"filter_bytes\": 2097152,\n"
    "  \"filter_hits\": 12,\n  \"filter_false_positives\": 3,\n  \"filter_false_positive_rate\": 0.000125,\n"
    "  \"thread_blocks\": 1,\n  \"agent_memory_bytes\": 2097152,\n  \"agent_memory_inuse_bytes\": 1000000,\n"
    "  \"files\": [\"timeline.100.jsonl.zst\", \"summary.100.json\"],\n  \"files_total\": 2,\n"
    "  \"files_removed\": [],\n  \"files_removed_total\": 0,\n  \"max_profiles\": 64,\n  \"incomplete\": []\n}\n";

static const char alerts_100[] =
    "{\"time\": 1700000005.000000, \"pid\": 100, \"exe\": \"leaky\", \"event\": \"alert\", \"level\": \"crit\", "
    "\"metric\": \"objects_rate\", \"value\": 5012.000, \"threshold\": 2000, \"window_s\": 5.000, "
    "\"live_objects\": 25000, \"live_bytes\": 2000000, \"bytes_rate\": 262144.000, \"growth_objects\": 25060, "
    "\"growth_bytes\": 1310720, \"profile\": \"heap.100.0003.alert.pb.gz\", \"top\": [{\"stack\": [\"malloc\", "
    "\"leak_node\", \"build_list\", \"main\"], \"function\": \"leak_node\", \"growth_bytes\": 1048576, "
    "\"growth_objects\": 20000}]}\n"
    "{\"time\": 1700000011.000000, \"pid\": 100, \"exe\": \"leaky\", \"event\": \"recovery\", \"level\": \"crit\", "
    "\"metric\": \"objects_rate\", \"value\": 3.000, \"threshold\": 2000, \"window_s\": 5.000, \"live_objects\": 36000, "
    "\"live_bytes\": 3145728, \"bytes_rate\": 0.000, \"growth_objects\": 15, \"growth_bytes\": 0, \"profile\": null, "
    "\"top\": []}\n";

/* A process as the agent leaves it: every record, field and string read. */
static void test_real_files(void **state)
{
    (void)state;
    tt_write_str("summary.100.json", summary_100);
    tt_write_str("alerts.100.jsonl", alerts_100);
    tt_write_str("heap.100.0003.alert.pb.gz", "x");
    tt_zstd_t z;
    tt_zstd_open(&z, "timeline.100.jsonl.zst");
    for (int i = 1; i <= 12; i++)
        tt_zstd_line(&z, tt_record(T0, i, 5000.0 * i, 2000.0 * i, 262144.0 * i, i == 5 ? 5012 : 100.5, 1024.0 * i));
    tt_zstd_close(&z, 1);
    load();
    assert_int_equal(rd.nprocs, 1);
    const rundir_proc_t *p = proc("100");
    assert_int_equal(p->nerrors, 0);
    assert_int_equal(p->nnotes, 0);
    assert_true(p->has_summary);
    assert_string_equal(p->exe, "/opt/app/leaky");
    assert_string_equal(rundir_exe_name(p), "leaky");
    assert_num(p->summary.pid, 100);
    assert_num(p->summary.duration_s, 12.5);
    assert_num(p->summary.mallocs, 60000);
    assert_num(p->summary.live_bytes, 3145728);
    assert_num(p->summary.peak_live_bytes, 4194304);
    assert_num(p->summary.filter_false_positive_rate, 0.000125);
    assert_num(p->summary.max_profiles, 64);
    assert_num(rundir_start(p), T0);
    assert_int_equal(p->nrecords, 12);
    assert_int_equal(p->nsamples, 12);
    assert_int_equal(p->sample_stride, 1);
    assert_false(p->timeline_truncated);
    assert_num(p->timeline_start, T0);
    for (int i = 1; i <= 12; i++) {
        const rundir_sample_t *s = &p->samples[i - 1];
        assert_num(s->time, T0 + i);
        assert_num(s->elapsed_s, i);
        assert_num(s->mallocs, 5000.0 * i);
        assert_num(s->live_objects, 3000.0 * i);
        assert_num(s->objects_rate, i == 5 ? 5012 : 100.5);
        assert_num(s->map_count, 3);
        assert_num(s->agent_memory_bytes, 1048576);
        assert_num(rundir_sample_get(s, offsetof(rundir_sample_t, live_bytes)), 262144.0 * i);
    }
    assert_int_equal(p->nalerts, 2);
    const rundir_alert_t *a = &p->alerts[0];
    assert_false(a->recovery);
    assert_int_equal(a->level, RUNDIR_CRIT);
    assert_string_equal(a->metric, "objects_rate");
    assert_num(a->value, 5012);
    assert_num(a->threshold, 2000);
    assert_num(a->growth_bytes, 1310720);
    assert_string_equal(a->profile, "heap.100.0003.alert.pb.gz");
    assert_int_equal(a->ntop, 1);
    assert_string_equal(a->top[0].function, "leak_node");
    assert_int_equal(a->top[0].nframes, 4);
    assert_string_equal(a->top[0].frames[3], "main");
    assert_num(a->top[0].growth_objects, 20000);
    assert_true(p->alerts[1].recovery);
    assert_null(p->alerts[1].profile);
    assert_int_equal(p->alerts[1].ntop, 0);
    assert_int_equal(p->nprofiles, 1);
    assert_string_equal(p->profiles[0].reason, "alert");
    assert_int_equal(p->profiles[0].seq, 3);

    rundir_summary_t s;
    assert_true(rundir_read_summary(tt_path("summary.100.json"), &s));
    assert_num(s.live_objects, 36000);
    assert_false(rundir_read_summary(tt_path("alerts.100.jsonl"), &s));   /* two JSON texts */
    assert_false(rundir_read_summary(tt_path("nonexistent.json"), &s));
}

/* Frames ended and a last one unfinished, then the file cut at every
 * length: the records whose block is whole are all read, none other, and
 * a cut is a note, never an error. */
static void test_frames_and_cuts(void **state)
{
    (void)state;
    enum { N = 9 };
    long end_of[N];     /* the file's length once record i is flushed */
    long frame_end[2];  /* ... once a frame is ended */
    tt_zstd_t z;
    tt_zstd_open(&z, "full.zst");
    for (int i = 0; i < N; i++) {
        tt_zstd_line(&z, tt_record(T0, i + 1, 10.0 * i, 0, 4096.0 * i, i, i));
        end_of[i] = ftell(z.f);
        if (i == 2 || i == 5) {
            tt_zstd_put(&z, "", 0, ZSTD_e_end);   /* frames of 3, 3, and 3 left open */
            frame_end[i / 5] = ftell(z.f);
        }
    }
    long len = tt_zstd_close(&z, 0);
    FILE *f = fopen(tt_path("full.zst"), "rb");
    assert_non_null(f);
    char *data = malloc((size_t)len);
    assert_int_equal(fread(data, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    unlink(tt_path("full.zst"));

    /* Process 8's whole timeline is read next, on one CPU, by the same
     * decoder: whatever a cut left in it must not reach the next file. */
    tt_write("timeline.8.jsonl.zst", data, (size_t)len);
    for (long cut = 0; cut <= len; cut++) {
        tt_write("timeline.7.jsonl.zst", data, (size_t)cut);
        load_cpus(1);
        const rundir_proc_t *whole = proc("8");
        if (whole->nsamples != N || whole->nerrors)   /* its last frame is left open, as the agent's while it runs */
            fail_msg("after a cut at %ld: the next timeline read %zu records of %d, %zu errors (%s)", cut,
                     whole->nsamples, N, whole->nerrors, whole->nerrors ? whole->errors[0] : "");
        const rundir_proc_t *p = proc("7");
        size_t want = 0;
        while (want < N && end_of[want] <= cut) want++;
        if (p->nsamples != want) fail_msg("cut at %ld of %ld: %zu records read, expected %zu", cut, len, p->nsamples, want);
        if (p->nerrors) fail_msg("cut at %ld: error %s", cut, p->errors[0]);
        for (size_t i = 0; i < p->nsamples; i++) assert_num(p->samples[i].time, T0 + (double)i + 1);
        bool at_frame_end = cut == 0 || cut == frame_end[0] || cut == frame_end[1];
        assert_int_equal(p->timeline_truncated, !at_frame_end);
        if (!at_frame_end) assert_contains(p->notes[0], "ends in an unfinished zstd frame");
    }
    free(data);
}

/* A frame of raw blocks, one record each, no Last_Block (RFC 8878: magic,
 * a frame header with a window descriptor, 3-byte block headers), as a
 * zstd that found the records incompressible writes them: libzstd gives
 * out a raw block's bytes as they come, so a cut inside one leaves a part
 * of a line, which must be dropped (a note), not read as a bad record. */
static void test_raw_block_cuts(void **state)
{
    (void)state;
    enum { N = 3 };
    char frame[4096];
    size_t len = 0, block_end[N], content_start[N];
    memcpy(frame, "\x28\xb5\x2f\xfd\x00\x38", 6);   /* no content size; window 128 KiB */
    len = 6;
    for (int i = 0; i < N; i++) {
        const char *line = tt_record(T0, i + 1, 10, 0, 4096, 1, 1);
        size_t n = strlen(line) + 1;   /* with its newline */
        uint32_t hdr = (uint32_t)(n << 3);   /* raw, not last */
        frame[len++] = (char)(hdr & 0xff);
        frame[len++] = (char)(hdr >> 8 & 0xff);
        frame[len++] = (char)(hdr >> 16 & 0xff);
        content_start[i] = len;
        memcpy(frame + len, line, n - 1);
        frame[len + n - 1] = '\n';
        len += n;
        block_end[i] = len;
    }
    for (size_t cut = 0; cut <= len; cut++) {
        tt_write("timeline.6.jsonl.zst", frame, cut);
        load();
        const rundir_proc_t *p = proc("6");
        size_t want = 0, partial = 0;
        while (want < N && block_end[want] <= cut) want++;
        if (want < N && cut > content_start[want]) partial = 1;
        if (p->nsamples != want) fail_msg("cut at %zu of %zu: %zu records read, expected %zu", cut, len, p->nsamples, want);
        if (p->nerrors) fail_msg("cut at %zu: error %s", cut, p->errors[0]);
        if (cut == 0) continue;
        assert_true(p->timeline_truncated);
        assert_contains(p->notes[0], partial ? "records read, a partial last line dropped" : "records read");
        if (!partial && strstr(p->notes[0], "partial")) fail_msg("cut at %zu: %s", cut, p->notes[0]);
    }
}

/* padded: "{" fields, blanks, "}" and a newline: a line of n bytes (the
 * newline not counted). */
static char *padded(size_t n, const char *fields)
{
    char *s = malloc(n + 2);
    assert_non_null(s);
    size_t head = (size_t)snprintf(s, n + 1, "{%s", fields);
    memset(s + head, ' ', n - head - 1);
    s[n - 1] = '}';
    s[n] = '\n';
    s[n + 1] = 0;
    return s;
}

/* A line of exactly LINE_MAX_BYTES is read; one byte more stops the file
 * with an error naming the line (timeline and alerts alike). */
static void test_line_bound(void **state)
{
    (void)state;
    char *ok = padded(LINE_MAX_BYTES, "\"time\": 1700000002, \"mallocs\": 7");
    char *over = padded(LINE_MAX_BYTES + 1, "\"time\": 1700000003, \"mallocs\": 8");
    tt_zstd_t z;
    tt_zstd_open(&z, "timeline.8.jsonl.zst");
    tt_zstd_line(&z, tt_record(T0, 1, 1, 0, 1, 0, 0));
    tt_zstd_put(&z, ok, strlen(ok), ZSTD_e_flush);
    tt_zstd_put(&z, over, strlen(over), ZSTD_e_flush);
    tt_zstd_line(&z, tt_record(T0, 4, 1, 0, 1, 0, 0));
    tt_zstd_close(&z, 1);
    free(ok);
    free(over);
    load();
    const rundir_proc_t *p = proc("8");
    assert_int_equal(p->nsamples, 2);
    assert_num(p->samples[1].time, T0 + 2);
    assert_num(p->samples[1].mallocs, 7);
    assert_int_equal(p->nerrors, 1);
    assert_string_equal(p->errors[0], "timeline.8.jsonl.zst: line 3 is longer than 1048576 bytes; stopped reading");

    ok = padded(LINE_MAX_BYTES, "\"time\": 1, \"level\": \"warn\"");
    over = padded(LINE_MAX_BYTES + 1, "\"time\": 2, \"level\": \"crit\"");
    FILE *f = fopen(tt_path("alerts.9.jsonl"), "w");
    assert_non_null(f);
    fputs(ok, f);
    fputs(over, f);
    fputs("{\"time\": 3, \"level\": \"crit\"}\n", f);
    fclose(f);
    free(ok);
    free(over);
    load();
    p = proc("9");
    assert_int_equal(p->nalerts, 1);
    assert_int_equal(p->alerts[0].level, RUNDIR_WARN);
    assert_int_equal(p->nerrors, 1);
    assert_string_equal(p->errors[0], "alerts.9.jsonl: line 2 is longer than 1048576 bytes; stopped reading");
}

/* A field missing: a record without "time" is bad (named), any other is
 * NAN; live_objects comes from mallocs - frees; the summary's duration
 * from its times. */
static void test_missing_fields(void **state)
{
    (void)state;
    tt_zstd_t z;
    tt_zstd_open(&z, "timeline.20.jsonl.zst");
    tt_zstd_line(&z, "{\"time\": 1700000001.5, \"mallocs\": 10, \"frees\": 4}");
    tt_zstd_line(&z, "{\"elapsed_s\": 2.000, \"mallocs\": 11}");
    tt_zstd_line(&z, "{\"time\": 1700000003, \"mallocs\": \"12\", \"frees\": null, \"live_bytes\": [1], \"x\": {}}");
    tt_zstd_line(&z, "{\"time\": \"1700000004\"}");
    tt_zstd_close(&z, 1);
    tt_write_str("summary.20.json", "{\"pid\": 21, \"start_time\": 1700000000.25, \"end_time\": 1700000010.75}");
    load();
    const rundir_proc_t *p = proc("20");
    assert_int_equal(p->nsamples, 2);
    assert_num(p->samples[0].time, 1700000001.5);
    assert_num(p->samples[0].live_objects, 6);
    assert_nan(p->samples[0].live_bytes);
    assert_nan(p->samples[0].objects_rate);
    assert_nan(p->samples[1].mallocs);   /* a string, not a number */
    assert_nan(p->samples[1].live_objects);
    assert_nan(p->samples[1].live_bytes);
    assert_nan(p->timeline_start);   /* the first record has no elapsed_s */
    assert_int_equal(p->nerrors, 2);
    assert_string_equal(p->errors[0], "timeline.20.jsonl.zst: line 2: no \"time\"");
    assert_string_equal(p->errors[1], "timeline.20.jsonl.zst: 2 bad lines in all");
    assert_true(p->has_summary);
    assert_num(p->summary.duration_s, 10.5);
    assert_nan(p->summary.mallocs);
    assert_null(p->exe);
    assert_string_equal(rundir_exe_name(p), "?");
    assert_non_null(line_with(p->notes, p->nnotes, "summary.20.json: says pid 21"));
}

/* A key twice in one object: the record is bad (jansson keeps one value
 * only; the reader says so instead of choosing). */
static void test_duplicate_key(void **state)
{
    (void)state;
    tt_zstd_t z;
    tt_zstd_open(&z, "timeline.30.jsonl.zst");
    tt_zstd_line(&z, tt_record(T0, 1, 1, 0, 1, 0, 0));
    tt_zstd_line(&z, "{\"time\": 1700000002, \"live_bytes\": 1, \"live_bytes\": 2}");
    tt_zstd_line(&z, "{\"time\": 1700000003, \"top\": [{\"a\": 1, \"a\": 1}]}");
    tt_zstd_line(&z, "{\"time\": 1700000004, \"a\": {\"b\": 1}, \"b\": {\"a\": 1}}");   /* not duplicates */
    tt_zstd_close(&z, 1);
    tt_write_str("summary.30.json", "{\"pid\": 30, \"mallocs\": 1, \"mallocs\": 2}");
    load();
    const rundir_proc_t *p = proc("30");
    assert_int_equal(p->nsamples, 2);
    assert_num(p->samples[1].time, 1700000004);
    assert_false(p->has_summary);
    assert_non_null(line_with(p->errors, p->nerrors, "timeline.30.jsonl.zst: line 2: duplicate key at byte"));
    assert_non_null(line_with(p->errors, p->nerrors, "timeline.30.jsonl.zst: 2 bad lines in all"));
    assert_non_null(line_with(p->errors, p->nerrors, "summary.30.json: duplicate key at byte"));
}

/* Numbers: u64 counters past 2^63 and 2^53 read to the nearest double, as
 * the doubles the tools compute with; past the double range a record is
 * bad; an underflow is 0. */
static void test_huge_numbers(void **state)
{
    (void)state;
    tt_zstd_t z;
    tt_zstd_open(&z, "timeline.40.jsonl.zst");
    tt_zstd_line(&z, "{\"time\": 1700000001, \"mallocs\": 18446744073709551615, \"frees\": 9007199254740993, "
                     "\"live_bytes\": -9223372036854775809, \"alloc_bytes\": 9007199254740995}");
    tt_zstd_line(&z, "{\"time\": 1700000002, \"mallocs\": 1e999}");
    tt_zstd_line(&z, "{\"time\": 1700000003, \"mallocs\": -1.7976931348623159e308}");
    tt_zstd_line(&z, "{\"time\": 1700000004, \"mallocs\": 1e-400, \"frees\": 1.7976931348623157e308, "
                     "\"live_bytes\": 123456789012345678901234567890}");
    tt_zstd_close(&z, 1);
    load();
    const rundir_proc_t *p = proc("40");
    assert_int_equal(p->nsamples, 2);
    assert_num(p->samples[0].mallocs, 18446744073709551616.0);   /* 2^64 - 1 -> 2^64 */
    assert_num(p->samples[0].frees, 9007199254740992.0);         /* 2^53 + 1 -> 2^53 (ties to even) */
    assert_num(p->samples[0].alloc_bytes, 9007199254740996.0);   /* 2^53 + 3 -> 2^53 + 4 */
    assert_num(p->samples[0].live_bytes, -9223372036854775808.0);
    assert_num(p->samples[0].live_objects, 18446744073709551616.0 - 9007199254740992.0);
    assert_num(p->samples[1].mallocs, 0);
    assert_num(p->samples[1].frees, 1.7976931348623157e308);
    assert_num(p->samples[1].live_bytes, 1.2345678901234568e29);
    assert_contains(p->errors[0], "timeline.40.jsonl.zst: line 2: bad number (out of range) at byte ");
    assert_string_equal(p->errors[1], "timeline.40.jsonl.zst: 2 bad lines in all");
}

/* Strings: bytes that are not UTF-8 (the agent writes names as they are)
 * read as '?', a lone surrogate escape as U+FFFD, a pair as its code point,
 * \u0000 ends the string as the tools see it. */
static void test_strings(void **state)
{
    (void)state;
    tt_write_str("summary.50.json", "{\"pid\": 50, \"exe\": \"/tmp/caf\xe9-\xc3\xa9-\xed\xa0\x80-\xf4\x90\x80\x80\"}");
    tt_write_str("alerts.50.jsonl",
                 "{\"time\": 1, \"level\": \"warn\", \"metric\": \"m\\ud800\", \"top\": [{\"stack\": [\"a\\u0000b\", "
                 "\"\", 5, \"\\ud83d\\ude00\\udc00\"], \"function\": \"f\\ud800\\ud800\\udc00\xff\"}]}\n");
    tt_write_str("summary.51.json", "{\"pid\": 51, \"exe\": \"a\\u0000b\", \"mallocs\": 3}");
    tt_write_str("summary.52.json", "{\"pid\": 52, \"e\\u0000xe\": \"a\"}");   /* jansson refuses NUL in a key */
    tt_write_str("summary.53.json", "{\"pid\": 53, \"exe\": \"a\x01\"}");      /* a raw control byte */
    tt_write_str("summary.54.json", "{\"pid\": 54, \xff: 1}");                  /* no string at all */
    load();
    const rundir_proc_t *p = proc("50");
    assert_int_equal(p->nerrors, 0);
    assert_string_equal(p->exe, "/tmp/caf?-\xc3\xa9-?" "?" "?-?" "?" "?" "?");   /* no trigraphs */
    assert_string_equal(p->alerts[0].metric, "m\xef\xbf\xbd");
    assert_int_equal(p->alerts[0].top[0].nframes, 4);
    assert_string_equal(p->alerts[0].top[0].frames[0], "a");
    assert_string_equal(p->alerts[0].top[0].frames[1], "?");
    assert_string_equal(p->alerts[0].top[0].frames[2], "?");
    assert_string_equal(p->alerts[0].top[0].frames[3], "\xf0\x9f\x98\x80\xef\xbf\xbd");
    assert_string_equal(p->alerts[0].top[0].function, "f\xef\xbf\xbd\xf0\x90\x80\x80?");
    assert_string_equal(proc("51")->exe, "a");
    assert_num(proc("51")->summary.mallocs, 3);
    assert_contains(proc("52")->errors[0], "summary.52.json: bad string at byte ");
    assert_contains(proc("53")->errors[0], "summary.53.json: not valid JSON at byte");
    assert_contains(proc("54")->errors[0], "summary.54.json: not valid JSON at byte");
}

/* The summary's cmdline is joined by spaces, an argument a shell would
 * split or expand in single quotes (' as '\''), cut at RUNDIR_CMDLINE_MAX;
 * peak_profile is kept as named (null or absent: NULL). */
static void test_cmdline_peak(void **state)
{
    (void)state;
    tt_write_str("summary.60.json", "{\"pid\": 60, \"cmdline\": [\"/bin/sh\", \"-c\", \"echo 'hi' > $X\", \"\", \"plain\", 7],"
                                    " \"peak_profile\": \"heap.60.0002.peak.pb.gz\"}");
    tt_write_str("summary.61.json", "{\"pid\": 61, \"exe\": \"/bin/x\", \"cmdline\": [], \"peak_profile\": null}");
    char *big = malloc(3 * RUNDIR_CMDLINE_MAX);
    assert_non_null(big);
    int o = sprintf(big, "{\"pid\": 62, \"cmdline\": [");
    for (int i = 0; i < 2000; i++) o += sprintf(big + o, "%s\"arg%d\"", i ? ", " : "", i);
    strcpy(big + o, "]}");
    tt_write_str("summary.62.json", big);
    free(big);
    load();
    assert_string_equal(proc("60")->cmdline, "/bin/sh -c 'echo '\\''hi'\\'' > $X' '' plain '?'");  /* not a string: ? (quoted: a glob) */
    assert_string_equal(proc("60")->peak_profile, "heap.60.0002.peak.pb.gz");
    assert_null(proc("61")->cmdline);
    assert_null(proc("61")->peak_profile);
    assert_int_equal(strlen(proc("62")->cmdline), RUNDIR_CMDLINE_MAX);
    assert_true(strncmp(proc("62")->cmdline, "arg0 arg1 arg2 ", 15) == 0);
}

/* nest: a record whose "x" holds n arrays, the innermost holding `inner`. */
static char *nest(size_t n, const char *inner, double t)
{
    char *s = malloc(2 * n + 64);
    assert_non_null(s);
    int o = sprintf(s, "{\"time\": %.0f, \"x\": ", t);
    memset(s + o, '[', n);
    o += (int)n;
    o += sprintf(s + o, "%s", inner);
    memset(s + o, ']', n);
    o += (int)n;
    strcpy(s + o, "}");
    return s;
}

/* Values at most 64 deep (the top object is 1) are read, deeper ones make
 * the record bad; far deeper ones too, without recursing so deep. */
static void test_depth(void **state)
{
    (void)state;
    struct {
        size_t arrays;
        const char *inner;
        bool ok;
    } cases[] = { { 63, "", true }, { 64, "", false }, { 62, "1", true }, { 63, "1", false }, { 100000, "", false } };
    tt_zstd_t z;
    tt_zstd_open(&z, "timeline.60.jsonl.zst");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *s = nest(cases[i].arrays, cases[i].inner, T0 + (double)i);
        tt_zstd_put(&z, s, strlen(s), ZSTD_e_flush);
        tt_zstd_put(&z, "\n", 1, ZSTD_e_flush);
        free(s);
    }
    tt_zstd_close(&z, 1);
    load();
    const rundir_proc_t *p = proc("60");
    assert_int_equal(p->nsamples, 2);
    assert_num(p->samples[0].time, T0);
    assert_num(p->samples[1].time, T0 + 2);
    /* the first bad line: its 64th array, at depth 65, opens at byte 26 + 63 */
    assert_string_equal(p->errors[0], "timeline.60.jsonl.zst: line 2: nested too deep at byte 89");
    assert_string_equal(p->errors[1], "timeline.60.jsonl.zst: 3 bad lines in all");
}

/* Alerts past ALERTS_PER_PROC are counted, not kept, except one that
 * raises the worst level: kept, without its stacks and profile. */
static void test_alert_cap(void **state)
{
    (void)state;
    FILE *f = fopen(tt_path("alerts.70.jsonl"), "w");
    assert_non_null(f);
    const char *top = "\"profile\": \"heap.70.0001.alert.pb.gz\", \"top\": [{\"stack\": [\"a\"], \"function\": \"a\"}]";
    for (int i = 0; i < 4096 + 10; i++) fprintf(f, "{\"time\": %d, \"level\": \"warn\", %s}\n", i, top);
    fprintf(f, "{\"time\": 5000, \"event\": \"recovery\", \"level\": \"warn\"}\n");
    fprintf(f, "{\"time\": 5001, \"level\": \"crit\", \"metric\": \"objects_rate\", %s}\n", top);
    fprintf(f, "{\"time\": 5002, \"level\": \"crit\", %s}\n", top);
    fprintf(f, "{\"time\": 5003, \"level\": \"warn\", \"event\": \"alert\"");   /* cut by a crash */
    fclose(f);
    load();
    const rundir_proc_t *p = proc("70");
    assert_int_equal(p->nalerts, 4097);
    assert_int_equal(p->alerts_dropped, 12);   /* 10 warn, the recovery, the second crit */
    const rundir_alert_t *crit = &p->alerts[4096];
    assert_int_equal(crit->level, RUNDIR_CRIT);
    assert_num(crit->time, 5001);
    assert_int_equal(crit->ntop, 0);
    assert_null(crit->profile);
    assert_int_equal(p->alerts[4095].ntop, 1);
    assert_int_equal(p->nerrors, 0);
    assert_non_null(line_with(p->notes, p->nnotes, "alerts.70.jsonl: an unfinished last line ignored"));
    assert_non_null(line_with(p->notes, p->nnotes, "12 alerts not kept (past 4096 per process"));
}

/* A timeline longer than the samples a process keeps: merged pairwise, the
 * highest rates, the peak and the last record exact. */
static void test_merge(void **state)
{
    (void)state;
    enum { N = 2 * 65536 + 3 };
    tt_zstd_t z;
    tt_zstd_open(&z, "timeline.80.jsonl.zst");
    char line[160];
    for (int i = 0; i < N; i++) {
        double rate = i == 77777 ? 99999 : i % 100, live = i == 5 ? 1e9 : i;
        snprintf(line, sizeof line, "{\"time\": %d, \"objects_rate\": %.3f, \"bytes_rate\": %d, \"live_bytes\": %.0f}\n",
                 i, rate, i == N - 2 ? 777 : 1, live);
        tt_zstd_put(&z, line, strlen(line), i % 1000 == 999 ? ZSTD_e_flush : ZSTD_e_continue);
    }
    tt_zstd_close(&z, 1);
    load();
    const rundir_proc_t *p = proc("80");
    assert_int_equal(p->nrecords, N);
    assert_int_equal(p->sample_stride, 4);
    assert_in_range(p->nsamples, N / 4, 65536);
    double max_rate = 0, max_brate = 0, max_peak = 0;
    for (size_t i = 0; i < p->nsamples; i++) {
        max_rate = fmax(max_rate, p->samples[i].objects_rate);
        max_brate = fmax(max_brate, p->samples[i].bytes_rate);
        max_peak = fmax(max_peak, p->samples[i].peak_live_bytes);
        if (i) assert_true(p->samples[i].time > p->samples[i - 1].time);
    }
    assert_num(max_rate, 99999);
    assert_num(max_brate, 777);
    assert_num(max_peak, 1e9);
    assert_num(p->samples[p->nsamples - 1].time, N - 1);
    assert_num(p->samples[p->nsamples - 1].live_bytes, N - 1);
    assert_non_null(line_with(p->notes, p->nnotes, "131075 records kept as"));
}

/* snapshot_t: what a load kept of one process's timeline. */
typedef struct {
    size_t nrecords, nsamples, stride;
    double last_time, max_rate;
} snapshot_t;

/* load_on: loads the scratch directory with `ncpus` CPUs allowed (the
 * reader starts one thread per CPU), into snap[0..n) by tag "9<i>". */
static void load_on(int ncpus, snapshot_t *snap, size_t n)
{
    load_cpus(ncpus);
    for (size_t i = 0; i < n; i++) {
        char tag[32];
        snprintf(tag, sizeof tag, "9%zu", i);
        const rundir_proc_t *p = proc(tag);
        snap[i] = (snapshot_t){ p->nrecords, p->nsamples, p->sample_stride, p->samples[p->nsamples - 1].time, 0 };
        for (size_t k = 0; k < p->nsamples; k++) snap[i].max_rate = fmax(snap[i].max_rate, p->samples[k].objects_rate);
    }
}

/* The samples budget (SAMPLES_BUDGET, 262144 in all) when the timelines
 * hold more: what each process keeps is the same whether one thread
 * reads the directory or several (the budget is shared out by the bytes of
 * each chunk's timelines, never first come, first served across
 * threads); the total stays within the budget plus SAMPLES_FLOOR each;
 * the judged values (the highest rate, the last record) stay exact. */
static void test_budget_shares(void **state)
{
    (void)state;
    enum { NPROC = 12, BUDGET = 262144, FLOOR = 8 };
    size_t records[NPROC];
    for (size_t i = 0; i < NPROC; i++) {
        records[i] = 8000 + 6000 * i;   /* 8,000 to 74,000: 492,000 in all */
        char name[64], line[128];
        snprintf(name, sizeof name, "timeline.9%zu.jsonl.zst", i);
        tt_zstd_t z;
        tt_zstd_open(&z, name);
        for (size_t r = 0; r < records[i]; r++) {
            snprintf(line, sizeof line, "{\"time\": %zu, \"objects_rate\": %zu, \"live_bytes\": %zu}\n", r,
                     r == records[i] / 3 ? 5000 + i : r % 50, r);
            tt_zstd_put(&z, line, strlen(line), r % 2000 == 1999 ? ZSTD_e_flush : ZSTD_e_continue);
        }
        tt_zstd_close(&z, 1);
    }
    snapshot_t one[NPROC], many[NPROC];
    load_on(1, one, NPROC);
    load_on(CPU_SETSIZE, many, NPROC);
    size_t total = 0, merged = 0;
    for (size_t i = 0; i < NPROC; i++) {
        assert_int_equal(one[i].nrecords, records[i]);
        assert_int_equal(one[i].nsamples, many[i].nsamples);
        assert_int_equal(one[i].stride, many[i].stride);
        assert_num(one[i].last_time, (double)(records[i] - 1));
        assert_num(many[i].last_time, one[i].last_time);
        assert_num(one[i].max_rate, 5000.0 + (double)i);
        assert_num(many[i].max_rate, one[i].max_rate);
        total += one[i].nsamples;
        merged += one[i].stride > 1;
    }
    print_message("# %d timelines of %d records: %zu samples kept, %zu merged\n", NPROC, 492000, total, merged);
    assert_true(total <= BUDGET + FLOOR * NPROC);
    assert_true(total >= BUDGET / 4);   /* the budget is used, not starved */
    assert_true(merged >= NPROC / 2);
}

/* Which names are the agent's: tags, profiles sorted by seq, the rest
 * ignored; an empty, missing or wrong directory is an error. */
static void test_directory(void **state)
{
    (void)state;
    char msg[512];
    assert_int_equal(rundir_load(tt_dir, &rd, msg, sizeof msg), RUNDIR_ERR_EMPTY);
    assert_contains(msg, "no heapwatch results");
    rundir_free(&rd);
    tt_write_str("heap.10.0002.exit.pb.gz", "");
    assert_int_equal(rundir_load(tt_dir, &rd, msg, sizeof msg), RUNDIR_ERR_EMPTY);
    assert_contains(msg, "only heap profiles");
    rundir_free(&rd);
    assert_int_equal(rundir_load(tt_path("nope"), &rd, msg, sizeof msg), RUNDIR_ERR_OPEN);
    assert_contains(msg, "No such file or directory");
    rundir_free(&rd);
    assert_int_equal(rundir_load(tt_path("heap.10.0002.exit.pb.gz"), &rd, msg, sizeof msg), RUNDIR_ERR_NOTDIR);
    rundir_free(&rd);

    tt_write_str("summary.10.json", "{\"start_time\": 3}");
    tt_write_str("summary.10-2.json", "{\"start_time\": 1}");
    tt_write_str("alerts.11.jsonl", "{\"time\": 2, \"level\": \"warn\"}\n");
    tt_write_str("heap.10.0001.signal.pb.gz", "");
    tt_write_str("heap.10.0010.http.pb.gz", "");
    const char *foreign[] = { "summary.x.json", "summary.10.json.tmp", ".summary.10.json.tmp.1", "heap.10.1.EXIT.pb.gz",
                              "summary.1234567890123456789.json", "summary.10-1.json", "summary.10-.json",
                              "timeline.12.jsonl", "alerts.13.json", "heap.10.pb.gz" };
    for (size_t i = 0; i < sizeof foreign / sizeof *foreign; i++) tt_write_str(foreign[i], "{");
    assert_int_equal(mkdir(tt_path("summary.14.json"), 0755), 0);
    load();
    assert_int_equal(rd.nprocs, 3);
    assert_string_equal(rd.procs[0].tag, "10-2");   /* by start time */
    assert_int_equal(rd.procs[0].inst, 2);
    assert_string_equal(rd.procs[1].tag, "11");
    assert_string_equal(rd.procs[2].tag, "10");
    const rundir_proc_t *p = proc("10");
    assert_int_equal(p->nprofiles, 3);
    assert_int_equal(p->profiles[0].seq, 1);
    assert_int_equal(p->profiles[1].seq, 2);
    assert_string_equal(p->profiles[2].name, "heap.10.0010.http.pb.gz");
    assert_int_equal(p->nerrors, 0);
    assert_int_equal(rd.files_skipped, 0);
}

/* The profiles the report and the page look for: the latest of a reason,
 * the one an alert names; read on demand, not at load (a damaged profile
 * loads like any other and fails only when read, with its name). */
static void test_profiles_found(void **state)
{
    (void)state;
    tt_write_str("summary.20.json", "{\"start_time\": 3}");
    tt_write_str("heap.20.0001.interval.pb.gz", "junk");
    tt_write_str("heap.20.0002.peak.pb.gz", "junk");
    tt_write_str("heap.20.0003.alert.pb.gz", "junk");
    tt_write_str("heap.20.0004.peak.pb.gz", "junk");
    /* A raw profile (protobuf without gzip): period 7, nothing else. */
    tt_write("heap.20.0005.exit.pb.gz", "\x60\x07", 2);
    tt_write_str("summary.21.json", "{\"start_time\": 4}");
    load();
    const rundir_proc_t *p = proc("20"), *q = proc("21");
    const rundir_profile_t *pr = rundir_profile_find(p, "peak");
    assert_non_null(pr);
    assert_string_equal(pr->name, "heap.20.0004.peak.pb.gz");   /* the latest */
    assert_string_equal(rundir_profile_find(p, "exit")->name, "heap.20.0005.exit.pb.gz");
    assert_null(rundir_profile_find(p, "signal"));
    assert_null(rundir_profile_find(q, "exit"));
    assert_string_equal(rundir_profile_named(p, "heap.20.0003.alert.pb.gz")->name, "heap.20.0003.alert.pb.gz");
    assert_null(rundir_profile_named(p, "heap.20.0009.alert.pb.gz"));
    rundir_alert_t a;
    memset(&a, 0, sizeof a);
    assert_null(rundir_alert_profile(p, &a));
    a.profile = (char *)"heap.20.0003.alert.pb.gz";
    assert_ptr_equal(rundir_alert_profile(p, &a), &p->profiles[2]);

    profile_t pf;
    char msg[512];
    assert_int_equal(rundir_profile_read(&rd, rundir_profile_find(p, "exit"), &pf, msg, sizeof msg), 0);
    assert_int_equal(pf.period, 7);
    assert_int_equal(pf.nsamples, 0);
    profile_free(&pf);
    assert_int_equal(rundir_profile_read(&rd, pr, &pf, msg, sizeof msg), -1);
    assert_contains(msg, "heap.20.0004.peak.pb.gz: not a profile");
    profile_free(&pf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_real_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frames_and_cuts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_block_cuts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alert_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_shares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profiles_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmdline_peak, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
