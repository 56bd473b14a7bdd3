/*
 * report.c - `heapwatch report DIR`: what happened to the heap, for a human.
 *
 * For each process in DIR: what ran and for how long, the exact counters
 * at exit, how fast the live heap grew (the timeline's rates: maximum and
 * mean), charts of live bytes and live objects over time with the alerts
 * marked under them, every alert with the stacks that grew most, the top
 * growing stacks over the whole run, and the heap profiles written with
 * the command that opens them. With more than one process (fork and exec
 * children) a table of all of them comes first.
 *
 * From the heap profiles, read on demand (profile.c) and only the two it
 * shows per process: the stacks at the peak (the profile the summary's
 * peak_profile names: the peak profile, or the exit profile when exit was
 * within 10 % of the peak; beside the summary's peak_time and
 * peak_rss_bytes), and the leaks at exit (the exit profile's in-use
 * values), as LSan summarises leaks: the top
 * --top stacks by bytes, each with its objects, its function (the
 * innermost frame that is not an allocation wrapper, profile_stacks.c) and
 * a few callers, then one SUMMARY line. Their values are the agent's
 * unsampled estimates (exact at rate 1); the summary's counters beside
 * them are exact. A profile that cannot be read is a note, not an error.
 *
 * The page (report_html.c) is written to DIR/report.html unless --no-html
 * (--html FILE: elsewhere), after the text, atomically: a temporary name
 * beside it created with O_CREAT|O_EXCL|O_NOFOLLOW (never through a link
 * someone placed, never over another run's temporary), written, then
 * renamed over the target (a symlink at the target is replaced, not
 * followed). The last line names it. A page that cannot be written is one
 * line on stderr and exit status 1, the text report printed all the same.
 */
#define _GNU_SOURCE
#include "tools/chart.h"
#include "tools/report_html.h"
#include "tools/rundir.h"
#include "tools/runsum.h"
#include "tools/tools.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TOP_STACKS 5           /* top growing stacks listed per process */
#define TOP_PER_ALERT 3        /* stacks listed under each alert */
#define FRAMES_SHOWN 6         /* frames of a top growing stack */
#define TOP_DEFAULT 10         /* stacks listed at the peak and at exit (--top) */
#define TOP_MAX 10000
#define CALLERS_SHOWN 4        /* callers after the function of a stack at exit/peak */
#define EXIT_PAGE 1            /* the text report was printed, the page not written */

static const char usage_report[] =
    "usage: heapwatch report DIR [options]\n"
    "\n"
    "A report of the results the agent wrote in DIR (HEAPWATCH_OUT). With more than\n"
    "one process it opens with the verdict of the run (totals, alerts, the top\n"
    "commands by growth and by live bytes at exit, rolled up per command\n"
    "pattern) and a table of the processes. Then, per process:\n"
    "counters at exit, the peak (when, how high, and the stacks that held it),\n"
    "growth rates over time, charts of live bytes and live objects, alerts with\n"
    "the stacks that grew, the top growing stacks, the leaks at exit (the stacks\n"
    "still live when the process exited, from its exit profile, as LSan lists\n"
    "leaks, ending with a SUMMARY line), and the heap profiles written (open one\n"
    "with 'go tool pprof -http=: FILE').\n"
    "\n"
    "It also writes the report as a page, DIR/report.html (self-contained: open\n"
    "it in a browser, from file:// too), written atomically and named on the last\n"
    "line; --html FILE writes it elsewhere, --no-html not at all.\n"
    "\n"
    "options:\n"
    "  -w, --width N       line width of the charts (default: the terminal's, else 80)\n"
    "      --height N      rows per chart (default 8)\n"
    "  -p, --pid PID       only this process\n"
    "      --ascii         draw charts with ASCII characters only\n"
    "      --top N         stacks listed at the peak and at exit (default 10)\n"
    "      --failures-only only the processes that raised an alert or whose results\n"
    "                      could not be read (the run summary still counts them all)\n"
    "      --html FILE     write the page to FILE instead of DIR/report.html\n"
    "      --no-html       do not write the page\n"
    "  -h, --help          this text\n"
    "\n"
    "exit status: 0 report printed (and the page written); 1 report printed, but\n"
    "the page could not be written (one line on stderr says why: e.g. DIR is not\n"
    "writable; use --html FILE or --no-html); 2 DIR cannot be read, holds no\n"
    "results, no process PID, or bad usage.\n";

