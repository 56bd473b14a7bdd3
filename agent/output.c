/*
 * output.c - the core's output services: the verified output directory,
 * the process's file tag, heap profiles by reason and the lists of files
 * the summary gives. Callers hold the work lock (core.h).
 *
 * Output. Everything goes through the verified directory descriptor of
 * out.c (agent_outdir_fd), under the work lock. Final names are never
 * replaced, so that no process's result replaces another's, even when
 * processes in different pid namespaces share a pid and a directory:
 * each process names its files with a tag, "<pid>", or "<pid>-<n>" (n =
 * 2, 3, ...) when a file of that pid already exists. The tag is chosen at
 * the first file the process publishes (skipping a tag whose summary,
 * timeline or alerts file exists) and kept for every later file, so the
 * files of one process share it; a name that turns out to be taken moves
 * the process to the next tag from then on (only two processes racing on
 * their very first files can split one process's files over two tags;
 * nothing is ever replaced). tools/rundir_list.c reads "<pid>-<n>" as its own
 * process.
 *
 * HEAPWATCH_MAX_PROFILES bounds the interval, signal and http profiles
 * kept: once a new one is written, the oldest beyond the cap is removed
 * (exit, alert and peak profiles are never removed). The summary lists
 * the files that exist ("files") and those removed ("files_removed", the
 * first FILES_MAX names, with "files_removed_total").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/buf.h"
#include "agent/conf.h"
#include "agent/core.h"
#include "agent/fds.h"
#include "agent/log.h"
#include "agent/out.h"
#include "agent/output.h"
#include "agent/profile.h"
#include "map/map.h"
#include "pprof/pprof.h"

static char out_dir[CONF_PATH_MAX];        /* absolute HEAPWATCH_OUT */
static bool out_dir_ok = true;             /* false: no output for this process */

#define FILES_MAX 64
static char files_written[FILES_MAX][96];  /* names written by this process */
static unsigned nfiles;                    /* (under the work lock) */
static unsigned nfiles_total;
static char files_removed[FILES_MAX][96];  /* HEAPWATCH_MAX_PROFILES removed these */
static unsigned nremoved, nremoved_total;
static char (*kept)[64];                   /* capped profiles kept, a ring of max_profiles */
static unsigned nkept, kept_head;
static char tag[32];                       /* "<pid>" or "<pid>-<n>": see above */
static unsigned tag_n;                     /* n; 0: not chosen yet */
static bool tag_fixed;                     /* a file was published with it */


/* report_out_dir: the one message about an unusable HEAPWATCH_OUT. */
static void report_out_dir(int err, const char *why)
{
    char line[CONF_PATH_MAX + 600];
    agent_buf_t b;
    agent_buf_init(&b, line, sizeof line);
    agent_buf_str(&b, "heapwatch: HEAPWATCH_OUT: ");
    if (why && why[0]) {
        agent_buf_str(&b, why);
        if (err == -EPERM || err == -ELOOP)
            agent_buf_str(&b, "; refused: the output directory and every directory above it must "
                              "belong to this user or root and be writable by no one else, unless sticky");
    } else {
        agent_buf_str(&b, "the directory \"");
        agent_buf_str_escaped(&b, out_dir, AGENT_QUOTE_MAX);   /* one line, whatever the path holds */
        agent_buf_str(&b, "\" cannot be written (");
        agent_buf_str(&b, strerror(-err));
        agent_buf_str(&b, ")");
    }
    agent_buf_str(&b, "; the program runs on without heapwatch output\n");
    if (b.overflow) line[sizeof line - 2] = '\n';
    agent_log(line);
}

/* output_dirfd: the verified output directory (under the work lock), or
 * -errno after one message, when there is no output any more (-EACCES
 * once the reason was reported). */
