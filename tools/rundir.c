/*
 * rundir.c - reads a heapwatch output directory into memory (rundir.h).
 *
 * The directory is listed once; names are matched exactly against the
 * agent's patterns and sorted by pid, so each process's files are read
 * together. Every reader is defensive, because the files may come from a
 * process that was killed mid-write, from another version of the agent, or
 * from somewhere else entirely:
 *
 *   - a summary is at most SUMMARY_MAX bytes and must be one JSON object;
 *   - the timeline is decompressed with libzstd's streaming API, so several
 *     concatenated frames read as one stream, and a last frame cut short
 *     (the agent flushes a block at every snapshot and ends the frame only
 *     at exit) still yields every complete line before the cut: that is a
 *     note, not an error. Damaged compressed data is an error, with the
 *     records decoded before it kept;
 *   - JSON lines are parsed one at a time (blank lines skipped; a line over
 *     LINE_MAX bytes stops the file); a line that is not a valid record is
 *     skipped and counted, and the first such line is named in the error;
 *   - unknown keys are ignored; a known key of the wrong type counts as
 *     absent, except the few a record cannot do without (a time; an alert's
 *     level).
 *
 * Memory is bounded whatever the directory holds (a 1.9 KB zstd file can
 * expand to millions of records; a directory can hold anything):
 *
 *   - at most RUNDIR_FILES_MAX (32768) result files are read; the rest are
 *     counted in files_skipped and reported by the tools;
 *   - a summary is at most SUMMARY_MAX (1 MiB), a JSON line at most
 *     LINE_MAX_BYTES (1 MiB), an exe name is cut at EXE_MAX (8 KiB);
 *   - a timeline is read up to RUNDIR_TIMELINE_RECORDS_MAX (4M) records and
 *     RUNDIR_TIMELINE_BYTES_MAX (1 GiB) decompressed: past either, the rest
 *     of the file is not read and that is an error naming the limit;
 *   - the records are kept as at most SAMPLES_PER_PROC (65536) samples per
 *     process and SAMPLES_BUDGET (262144, 28 MiB) in all (a process past the
 *     budget still gets SAMPLES_FLOOR, 8). A longer timeline is merged: when
 *     the samples are full, neighbours are merged pairwise and each sample
 *     stands for twice as many records (sample_stride). A merged sample has
 *     the later record's values with the highest objects_rate, bytes_rate
 *     and peak of the records merged, so what the tools judge (the highest
 *     rate, the peak, the last record) is exact; a chart is coarser. It is
 *     a note, not an error;
 *   - alerts: at most ALERTS_PER_PROC (4096) per process and
 *     ALERT_BYTES_BUDGET (64 MiB of their lines) in all, at most TOP_KEPT
 *     stacks of FRAMES_KEPT frames each; an alert past those caps is counted
 *     (alerts_dropped, a note) unless its level is higher than every kept
 *     alert's, in which case it is kept without its stacks and profile, so
 *     the worst level is never lost.
 *
 * So at most about 28 MiB of samples + 8 per process, 64 MiB of alerts and
 * one line's or summary's parse tree at a time, plus per-file bookkeeping.
 */
#define _GNU_SOURCE
#include "tools/rundir.h"

#include "tools/json.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#define SUMMARY_MAX (1u << 20)    /* a summary larger than this is not ours (the agent's: < 16 KiB) */
#define LINE_MAX_BYTES (1u << 20) /* nor is a JSON line larger than this (an alert: < 200 KiB) */
#define EXE_MAX 8192              /* bytes of an exe name kept */
#define SAMPLES_PER_PROC 65536u   /* samples kept per process (a power of two) */
#define SAMPLES_BUDGET 262144u    /* samples kept in all (28 MiB) */
#define SAMPLES_FLOOR 8u          /* samples per process past the budget */
#define ALERTS_PER_PROC 4096u     /* alerts kept whole per process */
#define ALERT_BYTES_BUDGET (64u << 20)   /* JSON bytes of the alerts kept, in all */
#define TOP_KEPT 16u              /* stacks kept per alert (the agent writes 5) */
#define FRAMES_KEPT 256u          /* frames kept per stack */

/* What is left of the directory-wide budgets (reset by rundir_load; the
 * tools load one directory at a time, on one thread). */
static size_t samples_left, alert_bytes_left;

typedef enum { F_SUMMARY, F_TIMELINE, F_ALERTS, F_PROFILE } file_kind_t;

/* entry_t: one matching directory entry. */
typedef struct {
    long pid;
    unsigned long inst;        /* the agent's "<pid>-<n>" tag: n; 1 for the bare pid */
    file_kind_t kind;
    char *name;
    unsigned long seq;         /* profiles */
    char *reason;              /* profiles */
} entry_t;

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

