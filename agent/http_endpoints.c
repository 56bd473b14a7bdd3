/*
 * http_endpoints.c - what the agent's HTTP server (http.c) answers:
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
 *                           (agent/records.h, HEAPWATCH_METRICS), names
 *                           as `promtool check metrics` wants them; the
 *                           one series with labels is
 *                           heapwatch_process_info{pid,exe} 1, which
 *                           contrib/prometheus/heapwatch.rules.yml joins
 *                           on (job, instance) to name the process
 *   GET /, /debug/pprof/    a short index
 * HEAD is answered like GET without the body, except that HEAD of
 * /debug/pprof/heap writes no profile (and so sends no Content-Length):
 * a HEAD costs nothing on disk. Other methods get 405; other paths 404.
 *
 * The server thread never makes an allocating thread wait for long:
 * profiles and metrics are read under the core's work lock, which the
 * agent's own threads, the exit output and (HEAPWATCH_THREAD=off) an
 * allocating thread doing a due job take, each for one job and never
 * while waiting on the network: the lock is dropped before a byte goes to
 * the network, so a slow client never delays the program's exit. /metrics waits AGENT_METRICS_WAIT_NS at most for that
 * lock and the live-map shards (agent/lock.c); what is busy then reads as
 * zero. Every send is MSG_NOSIGNAL, so a client that hangs up raises no
 * SIGPIPE, and goes only to the connection accepted (checked before each:
 * agent_http_client_ours).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "agent/buf.h"
#include "agent/conf.h"
#include "agent/fds.h"
#include "agent/http_endpoints.h"
#include "agent/output.h"
#include "agent/profile.h"
#include "agent/records.h"
#include "agent/summary.h"
#include "map/map.h"
#include "pprof/pprof.h"

static bool send_all(int c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        if (!agent_http_client_ours(c)) return false;
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
static void send_text(int c, const agent_http_request_t *r, const char *status, const char *type,
                      const char *body, size_t len, const char *extra)
{
    if (send_head(c, status, type, len, extra) && !r->head) (void)send_all(c, body, len);
}

void agent_http_send_error(int c, const agent_http_request_t *r, const char *status, const char *message,
                           const char *extra)
{
    char body[512];
    agent_buf_t b;
    agent_buf_init(&b, body, sizeof body);
    agent_buf_str(&b, message);
    agent_buf_str(&b, "\n");
    send_text(c, r, status, "text/plain; charset=utf-8", b.buf, b.len, extra);
}

static void serve_index(int c, const agent_http_request_t *r)
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
static void serve_heap(int c, const agent_http_request_t *r)
{
    char val[32];
    const char *debug = agent_http_query_value(r->query, "debug", val, sizeof val);
    if (debug && strcmp(debug, "0") != 0) {
        agent_http_send_error(c, r, "400 Bad Request",
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
        agent_http_send_error(c, r, "503 Service Unavailable", "the program is exiting", NULL);
        return;
    }
    struct stat st;
    if (err || fstat(fd, &st) != 0) {
        agent_fd_release(fd);
        agent_http_send_error(c, r, "500 Internal Server Error",
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

/* metric_sample: one metric with its HELP and TYPE lines; its sample is
 * the name, then labels ("" or "{...}"), a space and the value. */
static void metric_sample(agent_buf_t *b, const char *name, const char *type, const char *help,
                          const char *labels, const char *value)
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
    agent_buf_str(b, labels);
    agent_buf_str(b, " ");
    agent_buf_str(b, value);
    agent_buf_str(b, "\n");
}

/* metric: one metric without labels. */
static void metric(agent_buf_t *b, const char *name, const char *type, const char *help, const char *value)
{
    metric_sample(b, name, type, help, "", value);
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

/* metric_f3: a float with 3 decimals (no printf: it may allocate). */
static void metric_f3(agent_buf_t *b, const char *name, const char *type, const char *help, double v)
{
    char num[40];
    agent_buf_t nb;
    agent_buf_init(&nb, num, sizeof num);
    if (!(v > -9e15 && v < 9e15)) v = 0;
    agent_buf_fixed(&nb, pprof_round_i64(v * 1000.0), 3);
    metric(b, name, type, help, num);
}

/* utf8_seq: the length of the valid UTF-8 sequence at s (1 to 4), or 0
 * when the bytes there are not one (a stray continuation byte, an overlong
 * or surrogate form, a sequence cut short). */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    if (n == 0 || (n == 3 && c >= 0xf0)) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (n == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))) return 0;
    if (n == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))) return 0;
    return n;
}

/* label_value: s as a label value of the text format: \, \" and \n
 * escaped, and a byte that is not valid UTF-8 (an executable's name need
 * not be) as U+FFFD, which Prometheus' parser requires. */
static void label_value(agent_buf_t *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_seq(p);
        if (*p == '\\') agent_buf_str(b, "\\\\");
        else if (*p == '"') agent_buf_str(b, "\\\"");
        else if (*p == '\n') agent_buf_str(b, "\\n");
        else if (n) agent_buf_mem(b, p, n);
        else agent_buf_str(b, "\xef\xbf\xbd");
        p += n ? n : 1;
    }
}

/* metric_info: heapwatch_process_info{pid="..",exe=".."} 1. The pid is
 * read now (a forked child that serves its own /metrics names itself),
 * the executable from /proc/self/exe ("" when it cannot be read). */
