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
 *          Only the bytes asked for are zeroed on reuse, not the whole
 *          class (a 37 KiB bucket array sits in a 64 KiB class).
 *   large: one private anonymous mapping per block, rounded to pages.
 *          On free, a mapping of up to ARENA_CACHE_BLOCK_MAX is parked in
 *          a small cache (ARENA_CACHE_SLOTS mappings, ARENA_CACHE_MAX
 *          bytes in all, oldest evicted first) and handed out again to a
 *          request that fits it without wasting more than half of it;
 *          anything else is munmap'd. Why: a growing map frees its old
 *          array and maps a new one at every doubling, and a fresh mapping
 *          costs a page fault per 4 KiB page (about 0.5-1 us each on a VM)
 *          plus mmap/munmap and a TLB shootdown, while zeroing a cached,
 *          resident block with memset costs about a tenth of that. The
 *          block size bound keeps that memset short (it runs inside the
 *          caller's allocation: < 100 us for 2 MiB); bigger arrays fault
 *          in lazily, a page at a time, as the map's incremental
 *          evacuation first touches them.
 *   huge:  only through map_arena_huge_allocator() (the agent's live
 *          maps): a fresh large mapping bigger than the cache keeps
 *          (ARENA_HUGE_MIN, 2 MiB + 4 KiB) is placed on a 2 MiB boundary
 *          and its whole 2 MiB pages, up to the bytes asked for, are
 *          advised MADV_HUGEPAGE, as Go's heap is (runtime/mem_linux.go,
 *          sysHugePageOS). Why: a map of millions of entries is touched at
 *          random over hundreds of MiB; with 4 KiB pages nearly every
 *          access misses the TLB and walks the page table, whose own
 *          entries miss the cache; and one 2 MiB fault costs less than the
 *          512 4 KiB faults it replaces (see map.c, "Pages", for the
 *          figures). From 2 MiB rather than from the TLB's reach: growing
 *          to 100k entries (arrays of 2.4 and 4.7 MB, mapped afresh each
 *          time) spent 20 instead of 22-31 ns of system time per insert. The tail past the last whole 2 MiB
 *          page of what was asked for stays on 4 KiB pages, so no huge
 *          page is faulted in beyond the block. A touched 2 MiB page is
 *          resident whole, which costs nothing for a bucket array (the
 *          hash touches all of it alike) but could for a buffer touched
 *          here and there: hence opt-in, and map_arena_allocator() keeps
 *          4 KiB pages. Advice only: with transparent huge pages "never"
 *          (or no THP in the kernel) the madvise changes nothing and its
 *          error is ignored.
 *
 * Locking: one mutex, taken for small blocks and the large-block cache;
 * mmap, munmap and memset run outside it. Statistics are relaxed atomics
 * so readers need no lock.
 *
 * Paths that must never block (the agent's exit output and fork: see
 * agent/lock.c) set the thread's no-wait mode (map_arena_set_nowait): the
 * lock is then only tried. A small block that cannot have it is carved,
 * without any lock, from a chunk of the calling thread's own (the same
 * 1 MiB chunks, never returned); a large block skips the cache (a fresh
 * mapping; freed: unmapped); a small block freed without the lock is
 * leaked (its bytes stay mapped, never reused). So memory never fails for
 * want of the lock: the lock may be held by the very thread that was
 * interrupted by the signal handler now calling _exit.
 *
 * fork: the prepare handler takes the lock, waiting at most until a
 * deadline. When it could not (its holder may be stopped in a signal
 * handler, or be the forking thread itself), the free lists, the shared
 * chunk and the cache may be mid-update in the child: the child never
 * touches them again (lists_lost) and every thread of it allocates from
 * its own chunks as in no-wait mode. The child's arena keeps working.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "map/map.h"

