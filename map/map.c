/*
 * map.c - a C port of Go's classic runtime hash map.
 *
 * This file implements the map the agent uses to index live sampled
 * allocations (pointer -> {stack id, size, weight}); every free() of the
 * profiled program asks it "was this pointer sampled?", so the lookup that
 * misses is the operation that matters most.
 *
 * Layout
 * ------
 * A map is an array of 2^B buckets. Each bucket holds 8 slots:
 *
 *     +----------+------------------+---------------------+----------+
 *     | tophash  | keys[8]          | values[8]           | overflow |
 *     | 8 bytes  | 8 * key_size     | 8 * value_size      | pointer  |
 *     +----------+------------------+---------------------+----------+
 *
 * All keys come before all values, as in Go, so no padding is needed
 * between a key and its value. Key sizes are whole bytes; the keys block
 * starts at offset 8, the values block at 8 + 8*key_size, and the overflow
 * pointer at 8 + 8*(key_size+value_size) rounded up to 8. For the agent's
 * 8-byte keys and 24-byte values a bucket is 272 bytes.
 *
 * The low B bits of a key's 64-bit hash select its bucket; the high byte,
 * the "tophash", is stored in the slot and filters candidates before any
 * key is compared. A bucket that fills up chains overflow buckets.
 *
 * tophash values 0..4 are markers, never hashes (a live hash byte below 5
 * is moved up by 5):
 *     emptyRest      0  empty, and so is every later slot in this bucket
 *                       and every bucket after it in the chain
 *     emptyOne       1  empty (a tombstone; live slots may follow)
 *     evacuatedX     2  was live; moved to the X (same index) half
 *     evacuatedY     3  was live; moved to the Y (index + old count) half
 *     evacuatedEmpty 4  was empty; its bucket has been evacuated
 * A fresh, zero-filled array is therefore all emptyRest: valid with no
 * initialisation, which is why the allocator hook must return zeroed
 * memory.
 *
 * The miss path
 * -------------
 * Lookups test the 8 tophash bytes as one 64-bit word (SWAR): three
 * operations find the candidate slots whose tophash equals the key's, and
 * whether the bucket holds an emptyRest is read from its last slot alone
 * (only emptyRest may follow an emptyRest, so a bucket has one iff its
 * last slot is one). A miss in a bucket with an emptyRest compares no key
 * and reads no overflow pointer. With 251 usable tophash values a miss
 * compares, on average, load/251 keys (0.03 at full load).
 *
 * Deletes keep the emptyRest invariant without a byte-at-a-time walk:
 * the run of emptyOne slots that ends at the deleted one is found with
 * one SWAR compare and a count-leading-zeros, and the new tophash word is
 * written once. Which slot a delete empties is random, so every branch
 * there would mispredict; the walk back into earlier buckets of a chain
 * (rare) is the only loop left. A delete expects to find its key, so it
 * prefetches the line after the tophash line with it: the tophash bytes
 * and keys span 72 bytes, and the key compared is on that second line
 * half the time (see find_in_chain). A lookup does not: a miss needs no
 * key, and the extra line slowed misses in a large map.
 *
 * Hashing
 * -------
 * malloc pointers are bad hash inputs: the low 4 bits are always 0, the
 * top byte is always 0, and objects of one size class form arithmetic
 * progressions. hash64() multiplies (key ^ seed) by an odd 64-bit constant
 * into a 128-bit product and folds it (high ^ low): one MUL, and both the
 * low bits (bucket index) and the high byte (tophash) depend on every key
 * bit. tests/unit/map_hash.c measures bucket occupancy on real malloc
 * addresses. Keys of other sizes are folded 8 bytes at a time with the
 * same primitive; an 8-byte key hashes identically through the generic
 * and the fast paths. Each map has its own random seed (hash0), drawn from
 * the kernel's AT_RANDOM bytes: no libc rand(), which belongs to the host.
 *
 * Load factor
 * -----------
 * A map grows (doubles) when an insert would exceed 6.5 entries per
 * bucket on average: count > 8 && count > 13 * (2^B / 2). Measured with
 * this hash on 131k real glibc malloc pointers placed into 2^14 buckets
 * (tests/unit/map_hash.c prints the table; bytes/entry is for 8-byte keys
 * and 24-byte values, overflow buckets included, spares not):
 *
 *     load  %overflow  bytes/entry  hitprobe  missprobe  miss-buckets
 *     4.00       2.1         69.4      2.99       4.00         1.052
 *     5.00       6.6         58.0      3.49       5.00         1.130
 *     6.00      14.9         52.1      3.99       6.00         1.255
 *     6.50      20.6         50.5      4.24       6.50         1.327
 *     7.00      26.9         49.3      4.49       7.00         1.402
 *     8.00      40.5         47.9      4.99       8.00         1.555
 *
 *   %overflow    buckets that have an overflow bucket
 *   bytes/entry  bucket bytes (array + overflow buckets) per live entry
 *   hitprobe     tophash slots examined to find a present key
 *   missprobe    tophash slots a byte-at-a-time search examines for an
 *                absent key (Go's measure)
 *   miss-buckets buckets the SWAR search reads for an absent key: it
 *                reads 8 tophashes at once and stops at a bucket with an
 *                emptyRest, so only full buckets cost a second read
 * The figures match Go's own table (20.90 %overflow, hitprobe 4.25 at
 * 6.5), as they should for a uniform hash.
 * 6.5 is Go's choice and ours: past it, overflow chains (a second cache
 * line per miss) grow faster than memory shrinks.
 *
 * Too many overflow buckets (Go's approximate count, noverflow >=
 * 2^min(B,15)) trigger a same-size growth, which compacts chains left
 * sparse by deletes.
 *
 * Pages
 * -----
 * The map takes its memory from the allocator it is given; the agent's
 * live maps (and make bench-map) use map_arena_huge_allocator(), which
 * puts arrays over 2 MiB on 2 MiB pages (MADV_HUGEPAGE), as Go's runtime
 * does for its whole heap. A large map is touched at random over hundreds
 * of MiB (10M entries: a 570 MiB array), so on 4 KiB pages nearly every
 * lookup or delete misses the TLB, and the page walk's own entries miss
 * the cache. Measured (issue 13) on 10M entries, CPU time per op,
 * interleaved, 4 KiB pages -> 2 MiB pages: delete 183-282 -> 124-177 ns,
 * hit 72-99 -> 54-83, miss 58-94 -> 47-72; this is what made delete at 10M
 * slower than Go's own map (96 vs 81 ns/op), whose buckets had huge pages
 * and ours did not. Growth faults the new array in as evacuation and
 * inserts first touch it: a 2 MiB fault cost 200 us against 900 us for
 * the 512 4 KiB faults it replaces, but up to 5 ms on a VM whose host has
 * taken the freed page back (free page reporting), so the insert figure
 * there depends on how recently the memory was freed. Freeing a 512 MiB
 * array (the old generation, at the end of a growth, inside one insert)
 * took 38-48 ms on 4 KiB pages and 1.4 ms on 2 MiB pages. So the worst
 * single insert while growing to 10M moved: on 4 KiB pages it was that
 * free (27-38 ms on the VM); on 2 MiB pages it is an insert just after a
 * growth starts whose key's old bucket evacuates into two 2 MiB pages not
 * yet touched (13-19 ms there, two or three faults the host must back;
 * about 0.5 ms where a 2 MiB fault costs 200 us).
 *
 * Growing
 * -------
 * Growth allocates the new array and copies nothing: the old array stays
 * as oldbuckets and is "evacuated" incrementally. Every write (insert,
 * delete) first evacuates the old bucket that feeds the bucket it is about
 * to touch, then one more at nevacuate, so a growth completes after at
 * most 2^(B-1) writes and no single write moves more than two chains.
 * Evacuating old bucket i sends each entry to new bucket i (X) or
 * i + 2^(B-1) (Y) depending on hash bit B-1, and marks the old slot
 * evacuatedX/Y (or evacuatedEmpty). A bucket is evacuated iff its
 * tophash[0] is 2..4; until then it is authoritative and the new buckets
 * it feeds are untouched (evacuation fills them from slot 0).
 * When nevacuate reaches the old count, the old generation (array plus
 * overflow buckets) is released, or parked until the last live iterator
 * ends (iterators may still read it).
 *
 * Allocation failure
 * ------------------
 * A failure never leaves the map inconsistent:
 *   - the new array of a growth cannot be allocated: the growth is not
 *     started; the insert proceeds in the current table (chains get
 *     longer), the failure is counted, and growth is retried after the map
 *     gains 1/8 more entries;
 *   - evacuation reserves every overflow bucket it could need before it
 *     moves anything; if the reservation fails the bucket stays unevacuated
 *     (and authoritative). A write that needed it then works in the old
 *     chain: a delete always can; an insert can when the old chain has an
 *     empty slot, and otherwise fails with MAP_ERR_NOMEM, the map unchanged;
 *   - an insert that needs a new overflow bucket that cannot be allocated
 *     fails with MAP_ERR_NOMEM, the map unchanged.
 *
 * Iteration
 * ---------
 * An iterator snapshots the bucket array and B at start, picks a random
 * start bucket and a random slot offset (applied to every bucket of the
 * walk), and visits each bucket index of its snapshot once. If the map is
 * growing and the snapshot is the *new* array, an unevacuated old bucket is
 * walked instead, keeping only entries that will land in the bucket being
 * visited (checkBucket); otherwise the snapshot bucket is walked. A slot
 * marked evacuatedX/Y means the authoritative copy has moved: the key is
 * looked up again in the current map and produced only if still present,
 * with its current value. Entries never move within an array (no
 * compaction, no Robin Hood swaps), and arrays are never freed or reused
 * while an iterator lives, which gives Go's guarantees (see map.h). A key
 * deleted and inserted again during an iteration is a new entry and may be
 * produced again.
 *
 * Deviations from Go, and why
 * ---------------------------
 *   - Generations are freed explicitly: after growth when no iterator is
 *     live, otherwise by the last map_iter_done (Go has a GC).
 *   - hash0 is re-randomised when the map becomes empty only when no
 *     iterator is live and no growth is in progress, since iterators filter
 *     old buckets by rehashing keys.
 *   - Deleted keys and values are not cleared (no GC to help); a new entry
 *     gets a zero-filled value.
 *   - Spare overflow buckets (Go's nextOverflow) are handed out by a bump
 *     pointer over [next_overflow, end_overflow): first the 2^(B-4) spares
 *     at the end of the array, then slabs of buckets from the allocator.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "map/map_internal.h"

/* ------------------------------------------------------------------------ */
/* Constants                                                                */
/* ------------------------------------------------------------------------ */

