/*
 * map_arena.c - the process-wide mmap-backed arena.
 *
 * Why: inside libheapwatch.so nothing may allocate through the functions
 * the agent interposes (malloc & co.), or it would profile and re-enter
 * itself. Every byte the agent, its map, protobuf-c, zstd and zlib use
 * comes from here, straight from mmap.
 *
 * Layout. Every block starts with a 16-byte header (so the user pointer is
 * 16-aligned and free() needs no size):
 *
 *     [ size_class | magic ][ user bytes ...                      ]
 *     ^ header (16 bytes)    ^ pointer returned
 *
 *   small  (header + size <= ARENA_SMALL_BLOCK_MAX): power-of-two classes
 *          from 32 bytes to 64 KiB. Blocks are carved with a bump pointer
 *          out of 1 MiB chunks and recycled through one free list per
 *          class (the link lives in the freed block). A recycled block is
 *          zeroed again before it is handed out; fresh chunk memory is
 *          already zero (anonymous mmap). Chunks are never returned to the
 *          system: the agent's small allocations (overflow buckets, stack
 *          records, protobuf messages) recur, and munmap in a threaded
 *          process costs TLB shootdowns.
 *   large: one private anonymous mapping per block, rounded to pages, and
 *          munmap'd on free. Used by bucket arrays and zstd/zlib windows.
 *
 * Locking: one mutex, taken for small blocks only; large blocks are pure
 * syscalls. The fork handlers take it so a child never inherits it held.
 * Statistics are relaxed atomics so readers need no lock.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "map/map.h"

#define ARENA_HEADER 16u                     /* bytes before every user pointer */
#define ARENA_MIN_CLASS 5u                   /* smallest block: 32 bytes */
#define ARENA_MAX_CLASS 16u                  /* largest small block: 64 KiB */
#define ARENA_SMALL_BLOCK_MAX (1u << ARENA_MAX_CLASS)
#define ARENA_CHUNK (1u << 20)               /* small blocks are carved from 1 MiB chunks */
#define ARENA_MAGIC_SMALL 0x68777331u        /* "hws1": header of a small block */
#define ARENA_MAGIC_LARGE 0x68776c31u        /* "hwl1": header of a large block */

typedef struct arena_header_s {
    uint64_t size;      /* small: class index; large: mapping length in bytes */
    uint32_t magic;     /* ARENA_MAGIC_SMALL or ARENA_MAGIC_LARGE */
    uint32_t pad;
} arena_header_t;

_Static_assert(sizeof(arena_header_t) == ARENA_HEADER, "arena header size");
_Static_assert(MAP_ARENA_SMALL_MAX + ARENA_HEADER == ARENA_SMALL_BLOCK_MAX,
               "MAP_ARENA_SMALL_MAX matches the largest class");

typedef struct free_block_s {
    struct free_block_s *next;
} free_block_t;

static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;
static free_block_t *free_lists[ARENA_MAX_CLASS + 1];  /* per class, under arena_lock */
static unsigned char *chunk_next;                      /* bump pointer, under arena_lock */
static unsigned char *chunk_end;

static _Atomic size_t stat_mapped;
static _Atomic size_t stat_inuse;
static _Atomic size_t stat_allocs;
static _Atomic size_t stat_frees;

static void stat_add(_Atomic size_t *s, size_t n)
{
    atomic_fetch_add_explicit(s, n, memory_order_relaxed);
}

static void stat_sub(_Atomic size_t *s, size_t n)
{
    atomic_fetch_sub_explicit(s, n, memory_order_relaxed);
}

static void *os_map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static size_t page_size(void)
{
    static size_t cached;
    if (!cached) cached = (size_t)sysconf(_SC_PAGESIZE);
    return cached;
}

/* class_of: smallest class whose block holds `total` bytes. */
static unsigned class_of(size_t total)
{
    unsigned c = ARENA_MIN_CLASS;
    while (((size_t)1 << c) < total) c++;
    return c;
}

/* carve_locked: a fresh block of 2^cls bytes from the current chunk. */
static unsigned char *carve_locked(unsigned cls)
{
    size_t len = (size_t)1 << cls;
    if ((size_t)(chunk_end - chunk_next) < len) {
        unsigned char *chunk = os_map(ARENA_CHUNK);
        if (!chunk) return NULL;
        stat_add(&stat_mapped, ARENA_CHUNK);
        /* The tail of the previous chunk is abandoned: at most 64 KiB of
         * address space, never touched, so it costs no memory. */
        chunk_next = chunk;
        chunk_end = chunk + ARENA_CHUNK;
    }
    unsigned char *b = chunk_next;
    chunk_next += len;
    return b;
}

