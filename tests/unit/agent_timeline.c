/*
 * agent_timeline.c - the zstd JSONL timeline writer (agent/timeline.c).
 *
 * Every file is decoded twice: with libzstd's streaming decoder limited to
 * the 16 KiB window the writer promises (it must get every record flushed so
 * far, also from a file whose last frame is unfinished, as after kill -9),
 * and with the `zstd -dc` command for files that were closed. Failures are
 * injected through the OS seams (write, fsync, rename, open; writable with
 * -DHEAPWATCH_TEST) and the failing test allocator; each must give its error
 * code, leave no file when nothing was published, and return every byte.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>
#include <cmocka.h>

#include "agent/out.h"
#include "agent/timeline.h"
#include "test_util.h"

#define PID 4242

static test_alloc_t ta;
static map_allocator_t alloc;
static char dir[256];
static char final_path[512];
static char tmp_path[512];

/* ------------------------------------------------------------------------ */
/* Fixture                                                                  */
/* ------------------------------------------------------------------------ */

static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_fsync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_open)(const char *, int, mode_t);

static void remove_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *de;
    char p[1024];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", path, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            chmod(p, 0755);
            remove_dir(p);
        } else {
            unlink(p);
        }
    }
    closedir(d);
    rmdir(path);
}

static int setup(void **state)
{
    (void)state;
    memset(&ta, 0, sizeof ta);
    alloc = test_allocator(&ta);
    strcpy(dir, "/tmp/hw_timeline_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(final_path, sizeof final_path, "%s/timeline.%d.jsonl.zst", dir, PID);
    snprintf(tmp_path, sizeof tmp_path, "%s/.timeline.%d.jsonl.zst.tmp.%d", dir, PID, PID);
    real_write = timeline_sys_write;
    real_fsync = timeline_sys_fsync;
    real_rename = timeline_sys_rename;
    real_open = timeline_sys_open;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    timeline_sys_write = real_write;
    timeline_sys_fsync = real_fsync;
    timeline_sys_rename = real_rename;
    timeline_sys_open = real_open;
    remove_dir(dir);
    return 0;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* dir_entries: how many names the test directory holds. */
static int dir_entries(void)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Records                                                                  */
/* ------------------------------------------------------------------------ */

/* text_t: a growable byte string (malloc: tests may). */
typedef struct {
    char *p;
    size_t len, cap;
} text_t;

static void text_add(text_t *t, const void *p, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->p = realloc(t->p, t->cap);
        assert_non_null(t->p);
    }
    memcpy(t->p + t->len, p, n);
    t->len += n;
    t->p[t->len] = 0;
}

static void text_free(text_t *t)
{
    free(t->p);
    memset(t, 0, sizeof *t);
}

/* make_line: record i, shaped like the agent's, with a padding field of a
 * pseudo-random length (pad_max 0: none). */
static size_t make_line(char *buf, size_t cap, uint64_t i, unsigned pad_max)
{
    uint64_t rs = i;
    unsigned pad = pad_max ? (unsigned)(test_rand(&rs) % pad_max) : 0;
    int n = snprintf(buf, cap,
                     "{\"time\":%llu.%03llu,\"mallocs\":%llu,\"frees\":%llu,\"live_objects\":%llu,"
                     "\"objects_rate\":%llu.%03llu,\"seq\":%llu,\"pad\":\"",
                     (unsigned long long)(1700000000 + i), (unsigned long long)(i * 37 % 1000),
                     (unsigned long long)(1000 + 12345 * i), (unsigned long long)(900 + 12001 * i),
                     (unsigned long long)(100 + 344 * i), (unsigned long long)(i * 31 % 5000),
                     (unsigned long long)(i % 1000), (unsigned long long)i);
    assert_true(n > 0 && (size_t)n + pad + 4 < cap);
    for (unsigned k = 0; k < pad; k++) buf[n++] = (char)('a' + (test_rand(&rs) % 26));
    buf[n++] = '"';
    buf[n++] = '}';
    buf[n++] = '\n';
    buf[n] = 0;
    return (size_t)n;
}

/* append_n: appends records [from, to), expecting success, into *all. */
static void append_n(timeline_t *t, uint64_t from, uint64_t to, unsigned pad_max, text_t *all)
{
    char line[2048];
    for (uint64_t i = from; i < to; i++) {
        size_t n = make_line(line, sizeof line, i, pad_max);
        assert_int_equal(timeline_append(t, line, n), TIMELINE_OK);
        if (all) text_add(all, line, n);
    }
}

/* ------------------------------------------------------------------------ */
/* Decoders                                                                 */
/* ------------------------------------------------------------------------ */

/* decoded_t: what the streaming decoder got from a file. */
typedef struct {
    text_t text;
    size_t frames;              /* frames completed */
    size_t frame_end[4096];     /* decompressed length at each frame's end */
    bool on_frame_end;          /* the file ends exactly after a frame */
    bool error;                 /* the decoder reported an error */
} decoded_t;

static void read_file(const char *path, text_t *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) text_add(out, buf, n);
    fclose(f);
}

