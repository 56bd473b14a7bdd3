/*
 * stacks.c - the call stacks of sampled allocations, interned so that each
 * distinct stack is stored once, never freed, with its sampled totals
 * (unwind.c captures them).
 *
 * Interning. A stack is hashed (its frames, mixed) and looked up in one of
 * STRIPES tables chosen by the hash, each a map/ map from hash to stack id
 * under its own mutex, so threads sampling at rate 1 rarely contend. A hit
 * is confirmed by comparing the frames; two different stacks with the same
 * 64-bit hash (never seen, but possible) are told apart by probing hash+1,
 * hash+2, ... (PROBES at most). Records live in a two-level directory
 * indexed by id that readers (profiles, alerts) walk without a lock: a
 * record is fully written before its pointer is published (release), and
 * ids are handed out by an atomic counter, so a reader may meet an id
 * whose pointer is not yet published and simply skips it.
 *
 * Each thread also keeps its recent stacks (RECENT slots in TLS, see
 * agent_stack_intern): a stack it interned before is found there without
 * a lock.
 *
 * Record 0 is the empty stack: samples whose stack could not be stored
 * (table full, no memory) are counted there rather than lost.
 *
 * Lock order: a stripe lock, then the arena's (records and table growth
 * allocate under it; the whole order is in lock.c); the capture's
 * unwind_lock (unwind.c) is taken with no other (capture runs before
 * interning). fork: prefork takes every stripe in index order, each
 * waiting at most until the fork's deadline (agent/lock.c); then fork.c
 * tries unwind_lock (unwind.c). A stripe it could not take may be
 * mid-update in the child, so the child interns no stack again (lost:
 * every sample gets record 0, and fork.c notes it in the child's summary);
 * the records themselves stay readable (the directory is published
 * lock-free). agent_stacks_bytes takes each stripe with agent_lock: at
 * exit a busy stripe is skipped and noted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent/live.h"
#include "agent/lock.h"
#include "agent/stacks.h"
#include "map/map.h"

#define STRIPES 16                       /* interning tables (power of two) */
#define CHUNK_BITS 12                    /* ids per directory chunk */
#define CHUNK_IDS (1u << CHUNK_BITS)
#define CHUNKS (AGENT_STACKS_MAX / CHUNK_IDS)
#define PROBES 8                         /* hash collisions tolerated per stack */

typedef struct stripe_s {
    pthread_mutex_t lock;
    map_t *index;                        /* hash -> id */
} __attribute__((aligned(64))) stripe_t;

static stripe_t stripes[STRIPES];
static agent_stack_t **directory[CHUNKS];/* id -> record, by chunk (atomic) */
static uint32_t next_id;                 /* ids handed out (atomic) */
static size_t table_bytes;               /* records and chunks (atomic) */
static map_allocator_t allocator;
static int ready;                        /* init succeeded */
static bool lost;                        /* child of a fork that missed a stripe */
static AGENT_TLS bool prefork_took[STRIPES]; /* stripes this thread's prepare handler holds */

/* ------------------------------------------------------------------------ */
/* Records                                                                  */
/* ------------------------------------------------------------------------ */

#ifdef HEAPWATCH_TEST
uint32_t agent_stacks_test_max = AGENT_STACKS_MAX;
uint64_t (*agent_stacks_test_hash)(const uint64_t *pcs, size_t depth);
#define STACKS_LIMIT agent_stacks_test_max  /* see stacks.h */
#else
#define STACKS_LIMIT AGENT_STACKS_MAX       /* ids handed out at most */
#endif

/* Each share, and what interning reads, on lines of their own (see
 * agent_stack_t; new_record aligns the record). */
_Static_assert(sizeof(agent_stack_share_t) == 64 && offsetof(agent_stack_t, hash) % 64 == 0,
               "a stack's totals share no cache line with its frames, nor each other");
#define RECORD_ALIGN 64