#define BUCKET_CNT 8            /* slots per bucket */
#define LOAD_FACTOR_NUM 13      /* max average load is NUM/DEN = 6.5 */
#define LOAD_FACTOR_DEN 2
#define TOPHASH_BYTES 8         /* offset of keys[0] in a bucket */
#define SLAB_TARGET_BYTES (16u * 1024u - 64u) /* overflow slabs: one 16 KiB arena class */
#define EVACUATE_SCAN_MAX 1024  /* advance_evacuation_mark looks this far ahead */
#define MAX_B 48                /* 2^48 buckets: far beyond any address space */
#define CACHE_LINE 64           /* bytes; the prefetch distance of find_in_chain */

/* tophash markers */
#define EMPTY_REST 0            /* empty, and nothing live after it in the chain */
#define EMPTY_ONE 1             /* empty tombstone */
#define EVACUATED_X 2           /* moved to the X half of the new array */
#define EVACUATED_Y 3           /* moved to the Y half of the new array */
#define EVACUATED_EMPTY 4       /* empty, bucket evacuated */
#define MIN_TOPHASH 5           /* smallest tophash of a live slot */

/* flags */
#define FLAG_WRITING 4          /* a write is in progress (MAP_DEBUG misuse check) */
#define FLAG_SAME_SIZE_GROW 8   /* the growth in progress keeps the bucket count */

#define SWAR_LO 0x0101010101010101ull
#define SWAR_HI 0x8080808080808080ull

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ------------------------------------------------------------------------ */
/* Types                                                                    */
/* ------------------------------------------------------------------------ */

/* slab_t: a block of overflow buckets from the allocator. */
typedef struct slab_s {
    struct slab_s *next;        /* next slab of the same generation */
    size_t bytes;               /* bytes of this slab, header included */
} slab_t;

/* gen_t: header in front of every bucket array; one per generation. */
typedef struct gen_s {
    struct gen_s *next_retired; /* link in map_t.retired */
    slab_t *slabs;              /* overflow slabs of this generation */
    size_t array_bytes;         /* bytes of this allocation, header included */
    size_t slab_bytes;          /* bytes of all its slabs */
} gen_t;

_Static_assert(sizeof(gen_t) % 16 == 0, "bucket arrays stay 16-aligned");
_Static_assert(sizeof(slab_t) % 16 == 0, "slab buckets stay 16-aligned");

struct map_s {
    uint8_t flags;              /* FLAG_* bits */
    uint8_t B;                  /* log2 of the bucket count */
    uint16_t noverflow;         /* approximate overflow bucket count (Go's rule) */
    uint32_t bucketsize;        /* bytes per bucket */
    uint64_t hash0;             /* per-map hash seed */
    unsigned char *buckets;     /* 2^B buckets (+ spares); NULL until first insert if B = 0 */
    size_t mask;                /* 2^B - 1, kept with B (saves the shift on every access) */
    unsigned char *oldbuckets;  /* previous array while growing, else NULL */
    size_t nevacuate;           /* old buckets below this are evacuated */
    uint32_t key_size;          /* bytes per key */
    uint32_t value_size;        /* bytes per value */
    uint32_t valoff;            /* offset of values[0] in a bucket */
    uint32_t ovfoff;            /* offset of the overflow pointer in a bucket */
    /* Above: what lookups and deletes read, and map_prefetch64 reads
     * without the caller's lock (64 bytes: one or two cache lines),
     * changed only by growth. */

    unsigned char *next_overflow; /* next free overflow bucket of the current generation */
    unsigned char *end_overflow;  /* end of that free region */

    map_allocator_t alloc;      /* where every byte comes from */
    uint64_t rng;               /* private PRNG state (xorshift64*) */
    unsigned iterators;         /* live iterators */
    gen_t *retired;             /* generations kept only for live iterators */
    slab_t *retired_slabs;      /* slabs dropped by clear, kept for iterators */
    size_t bytes;               /* bytes held from the allocator */
    size_t retired_bytes;       /* of which retired */
    size_t overflow_exact;      /* overflow buckets linked in the current array */
    size_t grow_failures;       /* growths not started for lack of memory */
    size_t grow_retry_at;       /* no growth attempt before count reaches this */
    size_t grow_count;          /* count beyond which the load factor is exceeded (for B) */
    unsigned overflow_limit;    /* noverflow that calls for a same-size growth (for B) */
    map_err_t last_error;       /* last allocation failure */
    /* Last, at least 128 bytes from the start: on another cache line than
     * the fields above wherever the (16-byte aligned) header starts. Every
     * insert and delete writes it; in the first line it made each write
     * take that line from other CPUs' caches, and so every other thread's
     * map_prefetch64 (which the agent issues without the shard's lock)
     * miss it (rate-1 2-thread churn: map_prefetch64 13 % of samples). */
    size_t count;               /* live entries */
};
_Static_assert(offsetof(struct map_s, count) >= 128, "count away from the read-mostly fields");

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

const char *map_strerror(map_err_t err)
{
    switch (err) {
    case MAP_OK: return "success";
    case MAP_ERR_NOMEM: return "out of memory";
    case MAP_ERR_INVALID: return "invalid argument";
    }
    return "unknown map error";
}

#ifdef MAP_DEBUG
/* map_fatal: Go's throw: a short fixed message, then abort. */
static void map_fatal(const char *msg)
{
    size_t n = strlen(msg);
    ssize_t r = write(2, msg, n);
    (void)r;
    r = write(2, "\n", 1);
    (void)r;
    __builtin_trap();
}
#define DEBUG_ASSERT(cond, msg) do { if (UNLIKELY(!(cond))) map_fatal(msg); } while (0)
#else
#define DEBUG_ASSERT(cond, msg) do { } while (0)
#endif

/* write_begin / write_end: Go's hashWriting check, in MAP_DEBUG builds. */
static ALWAYS_INLINE void write_begin(map_t *m)
{
#ifdef MAP_DEBUG
    DEBUG_ASSERT(!(m->flags & FLAG_WRITING), "map: concurrent map writes");
    m->flags ^= FLAG_WRITING;
#else
    (void)m;
#endif
}

static ALWAYS_INLINE void write_end(map_t *m)
{
#ifdef MAP_DEBUG
    DEBUG_ASSERT(m->flags & FLAG_WRITING, "map: concurrent map writes");
    m->flags &= (uint8_t)~FLAG_WRITING;
#else
    (void)m;
#endif
}

static ALWAYS_INLINE void read_check(const map_t *m)
{
    DEBUG_ASSERT(!(m->flags & FLAG_WRITING), "map: concurrent map read and map write");
    (void)m;
}

static ALWAYS_INLINE uint64_t load64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* store64: an unaligned 64-bit store (a whole tophash word at once). */
static ALWAYS_INLINE void store64(void *p, uint64_t v)
{
    memcpy(p, &v, sizeof v);
}

/* mum: 64x64 -> 128-bit multiply folded to 64 bits. */
static ALWAYS_INLINE uint64_t mum(uint64_t a, uint64_t b)
{
    unsigned __int128 p = (unsigned __int128)a * b;
    return (uint64_t)p ^ (uint64_t)(p >> 64);
}

