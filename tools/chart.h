/*
 * chart.h - a text chart of one quantity over time, for `heapwatch report`.
 *
 * Columns are equal slices of time; each shows the highest value recorded
 * in its slice (so a short spike is never lost), or, for a slice with no
 * record, the straight line between its neighbours. Bars are drawn with the
 * Unicode lower-block characters (eight steps per row) or, with ascii, with
 * '.', ':' and '#'. Alert times are marked under the time axis.
 */
#ifndef HEAPWATCH_TOOLS_CHART_H
#define HEAPWATCH_TOOLS_CHART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CHART_MIN_WIDTH 32     /* label column + 20 plot columns */
#define CHART_LABEL_WIDTH 12   /* "  1.23 MiB ┤" */

typedef struct {
    const double *t;           /* times (Unix seconds), any order */
    const double *v;           /* values; NAN entries are skipped */
    size_t n;
    double t0;                 /* the process start: axis labels are t - t0 */
    int width;                 /* whole lines, label column included */
    int height;                /* rows of bars */
    bool ascii;
    bool bytes;                /* label values as sizes, else counts */
    const char *indent;        /* printed before every line */
    const double *mark_t;      /* alert times */
    const char *mark_c;        /* their letters ('W', 'C') */
    size_t nmarks;
} chart_t;

/* chart_print: draws the chart on f. @return false (and draws nothing)
 * when there is no value to draw. */
bool chart_print(FILE *f, const chart_t *c);

#endif
