/*
 * runsum.c - the verdict of a whole run (see runsum.h).
 *
 * Groups: the processes sorted by their pattern (stable: start order
 * within one), then one group per run of equal patterns; a group's
 * growth is its fastest process's highest judged rate (a rate over a few
 * milliseconds is not judged: rundir_rate_judged), its live bytes and
 * objects the sum at exit. Lists show the top groups by growth, by live
 * bytes at exit, and those with failures; each line names the pattern and
 * how many processes it covers. Memory: one index and one group per
 * process, freed with the summary.
 */
#define _GNU_SOURCE
#include "tools/runsum.h"

#include "tools/tools.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *group_name(const rundir_proc_t *p)
{
    return p->cmd_pattern && *p->cmd_pattern ? p->cmd_pattern : rundir_exe_name(p);
}

static const rundir_t *sort_rd;   /* qsort has no context argument */

static int cmp_pattern(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(group_name(&sort_rd->procs[i]), group_name(&sort_rd->procs[j]));
    return c ? c : (i > j) - (i < j);
}

/* highest_alert: 2 crit, 1 warn, 0 none; the alert records into *n. */
static int highest_alert(const rundir_proc_t *p, size_t *n)
{
    int level = 0;
    for (size_t i = 0; i < p->nalerts; i++) {
        if (p->alerts[i].recovery) continue;
        ++*n;
        if ((int)p->alerts[i].level > level) level = (int)p->alerts[i].level;
    }
    return level;
}

static double max_judged_rate(const rundir_proc_t *p)
{
    double max = NAN;
    for (size_t i = 0; i < p->nsamples; i++) {
        double x = p->samples[i].objects_rate;
        if (!isnan(x) && rundir_rate_judged(&p->samples[i]) && (isnan(max) || x > max)) max = x;
    }
    return max;
}

/* at_exit: a field at exit: the summary's, else the last record's. */
static double at_exit(const rundir_proc_t *p, double summary_value, size_t offset)
{
    if (p->has_summary && !isnan(summary_value)) return summary_value;
    for (size_t i = p->nsamples; i-- > 0;) {
        double x = rundir_sample_get(&p->samples[i], offset);
        if (!isnan(x)) return x;
    }
    return NAN;
}

static void add(double *sum, double x)
{
    if (!isnan(x)) *sum += x;
}

static void count_proc(runsum_t *s, runsum_group_t *g, const rundir_proc_t *p, bool failed)
{
    size_t nalerts = 0;
    int level = highest_alert(p, &nalerts);
    double rate = max_judged_rate(p);
    double lb = at_exit(p, p->summary.live_bytes, offsetof(rundir_sample_t, live_bytes));
    double lo = at_exit(p, p->summary.live_objects, offsetof(rundir_sample_t, live_objects));
    s->procs++;
    s->no_summary += !p->has_summary;
    if (p->has_summary) {
        add(&s->mallocs, p->summary.mallocs);
        add(&s->alloc_bytes, p->summary.alloc_bytes);
    }
    add(&s->live_bytes, lb);
    add(&s->live_objects, lo);
    s->alerts += nalerts;
    s->crit += level == RUNDIR_CRIT;
    s->warn += level == RUNDIR_WARN;
    s->failed += failed;
    g->procs++;
    g->crit += level == RUNDIR_CRIT;
    g->warn += level == RUNDIR_WARN;
    g->failed += failed;
    if (!isnan(rate) && (isnan(g->max_rate) || rate > g->max_rate)) g->max_rate = rate;
    add(&g->live_bytes, lb);
    add(&g->live_objects, lo);
}

int runsum_build(const rundir_t *rd, const bool *failed, runsum_t *out)
{
    memset(out, 0, sizeof *out);
    size_t n = rd->nprocs;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    out->groups = calloc(n ? n : 1, sizeof *out->groups);
    if (!order || !out->groups) {
        free(order);
        free(out->groups);
        out->groups = NULL;
        return -1;
    }
    for (size_t i = 0; i < n; i++) order[i] = i;
    sort_rd = rd;
    qsort(order, n, sizeof *order, cmp_pattern);
    for (size_t k = 0; k < n; k++) {
        const rundir_proc_t *p = &rd->procs[order[k]];
        if (!out->ngroups || strcmp(out->groups[out->ngroups - 1].name, group_name(p)) != 0) {
            runsum_group_t *g = &out->groups[out->ngroups++];
            g->name = group_name(p);
            g->max_rate = NAN;
        }
        count_proc(out, &out->groups[out->ngroups - 1], p, failed && failed[order[k]]);
    }
    free(order);
    return 0;
}