static uint64_t hash_frames(const uint64_t *pcs, size_t depth)
{
#ifdef HEAPWATCH_TEST
    if (agent_stacks_test_hash) return agent_stacks_test_hash(pcs, depth);
#endif
    /* Four lanes, frames i mod 4: each step is a multiply and a shift
     * that wait for the lane's previous step, so one lane over a 40-frame
     * stack was a chain of 40 multiplies; four make it 10, which the
     * out-of-order core overlaps. */
    uint64_t a = 0x84222325cbf29ce4ull ^ depth, b = 0x9e3779b97f4a7c15ull;
    uint64_t c = 0xbf58476d1ce4e5b9ull, d = 0x94d049bb133111ebull;
    size_t i = 0;
    for (; i + 4 <= depth; i += 4) {
        a = (a ^ pcs[i]) * 0x100000001b3ull;
        b = (b ^ pcs[i + 1]) * 0xff51afd7ed558ccdull;
        c = (c ^ pcs[i + 2]) * 0xc4ceb9fe1a85ec53ull;
        d = (d ^ pcs[i + 3]) * 0xd6e8feb86659fd93ull;
        a ^= a >> 29;
        b ^= b >> 31;
        c ^= c >> 30;
        d ^= d >> 27;
    }
    for (; i < depth; i++) {
        a = (a ^ pcs[i]) * 0x100000001b3ull;
        a ^= a >> 29;
    }
    uint64_t h = a ^ (b * 0xc4ceb9fe1a85ec53ull) ^ (c * 0xff51afd7ed558ccdull) ^ (d * 0x9e3779b97f4a7c15ull);
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

agent_stack_t *agent_stack_get(uint32_t id)
{
    if (id >= AGENT_STACKS_MAX) return NULL;
    agent_stack_t **chunk = __atomic_load_n(&directory[id >> CHUNK_BITS], __ATOMIC_ACQUIRE);
    if (!chunk) return NULL;
    return __atomic_load_n(&chunk[id & (CHUNK_IDS - 1)], __ATOMIC_ACQUIRE);
}

uint32_t agent_stacks_count(void)
{
    uint32_t n = __atomic_load_n(&next_id, __ATOMIC_ACQUIRE);
    return n < STACKS_LIMIT ? n : STACKS_LIMIT;
}

uint32_t agent_stacks_distinct(void)
{
    uint32_t n = agent_stacks_count();
    return n > 0 ? n - 1 : 0;
}

size_t agent_stacks_bytes(void)
{
    size_t n = __atomic_load_n(&table_bytes, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < STRIPES; i++) {
        map_stats_t st;
        if (__atomic_load_n(&lost, __ATOMIC_RELAXED)) break;
        if (!agent_lock_ranked_note(&stripes[i].lock, AGENT_RANK_STRIPE, "stack table size: a stripe was busy")) continue;
        if (stripes[i].index) {
            map_get_stats(stripes[i].index, &st);
            n += st.bytes;
        }
        agent_unlock_ranked(&stripes[i].lock, AGENT_RANK_STRIPE);
    }
    return n;
}

/* publish: stores record r under id, creating its directory chunk.
 * @return false when the chunk cannot be allocated. Called with a stripe
 * lock held; chunk creation races between stripes are settled by CAS. */
static bool publish(uint32_t id, agent_stack_t *r)
{
    agent_stack_t ***slot = &directory[id >> CHUNK_BITS];
    agent_stack_t **chunk = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!chunk) {
        agent_stack_t **fresh = allocator.alloc(allocator.ctx, CHUNK_IDS * sizeof *fresh);
        if (!fresh) return false;
        if (__atomic_compare_exchange_n(slot, &chunk, fresh, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            chunk = fresh;
            __atomic_add_fetch(&table_bytes, CHUNK_IDS * sizeof *fresh, __ATOMIC_RELAXED);
        } else {
            allocator.free(allocator.ctx, fresh);   /* another stripe made it */
        }
    }
    __atomic_store_n(&chunk[id & (CHUNK_IDS - 1)], r, __ATOMIC_RELEASE);
    return true;
}

/* new_record: a record for the stack with this hash, published under a
 * fresh id, or NULL. */
static agent_stack_t *new_record(const uint64_t *pcs, size_t depth, uint64_t hash)
{
    uint32_t id = __atomic_fetch_add(&next_id, 1, __ATOMIC_ACQ_REL);
    if (id >= STACKS_LIMIT) {
        __atomic_store_n(&next_id, STACKS_LIMIT, __ATOMIC_RELAXED);
        return NULL;
    }
    /* The arena aligns to 16: ask for the slack to start on a line. */
    size_t bytes = offsetof(agent_stack_t, pcs) + depth * sizeof pcs[0] + RECORD_ALIGN - 16;
    void *block = allocator.alloc(allocator.ctx, bytes);
    if (!block) return NULL;   /* the id stays unpublished: readers skip it */
    agent_stack_t *r = (agent_stack_t *)(((uintptr_t)block + RECORD_ALIGN - 1) & ~(uintptr_t)(RECORD_ALIGN - 1));
    r->hash = hash;
    r->id = id;
    r->depth = (uint32_t)depth;
    if (depth) memcpy(r->pcs, pcs, depth * sizeof pcs[0]);
    if (!publish(id, r)) {
        allocator.free(allocator.ctx, block);
        return NULL;
    }
    __atomic_add_fetch(&table_bytes, bytes, __ATOMIC_RELAXED);
    return r;
}

/* lookup_or_add: in stripe st (locked), the record of this stack. */
static agent_stack_t *lookup_or_add(stripe_t *st, const uint64_t *pcs, size_t depth, uint64_t hash)
{
    AGENT_ASSERT_HELD(AGENT_RANK_STRIPE);
    for (unsigned probe = 0; probe < PROBES; probe++) {
        uint64_t key = hash + probe;
        void *slot;
        bool inserted;
        if (map_assign64(st->index, key, &slot, &inserted) != MAP_OK) return NULL;
        if (!inserted) {
            uint32_t id;
            memcpy(&id, slot, sizeof id);
            agent_stack_t *r = agent_stack_get(id);
            if (r && r->depth == depth && memcmp(r->pcs, pcs, depth * sizeof pcs[0]) == 0)
                return r;
            continue;   /* a different stack with this hash: probe on */
        }
        agent_stack_t *r = new_record(pcs, depth, hash);
        if (!r) {
            map_delete64(st->index, key, NULL);
            return NULL;
        }
        memcpy(slot, &r->id, sizeof r->id);
        return r;
    }
    return NULL;
}

/* A thread's recent stacks: frames hash -> record, direct-mapped, in TLS
 * (RECENT slots, 2 KiB per thread). A record's frames never change once
 * published and a record is never freed, so a thread that finds its stack
 * here (same depth, same frames) takes it without the stripe's lock: the
 * stripes are taken only for stacks new to the thread. Threads that
 * sample the same stacks at rate 1 no longer meet on one stripe's mutex
 * (two threads of one allocation site: a futex round trip per sample). */
#define RECENT_BITS 8
#define RECENT (1u << RECENT_BITS)
static AGENT_TLS agent_stack_t *recent[RECENT];

static bool same_frames(const agent_stack_t *r, const uint64_t *pcs, size_t depth)
{
    return r->depth == depth && memcmp(r->pcs, pcs, depth * sizeof *pcs) == 0;
}

agent_stack_t *agent_stack_intern(const uint64_t *pcs, size_t depth)
{
    /* No frame is the empty stack: record 0, never a second empty record. */
    if (!ready || depth == 0 || __atomic_load_n(&lost, __ATOMIC_RELAXED)) return agent_stack_get(0);
    uint64_t hash = hash_frames(pcs, depth);
    agent_stack_t **mine = &recent[hash & (RECENT - 1)];
    agent_stack_t *r = *mine;
    if (r && same_frames(r, pcs, depth)) return r;
    stripe_t *st = &stripes[hash >> 60 & (STRIPES - 1)];
    agent_lock_ranked(&st->lock, AGENT_RANK_STRIPE);
    r = lookup_or_add(st, pcs, depth, hash);
    agent_unlock_ranked(&st->lock, AGENT_RANK_STRIPE);
    if (!r) return agent_stack_get(0);
    *mine = r;
    return r;
}

/* ------------------------------------------------------------------------ */
/* Start-up and fork                                                        */
/* ------------------------------------------------------------------------ */

int agent_stacks_init(void)
{
    allocator = map_arena_allocator();
    for (unsigned i = 0; i < STRIPES; i++) pthread_mutex_init(&stripes[i].lock, NULL);
    /* Record 0: the empty stack. */
    if (!new_record(NULL, 0, 0)) return -ENOMEM;
    /* No hint: a stripe's buckets are made at its first stack (map.c), so
     * that a process that never samples does not touch them (16 arrays of
     * 16 buckets were 7 pages, 20 us of a short process's start). */
    for (unsigned i = 0; i < STRIPES; i++)
        if (map_new(8, sizeof(uint32_t), 0, &allocator, &stripes[i].index) != MAP_OK) return -ENOMEM;
    ready = 1;
    return 0;
}

bool agent_stacks_prefork(uint64_t deadline_ns)
{
    bool all = true;
    for (unsigned i = 0; i < STRIPES; i++) {
        prefork_took[i] = agent_lock_ranked_until(&stripes[i].lock, AGENT_RANK_STRIPE, deadline_ns);
        all &= prefork_took[i];
    }
    return all;
}

void agent_stacks_postfork_parent(void)
{
    for (unsigned i = STRIPES; i-- > 0;) {
        if (prefork_took[i]) agent_unlock_ranked(&stripes[i].lock, AGENT_RANK_STRIPE);
        prefork_took[i] = false;
    }
}

bool agent_stacks_postfork_child(void)
{
    for (unsigned i = 0; i < STRIPES; i++) {
        pthread_mutex_init(&stripes[i].lock, NULL);
        if (!prefork_took[i]) __atomic_store_n(&lost, true, __ATOMIC_RELAXED);
        prefork_took[i] = false;
    }
    return !__atomic_load_n(&lost, __ATOMIC_RELAXED);
}
