/*
 * timeline.h - the zstd-compressed JSONL timeline writer (agent/, private).
 *
 * Writes HEAPWATCH_OUT/timeline.<pid>.jsonl.zst: one JSON line per
 * snapshot (the caller formats it), compressed with zstd and flushed to the
 * file at every record, so a streaming reader gets every record while the
 * program runs and after it is killed, and `zstdcat` reads the file of a
 * process that exited. The design essay is at the top of timeline.c.
 *
 * Format: concatenated zstd frames (level 1, window 2^14 bytes, content
 * checksum). A frame ends with the record that makes it reach
 * TIMELINE_FRAME_RECORDS records or TIMELINE_FRAME_BYTES uncompressed
 * bytes, and at close; inside a frame every record ends a zstd block. A
 * reader needs a 16 KiB window whatever the file's length.
 *
 * The file appears whole or not at all: open creates a hidden temporary
 * file in the directory; the first append writes (and fsyncs, unless
 * opts->no_fsync) a complete, flushed first record there and renames it
 * to the final name. A timeline
 * closed with no record leaves no file.
 *
 * Two ways to open. timeline_open_io (the agent): no descriptor is kept
 * between appends; each append reopens the file through the caller's
 * verified directory descriptor (O_APPEND|O_NOFOLLOW) and checks it is
 * the same inode, so a program that closes or reuses descriptor numbers
 * never receives the timeline's bytes. timeline_open (tests and tools): a
 * directory path, one descriptor kept from open to close.
 *
 * Memory: never malloc. The writer (~25 KiB) and zstd's compression context
 * (~200 KB with these parameters), all taken at open and nothing after,
 * come from the map_allocator_t given at open: 232 KiB of the agent's arena
 * as measured by the unit test. No stdio either: open/write/fsync/rename.
 *
 * Thread safety: none; one thread (the agent's background thread) owns a
 * writer.
 */
#ifndef HEAPWATCH_AGENT_TIMELINE_H
#define HEAPWATCH_AGENT_TIMELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "map/map.h"

#pragma GCC visibility push(hidden)

/* timeline_err_t: the module's error codes. Values are stable. */
typedef enum {
    TIMELINE_OK = 0,
    TIMELINE_ERR_NOMEM = 1,     /* the allocator returned NULL (also inside zstd) */
    TIMELINE_ERR_INVALID = 2,   /* bad argument: NULL, empty dir, pid <= 0, a line
                                   that is empty or does not end with '\n', a path
                                   too long */
    TIMELINE_ERR_NOSPACE = 3,   /* write failed: no space (ENOSPC, EDQUOT, EFBIG) */
    TIMELINE_ERR_PERM = 4,      /* no permission (EACCES, EPERM, EROFS) */
    TIMELINE_ERR_NOENT = 5,     /* the directory does not exist (ENOENT, ENOTDIR) */
    TIMELINE_ERR_IO = 6,        /* any other system call failure */
    TIMELINE_ERR_ZSTD = 7,      /* the compressor failed (other than memory) */
    TIMELINE_ERR_STALE = 8,     /* the file was removed or replaced behind the writer */
    TIMELINE_ERR_EXISTS = 9,    /* the final name exists (never replaced) */
} timeline_err_t;

/* timeline_strerror: a static, human-readable text for an error code. */
const char *timeline_strerror(timeline_err_t err);

/* Defaults (see the essay in timeline.c for the measurements behind them). */
#define TIMELINE_LEVEL 1                    /* zstd level: cheapest; 2 and 3 gain nothing here */
#define TIMELINE_WINDOW_LOG 14              /* 16 KiB: ~70 records of history */
#define TIMELINE_FRAME_RECORDS 256          /* records per frame, at most */
#define TIMELINE_FRAME_BYTES (64u * 1024u)  /* uncompressed bytes per frame, about */

/* timeline_opts_t: overrides for tests and tools; NULL means the defaults.
 * A zero field takes its default. */
typedef struct timeline_opts_s {
    unsigned frame_records;     /* end a frame after this many records */
    size_t frame_bytes;         /* ... or once it holds this many bytes */
    int level;                  /* zstd compression level */
    bool no_fsync;              /* publish and close without fsync (the
                                 * agent's default: HEAPWATCH_FSYNC, conf.h) */
    size_t one_record;          /* nonzero: the writer gets exactly one
                                 * record of this many bytes, then is closed
                                 * (the exit record of a process that wrote
                                 * none before): the record is a whole
                                 * frame, one raw (stored) block and its
                                 * checksum, with no compressor (one of up
                                 * to 16 KiB; a longer one, a compressor
                                 * sized for it) */
} timeline_opts_t;

