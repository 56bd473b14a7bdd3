/*
 * timeline.c - the zstd-compressed JSONL timeline writer.
 *
 * Flushed at every record. SPEC wants a streaming reader to get every
 * record while the program runs and after `kill -9`. ZSTD_e_flush ends the
 * current block, so everything given so far is decodable, and a write(2)
 * puts it in the page cache, which outlives the process. We fsync only at
 * publication and at close, and the agent not even there unless
 * HEAPWATCH_FSYNC=on (opts->no_fsync; conf.h): an fsync per interval would
 * cost more than the rest of the background thread's work, and at exit two
 * of them were a third of what a short process paid for the agent, for
 * durability across a machine crash that SPEC does not ask for.
 *
 * One record (opts->one_record: the exit record of a process that took no
 * snapshot before, most short processes) is written as a frame with one
 * raw block and its checksum, without a compressor (raw_frame): creating
 * zstd's context and touching its tables cost a short process more than
 * the rest of its timeline, to save fifty bytes.
 *
 * Frames end every TIMELINE_FRAME_RECORDS records or TIMELINE_FRAME_BYTES
 * uncompressed bytes. A frame's checksum comes only at its end, and after
 * a kill `zstdcat` complains about the unfinished last frame: shorter frames
 * mean more verified data and a point a tool can resume from. Each new frame
 * restarts the compression history, which costs a little ratio on its first
 * record; 256 records (about 4 minutes at the default interval) or 64 KiB
 * keeps that under 1%.
 *
 * Parameters, measured on 10,000 records shaped like the agent's (~225
 * bytes): about 71 compressed bytes per record at every window log from 12
 * to 17 and every level from 1 to 3, because a record's redundancy is with
 * the previous few records (same keys, close numbers). What the window log
 * changes is memory: zstd's buffers scale with the block size, which is
 * min(128 KiB, window): the compressor takes 976 KB at log 17, 534 KB at 16,
 * 200 KB at 14; level 2 adds 200 KB and level 3 700 KB for nothing. So:
 * level 1, window log 14; a reader needs 16 KiB of window.
 *
 * Memory. The compressor is created with ZSTD_createCCtx_advanced and a
 * ZSTD_customMem that forwards to the map_allocator_t (both take no size on
 * free). zstd allocates its workspace lazily, on the first compression
 * call; open makes that call itself with no input (ZSTD_e_continue writes
 * nothing), so every allocation happens at open, and the steady state
 * allocates nothing: zstd reuses the workspace for each new frame with the
 * same parameters. ZSTD_createCCtx_advanced and ZSTD_customMem sit behind
 * ZSTD_STATIC_LINKING_ONLY but have been unchanged since zstd 1.3 and are
 * exported by libzstd.so.1; the agent links libzstd.a into itself (one
 * library fewer to load per process, agent/agent.mk), where they are
 * plainly there.
 *
 * Publication. open creates the temporary file, so a directory we cannot
 * write to fails at open. The first append writes a complete flushed
 * record (frame header and first block), fsyncs, and renames to the final
 * name: a reader never sees an empty or headerless file.
 *
 * Descriptors. The agent's writer (timeline_open_io) keeps none: a program
 * may close any descriptor number and reuse it (a shell's `exec 5>&1`, a
 * daemon closing 3..1023), and a number kept from one snapshot to the
 * next could then be the program's own file. Each append opens the file
 * through the verified output directory (out.c) with O_APPEND|O_NOFOLLOW,
 * checks that it is the inode created at open (device, inode, owner), and
 * checks it again before every write and before the close. Everything a
 * record produces is flushed by then, so nothing is lost between opens.
 * Two exceptions save a short process two opens of the file (issue 13):
 * a one-record writer (the exit record of a process that never had a
 * snapshot) keeps the descriptor it created from open to that record's
 * append, which the caller makes at once (the same checks before each
 * write); and the close opens the file only when it has something to do
 * there (a frame to end, or an fsync).
 * A file removed or replaced behind the writer stops it (sticky
 * TIMELINE_ERR_STALE): it never writes into a file it did not create.
 * The path-based writer (timeline_open, unit tests and tools) keeps one
 * descriptor from open to close, as before.
 *
 * Failure. Any write, fsync, rename or compressor error is sticky: the
 * agent logs it once and the writer does nothing more; no crash, no retry
 * (a half-written block cannot be continued). Before publication the
 * temporary file is removed at once, so no timeline appears.
 *
 * Fork. A child must not write to its parent's file: a single write would
 * land in the middle of the parent's compressed stream and corrupt it.
 * timeline_abandon only frees (and, for the path-based writer, closes its
 * inherited descriptor).
 */
