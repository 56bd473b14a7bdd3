/*
 * report.c - `heapwatch report DIR`: what happened to the heap, for a human.
 *
 * For each process in DIR: what ran and for how long, the exact counters
 * at exit, how fast the live heap grew (the timeline's rates: maximum and
 * mean), charts of live bytes and live objects over time with the alerts
 * marked under them, every alert with the stacks that grew most, the top
 * growing stacks over the whole run, and the heap profiles written with
 * the command that opens them. With more than one process (fork and exec
 * children) a table of all of them comes first. --html writes the same
 * charts as a self-contained page (report_html.c).
 */
#define _GNU_SOURCE
#include "tools/chart.h"
#include "tools/report_html.h"
#include "tools/rundir.h"
#include "tools/tools.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define TOP_STACKS 5           /* top growing stacks listed per process */
#define TOP_PER_ALERT 3        /* stacks listed under each alert */
#define FRAMES_SHOWN 6         /* frames of a top growing stack */

static const char usage_report[] =
    "usage: heapwatch report DIR [options]\n"
    "\n"
    "A report of the results the agent wrote in DIR (HEAPWATCH_OUT), per process:\n"
    "counters at exit, growth rates over time, charts of live bytes and live\n"
    "objects, alerts with the stacks that grew, the top growing stacks, and the\n"
    "heap profiles written (open one with 'go tool pprof -http=: FILE').\n"
    "\n"
    "options:\n"
    "  -w, --width N       line width of the charts (default: the terminal's, else 80)\n"
    "      --height N      rows per chart (default 8)\n"
    "  -p, --pid PID       only this process\n"
    "      --ascii         draw charts with ASCII characters only\n"
    "      --html FILE     also write the report's charts as a self-contained HTML page\n"
    "  -h, --help          this text\n"
    "\n"
    "exit status: 0 report printed; 2 DIR cannot be read, holds no results,\n"
    "no process PID, or bad usage.\n";

typedef struct {
    int width, height;
    long pid;                  /* -1: all */
    bool ascii;
    const char *html;
} report_opts_t;

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

static int terminal_width(void)
{
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *cols = getenv("COLUMNS");
    int n = cols ? atoi(cols) : 0;
    return n > 0 ? n : 80;
}

static bool parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max) return false;
    *out = v;
    return true;
}

/* parse_args: @return -1 to go on, else an exit status. */
static int parse_args(int argc, char **argv, report_opts_t *o, const char **dir)
{
    enum { O_HEIGHT = 256, O_ASCII, O_HTML };
    static const struct option longopts[] = {
        { "width", required_argument, NULL, 'w' },
        { "height", required_argument, NULL, O_HEIGHT },
        { "pid", required_argument, NULL, 'p' },
        { "ascii", no_argument, NULL, O_ASCII },
        { "html", required_argument, NULL, O_HTML },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    *o = (report_opts_t){ 0, 8, -1, false, NULL };
    int c;
    long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "w:p:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(usage_report, stdout); return 0;
        case 'w':
            if (!parse_int(optarg, CHART_MIN_WIDTH, 10000, &v)) {
                fprintf(stderr, "heapwatch report: --width: cannot use '%s' (a number from %d to 10000)\n", fmt_clean(optarg),
                        CHART_MIN_WIDTH);
                return EXIT_USAGE;
            }
            o->width = (int)v;
            break;
        case O_HEIGHT:
            if (!parse_int(optarg, 2, 200, &v)) {
                fprintf(stderr, "heapwatch report: --height: cannot use '%s' (a number from 2 to 200)\n", fmt_clean(optarg));
                return EXIT_USAGE;
            }
            o->height = (int)v;
            break;
        case 'p':
            if (!parse_int(optarg, 0, 0x7fffffffL, &o->pid)) {
                fprintf(stderr, "heapwatch report: --pid: cannot use '%s' (a process id)\n", fmt_clean(optarg));
                return EXIT_USAGE;
            }
            break;
        case O_ASCII: o->ascii = true; break;
        case O_HTML: o->html = optarg; break;
        default: fputs("Try 'heapwatch report --help'.\n", stderr); return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "heapwatch report: %s\nusage: heapwatch report DIR [options]  (--help for more)\n",
                optind >= argc ? "no DIR given" : "only one DIR, please");
        return EXIT_USAGE;
    }
    *dir = argv[optind];
    if (!o->width) o->width = terminal_width();
    if (o->width < CHART_MIN_WIDTH) o->width = CHART_MIN_WIDTH;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Sections of a process's report                                           */
