/*
 * log.c - the agent's lines to stderr, and writes that finish.
 *
 * A program may close its stderr and reuse descriptor 2 for a file of its
 * own (a daemon's log, a pipe to a child): our messages must never land
 * there. So the stderr of the start is remembered (device, inode) and a
 * line is written only while descriptor 2 still holds that file. A thread
 * with a descriptor table of its own (the job worker, fds.c) borrows a
 * copy of the program's descriptor 2 for the line, with the same check.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/fds.h"
#include "agent/log.h"

int agent_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The file descriptor 2 was at start (agent_log_remember_stderr): a program
 * that closed its stderr and reused descriptor 2 for a file of its own must
 * not find our messages in it. */
static dev_t stderr_dev;
static ino_t stderr_ino;
static int stderr_known;   /* 0 not recorded, 1 recorded, -1 closed at start */

void agent_log_remember_stderr(void)
{
    struct stat st;
    if (fstat(2, &st) != 0) {
        stderr_known = -1;
        return;
    }
    stderr_dev = st.st_dev;
    stderr_ino = st.st_ino;
    stderr_known = 1;
}

static bool stderr_is_ours(void)
{
    if (stderr_known == 0) return true;
    struct stat st;
    if (stderr_known < 0 || fstat(2, &st) != 0) return false;
    return st.st_dev == stderr_dev && st.st_ino == stderr_ino;
}

/* log_from_private: a thread with a descriptor table of its own has no
 * descriptor 2: it borrows a copy of the program's (pidfd_getfd, from the
 * thread-group leader's table), writes if that is still the stderr the
 * program started with, and closes the copy (in its own table). A leader
 * that has ended (pthread_exit from main) has no table: no message. */
static void log_from_private(const char *line)
{
    if (stderr_known <= 0) return;
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (pidfd < 0) return;
    int fd = (int)syscall(SYS_pidfd_getfd, pidfd, 2, 0);
    close(pidfd);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_dev == stderr_dev && st.st_ino == stderr_ino)
        (void)agent_write_all(fd, line, strlen(line));
    close(fd);
}

void agent_log(const char *line)
{
    int saved = errno;
    if (agent_fds_are_private()) log_from_private(line);
    else if (stderr_is_ours()) (void)agent_write_all(2, line, strlen(line));
    errno = saved;
}