typedef struct {
    int width, height;
    long pid;                  /* -1: all */
    bool ascii;
    const char *html;          /* --html FILE, or NULL: DIR/report.html */
    bool no_html;
    size_t top;                /* --top */
    bool failures_only;        /* --failures-only: processes with an alert or an error */
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
    enum { O_HEIGHT = 256, O_ASCII, O_HTML, O_NO_HTML, O_TOP, O_FAILURES };
    static const struct option longopts[] = {
        { "width", required_argument, NULL, 'w' },
        { "height", required_argument, NULL, O_HEIGHT },
        { "pid", required_argument, NULL, 'p' },
        { "ascii", no_argument, NULL, O_ASCII },
        { "html", required_argument, NULL, O_HTML },
        { "no-html", no_argument, NULL, O_NO_HTML },
        { "top", required_argument, NULL, O_TOP },
        { "failures-only", no_argument, NULL, O_FAILURES },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    *o = (report_opts_t){ 0, 8, -1, false, NULL, false, TOP_DEFAULT, false };
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
        case O_NO_HTML: o->no_html = true; break;
        case O_FAILURES: o->failures_only = true; break;
        case O_TOP:
            if (!parse_int(optarg, 1, TOP_MAX, &v)) {
                fprintf(stderr, "heapwatch report: --top: cannot use '%s' (a number from 1 to %d)\n", fmt_clean(optarg),
                        TOP_MAX);
                return EXIT_USAGE;
            }
            o->top = (size_t)v;
            break;
        default: fputs("Try 'heapwatch report --help'.\n", stderr); return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "heapwatch report: %s\nusage: heapwatch report DIR [options]  (--help for more)\n",
                optind >= argc ? "no DIR given" : "only one DIR, please");
        return EXIT_USAGE;
    }
    *dir = argv[optind];
    if (o->html && o->no_html) {
        fputs("heapwatch report: --html and --no-html: one or the other, please\n", stderr);
        return EXIT_USAGE;
    }
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
               "(%s)\n", fmt_clean(p->malloc_owner), rundir_owner_where(p));
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
        if (!isnan(s->peak_time) || s->peak_rss_bytes > 0) {
            printf("  peak: %s live", fmt_bytes(s->peak_live_bytes));
            /* 0 (or another time before the start): not seen. */
            if (!isnan(s->peak_time) && !isnan(s->start_time) && s->peak_time >= s->start_time)
                printf(" at %s", fmt_reltime(s->peak_time - s->start_time));
            if (s->peak_rss_bytes > 0) printf("; peak RSS %s (the kernel's VmHWM)", fmt_bytes(s->peak_rss_bytes));
            printf("\n");
        }
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

/* ------------------------------------------------------------------------ */
/* From the heap profiles: the stacks at the peak, the leaks at exit        */
/* ------------------------------------------------------------------------ */

/* print_stack_list: the first top of st[0..n), one line each: bytes,
 * objects, the function and its callers. */
static void print_stack_list(const profile_t *pf, const profile_stack_t *st, size_t n, size_t top)
{
    char *names[PROFILE_DEPTH_MAX];
    double rest = 0;   /* a double: a file's values may add up past int64 */
    for (size_t i = 0; i < n; i++) {
        if (i >= top) {
            rest += (double)st[i].bytes;
            continue;
        }
        const profile_stack_t *x = &st[i];
        for (uint32_t f = 0; f < x->nframes; f++) names[f] = pf->names[x->frames[f]];
        const char *fn = x->function == UINT32_MAX ? "(no frames)" : pf->names[x->function];
        printf("    %2zu. %s in %s object%s: %s\n", i + 1, fmt_bytes((double)x->bytes), fmt_count((double)x->objects),
               x->objects == 1 ? "" : "s", fmt_stack(fn, names, x->nframes, CALLERS_SHOWN));
    }
    if (n > top) printf("        (%zu more stack%s, %s)\n", n - top, n - top == 1 ? "" : "s", fmt_bytes(rest));
}

/* read_this: pr read into *pf; false with a note line (and what is not
 * shown) when it cannot be read. */
static bool read_this(const rundir_t *rd, const rundir_profile_t *pr, const char *what, profile_t *pf)
{
    char msg[1024];
    memset(pf, 0, sizeof *pf);
    if (rundir_profile_read(rd, pr, pf, msg, sizeof msg) == 0) return true;
    printf("  note: %s; %s not shown\n", fmt_clean(msg), what);
    profile_free(pf);
    return false;
}

