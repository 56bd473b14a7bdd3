/*
 * targets.c - who serves where: http.<tag>.addr and targets.json in
 * HEAPWATCH_OUT, for Prometheus' file-based service discovery.
 *
 * Each process whose HTTP server listens (HEAPWATCH_HTTP; with port 0
 * every process, forked children included, http.c) publishes its address,
 * "host:port\n", as http.<tag>.addr (the tag of its other files, output.c),
 * once, whole or not at all (out.c). targets.json lists every serving
 * process of the directory, in file_sd_configs format, one entry per
 * process:
 *
 *   [
 *     {"targets": ["127.0.0.1:40001"], "labels": {"heapwatch_pid": "4242"}}
 *   ]
 *
 * (The label is not `pid`: /metrics' heapwatch_process_info carries pid
 * and exe, and a target label of the same name would rename the scraped
 * one to exported_pid.)
 *
 * Convergence. targets.json is never edited: it is rebuilt from the
 * http.*.addr files present, and those are the truth (each process writes
 * and removes only its own). A rebuild is: take flock(LOCK_EX|LOCK_NB) on
 * a descriptor of the directory itself (no lock file), list the addr
 * files, write a temporary file (O_EXCL|O_NOFOLLOW, out.c), rename it over
 * targets.json, release the lock, then list again: if the set differs
 * from the one written, rebuild again (at most REBUILD_ROUNDS). A process
 * that finds the lock taken never waits: the holder will list again after
 * releasing it, and so sees whatever the busy process changed before its
 * try (the change came before the try, the try before the holder's
 * release, the release before its second listing). So, whoever changes
 * an addr file then tries a rebuild, the last rebuild reflects every
 * change, with no process ever waiting on the lock. Failing that (a
 * holder killed between its release and its second listing), the next
 * rebuild by any process repairs the file.
 *
 * A process announces from its HTTP server thread once it listens; a work
 * lock held by a job leaves the announcement pending, and the server
 * thread retries it every 100 ms (a failed write RETRY_MAX times at
 * most, then noted in "incomplete"). At exit (core.c, under the work
 * lock), a process removes its addr file and rebuilds, trying only. A
 * process killed by a signal leaves its addr file: a rebuild leaves out
 * the addr file of a pid that no longer exists (kill(pid, 0): ESRCH), so
 * the next rebuild by any process drops it from targets.json (the file
 * itself stays, for the record). A process that execs skips the exit
 * output too, and keeps its pid: the first rebuild by the new image
 * removes every addr file of its pid but its own (a pid has one image).
 *
 * Only addr files owned by this user are read (a sticky shared directory
 * lets others create names in it), at most ADDR_MAX bytes each; a line
 * that is not host:port is skipped. Bounds: TARGETS_MAX bytes of
 * targets.json (about 1000 processes; beyond, entries are left out and
 * the process notes it in its summary's "incomplete").
 *
 * No memory from malloc: the directory is listed with getdents64 into a
 * static buffer, text is built in static buffers, under the work lock
 * (core.h), which serialises every caller in the process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>     /* renameat() only: no stream is used */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/buf.h"
#include "agent/core.h"
#include "agent/fds.h"
#include "agent/lock.h"
#include "agent/log.h"
#include "agent/out.h"
#include "agent/output.h"
#include "agent/targets.h"

#define ADDR_MAX 128                /* bytes read of an addr file */
#define TARGETS_MAX (64u << 10)     /* bytes of targets.json */
#define REBUILD_ROUNDS 4            /* rebuilds in one call, at most */
#define RETRY_MAX 50                /* failed announcements retried (100 ms apart) */

static char addr_line[ADDR_MAX];    /* this process's "host:port\n" ("": none) */
static char addr_name[96];          /* its file, "" until published */
static bool pending;                /* a rebuild is due (atomic) */
static unsigned failures;           /* failed announcements (the HTTP thread's) */
static char text[TARGETS_MAX];
static char dents[16384];

/* ------------------------------------------------------------------------ */
/* Reading the addr files                                                   */
/* ------------------------------------------------------------------------ */

/* addr_pid: the pid of "http.<pid>[-n].addr", or 0 when name is not one. */
static long addr_pid(const char *name)
{
    size_t n = strlen(name);
    if (n < 11 || strncmp(name, "http.", 5) != 0 || strcmp(name + n - 5, ".addr") != 0) return 0;
    const char *p = name + 5;
    long pid = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        pid = pid * 10 + (*p - '0');
        if (pid > 1 << 30) return 0;
    }
    if (p == name + 5 || (*p != '-' && *p != '.')) return 0;
    return pid;
}