static void set_msg(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_msg(char *msg, size_t cap, const char *fmt, ...)
{
    if (!msg || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
}

/* add_line: appends a formatted line to a list (notes or errors). Out of
 * memory, the line is dropped: these lists only explain. */
static void add_line(char ***list, size_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_line(char ***list, size_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0) return;
    char **grown = realloc(*list, (*n + 1) * sizeof **list);
    if (!grown) {
        free(s);
        return;
    }
    *list = grown;
    grown[(*n)++] = s;
}

#define NOTE(p, ...) add_line(&(p)->notes, &(p)->nnotes, __VA_ARGS__)
#define ERROR(p, ...) add_line(&(p)->errors, &(p)->nerrors, __VA_ARGS__)

/* grow_array: room for one more element in *items of *cap elements. */
static bool grow_array(void **items, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap) return true;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*items, ncap * elem);
    if (!p) return false;
    *items = p;
    *cap = ncap;
    return true;
}

/* num_or_nan: obj[key] when it is a finite number, else NAN. */
static double num_or_nan(const json_t *obj, const char *key)
{
    double v;
    return json_get_num(obj, key, &v) && isfinite(v) ? v : NAN;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ------------------------------------------------------------------------ */
/* File names                                                               */
/* ------------------------------------------------------------------------ */

/* eat_digits: parses [0-9]+ at *s into *v (at most 18 digits). */
static bool eat_digits(const char **s, unsigned long *v, int *ndigits)
{
    const char *p = *s;
    unsigned long x = 0;
    int n = 0;
    while (*p >= '0' && *p <= '9' && n < 18) {
        x = x * 10 + (unsigned long)(*p - '0');
        p++;
        n++;
    }
    if (n == 0 || (*p >= '0' && *p <= '9')) return false;
    *s = p;
    *v = x;
    if (ndigits) *ndigits = n;
    return true;
}

static bool eat(const char **s, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*s, lit, n) != 0) return false;
    *s += n;
    return true;
}

/* eat_tag: the agent's process tag, <pid> or <pid>-<n> (n >= 2: a second
 * process with the same pid in the same directory, e.g. from another pid
 * namespace; the agent never replaces another process's file). */
static bool eat_tag(const char **s, unsigned long *pid, unsigned long *inst)
{
    if (!eat_digits(s, pid, NULL)) return false;
    *inst = 1;
    const char *p = *s;
    if (*p == '-') {
        p++;
        unsigned long n;
        if (!eat_digits(&p, &n, NULL) || n < 2) return false;
        *inst = n;
        *s = p;
    }
    return true;
}

/* parse_profile_name: heap.<tag>.<seq>.<reason>.pb.gz, reason [a-z0-9_-]+. */
static bool parse_profile_name(const char *name, entry_t *e)
{
    const char *s = name;
    unsigned long pid, seq, inst;
    if (!eat(&s, "heap.") || !eat_tag(&s, &pid, &inst) || !eat(&s, ".")) return false;
    if (!eat_digits(&s, &seq, NULL) || !eat(&s, ".")) return false;
    const char *r = s;
    while ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-') s++;
    if (s == r || strcmp(s, ".pb.gz") != 0) return false;
    e->reason = strndup(r, (size_t)(s - r));
    if (!e->reason) return false;
    e->pid = (long)pid;
    e->inst = inst;
    e->seq = seq;
    e->kind = F_PROFILE;
    return true;
}

/* classify: whether name is one of the agent's files; fills *e. */
static bool classify(const char *name, entry_t *e)
{
    static const struct {
        const char *prefix, *suffix;
        file_kind_t kind;
    } pats[] = {
        { "summary.", ".json", F_SUMMARY },
        { "timeline.", ".jsonl.zst", F_TIMELINE },
        { "alerts.", ".jsonl", F_ALERTS },
    };
    memset(e, 0, sizeof *e);
    for (size_t i = 0; i < sizeof pats / sizeof *pats; i++) {
        const char *s = name;
        unsigned long pid, inst;
        if (eat(&s, pats[i].prefix) && eat_tag(&s, &pid, &inst) && strcmp(s, pats[i].suffix) == 0) {
            e->pid = (long)pid;
            e->inst = inst;
            e->kind = pats[i].kind;
            return true;
        }
    }
    return parse_profile_name(name, e);
}

static int cmp_entry(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    if (x->pid != y->pid) return x->pid < y->pid ? -1 : 1;
    if (x->inst != y->inst) return x->inst < y->inst ? -1 : 1;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    return strcmp(x->name, y->name);
}

static bool is_regular(const char *dir, const char *name)
{
    char *path;
    if (asprintf(&path, "%s/%s", dir, name) < 0) return false;
    struct stat st;
    bool ok = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    free(path);
    return ok;
}

static void free_entries(entry_t *es, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(es[i].name);
        free(es[i].reason);
    }
    free(es);
}

