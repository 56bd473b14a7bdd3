/*
 * watch.c - what the background thread does at every snapshot: the
 * timeline record, the growth-rate alerts, and the per-stack history that
 * says which stacks grew.
 *
 * Every HEAPWATCH_INTERVAL the exact counters are read and pushed into the
 * alert engine (alert.c), which keeps a ring of snapshots over
 * HEAPWATCH_WINDOW and returns the live-object and live-byte rates over the
 * window, and the level transition, if any (sustain, grace and hysteresis
 * are the engine's; see alert.h). One JSON line per snapshot goes to
 * timeline.<pid>.jsonl.zst (timeline.c: zstd, flushed per record).
 *
 * Attribution. Growth must be measured over the same window as the rate,
 * per stack. The stack table's totals are cumulative, so a copy of every
 * stack's sampled in-use (objects, bytes) is kept every window/4 (at least
 * every interval) in a ring of HISTORY copies; at an alert, the base is the
 * newest copy taken at or before the engine's window start (the oldest one
 * if none is that old: growth since the first copy), and each stack's
 * growth is its in-use now minus its in-use then, unsampled with the
 * stack's average object size exactly as a profile would be. The `top`
 * stacks (TOP_MAX: 16, enough for the report page to draw the growth as a
 * flame graph) are those with the largest byte growth. Their frames are
 * named through the profile writer's symbol cache (C++ demangled; from
 * separate debug files when installed); a frame without a name reads as
 * its file's base name and offset ("liblua5.4.so.0+0x1a2b3"), or its
 * address when it lies in no file. `function` is the innermost frame that
 * is not an allocation wrapper (operator new, std allocators, strdup: by
 * mangled or demangled name) - and when that frame has no name, its
 * file+offset, never the name of a caller further up. The agent's own
 * frames were never recorded.
 *
 * On entering warn or crit: a heap profile (reason `alert`), a record
 * appended to alerts.<tag>.jsonl, and one line on stderr. On recovery: a
 * record only. The alerts file is created whole (temporary file O_EXCL,
 * then a rename that never replaces), and each later record is one write
 * through a descriptor opened for it through the verified output
 * directory with O_APPEND|O_NOFOLLOW and checked to be the very file
 * created (device, inode, owner): never a link, never someone else's
 * file; a file removed or replaced ends the appends (quietly).
 *
 * The timeline keeps no descriptor between snapshots either (timeline.c,
 * timeline_open_io), through the same directory services of the core.
 *
 * Everything here runs on the background thread (or the exiting thread, or
 * with HEAPWATCH_THREAD=off an allocating thread whose job is due; see
 * background.c), under the core's work lock (checked by the debug agent)
 * and the recursion guard, with arena memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/alert.h"
#include "agent/buf.h"
#include "agent/conf.h"
#include "agent/core.h"
#include "agent/fds.h"
#include "agent/hot.h"
#include "agent/live.h"
#include "agent/log.h"
#include "agent/out.h"
#include "agent/output.h"
#include "agent/profile.h"
#include "agent/records.h"
#include "agent/sample.h"
#include "agent/stacks.h"
#include "agent/timeline.h"
#include "agent/watch.h"
#include "map/map.h"
#include "pprof/pprof.h"

#define HISTORY 6                /* per-stack copies kept */
#define TOP_MAX 16               /* stacks named in an alert (enough for the
                                  * report page's flame graph of the growth) */
#define TOP_FRAMES 16            /* frames of each printed in the record */
#define FRAME_TEXT_MAX 512       /* bytes of one frame's name in the record
                                  * (longer: cut, "..." appended) */

typedef struct stack_copy_s {
    uint64_t seq;                /* engine sequence number of the snapshot */
    uint32_t n;                  /* stacks copied (ids 0..n-1) */
    int64_t *inuse;              /* 2n values: objects, bytes (raw samples) */
} stack_copy_t;

