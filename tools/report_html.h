/*
 * report_html.h - `heapwatch report --html FILE`: the report's charts as one
 * self-contained HTML page (inline SVG, no script, no external resource),
 * to attach to a CI run or open in a browser.
 */
#ifndef HEAPWATCH_TOOLS_REPORT_HTML_H
#define HEAPWATCH_TOOLS_REPORT_HTML_H

#include "tools/rundir.h"

/* report_html_write: writes the page for the processes of rd (only pid,
 * unless pid < 0) to path. @return 0, or -1 with a message on stderr. */
int report_html_write(const char *path, const rundir_t *rd, long pid);

#endif
