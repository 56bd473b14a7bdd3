/*
 * summary.c - what the agent says of a process: the summary file written
 * at exit (summary.<tag>.json: SPEC.md's fields and ours, README) and the
 * figures /metrics shows. Both read the counters, the thread blocks'
 * sampling tallies, the live map and the arena at one moment; the live
 * map's shards are taken with agent_lock, so inside a bounded stretch
 * (exit, /metrics) a busy shard is skipped and noted (lock.c).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/buf.h"
#include "agent/conf.h"
#include "agent/core.h"
#include "agent/fds.h"
#include "agent/live.h"
#include "agent/lock.h"
#include "agent/output.h"
#include "agent/profile.h"
#include "agent/records.h"
#include "agent/shim.h"
#include "agent/stacks.h"
#include "agent/summary.h"
#include "agent/thread.h"
#include "agent/watch.h"
#include "map/map.h"

void agent_metrics_read(agent_metrics_t *m)
{
    memset(m, 0, sizeof *m);
    agent_thread_sums_t th;
    map_arena_stats_t arena;
    /* Bounded (lock.c): the exit path may hold the work lock and a thread
     * stopped inside the agent a shard; what is busy reads as zeros. */
    agent_bounded_begin(agent_mono_ns() + AGENT_METRICS_WAIT_NS, false);
    agent_snapshot(&m->counters);
    if (agent_work_lock_bounded()) {
        agent_watch_last(&m->objects_rate, &m->bytes_rate, &m->alert_level);
        agent_work_unlock();
    }
    agent_threads_sum(&th);
    (void)agent_live_get_stats(&m->live);
    agent_bounded_end();
    map_arena_get_stats(&arena);
    m->peak_live_bytes = agent_peak_live_bytes();
    m->rate = agent_conf.rate;
    m->samples = th.samples;
    m->samples_dropped = th.dropped;
    m->stacks = agent_stacks_distinct();
    m->agent_memory_bytes = arena.mapped_bytes;
    m->start_real_ns = agent_start_real_ns;
}

/* summary_t: what the summary says, read at one moment. */
typedef struct summary_s {
    heapwatch_counters_t c;
    agent_thread_sums_t th;
    agent_live_stats_t live;
    map_arena_stats_t arena;
    uint64_t end_ns;
    uint64_t peak_rss_bytes;       /* VmHWM, 0 when unknown */
    uint64_t unsampled_frees;      /* frees of allocations never sampled */
    char exe[CONF_PATH_MAX];
} summary_t;

/* peak_rss: the kernel's peak resident set size, VmHWM in
 * /proc/self/status (kB), in bytes; 0 when it cannot be read. */
static uint64_t peak_rss(void)
{
    char buf[4096];
    if (agent_fd_read_text("/proc/self/status", buf, sizeof buf) < 0) return 0;
    const char *p = strstr(buf, "\nVmHWM:");
    if (!p) return 0;
    char *end;
    unsigned long long kb = strtoull(p + 7, &end, 10);
    return end == p + 7 ? 0 : (uint64_t)kb * 1024;
}

/* CMDLINE_*: the summary's command line, bounded so that the summary
 * (at most 6 bytes of JSON per byte of an argument) stays within its 64 KiB. */
#define CMDLINE_BYTES 2048
#define CMDLINE_ARGS 64

/* utf8_whole: the length of s[0, len) without a UTF-8 sequence that the
 * cut at len left incomplete. */
static size_t utf8_whole(const char *s, size_t len)
{
    size_t start = len;
    while (start > 0 && ((unsigned char)s[start - 1] & 0xC0) == 0x80) start--;
    if (start == 0) return len;
    unsigned char lead = (unsigned char)s[start - 1];
    if (lead < 0xC0) return len;
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    return len - (start - 1) < need ? start - 1 : len;
}

/* cmdline_json: the arguments of /proc/self/cmdline (as the program left
 * them: a daemon that renames itself shows its new title) as a JSON
 * array; [] when it cannot be read. An argument cut by the bound ends
 * with "...", cut before a UTF-8 sequence, never inside one. */
static void cmdline_json(agent_buf_t *b)
{
    static char raw[CMDLINE_BYTES + 1];   /* serialised: the summary is written once */
    ssize_t n = agent_fd_read_text("/proc/self/cmdline", raw, sizeof raw);
    agent_buf_str(b, "[");
    unsigned args = 0;
    for (ssize_t i = 0; n > 0 && i < n && args < CMDLINE_ARGS; args++) {
        const char *arg = raw + i;
        size_t len = strnlen(arg, (size_t)(n - i));
        bool cut = i + (ssize_t)len >= n && n == (ssize_t)sizeof raw - 1;
        static char one[CMDLINE_BYTES + 4];   /* not on a handler's small stack */
        size_t keep = cut ? utf8_whole(arg, len) : len;
        memcpy(one, arg, keep);
        memcpy(one + keep, cut ? "..." : "", cut ? 4 : 1);
        agent_buf_str(b, args ? ", " : "");
        agent_buf_json_str(b, one);
        i += (ssize_t)len + 1;
    }
    agent_buf_str(b, "]");
}

