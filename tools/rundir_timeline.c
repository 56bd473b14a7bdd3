/*
 * rundir_timeline.c - timeline.<tag>.jsonl.zst: the agent's records kept
 * as a bounded number of samples (rundir_internal.h).
 *
 * The file goes through the zstd stream (rundir_zstd.c), the line
 * splitter (rundir_lines.c) and the JSON reader, one record at a time; a
 * record needs a "time", every other field may be missing (NAN). Past
 * RUNDIR_TIMELINE_RECORDS_MAX records or RUNDIR_TIMELINE_BYTES_MAX
 * decompressed bytes the rest of the file is not read (an error).
 *
 * Merging. A process keeps at most `max` samples: SAMPLES_PER_PROC, or
 * the power of two that fits in what is left of the directory's
 * SAMPLES_BUDGET (at least SAMPLES_FLOOR). While the timeline fits, each
 * record is a sample (sample_stride 1). When the samples are full they are
 * merged pairwise - sample 2i+1 into 2i - and the stride doubles: from
 * then on `stride` records are merged into one accumulator before it
 * becomes a sample. A merged sample holds the later record's values with
 * the highest objects_rate, bytes_rate and peak of those it stands for
 * (the peak at least the highest live_bytes, which is what the tools use
 * when a record has no peak), so the judgements of `check` (the highest
 * rate, the peak, the last record) are exact; a chart is coarser. The
 * last accumulator becomes a sample even when it stands for fewer records.
 */
#define _GNU_SOURCE
#include "tools/rundir_internal.h"
#include "tools/rundir_lines.h"
#include "tools/rundir_zstd.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The numeric fields of a record (agent/records.h). */
#define SAMPLE_FIELD(name, type, doc) RUNDIR_FIELD_##type(rundir_sample_t, name)
static const rundir_field_t sample_fields[] = { HEAPWATCH_TIMELINE_FIELDS_MAP(SAMPLE_FIELD, RUNDIR_SKIP) };

/* The samples' memory: SAMPLES_BUDGET of them in all; a field added to the
 * records adds 2 MiB (rundir.c states the total). */
_Static_assert(sizeof(rundir_sample_t) * SAMPLES_BUDGET <= (36u << 20), "samples past their memory bound");

/* timeline_t: the state of one timeline being read. */
typedef struct {
    rundir_reader_t rd;
    rundir_lines_t lines;
    size_t items_cap;          /* capacity of proc->samples */
    size_t samples_max;        /* samples kept for this process */
    rundir_sample_t acc;       /* records merged, not yet a sample */
    size_t nacc;
    bool capped;               /* a bound of the file was reached: stop */
} timeline_t;

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

/* push_sample: tl->acc becomes a sample; when the samples are full they
 * are merged pairwise first and the stride doubles (then acc waits until it
 * too stands for a whole stride, unless `last`). */
static void push_sample(timeline_t *tl, bool last)
{
    rundir_proc_t *p = tl->rd.proc;
    if (p->nsamples == tl->samples_max) {
        for (size_t i = 0; i + 1 < p->nsamples; i += 2)
            p->samples[i / 2] = merge_samples(&p->samples[i], &p->samples[i + 1]);
        p->nsamples /= 2;
        p->sample_stride *= 2;
        if (!last && tl->nacc < p->sample_stride) return;
    }
    if (!rundir_grow((void **)&p->samples, &tl->items_cap, p->nsamples, sizeof *p->samples)) {
        rundir_bad_record(&tl->rd, "out of memory");
    } else {
        p->samples[p->nsamples++] = tl->acc;
    }
    tl->nacc = 0;
}

static void add_sample(timeline_t *tl, const rundir_sample_t *s)
{
    tl->rd.proc->nrecords++;
    tl->acc = tl->nacc ? merge_samples(&tl->acc, s) : *s;
    if (++tl->nacc >= tl->rd.proc->sample_stride) push_sample(tl, false);
}

