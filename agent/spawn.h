/*
 * spawn.h - the agent's own threads: every signal blocked, the ordinary
 * scheduling policy and the process's start CPUs, a name, and (for the
 * joinable background thread) a stack of the agent's own (spawn.c)
 * (agent/, private).
 */
#ifndef HEAPWATCH_AGENT_SPAWN_H
#define HEAPWATCH_AGENT_SPAWN_H

#include <pthread.h>
#include <stdbool.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* agent_spawn_init: remembers the CPUs the process may run on at start
 * (on the main thread, before the program pins any thread). */
void agent_spawn_init(void);

/* agent_spawn_thread: a detached agent thread running fn(NULL), with
 * every signal blocked (the host's signals are never delivered to it) and
 * a 256 KiB stack, that names itself name (static storage; no descriptor
 * opened). @return 0 or -errno (-ENOMEM, or pthread_create's error). */
int agent_spawn_thread(void *(*fn)(void *), const char *name);

/* agent_spawn_joinable: the same, joinable, on a stack of the agent's own
 * (one at a time: the background thread's), its handle into *out.
 * agent_spawn_joinable_done: after the join (or in a forked child, where
 * the thread is not), the stack is unmapped. */
int agent_spawn_joinable(void *(*fn)(void *), const char *name, pthread_t *out);
void agent_spawn_joinable_done(void);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_SPAWN_H */
