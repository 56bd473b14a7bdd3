/*
 * rundir.h - reading a heapwatch output directory (HEAPWATCH_OUT).
 *
 * `heapwatch check` and `heapwatch report` both start from the files the
 * agent wrote, grouped by the process tag in their names (<pid>, or
 * <pid>-<n> for a later process with a pid already used in the directory):
 *
 *   summary.<pid>.json          one JSON object, written at exit
 *   timeline.<pid>.jsonl.zst    JSON lines, zstd (one or more frames; the
 *                               last may be cut short when the process was
 *                               killed or is still running)
 *   alerts.<pid>.jsonl          JSON lines, one per alert or recovery
 *   heap.<pid>.<seq>.<reason>.pb.gz   heap profiles (listed; read on demand)
 *
 * Other names (the agent's temporary files among them) are ignored. A
 * process with a timeline or alerts but no summary (it was killed) is a
 * result like any other. Problems inside one process's files do not stop
 * the others: each process carries its notes (harmless: a cut-short
 * timeline) and errors (a file that is not what it should be).
 *
 * The records' fields are those of agent/records.h: each numeric field of
 * a timeline record, a summary, an alert and an alert's stack is a double
 * member of the same name below (RUNDIR_MEMBER), so the reader follows the
 * agent's list; a field the agent did not write (or wrote as something
 * else than a finite number) is NAN. Counters above 2^53 are read to the
 * nearest double. Strings are read where the tools use them, bytes that
 * are not UTF-8 as '?' (rundir_json.c).
 */
#ifndef HEAPWATCH_TOOLS_RUNDIR_H
#define HEAPWATCH_TOOLS_RUNDIR_H

#include "agent/records.h"
#include "tools/profile.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* RUNDIR_MEMBER: X for agent/records.h's lists: a double member for a
 * numeric field, nothing for the others (read by hand where used). */
#define RUNDIR_MEMBER(name, type, doc) RUNDIR_MEMBER_##type(name)
#define RUNDIR_MEMBER_u64(name) double name;
#define RUNDIR_MEMBER_i64(name) double name;
#define RUNDIR_MEMBER_f3(name) double name;
#define RUNDIR_MEMBER_f6(name) double name;
#define RUNDIR_MEMBER_str(name)
#define RUNDIR_MEMBER_strnull(name)
#define RUNDIR_MEMBER_strs(name)
#define RUNDIR_MEMBER_tops(name)
/* RUNDIR_SKIP: X for fields the tools do not keep (the timeline's map
 * fields beyond map_count, map_B and map_noverflow: each kept field costs
 * 2 MiB of samples, rundir.c). */
#define RUNDIR_SKIP(name, type, doc)

typedef enum {
    RUNDIR_OK = 0,
    RUNDIR_ERR_OPEN = 1,       /* the directory cannot be opened or read (errno in the message) */
    RUNDIR_ERR_NOTDIR = 2,     /* the path is not a directory */
    RUNDIR_ERR_EMPTY = 3,      /* no summary, timeline or alerts file in it */
    RUNDIR_ERR_NOMEM = 4,      /* out of memory */
} rundir_err_t;

/* rundir_sample_t: one timeline record (HEAPWATCH_TIMELINE_FIELDS: time,
 * mallocs, live_bytes, objects_rate, ...); time is never NAN. */
typedef struct {
    HEAPWATCH_TIMELINE_FIELDS_MAP(RUNDIR_MEMBER, RUNDIR_SKIP)
} rundir_sample_t;

/* RUNDIR_SAMPLE_FIELD(name): a timeline field's key and its offset in
 * rundir_sample_t, for code that takes both: one spelling, which the
 * compiler checks against the list. */
#define RUNDIR_SAMPLE_FIELD(name) #name, offsetof(rundir_sample_t, name)

/* rundir_sample_get: the field at offset (from RUNDIR_SAMPLE_FIELD) of s. */
static inline double rundir_sample_get(const rundir_sample_t *s, size_t offset)
{
    double x;
    memcpy(&x, (const char *)s + offset, sizeof x);
    return x;
}

typedef enum {
    RUNDIR_WARN = 1,
    RUNDIR_CRIT = 2,
} rundir_level_t;

