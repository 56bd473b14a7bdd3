/*
 * buf.c - text built into memory the caller gives, without malloc: strings,
 * integers, fixed-point numbers, JSON strings and members, and values from
 * outside quoted safely for a one-line message. No printf: glibc's may
 * malloc and takes locale locks, and this runs inside malloc, in signal
 * handlers' exits and in a forked child.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "agent/buf.h"

void agent_buf_init(agent_buf_t *b, char *mem, size_t cap)
{
    b->buf = mem;
    b->cap = cap;
    b->len = 0;
    b->overflow = false;
    if (cap) mem[0] = 0;
}

void agent_buf_mem(agent_buf_t *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->overflow = true;
        n = b->cap > b->len + 1 ? b->cap - b->len - 1 : 0;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    if (b->cap) b->buf[b->len] = 0;
}

void agent_buf_str(agent_buf_t *b, const char *s)
{
    agent_buf_mem(b, s, strlen(s));
}

void agent_buf_u64(agent_buf_t *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    agent_buf_mem(b, tmp + i, sizeof tmp - i);
}

void agent_buf_i64(agent_buf_t *b, int64_t v)
{
    if (v < 0) {
        agent_buf_mem(b, "-", 1);
        agent_buf_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        agent_buf_u64(b, (uint64_t)v);
    }
}

/* agent_buf_fixed: v / 10^decimals with exactly `decimals` digits. */
void agent_buf_fixed(agent_buf_t *b, int64_t v, unsigned decimals)
{
    uint64_t scale = 1;
    for (unsigned i = 0; i < decimals; i++) scale *= 10;
    if (v < 0) {
        agent_buf_mem(b, "-", 1);
        v = -v;
    }
    agent_buf_u64(b, (uint64_t)v / scale);
    if (!decimals) return;
    agent_buf_mem(b, ".", 1);
    uint64_t frac = (uint64_t)v % scale;
    char tmp[20];
    for (unsigned i = decimals; i > 0; i--) {
        tmp[i - 1] = (char)('0' + frac % 10);
        frac /= 10;
    }
    agent_buf_mem(b, tmp, decimals);
}

void agent_buf_json_str(agent_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    agent_buf_mem(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            agent_buf_mem(b, esc, 2);
        } else if (c < 0x20) {
            char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            agent_buf_mem(b, esc, 6);
        } else {
            agent_buf_mem(b, s, 1);
        }
    }
    agent_buf_mem(b, "\"", 1);
}

/* agent_buf_str_escaped: for messages that quote a value the agent was
 * given (a variable, a path): one stderr line whatever the value holds.
 * Control bytes become \n, \t or \xNN (DEL too), a backslash \\ and a
 * double quote \"; other bytes (UTF-8 among them) pass as they are. At most
 * `max` bytes are written for the value; a longer one ends with "..." (so
 * at most max + 3), cut between escapes and never inside a UTF-8 sequence. */
void agent_buf_str_escaped(agent_buf_t *b, const char *s, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    size_t used = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        char esc[4];
        const char *out = esc;
        size_t n, adv = 1;   /* bytes written, bytes of s consumed */
        if (*p == '\n' || *p == '\t' || *p == '\\' || *p == '"') {
            esc[0] = '\\';
            esc[1] = *p == '\n' ? 'n' : *p == '\t' ? 't' : (char)*p;
            n = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[*p >> 4];
            esc[3] = hex[*p & 15];
            n = 4;
        } else {
            if (*p >= 0xc0)   /* a lead byte: keep its continuation bytes with it */
                while (adv < 4 && (p[adv] & 0xc0) == 0x80) adv++;
            out = (const char *)p;
            n = adv;
        }
        if (used + n > max) {
            agent_buf_mem(b, "...", 3);
            return;
        }
        agent_buf_mem(b, out, n);
        used += n;
        p += adv;
    }
}

void agent_buf_json_key(agent_buf_t *b, const char *key, bool pretty)
{
    bool first = b->len <= 1;   /* only the opening brace so far */
    agent_buf_str(b, pretty ? (first ? "\n  " : ",\n  ") : (first ? "" : ", "));
    agent_buf_json_str(b, key);
    agent_buf_str(b, ": ");
}

void agent_buf_json_u64(agent_buf_t *b, const char *key, uint64_t v, bool pretty)
{
    agent_buf_json_key(b, key, pretty);
    agent_buf_u64(b, v);
}
