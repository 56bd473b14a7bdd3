/*
 * summary.h - what the agent says of a process: the exit summary
 * (summary.<tag>.json) and the figures /metrics shows (summary.c)
 * (agent/, private).
 */
#ifndef HEAPWATCH_AGENT_SUMMARY_H
#define HEAPWATCH_AGENT_SUMMARY_H

#include <stdint.h>

#include "agent/agent.h"
#include "agent/base.h"
#include "agent/buf.h"
#include "agent/live.h"

#pragma GCC visibility push(hidden)

/* agent_metrics_t: what /metrics shows, read at one moment. */
typedef struct agent_metrics_s {
    heapwatch_counters_t counters;
    uint64_t peak_live_bytes;
    double objects_rate, bytes_rate;   /* at the last snapshot */
    int alert_level;                   /* 0 none, 1 warn, 2 crit */
    uint64_t rate;                     /* HEAPWATCH_RATE */
    uint64_t samples, samples_dropped;
    agent_live_stats_t live;           /* the live map (live.h) */
    uint64_t stacks;
    uint64_t agent_memory_bytes;
    uint64_t start_real_ns;
} agent_metrics_t;

/* agent_metrics_read: fills *m (takes the work lock). */
void agent_metrics_read(agent_metrics_t *m);

/* agent_summary_build: the JSON document of the summary file own_name
 * (agent_output_summary's builder; under the work lock when it is had). */
void agent_summary_build(agent_buf_t *b, const char *own_name);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_SUMMARY_H */
