/*
 * tools_test.h - what the unit tests of tools/ share: a scratch results
 * directory, files written into it (plain, or zstd streams made with
 * libzstd as the agent makes them: a block flushed per record, a frame
 * ended when asked), records in the agent's own field order and format
 * (agent/records.h), and `heapwatch check` run in-process with its output
 * captured.
 */
#ifndef HEAPWATCH_TOOLS_TEST_H
#define HEAPWATCH_TOOLS_TEST_H

#define _GNU_SOURCE
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <cmocka.h>

#include "tools/tools.h"

/* assert_num: two doubles exactly equal (both values printed if not). */
#define assert_num(a, b)                                                                              \
    do {                                                                                              \
        double a_ = (a), b_ = (b);                                                                    \
        if (!(a_ == b_)) fail_msg("%s is %.17g, expected %.17g", #a, a_, b_);                         \
    } while (0)
#define assert_nan(a)                                                                                 \
    do {                                                                                              \
        double a_ = (a);                                                                              \
        if (!isnan(a_)) fail_msg("%s is %.17g, expected NAN (missing)", #a, a_);                      \
    } while (0)
/* assert_contains: s holds sub (s printed if not). */
#define assert_contains(s, sub)                                                                       \
    do {                                                                                              \
        const char *s_ = (s);                                                                         \
        if (!s_ || !strstr(s_, (sub))) fail_msg("expected \"%s\" in: %s", (sub), s_ ? s_ : "(null)"); \
    } while (0)

static char tt_dir[256];   /* the scratch directory of the running test */

static inline void tt_remove_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *de;
    char p[2048];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (snprintf(p, sizeof p, "%s/%s", path, de->d_name) >= (int)sizeof p) continue;
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) tt_remove_dir(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(path);
}

static inline int tt_setup(void **state)
{
    (void)state;
    strcpy(tt_dir, "/tmp/hw_tools_XXXXXX");
    return mkdtemp(tt_dir) ? 0 : -1;
}

static inline int tt_teardown(void **state)
{
    (void)state;
    tt_remove_dir(tt_dir);
    return 0;
}

/* tt_path: tt_dir/name (a static buffer). */
static inline const char *tt_path(const char *name)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/%s", tt_dir, name);
    return p;
}

/* tt_write: a file of the scratch directory, n bytes of data. */
static inline void tt_write(const char *name, const void *data, size_t n)
{
    FILE *f = fopen(tt_path(name), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static inline void tt_write_str(const char *name, const char *s)
{
    tt_write(name, s, strlen(s));
}

/* tt_zstd_t: a zstd stream being written as the agent writes a timeline. */
typedef struct {
    ZSTD_CCtx *cc;
    FILE *f;
} tt_zstd_t;

static inline void tt_zstd_open(tt_zstd_t *z, const char *name)
{
    z->cc = ZSTD_createCCtx();
    assert_non_null(z->cc);
    ZSTD_CCtx_setParameter(z->cc, ZSTD_c_windowLog, 14);   /* the agent's 16 KiB window */
    z->f = fopen(tt_path(name), "wb");
    assert_non_null(z->f);
}

/* tt_zstd_put: n bytes, then a flush (ZSTD_e_flush: a block every bytes
 * before it can be read) or the end of the frame (ZSTD_e_end). */
static inline void tt_zstd_put(tt_zstd_t *z, const char *s, size_t n, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = { s, n, 0 };
    char out[1 << 16];
    size_t left;
    do {
        ZSTD_outBuffer o = { out, sizeof out, 0 };
        left = ZSTD_compressStream2(z->cc, &o, &in, mode);
        assert_false(ZSTD_isError(left));
        assert_int_equal(fwrite(out, 1, o.pos, z->f), o.pos);
    } while (left != 0 || in.pos < in.size);
}

/* tt_zstd_line: one record: a line, flushed, as the agent appends it. */
static inline void tt_zstd_line(tt_zstd_t *z, const char *line)
{
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "%s\n", line);
    assert_true(n > 0 && (size_t)n < sizeof buf);
    tt_zstd_put(z, buf, (size_t)n, ZSTD_e_flush);
}

/* tt_zstd_close: ends the frame when `end`, else leaves it unfinished (a
 * killed process). @return the file's length. */
static inline long tt_zstd_close(tt_zstd_t *z, int end)
{
    if (end) tt_zstd_put(z, "", 0, ZSTD_e_end);
    long len = ftell(z->f);
    assert_int_equal(fclose(z->f), 0);
    ZSTD_freeCCtx(z->cc);
    return len;
}

/* tt_record: a timeline record in the agent's field order and format
 * (HEAPWATCH_TIMELINE_FIELDS), second i of a process that started at
 * t0, with the counters and rates given. */
static inline const char *tt_record(double t0, int i, double mallocs, double frees, double live_bytes, double objects_rate,
                             double bytes_rate)
{
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"time\": %.6f, \"elapsed_s\": %d.000, \"mallocs\": %.0f, \"frees\": %.0f, \"live_objects\": %.0f, "
             "\"live_bytes\": %.0f, \"alloc_bytes\": %.0f, \"free_bytes\": %.0f, \"objects_rate\": %.3f, "
             "\"bytes_rate\": %.3f, \"window_s\": 5.000, \"level\": \"none\", \"peak_live_bytes\": %.0f, "
             "\"map_count\": 3, \"map_B\": 1, \"map_noverflow\": 0, \"stacks\": 7, \"agent_memory_bytes\": 1048576}",
             t0 + i, i, mallocs, frees, mallocs - frees, live_bytes, live_bytes * 2, live_bytes, objects_rate, bytes_rate,
             live_bytes);
    return buf;
}

/* tt_run_check: `heapwatch check tt_dir ARGS...` in-process (the argument
 * list ends with NULL); its stdout and stderr in out (cap bytes, both).
 * @return its exit status. */
static inline int tt_run_check(char *out, size_t cap, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"check";
    argv[argc++] = tt_dir;
    va_list ap;
    va_start(ap, cap);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    FILE *cap_f = tmpfile();
    assert_non_null(cap_f);
    int saved_out = dup(1), saved_err = dup(2);
    dup2(fileno(cap_f), 1);
    dup2(fileno(cap_f), 2);
    int rc = cmd_check(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    rewind(cap_f);
    size_t n = fread(out, 1, cap - 1, cap_f);
    out[n] = 0;
    fclose(cap_f);
    return rc;
}

#endif /* HEAPWATCH_TOOLS_TEST_H */
