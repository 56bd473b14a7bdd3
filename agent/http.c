/*
 * http.c - HEAPWATCH_HTTP: the agent's HTTP server: listening, reading
 * requests, the server thread. What each URL answers (heap profiles,
 * metrics, symbols, an index) is http_endpoints.c's.
 *
 * The host comes first, so the rules are the agent's usual ones:
 *
 * - One thread, started at load time with every signal blocked, under the
 *   recursion guard for its whole life (what libc allocates for it is not
 *   counted), serving one connection at a time. It holds no lock while it
 *   waits on the network (what the endpoints read and under which lock:
 *   http_endpoints.c).
 * - A client gets 5 seconds to send its request (8 KiB at most), a POST
 *   body included, and each send 5 seconds to progress.
 * - Every descriptor is close-on-exec; a forked child closes the listening
 *   socket (only the process that bound the port serves it).
 * - Port 0 (HEAPWATCH_HTTP=host:0): every process serves on a free port of
 *   its own. A forked child binds its own and starts its server thread
 *   when it gets its other agent thread: at its first due job, i.e. at
 *   its first allocation HEAPWATCH_INTERVAL after the fork (or when it
 *   starts a thread), never in the fork itself: a child that execs or
 *   unshares at once stays single-threaded (background.c). An exec'ed
 *   program starts its own, as any process.
 * - Once it listens, a process announces where (http.<tag>.addr and
 *   targets.json, targets.c) from its server thread, never waiting for a
 *   lock: what is busy is retried every 100 ms. At exit it removes its
 *   entry (core.c).
 * - The program may close or dup2 over the listening descriptor (daemons
 *   close every descriptor): before each accept (and at least once a
 *   second) the descriptor must still be the socket that was bound (same
 *   device and inode, still close-on-exec), else the server stops for good
 *   rather than accept on a socket of the program's, and never closes that
 *   number (not in a forked child either). A client's socket is checked
 *   the same way (agent_fd_ours) before every recv, send and its close.
 * - A numeric host (or "localhost") is bound before the program's main
 *   runs, so the port answers as soon as the program starts and a busy
 *   port is reported up front; a name is resolved on the server thread,
 *   where a slow resolver delays nobody. Failure: one stderr line naming
 *   HEAPWATCH_HTTP; the program runs on.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/buf.h"
#include "agent/conf.h"
#include "agent/core.h"
#include "agent/fds.h"
#include "agent/http.h"
#include "agent/http_endpoints.h"
#include "agent/log.h"
#include "agent/spawn.h"
#include "agent/targets.h"
#include "agent/thread.h"

#define REQUEST_MAX 8192
#define CLIENT_TIMEOUT_S 5

static char host[CONF_HOST_MAX];
static uint16_t port;
static int listen_fd = -1;
static dev_t listen_dev;
static ino_t listen_ino;
static agent_fd_t client = { -1, 0, 0 };   /* the connection being served */
static bool running;                       /* the server thread exists (atomic) */
static bool configured;                    /* agent_http_start was called */
static bool per_process;                   /* port 0: every process binds its own */
static int started_pid;                    /* the process that last tried to serve */

/* ------------------------------------------------------------------------ */
/* Listening                                                                */
/* ------------------------------------------------------------------------ */

static void report(const char *what, int err)
{
    char line[CONF_HOST_MAX + 200];
    agent_buf_t b;
    agent_buf_init(&b, line, sizeof line);
    agent_buf_str(&b, "heapwatch: HEAPWATCH_HTTP=");
    agent_buf_str(&b, strchr(host, ':') ? "[" : "");
    agent_buf_str_escaped(&b, host, AGENT_QUOTE_MAX);
    agent_buf_str(&b, strchr(host, ':') ? "]:" : ":");
    agent_buf_u64(&b, port);
    agent_buf_str(&b, ": ");
    agent_buf_str(&b, what);
    if (err) {
        agent_buf_str(&b, ": ");
        agent_buf_str(&b, strerror(err));
    }
    agent_buf_str(&b, "; the HTTP server is off, the program runs on\n");
    agent_log(line);
}