static int output_dirfd(void)
{
    AGENT_ASSERT_OUTPUT_SERIAL();
    if (!out_dir_ok) return -EACCES;
    char why[CONF_PATH_MAX + 200];
    int fd = agent_outdir_fd(why, sizeof why);
    if (fd < 0) {
        out_dir_ok = false;
        report_out_dir(fd, why);
    }
    return fd;
}

/* files_*: the summary's lists (under the work lock). */
static void remember_file(const char *name)
{
    AGENT_ASSERT_WORK_HELD();
    if (nfiles < FILES_MAX) {
        agent_buf_t b;
        agent_buf_init(&b, files_written[nfiles++], sizeof files_written[0]);
        agent_buf_str(&b, name);
    }
    nfiles_total++;
}

static void forget_file(const char *name)
{
    AGENT_ASSERT_WORK_HELD();
    for (unsigned i = 0; i < nfiles; i++) {
        if (strcmp(files_written[i], name) != 0) continue;
        memmove(files_written[i], files_written[i + 1], (nfiles - i - 1) * sizeof files_written[0]);
        nfiles--;
        break;
    }
    if (nfiles_total) nfiles_total--;
    if (nremoved < FILES_MAX) {
        agent_buf_t b;
        agent_buf_init(&b, files_removed[nremoved++], sizeof files_removed[0]);
        agent_buf_str(&b, name);
    }
    nremoved_total++;
}

/* tag_set: the tag for instance n (1: the bare pid). */
static void tag_set(unsigned n)
{
    tag_n = n;
    agent_buf_t b;
    agent_buf_init(&b, tag, sizeof tag);
    agent_buf_u64(&b, (uint64_t)getpid());
    if (n > 1) {
        agent_buf_str(&b, "-");
        agent_buf_u64(&b, n);
    }
}

/* tag_taken: a summary, timeline or alerts file of tag t exists. */
static bool tag_taken(int dirfd)
{
    static const char *const kinds[][2] = {
        { "summary.", ".json" }, { "timeline.", ".jsonl.zst" }, { "alerts.", ".jsonl" },
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        char name[96];
        agent_buf_t b;
        agent_buf_init(&b, name, sizeof name);
        agent_buf_str(&b, kinds[i][0]);
        agent_buf_str(&b, tag);
        agent_buf_str(&b, kinds[i][1]);
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT) return true;
    }
    return false;
}

#define TAG_TRIES 1000   /* instances of one pid in one directory, at most */

/* output_name: prefix + tag + suffix (choosing the tag at the process's
 * first file). @return false when no tag is left. */
static bool output_name(int dirfd, const char *prefix, const char *suffix, char *name, size_t cap)
{
    if (!tag_fixed) {
        if (!tag_n) tag_set(1);
        while (tag_n < TAG_TRIES && tag_taken(dirfd)) tag_set(tag_n + 1);
    }
    if (tag_n >= TAG_TRIES) return false;
    agent_buf_t b;
    agent_buf_init(&b, name, cap);
    agent_buf_str(&b, prefix);
    agent_buf_str(&b, tag);
    agent_buf_str(&b, suffix);
    return !b.overflow;
}

int agent_output_publish(int dirfd, const char *tmp, const char *prefix, const char *suffix,
                         char *name, size_t cap)
{
    AGENT_ASSERT_WORK_HELD();
    for (unsigned tries = 0; tries < TAG_TRIES; tries++) {
        if (!output_name(dirfd, prefix, suffix, name, cap)) break;
        int err = agent_publish_at(dirfd, tmp, name);
        if (err != -EEXIST) {
            if (!err) tag_fixed = true;
            return err;
        }
        tag_set(tag_n + 1);   /* taken: this process moves on */
    }
    name[0] = 0;
    return -EEXIST;
}

const char *agent_output_tag(void)
{
    AGENT_ASSERT_OUTPUT_SERIAL();
    if (!tag_n) tag_set(1);
    return tag;
}

int agent_output_dirfd(void) { return output_dirfd(); }