/* decode_bytes: streams data through ZSTD_decompressStream in chunks of
 * `chunk` bytes, with the window limited to what the writer promises. */
static void decode_bytes(const char *data, size_t len, size_t chunk, decoded_t *d)
{
    memset(d, 0, sizeof *d);
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    assert_non_null(dc);
    assert_false(ZSTD_isError(ZSTD_DCtx_setParameter(dc, ZSTD_d_windowLogMax,
                                                     TIMELINE_WINDOW_LOG)));
    static char out[1 << 17];
    size_t ret = 0;
    d->on_frame_end = true;
    for (size_t off = 0; off < len && !d->error; off += chunk) {
        ZSTD_inBuffer in = { data + off, len - off < chunk ? len - off : chunk, 0 };
        while (in.pos < in.size) {
            ZSTD_outBuffer ob = { out, sizeof out, 0 };
            ret = ZSTD_decompressStream(dc, &ob, &in);
            if (ZSTD_isError(ret)) {
                d->error = true;
                break;
            }
            text_add(&d->text, out, ob.pos);
            if (ret == 0) {
                assert_true(d->frames < 4096);
                d->frame_end[d->frames++] = d->text.len;
            }
        }
        /* Drain what the decoder still holds; a call that produces nothing
         * only says how much input it wants next, not where a frame ends. */
        for (;;) {
            ZSTD_outBuffer ob = { out, sizeof out, 0 };
            ZSTD_inBuffer none = { NULL, 0, 0 };
            size_t r = ZSTD_decompressStream(dc, &ob, &none);
            if (ZSTD_isError(r)) {
                d->error = true;
                break;
            }
            if (ob.pos == 0) break;
            text_add(&d->text, out, ob.pos);
            ret = r;
            if (r == 0) d->frame_end[d->frames++] = d->text.len;
        }
        d->on_frame_end = ret == 0;
    }
    if (!d->text.p) text_add(&d->text, "", 0);
    ZSTD_freeDCtx(dc);
}

static void decode_file(const char *path, size_t chunk, decoded_t *d)
{
    text_t raw;
    read_file(path, &raw);
    decode_bytes(raw.p ? raw.p : "", raw.len, chunk, d);
    text_free(&raw);
}

/* zstd_cli: `zstd -dc path` into *out; @return its exit status. */
static int zstd_cli(const char *path, text_t *out)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "zstd -dc -q '%s' 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    memset(out, 0, sizeof *out);
    text_add(out, "", 0);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) text_add(out, buf, n);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void assert_text_equal(const text_t *a, const text_t *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->p, b->p, a->len);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(timeline_strerror(TIMELINE_OK), "ok");
    assert_string_equal(timeline_strerror(TIMELINE_ERR_NOSPACE), "no space left on device");
    assert_string_equal(timeline_strerror(TIMELINE_ERR_ZSTD), "zstd compression error");
    assert_string_equal(timeline_strerror((timeline_err_t)77), "unknown error");
}

/* 5000 records of 100 to 700 bytes with the default frame bounds: both
 * decoders give the input back; frames hold at most 256 records and end
 * once they reach 64 KiB; all memory is returned at close. */
static void test_roundtrip(void **state)
{
    (void)state;
    timeline_t *t;
    text_t all = { 0 };
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    assert_string_equal(timeline_name(t), "timeline.4242.jsonl.zst");
    append_n(t, 0, 5000, 600, &all);
    timeline_stats_t st;
    timeline_get_stats(t, &st);
    assert_int_equal(st.records, 5000);
    assert_int_equal(st.bytes_in, all.len);
    assert_int_equal(timeline_error(t), TIMELINE_OK);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    assert_int_equal(ta.live_blocks, 0);
    assert_int_equal(dir_entries(), 1);

    decoded_t d;
    decode_file(final_path, 4096, &d);
    assert_false(d.error);
    assert_true(d.on_frame_end);
    assert_text_equal(&d.text, &all);
    assert_true(d.frames >= st.frames);     /* close ended the last one */
    assert_true(d.frames <= st.frames + 1);
    size_t start = 0;
    for (size_t f = 0; f < d.frames; f++) {
        size_t records = 0;
        for (size_t k = start; k < d.frame_end[f]; k++) records += d.text.p[k] == '\n';
        assert_true(records >= 1 && records <= TIMELINE_FRAME_RECORDS);
        assert_int_equal(d.text.p[d.frame_end[f] - 1], '\n');   /* frames end on records */
        size_t bytes = d.frame_end[f] - start;
        size_t last_len = 0;
        for (size_t k = d.frame_end[f] - 1; k > start && d.text.p[k - 1] != '\n'; k--) last_len++;
        assert_true(bytes - last_len - 1 < TIMELINE_FRAME_BYTES);   /* ends at the one that reached it */
        start = d.frame_end[f];
    }
    text_t cli;
    assert_int_equal(zstd_cli(final_path, &cli), 0);
    assert_text_equal(&cli, &all);

    struct stat sb;
    assert_int_equal(stat(final_path, &sb), 0);
    assert_true((uint64_t)sb.st_size > st.bytes_out);   /* close wrote the last frame's end */
    assert_true((uint64_t)sb.st_size < all.len);        /* random padding: ~0.6 */
    text_free(&cli);
    text_free(&d.text);
    text_free(&all);

    /* Records shaped like the agent's, no padding: about 3x smaller. */
    unlink(final_path);
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    append_n(t, 0, 2000, 0, &all);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    assert_int_equal(stat(final_path, &sb), 0);
    print_message("timeline: %zu records, %zu bytes -> %lld compressed\n", (size_t)2000, all.len,
                  (long long)sb.st_size);
    assert_true((uint64_t)sb.st_size * 5 < all.len * 2);
    text_free(&all);
}

