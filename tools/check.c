/*
 * check.c - `heapwatch check DIR [options]`: the CI gate.
 *
 * Reads every process's results in DIR (rundir.h) and judges each against
 * the limits given: the alerts the agent raised (--fail-on), the growth
 * rates of the timeline, and the live heap at exit. One line per broken
 * limit, naming the process, the metric, the value and the limit (and the
 * stack that grew most, when an alert names one); one OK line per process
 * otherwise. Exit status: 0 all within limits, 1 a limit broken, 2 DIR
 * unreadable, empty, or a result file damaged (when nothing else failed:
 * a broken limit is a result even if another file could not be read).
 *
 * --junit writes the same verdicts as JUnit XML, one test case per
 * process, for CI systems that show test reports.
 */
#define _GNU_SOURCE
#include "tools/rundir.h"
#include "tools/runsum.h"
#include "tools/tools.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char usage_check[] =
    "usage: heapwatch check DIR [options]\n"
    "\n"
    "Checks the results the agent wrote in DIR (HEAPWATCH_OUT) against limits,\n"
    "for CI. Every process in DIR (fork and exec children included) is judged;\n"
    "a process killed before it could write its summary is judged from its\n"
    "timeline and alerts.\n"
    "\n"
    "options:\n"
    "      --fail-on LEVEL         fail when a process raised an alert of LEVEL or\n"
    "                              higher: warn, crit (the default) or none\n"
    "      --max-objects-rate N    fail when a timeline record's objects_rate (live\n"
    "                              objects/s over the window) is above N\n"
    "      --max-bytes-rate SIZE   fail when a record's bytes_rate (live bytes/s) is above SIZE\n"
    "                              (rates are judged only over records that span at least\n"
    "                              half the growth window, the agent's rule for its alerts:\n"
    "                              a process too short for that is judged on counts)\n"
    "      --max-live-bytes SIZE   fail when live_bytes at exit is above SIZE\n"
    "      --max-live-objects N    fail when live_objects at exit is above N\n"
    "      --max-peak-bytes SIZE   fail when peak_live_bytes is above SIZE\n"
    "      --junit FILE            also write the verdicts as JUnit XML (one test case\n"
    "                              per process) to FILE\n"
    "      --failures-only         per process, print only those that broke a limit\n"
    "      --top N                 commands listed in the run summary (default 5)\n"
    "  -q, --quiet                 print only the failures and errors (no run summary)\n"
    "  -h, --help                  this text\n"
    "\n"
    "N is a number with an optional k, M or G (powers of 1000); SIZE is bytes with\n"
    "an optional K, M, G or T (powers of 1024; KiB, MB... are read the same way).\n"
    "At exit means the process's summary; without one (the process was killed)\n"
    "the last timeline record is used and the line says so. A limit that cannot\n"
    "be checked for lack of data (no timeline records) is noted, not failed.\n"
    "\n"
    "exit status: 0 every process within the limits; 1 a limit was broken (one\n"
    "line per broken limit on stdout); 2 DIR cannot be read, holds no results,\n"
    "a result file is damaged, or bad usage (the reason on stderr).\n";

typedef struct {
    int fail_on;               /* 0 none, else the lowest rundir_level_t that fails */
    double max_objects_rate;   /* NAN: no limit */
    double max_bytes_rate;
    double max_live_bytes;
    double max_live_objects;
    double max_peak_bytes;
    const char *junit;
    bool quiet;
    bool failures_only;
    long top;                  /* commands per list of the run summary */
} check_opts_t;

/* verdict_t: what check concluded about one process. */
typedef struct {
    char **fails;              /* one line per broken limit */
    size_t nfails;
    char **notes;
    size_t nnotes;
    char *ok_line;             /* the one-line summary */
    bool rate_unjudged;        /* a rate limit was set, no record spans long enough */
} verdict_t;

