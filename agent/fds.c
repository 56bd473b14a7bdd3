/*
 * fds.c - descriptors the agent opens for itself.
 *
 * The program may close any descriptor at any moment (daemons close
 * 3..1023 after start) and may dup2 over any number at any moment (a
 * shell's `exec 3>log` takes 3 whether or not someone holds it). The
 * kernel hands out the lowest free number. So, in the program's table:
 *
 *   - Claimed at once. A descriptor the agent opens takes its identity
 *     (device, inode) from the name it was opened by (fstatat), not from
 *     what the number holds by the time we look; it is moved to a high
 *     number (F_DUPFD_CLOEXEC at half the descriptor limit, at most 1024:
 *     numbers shells and programs do not pick), and the low number is
 *     closed only if it still holds that file. A number that no longer
 *     does is the program's: left alone.
 *   - Checked before every use and every close. Claimed descriptors sit in
 *     a small table (CLAIMS) with their identity; agent_fd_release closes
 *     one only while it still holds its file with the close-on-exec flag
 *     the agent set (dup2 and dup3 without O_CLOEXEC clear it), and
 *     otherwise only forgets it. agent_fd_t (agent_fd_open, agent_fd_ours,
 *     agent_fd_close) is the same for callers that keep the identity
 *     themselves.
 *   - What remains: a check and the call it guards are two system calls;
 *     a program thread that dup2's over that very number exactly in
 *     between is not excluded, only made unlikely.
 *
 * A table of our own. The background thread's jobs (snapshots, the
 * timeline, alerts, periodic and signal profiles) run on a worker thread
 * that first gives itself a descriptor table of its own holding nothing
 * (agent_fds_private: close_range(CLOSE_RANGE_UNSHARE), which copies no
 * descriptor of the program's, so no file of the program's gains a
 * reference, a pipe's end is never held open, and no POSIX lock of the
 * program's can be dropped by our closes). Nothing such a thread opens,
 * writes or closes can meet the program's numbers; claims are not needed
 * there. Its messages reach the program's stderr through a borrowed copy
 * (log.c). The exit output and the jobs of HEAPWATCH_THREAD=off run on
 * the program's threads, in the shared table, with the rules above.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/fds.h"
#include "pprof/pprof.h"

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

#define CLAIMS 32                    /* descriptors held at once (a handful are) */

static struct claim_s {
    int fd_plus1;                    /* 0: free slot (atomic) */
    dev_t dev;
    ino_t ino;
} claims[CLAIMS];

static AGENT_TLS bool files_private; /* this thread has its own descriptor table */

static bool same_file(int fd, dev_t dev, ino_t ino)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

static bool cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    return flags >= 0 && (flags & FD_CLOEXEC);
}

/* high_base: the lowest number the agent moves its descriptors to (0:
 * none, the limit is too low to spare). */
static int high_base(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < 64) return 0;
    return rl.rlim_cur >= 2048 ? 1024 : (int)(rl.rlim_cur / 2);
}