/* valid_addr: s is "host:port" (printable, no quote, backslash or space). */
static bool valid_addr(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1]) return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\') return false;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9') return false;
    return true;
}

/* read_addr: the address in dirfd/name (ours, regular), into out.
 * @return success. */
static bool read_addr(int dirfd, const char *name, char *out, size_t cap)
{
    int fd = agent_fd_claimat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0);
    if (fd < 0) return false;
    struct stat st;
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid()) {
        do n = read(fd, out, cap - 1);
        while (n < 0 && errno == EINTR);
    }
    agent_fd_release(fd);
    if (n <= 0) return false;
    out[n] = 0;
    char *nl = strchr(out, '\n');
    if (nl) *nl = 0;
    return valid_addr(out);
}

/* mix: a 64-bit hash step (splitmix64's finaliser). */
static uint64_t mix(uint64_t v)
{
    v ^= v >> 30; v *= 0xbf58476d1ce4e5b9ull;
    v ^= v >> 27; v *= 0x94d049bb133111ebull;
    return v ^ (v >> 31);
}

static uint64_t hash_str(const char *s, uint64_t h)
{
    for (; *s; s++) h = mix(h ^ (unsigned char)*s);
    return mix(h ^ 0xff);
}

/* list: the live processes' addresses in the directory (lockfd, a
 * descriptor of it, offset at 0): as targets.json into b when b is not
 * NULL; @return a fingerprint of the set (order-free), 0 on error. */