static void metric_info(agent_buf_t *b, const char *name, const char *type, const char *help)
{
    static char exe[CONF_PATH_MAX];   /* this thread's alone */
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    agent_buf_t vb;
    static char value[CONF_PATH_MAX * 3 + 64];   /* escaped: 3 bytes per byte at most */
    agent_buf_init(&vb, value, sizeof value);
    agent_buf_str(&vb, "{pid=\"");
    agent_buf_u64(&vb, (uint64_t)getpid());
    agent_buf_str(&vb, "\",exe=\"");
    label_value(&vb, exe);
    agent_buf_str(&vb, "\"}");
    metric_sample(b, name, type, help, value, "1");
}

/* put_<type>: one metric, written as agent/records.h says of <type>. */
#define put_info(b, name, kind, help, v) ((void)(v), metric_info(b, name, kind, help))
#define put_u64(b, name, kind, help, v) metric_int(b, name, kind, help, (uint64_t)(v), false)
#define put_i64(b, name, kind, help, v) metric_int(b, name, kind, help, (uint64_t)(int64_t)(v), true)
#define put_f3(b, name, kind, help, v) metric_f3(b, name, kind, help, v)

/* The value of each metric of HEAPWATCH_METRICS (ME_<name>): a metric
 * added to the list and not here does not compile. */
#define ME_process_info 0
#define ME_mallocs_total m->counters.mallocs
#define ME_frees_total m->counters.frees
#define ME_alloc_bytes_total m->counters.alloc_bytes
#define ME_free_bytes_total m->counters.free_bytes
#define ME_live_objects ((int64_t)(m->counters.mallocs - m->counters.frees))
#define ME_live_bytes ((int64_t)(m->counters.alloc_bytes - m->counters.free_bytes))
#define ME_peak_live_bytes m->peak_live_bytes
#define ME_objects_rate m->objects_rate
#define ME_bytes_rate m->bytes_rate
#define ME_alert_level ((uint64_t)m->alert_level)
#define ME_sampling_rate_bytes m->rate
#define ME_samples_total m->samples
#define ME_samples_dropped_total m->samples_dropped
#define ME_map_noverflow m->live.noverflow
#define ME_map_entries m->live.count
#define ME_map_buckets m->live.buckets
#define ME_map_log2_buckets m->live.log2_buckets
#define ME_map_overflow_buckets m->live.overflow_buckets
#define ME_map_shards m->live.shards
#define ME_map_shards_growing m->live.shards_growing
#define ME_map_nevacuate m->live.nevacuate
#define ME_map_noldbuckets m->live.noldbuckets
#define ME_stacks m->stacks
#define ME_agent_memory_bytes m->agent_memory_bytes
#define ME_start_time_seconds (m->start_real_ns / 1000000000u)

/* build_metrics: the Prometheus text exposition (format 0.0.4). */
static void build_metrics(agent_buf_t *b, const agent_metrics_t *m)
{
#define ME_METRIC(name, type, kind, help) put_##type(b, #name, #kind, help, ME_##name);
    HEAPWATCH_METRICS(ME_METRIC)
#undef ME_METRIC
}

static void serve_metrics(int c, const agent_http_request_t *r)
{
    agent_metrics_t m;
    agent_metrics_read(&m);
    static char text[32768];   /* this thread's alone: 4.5 KiB and the exe label, at most 12 KiB */
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

static void serve_symbol(int c, const agent_http_request_t *r)
{
    static const char header[] = "num_symbols: 1\n";
    if (strcmp(r->method, "POST") != 0) {
        if (strcmp(r->method, "GET") != 0 && !r->head)
            agent_http_send_error(c, r, "405 Method Not Allowed", "only GET, HEAD and POST",
                                  "Allow: GET, HEAD, POST\r\n");
        else
            send_text(c, r, "200 OK", "text/plain; charset=utf-8", header, sizeof header - 1, NULL);
        return;
    }
    if (r->content_length > SYMBOL_BODY_MAX) {
        agent_http_send_error(c, r, "413 Content Too Large", "at most 4 MiB of addresses", NULL);
        return;
    }
    map_allocator_t a = map_arena_allocator();
    size_t max_pcs = (size_t)r->content_length / 4 + 1;   /* "0x1+" is the shortest */
    size_t out_cap = 64 * 1024 + max_pcs * 96;
    char *body = a.alloc(a.ctx, (size_t)r->content_length + 1);
    uint64_t *pcs = a.alloc(a.ctx, max_pcs * sizeof *pcs);
    char *text = a.alloc(a.ctx, out_cap);
    if (!body || !pcs || !text) {
        agent_http_send_error(c, r, "503 Service Unavailable", "no memory for the request", NULL);
    } else if (!agent_http_read_body(c, r, body)) {
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

void agent_http_respond(int c, const agent_http_request_t *r)
{
    if (strcmp(r->path, "/debug/pprof/symbol") == 0) {
        serve_symbol(c, r);
        return;
    }
    if (strcmp(r->method, "GET") != 0 && !r->head) {
        agent_http_send_error(c, r, "405 Method Not Allowed", "only GET and HEAD", "Allow: GET, HEAD\r\n");
        return;
    }
    if (strcmp(r->path, "/debug/pprof/heap") == 0) serve_heap(c, r);
    else if (strcmp(r->path, "/metrics") == 0) serve_metrics(c, r);
    else if (strcmp(r->path, "/") == 0 || strcmp(r->path, "/debug/pprof/") == 0) serve_index(c, r);
    else agent_http_send_error(c, r, "404 Not Found", "not found; see /", NULL);
}