/* Frame bounds: 10 records per frame gives frames ending after records
 * 10, 20 and, at close, 25; 1000 bytes per frame with 300-byte records ends
 * a frame on every 4th record (the one that reaches 1000). */
static void test_frame_bounds(void **state)
{
    (void)state;
    timeline_t *t;
    timeline_opts_t o = { .frame_records = 10 };
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, &o), TIMELINE_OK);
    text_t all = { 0 };
    append_n(t, 0, 25, 0, &all);
    timeline_stats_t st;
    timeline_get_stats(t, &st);
    assert_int_equal(st.frames, 2);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    decoded_t d;
    decode_file(final_path, 1 << 20, &d);
    assert_false(d.error);
    assert_text_equal(&d.text, &all);
    assert_int_equal(d.frames, 3);
    size_t ends[3] = { 0 };
    for (size_t k = 0, rec = 0, f = 0; k < all.len; k++)
        if (all.p[k] == '\n' && (++rec == 10 || rec == 20 || rec == 25)) ends[f++] = k + 1;
    for (int f = 0; f < 3; f++) assert_int_equal(d.frame_end[f], ends[f]);
    text_free(&d.text);
    text_free(&all);
    remove_dir(dir);
    assert_int_equal(mkdir(dir, 0700), 0);

    timeline_opts_t ob = { .frame_bytes = 1000 };
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, &ob), TIMELINE_OK);
    char line[301];
    memset(line, 'x', 299);
    line[299] = '\n';
    for (int i = 0; i < 10; i++) assert_int_equal(timeline_append(t, line, 300), TIMELINE_OK);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    decode_file(final_path, 1 << 20, &d);
    assert_false(d.error);
    assert_int_equal(d.text.len, 3000);
    assert_int_equal(d.frames, 3);
    assert_int_equal(d.frame_end[0], 1200);
    assert_int_equal(d.frame_end[1], 2400);
    assert_int_equal(d.frame_end[2], 3000);
    text_free(&d.text);
    assert_int_equal(ta.live_blocks, 0);
}

/* Whole or not at all: after open only the hidden temporary file exists;
 * the first append publishes the final name (already holding its record,
 * decodable); closing with no record leaves an empty directory. */
static void test_publish_on_first_append(void **state)
{
    (void)state;
    timeline_t *t;
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    assert_false(exists(final_path));
    assert_true(exists(tmp_path));
    assert_false(timeline_published(t));
    text_t all = { 0 };
    append_n(t, 0, 1, 0, &all);
    assert_true(timeline_published(t));
    assert_true(exists(final_path));
    assert_false(exists(tmp_path));
    decoded_t d;
    decode_file(final_path, 7, &d);
    assert_false(d.error);
    assert_false(d.on_frame_end);           /* the frame is still open */
    assert_text_equal(&d.text, &all);
    text_free(&d.text);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    assert_int_equal(dir_entries(), 1);
    text_free(&all);

    unlink(final_path);
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    assert_int_equal(dir_entries(), 1);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    assert_int_equal(dir_entries(), 0);
    assert_int_equal(ta.live_blocks, 0);
}

/* While the program runs, the file always holds every record appended so
 * far; after a "kill" (a copy of the file taken without closing) the
 * streaming decoder gets all 1000 records and `zstd -dc` every complete
 * frame, complaining about the unfinished last one. */
