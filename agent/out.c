/*
 * out.c - the agent's output primitives, none of which allocates: a text
 * buffer with integer, fixed-point and JSON-string formatting (no printf:
 * glibc's may malloc and takes locale locks), EINTR-safe writes, and
 * files that appear whole or not at all.
 *
 * Atomic files: the content goes to ".<name>.tmp.<pid>" in the same
 * directory, is fsync'ed, then renamed over <name>. A reader sees the old
 * file, the new file, or no file; never a prefix. A failed write removes
 * the temporary file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>     /* rename() only: no stream is used */
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/agent_internal.h"

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

int agent_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The file descriptor 2 was at start (agent_log_remember_stderr): a program
 * that closed its stderr and reused descriptor 2 for a file of its own must
 * not find our messages in it. */
static dev_t stderr_dev;
static ino_t stderr_ino;
static int stderr_known;   /* 0 not recorded, 1 recorded, -1 closed at start */

void agent_log_remember_stderr(void)
{
    struct stat st;
    if (fstat(2, &st) != 0) {
        stderr_known = -1;
        return;
    }
    stderr_dev = st.st_dev;
    stderr_ino = st.st_ino;
    stderr_known = 1;
}

static bool stderr_is_ours(void)
{
    if (stderr_known == 0) return true;
    struct stat st;
    if (stderr_known < 0 || fstat(2, &st) != 0) return false;
    return st.st_dev == stderr_dev && st.st_ino == stderr_ino;
}

void agent_log(const char *line)
{
    int saved = errno;
    if (stderr_is_ours()) (void)agent_write_all(2, line, strlen(line));
    errno = saved;
}

int agent_mkdir_p(const char *path)
{
    char tmp[CONF_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != 0) continue;
        char saved = tmp[i];
        tmp[i] = 0;
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST) return -errno;
        tmp[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0) return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* join: dir + "/" + name into out. */
static int join(char *out, size_t cap, const char *dir, const char *prefix, const char *name,
                const char *suffix)
{
    agent_buf_t b;
    agent_buf_init(&b, out, cap);
    agent_buf_str(&b, dir);
    agent_buf_str(&b, "/");
    agent_buf_str(&b, prefix);
    agent_buf_str(&b, name);
    agent_buf_str(&b, suffix);
    return b.overflow ? -ENAMETOOLONG : 0;
}

int agent_write_file_atomic(const char *dir, const char *name, const void *data, size_t len)
{
    char final_path[CONF_PATH_MAX + 256], tmp_path[CONF_PATH_MAX + 300], suffix[40];
    agent_buf_t sb;
    agent_buf_init(&sb, suffix, sizeof suffix);
    agent_buf_str(&sb, ".tmp.");
    agent_buf_u64(&sb, (uint64_t)getpid());
    int err = join(final_path, sizeof final_path, dir, "", name, "");
    if (!err) err = join(tmp_path, sizeof tmp_path, dir, ".", name, suffix);
    if (err) return err;

    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    err = agent_write_all(fd, data, len);
    if (!err && fsync(fd) != 0) err = -errno;
    if (close(fd) != 0 && !err) err = -errno;
    if (!err && rename(tmp_path, final_path) != 0) err = -errno;
    if (err) unlink(tmp_path);
    return err;
}
