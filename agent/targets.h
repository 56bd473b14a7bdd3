/*
 * targets.h - http.<tag>.addr and targets.json, Prometheus' file-based
 * service discovery of every serving process (targets.c, where the
 * convergence argument is) (agent/, private).
 */
#ifndef HEAPWATCH_AGENT_TARGETS_H
#define HEAPWATCH_AGENT_TARGETS_H

#include <stdbool.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* agent_targets_set: this process serves on hostport ("host:port", the
 * port bound): its addr file and a rebuild of targets.json become due.
 * agent_targets_pending: they are still due.
 * agent_targets_retry: does what is due, if the work lock is free now
 *   (never waits; the HTTP server thread calls it until nothing is due).
 * agent_targets_exit: under the work lock, at exit: removes the addr file
 *   and rebuilds targets.json, trying the directory's lock only (what is
 *   skipped is noted in the summary's "incomplete").
 * agent_targets_postfork_child: the parent's entry is the parent's. */
void agent_targets_set(const char *hostport);
bool agent_targets_pending(void);
void agent_targets_retry(void);
void agent_targets_exit(void);
void agent_targets_postfork_child(void);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_TARGETS_H */
