/*
 * report_html.c - `heapwatch report`'s page: one self-contained HTML file
 * (inline CSS, inline SVG, one inline script; no network, no external
 * resource), that opens from file:// (see report_html.h). The style and
 * the script are tools/report_page.css and tools/report_page.js, embedded
 * at build time (report_assets.c); this file writes the HTML and the data.
 *
 * The page
 * --------
 * It opens with the run's process table, sorted by what needs attention:
 * crit alerts first, then warn, then the fastest growth (the timeline's
 * highest objects_rate among the records whose rate is judged,
 * rundir_rate_judged: a short-lived process's rate over a few
 * microseconds is noise), then the most bytes live at exit. A row gives the
 * command line (the summary's "cmdline", else the exe), pid, alerts, growth,
 * live bytes and objects at exit and the peak, and links to the process's
 * section. A section is a <details>, open when the run has at most
 * COLLAPSE_OVER processes, closed otherwise, and holds (past the first
 * PROCS_DRAWN_MAX processes of the table, only the first item and the
 * command that draws the rest for that process):
 *
 *   - what ran and its counters at exit;
 *   - live bytes and live objects over time as SVG charts, with a dashed
 *     line at each alert (orange warn, red crit; hover for the value and
 *     top stack); a long timeline is reduced to the minimum and maximum of
 *     each column, so no peak is lost; the columns per chart shrink with
 *     the number of processes (PAGE_CHART_BUDGET); the summary's peak is a
 *     red dot on live bytes (it may sit between records, above them);
 *   - the alerts, one row each (the first ALERTS_SHOWN events, also
 *     the ones marked on the charts; the text report lists every one kept);
 *   - interactive flame graphs: in use at exit and allocated in total (the
 *     exit profile; without one, the last other profile, said so), at the
 *     peak (the profile the summary's peak_profile names: the peak's own,
 *     or the exit profile when exit was within 10 % of the peak; else the
 *     newest `peak` profile; absent: said so), and the growth
 *     over each alert's window (the alert record's "top" stacks, for the
 *     first GROWTH_GRAPHS_MAX alerts that have some);
 *   - the leaks at exit (the stacks in use in the exit profile, merged by
 *     profile_stacks: objects, bytes, the innermost function that is not an
 *     allocation wrapper, the stack from it) and the top stacks allocated
 *     in total, both built from the flame graphs' data (20 rows each).
 *
 * Profile values are the agent's unsampled estimates, as pprof shows them.
 *
 * The flame graphs are drawn by the script when their section is opened
 * (so a page of hundreds of processes opens at once). Root at the top,
 * callees below, width proportional to bytes. Click a frame to zoom (it
 * becomes the full width; its callers stay above it, full width); click
 * the root ("all"), "reset zoom" or Escape to zoom out. Hover shows bytes,
 * objects and the share of the graph's total (and, zoomed, of the frame
 * zoomed on). The search box marks the functions
 * whose name holds the text (case-insensitive) and says how much they hold
 * (a match inside a match is counted once). A frame narrower than half a
 * pixel is not drawn, nor are its callees, so the SVG stays small however
 * many stacks the data holds.
 *
 * Embedded data
 * -------------
 * Each section ends with <script type="application/json"
 * class="flame-data">, parsed only when the section opens:
 *
 *   {"names": ["main", "leak_node", ...],          string table
 *    "g": [{"s": [[1, 0], ...],                    stacks, innermost first,
 *                                                  as indexes into names
 *           "v": [bytes, objects, bytes, ...],     two values per stack
 *           "f": [1, ...],                         each stack's function: its
 *                                                  innermost frame that is not
 *                                                  an allocation wrapper
 *                                                  (profile_function; an
 *                                                  alert's "function")
 *           "x": [stacks, bytes, objects]}, ...]}  what was merged into
 *                                                  "(other)", or absent
 *
 * "g" is in the order of the section's div.flame (their data-g). Bounds:
 * each process drawn gets PAGE_FLAME_BUDGET / processes drawn bytes (at least
 * PROC_FLAME_MIN, at most PROC_FLAME_MAX), shared among its graphs in turn
 * (what one graph leaves goes to the next); a graph takes stacks by bytes,
 * most first, until its share is spent (one stack past it at most, and
 * never more than FLAME_STACKS_MAX), and merges the rest into "(other)". A
 * stack keeps its innermost FLAME_DEPTH_MAX frames (the outer ones become
 * one "(N outer frames)" frame) and a name its first NAME_BYTES_MAX bytes.
 * Names are interned per process. Everything from the input files is
 * escaped: for HTML text and attributes (& < > " '), and in JSON with
 * '<', '>' and '&' as \u003c, \u003e, \u0026 (a name cannot close the
 * script) and U+2028/2029 escaped; bytes that are not UTF-8, and control
 * characters, become '?'.
 *
 * The DOM, for tests and scripts
 * ------------------------------
 *   table#procs > tbody > tr        one per process, data-tag="<tag>",
 *                                   class crit/warn when alerted; its first
 *                                   cell links to #p-<tag>
 *   section#p-<tag> > details.proc  one per process (open or not)
 *   div.flame[data-kind][data-g]    a flame graph: data-kind is inuse,
 *                                   alloc, peak or growth-N (N from 1, the
 *                                   alert's order); data-built="1" once drawn
 *     .flame-bar                    its totals and source file; once drawn:
 *     input.flame-search            the search box; .flame-found says what
 *                                   matched; button.flame-reset zooms out
 *     .flame-info                   what the mouse is over
 *     svg > g.frame[data-name]      a frame: rect + text (+ title); class
 *                                   match when the search matches it; the
 *                                   root is g.frame.root (data-name "all")
 *   p.flame-none[data-kind]         a graph that cannot be drawn, and why
 *   table.leaks, table.top          filled when the section opens
 */
