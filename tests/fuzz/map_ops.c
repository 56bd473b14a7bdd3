/*
 * map_ops.c - libFuzzer target for map/: the input is a program of map
 * operations, run on a map_t and on a direct-address reference model.
 *
 * What it checks (abort() with a message on the first mismatch): results of
 * insert/assign/lookup/delete (codes, `inserted`, value bytes), map_count,
 * map_debug_check (after every op while the table is small, every few ops
 * when large, and at the end), Go's iterator guarantees for two iterators
 * live across writes, growth and clear (see map.h: nothing produced twice
 * unless deleted and re-inserted in between, everything live for the whole
 * iteration produced, nothing produced that is not live right then, values
 * current), MAP_ERR_NOMEM semantics under injected allocation failures
 * (key absent, map valid, growth failures benign), and that map_free
 * returns every block.
 *
 * Input format:
 *   byte 0  bits 0-2 key size   {8, 8, 4, 12, 16, 33, 1, 128}
 *           bit  3   8-byte keys use the map_*64 fast path
 *           bits 4-6 value size {8, 0, 24, 32, 40, 128, 3, 16}
 *           bit  7   key space of 512 ids for single ops (else 24: churn
 *                    in the same few buckets)
 *   byte 1  size hint: b & 0x7f, times 64 if b & 0x80
 *   then    opcode bytes (low nibble; see op_t) each followed by one
 *           operand byte; missing bytes read as 0.
 * Key id -> key bytes: the id little-endian, then bytes derived from it.
 * Work is bounded: at most OPS_PER_BYTE * size + OPS_BASE map operations
 * and MAX_LIVE live entries per input.
 *
 * Replaying: build/asan/fuzz/map_ops FILE... (or a corpus directory), or
 * build/fuzz/map_ops FILE with libFuzzer. map.c draws its hash seed and
 * iteration start at random, so a layout-dependent failure may need a few
 * runs (e.g. build/fuzz/map_ops -runs=100 FILE).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map/map_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ID_MAX 4096             /* key ids are 0..ID_MAX-1 */
#define MAX_LIVE 3000           /* bulk inserts stop at this many entries */
#define OPS_PER_BYTE 16         /* map operations allowed per input byte */
#define OPS_BASE 1024           /* ... plus this many */
#define CHECK_BUDGET 32         /* debug-check cost (cells x chain) per write */
#define NITERS 2

#define FUZZ_CHECK(cond, ...)                                              \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "map_ops: %s:%d: check failed: %s: ",          \
                    __FILE__, __LINE__, #cond);                            \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
            abort();                                                       \
        }                                                                  \
    } while (0)

/* ------------------------------------------------------------------------ */
/* A counting allocator that can fail the Nth call, or all from the Nth on  */
/* ------------------------------------------------------------------------ */

typedef struct fuzz_alloc_s {
    size_t live_blocks;     /* blocks not yet freed */
    size_t calls;           /* alloc calls so far, failed ones included */
    size_t fail_at;         /* 1-based call number to fail; 0: never */
    bool fail_after;        /* ...and every call after it */
} fuzz_alloc_t;

static void *fuzz_alloc(void *ctx, size_t size)
{
    fuzz_alloc_t *a = ctx;
    a->calls++;
    if (a->fail_at && (a->calls == a->fail_at ||
                       (a->fail_after && a->calls > a->fail_at)))
        return NULL;
    void *p = calloc(1, size);
    if (p)
        a->live_blocks++;
    return p;
}

static void fuzz_free(void *ctx, void *ptr)
{
    fuzz_alloc_t *a = ctx;
    FUZZ_CHECK(a->live_blocks > 0, "free of a block never allocated");
    a->live_blocks--;
    free(ptr);
}

/* failed_since: did an allocation call after number `calls` fail? */
static bool failed_since(const fuzz_alloc_t *a, size_t calls)
{
    if (!a->fail_at || a->calls <= calls)
        return false;
    if (a->fail_after)
        return a->calls >= a->fail_at;
    return a->fail_at > calls && a->fail_at <= a->calls;
}

/* ------------------------------------------------------------------------ */
/* State: the map, the model, the iterators                                 */
/* ------------------------------------------------------------------------ */

