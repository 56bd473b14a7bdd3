/*
 * out.c - the output directory and the files in it, none of which
 * allocates: the directory reached safely, temporary files no one can
 * predict, files that appear whole or not at all, names never replaced.
 * (Text is built with buf.c, stderr lines go through log.c.)
 *
 * The output directory (HEAPWATCH_OUT) may sit where other users can
 * write (/tmp, a CI scratch directory), and the agent often runs as root.
 * Rules, so that no other user can steer a write:
 *   - It is reached by a walk from "/", one component at a time, with
 *     openat(O_DIRECTORY|O_NOFOLLOW). Every directory on the way, the last
 *     one included, must be owned by this user (the effective uid) or root,
 *     and must not be group- or world-writable unless it has the sticky bit
 *     (whoever can write a non-sticky directory can replace what is in it).
 *     A symbolic link on the way is followed only when root or this user
 *     owns it (what the kernel's protected_symlinks also trusts); the
 *     directory it leads to is checked like any other. Anything else is
 *     refused: no output at all, one stderr line (output.c), the program
 *     runs on.
 *   - Missing components are created mode 0755 (& ~umask): never
 *     writable by others, whatever the umask.
 *   - Once a walk has approved the directory, later rounds (the exit
 *     output, after the one at start) first open the whole path at once
 *     and keep that descriptor only when it is the very directory the walk
 *     approved (device and inode) and that directory is still safe (owner,
 *     mode): writes land in a directory no other user can write to, the
 *     one checked, whatever the path went through. Anything else (a
 *     missing, replaced or changed directory) walks again, with every
 *     check. A walk of four components costs some fifty system calls
 *     (claims included), the single open ten: a short process makes both
 *     rounds (issue 13).
 *   - The directory is opened for a round of output (claimed at a high
 *     descriptor number, fds.c) and closed after it (agent_outdir_drop:
 *     a program that lists its own descriptors sees none of ours between
 *     rounds), and checked before every use: the descriptor still has our
 *     close-on-exec flag and the same device and inode, and the path
 *     still names that directory. When it changed (the program closed or
 *     reused the number, removed or replaced the directory), the number is
 *     forgotten, never closed (it may be the program's now), and the
 *     directory is walked to again, with every check.
 *   - Files are created inside it only with openat(O_CREAT|O_EXCL|
 *     O_NOFOLLOW) under a temporary name no one can predict
 *     (".<name>.tmp.<16 hex digits from getrandom>"), then renamed within
 *     the directory. A planted link is never followed, and a planted name
 *     is never used.
 *   - Final names are never replaced (agent_publish_at): renameat2 with
 *     RENAME_NOREPLACE, or linkat + unlinkat on a filesystem without it
 *     (EINVAL), or, with no hard links either, a check then renameat (the
 *     one case where two processes racing on one name could replace).
 *     A name that exists is reported (-EEXIST) to the caller, which picks
 *     another (output.c: the per-process tag).
 *
 * Every descriptor it opens goes through fds.c (claimed at a high number,
 * closed only while it still holds its file); on a thread with a
 * descriptor table of its own, nothing it opens can meet the program's.
 *
 * Atomic files: the content goes to the temporary file, then it is
 * renamed to <name>. A reader sees the file whole or not at all, and so
 * does anyone after the process crashed: the rename is atomic, and what
 * write(2) gave the kernel outlives the process. Only a crash of the
 * machine can leave a published file empty or short (the rename may reach
 * the disk before the data); HEAPWATCH_FSYNC=on fsyncs every file before
 * its rename (agent_file_sync) for that, at about 0.5 ms a file on a disk,
 * which is most of what the agent adds to a short process; a profiler's
 * files are not worth it by default (conf.h). A failed write removes the
 * temporary file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>     /* renameat2() and RENAME_NOREPLACE only: no stream is used */
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/buf.h"
#include "agent/conf.h"
#include "agent/fds.h"
#include "agent/log.h"
#include "agent/out.h"

