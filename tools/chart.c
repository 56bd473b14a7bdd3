/*
 * chart.c - text charts of a quantity over time (see chart.h).
 *
 * Resampling: the n records become w columns of equal time. A column
 * holding records shows their maximum; an empty column (records sparser
 * than columns) is interpolated between the nearest records on each side,
 * so a timeline of 5 records still reads as a line, not 5 spikes. Each
 * column's height is counted in eighths of a row, the resolution of the
 * block characters U+2581..U+2588.
 */
#include "tools/chart.h"

#include "tools/tools.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double t, v;
} point_t;

static int cmp_point(const void *a, const void *b)
{
    const point_t *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t;
}

/* compact: a short axis label, "1.23 MiB" or "12.3k". */
static void compact(double v, bool bytes, char *out, size_t cap)
{
    if (bytes) {
        snprintf(out, cap, "%s", fmt_bytes(v));
        return;
    }
    static const char *units[] = { "", "k", "M", "G", "T" };
    double d = v;
    int u = 0;
    while (fabs(d) >= 1000 && u < 4) {
        d /= 1000;
        u++;
    }
    if (u == 0) snprintf(out, cap, "%.0f", d);
    else snprintf(out, cap, fabs(d) < 10 ? "%.2f%s" : fabs(d) < 100 ? "%.1f%s" : "%.0f%s", d, units[u]);
}

/* resample: column values of the sorted points p[0..n) over [tmin, tmax]. */
static void resample(const point_t *p, size_t n, double *col, int w)
{
    double tmin = p[0].t, tmax = p[n - 1].t, dt = (tmax - tmin) / w;
    for (int c = 0; c < w; c++) col[c] = NAN;
    if (dt <= 0) {
        double m = p[0].v;
        for (size_t i = 1; i < n; i++) m = fmax(m, p[i].v);
        col[0] = m;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int c = (int)((p[i].t - tmin) / dt);
        if (c >= w) c = w - 1;
        if (c < 0) c = 0;
        col[c] = isnan(col[c]) ? p[i].v : fmax(col[c], p[i].v);
    }
    size_t j = 0;   /* p[j] is the first point after the column's centre */
    for (int c = 0; c < w; c++) {
        if (!isnan(col[c])) continue;
        double tc = tmin + (c + 0.5) * dt;
        while (j < n && p[j].t <= tc) j++;
        if (j == 0 || j == n) continue;
        const point_t *a = &p[j - 1], *b = &p[j];
        col[c] = a->v + (b->v - a->v) * (tc - a->t) / (b->t - a->t);
    }
}

static const char *glyph(int eighths, bool ascii)
{
    static const char *blocks[] = { " ", "\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588" };
    if (!ascii) return blocks[eighths];
    return eighths == 0 ? " " : eighths < 4 ? "." : eighths < 8 ? ":" : "#";
}

static void print_rows(FILE *f, const chart_t *c, const double *col, int w, double lo, double hi)
{
    int h = c->height;
    for (int r = h - 1; r >= 0; r--) {
        char label[32] = "";
        bool labeled = r == h - 1 || r == 0 || (h >= 6 && r == h / 2);
        if (r == h - 1) compact(hi, c->bytes, label, sizeof label);
        else if (r == 0) compact(lo, c->bytes, label, sizeof label);
        else if (labeled) compact(lo + (hi - lo) * (r + 1) / h, c->bytes, label, sizeof label);
        fprintf(f, "%s%*s %s", c->indent, CHART_LABEL_WIDTH - 2, label,
                labeled ? (c->ascii ? "+" : "\u2524") : (c->ascii ? "|" : "\u2502"));
        for (int x = 0; x < w; x++) {
            int e = 0;
            if (!isnan(col[x])) {
                e = (int)lround((col[x] - lo) / (hi - lo) * h * 8);
                if (e == 0 && col[x] > lo) e = 1;
            }
            e -= r * 8;
            fputs(glyph(e < 0 ? 0 : e > 8 ? 8 : e, c->ascii), f);
        }
        fputc('\n', f);
    }
}

static void print_axis(FILE *f, const chart_t *c, int w, double tmin, double tmax)
{
    fprintf(f, "%s%*s %s", c->indent, CHART_LABEL_WIDTH - 2, "", c->ascii ? "+" : "\u2514");
    for (int x = 0; x < w; x++) fputs(c->ascii ? "-" : "\u2500", f);
    fputc('\n', f);
    char left[32], right[32];
    snprintf(left, sizeof left, "%s", fmt_reltime(tmin - c->t0));
    snprintf(right, sizeof right, "%s", fmt_reltime(tmax - c->t0));
    int pad = w - (int)strlen(left) - (int)strlen(right);
    fprintf(f, "%s%*s%s%*s%s\n", c->indent, CHART_LABEL_WIDTH, "", left, pad > 1 ? pad : 1, "", tmax > tmin ? right : "");
    if (!c->nmarks) return;
    char *line = malloc((size_t)w + 1);
    if (!line) return;
    memset(line, ' ', (size_t)w);
    line[w] = 0;
    bool any = false;
    for (size_t i = 0; i < c->nmarks; i++) {
        if (c->mark_t[i] < tmin - (tmax - tmin) / w || c->mark_t[i] > tmax + (tmax - tmin) / w) continue;
        int x = tmax > tmin ? (int)((c->mark_t[i] - tmin) / (tmax - tmin) * (w - 1) + 0.5) : 0;
        if (x < 0) x = 0;
        if (x >= w) x = w - 1;
        if (line[x] != 'C') line[x] = c->mark_c[i];
        any = true;
    }
    for (int x = w - 1; x >= 0 && line[x] == ' '; x--) line[x] = 0;
    if (any) fprintf(f, "%s%*s%s\n", c->indent, CHART_LABEL_WIDTH, "alerts ", line);
    free(line);
}

bool chart_print(FILE *f, const chart_t *c)
{
    int w = (c->width < CHART_MIN_WIDTH ? CHART_MIN_WIDTH : c->width) - CHART_LABEL_WIDTH - (int)strlen(c->indent);
    if (w < 8) w = 8;
    point_t *p = malloc((c->n ? c->n : 1) * sizeof *p);
    double *col = malloc((size_t)w * sizeof *col);
    size_t n = 0;
    for (size_t i = 0; p && i < c->n; i++)
        if (!isnan(c->v[i]) && !isnan(c->t[i])) p[n++] = (point_t){ c->t[i], c->v[i] };
    if (!p || !col || n == 0) {
        free(p);
        free(col);
        return false;
    }
    qsort(p, n, sizeof *p, cmp_point);
    resample(p, n, col, w);
    double lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, p[i].v);
        hi = fmax(hi, p[i].v);
    }
    if (hi <= lo) hi = lo + 1;
    print_rows(f, c, col, w, lo, hi);
    print_axis(f, c, w, p[0].t, p[n - 1].t);
    free(p);
    free(col);
    return true;
}