/* ------------------------------------------------------------------------ */

static const char *clock_time(double t)
{
    static char buf[64];
    if (isnan(t)) return "?";
    time_t s = (time_t)t;
    struct tm tm;
    if (!localtime_r(&s, &tm) || !strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm)) return "?";
    return buf;
}

/* span: how long the process ran, from the summary or the records. */
static double span(const rundir_proc_t *p)
{
    if (p->has_summary && !isnan(p->summary.duration_s)) return p->summary.duration_s;
    double t0 = rundir_start(p), t1 = t0;
    if (p->nsamples) t1 = fmax(t1, p->samples[p->nsamples - 1].time);
    if (p->nalerts) t1 = fmax(t1, p->alerts[p->nalerts - 1].time);
    return t1 - t0;
}

/* print_unbound: the line of a process whose malloc was another
 * object's, bound ahead of the agent's: its zeros mean "not seen". */
static void print_unbound(const rundir_proc_t *p)
{
    if (p->malloc_owner)
        printf("  the agent saw no allocation: %s provides malloc, bound ahead of the agent "
               "(preloaded before it)\n", fmt_clean(p->malloc_owner));
}

static void print_header(const rundir_proc_t *p)
{
    printf("pid %s  %s", p->tag, fmt_clean(rundir_exe_name(p)));
    if (p->exe && strcmp(p->exe, rundir_exe_name(p)) != 0) printf("  (%s)", fmt_clean(p->exe));
    if (p->has_summary && !isnan(p->summary.ppid)) printf("  parent %.0f", p->summary.ppid);
    printf("\n");
    if (p->has_summary) {
        const rundir_summary_t *s = &p->summary;
        printf("  started %s, ran %s, exited\n", clock_time(s->start_time), fmt_duration(s->duration_s));
        printf("  allocations %s (%s), frees %s (%s)\n", fmt_count(s->mallocs), fmt_bytes(s->alloc_bytes),
               fmt_count(s->frees), fmt_bytes(s->free_bytes));
        printf("  live at exit %s objects, %s; peak %s\n", fmt_count(s->live_objects), fmt_bytes(s->live_bytes),
               fmt_bytes(s->peak_live_bytes));
        if (s->rate == 0) printf("  sampling off (rate 0)");
        else if (s->rate == 1) printf("  sampling every allocation (rate 1)");
        else printf("  sampling one allocation per %s allocated, on average (rate %.0f)", fmt_bytes(s->rate), s->rate);
        printf("; agent memory %s\n", fmt_bytes(s->agent_memory_bytes));
        print_unbound(p);
        return;
    }
    printf("  started %s; no summary: the process was killed (or is still running); %s of records\n",
           clock_time(rundir_start(p)), fmt_duration(span(p)));
    if (p->nsamples) {
        const rundir_sample_t *s = &p->samples[p->nsamples - 1];
        printf("  last record (%s): allocations %s, frees %s, live %s objects, %s\n",
               fmt_reltime(s->time - rundir_start(p)), fmt_count(s->mallocs), fmt_count(s->frees),
               fmt_count(s->live_objects), fmt_bytes(s->live_bytes));
    }
}

/* rate_stats: max (and when) and mean of one rate over the records. */
static void print_rate(const rundir_proc_t *p, const char *metric, size_t offset, double t0)
{
    double max = NAN, max_t = NAN, sum = 0;
    size_t n = 0;
    for (size_t i = 0; i < p->nsamples; i++) {
        double x = rundir_sample_get(&p->samples[i], offset);
        if (isnan(x)) continue;
        if (isnan(max) || x > max) {
            max = x;
            max_t = p->samples[i].time;
        }
        sum += x;
        n++;
    }
    if (!n) return;
    printf("    %-13s max %s at %s, mean %s\n", metric, fmt_metric(metric, max), fmt_reltime(max_t - t0),
           fmt_metric(metric, sum / (double)n));
}

