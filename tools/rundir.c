/*
 * rundir.c - reads a heapwatch output directory into memory (rundir.h).
 *
 * The directory is listed once (rundir_list.c); names are matched exactly
 * against the agent's patterns and sorted by pid, so each process's files
 * are read together, here, by the reader of each kind of file (one file
 * each: rundir_internal.h lists them), on several threads ("Reading in
 * parallel" below). The directory-wide budgets below are shared out among
 * chunks of processes in proportion to their files' bytes, each share in
 * a rundir_budget_t handed down.
 * Every reader is defensive, because the files may come from a
 * process that was killed mid-write, from another version of the agent, or
 * from somewhere else entirely:
 *
 *   - a summary is at most SUMMARY_MAX bytes and must be one JSON object;
 *   - the timeline is decompressed with libzstd's streaming API, so several
 *     concatenated frames read as one stream, and a last frame cut short
 *     (the agent flushes a block at every snapshot and ends the frame only
 *     at exit) still yields every complete line before the cut (rundir_zstd.h): that is a
 *     note, not an error. Damaged compressed data is an error, with the
 *     records decoded before it kept;
 *   - JSON lines are parsed one at a time (blank lines skipped; a line over
 *     LINE_MAX_BYTES bytes stops the file); a line that is not a valid record is
 *     skipped and counted, and the first such line is named in the error;
 *   - unknown keys are ignored; a known key of the wrong type counts as
 *     absent, except the few a record cannot do without (a time; an alert's
 *     level).
 *
 * Memory is bounded whatever the directory holds (a 1.9 KB zstd file can
 * expand to millions of records; a directory can hold anything):
 *
 *   - at most RUNDIR_FILES_MAX (65536) result files are read; the rest are
 *     counted in files_skipped and reported by the tools;
 *   - a summary is at most SUMMARY_MAX (1 MiB), a JSON line at most
 *     LINE_MAX_BYTES (1 MiB), an exe name is cut at EXE_MAX (8 KiB);
 *   - a timeline is read up to RUNDIR_TIMELINE_RECORDS_MAX (4M) records and
 *     RUNDIR_TIMELINE_BYTES_MAX (1 GiB) decompressed: past either, the rest
 *     of the file is not read and that is an error naming the limit;
 *   - the records are kept as at most SAMPLES_PER_PROC (65536) samples per
 *     process and SAMPLES_BUDGET (262144) in all (a process past the budget
 *     still gets SAMPLES_FLOOR, 8). A sample holds every numeric field of
 *     the agent's record (agent/records.h: 17 doubles, 136 bytes), so the
 *     budget is 34 MiB; rundir_timeline.c asserts it stays under 36 MiB. A longer timeline is merged: when
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
 * So at most about 34 MiB of samples + 8 per process, 64 MiB of alerts and
 * one line's or summary's parse tree at a time per reading thread (at most
 * about 25 MiB: rundir_json.c; at most LOAD_THREADS, 8, threads), plus
 * per-file bookkeeping.
 */
#define _GNU_SOURCE
#include "tools/rundir_internal.h"

#include "tools/profile.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Small helpers (rundir_internal.h)                                        */
/* ------------------------------------------------------------------------ */

void rundir_set_msg(char *msg, size_t cap, const char *fmt, ...)
{
    if (!msg || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
}

void rundir_add_line(char ***list, size_t *n, const char *fmt, ...)
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

bool rundir_grow(void **items, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap) return true;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*items, ncap * elem);
    if (!p) return false;
    *items = p;
    *cap = ncap;
    return true;
}

FILE *rundir_open(const char *dir, const char *name)
{
    char *path;
    if (asprintf(&path, "%s/%s", dir, name) < 0) return NULL;
    FILE *f = fopen(path, "rb");
    free(path);
    return f;
}

/* ------------------------------------------------------------------------ */
/* The directory                                                            */
/* ------------------------------------------------------------------------ */

static void add_profile(rundir_proc_t *p, rundir_entry_t *e, size_t *cap)
{
    if (!rundir_grow((void **)&p->profiles, cap, p->nprofiles, sizeof *p->profiles)) return;
    rundir_profile_t *pr = &p->profiles[p->nprofiles++];
    pr->name = e->name;
    pr->seq = e->seq;
    pr->reason = e->reason;
    e->name = e->reason = NULL;   /* moved */
}

/* load_proc: entries es[0..n) all belong to one process (pid and instance tag). */
static void load_proc(rundir_proc_t *p, const char *dir, rundir_entry_t *es, size_t n, rundir_budget_t *budget)
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
        if (es[i].kind == F_TIMELINE) rundir_load_timeline(p, dir, es[i].name, budget);
        else if (es[i].kind == F_ALERTS) rundir_load_alerts(p, dir, es[i].name, budget);
        else if (es[i].kind == F_PROFILE) add_profile(p, &es[i], &pcap);
    }
    for (size_t i = 0; i < n; i++)
        if (es[i].kind == F_SUMMARY) rundir_load_summary(p, dir, es[i].name);
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