enum { LIVE_WHOLE = 1, PRODUCED = 2 };  /* iterator flags per key id */

typedef struct fiter_s {
    bool active;
    map_iter_t it;
    uint8_t flags[ID_MAX];  /* LIVE_WHOLE | PRODUCED per id */
} fiter_t;

typedef struct fuzz_state_s {
    size_t ks, vs;          /* key and value sizes */
    bool fast;              /* use the map_*64 entry points */
    unsigned space;         /* ids of single-key ops: 0..space-1 */
    unsigned id_max;        /* ids used at all (256 for 1-byte keys) */
    map_t *map;
    fuzz_alloc_t alloc;
    map_allocator_t allocator;
    size_t budget;          /* map operations left */
    size_t count;           /* model: live entries */
    bool present[ID_MAX];   /* model: id is in the map */
    uint16_t live_ids[ID_MAX]; /* model: the count live ids, in any order */
    uint16_t live_pos[ID_MAX]; /* model: index of a live id in live_ids */
    uint32_t version[ID_MAX]; /* model: value generation of id */
    uint32_t next_version;
    unsigned fresh;         /* next id for bulk inserts */
    unsigned cursor;        /* picks the victims of bulk deletes */
    size_t ops;             /* opcodes run */
    size_t tick;            /* after_op calls (debug-check cadence) */
    size_t grow_failures;   /* last seen stats.grow_failures */
    bool was_growing;       /* stats.growing after the previous op */
    struct {                /* what the input reached (MAP_OPS_TRACE) */
        unsigned growths, same_size, nomem, iters_done;
    } seen;
    fiter_t iters[NITERS];
} fuzz_state_t;

static const size_t key_sizes[8] = { 8, 8, 4, 12, 16, 33, 1, 128 };
static const size_t value_sizes[8] = { 8, 0, 24, 32, 40, 128, 3, 16 };

static void make_key(const fuzz_state_t *s, unsigned id, unsigned char *key)
{
    uint64_t v = id;
    memcpy(key, &v, s->ks < 8 ? s->ks : 8);
    for (size_t i = 8; i < s->ks; i++)
        key[i] = (unsigned char)(id * 31u + i);
}

/* key_id: the id a key from the map encodes; traps on a corrupt key. */
static unsigned key_id(const fuzz_state_t *s, const unsigned char *key)
{
    uint64_t v = 0;
    unsigned char expect[MAP_MAX_KEY_SIZE];
    memcpy(&v, key, s->ks < 8 ? s->ks : 8);
    FUZZ_CHECK(v < s->id_max, "the map holds a key (id %llu) never inserted",
               (unsigned long long)v);
    make_key(s, (unsigned)v, expect);
    FUZZ_CHECK(memcmp(expect, key, s->ks) == 0, "corrupt key bytes for id %u",
               (unsigned)v);
    return (unsigned)v;
}

static void make_value(const fuzz_state_t *s, unsigned id, uint32_t version,
                       unsigned char *value)
{
    uint64_t x = ((uint64_t)version << 32 | id) * 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < s->vs; i++)
        value[i] = (unsigned char)((x >> (8 * (i % 8))) + i);
}

/* value_ok: p holds the model's current value of id. */
static bool value_ok(const fuzz_state_t *s, unsigned id, const void *p)
{
    unsigned char expect[MAP_MAX_VALUE_SIZE];
    make_value(s, id, s->version[id], expect);
    return p && memcmp(p, expect, s->vs) == 0;
}