void runsum_free(runsum_t *s)
{
    free(s->groups);
    memset(s, 0, sizeof *s);
}

/* The lists: group indexes sorted by a key, highest first. */
typedef double (*key_fn)(const runsum_group_t *g);
static key_fn sort_key;
static const runsum_group_t *sort_groups;

static int cmp_key(const void *a, const void *b)
{
    double x = sort_key(&sort_groups[*(const size_t *)a]), y = sort_key(&sort_groups[*(const size_t *)b]);
    if (isnan(x)) x = -INFINITY;
    if (isnan(y)) y = -INFINITY;
    return (x < y) - (x > y);
}

static double key_rate(const runsum_group_t *g) { return g->max_rate; }
static double key_live(const runsum_group_t *g) { return g->live_bytes; }
static double key_failed(const runsum_group_t *g) { return g->failed ? (double)g->failed * 1e6 + g->crit : NAN; }

/* shown: a pattern for one line, cut at 100 bytes with "...". */
static const char *shown(const char *name) { return fmt_clean_max(name, 100); }

static void print_list(FILE *f, const runsum_t *s, const char *prefix, size_t top, const char *title, key_fn key,
                       bool (*wanted)(const runsum_group_t *g), const char *(*value)(const runsum_group_t *g))
{
    size_t *idx = malloc((s->ngroups ? s->ngroups : 1) * sizeof *idx);
    if (!idx) return;
    size_t n = 0;
    for (size_t i = 0; i < s->ngroups; i++)
        if (wanted(&s->groups[i])) idx[n++] = i;
    if (n) {
        sort_key = key;
        sort_groups = s->groups;
        qsort(idx, n, sizeof *idx, cmp_key);
        fprintf(f, "%s%s:\n", prefix, title);
        for (size_t k = 0; k < n && k < top; k++) {
            const runsum_group_t *g = &s->groups[idx[k]];
            fprintf(f, "%s  %12s  %s  (%zu process%s%s%s)\n", prefix, value(g), shown(g->name), g->procs,
                    g->procs == 1 ? "" : "es", g->crit ? ", crit" : g->warn ? ", warn" : "",
                    g->failed && key != key_failed ? ", failed" : "");
        }
        if (n > top) fprintf(f, "%s  ... and %zu more\n", prefix, n - top);
    }
    free(idx);
}

static bool has_rate(const runsum_group_t *g) { return !isnan(g->max_rate) && g->max_rate > 0; }
static bool has_live(const runsum_group_t *g) { return g->live_bytes > 0; }
static bool has_failed(const runsum_group_t *g) { return g->failed > 0; }
static const char *val_rate(const runsum_group_t *g) { return fmt_metric("objects_rate", g->max_rate); }
static const char *val_live(const runsum_group_t *g) { return fmt_bytes(g->live_bytes); }
static const char *val_failed(const runsum_group_t *g)
{
    static char buf[32];
    snprintf(buf, sizeof buf, "%zu failed", g->failed);
    return buf;
}

void runsum_print(FILE *f, const runsum_t *s, const char *prefix, size_t top)
{
    fprintf(f, "%srun: %s process%s in %zu command%s", prefix, fmt_count((double)s->procs), s->procs == 1 ? "" : "es",
            s->ngroups, s->ngroups == 1 ? "" : "s");
    if (s->no_summary) fprintf(f, " (%zu without a summary: killed, or still running)", s->no_summary);
    fprintf(f, ", %s allocations (%s); live at exit %s in %s objects\n", fmt_count(s->mallocs),
            fmt_bytes(s->alloc_bytes), fmt_bytes(s->live_bytes), fmt_count(s->live_objects));
    if (s->crit || s->warn)
        fprintf(f, "%salerts: %zu process%s crit, %zu warn (%zu alert record%s)\n", prefix, s->crit,
                s->crit == 1 ? "" : "es", s->warn, s->alerts, s->alerts == 1 ? "" : "s");
    else
        fprintf(f, "%salerts: none\n", prefix);
    print_list(f, s, prefix, top, "broke a limit", key_failed, has_failed, val_failed);
    print_list(f, s, prefix, top, "top commands by growth (highest objects_rate judged)", key_rate, has_rate,
               val_rate);
    print_list(f, s, prefix, top, "top commands by live bytes at exit", key_live, has_live, val_live);
}
