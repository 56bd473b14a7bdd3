/*
 * rundir_lines.c - a byte stream cut into lines (rundir_lines.h).
 */
#include "tools/rundir_lines.h"

#include <stdlib.h>
#include <string.h>

void rundir_lines_init(rundir_lines_t *ls, size_t max, rundir_lines_fn fn, void *ctx)
{
    *ls = (rundir_lines_t){ .max = max, .fn = fn, .ctx = ctx };
}

/* emit: one line to the callback, blank lines counted but skipped. */
static void emit(rundir_lines_t *ls, const char *line, size_t len)
{
    ls->lineno++;
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
            if (!ls->fn(ls->ctx, line, len, ls->lineno)) ls->status = RUNDIR_LINES_STOPPED;
            return;
        }
}

/* hold: appends take bytes to the buffer of the unfinished line. */
static bool hold(rundir_lines_t *ls, const char *data, size_t take)
{
    if (ls->len + take + 1 > ls->cap) {
        size_t ncap = ls->cap ? ls->cap : 4096;
        while (ncap < ls->len + take + 1) ncap *= 2;
        char *b = realloc(ls->buf, ncap);
        if (!b) return false;
        ls->buf = b;
        ls->cap = ncap;
    }
    memcpy(ls->buf + ls->len, data, take);
    ls->len += take;
    return true;
}

rundir_lines_status_t rundir_lines_feed(rundir_lines_t *ls, const char *data, size_t n)
{
    while (n > 0 && ls->status == RUNDIR_LINES_OK) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (ls->len + take > ls->max) {
            ls->status = RUNDIR_LINES_TOO_LONG;
            break;
        }
        if (nl && ls->len == 0) {
            emit(ls, data, take);   /* the common case: no copy */
        } else if (!hold(ls, data, take)) {
            ls->status = RUNDIR_LINES_NOMEM;
            break;
        } else if (nl) {
            emit(ls, ls->buf, ls->len);
            ls->len = 0;
        }
        if (!nl) break;
        data += take + 1;
        n -= take + 1;
    }
    return ls->status;
}

const char *rundir_lines_pending(const rundir_lines_t *ls, size_t *len)
{
    *len = ls->len;
    return ls->buf;
}

void rundir_lines_finish(rundir_lines_t *ls)
{
    if (ls->status != RUNDIR_LINES_OK || !ls->len) return;
    emit(ls, ls->buf, ls->len);
    ls->len = 0;
}

void rundir_lines_free(rundir_lines_t *ls)
{
    free(ls->buf);
    ls->buf = NULL;
    ls->len = ls->cap = 0;
}
