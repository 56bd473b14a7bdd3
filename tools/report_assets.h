/*
 * report_assets.h - the report page's style and script (report_assets.c
 * embeds tools/report_page.css and tools/report_page.js), NUL-terminated.
 */
#ifndef HEAPWATCH_TOOLS_REPORT_ASSETS_H
#define HEAPWATCH_TOOLS_REPORT_ASSETS_H

extern const char report_page_css[];
extern const char report_page_js[];

#endif
