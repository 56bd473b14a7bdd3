/*
 * out.h - the output directory and the files in it (out.c; the rules are
 * there) (agent/, private). Callers serialise (the work lock, core.h).
 */
#ifndef HEAPWATCH_AGENT_OUT_H
#define HEAPWATCH_AGENT_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* The output directory and its files. See out.c's design comment for the
 * rules.
 * agent_outdir_init: remembers the absolute path, creates it (0755) and
 *   opens it, every component checked; @return 0 or -errno with the
 *   reason (one line, escaped) in why.
 * agent_outdir_fd: the verified directory descriptor (reopened by path,
 *   with every check, when the program closed or reused it or the
 *   directory was removed or replaced); @return it or -errno, why filled.
 * agent_tmp_create: creates ".<name>.tmp.<random>" in dirfd with
 *   O_CREAT|O_EXCL|O_NOFOLLOW, mode 0644, its name into tmp; @return the
 *   descriptor (O_RDWR) or -errno.
 * agent_publish_at: renames tmp to name within dirfd, never replacing a
 *   file: @return 0, -EEXIST when name exists, or -errno.
 * agent_file_check: fd is still the regular file (dev, ino) we created:
 *   close-on-exec set, owned by us. @return 0, -EBADF or -ESTALE.
 * agent_write_at: dirfd/name appears whole with data, or not at all; an
 *   existing name is never replaced (-EEXIST). @return 0 or -errno.
 */
int agent_outdir_init(const char *path, char *why, size_t whycap);
int agent_outdir_fd(char *why, size_t whycap);
/* agent_outdir_drop: closes this table's handle of the directory (the end
 * of a round of output: no descriptor of ours stays in the program's). */
void agent_outdir_drop(void);
int agent_tmp_create(int dirfd, const char *name, char *tmp, size_t cap);
int agent_publish_at(int dirfd, const char *tmp, const char *name);
int agent_file_check(int fd, dev_t dev, ino_t ino);
int agent_write_at(int dirfd, const char *name, const void *data, size_t len);

/* agent_out_fsync: HEAPWATCH_FSYNC (set once at start-up, conf.h): whether
 * a file is fsync'ed before it is published.
 * agent_file_sync: fsyncs fd when agent_out_fsync is set; every file of
 * the output goes through it before its rename. @return 0 or -errno. */
extern bool agent_out_fsync;
int agent_file_sync(int fd);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_OUT_H */