typedef struct top_s {
    agent_stack_t *stack;
    int64_t growth_objects;      /* unsampled */
    int64_t growth_bytes;
} top_t;

static const agent_conf_t *conf;
static const char *dir;
static map_allocator_t arena;
static alert_engine_t engine;
static bool engine_ok;
static timeline_t *timeline;
static bool timeline_failed;     /* reported once; no more attempts */
static stack_copy_t history[HISTORY];
static unsigned history_next;    /* slot of the next copy */
static uint64_t last_copy_ns;
static bool have_copy;
static bool alerts_published;    /* alerts.<tag>.jsonl exists */
static bool alerts_stopped;      /* removed or replaced: no more appends */
static char alerts_name[96];
static dev_t alerts_dev;
static ino_t alerts_ino;
static char exe_name[256];
static alert_result_t last;      /* the last snapshot's rates (for /metrics) */
static bool have_last;

/* ------------------------------------------------------------------------ */
/* Start, fork                                                              */
/* ------------------------------------------------------------------------ */

static void read_exe_name(void)
{
    char path[CONF_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    path[n > 0 ? n : 0] = 0;
    const char *base = strrchr(path, '/');
    agent_buf_t b;
    agent_buf_init(&b, exe_name, sizeof exe_name);
    agent_buf_str(&b, base ? base + 1 : path);
}

void agent_watch_init(const agent_conf_t *c, const char *out_dir, uint64_t start_mono_ns)
{
    conf = c;
    dir = out_dir;
    arena = map_arena_allocator();
    alert_conf_t ac = {
        .warn = c->warn, .crit = c->crit, .window_ns = c->window_ns,
        .interval_ns = c->interval_ns, .sustain_ns = c->sustain_ns,
        .grace_ns = c->grace_ns, .start_ns = start_mono_ns,
    };
    alert_err_t err = alert_engine_init(&engine, &ac, &arena);
    engine_ok = err == ALERT_OK;
    if (!engine_ok) {
        char line[200];
        agent_buf_t b;
        agent_buf_init(&b, line, sizeof line);
        agent_buf_str(&b, "heapwatch: growth-rate alerts are off: ");
        agent_buf_str(&b, alert_strerror(err));
        agent_buf_str(&b, " (check HEAPWATCH_WARN <= HEAPWATCH_CRIT)\n");
        agent_log(line);
    }
    read_exe_name();
}

static void drop_history(void)
{
    for (unsigned i = 0; i < HISTORY; i++) {
        if (history[i].inuse) arena.free(arena.ctx, history[i].inuse);
        history[i] = (stack_copy_t){ 0 };
    }
    history_next = 0;
    have_copy = false;
}

void agent_watch_postfork_child(uint64_t start_mono_ns)
{
    /* The parent's timeline is the parent's: let go of it without a word. */
    if (timeline) timeline_abandon(timeline);
    timeline = NULL;
    timeline_failed = false;
    alerts_published = false;
    alerts_stopped = false;
    if (engine_ok) alert_engine_reset(&engine, start_mono_ns);
    drop_history();
    have_last = false;
}

/* ------------------------------------------------------------------------ */
/* Per-stack history                                                        */
/* ------------------------------------------------------------------------ */

/* copy_stacks: a copy of every stack's in-use, tagged with seq. */
static void copy_stacks(uint64_t seq)
{
    uint32_t n = agent_stacks_count();
    stack_copy_t *c = &history[history_next];
    if (c->inuse) arena.free(arena.ctx, c->inuse);
    *c = (stack_copy_t){ .seq = seq };
    if (n == 0) return;
    c->inuse = arena.alloc(arena.ctx, (size_t)n * 2 * sizeof(int64_t));
    if (!c->inuse) return;   /* no memory: this copy is empty */
    c->n = n;
    for (uint32_t id = 0; id < n; id++) {
        agent_stack_t *s = agent_stack_get(id);
        if (!s) continue;
        agent_stack_totals_t t;
        agent_stack_read(s, &t);
        c->inuse[2 * id] = t.inuse_objects;
        c->inuse[2 * id + 1] = t.inuse_bytes;
    }
    history_next = (history_next + 1) % HISTORY;
    have_copy = true;
}

/* maybe_copy: keeps a copy every max(interval, window/4). */
static void maybe_copy(uint64_t seq, uint64_t mono_ns)
{
    uint64_t spacing = conf->window_ns / 4;
    if (spacing < conf->interval_ns) spacing = conf->interval_ns;
    if (have_copy && mono_ns - last_copy_ns + conf->interval_ns / 2 < spacing) return;
    copy_stacks(seq);
    last_copy_ns = mono_ns;
}

/* base_copy: the newest copy at or before seq, else the oldest, or NULL. */
static const stack_copy_t *base_copy(uint64_t seq)
{
    const stack_copy_t *best = NULL, *oldest = NULL;
    for (unsigned i = 0; i < HISTORY; i++) {
        const stack_copy_t *c = &history[i];
        if (!c->inuse) continue;
        if (c->seq <= seq && (!best || c->seq > best->seq)) best = c;
        if (!oldest || c->seq < oldest->seq) oldest = c;
    }
    return best ? best : oldest;
}

/* unsample: the factor that turns raw samples of a stack with totals t
 * into estimates, as the profile's unsampling does (average size + 8). */
static double unsample(const agent_stack_totals_t *t)
{
    uint64_t rate = agent_sample_rate;
    if (rate <= 1 || t->alloc_objects <= 0 || t->alloc_bytes <= 0) return 1.0;
    double avg = (double)t->alloc_bytes / (double)t->alloc_objects;
    return 1.0 / (1.0 - pprof_exp(-(avg + AGENT_BLOCK_EXTRA) / (double)rate));
}

/* find_top: the TOP_MAX stacks whose in-use bytes grew most since base. */
static unsigned find_top(const stack_copy_t *base, top_t *top)
{
    unsigned ntop = 0;
    uint32_t n = agent_stacks_count();
    for (uint32_t id = 1; id < n; id++) {
        agent_stack_t *s = agent_stack_get(id);
        if (!s) continue;
        agent_stack_totals_t tot;
        agent_stack_read(s, &tot);
        int64_t objects = tot.inuse_objects, bytes = tot.inuse_bytes;
        if (base && id < base->n) {
            objects -= base->inuse[2 * id];
            bytes -= base->inuse[2 * id + 1];
        }
        if (bytes <= 0) continue;
        double f = unsample(&tot);
        top_t t = { s, (int64_t)((double)objects * f), (int64_t)((double)bytes * f) };
        unsigned pos = ntop < TOP_MAX ? ntop++ : TOP_MAX;
        if (pos == TOP_MAX) {
            if (t.growth_bytes <= top[TOP_MAX - 1].growth_bytes) continue;
            pos = TOP_MAX - 1;
        }
        while (pos > 0 && top[pos - 1].growth_bytes < t.growth_bytes) {
            top[pos] = top[pos - 1];
            pos--;
        }
        top[pos] = t;
    }
    return ntop;
}

/* ------------------------------------------------------------------------ */
/* Records                                                                  */
/* ------------------------------------------------------------------------ */

static void kv_i64(agent_buf_t *b, const char *k, int64_t v)
{
    agent_buf_json_key(b, k, false);
    agent_buf_i64(b, v);
}

/* kv_num: a float with 3 decimals (rates, seconds). */
static void kv_num(agent_buf_t *b, const char *k, double v)
{
    agent_buf_json_key(b, k, false);
    if (!(v > -9e15 && v < 9e15)) v = 0;   /* NaN, or beyond what %f-free formatting holds */
    agent_buf_fixed(b, pprof_round_i64(v * 1000.0), 3);
}

static void kv_time(agent_buf_t *b, const char *k, uint64_t real_ns)
{
    agent_buf_json_key(b, k, false);
    agent_buf_fixed(b, (int64_t)(real_ns / 1000), 6);
}

/* put_<type>: one "key": value, written as agent/records.h says of <type>
 * (f6 takes nanoseconds and writes seconds to the microsecond). */
#define put_u64(b, k, v) agent_buf_json_u64(b, k, v, false)
#define put_i64(b, k, v) kv_i64(b, k, v)
#define put_f3(b, k, v) kv_num(b, k, v)
#define put_f6(b, k, ns) kv_time(b, k, ns)
#define put_str(b, k, v) (agent_buf_json_key(b, k, false), agent_buf_json_str(b, v))

/* timeline_record: one line of the timeline, its fields those of
 * HEAPWATCH_TIMELINE_FIELDS in their order; the value of field F is TL_F
 * below, so a field added to the list does not compile without one. */
static void timeline_record(agent_buf_t *b, const heapwatch_counters_t *c, uint64_t real_ns,
                            uint64_t start_real_ns, const alert_result_t *r)
{
    agent_live_stats_t live;
    agent_live_get_stats(&live);
    map_arena_stats_t mem;
    map_arena_get_stats(&mem);
#define TL_time real_ns
#define TL_elapsed_s ((double)(real_ns - start_real_ns) * 1e-9)
#define TL_mallocs c->mallocs
#define TL_frees c->frees
#define TL_live_objects ((int64_t)(c->mallocs - c->frees))
#define TL_live_bytes ((int64_t)(c->alloc_bytes - c->free_bytes))
#define TL_alloc_bytes c->alloc_bytes
#define TL_free_bytes c->free_bytes
#define TL_objects_rate (r ? r->objects_rate : 0)
#define TL_bytes_rate (r ? r->bytes_rate : 0)
#define TL_window_s (r ? (double)r->window_span_ns * 1e-9 : 0)
#define TL_rate_judged (uint64_t)(r && r->eligible)
#define TL_level (r ? alert_level_name(r->level) : "none")
#define TL_peak_live_bytes agent_peak_live_bytes()
#define TL_map_count live.count
#define TL_map_B live.log2_buckets
#define TL_map_noverflow live.noverflow
#define TL_map_entries live.count
#define TL_map_buckets live.buckets
#define TL_map_log2_buckets live.log2_buckets
#define TL_map_overflow_buckets live.overflow_buckets
#define TL_map_shards live.shards
#define TL_map_shards_growing live.shards_growing
#define TL_map_nevacuate live.nevacuate
#define TL_map_noldbuckets live.noldbuckets
#define TL_stacks agent_stacks_distinct()
#define TL_agent_memory_bytes mem.mapped_bytes
#define TL_FIELD(name, type, doc) put_##type(b, #name, TL_##name);
    agent_buf_str(b, "{");
    HEAPWATCH_TIMELINE_FIELDS(TL_FIELD)
    agent_buf_str(b, "}\n");
#undef TL_FIELD
}

static int timeline_dirfd(void *ctx)
{
    (void)ctx;
    int fd = agent_output_dirfd();
    return fd < 0 ? -EACCES : fd;
}

static int timeline_publish(void *ctx, int dirfd, const char *tmp, char *name, size_t cap)
{
    (void)ctx;
    return agent_output_publish(dirfd, tmp, "timeline.", ".jsonl.zst", name, cap);
}

/* append_timeline: one record; the file is opened on first use; final:
 * the exit record (when it is the first, the timeline's only one). */
static void append_timeline(const agent_buf_t *b, bool final)
{
    if (timeline_failed || b->overflow) return;
    timeline_err_t err = TIMELINE_OK;
    if (!timeline) {
        if (!agent_output_ready()) return;
        static const timeline_io_t io = { timeline_dirfd, timeline_publish, NULL };
        char base[96];
        agent_buf_t nb;
        agent_buf_init(&nb, base, sizeof base);
        agent_buf_str(&nb, "timeline.");
        agent_buf_str(&nb, agent_output_tag());
        agent_buf_str(&nb, ".jsonl.zst");
        timeline_opts_t opts = { .no_fsync = !agent_out_fsync,    /* HEAPWATCH_FSYNC */
                                 .one_record = final ? b->len : 0 };
        err = timeline_open_io(&timeline, &arena, &io, base, &opts);
    }
    if (!err) {
        bool was_published = timeline_published(timeline);
        err = timeline_append(timeline, b->buf, b->len);
        if (!err && !was_published) agent_output_remember(timeline_name(timeline));
    }
    if (err) {
        timeline_failed = true;
        char line[200];
        agent_buf_t lb;
        agent_buf_init(&lb, line, sizeof line);
        agent_buf_str(&lb, "heapwatch: the timeline stops: ");
        agent_buf_str(&lb, timeline_strerror(err));
        agent_buf_str(&lb, "; the program runs on\n");
        agent_log(line);
    }
}

/* ------------------------------------------------------------------------ */
/* Alerts                                                                   */
/* ------------------------------------------------------------------------ */

/* is_wrapper: an allocation wrapper, not where the program allocates;
 * name is the demangled name, sys the linker's (either may be NULL). */
static bool is_wrapper(const char *name, const char *sys)
{
#define WRAPPER_PREFIX(p) p,
    static const char *const prefixes[] = { HEAPWATCH_WRAPPER_PREFIXES(WRAPPER_PREFIX) };
#undef WRAPPER_PREFIX
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t n = strlen(prefixes[i]);
        if ((name && strncmp(name, prefixes[i], n) == 0) || (sys && strncmp(sys, prefixes[i], n) == 0))
            return true;
    }
    return false;
}