/* ------------------------------------------------------------------------ */
/* The output directory                                                     */
/* ------------------------------------------------------------------------ */

/* The one output directory of the process (callers serialise: the work
 * lock, core.h): its path, and one open handle per descriptor
 * table: the program's, shared by its threads, and the private table of
 * an agent thread that has one (fds.c). */
typedef struct od_handle_s {
    int fd;                          /* -1: not open in this table */
    dev_t dev;
    ino_t ino;
} od_handle_t;
static char od_path[CONF_PATH_MAX];
static od_handle_t od_shared = { .fd = -1 };
static AGENT_TLS od_handle_t od_private = { .fd = -1 };

static od_handle_t *od_here(void) { return agent_fds_are_private() ? &od_private : &od_shared; }

/* why_*: the reason for a refusal, for the one stderr line. */
static void why_path(agent_buf_t *why, const char *path, size_t len)
{
    char prefix[CONF_PATH_MAX];
    if (len >= sizeof prefix) len = sizeof prefix - 1;
    memcpy(prefix, path, len);
    prefix[len] = 0;
    agent_buf_str(why, "\"");
    agent_buf_str_escaped(why, prefix, AGENT_QUOTE_MAX);   /* one line, whatever the path holds */
    agent_buf_str(why, "\"");
}

/* dir_is_safe: st (a directory reached at path[0..len)) cannot be
 * replaced or filled by another user. */
static int dir_is_safe(const struct stat *st, const char *path, size_t len, agent_buf_t *why)
{
    uid_t me = geteuid();
    if (st->st_uid != me && st->st_uid != 0) {
        why_path(why, path, len);
        agent_buf_str(why, " is owned by uid ");
        agent_buf_u64(why, st->st_uid);
        agent_buf_str(why, ", not by this user (uid ");
        agent_buf_u64(why, me);
        agent_buf_str(why, ") or root");
        return -EPERM;
    }
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX)) {
        why_path(why, path, len);
        agent_buf_str(why, " is group- or world-writable without the sticky bit (mode 0");
        char mode[4] = { (char)('0' + ((st->st_mode >> 6) & 7)), (char)('0' + ((st->st_mode >> 3) & 7)),
                         (char)('0' + (st->st_mode & 7)), 0 };
        agent_buf_str(why, mode);
        agent_buf_str(why, ")");
        return -EPERM;
    }
    return 0;
}

/* open_component: the directory `name` in dirfd (created 0755 when missing
 * and create is set), following a link only when root or this user owns
 * it. */