static uint64_t list(int lockfd, int dirfd, agent_buf_t *b, bool *truncated)
{
    uint64_t fp = 1;
    unsigned entries = 0;
    if (lseek(lockfd, 0, SEEK_SET) != 0) return 0;
    if (b) agent_buf_str(b, "[");
    for (;;) {
        long got = syscall(SYS_getdents64, lockfd, dents, sizeof dents);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return 0;
        if (got == 0) break;
        for (long off = 0; off < got;) {
            struct {
                uint64_t ino;
                int64_t off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *d = (void *)(dents + off);
            off += d->reclen;
            long pid = addr_pid(d->name);
            if (!pid || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) continue;
            if (pid == (long)getpid() && strcmp(d->name, addr_name) != 0) {
                /* Our pid, not our file: left by the image this process
                 * was before an exec (a wrapper such as env, whose
                 * exec skips the exit output), or by a dead process
                 * whose pid we reuse: stale either way. */
                (void)unlinkat(dirfd, d->name, 0);
                continue;
            }
            char addr[ADDR_MAX];
            if (!read_addr(dirfd, d->name, addr, sizeof addr)) continue;
            fp += hash_str(addr, hash_str(d->name, 0x1234));   /* a sum: order-free */
            entries++;
            if (!b) continue;
            char pidtext[24];
            agent_buf_t pb;
            agent_buf_init(&pb, pidtext, sizeof pidtext);
            agent_buf_u64(&pb, (uint64_t)pid);
            size_t before = b->len;
            agent_buf_str(b, entries > 1 ? ",\n  " : "\n  ");
            agent_buf_str(b, "{\"targets\": [");
            agent_buf_json_str(b, addr);
            agent_buf_str(b, "], \"labels\": {\"heapwatch_pid\": ");
            agent_buf_json_str(b, pidtext);
            agent_buf_str(b, "}}");
            if (b->overflow || b->cap - b->len < 8) {   /* room for the end */
                b->len = before;
                b->buf[before] = 0;
                b->overflow = false;
                *truncated = true;
            }
        }
    }
    if (b) agent_buf_str(b, entries ? "\n]\n" : "]\n");
    return fp + entries;
}

/* ------------------------------------------------------------------------ */
/* Rebuilding targets.json                                                  */
/* ------------------------------------------------------------------------ */

/* write_targets: text (len) as targets.json, replacing it atomically. */
static int write_targets(int dirfd, const char *data, size_t len)
{
    char tmp[128];
    int fd = agent_tmp_create(dirfd, "targets.json", tmp, sizeof tmp);
    if (fd < 0) return fd;
    int err = agent_write_all(fd, data, len);
    if (!err) err = agent_file_sync(fd);
    agent_fd_release(fd);
    if (!err && renameat(dirfd, tmp, dirfd, "targets.json") != 0) err = -errno;
    if (err) (void)unlinkat(dirfd, tmp, 0);
    return err;
}

/* rebuild: see the design comment. @return 0 (done, or left to the
 * process that holds the lock), -EAGAIN (still changing after
 * REBUILD_ROUNDS), or -errno. */
static int rebuild(int dirfd)
{
    for (int round = 0; round < REBUILD_ROUNDS; round++) {
        int lockfd = agent_fd_claimat(dirfd, ".", O_RDONLY | O_DIRECTORY, 0);
        if (lockfd < 0) return lockfd;
        if (flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
            int err = errno;
            agent_fd_release(lockfd);
            /* Busy: the holder lists again after its release (see top). */
            return err == EWOULDBLOCK ? 0 : -err;
        }
        agent_buf_t b;
        agent_buf_init(&b, text, sizeof text);
        bool truncated = false;
        uint64_t written = list(lockfd, dirfd, &b, &truncated);
        int err = written ? write_targets(dirfd, b.buf, b.len) : -EIO;
        (void)flock(lockfd, LOCK_UN);
        if (truncated) agent_incomplete_add("targets.json: more processes than its 64 KiB bound; some left out");
        uint64_t now = err ? 0 : list(lockfd, dirfd, NULL, &truncated);
        agent_fd_release(lockfd);
        if (err) return err;
        if (now == written) return 0;
    }
    return -EAGAIN;
}

/* ------------------------------------------------------------------------ */
/* The process's own entry                                                  */
/* ------------------------------------------------------------------------ */

/* publish_addr: http.<tag>.addr, once. @return 0 or -errno. */
static int publish_addr(int dirfd)
{
    if (addr_name[0]) return 0;
    char tmp[128];
    int fd = agent_tmp_create(dirfd, "http.addr", tmp, sizeof tmp);
    if (fd < 0) return fd;
    int err = agent_write_all(fd, addr_line, strlen(addr_line));
    if (!err) err = agent_file_sync(fd);
    agent_fd_release(fd);
    if (!err) err = agent_output_publish(dirfd, tmp, "http.", ".addr", addr_name, sizeof addr_name);
    if (err) {   /* (not in the summary's list: it is gone at exit) */
        (void)unlinkat(dirfd, tmp, 0);
        addr_name[0] = 0;
    }
    return err;
}

void agent_targets_set(const char *hostport)
{
    agent_buf_t b;
    agent_buf_init(&b, addr_line, sizeof addr_line);
    agent_buf_str(&b, hostport);
    agent_buf_str(&b, "\n");
    if (b.overflow) addr_line[0] = 0;
    __atomic_store_n(&pending, addr_line[0] != 0, __ATOMIC_RELEASE);
}

bool agent_targets_pending(void) { return __atomic_load_n(&pending, __ATOMIC_ACQUIRE); }

void agent_targets_retry(void)
{
    if (!agent_targets_pending() || !agent_work_trylock()) return;
    if (!agent_exiting()) {
        int dirfd = agent_output_dirfd();
        int err = dirfd < 0 ? dirfd : publish_addr(dirfd);
        if (!err) err = rebuild(dirfd);
        /* Done, or never (no output); a failed write is tried again,
         * RETRY_MAX times at most (a directory planted as targets.json,
         * a full disk). */
        if (err && dirfd >= 0 && ++failures == RETRY_MAX)
            agent_incomplete_add("targets.json: could not be written (gave up)");
        if (!err || dirfd < 0 || err == -EACCES || err == -EPERM || failures >= RETRY_MAX)
            __atomic_store_n(&pending, false, __ATOMIC_RELEASE);
    }
    agent_work_unlock();
}

void agent_targets_exit(void)
{
    AGENT_ASSERT_WORK_HELD();
    __atomic_store_n(&pending, false, __ATOMIC_RELEASE);
    if (!addr_name[0]) return;
    int dirfd = agent_output_dirfd();
    if (dirfd < 0) return;
    if (unlinkat(dirfd, addr_name, 0) != 0 && errno != ENOENT) {
        agent_incomplete_add("http addr file: could not be removed");
        return;
    }
    addr_name[0] = 0;
    if (rebuild(dirfd) != 0) agent_incomplete_add("targets.json: not rebuilt at exit (the next rebuild drops this process)");
}

void agent_targets_postfork_child(void)
{
    addr_line[0] = 0;   /* the parent's address and file are the parent's */
    addr_name[0] = 0;
    failures = 0;
    __atomic_store_n(&pending, false, __ATOMIC_RELAXED);
}
