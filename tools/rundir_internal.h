/*
 * rundir_internal.h - what the files of the results reader share (rundir.h
 * is its interface to check and report):
 *
 *   rundir.c           the directory: one process's files in turn, the
 *                      directory-wide budgets, notes and errors
 *   rundir_list.c      which names are the agent's files (listing)
 *   rundir_lines.c     a byte stream cut into lines (rundir_lines.h)
 *   rundir_zstd.c      a zstd stream decompressed (rundir_zstd.h)
 *   rundir_json.c      one JSON text read with jansson, its errors told
 *   rundir_summary.c   summary.<tag>.json
 *   rundir_timeline.c  timeline.<tag>.jsonl.zst, kept as samples
 *   rundir_alerts.c    alerts.<tag>.jsonl
 *
 * The bounds below, and the memory they add up to, are explained at the
 * top of rundir.c.
 */
#ifndef HEAPWATCH_TOOLS_RUNDIR_INTERNAL_H
#define HEAPWATCH_TOOLS_RUNDIR_INTERNAL_H

#include "tools/rundir.h"
#include "tools/rundir_zstd.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define SUMMARY_MAX (1u << 20)    /* a summary larger than this is not ours (the agent's: < 16 KiB) */
#define LINE_MAX_BYTES (1u << 20) /* nor is a JSON line larger than this (an alert: < 200 KiB) */
#define EXE_MAX 8192              /* bytes of an exe name kept */
#define SAMPLES_PER_PROC 65536u   /* samples kept per process (a power of two) */
#define SAMPLES_BUDGET 262144u    /* samples kept in all */
#define SAMPLES_FLOOR 8u          /* samples per process past the budget */
#define ALERTS_PER_PROC 4096u     /* alerts kept whole per process */
#define ALERT_BYTES_BUDGET (64u << 20)   /* JSON bytes of the alerts kept, in all */
#define TOP_KEPT 16u              /* stacks kept per alert (the agent writes 5) */
#define FRAMES_KEPT 256u          /* frames kept per stack */

/* rundir_budget_t: what is left of the directory-wide budgets while one
 * directory is read (rundir_load starts them full), and the one zstd
 * decoder its timelines are read with. */
typedef struct {
    size_t samples_left;       /* of SAMPLES_BUDGET */
    size_t alert_bytes_left;   /* of ALERT_BYTES_BUDGET */
    rundir_zstd_t *zstd;       /* NULL out of memory: each timeline then says so */
} rundir_budget_t;

/* ------------------------------------------------------------------------ */
/* Notes, errors, arrays (rundir.c)                                         */
/* ------------------------------------------------------------------------ */

/* rundir_add_line: appends a formatted line to a list (notes or errors).
 * Out of memory, the line is dropped: these lists only explain. */