static void test_running_and_killed(void **state)
{
    (void)state;
    timeline_t *t;
    text_t all = { 0 };
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    decoded_t d;
    for (uint64_t i = 0; i < 300; i++) {
        append_n(t, i, i + 1, 200, &all);
        decode_file(final_path, 4096, &d);
        assert_false(d.error);
        assert_text_equal(&d.text, &all);
        text_free(&d.text);
    }
    append_n(t, 300, 1000, 200, &all);
    timeline_stats_t st;
    timeline_get_stats(t, &st);
    assert_true(st.frames >= 3);

    char copy[600];
    snprintf(copy, sizeof copy, "%s/killed.zst", dir);
    text_t raw;
    read_file(final_path, &raw);
    FILE *f = fopen(copy, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(raw.p, 1, raw.len, f), raw.len);
    fclose(f);
    decode_bytes(raw.p, raw.len, 1, &d);    /* byte by byte: the hardest feed */
    assert_false(d.error);
    assert_false(d.on_frame_end);
    assert_int_equal(d.frames, st.frames);
    assert_text_equal(&d.text, &all);
    text_t cli;
    assert_int_not_equal(zstd_cli(copy, &cli), 0);
    assert_true(cli.len >= d.frame_end[d.frames - 1]);   /* at least every complete frame */
    assert_memory_equal(cli.p, all.p, cli.len);
    text_free(&cli);
    text_free(&d.text);
    text_free(&raw);

    assert_int_equal(timeline_close(t), TIMELINE_OK);
    assert_int_equal(zstd_cli(final_path, &cli), 0);
    assert_text_equal(&cli, &all);
    text_free(&cli);
    text_free(&all);
    assert_int_equal(ta.live_blocks, 0);
}

/* A forked child abandons the writer it inherited: it writes nothing, and
 * the parent goes on to a complete file. Abandoning frees everything and
 * leaves the file as it was. */