typedef struct names_ctx_s {
    agent_buf_t *b;
    const top_t *top;
    unsigned ntop;
    char first_function[256];   /* top[0]'s function, for the stderr line */
} names_ctx_t;

/* frame_text: how frame f of s reads: its name; unnamed, its file's base
 * name and the offset in it ("liblua5.4.so.0+0x1a2b3"); in no file, its
 * address ("0x..."). Into buf (cap bytes), cut at FRAME_TEXT_MAX. */
static const char *frame_text(pprof_builder_t *pb, const agent_stack_t *s, uint32_t f,
                              char *buf, size_t cap, const char **sys)
{
    pprof_frame_info_t fi;
    if (!pb || !pprof_builder_frame_info(pb, s->pcs, f, &fi)) fi = (pprof_frame_info_t){ 0 };
    *sys = fi.system_name;
    agent_buf_t b;
    agent_buf_init(&b, buf, cap);
    if (fi.name) {
        if (strlen(fi.name) <= FRAME_TEXT_MAX) return fi.name;
        agent_buf_mem(&b, fi.name, FRAME_TEXT_MAX);
        agent_buf_str(&b, "...");
        return buf;
    }
    uint64_t v = s->pcs[f];
    if (fi.file && fi.file[0]) {
        const char *base = strrchr(fi.file, '/');
        agent_buf_str(&b, base ? base + 1 : fi.file);
        agent_buf_str(&b, "+");
        v = fi.file_offset;
    }
    agent_buf_str(&b, "0x");
    bool digit = false;
    for (int shift = 60; shift >= 0; shift -= 4) {
        unsigned d = (unsigned)(v >> shift) & 15;
        if (!d && !digit && shift) continue;   /* no leading zeros */
        digit = true;
        agent_buf_mem(&b, &"0123456789abcdef"[d], 1);
    }
    return buf;
}