#define _GNU_SOURCE
#define ZSTD_STATIC_LINKING_ONLY   /* ZSTD_customMem, ZSTD_createCCtx_advanced */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>      /* rename() only: no stream is used */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "agent/buf.h"
#include "agent/conf.h"
#include "agent/fds.h"
#include "agent/out.h"
#include "agent/timeline.h"

#define OUT_BUF (16u * 1024u)   /* compressed bytes per write; zstd loops to fill it */
#define NAME_MAX_LEN 64         /* "timeline.<pid>[-<n>].jsonl.zst" */

struct timeline_s {
    map_allocator_t allocator;  /* copied at open; zstd's opaque points here */
    ZSTD_CCtx *cctx;
    int fd;                     /* path mode: kept; io mode: only inside a call (and
                                 * from open to the append of a one-record writer) */
    bool use_io;                /* opened by timeline_open_io */
    timeline_io_t io;
    dev_t dev;                  /* io mode: the file created at open */
    ino_t ino;
    char tmp[NAME_MAX_LEN + 40];  /* io mode: temporary name in the directory */
    timeline_err_t error;       /* sticky: the failed state */
    bool published;             /* renamed to the final name */
    bool no_fsync;              /* opts->no_fsync: never fsync */
    size_t one_record;          /* opts->one_record */
    unsigned frame_records;     /* limits of a frame */
    size_t frame_bytes;
    unsigned records_in_frame;  /* 0: no frame open */
    size_t bytes_in_frame;
    size_t pending;             /* bytes in out[] not yet written */
    timeline_stats_t stats;
    char name[NAME_MAX_LEN];
    char path[CONF_PATH_MAX + NAME_MAX_LEN];
    char tmp_path[CONF_PATH_MAX + 2 * NAME_MAX_LEN];
    unsigned char out[OUT_BUF];
};

const char *timeline_strerror(timeline_err_t err)
{
    switch (err) {
    case TIMELINE_OK: return "ok";
    case TIMELINE_ERR_NOMEM: return "out of memory";
    case TIMELINE_ERR_INVALID: return "invalid argument";
    case TIMELINE_ERR_NOSPACE: return "no space left on device";
    case TIMELINE_ERR_PERM: return "permission denied";
    case TIMELINE_ERR_NOENT: return "no such directory";
    case TIMELINE_ERR_IO: return "input/output error";
    case TIMELINE_ERR_ZSTD: return "zstd compression error";
    case TIMELINE_ERR_STALE: return "the file was removed or replaced by someone else";
    case TIMELINE_ERR_EXISTS: return "the file name is taken";
    }
    return "unknown error";
}

/* ------------------------------------------------------------------------ */
/* Seams and system calls                                                   */
/* ------------------------------------------------------------------------ */

static int sys_open(const char *path, int flags, mode_t mode)
{
    return open(path, flags, mode);
}

int (*TIMELINE_SEAM timeline_sys_open)(const char *, int, mode_t) = sys_open;
ssize_t (*TIMELINE_SEAM timeline_sys_write)(int, const void *, size_t) = write;
int (*TIMELINE_SEAM timeline_sys_fsync)(int) = fsync;
int (*TIMELINE_SEAM timeline_sys_rename)(const char *, const char *) = rename;