/* list_dir: the matching regular files of dir, sorted by pid and kind. */
static rundir_err_t list_dir(const char *dir, entry_t **out, size_t *nout, size_t *skipped, char *msg, size_t cap)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        set_msg(msg, cap, "%s: %s", dir, strerror(errno));
        return RUNDIR_ERR_OPEN;
    }
    if (!S_ISDIR(st.st_mode)) {
        set_msg(msg, cap, "%s: not a directory", dir);
        return RUNDIR_ERR_NOTDIR;
    }
    DIR *d = opendir(dir);
    if (!d) {
        set_msg(msg, cap, "%s: %s", dir, strerror(errno));
        return RUNDIR_ERR_OPEN;
    }
    entry_t *es = NULL;
    size_t n = 0, ecap = 0;
    struct dirent *de;
    rundir_err_t err = RUNDIR_OK;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        entry_t e;
        if (!classify(de->d_name, &e)) continue;
        if (n >= RUNDIR_FILES_MAX) {
            free(e.reason);
            (*skipped)++;
            errno = 0;
            continue;
        }
        if (!is_regular(dir, de->d_name) || !grow_array((void **)&es, &ecap, n, sizeof *es) ||
            !(e.name = strdup(de->d_name))) {
            free(e.reason);
            continue;   /* not a file (or out of memory: one file fewer) */
        }
        es[n++] = e;
        errno = 0;
    }
    if (errno != 0) {
        set_msg(msg, cap, "%s: %s", dir, strerror(errno));
        err = RUNDIR_ERR_OPEN;
    }
    closedir(d);
    if (err) {
        free_entries(es, n);
        return err;
    }
    if (n) qsort(es, n, sizeof *es, cmp_entry);
    *out = es;
    *nout = n;
    return RUNDIR_OK;
}

/* ------------------------------------------------------------------------ */
/* summary.<pid>.json                                                       */
/* ------------------------------------------------------------------------ */

/* read_small_file: the whole file (at most max bytes), NUL-terminated. */
static char *read_small_file(const char *path, size_t max, size_t *len, const char **why)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *why = strerror(errno);
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad || n > max) {
        *why = !buf ? "out of memory" : bad ? "read error" : "too large";
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static void take_exe(rundir_proc_t *p, const json_t *obj)
{
    const char *exe = json_get_str(obj, "exe");
    if (exe && !p->exe) p->exe = strndup(exe, EXE_MAX);
}

static void load_summary(rundir_proc_t *p, const char *dir, const char *name)
{
    char *path;
    if (asprintf(&path, "%s/%s", dir, name) < 0) return;
    size_t len = 0, off = 0;
    const char *why = NULL;
    char *text = read_small_file(path, SUMMARY_MAX, &len, &why);
    free(path);
    if (!text) {
        ERROR(p, "%s: %s", name, why);
        return;
    }
    json_t *v = NULL;
    json_err_t jerr = json_parse(text, len, &v, &off);
    free(text);
    if (jerr != JSON_OK || v->type != JSON_OBJECT) {
        if (jerr != JSON_OK) ERROR(p, "%s: %s at byte %zu", name, json_strerror(jerr), off);
        else ERROR(p, "%s: not a JSON object", name);
        json_free(v);
        return;
    }
    rundir_summary_t *s = &p->summary;
    double pid;
    if (json_get_num(v, "pid", &pid) && pid != (double)p->pid)
        NOTE(p, "%s: says pid %.0f", name, pid);
    s->ppid = num_or_nan(v, "ppid");
    s->start_time = num_or_nan(v, "start_time");
    s->end_time = num_or_nan(v, "end_time");
    s->duration_s = num_or_nan(v, "duration_s");
    if (isnan(s->duration_s) && !isnan(s->start_time) && !isnan(s->end_time))
        s->duration_s = s->end_time - s->start_time;
    s->mallocs = num_or_nan(v, "mallocs");
    s->frees = num_or_nan(v, "frees");
    s->live_objects = num_or_nan(v, "live_objects");
    s->live_bytes = num_or_nan(v, "live_bytes");
    s->peak_live_bytes = num_or_nan(v, "peak_live_bytes");
    s->alloc_bytes = num_or_nan(v, "alloc_bytes");
    s->free_bytes = num_or_nan(v, "free_bytes");
    s->rate = num_or_nan(v, "rate");
    s->agent_memory_bytes = num_or_nan(v, "agent_memory_bytes");
    free(p->exe);
    p->exe = NULL;
    take_exe(p, v);   /* the summary's word wins over a record's */
    p->has_summary = true;
    json_free(v);
}

/* ------------------------------------------------------------------------ */
/* JSON lines                                                               */
/* ------------------------------------------------------------------------ */

/* lines_t: splits a byte stream into lines and hands each to a callback. */
typedef struct lines_s lines_t;
typedef void (*line_fn)(lines_t *ls, const char *line, size_t len);
struct lines_s {
    char *buf;                 /* bytes after the last newline */
    size_t len, cap;
    size_t lineno;             /* lines handed out so far */
    bool too_long;             /* a line exceeded LINE_MAX_BYTES: stop */
    bool capped;               /* a bound of the file was reached: stop */
    line_fn fn;
    rundir_proc_t *proc;
    const char *file;          /* for messages */
    size_t bad;                /* lines that were not valid records */
    size_t skipped_events;     /* alerts: events of another kind */
    size_t items_cap;          /* capacity of the array the records go to */
    size_t samples_max;        /* timeline: samples kept for this process */
    rundir_sample_t acc;       /* timeline: records merged, not yet a sample */
    size_t nacc;
    int worst_kept;            /* alerts: highest level kept so far (0 none) */
};

/* lines_emit: one line (without its newline) to the callback, blank lines
 * counted but skipped. */
static void lines_emit(lines_t *ls, const char *line, size_t len)
{
    ls->lineno++;
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
            ls->fn(ls, line, len);
            return;
        }
}

