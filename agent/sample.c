/*
 * sample.c - Poisson sampling by bytes, and what happens to a sampled
 * allocation from its malloc to its free.
 *
 * The maths (as Go's MemProfileRate). We want each byte allocated to be
 * sampled with probability 1/rate, independently, so that an allocation
 * of s bytes is sampled with probability 1 - exp(-s/rate) and the
 * unsampling in pprof/ (pprof_heap_scale, Go's scaleHeapSample) gives
 * unbiased estimates. The gaps between sampled bytes are then exponential
 * with mean `rate`. Each thread keeps a countdown `sample_left` of the bytes before its next sample: every
 * allocation subtracts its size, the one that takes it below zero is
 * sampled, and the countdown restarts from a fresh exponential draw. On
 * the hot path that is one `sub` to memory and a sign test.
 * Many allocations may fall in one gap and several sampling points may fall
 * inside one large allocation; like Go, such an allocation is sampled once
 * and the next gap starts at its end (that is what 1 - exp(-s/rate) is).
 *
 *   rate 0: the countdown starts at INT64_MAX: nothing is ever sampled;
 *   rate 1: it is kept at -1: every allocation is sampled, weights are
 *           exactly 1.
 *
 * Ticks. While the agent has no background thread (background.c), a countdown
 * longer than agent_tick_bytes is cut into pieces (sample_rest holds the
 * rest), so this slow path also runs every agent_tick_bytes allocated, at
 * any rate, and checks whether work is due (agent_tick). At the end of a
 * piece only the overshoot is carried into the rest: an allocation is
 * sampled exactly when the uncut countdown would have gone below zero.
 *
 * Draws: -ln(U) * rate with U uniform in (0, 1], from a per-thread
 * xorshift64* generator seeded from AT_RANDOM, the block address and a
 * per-block counter, so threads and processes draw independent sequences.
 * A forked child continues its parent's sequence; that only makes the two
 * processes' samples correlated, not biased.
 *
 * Sizes are usable sizes (malloc_usable_size), as the exact counters: the
 * profile's inuse_space at rate 1 equals the counters' live bytes of the
 * same allocations. The countdown counts usable + 8 per allocation (see
 * "Block bytes" in hot.h): the sampling probability is then
 * 1 - exp(-(usable + 8)/rate), and the profile unsamples with that.
 *
 * A sampled allocation: its stack is captured (unwind.c) and interned
 * (stacks.c), the pointer goes into the live map (live.c) with its stack
 * id and size, and the stack's alloc totals grow. Its free (the live
 * filter said "maybe") takes it out of the map and adds to the stack's
 * freed totals.
 * realloc: the old block is taken out before the real realloc and put back
 * if the realloc fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/auxv.h>

#include "agent/conf.h"
#include "agent/core.h"
#include "agent/hot.h"
#include "agent/live.h"
#include "agent/sample.h"
#include "agent/stacks.h"
#include "agent/thread.h"
#include "agent/unwind.h"
#include "pprof/pprof.h"   /* pprof_log: no libm in the agent */

uint64_t agent_sample_rate = CONF_DEFAULT_RATE;
uint64_t agent_tick_bytes;

/* ------------------------------------------------------------------------ */
/* Draws                                                                    */
/* ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t next_random(agent_thread_t *t)
{
    uint64_t x = t->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

uint64_t agent_sample_gap(agent_thread_t *t)
{
    uint64_t rate = agent_sample_rate;
    /* U in (0, 1]: 53 random bits, plus one so that log(U) is finite. */
    double u = (double)((next_random(t) >> 11) + 1) * 0x1.0p-53;
    double gap = -pprof_log(u) * (double)rate;
    return gap < 0x1.0p62 ? (uint64_t)gap : (UINT64_C(1) << 62);
}

/* set_countdown: `gap` bytes before the thread's next sample, cut into
 * ticks (sample.h) while agent_tick_bytes asks for them. */