/* timeline_stats_t: what a writer has done so far. */
typedef struct timeline_stats_s {
    uint64_t records;           /* records appended successfully */
    uint64_t frames;            /* frames ended (complete, checksummed) */
    uint64_t bytes_in;          /* uncompressed bytes appended */
    uint64_t bytes_out;         /* bytes written to the file */
} timeline_stats_t;

typedef struct timeline_s timeline_t;

/*
 * timeline_open: prepares dir/timeline.<pid>.jsonl.zst. Allocates the
 * writer and the compressor (all the memory it will use), then creates the
 * temporary file dir/.timeline.<pid>.jsonl.zst.tmp.<pid> (the naming of
 * agent_write_file_atomic). dir must exist.
 * @return TIMELINE_OK and *out set; otherwise *out is NULL, nothing is
 *         left on disk or in the allocator: TIMELINE_ERR_INVALID,
 *         TIMELINE_ERR_NOMEM, TIMELINE_ERR_ZSTD, or the open's failure
 *         (TIMELINE_ERR_PERM, TIMELINE_ERR_NOENT, TIMELINE_ERR_NOSPACE,
 *         TIMELINE_ERR_IO).
 */
timeline_err_t timeline_open(timeline_t **out, const map_allocator_t *allocator,
                             const char *dir, pid_t pid, const timeline_opts_t *opts);

/*
 * timeline_io_t: the agent's directory services for timeline_open_io.
 * dirfd: the verified output directory descriptor (borrowed, valid until
 * the next call), or a negative errno. publish: gives the temporary file
 * tmp (in dirfd) its final name without replacing any file, the name
 * chosen into name; @return 0 or a negative errno.
 */
typedef struct timeline_io_s {
    int (*dirfd)(void *ctx);
    int (*publish)(void *ctx, int dirfd, const char *tmp, char *name, size_t cap);
    void *ctx;
} timeline_io_t;

/*
 * timeline_open_io: as timeline_open, but in the directory io gives, with
 * a temporary file named after base (".<base>.tmp.<random>", created
 * O_EXCL|O_NOFOLLOW) and no descriptor kept between calls (see above).
 */
timeline_err_t timeline_open_io(timeline_t **out, const map_allocator_t *allocator,
                                const timeline_io_t *io, const char *base,
                                const timeline_opts_t *opts);

/*
 * timeline_append: compresses one line (len bytes, ending with '\n') and
 * writes it out flushed; the first successful append publishes the file.
 * @return TIMELINE_OK; TIMELINE_ERR_INVALID for a bad line (the writer is
 *         unaffected); any other error puts the writer in a failed state:
 *         this and every later append return that error and do nothing.
 *         A failure before the file was published removes the temporary
 *         file (no timeline appears); after, the file keeps every record
 *         written before the failure.
 */
timeline_err_t timeline_append(timeline_t *t, const char *line, size_t len);

/*
 * timeline_close: ends the current frame, fsyncs (unless opts->no_fsync), closes, and frees
 * everything (t is invalid afterwards, whatever the result). With no
 * record published, removes the temporary file and leaves no timeline.
 * @return TIMELINE_OK; the failed state's error; or the error of ending
 *         the frame or fsync (the file stays, every flushed record in it).
 */
timeline_err_t timeline_close(timeline_t *t);

/*
 * timeline_abandon: for a forked child that inherited its parent's writer:
 * closes the descriptor and frees the memory, writing, syncing, renaming
 * and removing nothing (the file is the parent's). t is invalid afterwards.
 */
void timeline_abandon(timeline_t *t);

/* timeline_error: TIMELINE_OK, or the error that put t in the failed state. */
timeline_err_t timeline_error(const timeline_t *t);

/* timeline_published: the final file exists (the first record is in it). */
bool timeline_published(const timeline_t *t);

/* timeline_name: the final file's name without the directory,
 * "timeline.<pid>.jsonl.zst" (for the summary's list of files). */
const char *timeline_name(const timeline_t *t);

/* timeline_get_stats: fills *out. */
void timeline_get_stats(const timeline_t *t, timeline_stats_t *out);

/* ------------------------------------------------------------------------ */
/* OS seams (STYLE.md point 14): writable in test builds only               */
/* ------------------------------------------------------------------------ */

#ifdef HEAPWATCH_TEST
#define TIMELINE_SEAM
#else
#define TIMELINE_SEAM const
#endif

extern int (*TIMELINE_SEAM timeline_sys_open)(const char *path, int flags, mode_t mode);
extern ssize_t (*TIMELINE_SEAM timeline_sys_write)(int fd, const void *buf, size_t n);
extern int (*TIMELINE_SEAM timeline_sys_fsync)(int fd);
extern int (*TIMELINE_SEAM timeline_sys_rename)(const char *from, const char *to);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_TIMELINE_H */