/* top_function: the innermost frame of s that is not an allocation
 * wrapper, as frame_text gives it: never a caller's name when that frame
 * has none (it reads as file+offset). "?" when every frame is a wrapper. */
static const char *top_function(pprof_builder_t *pb, const agent_stack_t *s, char *buf, size_t cap)
{
    for (uint32_t f = 0; f < s->depth; f++) {
        const char *sys, *text = frame_text(pb, s, f, buf, cap, &sys);
        if (!is_wrapper(text, sys)) return text;
    }
    return "?";
}

/* top_json: the "top" array, frames named through the symbol cache. */
static void top_json(pprof_builder_t *pb, void *vctx)
{
    names_ctx_t *ctx = vctx;
    agent_buf_t *b = ctx->b;
    char buf[FRAME_TEXT_MAX + 8];
    agent_buf_str(b, "[");
    for (unsigned i = 0; i < ctx->ntop; i++) {
        const agent_stack_t *s = ctx->top[i].stack;
        agent_buf_str(b, i ? ", {" : "{");
        agent_buf_json_str(b, "stack");
        agent_buf_str(b, ": [");
        for (uint32_t f = 0; f < s->depth && f < TOP_FRAMES; f++) {
            const char *sys;
            agent_buf_str(b, f ? ", " : "");
            agent_buf_json_str(b, frame_text(pb, s, f, buf, sizeof buf, &sys));
        }
        agent_buf_str(b, "], ");
        agent_buf_json_str(b, "function");
        agent_buf_str(b, ": ");
        const char *function = top_function(pb, s, buf, sizeof buf);
        agent_buf_json_str(b, function);
        if (i == 0) {
            agent_buf_t fb;
            agent_buf_init(&fb, ctx->first_function, sizeof ctx->first_function);
            agent_buf_str(&fb, function);   /* names die with the builder: copy */
        }
        agent_buf_str(b, ", ");
        agent_buf_json_str(b, "growth_bytes");
        agent_buf_str(b, ": ");
        agent_buf_i64(b, ctx->top[i].growth_bytes);
        agent_buf_str(b, ", ");
        agent_buf_json_str(b, "growth_objects");
        agent_buf_str(b, ": ");
        agent_buf_i64(b, ctx->top[i].growth_objects);
        agent_buf_str(b, "}");
    }
    agent_buf_str(b, "]");
}