/* is_numeric: host needs no resolver. */
static bool is_numeric(const char *h)
{
    unsigned char a[sizeof(struct in6_addr)];
    return strcmp(h, "localhost") == 0 || inet_pton(AF_INET, h, a) == 1 ||
           inet_pton(AF_INET6, h, a) == 1;
}

/* announce: the address fd is bound to (the port the kernel chose, with
 * port 0), as host:port, for targets.c. */
static void announce(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    uint16_t bound = port;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        if (sa.ss_family == AF_INET) bound = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        else if (sa.ss_family == AF_INET6) bound = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    }
    char addr[CONF_HOST_MAX + 16];
    agent_buf_t b;
    agent_buf_init(&b, addr, sizeof addr);
    agent_buf_str(&b, strchr(host, ':') ? "[" : "");
    agent_buf_str(&b, host);
    agent_buf_str(&b, strchr(host, ':') ? "]:" : ":");
    agent_buf_u64(&b, bound);
    if (!b.overflow) agent_targets_set(addr);
}

/* open_listener: binds host:port (every address it resolves to, first
 * success wins). @return 0 or -errno (-ENXIO: the name did not
 * resolve). */
static int open_listener(void)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;   /* a numeric host never reaches a resolver */
    char service[8];
    agent_buf_t sb;
    agent_buf_init(&sb, service, sizeof service);
    agent_buf_u64(&sb, port);
    if (getaddrinfo(host, service, &hints, &res) != 0 || !res) return -ENXIO;
    int err = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = agent_fd_claim(socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                                       ai->ai_protocol));   /* at a high number (fds.c) */
        if (fd < 0) {
            err = fd;
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct stat st;
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0 && fstat(fd, &st) == 0) {
            listen_dev = st.st_dev;
            listen_ino = st.st_ino;
            listen_fd = fd;
            announce(fd);
            err = 0;
            break;
        }
        err = -errno;
        agent_fd_release(fd);
    }
    freeaddrinfo(res);
    return err;
}

/* listen_now: opens the listener, reporting a failure. @return success. */
static bool listen_now(void)
{
    int err = open_listener();
    if (err == -ENXIO) report("the host name does not resolve", 0);
    else if (err) report("cannot listen", -err);
    return err == 0;
}

/* still_ours: the listening descriptor is still the socket we bound. */
static bool still_ours(void)
{
    struct stat st;
    if (listen_fd < 0 || fstat(listen_fd, &st) != 0) return false;
    int fl = fcntl(listen_fd, F_GETFD);
    return S_ISSOCK(st.st_mode) && st.st_dev == listen_dev && st.st_ino == listen_ino &&
           fl >= 0 && (fl & FD_CLOEXEC);
}

/* agent_http_client_ours: c is still the connection accepted (see top). */
bool agent_http_client_ours(int c)
{
    return c == client.fd && agent_fd_ours(&client);
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* read_request: reads the request head (up to the blank line) within the
 * client's time. @return its length, or -ETIMEDOUT (too slow), -EBADF (the
 * program took the descriptor), -ECONNRESET (gone) or -EMSGSIZE (too
 * long). */