void rundir_add_line(char ***list, size_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define RUNDIR_NOTE(p, ...) rundir_add_line(&(p)->notes, &(p)->nnotes, __VA_ARGS__)
#define RUNDIR_ERROR(p, ...) rundir_add_line(&(p)->errors, &(p)->nerrors, __VA_ARGS__)

/* rundir_set_msg: a formatted message into msg (cap bytes; none if NULL). */
void rundir_set_msg(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* rundir_grow: room for element n in *items of *cap elements of elem bytes
 * (doubling). @return false out of memory (*items unchanged). */
bool rundir_grow(void **items, size_t *cap, size_t n, size_t elem);

/* rundir_open: dir/name opened for reading, or NULL with errno set. */
FILE *rundir_open(const char *dir, const char *name);

/* ------------------------------------------------------------------------ */
/* Listing (rundir_list.c)                                                  */
/* ------------------------------------------------------------------------ */

typedef enum { F_SUMMARY, F_TIMELINE, F_ALERTS, F_PROFILE } rundir_kind_t;

/* rundir_entry_t: one directory entry that is one of the agent's files. */
typedef struct {
    long pid;
    unsigned long inst;        /* the agent's "<pid>-<n>" tag: n; 1 for the bare pid */
    rundir_kind_t kind;
    char *name;
    unsigned long seq;         /* profiles */
    char *reason;              /* profiles */
    unsigned long long size;   /* bytes, when listed (shares the budgets out) */
} rundir_entry_t;

/* rundir_list: the agent's regular files in dir, sorted by process (pid,
 * then n), kind, profile seq and name; at most RUNDIR_FILES_MAX, the rest
 * counted in *skipped. @return RUNDIR_OK, or an error explained in msg. */
rundir_err_t rundir_list(const char *dir, rundir_entry_t **out, size_t *nout, size_t *skipped, char *msg,
                         size_t cap);

void rundir_entries_free(rundir_entry_t *es, size_t n);

/* ------------------------------------------------------------------------ */
/* JSON (rundir_json.c)                                                     */
/* ------------------------------------------------------------------------ */

/* rundir_reader_t: where the records of one JSON lines file go, and what
 * is said about the bad ones. */
typedef struct {
    rundir_proc_t *proc;
    const char *file;          /* the file's name, for messages */
    size_t lineno;             /* the line being read (from 1) */
    size_t bad;                /* lines that were not valid records */
} rundir_reader_t;

/* rundir_json_parse: text[0..len) read as one JSON value (rundir_json.c
 * says how jansson is called, and what it is not handed). @return NULL and
 * *out (json_decref it), or what is wrong, in a few words, with *out NULL
 * and *at the byte where it was found. */
const char *rundir_json_parse(const char *text, size_t len, json_t **out, size_t *at);

/* rundir_json_line: the JSON object of one line, or NULL (the line counted
 * bad, the first bad line named in the errors). Free with json_decref. */
json_t *rundir_json_line(rundir_reader_t *rd, const char *line, size_t len);

/* rundir_json_doc: the JSON object of a whole file's text, or NULL with
 * the reason in p's errors. Free with json_decref. */
json_t *rundir_json_doc(rundir_proc_t *p, const char *name, const char *text, size_t len);

/* rundir_field_t: a numeric field of a record and where its value goes.
 * The table of a list's numeric fields, for a struct st made with
 * RUNDIR_MEMBER (rundir.h):
 *
 *   #define F(name, type, doc) RUNDIR_FIELD_##type(st, name)
 *   static const rundir_field_t fields[] = { HEAPWATCH_..._FIELDS(F) };
 */
typedef struct {
    const char *key;
    size_t offset;
} rundir_field_t;

#define RUNDIR_FIELD_u64(st, name) { #name, offsetof(st, name) },
#define RUNDIR_FIELD_i64(st, name) RUNDIR_FIELD_u64(st, name)
#define RUNDIR_FIELD_f3(st, name) RUNDIR_FIELD_u64(st, name)
#define RUNDIR_FIELD_f6(st, name) RUNDIR_FIELD_u64(st, name)
#define RUNDIR_FIELD_str(st, name)
#define RUNDIR_FIELD_strnull(st, name)
#define RUNDIR_FIELD_strs(st, name)
#define RUNDIR_FIELD_tops(st, name)

/* rundir_json_fields: out's member of every field of fields[0..n) from
 * obj: its value when it is a (finite) number, else NAN. */
void rundir_json_fields(const json_t *obj, const rundir_field_t *fields, size_t n, void *out);

/* rundir_json_str: obj[key] when it is a string, else NULL (a string
 * with a \u0000 reads as far as it). */
const char *rundir_json_str(const json_t *obj, const char *key);

/* rundir_take_exe: p's exe from obj's "exe" (cut at EXE_MAX), unless p
 * has one. */
void rundir_take_exe(rundir_proc_t *p, const json_t *obj);

/* rundir_bad_record: counts a bad line; the first is named in the errors. */
void rundir_bad_record(rundir_reader_t *rd, const char *why);

/* rundir_report_bad: after the file: how many bad lines, when several. */
void rundir_report_bad(const rundir_reader_t *rd);

/* ------------------------------------------------------------------------ */
/* The files of one process                                                 */
/* ------------------------------------------------------------------------ */

/* rundir_load_summary, _timeline, _alerts: read dir/name into *p; what
 * cannot be read is in p's errors, what is odd in its notes. The summary
 * is read last: its exe replaces one a record named. */
void rundir_load_summary(rundir_proc_t *p, const char *dir, const char *name);
void rundir_load_timeline(rundir_proc_t *p, const char *dir, const char *name, rundir_budget_t *budget);
void rundir_load_alerts(rundir_proc_t *p, const char *dir, const char *name, rundir_budget_t *budget);

/* rundir_free_alerts: frees p's alerts. */
void rundir_free_alerts(rundir_proc_t *p);

#endif