static bool spend(fuzz_state_t *s)
{
    if (s->budget == 0)
        return false;
    s->budget--;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Map calls through the chosen path                                        */
/* ------------------------------------------------------------------------ */

static uint64_t key64(const unsigned char *key)
{
    uint64_t k;
    memcpy(&k, key, 8);
    return k;
}

static void *m_lookup(const fuzz_state_t *s, const unsigned char *key)
{
    return s->fast ? map_lookup64(s->map, key64(key)) : map_lookup(s->map, key);
}

static map_err_t m_assign(fuzz_state_t *s, const unsigned char *key, void **vp,
                          bool *inserted)
{
    return s->fast ? map_assign64(s->map, key64(key), vp, inserted)
                   : map_assign(s->map, key, vp, inserted);
}

static map_err_t m_insert(fuzz_state_t *s, const unsigned char *key, const void *v)
{
    return s->fast ? map_insert64(s->map, key64(key), v) : map_insert(s->map, key, v);
}

static bool m_delete(fuzz_state_t *s, const unsigned char *key, void *out)
{
    return s->fast ? map_delete64(s->map, key64(key), out) : map_delete(s->map, key, out);
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                   */
/* ------------------------------------------------------------------------ */

static void debug_check(const fuzz_state_t *s)
{
#ifdef MAP_DEBUG
    char why[256] = "";
    FUZZ_CHECK(map_debug_check(s->map, why, sizeof why) == 0, "%s", why);
#else
    (void)s;
#endif
}

/* after_op: count, stats, and map_debug_check when due or forced. */
static void after_op(fuzz_state_t *s, size_t calls_before, bool force)
{
    map_stats_t st;
    FUZZ_CHECK(map_count(s->map) == s->count, "map_count %zu, model %zu",
               map_count(s->map), s->count);
    map_get_stats(s->map, &st);
    FUZZ_CHECK(st.count == s->count, "stats.count %zu", st.count);
    unsigned live = s->iters[0].active + s->iters[1].active;
    FUZZ_CHECK(st.iterators == live, "stats.iterators %u, live %u", st.iterators, live);
    FUZZ_CHECK(live > 0 || st.retired_bytes == 0, "retired_bytes %zu", st.retired_bytes);
    if (st.grow_failures != s->grow_failures) {
        FUZZ_CHECK(st.grow_failures > s->grow_failures, "grow_failures went down");
        FUZZ_CHECK(failed_since(&s->alloc, calls_before),
                   "grow failure without a failed allocation");
        FUZZ_CHECK(st.last_error == MAP_ERR_NOMEM, "last_error %d", (int)st.last_error);
        s->grow_failures = st.grow_failures;
        force = s->grow_failures < 64;  /* under persistent OOM, keep to the cadence */
    }
    if (st.growing && !s->was_growing) {
        s->seen.growths++;
        s->seen.same_size += st.same_size_grow;
    }
    s->was_growing = st.growing;
    /* map_debug_check walks every cell and looks every key up: its cost
     * grows with cells times the average chain length (long chains when
     * growth keeps failing). */
    size_t cells = (st.buckets + st.overflow_buckets + st.noldbuckets) * 8;
    size_t cost = cells + cells * st.overflow_buckets / st.buckets;
    if (force || ++s->tick % (1 + cost / CHECK_BUDGET) == 0)
        debug_check(s);
}

static void iter_forget(fuzz_state_t *s, unsigned id)
{
    for (int i = 0; i < NITERS; i++)
        s->iters[i].flags[id] = 0;
}

/* iter_produced: an iterator produced (key, value). */
static void iter_produced(fuzz_state_t *s, fiter_t *fi, const void *key,
                          const void *value)
{
    FUZZ_CHECK(key != NULL, "map_iter_next: NULL key");
    unsigned id = key_id(s, key);
    FUZZ_CHECK(s->present[id], "iterator produced id %u, which is not in the map", id);
    FUZZ_CHECK(s->vs == 0 || value_ok(s, id, value), "iterator: stale value for id %u", id);
    FUZZ_CHECK(!(fi->flags[id] & PRODUCED), "iterator produced id %u twice", id);
    fi->flags[id] |= PRODUCED;
}

static void iter_begin(fuzz_state_t *s, fiter_t *fi)
{
    map_iter_init(s->map, &fi->it);
    fi->active = true;
    for (unsigned id = 0; id < s->id_max; id++)
        fi->flags[id] = s->present[id] ? LIVE_WHOLE : 0;
}

static void iter_end(fiter_t *fi)
{
    map_iter_done(&fi->it);
    fi->active = false;
}

/* iter_step: up to n steps; at the end checks completeness and closes. */
static void iter_step(fuzz_state_t *s, fiter_t *fi, unsigned n)
{
    for (unsigned k = 0; k < n && fi->active && spend(s); k++) {
        const void *key = NULL;
        void *value = NULL;
        if (map_iter_next(&fi->it, &key, &value)) {
            iter_produced(s, fi, key, value);
            continue;
        }
        for (unsigned id = 0; id < s->id_max; id++)
            FUZZ_CHECK(fi->flags[id] != LIVE_WHOLE,
                       "iteration ended without producing id %u, live throughout", id);
        FUZZ_CHECK(!map_iter_next(&fi->it, &key, &value), "entry after the end");
        iter_end(fi);
        s->seen.iters_done++;
    }
}

/* ------------------------------------------------------------------------ */
/* Operations                                                               */
/* ------------------------------------------------------------------------ */

/* nomem: a new key could not be stored: it must be absent. */
static void nomem(fuzz_state_t *s, unsigned id, const unsigned char *key, size_t calls)
{
    FUZZ_CHECK(!s->present[id], "MAP_ERR_NOMEM for existing id %u", id);
    FUZZ_CHECK(failed_since(&s->alloc, calls), "MAP_ERR_NOMEM with no failed allocation");
    FUZZ_CHECK(m_lookup(s, key) == NULL, "id %u present after MAP_ERR_NOMEM", id);
    s->seen.nomem++;
}

/* model_add, model_remove: keep present[], live_ids[] and count in step. */
static void model_add(fuzz_state_t *s, unsigned id)
{
    if (s->present[id])
        return;
    s->present[id] = true;
    s->live_pos[id] = (uint16_t)s->count;
    s->live_ids[s->count++] = (uint16_t)id;
}

static void model_remove(fuzz_state_t *s, unsigned id)
{
    unsigned last = s->live_ids[--s->count];
    s->live_ids[s->live_pos[id]] = (uint16_t)last;
    s->live_pos[last] = s->live_pos[id];
    s->present[id] = false;
}

static void stored(fuzz_state_t *s, unsigned id, const unsigned char *key)
{
    model_add(s, id);
    FUZZ_CHECK(value_ok(s, id, m_lookup(s, key)), "lookup after store of id %u", id);
}

static void op_insert(fuzz_state_t *s, unsigned id, bool via_assign)
{
    unsigned char key[MAP_MAX_KEY_SIZE], value[MAP_MAX_VALUE_SIZE];
    size_t calls = s->alloc.calls;
    uint32_t version = ++s->next_version;
    map_err_t rc;
    if (!spend(s))
        return;
    make_key(s, id, key);
    make_value(s, id, version, value);
    if (via_assign) {
        void *vp = NULL;
        bool inserted = s->present[id];
        rc = m_assign(s, key, &vp, &inserted);
        if (rc == MAP_OK) {
            static const unsigned char zero[MAP_MAX_VALUE_SIZE];
            FUZZ_CHECK(vp != NULL, "assign: NULL value pointer");
            FUZZ_CHECK(inserted == !s->present[id], "assign: inserted=%d", inserted);
            FUZZ_CHECK(inserted ? memcmp(vp, zero, s->vs) == 0 : value_ok(s, id, vp),
                       "assign: wrong previous value for id %u", id);
            memcpy(vp, value, s->vs);
        }
    } else {
        rc = m_insert(s, key, value);
    }
    if (rc == MAP_ERR_NOMEM) {
        nomem(s, id, key, calls);
    } else {
        FUZZ_CHECK(rc == MAP_OK, "insert: %s", map_strerror(rc));
        s->version[id] = version;
        stored(s, id, key);
    }
    after_op(s, calls, false);
}

static void op_delete(fuzz_state_t *s, unsigned id, bool want_value)
{
    unsigned char key[MAP_MAX_KEY_SIZE], out[MAP_MAX_VALUE_SIZE];
    size_t calls = s->alloc.calls;
    if (!spend(s))
        return;
    make_key(s, id, key);
    bool deleted = m_delete(s, key, want_value ? out : NULL);
    FUZZ_CHECK(deleted == s->present[id], "delete of id %u returned %d", id, deleted);
    if (deleted && want_value)
        FUZZ_CHECK(value_ok(s, id, out), "delete: wrong value out for id %u", id);
    if (deleted) {
        model_remove(s, id);
        iter_forget(s, id);
    }
    FUZZ_CHECK(m_lookup(s, key) == NULL, "id %u found after delete", id);
    after_op(s, calls, false);
}

static void op_lookup(fuzz_state_t *s, unsigned id)
{
    unsigned char key[MAP_MAX_KEY_SIZE];
    if (!spend(s))
        return;
    make_key(s, id, key);
    void *p = m_lookup(s, key);
    if (s->present[id])
        FUZZ_CHECK(value_ok(s, id, p), "lookup of id %u: %s", id, p ? "bad value" : "missing");
    else
        FUZZ_CHECK(p == NULL, "lookup of absent id %u found it", id);
}

static void op_clear(fuzz_state_t *s)
{
    if (!spend(s))
        return;
    map_clear(s->map);
    while (s->count > 0)
        model_remove(s, s->live_ids[s->count - 1]);
    for (int i = 0; i < NITERS; i++)
        memset(s->iters[i].flags, 0, sizeof s->iters[i].flags);
    after_op(s, s->alloc.calls, true);
}

/* next_fresh: an id outside the single-op space, cycling. */
static unsigned next_fresh(fuzz_state_t *s)
{
    return s->space + s->fresh++ % (s->id_max - s->space);
}

/* op_bulk: n inserts of fresh ids (kind 0), n deletes of live ids (kind 1),
 * or n of both (kind 2: delete then insert, churn at a constant size). */
static void op_bulk(fuzz_state_t *s, int kind, unsigned n)
{
    for (unsigned k = 0; k < n && s->budget > 0; k++) {
        if (kind != 0 && s->count > 0)
            op_delete(s, s->live_ids[s->cursor++ % s->count], false);
        else if (kind == 1)
            break;
        if (kind != 1 && s->count < MAX_LIVE)
            op_insert(s, next_fresh(s), k & 1);
    }
}

/* verify_all: every live id and every id of the single-op space agree
 * with the model; a full iteration produces exactly the live ids (which
 * also rules out entries the model does not have). */
static void verify_all(fuzz_state_t *s)
{
    unsigned char key[MAP_MAX_KEY_SIZE];
    for (size_t i = 0; i < s->count + s->space; i++) {
        unsigned id = i < s->count ? s->live_ids[i] : (unsigned)(i - s->count);
        make_key(s, id, key);
        void *p = m_lookup(s, key);
        FUZZ_CHECK(s->present[id] ? value_ok(s, id, p) : p == NULL,
                   "verify: id %u disagrees", id);
    }
    static fiter_t full;        /* 4 KiB of flags: keep it off the stack */
    size_t produced = 0;
    const void *k;
    void *v;
    iter_begin(s, &full);
    while (map_iter_next(&full.it, &k, &v)) {
        iter_produced(s, &full, k, v);
        produced++;
    }
    iter_end(&full);
    FUZZ_CHECK(produced == s->count, "full iteration produced %zu of %zu", produced,
               s->count);
    debug_check(s);
}

typedef enum {
    OP_INSERT, OP_ASSIGN, OP_DELETE, OP_LOOKUP, OP_DELETE_OUT, OP_ITER_START,
    OP_ITER_STEP, OP_ITER_END, OP_FAIL, OP_HEAL, OP_BULK_INSERT, OP_BULK_DELETE,
    OP_CHURN, OP_CLEAR, OP_VERIFY, OP_TOGGLE_PATH
} op_t;

static void run_op(fuzz_state_t *s, op_t op, uint8_t arg)
{
    unsigned id = arg % s->space;
    fiter_t *fi = &s->iters[arg & 1];
    switch (op) {
    case OP_INSERT: op_insert(s, id, false); break;
    case OP_ASSIGN: op_insert(s, id, true); break;
    case OP_DELETE: op_delete(s, id, false); break;
    case OP_LOOKUP: op_lookup(s, id); break;
    case OP_DELETE_OUT: op_delete(s, id, true); break;
    case OP_ITER_START:
        if (!fi->active)
            iter_begin(s, fi);
        break;
    case OP_ITER_STEP: iter_step(s, fi, 1 + (arg >> 1)); break;
    case OP_ITER_END:
        if (fi->active)
            iter_end(fi);
        break;
    case OP_FAIL:
        s->alloc.fail_at = s->alloc.calls + 1 + (arg & 7);
        s->alloc.fail_after = (arg & 8) != 0;
        break;
    case OP_HEAL: s->alloc.fail_at = 0; break;
    case OP_BULK_INSERT: op_bulk(s, 0, 1 + 4u * arg); break;
    case OP_BULK_DELETE: op_bulk(s, 1, 1 + 4u * arg); break;
    case OP_CHURN: op_bulk(s, 2, 1 + 4u * arg); break;
    case OP_CLEAR: op_clear(s); break;
    case OP_VERIFY:
        if (s->budget > 2 * (s->count + s->space)) {
            s->budget -= 2 * (s->count + s->space);
            verify_all(s);
        }
        break;
    case OP_TOGGLE_PATH: s->fast = !s->fast && s->ks == 8; break;
    }
}

/* ------------------------------------------------------------------------ */
/* Entry point                                                              */
/* ------------------------------------------------------------------------ */

static void setup(fuzz_state_t *s, uint8_t c0, uint8_t c1, size_t size)
{
    memset(s, 0, sizeof *s);
    s->ks = key_sizes[c0 & 7];
    s->fast = (c0 & 8) && s->ks == 8;
    s->vs = value_sizes[(c0 >> 4) & 7];
    s->id_max = s->ks == 1 ? 256 : ID_MAX;
    s->space = (c0 & 0x80) ? 512 : 24;
    if (s->space >= s->id_max)
        s->space = s->id_max / 2;
    s->budget = OPS_PER_BYTE * size + OPS_BASE;
    s->allocator.alloc = fuzz_alloc;
    s->allocator.free = fuzz_free;
    s->allocator.ctx = &s->alloc;
    size_t hint = (size_t)(c1 & 0x7f) * ((c1 & 0x80) ? 64 : 1);
    map_err_t rc = map_new(s->ks, s->vs, hint, &s->allocator, &s->map);
    FUZZ_CHECK(rc == MAP_OK, "map_new: %s", map_strerror(rc));
#ifdef MAP_DEBUG
    /* The same input must run the same way: the map's hash seed and
     * iteration starts from the input too. */
    rc = map_debug_set_seed(s->map, ((uint64_t)c0 << 8 | c1) * 0x9E3779B97F4A7C15ull);
    FUZZ_CHECK(rc == MAP_OK, "map_debug_set_seed: %s", map_strerror(rc));
#endif
}

static void teardown(fuzz_state_t *s)
{
    s->alloc.fail_at = 0;
    for (int i = 0; i < NITERS; i++)
        if (s->iters[i].active)
            iter_end(&s->iters[i]);
    map_stats_t st;
    map_get_stats(s->map, &st);
    FUZZ_CHECK(st.iterators == 0 && st.retired_bytes == 0,
               "after the last map_iter_done: %u iterators, %zu retired bytes",
               st.iterators, st.retired_bytes);
    verify_all(s);
#ifdef MAP_OPS_TRACE
    fprintf(stderr, "map_ops: key %zu value %zu %s, %zu opcodes, %zu ops left, "
            "B %u, max count reached at end %zu, %u growths (%u same-size), "
            "%zu grow failures, %u NOMEM, %u iterations done\n", s->ks, s->vs,
            s->fast ? "fast64" : "generic", s->ops, s->budget, st.B, s->count,
            s->seen.growths, s->seen.same_size, s->grow_failures, s->seen.nomem,
            s->seen.iters_done);
#endif
    map_free(s->map);
    FUZZ_CHECK(s->alloc.live_blocks == 0, "map_free leaked %zu blocks",
               s->alloc.live_blocks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fuzz_state_t state;  /* ~30 KiB: static, reset by setup() */
    fuzz_state_t *s = &state;
    if (size < 1)
        return 0;
    setup(s, data[0], size > 1 ? data[1] : 0, size);
    for (size_t i = 2; i < size && s->budget > 0; i += 2) {
        s->ops++;
        run_op(s, (op_t)(data[i] & 15), i + 1 < size ? data[i + 1] : 0);
    }
    teardown(s);
    return 0;
}