#define _GNU_SOURCE
#include "tools/report_html.h"

#include "tools/report_assets.h"

#include "tools/profile.h"
#include "tools/tools.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SVG_W 900              /* chart size in SVG units */
#define SVG_H 220
#define M_LEFT 90              /* margins: room for the axis labels */
#define M_RIGHT 20
#define M_TOP 12
#define M_BOTTOM 28
#define PLOT_W (SVG_W - M_LEFT - M_RIGHT)

#define COLLAPSE_OVER 5                    /* more processes than this: sections closed */
#define PROCS_DRAWN_MAX 400                /* processes with charts and graphs (the first
                                              in the table's order; the others: facts only) */
#define PAGE_CHART_BUDGET (640u << 10)     /* bytes of chart points in the page */
#define CHART_POINT_BYTES 24               /* one column's two points, about */
#define CHART_COLS_MIN 40                  /* columns per chart however many processes */
#define PAGE_FLAME_BUDGET (1u << 20)       /* bytes of flame graph data in the page */
#define PROC_FLAME_MIN (3u << 10)          /* per process, however many there are */
#define PROC_FLAME_MAX (512u << 10)        /* per process, however few */
#define FLAME_STACKS_MAX 20000u            /* stacks per graph */
#define FLAME_DEPTH_MAX 128u               /* frames kept per stack (innermost) */
#define NAME_BYTES_MAX 400u                /* bytes kept of a frame name */
#define GROWTH_GRAPHS_MAX 8u               /* growth flame graphs per process */
#define ALERTS_SHOWN 40u                   /* alert events in a section's table and charts */
#define TABLE_CMD_BYTES 100u               /* bytes of a command line in the table */
#define SUMMARY_CMD_BYTES 200u             /* ... in a section's heading */

/* ------------------------------------------------------------------------ */
/* Escaping                                                                 */
/* ------------------------------------------------------------------------ */

/* put_escaped_n: at most max bytes of s (cut at a character, then "…") for
 * HTML text or a quoted attribute; control characters and bytes of broken
 * UTF-8 become '?'. */
static void put_escaped_n(FILE *f, const char *s, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t used = 0;
    while (*p) {
        size_t n = fmt_utf8_len(p);
        if (used + (n ? n : 1) > max) {
            fputs("\xe2\x80\xa6", f);
            return;
        }
        used += n ? n : 1;
        switch (n ? *p : 0) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        case 0: fputc('?', f); break;
        default: fwrite(p, 1, n, f);
        }
        p += n ? n : 1;
    }
}

static void put_escaped(FILE *f, const char *s)
{
    put_escaped_n(f, s, SIZE_MAX);
}

/* clean_name: a copy of s, cut at NAME_BYTES_MAX bytes (at a character,
 * then "…"), control characters and broken UTF-8 as '?'. NULL: no memory. */
static char *clean_name(const char *s)
{
    char *out = malloc(NAME_BYTES_MAX + 4);
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)(s ? s : "?");
    size_t o = 0;
    while (*p) {
        size_t n = fmt_utf8_len(p);
        if (o + (n ? n : 1) > NAME_BYTES_MAX) {
            memcpy(out + o, "\xe2\x80\xa6", 3);
            o += 3;
            break;
        }
        if (n) memcpy(out + o, p, n);
        else out[o] = '?';
        o += n ? n : 1;
        p += n ? n : 1;
    }
    out[o] = 0;
    return out;
}

/* put_json_str: a cleaned string (clean_name) as a JSON string that can
 * sit inside a <script>: '<', '>', '&' and U+2028/2029 as \u escapes.
 * @return the bytes written. */
static size_t put_json_str(FILE *f, const char *s)
{
    size_t n = 2;
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', f);
            fputc(*p, f);
            n += 2;
        } else if (*p == '<' || *p == '>' || *p == '&' || *p < 0x20) {
            fprintf(f, "\\u%04x", *p);
            n += 6;
        } else if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)) {
            fprintf(f, "\\u20%s", p[2] == 0xA8 ? "28" : "29");
            p += 2;
            n += 6;
        } else {
            fputc(*p, f);
            n++;
        }
    }
    fputc('"', f);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Charts of the timeline                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    double tmin, tmax, lo, hi;
    int cols;                  /* columns of min/max pairs drawn */
} frame_t;

static double px(const frame_t *fr, double t)
{
    return fr->tmax > fr->tmin ? M_LEFT + (t - fr->tmin) / (fr->tmax - fr->tmin) * PLOT_W : M_LEFT;
}

static double py(const frame_t *fr, double v)
{
    double h = SVG_H - M_TOP - M_BOTTOM;
    return M_TOP + h - (v - fr->lo) / (fr->hi - fr->lo) * h;
}

/* polyline: the points, one min/max pair per column when there are more
 * records than columns. Records are assumed in time order (the agent's);
 * out-of-order ones only make a zigzag. */