/* publish_alerts: the alerts file, created whole with its first line. */
static void publish_alerts(int dirfd, const agent_buf_t *b)
{
    char tmp[128];
    int fd = agent_tmp_create(dirfd, "alerts.jsonl", tmp, sizeof tmp);
    if (fd < 0) return;
    struct stat st;
    int err = agent_write_all(fd, b->buf, b->len);
    if (!err) err = agent_file_sync(fd);
    if (!err && fstat(fd, &st) != 0) err = -errno;
    agent_fd_release(fd);
    if (!err) err = agent_output_publish(dirfd, tmp, "alerts.", ".jsonl", alerts_name, sizeof alerts_name);
    if (err) {
        (void)unlinkat(dirfd, tmp, 0);
        return;
    }
    alerts_published = true;
    alerts_dev = st.st_dev;
    alerts_ino = st.st_ino;
    agent_output_remember(alerts_name);
}

/* append_alert: one line to alerts.<tag>.jsonl, whole or not at all. */
static void append_alert(const agent_buf_t *b)
{
    if (b->overflow || alerts_stopped) return;
    int dirfd = agent_output_dirfd();
    if (dirfd < 0) return;
    if (!alerts_published) {
        publish_alerts(dirfd, b);
        return;
    }
    int fd = agent_fd_claimat(dirfd, alerts_name, O_WRONLY | O_APPEND | O_NOFOLLOW, 0);
    if (fd < 0) {
        alerts_stopped = true;
        return;
    }
    if (agent_file_check(fd, alerts_dev, alerts_ino) != 0) {
        alerts_stopped = true;   /* not the file we created */
        agent_fd_release(fd);
        return;
    }
    (void)agent_write_all(fd, b->buf, b->len);   /* one write: a whole line */
    /* Closed only while still ours: a thread of the program may have
     * closed and reused the number meanwhile. */
    agent_fd_release(fd);
}