/* ------------------------------------------------------------------------ */
/* Reading in parallel                                                      */
/* ------------------------------------------------------------------------ */

/*
 * Parsing JSON is most of the time of a large directory (jansson: some
 * 22 us for a summary of 1.1 KB; 20,000 processes spent 60 % of a check
 * in summaries and 30 % in timelines). Processes are independent, so they
 * are read by up to LOAD_THREADS threads, the CPUs it may use at most, each
 * with its own zstd decoder, into their fixed slots of the processes
 * array.
 *
 * What is kept must not depend on how many threads ran or which ran
 * first. The processes, in the listing's order, are cut into at most
 * LOAD_CHUNKS contiguous chunks; a chunk is read by one thread from first
 * to last, with its own share of each directory-wide budget: of
 * SAMPLES_BUDGET in proportion to the bytes of its timelines, of
 * ALERT_BYTES_BUDGET to the bytes of its alerts files (the budgets go
 * where the data is). The shares add up to at most the budgets, so the
 * bounds above hold; each thread holds one parse tree at a time.
 */
#define LOAD_THREADS 8
#define LOAD_CHUNKS 64

typedef struct {
    size_t first, n;             /* the chunk's entries es[first..first+n) */
    rundir_budget_t budget;      /* its shares */
    size_t proc0;                /* the slot of its first process */
} load_chunk_t;

typedef struct {
    const char *dir;
    rundir_entry_t *es;
    rundir_proc_t *procs;
    load_chunk_t *chunks;
    size_t nchunks;
    size_t next;                 /* the next chunk to take (atomic) */
} load_job_t;

/* proc_end: the end of the process whose entries start at es[i] (es[0..n)
 * sorted by process). */
static size_t proc_end(const rundir_entry_t *es, size_t i, size_t n)
{
    size_t j = i;
    while (j < n && es[j].pid == es[i].pid && es[j].inst == es[i].inst) j++;
    return j;
}

/* load_chunk: the processes of one chunk, in order, into their slots. */
static void load_chunk(const load_job_t *job, load_chunk_t *c, rundir_zstd_t *zstd)
{
    rundir_entry_t *es = job->es + c->first;
    c->budget.zstd = zstd;
    for (size_t i = 0, j, k = c->proc0; i < c->n; i = j, k++) {
        j = proc_end(es, i, c->n);
        load_proc(&job->procs[k], job->dir, es + i, j - i, &c->budget);
    }
}

static void *load_worker(void *arg)
{
    load_job_t *job = arg;
    rundir_zstd_t *zstd = rundir_zstd_new();   /* NULL: each timeline says "out of memory" */
    size_t c;
    while ((c = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED)) < job->nchunks)
        load_chunk(job, &job->chunks[c], zstd);
    rundir_zstd_free(zstd);
    return NULL;
}

/* share: budget * part / whole (part <= whole), rounded down; an even
 * share when whole is 0. */
static size_t share(size_t budget, unsigned long long part, unsigned long long whole, size_t nchunks)
{
    if (whole == 0) return budget / nchunks;
    return (size_t)((double)budget * ((double)part / (double)whole));   /* rounds down: never above budget */
}

/* cut_chunks: es[0..n) (npids processes) into at most LOAD_CHUNKS chunks
 * of about as many processes each, with their budget shares. */
static size_t cut_chunks(const rundir_entry_t *es, size_t n, size_t npids, load_chunk_t *chunks)
{
    size_t nchunks = npids < LOAD_CHUNKS ? npids : LOAD_CHUNKS;
    unsigned long long tl_all = 0, al_all = 0;
    for (size_t i = 0; i < n; i++) {
        if (es[i].kind == F_TIMELINE) tl_all += es[i].size;
        if (es[i].kind == F_ALERTS) al_all += es[i].size;
    }
    size_t i = 0, proc = 0;
    for (size_t c = 0; c < nchunks; c++) {
        size_t want = (c + 1) * npids / nchunks;   /* processes before this chunk's end */
        load_chunk_t *ch = &chunks[c];
        unsigned long long tl = 0, al = 0;
        ch->first = i;
        ch->proc0 = proc;
        for (; i < n && proc < want; proc++) {
            for (size_t end = proc_end(es, i, n); i < end; i++) {
                if (es[i].kind == F_TIMELINE) tl += es[i].size;
                if (es[i].kind == F_ALERTS) al += es[i].size;
            }
        }
        ch->n = i - ch->first;
        ch->budget = (rundir_budget_t){ share(SAMPLES_BUDGET, tl, tl_all, nchunks),
                                        share(ALERT_BYTES_BUDGET, al, al_all, nchunks), NULL };
    }
    return nchunks;
}

