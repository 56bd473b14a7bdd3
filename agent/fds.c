/*
 * fds.c - descriptors the agent opens for itself, checked before each use.
 *
 * The program may close any descriptor at any moment (daemons close
 * 3..1023 after start, shells `exec 3>file`) and get the same number back
 * for a file of its own. A number is the agent's only while it still holds
 * the file the agent opened (device and inode, recorded at open) with the
 * close-on-exec flag the agent set (dup2 and dup3 without O_CLOEXEC clear
 * it). agent_fd_ours checks both; every read, write and close of a kept or
 * briefly opened descriptor goes through it first, and a number that failed
 * it is only forgotten, never closed. (A check and the use that follows
 * are two system calls: a program thread that closes and reuses the number
 * exactly in between is not excluded, only made unlikely; nothing the
 * agent runs between them is the program's.)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent_internal.h"

bool agent_fd_open(agent_fd_t *f, const char *path, int flags)
{
    f->fd = open(path, flags | O_CLOEXEC, 0);
    if (f->fd < 0) return false;
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        int e = errno;
        close(f->fd);   /* nothing ran in between: still ours */
        f->fd = -1;
        errno = e;
        return false;
    }
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    return true;
}

bool agent_fd_ours(const agent_fd_t *f)
{
    struct stat st;
    if (f->fd < 0 || fstat(f->fd, &st) != 0) return false;
    int fl = fcntl(f->fd, F_GETFD);
    return st.st_dev == f->dev && st.st_ino == f->ino && fl >= 0 && (fl & FD_CLOEXEC);
}

void agent_fd_close(agent_fd_t *f)
{
    if (agent_fd_ours(f)) close(f->fd);
    f->fd = -1;
}