/* alert_line: the one stderr line of an alert. */
static void alert_line(const alert_result_t *r, const top_t *top, unsigned ntop,
                       const char *function, const char *profile)
{
    char line[1024];
    agent_buf_t b;
    agent_buf_init(&b, line, sizeof line);
    agent_buf_str(&b, "heapwatch: ");
    agent_buf_str(&b, alert_level_name(r->level));
    agent_buf_str(&b, ": ");
    agent_buf_str_escaped(&b, exe_name, AGENT_QUOTE_MAX);   /* a file name may hold a newline */
    agent_buf_str(&b, " (pid ");
    agent_buf_u64(&b, (uint64_t)getpid());
    agent_buf_str(&b, "): live objects growing ");
    agent_buf_i64(&b, pprof_round_i64(r->objects_rate));
    agent_buf_str(&b, "/s over ");
    agent_buf_fixed(&b, (int64_t)((r->window_span_ns + 50000000ull) / 100000000ull), 1);
    agent_buf_str(&b, " s (");
    agent_buf_str(&b, r->level == ALERT_LEVEL_CRIT ? "HEAPWATCH_CRIT" : "HEAPWATCH_WARN");
    agent_buf_str(&b, " ");
    agent_buf_u64(&b, r->threshold);
    agent_buf_str(&b, "/s)");
    if (ntop) {
        agent_buf_str(&b, "; top: ");
        agent_buf_str_escaped(&b, function ? function : "?", AGENT_QUOTE_MAX);
        agent_buf_str(&b, " +");
        agent_buf_i64(&b, top[0].growth_bytes);
        agent_buf_str(&b, " bytes");
    }
    if (profile && profile[0]) {
        agent_buf_str(&b, "; profile ");
        agent_buf_str(&b, profile);
    }
    if (b.overflow) b.len = sizeof line - 2;
    line[b.len] = '\n';
    line[b.len + 1] = 0;
    agent_log(line);
}