static void set_countdown(agent_thread_t *t, int64_t gap)
{
    int64_t tick = (int64_t)__atomic_load_n(&agent_tick_bytes, __ATOMIC_RELAXED);
    if (tick && gap > tick) {
        t->sample_rest = gap - tick;
        t->sample_left = tick;
    } else {
        t->sample_rest = 0;
        t->sample_left = gap;
    }
}

/* reset_countdown: the bytes before the thread's next sample. */
static void reset_countdown(agent_thread_t *t)
{
    if (agent_sample_rate == 0) set_countdown(t, INT64_MAX);
    else if (agent_sample_rate == 1) set_countdown(t, -1);   /* every allocation, even of 0 bytes */
    else set_countdown(t, (int64_t)agent_sample_gap(t));
}

void agent_sample_rearm(agent_thread_t *t)
{
    /* The countdown left, uncut; a handler may allocate meanwhile: at worst
     * it moves one sampling point by that allocation. */
    int64_t left = t->sample_left, rest = t->sample_rest, gap;
    if (__builtin_add_overflow(rest, left, &gap)) gap = INT64_MAX;
    set_countdown(t, gap);
}

void agent_sample_thread_init(agent_thread_t *t)
{
    static uint64_t blocks_seeded;     /* distinguishes blocks (atomic) */
    uint64_t seed = (uint64_t)(uintptr_t)t;
    const unsigned char *at_random = (const unsigned char *)getauxval(AT_RANDOM);
    if (at_random) {
        uint64_t r;
        memcpy(&r, at_random + 8, sizeof r);   /* bytes 0-7 seed the map hash */
        seed ^= r;
    }
    seed ^= __atomic_add_fetch(&blocks_seeded, 1, __ATOMIC_RELAXED) * 0x9e3779b97f4a7c15ull;
    t->rng = splitmix64(seed) | 1;     /* xorshift state must not be 0 */
    /* The first gap is a full draw, so a thread's first allocation is not
     * favoured (Go does the same). */
    reset_countdown(t);
}

/* ------------------------------------------------------------------------ */
/* Sampled allocations                                                      */
/* ------------------------------------------------------------------------ */

/* forget: ptr (found in the live map with value v) was freed, seen by
 * thread t. */
static void forget(agent_thread_t *t, uint64_t v)
{
    agent_stack_t *s = agent_stack_get(agent_live_stack(v));
    if (!s) return;
#if AGENT_DEBUG
    /* A free is counted after its allocation: in-use never goes negative. */
    agent_stack_totals_t before;
    agent_stack_read(s, &before);
    AGENT_ASSERT(before.inuse_objects > 0);
#endif
    agent_stack_count_free(s, t->share, agent_live_size(v));
}

/* caller_t: the registers of the frame agent_sample_slow returns to, as
 * they were at the call (see agent_sample_slow). */
typedef struct caller_s {
    uint64_t ra, sp, bp;
} caller_t;

/* record: ptr's stack (from the frame at) into the live map and its
 * stack's alloc totals. */
static void record(agent_thread_t *t, void *ptr, size_t usable, const caller_t *at)
{
    uint64_t pcs[AGENT_MAX_FRAMES], stale;
    /* In a large live map ptr's bucket is a cache miss: start it now so
     * that it overlaps the capture. */
    agent_live_prefetch(ptr);
    if (!t->walk_memo) t->walk_memo = agent_walk_memo_new();
    size_t depth = agent_stack_capture_from(at->ra, at->sp, at->bp, pcs, AGENT_MAX_FRAMES, t->walk_memo);
    AGENT_ASSERT(depth <= AGENT_MAX_FRAMES);
    AGENT_ASSERT(agent_inside());   /* no allocation of ours is counted */
    agent_stack_t *s = agent_stack_intern(pcs, depth);
    AGENT_ASSERT(!s || s->id < AGENT_STACKS_MAX);   /* it fits a live-map value */
    agent_live_put_t put = s ? agent_live_put(ptr, agent_live_pack(s->id, usable), &stale) : AGENT_LIVE_FAILED;
    /* An address still in the map was freed where we could not see it:
     * that allocation is gone, count it freed (put replaced it, or, when
     * this one cannot be recorded, take it out). */
    if (put == AGENT_LIVE_REPLACED) forget(t, stale);
    if (put == AGENT_LIVE_FAILED) {
        if (agent_free_maybe_sampled(ptr) && agent_live_remove(ptr, &stale)) forget(t, stale);
        agent_tally_add(&t->dropped, 1);
        return;
    }
    agent_stack_count_alloc(s, t->share, agent_live_clamp(usable));   /* clamped as the map keeps it */
    agent_tally_add(&t->samples, 1);
}