static void test_fork_abandon(void **state)
{
    (void)state;
    timeline_t *t;
    text_t all = { 0 };
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    append_n(t, 0, 3, 50, &all);
    struct stat before, after;
    assert_int_equal(stat(final_path, &before), 0);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        timeline_abandon(t);
        _exit(ta.live_blocks == 0 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(stat(final_path, &after), 0);
    assert_int_equal(after.st_size, before.st_size);
    append_n(t, 3, 6, 50, &all);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    text_t cli;
    assert_int_equal(zstd_cli(final_path, &cli), 0);
    assert_text_equal(&cli, &all);
    text_free(&cli);

    /* Abandon in place: memory back, the file untouched (frame unfinished). */
    text_free(&all);
    unlink(final_path);
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    append_n(t, 0, 5, 50, &all);
    assert_int_equal(stat(final_path, &before), 0);
    timeline_abandon(t);
    timeline_abandon(NULL);
    assert_int_equal(ta.live_blocks, 0);
    assert_int_equal(stat(final_path, &after), 0);
    assert_int_equal(after.st_size, before.st_size);
    decoded_t d;
    decode_file(final_path, 100, &d);
    assert_false(d.error);
    assert_text_equal(&d.text, &all);
    text_free(&d.text);
    text_free(&all);
}

static int open_eacces(const char *path, int flags, mode_t mode)
{
    errno = EACCES;
    return -1;
}

/* expect_open_fails: open in `where` fails with `want`, no memory kept. */
static void expect_open_fails(const char *where, timeline_err_t want)
{
    timeline_t *t = (timeline_t *)&t;
    timeline_err_t err = timeline_open(&t, &alloc, where, PID, NULL);
    if (want == TIMELINE_OK) assert_int_not_equal(err, TIMELINE_OK);   /* any error */
    else assert_int_equal(err, want);
    assert_null(t);
    assert_int_equal(ta.live_blocks, 0);
}

/* Directories that cannot take the file: an error, never a crash. */
static void test_unwritable_dir(void **state)
{
    (void)state;
    char p[600];
    snprintf(p, sizeof p, "%s/missing", dir);
    expect_open_fails(p, TIMELINE_ERR_NOENT);
    snprintf(p, sizeof p, "%s/plain", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(p, sizeof p, "%s/plain/sub", dir);
    expect_open_fails(p, TIMELINE_ERR_NOENT);    /* ENOTDIR */
    expect_open_fails("/proc", TIMELINE_OK);     /* no new files there, even for root */
    if (geteuid() != 0) {
        snprintf(p, sizeof p, "%s/ro", dir);
        assert_int_equal(mkdir(p, 0555), 0);
        expect_open_fails(p, TIMELINE_ERR_PERM);
    }
    timeline_sys_open = open_eacces;    /* root ignores mode bits: the seam does not */
    expect_open_fails(dir, TIMELINE_ERR_PERM);
    timeline_sys_open = real_open;
    static char longdir[5000];
    memset(longdir, 'a', sizeof longdir - 1);
    expect_open_fails(longdir, TIMELINE_ERR_INVALID);
    assert_int_equal(dir_entries(), 1);     /* only "plain" */
}

/* Fake disk: takes write_budget more bytes (short write first), then ENOSPC. */
static size_t write_budget;
static int write_calls;

static ssize_t write_full_disk(int fd, const void *p, size_t n)
{
    write_calls++;
    if (write_budget == 0) {
        errno = ENOSPC;
        return -1;
    }
    if (n > write_budget) n = write_budget;
    write_budget -= n;
    return real_write(fd, p, n);
}

static ssize_t write_zero(int fd, const void *p, size_t n)
{
    write_calls++;
    return 0;
}

static ssize_t write_short_eintr(int fd, const void *p, size_t n)
{
    if (write_calls++ % 2 == 0) {
        errno = EINTR;
        return -1;
    }
    return real_write(fd, p, n > 7 ? 7 : n);
}

static int fsync_eio(int fd)
{
    errno = EIO;
    return -1;
}

static int rename_exdev(const char *from, const char *to)
{
    errno = EXDEV;
    return -1;
}

/* expect_sticky: every later append fails the same way without writing,
 * and close reports it. */
static void expect_sticky(timeline_t *t, timeline_err_t want)
{
    int calls = write_calls;
    char line[] = "{\"x\":1}\n";
    assert_int_equal(timeline_error(t), want);
    for (int i = 0; i < 3; i++) assert_int_equal(timeline_append(t, line, strlen(line)), want);
    assert_int_equal(write_calls, calls);
    assert_int_equal(timeline_close(t), want);
    assert_int_equal(write_calls, calls);
    assert_int_equal(ta.live_blocks, 0);
}

/* A full disk at the first record: nothing appears. Later: the file keeps
 * every record written before. Either way the writer fails quietly and
 * for good. */
static void test_disk_full(void **state)
{
    (void)state;
    timeline_t *t;
    char line[2048];
    size_t n = make_line(line, sizeof line, 0, 0);

    timeline_sys_write = write_full_disk;
    write_budget = 0;
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    assert_int_equal(timeline_append(t, line, n), TIMELINE_ERR_NOSPACE);
    assert_false(timeline_published(t));
    assert_int_equal(dir_entries(), 0);
    expect_sticky(t, TIMELINE_ERR_NOSPACE);
    assert_int_equal(dir_entries(), 0);

    write_budget = 3000;    /* room for a few dozen records, then a short write */
    text_t all = { 0 };
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    uint64_t i = 0;
    timeline_err_t err = TIMELINE_OK;
    for (; i < 10000 && err == TIMELINE_OK; i++) {
        n = make_line(line, sizeof line, i, 100);
        err = timeline_append(t, line, n);
        if (err == TIMELINE_OK) text_add(&all, line, n);
    }
    assert_int_equal(err, TIMELINE_ERR_NOSPACE);
    assert_true(i > 10);
    assert_true(timeline_published(t));
    expect_sticky(t, TIMELINE_ERR_NOSPACE);
    decoded_t d;
    decode_file(final_path, 4096, &d);      /* may end in a torn block: error allowed */
    assert_true(d.text.len >= all.len);
    assert_memory_equal(d.text.p, all.p, all.len);
    text_free(&d.text);
    text_free(&all);
    unlink(final_path);

    timeline_sys_write = write_zero;        /* a write that makes no progress */
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    assert_int_equal(timeline_append(t, line, n), TIMELINE_ERR_NOSPACE);
    expect_sticky(t, TIMELINE_ERR_NOSPACE);
    assert_int_equal(dir_entries(), 0);

    timeline_sys_write = write_short_eintr; /* slow but fine */
    write_calls = 0;
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    append_n(t, 0, 200, 100, &all);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    assert_true(write_calls > 200);
    text_t cli;
    assert_int_equal(zstd_cli(final_path, &cli), 0);
    assert_text_equal(&cli, &all);
    text_free(&cli);
    text_free(&all);
    unlink(final_path);
    timeline_sys_write = real_write;
    assert_int_equal(ta.live_blocks, 0);
}

/* fsync or rename failing at publication: no file; fsync failing at close:
 * reported, the file stays whole. */
static void test_publish_failures(void **state)
{
    (void)state;
    timeline_t *t;
    char line[] = "{\"a\":1}\n";
    timeline_sys_fsync = fsync_eio;
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    assert_int_equal(timeline_append(t, line, strlen(line)), TIMELINE_ERR_IO);
    assert_int_equal(dir_entries(), 0);
    expect_sticky(t, TIMELINE_ERR_IO);
    timeline_sys_fsync = real_fsync;

    timeline_sys_rename = rename_exdev;
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    assert_int_equal(timeline_append(t, line, strlen(line)), TIMELINE_ERR_IO);
    assert_int_equal(dir_entries(), 0);
    expect_sticky(t, TIMELINE_ERR_IO);
    timeline_sys_rename = real_rename;

    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    assert_int_equal(timeline_append(t, line, strlen(line)), TIMELINE_OK);
    timeline_sys_fsync = fsync_eio;
    assert_int_equal(timeline_close(t), TIMELINE_ERR_IO);
    timeline_sys_fsync = real_fsync;
    text_t cli;
    assert_int_equal(zstd_cli(final_path, &cli), 0);
    assert_string_equal(cli.p, line);
    text_free(&cli);
    assert_int_equal(ta.live_blocks, 0);
}

/* no_fsync (the agent's default, HEAPWATCH_FSYNC=off): no fsync at
 * publication nor at close (a failing fsync is never met), and the file
 * is whole and readable after every record and after close. */
static int fsync_calls;
static int fsync_counted(int fd)
{
    fsync_calls++;
    return fsync_eio(fd);
}

static void test_no_fsync(void **state)
{
    (void)state;
    timeline_t *t;
    timeline_opts_t o = { .no_fsync = true };
    timeline_sys_fsync = fsync_counted;
    fsync_calls = 0;
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, &o), TIMELINE_OK);
    text_t all = { 0 };
    append_n(t, 0, 300, 100, &all);     /* past a frame end */
    decoded_t d;
    decode_file(final_path, 4096, &d);  /* every record while open (the last frame unfinished) */
    assert_text_equal(&d.text, &all);
    text_free(&d.text);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    text_t cli;
    assert_int_equal(fsync_calls, 0);
    assert_int_equal(zstd_cli(final_path, &cli), 0);
    assert_text_equal(&cli, &all);
    text_free(&cli);
    text_free(&all);
    unlink(final_path);
    timeline_sys_fsync = real_fsync;
    assert_int_equal(ta.live_blocks, 0);
}

