/*
 * buf.h - text built into memory the caller gives, without malloc (buf.c)
 * (agent/, private).
 */
#ifndef HEAPWATCH_AGENT_BUF_H
#define HEAPWATCH_AGENT_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* agent_buf_t: text built into caller-provided memory; always NUL-terminated;
 * overflow is sticky and truncates. */
typedef struct agent_buf_s {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
} agent_buf_t;

void agent_buf_init(agent_buf_t *b, char *mem, size_t cap);
void agent_buf_mem(agent_buf_t *b, const void *p, size_t n);
void agent_buf_str(agent_buf_t *b, const char *s);
void agent_buf_u64(agent_buf_t *b, uint64_t v);
void agent_buf_i64(agent_buf_t *b, int64_t v);
/* agent_buf_fixed: writes v / 10^decimals, e.g. (1234567, 3) -> "1234.567". */
void agent_buf_fixed(agent_buf_t *b, int64_t v, unsigned decimals);
/* agent_buf_json_str: s as a quoted JSON string (escapes ", \ and controls). */
void agent_buf_json_str(agent_buf_t *b, const char *s);

/* agent_buf_str_escaped: s for a one-line message: control bytes as \n,
 * \t or \xNN (DEL too), \\ and \" escaped, at most max bytes of it, then
 * "..." when cut. Used wherever a message quotes a value from outside. */
void agent_buf_str_escaped(agent_buf_t *b, const char *s, size_t max);
#define AGENT_QUOTE_MAX 200   /* bytes of a quoted value in a message */
/* agent_buf_json_key: `"key": ` inside a JSON object being built in b
 * (which starts with its "{"), preceded by the separator it needs: one
 * member per line when pretty, else all on one line. */
void agent_buf_json_key(agent_buf_t *b, const char *key, bool pretty);
/* agent_buf_json_u64: a member with an unsigned number. */
void agent_buf_json_u64(agent_buf_t *b, const char *key, uint64_t v, bool pretty);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_BUF_H */