static ssize_t read_request(int c, char *buf, size_t cap)
{
    size_t len = 0;
    uint64_t deadline = mono_ms() + CLIENT_TIMEOUT_S * 1000;
    while (len + 1 < cap) {
        uint64_t now = mono_ms();
        if (now >= deadline) return -ETIMEDOUT;
        struct pollfd p = { c, POLLIN, 0 };
        int n = poll(&p, 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return -ETIMEDOUT;
        if (n < 0) return -errno;
        if (!agent_http_client_ours(c)) return -EBADF;
        ssize_t r = recv(c, buf + len, cap - 1 - len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -errno;
        if (r == 0) return -ECONNRESET;
        len += (size_t)r;
        buf[len] = 0;
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n")) return (ssize_t)len;
    }
    return -EMSGSIZE;
}

/* copy_token: the bytes of [s, end) into out (cap), NUL-terminated.
 * @return false when they do not fit. */
static bool copy_token(char *out, size_t cap, const char *s, const char *end)
{
    size_t n = (size_t)(end - s);
    if (n >= cap) return false;
    memcpy(out, s, n);
    out[n] = 0;
    return true;
}

/* header_value: the value of header `name` (case-insensitive) in the
 * head [buf, end), or NULL. */
static const char *header_value(const char *buf, const char *end, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = strchr(buf, '\n'); line && line + 1 < end; line = strchr(line + 1, '\n')) {
        const char *h = line + 1;
        if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
            h += n + 1;
            while (*h == ' ' || *h == '\t') h++;
            return h;
        }
    }
    return NULL;
}

/* parse_request: "METHOD SP TARGET SP HTTP/1.x", headers up to the blank
 * line, then whatever arrived of the body (buf holds len bytes).
 * @return success. */
static bool parse_request(const char *buf, size_t len, agent_http_request_t *r)
{
    memset(r, 0, sizeof *r);
    const char *end = strstr(buf, "\r\n\r\n");
    const char *body = end ? end + 4 : NULL;
    if (!end && (end = strstr(buf, "\n\n"))) body = end + 2;
    if (!end) return false;
    r->body = body;
    r->body_have = len - (size_t)(body - buf);
    const char *cl = header_value(buf, end, "Content-Length");
    if (cl) {
        char *stop;
        errno = 0;
        r->content_length = strtoull(cl, &stop, 10);
        if (errno || stop == cl) return false;
    }
    const char *sp1 = strchr(buf, ' ');
    if (!sp1 || !copy_token(r->method, sizeof r->method, buf, sp1)) return false;
    const char *target = sp1 + 1;
    const char *sp2 = strchr(target, ' ');
    const char *eol = strchr(target, '\n');
    if (!sp2 || (eol && eol < sp2) || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) return false;
    const char *q = memchr(target, '?', (size_t)(sp2 - target));
    if (!copy_token(r->path, sizeof r->path, target, q ? q : sp2)) return false;
    if (q && !copy_token(r->query, sizeof r->query, q + 1, sp2)) return false;
    r->head = strcmp(r->method, "HEAD") == 0;
    return true;
}

/* agent_http_query_value: the value of `key` in the query ("" when it
 * has none), or NULL when absent. Written into val (cap). */
const char *agent_http_query_value(const char *query, const char *key, char *val, size_t cap)
{
    size_t klen = strlen(key);
    for (const char *p = query; *p;) {
        const char *end = strchr(p, '&');
        if (!end) end = p + strlen(p);
        if (strncmp(p, key, klen) == 0 && (p[klen] == '=' || p + klen == end)) {
            const char *v = p[klen] == '=' ? p + klen + 1 : end;
            if (!copy_token(val, cap, v, end)) val[0] = 0;
            return val;
        }
        p = *end ? end + 1 : end;
    }
    return NULL;
}

/* agent_http_read_body: the whole body of r into mem (content_length
 * bytes), within the client's time. */