static void push(char ***list, size_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void push(char ***list, size_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    char **grown = r < 0 ? NULL : realloc(*list, (*n + 1) * sizeof **list);
    if (!grown) {
        fprintf(stderr, "heapwatch check: out of memory\n");
        exit(EXIT_USAGE);
    }
    *list = grown;
    grown[(*n)++] = s;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++) free(list[i]);
    free(list);
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

/* parse_quantity: "1.5M" -> 1.5 * base^2. Suffixes k/K, M, G, T, each
 * optionally followed by "i" and/or "B"; a bare "B" too. */
static bool parse_quantity(const char *s, double base, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0) return false;
    static const char units[] = "kMGT";
    const char *u = *end ? strchr(units, *end == 'K' ? 'k' : *end) : NULL;
    if (u && *end) {
        v *= pow(base, (double)(u - units + 1));
        end++;
        if (*end == 'i') end++;
    }
    if (*end == 'B') end++;
    if (*end) return false;
    *out = v;
    return true;
}

static bool parse_level(const char *s, int *level)
{
    if (strcmp(s, "warn") == 0) *level = RUNDIR_WARN;
    else if (strcmp(s, "crit") == 0) *level = RUNDIR_CRIT;
    else if (strcmp(s, "none") == 0) *level = 0;
    else return false;
    return true;
}