void *agent_count_alloc_mmapped(agent_thread_t *t, void *ptr)
{
    return agent_count_alloc(t, ptr, agent_glibc_usable_size(ptr));
}

/* sample_enter / sample_leave: around the slow paths of sampled
 * allocations and frees: the recursion guard, the quiet mark (see
 * agent_tls_t), and errno kept for the program (libunwind may set it).
 *
 * The mark goes up before the guard and comes down after it, so a signal
 * handler that allocates finds either depth 0 (counted the usual way; the
 * thread holds no agent lock yet, or no more) or the mark (counted by
 * agent_in_handler), never the guard alone, which would pass it through
 * uncounted. tests/integration/progs/life_step.c steps through this.
 * (thread_register in thread.c does the same.) */
static int sample_enter(void)
{
    int saved = errno;
    agent_tls.quiet++;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);   /* keep the order for handlers */
    agent_enter();
    return saved;
}

static void sample_leave(int saved)
{
    agent_leave();
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    agent_tls.quiet--;
    errno = saved;
}

/* PEAK_STEP: the peak of live bytes between snapshots. A sampled
 * allocation makes its thread look for a new peak (agent_snapshot: the
 * counters summed, the peak raised) at most once per PEAK_STEP bytes the
 * thread allocated, and always for a block of PEAK_STEP or more: the
 * peak is then seen to within about PEAK_STEP per allocating thread, not
 * once per HEAPWATCH_INTERVAL (a process that held 80 MB for a second and
 * took no snapshot reported 0.4 MB). One walk of the thread blocks per
 * sample at the default rate; at rate 1, per 256 KiB allocated. */
#define PEAK_STEP (256u * 1024)

static void look_for_peak(agent_thread_t *t, size_t usable)
{
    uint64_t allocated = __atomic_load_n(&t->alloc_bytes, __ATOMIC_RELAXED);
    if (usable < PEAK_STEP && allocated - t->peak_looked_at < PEAK_STEP) return;
    t->peak_looked_at = allocated;
    heapwatch_counters_t c;
    agent_snapshot(&c);
}

/*
 * agent_sample_slow is a stub of a few instructions in front of
 * agent_sample_slow_from: at its first instruction the return address is
 * at rsp, the caller's stack pointer is rsp + 8 and rbp is still the
 * caller's, which is exactly the state an unwinder would reach by walking
 * out of agent_sample_slow. It passes the three (the call's arguments 4
 * to 6) and jumps, so the stack capture starts at the frame that called
 * it, usually the program's (the shim's malloc tail-calls it): the
 * agent's own frames above it (the capture, record, this function) were
 * three recipe lookups and stack reads per sample, each waiting for the
 * one before. Its CFI is the default rule (CFA = rsp + 8), true at each of
 * its instructions; endbr64 where the build asks for CET. The stack stays
 * as the call left it, so agent_sample_slow_from starts with the ABI's
 * alignment.
 */
void *agent_sample_slow_from(agent_thread_t *t, void *ptr, size_t usable, uint64_t ra, uint64_t sp, uint64_t bp)
    __attribute__((used, visibility("hidden")));   /* only the stub jumps to it */

__asm__("\t.pushsection .text\n"
        "\t.globl agent_sample_slow\n"
        "\t.hidden agent_sample_slow\n"
        "\t.type agent_sample_slow, @function\n"
        "\t.p2align 4\n"
        "agent_sample_slow:\n"
        "\t.cfi_startproc\n"
#if defined(__CET__) && (__CET__ & 1)
        "\tendbr64\n"
#endif
        "\tmovq (%rsp), %rcx\n"
        "\tleaq 8(%rsp), %r8\n"
        "\tmovq %rbp, %r9\n"
        "\tjmp agent_sample_slow_from\n"
        "\t.cfi_endproc\n"
        "\t.size agent_sample_slow, .-agent_sample_slow\n"
        "\t.popsection\n");