/* hash64: the hash of an 8-byte key (see "Hashing" above). */
static ALWAYS_INLINE uint64_t hash64(uint64_t key, uint64_t seed)
{
    return mum(key ^ seed, 0x9E3779B97F4A7C15ull);
}

/* hash_bytes: the hash of a key of any size; equals hash64 for 8 bytes. */
static uint64_t hash_bytes(const unsigned char *k, size_t n, uint64_t seed)
{
    if (n == 8) return hash64(load64(k), seed);
    uint64_t h = seed ^ (n * 0xA0761D6478BD642Full);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        h = mum(h ^ load64(k + i), 0x9E3779B97F4A7C15ull);
    if (i < n) {
        uint64_t tail = 0;
        memcpy(&tail, k + i, n - i);
        h = mum(h ^ tail, 0xE7037ED1A0B428DBull);
    }
    return mum(h, 0x8EBC6AF09C88C6E3ull);
}

/* hash_key: the hash of a stored or given key; 8-byte keys (the agent's)
 * without a call. */
static ALWAYS_INLINE uint64_t hash_key(const map_t *m, const void *key)
{
    if (m->key_size == 8) return hash64(load64(key), m->hash0);
    return hash_bytes(key, m->key_size, m->hash0);
}

/* tophash: the slot byte for a hash; never a marker value. */
static ALWAYS_INLINE uint8_t tophash(uint64_t hash)
{
    uint8_t top = (uint8_t)(hash >> 56);
    return top < MIN_TOPHASH ? (uint8_t)(top + MIN_TOPHASH) : top;
}

/* match_bytes: high bit set in each byte of x that is zero, and possibly
 * in a byte above such a byte (a borrow from a zero byte can flag a 0x01
 * above it). Three operations; used only where a flagged slot's key is
 * compared anyway, so a false candidate costs a compare, never a wrong
 * answer, and "no byte flagged" is exact. With x = tophashes ^ pattern of
 * a key's tophash (>= MIN_TOPHASH), a falsely flagged byte is a live slot:
 * an empty slot's 0 or 1 would need a tophash below 2, so a deleted key's
 * stale bytes are never compared. */
static ALWAYS_INLINE uint64_t match_bytes(uint64_t x)
{
    return (x - SWAR_LO) & ~x & SWAR_HI;
}

/* bytes_at_least: high bit set in each byte of w that is >= n, for
 * 1 <= n <= 0x80. Each low 7 bits + (0x80 - n) carries into the byte's
 * high bit iff they are >= n and never into the next byte; a byte whose
 * own high bit is set is >= 0x80 >= n. */
static ALWAYS_INLINE uint64_t bytes_at_least(uint64_t w, unsigned n)
{
    return (((w & ~SWAR_HI) + SWAR_LO * (0x80 - n)) | w) & SWAR_HI;
}

/* has_empty_rest: reports whether a tophash word holds an emptyRest.
 * Nothing but emptyRest ever follows an emptyRest in a chain, so a bucket
 * has one iff its last slot is one: a single byte test. */
static ALWAYS_INLINE bool has_empty_rest(uint64_t w)
{
    return (w >> 56) == EMPTY_REST;
}

/* zero_bytes: high bit set in each byte of x that is zero (exact, no carries). */
static ALWAYS_INLINE uint64_t zero_bytes(uint64_t x)
{
    return ~(((x & ~SWAR_HI) + ~SWAR_HI) | x | ~SWAR_HI);
}

static ALWAYS_INLINE size_t bucket_mask(unsigned B)
{
    return ((size_t)1 << (B & 63)) - 1;
}

static ALWAYS_INLINE bool growing(const map_t *m)
{
    return m->oldbuckets != NULL;
}

static ALWAYS_INLINE bool same_size_grow(const map_t *m)
{
    return (m->flags & FLAG_SAME_SIZE_GROW) != 0;
}

/* noldbuckets: bucket count of the old array while growing. */
static ALWAYS_INLINE size_t noldbuckets(const map_t *m)
{
    unsigned B = m->B;
    if (!same_size_grow(m)) B--;
    return (size_t)1 << B;
}

static ALWAYS_INLINE size_t oldbucket_mask(const map_t *m)
{
    return noldbuckets(m) - 1;
}

static ALWAYS_INLINE unsigned char *bucket_at(const map_t *m, unsigned char *array, size_t i)
{
    return array + i * m->bucketsize;
}

static ALWAYS_INLINE uint8_t *tophashes(unsigned char *b)
{
    return b;
}

static ALWAYS_INLINE unsigned char *key_at(const map_t *m, unsigned char *b, unsigned i)
{
    return b + TOPHASH_BYTES + (size_t)i * m->key_size;
}

static ALWAYS_INLINE unsigned char *value_at(const map_t *m, unsigned char *b, unsigned i)
{
    return b + m->valoff + (size_t)i * m->value_size;
}

static ALWAYS_INLINE unsigned char *overflow_of(const map_t *m, unsigned char *b)
{
    unsigned char *o;
    memcpy(&o, b + m->ovfoff, sizeof o);
    return o;
}

static ALWAYS_INLINE void set_overflow(const map_t *m, unsigned char *b, unsigned char *o)
{
    memcpy(b + m->ovfoff, &o, sizeof o);
}

static ALWAYS_INLINE bool is_empty(uint8_t top)
{
    return top <= EMPTY_ONE;
}

/* evacuated: reports whether bucket b (and its whole chain) has been
 * evacuated. Looking at slot 0 is enough: evacuate marks every slot of a
 * chain before anyone else can look. */
static ALWAYS_INLINE bool evacuated(unsigned char *b)
{
    uint8_t h = tophashes(b)[0];
    return h > EMPTY_ONE && h < MIN_TOPHASH;
}

static ALWAYS_INLINE bool keys_equal(const map_t *m, const unsigned char *slot,
                                     const void *key, uint64_t key64, int fast)
{
    if (fast) return load64(slot) == key64;
    return memcmp(slot, key, m->key_size) == 0;
}

/* over_load_factor: reports whether count entries in 2^B buckets exceed
 * the load factor (Go's exact integer rule). */
static bool over_load_factor(size_t count, unsigned B)
{
    return count > BUCKET_CNT &&
           count > LOAD_FACTOR_NUM * (((size_t)1 << B) / LOAD_FACTOR_DEN);
}

/* ------------------------------------------------------------------------ */
/* Randomness: private, never the host's rand()                             */
/* ------------------------------------------------------------------------ */

static _Atomic uint64_t seed_counter;

/* mix64: splitmix64's finalizer: distinct inputs give distinct,
 * well-mixed outputs. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* fresh_seed: a new random 64-bit value from AT_RANDOM and a counter. */
static uint64_t fresh_seed(void)
{
    static _Atomic uint64_t base;
    uint64_t b0 = atomic_load_explicit(&base, memory_order_relaxed);
    if (!b0) {
        /* Racing first calls compute the same value: no lock needed. */
        const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
        b0 = 0x243F6A8885A308D3ull;
        if (r) b0 ^= load64(r) ^ (load64(r + 8) << 1);
        b0 |= 1;
        atomic_store_explicit(&base, b0, memory_order_relaxed);
    }
    return mix64(b0 + atomic_fetch_add_explicit(&seed_counter, 1, memory_order_relaxed) *
                          0x9E3779B97F4A7C15ull);
}