static int open_component(int dirfd, const char *name, bool create)
{
    const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;
    int fd = agent_fd_claimat(dirfd, name, flags, 0);
    if (fd == -ENOENT && create) {
        if (mkdirat(dirfd, name, 0755) != 0 && errno != EEXIST) return -errno;
        fd = agent_fd_claimat(dirfd, name, flags, 0);
    }
    if (fd == -ELOOP || fd == -ENOTDIR) {
        int saved = fd;
        struct stat lst;
        if (fstatat(dirfd, name, &lst, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISLNK(lst.st_mode))
            return saved;
        if (lst.st_uid != geteuid() && lst.st_uid != 0) return -ELOOP;
        fd = agent_fd_claimat(dirfd, name, flags & ~O_NOFOLLOW, 0);
    }
    return fd;
}

/* walk: opens the absolute path component by component, every directory
 * checked (see the design comment). @return the descriptor or -errno,
 * with the reason in why. */
static int walk(const char *path, bool create, agent_buf_t *why)
{
    if (path[0] != '/') return -EINVAL;
    int fd = agent_fd_claimat(AT_FDCWD, "/", O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0) return fd;
    struct stat st;
    int err = fstat(fd, &st) == 0 ? dir_is_safe(&st, "/", 1, why) : -errno;
    size_t i = 0, n = strlen(path);
    while (!err) {
        while (path[i] == '/') i++;
        if (i >= n) break;
        size_t end = i;
        while (end < n && path[end] != '/') end++;
        char name[256];
        if (end - i >= sizeof name) {
            err = -ENAMETOOLONG;
            break;
        }
        memcpy(name, path + i, end - i);
        name[end - i] = 0;
        int next = open_component(fd, name, create);
        if (next < 0) {
            err = next;
            why_path(why, path, end);
            if (err == -ELOOP) agent_buf_str(why, " is a symbolic link owned by another user");
            else {
                agent_buf_str(why, ": ");
                agent_buf_str(why, strerror(-err));
            }
            break;
        }
        agent_fd_release(fd);
        fd = next;
        err = fstat(fd, &st) == 0 ? dir_is_safe(&st, path, end, why) : -errno;
        i = end;
    }
    if (err) {
        agent_fd_release(fd);
        return err;
    }
    return fd;
}

/* The directory the last walk approved (callers serialise, as for od_path). */
static bool od_approved;
static dev_t od_approved_dev;
static ino_t od_approved_ino;

/* reopen_approved: od_path opened at once, when it is still the directory
 * a walk approved and still safe (see the design comment); else -1. */
static int reopen_approved(void)
{
    if (!od_approved) return -1;
    int fd = agent_fd_claimat(AT_FDCWD, od_path, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0) return -1;
    struct stat st;
    char scratch[8];   /* a refusal here only means: walk */
    agent_buf_t sb;
    agent_buf_init(&sb, scratch, sizeof scratch);
    if (fstat(fd, &st) == 0 && st.st_dev == od_approved_dev && st.st_ino == od_approved_ino &&
        S_ISDIR(st.st_mode) && dir_is_safe(&st, od_path, strlen(od_path), &sb) == 0)
        return fd;
    agent_fd_release(fd);
    return -1;
}

static int outdir_open(agent_buf_t *why)
{
    int fd = reopen_approved();
    bool walked = fd < 0;
    if (walked) fd = walk(od_path, true, why);
    if (fd < 0) return fd;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = -errno;
        agent_fd_release(fd);
        return err;
    }
    if (faccessat(fd, ".", W_OK | X_OK, AT_EACCESS) != 0) {
        int err = -errno;
        agent_fd_release(fd);
        why_path(why, od_path, strlen(od_path));
        agent_buf_str(why, ": ");
        agent_buf_str(why, strerror(-err));
        return err;
    }
    if (walked) {
        od_approved = true;
        od_approved_dev = st.st_dev;
        od_approved_ino = st.st_ino;
    }
    od_handle_t *od = od_here();
    od->fd = fd;   /* claimed at a high number by the walk or the reopen */
    od->dev = st.st_dev;
    od->ino = st.st_ino;
    return od->fd;
}

/* outdir_still_ours: od->fd is the directory we opened, and the path
 * still leads to it. */
static bool outdir_still_ours(od_handle_t *od)
{
    int flags = fcntl(od->fd, F_GETFD);
    struct stat st;
    if (flags < 0 || !(flags & FD_CLOEXEC) || fstat(od->fd, &st) != 0 || st.st_dev != od->dev ||
        st.st_ino != od->ino) {
        agent_fd_forget(od->fd);   /* the program's now: never closed */
        return false;
    }
    if (stat(od_path, &st) != 0 || st.st_dev != od->dev || st.st_ino != od->ino) {
        /* Removed or replaced by path: ours still, but no longer the
         * output directory. */
        agent_fd_release(od->fd);
        return false;
    }
    return true;
}

int agent_outdir_init(const char *path, char *why, size_t whycap)
{
    agent_buf_t wb;
    agent_buf_init(&wb, why, whycap);
    od_here()->fd = -1;
    od_approved = false;
    agent_buf_t pb;
    agent_buf_init(&pb, od_path, sizeof od_path);
    agent_buf_str(&pb, path);
    if (pb.overflow) return -ENAMETOOLONG;
    int fd = outdir_open(&wb);
    return fd < 0 ? fd : 0;
}