/* rundir_stack_t: one entry of an alert's "top" (HEAPWATCH_ALERT_TOP_FIELDS). */
typedef struct {
    char *function;            /* innermost frame outside the allocator ("?" if absent) */
    char **frames;             /* "stack": function names, innermost first */
    size_t nframes;
    HEAPWATCH_ALERT_TOP_FIELDS(RUNDIR_MEMBER)
} rundir_stack_t;

/* rundir_alert_t: one line of alerts.<pid>.jsonl (HEAPWATCH_ALERT_FIELDS);
 * time is never NAN. */
typedef struct {
    HEAPWATCH_ALERT_FIELDS(RUNDIR_MEMBER)
    bool recovery;             /* event "recovery": level is the one that ended */
    rundir_level_t level;
    char *metric;              /* "objects_rate" unless told otherwise */
    char *profile;             /* file name, or NULL */
    rundir_stack_t *top;
    size_t ntop;
} rundir_alert_t;

/* rundir_summary_t: summary.<pid>.json (HEAPWATCH_SUMMARY_FIELDS; valid
 * when rundir_proc_t.has_summary). duration_s, when missing, is
 * end_time - start_time. */
typedef struct {
    HEAPWATCH_SUMMARY_FIELDS(RUNDIR_MEMBER)
} rundir_summary_t;

/* rundir_profile_t: a heap.<pid>.<seq>.<reason>.pb.gz file. */
typedef struct {
    char *name;
    unsigned long seq;
    char *reason;
} rundir_profile_t;

/* rundir_proc_t: everything found for one process: one pid, or one
 * "<pid>-<n>" tag when several processes of a directory had that pid
 * (separate pid namespaces, a re-run): the agent never replaces another
 * process's file and names the later ones <pid>-2, <pid>-3, ... */
typedef struct {
    long pid;
    unsigned inst;             /* n of "<pid>-<n>"; 1 for the bare pid */
    char tag[32];              /* "<pid>" or "<pid>-<n>", for messages */
    char *exe;                 /* from the summary (or a record that names it), or NULL */
    char *cmdline;             /* the summary's "cmdline" joined by spaces, an
                                  argument with a space or quote in single
                                  quotes; at most RUNDIR_CMDLINE_MAX bytes; or NULL */
    char *peak_profile;        /* the summary's "peak_profile": the file that
                                  shows the stacks at the peak (the peak
                                  profile, or the exit profile when exit was
                                  within 10 % of it), or NULL */
    char *cmd_pattern;         /* the command with its operands (files, numbers)
                                  as '*': "cc1 -quiet * -o *", for roll-ups;
                                  or NULL without a cmdline */
    char *malloc_owner;        /* the summary's malloc_owner (another object's malloc
                                  was bound ahead of the agent's: it saw nothing), or NULL */
    bool has_summary;
    rundir_summary_t summary;
    bool has_timeline;         /* the file exists (it may hold no records) */
    rundir_sample_t *samples;  /* in file order; see sample_stride */
    size_t nsamples;
    size_t nrecords;           /* timeline records read (>= nsamples) */
    size_t sample_stride;      /* 1: one sample per record; k > 1: the timeline
                                  was longer than the records kept, and each
                                  sample merges k consecutive records: the
                                  later record's values, with the highest
                                  objects_rate, bytes_rate and peak (peak at
                                  least the live bytes) of the k, so maxima and
                                  the last record stay exact (rundir.c) */
    bool timeline_truncated;   /* the last zstd frame was cut short */
    double timeline_start;     /* start time from the first record's elapsed_s, or NAN */
    bool has_alerts;
    rundir_alert_t *alerts;
    size_t nalerts;
    size_t alerts_dropped;     /* alerts read but not kept (over the caps); an
                                  alert of a higher level than every kept one
                                  is always kept, without its stacks */
    rundir_profile_t *profiles;   /* sorted by seq */
    size_t nprofiles;
    char **notes;              /* harmless observations, one line each */
    size_t nnotes;
    char **errors;             /* files or records that could not be read */
    size_t nerrors;
} rundir_proc_t;

typedef struct {
    char *path;
    rundir_proc_t *procs;      /* sorted by start time, then pid */
    size_t nprocs;
    size_t files_skipped;      /* result files beyond RUNDIR_FILES_MAX, not read */
} rundir_t;