/* lines_feed: appends data; emits every complete line. */
static bool lines_feed(lines_t *ls, const char *data, size_t n)
{
    if (ls->too_long || ls->capped) return false;
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (ls->len + take > LINE_MAX_BYTES) {
            ls->too_long = true;
            ERROR(ls->proc, "%s: line %zu is longer than %u bytes; stopped reading", ls->file, ls->lineno + 1,
                  LINE_MAX_BYTES);
            return false;
        }
        if (nl && ls->len == 0) {
            lines_emit(ls, data, take);   /* the common case: no copy */
        } else {
            if (ls->len + take + 1 > ls->cap) {
                size_t ncap = ls->cap ? ls->cap : 4096;
                while (ncap < ls->len + take + 1) ncap *= 2;
                char *b = realloc(ls->buf, ncap);
                if (!b) {
                    ERROR(ls->proc, "%s: out of memory", ls->file);
                    ls->too_long = true;
                    return false;
                }
                ls->buf = b;
                ls->cap = ncap;
            }
            memcpy(ls->buf + ls->len, data, take);
            ls->len += take;
            if (nl) {
                lines_emit(ls, ls->buf, ls->len);
                ls->len = 0;
            }
        }
        if (!nl) break;
        if (ls->capped) return false;
        data += take + 1;
        n -= take + 1;
    }
    return true;
}

/* parse_line: the JSON object of one line, or NULL (the line counted bad,
 * and the first bad line named in the errors). */
static json_t *parse_line(lines_t *ls, const char *line, size_t len)
{
    json_t *v = NULL;
    size_t off = 0;
    json_err_t jerr = json_parse(line, len, &v, &off);
    if (jerr == JSON_OK && v->type == JSON_OBJECT) return v;
    if (ls->bad++ == 0) {
        if (jerr != JSON_OK) ERROR(ls->proc, "%s: line %zu: %s at byte %zu", ls->file, ls->lineno, json_strerror(jerr), off);
        else ERROR(ls->proc, "%s: line %zu: not a JSON object", ls->file, ls->lineno);
    }
    json_free(v);
    return NULL;
}

static void bad_record(lines_t *ls, const char *why)
{
    if (ls->bad++ == 0) ERROR(ls->proc, "%s: line %zu: %s", ls->file, ls->lineno, why);
}

static void report_bad_count(lines_t *ls)
{
    if (ls->bad > 1) ERROR(ls->proc, "%s: %zu bad lines in all", ls->file, ls->bad);
}

/* ------------------------------------------------------------------------ */
/* timeline.<pid>.jsonl.zst                                                 */
/* ------------------------------------------------------------------------ */

/* merge_samples: b, a record that came after a, standing for both: b's
 * values with the higher rates and peak (the peak at least the live bytes,
 * which is what the tools use when a record has no peak). */
static rundir_sample_t merge_samples(const rundir_sample_t *a, const rundir_sample_t *b)
{
    rundir_sample_t r = *b;
    r.objects_rate = fmax(a->objects_rate, b->objects_rate);
    r.bytes_rate = fmax(a->bytes_rate, b->bytes_rate);
    r.peak_live_bytes = fmax(fmax(a->peak_live_bytes, b->peak_live_bytes), fmax(a->live_bytes, b->live_bytes));
    return r;
}

/* push_sample: ls->acc becomes a sample; when the samples are full they
 * are merged pairwise first and the stride doubles (then acc waits until it
 * too stands for a whole stride, unless `last`). */