static void polyline(FILE *f, const rundir_proc_t *p, size_t offset, const frame_t *fr)
{
    fputs("<polyline fill=\"none\" stroke=\"#2a6fdb\" stroke-width=\"1.5\" points=\"", f);
    bool have = false;
    int col = 0;
    double cmin = 0, cmax = 0, ct = 0;
    for (size_t i = 0; i < p->nsamples; i++) {
        double v = rundir_sample_get(&p->samples[i], offset);
        if (isnan(v)) continue;
        double x = px(fr, p->samples[i].time);
        int c = (int)((x - M_LEFT) * fr->cols / PLOT_W);
        if (have && c != col) {
            fprintf(f, "%.1f,%.1f %.1f,%.1f ", ct, py(fr, cmin), ct, py(fr, cmax));
            have = false;
        }
        if (!have) {
            col = c;
            ct = x;
            cmin = cmax = v;
            have = true;
        }
        cmin = fmin(cmin, v);
        cmax = fmax(cmax, v);
    }
    if (have) fprintf(f, "%.1f,%.1f %.1f,%.1f", ct, py(fr, cmin), ct, py(fr, cmax));
    fputs("\"/>\n", f);
}

static void alert_lines(FILE *f, const rundir_proc_t *p, const frame_t *fr, double t0)
{
    for (size_t i = 0; i < p->nalerts && i < ALERTS_SHOWN; i++) {
        const rundir_alert_t *a = &p->alerts[i];
        if (a->recovery || a->time < fr->tmin || a->time > fr->tmax) continue;
        double x = px(fr, a->time);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-dasharray=\"4 3\"><title>", x,
                x, M_TOP, SVG_H - M_BOTTOM, a->level == RUNDIR_CRIT ? "#d62728" : "#ff9f1c");
        fprintf(f, "%s %s alert: ", fmt_reltime(a->time - t0), rundir_level_name(a->level));
        put_escaped(f, a->metric);
        fprintf(f, " %s &gt; %s", fmt_metric(a->metric, a->value), fmt_metric(a->metric, a->threshold));
        if (a->ntop) {
            fputs("; top: ", f);
            put_escaped(f, fmt_stack(a->top[0].function, a->top[0].frames, a->top[0].nframes, 3));
        }
        fputs("</title></line>\n", f);
    }
}

/* chart: one quantity over time, its time axis stretched to the summary's
 * peak_time; with peak (live bytes), the peak as a dot, the value axis
 * stretched to hold it (the agent sees a peak between snapshots too,
 * higher than any record). */
static void chart(FILE *f, const rundir_proc_t *p, const char *title, size_t offset, bool bytes, double t0, int cols,
                  bool peak)
{
    frame_t fr = { INFINITY, -INFINITY, 0, 0, cols };
    size_t n = 0;
    for (size_t i = 0; i < p->nsamples; i++) {
        double v = rundir_sample_get(&p->samples[i], offset);
        if (isnan(v)) continue;
        fr.tmin = fmin(fr.tmin, p->samples[i].time);
        fr.tmax = fmax(fr.tmax, p->samples[i].time);
        fr.lo = fmin(fr.lo, v);
        fr.hi = fmax(fr.hi, v);
        n++;
    }
    if (!n) return;
    /* both charts span the peak's time, so that they line up */
    double pt = p->summary.peak_time, pv = p->summary.peak_live_bytes;
    bool have_peak = p->has_summary && isfinite(pt) && pt > 0 && isfinite(pv) && pv > 0;
    if (have_peak) {
        fr.tmin = fmin(fr.tmin, pt);
        fr.tmax = fmax(fr.tmax, pt);
    }
    peak = peak && have_peak;
    if (peak) fr.hi = fmax(fr.hi, pv);
    if (fr.hi <= fr.lo) fr.hi = fr.lo + 1;
    fprintf(f, "<h3>%s</h3>\n<svg class=\"chart\" viewBox=\"0 0 %d %d\" width=\"100%%\" role=\"img\">\n", title, SVG_W,
            SVG_H);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n", M_LEFT, M_TOP,
            PLOT_W, SVG_H - M_TOP - M_BOTTOM);
    for (int k = 0; k <= 4; k++) {
        double v = fr.lo + (fr.hi - fr.lo) * k / 4;
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", M_LEFT - 6, py(&fr, v) + 4,
                bytes ? fmt_bytes(v) : fmt_count(v));
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", M_LEFT, SVG_H - 8, fmt_reltime(fr.tmin - t0));
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", SVG_W - M_RIGHT, SVG_H - 8,
            fmt_reltime(fr.tmax - t0));
    alert_lines(f, p, &fr, t0);
    polyline(f, p, offset, &fr);
    if (peak)
        fprintf(f, "<circle class=\"peak\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#d62728\"><title>peak %s at %s</title>"
                   "</circle>\n", px(&fr, pt), py(&fr, pv), fmt_bytes(pv), fmt_reltime(pt - t0));
    fputs("</svg>\n", f);
}

static void alert_table(FILE *f, const rundir_proc_t *p, double t0)
{
    if (!p->nalerts) return;
    fputs("<h3>alerts</h3>\n<table class=\"alerts\"><tr><th>time</th><th>event</th><th>value</th><th>top stack</th>"
          "<th>growth</th><th>profile</th></tr>\n", f);
    for (size_t i = 0; i < p->nalerts && i < ALERTS_SHOWN; i++) {
        const rundir_alert_t *a = &p->alerts[i];
        fprintf(f, "<tr class=\"%s\"><td>%s</td><td>%s%s</td><td>", a->recovery ? "rec" : rundir_level_name(a->level),
                fmt_reltime(a->time - t0), a->recovery ? "recovery from " : "", rundir_level_name(a->level));
        put_escaped(f, a->metric);
        fprintf(f, " %s (threshold %s)</td><td>", fmt_metric(a->metric, a->value), fmt_metric(a->metric, a->threshold));
        if (a->ntop) put_escaped(f, fmt_stack(a->top[0].function, a->top[0].frames, a->top[0].nframes, 4));
        fputs("</td><td>", f);
        if (a->ntop && !isnan(a->top[0].growth_bytes))
            fprintf(f, "+%s, +%s objects", fmt_bytes(a->top[0].growth_bytes), fmt_count(a->top[0].growth_objects));
        fputs("</td><td>", f);
        if (a->profile) put_escaped(f, a->profile);
        fputs("</td></tr>\n", f);
    }
    size_t more = (p->nalerts > ALERTS_SHOWN ? p->nalerts - ALERTS_SHOWN : 0) + p->alerts_dropped;
    if (more) fprintf(f, "<tr><td colspan=\"6\">%zu more alert events (the text report lists the ones kept)</td></tr>\n", more);
    fputs("</table>\n", f);
}