/* Bounds (rundir.c states the memory they add up to). */
#define RUNDIR_FILES_MAX 65536u            /* result files read in one directory (21,845 processes of 3 files) */
#define RUNDIR_TIMELINE_RECORDS_MAX 4000000u   /* records read per timeline */
#define RUNDIR_TIMELINE_BYTES_MAX (1ull << 30) /* decompressed bytes per timeline */

#define RUNDIR_CMDLINE_MAX 8192u           /* bytes of a joined command line kept */

/* rundir_load: reads every result in the directory at path into *out
 * (release with rundir_free, also after an error). @return RUNDIR_OK, or
 * an error with a one-line explanation in msg. */
rundir_err_t rundir_load(const char *path, rundir_t *out, char *msg, size_t msgcap);

void rundir_free(rundir_t *rd);

/* rundir_read_summary: the summary file at path (summary.<tag>.json) into
 * *s, read as rundir_load reads one. @return false when it cannot be read,
 * is larger than a summary can be, or is not a JSON object. */
bool rundir_read_summary(const char *path, rundir_summary_t *s);

/* rundir_is_result_name: name is one of the agent's result files
 * (summary, timeline, alerts or heap profile of a process). */
bool rundir_is_result_name(const char *name);

/* rundir_exe_name: the basename of the process's executable, or "?". */
const char *rundir_exe_name(const rundir_proc_t *p);

/* rundir_owner_where: where the malloc bound ahead of the agent's came
 * from (p->malloc_owner set): "linked into the program" when it is the
 * executable's own, else "preloaded before it". */
const char *rundir_owner_where(const rundir_proc_t *p);

/* rundir_start: the time the process started: the summary's start_time;
 * without a summary, the first timeline record's time minus its elapsed_s;
 * else the first record or alert. NAN when there is none. */
double rundir_start(const rundir_proc_t *p);

/*
 * Heap profiles are listed at load time, never read then: the tools read
 * the few they show on demand (rundir_profile_read), so a directory of
 * thousands of profiles loads as fast as one without.
 */

/* rundir_profile_find: p's profile written for reason ("exit": in use and
 * allocated at exit; "peak": in use when live bytes were highest, written
 * at exit; "alert", "interval", ...): the latest (highest seq) of them, or
 * NULL when there is none. */
const rundir_profile_t *rundir_profile_find(const rundir_proc_t *p, const char *reason);

/* rundir_profile_named: p's profile file called name (an alert's
 * "profile"), or NULL when the directory does not hold it (removed by the
 * agent's max_profiles, or never written). */
const rundir_profile_t *rundir_profile_named(const rundir_proc_t *p, const char *name);

/* rundir_alert_profile: the profile an alert names, when it is there. */
static inline const rundir_profile_t *rundir_alert_profile(const rundir_proc_t *p, const rundir_alert_t *a)
{
    return a->profile ? rundir_profile_named(p, a->profile) : NULL;
}

/* rundir_profile_read: reads pr (a profile of rd) with profile_read into
 * *out (tools/profile.h; release with profile_free, also after an error).
 * @return 0, or -1 with "NAME: reason" in msg. */
int rundir_profile_read(const rundir_t *rd, const rundir_profile_t *pr, profile_t *out, char *msg, size_t msgcap);

/* RUNDIR_RATE_SPAN_MIN: for a timeline record without rate_judged (an
 * older agent), the seconds its window_s must span to be judged. */
#define RUNDIR_RATE_SPAN_MIN 1.0

/* rundir_rate_judged: whether s's rates span long enough to be judged:
 * the agent's rate_judged (window_s at least half of HEAPWATCH_WINDOW, its
 * rule for alerts), else window_s of at least RUNDIR_RATE_SPAN_MIN. */
static inline bool rundir_rate_judged(const rundir_sample_t *s)
{
    if (s->rate_judged == s->rate_judged) return s->rate_judged == 1;   /* not NAN */
    return s->window_s >= RUNDIR_RATE_SPAN_MIN;
}

/* rundir_level_name: "warn" or "crit". */
const char *rundir_level_name(rundir_level_t level);

#endif