#define ARENA_HEADER 16u                     /* bytes before every user pointer */
#define ARENA_MIN_CLASS 5u                   /* smallest block: 32 bytes */
#define ARENA_MAX_CLASS 16u                  /* largest small block: 64 KiB */
#define ARENA_SMALL_BLOCK_MAX (1u << ARENA_MAX_CLASS)
#define ARENA_CHUNK (1u << 20)               /* small blocks are carved from 1 MiB chunks */
#define ARENA_CACHE_SLOTS 8u                 /* large mappings kept for reuse */
#define ARENA_CACHE_BLOCK_MAX (2u << 20)     /* largest mapping kept */
#define ARENA_CACHE_MAX (8u << 20)           /* bytes kept in all */
#define ARENA_HUGE_PAGE ((size_t)2 << 20)    /* x86-64 PMD page */
/* fresh mappings from here get huge pages (huge allocator): every one
 * the cache would not keep */
#define ARENA_HUGE_MIN ((size_t)ARENA_CACHE_BLOCK_MAX + 4096u)
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

/* The large-block cache, under arena_lock: slots [0, cache_count) in
 * order of release (oldest first). */
typedef struct cached_map_s {
    unsigned char *base;
    size_t len;
} cached_map_t;
static cached_map_t cache[ARENA_CACHE_SLOTS];
static unsigned cache_count;
static size_t cache_bytes;

static bool lists_lost;          /* child of a fork that could not take the lock */

/* The calling thread's no-wait mode and its own chunk (initial-exec TLS:
 * no allocation on first use). */
#define ARENA_TLS __thread __attribute__((tls_model("initial-exec")))
static ARENA_TLS bool nowait;
static ARENA_TLS bool prefork_took;     /* this thread's prepare handler holds the lock
                                        * (two threads may fork at once) */
static ARENA_TLS unsigned char *own_next, *own_end;

static _Atomic size_t stat_mapped;
static _Atomic size_t stat_cached;
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

/* os_map_large: a fresh mapping of len bytes for a block of `used`
 * bytes; from ARENA_HUGE_MIN it starts on a 2 MiB boundary (map 2 MiB
 * more, unmap the ends) and its whole 2 MiB pages within `used` are
 * advised MADV_HUGEPAGE (see "huge" in the design comment). */