/* parse_args: fills *o and *dir. @return -1 to go on, else an exit status. */
static int parse_args(int argc, char **argv, check_opts_t *o, const char **dir)
{
    enum { O_FAIL_ON = 256, O_OBJ_RATE, O_BYTES_RATE, O_LIVE_BYTES, O_LIVE_OBJ, O_PEAK, O_JUNIT, O_FAILURES, O_TOP };
    static const struct option longopts[] = {
        { "fail-on", required_argument, NULL, O_FAIL_ON },
        { "max-objects-rate", required_argument, NULL, O_OBJ_RATE },
        { "max-bytes-rate", required_argument, NULL, O_BYTES_RATE },
        { "max-live-bytes", required_argument, NULL, O_LIVE_BYTES },
        { "max-live-objects", required_argument, NULL, O_LIVE_OBJ },
        { "max-peak-bytes", required_argument, NULL, O_PEAK },
        { "junit", required_argument, NULL, O_JUNIT },
        { "quiet", no_argument, NULL, 'q' },
        { "failures-only", no_argument, NULL, O_FAILURES },
        { "top", required_argument, NULL, O_TOP },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    *o = (check_opts_t){ RUNDIR_CRIT, NAN, NAN, NAN, NAN, NAN, NULL, false, false, 5 };
    int c, idx;
    optind = 1;
    while ((c = getopt_long(argc, argv, "qh", longopts, &idx)) != -1) {
        bool ok = true;
        switch (c) {
        case 'h': fputs(usage_check, stdout); return 0;
        case 'q': o->quiet = true; break;
        case O_FAIL_ON: ok = parse_level(optarg, &o->fail_on); break;
        case O_OBJ_RATE: ok = parse_quantity(optarg, 1000, &o->max_objects_rate); break;
        case O_LIVE_OBJ: ok = parse_quantity(optarg, 1000, &o->max_live_objects); break;
        case O_BYTES_RATE: ok = parse_quantity(optarg, 1024, &o->max_bytes_rate); break;
        case O_LIVE_BYTES: ok = parse_quantity(optarg, 1024, &o->max_live_bytes); break;
        case O_PEAK: ok = parse_quantity(optarg, 1024, &o->max_peak_bytes); break;
        case O_JUNIT: o->junit = optarg; break;
        case O_FAILURES: o->failures_only = true; break;
        case O_TOP: {
            char *end;
            errno = 0;
            o->top = strtol(optarg, &end, 10);
            ok = end != optarg && !*end && !errno && o->top >= 0 && o->top <= 100000;
            break;
        }
        default: fputs("Try 'heapwatch check --help'.\n", stderr); return EXIT_USAGE;
        }
        if (!ok) {
            fprintf(stderr, "heapwatch check: --%s: cannot use '%s' (%s)\n", longopts[idx].name, fmt_clean(optarg),
                    c == O_FAIL_ON ? "warn, crit or none"
                    : c == O_TOP ? "a whole number from 0 to 100000"
                                 : "a number >= 0, with an optional unit suffix");
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "heapwatch check: %s\nusage: heapwatch check DIR [options]  (--help for more)\n",
                optind >= argc ? "no DIR given" : "only one DIR, please");
        return EXIT_USAGE;
    }
    *dir = argv[optind];
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Judging one process                                                      */
/* ------------------------------------------------------------------------ */

/* top_text: "leak_node <- build <- main (+1.2 MiB, +3,000 objects)". */
static char *top_text(const rundir_stack_t *s)
{
    char *out = NULL;
    if (asprintf(&out, "%s%s%s%s%s%s", fmt_stack(s->function, s->frames, s->nframes, 3),
                 isnan(s->growth_bytes) ? "" : " (+", isnan(s->growth_bytes) ? "" : fmt_bytes(s->growth_bytes),
                 isnan(s->growth_bytes) ? "" : ", +", isnan(s->growth_bytes) ? "" : fmt_count(s->growth_objects),
                 isnan(s->growth_bytes) ? "" : " objects)") < 0)
        return NULL;
    return out;
}

static void judge_alerts(const rundir_proc_t *p, const check_opts_t *o, double t0, verdict_t *v)
{
    const rundir_alert_t *worst = NULL;
    size_t nworst = 0;
    for (size_t i = 0; i < p->nalerts; i++) {
        const rundir_alert_t *a = &p->alerts[i];
        if (a->recovery) continue;
        if (!worst || a->level > worst->level) {
            worst = a;
            nworst = 0;
        }
        if (a->level == worst->level) nworst++;
    }
    if (!worst) return;
    if (!o->fail_on || (int)worst->level < o->fail_on) {
        push(&v->notes, &v->nnotes, "raised %s alert(s), below --fail-on %s", rundir_level_name(worst->level),
             o->fail_on ? rundir_level_name((rundir_level_t)o->fail_on) : "none");
        return;
    }
    char count[64] = "";
    if (nworst > 1) snprintf(count, sizeof count, " (the first of %zu)", nworst);
    char *top = worst->ntop ? top_text(&worst->top[0]) : NULL;
    push(&v->fails, &v->nfails, "%s alert%s: %s %s > %s at %s%s%s%s%s", rundir_level_name(worst->level), count,
         fmt_clean(worst->metric), fmt_metric(worst->metric, worst->value),
         fmt_metric(worst->metric, worst->threshold), fmt_reltime(worst->time - t0),
         top ? "; top: " : "", top ? top : "", worst->profile ? "; profile " : "",
         worst->profile ? fmt_clean(worst->profile) : "");
    free(top);
}

/* judge_rate: the highest value of a timeline rate (the field metric, at
 * offset in a sample) against a limit, over the records whose rate spans
 * long enough to be judged (rundir_rate_judged: the agent's own rule for
 * its alerts); a rate over a few milliseconds is noise, not a leak. */
static void judge_rate(const rundir_proc_t *p, const char *metric, size_t offset, const char *opt, double limit,
                       double t0, verdict_t *v)
{
    if (isnan(limit)) return;
    const rundir_sample_t *max = NULL;
    size_t over = 0, n = 0, short_span = 0;
    for (size_t i = 0; i < p->nsamples; i++) {
        const rundir_sample_t *s = &p->samples[i];
        double x = rundir_sample_get(s, offset);
        if (isnan(x)) continue;
        if (!rundir_rate_judged(s)) {
            short_span++;
            continue;
        }
        n++;
        over += x > limit;
        if (!max || x > rundir_sample_get(max, offset)) max = s;
    }
    if (!n && short_span) {
        v->rate_unjudged = true;   /* counted in the last line, not one note per process */
        return;
    }
    if (!n) {
        push(&v->notes, &v->nnotes, "no timeline records with %s: %s not checked", metric, opt);
        return;
    }
    double x = rundir_sample_get(max, offset);
    if (x > limit)
        push(&v->fails, &v->nfails, "%s %s > %s (%s) at %s; %zu of %zu timeline records above", metric,
             fmt_metric(metric, x), fmt_metric(metric, limit), opt, fmt_reltime(max->time - t0), over, n);
}

/* at_exit: a value at exit from the summary, else the last timeline record
 * that has it (the field at field_offset). *from says which, and why. */
static double at_exit(const rundir_proc_t *p, const char *field, double summary_value, size_t field_offset, double t0,
                      char *from, size_t cap)
{
    from[0] = 0;
    if (p->has_summary && !isnan(summary_value)) return summary_value;
    for (size_t i = p->nsamples; i-- > 0;) {
        double x = rundir_sample_get(&p->samples[i], field_offset);
        if (isnan(x)) continue;
        if (p->has_summary)
            snprintf(from, cap, " (the summary has no %s; from the last timeline record, at %s)", field,
                     fmt_reltime(p->samples[i].time - t0));
        else
            snprintf(from, cap, " (no summary: the process did not exit normally; from the last timeline record, at %s)",
                     fmt_reltime(p->samples[i].time - t0));
        return x;
    }
    return NAN;
}

static void judge_at_exit(const rundir_proc_t *p, const char *field, size_t field_offset, bool bytes,
                          double summary_value, const char *opt, double limit, double t0, verdict_t *v)
{
    if (isnan(limit)) return;
    char from[256];
    double x = at_exit(p, field, summary_value, field_offset, t0, from, sizeof from);
    if (isnan(x)) {
        if (p->has_summary)
            push(&v->notes, &v->nnotes, "the summary has no %s and there is no timeline record with it: %s not checked",
                 field, opt);
        else
            push(&v->notes, &v->nnotes, "no summary and no timeline record with %s: %s not checked", field, opt);
        return;
    }
    if (x <= limit) return;
    if (bytes)
        push(&v->fails, &v->nfails, "%s at exit %.0f (%s) > %.0f (%s) (%s)%s", field, x, fmt_bytes(x), limit,
             fmt_bytes(limit), opt, from);
    else
        push(&v->fails, &v->nfails, "%s at exit %s > %s (%s)%s", field, fmt_count(x), fmt_count(limit), opt, from);
}

/* peak_bytes: the summary's peak, else the highest the timeline saw. */
static double peak_bytes(const rundir_proc_t *p, bool *from_timeline)
{
    *from_timeline = false;
    if (p->has_summary && !isnan(p->summary.peak_live_bytes)) return p->summary.peak_live_bytes;
    double peak = NAN;
    for (size_t i = 0; i < p->nsamples; i++) {
        double x = !isnan(p->samples[i].peak_live_bytes) ? p->samples[i].peak_live_bytes : p->samples[i].live_bytes;
        if (!isnan(x) && (isnan(peak) || x > peak)) peak = x;
    }
    *from_timeline = !isnan(peak);
    return peak;
}

static void judge_peak(const rundir_proc_t *p, double limit, verdict_t *v)
{
    if (isnan(limit)) return;
    bool from_timeline;
    double x = peak_bytes(p, &from_timeline);
    if (isnan(x)) {
        push(&v->notes, &v->nnotes, "%s: --max-peak-bytes not checked",
             p->has_summary ? "the summary has no peak_live_bytes and there is no timeline" : "no summary and no timeline");
        return;
    }
    if (x > limit)
        push(&v->fails, &v->nfails, "peak_live_bytes %.0f (%s) > %.0f (%s) (--max-peak-bytes)%s", x, fmt_bytes(x),
             limit, fmt_bytes(limit),
             !from_timeline ? ""
             : p->has_summary ? " (the summary has no peak_live_bytes: the highest in the timeline)"
                              : " (no summary: the highest in the timeline)");
}

static void make_ok_line(const rundir_proc_t *p, verdict_t *v)
{
    double max_rate = NAN;
    bool any_rate = false;
    for (size_t i = 0; i < p->nsamples; i++) {
        if (isnan(p->samples[i].objects_rate)) continue;
        any_rate = true;
        if (rundir_rate_judged(&p->samples[i]) && (isnan(max_rate) || p->samples[i].objects_rate > max_rate))
            max_rate = p->samples[i].objects_rate;
    }
    size_t nalerts = 0;
    for (size_t i = 0; i < p->nalerts; i++) nalerts += !p->alerts[i].recovery;
    char rate[96] = "";
    if (!isnan(max_rate)) snprintf(rate, sizeof rate, ", max objects_rate %s", fmt_metric("objects_rate", max_rate));
    else if (any_rate) snprintf(rate, sizeof rate, ", too short to judge a rate");
    if (p->has_summary) {
        const rundir_summary_t *s = &p->summary;
        if (asprintf(&v->ok_line, "ran %s, %s mallocs, live at exit %s in %s objects, peak %s%s, %zu alert%s",
                     fmt_duration(s->duration_s), fmt_count(s->mallocs), fmt_bytes(s->live_bytes),
                     fmt_count(s->live_objects), fmt_bytes(s->peak_live_bytes), rate, nalerts, nalerts == 1 ? "" : "s") < 0)
            v->ok_line = NULL;
    } else {
        if (asprintf(&v->ok_line, "no summary (killed?); %zu timeline record%s%s, %zu alert%s", p->nrecords,
                     p->nrecords == 1 ? "" : "s", rate, nalerts, nalerts == 1 ? "" : "s") < 0)
            v->ok_line = NULL;
    }
}

static void judge(const rundir_proc_t *p, const check_opts_t *o, verdict_t *v)
{
    memset(v, 0, sizeof *v);
    double t0 = rundir_start(p);
    judge_alerts(p, o, t0, v);
    judge_rate(p, RUNDIR_SAMPLE_FIELD(objects_rate), "--max-objects-rate", o->max_objects_rate, t0, v);
    judge_rate(p, RUNDIR_SAMPLE_FIELD(bytes_rate), "--max-bytes-rate", o->max_bytes_rate, t0, v);
    judge_at_exit(p, RUNDIR_SAMPLE_FIELD(live_bytes), true, p->summary.live_bytes, "--max-live-bytes",
                  o->max_live_bytes, t0, v);
    judge_at_exit(p, RUNDIR_SAMPLE_FIELD(live_objects), false, p->summary.live_objects, "--max-live-objects",
                  o->max_live_objects, t0, v);
    judge_peak(p, o->max_peak_bytes, v);
    make_ok_line(p, v);
}

static void free_verdict(verdict_t *v)
{
    free_list(v->fails, v->nfails);
    free_list(v->notes, v->nnotes);
    free(v->ok_line);
}

/* ------------------------------------------------------------------------ */
/* JUnit XML                                                                */
/* ------------------------------------------------------------------------ */

/* xml_put: s escaped for XML text or an attribute value. Characters XML
 * 1.0 cannot carry (controls, bytes of broken UTF-8) become '?'; newlines
 * and tabs become character references, so attributes keep them. */
static void xml_put(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = fmt_utf8_len(p);
        switch (n ? *p : (*p == '\n' || *p == '\t') ? *p : 0) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        case '\n': fputs("&#10;", f); break;
        case '\t': fputs("&#9;", f); break;
        case 0: fputc('?', f); break;
        default: fwrite(p, 1, n, f);
        }
        p += n ? n : 1;
    }
}

