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

/* lines_fn: one line (lineno counts from 1, blank lines included).
 * @return false to stop the splitter. */
typedef bool (*lines_fn)(void *ctx, const char *line, size_t len, size_t lineno);

typedef enum {
    LINES_OK = 0,              /* every complete line was handed out */
    LINES_STOPPED = 1,         /* the callback returned false */
    LINES_TOO_LONG = 2,        /* a line is longer than max */
    LINES_NOMEM = 3,           /* no memory to hold a line cut by a piece's end */
} lines_status_t;

typedef struct {
    char *buf;                 /* the bytes after the last newline */
    size_t len, cap;
    size_t max;                /* the longest line accepted */
    size_t lineno;             /* lines handed out or skipped so far */
    lines_status_t status;     /* once not LINES_OK, feeding does nothing */
    lines_fn fn;
    void *ctx;
} lines_t;

/* lines_init: a splitter handing lines of at most max bytes to fn. */
void lines_init(lines_t *ls, size_t max, lines_fn fn, void *ctx);

/* lines_feed: the next n bytes of the stream. @return the status: LINES_OK
 * to go on; anything else stops the splitter for good. */
lines_status_t lines_feed(lines_t *ls, const char *data, size_t n);

/* lines_pending: the unfinished last line so far: its bytes (not
 * NUL-terminated) and their count in *len (0 if none). */
const char *lines_pending(const lines_t *ls, size_t *len);

/* lines_finish: hands out the unfinished last line as a line, when the
 * stream ended without a newline after it (and the splitter is not
 * stopped). */
void lines_finish(lines_t *ls);

/* lines_free: the buffer (the splitter may be initialised again). */
void lines_free(lines_t *ls);

#endif
