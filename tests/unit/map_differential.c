/*
 * map_differential.c - randomized differential test of map/ against a
 * trivially correct reference model.
 *
 * What it checks. Random programs of operations run on a map_t and, in
 * lockstep, on the model below (a dense array of entries plus an
 * open-addressing index with tombstones). After every operation:
 *   - every result agrees with the model: insert/assign/delete return codes,
 *     the `inserted` flag, value bytes behind every returned pointer (compared
 *     with memcmp: values may be unaligned), map_count and map_get_stats();
 *   - map_debug_check() passes. It is O(size of the table), so it runs after
 *     every operation while the table is small and every Kth operation when
 *     it is large, K = 1 + cells / MAP_DIFF_CHECK (see check_due()); it also
 *     runs after every growth start, clear and allocation failure.
 * Iterators live across writes are checked against Go's rules (map.h): no key
 * twice (unless deleted and re-inserted in between), every key live for the
 * whole iteration produced, nothing produced that is not live at that moment
 * (so a key deleted or cleared before it is reached is never produced), and
 * the produced value is the model's current one. With the failing test
 * allocator, MAP_ERR_NOMEM leaves key and model unchanged, growth failures are
 * benign, and map_free returns every block.
 *
 * Programs are sequences of phases (grow to a target, shrink, churn at a
 * fixed size with fresh keys, mixed), each with its own operation mix and key
 * distribution: random 64-bit, malloc-like pointers (16-byte aligned, a few
 * clustered arenas), tiny key spaces (delete/re-insert churn in the same
 * buckets: emptyOne/emptyRest, same-size growth) and sequential.
 *
 * Environment:
 *   MAP_DIFF_SEED=<n>     base seed (decimal or 0x...; "time" picks one and
 *                         prints it). Run r of a test uses seed base + r.
 *   MAP_DIFF_SCALE=<x>    multiply every test's number of runs (default 1;
 *                         e.g. 50 for a soak run; fractions allowed).
 *   MAP_DIFF_RUNS=<n>     exactly n runs per test (overrides the scale).
 *   MAP_DIFF_TEST=<glob>  run only the matching tests (cmocka test filter).
 *   MAP_DIFF_CHECK=<n>    map_debug_check budget in table cells per
 *                         operation (default 192); "all": after every op.
 *
 * Replaying a failure. Every failure message names the test, the run seed
 * and the operation index, and prints the command, e.g.
 *   MAP_DIFF_SEED=1234 MAP_DIFF_RUNS=1 MAP_DIFF_TEST=test_fast64_random \
 *     build/dbg/tests/map_differential
 * A run is a pure function of its seed: its configuration is drawn from
 * it, and so are the map's hash seed and iteration starts
 * (map_debug_set_seed).
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "test_util.h"
#include "map/map_internal.h"

/* ------------------------------------------------------------------------ */
/* Configuration from the environment                                       */
/* ------------------------------------------------------------------------ */

#define DEFAULT_SEED UINT64_C(0x4D41504449464600) /* "MAPDIFF\0" */
#define DEFAULT_CHECK_BUDGET 192            /* table cells checked per op */

static struct {
    uint64_t seed;          /* base seed (MAP_DIFF_SEED) */
    bool seed_set;          /* MAP_DIFF_SEED was given */
    double scale;           /* MAP_DIFF_SCALE */
    long runs;              /* MAP_DIFF_RUNS, 0 when unset */
    size_t check_budget;    /* MAP_DIFF_CHECK; 0 means after every op */
    const char *argv0;      /* for the replay hint */
} cfg = { 0, false, 1.0, 0, DEFAULT_CHECK_BUDGET, "map_differential" };

static void read_config(const char *argv0)
{
    const char *s;
    cfg.argv0 = argv0;
    if ((s = getenv("MAP_DIFF_SEED")) && *s) {
        cfg.seed_set = true;
        if (strcmp(s, "time") == 0)
            cfg.seed = (uint64_t)time(NULL) * 1000003u;
        else
            cfg.seed = strtoull(s, NULL, 0);
    }
    if ((s = getenv("MAP_DIFF_SCALE")) && *s)
        cfg.scale = strtod(s, NULL);
    if ((s = getenv("MAP_DIFF_RUNS")) && *s)
        cfg.runs = strtol(s, NULL, 0);
    if ((s = getenv("MAP_DIFF_CHECK")) && *s)
        cfg.check_budget = strcmp(s, "all") == 0 ? 0 : strtoull(s, NULL, 0);
    if ((s = getenv("MAP_DIFF_TEST")) && *s)
        cmocka_set_test_filter(s);
}

/* runs_for: how many runs a test makes, given its default. */
static long runs_for(long default_runs)
{
    if (cfg.runs > 0)
        return cfg.runs;
    long n = (long)(default_runs * cfg.scale + 0.5);
    return n < 1 ? 1 : n;
}

/* run_seed: the seed of run r of the test salted with salt. */
static uint64_t run_seed(uint64_t salt, long r)
{
    uint64_t base = cfg.seed_set ? cfg.seed : DEFAULT_SEED ^ (salt << 32);
    return base + (uint64_t)r;
}

/* ------------------------------------------------------------------------ */
/* Reference model: dense entries + open-addressing index with tombstones   */
/* ------------------------------------------------------------------------ */

#define MODEL_NONE ((size_t)-1)   /* "not found" entry index */
#define SLOT_EMPTY 0              /* index slot never used */
#define SLOT_TOMB ((size_t)-1)    /* index slot of a deleted entry */

typedef struct model_s {
    size_t key_size, value_size;
    size_t entry_size;          /* key bytes then value bytes */
    unsigned char *entries;     /* count live entries, densely packed */
    size_t count, cap;          /* live entries; allocated entries */
    size_t *slots;              /* SLOT_EMPTY, SLOT_TOMB or entry index + 1 */
    size_t nslots;              /* power of two */
    size_t used;                /* slots not SLOT_EMPTY; kept below nslots/2 */
} model_t;

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) abort();
    return p;
}