/* proc_name: what a person calls the process: its command line, else its
 * executable's name. */
static const char *proc_name(const rundir_proc_t *p)
{
    return p->cmdline && *p->cmdline ? p->cmdline : rundir_exe_name(p);
}

/* short_name: proc_name cut at 100 bytes (...) for a line of output,
 * cleaned for a terminal. */
static const char *short_name(const rundir_proc_t *p) { return fmt_clean_max(proc_name(p), 100); }

/* repeat_index: for each process, 1 + how many processes before it (in
 * start order) have the same name: JUnit's test names are the name, with
 * " #k" for the k-th repeat, the same from run to run (no pid in them). */
static const rundir_t *sort_rd;
static int cmp_by_name(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(proc_name(&sort_rd->procs[i]), proc_name(&sort_rd->procs[j]));
    return c ? c : (i > j) - (i < j);
}

static unsigned *repeat_indexes(const rundir_t *rd)
{
    size_t n = rd->nprocs;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    unsigned *rep = calloc(n ? n : 1, sizeof *rep);
    if (!order || !rep) {
        free(order);
        free(rep);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) order[i] = i;
    sort_rd = rd;
    qsort(order, n, sizeof *order, cmp_by_name);
    for (size_t k = 0; k < n; k++) {
        bool same = k && strcmp(proc_name(&rd->procs[order[k]]), proc_name(&rd->procs[order[k - 1]])) == 0;
        rep[order[k]] = same ? rep[order[k - 1]] + 1 : 1;
    }
    free(order);
    return rep;
}