/* ------------------------------------------------------------------------ */
/* Flame graph data                                                         */
/* ------------------------------------------------------------------------ */

/* names_t: the string table of one process's flame data: cleaned names,
 * interned through an open-addressing table of indexes (+1; 0 empty). */
typedef struct {
    char **names;
    size_t n, cap;
    uint32_t *slots;
    size_t nslots;             /* a power of two, at least twice n */
    size_t json_bytes;         /* what the names add to the page */
    bool oom;
} names_t;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool names_rehash(names_t *nm, size_t nslots)
{
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots) return false;
    for (size_t i = 0; i < nm->n; i++) {
        size_t j = hash_str(nm->names[i]) & (nslots - 1);
        while (slots[j]) j = (j + 1) & (nslots - 1);
        slots[j] = (uint32_t)i + 1;
    }
    free(nm->slots);
    nm->slots = slots;
    nm->nslots = nslots;
    return true;
}

/* names_add: the index of s (raw, from a file) in nm, adding its cleaned
 * copy when new. @return the index, or UINT32_MAX out of memory. */
static uint32_t names_add(names_t *nm, const char *s)
{
    char *c = clean_name(s);
    if (!c || (2 * (nm->n + 1) > nm->nslots && !names_rehash(nm, nm->nslots ? 2 * nm->nslots : 256))) {
        free(c);
        nm->oom = true;
        return UINT32_MAX;
    }
    size_t j = hash_str(c) & (nm->nslots - 1);
    for (; nm->slots[j]; j = (j + 1) & (nm->nslots - 1))
        if (strcmp(nm->names[nm->slots[j] - 1], c) == 0) {
            free(c);
            return nm->slots[j] - 1;
        }
    if (nm->n == nm->cap) {
        size_t cap = nm->cap ? 2 * nm->cap : 256;
        char **names = realloc(nm->names, cap * sizeof *names);
        if (!names) {
            free(c);
            nm->oom = true;
            return UINT32_MAX;
        }
        nm->names = names;
        nm->cap = cap;
    }
    nm->names[nm->n] = c;
    nm->slots[j] = (uint32_t)++nm->n;
    nm->json_bytes += strlen(c) + 4;
    return (uint32_t)(nm->n - 1);
}

static void names_free(names_t *nm)
{
    for (size_t i = 0; i < nm->n; i++) free(nm->names[i]);
    free(nm->names);
    free(nm->slots);
    memset(nm, 0, sizeof *nm);
}

/* gstack_t: one stack of a graph: frame i is tab[idx[i]] (a profile's
 * names), or tab[i] when idx is NULL (an alert's strings); innermost first. */
typedef struct {
    char *const *tab;
    const uint32_t *idx;
    size_t n;
    const char *function;      /* where it allocates: the innermost frame that
                                  is not an allocation wrapper (profile_function,
                                  or the alert's "function") */
    double b, o;               /* bytes and objects (never negative) */
} gstack_t;

static int cmp_gstack(const void *a, const void *b)
{
    const gstack_t *x = a, *y = b;
    if (x->b != y->b) return x->b < y->b ? 1 : -1;
    if (x->o != y->o) return x->o < y->o ? 1 : -1;
    return 0;
}

/* graph_t: one flame graph as it goes into the page. */
typedef struct {
    char kind[24];             /* data-kind */
    char title[160];           /* heading (HTML, already escaped) */
    const char *source;        /* the file it comes from (raw), or NULL */
    const char *none;          /* why there is no graph (raw), or NULL */
    gstack_t *stacks;
    size_t n;
    double total_b, total_o;   /* of all its stacks */
} graph_t;

/* put_stack: one stack as a JSON array of name indexes; past
 * FLAME_DEPTH_MAX frames the outer ones become one "(N outer frames)".
 * @return false out of memory. */
static bool put_stack(FILE *m, names_t *nm, const gstack_t *s)
{
    size_t keep = s->n < FLAME_DEPTH_MAX ? s->n : FLAME_DEPTH_MAX;
    fputc('[', m);
    for (size_t i = 0; i < keep; i++) {
        uint32_t k = names_add(nm, s->tab[s->idx ? s->idx[i] : i]);
        if (k == UINT32_MAX) return false;
        fprintf(m, i ? ",%u" : "%u", k);
    }
    if (keep < s->n) {
        char cut[48];
        snprintf(cut, sizeof cut, "(%zu outer frames)", s->n - keep);
        uint32_t k = names_add(nm, cut);
        if (k == UINT32_MAX) return false;
        fprintf(m, keep ? ",%u" : "%u", k);
    }
    fputc(']', m);
    return true;
}

/* graph_json: g's stacks as one element of "g" on m, most bytes first,
 * until budget bytes (with the names it adds) are spent; the rest in "x".
 * @return the bytes it took, or SIZE_MAX out of memory. */
