/*
 * map.h - public API of heapwatch's hash map: a C port of Go's classic
 * (pre-Swiss-table) runtime map.
 *
 * Buckets of 8 slots with a tophash byte per slot, overflow-bucket chains,
 * load factor 6.5, incremental evacuation while the table grows, and
 * iteration that stays correct while entries are inserted and deleted and
 * while the table grows. The design essay is at the top of map/map.c.
 *
 * Keys and values have fixed sizes chosen at creation. 8-byte keys have a
 * fast path (map_lookup64 / map_insert64 / map_delete64): the agent indexes
 * live sampled allocations by pointer.
 *
 * Thread safety: none, like Go's map. A map may be read by several threads
 * at once only while nobody writes it; every write (insert, delete, clear)
 * and every iterator step must be serialised with all other operations by
 * the caller. Builds with -DMAP_DEBUG catch some misuse (a write that
 * overlaps another operation) and abort with a message.
 *
 * Memory: the map never calls malloc. Every byte comes from the allocator
 * given at creation (map_allocator_t); map_arena_allocator() is the
 * mmap-backed one the agent uses.
 *
 * Dependencies: libc only.
 */
#ifndef HEAPWATCH_MAP_H
#define HEAPWATCH_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* map_err_t: the module's error codes. Values are stable. */
typedef enum {
    MAP_OK = 0,
    MAP_ERR_NOMEM = 1,      /* the allocator returned NULL */
    MAP_ERR_INVALID = 2,    /* bad argument (key/value size out of range, NULL) */
} map_err_t;

/* map_strerror: a static, human-readable name for an error code. */
const char *map_strerror(map_err_t err);

/* ------------------------------------------------------------------------ */
/* Allocator hook                                                           */
/* ------------------------------------------------------------------------ */

/*
 * map_allocator_t: where a map (and, in the agent, every other module) gets
 * its memory.
 *   alloc(ctx, size): size > 0 bytes, zero-filled, aligned to at least 16
 *                     bytes; NULL on failure (never aborts).
 *   free(ctx, ptr):   releases a block from alloc; ptr is never NULL.
 * The shape (no size on free) lets the same allocator back protobuf-c,
 * zstd and zlib, whose free callbacks do not pass a size.
 */
typedef struct map_allocator_s {
    void *(*alloc)(void *ctx, size_t size);
    void (*free)(void *ctx, void *ptr);
    void *ctx;
} map_allocator_t;

/*
 * The process-wide mmap-backed arena. Never calls malloc; thread-safe (one
 * internal lock, taken only for small blocks); async-signal-unsafe.
 * Requests up to MAP_ARENA_SMALL_MAX bytes come from power-of-two size
 * classes (16-byte header included) carved out of 1 MiB mmap'd chunks and are recycled through
 * per-class free lists (re-zeroed on reuse); larger blocks are mmap'd one
 * by one, and up to 8 MiB of freed ones (each at most 2 MiB) are kept and
 * reused (re-zeroed) instead of being munmap'd at once.
 */
#define MAP_ARENA_SMALL_MAX (64u * 1024u - 16u)  /* larger requests are mmap'd alone */

/* map_arena_allocator: an allocator handle on the process-wide arena. */
map_allocator_t map_arena_allocator(void);

/* map_arena_huge_allocator: the same arena, but a fresh block of at least
 * 2 MiB + 4 KiB starts on a 2 MiB boundary and its whole 2 MiB pages are advised
 * MADV_HUGEPAGE (transparent huge pages; advice only). For a map's bucket
 * arrays, which a hash touches uniformly: a touched 2 MiB page is resident
 * whole, so it does not suit blocks touched sparsely. */
map_allocator_t map_arena_huge_allocator(void);

/* map_arena_alloc / map_arena_free: direct calls (same semantics as above). */
void *map_arena_alloc(size_t size);
void map_arena_free(void *ptr);