void *agent_sample_slow_from(agent_thread_t *t, void *ptr, size_t usable, uint64_t ra, uint64_t sp, uint64_t bp)
{
    agent_tick();
    int64_t rest = t->sample_rest;
    if (rest) {
        /* The end of a tick: the gap goes on, less this allocation's
         * overshoot (sample_left <= -1 here). The sample point falls in
         * this allocation only if the whole gap is used up. */
        int64_t left = rest + t->sample_left;
        if (left >= 0) {
            set_countdown(t, left);
            return ptr;
        }
    }
    reset_countdown(t);
    if (agent_sample_rate == 0) return ptr;   /* a block adopted across a rate change */
    int saved = sample_enter();
    record(t, ptr, usable, &(caller_t){ra, sp, bp});
    look_for_peak(t, usable);
    sample_leave(saved);
    return ptr;
}

void agent_free_sampled(agent_thread_t *t, void *ptr)
{
    uint64_t v;
    int saved = sample_enter();
    agent_tally_add(&t->filter_hits, 1);
    if (agent_live_remove(ptr, &v)) forget(t, v);
    else agent_tally_add(&t->filter_false, 1);
    sample_leave(saved);
}

/* ------------------------------------------------------------------------ */
/* realloc                                                                  */
/* ------------------------------------------------------------------------ */

void agent_on_realloc_before(void *ptr, agent_realloc_t *r)
{
    memset(r, 0, sizeof *r);
    agent_thread_t *t = agent_current_thread();
    if (!t) {
        if (!agent_in_handler()) return;
        /* A handler's realloc: counted, and nothing sampled to look for. */
        r->counted = r->by_handler = true;
        r->usable = agent_usable_size(ptr);
        agent_count_handler(AGENT_COUNT_FREES, 1, r->usable + AGENT_BLOCK_EXTRA);
        return;
    }
    bool sampled = agent_free_maybe_sampled(ptr);
    if (sampled) agent_live_prefetch(ptr);   /* as agent_on_free_slow does */
    r->counted = true;
    r->usable = agent_usable_size(ptr);
    agent_tally_add(&t->frees, 1);
    agent_tally_add(&t->free_bytes, r->usable + AGENT_BLOCK_EXTRA);
    if (AGENT_LIKELY(!sampled)) return;
    int saved = sample_enter();
    agent_tally_add(&t->filter_hits, 1);
    if (agent_live_remove(ptr, &r->live_value)) r->was_sampled = true;
    else agent_tally_add(&t->filter_false, 1);
    sample_leave(saved);
}

void agent_on_realloc_after(const agent_realloc_t *r, void *old, void *result, size_t size)
{
    if (!r->counted) return;
    if (result == NULL && size != 0) {
        /* Failed: the old block is intact. Count it back in, as it was. */
        if (r->by_handler) {
            agent_count_handler(AGENT_COUNT_FREES, UINT64_MAX,   /* -1 block, -its bytes */
                                -(uint64_t)(r->usable + AGENT_BLOCK_EXTRA));
            return;
        }
        agent_thread_t *t = agent_tls.thread;
        agent_tally_add(&t->frees, UINT64_MAX);                       /* -1 */
        agent_tally_add(&t->free_bytes, -(uint64_t)(r->usable + AGENT_BLOCK_EXTRA));
        if (r->was_sampled) {
            int saved = sample_enter();
            if (!agent_live_insert(old, r->live_value)) {
                forget(t, r->live_value);   /* cannot track it again: count it gone */
                agent_tally_add(&t->dropped, 1);
            }
            sample_leave(saved);
        }
        return;
    }
    if (r->was_sampled) {   /* then agent_on_realloc_before had the thread's block */
        int saved = sample_enter();
        forget(agent_tls.thread, r->live_value);
        sample_leave(saved);
    }
    if (result) agent_on_alloc(result);
}
