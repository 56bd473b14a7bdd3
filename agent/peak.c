/*
 * peak.c - the stacks in use at the peak of live bytes, for the peak
 * profile (heap.<tag>.<seq>.peak.pb.gz, written at exit by core.c).
 *
 * The peak is raised by agent_snapshot: at every snapshot, and between
 * snapshots by a sampled allocation (sample.c, look_for_peak). When it
 * rises to AGENT_PEAK_MARGIN_PCT above the live bytes of the last copy,
 * every stack's sampled totals are copied (the stacks with something in
 * use: a stack with nothing live at the peak adds nothing to a profile of
 * the peak). The copy is what a profile written at that moment would have
 * held, so the peak profile shows the stacks at a moment when live bytes
 * were at least 1/1.1 (91 %) of the highest seen. A program that climbs
 * steadily pays for one copy per 10 % of growth, about 50 copies from
 * 1 MB to 100 MB, each a pass over the stack table (no lock taken: the
 * totals are read with atomic loads, as a profile reads them).
 *
 * Two buffers: a copy is taken into the spare one and swapped in when
 * whole, so the last copy stays readable meanwhile. One flag serialises
 * copiers and the reader (exit); it is only ever tried, never waited for:
 * a thread that finds it taken skips the copy (the next rise takes it),
 * and the exit finding it taken (a copy under way on a thread that a
 * signal handler interrupted, or that is racing the exit) writes no peak
 * profile and notes it. Memory: two arrays of 40 bytes per stack in use,
 * arena memory, bounded by the stack table (AGENT_STACKS_MAX); a copy that
 * cannot get memory is skipped.
 */
#define _GNU_SOURCE
#include <string.h>

#include "agent/peak.h"
#include "map/map.h"

typedef struct copy_s {
    agent_peak_entry_t *entries;
    size_t n, cap;
    uint64_t live, ns;
} copy_t;

static copy_t copies[2];
static unsigned current = 2;        /* index of the last whole copy; 2: none (under busy) */
static uint64_t copied_live;        /* live bytes of the last copy (atomic) */
static int busy;                    /* a copier or the reader holds the copies (atomic) */

static bool try_hold(void)
{
    int expected = 0;
    return __atomic_compare_exchange_n(&busy, &expected, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

static void release(void) { __atomic_store_n(&busy, 0, __ATOMIC_RELEASE); }

/* reserve: room for n entries in c (old entries not kept). */
static bool reserve(copy_t *c, size_t n)
{
    if (c->cap >= n) return true;
    size_t cap = c->cap ? c->cap : 256;
    while (cap < n) cap *= 2;
    agent_peak_entry_t *e = map_arena_alloc(cap * sizeof *e);
    if (!e) return false;
    if (c->entries) map_arena_free(c->entries);
    c->entries = e;
    c->cap = cap;
    return true;
}

/* fill: the stacks with something in use, into c. */
static bool fill(copy_t *c)
{
    uint32_t nstacks = agent_stacks_count();
    if (!reserve(c, nstacks)) return false;
    c->n = 0;
    for (uint32_t id = 0; id < nstacks; id++) {
        agent_stack_t *s = agent_stack_get(id);
        if (!s) continue;
        agent_stack_totals_t t;
        agent_stack_read(s, &t);
        if (t.inuse_objects <= 0) continue;
        c->entries[c->n].stack = s;
        c->entries[c->n].totals = t;
        c->n++;
    }
    return true;
}

void agent_peak_raised(uint64_t live, uint64_t ns)
{
    uint64_t last = __atomic_load_n(&copied_live, __ATOMIC_RELAXED);
    uint64_t margin = last / 100 * AGENT_PEAK_MARGIN_PCT + last % 100 * AGENT_PEAK_MARGIN_PCT / 100;
    if (last && live - last < margin) return;
    if (!try_hold()) return;
    unsigned spare = current == 0 ? 1 : 0;
    copy_t *c = &copies[spare];
    if (fill(c)) {
        c->live = live;
        c->ns = ns;
        current = spare;
        __atomic_store_n(&copied_live, live, __ATOMIC_RELAXED);
    }
    release();
}

int agent_peak_take(const agent_peak_entry_t **entries, size_t *n, uint64_t *live, uint64_t *ns)
{
    if (!try_hold()) return -1;
    if (current > 1) {
        release();
        return 0;
    }
    const copy_t *c = &copies[current];
    *entries = c->entries;
    *n = c->n;
    *live = c->live;
    *ns = c->ns;
    return 1;
}

void agent_peak_give(void) { release(); }

void agent_peak_postfork_child(void) { __atomic_store_n(&busy, 0, __ATOMIC_RELAXED); }
