/*
 * peak.h - the stacks in use at the peak of live bytes (peak.c; the design
 * is there) (agent/, private).
 */
#ifndef HEAPWATCH_AGENT_PEAK_H
#define HEAPWATCH_AGENT_PEAK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/base.h"
#include "agent/stacks.h"

#pragma GCC visibility push(hidden)

/* AGENT_PEAK_MARGIN_PCT: a new copy is taken only when live bytes passed
 * the copied moment's by this much (percent). */
#define AGENT_PEAK_MARGIN_PCT 10

/* AGENT_PEAK_MIN_SAMPLES: a copy holding fewer sampled allocations in use
 * gets no peak profile of its own: too few samples to say who held the
 * peak (at the default rate, a peak under about 4 MiB). */
#define AGENT_PEAK_MIN_SAMPLES 8

/* agent_peak_raised: live bytes just rose to a new peak `live` (at ns,
 * CLOCK_REALTIME): copies every stack's sampled totals when live passed
 * the last copy's by AGENT_PEAK_MARGIN_PCT. Never waits: a copy under way
 * elsewhere means none is taken here. Called by agent_snapshot. */
void agent_peak_raised(uint64_t live, uint64_t ns);

/* agent_peak_entry_t: one stack's sampled totals at the copied moment. */
typedef struct agent_peak_entry_s {
    agent_stack_t *stack;
    agent_stack_totals_t totals;
} agent_peak_entry_t;

/* agent_peak_take: the last copy, held until agent_peak_give (no copy
 * replaces it meanwhile): its entries, their number, and the live bytes
 * and time it was taken at. @return 1 (held: give it back), 0 when there
 * is none, -1 when a copy is being taken at this moment (not waited for). */
int agent_peak_take(const agent_peak_entry_t **entries, size_t *n, uint64_t *live, uint64_t *ns);
void agent_peak_give(void);

/* agent_peak_postfork_child: the thread that may have been copying is gone. */
void agent_peak_postfork_child(void);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_PEAK_H */