typedef struct map_arena_stats_s {
    size_t mapped_bytes;    /* bytes currently obtained from mmap */
    size_t inuse_bytes;     /* bytes in live blocks, headers included */
    size_t allocs;          /* successful map_arena_alloc calls so far */
    size_t frees;           /* map_arena_free calls so far */
    size_t cached_bytes;    /* freed large mappings kept for reuse (in mapped_bytes) */
} map_arena_stats_t;

/* map_arena_get_stats: a consistent snapshot of the arena's counters. */
void map_arena_get_stats(map_arena_stats_t *out);

/* map_arena_set_nowait: the calling thread's arena calls never wait for
 * the arena lock while on (paths that must never block: exit, fork):
 * allocations still succeed (from a chunk of the thread's own), frees may
 * leak. */
void map_arena_set_nowait(bool on);

/*
 * Fork support: call map_arena_prefork() in a pthread_atfork prepare
 * handler (after taking every lock that may be held while allocating), and
 * the matching postfork function in the parent and the child.
 * map_arena_prefork waits for the lock until deadline_ns (CLOCK_MONOTONIC;
 * 0: one try; UINT64_MAX: no bound) and says whether it has it. The child
 * gets a working arena either way; map_arena_postfork_child returns false
 * when its shared lists were lost (the lock was not taken) and the child
 * allocates from per-thread chunks for good.
 */
bool map_arena_prefork(uint64_t deadline_ns);
void map_arena_postfork_parent(void);
bool map_arena_postfork_child(void);

/* ------------------------------------------------------------------------ */
/* Map                                                                      */
/* ------------------------------------------------------------------------ */

#define MAP_BUCKET_SLOTS 8      /* slots per bucket */
#define MAP_MAX_KEY_SIZE 128    /* largest key, in bytes */
#define MAP_MAX_VALUE_SIZE 128  /* largest value, in bytes */

typedef struct map_s map_t;

/*
 * map_new: creates an empty map for keys of key_size bytes (1..128) and
 * values of value_size bytes (0..128), sized so that `hint` entries fit
 * without growing. Keys are compared bytewise (memcmp) and hashed bytewise.
 * The allocator is copied; it must outlive the map.
 * @return MAP_OK and *out set, MAP_ERR_INVALID, or MAP_ERR_NOMEM.
 */
map_err_t map_new(size_t key_size, size_t value_size, size_t hint,
                  const map_allocator_t *allocator, map_t **out);

/* map_free: releases every byte of the map. No iterator may be live. */
void map_free(map_t *m);

/* map_count: number of live entries. */
size_t map_count(const map_t *m);

/*
 * map_lookup: the value stored for key, or NULL when absent. The pointer
 * stays valid until the next write (insert, delete, clear) to the map,
 * since growth moves entries. Values are laid out back to back, so a value
 * whose size is not a multiple of 8 may be unaligned: copy it with memcpy.
 */
void *map_lookup(const map_t *m, const void *key);

/*
 * map_assign: finds key, or inserts it with a zero-filled value, and
 * returns in *value_out a pointer to its value slot, valid until the next
 * write. *inserted (optional) tells whether the key was new.
 * @return MAP_OK, or MAP_ERR_NOMEM when the key was new and could not be
 *         stored (the map is unchanged and still valid).
 * A failed growth is not an error for the caller: the entry is stored in
 * the current table, the failure is counted in map_stats_t.grow_failures
 * and last_error, and growth is retried after the map gains 1/8 more
 * entries.
 */
map_err_t map_assign(map_t *m, const void *key, void **value_out,
                     bool *inserted);

/* map_insert: map_assign, then copies value (value_size bytes) in. */
map_err_t map_insert(map_t *m, const void *key, const void *value);

/*
 * map_delete: removes key. Copies its value into value_out when value_out
 * is not NULL. Never fails for lack of memory.
 * @return true if the key was present.
 */
bool map_delete(map_t *m, const void *key, void *value_out);

/* map_clear: removes every entry; keeps the bucket array (the map never
 * shrinks, as in Go). Live iterators produce nothing more. */
void map_clear(map_t *m);