/* read_profile: the latest profile of p for reason, read; false when there
 * is none (*pr NULL) or it cannot be read (a note said so). */
static bool read_profile(const rundir_t *rd, const rundir_proc_t *p, const char *reason, const char *what,
                         profile_t *pf, const rundir_profile_t **pr)
{
    memset(pf, 0, sizeof *pf);
    *pr = rundir_profile_find(p, reason);
    return *pr && read_this(rd, *pr, what, pf);
}

static const char *estimate_word(const profile_t *pf)
{
    return pf->period == 1 ? "exact: every allocation sampled" : "sampled estimate";
}

/* print_peak: the top stacks in use at the peak, from the peak profile. */
static void print_peak(const rundir_t *rd, const rundir_proc_t *p, const report_opts_t *o)
{
    if (!p->has_summary || p->summary.rate == 0) return;   /* no profile to expect */
    /* The summary's peak_profile names the file that shows the peak: the
     * peak profile, or the exit profile when exit was within 10 % of the
     * peak (the agent then writes no peak profile); without the field (an
     * older agent), a peak profile if there is one. */
    const rundir_profile_t *pr = p->peak_profile ? rundir_profile_named(p, p->peak_profile) : rundir_profile_find(p, "peak");
    printf("\n");
    if (!pr) {
        if (p->peak_profile)
            printf("  at the peak: %s (the summary's peak_profile) is not in the directory\n", fmt_clean(p->peak_profile));
        else
            printf("  at the peak: no profile shows it (the agent writes none when too few sampled allocations held the "
                   "peak to say who)\n");
        return;
    }
    profile_t pf;
    if (!read_this(rd, pr, "the stacks at the peak", &pf)) return;
    profile_stack_t *st;
    int64_t objs, bytes;
    size_t n = profile_stacks(&pf, PROFILE_INUSE, &st, &objs, &bytes);
    bool is_exit = strcmp(pr->reason, "exit") == 0;
    if (n == (size_t)-1) {
        printf("  at the peak: out of memory\n");
    } else {
        printf("  at the peak (%s%s): %s in %s objects in %zu stack%s (%s), top %zu by bytes:\n", fmt_clean(pr->name),
               is_exit ? ", the exit profile: exit was within 10 % of the peak" : "", fmt_bytes((double)bytes),
               fmt_count((double)objs), n, n == 1 ? "" : "s", estimate_word(&pf), n < o->top ? n : o->top);
        print_stack_list(&pf, st, n, o->top);
    }
    free(st);
    profile_free(&pf);
}

/* print_leaks: the stacks still live at exit, from the exit profile, as
 * LSan lists leaks; a SUMMARY line. */