/* one_record (the exit record of a process that wrote none): that record
 * alone, as one whole frame (zstd -t and the CLI read it), no other record
 * or length accepted; a record of another length fails at once and leaves
 * no file. */
static void test_one_record(void **state)
{
    (void)state;
    timeline_t *t;
    char line[2048];
    size_t n = make_line(line, sizeof line, 7, 100);
    timeline_opts_t o = { .one_record = n };
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, &o), TIMELINE_OK);
    assert_int_equal(timeline_append(t, line, n), TIMELINE_OK);
    timeline_stats_t st;
    timeline_get_stats(t, &st);
    assert_int_equal(st.frames, 1);
    assert_int_equal(timeline_append(t, line, n), TIMELINE_ERR_INVALID);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    text_t cli;
    assert_int_equal(zstd_cli(final_path, &cli), 0);
    assert_int_equal(cli.len, n);
    assert_memory_equal(cli.p, line, n);
    text_free(&cli);
    /* Written without a compressor: one raw block (magic 4, header 1,
     * content size 1 or 2, block header 3, the record, checksum 4), which
     * zstd just verified (the checksum included); and the library's
     * decoder too. */
    struct stat fst;
    assert_int_equal(stat(final_path, &fst), 0);
    assert_int_equal(fst.st_size, 4 + 1 + (n < 256 ? 1 : 2) + 3 + n + 4);
    decoded_t d;
    decode_file(final_path, 5, &d);
    assert_false(d.error);
    assert_int_equal(d.frames, 1);
    assert_int_equal(d.text.len, n);
    assert_memory_equal(d.text.p, line, n);
    text_free(&d.text);
    unlink(final_path);
    /* Every length class of the header and of XXH64's tail: 1-byte content
     * sizes (< 256), 32-byte stripes and 8-, 4- and 1-byte tails. */
    for (size_t len = 1; len <= 300; len += (len < 70 ? 1 : 37)) {
        char rec[400];
        memset(rec, 'a' + (int)(len % 26), len - 1);
        rec[len - 1] = '\n';
        o.one_record = len;
        assert_int_equal(timeline_open(&t, &alloc, dir, PID, &o), TIMELINE_OK);
        assert_int_equal(timeline_append(t, rec, len), TIMELINE_OK);
        assert_int_equal(timeline_close(t), TIMELINE_OK);
        decode_file(final_path, 3, &d);
        if (d.error) fprintf(stderr, "one record of %zu bytes: not decodable\n", len);
        assert_false(d.error);
        assert_int_equal(d.text.len, len);
        assert_memory_equal(d.text.p, rec, len);
        text_free(&d.text);
        assert_int_equal(zstd_cli(final_path, &cli), 0);
        assert_int_equal(cli.len, len);
        text_free(&cli);
        unlink(final_path);
    }

    o.one_record = n + 1;
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, &o), TIMELINE_OK);
    assert_int_equal(timeline_append(t, line, n), TIMELINE_ERR_INVALID);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    assert_int_equal(dir_entries(), 0);
    assert_int_equal(ta.live_blocks, 0);
}

/* cycle: open, 600 records, close. @return the first error, or OK. */
static timeline_err_t cycle(void)
{
    timeline_t *t = NULL;
    timeline_opts_t o = { .frame_records = 50 };   /* many frames: many chances to allocate */
    timeline_err_t err = timeline_open(&t, &alloc, dir, PID, &o);
    if (err) {
        assert_null(t);
        return err;
    }
    char line[2048];
    for (uint64_t i = 0; i < 600 && !err; i++) {
        size_t n = make_line(line, sizeof line, i, 300);
        err = timeline_append(t, line, n);
    }
    timeline_err_t cerr = timeline_close(t);
    if (err) assert_int_equal(cerr, err);
    return err ? err : cerr;
}

/* Every allocation happens at open, and each one's failure gives a clean
 * NOMEM: no writer, no file, no memory kept. */