static size_t graph_json(FILE *m, names_t *nm, graph_t *g, size_t budget)
{
    long start = ftell(m);
    size_t names0 = nm->json_bytes;
    qsort(g->stacks, g->n, sizeof *g->stacks, cmp_gstack);
    fputs("{\"s\":[", m);
    size_t kept = 0;
    for (; kept < g->n && kept < FLAME_STACKS_MAX; kept++) {
        size_t used = (size_t)(ftell(m) - start) + (nm->json_bytes - names0);
        if (kept && used >= budget) break;
        if (kept) fputc(',', m);
        if (!put_stack(m, nm, &g->stacks[kept])) return SIZE_MAX;
    }
    fputs("],\"v\":[", m);
    for (size_t i = 0; i < kept; i++) fprintf(m, i ? ",%.0f,%.0f" : "%.0f,%.0f", g->stacks[i].b, g->stacks[i].o);
    fputs("],\"f\":[", m);
    for (size_t i = 0; i < kept; i++) {
        uint32_t k = names_add(nm, g->stacks[i].function ? g->stacks[i].function : "?");
        if (k == UINT32_MAX) return SIZE_MAX;
        fprintf(m, i ? ",%u" : "%u", k);
    }
    fputc(']', m);
    if (kept < g->n) {
        double b = 0, o = 0;
        for (size_t i = kept; i < g->n; i++) {
            b += g->stacks[i].b;
            o += g->stacks[i].o;
        }
        fprintf(m, ",\"x\":[%zu,%.0f,%.0f]", g->n - kept, b, o);
    }
    fputc('}', m);
    return (size_t)(ftell(m) - start) + (nm->json_bytes - names0);
}

/* ------------------------------------------------------------------------ */
/* The graphs of one process                                                */
/* ------------------------------------------------------------------------ */

#define GRAPHS_MAX (3 + GROWTH_GRAPHS_MAX)

typedef struct {
    graph_t g[GRAPHS_MAX];
    size_t n;
    profile_t exit, peak;      /* read (or zeroed) */
    char exit_msg[256], peak_msg[256];
    const rundir_profile_t *exit_file, *peak_file;
} graphs_t;

/* exit_profile: p's exit profile; without one (killed), the newest
 * other profile that is not a peak's stands in. */
static const rundir_profile_t *exit_profile(const rundir_proc_t *p)
{
    const rundir_profile_t *best = rundir_profile_find(p, "exit");
    for (size_t i = 0; !best && i < p->nprofiles; i++)   /* sorted by seq: the last wins */
        if (!p->profiles[i].reason || strcmp(p->profiles[i].reason, "peak") != 0) best = &p->profiles[i];
    return best;
}

static graph_t *graph_new(graphs_t *gs, const char *kind)
{
    graph_t *g = &gs->g[gs->n++];
    memset(g, 0, sizeof *g);
    snprintf(g->kind, sizeof g->kind, "%s", kind);
    return g;
}

/* from_profile: g's stacks from pr's stacks with a positive value (in
 * use, or allocated), merged (profile_stacks). */
static void from_profile(graph_t *g, const profile_t *pr, profile_which_t which)
{
    profile_stack_t *st = NULL;
    int64_t to = 0, tb = 0;
    size_t n = profile_stacks(pr, which, &st, &to, &tb);
    g->stacks = n == (size_t)-1 ? NULL : calloc(n ? n : 1, sizeof *g->stacks);
    if (!g->stacks) {
        g->none = "out of memory";
        free(st);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double b = st[i].bytes > 0 ? (double)st[i].bytes : 0, o = st[i].objects > 0 ? (double)st[i].objects : 0;
        const char *fn = st[i].function == UINT32_MAX ? "?" : pr->names[st[i].function];
        g->stacks[g->n++] = (gstack_t){ pr->names, st[i].frames, st[i].nframes, fn, b, o };
        g->total_b += b;
        g->total_o += o;
    }
    free(st);
}