static void junit_case(FILE *f, const rundir_proc_t *p, const verdict_t *v, unsigned repeat)
{
    double t = p->has_summary ? p->summary.duration_s : NAN;
    if (isnan(t) && p->nsamples > 1) t = p->samples[p->nsamples - 1].time - p->samples[0].time;
    fputs("    <testcase classname=\"heapwatch.check\" name=\"", f);
    xml_put(f, proc_name(p));
    if (repeat > 1) fprintf(f, " #%u", repeat);
    fprintf(f, "\" time=\"%.3f\">\n", isnan(t) || t < 0 ? 0.0 : t);
    if (v->nfails) {
        fputs("      <failure type=\"limit\" message=\"", f);
        xml_put(f, v->fails[0]);
        if (v->nfails > 1) fprintf(f, " (and %zu more)", v->nfails - 1);
        fputs("\">", f);
        for (size_t i = 0; i < v->nfails; i++) {
            xml_put(f, v->fails[i]);
            fputs("&#10;", f);
        }
        fputs("</failure>\n", f);
    } else if (p->nerrors) {
        fputs("      <error type=\"unreadable\" message=\"", f);
        xml_put(f, p->errors[0]);
        fputs("\"/>\n", f);
    }
    fprintf(f, "      <system-out>pid %s", p->tag);
    if (p->has_summary && p->summary.ppid == p->summary.ppid) fprintf(f, ", parent %.0f", p->summary.ppid);
    fputs(", ", f);
    xml_put(f, p->exe ? p->exe : rundir_exe_name(p));
    fputs("&#10;", f);
    xml_put(f, v->ok_line ? v->ok_line : "");
    for (size_t i = 0; i < v->nnotes; i++) {
        fputs("&#10;note: ", f);
        xml_put(f, v->notes[i]);
    }
    for (size_t i = 0; i < p->nnotes; i++) {
        fputs("&#10;note: ", f);
        xml_put(f, p->notes[i]);
    }
    for (size_t i = 0; i < p->nerrors; i++) {
        fputs("&#10;error: ", f);
        xml_put(f, p->errors[i]);
    }
    fputs("</system-out>\n    </testcase>\n", f);
}