static void *alloc_small(size_t total)
{
    unsigned cls = class_of(total);
    size_t len = (size_t)1 << cls;
    unsigned char *b;
    int recycled = 0;

    pthread_mutex_lock(&arena_lock);
    free_block_t *f = free_lists[cls];
    if (f) {
        free_lists[cls] = f->next;
        b = (unsigned char *)f;
        recycled = 1;
    } else {
        b = carve_locked(cls);
    }
    pthread_mutex_unlock(&arena_lock);
    if (!b) return NULL;
    if (recycled) memset(b, 0, len);

    arena_header_t *h = (arena_header_t *)(void *)b;   /* blocks are 16-aligned */
    h->size = cls;
    h->magic = ARENA_MAGIC_SMALL;
    stat_add(&stat_inuse, len);
    return b + ARENA_HEADER;
}

static void *alloc_large(size_t total)
{
    size_t pg = page_size();
    size_t len = (total + pg - 1) & ~(pg - 1);
    unsigned char *b = os_map(len);
    if (!b) return NULL;
    arena_header_t *h = (arena_header_t *)(void *)b;   /* blocks are 16-aligned */
    h->size = len;
    h->magic = ARENA_MAGIC_LARGE;
    stat_add(&stat_mapped, len);
    stat_add(&stat_inuse, len);
    return b + ARENA_HEADER;
}

void *map_arena_alloc(size_t size)
{
    if (size == 0) size = 1;
    if (size > SIZE_MAX / 2) return NULL;
    size_t total = size + ARENA_HEADER;
    void *p = total <= ARENA_SMALL_BLOCK_MAX ? alloc_small(total)
                                              : alloc_large(total);
    if (p) stat_add(&stat_allocs, 1);
    return p;
}

void map_arena_free(void *ptr)
{
    if (!ptr) return;
    unsigned char *b = (unsigned char *)ptr - ARENA_HEADER;
    arena_header_t *h = (arena_header_t *)(void *)b;   /* blocks are 16-aligned */
    stat_add(&stat_frees, 1);
    if (h->magic == ARENA_MAGIC_LARGE) {
        size_t len = h->size;
        stat_sub(&stat_inuse, len);
        stat_sub(&stat_mapped, len);
        munmap(b, len);
        return;
    }
    if (h->magic != ARENA_MAGIC_SMALL || h->size < ARENA_MIN_CLASS ||
        h->size > ARENA_MAX_CLASS) {
        /* Not ours, or corrupted: leaking is the only harmless answer. */
        return;
    }
    unsigned cls = (unsigned)h->size;
    stat_sub(&stat_inuse, (size_t)1 << cls);
    h->magic = 0;   /* a second free of the same block is then ignored */
    pthread_mutex_lock(&arena_lock);
    free_block_t *f = (free_block_t *)(void *)b;
    f->next = free_lists[cls];
    free_lists[cls] = f;
    pthread_mutex_unlock(&arena_lock);
}

static void *arena_alloc_cb(void *ctx, size_t size)
{
    (void)ctx;
    return map_arena_alloc(size);
}

static void arena_free_cb(void *ctx, void *ptr)
{
    (void)ctx;
    map_arena_free(ptr);
}

map_allocator_t map_arena_allocator(void)
{
    map_allocator_t a = { arena_alloc_cb, arena_free_cb, NULL };
    return a;
}

void map_arena_get_stats(map_arena_stats_t *out)
{
    out->mapped_bytes = atomic_load_explicit(&stat_mapped, memory_order_relaxed);
    out->inuse_bytes = atomic_load_explicit(&stat_inuse, memory_order_relaxed);
    out->allocs = atomic_load_explicit(&stat_allocs, memory_order_relaxed);
    out->frees = atomic_load_explicit(&stat_frees, memory_order_relaxed);
}

void map_arena_prefork(void)
{
    pthread_mutex_lock(&arena_lock);
}

void map_arena_postfork_parent(void)
{
    pthread_mutex_unlock(&arena_lock);
}

void map_arena_postfork_child(void)
{
    /* The forking thread holds the lock; no other thread exists in the
     * child, so a fresh mutex is equivalent and avoids relying on
     * unlock-after-fork semantics. */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    arena_lock = fresh;
}