static void push_sample(lines_t *ls, bool last)
{
    rundir_proc_t *p = ls->proc;
    if (p->nsamples == ls->samples_max) {
        for (size_t i = 0; i + 1 < p->nsamples; i += 2)
            p->samples[i / 2] = merge_samples(&p->samples[i], &p->samples[i + 1]);
        p->nsamples /= 2;
        p->sample_stride *= 2;
        if (!last && ls->nacc < p->sample_stride) return;
    }
    if (!grow_array((void **)&p->samples, &ls->items_cap, p->nsamples, sizeof *p->samples)) {
        bad_record(ls, "out of memory");
    } else {
        p->samples[p->nsamples++] = ls->acc;
    }
    ls->nacc = 0;
}

static void add_sample(lines_t *ls, const rundir_sample_t *s)
{
    ls->proc->nrecords++;
    ls->acc = ls->nacc ? merge_samples(&ls->acc, s) : *s;
    if (++ls->nacc >= ls->proc->sample_stride) push_sample(ls, false);
}

static void timeline_line(lines_t *ls, const char *line, size_t len)
{
    rundir_proc_t *p = ls->proc;
    if (p->nrecords >= RUNDIR_TIMELINE_RECORDS_MAX) {
        ls->capped = true;
        ERROR(p, "%s: more than %u records; the rest of the file was not read", ls->file,
              RUNDIR_TIMELINE_RECORDS_MAX);
        return;
    }
    json_t *v = parse_line(ls, line, len);
    if (!v) return;
    rundir_sample_t s;
    s.time = num_or_nan(v, "time");
    if (isnan(s.time)) {
        bad_record(ls, "no \"time\"");
        json_free(v);
        return;
    }
    s.mallocs = num_or_nan(v, "mallocs");
    s.frees = num_or_nan(v, "frees");
    s.live_objects = num_or_nan(v, "live_objects");
    s.live_bytes = num_or_nan(v, "live_bytes");
    s.alloc_bytes = num_or_nan(v, "alloc_bytes");
    s.objects_rate = num_or_nan(v, "objects_rate");
    s.bytes_rate = num_or_nan(v, "bytes_rate");
    s.peak_live_bytes = num_or_nan(v, "peak_live_bytes");
    s.agent_memory_bytes = num_or_nan(v, "agent_memory_bytes");
    s.stacks = num_or_nan(v, "stacks");
    s.map_count = num_or_nan(v, "map_count");
    s.map_B = num_or_nan(v, "map_B");
    s.map_noverflow = num_or_nan(v, "map_noverflow");
    if (isnan(s.live_objects) && !isnan(s.mallocs) && !isnan(s.frees)) s.live_objects = s.mallocs - s.frees;
    double elapsed = num_or_nan(v, "elapsed_s");
    if (p->nrecords == 0 && !isnan(elapsed) && elapsed >= 0) p->timeline_start = s.time - elapsed;
    take_exe(p, v);
    json_free(v);
    add_sample(ls, &s);
}

/* zstd_lines: decompresses f through lines_feed. @return true when the
 * stream ended at a frame boundary; *damaged when the data is not valid
 * zstd (the lines before stay decoded). */
static bool zstd_lines(FILE *f, lines_t *ls, bool *damaged, const char **why)
{
    ZSTD_DStream *ds = ZSTD_createDStream();
    size_t in_cap = ZSTD_DStreamInSize(), out_cap = ZSTD_DStreamOutSize();
    char *in = malloc(in_cap), *out = malloc(out_cap);
    bool at_boundary = true;
    *damaged = false;
    if (!ds || !in || !out) {
        *damaged = true;
        *why = "out of memory";
        goto done;
    }
    ZSTD_initDStream(ds);
    unsigned long long total = 0;   /* decompressed bytes */
    size_t n;
    while ((n = fread(in, 1, in_cap, f)) > 0) {
        ZSTD_inBuffer input = { in, n, 0 };
        bool out_full = false;
        while (input.pos < input.size || out_full) {
            ZSTD_outBuffer output = { out, out_cap, 0 };
            size_t r = ZSTD_decompressStream(ds, &output, &input);
            if (ZSTD_isError(r)) {
                *damaged = true;
                *why = ZSTD_getErrorName(r);
                goto done;
            }
            at_boundary = r == 0;
            out_full = output.pos == output.size;
            total += output.pos;
            if (total > RUNDIR_TIMELINE_BYTES_MAX) {
                ls->capped = true;
                ERROR(ls->proc, "%s: more than %llu MiB decompressed (%zu records); the rest of the file was not read",
                      ls->file, RUNDIR_TIMELINE_BYTES_MAX >> 20, ls->proc->nrecords);
                goto done;
            }
            if (output.pos && !lines_feed(ls, out, output.pos)) goto done;
            if (!out_full && input.pos == input.size) break;
        }
    }
    if (ferror(f)) {
        *damaged = true;
        *why = "read error";
    }
done:
    ZSTD_freeDStream(ds);
    free(in);
    free(out);
    return at_boundary;
}