static timeline_err_t errno_to_err(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return TIMELINE_ERR_NOSPACE;
    case EACCES:
    case EPERM:
    case EROFS:
        return TIMELINE_ERR_PERM;
    case ENOENT:
    case ENOTDIR:
        return TIMELINE_ERR_NOENT;
    case ENOMEM:
        return TIMELINE_ERR_NOMEM;
    case ENAMETOOLONG:
        return TIMELINE_ERR_INVALID;
    case ESTALE:
    case EBADF:
        return TIMELINE_ERR_STALE;
    case EEXIST:
        return TIMELINE_ERR_EXISTS;
    default:
        return TIMELINE_ERR_IO;
    }
}

/* write_all: n bytes, retrying on EINTR and after short writes; a write
 * that makes no progress is a full disk. */
static timeline_err_t write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = timeline_sys_write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno_to_err(errno);
        }
        if (w == 0) return TIMELINE_ERR_NOSPACE;
        p += w;
        n -= (size_t)w;
    }
    return TIMELINE_OK;
}

/* ------------------------------------------------------------------------ */
/* zstd plumbing                                                            */
/* ------------------------------------------------------------------------ */

static void *zstd_alloc(void *opaque, size_t size)
{
    const map_allocator_t *a = opaque;
    return a->alloc(a->ctx, size);
}

static void zstd_free(void *opaque, void *ptr)
{
    const map_allocator_t *a = opaque;
    if (ptr) a->free(a->ctx, ptr);
}

static timeline_err_t zstd_err(size_t ret)
{
    return ZSTD_getErrorCode(ret) == ZSTD_error_memory_allocation ? TIMELINE_ERR_NOMEM
                                                                   : TIMELINE_ERR_ZSTD;
}

static bool fd_ok(const timeline_t *t);

/* ------------------------------------------------------------------------ */
/* One record: a frame with a raw block, no compressor                      */
/* ------------------------------------------------------------------------ */

/* xxh64: XXH64 (seed 0), the checksum a zstd frame ends with (its low 32
 * bits), per the xxHash specification; tests decode the frames with
 * libzstd, which verifies it. */
#define XXP1 0x9E3779B185EBCA87ull
#define XXP2 0xC2B2AE3D27D4EB4Full
#define XXP3 0x165667B19E3779F9ull
#define XXP4 0x85EBCA77C2B2AE63ull
#define XXP5 0x27D4EB2F165667C5ull

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t le64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }   /* x86-64: LE */
static uint32_t le32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t xx_round(uint64_t acc, uint64_t in) { return rotl64(acc + in * XXP2, 31) * XXP1; }
static uint64_t xx_merge(uint64_t h, uint64_t v) { return (h ^ xx_round(0, v)) * XXP1 + XXP4; }

static uint64_t xxh64(const unsigned char *p, size_t len)
{
    const unsigned char *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = XXP1 + XXP2, v2 = XXP2, v3 = 0, v4 = 0 - XXP1;
        for (; end - p >= 32; p += 32) {
            v1 = xx_round(v1, le64(p));
            v2 = xx_round(v2, le64(p + 8));
            v3 = xx_round(v3, le64(p + 16));
            v4 = xx_round(v4, le64(p + 24));
        }
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xx_merge(xx_merge(xx_merge(xx_merge(h, v1), v2), v3), v4);
    } else {
        h = XXP5;
    }
    h += len;
    for (; end - p >= 8; p += 8) h = rotl64(h ^ xx_round(0, le64(p)), 27) * XXP1 + XXP4;
    if (end - p >= 4) {
        h = rotl64(h ^ (uint64_t)le32(p) * XXP1, 23) * XXP2 + XXP3;
        p += 4;
    }
    for (; p < end; p++) h = rotl64(h ^ *p * XXP5, 11) * XXP1;
    h ^= h >> 33;
    h *= XXP2;
    h ^= h >> 29;
    h *= XXP3;
    return h ^ (h >> 32);
}