static void print_leaks(const rundir_t *rd, const rundir_proc_t *p, const report_opts_t *o)
{
    profile_t pf;
    const rundir_profile_t *pr;
    printf("\n");
    if (p->has_summary && p->summary.rate == 0) {
        printf("  leaks at exit: not measured: sampling was off (rate 0), so no stack was recorded\n");
        return;
    }
    if (p->has_summary && p->summary.sampled_live == 0) {
        /* Nothing sampled was live: the exit profile holds no in-use stack,
         * and is not read (a run of 20,000 short processes). */
        printf("  leaks at exit: none sampled (no sampled allocation was live at exit)");
        if (!isnan(p->summary.live_bytes))
            printf("; counted exactly: %s in %s objects", fmt_bytes(p->summary.live_bytes),
                   fmt_count(p->summary.live_objects));
        printf("\n");
        return;
    }
    if (!read_profile(rd, p, "exit", "the leaks at exit", &pf, &pr)) {
        if (!pr)
            printf("  leaks at exit: no exit profile (heap.%s.<seq>.exit.pb.gz)%s\n", p->tag,
                   p->has_summary ? " in the directory" : ": the process was killed, or is still running");
        return;
    }
    profile_stack_t *st;
    int64_t objs, bytes;
    size_t n = profile_stacks(&pf, PROFILE_INUSE, &st, &objs, &bytes);
    if (n == (size_t)-1) {
        printf("  leaks at exit: out of memory\n");
    } else if (n == 0) {
        printf("  leaks at exit (%s): none: no sampled allocation was live at exit\n", fmt_clean(pr->name));
    } else {
        printf("  leaks at exit (%s): %zu stack%s still live, top %zu by bytes:\n", fmt_clean(pr->name), n,
               n == 1 ? "" : "s", n < o->top ? n : o->top);
        print_stack_list(&pf, st, n, o->top);
    }
    if (n != (size_t)-1) {
        printf("  SUMMARY: %s bytes (%s) in %s object%s live at exit (%s", fmt_count((double)bytes),
               fmt_bytes((double)bytes), fmt_count((double)objs), objs == 1 ? "" : "s", estimate_word(&pf));
        /* Beside an estimate, the exact counters: a small heap at a large
         * rate can hold bytes no sample saw. */
        if (pf.period != 1 && p->has_summary && !isnan(p->summary.live_bytes))
            printf("; counted exactly: %s in %s objects", fmt_bytes(p->summary.live_bytes),
                   fmt_count(p->summary.live_objects));
        printf(")\n");
    }
    free(st);
    profile_free(&pf);
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
    /* The most telling one: the last alert's profile, else the exit
     * profile, else the last one. The diff spans the first and the last
     * in time order: a peak profile is written at exit (after the exit
     * profile) but shows an earlier moment, so it takes no part. */
    const rundir_profile_t *ex = rundir_profile_find(p, "exit"), *first = NULL, *last = NULL;
    const char *best = ex ? ex->name : p->profiles[p->nprofiles - 1].name;
    for (size_t i = p->nalerts; i-- > 0;)
        if (p->alerts[i].profile && !p->alerts[i].recovery) {
            best = p->alerts[i].profile;
            break;
        }
    for (size_t i = 0; i < p->nprofiles; i++) {
        if (strcmp(p->profiles[i].reason, "peak") == 0) continue;
        if (!first) first = &p->profiles[i];
        last = &p->profiles[i];
    }
    printf("  open one in a browser:  go tool pprof -http=: %s/%s\n", fmt_clean(dir), fmt_clean(best));
    if (first && last != first)
        printf("  what grew between two:  go tool pprof -top -diff_base=%s/%s %s/%s\n", fmt_clean(dir),
               fmt_clean(first->name), fmt_clean(dir), fmt_clean(last->name));
}

static void print_issues(const rundir_proc_t *p)
{
    for (size_t i = 0; i < p->nnotes; i++) printf("  note: %s\n", fmt_clean(p->notes[i]));
    for (size_t i = 0; i < p->nerrors; i++) printf("  error: %s\n", fmt_clean(p->errors[i]));
}

static void print_proc(const rundir_t *rd, const rundir_proc_t *p, const report_opts_t *o, const char *dir)
{
    double t0 = rundir_start(p);
    print_header(p);
    if (p->malloc_owner) {   /* print_header said the agent saw nothing: no peak, no leaks to speak of */
        print_issues(p);
        return;
    }
    if (!p->nsamples && !p->nalerts && !p->nprofiles) {
        if (p->has_summary && p->summary.samples == 0)   /* HEAPWATCH_BRIEF: the summary says it all */
            printf("  only its summary: it sampled no allocation, took no snapshot and raised no alert\n");
        else
            printf("  no timeline records, no alerts, no heap profiles\n");
        print_peak(rd, p, o);
        print_leaks(rd, p, o);
        print_issues(p);
        return;
    }
    print_growth(p, t0);
    print_chart(p, o, "live bytes", offsetof(rundir_sample_t, live_bytes), true);
    print_chart(p, o, "live objects", offsetof(rundir_sample_t, live_objects), false);
    print_alerts(p, t0);
    print_top_stacks(p);
    print_peak(rd, p, o);
    print_leaks(rd, p, o);
    print_profiles(p, dir);
    print_issues(p);
}

/* print_table: one line per process, when there are several. */
/* needs_attention: a process that raised an alert, or whose results could
 * not all be read (--failures-only). */
static bool needs_attention(const rundir_proc_t *p)
{
    for (size_t j = 0; j < p->nalerts; j++)
        if (!p->alerts[j].recovery) return true;
    return p->nerrors > 0;
}

/* command_shown: the command line (else the executable's name), cut at
 * 72 bytes with "...", cleaned for a terminal. */
static const char *command_shown(const rundir_proc_t *p)
{
    return fmt_clean_max(p->cmdline && *p->cmdline ? p->cmdline : rundir_exe_name(p), 72);
}