static void print_growth(const rundir_proc_t *p, double t0)
{
    if (!p->nsamples) {
        printf("  growth: no timeline records%s\n", p->has_timeline ? "" : " (no timeline file)");
        return;
    }
    /* Merged samples (rundir.h sample_stride) span the records between the
     * first sample's and the last: the spacing counts records. */
    size_t first = p->sample_stride > 1 ? p->sample_stride - 1 : 0;
    double every = p->nrecords > first + 1 ? (p->samples[p->nsamples - 1].time - p->samples[0].time) /
                                                 (double)(p->nrecords - 1 - first) : NAN;
    printf("  growth over %zu timeline record%s", p->nrecords, p->nrecords == 1 ? "" : "s");
    if (!isnan(every)) printf(" (one every %s)", fmt_duration(every));
    printf(":\n");
    print_rate(p, RUNDIR_SAMPLE_FIELD(objects_rate), t0);
    print_rate(p, RUNDIR_SAMPLE_FIELD(bytes_rate), t0);
}

static void print_chart(const rundir_proc_t *p, const report_opts_t *o, const char *title, size_t offset, bool bytes)
{
    size_t n = p->nsamples;
    double *t = malloc((n ? n : 1) * sizeof *t), *v = malloc((n ? n : 1) * sizeof *v);
    double *mt = malloc((p->nalerts ? p->nalerts : 1) * sizeof *mt);
    char *mc = malloc(p->nalerts ? p->nalerts : 1);
    size_t nm = 0;
    if (!t || !v || !mt || !mc) goto out;
    double max = NAN, last = NAN;
    size_t nv = 0;
    for (size_t i = 0; i < n; i++) {
        t[i] = p->samples[i].time;
        v[i] = rundir_sample_get(&p->samples[i], offset);
        if (!isnan(v[i])) {
            max = isnan(max) ? v[i] : fmax(max, v[i]);
            last = v[i];
            nv++;
        }
    }
    if (nv < 2) {   /* one point is no picture */
        if (nv) printf("\n  %s: %s (one timeline record, no chart)\n", title, bytes ? fmt_bytes(max) : fmt_count(max));
        goto out;
    }
    for (size_t i = 0; i < p->nalerts; i++) {
        if (p->alerts[i].recovery) continue;
        mt[nm] = p->alerts[i].time;
        mc[nm++] = p->alerts[i].level == RUNDIR_CRIT ? 'C' : 'W';
    }
    printf("\n  %s (highest %s, last %s)\n", title, bytes ? fmt_bytes(max) : fmt_count(max),
           bytes ? fmt_bytes(last) : fmt_count(last));
    chart_t c = { t, v, n, rundir_start(p), o->width, o->height, o->ascii, bytes, "  ", mt, mc, nm };
    chart_print(stdout, &c);
out:
    free(t);
    free(v);
    free(mt);
    free(mc);
}

static void print_alert(const rundir_alert_t *a, double t0)
{
    if (a->recovery) {
        printf("    %-8s recovery from %s: %s %s (threshold %s)\n", fmt_reltime(a->time - t0), rundir_level_name(a->level),
               fmt_clean(a->metric), fmt_metric(a->metric, a->value), fmt_metric(a->metric, a->threshold));
        return;
    }
    printf("    %-8s %s  %s %s > %s", fmt_reltime(a->time - t0), a->level == RUNDIR_CRIT ? "CRIT" : "warn",
           fmt_clean(a->metric), fmt_metric(a->metric, a->value), fmt_metric(a->metric, a->threshold));
    if (!isnan(a->window_s)) printf(" over %s", fmt_duration(a->window_s));
    if (!isnan(a->live_objects)) printf("; live %s objects, %s", fmt_count(a->live_objects), fmt_bytes(a->live_bytes));
    printf("\n");
    for (size_t i = 0; i < a->ntop && i < TOP_PER_ALERT; i++) {
        const rundir_stack_t *s = &a->top[i];
        printf("             %s %s", i == 0 ? "top:" : "    ", fmt_stack(s->function, s->frames, s->nframes, 3));
        if (!isnan(s->growth_bytes)) printf("  (+%s, +%s objects)", fmt_bytes(s->growth_bytes), fmt_count(s->growth_objects));
        printf("\n");
    }
    if (a->ntop > TOP_PER_ALERT) printf("                  (%zu more)\n", a->ntop - TOP_PER_ALERT);
    if (a->profile) printf("             profile: %s\n", fmt_clean(a->profile));
}

