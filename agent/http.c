/*
 * http.c - HEAPWATCH_HTTP: heap profiles and metrics over HTTP.
 *
 *   GET /debug/pprof/heap   a heap profile, gzip'd protobuf, as Go's
 *                           net/http/pprof serves it, so that
 *                           `go tool pprof http://HOST:PORT/debug/pprof/heap`
 *                           works; the same profile is written to
 *                           HEAPWATCH_OUT as heap.<tag>.<seq>.http.pb.gz
 *                           and what is sent is read back from the very
 *                           descriptor that wrote it (pread), never from
 *                           a file reopened by name
 *   /debug/pprof/symbol     names for addresses, as Go's: what `go tool
 *                           pprof` asks for the frames a profile could not
 *                           name itself
 *   GET /metrics            the counters in Prometheus' text format
 *   GET /, /debug/pprof/    a short index
 * HEAD is answered like GET without the body, except that HEAD of
 * /debug/pprof/heap writes no profile (and so sends no Content-Length):
 * a HEAD costs nothing on disk. Other methods get 405.
 *
 * The host comes first, so the rules are the agent's usual ones:
 *
 * - One thread, started at load time with every signal blocked, under the
 *   recursion guard for its whole life (what libc allocates for it is not
 *   counted), serving one connection at a time. It never takes a lock an
 *   allocating thread needs: profiles and metrics are read under the
 *   core's work lock, which only the agent's own threads and the exit
 *   output take, and the lock is dropped before a byte goes to the
 *   network, so a slow client never delays the program's exit. /metrics
 *   waits AGENT_METRICS_WAIT_NS at most for that lock and the live-map
 *   shards (agent/lock.c); what is busy then reads as zero.
 * - A client gets 5 seconds to send its request (8 KiB at most) and each
 *   send 5 seconds to progress; MSG_NOSIGNAL, so a client that hangs up
 *   raises no SIGPIPE.
 * - Every descriptor is close-on-exec; a forked child closes the listening
 *   socket (only the process that bound the port serves it).
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
#include <math.h>
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
#include "agent/fds.h"
#include "agent/http.h"
#include "agent/lock.h"
#include "agent/log.h"
#include "agent/output.h"
#include "agent/profile.h"
#include "agent/spawn.h"
#include "agent/summary.h"
#include "agent/thread.h"
#include "pprof/pprof.h"

#define REQUEST_MAX 8192
#define CLIENT_TIMEOUT_S 5

static char host[CONF_HOST_MAX];
static uint16_t port;
static int listen_fd = -1;
static dev_t listen_dev;
static ino_t listen_ino;
static agent_fd_t client = { -1, 0, 0 };   /* the connection being served */
static bool running;                       /* the server thread exists (atomic) */

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
            err = fd == -1 ? -errno : fd;
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct stat st;
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0 && fstat(fd, &st) == 0) {
            listen_dev = st.st_dev;
            listen_ino = st.st_ino;
            listen_fd = fd;
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

/* client_ours: c is still the connection accepted (see top). */
static bool client_ours(int c)
{
    return c == client.fd && agent_fd_ours(&client);
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct request_s {
    bool head;                   /* HEAD: no body */
    char method[16];
    char path[256];              /* without the query */
    char query[256];
    const char *body;            /* what arrived of the body with the head */
    size_t body_have;
    uint64_t content_length;     /* 0 when absent */
} request_t;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* read_request: reads the request head (up to the blank line) within the
 * client's time. @return its length, or -1. */
static ssize_t read_request(int c, char *buf, size_t cap)
{
    size_t len = 0;
    uint64_t deadline = mono_ms() + CLIENT_TIMEOUT_S * 1000;
    while (len + 1 < cap) {
        uint64_t now = mono_ms();
        if (now >= deadline) return -1;
        struct pollfd p = { c, POLLIN, 0 };
        int n = poll(&p, 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || !client_ours(c)) return -1;
        ssize_t r = recv(c, buf + len, cap - 1 - len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        len += (size_t)r;
        buf[len] = 0;
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n")) return (ssize_t)len;
    }
    return -1;
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
static bool parse_request(const char *buf, size_t len, request_t *r)
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

/* query_value: the value of `key` in the query ("" when it has none), or
 * NULL when absent. Written into val (cap). */
static const char *query_value(const char *query, const char *key, char *val, size_t cap)
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

/* ------------------------------------------------------------------------ */
/* Responses                                                                */
/* ------------------------------------------------------------------------ */

static bool send_all(int c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        if (!client_ours(c)) return false;
        ssize_t w = send(c, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;   /* gone, or SO_SNDTIMEO expired */
        p += w;
        len -= (size_t)w;
    }
    return true;
}

static bool send_head(int c, const char *status, const char *type, uint64_t length, const char *extra)
{
    char head[512];
    agent_buf_t b;
    agent_buf_init(&b, head, sizeof head);
    agent_buf_str(&b, "HTTP/1.1 ");
    agent_buf_str(&b, status);
    agent_buf_str(&b, "\r\nServer: heapwatch\r\nContent-Type: ");
    agent_buf_str(&b, type);
    agent_buf_str(&b, "\r\nContent-Length: ");
    agent_buf_u64(&b, length);
    agent_buf_str(&b, "\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n");
    agent_buf_str(&b, extra ? extra : "");
    agent_buf_str(&b, "\r\n");
    return send_all(c, b.buf, b.len);
}

/* send_text: a whole text response. */
static void send_text(int c, const request_t *r, const char *status, const char *type,
                      const char *body, size_t len, const char *extra)
{
    if (send_head(c, status, type, len, extra) && !r->head) (void)send_all(c, body, len);
}

static void send_error(int c, const request_t *r, const char *status, const char *message,
                       const char *extra)
{
    char body[512];
    agent_buf_t b;
    agent_buf_init(&b, body, sizeof body);
    agent_buf_str(&b, message);
    agent_buf_str(&b, "\n");
    send_text(c, r, status, "text/plain; charset=utf-8", b.buf, b.len, extra);
}

static void serve_index(int c, const request_t *r)
{
    static const char index[] =
        "heapwatch\n"
        "  /debug/pprof/heap   heap profile (go tool pprof http://HOST:PORT/debug/pprof/heap)\n"
        "  /metrics            counters, Prometheus text format\n";
    send_text(c, r, "200 OK", "text/plain; charset=utf-8", index, sizeof index - 1, NULL);
}

/* serve_heap: writes a profile (reason http) and sends the bytes of that
 * very file, read back through the descriptor that wrote it (never a file
 * reopened by name: a link planted in its place would send another file).
 * HEAD writes nothing: the headers only, without a length (the profile
 * does not exist until a GET makes it). */
static void serve_heap(int c, const request_t *r)
{
    char val[32];
    const char *debug = query_value(r->query, "debug", val, sizeof val);
    if (debug && strcmp(debug, "0") != 0) {
        send_error(c, r, "400 Bad Request",
                   "heapwatch serves the protobuf profile only (debug=0); "
                   "read it with go tool pprof", NULL);
        return;
    }
    if (r->head) {
        static const char head[] = "HTTP/1.1 200 OK\r\nServer: heapwatch\r\n"
                                   "Content-Type: application/octet-stream\r\n"
                                   "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n";
        (void)send_all(c, head, sizeof head - 1);
        return;
    }
    char name[128];
    int fd = -1;
    int err = agent_output_profile_fd("http", name, sizeof name, &fd);
    if (err == -ESHUTDOWN) {
        send_error(c, r, "503 Service Unavailable", "the program is exiting", NULL);
        return;
    }
    struct stat st;
    if (err || fstat(fd, &st) != 0) {
        agent_fd_release(fd);
        send_error(c, r, "500 Internal Server Error",
                   "no heap profile could be written in HEAPWATCH_OUT (see the program's stderr)", NULL);
        return;
    }
    char extra[256];
    agent_buf_t xb;
    agent_buf_init(&xb, extra, sizeof extra);
    agent_buf_str(&xb, "Content-Disposition: attachment; filename=\"");
    agent_buf_str(&xb, name);
    agent_buf_str(&xb, "\"\r\n");
    if (send_head(c, "200 OK", "application/octet-stream", (uint64_t)st.st_size, extra)) {
        static char chunk[65536];   /* this thread's alone */
        off_t off = 0;
        while (off < st.st_size) {
            /* pread: the offset is ours alone, whatever the program does. */
            ssize_t n = pread(fd, chunk, sizeof chunk, off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0 || !send_all(c, chunk, (size_t)n)) break;
            off += n;
        }
    }
    agent_fd_release(fd);
}

/* metric: one metric with its HELP and TYPE lines. */
static void metric(agent_buf_t *b, const char *name, const char *type, const char *help, const char *value)
{
    agent_buf_str(b, "# HELP heapwatch_");
    agent_buf_str(b, name);
    agent_buf_str(b, " ");
    agent_buf_str(b, help);
    agent_buf_str(b, "\n# TYPE heapwatch_");
    agent_buf_str(b, name);
    agent_buf_str(b, " ");
    agent_buf_str(b, type);
    agent_buf_str(b, "\nheapwatch_");
    agent_buf_str(b, name);
    agent_buf_str(b, " ");
    agent_buf_str(b, value);
    agent_buf_str(b, "\n");
}

/* metric_int: an integer metric; v is read as signed when is_signed. */
static void metric_int(agent_buf_t *b, const char *name, const char *type, const char *help,
                       uint64_t v, bool is_signed)
{
    char num[32];
    agent_buf_t nb;
    agent_buf_init(&nb, num, sizeof num);
    if (is_signed) agent_buf_i64(&nb, (int64_t)v);
    else agent_buf_u64(&nb, v);
    metric(b, name, type, help, num);
}
#define metric_u64(b, name, type, help, v) metric_int(b, name, type, help, (uint64_t)(v), false)
#define metric_i64(b, name, type, help, v) metric_int(b, name, type, help, (uint64_t)(v), true)

/* metric_rate: a float with 3 decimals (no printf: it may allocate). */
static void metric_rate(agent_buf_t *b, const char *name, const char *help, double v)
{
    char num[40];
    agent_buf_t nb;
    agent_buf_init(&nb, num, sizeof num);
    if (!(v > -9e15 && v < 9e15)) v = 0;
    agent_buf_fixed(&nb, (int64_t)llround(v * 1000.0), 3);
    metric(b, name, "gauge", help, num);
}

/* build_metrics: the Prometheus text exposition (format 0.0.4). */
static void build_metrics(agent_buf_t *b, const agent_metrics_t *m)
{
    const heapwatch_counters_t *c = &m->counters;
    metric_u64(b, "mallocs_total", "counter", "Successful allocations.", c->mallocs);
    metric_u64(b, "frees_total", "counter", "Frees of non-NULL pointers.", c->frees);
    metric_u64(b, "alloc_bytes_total", "counter", "Usable bytes allocated.", c->alloc_bytes);
    metric_u64(b, "free_bytes_total", "counter", "Usable bytes freed.", c->free_bytes);
    metric_i64(b, "live_objects", "gauge", "Live objects: mallocs - frees.",
               (int64_t)(c->mallocs - c->frees));
    metric_i64(b, "live_bytes", "gauge", "Live usable bytes: alloc_bytes - free_bytes.",
               (int64_t)(c->alloc_bytes - c->free_bytes));
    metric_u64(b, "peak_live_bytes", "gauge", "Highest live bytes seen at a snapshot.", m->peak_live_bytes);
    metric_rate(b, "objects_rate", "Live objects per second over HEAPWATCH_WINDOW, at the last snapshot.",
                m->objects_rate);
    metric_rate(b, "bytes_rate", "Live bytes per second over HEAPWATCH_WINDOW, at the last snapshot.",
                m->bytes_rate);
    metric_u64(b, "alert_level", "gauge", "Growth alert level: 0 none, 1 warn, 2 crit.",
               (uint64_t)m->alert_level);
    metric_u64(b, "sampling_rate_bytes", "gauge", "HEAPWATCH_RATE: mean bytes between samples (0: none).",
               m->rate);
    metric_u64(b, "samples_total", "counter", "Allocations sampled.", m->samples);
    metric_u64(b, "samples_dropped_total", "counter", "Samples lost for lack of agent memory.",
               m->samples_dropped);
    metric_u64(b, "map_count", "gauge", "Live sampled allocations in the agent's map.", m->map_count);
    metric_u64(b, "map_B", "gauge", "log2 of the buckets of the largest map shard.", m->map_B);
    metric_u64(b, "map_noverflow", "gauge", "Overflow buckets of the map (approximate, as Go's).",
               m->map_noverflow);
    metric_u64(b, "stacks", "gauge", "Distinct sampled stacks.", m->stacks);
    metric_u64(b, "agent_memory_bytes", "gauge", "Memory the agent has mapped.", m->agent_memory_bytes);
    metric_u64(b, "start_time_seconds", "gauge", "When the process started (Unix seconds).",
               m->start_real_ns / 1000000000u);
}

static void serve_metrics(int c, const request_t *r)
{
    agent_metrics_t m;
    agent_metrics_read(&m);
    static char text[8192];   /* this thread's alone */
    agent_buf_t b;
    agent_buf_init(&b, text, sizeof text);
    build_metrics(&b, &m);
    send_text(c, r, "200 OK", "text/plain; version=0.0.4; charset=utf-8", b.buf, b.len, NULL);
}

/*
 * /debug/pprof/symbol, as Go serves it: `go tool pprof` fetching a profile
 * over HTTP asks it to name the addresses of every mapping that is not
 * fully named (a static function of a stripped libc, say). GET answers
 * "num_symbols: 1" (symbols are available); POST takes addresses joined by
 * '+' and answers one "0xADDR name" line for each address it can name.
 * The addresses are a profile's own, exact. Arena memory, freed after.
 */
#define SYMBOL_BODY_MAX (4u << 20)

typedef struct symbol_ctx_s {
    const uint64_t *pcs;
    size_t n;
    agent_buf_t *out;
} symbol_ctx_t;

static void symbol_lines(struct pprof_builder_s *b, void *arg)
{
    symbol_ctx_t *x = arg;
    for (size_t i = 0; b && i < x->n; i++) {
        const char *name = pprof_builder_frame_name(b, x->pcs, i);
        if (!name) continue;
        agent_buf_str(x->out, "0x");
        char hex[17];
        int k = 16;
        hex[k] = 0;
        uint64_t v = x->pcs[i];
        do {
            hex[--k] = "0123456789abcdef"[v & 15];
            v >>= 4;
        } while (v && k > 0);
        agent_buf_str(x->out, hex + k);
        agent_buf_str(x->out, " ");
        agent_buf_str(x->out, name);
        agent_buf_str(x->out, "\n");
    }
}

/* read_body: the whole body of r into mem (content_length bytes). */
static bool read_body(int c, const request_t *r, char *mem)
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
        if (n <= 0 || !client_ours(c)) return false;
        ssize_t got = recv(c, mem + have, (size_t)r->content_length - have, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        have += (size_t)got;
    }
    mem[have] = 0;
    return true;
}

static void serve_symbol(int c, const request_t *r)
{
    static const char header[] = "num_symbols: 1\n";
    if (strcmp(r->method, "POST") != 0) {
        if (strcmp(r->method, "GET") != 0 && !r->head)
            send_error(c, r, "405 Method Not Allowed", "only GET, HEAD and POST",
                       "Allow: GET, HEAD, POST\r\n");
        else
            send_text(c, r, "200 OK", "text/plain; charset=utf-8", header, sizeof header - 1, NULL);
        return;
    }
    if (r->content_length > SYMBOL_BODY_MAX) {
        send_error(c, r, "413 Content Too Large", "at most 4 MiB of addresses", NULL);
        return;
    }
    map_allocator_t a = map_arena_allocator();
    size_t max_pcs = (size_t)r->content_length / 4 + 1;   /* "0x1+" is the shortest */
    size_t out_cap = 64 * 1024 + max_pcs * 96;
    char *body = a.alloc(a.ctx, (size_t)r->content_length + 1);
    uint64_t *pcs = a.alloc(a.ctx, max_pcs * sizeof *pcs);
    char *text = a.alloc(a.ctx, out_cap);
    if (!body || !pcs || !text) {
        send_error(c, r, "503 Service Unavailable", "no memory for the request", NULL);
    } else if (!read_body(c, r, body)) {
        /* too slow or gone: nothing to answer */
    } else {
        size_t n = 0;
        for (char *p = body; *p && n < max_pcs;) {
            char *stop;
            uint64_t pc = strtoull(p, &stop, 0);
            if (stop == p) stop++;
            else if (pc) pcs[n++] = pc;
            p = stop;
        }
        agent_buf_t out;
        agent_buf_init(&out, text, out_cap);
        agent_buf_str(&out, header);
        symbol_ctx_t x = { pcs, n, &out };
        if (n) agent_profile_name_pcs(pcs, n, symbol_lines, &x);
        send_text(c, r, "200 OK", "text/plain; charset=utf-8", out.buf, out.len, NULL);
    }
    if (body) a.free(a.ctx, body);
    if (pcs) a.free(a.ctx, pcs);
    if (text) a.free(a.ctx, text);
}

static void serve(int c)
{
    struct timeval tv = { CLIENT_TIMEOUT_S, 0 };
    (void)setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    static char buf[REQUEST_MAX];
    request_t r;
    ssize_t len = read_request(c, buf, sizeof buf);
    if (len < 0) return;   /* too slow, too long, or gone */
    if (!parse_request(buf, (size_t)len, &r)) {
        memset(&r, 0, sizeof r);
        send_error(c, &r, "400 Bad Request", "not an HTTP/1.x request", NULL);
        return;
    }
    if (strcmp(r.path, "/debug/pprof/symbol") == 0) {
        serve_symbol(c, &r);
        return;
    }
    if (strcmp(r.method, "GET") != 0 && !r.head) {
        send_error(c, &r, "405 Method Not Allowed", "only GET and HEAD", "Allow: GET, HEAD\r\n");
        return;
    }
    if (strcmp(r.path, "/debug/pprof/heap") == 0) serve_heap(c, &r);
    else if (strcmp(r.path, "/metrics") == 0) serve_metrics(c, &r);
    else if (strcmp(r.path, "/") == 0 || strcmp(r.path, "/debug/pprof/") == 0) serve_index(c, &r);
    else send_error(c, &r, "404 Not Found", "not found; see /", NULL);
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
        struct pollfd p = { listen_fd, POLLIN, 0 };
        int n = poll(&p, 1, 1000);   /* a timeout: notice a closed listener within a second */
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

void agent_http_start(const char *h, uint16_t p)
{
    agent_buf_t hb;
    agent_buf_init(&hb, host, sizeof host);
    agent_buf_str(&hb, h);
    port = p;
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
}