static void load_timeline(rundir_proc_t *p, const char *dir, const char *name)
{
    char *path;
    if (asprintf(&path, "%s/%s", dir, name) < 0) return;
    FILE *f = fopen(path, "rb");
    free(path);
    p->has_timeline = true;
    if (!f) {
        ERROR(p, "%s: %s", name, strerror(errno));
        return;
    }
    /* The samples this process may keep: a power of two (merging halves). */
    size_t max = SAMPLES_PER_PROC;
    while (max > SAMPLES_FLOOR && max > samples_left) max /= 2;
    lines_t ls = { .fn = timeline_line, .proc = p, .file = name, .samples_max = max };
    p->sample_stride = 1;
    bool damaged = false;
    const char *why = NULL;
    bool complete = zstd_lines(f, &ls, &damaged, &why);
    fclose(f);
    if (damaged) {
        ERROR(p, "%s: damaged zstd data (%s) after %zu records", name, why, p->nsamples);
    } else if (ls.capped) {
        /* said when it happened */
    } else if (!ls.too_long && !complete) {
        p->timeline_truncated = true;
        NOTE(p, "%s ends in an unfinished zstd frame (killed, or still running): %zu records read%s", name,
             p->nsamples, ls.len ? ", a partial last line dropped" : "");
    } else if (!ls.too_long && ls.len) {
        lines_emit(&ls, ls.buf, ls.len);   /* a complete last line without its newline */
    }
    if (ls.nacc) push_sample(&ls, true);
    if (p->sample_stride > 1)
        NOTE(p, "%s: %zu records kept as %zu samples of up to %zu records each (the highest rates, the peak and "
             "the last record exact)", name, p->nrecords, p->nsamples, p->sample_stride);
    samples_left -= p->nsamples < samples_left ? p->nsamples : samples_left;
    report_bad_count(&ls);
    free(ls.buf);
}

/* ------------------------------------------------------------------------ */
/* alerts.<pid>.jsonl                                                       */
/* ------------------------------------------------------------------------ */

static void free_stack(rundir_stack_t *s)
{
    free(s->function);
    for (size_t i = 0; i < s->nframes; i++) free(s->frames[i]);
    free(s->frames);
}

static void free_alert(rundir_alert_t *a)
{
    free(a->metric);
    free(a->profile);
    for (size_t i = 0; i < a->ntop; i++) free_stack(&a->top[i]);
    free(a->top);
}

/* parse_stack: one entry of "top". @return false out of memory or when
 * the entry is not an object. */
static bool parse_stack(const json_t *v, rundir_stack_t *s)
{
    memset(s, 0, sizeof *s);
    if (v->type != JSON_OBJECT) return false;
    const json_t *st = json_get(v, "stack");
    if (st && st->type == JSON_ARRAY && st->u.arr.n) {
        size_t n = st->u.arr.n < FRAMES_KEPT ? st->u.arr.n : FRAMES_KEPT;
        s->frames = calloc(n, sizeof *s->frames);
        if (!s->frames) return false;
        for (size_t i = 0; i < n; i++) {
            const json_t *fr = st->u.arr.items[i];
            s->frames[i] = strdup(fr->type == JSON_STRING && fr->u.str.len ? fr->u.str.s : "?");
            if (!s->frames[i]) return false;
            s->nframes++;
        }
    }
    const char *fn = json_get_str(v, "function");
    s->function = strdup(fn && *fn ? fn : s->nframes ? s->frames[0] : "?");
    s->growth_bytes = num_or_nan(v, "growth_bytes");
    s->growth_objects = num_or_nan(v, "growth_objects");
    return s->function != NULL;
}

/* parse_alert: fills *a from a record; @return NULL or why it is bad. */
static const char *parse_alert(const json_t *v, rundir_alert_t *a)
{
    memset(a, 0, sizeof *a);
    a->time = num_or_nan(v, "time");
    if (isnan(a->time)) return "no \"time\"";
    const char *level = json_get_str(v, "level");
    if (!level) return "no \"level\"";
    if (strcmp(level, "warn") == 0) a->level = RUNDIR_WARN;
    else if (strcmp(level, "crit") == 0) a->level = RUNDIR_CRIT;
    else return "\"level\" is neither \"warn\" nor \"crit\"";
    const char *event = json_get_str(v, "event");
    a->recovery = event && strcmp(event, "recovery") == 0;
    const char *metric = json_get_str(v, "metric");
    a->metric = strdup(metric && *metric ? metric : "objects_rate");
    a->profile = dup_or_null(json_get_str(v, "profile"));
    if (!a->metric) return "out of memory";
    a->value = num_or_nan(v, "value");
    a->threshold = num_or_nan(v, "threshold");
    a->window_s = num_or_nan(v, "window_s");
    a->live_objects = num_or_nan(v, "live_objects");
    a->live_bytes = num_or_nan(v, "live_bytes");
    const json_t *top = json_get(v, "top");
    if (top && top->type == JSON_ARRAY && top->u.arr.n) {
        size_t n = top->u.arr.n < TOP_KEPT ? top->u.arr.n : TOP_KEPT;
        a->top = calloc(n, sizeof *a->top);
        if (!a->top) return "out of memory";
        for (size_t i = 0; i < n; i++) {
            bool ok = parse_stack(top->u.arr.items[i], &a->top[a->ntop]);
            a->ntop++;   /* freed with the alert even when half-filled */
            if (!ok) return "an entry of \"top\" is not a stack object";
        }
    } else if (top && top->type != JSON_ARRAY && top->type != JSON_NULL) {
        return "\"top\" is not an array";
    }
    return NULL;
}