/* RAW_FRAME_MAX: the largest record raw_frame takes: its frame (at most
 * 17 bytes around the record) fits out[], and a raw block holds at most
 * 128 KiB. */
#define RAW_FRAME_MAX (OUT_BUF - 32)

/* raw_frame: the one record as a whole zstd frame (RFC 8878) in out[]:
 * magic; a header with the single-segment flag, the content size and the
 * checksum flag (as the compressor's frames); one last raw block; the
 * checksum. zstd would compress a ~250-byte record by a fifth, but its
 * context costs a short process more than the rest of the timeline
 * (issue 13: ~60 us of /bin/true's exit, mostly first touches of its
 * tables). @return the frame's length. */
static size_t raw_frame(unsigned char *out, const unsigned char *in, size_t len)
{
    size_t k = 0;
    static const unsigned char magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };
    memcpy(out, magic, 4);
    k = 4;
    if (len < 256) {                          /* content size in 1 byte */
        out[k++] = 0x20 | 0x04;               /* single segment, checksum */
        out[k++] = (unsigned char)len;
    } else {                                  /* in 2 bytes, less 256 */
        out[k++] = 0x40 | 0x20 | 0x04;
        out[k++] = (unsigned char)((len - 256) & 0xff);
        out[k++] = (unsigned char)((len - 256) >> 8);
    }
    uint32_t bh = 1u | (0u << 1) | ((uint32_t)len << 3);   /* last, raw, size */
    out[k++] = (unsigned char)bh;
    out[k++] = (unsigned char)(bh >> 8);
    out[k++] = (unsigned char)(bh >> 16);
    memcpy(out + k, in, len);
    k += len;
    uint32_t sum = (uint32_t)xxh64(in, len);
    memcpy(out + k, &sum, 4);                 /* little-endian, as x86-64 */
    return k + 4;
}

/* ------------------------------------------------------------------------ */

/* compress: feeds in[0..len) with directive `how` and writes out whatever
 * zstd produces, until it has taken all the input and, for a flush or an
 * end, emitted everything. A one-record writer has no compressor: its
 * record goes out as raw_frame's frame. */
static timeline_err_t compress(timeline_t *t, const void *in, size_t len, ZSTD_EndDirective how)
{
    if (!t->cctx) {
        if (!len) return TIMELINE_OK;
        t->pending = raw_frame(t->out, in, len);
        if (!fd_ok(t)) return TIMELINE_ERR_STALE;
        timeline_err_t err = write_all(t->fd, t->out, t->pending);
        if (err) return err;
        t->stats.bytes_out += t->pending;
        t->pending = 0;
        return TIMELINE_OK;
    }
    ZSTD_inBuffer ib = { in, len, 0 };
    for (;;) {
        ZSTD_outBuffer ob = { t->out, sizeof t->out, t->pending };
        size_t left = ZSTD_compressStream2(t->cctx, &ob, &ib, how);
        if (ZSTD_isError(left)) return zstd_err(left);
        t->pending = ob.pos;
        bool done = ib.pos == ib.size && (how == ZSTD_e_continue || left == 0);
        if (t->pending && (done || ob.pos == ob.size)) {
            if (!fd_ok(t)) return TIMELINE_ERR_STALE;
            timeline_err_t err = write_all(t->fd, t->out, t->pending);
            if (err) return err;
            t->stats.bytes_out += t->pending;
            t->pending = 0;
        }
        if (done) return TIMELINE_OK;
    }
}

/* make_compressor: the context, its parameters, and its workspace; for
 * one record (up to RAW_FRAME_MAX bytes), none: raw_frame writes it. A
 * longer one gets a context that knows its size and allocates its
 * (smaller) workspace at that record: zstd sizes its tables to a pledged
 * source. */