static uint64_t model_hash(const model_t *m, const void *key)
{
    const unsigned char *k = key;
    uint64_t h = 0xcbf29ce484222325ull;         /* FNV-1a, then a mixer */
    for (size_t i = 0; i < m->key_size; i++)
        h = (h ^ k[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static unsigned char *model_key(const model_t *m, size_t i)
{
    return m->entries + i * m->entry_size;
}

static unsigned char *model_value(const model_t *m, size_t i)
{
    return m->entries + i * m->entry_size + m->key_size;
}

/* model_probe: slot holding key, or the first empty slot of its probe run. */
static size_t model_probe(const model_t *m, const void *key)
{
    size_t mask = m->nslots - 1;
    for (size_t i = model_hash(m, key) & mask;; i = (i + 1) & mask) {
        size_t s = m->slots[i];
        if (s == SLOT_EMPTY)
            return i;
        if (s != SLOT_TOMB && memcmp(model_key(m, s - 1), key, m->key_size) == 0)
            return i;
    }
}

/* model_find: entry index of key, or MODEL_NONE. */
static size_t model_find(const model_t *m, const void *key)
{
    size_t s = m->slots[model_probe(m, key)];
    return s == SLOT_EMPTY ? MODEL_NONE : s - 1;
}

/* model_index: puts entry i into the index; the key must be absent. */
static void model_index(model_t *m, size_t i)
{
    size_t mask = m->nslots - 1;
    size_t j = model_hash(m, model_key(m, i)) & mask;
    while (m->slots[j] != SLOT_EMPTY && m->slots[j] != SLOT_TOMB)
        j = (j + 1) & mask;
    if (m->slots[j] == SLOT_EMPTY)
        m->used++;
    m->slots[j] = i + 1;
}

static void model_reindex(model_t *m, size_t nslots)
{
    free(m->slots);
    m->nslots = nslots;
    m->slots = xcalloc(nslots, sizeof *m->slots);
    m->used = 0;
    for (size_t i = 0; i < m->count; i++)
        model_index(m, i);
}

static void model_init(model_t *m, size_t key_size, size_t value_size)
{
    memset(m, 0, sizeof *m);
    m->key_size = key_size;
    m->value_size = value_size;
    m->entry_size = key_size + value_size;
    model_reindex(m, 16);
}

static void model_destroy(model_t *m)
{
    free(m->entries);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* model_put: sets key to value. @return true if the key was new. */
static bool model_put(model_t *m, const void *key, const void *value)
{
    size_t i = model_find(m, key);
    if (i != MODEL_NONE) {
        memcpy(model_value(m, i), value, m->value_size);
        return false;
    }
    if (2 * (m->used + 1) > m->nslots) {
        size_t n = 16;
        while (n < 4 * (m->count + 1))
            n *= 2;
        model_reindex(m, n);
    }
    if (m->count == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->entries = realloc(m->entries, m->cap * m->entry_size);
        if (!m->entries) abort();
    }
    i = m->count++;
    memcpy(model_key(m, i), key, m->key_size);
    memcpy(model_value(m, i), value, m->value_size);
    model_index(m, i);
    return true;
}

/* model_del: removes key (its value copied to value_out if not NULL).
 * The last entry moves into the hole. @return true if it was present. */
static bool model_del(model_t *m, const void *key, void *value_out)
{
    size_t slot = model_probe(m, key);
    if (m->slots[slot] == SLOT_EMPTY)
        return false;
    size_t i = m->slots[slot] - 1, last = m->count - 1;
    if (value_out)
        memcpy(value_out, model_value(m, i), m->value_size);
    m->slots[slot] = SLOT_TOMB;
    if (i != last) {
        m->slots[model_probe(m, model_key(m, last))] = i + 1;
        memcpy(model_key(m, i), model_key(m, last), m->entry_size);
    }
    m->count--;
    return true;
}

static void model_clear(model_t *m)
{
    m->count = 0;
    model_reindex(m, 16);
}

/* ------------------------------------------------------------------------ */
/* Harness                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum { API_GENERIC, API_FAST64, API_MIXED } api_t;
static const char *const api_names[] = { "generic", "fast64", "mixed" };

typedef enum { DIST_RANDOM, DIST_POINTER, DIST_TINY, DIST_SEQUENTIAL, DIST_COUNT } dist_t;
static const char *const dist_names[] = { "random", "pointer", "tiny", "sequential" };

/* keygen_t: where the next key id comes from. */
typedef struct keygen_s {
    dist_t dist;
    uint64_t base;          /* arena base (pointer), first id (tiny, sequential) */
    uint64_t span;          /* ids per arena (pointer) or key space size (tiny) */
    uint64_t next;          /* sequential: next id */
    uint64_t stride;        /* sequential: id step */
} keygen_t;

/* Per-key flags kept by an iterator's tracker (a model with 2-byte values). */
enum { TRACK_LIVE_WHOLE = 0, TRACK_PRODUCED = 1 };

typedef struct live_iter_s {
    bool active;
    map_iter_t it;
    model_t seen;           /* key -> [live for the whole iteration, produced] */
    uint64_t produced;      /* entries produced so far */
    bool saw_growth;        /* a growth started while it was live */
} live_iter_t;

/* coverage_t: what a test reached, printed at its end and asserted on. */
typedef struct coverage_s {
    uint64_t ops, checks, runs;
    uint64_t growths, same_size_growths, clears;
    uint64_t iters_done, iters_across_growth, iters_started_growing;
    uint64_t nomem, grow_failures;
    size_t max_count;
    unsigned max_B;
} coverage_t;

#define NITERS 2

typedef struct harness_s {
    const char *test;       /* test name, for messages */
    uint64_t seed;          /* this run's seed */
    uint64_t rng;           /* PRNG state (test_rand) */
    uint64_t op;            /* operation index within the run */
    size_t ks, vs;          /* key and value sizes */
    api_t api;
    map_t *map;
    test_alloc_t alloc;
    map_allocator_t allocator;
    model_t model;
    live_iter_t iters[NITERS];
    keygen_t gen;
    const void *cur_key;    /* the key being checked, for messages */
    bool force_check;       /* run map_debug_check after this op */
    bool last_growing;      /* stats.growing after the previous op */
    unsigned last_B;
    size_t last_grow_failures;
    size_t unaccounted;     /* allocator bytes not in stats.bytes (the header) */
    coverage_t *cov;
    unsigned char kbuf[MAP_MAX_KEY_SIZE];
    unsigned char vbuf[MAP_MAX_VALUE_SIZE], vbuf2[MAP_MAX_VALUE_SIZE];
} harness_t;

static uint64_t rnd(harness_t *h) { return test_rand(&h->rng); }
static uint64_t rnd_below(harness_t *h, uint64_t n) { return n ? rnd(h) % n : 0; }

static void hex(char *out, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t shown = n < 16 ? n : 16;
    for (size_t i = 0; i < shown; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
    strcpy(out + 2 * shown, n > shown ? "..." : "");
}

static void diff_fail(const harness_t *h, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static void diff_fail(const harness_t *h, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char kh[40] = "-";
    if (h->cur_key)
        hex(kh, h->cur_key, h->ks);
    fail_msg("%s: seed=%" PRIu64 " op=%" PRIu64 " (key %zu, value %zu, %s"
             " path, %s keys, count %zu, line %d): %s [key %s]\n"
             "  replay: MAP_DIFF_SEED=%" PRIu64 " MAP_DIFF_RUNS=1 MAP_DIFF_TEST=%s %s",
             h->test, h->seed, h->op, h->ks, h->vs, api_names[h->api],
             dist_names[h->gen.dist], h->model.count, line, msg, kh, h->seed,
             h->test, cfg.argv0);
    abort();
}

#define CHECK(h, cond, ...) \
    do { if (!(cond)) diff_fail((h), __LINE__, __VA_ARGS__); } while (0)

static void harness_init(harness_t *h, coverage_t *cov, const char *test,
                         uint64_t seed, size_t ks, size_t vs, api_t api,
                         size_t hint)
{
    memset(h, 0, sizeof *h);
    h->test = test;
    h->seed = h->rng = seed;
    h->ks = ks;
    h->vs = vs;
    h->api = ks == 8 ? api : API_GENERIC;
    h->cov = cov;
    h->allocator = test_allocator(&h->alloc);
    model_init(&h->model, ks, vs);
    map_err_t rc = map_new(ks, vs, hint, &h->allocator, &h->map);
    CHECK(h, rc == MAP_OK && h->map, "map_new(%zu, %zu, %zu): %s", ks, vs,
          hint, map_strerror(rc));
    /* The map's own randomness (hash seed, iteration start) from the run
     * seed too, so a failure replays exactly. */
    rc = map_debug_set_seed(h->map, seed);
    CHECK(h, rc == MAP_OK, "map_debug_set_seed on a new map: %s", map_strerror(rc));
    map_stats_t st;
    map_get_stats(h->map, &st);
    h->last_B = st.B;
    CHECK(h, st.bytes <= h->alloc.live_bytes, "new map: stats.bytes %zu > allocated %zu",
          st.bytes, h->alloc.live_bytes);
    h->unaccounted = h->alloc.live_bytes - st.bytes;
    cov->runs++;
}

/* ------------------------------------------------------------------------ */
/* Keys and values                                                          */
/* ------------------------------------------------------------------------ */

static void keygen_pick(harness_t *h, dist_t dist)
{
    keygen_t *g = &h->gen;
    g->dist = dist;
    g->base = rnd(h);
    g->next = g->base;
    switch (dist) {
    case DIST_POINTER:
        g->base = 0x00007f0000000000ull + (rnd_below(h, 1u << 20) << 24);
        g->span = 1024u << rnd_below(h, 10);
        break;
    case DIST_TINY:
        g->span = 1 + rnd_below(h, 64);
        break;
    case DIST_SEQUENTIAL: {
        static const uint64_t strides[] = { 1, 8, 16, 4096, 1ull << 32 };
        g->stride = strides[rnd_below(h, 5)];
        break;
    }
    default:
        break;
    }
}

static uint64_t keygen_next(harness_t *h)
{
    keygen_t *g = &h->gen;
    switch (g->dist) {
    case DIST_POINTER:   /* four clustered arenas, 16-byte aligned blocks */
        return g->base + (rnd_below(h, 4) << 30) + 16 * rnd_below(h, g->span);
    case DIST_TINY:
        return g->base + rnd_below(h, g->span);
    case DIST_SEQUENTIAL:
        return g->next += g->stride;
    default:
        return rnd(h);
    }
}

/* id_to_key: key bytes for an id: its low bytes, then (for long keys) bytes
 * derived from it, so keys differ from each other in the first 8 bytes. */
static void id_to_key(const harness_t *h, uint64_t id, unsigned char *key)
{
    memcpy(key, &id, h->ks < 8 ? h->ks : 8);
    for (size_t i = 8; i < h->ks; i++)
        key[i] = (unsigned char)(0x5a ^ i ^ (id >> (8 * (i % 8))));
}

static void random_value(harness_t *h, unsigned char *v)
{
    for (size_t i = 0; i < h->vs; i += 8) {
        uint64_t r = rnd(h);
        memcpy(v + i, &r, h->vs - i < 8 ? h->vs - i : 8);
    }
}

/* absent_key: a key of the current distribution missing from the model
 * (falls back to random ids). @return false if none was found. */
static bool absent_key(harness_t *h, unsigned char *key)
{
    for (int tries = 0; tries < 24; tries++) {
        id_to_key(h, tries < 8 ? keygen_next(h) : rnd(h), key);
        if (model_find(&h->model, key) == MODEL_NONE)
            return true;
    }
    return false;
}

/* live_key: a random key of the model. @return false if it is empty. */
static bool live_key(harness_t *h, unsigned char *key)
{
    if (h->model.count == 0)
        return false;
    memcpy(key, model_key(&h->model, rnd_below(h, h->model.count)), h->ks);
    return true;
}

/* ------------------------------------------------------------------------ */
/* The map API through the chosen path                                      */
/* ------------------------------------------------------------------------ */

static bool use_fast64(harness_t *h)
{
    return h->api == API_FAST64 || (h->api == API_MIXED && (rnd(h) & 1));
}

static uint64_t key64(const unsigned char *key)
{
    uint64_t k;
    memcpy(&k, key, 8);
    return k;
}

static map_err_t m_insert(harness_t *h, const unsigned char *key, const void *value)
{
    return use_fast64(h) ? map_insert64(h->map, key64(key), value)
                         : map_insert(h->map, key, value);
}

static map_err_t m_assign(harness_t *h, const unsigned char *key, void **vp, bool *inserted)
{
    return use_fast64(h) ? map_assign64(h->map, key64(key), vp, inserted)
                         : map_assign(h->map, key, vp, inserted);
}

static void *m_lookup(harness_t *h, const unsigned char *key)
{
    return use_fast64(h) ? map_lookup64(h->map, key64(key)) : map_lookup(h->map, key);
}

static bool m_delete(harness_t *h, const unsigned char *key, void *value_out)
{
    return use_fast64(h) ? map_delete64(h->map, key64(key), value_out)
                         : map_delete(h->map, key, value_out);
}

/* alloc_failed_since: did an allocation fail after call number `calls`? */
static bool alloc_failed_since(const harness_t *h, size_t calls)
{
    const test_alloc_t *a = &h->alloc;
    if (!a->fail_at || a->calls <= calls)
        return false;
    if (a->fail_all_after)
        return a->calls >= a->fail_at;
    return a->fail_at > calls && a->fail_at <= a->calls;
}

/* ------------------------------------------------------------------------ */
/* Invariants after every operation                                         */
/* ------------------------------------------------------------------------ */

static unsigned live_iterators(const harness_t *h)
{
    unsigned n = 0;
    for (int i = 0; i < NITERS; i++)
        n += h->iters[i].active;
    return n;
}

static void debug_check(harness_t *h)
{
#ifdef MAP_DEBUG
    char why[256] = "";
    h->cov->checks++;
    CHECK(h, map_debug_check(h->map, why, sizeof why) == 0,
          "map_debug_check: %s", why);
#else
    (void)h;
#endif
}

/* check_due: map_debug_check walks every cell and looks up every key, so
 * its cost grows with the table's cells (not entries: a shrunk table keeps
 * its size) times the average chain length (lookups walk chains, which get
 * long when growth keeps failing for lack of memory). It runs after every
 * op while that cost is below check_budget (default 192: up to 16 buckets
 * plus overflow, ~100 entries) and every (1 + cost / check_budget)th op
 * beyond: about check_budget cells per op at any size (every ~13th op at
 * 2000 entries, every ~700th at 100k). Growth starts, clears, growth
 * failures and every 16th NOMEM force a check. Checking every op below
 * ~2000 entries was measured to make the ASan binary about three times
 * slower (the check is already ~80% of the run time); MAP_DIFF_CHECK=all
 * does it for soak runs. */
static bool check_due(const harness_t *h, const map_stats_t *st)
{
    if (h->force_check || cfg.check_budget == 0)
        return true;
    size_t cells = (st->buckets + st->overflow_buckets + st->noldbuckets) *
                   MAP_BUCKET_SLOTS;
    size_t cost = cells + cells * st->overflow_buckets / st->buckets;
    return h->op % (1 + cost / cfg.check_budget) == 0;
}

static void note_growth(harness_t *h, const map_stats_t *st)
{
    bool started = (st->growing && !h->last_growing) || st->B != h->last_B;
    if (started) {
        h->cov->growths++;
        h->cov->same_size_growths += st->growing && st->same_size_grow;
        h->force_check = true;
        for (int i = 0; i < NITERS; i++)
            h->iters[i].saw_growth |= h->iters[i].active;
    }
    h->last_growing = st->growing;
    h->last_B = st->B;
}

static void check_stats(harness_t *h, size_t calls_before)
{
    map_stats_t st;
    map_get_stats(h->map, &st);
    CHECK(h, st.count == h->model.count, "stats.count %zu, model %zu",
          st.count, h->model.count);
    CHECK(h, st.buckets == (size_t)1 << st.B, "stats.buckets %zu with B %u",
          st.buckets, st.B);
    CHECK(h, st.growing || st.noldbuckets == 0, "noldbuckets %zu while not growing",
          st.noldbuckets);
    CHECK(h, st.iterators == live_iterators(h), "stats.iterators %u, live %u",
          st.iterators, live_iterators(h));
    CHECK(h, st.iterators > 0 || st.retired_bytes == 0,
          "retired_bytes %zu with no live iterator", st.retired_bytes);
    CHECK(h, st.bytes + h->unaccounted == h->alloc.live_bytes,
          "stats.bytes %zu + %zu (at map_new) != %zu allocated", st.bytes,
          h->unaccounted, h->alloc.live_bytes);
    CHECK(h, st.retired_bytes <= st.bytes, "retired_bytes %zu > bytes %zu",
          st.retired_bytes, st.bytes);
    if (st.grow_failures != h->last_grow_failures) {
        CHECK(h, st.grow_failures > h->last_grow_failures, "grow_failures went down");
        CHECK(h, alloc_failed_since(h, calls_before),
              "grow_failures rose without a failed allocation");
        CHECK(h, st.last_error == MAP_ERR_NOMEM, "grow failure but last_error %d",
              (int)st.last_error);
        h->cov->grow_failures += st.grow_failures - h->last_grow_failures;
        h->last_grow_failures = st.grow_failures;
        h->force_check = true;
    }
    note_growth(h, &st);
    if (st.B > h->cov->max_B)
        h->cov->max_B = st.B;
    if (check_due(h, &st))
        debug_check(h);
}

/* post_op: the checks that follow every operation. */
static void post_op(harness_t *h, size_t calls_before)
{
    size_t n = map_count(h->map);
    CHECK(h, n == h->model.count, "map_count %zu, model %zu", n, h->model.count);
    check_stats(h, calls_before);
    if (n > h->cov->max_count)
        h->cov->max_count = n;
    h->force_check = false;
    h->cov->ops++;
}

/* ------------------------------------------------------------------------ */
/* Iteration tracking                                                       */
/* ------------------------------------------------------------------------ */

static void track_begin(harness_t *h, live_iter_t *li)
{
    static const unsigned char live_not_produced[2] = { 1, 0 };
    model_init(&li->seen, h->ks, 2);
    for (size_t i = 0; i < h->model.count; i++)
        model_put(&li->seen, model_key(&h->model, i), live_not_produced);
    li->produced = 0;
    li->saw_growth = false;
}

/* track_forget: key was deleted (or cleared): it is no longer live for the
 * whole iteration, and if re-inserted it is a new entry that may be produced
 * again. */
static void track_forget(harness_t *h, const unsigned char *key)
{
    for (int i = 0; i < NITERS; i++) {
        live_iter_t *li = &h->iters[i];
        size_t j;
        if (li->active && (j = model_find(&li->seen, key)) != MODEL_NONE)
            memset(model_value(&li->seen, j), 0, 2);
    }
}

static void track_forget_all(harness_t *h)
{
    for (int i = 0; i < NITERS; i++) {
        live_iter_t *li = &h->iters[i];
        for (size_t j = 0; li->active && j < li->seen.count; j++)
            memset(model_value(&li->seen, j), 0, 2);
    }
}

/* track_produce: the iterator produced (key, value). */
static void track_produce(harness_t *h, live_iter_t *li, const void *key,
                          const void *value)
{
    CHECK(h, key != NULL, "map_iter_next returned true with a NULL key");
    h->cur_key = key;
    size_t i = model_find(&h->model, key);
    CHECK(h, i != MODEL_NONE, "iterator produced a key that is not in the map"
          " (deleted before it was reached, or never inserted)");
    CHECK(h, h->vs == 0 || (value && memcmp(value, model_value(&h->model, i), h->vs) == 0),
          "iterator produced a stale or wrong value");
    size_t j = model_find(&li->seen, key);
    if (j == MODEL_NONE) {
        static const unsigned char produced_only[2] = { 0, 1 };
        model_put(&li->seen, key, produced_only);
    } else {
        unsigned char *flags = model_value(&li->seen, j);
        CHECK(h, !flags[TRACK_PRODUCED], "iterator produced a key twice");
        flags[TRACK_PRODUCED] = 1;
    }
    li->produced++;
}

/* track_finish: the iterator reported its end: nothing live was missed. */
static void track_finish(harness_t *h, live_iter_t *li)
{
    for (size_t j = 0; j < li->seen.count; j++) {
        const unsigned char *flags = model_value(&li->seen, j);
        if (flags[TRACK_LIVE_WHOLE] && !flags[TRACK_PRODUCED]) {
            h->cur_key = model_key(&li->seen, j);
            CHECK(h, false, "iteration ended without producing a key live"
                  " for the whole iteration (%" PRIu64 " produced)", li->produced);
        }
    }
    h->cov->iters_done++;
    h->cov->iters_across_growth += li->saw_growth;
}

static void iter_begin(harness_t *h, live_iter_t *li)
{
    map_stats_t st;
    map_get_stats(h->map, &st);
    h->cov->iters_started_growing += st.growing;
    map_iter_init(h->map, &li->it);
    li->active = true;
    track_begin(h, li);
}

static void iter_end(harness_t *h, live_iter_t *li)
{
    map_iter_done(&li->it);
    model_destroy(&li->seen);
    li->active = false;
}

/* iter_advance: up to n steps. @return true if the iteration ended (and was
 * closed with map_iter_done). */
static bool iter_advance(harness_t *h, live_iter_t *li, uint64_t n)
{
    for (uint64_t s = 0; s < n; s++) {
        const void *key = NULL;
        void *value = NULL;
        if (!map_iter_next(&li->it, &key, &value)) {
            track_finish(h, li);
            CHECK(h, !map_iter_next(&li->it, &key, &value),
                  "map_iter_next produced an entry after reporting the end");
            iter_end(h, li);
            return true;
        }
        track_produce(h, li, key, value);
        h->cur_key = NULL;      /* key points into the map: stale after a write */
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Operations with their expected results                                   */
/* ------------------------------------------------------------------------ */

/* after_nomem: an insert of a new key failed: it must not be in the map. */
static void after_nomem(harness_t *h, const unsigned char *key, size_t idx,
                        size_t calls, const char *what)
{
    h->cur_key = key;
    CHECK(h, idx == MODEL_NONE, "%s of an existing key returned MAP_ERR_NOMEM", what);
    CHECK(h, alloc_failed_since(h, calls),
          "%s returned MAP_ERR_NOMEM but no allocation failed", what);
    CHECK(h, m_lookup(h, key) == NULL, "key present after a failed %s", what);
    h->force_check = h->cov->nomem++ % 16 == 0;   /* a burst: check some */
}

static void do_insert(harness_t *h, const unsigned char *key, const unsigned char *value)
{
    size_t idx = model_find(&h->model, key), calls = h->alloc.calls;
    map_err_t rc = m_insert(h, key, value);
    if (rc == MAP_ERR_NOMEM) {
        after_nomem(h, key, idx, calls, "insert");
    } else {
        h->cur_key = key;
        CHECK(h, rc == MAP_OK, "insert: %s", map_strerror(rc));
        model_put(&h->model, key, value);
        const void *p = m_lookup(h, key);
        CHECK(h, p && memcmp(p, value, h->vs) == 0, "insert: lookup disagrees");
    }
    post_op(h, calls);
}

static void do_assign(harness_t *h, const unsigned char *key, const unsigned char *value)
{
    size_t idx = model_find(&h->model, key), calls = h->alloc.calls;
    void *vp = NULL;
    bool inserted = idx != MODEL_NONE;   /* the opposite of what is expected */
    bool want_inserted = rnd(h) & 3;     /* the flag is optional */
    map_err_t rc = m_assign(h, key, &vp, want_inserted ? &inserted : NULL);
    if (!want_inserted)
        inserted = idx == MODEL_NONE;
    h->cur_key = key;
    if (rc == MAP_ERR_NOMEM) {
        after_nomem(h, key, idx, calls, "assign");
        post_op(h, calls);
        return;
    }
    CHECK(h, rc == MAP_OK, "assign: %s", map_strerror(rc));
    CHECK(h, vp != NULL, "assign: NULL value pointer");
    CHECK(h, inserted == (idx == MODEL_NONE), "assign: inserted=%d", inserted);
    if (inserted) {
        memset(h->vbuf2, 0, h->vs);
        CHECK(h, memcmp(vp, h->vbuf2, h->vs) == 0, "assign of a new key: value not zeroed");
    } else {
        CHECK(h, memcmp(vp, model_value(&h->model, idx), h->vs) == 0,
              "assign of an existing key: wrong value");
    }
    memcpy(vp, value, h->vs);
    model_put(&h->model, key, value);
    const void *p = m_lookup(h, key);
    CHECK(h, p && memcmp(p, value, h->vs) == 0, "assign: lookup disagrees");
    post_op(h, calls);
}

static void do_lookup(harness_t *h, const unsigned char *key)
{
    size_t idx = model_find(&h->model, key);
    const void *p = m_lookup(h, key);
    h->cur_key = key;
    if (idx == MODEL_NONE)
        CHECK(h, p == NULL, "lookup of an absent key found it");
    else
        CHECK(h, p && memcmp(p, model_value(&h->model, idx), h->vs) == 0,
              "lookup: %s", p ? "wrong value" : "not found");
    post_op(h, h->alloc.calls);
}

static void do_delete(harness_t *h, const unsigned char *key, bool want_value)
{
    size_t calls = h->alloc.calls;
    bool present = model_find(&h->model, key) != MODEL_NONE;
    memset(h->vbuf2, 0xcc, sizeof h->vbuf2);
    bool deleted = m_delete(h, key, want_value ? h->vbuf2 : NULL);
    h->cur_key = key;
    CHECK(h, deleted == present, "delete returned %d", deleted);
    if (present) {
        if (want_value)
            CHECK(h, memcmp(h->vbuf2, model_value(&h->model, model_find(&h->model, key)),
                            h->vs) == 0, "delete: wrong value copied out");
        model_del(&h->model, key, NULL);
        track_forget(h, key);
    }
    CHECK(h, m_lookup(h, key) == NULL, "key found after its delete");
    post_op(h, calls);
}

static void do_clear(harness_t *h)
{
    size_t calls = h->alloc.calls;
    map_clear(h->map);
    model_clear(&h->model);
    track_forget_all(h);
    h->cov->clears++;
    h->force_check = true;
    post_op(h, calls);
}

/* verify_full: every model entry is found with its value, and a full
 * iteration produces exactly the model's entries. */
static void verify_full(harness_t *h)
{
    for (size_t i = 0; i < h->model.count; i++) {
        const unsigned char *key = model_key(&h->model, i);
        const void *p = m_lookup(h, key);
        h->cur_key = key;
        CHECK(h, p && memcmp(p, model_value(&h->model, i), h->vs) == 0,
              "full verify: key %s", p ? "has a wrong value" : "missing");
    }
    live_iter_t li = { 0 };
    map_iter_init(h->map, &li.it);
    track_begin(h, &li);
    for (;;) {
        const void *key = NULL;
        void *value = NULL;
        if (!map_iter_next(&li.it, &key, &value))
            break;
        track_produce(h, &li, key, value);
    }
    h->cur_key = NULL;
    track_finish(h, &li);
    CHECK(h, li.produced == h->model.count, "full iteration produced %" PRIu64
          " entries, map has %zu", li.produced, h->model.count);
    map_iter_done(&li.it);
    model_destroy(&li.seen);
    /* Both outputs of map_iter_next are optional. */
    size_t n = 0;
    map_iter_init(h->map, &li.it);
    while (map_iter_next(&li.it, NULL, NULL))
        n++;
    map_iter_done(&li.it);
    CHECK(h, n == h->model.count, "iteration without outputs produced %zu of %zu",
          n, h->model.count);
    debug_check(h);
}

/* harness_finish: ends live iterators, verifies, frees, checks for leaks. */
static void harness_finish(harness_t *h)
{
    test_alloc_heal(&h->alloc);
    for (int i = 0; i < NITERS; i++)
        if (h->iters[i].active)
            iter_end(h, &h->iters[i]);
    map_stats_t st;
    map_get_stats(h->map, &st);
    CHECK(h, st.retired_bytes == 0 && st.iterators == 0,
          "after the last map_iter_done: retired_bytes %zu, iterators %u",
          st.retired_bytes, st.iterators);
    verify_full(h);
    map_free(h->map);
    h->map = NULL;
    CHECK(h, h->alloc.live_blocks == 0 && h->alloc.live_bytes == 0,
          "map_free leaked %zu blocks (%zu bytes)", h->alloc.live_blocks,
          h->alloc.live_bytes);
    model_destroy(&h->model);
}

/* ------------------------------------------------------------------------ */
/* Random programs                                                          */
/* ------------------------------------------------------------------------ */

typedef enum {
    OP_INSERT_NEW, OP_INSERT_OVERWRITE, OP_ASSIGN, OP_LOOKUP_HIT,
    OP_LOOKUP_MISS, OP_DELETE_HIT, OP_DELETE_MISS, OP_CLEAR, OP_ITER_FULL,
    OP_ITER_START, OP_ITER_STEP, OP_ITER_END, OP_FAULT, OP_HEAL, OP_COUNT
} op_t;

typedef enum { PH_GROW, PH_SHRINK, PH_CHURN, PH_MIXED, PH_COUNT } phase_kind_t;

/* mix_t: relative weights of the operations (per thousand-ish). */
typedef struct mix_s { unsigned w[OP_COUNT]; } mix_t;

static const mix_t base_mix = { {
    [OP_INSERT_NEW] = 200, [OP_INSERT_OVERWRITE] = 80, [OP_ASSIGN] = 80,
    [OP_LOOKUP_HIT] = 150, [OP_LOOKUP_MISS] = 100, [OP_DELETE_HIT] = 150,
    [OP_DELETE_MISS] = 50, [OP_CLEAR] = 0, [OP_ITER_FULL] = 2,
    [OP_ITER_START] = 10, [OP_ITER_STEP] = 60, [OP_ITER_END] = 5,
} };

typedef struct phase_s {
    phase_kind_t kind;
    size_t target;          /* entry count to reach (grow, shrink) or keep (churn) */
    uint64_t max_ops;       /* the phase ends after this many ops anyway */
    unsigned steer;         /* % of ops that move the count toward target */
    mix_t mix;              /* the other ops */
} phase_t;

/* Iteration costs O(count) per started iterator (the tracker snapshot):
 * above this many entries, starts are thinned out proportionally. */
#define ITER_COST_CAP 4096

static bool iter_affordable(harness_t *h)
{
    size_t n = h->model.count;
    return n <= ITER_COST_CAP || rnd_below(h, n) < ITER_COST_CAP;
}

static op_t pick_op(harness_t *h, const mix_t *mix)
{
    unsigned total = 0;
    for (int i = 0; i < OP_COUNT; i++)
        total += mix->w[i];
    uint64_t r = rnd_below(h, total);
    for (int i = 0; i < OP_COUNT; i++) {
        if (r < mix->w[i])
            return (op_t)i;
        r -= mix->w[i];
    }
    return OP_LOOKUP_HIT;
}

static void op_insert_new(harness_t *h)
{
    random_value(h, h->vbuf);
    if (absent_key(h, h->kbuf) || live_key(h, h->kbuf))
        do_insert(h, h->kbuf, h->vbuf);
}

static void op_iter_start(harness_t *h)
{
    for (int i = 0; i < NITERS; i++) {
        if (!h->iters[i].active) {
            if (iter_affordable(h))
                iter_begin(h, &h->iters[i]);
            return;
        }
    }
}

static live_iter_t *some_live_iter(harness_t *h)
{
    live_iter_t *li = &h->iters[rnd_below(h, NITERS)];
    if (!li->active)
        li = &h->iters[li == &h->iters[0]];
    return li->active ? li : NULL;
}

static void op_iter_full(harness_t *h)
{
    live_iter_t li = { 0 };
    if (!iter_affordable(h))
        return;
    iter_begin(h, &li);
    CHECK(h, iter_advance(h, &li, UINT64_MAX), "iteration did not end");
    CHECK(h, li.produced == h->model.count, "full iteration produced %" PRIu64
          " entries, map has %zu", li.produced, h->model.count);
}

static void op_fault(harness_t *h, bool all_after)
{
    test_alloc_fail_nth(&h->alloc, 1 + rnd_below(h, all_after ? 16 : 4), all_after);
}

/* run_op: one operation of kind op with random operands. */
static void run_op(harness_t *h, op_t op, bool faults_all_after)
{
    live_iter_t *li;
    h->op++;
    h->cur_key = NULL;
    switch (op) {
    case OP_INSERT_NEW:
        op_insert_new(h);
        break;
    case OP_INSERT_OVERWRITE:
        random_value(h, h->vbuf);
        if (live_key(h, h->kbuf))
            do_insert(h, h->kbuf, h->vbuf);
        break;
    case OP_ASSIGN:
        random_value(h, h->vbuf);
        if (((rnd(h) & 1) && live_key(h, h->kbuf)) || absent_key(h, h->kbuf))
            do_assign(h, h->kbuf, h->vbuf);
        break;
    case OP_LOOKUP_HIT:
        if (live_key(h, h->kbuf))
            do_lookup(h, h->kbuf);
        break;
    case OP_LOOKUP_MISS:
        if (absent_key(h, h->kbuf))
            do_lookup(h, h->kbuf);
        break;
    case OP_DELETE_HIT:
        if (live_key(h, h->kbuf))
            do_delete(h, h->kbuf, rnd(h) & 1);
        break;
    case OP_DELETE_MISS:
        if (absent_key(h, h->kbuf))
            do_delete(h, h->kbuf, rnd(h) & 1);
        break;
    case OP_CLEAR:
        do_clear(h);
        break;
    case OP_ITER_FULL:
        op_iter_full(h);
        break;
    case OP_ITER_START:
        op_iter_start(h);
        break;
    case OP_ITER_STEP:
        if ((li = some_live_iter(h)))
            iter_advance(h, li, 1 + rnd_below(h, 32));
        break;
    case OP_ITER_END:
        if ((li = some_live_iter(h)))
            iter_end(h, li);
        break;
    case OP_FAULT:
        op_fault(h, faults_all_after);
        break;
    case OP_HEAL:
        test_alloc_heal(&h->alloc);
        break;
    default:
        break;
    }
}

/* steer_op: the op that moves the count toward the phase's target. */
static op_t steer_op(const harness_t *h, const phase_t *ph)
{
    switch (ph->kind) {
    case PH_GROW:
        return OP_INSERT_NEW;
    case PH_SHRINK:
        return OP_DELETE_HIT;
    default:
        return h->model.count < ph->target ? OP_INSERT_NEW : OP_DELETE_HIT;
    }
}

static bool phase_done(const harness_t *h, const phase_t *ph, uint64_t ops)
{
    if (ops >= ph->max_ops)
        return true;
    if (ph->kind == PH_GROW)
        return h->model.count >= ph->target;
    if (ph->kind == PH_SHRINK)
        return h->model.count <= ph->target;
    return false;
}

static void run_phase(harness_t *h, const phase_t *ph, bool faults_all_after)
{
    for (uint64_t n = 0; !phase_done(h, ph, n); n++) {
        bool steer = rnd_below(h, 100) < ph->steer;
        run_op(h, steer ? steer_op(h, ph) : pick_op(h, &ph->mix), faults_all_after);
    }
}

/* perturb_mix: scales each weight by 0, 1/2, 1 or 3/2 (the core ops never
 * by 0), so every phase has its own mix. */
static void perturb_mix(harness_t *h, mix_t *mix)
{
    for (int i = 0; i < OP_COUNT; i++) {
        unsigned f = (unsigned)rnd_below(h, 4);
        if (f == 0 && i <= OP_DELETE_HIT)
            f = 1;
        mix->w[i] = mix->w[i] * f / 2;
    }
}

/* random_phase: a phase of random kind; targets are log-uniform up to
 * max_target. */
static void random_phase(harness_t *h, phase_t *ph, size_t max_target,
                         const mix_t *mix)
{
    unsigned bits = 1;
    while (((size_t)1 << bits) < max_target)
        bits++;
    ph->kind = (phase_kind_t)rnd_below(h, PH_COUNT);
    size_t top = (size_t)1 << rnd_below(h, bits + 1);
    ph->target = top / 2 + rnd_below(h, top / 2 + 1);
    if (ph->target > max_target)
        ph->target = max_target;
    if (ph->kind == PH_SHRINK)
        ph->target = rnd_below(h, h->model.count / 4 + 2);
    ph->steer = ph->kind == PH_MIXED ? 0 : 30 + (unsigned)rnd_below(h, 50);
    ph->max_ops = 2 * ph->target + 500 + rnd_below(h, 4000);
    if (ph->kind == PH_SHRINK)
        ph->max_ops = 2 * h->model.count + 500;
    ph->mix = *mix;
    perturb_mix(h, &ph->mix);
    keygen_pick(h, (dist_t)rnd_below(h, DIST_COUNT));
}

/* run_program: nphases random phases on a fresh map, then the final checks. */
static void run_program(harness_t *h, int nphases, size_t max_target,
                        const mix_t *mix, bool faults_all_after)
{
    for (int p = 0; p < nphases; p++) {
        phase_t ph;
        random_phase(h, &ph, max_target, mix);
        run_phase(h, &ph, faults_all_after);
        if (h->model.count <= 20000 || p == nphases - 1) {
            test_alloc_heal(&h->alloc);
            verify_full(h);
        }
    }
    harness_finish(h);
}

static void print_coverage(const char *test, const coverage_t *c)
{
    print_message("    %s: %" PRIu64 " runs, %" PRIu64 " ops, %" PRIu64
                  " debug checks, max count %zu, max B %u, %" PRIu64
                  " growths (%" PRIu64 " same-size), %" PRIu64 " clears, %" PRIu64
                  " iterations done (%" PRIu64 " across a growth, %" PRIu64
                  " started mid-growth), %" PRIu64 " NOMEM, %" PRIu64
                  " grow failures\n", test, c->runs, c->ops, c->checks,
                  c->max_count, c->max_B, c->growths, c->same_size_growths,
                  c->clears, c->iters_done, c->iters_across_growth,
                  c->iters_started_growing, c->nomem, c->grow_failures);
}

/* expect_reached: a test must exercise what it is about. Shortened runs
 * (MAP_DIFF_SCALE < 1, MAP_DIFF_RUNS) may legitimately miss it. */
static void expect_reached(bool reached, const char *what, long default_runs)
{
    if (reached)
        return;
    if (runs_for(default_runs) < default_runs) {
        print_message("    note: %s not reached in this shortened run\n", what);
        return;
    }
    fail_msg("coverage: %s never happened: the test no longer exercises it", what);
}

/* Value sizes: 0, odd ones (unaligned values), Go's common ones, the max. */
static const size_t value_sizes[] = { 8, 0, 16, 24, 40, 128, 3, 1, 32 };
#define N_VALUE_SIZES (sizeof value_sizes / sizeof value_sizes[0])

/* random_runs: `runs` runs of random programs on key_size-8 maps via api. */
static void random_runs(const char *test, uint64_t salt, api_t api, long runs)
{
    coverage_t cov = { 0 };
    for (long r = 0; r < runs_for(runs); r++) {
        harness_t h;
        uint64_t seed = run_seed(salt, r), cfg_rng = seed;
        size_t vs = value_sizes[test_rand(&cfg_rng) % N_VALUE_SIZES];
        harness_init(&h, &cov, test, seed, 8, vs, api, test_rand(&cfg_rng) % 64);
        mix_t mix = base_mix;
        mix.w[OP_CLEAR] = (unsigned)(test_rand(&cfg_rng) % 2);
        run_program(&h, 6, 20000, &mix, false);
    }
    print_coverage(test, &cov);
    expect_reached(cov.growths > 0, "growth", runs);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

static void test_fast64_random(void **state)
{
    (void)state;
    random_runs(__func__, 1, API_FAST64, 24);
}

static void test_generic8_random(void **state)
{
    (void)state;
    random_runs(__func__, 2, API_GENERIC, 24);
}

/* Both paths on the same map: they must agree (same hash, same layout). */
static void test_mixed_paths8_random(void **state)
{
    (void)state;
    random_runs(__func__, 3, API_MIXED, 12);
}

/* Generic maps with other key and value sizes (the combination is drawn
 * from the run seed; successive seeds cover all of them). */
static void test_generic_sizes_random(void **state)
{
    static const size_t key_sizes[] = { 4, 12, 16, 33, 1, 2, 64, 128 };
    coverage_t cov = { 0 };
    (void)state;
    for (long r = 0; r < runs_for(48); r++) {
        harness_t h;
        uint64_t seed = run_seed(4, r);
        size_t ks = key_sizes[seed % 8], vs = value_sizes[(seed / 8) % N_VALUE_SIZES];
        harness_init(&h, &cov, __func__, seed, ks, vs, API_GENERIC,
                     (seed >> 8) % 100);
        run_program(&h, 5, 5000, &base_mix, false);
    }
    print_coverage(__func__, &cov);
    expect_reached(cov.growths > 0, "growth", 48);
}

/* Grow to ~100k entries, delete almost everything, grow again, shrink. */
static void test_grow_shrink_100k(void **state)
{
    coverage_t cov = { 0 };
    (void)state;
    for (long r = 0; r < runs_for(2); r++) {
        harness_t h;
        uint64_t seed = run_seed(5, r);
        bool fast = (seed & 1) == 0;
        harness_init(&h, &cov, __func__, seed, fast ? 8 : 12,
                     fast ? 8 : 24, fast ? API_FAST64 : API_GENERIC, 0);
        for (int cycle = 0; cycle < 2; cycle++) {
            phase_t grow = { PH_GROW, 100000, 1000000, 80, base_mix };
            phase_t shrink = { PH_SHRINK, 1 + rnd_below(&h, 16), 1000000, 80, base_mix };
            keygen_pick(&h, cycle ? DIST_POINTER : DIST_RANDOM);
            run_phase(&h, &grow, false);
            verify_full(&h);
            keygen_pick(&h, cycle ? DIST_SEQUENTIAL : DIST_TINY);
            run_phase(&h, &shrink, false);
            verify_full(&h);
        }
        harness_finish(&h);
    }
    print_coverage(__func__, &cov);
    expect_reached(cov.max_count >= 100000, "100k entries", 2);
}

/* The agent's shape (8-byte pointer keys, 24-byte values) grown to B = 16
 * (420k entries, just under the load limit), where Go's overflow count turns
 * probabilistic, then churn at that size. */
static void test_grow_past_b16(void **state)
{
    coverage_t cov = { 0 };
    (void)state;
    for (long r = 0; r < runs_for(1); r++) {
        harness_t h;
        harness_init(&h, &cov, __func__, run_seed(11, r), 8, 24, API_FAST64, 0);
        phase_t grow = { PH_GROW, 420000, 2000000, 97, base_mix };
        phase_t churn = { PH_CHURN, 420000, 40000, 90, base_mix };
        churn.mix.w[OP_INSERT_NEW] = churn.mix.w[OP_ASSIGN] = 0;
        keygen_pick(&h, DIST_POINTER);
        run_phase(&h, &grow, false);
        keygen_pick(&h, DIST_RANDOM);
        run_phase(&h, &churn, false);
        harness_finish(&h);
    }
    print_coverage(__func__, &cov);
    expect_reached(cov.max_B == 16, "B = 16", 1);
}

/* Churn at a fixed size with fresh keys (and in tiny key spaces): deleted
 * cells scatter over the chains, overflow buckets pile up and same-size
 * growth must kick in. Targets sit right at the load-factor limit of
 * successive B (13 * 2^(B-1) entries: full, but no doubling), where chains
 * overflow most. */
static void test_churn_same_size_growth(void **state)
{
    coverage_t cov = { 0 };
    (void)state;
    for (long r = 0; r < runs_for(8); r++) {
        harness_t h;
        uint64_t seed = run_seed(6, r);
        harness_init(&h, &cov, __func__, seed, 8, 8, (api_t)(seed % 3), 0);
        for (unsigned B = 1 + (unsigned)(seed / 3 % 3); B <= 9; B += 2) {
            phase_t ph = { PH_CHURN, (size_t)13 << (B - 1), 0, 90, base_mix };
            ph.max_ops = 40 * ph.target + 2000;
            if (ph.max_ops > 40000)
                ph.max_ops = 40000;
            perturb_mix(&h, &ph.mix);
            ph.mix.w[OP_INSERT_NEW] = ph.mix.w[OP_ASSIGN] = 0;  /* no doubling */
            keygen_pick(&h, B % 4 == 3 ? DIST_POINTER : DIST_RANDOM);
            run_phase(&h, &ph, false);
            keygen_pick(&h, DIST_TINY);
            ph.max_ops = 2000;
            run_phase(&h, &ph, false);
        }
        harness_finish(&h);
    }
    print_coverage(__func__, &cov);
    expect_reached(cov.same_size_growths > 0, "same-size growth", 8);
}

/* Iterators live across inserts, deletes, overwrites, clears and growths. */
static void test_iterate_while_mutating(void **state)
{
    coverage_t cov = { 0 };
    mix_t mix = base_mix;
    (void)state;
    mix.w[OP_ITER_START] = 60;
    mix.w[OP_ITER_STEP] = 300;
    mix.w[OP_ITER_END] = 4;
    mix.w[OP_ITER_FULL] = 10;
    mix.w[OP_CLEAR] = 1;
    for (long r = 0; r < runs_for(24); r++) {
        harness_t h;
        uint64_t seed = run_seed(7, r);
        size_t ks = (seed & 3) == 3 ? 16 : 8;
        harness_init(&h, &cov, __func__, seed, ks,
                     value_sizes[(seed >> 2) % N_VALUE_SIZES],
                     (api_t)((seed >> 5) % 3), 0);
        run_program(&h, 8, 6000, &mix, false);
    }
    print_coverage(__func__, &cov);
    expect_reached(cov.iters_across_growth > 0, "an iteration across a growth", 24);
    expect_reached(cov.iters_started_growing > 0, "an iteration started mid-growth", 24);
}

/* fill_until: inserts random keys until count >= n and, if want_growing,
 * until a growth is in progress (bounded). */
static void fill_until(harness_t *h, size_t n, bool want_growing)
{
    map_stats_t st;
    for (int guard = 0; guard < 1000000; guard++) {
        map_get_stats(h->map, &st);
        if (h->model.count >= n && (!want_growing || st.growing))
            return;
        h->op++;
        op_insert_new(h);
    }
}

/* Two iterators at once, and map_clear under both: nothing is produced
 * after the clear until keys are re-inserted, and then only live keys. */
static void test_two_iterators_and_clear(void **state)
{
    static const size_t sizes[] = { 0, 1, 9, 100, 700, 3000, 30000 };
    coverage_t cov = { 0 };
    (void)state;
    for (long r = 0; r < runs_for(28); r++) {
        harness_t h;
        uint64_t seed = run_seed(8, r);
        size_t n = sizes[seed % 7];
        bool generic = (seed / 7) & 1, growing = (seed / 14) & 1;
        harness_init(&h, &cov, __func__, seed, generic ? 12 : 8,
                     generic ? 24 : 8, generic ? API_GENERIC : API_FAST64, 0);
        keygen_pick(&h, DIST_RANDOM);
        fill_until(&h, n, growing && n > 8);
        live_iter_t *a = &h.iters[0], *b = &h.iters[1];
        iter_begin(&h, a);
        iter_advance(&h, a, rnd_below(&h, n + 1) / 2);
        iter_begin(&h, b);
        for (int i = 0; i < 50 && a->active && b->active; i++) {
            run_op(&h, pick_op(&h, &base_mix), false);
            if (a->active)
                iter_advance(&h, a, 1 + rnd_below(&h, 8));
            if (b->active)
                iter_advance(&h, b, 1 + rnd_below(&h, 8));
        }
        h.op++;
        do_clear(&h);
        if (a->active) {
            uint64_t before = a->produced;
            CHECK(&h, iter_advance(&h, a, UINT64_MAX), "iteration did not end");
            CHECK(&h, a->produced == before, "%" PRIu64 " entries produced after"
                  " map_clear", a->produced - before);
        }
        fill_until(&h, n / 2, false);   /* re-inserts: may or may not be produced */
        if (b->active)
            CHECK(&h, iter_advance(&h, b, UINT64_MAX), "iteration did not end");
        harness_finish(&h);
    }
    print_coverage(__func__, &cov);
}

/* alloc_fault_runs: random programs with allocations failing: either the
 * Nth from some point on (all_after false), or all from the Nth on. */
static void alloc_fault_runs(const char *test, uint64_t salt, bool all_after)
{
    coverage_t cov = { 0 };
    mix_t mix = base_mix;
    mix.w[OP_FAULT] = all_after ? 3 : 20;
    mix.w[OP_HEAL] = all_after ? 4 : 1;
    mix.w[OP_CLEAR] = 1;
    mix.w[OP_ITER_START] = 20;
    mix.w[OP_ITER_STEP] = 100;
    for (long r = 0; r < runs_for(24); r++) {
        harness_t h;
        uint64_t seed = run_seed(salt, r);
        size_t ks = seed % 3 == 2 ? 12 : 8;
        harness_init(&h, &cov, test, seed, ks, value_sizes[(seed / 3) % N_VALUE_SIZES],
                     (api_t)((seed / 32) % 3), 0);
        run_program(&h, 6, 5000, &mix, all_after);
    }
    print_coverage(test, &cov);
    expect_reached(cov.nomem > 0, "MAP_ERR_NOMEM", 24);
    expect_reached(cov.grow_failures > 0, "a growth failure", 24);
}

static void test_alloc_fault_nth(void **state)
{
    (void)state;
    alloc_fault_runs(__func__, 9, false);
}

static void test_alloc_fault_all_after(void **state)
{
    (void)state;
    alloc_fault_runs(__func__, 10, true);
}

/* Allocations failing in the middle of a growth: evacuation cannot reserve
 * its overflow buckets, so writes must fall back to the unevacuated (still
 * authoritative) old chains, and inserts needing a new overflow bucket fail
 * cleanly. Churn at the load limit starts a same-size growth; big values
 * make overflow slabs hold few buckets, so evacuation needs new ones. */
static void test_alloc_fault_during_growth(void **state)
{
    coverage_t cov = { 0 };
    (void)state;
    for (long r = 0; r < runs_for(16); r++) {
        harness_t h;
        uint64_t seed = run_seed(12, r);
        unsigned B = 4 + (unsigned)(seed % 5);
        harness_init(&h, &cov, __func__, seed, (seed & 8) ? 16 : 8,
                     (seed & 16) ? 128 : 40, (api_t)((seed >> 5) % 3), 0);
        keygen_pick(&h, DIST_RANDOM);
        phase_t churn = { PH_CHURN, (size_t)13 << (B - 1), 1, 90, base_mix };
        churn.mix.w[OP_INSERT_NEW] = churn.mix.w[OP_ASSIGN] = 0;
        fill_until(&h, churn.target, false);
        map_stats_t st;
        for (int i = 0; i < 400000; i++) {    /* until a growth is under way */
            map_get_stats(h.map, &st);
            if (st.growing)
                break;
            run_phase(&h, &churn, false);
        }
        if (seed & 32) {
            iter_begin(&h, &h.iters[0]);
            iter_advance(&h, &h.iters[0], 1 + rnd_below(&h, 50));
        }
        test_alloc_fail_nth(&h.alloc, 1 + rnd_below(&h, 3), 1);
        churn.max_ops = 300;
        run_phase(&h, &churn, true);
        test_alloc_heal(&h.alloc);
        churn.max_ops = 2000;
        run_phase(&h, &churn, false);
        harness_finish(&h);
    }
    print_coverage(__func__, &cov);
    expect_reached(cov.nomem > 0, "MAP_ERR_NOMEM during a growth", 16);
}

/* map_new with each of its allocations failing: MAP_ERR_NOMEM, no leak. */
static void test_map_new_nomem(void **state)
{
    static const size_t hints[] = { 0, 8, 100, 5000, 200000 };
    (void)state;
    for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++) {
        for (size_t nth = 1; nth < 16; nth++) {
            test_alloc_t a = { 0 };
            map_allocator_t al = test_allocator(&a);
            map_t *m = NULL;
            test_alloc_fail_nth(&a, nth, (int)(nth & 1));
            map_err_t rc = map_new(8, 8, hints[i], &al, &m);
            if (rc == MAP_OK) {
                assert_non_null(m);
                map_free(m);
            } else {
                assert_int_equal(rc, MAP_ERR_NOMEM);
            }
            assert_int_equal(a.live_blocks, 0);
        }
    }
    test_alloc_t a = { 0 };
    map_allocator_t al = test_allocator(&a);
    map_t *m = NULL;
    assert_int_equal(map_new(0, 8, 0, &al, &m), MAP_ERR_INVALID);
    assert_int_equal(map_new(MAP_MAX_KEY_SIZE + 1, 8, 0, &al, &m), MAP_ERR_INVALID);
    assert_int_equal(map_new(8, MAP_MAX_VALUE_SIZE + 1, 0, &al, &m), MAP_ERR_INVALID);
    assert_int_equal(a.live_blocks, 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    read_config(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_new_nomem),
        cmocka_unit_test(test_fast64_random),
        cmocka_unit_test(test_generic8_random),
        cmocka_unit_test(test_mixed_paths8_random),
        cmocka_unit_test(test_generic_sizes_random),
        cmocka_unit_test(test_churn_same_size_growth),
        cmocka_unit_test(test_iterate_while_mutating),
        cmocka_unit_test(test_two_iterators_and_clear),
        cmocka_unit_test(test_alloc_fault_nth),
        cmocka_unit_test(test_alloc_fault_all_after),
        cmocka_unit_test(test_alloc_fault_during_growth),
        cmocka_unit_test(test_grow_shrink_100k),
        cmocka_unit_test(test_grow_past_b16),
    };
    printf("map_differential: base seed %s%" PRIu64 ", scale %g, check budget %zu"
           " cells/op\n", cfg.seed_set ? "" : "default, salted per test: ",
           cfg.seed_set ? cfg.seed : DEFAULT_SEED, cfg.scale, cfg.check_budget);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