static void print_alerts(const rundir_proc_t *p, double t0)
{
    size_t warn = 0, crit = 0, rec = 0;
    for (size_t i = 0; i < p->nalerts; i++) {
        if (p->alerts[i].recovery) rec++;
        else if (p->alerts[i].level == RUNDIR_CRIT) crit++;
        else warn++;
    }
    if (!p->nalerts) {
        printf("\n  alerts: none\n");
        return;
    }
    printf("\n  alerts: %zu crit, %zu warn, %zu recover%s\n", crit, warn, rec, rec == 1 ? "y" : "ies");
    for (size_t i = 0; i < p->nalerts; i++) print_alert(&p->alerts[i], t0);
}

/* growing_t: a stack seen in the alerts' tops, keyed by its frames. */
typedef struct {
    const rundir_stack_t *s;   /* the entry where it grew most */
    size_t nalerts;
} growing_t;

static bool same_stack(const rundir_stack_t *a, const rundir_stack_t *b)
{
    if (a->nframes != b->nframes || strcmp(a->function, b->function) != 0) return false;
    for (size_t i = 0; i < a->nframes; i++)
        if (strcmp(a->frames[i], b->frames[i]) != 0) return false;
    return true;
}

static int cmp_growing(const void *a, const void *b)
{
    double x = ((const growing_t *)a)->s->growth_bytes, y = ((const growing_t *)b)->s->growth_bytes;
    if (isnan(x)) x = -INFINITY;
    if (isnan(y)) y = -INFINITY;
    return x > y ? -1 : x < y;
}

static void print_top_stacks(const rundir_proc_t *p)
{
    size_t total = 0;
    for (size_t i = 0; i < p->nalerts; i++) total += p->alerts[i].recovery ? 0 : p->alerts[i].ntop;
    if (!total) return;
    growing_t *g = calloc(total, sizeof *g);
    if (!g) return;
    size_t n = 0;
    for (size_t i = 0; i < p->nalerts; i++) {
        if (p->alerts[i].recovery) continue;
        for (size_t j = 0; j < p->alerts[i].ntop; j++) {
            const rundir_stack_t *s = &p->alerts[i].top[j];
            size_t k = 0;
            while (k < n && !same_stack(g[k].s, s)) k++;
            if (k == n) g[n++] = (growing_t){ s, 0 };
            else if (!isnan(s->growth_bytes) && (isnan(g[k].s->growth_bytes) || s->growth_bytes > g[k].s->growth_bytes))
                g[k].s = s;
            g[k].nalerts++;
        }
    }
    qsort(g, n, sizeof *g, cmp_growing);
    printf("\n  top growing stacks (from the alerts; the most each grew in one window):\n");
    for (size_t i = 0; i < n && i < TOP_STACKS; i++) {
        const rundir_stack_t *s = g[i].s;
        printf("    %zu. %-30s +%s, +%s objects; in %zu alert%s\n", i + 1, fmt_clean(s->function),
               fmt_bytes(s->growth_bytes), fmt_count(s->growth_objects), g[i].nalerts, g[i].nalerts == 1 ? "" : "s");
        for (size_t f = 0; f < s->nframes && f < FRAMES_SHOWN; f++) printf("         %s\n", fmt_clean(s->frames[f]));
        if (s->nframes > FRAMES_SHOWN) printf("         ... (%zu more frames)\n", s->nframes - FRAMES_SHOWN);
    }
    if (n > TOP_STACKS) printf("    (%zu more stacks)\n", n - TOP_STACKS);
    free(g);
}

static void print_profiles(const rundir_proc_t *p, const char *dir)
{
    if (!p->nprofiles) {
        printf("\n  heap profiles: none\n");
        return;
    }
    printf("\n  heap profiles (%zu):\n", p->nprofiles);
    for (size_t i = 0; i < p->nprofiles; i++)
        printf("    %s/%s\n", fmt_clean(dir), fmt_clean(p->profiles[i].name));
    /* The most telling one: the last alert's profile, else the last one. */
    const char *best = p->profiles[p->nprofiles - 1].name;
    for (size_t i = p->nalerts; i-- > 0;)
        if (p->alerts[i].profile && !p->alerts[i].recovery) {
            best = p->alerts[i].profile;
            break;
        }
    printf("  open one in a browser:  go tool pprof -http=: %s/%s\n", fmt_clean(dir), fmt_clean(best));
    if (p->nprofiles > 1)
        printf("  what grew between two:  go tool pprof -top -diff_base=%s/%s %s/%s\n", fmt_clean(dir),
               fmt_clean(p->profiles[0].name), fmt_clean(dir), fmt_clean(p->profiles[p->nprofiles - 1].name));
}