/* 8-byte-key fast paths: same contracts; only for maps with key_size 8. */
void *map_lookup64(const map_t *m, uint64_t key);
map_err_t map_assign64(map_t *m, uint64_t key, void **value_out,
                       bool *inserted);
map_err_t map_insert64(map_t *m, uint64_t key, const void *value);
bool map_delete64(map_t *m, uint64_t key, void *value_out);

/* map_prefetch64: starts loading the bucket where key would be, for a
 * lookup, assign or delete soon after (a large map misses the cache on
 * every random key: issued early, the miss overlaps other work). Only a
 * hint: it may be called without the caller's lock on m while another
 * thread writes m (it then prefetches a useless line), and never changes
 * or faults on anything. */
void map_prefetch64(const map_t *m, uint64_t key);

/* ------------------------------------------------------------------------ */
/* Iteration                                                                */
/* ------------------------------------------------------------------------ */

/*
 * map_iter_t: an iterator, allocated by the caller (usually on the stack).
 * Iteration starts at a random bucket and slot offset. While an iterator
 * is live the map may be written (insert, delete, clear, growth), with
 * Go's guarantees:
 *   - an entry deleted before the iterator reaches it is not produced;
 *   - no entry is produced twice;
 *   - every entry live for the whole iteration is produced;
 *   - an entry inserted during the iteration may or may not be produced;
 *   - the value produced is the latest one.
 * Every map_iter_init must be paired with map_iter_done: memory retired by
 * growth is kept readable while iterators are live, and released by the
 * last map_iter_done.
 */
typedef struct map_iter_s {
    map_t *map;             /* the map being iterated */
    void *buckets;          /* bucket array snapshot taken at init */
    uint8_t B;              /* log2 of the snapshot's bucket count */
    uint8_t offset;         /* random slot offset 0..7 applied to every bucket */
    uint8_t slot;           /* next slot index (before offset) in bptr */
    bool wrapped;           /* the walk has passed the last bucket */
    bool done;              /* iteration finished */
    size_t start_bucket;    /* random first bucket */
    size_t bucket;          /* next bucket index of the snapshot */
    size_t check_bucket;    /* new-bucket filter for an old bucket, or MAP_NO_CHECK */
    void *bptr;             /* bucket being walked, NULL between buckets */
} map_iter_t;

#define MAP_NO_CHECK ((size_t)-1)

/* map_iter_init: starts an iteration over m. */
void map_iter_init(map_t *m, map_iter_t *it);

/*
 * map_iter_next: produces the next entry.
 * @return false at the end. Otherwise *key_out and *value_out (each
 * optional) point at the entry's key and value in the map, valid until the
 * next write.
 */
bool map_iter_next(map_iter_t *it, const void **key_out, void **value_out);

/* map_iter_done: ends an iteration (releases retired memory if last). */
void map_iter_done(map_iter_t *it);

/* ------------------------------------------------------------------------ */
/* Stats                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct map_stats_s {
    size_t count;           /* live entries */
    unsigned B;             /* log2 of the bucket count */
    size_t buckets;         /* 2^B */
    unsigned noverflow;     /* Go's approximate overflow-bucket count */
    size_t overflow_buckets;/* exact overflow buckets linked in the current table */
    bool growing;           /* an evacuation is in progress */
    bool same_size_grow;    /* ...and it keeps the bucket count */
    size_t nevacuate;       /* old buckets below this index are evacuated */
    size_t noldbuckets;     /* old bucket count while growing, else 0 */
    size_t bytes;           /* bytes held from the allocator (all generations) */
    size_t retired_bytes;   /* of which: kept only for live iterators */
    size_t grow_failures;   /* growths abandoned for lack of memory */
    map_err_t last_error;   /* last allocation failure seen, MAP_OK if none */
    unsigned iterators;     /* live iterators */
} map_stats_t;

/* map_get_stats: fills *out. O(1). */
void map_get_stats(const map_t *m, map_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* HEAPWATCH_MAP_H */