static void graphs_build(graphs_t *gs, const rundir_t *rd, const rundir_proc_t *p, double t0)
{
    memset(gs, 0, sizeof *gs);
    gs->exit_file = exit_profile(p);
    /* the summary names the profile that shows the peak: the peak's own, or
     * the exit profile when exit was within 10 % of it */
    gs->peak_file = p->peak_profile ? rundir_profile_named(p, p->peak_profile) : NULL;
    if (!gs->peak_file) gs->peak_file = rundir_profile_find(p, "peak");
    bool peak_is_exit = gs->peak_file && gs->peak_file == gs->exit_file;
    bool have_exit = gs->exit_file && rundir_profile_read(rd, gs->exit_file, &gs->exit, gs->exit_msg, sizeof gs->exit_msg) == 0;
    bool have_peak = gs->peak_file && !peak_is_exit &&
                     rundir_profile_read(rd, gs->peak_file, &gs->peak, gs->peak_msg, sizeof gs->peak_msg) == 0;
    bool stand_in = gs->exit_file && (!gs->exit_file->reason || strcmp(gs->exit_file->reason, "exit") != 0);

    for (int k = 0; k < 2; k++) {
        graph_t *g = graph_new(gs, k == 0 ? "inuse" : "alloc");
        snprintf(g->title, sizeof g->title, "%s%s", k == 0 ? "in use at " : "allocated in total, until ",
                 stand_in ? "the last profile (no exit profile)" : "exit");
        g->source = gs->exit_file ? gs->exit_file->name : NULL;
        if (!gs->exit_file) g->none = "no heap profile was written (HEAPWATCH_RATE=0, or the process was killed early)";
        else if (!have_exit) g->none = gs->exit_msg;
        else from_profile(g, &gs->exit, k == 0 ? PROFILE_INUSE : PROFILE_ALLOC);
    }
    graph_t *g = graph_new(gs, "peak");
    snprintf(g->title, sizeof g->title, "in use at the peak");
    if (!isnan(p->summary.peak_time) && p->has_summary)
        snprintf(g->title, sizeof g->title, "in use at the peak (%s, at %s)", fmt_bytes(p->summary.peak_live_bytes),
                 fmt_reltime(p->summary.peak_time - t0));
    g->source = gs->peak_file ? gs->peak_file->name : NULL;
    if (peak_is_exit) {
        size_t len = strlen(g->title);
        snprintf(g->title + len, sizeof g->title - len, ": live bytes at exit were within 10 %% of it, as the exit profile shows");
        if (!have_exit) g->none = gs->exit_msg;
        else from_profile(g, &gs->exit, PROFILE_INUSE);
    } else if (!gs->peak_file) {
        g->none = p->peak_profile ? "the profile the summary names for the peak is not in the directory"
                                  : "no peak profile: too few sampled allocations were held at the peak (the agent "
                                    "writes one from 8), or the agent did not write one";
        g->source = p->peak_profile;
    } else if (!have_peak) {
        g->none = gs->peak_msg;
    } else {
        from_profile(g, &gs->peak, PROFILE_INUSE);
    }

    unsigned nth = 0;
    for (size_t i = 0; i < p->nalerts && nth < GROWTH_GRAPHS_MAX; i++) {
        const rundir_alert_t *a = &p->alerts[i];
        if (a->recovery || !a->ntop) continue;
        char kind[24];
        snprintf(kind, sizeof kind, "growth-%u", ++nth);
        g = graph_new(gs, kind);
        snprintf(g->title, sizeof g->title, "growth over alert %u's window (%s %s, %s over %s)", nth,
                 fmt_reltime(a->time - t0), rundir_level_name(a->level), fmt_metric(a->metric ? a->metric : "", a->value),
                 fmt_duration(a->window_s));
        g->source = a->profile;
        g->stacks = calloc(a->ntop, sizeof *g->stacks);
        if (!g->stacks) {
            g->none = "out of memory";
            continue;
        }
        for (size_t j = 0; j < a->ntop; j++) {
            const rundir_stack_t *s = &a->top[j];
            double b = isnan(s->growth_bytes) || s->growth_bytes < 0 ? 0 : s->growth_bytes;
            double o = isnan(s->growth_objects) || s->growth_objects < 0 ? 0 : s->growth_objects;
            if (b <= 0 && o <= 0) continue;
            /* an alert's stack without frames is named by its function */
            g->stacks[g->n++] = s->nframes ? (gstack_t){ s->frames, NULL, s->nframes, s->function, b, o }
                                           : (gstack_t){ (char *const *)&s->function, NULL, 1, s->function, b, o };
            g->total_b += b;
            g->total_o += o;
        }
    }
}

static void graphs_free(graphs_t *gs)
{
    for (size_t i = 0; i < gs->n; i++) free(gs->g[i].stacks);
    profile_free(&gs->exit);
    profile_free(&gs->peak);
}

/* ------------------------------------------------------------------------ */
/* The process table                                                        */
/* ------------------------------------------------------------------------ */

/* row_t: what a process's row shows, and sorts by. */
typedef struct {
    const rundir_proc_t *p;
    size_t index;              /* in rd->procs: the start order, the last key */
    int level;                 /* highest alert level: 0, 1 warn, 2 crit */
    size_t ncrit, nwarn;
    double growth;             /* highest objects_rate (NAN: none) */
    double live_b, live_o, peak;
} row_t;

static row_t row_of(const rundir_proc_t *p, size_t index)
{
    row_t r = { p, index, 0, 0, 0, NAN, NAN, NAN, NAN };
    for (size_t i = 0; i < p->nalerts; i++) {
        const rundir_alert_t *a = &p->alerts[i];
        if (a->recovery) continue;
        if (a->level == RUNDIR_CRIT) r.ncrit++;
        else r.nwarn++;
        if ((int)a->level > r.level) r.level = (int)a->level;
    }
    for (size_t i = 0; i < p->nsamples; i++) {   /* a short window is noise: 498 objects in 0.3 ms read 1.7M/s */
        double v = p->samples[i].objects_rate;
        if (!isnan(v) && rundir_rate_judged(&p->samples[i]) && (isnan(r.growth) || v > r.growth)) r.growth = v;
    }
    if (p->has_summary) {
        r.live_b = p->summary.live_bytes;
        r.live_o = p->summary.live_objects;
        r.peak = p->summary.peak_live_bytes;
    } else if (p->nsamples) {   /* killed: the last record says most */
        const rundir_sample_t *s = &p->samples[p->nsamples - 1];
        r.live_b = s->live_bytes;
        r.live_o = s->live_objects;
        r.peak = s->peak_live_bytes;
    }
    return r;
}

/* desc: a before b when a's value is higher (NAN lowest). */
static int desc(double a, double b)
{
    if (isnan(a) || isnan(b)) return isnan(a) - isnan(b);
    return a > b ? -1 : a < b;
}

