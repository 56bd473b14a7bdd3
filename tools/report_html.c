/*
 * report_html.c - the charts of `heapwatch report` as a self-contained HTML
 * page (see report_html.h).
 *
 * Per process: a heading with the counters at exit, then two SVG line
 * charts (live bytes, live objects) over time, with a vertical line at
 * each alert (orange warn, red crit; hover for the value and top stack)
 * and a table of the alerts. A long timeline is reduced to the minimum and
 * maximum of each pixel column, so the page stays small and no peak is
 * lost. Everything from the input files is escaped (and cleaned of bytes
 * that are not UTF-8) before it reaches the page.
 */
#include "tools/report_html.h"

#include "tools/tools.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define SVG_W 900              /* chart size in SVG units */
#define SVG_H 220
#define M_LEFT 90              /* margins: room for the axis labels */
#define M_RIGHT 20
#define M_TOP 12
#define M_BOTTOM 28

/* put_escaped: s for HTML text or a quoted attribute; control characters
 * and bytes of broken UTF-8 become '?'. */
static void put_escaped(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = fmt_utf8_len(p);
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

typedef struct {
    double tmin, tmax, lo, hi;
} frame_t;

static double px(const frame_t *fr, double t)
{
    double w = SVG_W - M_LEFT - M_RIGHT;
    return fr->tmax > fr->tmin ? M_LEFT + (t - fr->tmin) / (fr->tmax - fr->tmin) * w : M_LEFT;
}

static double py(const frame_t *fr, double v)
{
    double h = SVG_H - M_TOP - M_BOTTOM;
    return M_TOP + h - (v - fr->lo) / (fr->hi - fr->lo) * h;
}

/* polyline: the points, one min/max pair per pixel column when there are
 * more records than columns. Records are assumed in time order (the
 * agent's); out-of-order ones only make a zigzag. */
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
        if (have && (int)x != col) {
            fprintf(f, "%.1f,%.1f %.1f,%.1f ", ct, py(fr, cmin), ct, py(fr, cmax));
            have = false;
        }
        if (!have) {
            col = (int)x;
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
    for (size_t i = 0; i < p->nalerts; i++) {
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

static void chart(FILE *f, const rundir_proc_t *p, const char *title, size_t offset, bool bytes, double t0)
{
    frame_t fr = { INFINITY, -INFINITY, 0, 0 };
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
    if (fr.hi <= fr.lo) fr.hi = fr.lo + 1;
    fprintf(f, "<h3>%s</h3>\n<svg viewBox=\"0 0 %d %d\" width=\"100%%\" role=\"img\">\n", title, SVG_W, SVG_H);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n", M_LEFT, M_TOP,
            SVG_W - M_LEFT - M_RIGHT, SVG_H - M_TOP - M_BOTTOM);
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
    fputs("</svg>\n", f);
}

static void alert_table(FILE *f, const rundir_proc_t *p, double t0)
{
    if (!p->nalerts) return;
    fputs("<h3>alerts</h3>\n<table><tr><th>time</th><th>event</th><th>value</th><th>top stack</th><th>growth</th>"
          "<th>profile</th></tr>\n", f);
    for (size_t i = 0; i < p->nalerts; i++) {
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
    fputs("</table>\n", f);
}

static void process(FILE *f, const rundir_proc_t *p)
{
    double t0 = rundir_start(p);
    fprintf(f, "<section>\n<h2>pid %s &mdash; ", p->tag);
    put_escaped(f, rundir_exe_name(p));
    fputs("</h2>\n<p>", f);
    if (p->exe) put_escaped(f, p->exe);
    if (p->has_summary) {
        const rundir_summary_t *s = &p->summary;
        fprintf(f, "<br>ran %s; %s allocations, %s frees; live at exit %s objects, %s; peak %s", fmt_duration(s->duration_s),
                fmt_count(s->mallocs), fmt_count(s->frees), fmt_count(s->live_objects), fmt_bytes(s->live_bytes),
                fmt_bytes(s->peak_live_bytes));
    } else {
        fputs("<br>no summary: the process was killed, or is still running", f);
    }
    fprintf(f, "<br>%zu timeline records, %zu alert events, %zu heap profiles</p>\n", p->nrecords, p->nalerts,
            p->nprofiles);
    chart(f, p, "live bytes", offsetof(rundir_sample_t, live_bytes), true, t0);
    chart(f, p, "live objects", offsetof(rundir_sample_t, live_objects), false, t0);
    alert_table(f, p, t0);
    fputs("</section>\n", f);
}

int report_html_write(FILE *f, const rundir_t *rd, long pid)
{
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>heapwatch report: ", f);
    put_escaped(f, rd->path);
    fputs("</title>\n<style>body{font-family:sans-serif;margin:2em;max-width:1000px}"
          "svg text{font-size:12px;font-family:monospace}section{border-top:1px solid #ccc;margin-top:2em}"
          "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}"
          "tr.crit td{background:#fde2e2}tr.warn td{background:#fff1d6}</style>\n</head><body>\n<h1>heapwatch report: ",
          f);
    put_escaped(f, rd->path);
    fputs("</h1>\n", f);
    for (size_t i = 0; i < rd->nprocs; i++)
        if (pid < 0 || rd->procs[i].pid == pid) process(f, &rd->procs[i]);
    fputs("</body></html>\n", f);
    return fflush(f) != 0 || ferror(f) ? -1 : 0;
}