int agent_outdir_fd(char *why, size_t whycap)
{
    agent_buf_t wb;
    agent_buf_init(&wb, why, whycap);
    od_handle_t *od = od_here();
    if (od->fd >= 0 && outdir_still_ours(od)) return od->fd;
    od->fd = -1;
    if (!od_path[0]) return -ENOENT;
    return outdir_open(&wb);
}

void agent_outdir_drop(void)
{
    od_handle_t *od = od_here();
    if (od->fd < 0) return;
    if (!agent_fds_are_private()) agent_fd_release(od->fd);   /* (a private table dies with its thread) */
    od->fd = -1;
}

/* ------------------------------------------------------------------------ */
/* Files in the output directory                                            */
/* ------------------------------------------------------------------------ */

/* random64: 64 unpredictable bits (getrandom; a weaker mix only if the
 * kernel has none to give). */
static uint64_t random64(void)
{
    uint64_t v;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v) return v;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    static uint64_t counter;
    v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ ((uint64_t)getpid() << 16) ^
        (uint64_t)(uintptr_t)&v ^ __atomic_add_fetch(&counter, 0x9e3779b97f4a7c15ull, __ATOMIC_RELAXED);
    v ^= v >> 30; v *= 0xbf58476d1ce4e5b9ull;
    v ^= v >> 27; v *= 0x94d049bb133111ebull;
    return v ^ (v >> 31);
}

int agent_tmp_create(int dirfd, const char *name, char *tmp, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    for (int attempt = 0; attempt < 8; attempt++) {
        agent_buf_t b;
        agent_buf_init(&b, tmp, cap);
        agent_buf_str(&b, ".");
        agent_buf_str(&b, name);
        agent_buf_str(&b, ".tmp.");
        uint64_t r = random64();
        char digits[16];
        for (int i = 0; i < 16; i++) digits[i] = hex[(r >> (4 * i)) & 15];
        agent_buf_mem(&b, digits, sizeof digits);
        if (b.overflow) return -ENAMETOOLONG;
        int fd = agent_fd_claimat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
        if (fd != -EEXIST) return fd;
    }
    return -EEXIST;
}

int agent_publish_at(int dirfd, const char *tmp, const char *name)
{
    if (renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -errno;
    /* No RENAME_NOREPLACE on this filesystem (or kernel): a hard link
     * never replaces an existing name either; then the temporary name
     * goes. Readers may see both names for a moment, never a partial
     * file. */
    if (linkat(dirfd, tmp, dirfd, name, 0) == 0) {
        (void)unlinkat(dirfd, tmp, 0);
        return 0;
    }
    if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS) return -errno;
    /* Neither (vfat and some FUSE filesystems have no hard links): a
     * check, then a plain rename. Only two processes publishing the same
     * name between these two calls could replace one another; a planted
     * link is replaced itself, never followed. */
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) return -EEXIST;
    if (errno != ENOENT) return -errno;
    return renameat(dirfd, tmp, dirfd, name) == 0 ? 0 : -errno;
}

int agent_file_check(int fd, dev_t dev, ino_t ino)
{
    struct stat st;
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || !(flags & FD_CLOEXEC) || fstat(fd, &st) != 0) return -EBADF;
    if (st.st_dev != dev || st.st_ino != ino || !S_ISREG(st.st_mode) || st.st_uid != geteuid())
        return -ESTALE;
    return 0;
}

bool agent_out_fsync = CONF_DEFAULT_FSYNC;

int agent_file_sync(int fd)
{
    if (!agent_out_fsync) return 0;
    return fsync(fd) == 0 ? 0 : -errno;
}

int agent_write_at(int dirfd, const char *name, const void *data, size_t len)
{
    char tmp[300];
    int fd = agent_tmp_create(dirfd, name, tmp, sizeof tmp);
    if (fd < 0) return fd;
    int err = agent_write_all(fd, data, len);
    if (!err) err = agent_file_sync(fd);
    agent_fd_release(fd);
    if (!err) err = agent_publish_at(dirfd, tmp, name);
    if (err) (void)unlinkat(dirfd, tmp, 0);
    return err;
}

