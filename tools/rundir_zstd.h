/*
 * rundir_zstd.h - a zstd file decompressed as one stream, for the agent's
 * timelines.
 *
 * The agent ends a frame every 256 records (64 KiB) and at exit, and
 * flushes a block at every record, so a timeline is one or more whole
 * frames and, when the process was killed or still runs, a last frame cut
 * short; each frame's window is at most 16 KiB (README, "The timeline").
 * libzstd's streaming decoder reads concatenated frames as one stream and
 * gives out every byte of a cut frame up to the last whole block: so the
 * records before a cut are all read, and the cut is told apart from a
 * stream that ended at a frame's end.
 */
#ifndef HEAPWATCH_TOOLS_RUNDIR_ZSTD_H
#define HEAPWATCH_TOOLS_RUNDIR_ZSTD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* rundir_zstd_sink: the next n decompressed bytes. @return false to stop. */
typedef bool (*rundir_zstd_sink)(void *ctx, const char *data, size_t n);

typedef enum {
    RUNDIR_ZSTD_END = 0,            /* the file ended at the end of a frame */
    RUNDIR_ZSTD_CUT = 1,            /* the file ended inside a frame */
    RUNDIR_ZSTD_STOPPED = 2,        /* the sink returned false */
    RUNDIR_ZSTD_TOO_BIG = 3,        /* the next bytes would pass max: not given out */
    RUNDIR_ZSTD_DAMAGED = 4,        /* not zstd data, a read error, or out of memory (*why) */
} rundir_zstd_status_t;

/* rundir_zstd_t: a decoder and its two buffers, made once and reset for
 * each file (a directory of 20,000 timelines spent a tenth of its time
 * making and zeroing a fresh decoder per file). */
typedef struct rundir_zstd_s rundir_zstd_t;

/* rundir_zstd_new: a decoder, or NULL out of memory. */
rundir_zstd_t *rundir_zstd_new(void);

/* rundir_zstd_free: frees z (NULL is fine). */
void rundir_zstd_free(rundir_zstd_t *z);

/* rundir_zstd_read: decompresses f to its end through sink with z, giving
 * out at most max bytes. The bytes before damaged data are given out.
 * @return how it ended; for RUNDIR_ZSTD_DAMAGED, *why says why (a static
 * string); z NULL reads as out of memory. */
rundir_zstd_status_t rundir_zstd_read(rundir_zstd_t *z, FILE *f, unsigned long long max, rundir_zstd_sink sink, void *ctx,
                                      const char **why);

#endif
