/*
 * http.h - HEAPWATCH_HTTP: the agent's HTTP server thread (http.c, and
 * http_endpoints.c for what it answers; the design is atop both) (agent/,
 * private).
 */
#ifndef HEAPWATCH_AGENT_HTTP_H
#define HEAPWATCH_AGENT_HTTP_H

#include <stdint.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* agent_http_start: binds host:port and starts the server thread (a
 * failure is one stderr line; the program runs on). */
void agent_http_start(const char *host, uint16_t port);
/* agent_http_child_start: with port 0, a forked child's own server (a
 * free port of its own), when it has none yet; called where the child
 * gets its other agent thread (background.c). */
void agent_http_child_start(void);
/* agent_http_threads: 1 while the server thread exists, else 0. */
int agent_http_threads(void);
/* agent_http_postfork_child: the child closes the listening socket. */
void agent_http_postfork_child(void);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_HTTP_H */