static void test_nomem_every_index(void **state)
{
    (void)state;
    assert_int_equal(cycle(), TIMELINE_OK);
    unlink(final_path);
    size_t total = ta.calls;
    assert_true(total >= 3);        /* the writer, zstd's context, its workspace */
    timeline_t *t;
    ta.calls = 0;
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    assert_int_equal(ta.calls, total);
    append_n(t, 0, 2000, 300, NULL);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    assert_int_equal(ta.calls, total);  /* the steady state allocates nothing */
    unlink(final_path);

    for (int after = 0; after <= 1; after++) {
        for (size_t k = 1; k <= total; k++) {
            ta.calls = 0;
            test_alloc_fail_nth(&ta, k, after);
            assert_int_equal(cycle(), TIMELINE_ERR_NOMEM);
            assert_int_equal(ta.live_blocks, 0);
            assert_int_equal(dir_entries(), 0);
        }
    }
    test_alloc_heal(&ta);
}

/* Bad arguments: refused without harm; a bad line leaves the writer working. */
static void test_invalid_args(void **state)
{
    (void)state;
    timeline_t *t;
    assert_int_equal(timeline_open(NULL, &alloc, dir, PID, NULL), TIMELINE_ERR_INVALID);
    assert_int_equal(timeline_open(&t, NULL, dir, PID, NULL), TIMELINE_ERR_INVALID);
    assert_int_equal(timeline_open(&t, &alloc, NULL, PID, NULL), TIMELINE_ERR_INVALID);
    assert_int_equal(timeline_open(&t, &alloc, "", PID, NULL), TIMELINE_ERR_INVALID);
    assert_int_equal(timeline_open(&t, &alloc, dir, 0, NULL), TIMELINE_ERR_INVALID);
    assert_int_equal(timeline_open(&t, &alloc, dir, -5, NULL), TIMELINE_ERR_INVALID);
    assert_int_equal(ta.calls, 0);
    assert_int_equal(timeline_open(&t, &alloc, dir, PID, NULL), TIMELINE_OK);
    assert_int_equal(timeline_append(t, "{}", 2), TIMELINE_ERR_INVALID);
    assert_int_equal(timeline_append(t, "{}\n", 0), TIMELINE_ERR_INVALID);
    assert_int_equal(timeline_append(t, NULL, 3), TIMELINE_ERR_INVALID);
    assert_int_equal(timeline_append(NULL, "{}\n", 3), TIMELINE_ERR_INVALID);
    assert_int_equal(timeline_error(t), TIMELINE_OK);
    assert_false(timeline_published(t));
    assert_int_equal(timeline_append(t, "{}\n", 3), TIMELINE_OK);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    assert_int_equal(timeline_close(NULL), TIMELINE_ERR_INVALID);
    text_t cli;
    assert_int_equal(zstd_cli(final_path, &cli), 0);
    assert_string_equal(cli.p, "{}\n");
    text_free(&cli);
    assert_int_equal(ta.live_blocks, 0);
}

/* With the agent's arena: about 200 KiB while open, all of it back at
 * close (the figure the header documents). */
static void test_arena_memory(void **state)
{
    (void)state;
    map_allocator_t arena = map_arena_allocator();
    map_arena_stats_t before, during, after;
    map_arena_get_stats(&before);
    timeline_t *t;
    assert_int_equal(timeline_open(&t, &arena, dir, PID, NULL), TIMELINE_OK);
    append_n(t, 0, 1000, 300, NULL);
    map_arena_get_stats(&during);
    size_t held = during.inuse_bytes - before.inuse_bytes;
    print_message("timeline: %zu bytes held from the arena while open\n", held);
    assert_true(held > 100 * 1024 && held < 300 * 1024);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    map_arena_get_stats(&after);
    assert_int_equal(after.inuse_bytes, before.inuse_bytes);
}

/* ------------------------------------------------------------------------ */
/* The agent's writer: timeline_open_io                                     */
/* ------------------------------------------------------------------------ */

static int io_dirfd_value = -1;
static int io_dirfd(void *ctx) { (void)ctx; return io_dirfd_value; }
static int io_publish(void *ctx, int dirfd, const char *tmp, char *name, size_t cap)
{
    (void)ctx;
    snprintf(name, cap, "timeline.%d.jsonl.zst", PID);
    return agent_publish_at(dirfd, tmp, name);
}
static const timeline_io_t io = { io_dirfd, io_publish, NULL };

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) n += de->d_name[0] != '.';
    closedir(d);
    return n - 1;   /* opendir's own */
}

/* No descriptor is kept between appends; the program may take any number
 * over and still the records land in the timeline and nowhere else. */