/* put_strnull: a string, or null when empty; put_tops: the "top" array,
 * its frames named through the profile writer's symbol cache. */
#define put_strnull(b, k, v) \
    (agent_buf_json_key(b, k, false), (v)[0] ? agent_buf_json_str(b, v) : agent_buf_str(b, "null"))
#define put_tops(b, k, ctx) (agent_buf_json_key(b, k, false), write_tops(ctx))

/* write_tops: the top stacks of ctx, named (or as addresses when naming
 * fails). */
static void write_tops(names_ctx_t *ctx)
{
    agent_stack_t *stacks[TOP_MAX];
    for (unsigned i = 0; i < ctx->ntop; i++) stacks[i] = ctx->top[i].stack;
    if (ctx->ntop) agent_profile_name_stacks(stacks, ctx->ntop, top_json, ctx);
    else top_json(NULL, ctx);
}

/* The value of each field of HEAPWATCH_ALERT_FIELDS (AL_<name>) in
 * raise_alert: a field added to the list and not here does not compile. */
#define AL_time real_ns
#define AL_pid ((uint64_t)getpid())
#define AL_exe exe_name
#define AL_event (entering ? "alert" : "recovery")
#define AL_level alert_level_name(entering ? r->level : r->prev_level)
#define AL_metric "objects_rate"
#define AL_value r->objects_rate
#define AL_threshold r->threshold
#define AL_window_s ((double)r->window_span_ns * 1e-9)
#define AL_live_objects ((int64_t)(c->mallocs - c->frees))
#define AL_live_bytes ((int64_t)(c->alloc_bytes - c->free_bytes))
#define AL_bytes_rate r->bytes_rate
#define AL_growth_objects r->delta_objects
#define AL_growth_bytes r->delta_bytes
#define AL_profile profile
#define AL_top (&ctx)

