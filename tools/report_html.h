/*
 * report_html.h - `heapwatch report --html FILE`: the report's charts as one
 * self-contained HTML page (inline SVG, no script, no external resource),
 * to attach to a CI run or open in a browser.
 */
#ifndef HEAPWATCH_TOOLS_REPORT_HTML_H
#define HEAPWATCH_TOOLS_REPORT_HTML_H

#include "tools/rundir.h"

#include <stdio.h>

/* report_html_write: writes the page for the processes of rd (only pid,
 * unless pid < 0) to f, which it neither opens nor closes: report.c
 * creates the file under a temporary name (O_EXCL|O_NOFOLLOW), then
 * renames it over DIR/report.html or --html FILE, so a page is never seen
 * half written and never written through a link.
 * @return 0, or -1 when a write failed (f's errno; no message: the caller
 * names the file). */
int report_html_write(FILE *f, const rundir_t *rd, long pid);

#endif