static uint64_t map_rand(map_t *m)
{
    uint64_t x = m->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    m->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* incr_noverflow: counts a new overflow bucket, Go's way: exactly below
 * B = 16, then with probability 1/2^(B-15) so a uint16 suffices. */
static void incr_noverflow(map_t *m)
{
    m->overflow_exact++;
    if (m->B < 16) {
        m->noverflow++;
        return;
    }
    uint64_t mask = ((uint64_t)1 << (m->B - 15)) - 1;
    if ((map_rand(m) & mask) == 0) m->noverflow++;
}

/* ------------------------------------------------------------------------ */
/* Memory: generations, spare and slab overflow buckets                     */
/* ------------------------------------------------------------------------ */

static ALWAYS_INLINE gen_t *gen_of(unsigned char *array)
{
    return (gen_t *)(void *)array - 1;
}

/* array_buckets: buckets allocated for 2^B: base plus 1/16 spares from B=4. */
static size_t array_buckets(unsigned B)
{
    size_t base = (size_t)1 << B;
    return B >= 4 ? base + (base >> 4) : base;
}

/* alloc_array: a zeroed bucket array for 2^B buckets, with its gen header. */
static map_err_t alloc_array(map_t *m, unsigned B, unsigned char **out)
{
    if (B > MAX_B) return MAP_ERR_NOMEM;
    size_t n = array_buckets(B);
    if (n > (SIZE_MAX - sizeof(gen_t)) / m->bucketsize) return MAP_ERR_NOMEM;
    size_t bytes = sizeof(gen_t) + n * m->bucketsize;
    gen_t *g = m->alloc.alloc(m->alloc.ctx, bytes);
    if (!g) {
        m->last_error = MAP_ERR_NOMEM;
        return MAP_ERR_NOMEM;
    }
    g->next_retired = NULL;
    g->slabs = NULL;
    g->array_bytes = bytes;
    g->slab_bytes = 0;
    m->bytes += bytes;
    *out = (unsigned char *)(g + 1);
    return MAP_OK;
}

/* use_spares: makes array's spare buckets the current overflow pool. */
static void use_spares(map_t *m, unsigned char *array, unsigned B)
{
    m->next_overflow = bucket_at(m, array, (size_t)1 << B);
    m->end_overflow = bucket_at(m, array, array_buckets(B));
}

static size_t gen_bytes(const gen_t *g)
{
    return g->array_bytes + g->slab_bytes;
}

static void free_slabs(map_t *m, slab_t *s)
{
    while (s) {
        slab_t *next = s->next;
        m->bytes -= s->bytes;
        m->alloc.free(m->alloc.ctx, s);
        s = next;
    }
}

static void free_gen(map_t *m, gen_t *g)
{
    free_slabs(m, g->slabs);
    m->bytes -= g->array_bytes;
    m->alloc.free(m->alloc.ctx, g);
}

/* retire_array: releases a generation no longer reachable from the map,
 * or parks it while iterators may still read it. */
static void retire_array(map_t *m, unsigned char *array)
{
    gen_t *g = gen_of(array);
    if (m->iterators == 0) {
        free_gen(m, g);
        return;
    }
    g->next_retired = m->retired;
    m->retired = g;
    m->retired_bytes += gen_bytes(g);
}

/* release_retired: frees everything parked for iterators. */
static void release_retired(map_t *m)
{
    while (m->retired) {
        gen_t *g = m->retired;
        m->retired = g->next_retired;
        free_gen(m, g);
    }
    while (m->retired_slabs) {
        slab_t *s = m->retired_slabs;
        m->retired_slabs = s->next;
        m->bytes -= s->bytes;
        m->alloc.free(m->alloc.ctx, s);
    }
    m->retired_bytes = 0;
}

static size_t overflow_available(const map_t *m)
{
    return (size_t)(m->end_overflow - m->next_overflow) / m->bucketsize;
}

/* reserve_overflow: makes sure `need` overflow buckets can be handed out
 * by take_overflow without allocating. A new slab replaces the pool; the
 * rest of the old pool stays allocated (freed with its generation). */
static map_err_t reserve_overflow(map_t *m, size_t need)
{
    if (overflow_available(m) >= need) return MAP_OK;
    size_t per_slab = (SLAB_TARGET_BYTES - sizeof(slab_t)) / m->bucketsize;
    size_t scaled = ((size_t)1 << m->B) >> 6;   /* big maps: bigger slabs */
    size_t cap = per_slab > scaled ? per_slab : scaled;
    if (cap < need) cap = need;
    if (cap < 1) cap = 1;
    size_t bytes = sizeof(slab_t) + cap * m->bucketsize;
    slab_t *s = m->alloc.alloc(m->alloc.ctx, bytes);
    if (!s) {
        m->last_error = MAP_ERR_NOMEM;
        return MAP_ERR_NOMEM;
    }
    gen_t *g = gen_of(m->buckets);
    s->bytes = bytes;
    s->next = g->slabs;
    g->slabs = s;
    g->slab_bytes += bytes;
    m->bytes += bytes;
    m->next_overflow = (unsigned char *)(s + 1);
    m->end_overflow = m->next_overflow + cap * m->bucketsize;
    return MAP_OK;
}

/* take_overflow: links a zeroed overflow bucket after tail (the chain's
 * last bucket) from the reserved pool. */
static unsigned char *take_overflow(map_t *m, unsigned char *tail)
{
    DEBUG_ASSERT(overflow_available(m) > 0, "map: overflow pool empty");
    unsigned char *b = m->next_overflow;
    m->next_overflow += m->bucketsize;
    incr_noverflow(m);
    set_overflow(m, tail, b);
    return b;
}

/* new_overflow: take_overflow, allocating a slab first if needed. */
static unsigned char *new_overflow(map_t *m, unsigned char *tail)
{
    if (reserve_overflow(m, 1) != MAP_OK) return NULL;
    return take_overflow(m, tail);
}

/* ------------------------------------------------------------------------ */
/* Growth                                                                   */
/* ------------------------------------------------------------------------ */

/* set_limits: the bucket mask and the growth thresholds for the current
 * B, computed once per B instead of on every access:
 * over_load_factor(count, B) holds exactly when count > grow_count; too
 * many overflow buckets (Go's
 * tooManyOverflowBuckets: noverflow >= 2^min(B, 15), both sides
 * approximate above B = 15) exactly when noverflow >= overflow_limit. */
static void set_limits(map_t *m)
{
    m->mask = bucket_mask(m->B);
    size_t lf = LOAD_FACTOR_NUM * (((size_t)1 << m->B) / LOAD_FACTOR_DEN);
    m->grow_count = lf > BUCKET_CNT ? lf : BUCKET_CNT;
    m->overflow_limit = 1u << (m->B > 15 ? 15 : m->B);
}

/* hash_grow: starts a growth (doubling, or same-size when the load is
 * fine but overflow buckets are too many). Moves nothing. On allocation
 * failure the map is unchanged and growth is retried later. */
static map_err_t hash_grow(map_t *m)
{
    bool bigger = over_load_factor(m->count + 1, m->B);
    unsigned newB = m->B + (bigger ? 1u : 0u);
    unsigned char *array;
    if (alloc_array(m, newB, &array) != MAP_OK) {
        m->grow_failures++;
        m->grow_retry_at = m->count + m->count / 8 + 1;
        return MAP_ERR_NOMEM;
    }
    m->flags &= (uint8_t)~FLAG_SAME_SIZE_GROW;
    if (!bigger) m->flags |= FLAG_SAME_SIZE_GROW;
    m->oldbuckets = m->buckets;
    m->buckets = array;
    m->B = (uint8_t)newB;
    set_limits(m);
    m->nevacuate = 0;
    m->noverflow = 0;
    m->overflow_exact = 0;
    use_spares(m, array, newB);
    return MAP_OK;
}

/* should_grow: reports whether inserting one new key calls for a growth. */
static ALWAYS_INLINE bool should_grow(const map_t *m)
{
    if (LIKELY(m->count + 1 <= m->grow_count && m->noverflow < m->overflow_limit))
        return false;
    return !growing(m) && m->count >= m->grow_retry_at;
}

/* copy_value: copies a value (value_size bytes), the common sizes as
 * fixed-size moves, without a call. */
static ALWAYS_INLINE void copy_value(const map_t *m, void *dst, const void *v)
{
    switch (m->value_size) {
    case 8: memcpy(dst, v, 8); break;
    case 16: memcpy(dst, v, 16); break;
    case 24: memcpy(dst, v, 24); break;
    case 32: memcpy(dst, v, 32); break;
    default: memcpy(dst, v, m->value_size); break;
    }
}

/* copy_key: copies a key (key_size bytes) into a slot. */
static ALWAYS_INLINE void copy_key(const map_t *m, unsigned char *dst, const unsigned char *k)
{
    if (m->key_size == 8) memcpy(dst, k, 8);
    else memcpy(dst, k, m->key_size);
}

/* evacuation_dest: where evacuate writes next: a bucket and a slot. */
typedef struct {
    unsigned char *b;
    unsigned i;
} evac_dest_t;

/* goes_to_y: reports whether a live entry of an old bucket moves to Y. */
static ALWAYS_INLINE bool goes_to_y(const map_t *m, unsigned char *key, size_t newbit)
{
    if (same_size_grow(m)) return false;
    return (hash_key(m, key) & newbit) != 0;
}

/* chain_overflow_buckets: the number of overflow buckets in chain b. */
static size_t chain_overflow_buckets(const map_t *m, unsigned char *b)
{
    size_t n = 0;
    for (b = overflow_of(m, b); b; b = overflow_of(m, b)) n++;
    return n;
}

/* advance_evacuation_mark: moves nevacuate past evacuated buckets (at most
 * EVACUATE_SCAN_MAX of them) and finishes the growth at the end. */
static void advance_evacuation_mark(map_t *m, size_t newbit)
{
    m->nevacuate++;
    size_t stop = m->nevacuate + EVACUATE_SCAN_MAX;
    if (stop > newbit) stop = newbit;
    while (m->nevacuate != stop &&
           evacuated(bucket_at(m, m->oldbuckets, m->nevacuate)))
        m->nevacuate++;
    if (m->nevacuate == newbit) {
        unsigned char *old = m->oldbuckets;
        m->oldbuckets = NULL;
        m->flags &= (uint8_t)~FLAG_SAME_SIZE_GROW;
        retire_array(m, old);
    }
}

/* live_slots: high bit set in each byte of tophash word w that holds a
 * live entry (tophash >= MIN_TOPHASH). */
static ALWAYS_INLINE uint64_t live_slots(uint64_t w)
{
    return bytes_at_least(w, MIN_TOPHASH);
}

/* evacuate_chain: moves every live entry of old chain b to dest[0] (X) or
 * dest[1] (Y) and marks the old slots. Overflow buckets must be reserved. */
static void evacuate_chain(map_t *m, unsigned char *b, size_t newbit, evac_dest_t *dest)
{
    for (; b; b = overflow_of(m, b)) {
        uint64_t w = load64(tophashes(b));
        uint64_t marks = SWAR_LO * EVACUATED_EMPTY;
        /* Visit the live slots only: testing each slot for emptiness
         * would branch at random. */
        for (uint64_t live = live_slots(w); live; live &= live - 1) {
            unsigned i = (unsigned)__builtin_ctzll(live) >> 3;
            unsigned shift = 8 * i;
            uint8_t top = (uint8_t)(w >> shift);
            unsigned char *k = key_at(m, b, i);
            unsigned useY = goes_to_y(m, k, newbit) ? 1u : 0u;
            marks ^= (uint64_t)(EVACUATED_EMPTY ^ (EVACUATED_X + useY)) << shift;
            evac_dest_t *d = &dest[useY];
            if (UNLIKELY(d->i == BUCKET_CNT)) {
                d->b = take_overflow(m, d->b);
                d->i = 0;
            }
            tophashes(d->b)[d->i] = top;
            copy_key(m, key_at(m, d->b, d->i), k);
            copy_value(m, value_at(m, d->b, d->i), value_at(m, b, i));
            d->i++;
        }
        store64(tophashes(b), marks);
    }
}

/* evacuate: moves old bucket `oldbucket` (and its chain) to the new array,
 * all or nothing. Every overflow bucket the destinations need is reserved
 * first, so a failed allocation leaves the bucket untouched.
 * @return MAP_OK, or MAP_ERR_NOMEM (bucket still unevacuated). */
static map_err_t evacuate(map_t *m, size_t oldbucket)
{
    unsigned char *b = bucket_at(m, m->oldbuckets, oldbucket);
    size_t newbit = noldbuckets(m);

    if (!evacuated(b)) {
        /* The destinations need no more overflow buckets than the chain
         * has: with L buckets it holds n <= 8L entries, split nx + ny, and
         * ceil(nx/8) - 1 + ceil(ny/8) - 1 <= ceil(n/8) - 1 <= L - 1. So
         * nothing is hashed twice to count, and a lone bucket (most of
         * them) reserves nothing. */
        if (overflow_of(m, b) &&
            reserve_overflow(m, chain_overflow_buckets(m, b)) != MAP_OK)
            return MAP_ERR_NOMEM;
        evac_dest_t dest[2];
        dest[0].b = bucket_at(m, m->buckets, oldbucket);
        dest[0].i = 0;
        dest[1].b = same_size_grow(m) ? NULL : bucket_at(m, m->buckets, oldbucket + newbit);
        dest[1].i = 0;
        evacuate_chain(m, b, newbit, dest);
    }
    if (oldbucket == m->nevacuate) advance_evacuation_mark(m, newbit);
    return MAP_OK;
}

/* grow_work: evacuates the old bucket feeding `bucket`, then one more to
 * make progress. Best effort: failures leave buckets unevacuated. */
static void grow_work(map_t *m, size_t bucket)
{
    (void)evacuate(m, bucket & oldbucket_mask(m));
    if (growing(m)) (void)evacuate(m, m->nevacuate);
}

/* write_chain_growing: write_chain while a growth is in progress. */
static unsigned char *write_chain_growing(map_t *m, uint64_t hash, bool *in_old)
{
    size_t bucket = hash & m->mask;
    grow_work(m, bucket);
    if (growing(m)) {
        unsigned char *ob = bucket_at(m, m->oldbuckets, hash & oldbucket_mask(m));
        if (!evacuated(ob)) {
            *in_old = true;
            return ob;
        }
    }
    return bucket_at(m, m->buckets, bucket);
}

/* write_chain: the chain a write to hash must use: the new bucket, or the
 * old one when its evacuation failed (it is then authoritative). */
static ALWAYS_INLINE unsigned char *write_chain(map_t *m, uint64_t hash, bool *in_old)
{
    *in_old = false;
    if (UNLIKELY(growing(m))) return write_chain_growing(m, hash, in_old);
    return bucket_at(m, m->buckets, hash & m->mask);
}

/* ------------------------------------------------------------------------ */
/* Lookup                                                                   */
/* ------------------------------------------------------------------------ */

/* read_chain: the authoritative chain for hash (readers never evacuate). */
static ALWAYS_INLINE unsigned char *read_chain(const map_t *m, uint64_t hash)
{
    size_t mask = m->mask;
    if (UNLIKELY(growing(m))) {
        size_t omask = same_size_grow(m) ? mask : mask >> 1;
        unsigned char *ob = bucket_at(m, m->oldbuckets, hash & omask);
        if (!evacuated(ob)) return ob;
    }
    return bucket_at(m, m->buckets, hash & mask);
}

/* match_in_bucket: the slot of b holding key, among the slots whose
 * tophash byte (in word, b's tophash array) equals pattern's; -1 if none. */
static ALWAYS_INLINE int match_in_bucket(const map_t *m, unsigned char *b, uint64_t word,
                                         uint64_t pattern, const void *key,
                                         uint64_t key64, int fast)
{
    uint64_t match = match_bytes(word ^ pattern);
    while (match) {
        unsigned i = (unsigned)__builtin_ctzll(match) >> 3;
        unsigned char *k = fast ? b + TOPHASH_BYTES + 8 * i : key_at(m, b, i);
        if (keys_equal(m, k, key, key64, fast)) return (int)i;
        match &= match - 1;
    }
    return -1;
}

/* find_in_chain: the bucket and slot of key in chain b, or NULL. Uses the
 * SWAR tophash test; stops at the first bucket containing an emptyRest.
 *
 * expect_hit (a constant at each call site): the caller expects the key to
 * be there (a delete), so the cache line after the tophash line is
 * prefetched together with it. The 8 tophash bytes and 8 keys take 72
 * bytes and a bucket starts at any multiple of 16 bytes, so the key
 * compared is on the next line half the time; without the prefetch that is
 * a second miss that starts only once the tophash has arrived. Measured on
 * 10M entries: delete 113 -> 99 ns. Lookups do not do it: at 100k entries
 * it made a hit 10 % faster and a miss, which needs no key, 10 % slower. */
static ALWAYS_INLINE unsigned char *find_in_chain(const map_t *m, unsigned char *b,
                                                  uint8_t top, const void *key,
                                                  uint64_t key64, int fast,
                                                  int expect_hit, unsigned *slot)
{
    uint64_t pattern = SWAR_LO * top;
    do {
        if (expect_hit) __builtin_prefetch(b + CACHE_LINE);
        uint64_t word = load64(tophashes(b));
        int i = match_in_bucket(m, b, word, pattern, key, key64, fast);
        if (i >= 0) {
            *slot = (unsigned)i;
            return b;
        }
        if (has_empty_rest(word)) return NULL;
        b = overflow_of(m, b);
    } while (b);
    return NULL;
}

static ALWAYS_INLINE void *lookup_impl(const map_t *m, const void *key,
                                       uint64_t key64, int fast)
{
    if (m->count == 0) return NULL;
    read_check(m);
    uint64_t hash = fast ? hash64(key64, m->hash0) : hash_key(m, key);
    unsigned slot;
    unsigned char *b = find_in_chain(m, read_chain(m, hash), tophash(hash),
                                     key, key64, fast, 0, &slot);
    return b ? value_at(m, b, slot) : NULL;
}

void *map_lookup(const map_t *m, const void *key)
{
    return lookup_impl(m, key, 0, 0);
}

void *map_lookup64(const map_t *m, uint64_t key)
{
    DEBUG_ASSERT(m->key_size == 8, "map: map_lookup64 on a map whose keys are not 8 bytes");
    return lookup_impl(m, NULL, key, 1);
}

/* lookup_entry: key and value pointers of key in the current map, or false. */
static bool lookup_entry(const map_t *m, const unsigned char *key,
                         unsigned char **key_out, unsigned char **value_out)
{
    if (m->count == 0) return false;
    uint64_t hash = hash_key(m, key);
    unsigned slot;
    unsigned char *b = find_in_chain(m, read_chain(m, hash), tophash(hash),
                                     key, 0, 0, 0, &slot);
    if (!b) return false;
    *key_out = key_at(m, b, slot);
    *value_out = value_at(m, b, slot);
    return true;
}

/* ------------------------------------------------------------------------ */
/* Assign                                                                   */
/* ------------------------------------------------------------------------ */

/* insert_site: the result of walking a chain for assign. */
typedef struct {
    unsigned char *found;       /* bucket holding the key, or NULL */
    unsigned found_slot;
    unsigned char *empty;       /* first empty slot's bucket in chain order, or NULL */
    unsigned empty_slot;
    unsigned char *tail;        /* last bucket of the chain */
} insert_site_t;

static ALWAYS_INLINE void scan_for_insert(const map_t *m, unsigned char *b, uint8_t top,
                                          const void *key, uint64_t key64, int fast,
                                          insert_site_t *site)
{
    uint64_t pattern = SWAR_LO * top;
    site->found = NULL;
    site->empty = NULL;
    site->empty_slot = 0;
    for (;;) {
        uint64_t word = load64(tophashes(b));
        int i = match_in_bucket(m, b, word, pattern, key, key64, fast);
        if (i >= 0) {
            site->found = b;
            site->found_slot = (unsigned)i;
            return;
        }
        bool rest = has_empty_rest(word);
        if (!site->empty) {
            /* emptyRest or emptyOne: the bytes below 2. */
            uint64_t empty = ~bytes_at_least(word, EMPTY_ONE + 1) & SWAR_HI;
            if (empty) {
                site->empty = b;
                site->empty_slot = (unsigned)__builtin_ctzll(empty) >> 3;
            }
        }
        unsigned char *next = overflow_of(m, b);
        if (rest || !next) {
            /* Nothing live after an emptyRest: the key is absent. */
            site->tail = b;
            return;
        }
        b = next;
    }
}

/* set_value: copies src (or zeros when src is NULL) into a value slot;
 * the common small sizes as fixed-size moves, without a call. */
static ALWAYS_INLINE void set_value(const map_t *m, unsigned char *v, const void *src)
{
    static const unsigned char zeros[MAP_MAX_VALUE_SIZE];
    copy_value(m, v, src ? src : zeros);
}

/* assign_impl: finds or inserts key. A new entry's value is `value`
 * (zeros when NULL); an existing entry's value is left to the caller. */
static ALWAYS_INLINE map_err_t assign_impl(map_t *m, const void *key, uint64_t key64,
                                           int fast, const void *value, void **value_out,
                                           bool *inserted)
{
    uint64_t hash = fast ? hash64(key64, m->hash0) : hash_key(m, key);
    uint8_t top = tophash(hash);
    map_err_t err = MAP_OK;
    write_begin(m);

    if (UNLIKELY(!m->buckets)) {
        if ((err = alloc_array(m, m->B, &m->buckets)) != MAP_OK) goto out;
        use_spares(m, m->buckets, m->B);
    }

    insert_site_t site;
    bool in_old;
    for (;;) {
        unsigned char *chain = write_chain(m, hash, &in_old);
        scan_for_insert(m, chain, top, key, key64, fast, &site);
        if (site.found) {
            *value_out = value_at(m, site.found, site.found_slot);
            if (inserted) *inserted = false;
            goto out;
        }
        /* A new key: grow first if needed, then look again (Go's "again"). */
        if (!should_grow(m) || hash_grow(m) != MAP_OK) break;
    }

    if (!site.empty) {
        /* The chain is full. An old chain (its evacuation failed) gets no
         * new buckets: they would belong to a dying generation. */
        unsigned char *nb = in_old ? NULL : new_overflow(m, site.tail);
        if (!nb) {
            m->last_error = MAP_ERR_NOMEM;
            err = MAP_ERR_NOMEM;
            goto out;
        }
        site.empty = nb;
        site.empty_slot = 0;
    }
    unsigned char *b = site.empty;
    unsigned i = site.empty_slot;
    if (fast) memcpy(key_at(m, b, i), &key64, 8);
    else memcpy(key_at(m, b, i), key, m->key_size);
    set_value(m, value_at(m, b, i), value);
    tophashes(b)[i] = top;
    m->count++;
    *value_out = value_at(m, b, i);
    if (inserted) *inserted = true;
out:
    write_end(m);
    return err;
}

map_err_t map_assign(map_t *m, const void *key, void **value_out, bool *inserted)
{
    return assign_impl(m, key, 0, 0, NULL, value_out, inserted);
}

map_err_t map_assign64(map_t *m, uint64_t key, void **value_out, bool *inserted)
{
    DEBUG_ASSERT(m->key_size == 8, "map: map_assign64 on a map whose keys are not 8 bytes");
    return assign_impl(m, NULL, key, 1, NULL, value_out, inserted);
}

map_err_t map_insert(map_t *m, const void *key, const void *value)
{
    void *slot;
    bool inserted;
    map_err_t err = assign_impl(m, key, 0, 0, value, &slot, &inserted);
    if (err == MAP_OK && !inserted) set_value(m, slot, value);
    return err;
}

map_err_t map_insert64(map_t *m, uint64_t key, const void *value)
{
    DEBUG_ASSERT(m->key_size == 8, "map: map_insert64 on a map whose keys are not 8 bytes");
    void *slot;
    bool inserted;
    map_err_t err = assign_impl(m, NULL, key, 1, value, &slot, &inserted);
    if (err == MAP_OK && !inserted) set_value(m, slot, value);
    return err;
}

/* ------------------------------------------------------------------------ */
/* Delete                                                                   */
/* ------------------------------------------------------------------------ */

/* bytes_upto: a mask of the bytes of slots 0..i of a tophash word. */
static ALWAYS_INLINE uint64_t bytes_upto(unsigned i)
{
    return ~0ull >> (56 - 8 * i);
}

/* empty_one_run: the bytes of the run of emptyOne slots that ends at slot
 * i (itself emptyOne) of tophash word w, going down; *to_start is set when
 * the run reaches slot 0. Branch-free: which slots a delete empties is
 * random, so a byte-at-a-time walk mispredicts on most deletes (it cost
 * more than the rest of the delete together). */
static ALWAYS_INLINE uint64_t empty_one_run(uint64_t w, unsigned i, bool *to_start)
{
    uint64_t upto = bytes_upto(i);
    /* High bit of every slot at or below i that is not emptyOne. */
    uint64_t stop = ~zero_bytes(w ^ (SWAR_LO * EMPTY_ONE)) & SWAR_HI & upto;
    /* The bytes up to the highest such slot (none when stop is 0), as
     * arithmetic: a branch here would mispredict. */
    uint64_t below = ((2ull << (63 - __builtin_clzll(stop | 1))) - 1) & -(uint64_t)(stop != 0);
    *to_start = stop == 0;
    return upto & ~below;
}

/* mark_empty_rest_before: the first slot of bucket b (not the chain head)
 * has just become emptyRest: carry emptyRest back through the trailing
 * emptyOne slots of the buckets before it. Rare: only chains of two or
 * more buckets get here. Returns true (so a delete can tail-call it). */
static bool mark_empty_rest_before(const map_t *m, unsigned char *head, unsigned char *b)
{
    while (b != head) {
        unsigned char *prev = head;
        while (overflow_of(m, prev) != b) prev = overflow_of(m, prev);
        b = prev;
        uint64_t w = load64(tophashes(b));
        if ((w >> 56) != EMPTY_ONE) break;
        bool to_start;
        store64(tophashes(b), w & ~empty_one_run(w, BUCKET_CNT - 1, &to_start));
        if (!to_start) break;
    }
    return true;
}

/* reseed_if_idle: Go re-seeds an emptied map so a flood of colliding keys
 * cannot be replayed against it; only safe when nothing depends on the
 * old placement: no live iterator, no growth (see the essay). */
static void reseed_if_idle(map_t *m)
{
    if (m->iterators == 0 && !growing(m)) m->hash0 = map_rand(m);
}

/* delete_at: empties slot i of bucket b (in the chain starting at head)
 * and ends the write; returns true. The slot becomes emptyOne; if nothing
 * live follows it in the chain, it and the emptyOne slots before it
 * become emptyRest instead (across bucket boundaries back to the head).
 * The tophash word is written once: a byte store followed by a word load
 * of the same tophash would stall store forwarding. */
static ALWAYS_INLINE bool delete_at(map_t *m, unsigned char *head, unsigned char *b,
                                    unsigned i)
{
    if (UNLIKELY(--m->count == 0)) reseed_if_idle(m);
    unsigned shift = 8 * i;
    uint64_t w = (load64(tophashes(b)) & ~(0xffull << shift)) |
                 ((uint64_t)EMPTY_ONE << shift);
    bool rest_follows;
    if (UNLIKELY(i == BUCKET_CNT - 1)) {
        unsigned char *next = overflow_of(m, b);
        rest_follows = !next || tophashes(next)[0] == EMPTY_REST;
    } else {
        rest_follows = ((w >> shift) >> 8) == 0;
    }
    bool to_start;
    uint64_t run = empty_one_run(w, i, &to_start) & -(uint64_t)rest_follows;
    store64(tophashes(b), w & ~run);
    write_end(m);
    /* Bitwise &: b != head is the one predictable test; a short-circuit
     * would branch on the random ones. */
    if (UNLIKELY(rest_follows & to_start & (b != head)))
        return mark_empty_rest_before(m, head, b);
    return true;
}

/* delete_in_chain: deletes key from the chain starting at head. */
static ALWAYS_INLINE bool delete_in_chain(map_t *m, unsigned char *head, uint8_t top,
                                          const void *key, uint64_t key64, int fast,
                                          void *value_out)
{
    unsigned slot;
    unsigned char *b = find_in_chain(m, head, top, key, key64, fast, 1, &slot);
    if (!b) {
        write_end(m);
        return false;
    }
    if (value_out) copy_value(m, value_out, value_at(m, b, slot));
    return delete_at(m, head, b, slot);
}

/* delete_growing: a delete while the map grows (evacuates first). Kept
 * out of line so the common delete needs no stack frame. */
static __attribute__((noinline)) bool delete_growing(map_t *m, const void *key,
                                                     uint64_t key64, int fast,
                                                     void *value_out)
{
    uint64_t hash = fast ? hash64(key64, m->hash0) : hash_key(m, key);
    write_begin(m);
    bool in_old;
    unsigned char *head = write_chain(m, hash, &in_old);
    return delete_in_chain(m, head, tophash(hash), key, key64, fast, value_out);
}

static ALWAYS_INLINE bool delete_impl(map_t *m, const void *key, uint64_t key64,
                                      int fast, void *value_out)
{
    if (m->count == 0) return false;
    if (UNLIKELY(growing(m))) return delete_growing(m, key, key64, fast, value_out);
    uint64_t hash = fast ? hash64(key64, m->hash0) : hash_key(m, key);
    write_begin(m);
    unsigned char *head = bucket_at(m, m->buckets, hash & m->mask);
    return delete_in_chain(m, head, tophash(hash), key, key64, fast, value_out);
}

bool map_delete(map_t *m, const void *key, void *value_out)
{
    return delete_impl(m, key, 0, 0, value_out);
}

bool map_delete64(map_t *m, uint64_t key, void *value_out)
{
    DEBUG_ASSERT(m->key_size == 8, "map: map_delete64 on a map whose keys are not 8 bytes");
    return delete_impl(m, NULL, key, 1, value_out);
}

/* map_prefetch64: see map.h. The header fields are read with relaxed
 * atomic loads because a writer may be changing them (growth) under a
 * lock this caller does not hold: any mix of old and new values yields an
 * address that is only prefetched, never dereferenced, and a prefetch of
 * an unmapped address does not fault. Not instrumented by MAP_DEBUG's
 * hashWriting check for the same reason. */
#define MAP_PREFETCH_LINE 64u             /* cache line bytes (x86-64) */

void map_prefetch64(const map_t *m, uint64_t key)
{
    const unsigned char *b = __atomic_load_n(&m->buckets, __ATOMIC_RELAXED);
    if (!b) return;
    uint64_t hash = hash64(key, __atomic_load_n(&m->hash0, __ATOMIC_RELAXED));
    size_t mask = __atomic_load_n(&m->mask, __ATOMIC_RELAXED);
    uint32_t size = __atomic_load_n(&m->bucketsize, __ATOMIC_RELAXED);
    /* Every line of the bucket: a lookup reads the tophash line, then the
     * line of the matching key, then its value's, and an assign the
     * overflow pointer at the end, each load waiting for the one before;
     * prefetched at once, their misses overlap (a bucket of 8-byte keys
     * and values is 144 bytes: three or four lines). At most 5 lines
     * (256 bytes from any offset in a line). */
    const unsigned char *p = b + (hash & mask) * size;
    if (size > 4 * MAP_PREFETCH_LINE) size = 4 * MAP_PREFETCH_LINE;
    uintptr_t first = (uintptr_t)p & ~(uintptr_t)(MAP_PREFETCH_LINE - 1);
    for (uintptr_t a = first; a < (uintptr_t)p + size; a += MAP_PREFETCH_LINE)
        __builtin_prefetch((const void *)a, 1);
}

/* ------------------------------------------------------------------------ */
/* Clear                                                                    */
/* ------------------------------------------------------------------------ */

/* mark_all_empty_rest: every slot of array (base buckets and chains) becomes
 * emptyRest, so live iterators walking it find nothing more. */
static void mark_all_empty_rest(const map_t *m, unsigned char *array, size_t nbuckets)
{
    for (size_t i = 0; i < nbuckets; i++)
        for (unsigned char *b = bucket_at(m, array, i); b; b = overflow_of(m, b))
            memset(tophashes(b), EMPTY_REST, BUCKET_CNT);
}

void map_clear(map_t *m)
{
    if (m->count == 0) return;
    write_begin(m);
    size_t nbuckets = (size_t)1 << m->B;
    gen_t *g = gen_of(m->buckets);

    if (growing(m)) {
        if (m->iterators) mark_all_empty_rest(m, m->oldbuckets, noldbuckets(m));
        retire_array(m, m->oldbuckets);
        m->oldbuckets = NULL;
    }
    if (m->iterators) {
        /* Iterators may be inside overflow slabs: mark them, keep them. */
        mark_all_empty_rest(m, m->buckets, nbuckets);
        slab_t *s = g->slabs;
        while (s) {
            slab_t *next = s->next;
            s->next = m->retired_slabs;
            m->retired_slabs = s;
            m->retired_bytes += s->bytes;
            s = next;
        }
    } else {
        free_slabs(m, g->slabs);
    }
    g->slabs = NULL;
    g->slab_bytes = 0;
    memset(m->buckets, 0, array_buckets(m->B) * m->bucketsize);
    use_spares(m, m->buckets, m->B);

    m->flags &= (uint8_t)~FLAG_SAME_SIZE_GROW;
    m->nevacuate = 0;
    m->noverflow = 0;
    m->overflow_exact = 0;
    m->count = 0;
    m->grow_retry_at = 0;
    if (m->iterators == 0) m->hash0 = map_rand(m);
    write_end(m);
}

/* ------------------------------------------------------------------------ */
/* Creation and destruction                                                 */
/* ------------------------------------------------------------------------ */

map_err_t map_new(size_t key_size, size_t value_size, size_t hint,
                  const map_allocator_t *allocator, map_t **out)
{
    if (!out || !allocator || !allocator->alloc || !allocator->free ||
        key_size < 1 || key_size > MAP_MAX_KEY_SIZE || value_size > MAP_MAX_VALUE_SIZE)
        return MAP_ERR_INVALID;
    map_t *m = allocator->alloc(allocator->ctx, sizeof *m);
    if (!m) return MAP_ERR_NOMEM;
    memset(m, 0, sizeof *m);
    m->alloc = *allocator;
    m->key_size = (uint32_t)key_size;
    m->value_size = (uint32_t)value_size;
    m->valoff = (uint32_t)(TOPHASH_BYTES + BUCKET_CNT * key_size);
    m->ovfoff = (uint32_t)((m->valoff + BUCKET_CNT * value_size + 7) & ~(size_t)7);
    m->bucketsize = m->ovfoff + (uint32_t)sizeof(void *);
    m->rng = fresh_seed() | 1;
    m->hash0 = fresh_seed();
    m->bytes = sizeof *m;

    unsigned B = 0;
    while (over_load_factor(hint, B) && B < MAX_B) B++;
    m->B = (uint8_t)B;
    set_limits(m);
    if (B > 0) {
        if (alloc_array(m, B, &m->buckets) != MAP_OK) {
            allocator->free(allocator->ctx, m);
            return MAP_ERR_NOMEM;
        }
        use_spares(m, m->buckets, B);
    }
    *out = m;
    return MAP_OK;
}

void map_free(map_t *m)
{
    if (!m) return;
    DEBUG_ASSERT(m->iterators == 0, "map: map_free with a live iterator");
    release_retired(m);
    if (m->oldbuckets) free_gen(m, gen_of(m->oldbuckets));
    if (m->buckets) free_gen(m, gen_of(m->buckets));
    m->alloc.free(m->alloc.ctx, m);
}

size_t map_count(const map_t *m)
{
    return m->count;
}

/* ------------------------------------------------------------------------ */
/* Iteration                                                                */
/* ------------------------------------------------------------------------ */

void map_iter_init(map_t *m, map_iter_t *it)
{
    memset(it, 0, sizeof *it);
    it->map = m;
    it->check_bucket = MAP_NO_CHECK;
    m->iterators++;
    if (m->count == 0 || !m->buckets) {
        it->done = true;
        return;
    }
    it->buckets = m->buckets;
    it->B = m->B;
    uint64_t r = map_rand(m);
    it->start_bucket = (size_t)r & bucket_mask(it->B);
    it->offset = (uint8_t)((r >> 56) & (BUCKET_CNT - 1));
    it->bucket = it->start_bucket;
}

/* iter_pick_bucket: the chain to walk for snapshot bucket `bucket`, and the
 * filter to apply (MAP_NO_CHECK, or the bucket whose entries to keep). */
static unsigned char *iter_pick_bucket(map_iter_t *it, size_t bucket, size_t *check)
{
    map_t *m = it->map;
    *check = MAP_NO_CHECK;
    if (growing(m) && it->buckets == m->buckets) {
        /* The snapshot is the new array of the growth in progress: an old
         * bucket not yet evacuated holds the entries for this bucket. */
        unsigned char *ob = bucket_at(m, m->oldbuckets, bucket & oldbucket_mask(m));
        if (!evacuated(ob)) {
            *check = bucket;
            return ob;
        }
    }
    return bucket_at(m, it->buckets, bucket);
}

bool map_iter_next(map_iter_t *it, const void **key_out, void **value_out)
{
    if (it->done) return false;
    map_t *m = it->map;
    read_check(m);
    unsigned char *b = it->bptr;
    size_t check = it->check_bucket;
    unsigned i = it->slot;
    size_t itmask = bucket_mask(it->B);

    for (;;) {
        if (!b) {
            if (it->bucket == it->start_bucket && it->wrapped) {
                it->done = true;
                return false;
            }
            b = iter_pick_bucket(it, it->bucket, &check);
            if (++it->bucket == (size_t)1 << it->B) {
                it->bucket = 0;
                it->wrapped = true;
            }
            i = 0;
        }
        for (; i < BUCKET_CNT; i++) {
            unsigned s = (i + it->offset) & (BUCKET_CNT - 1);
            uint8_t top = tophashes(b)[s];
            if (is_empty(top) || top == EVACUATED_EMPTY) continue;
            unsigned char *k = key_at(m, b, s);
            unsigned char *v = value_at(m, b, s);
            if (check != MAP_NO_CHECK && !same_size_grow(m) &&
                (hash_key(m, k) & itmask) != check)
                continue;   /* produced when the sibling bucket is visited */
            if (top == EVACUATED_X || top == EVACUATED_Y) {
                /* Moved since the snapshot: the current copy is
                 * authoritative, and absent means deleted. */
                if (!lookup_entry(m, k, &k, &v)) continue;
            }
            it->bptr = b;
            it->slot = (uint8_t)(i + 1);
            it->check_bucket = check;
            if (key_out) *key_out = k;
            if (value_out) *value_out = v;
            return true;
        }
        b = overflow_of(m, b);
        i = 0;
    }
}

void map_iter_done(map_iter_t *it)
{
    map_t *m = it->map;
    if (!m) return;
    it->map = NULL;
    it->done = true;
    DEBUG_ASSERT(m->iterators > 0, "map: map_iter_done without map_iter_init");
    if (--m->iterators == 0) release_retired(m);
}

/* ------------------------------------------------------------------------ */
/* Stats                                                                    */
/* ------------------------------------------------------------------------ */

void map_get_stats(const map_t *m, map_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->count = m->count;
    out->B = m->B;
    out->buckets = (size_t)1 << m->B;
    out->noverflow = m->noverflow;
    out->overflow_buckets = m->overflow_exact;
    out->growing = growing(m);
    out->same_size_grow = growing(m) && same_size_grow(m);
    out->nevacuate = growing(m) ? m->nevacuate : 0;
    out->noldbuckets = growing(m) ? noldbuckets(m) : 0;
    out->bytes = m->bytes;
    out->retired_bytes = m->retired_bytes;
    out->grow_failures = m->grow_failures;
    out->last_error = m->last_error;
    out->iterators = m->iterators;
}

/* ------------------------------------------------------------------------ */
/* Debugging: the invariant checker (MAP_DEBUG builds only: it formats with */
/* vsnprintf, which may allocate, so it never enters the agent)             */
/* ------------------------------------------------------------------------ */
#ifdef MAP_DEBUG
#include <stdarg.h>
#include <stdio.h>

/* check_fail: formats a violation (tests only: vsnprintf may allocate). */
__attribute__((format(printf, 3, 4)))
static int check_fail(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* check_chain: invariants of one chain; adds its live cells to *live. */
static int check_chain(const map_t *m, unsigned char *head, size_t index, bool old,
                       size_t *live, char *why, size_t whylen)
{
    bool rest = false;
    bool evac = evacuated(head);
    size_t mask = old ? oldbucket_mask(m) : m->mask;
    const char *which = old ? "old" : "new";
    unsigned n = 0;
    for (unsigned char *b = head; b; b = overflow_of(m, b), n++) {
        if (n > 1000000) return check_fail(why, whylen, "%s bucket %zu: chain loops", which, index);
        for (unsigned i = 0; i < BUCKET_CNT; i++) {
            uint8_t top = tophashes(b)[i];
            if (evac) {
                if (top < EVACUATED_X || top > EVACUATED_EMPTY)
                    return check_fail(why, whylen, "%s bucket %zu: evacuated chain has tophash %u",
                                      which, index, top);
                continue;
            }
            if (top > EMPTY_ONE && top < MIN_TOPHASH)
                return check_fail(why, whylen, "%s bucket %zu: stray evacuation mark %u",
                                  which, index, top);
            if (top == EMPTY_REST) { rest = true; continue; }
            if (top == EMPTY_ONE) continue;
            if (rest)
                return check_fail(why, whylen, "%s bucket %zu: live slot after emptyRest", which, index);
            unsigned char *k = key_at(m, b, i);
            uint64_t h = hash_key(m, k);
            if (tophash(h) != top)
                return check_fail(why, whylen, "%s bucket %zu: tophash %u != hash's %u",
                                  which, index, top, tophash(h));
            if ((h & mask) != index)
                return check_fail(why, whylen, "%s bucket %zu: key belongs in bucket %zu",
                                  which, index, (size_t)(h & mask));
            unsigned char *fk, *fv;
            if (!lookup_entry(m, k, &fk, &fv) || fk != k)
                return check_fail(why, whylen, "%s bucket %zu slot %u: key not found by lookup",
                                  which, index, i);
            (*live)++;
        }
    }
    return 0;
}

map_err_t map_debug_set_seed(map_t *m, uint64_t seed)
{
    if (!m || m->count || growing(m) || m->iterators) return MAP_ERR_INVALID;
    m->hash0 = mix64(seed + 0x9E3779B97F4A7C15ull);
    m->rng = (m->hash0 * 0x2545F4914F6CDD1Dull) | 1;
    return MAP_OK;
}

uint64_t map_debug_hash(const map_t *m, const void *key)
{
    return hash_key(m, key);
}

size_t map_debug_chain(const map_t *m, bool old, size_t bucket, uint8_t *out, size_t max)
{
    unsigned char *array = old ? m->oldbuckets : m->buckets;
    if (!array) return 0;
    size_t n = 0;
    for (unsigned char *b = bucket_at(m, array, bucket); b; b = overflow_of(m, b), n++)
        for (unsigned i = 0; i < BUCKET_CNT; i++)
            if (n * BUCKET_CNT + i < max) out[n * BUCKET_CNT + i] = tophashes(b)[i];
    return n;
}

int map_debug_check(const map_t *m, char *why, size_t whylen)
{
    size_t live = 0;
    if (m->B > MAX_B) return check_fail(why, whylen, "B = %u out of range", m->B);
    if (!m->buckets) {
        if (m->count) return check_fail(why, whylen, "count %zu with no buckets", m->count);
        return 0;
    }
    size_t nb = (size_t)1 << m->B;
    if (m->mask != nb - 1) return check_fail(why, whylen, "mask %zx for B = %u", m->mask, m->B);
    if (growing(m)) {
        size_t nold = noldbuckets(m);
        if (m->nevacuate >= nold)
            return check_fail(why, whylen, "nevacuate %zu >= old count %zu", m->nevacuate, nold);
        for (size_t i = 0; i < nold; i++) {
            unsigned char *ob = bucket_at(m, m->oldbuckets, i);
            if (i < m->nevacuate && !evacuated(ob))
                return check_fail(why, whylen, "old bucket %zu < nevacuate %zu not evacuated",
                                  i, m->nevacuate);
            if (check_chain(m, ob, i, true, &live, why, whylen)) return -1;
            if (!evacuated(ob)) {
                /* Its destinations must still be untouched. */
                size_t x = i, y = i + (same_size_grow(m) ? 0 : nold);
                if (tophashes(bucket_at(m, m->buckets, x))[0] != EMPTY_REST ||
                    overflow_of(m, bucket_at(m, m->buckets, x)) ||
                    (!same_size_grow(m) && (tophashes(bucket_at(m, m->buckets, y))[0] != EMPTY_REST ||
                                            overflow_of(m, bucket_at(m, m->buckets, y)))))
                    return check_fail(why, whylen, "old bucket %zu unevacuated but its new bucket is used", i);
            }
        }
    }
    for (size_t i = 0; i < nb; i++)
        if (check_chain(m, bucket_at(m, m->buckets, i), i, false, &live, why, whylen)) return -1;
    if (live != m->count)
        return check_fail(why, whylen, "count %zu but %zu live slots", m->count, live);
    if (m->next_overflow > m->end_overflow)
        return check_fail(why, whylen, "overflow pool inverted");
    return 0;
}
#endif /* MAP_DEBUG */