static void print_table(const rundir_t *rd, bool failures_only)
{
    printf("\n  %-8s %-8s %10s %14s %12s %12s %6s  %s\n", "pid", "parent", "ran", "mallocs", "live at exit", "peak",
           "alerts", "command");
    size_t hidden = 0;
    for (size_t i = 0; i < rd->nprocs; i++) {
        const rundir_proc_t *p = &rd->procs[i];
        if (failures_only && !needs_attention(p)) {
            hidden++;
            continue;
        }
        size_t na = 0;
        for (size_t j = 0; j < p->nalerts; j++) na += !p->alerts[j].recovery;
        bool s = p->has_summary;
        char ppid[32] = "?";
        if (s && !isnan(p->summary.ppid)) snprintf(ppid, sizeof ppid, "%.0f", p->summary.ppid);
        printf("  %-8s %-8s %10s %14s %12s %12s %6zu  %s%s\n", p->tag, ppid, fmt_duration(span(p)),
               s ? fmt_count(p->summary.mallocs) : "-", s ? fmt_bytes(p->summary.live_bytes) : "-",
               s ? fmt_bytes(p->summary.peak_live_bytes) : "-", na, command_shown(p), s ? "" : "  (killed)");
    }
    if (hidden) printf("  (%zu process%s without an alert or an error not shown: --failures-only)\n", hidden,
                       hidden == 1 ? "" : "es");
}

/* ------------------------------------------------------------------------ */
/* The page                                                                 */
/* ------------------------------------------------------------------------ */

/* write_page: the page at path, atomically (see the top of the file).
 * @return 0, or -1 with errno set. */
static int write_page(const char *path, const rundir_t *rd, long pid)
{
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path) + 1 : 0;
    const char *base = slash ? slash + 1 : path;
    if (!*base) {
        errno = EISDIR;
        return -1;
    }
    char *tmp = NULL;
    int fd = -1;
    /* A name no other writer uses: pid, time and a counter; O_EXCL makes
     * sure, and a name taken (a stale file, someone else's) tries another. */
    for (unsigned n = 0; n < 100 && fd < 0; n++) {
        free(tmp);
        if (asprintf(&tmp, "%.*s.%s.tmp.%ld.%lx.%u", dlen, path, base, (long)getpid(), (unsigned long)time(NULL), n) < 0) {
            tmp = NULL;
            errno = ENOMEM;
            return -1;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int e = errno;
        free(tmp);
        errno = e;
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    int err = 0;
    if (!f) {
        err = errno;
        close(fd);
    } else {
        errno = 0;
        int wr = report_html_write(f, rd, pid);
        err = wr != 0 ? (errno ? errno : EIO) : 0;
        if (fclose(f) != 0 && !err) err = errno ? errno : EIO;
    }
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) unlink(tmp);
    free(tmp);
    errno = err;
    return err ? -1 : 0;
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
    if (o.pid < 0 && rd.nprocs > 1) {
        runsum_t sum;
        if (runsum_build(&rd, NULL, &sum) == 0) {   /* the verdict of the run first */
            printf("\n");
            runsum_print(stdout, &sum, "", 5);
            runsum_free(&sum);
        }
        print_table(&rd, o.failures_only);
    }
    for (size_t i = 0; i < rd.nprocs; i++) {
        if (o.pid >= 0 && rd.procs[i].pid != o.pid) continue;
        if (o.failures_only && !needs_attention(&rd.procs[i])) continue;
        printf("\n");
        print_proc(&rd, &rd.procs[i], &o, dir);
    }
    rc = 0;
    if (!o.no_html) {
        char *page = NULL;
        if (o.html) page = strdup(o.html);
        else if (asprintf(&page, "%s%sreport.html", dir, *dir && dir[strlen(dir) - 1] == '/' ? "" : "/") < 0) page = NULL;
        fflush(stdout);   /* the text first, whatever stderr says */
        if (!page || write_page(page, &rd, o.pid) != 0) {
            fprintf(stderr, "heapwatch report: cannot write %s: %s (the text report is above; --html FILE writes the page "
                    "elsewhere, --no-html skips it)\n", page ? fmt_clean(page) : "the page", strerror(page ? errno : ENOMEM));
            rc = EXIT_PAGE;
        } else {
            printf("\nreport: %s (open it in a browser)\n", fmt_clean(page));
        }
        free(page);
    }
    rundir_free(&rd);
    return rc;
}