/* write_junit: the report for all processes; with rd NULL, a single error
 * test case saying why DIR could not be checked. @return 0 or -1. */
static int write_junit(const char *path, const char *dir, const rundir_t *rd, const verdict_t *vs, const char *why)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "heapwatch check: --junit %s: %s\n", fmt_clean(path), strerror(errno));
        return -1;
    }
    size_t n = rd ? rd->nprocs : 1, failures = 0, errors = rd ? 0 : 1;
    for (size_t i = 0; rd && i < n; i++) {
        failures += vs[i].nfails > 0;
        errors += !vs[i].nfails && rd->procs[i].nerrors;
    }
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"heapwatch check\"", f);
    fprintf(f, " tests=\"%zu\" failures=\"%zu\" errors=\"%zu\">\n  <testsuite name=\"", n, failures, errors);
    xml_put(f, dir);
    fprintf(f, "\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" skipped=\"0\">\n", n, failures, errors);
    if (!rd) {
        fputs("    <testcase classname=\"heapwatch.check\" name=\"results\" time=\"0\">\n      <error type=\"unreadable\" message=\"", f);
        xml_put(f, why);
        fputs("\"/>\n    </testcase>\n", f);
    }
    unsigned *rep = rd ? repeat_indexes(rd) : NULL;
    for (size_t i = 0; rd && i < n; i++) junit_case(f, &rd->procs[i], &vs[i], rep ? rep[i] : 1);
    free(rep);
    fputs("  </testsuite>\n</testsuites>\n", f);
    if (ferror(f) | (fclose(f) != 0)) {
        fprintf(stderr, "heapwatch check: --junit %s: write error\n", fmt_clean(path));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The verb                                                                 */
/* ------------------------------------------------------------------------ */

/* unjudged_note: the last line's word on processes too short for a rate. */
static const char *unjudged_note(size_t n)
{
    static char note[160];
    if (!n) return "";
    snprintf(note, sizeof note, "; %zu ran too briefly for a rate to be judged (no timeline record spans half "
             "the growth window): judged on counts", n);
    return note;
}

static void print_verdict(const rundir_proc_t *p, const verdict_t *v, const check_opts_t *o)
{
    const char *exe = short_name(p);
    for (size_t i = 0; i < v->nfails; i++) printf("heapwatch check: FAIL pid %s (%s): %s\n", p->tag, exe, v->fails[i]);
    for (size_t i = 0; i < p->nerrors; i++)
        fprintf(stderr, "heapwatch check: ERROR pid %s (%s): %s\n", p->tag, exe, fmt_clean(p->errors[i]));
    if (o->quiet || (o->failures_only && !v->nfails)) return;
    if (!v->nfails && !p->nerrors) printf("heapwatch check: ok   pid %s (%s): %s\n", p->tag, exe, v->ok_line ? v->ok_line : "");
    for (size_t i = 0; i < v->nnotes; i++) printf("heapwatch check: note pid %s (%s): %s\n", p->tag, exe, v->notes[i]);
    for (size_t i = 0; i < p->nnotes; i++)
        printf("heapwatch check: note pid %s (%s): %s\n", p->tag, exe, fmt_clean(p->notes[i]));
}

int cmd_check(int argc, char **argv)
{
    check_opts_t o;
    const char *dir;
    int rc = parse_args(argc, argv, &o, &dir);
    if (rc >= 0) return rc;
    rundir_t rd;
    char msg[1024] = "";
    rundir_err_t err = rundir_load(dir, &rd, msg, sizeof msg);
    if (err != RUNDIR_OK) {
        fprintf(stderr, "heapwatch check: %s\n", fmt_clean(msg));
        if (o.junit) write_junit(o.junit, dir, NULL, NULL, msg);
        rundir_free(&rd);
        return EXIT_USAGE;
    }
    verdict_t *vs = calloc(rd.nprocs, sizeof *vs);
    if (!vs) {
        fprintf(stderr, "heapwatch check: out of memory\n");
        rundir_free(&rd);
        return EXIT_USAGE;
    }
    size_t nfailed = 0, nerrors = 0, nunjudged = 0;
    bool *failed = calloc(rd.nprocs ? rd.nprocs : 1, sizeof *failed);
    for (size_t i = 0; i < rd.nprocs; i++) {
        judge(&rd.procs[i], &o, &vs[i]);
        nfailed += vs[i].nfails > 0;
        nerrors += rd.procs[i].nerrors > 0;
        nunjudged += vs[i].rate_unjudged;
        if (failed) failed[i] = vs[i].nfails > 0;
    }
    runsum_t sum;
    if (!o.quiet && runsum_build(&rd, failed, &sum) == 0) {   /* the verdict of the run first */
        runsum_print(stdout, &sum, "heapwatch check: ", (size_t)o.top);
        runsum_free(&sum);
    }
    free(failed);
    for (size_t i = 0; i < rd.nprocs; i++) print_verdict(&rd.procs[i], &vs[i], &o);
    if (rd.files_skipped) {   /* not judged, so not a pass: exit 2 unless a limit failed */
        fprintf(stderr, "heapwatch check: %s: %zu result files past the first %u not read\n", fmt_clean(dir),
                rd.files_skipped, RUNDIR_FILES_MAX);
        nerrors++;
    }
    if (!o.quiet || nfailed || nerrors)
        printf("heapwatch check: %s: %zu process%s, %zu failed%s%s%s\n", fmt_clean(dir), rd.nprocs,
               rd.nprocs == 1 ? "" : "es", nfailed, nerrors ? ", unreadable results in " : "",
               nerrors ? fmt_count((double)nerrors) : "", unjudged_note(nunjudged));
    rc = nfailed ? EXIT_LIMIT : nerrors ? EXIT_USAGE : 0;
    if (o.junit && write_junit(o.junit, dir, &rd, vs, NULL) != 0 && rc == 0) rc = EXIT_USAGE;
    for (size_t i = 0; i < rd.nprocs; i++) free_verdict(&vs[i]);
    free(vs);
    rundir_free(&rd);
    return rc;
}