/* load_all: every process of es[0..n) into procs[0..npids), by up to
 * LOAD_THREADS threads (this one among them). */
static void load_all(const char *dir, rundir_entry_t *es, size_t n, size_t npids, rundir_proc_t *procs)
{
    load_chunk_t chunks[LOAD_CHUNKS];
    load_job_t job = { dir, es, procs, chunks, cut_chunks(es, n, npids, chunks), 0 };
    cpu_set_t cpus;   /* the CPUs this process may run on (taskset, a cgroup's cpuset) */
    size_t nthreads = sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 1 ? (size_t)CPU_COUNT(&cpus) : 1;
    if (nthreads > LOAD_THREADS) nthreads = LOAD_THREADS;
    if (nthreads > job.nchunks) nthreads = job.nchunks;
    pthread_t tids[LOAD_THREADS];
    size_t started = 0;
    for (size_t t = 1; t < nthreads; t++)   /* a thread that cannot start leaves its chunks to the others */
        if (pthread_create(&tids[started], NULL, load_worker, &job) == 0) started++;
    load_worker(&job);
    for (size_t t = 0; t < started; t++) pthread_join(tids[t], NULL);
}

rundir_err_t rundir_load(const char *path, rundir_t *out, char *msg, size_t msgcap)
{
    memset(out, 0, sizeof *out);
    out->path = strdup(path);
    rundir_entry_t *es = NULL;
    size_t n = 0;
    if (!out->path) return RUNDIR_ERR_NOMEM;
    rundir_err_t err = rundir_list(path, &es, &n, &out->files_skipped, msg, msgcap);
    if (err) return err;
    size_t npids = 0;
    bool any_result = false;
    for (size_t i = 0; i < n; i = proc_end(es, i, n)) npids++;
    for (size_t i = 0; i < n; i++) any_result |= es[i].kind != F_PROFILE;
    if (!any_result) {
        rundir_set_msg(msg, msgcap, "%s: no heapwatch results (no summary.*.json, timeline.*.jsonl.zst or alerts.*.jsonl)%s",
                path, n ? "; only heap profiles" : "");
        rundir_entries_free(es, n);
        return RUNDIR_ERR_EMPTY;
    }
    out->procs = calloc(npids, sizeof *out->procs);
    if (!out->procs) {
        rundir_entries_free(es, n);
        rundir_set_msg(msg, msgcap, "out of memory");
        return RUNDIR_ERR_NOMEM;
    }
    load_all(path, es, n, npids, out->procs);
    out->nprocs = npids;
    rundir_entries_free(es, n);
    qsort(out->procs, out->nprocs, sizeof *out->procs, cmp_proc);
    return RUNDIR_OK;
}

static void free_proc(rundir_proc_t *p)
{
    free(p->exe);
    free(p->cmdline);
    free(p->peak_profile);
    free(p->cmd_pattern);
    free(p->malloc_owner);
    free(p->samples);
    rundir_free_alerts(p);
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

const char *rundir_owner_where(const rundir_proc_t *p)
{
    bool own = p->malloc_owner && p->exe && strcmp(p->malloc_owner, p->exe) == 0;
    return own ? "linked into the program" : "preloaded before it";
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

const rundir_profile_t *rundir_profile_find(const rundir_proc_t *p, const char *reason)
{
    for (size_t i = p->nprofiles; i-- > 0;)   /* sorted by seq: the latest first */
        if (strcmp(p->profiles[i].reason, reason) == 0) return &p->profiles[i];
    return NULL;
}

const rundir_profile_t *rundir_profile_named(const rundir_proc_t *p, const char *name)
{
    for (size_t i = 0; i < p->nprofiles; i++)
        if (strcmp(p->profiles[i].name, name) == 0) return &p->profiles[i];
    return NULL;
}

int rundir_profile_read(const rundir_t *rd, const rundir_profile_t *pr, profile_t *out, char *msg, size_t msgcap)
{
    char *path, why[512] = "";
    memset(out, 0, sizeof *out);
    if (asprintf(&path, "%s/%s", rd->path, pr->name) < 0) {
        rundir_set_msg(msg, msgcap, "%s: out of memory", pr->name);
        return -1;
    }
    int rc = profile_read(path, out, why, sizeof why);
    free(path);
    if (rc != 0) rundir_set_msg(msg, msgcap, "%s: %s", pr->name, why);
    return rc;
}