static void test_io_keeps_no_descriptor(void **state)
{
    (void)state;
    io_dirfd_value = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(io_dirfd_value >= 0);
    int before = count_fds();
    timeline_t *t;
    char base[64];
    snprintf(base, sizeof base, "timeline.%d.jsonl.zst", PID);
    assert_int_equal(timeline_open_io(&t, &alloc, &io, base, NULL), TIMELINE_OK);
    assert_int_equal(count_fds(), before);
    assert_false(exists(tmp_path));          /* random temporary name, not the old one */
    text_t all = { 0 };
    append_n(t, 0, 10, 0, &all);
    assert_int_equal(count_fds(), before);
    /* The program's file on the lowest free number: untouched. */
    char prog[600];
    snprintf(prog, sizeof prog, "%s/program.txt", dir);
    int pfd = open(prog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    append_n(t, 10, 20, 0, &all);
    struct stat st;
    assert_int_equal(fstat(pfd, &st), 0);
    assert_int_equal(st.st_size, 0);
    close(pfd);
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    assert_int_equal(count_fds(), before);
    decoded_t d;
    decode_file(final_path, 7, &d);
    assert_false(d.error);
    assert_text_equal(&d.text, &all);
    text_free(&all);
    text_free(&d.text);
    close(io_dirfd_value);
    assert_int_equal(ta.live_blocks, 0);
}

/* A one-record writer (the exit record of a short process) keeps the
 * descriptor it creates until that record's append, and its close opens
 * nothing: one open of the file in all (issue 13); no descriptor is left
 * after the append, nor after a close with no append (and no file). */
static void test_io_one_record(void **state)
{
    (void)state;
    io_dirfd_value = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(io_dirfd_value >= 0);
    int before = count_fds();
    char base[64];
    snprintf(base, sizeof base, "timeline.%d.jsonl.zst", PID);
    char line[] = "{\"time\": 1.5, \"mallocs\": 3}\n";
    size_t n = strlen(line);
    timeline_opts_t o = { .one_record = n, .no_fsync = true };
    timeline_t *t;

    /* Opened and closed with no record: no file, no descriptor. */
    assert_int_equal(timeline_open_io(&t, &alloc, &io, base, &o), TIMELINE_OK);
    assert_int_equal(count_fds(), before + 1);   /* the one it created, kept */
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    assert_int_equal(count_fds(), before);
    assert_int_equal(dir_entries(), 0);

    /* The program takes the lowest free number meanwhile: untouched. */
    assert_int_equal(timeline_open_io(&t, &alloc, &io, base, &o), TIMELINE_OK);
    char prog[600];
    snprintf(prog, sizeof prog, "%s/program.txt", dir);
    int pfd = open(prog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_int_equal(timeline_append(t, line, n), TIMELINE_OK);
    assert_int_equal(count_fds(), before + 1);   /* the program's only */
    assert_true(timeline_published(t));
    assert_int_equal(timeline_close(t), TIMELINE_OK);
    struct stat st;
    assert_int_equal(fstat(pfd, &st), 0);
    assert_int_equal(st.st_size, 0);
    close(pfd);
    assert_int_equal(unlink(prog), 0);
    assert_int_equal(count_fds(), before);
    decoded_t d;
    decode_file(final_path, 1, &d);
    assert_false(d.error);
    assert_int_equal(d.text.len, n);
    assert_memory_equal(d.text.p, line, n);
    assert_int_equal(d.frames, 1);
    assert_true(d.on_frame_end);
    text_free(&d.text);
    assert_int_equal(dir_entries(), 1);          /* no temporary file left */
    close(io_dirfd_value);
    assert_int_equal(ta.live_blocks, 0);
}

/* The published file replaced behind the writer: it stops (STALE) and
 * writes nothing into the replacement; a final name taken: EXISTS, and
 * the taken file is untouched. */
static void test_io_replaced_and_taken(void **state)
{
    (void)state;
    io_dirfd_value = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    timeline_t *t;
    char base[64];
    snprintf(base, sizeof base, "timeline.%d.jsonl.zst", PID);
    assert_int_equal(timeline_open_io(&t, &alloc, &io, base, NULL), TIMELINE_OK);
    append_n(t, 0, 3, 0, NULL);
    char other[600];
    snprintf(other, sizeof other, "%s/other", dir);
    FILE *f = fopen(other, "w");
    fputs("theirs\n", f);
    fclose(f);
    assert_int_equal(rename(other, final_path), 0);
    char line[] = "{\"a\":1}\n";
    assert_int_equal(timeline_append(t, line, strlen(line)), TIMELINE_ERR_STALE);
    assert_int_equal(timeline_close(t), TIMELINE_ERR_STALE);
    struct stat st;
    assert_int_equal(stat(final_path, &st), 0);
    assert_int_equal(st.st_size, 7);

    assert_int_equal(timeline_open_io(&t, &alloc, &io, base, NULL), TIMELINE_OK);
    assert_int_equal(timeline_append(t, line, strlen(line)), TIMELINE_ERR_EXISTS);
    assert_int_equal(timeline_close(t), TIMELINE_ERR_EXISTS);
    assert_int_equal(stat(final_path, &st), 0);
    assert_int_equal(st.st_size, 7);
    assert_int_equal(dir_entries(), 1);      /* no temporary file left */
    close(io_dirfd_value);
    assert_int_equal(ta.live_blocks, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_on_first_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_running_and_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_abandon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nomem_every_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arena_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_keeps_no_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_replaced_and_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_fsync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_one_record, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
