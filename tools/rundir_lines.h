/*
 * rundir_lines.h - a byte stream cut into lines, for the JSON lines files
 * of the agent (the timeline once decompressed, the alerts file).
 *
 * Bytes are fed in pieces of any size; each complete line goes to the
 * callback without its newline, in place when it lies whole in the piece
 * and through one buffer otherwise. The buffer holds at most `max` bytes:
 * a longer line stops the splitter, so a file without newlines costs no
 * more memory than one line. Lines of blanks only (space, tab, CR) are
 * counted but not handed out.
 */
#ifndef HEAPWATCH_TOOLS_RUNDIR_LINES_H
#define HEAPWATCH_TOOLS_RUNDIR_LINES_H

#include <stdbool.h>
#include <stddef.h>

/* rundir_lines_fn: one line (lineno counts from 1, blank lines included).
 * @return false to stop the splitter. */
typedef bool (*rundir_lines_fn)(void *ctx, const char *line, size_t len, size_t lineno);

typedef enum {
    RUNDIR_LINES_OK = 0,              /* every complete line was handed out */
    RUNDIR_LINES_STOPPED = 1,         /* the callback returned false */
    RUNDIR_LINES_TOO_LONG = 2,        /* a line is longer than max */
    RUNDIR_LINES_NOMEM = 3,           /* no memory to hold a line cut by a piece's end */
} rundir_lines_status_t;

typedef struct {
    char *buf;                 /* the bytes after the last newline */
    size_t len, cap;
    size_t max;                /* the longest line accepted */
    size_t lineno;             /* lines handed out or skipped so far */
    rundir_lines_status_t status;     /* once not RUNDIR_LINES_OK, feeding does nothing */
    rundir_lines_fn fn;
    void *ctx;
} rundir_lines_t;

/* rundir_lines_init: a splitter handing lines of at most max bytes to fn. */
void rundir_lines_init(rundir_lines_t *ls, size_t max, rundir_lines_fn fn, void *ctx);

/* rundir_lines_feed: the next n bytes of the stream. @return the status: RUNDIR_LINES_OK
 * to go on; anything else stops the splitter for good. */
rundir_lines_status_t rundir_lines_feed(rundir_lines_t *ls, const char *data, size_t n);

/* rundir_lines_pending: the unfinished last line so far: its bytes (not
 * NUL-terminated) and their count in *len (0 if none). */
const char *rundir_lines_pending(const rundir_lines_t *ls, size_t *len);

/* rundir_lines_finish: hands out the unfinished last line as a line, when the
 * stream ended without a newline after it (and the splitter is not
 * stopped). */
void rundir_lines_finish(rundir_lines_t *ls);

/* rundir_lines_free: the buffer (the splitter may be initialised again). */
void rundir_lines_free(rundir_lines_t *ls);

#endif