static void print_issues(const rundir_proc_t *p)
{
    for (size_t i = 0; i < p->nnotes; i++) printf("  note: %s\n", fmt_clean(p->notes[i]));
    for (size_t i = 0; i < p->nerrors; i++) printf("  error: %s\n", fmt_clean(p->errors[i]));
}

static void print_proc(const rundir_proc_t *p, const report_opts_t *o, const char *dir)
{
    double t0 = rundir_start(p);
    print_header(p);
    if (!p->nsamples && !p->nalerts && !p->nprofiles) {
        printf("  no timeline records, no alerts, no heap profiles\n");
        print_issues(p);
        return;
    }
    print_growth(p, t0);
    print_chart(p, o, "live bytes", offsetof(rundir_sample_t, live_bytes), true);
    print_chart(p, o, "live objects", offsetof(rundir_sample_t, live_objects), false);
    print_alerts(p, t0);
    print_top_stacks(p);
    print_profiles(p, dir);
    print_issues(p);
}

/* print_table: one line per process, when there are several. */
static void print_table(const rundir_t *rd)
{
    printf("  %-8s %-8s %-16s %10s %14s %12s %12s %6s\n", "pid", "parent", "exe", "ran", "mallocs", "live at exit",
           "peak", "alerts");
    for (size_t i = 0; i < rd->nprocs; i++) {
        const rundir_proc_t *p = &rd->procs[i];
        size_t na = 0;
        for (size_t j = 0; j < p->nalerts; j++) na += !p->alerts[j].recovery;
        bool s = p->has_summary;
        char ppid[32] = "?";
        if (s && !isnan(p->summary.ppid)) snprintf(ppid, sizeof ppid, "%.0f", p->summary.ppid);
        printf("  %-8s %-8s %-16.16s %10s %14s %12s %12s %6zu%s\n", p->tag, ppid, fmt_clean(rundir_exe_name(p)),
               fmt_duration(span(p)), s ? fmt_count(p->summary.mallocs) : "-", s ? fmt_bytes(p->summary.live_bytes) : "-",
               s ? fmt_bytes(p->summary.peak_live_bytes) : "-", na, s ? "" : "  (killed)");
    }
}

int cmd_report(int argc, char **argv)
{
    report_opts_t o;
    const char *dir;
    int rc = parse_args(argc, argv, &o, &dir);
    if (rc >= 0) return rc;
    rundir_t rd;
    char msg[1024] = "";
    if (rundir_load(dir, &rd, msg, sizeof msg) != RUNDIR_OK) {
        fprintf(stderr, "heapwatch report: %s\n", fmt_clean(msg));
        rundir_free(&rd);
        return EXIT_USAGE;
    }
    size_t shown = 0;
    for (size_t i = 0; i < rd.nprocs; i++) shown += o.pid < 0 || rd.procs[i].pid == o.pid;
    if (!shown) {
        fprintf(stderr, "heapwatch report: %s: no results for pid %ld\n", fmt_clean(dir), o.pid);
        rundir_free(&rd);
        return EXIT_USAGE;
    }
    printf("heapwatch report: %s, %zu process%s\n", fmt_clean(dir), rd.nprocs, rd.nprocs == 1 ? "" : "es");
    if (rd.files_skipped)
        printf("heapwatch report: %zu result files past the first %u not read\n", rd.files_skipped, RUNDIR_FILES_MAX);
    if (o.pid < 0 && rd.nprocs > 1) print_table(&rd);
    for (size_t i = 0; i < rd.nprocs; i++) {
        if (o.pid >= 0 && rd.procs[i].pid != o.pid) continue;
        printf("\n");
        print_proc(&rd.procs[i], &o, dir);
    }
    if (o.html && report_html_write(o.html, &rd, o.pid) != 0) rc = EXIT_USAGE;
    else rc = 0;
    if (o.html && rc == 0) printf("\nheapwatch report: charts written to %s\n", fmt_clean(o.html));
    rundir_free(&rd);
    return rc;
}
