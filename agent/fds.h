/*
 * fds.h - every descriptor the agent opens: claimed, checked before each
 * use, never closed once the program took the number back (fds.c; the
 * design is there) (agent/, private).
 */
#ifndef HEAPWATCH_AGENT_FDS_H
#define HEAPWATCH_AGENT_FDS_H

#include <stdbool.h>
#include <sys/types.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* agent_fd_t: a descriptor the agent opened, with the file it was then
 * (fds.c: checked before every use, never closed once the program took
 * the number back). */
typedef struct agent_fd_s {
    int fd;                  /* -1: none */
    dev_t dev;
    ino_t ino;
} agent_fd_t;

/* agent_fd_open: opens path with flags | O_CLOEXEC and records the file.
 * @return 0 or -errno. */
int agent_fd_open(agent_fd_t *f, const char *path, int flags);
/* agent_fd_ours: f's number still holds that file, close-on-exec. */
bool agent_fd_ours(const agent_fd_t *f);
/* agent_fd_close: closes f if still ours; f->fd becomes -1 either way. */
void agent_fd_close(agent_fd_t *f);
/* agent_fd_read_text: the first cap - 1 bytes of a small file (/proc),
 * NUL-terminated, through a checked descriptor opened and closed here.
 * @return the bytes read, or -1 (nothing read; buf is "" then). */
ssize_t agent_fd_read_text(const char *path, char *buf, size_t cap);

/* Descriptors (fds.c's design comment): every descriptor the agent opens
 * goes through these, so that none it closes is the program's.
 * agent_fd_claimat: openat(dirfd, name, flags | O_CLOEXEC, mode), claimed:
 *   moved to a high number, its identity (device, inode: of the file the
 *   name leads to) recorded; @return it or -errno (-ESTALE: the program
 *   took the number meanwhile; nothing of ours is left open).
 * agent_fd_claim: the same for a descriptor just returned by socket or
 *   accept (its identity: what it holds now); for a failed call's -1,
 *   -errno.
 * agent_fd_release: closes a claimed descriptor if it still holds its file;
 *   otherwise only forgets it.
 * agent_fd_forget: forgets a claimed descriptor, never closing it.
 * agent_fds_private: gives the calling agent thread a descriptor table of
 *   its own, empty (close_range(CLOSE_RANGE_UNSHARE)): nothing it opens or
 *   closes can then meet the program's numbers. @return false when the
 *   kernel refused (the thread goes on in the shared table, with claims).
 * agent_fds_are_private: the calling thread has such a table. */
int agent_fd_claimat(int dirfd, const char *name, int flags, mode_t mode);
int agent_fd_claim(int fd);
void agent_fd_release(int fd);
void agent_fd_forget(int fd);
bool agent_fds_private(void);
/* agent_fds_postfork_child: closes what the agent's threads held (they
 * did not survive the fork), each only while it is still the agent's. */
void agent_fds_postfork_child(void);
/* agent_fds_init: pprof/'s file opens and closes go through these rules
 * too (pprof_set_fd_hooks). */
void agent_fds_init(void);
bool agent_fds_are_private(void);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_FDS_H */
