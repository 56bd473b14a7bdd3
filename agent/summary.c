/*
 * summary.c - what the agent says of a process: the summary file written
 * at exit (summary.<tag>.json: SPEC.md's fields and ours, README) and the
 * figures /metrics shows. Both read the counters, the thread blocks'
 * sampling tallies, the live map and the arena at one moment; the live
 * map's shards are taken with agent_lock, so inside a bounded stretch
 * (exit, /metrics) a busy shard is skipped and noted (lock.c).
 */
#define _GNU_SOURCE
#include <string.h>
#include <unistd.h>

#include "agent/buf.h"
#include "agent/conf.h"
#include "agent/core.h"
#include "agent/live.h"
#include "agent/lock.h"
#include "agent/output.h"
#include "agent/stacks.h"
#include "agent/summary.h"
#include "agent/thread.h"
#include "agent/watch.h"
#include "map/map.h"

void agent_metrics_read(agent_metrics_t *m)
{
    memset(m, 0, sizeof *m);
    agent_thread_sums_t th;
    agent_live_stats_t live;
    map_arena_stats_t arena;
    /* Bounded (lock.c): the exit path may hold work_lock and a thread
     * stopped inside the agent a shard; what is busy reads as zeros. */
    agent_bounded_begin(agent_mono_ns() + AGENT_METRICS_WAIT_NS, false);
    agent_snapshot(&m->counters);
    if (agent_work_lock_bounded()) {
        agent_watch_last(&m->objects_rate, &m->bytes_rate, &m->alert_level);
        agent_work_unlock();
    }
    agent_threads_sum(&th);
    (void)agent_live_get_stats(&live);
    agent_bounded_end();
    map_arena_get_stats(&arena);
    m->peak_live_bytes = agent_peak_live_bytes();
    m->rate = agent_conf.rate;
    m->samples = th.samples;
    m->samples_dropped = th.dropped;
    m->map_count = live.count;
    m->map_B = live.max_B;
    m->map_noverflow = live.noverflow;
    m->stacks = agent_stacks_count() > 0 ? agent_stacks_count() - 1 : 0;
    m->agent_memory_bytes = arena.mapped_bytes;
    m->start_real_ns = agent_start_real_ns;
}

/* summary_sampling: what sampling, the live map and the filter hold. */
static void summary_sampling(agent_buf_t *b, const heapwatch_counters_t *c)
{
    agent_thread_sums_t th;
    agent_threads_sum(&th);
    agent_live_stats_t live;
    (void)agent_live_get_stats(&live);   /* a busy shard is noted (lock.c) */
    agent_buf_json_u64(b, "rate", agent_conf.rate, true);
    agent_buf_json_u64(b, "samples", th.samples, true);
    agent_buf_json_u64(b, "samples_dropped", th.dropped, true);
    agent_buf_json_u64(b, "sampled_live", live.count, true);
    agent_buf_json_u64(b, "stacks", agent_stacks_count() > 0 ? agent_stacks_count() - 1 : 0, true);
    agent_buf_json_u64(b, "stacks_bytes", agent_stacks_bytes(), true);
    agent_buf_json_u64(b, "map_count", live.count, true);
    agent_buf_json_u64(b, "map_B", live.max_B, true);
    agent_buf_json_u64(b, "map_noverflow", live.noverflow, true);
    agent_buf_json_u64(b, "map_shards", live.shards, true);
    agent_buf_json_u64(b, "map_buckets", live.buckets, true);
    agent_buf_json_u64(b, "map_overflow_buckets", live.overflow_buckets, true);
    agent_buf_json_u64(b, "map_bytes", live.bytes, true);
    agent_buf_json_u64(b, "map_grow_failures", live.grow_failures, true);
    agent_buf_json_u64(b, "filter_bytes", live.filter_bytes, true);
    agent_buf_json_u64(b, "filter_hits", th.filter_hits, true);
    agent_buf_json_u64(b, "filter_false_positives", th.filter_false, true);
    /* The rate that matters: how many unsampled frees pay for a map lookup. */
    uint64_t unsampled = c->frees > th.filter_hits - th.filter_false
                         ? c->frees - (th.filter_hits - th.filter_false) : 0;
    agent_buf_json_key(b, "filter_false_positive_rate", true);
    agent_buf_fixed(b, unsampled ? (int64_t)(th.filter_false * 1000000 / unsampled) : 0, 6);
    agent_buf_json_u64(b, "thread_blocks", th.blocks, true);
}

void agent_summary_build(agent_buf_t *b, const char *own_name)
{
    heapwatch_counters_t c;
    agent_snapshot(&c);
    uint64_t end = agent_clock_ns(CLOCK_REALTIME);
    char exe[CONF_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    map_arena_stats_t arena;
    map_arena_get_stats(&arena);

    agent_buf_str(b, "{");
    agent_buf_json_u64(b, "pid", (uint64_t)getpid(), true);
    agent_buf_json_u64(b, "ppid", (uint64_t)getppid(), true);
    agent_buf_json_key(b, "exe", true);
    agent_buf_json_str(b, exe);
    agent_buf_json_key(b, "start_time", true);
    agent_buf_fixed(b, (int64_t)(agent_start_real_ns / 1000), 6);
    agent_buf_json_key(b, "end_time", true);
    agent_buf_fixed(b, (int64_t)(end / 1000), 6);
    agent_buf_json_key(b, "duration_s", true);
    agent_buf_fixed(b, (int64_t)((end - agent_start_real_ns) / 1000), 6);
    agent_buf_json_u64(b, "mallocs", c.mallocs, true);
    agent_buf_json_u64(b, "frees", c.frees, true);
    agent_buf_json_key(b, "live_objects", true);
    agent_buf_i64(b, (int64_t)(c.mallocs - c.frees));
    agent_buf_json_key(b, "live_bytes", true);
    agent_buf_i64(b, (int64_t)(c.alloc_bytes - c.free_bytes));
    agent_buf_json_u64(b, "peak_live_bytes", agent_peak_live_bytes(), true);
    agent_buf_json_u64(b, "alloc_bytes", c.alloc_bytes, true);
    agent_buf_json_u64(b, "free_bytes", c.free_bytes, true);
    summary_sampling(b, &c);
    agent_buf_json_u64(b, "agent_memory_bytes", arena.mapped_bytes, true);
    agent_buf_json_u64(b, "agent_memory_inuse_bytes", arena.inuse_bytes, true);
    agent_output_files_json(b, own_name);
    agent_buf_json_u64(b, "max_profiles", agent_conf.max_profiles, true);
    agent_buf_json_key(b, "incomplete", true);
    agent_incomplete_json(b);
    agent_buf_str(b, "\n}\n");
}