/* keep_alert: whether a parsed alert is kept: whole within the caps;
 * past them only when it raises the worst level kept, then without its
 * stacks and profile (at most two such per process: warn, crit). */
static bool keep_alert(lines_t *ls, rundir_alert_t *a, size_t len)
{
    size_t cost = len + 64;
    for (size_t i = 0; i < a->ntop; i++) cost += 64 * (1 + a->top[i].nframes);
    if (ls->proc->nalerts < ALERTS_PER_PROC && cost <= alert_bytes_left) {
        alert_bytes_left -= cost;
        return true;
    }
    if (a->recovery || (int)a->level <= ls->worst_kept) return false;
    for (size_t i = 0; i < a->ntop; i++) free_stack(&a->top[i]);
    free(a->top);
    a->top = NULL;
    a->ntop = 0;
    free(a->profile);
    a->profile = NULL;
    if (strlen(a->metric) > 64) a->metric[64] = 0;
    return true;
}

static void alerts_line(lines_t *ls, const char *line, size_t len)
{
    json_t *v = parse_line(ls, line, len);
    if (!v) return;
    rundir_proc_t *p = ls->proc;
    const char *event = json_get_str(v, "event");
    if (event && strcmp(event, "alert") != 0 && strcmp(event, "recovery") != 0) {
        if (ls->skipped_events++ == 0) NOTE(p, "%s: line %zu: event \"%s\" ignored", ls->file, ls->lineno, event);
        json_free(v);
        return;
    }
    rundir_alert_t a;
    const char *why = parse_alert(v, &a);
    take_exe(p, v);
    json_free(v);
    if (!why && !keep_alert(ls, &a, len)) {
        free_alert(&a);
        p->alerts_dropped++;
        return;
    }
    if (!why && !grow_array((void **)&p->alerts, &ls->items_cap, p->nalerts, sizeof *p->alerts)) why = "out of memory";
    if (why) {
        free_alert(&a);
        bad_record(ls, why);
        return;
    }
    if (!a.recovery && (int)a.level > ls->worst_kept) ls->worst_kept = (int)a.level;
    p->alerts[p->nalerts++] = a;
}

static void load_alerts(rundir_proc_t *p, const char *dir, const char *name)
{
    char *path;
    if (asprintf(&path, "%s/%s", dir, name) < 0) return;
    FILE *f = fopen(path, "rb");
    free(path);
    p->has_alerts = true;
    if (!f) {
        ERROR(p, "%s: %s", name, strerror(errno));
        return;
    }
    lines_t ls = { .fn = alerts_line, .proc = p, .file = name };
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if (!lines_feed(&ls, buf, n)) break;
    if (ferror(f)) ERROR(p, "%s: read error", name);
    fclose(f);
    if (!ls.too_long && ls.len) {
        /* No final newline: the agent writes each line whole, so this is a
         * line cut by a crash (a note) unless it parses. */
        json_t *v = NULL;
        if (json_parse(ls.buf, ls.len, &v, NULL) == JSON_OK) lines_emit(&ls, ls.buf, ls.len);
        else NOTE(p, "%s: an unfinished last line ignored", name);
        json_free(v);
    }
    if (p->alerts_dropped)
        NOTE(p, "%s: %zu alert%s not kept (past %u per process or %u MiB of alerts in all; the worst level is "
             "always kept)", name, p->alerts_dropped, p->alerts_dropped == 1 ? "" : "s", ALERTS_PER_PROC,
             ALERT_BYTES_BUDGET >> 20);
    report_bad_count(&ls);
    free(ls.buf);
}

/* ------------------------------------------------------------------------ */
/* The directory                                                            */
/* ------------------------------------------------------------------------ */

static void add_profile(rundir_proc_t *p, entry_t *e, size_t *cap)
{
    if (!grow_array((void **)&p->profiles, cap, p->nprofiles, sizeof *p->profiles)) return;
    rundir_profile_t *pr = &p->profiles[p->nprofiles++];
    pr->name = e->name;
    pr->seq = e->seq;
    pr->reason = e->reason;
    e->name = e->reason = NULL;   /* moved */
}

