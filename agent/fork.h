/*
 * fork.h - the agent across fork (fork.c; the design is there) (agent/,
 * private).
 */
#ifndef HEAPWATCH_AGENT_FORK_H
#define HEAPWATCH_AGENT_FORK_H

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* agent_fork_init: registers the fork handlers (start-up, once). */
void agent_fork_init(void);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_FORK_H */
