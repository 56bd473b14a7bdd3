/*
 * log.h - the agent's lines to stderr, and writes that finish (log.c)
 * (agent/, private).
 */
#ifndef HEAPWATCH_AGENT_LOG_H
#define HEAPWATCH_AGENT_LOG_H

#include <stddef.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* agent_write_all: writes everything, retrying on EINTR. @return 0 or -errno. */
int agent_write_all(int fd, const void *data, size_t len);
/* agent_log: one line to stderr, errno preserved; nothing once descriptor
 * 2 is no longer the file it was at agent_log_remember_stderr. */
void agent_log(const char *line);
void agent_log_remember_stderr(void);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_LOG_H */