static int cmp_row(const void *x, const void *y)
{
    const row_t *a = x, *b = y;
    int c;
    if (a->level != b->level) return b->level - a->level;
    if ((c = desc(a->growth, b->growth))) return c;
    if ((c = desc(a->live_b, b->live_b))) return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

static const char *command_of(const rundir_proc_t *p)
{
    return p->cmdline ? p->cmdline : p->exe ? p->exe : "?";
}

static void put_level(FILE *f, const row_t *r)
{
    if (r->ncrit) fprintf(f, "<span class=\"lvl crit\">crit</span> %zu", r->ncrit);
    if (r->ncrit && r->nwarn) fputs(", ", f);
    if (r->nwarn) fprintf(f, "<span class=\"lvl warn\">warn</span> %zu", r->nwarn);
    if (!r->ncrit && !r->nwarn) fputs("&ndash;", f);
}

static void proc_table(FILE *f, const row_t *rows, size_t n)
{
    fputs("<table id=\"procs\"><thead><tr><th>command</th><th>pid</th><th>alerts</th><th>growth (max)</th>"
          "<th>live at exit</th><th>objects at exit</th><th>peak</th></tr></thead>\n<tbody>\n", f);
    for (size_t i = 0; i < n; i++) {
        const row_t *r = &rows[i];
        fprintf(f, "<tr data-tag=\"%s\"%s><td><a href=\"#p-%s\">", r->p->tag,
                r->level == 2 ? " class=\"crit\"" : r->level == 1 ? " class=\"warn\"" : "", r->p->tag);
        put_escaped_n(f, command_of(r->p), TABLE_CMD_BYTES);
        fprintf(f, "</a></td><td>%s</td><td>", r->p->tag);
        put_level(f, r);
        fprintf(f, "</td><td>%s</td><td>%s</td><td>%s</td><td>%s%s</td></tr>\n",
                isnan(r->growth) ? "&ndash;" : fmt_metric("objects_rate", r->growth),
                r->p->malloc_owner ? "not seen" : fmt_bytes(r->live_b), r->p->malloc_owner ? "not seen" : fmt_count(r->live_o),
                fmt_bytes(r->peak), r->p->has_summary ? "" : " (killed?)");
    }
    fputs("</tbody></table>\n", f);
}

/* ------------------------------------------------------------------------ */
/* A process's section                                                      */
/* ------------------------------------------------------------------------ */

static void facts(FILE *f, const rundir_proc_t *p)
{
    fputs("<p class=\"facts\">", f);
    if (p->cmdline) {
        fputs("<code>", f);
        put_escaped(f, p->cmdline);
        fputs("</code><br>", f);
    }
    if (p->exe) put_escaped(f, p->exe);
    if (p->has_summary) {
        const rundir_summary_t *s = &p->summary;
        fprintf(f, "<br>ran %s; %s allocations, %s frees; live at exit %s objects, %s; peak %s", fmt_duration(s->duration_s),
                fmt_count(s->mallocs), fmt_count(s->frees), fmt_count(s->live_objects), fmt_bytes(s->live_bytes),
                fmt_bytes(s->peak_live_bytes));
        if (!isnan(s->peak_rss_bytes) && s->peak_rss_bytes > 0) fprintf(f, "; peak RSS %s", fmt_bytes(s->peak_rss_bytes));
    } else {
        fputs("<br>no summary: the process was killed, or is still running", f);
    }
    if (p->malloc_owner) {
        fputs("<br><b>the agent saw no allocation</b>: ", f);
        put_escaped(f, p->malloc_owner);
        fprintf(f, " provides malloc, bound ahead of the agent (%s)", rundir_owner_where(p));
    }
    fprintf(f, "<br>%zu timeline records, %zu alert events, %zu heap profiles</p>\n", p->nrecords, p->nalerts,
            p->nprofiles);
}

static void flame_div(FILE *f, const graph_t *g, size_t index)
{
    fputs("<h4>", f);
    fputs(g->title, f);   /* made of numbers and fixed words */
    fputs("</h4>\n", f);
    if (g->none || !g->n) {
        fprintf(f, "<p class=\"flame-none\" data-kind=\"%s\">", g->kind);
        if (g->none) put_escaped(f, g->none);
        else fputs("nothing sampled", f);
        if (g->source) {
            fputs(" (", f);
            put_escaped(f, g->source);
            fputs(")", f);
        }
        fputs("</p>\n", f);
        return;
    }
    fprintf(f, "<div class=\"flame\" data-kind=\"%s\" data-g=\"%zu\"><div class=\"flame-bar\">%s in %s objects, %zu stack%s",
            g->kind, index, fmt_bytes(g->total_b), fmt_count(g->total_o), g->n, g->n == 1 ? "" : "s");
    if (g->source) {
        fputs(" &middot; <span class=\"src\">", f);
        put_escaped(f, g->source);
        fputs("</span>", f);
    }
    fputs("</div></div>\n", f);   /* the script adds the search box, the button and the info line */
}

/* flame_data: the section's <script type="application/json">, the graphs
 * that have stacks, in budget. @return false out of memory. */
static bool flame_data(FILE *f, graphs_t *gs, size_t budget)
{
    names_t nm = { 0 };
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) return false;
    size_t drawn = 0;
    for (size_t i = 0; i < gs->n; i++) drawn += !gs->g[i].none && gs->g[i].n;
    bool ok = true;
    fputc('[', m);
    for (size_t i = 0, k = 0; i < gs->n && ok; i++) {
        graph_t *g = &gs->g[i];
        if (g->none || !g->n) continue;
        if (k) fputc(',', m);
        size_t share = budget / (drawn - k++);
        size_t used = graph_json(m, &nm, g, share);
        if (used == SIZE_MAX) ok = false;
        else budget -= used < budget ? used : budget;
    }
    fputc(']', m);
    ok &= fclose(m) == 0 && !nm.oom;
    if (ok) {
        fputs("<script type=\"application/json\" class=\"flame-data\">{\"names\":[", f);
        for (size_t i = 0; i < nm.n; i++) {
            if (i) fputc(',', f);
            put_json_str(f, nm.names[i]);
        }
        fputs("],\"g\":", f);
        fwrite(buf, 1, len, f);
        fputs("}</script>\n", f);
    }
    free(buf);
    names_free(&nm);
    return ok;
}