int agent_output_summary(void (*build)(agent_buf_t *b, const char *own_name), char *text, size_t cap)
{
    AGENT_ASSERT_OUTPUT_SERIAL();
    int dirfd = output_dirfd();
    if (dirfd < 0) return -EACCES;
    char tmp[128];
    int err = -EEXIST;
    for (unsigned tries = 0; tries < 8 && err == -EEXIST; tries++) {
        char name[96];
        if (!output_name(dirfd, "summary.", ".json", name, sizeof name)) break;
        agent_buf_t b;
        agent_buf_init(&b, text, cap);
        build(&b, name);
        int fd = agent_tmp_create(dirfd, name, tmp, sizeof tmp);
        if (fd < 0) {
            err = fd;
            break;
        }
        err = agent_write_all(fd, b.buf, b.len);
        if (!err) err = agent_file_sync(fd);
        agent_fd_release(fd);
        if (!err) err = agent_publish_at(dirfd, tmp, name);
        if (err) (void)unlinkat(dirfd, tmp, 0);
        if (err == -EEXIST) tag_set(tag_n + 1);
        if (!err) tag_fixed = true;
    }
    if (err) {
        out_dir_ok = false;             /* one message, then quiet */
        report_out_dir(err, NULL);
    }
    return err;
}

/* capped: a profile reason that HEAPWATCH_MAX_PROFILES bounds. */
static bool capped(const char *reason)
{
    return strcmp(reason, "interval") == 0 || strcmp(reason, "signal") == 0 ||
           strcmp(reason, "http") == 0;
}

/* keep_capped: name was just written; removes the oldest capped profile
 * beyond the cap (under the work lock). */
static void keep_capped(int dirfd, const char *name)
{
    AGENT_ASSERT_WORK_HELD();
    unsigned max = (unsigned)agent_conf.max_profiles;
    if (!kept) {
        kept = map_arena_alloc((size_t)max * sizeof *kept);
        if (!kept) return;   /* no memory: nothing is removed (never a file we did not list) */
    }
    if (nkept == max) {
        const char *oldest = kept[kept_head];
        if (unlinkat(dirfd, oldest, 0) == 0 || errno == ENOENT) forget_file(oldest);
        kept_head = (kept_head + 1) % max;
        nkept--;
    }
    agent_buf_t b;
    agent_buf_init(&b, kept[(kept_head + nkept) % max], sizeof kept[0]);
    agent_buf_str(&b, name);
    nkept++;
}

/* write_profile_fd: a heap profile for `reason` (under the work lock); its
 * file name into name, "" when none was written. With keep_fd, the
 * descriptor of the file written (read it from offset 0) goes to
 * *keep_fd, for the caller to close. */
static void write_profile_fd(const char *reason, char *name, size_t cap, int *keep_fd)
{
    AGENT_ASSERT_WORK_HELD();
    static bool reported;
    name[0] = 0;
    int dirfd = output_dirfd();
    if (dirfd < 0) return;
    bool busy;
    pprof_err_t err = agent_profile_write(dirfd, reason, name, cap, keep_fd, &busy);
    if (busy) return;   /* exit: skipped, and noted (lock.c) */
    if (err == PPROF_OK) {
        remember_file(name);
        if (capped(reason)) keep_capped(dirfd, name);
    } else if (!reported) {
        reported = true;
        char line[256];
        agent_buf_t b;
        agent_buf_init(&b, line, sizeof line);
        agent_buf_str(&b, "heapwatch: cannot write a heap profile in HEAPWATCH_OUT: ");
        agent_buf_str(&b, pprof_strerror(err));
        agent_buf_str(&b, "; the program runs on\n");
        agent_log(line);
    }
}

static char peak_profile[96];   /* the file that shows the peak ("": none) */