static timeline_err_t make_compressor(timeline_t *t, int level)
{
    if (t->one_record && t->one_record <= RAW_FRAME_MAX) return TIMELINE_OK;
    ZSTD_customMem mem = { zstd_alloc, zstd_free, &t->allocator };
    t->cctx = ZSTD_createCCtx_advanced(mem);
    if (!t->cctx) return TIMELINE_ERR_NOMEM;
    size_t r = ZSTD_CCtx_setParameter(t->cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(t->cctx, ZSTD_c_windowLog, TIMELINE_WINDOW_LOG);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(t->cctx, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r) && t->one_record) r = ZSTD_CCtx_setPledgedSrcSize(t->cctx, t->one_record);
    if (ZSTD_isError(r)) return zstd_err(r);
    if (t->one_record) return TIMELINE_OK;
    /* The warm-up: allocates the workspace now; with no input and
     * ZSTD_e_continue zstd emits nothing (kept in out[] if it ever did). */
    ZSTD_inBuffer ib = { NULL, 0, 0 };
    ZSTD_outBuffer ob = { t->out, sizeof t->out, 0 };
    r = ZSTD_compressStream2(t->cctx, &ob, &ib, ZSTD_e_continue);
    if (ZSTD_isError(r)) return zstd_err(r);
    t->pending = ob.pos;
    return TIMELINE_OK;
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                               */
/* ------------------------------------------------------------------------ */

/* make_paths: name, final path and temporary path (agent_write_file_atomic's
 * ".<name>.tmp.<pid>" convention). */
static timeline_err_t make_paths(timeline_t *t, const char *dir, pid_t pid)
{
    agent_buf_t b;
    agent_buf_init(&b, t->name, sizeof t->name);
    agent_buf_str(&b, "timeline.");
    agent_buf_u64(&b, (uint64_t)pid);
    agent_buf_str(&b, ".jsonl.zst");
    bool overflow = b.overflow;
    agent_buf_init(&b, t->path, sizeof t->path);
    agent_buf_str(&b, dir);
    agent_buf_str(&b, "/");
    agent_buf_str(&b, t->name);
    overflow |= b.overflow;
    agent_buf_init(&b, t->tmp_path, sizeof t->tmp_path);
    agent_buf_str(&b, dir);
    agent_buf_str(&b, "/.");
    agent_buf_str(&b, t->name);
    agent_buf_str(&b, ".tmp.");
    agent_buf_u64(&b, (uint64_t)pid);
    overflow |= b.overflow;
    return overflow ? TIMELINE_ERR_INVALID : TIMELINE_OK;
}

/* release: frees the compressor and the writer (not the file). */
static void release(timeline_t *t)
{
    map_allocator_t a = t->allocator;
    ZSTD_freeCCtx(t->cctx);     /* NULL is fine */
    a.free(a.ctx, t);
}

/* new_writer: a zeroed writer with the allocator and frame options
 * (both modes), or NULL. */
static timeline_t *new_writer(const map_allocator_t *allocator, const timeline_opts_t *opts)
{
    timeline_t *t = allocator->alloc(allocator->ctx, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->allocator = *allocator;
    t->fd = -1;
    t->frame_records = opts && opts->frame_records ? opts->frame_records : TIMELINE_FRAME_RECORDS;
    t->frame_bytes = opts && opts->frame_bytes ? opts->frame_bytes : TIMELINE_FRAME_BYTES;
    t->no_fsync = opts && opts->no_fsync;
    t->one_record = opts ? opts->one_record : 0;
    return t;
}

timeline_err_t timeline_open(timeline_t **out, const map_allocator_t *allocator,
                             const char *dir, pid_t pid, const timeline_opts_t *opts)
{
    if (!out) return TIMELINE_ERR_INVALID;
    *out = NULL;
    if (!allocator || !allocator->alloc || !allocator->free || !dir || !*dir || pid <= 0 ||
        strlen(dir) >= CONF_PATH_MAX)
        return TIMELINE_ERR_INVALID;
    timeline_t *t = new_writer(allocator, opts);
    if (!t) return TIMELINE_ERR_NOMEM;
    int level = opts && opts->level ? opts->level : TIMELINE_LEVEL;

    timeline_err_t err = make_paths(t, dir, pid);
    if (!err) err = make_compressor(t, level);
    if (!err) {
        /* Last, so that no failure above leaves a file behind. */
        t->fd = timeline_sys_open(t->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (t->fd < 0) err = errno_to_err(errno);
    }
    if (err) {
        release(t);
        return err;
    }
    *out = t;
    return TIMELINE_OK;
}

timeline_err_t timeline_open_io(timeline_t **out, const map_allocator_t *allocator,
                                const timeline_io_t *io, const char *base,
                                const timeline_opts_t *opts)
{
    if (!out) return TIMELINE_ERR_INVALID;
    *out = NULL;
    if (!allocator || !allocator->alloc || !allocator->free || !io || !io->dirfd || !io->publish ||
        !base || !*base || strlen(base) >= NAME_MAX_LEN)
        return TIMELINE_ERR_INVALID;
    timeline_t *t = new_writer(allocator, opts);
    if (!t) return TIMELINE_ERR_NOMEM;
    t->use_io = true;
    t->io = *io;
    int level = opts && opts->level ? opts->level : TIMELINE_LEVEL;
    memcpy(t->name, base, strlen(base) + 1);

    timeline_err_t err = make_compressor(t, level);
    if (!err) {
        /* Last, so that no failure above leaves a file behind. */
        int dirfd = t->io.dirfd(t->io.ctx);
        int fd = dirfd < 0 ? dirfd : agent_tmp_create(dirfd, base, t->tmp, sizeof t->tmp);
        struct stat st;
        if (fd < 0) {
            err = errno_to_err(-fd);
        } else {
            if (fstat(fd, &st) == 0) {
                t->dev = st.st_dev;
                t->ino = st.st_ino;
            } else {
                err = errno_to_err(errno);
                (void)unlinkat(dirfd, t->tmp, 0);
            }
            if (!err && t->one_record) t->fd = fd;   /* for the append that follows */
            else agent_fd_release(fd);
        }
    }
    if (err) {
        release(t);
        return err;
    }
    *out = t;
    return TIMELINE_OK;
}

/* file_begin: io mode: opens the file for this call (t->fd), checked to
 * be the one created at open. Path mode: the kept descriptor. */
static timeline_err_t file_begin(timeline_t *t)
{
    if (!t->use_io) return TIMELINE_OK;
    if (t->fd >= 0) return TIMELINE_OK;   /* a one-record writer's, from open */
    int dirfd = t->io.dirfd(t->io.ctx);
    if (dirfd < 0) return errno_to_err(-dirfd);
    int fd = agent_fd_claimat(dirfd, t->published ? t->name : t->tmp, O_WRONLY | O_APPEND | O_NOFOLLOW, 0);
    if (fd < 0) return fd == -ENOENT || fd == -ELOOP || fd == -ESTALE ? TIMELINE_ERR_STALE : errno_to_err(-fd);
    if (agent_file_check(fd, t->dev, t->ino) != 0) {
        agent_fd_release(fd);   /* ours, though not our file */
        return TIMELINE_ERR_STALE;
    }
    t->fd = fd;
    return TIMELINE_OK;
}

/* file_end: io mode: closes the call's descriptor if it is still the one
 * opened (a thread of the program may have closed and reused it). */
static void file_end(timeline_t *t)
{
    if (!t->use_io || t->fd < 0) return;
    agent_fd_release(t->fd);   /* only while it still holds our file */
    t->fd = -1;
}

/* fd_ok: the descriptor may be written (io mode: still our file). */
static bool fd_ok(const timeline_t *t)
{
    return !t->use_io || agent_file_check(t->fd, t->dev, t->ino) == 0;
}

/* fail: enters the failed state; before publication nothing may appear. */
static timeline_err_t fail(timeline_t *t, timeline_err_t err)
{
    t->error = err;
    if (!t->published) {
        if (!t->use_io) {
            unlink(t->tmp_path);
        } else {
            int dirfd = t->io.dirfd(t->io.ctx);
            if (dirfd >= 0) (void)unlinkat(dirfd, t->tmp, 0);
        }
    }
    return err;
}

/* sync: fsync, unless the writer was opened with no_fsync. */
static bool sync_ok(timeline_t *t)
{
    return t->no_fsync || timeline_sys_fsync(t->fd) == 0;
}

/* publish: the temporary file holds a complete flushed record: make it
 * durable (unless no_fsync), then visible. */
static timeline_err_t publish(timeline_t *t)
{
    if (!sync_ok(t)) return errno_to_err(errno);
    if (t->use_io) {
        int dirfd = t->io.dirfd(t->io.ctx);
        int err = dirfd < 0 ? dirfd : t->io.publish(t->io.ctx, dirfd, t->tmp, t->name, sizeof t->name);
        if (err) return errno_to_err(-err);
    } else if (timeline_sys_rename(t->tmp_path, t->path) != 0) {
        return errno_to_err(errno);
    }
    t->published = true;
    return TIMELINE_OK;
}

timeline_err_t timeline_append(timeline_t *t, const char *line, size_t len)
{
    if (!t || !line) return TIMELINE_ERR_INVALID;
    if (t->error) return t->error;
    if (len == 0 || line[len - 1] != '\n') return TIMELINE_ERR_INVALID;
    if (t->one_record && (len != t->one_record || t->stats.records)) return TIMELINE_ERR_INVALID;

    bool end = t->records_in_frame + 1 >= t->frame_records ||
               t->bytes_in_frame + len >= t->frame_bytes || t->one_record;
    timeline_err_t err = file_begin(t);
    if (!err) err = compress(t, line, len, end ? ZSTD_e_end : ZSTD_e_flush);
    if (!err && !t->published) err = publish(t);
    file_end(t);
    if (err) return fail(t, err);

    t->stats.records++;
    t->stats.bytes_in += len;
    if (end) {
        t->stats.frames++;
        t->records_in_frame = 0;
        t->bytes_in_frame = 0;
    } else {
        t->records_in_frame++;
        t->bytes_in_frame += len;
    }
    return TIMELINE_OK;
}

timeline_err_t timeline_close(timeline_t *t)
{
    if (!t) return TIMELINE_ERR_INVALID;
    timeline_err_t err = t->error;
    if (t->use_io) {
        file_end(t);   /* a one-record writer's descriptor, if never appended to */
        /* The file is opened only for work there: a frame to end, an fsync. */
        if (!err && t->published && (t->records_in_frame || !t->no_fsync)) {
            err = file_begin(t);
            if (!err && t->records_in_frame) {
                err = compress(t, NULL, 0, ZSTD_e_end);
                if (!err) t->stats.frames++;
            }
            if (!err && (!fd_ok(t) || !sync_ok(t))) err = errno_to_err(errno);
            file_end(t);
        }
        if (!t->published && !t->error) (void)fail(t, TIMELINE_OK);   /* no record: no timeline */
        release(t);
        return err;
    }
    if (!err && t->published && t->records_in_frame) {
        err = compress(t, NULL, 0, ZSTD_e_end);
        if (!err) t->stats.frames++;
    }
    if (!err && t->published && !sync_ok(t)) err = errno_to_err(errno);
    if (close(t->fd) != 0 && !err && t->published) err = errno_to_err(errno);
    if (!t->published) unlink(t->tmp_path);   /* no record: no timeline */
    release(t);
    return err;
}

void timeline_abandon(timeline_t *t)
{
    if (!t) return;
    if (!t->use_io) close(t->fd);
    else file_end(t);               /* io mode keeps none, but a one-record writer's */
    release(t);
}

timeline_err_t timeline_error(const timeline_t *t)
{
    return t->error;
}

bool timeline_published(const timeline_t *t)
{
    return t->published;
}

const char *timeline_name(const timeline_t *t)
{
    return t->name;
}

void timeline_get_stats(const timeline_t *t, timeline_stats_t *out)
{
    *out = t->stats;
}