/* process: the section of r's process; without charts and flame graphs
 * when not drawn (past PROCS_DRAWN_MAX). */
static void process(FILE *f, const rundir_t *rd, const row_t *r, bool open, bool drawn, int cols, size_t budget)
{
    const rundir_proc_t *p = r->p;
    double t0 = rundir_start(p);
    fprintf(f, "<section class=\"proc\" id=\"p-%s\">\n<details class=\"proc\"%s><summary>", p->tag, open ? " open" : "");
    if (r->level) fprintf(f, "<span class=\"lvl %s\">%s</span> ", r->level == 2 ? "crit" : "warn", r->level == 2 ? "crit" : "warn");
    fprintf(f, "<b>pid %s</b> ", p->tag);
    put_escaped(f, rundir_exe_name(p));
    fputs(" &mdash; <span class=\"cmd\">", f);
    put_escaped_n(f, command_of(p), SUMMARY_CMD_BYTES);
    fputs("</span></summary>\n", f);
    facts(f, p);
    if (!drawn) {
        fprintf(f, "<p class=\"note\">charts and flame graphs are drawn for the first %u processes of the table; for "
                   "this one: <code>heapwatch report DIR --pid %ld --html FILE</code></p>\n</details>\n</section>\n",
                PROCS_DRAWN_MAX, p->pid);
        return;
    }
    chart(f, p, "live bytes", offsetof(rundir_sample_t, live_bytes), true, t0, cols, true);
    chart(f, p, "live objects", offsetof(rundir_sample_t, live_objects), false, t0, cols, false);
    alert_table(f, p, t0);

    graphs_t gs;
    graphs_build(&gs, rd, p, t0);
    fputs("<h3>flame graphs</h3>\n", f);
    size_t k = 0;
    for (size_t i = 0; i < gs.n; i++) {
        flame_div(f, &gs.g[i], k);
        k += !gs.g[i].none && gs.g[i].n;
    }
    size_t nalerted = 0;
    for (size_t i = 0; i < p->nalerts; i++) nalerted += !p->alerts[i].recovery && p->alerts[i].ntop;
    if (nalerted > GROWTH_GRAPHS_MAX)
        fprintf(f, "<p class=\"note\">growth graphs of the first %u alerts; %zu more alerts are in the table above</p>\n",
                GROWTH_GRAPHS_MAX, nalerted - GROWTH_GRAPHS_MAX);
    fputs("<h3>leaks at exit</h3>\n<p class=\"note\">stacks still live at exit, most bytes first (sampled estimates)</p>\n"
          "<table class=\"leaks\"></table>\n<h3>top stacks, allocated in total</h3>\n<table class=\"top\"></table>\n",
          f);
    if (!flame_data(f, &gs, budget)) fputs("<p class=\"flame-none\">out of memory for the flame graphs</p>\n", f);
    graphs_free(&gs);
    fputs("</details>\n</section>\n", f);
}

/* ------------------------------------------------------------------------ */
/* The page (its style and script: report_page.css, report_page.js)       */
/* ------------------------------------------------------------------------ */

/* budgets: the chart columns and flame data bytes of each of n processes. */
static void budgets(size_t n, int *cols, size_t *flame)
{
    if (n > PROCS_DRAWN_MAX) n = PROCS_DRAWN_MAX;
    size_t c = PAGE_CHART_BUDGET / (n ? n : 1) / 2 / CHART_POINT_BYTES;
    *cols = c < CHART_COLS_MIN ? CHART_COLS_MIN : c > PLOT_W ? PLOT_W : (int)c;
    size_t b = PAGE_FLAME_BUDGET / (n ? n : 1);
    *flame = b < PROC_FLAME_MIN ? PROC_FLAME_MIN : b > PROC_FLAME_MAX ? PROC_FLAME_MAX : b;
}

int report_html_write(FILE *f, const rundir_t *rd, long pid)
{
    row_t *rows = calloc(rd->nprocs ? rd->nprocs : 1, sizeof *rows);
    if (!rows) {
        errno = ENOMEM;
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < rd->nprocs; i++)
        if (pid < 0 || rd->procs[i].pid == pid) rows[n++] = row_of(&rd->procs[i], i);
    qsort(rows, n, sizeof *rows, cmp_row);

    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width\">"
          "<title>heapwatch report: ", f);
    put_escaped(f, rd->path);
    fprintf(f, "</title>\n<style>%s</style>\n</head><body>\n<h1>heapwatch report: ", report_page_css);
    put_escaped(f, rd->path);
    size_t alerted = 0;
    for (size_t i = 0; i < n; i++) alerted += rows[i].level > 0;
    fprintf(f, "</h1>\n<p>%zu process%s, %zu with alerts; most in need of attention first. Open a process for its charts, "
               "flame graphs (click a frame to zoom, hover for its bytes, search to highlight a function) and leaks at "
               "exit.</p>\n", n, n == 1 ? "" : "es", alerted);
    if (rd->files_skipped) fprintf(f, "<p class=\"note\">%zu result files not read (over the limit)</p>\n", rd->files_skipped);
    proc_table(f, rows, n);
    int cols;
    size_t flame;
    budgets(n, &cols, &flame);
    for (size_t i = 0; i < n; i++) process(f, rd, &rows[i], n <= COLLAPSE_OVER, i < PROCS_DRAWN_MAX, cols, flame);
    fprintf(f, "<script>%s</script>\n</body></html>\n", report_page_js);
    free(rows);
    return fflush(f) != 0 || ferror(f) ? -1 : 0;
}