static unsigned char *os_map_large(size_t len, size_t used)
{
    if (len < ARENA_HUGE_MIN) return os_map(len);
    size_t span = len + ARENA_HUGE_PAGE;
    unsigned char *p = os_map(span);
    if (!p) return os_map(len);   /* no room to align: plain pages */
    unsigned char *b = (unsigned char *)(((uintptr_t)p + ARENA_HUGE_PAGE - 1) &
                                         ~(uintptr_t)(ARENA_HUGE_PAGE - 1));
    size_t head = (size_t)(b - p);
    if (head) munmap(p, head);
    if (span - head > len) munmap(b + len, span - head - len);
    size_t advised = used & ~(ARENA_HUGE_PAGE - 1);
    if (advised) (void)madvise(b, advised, MADV_HUGEPAGE);
    return b;
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

/* lock_arena: takes the lock; false (not taken) in no-wait mode when it
 * is busy, and always once the lists were lost at a fork. */
static bool lock_arena(void)
{
    if (__atomic_load_n(&lists_lost, __ATOMIC_RELAXED)) return false;
    if (nowait) return pthread_mutex_trylock(&arena_lock) == 0;
    pthread_mutex_lock(&arena_lock);
    return true;
}

/* carve: a fresh block of 2^cls bytes from the chunk [*next, *end),
 * mapping a new chunk when it is used up. The tail of the previous chunk
 * is abandoned: at most 64 KiB of address space, never touched, so it
 * costs no memory. */
static unsigned char *carve(unsigned char **next, unsigned char **end, unsigned cls)
{
    size_t len = (size_t)1 << cls;
    if ((size_t)(*end - *next) < len) {
        unsigned char *chunk = os_map(ARENA_CHUNK);
        if (!chunk) return NULL;
        stat_add(&stat_mapped, ARENA_CHUNK);
        *next = chunk;
        *end = chunk + ARENA_CHUNK;
    }
    unsigned char *b = *next;
    *next += len;
    return b;
}

/* carve_own: from the thread's own chunk, no lock (see the design
 * comment). */
static unsigned char *carve_own(unsigned cls) { return carve(&own_next, &own_end, cls); }

/* carve_locked: from the current shared chunk (under arena_lock). */
static unsigned char *carve_locked(unsigned cls) { return carve(&chunk_next, &chunk_end, cls); }

static void *alloc_small(size_t total)
{
    unsigned cls = class_of(total);
    size_t len = (size_t)1 << cls;
    unsigned char *b;
    int recycled = 0;

    if (!lock_arena()) {
        b = carve_own(cls);
    } else {
        free_block_t *f = free_lists[cls];
        if (f) {
            free_lists[cls] = f->next;
            b = (unsigned char *)f;
            recycled = 1;
        } else {
            b = carve_locked(cls);
        }
        pthread_mutex_unlock(&arena_lock);
    }
    if (!b) return NULL;
    if (recycled) memset(b, 0, total);   /* the rest is never handed out */

    arena_header_t *h = (arena_header_t *)(void *)b;   /* blocks are 16-aligned */
    h->size = cls;
    h->magic = ARENA_MAGIC_SMALL;
    stat_add(&stat_inuse, len);
    return b + ARENA_HEADER;
}

/* cache_take_locked: the smallest cached mapping of at least len bytes
 * and less than twice that, removed from the cache; NULL if none. */
static unsigned char *cache_take_locked(size_t len, size_t *got)
{
    unsigned best = ARENA_CACHE_SLOTS;
    for (unsigned i = 0; i < cache_count; i++) {
        size_t l = cache[i].len;
        if (l >= len && l / 2 < len && (best == ARENA_CACHE_SLOTS || l < cache[best].len))
            best = i;
    }
    if (best == ARENA_CACHE_SLOTS) return NULL;
    unsigned char *b = cache[best].base;
    *got = cache[best].len;
    cache_bytes -= *got;
    memmove(&cache[best], &cache[best + 1], (cache_count - best - 1) * sizeof cache[0]);
    cache_count--;
    return b;
}

/* cache_put_locked: parks mapping (b, len), evicting the oldest ones to
 * make room; the evicted mappings go to out[] (at most ARENA_CACHE_SLOTS)
 * for the caller to unmap outside the lock. Returns how many. */
static unsigned cache_put_locked(unsigned char *b, size_t len, cached_map_t *out)
{
    unsigned n = 0;
    while (cache_count > 0 &&
           (cache_count == ARENA_CACHE_SLOTS || cache_bytes + len > ARENA_CACHE_MAX)) {
        out[n++] = cache[0];
        cache_bytes -= cache[0].len;
        memmove(&cache[0], &cache[1], (cache_count - 1) * sizeof cache[0]);
        cache_count--;
    }
    cache[cache_count].base = b;
    cache[cache_count].len = len;
    cache_count++;
    cache_bytes += len;
    return n;
}

static void unmap_all(const cached_map_t *maps, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        munmap(maps[i].base, maps[i].len);
        stat_sub(&stat_mapped, maps[i].len);
        stat_sub(&stat_cached, maps[i].len);
    }
}

static void *alloc_large(size_t total, bool huge)
{
    size_t pg = page_size();
    size_t len = (total + pg - 1) & ~(pg - 1);
    unsigned char *b = NULL;
    if (len <= ARENA_CACHE_BLOCK_MAX && lock_arena()) {
        size_t got = 0;
        b = cache_take_locked(len, &got);
        pthread_mutex_unlock(&arena_lock);
        if (b) {
            stat_sub(&stat_cached, got);
            memset(b, 0, total);   /* the rest is never handed out */
            len = got;
        }
    }
    if (!b) {
        b = huge ? os_map_large(len, total) : os_map(len);
        if (!b) return NULL;
        stat_add(&stat_mapped, len);
    }
    arena_header_t *h = (arena_header_t *)(void *)b;   /* blocks are 16-aligned */
    h->size = len;
    h->magic = ARENA_MAGIC_LARGE;
    stat_add(&stat_inuse, len);
    return b + ARENA_HEADER;
}