/* timeline_line: one record (rundir_lines_fn). */
static bool timeline_line(void *ctx, const char *line, size_t len, size_t lineno)
{
    timeline_t *tl = ctx;
    rundir_proc_t *p = tl->rd.proc;
    tl->rd.lineno = lineno;
    if (p->nrecords >= RUNDIR_TIMELINE_RECORDS_MAX) {
        tl->capped = true;
        RUNDIR_ERROR(p, "%s: more than %u records; the rest of the file was not read", tl->rd.file,
              RUNDIR_TIMELINE_RECORDS_MAX);
        return false;
    }
    json_t *v = rundir_json_line(&tl->rd, line, len);
    if (!v) return true;
    rundir_sample_t s;
    rundir_json_fields(v, sample_fields, sizeof sample_fields / sizeof *sample_fields, &s);
    if (isnan(s.time)) {
        rundir_bad_record(&tl->rd, "no \"time\"");
        json_decref(v);
        return true;
    }
    if (isnan(s.live_objects) && !isnan(s.mallocs) && !isnan(s.frees)) s.live_objects = s.mallocs - s.frees;
    if (p->nrecords == 0 && !isnan(s.elapsed_s) && s.elapsed_s >= 0) p->timeline_start = s.time - s.elapsed_s;
    rundir_take_exe(p, v);
    json_decref(v);
    add_sample(tl, &s);
    return true;
}

/* timeline_bytes: decompressed bytes to the line splitter (rundir_zstd_sink). */
static bool timeline_bytes(void *ctx, const char *data, size_t n)
{
    timeline_t *tl = ctx;
    rundir_lines_status_t st = rundir_lines_feed(&tl->lines, data, n);
    if (st == RUNDIR_LINES_TOO_LONG)
        RUNDIR_ERROR(tl->rd.proc, "%s: line %zu is longer than %u bytes; stopped reading", tl->rd.file,
              tl->lines.lineno + 1, LINE_MAX_BYTES);
    else if (st == RUNDIR_LINES_NOMEM) RUNDIR_ERROR(tl->rd.proc, "%s: out of memory", tl->rd.file);
    return st == RUNDIR_LINES_OK;
}

void rundir_load_timeline(rundir_proc_t *p, const char *dir, const char *name, rundir_budget_t *budget)
{
    FILE *f = rundir_open(dir, name);
    p->has_timeline = true;
    if (!f) {
        RUNDIR_ERROR(p, "%s: %s", name, strerror(errno));
        return;
    }
    /* The samples this process may keep: a power of two (merging halves). */
    size_t max = SAMPLES_PER_PROC;
    while (max > SAMPLES_FLOOR && max > budget->samples_left) max /= 2;
    timeline_t tl = { .rd = { .proc = p, .file = name }, .samples_max = max };
    rundir_lines_init(&tl.lines, LINE_MAX_BYTES, timeline_line, &tl);
    p->sample_stride = 1;
    const char *why = NULL;
    rundir_zstd_status_t st = rundir_zstd_read(budget->zstd, f, RUNDIR_TIMELINE_BYTES_MAX, timeline_bytes, &tl, &why);
    fclose(f);
    size_t partial = 0;
    (void)rundir_lines_pending(&tl.lines, &partial);
    if (st == RUNDIR_ZSTD_DAMAGED) {
        RUNDIR_ERROR(p, "%s: damaged zstd data (%s) after %zu records", name, why, p->nsamples);
    } else if (st == RUNDIR_ZSTD_TOO_BIG) {
        RUNDIR_ERROR(p, "%s: more than %llu MiB decompressed (%zu records); the rest of the file was not read", name,
              RUNDIR_TIMELINE_BYTES_MAX >> 20, p->nrecords);
    } else if (st == RUNDIR_ZSTD_CUT) {
        p->timeline_truncated = true;
        RUNDIR_NOTE(p, "%s ends in an unfinished zstd frame (killed, or still running): %zu records read%s", name,
             p->nsamples, partial ? ", a partial last line dropped" : "");
    } else if (st == RUNDIR_ZSTD_END) {
        rundir_lines_finish(&tl.lines);   /* a complete last line without its newline */
    }
    if (tl.nacc) push_sample(&tl, true);
    if (p->sample_stride > 1)
        RUNDIR_NOTE(p, "%s: %zu records kept as %zu samples of up to %zu records each (the highest rates, the peak and "
             "the last record exact)", name, p->nrecords, p->nsamples, p->sample_stride);
    budget->samples_left -= p->nsamples < budget->samples_left ? p->nsamples : budget->samples_left;
    /* Kept to size: most processes of a large run hold one or two samples
     * in an array grown to 16 (20,000 processes: 46 MB of 74 before). */
    if (p->nsamples && p->nsamples < tl.items_cap) {
        rundir_sample_t *fit = realloc(p->samples, p->nsamples * sizeof *p->samples);
        if (fit) p->samples = fit;
    }
    rundir_report_bad(&tl.rd);
    rundir_lines_free(&tl.lines);
}
