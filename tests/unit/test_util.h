/*
 * test_util.h - helpers shared by the unit tests (tests/unit/).
 *
 * A counting test allocator built on calloc/free that can be told to fail
 * the Nth allocation from now (Lua's ltests.c Memcontrol idea), so every
 * out-of-memory path of a module can be driven deterministically.
 */
#ifndef HEAPWATCH_TEST_UTIL_H
#define HEAPWATCH_TEST_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include "map/map.h"

typedef struct test_alloc_s {
    size_t live_blocks;     /* blocks allocated and not yet freed */
    size_t live_bytes;      /* their bytes */
    size_t calls;           /* alloc calls so far (failed ones included) */
    size_t fail_at;         /* fail the call whose number (1-based) is this; 0: never */
    int fail_all_after;     /* with fail_at: fail every call from fail_at on */
} test_alloc_t;

/* Each block carries its size in a 16-byte header so live_bytes is exact. */
static void *test_alloc_fn(void *ctx, size_t size)
{
    test_alloc_t *t = ctx;
    t->calls++;
    if (t->fail_at && (t->calls == t->fail_at ||
                       (t->fail_all_after && t->calls > t->fail_at)))
        return NULL;
    unsigned char *p = calloc(1, size + 16);
    if (!p) return NULL;
    *(size_t *)p = size;
    t->live_blocks++;
    t->live_bytes += size;
    return p + 16;
}

static void test_free_fn(void *ctx, void *ptr)
{
    test_alloc_t *t = ctx;
    unsigned char *p = (unsigned char *)ptr - 16;
    t->live_blocks--;
    t->live_bytes -= *(size_t *)p;
    free(p);
}

static inline map_allocator_t test_allocator(test_alloc_t *t)
{
    map_allocator_t a = { test_alloc_fn, test_free_fn, t };
    return a;
}

/* fail_nth_from_now: the nth alloc call from now fails (1 = the next). */
static inline void test_alloc_fail_nth(test_alloc_t *t, size_t n, int and_after)
{
    t->fail_at = t->calls + n;
    t->fail_all_after = and_after;
}

static inline void test_alloc_heal(test_alloc_t *t) { t->fail_at = 0; }

/* splitmix64: the tests' deterministic PRNG. */
static inline uint64_t test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif /* HEAPWATCH_TEST_UTIL_H */