/* free_large: parks a small enough mapping in the cache, unmaps the rest. */
static void free_large(unsigned char *b, size_t len)
{
    stat_sub(&stat_inuse, len);
    if (len > ARENA_CACHE_BLOCK_MAX || !lock_arena()) {
        munmap(b, len);
        stat_sub(&stat_mapped, len);
        return;
    }
    ((arena_header_t *)(void *)b)->magic = 0;   /* a second free is ignored */
    cached_map_t evicted[ARENA_CACHE_SLOTS];
    stat_add(&stat_cached, len);
    unsigned n = cache_put_locked(b, len, evicted);   /* lock taken above */
    pthread_mutex_unlock(&arena_lock);
    unmap_all(evicted, n);
}

/* arena_alloc: map_arena_alloc; huge: see "huge" in the design comment. */
static void *arena_alloc(size_t size, bool huge)
{
    if (size == 0) size = 1;
    if (size > SIZE_MAX / 2) return NULL;
    size_t total = size + ARENA_HEADER;
    void *p = total <= ARENA_SMALL_BLOCK_MAX ? alloc_small(total)
                                              : alloc_large(total, huge);
    if (p) stat_add(&stat_allocs, 1);
    return p;
}

void *map_arena_alloc(size_t size)
{
    return arena_alloc(size, false);
}

void map_arena_free(void *ptr)
{
    if (!ptr) return;
    unsigned char *b = (unsigned char *)ptr - ARENA_HEADER;
    arena_header_t *h = (arena_header_t *)(void *)b;   /* blocks are 16-aligned */
    stat_add(&stat_frees, 1);
    if (h->magic == ARENA_MAGIC_LARGE) {
        free_large(b, h->size);
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
    if (!lock_arena()) return;   /* leaked: see the design comment */
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

static void *arena_huge_alloc_cb(void *ctx, size_t size)
{
    (void)ctx;
    return arena_alloc(size, true);
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

map_allocator_t map_arena_huge_allocator(void)
{
    map_allocator_t a = { arena_huge_alloc_cb, arena_free_cb, NULL };
    return a;
}

void map_arena_get_stats(map_arena_stats_t *out)
{
    out->mapped_bytes = atomic_load_explicit(&stat_mapped, memory_order_relaxed);
    out->inuse_bytes = atomic_load_explicit(&stat_inuse, memory_order_relaxed);
    out->allocs = atomic_load_explicit(&stat_allocs, memory_order_relaxed);
    out->frees = atomic_load_explicit(&stat_frees, memory_order_relaxed);
    out->cached_bytes = atomic_load_explicit(&stat_cached, memory_order_relaxed);
}

void map_arena_set_nowait(bool on)
{
    nowait = on;
}

bool map_arena_prefork(uint64_t deadline_ns)
{
    prefork_took = false;
    if (__atomic_load_n(&lists_lost, __ATOMIC_RELAXED)) return true;   /* nothing to guard */
    if (pthread_mutex_trylock(&arena_lock) == 0) {
        prefork_took = true;
    } else if (deadline_ns == UINT64_MAX) {
        pthread_mutex_lock(&arena_lock);
        prefork_took = true;
    } else if (deadline_ns) {
        struct timespec ts = { (time_t)(deadline_ns / 1000000000ull), (long)(deadline_ns % 1000000000ull) };
        prefork_took = pthread_mutex_clocklock(&arena_lock, CLOCK_MONOTONIC, &ts) == 0;
    }
    return prefork_took;
}

void map_arena_postfork_parent(void)
{
    if (prefork_took) pthread_mutex_unlock(&arena_lock);
    prefork_took = false;
}

bool map_arena_postfork_child(void)
{
    /* No other thread exists in the child, so a fresh mutex is equivalent
     * to unlocking it and avoids relying on unlock-after-fork semantics. */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    arena_lock = fresh;
    if (!prefork_took) __atomic_store_n(&lists_lost, true, __ATOMIC_RELAXED);
    prefork_took = false;
    return !__atomic_load_n(&lists_lost, __ATOMIC_RELAXED);
}