static void raise_alert(const heapwatch_counters_t *c, uint64_t real_ns, const alert_result_t *r)
{
    top_t top[TOP_MAX];
    unsigned ntop = agent_sample_rate ? find_top(base_copy(r->window_start_seq), top) : 0;
    char profile[96] = "";
    bool entering = r->event != ALERT_EVENT_RECOVER;
    if (entering) agent_output_profile("alert", profile, sizeof profile);

    /* Room for TOP_MAX stacks of TOP_FRAMES frames of FRAME_TEXT_MAX
     * bytes, escaped: a record that would not fit is not written. */
    static char text[192 * 1024];
    agent_buf_t b;
    agent_buf_init(&b, text, sizeof text);
    names_ctx_t ctx = { &b, top, entering ? ntop : 0, "" };
    agent_buf_str(&b, "{");
#define AL_FIELD(name, type, doc) put_##type(&b, #name, AL_##name);
    HEAPWATCH_ALERT_FIELDS(AL_FIELD)
#undef AL_FIELD
    agent_buf_str(&b, "}\n");
    append_alert(&b);
    if (entering) alert_line(r, top, ntop, ctx.first_function[0] ? ctx.first_function : NULL, profile);
}

/* ------------------------------------------------------------------------ */
/* The snapshot                                                             */
/* ------------------------------------------------------------------------ */

void agent_watch_snapshot(const heapwatch_counters_t *c, uint64_t mono_ns, uint64_t real_ns,
                          uint64_t start_real_ns, bool final)
{
    AGENT_ASSERT_WORK_HELD();
    alert_result_t r;
    bool have_rate = false;
    if (engine_ok) {
        alert_snap_t snap = { mono_ns, c->mallocs, c->frees, c->alloc_bytes, c->free_bytes };
        have_rate = alert_engine_push(&engine, &snap, &r) == ALERT_OK;
    }
    static char text[2048];
    agent_buf_t b;
    agent_buf_init(&b, text, sizeof text);
    timeline_record(&b, c, real_ns, start_real_ns, have_rate ? &r : NULL);
    append_timeline(&b, final);
    if (!have_rate) return;
    last = r;
    have_last = true;
    if (!final && r.event != ALERT_EVENT_NONE) raise_alert(c, real_ns, &r);
    if (agent_sample_rate) maybe_copy(r.seq, mono_ns);
}

void agent_watch_start(const heapwatch_counters_t *c, uint64_t mono_ns)
{
    AGENT_ASSERT_WORK_HELD();
    /* The first base of the rates: growth from the very start (a load
     * phase before the first interval ends) is measured too. */
    if (!engine_ok) return;
    alert_snap_t snap = { mono_ns, c->mallocs, c->frees, c->alloc_bytes, c->free_bytes };
    alert_result_t r;
    (void)alert_engine_push(&engine, &snap, &r);
    if (agent_sample_rate) maybe_copy(r.seq, mono_ns);
}

void agent_watch_last(double *objects_rate, double *bytes_rate, int *level)
{
    AGENT_ASSERT_WORK_HELD();
    *objects_rate = have_last ? last.objects_rate : 0;
    *bytes_rate = have_last ? last.bytes_rate : 0;
    *level = have_last ? (int)last.level : ALERT_LEVEL_NONE;   /* 0, 1, 2: none, warn, crit */
}

bool agent_watch_wrote(void)
{
    AGENT_ASSERT_WORK_HELD();
    return timeline != NULL || alerts_published;
}

void agent_watch_close(void)
{
    AGENT_ASSERT_WORK_HELD();
    if (!timeline) return;
    timeline_err_t err = timeline_close(timeline);
    timeline = NULL;
    (void)err;   /* every flushed record is in the file whatever happened */
}