/* load_proc: entries es[0..n) all belong to one pid. */
static void load_proc(rundir_proc_t *p, const char *dir, entry_t *es, size_t n)
{
    memset(p, 0, sizeof *p);
    p->pid = es[0].pid;
    p->inst = (unsigned)es[0].inst;
    if (p->inst > 1) snprintf(p->tag, sizeof p->tag, "%ld-%u", p->pid, p->inst);
    else snprintf(p->tag, sizeof p->tag, "%ld", p->pid);
    p->timeline_start = NAN;
    size_t pcap = 0;
    /* Timeline and alerts first, so the summary's exe replaces theirs. */
    for (size_t i = 0; i < n; i++) {
        if (es[i].kind == F_TIMELINE) load_timeline(p, dir, es[i].name);
        else if (es[i].kind == F_ALERTS) load_alerts(p, dir, es[i].name);
        else if (es[i].kind == F_PROFILE) add_profile(p, &es[i], &pcap);
    }
    for (size_t i = 0; i < n; i++)
        if (es[i].kind == F_SUMMARY) load_summary(p, dir, es[i].name);
}

static int cmp_proc(const void *a, const void *b)
{
    const rundir_proc_t *x = a, *y = b;
    double sx = rundir_start(x), sy = rundir_start(y);
    if (!isnan(sx) && !isnan(sy) && sx != sy) return sx < sy ? -1 : 1;
    if (isnan(sx) != isnan(sy)) return isnan(sx) ? 1 : -1;
    if (x->pid != y->pid) return x->pid < y->pid ? -1 : 1;
    return x->inst < y->inst ? -1 : x->inst > y->inst;
}

rundir_err_t rundir_load(const char *path, rundir_t *out, char *msg, size_t msgcap)
{
    memset(out, 0, sizeof *out);
    out->path = strdup(path);
    entry_t *es = NULL;
    size_t n = 0;
    if (!out->path) return RUNDIR_ERR_NOMEM;
    samples_left = SAMPLES_BUDGET;
    alert_bytes_left = ALERT_BYTES_BUDGET;
    rundir_err_t err = list_dir(path, &es, &n, &out->files_skipped, msg, msgcap);
    if (err) return err;
    size_t npids = 0;
    bool any_result = false;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || es[i].pid != es[i - 1].pid || es[i].inst != es[i - 1].inst) npids++;
        if (es[i].kind != F_PROFILE) any_result = true;
    }
    if (!any_result) {
        set_msg(msg, msgcap, "%s: no heapwatch results (no summary.*.json, timeline.*.jsonl.zst or alerts.*.jsonl)%s",
                path, n ? "; only heap profiles" : "");
        free_entries(es, n);
        return RUNDIR_ERR_EMPTY;
    }
    out->procs = calloc(npids, sizeof *out->procs);
    if (!out->procs) {
        free_entries(es, n);
        set_msg(msg, msgcap, "out of memory");
        return RUNDIR_ERR_NOMEM;
    }
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && es[j].pid == es[i].pid && es[j].inst == es[i].inst) j++;
        load_proc(&out->procs[out->nprocs++], path, es + i, j - i);
        i = j;
    }
    free_entries(es, n);
    qsort(out->procs, out->nprocs, sizeof *out->procs, cmp_proc);
    return RUNDIR_OK;
}

static void free_proc(rundir_proc_t *p)
{
    free(p->exe);
    free(p->samples);
    for (size_t i = 0; i < p->nalerts; i++) free_alert(&p->alerts[i]);
    free(p->alerts);
    for (size_t i = 0; i < p->nprofiles; i++) {
        free(p->profiles[i].name);
        free(p->profiles[i].reason);
    }
    free(p->profiles);
    for (size_t i = 0; i < p->nnotes; i++) free(p->notes[i]);
    free(p->notes);
    for (size_t i = 0; i < p->nerrors; i++) free(p->errors[i]);
    free(p->errors);
}

void rundir_free(rundir_t *rd)
{
    for (size_t i = 0; i < rd->nprocs; i++) free_proc(&rd->procs[i]);
    free(rd->procs);
    free(rd->path);
    memset(rd, 0, sizeof *rd);
}

const char *rundir_exe_name(const rundir_proc_t *p)
{
    if (!p->exe || !*p->exe) return "?";
    const char *slash = strrchr(p->exe, '/');
    return slash && slash[1] ? slash + 1 : p->exe;
}

double rundir_start(const rundir_proc_t *p)
{
    if (p->has_summary && !isnan(p->summary.start_time)) return p->summary.start_time;
    if (!isnan(p->timeline_start)) return p->timeline_start;
    double t = NAN;
    if (p->nsamples) t = p->samples[0].time;
    if (p->nalerts && (isnan(t) || p->alerts[0].time < t)) t = p->alerts[0].time;
    return t;
}

const char *rundir_level_name(rundir_level_t level)
{
    return level == RUNDIR_CRIT ? "crit" : "warn";
}