static void claim_record(int fd, dev_t dev, ino_t ino)
{
    agent_fd_forget(fd);   /* a slot left for this number (the program took it back) */
    for (int i = 0; i < CLAIMS; i++) {
        int free_slot = 0;
        if (__atomic_compare_exchange_n(&claims[i].fd_plus1, &free_slot, fd + 1, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            claims[i].dev = dev;
            claims[i].ino = ino;
            return;
        }
    }
    /* Full (never seen: the agent holds a handful): the descriptor is
     * still closed only after the close-on-exec check. */
}

/* claim: fd was just returned for the file `want` describes. @return it
 * at a high number, or -ESTALE when the program took the number. */
static int claim(int fd, const struct stat *want)
{
    if (!same_file(fd, want->st_dev, want->st_ino)) return -ESTALE;   /* not ours: left alone */
    int base = high_base();
    int hi = base > fd ? fcntl(fd, F_DUPFD_CLOEXEC, base) : -1;
    if (hi >= 0) {
        if (!same_file(hi, want->st_dev, want->st_ino)) {
            close(hi);               /* our copy of what the program put there */
            return -ESTALE;
        }
        if (same_file(fd, want->st_dev, want->st_ino)) close(fd);
        fd = hi;
    }
    claim_record(fd, want->st_dev, want->st_ino);
    return fd;
}

int agent_fd_claimat(int dirfd, const char *name, int flags, mode_t mode)
{
    int fd = openat(dirfd, name, flags | O_CLOEXEC, mode);
    if (fd < 0) return -errno;
    if (files_private) return fd;    /* a table of our own: every number is ours */
    struct stat want;
    if (fstatat(dirfd, name, &want, (flags & O_NOFOLLOW) ? AT_SYMLINK_NOFOLLOW : 0) != 0) {
        int err = -errno;
        /* The name went away meanwhile: fd is ours only while it is
         * still a close-on-exec descriptor. */
        if (cloexec(fd)) close(fd);
        return err;
    }
    return claim(fd, &want);
}

int agent_fd_claim(int fd)
{
    struct stat st;
    if (fd < 0) return -errno;   /* socket's or accept's failure, passed on */
    if (files_private) return fd;
    if (fstat(fd, &st) != 0) return -errno;
    return claim(fd, &st);
}

void agent_fd_release(int fd)
{
    if (fd < 0) return;
    if (files_private) {
        close(fd);
        return;
    }
    for (int i = 0; i < CLAIMS; i++) {
        if (__atomic_load_n(&claims[i].fd_plus1, __ATOMIC_ACQUIRE) != fd + 1) continue;
        if (cloexec(fd) && same_file(fd, claims[i].dev, claims[i].ino)) close(fd);
        __atomic_store_n(&claims[i].fd_plus1, 0, __ATOMIC_RELEASE);
        return;
    }
    if (cloexec(fd)) close(fd);
}

void agent_fd_forget(int fd)
{
    if (files_private) return;
    for (int i = 0; i < CLAIMS; i++)
        if (__atomic_load_n(&claims[i].fd_plus1, __ATOMIC_ACQUIRE) == fd + 1) {
            __atomic_store_n(&claims[i].fd_plus1, 0, __ATOMIC_RELEASE);
            return;
        }
}

void agent_fds_postfork_child(void)
{
    /* Only the forking thread survived: whatever the agent's other threads
     * held (an HTTP client, a profile being sent, the output directory)
     * is no use here and would keep a connection or a file open for the
     * child's life. Closed while still the agent's, else forgotten. */
    for (int i = 0; i < CLAIMS; i++) {
        int fd = __atomic_load_n(&claims[i].fd_plus1, __ATOMIC_ACQUIRE) - 1;
        if (fd < 0) continue;
        if (cloexec(fd) && same_file(fd, claims[i].dev, claims[i].ino)) close(fd);
        __atomic_store_n(&claims[i].fd_plus1, 0, __ATOMIC_RELEASE);
    }
}

bool agent_fds_private(void)
{
    if (files_private) return true;
    if (syscall(SYS_close_range, 0u, ~0u, CLOSE_RANGE_UNSHARE) != 0) return false;
    files_private = true;
    return true;
}

bool agent_fds_are_private(void) { return files_private; }

/* pprof_open: pprof's opens (/proc/self/maps, the files behind mappings),
 * claimed like the agent's own. */
static int pprof_open(const char *path, int flags)
{
    int fd = agent_fd_claimat(AT_FDCWD, path, flags, 0);
    if (fd >= 0) return fd;
    errno = -fd;
    return -1;
}

void agent_fds_init(void)
{
    const pprof_fd_hooks_t hooks = { pprof_open, agent_fd_release };
    pprof_set_fd_hooks(&hooks);
}

/* ------------------------------------------------------------------------ */
/* agent_fd_t: the same, with the identity kept by the caller               */
/* ------------------------------------------------------------------------ */

int agent_fd_open(agent_fd_t *f, const char *path, int flags)
{
    f->fd = -1;
    int fd = agent_fd_claimat(AT_FDCWD, path, flags, 0);
    struct stat st;
    if (fd < 0) return fd;
    if (fstat(fd, &st) != 0) {
        int err = -errno;
        agent_fd_release(fd);
        return err;
    }
    f->fd = fd;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    return 0;
}

ssize_t agent_fd_read_text(const char *path, char *buf, size_t cap)
{
    buf[0] = 0;
    agent_fd_t f;
    if (agent_fd_open(&f, path, O_RDONLY) != 0) return -1;
    ssize_t n = agent_fd_ours(&f) ? read(f.fd, buf, cap - 1) : -1;
    agent_fd_close(&f);
    if (n <= 0) return -1;
    buf[n] = 0;
    return n;
}

bool agent_fd_ours(const agent_fd_t *f)
{
    return f->fd >= 0 && same_file(f->fd, f->dev, f->ino) && cloexec(f->fd);
}

void agent_fd_close(agent_fd_t *f)
{
    if (f->fd < 0) return;
    if (agent_fd_ours(f)) agent_fd_release(f->fd);
    else agent_fd_forget(f->fd);
    f->fd = -1;
}