void agent_output_profile_peak(uint64_t exit_live, const char *exit_name)
{
    AGENT_ASSERT_WORK_HELD();
    int dirfd = output_dirfd();
    if (dirfd < 0) return;
    bool busy, at_exit = false;
    pprof_err_t err = agent_profile_write_peak(dirfd, exit_live, peak_profile, sizeof peak_profile, &busy, &at_exit);
    if (err == PPROF_OK && peak_profile[0]) remember_file(peak_profile);
    if (at_exit) {
        agent_buf_t b;
        agent_buf_init(&b, peak_profile, sizeof peak_profile);
        agent_buf_str(&b, exit_name);
    }
}

const char *agent_output_peak_profile(void) { return peak_profile; }

static void write_profile_named(const char *reason, char *name, size_t cap)
{
    write_profile_fd(reason, name, cap, NULL);
}

void agent_output_profile_reason(const char *reason)
{
    char name[96];
    write_profile_named(reason, name, sizeof name);
}

bool agent_output_ready(void) { return output_dirfd() >= 0; }
void agent_output_remember(const char *name) { remember_file(name); }
void agent_output_profile(const char *reason, char *name, size_t cap)
{
    write_profile_named(reason, name, cap);
}

int agent_output_profile_fd(const char *reason, char *name, size_t cap, int *fd)
{
    *fd = -1;
    name[0] = 0;
    agent_work_lock();
    bool over = agent_exiting();
    if (!over) write_profile_fd(reason, name, cap, fd);
    agent_work_unlock();
    if (over) return -ESHUTDOWN;
    if (!name[0] || *fd < 0) return -EIO;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Start-up, and the summary's lists                                       */
/* ------------------------------------------------------------------------ */

/* resolve_out_dir: HEAPWATCH_OUT made absolute against the start-up
 * working directory, so a later chdir does not move the output. */
static void resolve_out_dir(const char *configured)
{
    agent_buf_t b;
    agent_buf_init(&b, out_dir, sizeof out_dir);
    if (configured[0] != '/') {
        char cwd[CONF_PATH_MAX];
        if (getcwd(cwd, sizeof cwd)) {
            agent_buf_str(&b, cwd);
            agent_buf_str(&b, "/");
        }
    }
    agent_buf_str(&b, configured);
}

void agent_output_start(const char *configured)
{
    resolve_out_dir(configured);
    char why[CONF_PATH_MAX + 200];
    int err = agent_outdir_init(out_dir, why, sizeof why);
    if (err) {
        out_dir_ok = false;
        report_out_dir(err, why);
    }
    agent_outdir_drop();   /* checked; opened again for each round of output */
}

const char *agent_output_path(void) { return out_dir; }

void agent_output_files_json(agent_buf_t *b, const char *own_name)
{
    AGENT_ASSERT_OUTPUT_SERIAL();
    agent_buf_str(b, "[");
    for (unsigned i = 0; i < nfiles; i++) {
        agent_buf_str(b, i ? ", " : "");
        agent_buf_json_str(b, files_written[i]);
    }
    agent_buf_str(b, nfiles ? ", " : "");
    agent_buf_json_str(b, own_name);
    agent_buf_str(b, "]");
}

uint64_t agent_output_files_total(void) { return nfiles_total + 1; }

void agent_output_removed_json(agent_buf_t *b)
{
    AGENT_ASSERT_OUTPUT_SERIAL();
    agent_buf_str(b, "[");
    for (unsigned i = 0; i < nremoved; i++) {
        agent_buf_str(b, i ? ", " : "");
        agent_buf_json_str(b, files_removed[i]);
    }
    agent_buf_str(b, "]");
}

uint64_t agent_output_removed_total(void) { return nremoved_total; }

void agent_output_postfork_child(void)
{
    nfiles = 0;
    nfiles_total = 0;
    nremoved = nremoved_total = 0;
    nkept = kept_head = 0;      /* the parent's profiles are the parent's */
    tag_n = 0;                  /* a new pid: a new tag */
    tag_fixed = false;
}