static void summary_read(summary_t *s)
{
    agent_snapshot(&s->c);
    s->end_ns = agent_clock_ns(CLOCK_REALTIME);
    s->peak_rss_bytes = peak_rss();
    ssize_t n = readlink("/proc/self/exe", s->exe, sizeof s->exe - 1);
    s->exe[n > 0 ? n : 0] = 0;
    agent_threads_sum(&s->th);
    (void)agent_live_get_stats(&s->live);   /* a busy shard is noted (lock.c) */
    map_arena_get_stats(&s->arena);
    /* The rate that matters: how many unsampled frees pay for a map lookup. */
    uint64_t sampled_frees = s->th.filter_hits - s->th.filter_false;
    s->unsampled_frees = s->c.frees > sampled_frees ? s->c.frees - sampled_frees : 0;
}

/* put_<type>: one member, written as agent/records.h says of <type> (one
 * per line); f6 values are integers in millionths. */
#define put_u64(b, k, v) agent_buf_json_u64(b, k, v, true)
#define put_i64(b, k, v) (agent_buf_json_key(b, k, true), agent_buf_i64(b, v))
#define put_f6(b, k, v) (agent_buf_json_key(b, k, true), agent_buf_fixed(b, (int64_t)(v), 6))
#define put_str(b, k, v) (agent_buf_json_key(b, k, true), agent_buf_json_str(b, v))
#define put_strnull(b, k, v) \
    (agent_buf_json_key(b, k, true), (v) && (v)[0] ? agent_buf_json_str(b, v) : agent_buf_str(b, "null"))
#define put_strs(b, k, write) (agent_buf_json_key(b, k, true), write)

/* The value of each field of HEAPWATCH_SUMMARY_FIELDS (SU_<name>): a field
 * added to the list and not here does not compile. */
#define SU_pid ((uint64_t)getpid())
#define SU_ppid ((uint64_t)getppid())
#define SU_exe s->exe
#define SU_cmdline cmdline_json(b)
#define SU_start_time (agent_start_real_ns / 1000)
#define SU_end_time (s->end_ns / 1000)
#define SU_duration_s ((s->end_ns - agent_start_real_ns) / 1000)
#define SU_mallocs s->c.mallocs
#define SU_frees s->c.frees
#define SU_live_objects ((int64_t)(s->c.mallocs - s->c.frees))
#define SU_live_bytes ((int64_t)(s->c.alloc_bytes - s->c.free_bytes))
#define SU_peak_live_bytes agent_peak_live_bytes()
#define SU_peak_time (agent_peak_time_ns() / 1000)
#define SU_peak_rss_bytes s->peak_rss_bytes
#define SU_peak_profile agent_output_peak_profile()
#define SU_malloc_owner agent_shim_malloc_owner()
#define SU_alloc_bytes s->c.alloc_bytes
#define SU_free_bytes s->c.free_bytes
#define SU_rate agent_conf.rate
#define SU_samples s->th.samples
#define SU_samples_dropped s->th.dropped
#define SU_sampled_live s->live.count
#define SU_stacks agent_stacks_distinct()
#define SU_stacks_bytes agent_stacks_bytes()
#define SU_map_count s->live.count
#define SU_map_B s->live.log2_buckets
#define SU_map_noverflow s->live.noverflow
#define SU_map_entries s->live.count
#define SU_map_buckets s->live.buckets
#define SU_map_log2_buckets s->live.log2_buckets
#define SU_map_overflow_buckets s->live.overflow_buckets
#define SU_map_shards s->live.shards
#define SU_map_shards_growing s->live.shards_growing
#define SU_map_nevacuate s->live.nevacuate
#define SU_map_noldbuckets s->live.noldbuckets
#define SU_map_bytes s->live.bytes
#define SU_map_grow_failures s->live.grow_failures
#define SU_filter_bytes s->live.filter_bytes
#define SU_filter_hits s->th.filter_hits
#define SU_filter_false_positives s->th.filter_false
#define SU_filter_false_positive_rate \
    (s->unsampled_frees ? s->th.filter_false * 1000000 / s->unsampled_frees : 0)
#define SU_thread_blocks s->th.blocks
#define SU_agent_memory_bytes s->arena.mapped_bytes
#define SU_agent_memory_inuse_bytes s->arena.inuse_bytes
#define SU_symbol_tables agent_profile_symbol_tables()
#define SU_symbol_table_bytes agent_profile_symbol_table_bytes()
#define SU_files agent_output_files_json(b, own_name)
#define SU_files_total agent_output_files_total()
#define SU_files_removed agent_output_removed_json(b)
#define SU_files_removed_total agent_output_removed_total()
#define SU_max_profiles agent_conf.max_profiles
#define SU_incomplete agent_incomplete_json(b)

void agent_summary_build(agent_buf_t *b, const char *own_name)
{
    static summary_t one;   /* 4 KiB of path: not on the exit path's stack (serialised: once) */
    summary_t *s = &one;
    summary_read(s);
    agent_buf_str(b, "{");
#define SU_FIELD(name, type, doc) put_##type(b, #name, SU_##name);
    HEAPWATCH_SUMMARY_FIELDS(SU_FIELD)
#undef SU_FIELD
    agent_buf_str(b, "\n}\n");
}