bool agent_http_read_body(int c, const agent_http_request_t *r, char *mem)
{
    size_t have = r->body_have < r->content_length ? r->body_have : (size_t)r->content_length;
    memcpy(mem, r->body, have);
    uint64_t deadline = mono_ms() + CLIENT_TIMEOUT_S * 1000;
    while (have < r->content_length) {
        uint64_t now = mono_ms();
        if (now >= deadline) return false;
        struct pollfd p = { c, POLLIN, 0 };
        int n = poll(&p, 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || !agent_http_client_ours(c)) return false;
        ssize_t got = recv(c, mem + have, (size_t)r->content_length - have, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        have += (size_t)got;
    }
    mem[have] = 0;
    return true;
}

static void serve(int c)
{
    struct timeval tv = { CLIENT_TIMEOUT_S, 0 };
    (void)setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    static char buf[REQUEST_MAX];
    agent_http_request_t r;
    ssize_t len = read_request(c, buf, sizeof buf);
    if (len < 0) return;   /* too slow, too long, or gone */
    if (!parse_request(buf, (size_t)len, &r)) {
        memset(&r, 0, sizeof r);
        agent_http_send_error(c, &r, "400 Bad Request", "not an HTTP/1.x request", NULL);
        return;
    }
    agent_http_respond(c, &r);
}

/* ------------------------------------------------------------------------ */
/* The server thread                                                        */
/* ------------------------------------------------------------------------ */

static void *server_main(void *arg)
{
    (void)arg;
    agent_enter();   /* everything this thread does is the agent's own */
    if (listen_fd < 0 && !listen_now()) goto out;
    for (;;) {
        agent_targets_retry();   /* our address, until published (targets.c) */
        struct pollfd p = { listen_fd, POLLIN, 0 };
        /* A timeout: notice a closed listener within a second, retry an
         * announcement within 100 ms. */
        int n = poll(&p, 1, agent_targets_pending() ? 100 : 1000);
        if (n < 0 && errno != EINTR) break;
        if (!still_ours()) break;   /* closed or replaced by the program: never touch it again */
        if (n <= 0) continue;
        int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) {
            c = agent_fd_claim(c);   /* at a high number (fds.c) */
            if (c < 0) continue;     /* the program took the number at once: its own */
        }
        if (c < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                struct timespec ts = { 0, 100 * 1000000 };   /* let the program have its descriptors */
                nanosleep(&ts, NULL);
            } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED && errno != EPROTO &&
                       errno != EPERM) {
                break;
            }
            continue;
        }
        struct stat st;
        if (fstat(c, &st) != 0) {
            agent_fd_release(c);
            continue;
        }
        client.fd = c;
        client.dev = st.st_dev;
        client.ino = st.st_ino;
        serve(c);
        agent_fd_close(&client);
    }
out:
    __atomic_store_n(&running, false, __ATOMIC_RELAXED);
    agent_leave();
    return NULL;
}

/* start_server: binds (a numeric host) and starts the thread; once per
 * process (a failure is reported once, never retried). */
static void start_server(void)
{
    started_pid = (int)getpid();
    agent_enter();
    if (is_numeric(host) && !listen_now()) {
        agent_leave();
        return;
    }
    __atomic_store_n(&running, true, __ATOMIC_RELAXED);
    int err = agent_spawn_thread(server_main, "heapwatch-http");
    if (err != 0) {
        __atomic_store_n(&running, false, __ATOMIC_RELAXED);
        report("cannot start the server thread", -err);
        agent_fd_release(listen_fd);
        listen_fd = -1;
    }
    agent_leave();
}

void agent_http_start(const char *h, uint16_t p)
{
    agent_buf_t hb;
    agent_buf_init(&hb, host, sizeof host);
    agent_buf_str(&hb, h);
    port = p;
    per_process = p == 0;
    configured = true;
    start_server();
}

void agent_http_child_start(void)
{
    /* Not in a vfork or posix_spawn child: it shares its parent's memory
     * until it execs (agent_own_process). */
    if (!configured || !per_process || started_pid == (int)getpid() || !agent_own_process() ||
        agent_exiting())
        return;
    start_server();
}

int agent_http_threads(void)
{
    return __atomic_load_n(&running, __ATOMIC_RELAXED) ? 1 : 0;
}

void agent_http_postfork_child(void)
{
    /* The server thread did not survive the fork; the port is the
     * parent's. The parent may have closed and reused the number before
     * forking: closed only if still the socket. */
    if (still_ours()) agent_fd_release(listen_fd);
    else agent_fd_forget(listen_fd);
    listen_fd = -1;
    __atomic_store_n(&running, false, __ATOMIC_RELAXED);
    agent_targets_postfork_child();
}
