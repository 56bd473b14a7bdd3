/*
 * sample.h - Poisson sampling by bytes (sample.c) and the ticks by which
 * allocating threads notice due work (agent/, private).
 *
 * The hot path's exits into sampling (agent_sample_slow,
 * agent_free_sampled, agent_count_alloc_mmapped) are declared in hot.h.
 */
#ifndef HEAPWATCH_AGENT_SAMPLE_H
#define HEAPWATCH_AGENT_SAMPLE_H

#include <stdint.h>

#include "agent/thread.h"

#pragma GCC visibility push(hidden)

/* agent_sample_rate: HEAPWATCH_RATE, the mean bytes between samples
 * (0 = none, 1 = every allocation); set once at start. */
extern uint64_t agent_sample_rate;

/* agent_sample_thread_init: seeds a new or adopted thread block's
 * generator and draws its first sampling point. */
void agent_sample_thread_init(agent_thread_t *t);

/*
 * Ticks: how the allocating threads notice that work is due while the agent
 * has no background thread (HEAPWATCH_THREAD, background.c). While
 * agent_tick_bytes is not 0, a countdown longer than that is cut into
 * pieces of agent_tick_bytes (the rest in sample_rest), so the sampling
 * slow path runs at least once per agent_tick_bytes allocated, whatever the
 * rate, even 0; there it calls agent_tick, which compares a coarse clock
 * with agent_tick_due. The fast path is unchanged. Sampling is not: a piece
 * that runs out only carries the overshoot into the next piece, so the
 * sampled bytes are exactly those of the uncut countdown.
 */
#define AGENT_TICK_BYTES (32u * 1024)
extern uint64_t agent_tick_bytes;   /* 0 or AGENT_TICK_BYTES (sample.c; atomic) */
extern uint64_t agent_tick_due;     /* CLOCK_MONOTONIC ns; UINT64_MAX: nothing due (background.c; atomic) */

/* agent_tick_slow: agent_tick_due has passed: start the background thread,
 * or do the due work on this thread. Called outside the agent. (background.c) */
void agent_tick_slow(void);

/* agent_tick: from the sampling slow path, outside the agent. (background.c) */
void agent_tick(void);

/* agent_sample_rearm: recuts the calling thread's countdown t (its own
 * block) after agent_tick_bytes changed. (sample.c) */
void agent_sample_rearm(agent_thread_t *t);


/* agent_sample_gap: the bytes before the next sample, drawn from t's
 * generator: exponential with mean agent_sample_rate (at most 2^62). The
 * unit tests check the distribution with a fixed seed (t->rng). */
uint64_t agent_sample_gap(agent_thread_t *t);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_SAMPLE_H */
