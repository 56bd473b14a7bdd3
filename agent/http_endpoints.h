/*
 * http_endpoints.h - between http.c (the server: listening, requests, the
 * thread) and http_endpoints.c (what each URL answers) only: a parsed
 * request, what http.c lends for answering it, and the answer (agent/,
 * private; the design is atop both files).
 */
#ifndef HEAPWATCH_AGENT_HTTP_ENDPOINTS_H
#define HEAPWATCH_AGENT_HTTP_ENDPOINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* agent_http_request_t: one request as http.c parsed it. */
typedef struct agent_http_request_s {
    bool head;                   /* HEAD: no body */
    char method[16];
    char path[256];              /* without the query */
    char query[256];
    const char *body;            /* what arrived of the body with the head */
    size_t body_have;
    uint64_t content_length;     /* 0 when absent */
} agent_http_request_t;

/* From http.c. */

/* agent_http_client_ours: c is still the connection accepted (the same
 * socket: http.c). Checked before every recv and send. */
bool agent_http_client_ours(int c);

/* agent_http_query_value: the value of `key` in the query ("" when it has
 * none), or NULL when absent. Written into val (cap). */
const char *agent_http_query_value(const char *query, const char *key, char *val, size_t cap);

/* agent_http_read_body: the whole body of r into mem (content_length
 * bytes, then a NUL: mem holds content_length + 1), within the client's
 * time. @return false when the client was too slow or went away. */
bool agent_http_read_body(int c, const agent_http_request_t *r, char *mem);

/* From http_endpoints.c. */

/* agent_http_respond: answers r on connection c: the endpoint its path
 * names, else 405 (a method other than GET and HEAD, except for
 * /debug/pprof/symbol) or 404. */
void agent_http_respond(int c, const agent_http_request_t *r);

/* agent_http_send_error: a whole text/plain response with this status,
 * the message and a newline for body; extra: more header lines ("Name:
 * value\r\n" each) or NULL. No body for a HEAD request. */
void agent_http_send_error(int c, const agent_http_request_t *r, const char *status, const char *message,
                           const char *extra);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_HTTP_ENDPOINTS_H */
