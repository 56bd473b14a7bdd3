/*
 * map_bench.cc - heapwatch's map side by side with absl::flat_hash_map,
 * boost::unordered_flat_map, std::unordered_map, GLib's GHashTable and,
 * with --go, Go's own runtime map (go1.19), the design heapwatch's map
 * ports.
 *
 * What is measured
 *   The agent's use of the map: 8-byte keys that are malloc pointers, 24-byte
 *   values (struct Value24), at 1k, 100k and 10M entries. heapwatch's map runs
 *   through its 64-bit fast path (map_insert64 / map_lookup64 / map_delete64)
 *   on map_arena_huge_allocator(), the mmap arena as the agent's live maps
 *   use it (2 MiB pages for bucket arrays over 2 MiB). Every table
 *   starts empty with no size hint or reserve, so growth is part of "insert".
 *     insert       insert every key into an empty table
 *     lookup_hit   look up keys that are in the table
 *     lookup_miss  look up real-looking pointers that are not in the table
 *     churn        one insert of a new key plus one delete of a random live
 *                  key (a malloc/free pair); the size stays constant.
 *                  ns/op is per pair.
 *     delete       delete every key until the table is empty (the first
 *                  round deletes after the churn phase, i.e. from a table
 *                  that has seen deletes)
 *   Operations are independent, so these are throughput figures: the CPU may
 *   overlap the cache misses of consecutive operations.
 *   Growth latency: one more table of each kind grows from 0 to the largest
 *   size, one insert at a time, and each insert is timed on its own. The
 *   worst insert shows what a stop-the-world rehash (absl, boost, std, glib)
 *   costs against incremental evacuation (heapwatch), inside one malloc call.
 *
 * How
 *   - One hash for every table, so the table design is measured, not the
 *     hash: heapwatch's "mum fold", h = lo ^ hi of the 128-bit product
 *     (key ^ seed) * 0x9E3779B97F4A7C15, with a fixed seed (MumHash below).
 *     boost is told the hash is avalanching so it adds no mixing of its own;
 *     GLib gets the same 64-bit hash folded to 32 bits (hi ^ lo). heapwatch
 *     uses its own built-in copy of the mixer, with its own random per-map
 *     seed (the only thing that varies from run to run).
 *   - GHashTable stores a gpointer per value, so each live position i of the
 *     benchmark owns a Value24 in a side array and the table holds &side[i];
 *     a lookup follows that pointer. The C++ tables store Value24 in place.
 *   - heapwatch and GLib are called through their C functions; the C++
 *     tables are templates inlined into the benchmark loop. That is how each
 *     is used for real.
 *   - go1.19 (--go PATH): tests/bench/map_bench.go, built with Debian's Go,
 *     runs as a child process (GoChild): map[uint64]value24, so the
 *     runtime's 64-bit fast paths (mapassign_fast64, mapaccess2_fast64,
 *     mapdelete_fast64), with Go's own hash and per-map seed (it cannot be
 *     given the mum fold) and its garbage collector off in the timed
 *     phases. It gets this program's keys down a pipe and runs the same
 *     phases with the same clocks, one repetition per request, taking its
 *     turn in the rotation like any table. map_bench.go says the rest.
 *   - Keys are real malloc() pointers: for each size, N + M blocks of
 *     log-uniform sizes in 16..512 bytes are malloc'd one after another
 *     (16-byte aligned, clustered, mixed strides, exactly glibc's layout).
 *     They are shuffled; N become the live keys and M = clamp(N, 1k, 1M)
 *     the spares, used as miss keys and as the fresh keys of churn (a FIFO:
 *     each deleted key goes to the back of the spare queue). Lookups and
 *     deletes walk another shuffle of the live keys, so nothing is
 *     sequential in memory. The blocks are freed after the size is done.
 *   - All randomness comes from splitmix64 with fixed seeds: every run and
 *     every table sees the same keys and the same operation sequence.
 *   - Each (op, size) is measured in several repetitions: 5 (3 at >= 1M
 *     entries), 3 with --quick. Within one repetition every table runs
 *     once, in an order rotated each repetition, so drift hits all alike.
 *     Each repetition does >= 1M operations per op (>= 500k with --quick):
 *     lookups and churn loop over the keys, insert and delete repeat
 *     fill-and-empty rounds on fresh tables. Elapsed time comes from
 *     clock_gettime(CLOCK_MONOTONIC) around each phase. The figure reported
 *     is the MINIMUM over repetitions (noise on a shared VM only adds time).
 *   - Growth latency uses the TSC (rdtscp, calibrated against
 *     CLOCK_MONOTONIC) around each insert; it runs twice and reports per
 *     figure the minimum over the two runs.
 *   - Correctness is checked on the way (sizes after insert, churn and
 *     delete; every hit finds its own value; no miss finds anything); any
 *     mismatch stops the run.
 *   - Noise: on a busy machine (the load average is printed first) every
 *     figure is slower, but the tables are interleaved, so the "vs flat"
 *     ratios hold better than the absolute ns/op. A busy machine also puts
 *     a floor of a few ms (a preempted time slice) under the worst insert.
 *
 * Output
 *   stdout: one row per (op, entries, impl) with ns/op, and for every row
 *   "vs flat" = ns/op divided by the best of absl and boost (the Swiss/flat
 *   tables): below 1.00x the row beats both; heapwatch's rows end in "<".
 *   Then the growth table (worst, p99.99 and p99.9 single insert, mean,
 *   total, and how many inserts took over 1 ms) and the ratio
 *   absl_worst / heapwatch_worst (the goal is >= 20x). With --go, last,
 *   heapwatch / go1.19 for every (op, size) (the goal: below 1.00x on all).
 *   Progress lines, stamped with the elapsed time, go to stderr.
 *   --tsv FILE: op<TAB>entries<TAB>impl<TAB>ns_per_op, header first. Besides
 *   the five ops it holds op=worst_insert_ns rows (entries = the growth
 *   size, ns_per_op = the worst single insert in ns).
 *   --growth-tsv FILE: impl, entries, worst_ns, p99_99_ns, p99_9_ns,
 *   mean_ns, total_ms, over_1ms for the growth runs.
 *   make bench-map writes build/bench/map.tsv and map_growth.tsv;
 *   make bench-map-quick (1k and 100k, growth to 100k) writes
 *   map_quick.tsv and map_growth_quick.tsv.
 *
 * Usage: map_bench [--quick] [--tsv FILE] [--growth-tsv FILE]
 *                  [--sizes N,N,...] [--reps N] [--go MAP_BENCH_GO]
 *                  [--impls NAME,...]   (only these tables, and heapwatch)
 */
#include "map/map.h"

#include <absl/container/flat_hash_map.h>
#include <boost/unordered/unordered_flat_map.hpp>
#include <glib.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iterator>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <csignal>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define BENCH_HAVE_TSC 1
#else
#define BENCH_HAVE_TSC 0
#endif

namespace {

/* ------------------------------------------------------------------------ */
/* Constants and small utilities                                            */
/* ------------------------------------------------------------------------ */

constexpr uint64_t kKeySeed = 0x6865617077617463;      /* key sizes, shuffles */
constexpr uint64_t kChurnSeed = 0x636875726e636875;    /* churn victims */
constexpr uint64_t kHashSeed = 0x243F6A8885A308D3;     /* MumHash seed */
constexpr uint64_t kMumMultiplier = 0x9E3779B97F4A7C15;
constexpr size_t kMinBlock = 16;                       /* key block sizes */
constexpr size_t kMaxBlock = 512;
constexpr size_t kMinSpares = 1024;
constexpr size_t kMaxSpares = 1000000;
constexpr size_t kLargeSize = 1000000;                 /* fewer reps from here */

[[noreturn]] void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    std::fputs("map_bench: ", stderr);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
    std::exit(1);
}

/* Written by every lookup loop so the compiler cannot drop the lookups. */
volatile uint64_t g_sink;

uint64_t now_ns()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

const uint64_t g_start_ns = now_ns();

/* progress: one stderr line stamped with the seconds since start. */
void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    std::fprintf(stderr, "map_bench [%6.1f s] ",
                 double(now_ns() - g_start_ns) / 1e9);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
}

/* SplitMix64: a tiny, fixed-seed generator (Steele, Lea, Flood 2014). */
class SplitMix64 {
  public:
    explicit SplitMix64(uint64_t seed) : state_(seed) {}

    uint64_t next()
    {
        uint64_t z = (state_ += 0x9E3779B97F4A7C15);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }

    /* below: uniform in [0, n) by multiply-high (no division). */
    uint64_t below(uint64_t n)
    {
        return uint64_t((unsigned __int128)next() * n >> 64);
    }

    /* unit: uniform double in [0, 1). */
    double unit() { return double(next() >> 11) * 0x1.0p-53; }

  private:
    uint64_t state_;
};

template <class T>
void shuffle(std::vector<T> &v, SplitMix64 &rng)
{
    for (size_t i = v.size(); i > 1; i--)
        std::swap(v[i - 1], v[rng.below(i)]);
}

/* ------------------------------------------------------------------------ */
/* The shared hash and the value type                                       */
/* ------------------------------------------------------------------------ */

/* mum_fold: heapwatch's pointer mixer; low and high bits both well mixed. */
inline uint64_t mum_fold(uint64_t key)
{
    unsigned __int128 p = (unsigned __int128)(key ^ kHashSeed) * kMumMultiplier;
    return uint64_t(p) ^ uint64_t(p >> 64);
}

struct MumHash {
    /* boost::unordered_flat_map: use the hash as is, add no post-mixing. */
    using is_avalanching = std::true_type;
    size_t operator()(uint64_t key) const noexcept { return mum_fold(key); }
};

/* mum_fold_guint: the same hash for GHashTable, folded to 32 bits. */
guint mum_fold_guint(gconstpointer key)
{
    uint64_t h = mum_fold(uint64_t(uintptr_t(key)));
    return guint(h ^ (h >> 32));
}

/* Value24: as big as what the agent stores per live allocation. The first
 * word repeats the key, so a lookup can prove it found the right entry. */
struct Value24 {
    uint64_t key_check;
    uint64_t stack_id;
    uint64_t size;
};
static_assert(sizeof(Value24) == 24, "values must be 24 bytes");

/* value_for: the value stored for key at live position pos. */
inline Value24 value_for(uint64_t key, size_t pos)
{
    return Value24{key, pos, key & 511};
}

/* ------------------------------------------------------------------------ */
/* One adapter per table. Each has the same interface:                      */
/*   Table(positions)     empty table; keys use live positions < positions  */
/*   insert(key, pos)     stores value_for(key, pos) under a new key        */
/*   lookup(key)          the value's key_check, 0 when absent              */
/*   erase(key)           true if the key was present                       */
/*   size()                                                                 */
/* ------------------------------------------------------------------------ */

class HeapwatchTable {
  public:
    explicit HeapwatchTable(size_t) : allocator_(map_arena_huge_allocator())
    {
        map_err_t err = map_new(sizeof(uint64_t), sizeof(Value24), 0,
                                &allocator_, &map_);
        if (err != MAP_OK)
            fail("map_new: %s", map_strerror(err));
    }
    ~HeapwatchTable() { map_free(map_); }
    HeapwatchTable(const HeapwatchTable &) = delete;
    HeapwatchTable &operator=(const HeapwatchTable &) = delete;

    void insert(uint64_t key, size_t pos)
    {
        Value24 v = value_for(key, pos);
        map_err_t err = map_insert64(map_, key, &v);
        if (err != MAP_OK)
            fail("map_insert64: %s", map_strerror(err));
    }
    uint64_t lookup(uint64_t key) const
    {
        const void *v = map_lookup64(map_, key);
        if (v == nullptr)
            return 0;
        uint64_t key_check;  /* map.h: values may be unaligned */
        std::memcpy(&key_check, v, sizeof key_check);
        return key_check;
    }
    bool erase(uint64_t key) { return map_delete64(map_, key, nullptr); }
    size_t size() const { return map_count(map_); }

  private:
    map_allocator_t allocator_;
    map_t *map_ = nullptr;
};

/* absl, boost and std share one interface. */
template <class Map>
class CxxTable {
  public:
    explicit CxxTable(size_t) {}

    void insert(uint64_t key, size_t pos)
    {
        map_.try_emplace(key, value_for(key, pos));
    }
    uint64_t lookup(uint64_t key) const
    {
        auto it = map_.find(key);
        return it == map_.end() ? 0 : it->second.key_check;
    }
    bool erase(uint64_t key) { return map_.erase(key) != 0; }
    size_t size() const { return map_.size(); }

  private:
    Map map_;
};

using AbslTable = CxxTable<absl::flat_hash_map<uint64_t, Value24, MumHash>>;
using BoostTable =
    CxxTable<boost::unordered_flat_map<uint64_t, Value24, MumHash>>;
using StdTable = CxxTable<std::unordered_map<uint64_t, Value24, MumHash>>;

/* GHashTable keeps gpointer values: it points into a side array of Value24
 * indexed by live position. Keys are compared directly (key_equal NULL).
 * The side array is left uninitialised (new[] of a trivial type), so its
 * pages are first written, and faulted in, by the timed inserts, as every
 * other table's value storage is; a zero-filled std::vector would have
 * faulted them in the untimed constructor. */
class GlibTable {
  public:
    explicit GlibTable(size_t positions)
        : values_(new Value24[positions]), table_(g_hash_table_new(mum_fold_guint, nullptr))
    {
    }
    ~GlibTable() { g_hash_table_destroy(table_); }
    GlibTable(const GlibTable &) = delete;
    GlibTable &operator=(const GlibTable &) = delete;

    void insert(uint64_t key, size_t pos)
    {
        values_[pos] = value_for(key, pos);
        g_hash_table_insert(table_, as_pointer(key), &values_[pos]);
    }
    uint64_t lookup(uint64_t key) const
    {
        auto *v = static_cast<const Value24 *>(
            g_hash_table_lookup(table_, as_pointer(key)));
        return v == nullptr ? 0 : v->key_check;
    }
    bool erase(uint64_t key)
    {
        return g_hash_table_remove(table_, as_pointer(key));
    }
    size_t size() const { return g_hash_table_size(table_); }

  private:
    static gpointer as_pointer(uint64_t key)
    {
        return reinterpret_cast<gpointer>(uintptr_t(key));
    }

    std::unique_ptr<Value24[]> values_;
    GHashTable *table_;
};

/* kGo is Go's runtime map in a child process (GoChild below); it runs
 * only with --go. */
enum Impl { kHeapwatch, kAbsl, kBoost, kStd, kGlib, kGo, kImplCount };
const char *const kImplNames[kImplCount] = {"heapwatch", "absl", "boost",
                                            "std", "glib", "go1.19"};

enum Op { kInsert, kLookupHit, kLookupMiss, kDelete, kChurn, kOpCount };
const char *const kOpNames[kOpCount] = {"insert", "lookup_hit", "lookup_miss",
                                        "delete", "churn"};

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */
/* ------------------------------------------------------------------------ */

/* KeyPool: real malloc pointers for one table size. */
struct KeyPool {
    std::vector<void *> blocks;      /* every block, in allocation order */
    std::vector<uint64_t> live;      /* N keys, in insertion order */
    std::vector<uint64_t> reordered; /* the same N keys, another order */
    std::vector<uint64_t> spares;    /* M keys never inserted at first */
};

/* block_size: log-uniform in [kMinBlock, kMaxBlock], as small blocks
 * dominate real programs. */
size_t block_size(SplitMix64 &rng)
{
    double span = std::log2(double(kMaxBlock) / double(kMinBlock));
    return size_t(double(kMinBlock) * std::exp2(span * rng.unit()));
}

size_t spare_count(size_t entries)
{
    return std::min(std::max(entries, kMinSpares), kMaxSpares);
}

KeyPool make_key_pool(size_t entries)
{
    SplitMix64 rng(kKeySeed ^ entries);
    KeyPool pool;
    size_t total = entries + spare_count(entries);
    pool.blocks.reserve(total);
    for (size_t i = 0; i < total; i++) {
        void *block = std::malloc(block_size(rng));
        if (block == nullptr)
            fail("out of memory making %zu keys", total);
        pool.blocks.push_back(block);
    }
    std::vector<uint64_t> keys(total);
    for (size_t i = 0; i < total; i++)
        keys[i] = uint64_t(uintptr_t(pool.blocks[i]));
    shuffle(keys, rng);
    pool.live.assign(keys.begin(), keys.begin() + ptrdiff_t(entries));
    pool.spares.assign(keys.begin() + ptrdiff_t(entries), keys.end());
    pool.reordered = pool.live;
    shuffle(pool.reordered, rng);
    return pool;
}

void free_key_pool(KeyPool &pool)
{
    for (void *block : pool.blocks)
        std::free(block);
    pool = KeyPool();
}

/* ------------------------------------------------------------------------ */
/* Timed phases. Each returns elapsed nanoseconds and checks the result.    */
/* ------------------------------------------------------------------------ */

template <class Table>
uint64_t time_inserts(Table &table, const std::vector<uint64_t> &keys)
{
    uint64_t start = now_ns();
    for (size_t pos = 0; pos < keys.size(); pos++)
        table.insert(keys[pos], pos);
    uint64_t elapsed = now_ns() - start;
    if (table.size() != keys.size())
        fail("insert: size %zu after %zu inserts", table.size(), keys.size());
    return elapsed;
}

/* time_lookups: ops lookups cycling over keys. Hits must find their own
 * value (key_check == key); misses must find nothing. */
template <class Table>
uint64_t time_lookups(const Table &table, const std::vector<uint64_t> &keys,
                      size_t ops, bool expect_hits)
{
    uint64_t found = 0, wrong = 0;
    size_t i = 0;
    uint64_t start = now_ns();
    for (size_t op = 0; op < ops; op++) {
        uint64_t key_check = table.lookup(keys[i]);
        found += key_check != 0;
        wrong += key_check != 0 && key_check != keys[i];
        if (++i == keys.size())
            i = 0;
    }
    uint64_t elapsed = now_ns() - start;
    g_sink = g_sink + found;
    if (found != (expect_hits ? ops : 0) || wrong != 0)
        fail("lookup_%s: %" PRIu64 " of %zu keys found, %" PRIu64
             " with another key's value",
             expect_hits ? "hit" : "miss", found, ops, wrong);
    return elapsed;
}

/* time_churn: ops times, insert the oldest spare key and delete a random
 * live one, which becomes the newest spare. Rewrites live and spares. */
template <class Table>
uint64_t time_churn(Table &table, std::vector<uint64_t> &live,
                    std::vector<uint64_t> &spares, size_t ops)
{
    SplitMix64 rng(kChurnSeed);
    size_t head = 0, erased = 0;
    uint64_t start = now_ns();
    for (size_t op = 0; op < ops; op++) {
        size_t pos = rng.below(live.size());
        uint64_t fresh = spares[head];
        table.insert(fresh, pos);
        erased += table.erase(live[pos]);
        spares[head] = live[pos];
        live[pos] = fresh;
        if (++head == spares.size())
            head = 0;
    }
    uint64_t elapsed = now_ns() - start;
    if (erased != ops || table.size() != live.size())
        fail("churn: %zu of %zu deletes hit, size %zu (want %zu)", erased,
             ops, table.size(), live.size());
    return elapsed;
}

template <class Table>
uint64_t time_deletes(Table &table, const std::vector<uint64_t> &keys)
{
    size_t erased = 0;
    uint64_t start = now_ns();
    for (uint64_t key : keys)
        erased += table.erase(key);
    uint64_t elapsed = now_ns() - start;
    if (erased != keys.size() || table.size() != 0)
        fail("delete: %zu of %zu deletes hit, size %zu left", erased,
             keys.size(), table.size());
    return elapsed;
}

/* ------------------------------------------------------------------------ */
/* One repetition of every op on one kind of table                          */
/* ------------------------------------------------------------------------ */

struct OpTimes {
    double ns_per_op[kOpCount];
};

struct GrowthStats {
    double worst_ns;
    double p9999_ns;
    double p999_ns;
    double mean_ns;
    double total_ms;
    size_t over_1ms;    /* inserts that took more than 1 ms */
};

/* ------------------------------------------------------------------------ */
/* Go's runtime map, in a child process                                     */
/* ------------------------------------------------------------------------ */

/* GoChild: tests/bench/map_bench.go (built as map_bench_go) run as a child
 * with pipes on its stdin and stdout. It gets the very keys of each
 * KeyPool and does one repetition of every op, or one growth run, per
 * request, so its runs take their turn in the rotation of the C++ tables.
 * The protocol is described at the top of map_bench.go. Any error there
 * ends the child with one stderr line; here it ends the run. */
class GoChild {
  public:
    explicit GoChild(const char *path) : path_(path)
    {
        int to[2], from[2];
        if (pipe2(to, O_CLOEXEC) != 0 || pipe2(from, O_CLOEXEC) != 0)
            fail("pipe: %s", std::strerror(errno));
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, to[0], 0);
        posix_spawn_file_actions_adddup2(&actions, from[1], 1);
        char *argv[] = {const_cast<char *>(path), nullptr};
        int err = posix_spawn(&pid_, path, &actions, nullptr, argv, environ);
        posix_spawn_file_actions_destroy(&actions);
        if (err != 0)
            fail("cannot run %s: %s", path, std::strerror(err));
        close(to[0]);
        close(from[1]);
        std::signal(SIGPIPE, SIG_IGN);  /* a dead child: a write error */
        to_ = fdopen(to[1], "w");
        from_ = fdopen(from[0], "r");
        if (to_ == nullptr || from_ == nullptr)
            fail("fdopen: %s", std::strerror(errno));
    }
    ~GoChild()
    {
        std::fclose(to_);  /* EOF: the child exits */
        std::fclose(from_);
        int status;
        if (waitpid(pid_, &status, 0) == pid_ &&
            !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            std::fprintf(stderr, "map_bench: %s ended with status %d\n",
                         path_, status);
    }
    GoChild(const GoChild &) = delete;
    GoChild &operator=(const GoChild &) = delete;

    /* send_keys: the pool's live, reordered and spare keys, in order. */
    void send_keys(const KeyPool &pool)
    {
        std::fprintf(to_, "keys %zu %zu\n", pool.live.size(),
                     pool.spares.size());
        for (const auto *v : {&pool.live, &pool.reordered, &pool.spares})
            if (std::fwrite(v->data(), sizeof(uint64_t), v->size(), to_) !=
                v->size())
                fail("writing keys to %s: %s", path_, std::strerror(errno));
        if (answer("keys") != "ok")
            fail("%s: unexpected answer to keys", path_);
    }

    /* ops: one repetition of every op, as measure_ops. */
    OpTimes ops(size_t min_ops)
    {
        std::fprintf(to_, "ops %zu\n", min_ops);
        std::string line = answer("ops");
        OpTimes t;
        double *d = t.ns_per_op;
        /* map_bench.go answers in kOpNames order. */
        static_assert(kInsert == 0 && kLookupHit == 1 && kLookupMiss == 2 &&
                          kDelete == 3 && kChurn == 4,
                      "map_bench.go's order");
        if (std::sscanf(line.c_str(), "ops %lf %lf %lf %lf %lf", &d[0], &d[1],
                        &d[2], &d[3], &d[4]) != 5)
            fail("%s: bad answer '%s'", path_, line.c_str());
        return t;
    }

    /* growth: one growth run over the live keys of the last pool sent. */
    GrowthStats growth()
    {
        std::fprintf(to_, "growth\n");
        std::string line = answer("growth");
        GrowthStats s;
        if (std::sscanf(line.c_str(), "growth %lf %lf %lf %lf %lf %zu",
                        &s.worst_ns, &s.p9999_ns, &s.p999_ns, &s.mean_ns,
                        &s.total_ms, &s.over_1ms) != 6)
            fail("%s: bad answer '%s'", path_, line.c_str());
        return s;
    }

  private:
    /* answer: flushes the request and reads the child's one-line answer. */
    std::string answer(const char *what)
    {
        if (std::fflush(to_) != 0)
            fail("writing to %s: %s", path_, std::strerror(errno));
        char buf[256];
        if (std::fgets(buf, sizeof buf, from_) == nullptr)
            fail("%s: no answer to '%s' (see its message above)", path_,
                 what);
        std::string line = buf;
        if (!line.empty() && line.back() == '\n')
            line.pop_back();
        return line;
    }

    const char *path_;
    pid_t pid_ = 0;
    FILE *to_ = nullptr;
    FILE *from_ = nullptr;
};


/*
 * measure_ops: round 0 fills a table, times lookups and churn on it, then
 * empties it. Further rounds (only when N < min_ops) fill and empty fresh
 * tables until insert and delete have each run >= min_ops times.
 */
template <class Table>
OpTimes measure_ops(const KeyPool &pool, size_t min_ops)
{
    const size_t n = pool.live.size();
    const size_t rounds = std::max<size_t>(1, (min_ops + n - 1) / n);
    uint64_t insert_ns = 0, delete_ns = 0, hit_ns, miss_ns, churn_ns;
    {
        std::vector<uint64_t> live = pool.live;
        std::vector<uint64_t> spares = pool.spares;
        Table table(n);
        insert_ns += time_inserts(table, live);
        hit_ns = time_lookups(table, pool.reordered, min_ops, true);
        miss_ns = time_lookups(table, pool.spares, min_ops, false);
        churn_ns = time_churn(table, live, spares, min_ops);
        delete_ns += time_deletes(table, live);
    }
    for (size_t round = 1; round < rounds; round++) {
        Table table(n);
        insert_ns += time_inserts(table, pool.live);
        delete_ns += time_deletes(table, pool.reordered);
    }
    OpTimes t;
    t.ns_per_op[kInsert] = double(insert_ns) / double(rounds * n);
    t.ns_per_op[kDelete] = double(delete_ns) / double(rounds * n);
    t.ns_per_op[kLookupHit] = double(hit_ns) / double(min_ops);
    t.ns_per_op[kLookupMiss] = double(miss_ns) / double(min_ops);
    t.ns_per_op[kChurn] = double(churn_ns) / double(min_ops);
    return t;
}

OpTimes measure_ops_for(Impl impl, const KeyPool &pool, size_t min_ops,
                        GoChild *go)
{
    switch (impl) {
    case kHeapwatch: return measure_ops<HeapwatchTable>(pool, min_ops);
    case kAbsl: return measure_ops<AbslTable>(pool, min_ops);
    case kBoost: return measure_ops<BoostTable>(pool, min_ops);
    case kStd: return measure_ops<StdTable>(pool, min_ops);
    case kGlib: return measure_ops<GlibTable>(pool, min_ops);
    case kGo: return go->ops(min_ops);
    case kImplCount: break;
    }
    fail("bad impl %d", int(impl));
}

/* ------------------------------------------------------------------------ */
/* Growth latency                                                           */
/* ------------------------------------------------------------------------ */

/* TickClock: a cheap per-operation clock (the TSC where there is one),
 * calibrated once against CLOCK_MONOTONIC. */
class TickClock {
  public:
    TickClock()
    {
        uint64_t ns0 = now_ns(), ticks0 = now();
        while (now_ns() - ns0 < 20000000)  /* 20 ms */
            ;
        uint64_t ns1 = now_ns(), ticks1 = now();
        ns_per_tick_ = double(ns1 - ns0) / double(ticks1 - ticks0);
    }
    static uint64_t now()
    {
#if BENCH_HAVE_TSC
        unsigned aux;
        return __rdtscp(&aux);
#else
        return now_ns();
#endif
    }
    double to_ns(uint64_t ticks) const { return double(ticks) * ns_per_tick_; }

  private:
    double ns_per_tick_;
};


/* percentile_ticks: the q-quantile of ticks (reorders ticks). */
uint32_t percentile_ticks(std::vector<uint32_t> &ticks, double q)
{
    size_t k = std::min(ticks.size() - 1, size_t(q * double(ticks.size())));
    std::nth_element(ticks.begin(), ticks.begin() + ptrdiff_t(k), ticks.end());
    return ticks[k];
}

/* measure_growth: inserts keys one by one into an empty table, timing each
 * insert into ticks (preallocated by the caller, as large as keys). */
template <class Table>
GrowthStats measure_growth(const std::vector<uint64_t> &keys,
                           const TickClock &clock, std::vector<uint32_t> &ticks)
{
    uint64_t total = 0;
    uint32_t worst = 0;
    {
        Table table(keys.size());
        for (size_t pos = 0; pos < keys.size(); pos++) {
            uint64_t start = TickClock::now();
            table.insert(keys[pos], pos);
            uint64_t spent = TickClock::now() - start;
            ticks[pos] = uint32_t(std::min<uint64_t>(spent, UINT32_MAX));
            total += spent;
            worst = std::max(worst, ticks[pos]);
        }
        if (table.size() != keys.size())
            fail("growth: size %zu after %zu inserts", table.size(),
                 keys.size());
    }
    GrowthStats s;
    s.worst_ns = clock.to_ns(worst);
    s.p9999_ns = clock.to_ns(percentile_ticks(ticks, 0.9999));
    s.p999_ns = clock.to_ns(percentile_ticks(ticks, 0.999));
    s.mean_ns = clock.to_ns(total) / double(keys.size());
    s.total_ms = clock.to_ns(total) / 1e6;
    s.over_1ms = size_t(std::count_if(ticks.begin(), ticks.end(),
                                      [&clock](uint32_t t) {
                                          return clock.to_ns(t) > 1e6;
                                      }));
    return s;
}

GrowthStats measure_growth_for(Impl impl, const std::vector<uint64_t> &keys,
                               const TickClock &clock,
                               std::vector<uint32_t> &ticks, GoChild *go)
{
    switch (impl) {
    case kHeapwatch: return measure_growth<HeapwatchTable>(keys, clock, ticks);
    case kAbsl: return measure_growth<AbslTable>(keys, clock, ticks);
    case kBoost: return measure_growth<BoostTable>(keys, clock, ticks);
    case kStd: return measure_growth<StdTable>(keys, clock, ticks);
    case kGlib: return measure_growth<GlibTable>(keys, clock, ticks);
    case kGo: return go->growth();
    case kImplCount: break;
    }
    fail("bad impl %d", int(impl));
}

GrowthStats min_each(const GrowthStats &a, const GrowthStats &b)
{
    return GrowthStats{std::min(a.worst_ns, b.worst_ns),
                       std::min(a.p9999_ns, b.p9999_ns),
                       std::min(a.p999_ns, b.p999_ns),
                       std::min(a.mean_ns, b.mean_ns),
                       std::min(a.total_ms, b.total_ms),
                       std::min(a.over_1ms, b.over_1ms)};
}

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

struct Options {
    bool quick = false;
    std::vector<size_t> sizes{1000, 100000, 10000000};
    int reps_small = 5;         /* repetitions below kLargeSize entries */
    int reps_large = 3;         /* repetitions from kLargeSize entries */
    int growth_runs = 2;
    size_t min_ops = 1000000;   /* operations per op and repetition */
    const char *tsv_path = nullptr;
    const char *growth_tsv_path = nullptr;
    const char *go_path = nullptr;  /* map_bench_go: adds the go1.19 rows */
    unsigned impls = ~0u;           /* --impls: bit i set = kImplNames[i] runs */
};

/* impl_on: reports whether impl takes part in this run. */
bool impl_on(const Options &opt, int impl)
{
    return (opt.impls >> impl & 1) != 0 &&
           (impl != kGo || opt.go_path != nullptr);
}

struct SizeResult {
    size_t entries;
    double best_ns[kOpCount][kImplCount];   /* minimum over repetitions */
};

int reps_for(const Options &opt, size_t entries)
{
    return entries >= kLargeSize ? opt.reps_large : opt.reps_small;
}

/* measure_size: every op on every table, best of the repetitions. */
SizeResult measure_size(const Options &opt, const KeyPool &pool, GoChild *go)
{
    SizeResult r;
    r.entries = pool.live.size();
    for (auto &row : r.best_ns)
        std::fill(std::begin(row), std::end(row), HUGE_VAL);
    const int reps = reps_for(opt, r.entries);
    for (int rep = 0; rep < reps; rep++) {
        progress("%zu entries: repetition %d/%d", r.entries, rep + 1, reps);
        for (int k = 0; k < kImplCount; k++) {
            Impl impl = Impl((rep + k) % kImplCount);
            if (!impl_on(opt, impl))
                continue;
            OpTimes t = measure_ops_for(impl, pool, opt.min_ops, go);
            for (int op = 0; op < kOpCount; op++)
                r.best_ns[op][impl] = std::min(r.best_ns[op][impl],
                                               t.ns_per_op[op]);
        }
    }
    return r;
}

/* measure_all_growth: growth runs over keys, implementations interleaved. */
std::vector<GrowthStats> measure_all_growth(const Options &opt,
                                            const std::vector<uint64_t> &keys,
                                            GoChild *go)
{
    TickClock clock;
    std::vector<uint32_t> ticks(keys.size(), 1);  /* touched before timing */
    std::vector<GrowthStats> best(kImplCount);
    for (int run = 0; run < opt.growth_runs; run++) {
        progress("growth to %zu entries: run %d/%d", keys.size(), run + 1,
                 opt.growth_runs);
        for (int k = 0; k < kImplCount; k++) {
            Impl impl = Impl((run + k) % kImplCount);
            if (!impl_on(opt, impl))
                continue;
            GrowthStats s = measure_growth_for(impl, keys, clock, ticks, go);
            best[impl] = run == 0 ? s : min_each(best[impl], s);
        }
    }
    return best;
}

double best_flat_ns(const SizeResult &r, int op)
{
    return std::min(r.best_ns[op][kAbsl], r.best_ns[op][kBoost]);
}

void print_op_table(const Options &opt, const std::vector<SizeResult> &results)
{
    std::printf("\nns/op: minimum over %d repetitions", opt.reps_small);
    if (opt.reps_large != opt.reps_small)
        std::printf(" (%d at >= %zu entries)", opt.reps_large, kLargeSize);
    std::printf("; vs flat = ns/op / best of absl, boost\n");
    std::printf("%-12s %9s  %-10s %9s  %8s\n", "op", "entries", "impl",
                "ns/op", "vs flat");
    for (int op = 0; op < kOpCount; op++) {
        for (const SizeResult &r : results) {
            double flat = best_flat_ns(r, op);
            for (int impl = 0; impl < kImplCount; impl++) {
                if (!impl_on(opt, impl))
                    continue;
                std::printf("%-12s %9zu  %-10s %9.2f  %7.2fx%s\n",
                            kOpNames[op], r.entries, kImplNames[impl],
                            r.best_ns[op][impl], r.best_ns[op][impl] / flat,
                            impl == kHeapwatch ? "  <" : "");
            }
        }
    }
}

void print_growth_table(const Options &opt, size_t entries,
                        const std::vector<GrowthStats> &g)
{
    std::printf("\ngrowth from 0 to %zu entries, every insert timed alone "
                "(%s); each figure the minimum over %d run(s)\n",
                entries, BENCH_HAVE_TSC ? "rdtscp" : "clock_gettime",
                opt.growth_runs);
    std::printf("%-10s %12s %12s %12s %10s %10s %8s\n", "impl", "worst_us",
                "p99.99_us", "p99.9_us", "mean_ns", "total_ms", ">1ms");
    for (int impl = 0; impl < kImplCount; impl++) {
        if (!impl_on(opt, impl))
            continue;
        const GrowthStats &s = g[impl];
        std::printf("%-10s %12.1f %12.2f %12.2f %10.1f %10.1f %8zu\n",
                    kImplNames[impl], s.worst_ns / 1e3, s.p9999_ns / 1e3,
                    s.p999_ns / 1e3, s.mean_ns, s.total_ms, s.over_1ms);
    }
    if (impl_on(opt, kAbsl))
        std::printf("absl_worst / heapwatch_worst = %.1fx (goal: >= 20x)\n",
                    g[kAbsl].worst_ns / g[kHeapwatch].worst_ns);
}

/* print_go_table: heapwatch against the design it ports, op by op. */
void print_go_table(const Options &opt, const std::vector<SizeResult> &results)
{
    if (!impl_on(opt, kGo))
        return;
    std::printf("\nheapwatch vs go1.19 (ns/op; ratio = heapwatch / go1.19, "
                "below 1.00x heapwatch is faster)\n");
    std::printf("%-12s %9s  %10s %10s  %7s\n", "op", "entries", "heapwatch",
                "go1.19", "ratio");
    int wins = 0, rows = 0;
    for (int op = 0; op < kOpCount; op++) {
        for (const SizeResult &r : results) {
            double hw = r.best_ns[op][kHeapwatch], go = r.best_ns[op][kGo];
            std::printf("%-12s %9zu  %10.2f %10.2f  %6.2fx%s\n", kOpNames[op],
                        r.entries, hw, go, hw / go, hw < go ? "" : "  LOSES");
            wins += hw < go;
            rows++;
        }
    }
    std::printf("heapwatch beats go1.19 on %d of %d (op, size) rows\n", wins,
                rows);
}

/* print_machine_load: figures from a busy machine are slower and noisier;
 * say so up front (the ratios suffer less, since tables are interleaved). */
void print_machine_load()
{
    double load[1];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (getloadavg(load, 1) != 1 || cpus < 1)
        return;
    std::printf("%ld CPUs, load average %.2f at start%s\n", cpus, load[0],
                load[0] > 0.5 * double(cpus)
                    ? ": busy machine, expect slow and noisy figures"
                    : "");
}

FILE *open_output(const char *path)
{
    FILE *f = std::fopen(path, "w");
    if (f == nullptr)
        fail("cannot write %s: %s", path, std::strerror(errno));
    return f;
}

void close_output(FILE *f, const char *path)
{
    if (std::fclose(f) != 0)
        fail("error writing %s", path);
}

void write_op_tsv(const Options &opt, const char *path,
                  const std::vector<SizeResult> &results,
                  size_t growth_entries, const std::vector<GrowthStats> &g)
{
    FILE *f = open_output(path);
    std::fprintf(f, "op\tentries\timpl\tns_per_op\n");
    for (int op = 0; op < kOpCount; op++)
        for (const SizeResult &r : results)
            for (int impl = 0; impl < kImplCount; impl++)
                if (impl_on(opt, impl))
                    std::fprintf(f, "%s\t%zu\t%s\t%.2f\n", kOpNames[op], r.entries,
                             kImplNames[impl], r.best_ns[op][impl]);
    for (int impl = 0; impl < kImplCount; impl++)
        if (impl_on(opt, impl))
            std::fprintf(f, "worst_insert_ns\t%zu\t%s\t%.0f\n", growth_entries,
                     kImplNames[impl], g[impl].worst_ns);
    close_output(f, path);
}

void write_growth_tsv(const Options &opt, const char *path, size_t entries,
                      const std::vector<GrowthStats> &g)
{
    FILE *f = open_output(path);
    std::fprintf(f, "impl\tentries\tworst_ns\tp99_99_ns\tp99_9_ns\tmean_ns"
                    "\ttotal_ms\tover_1ms\n");
    for (int impl = 0; impl < kImplCount; impl++) {
        if (!impl_on(opt, impl))
            continue;
        const GrowthStats &s = g[impl];
        std::fprintf(f, "%s\t%zu\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%zu\n",
                     kImplNames[impl], entries, s.worst_ns, s.p9999_ns,
                     s.p999_ns, s.mean_ns, s.total_ms, s.over_1ms);
    }
    close_output(f, path);
}

/* ------------------------------------------------------------------------ */
/* Command line                                                             */
/* ------------------------------------------------------------------------ */

[[noreturn]] void usage()
{
    fail("usage: map_bench [--quick] [--tsv FILE] [--growth-tsv FILE] "
         "[--sizes N,N,...] [--reps N] [--go MAP_BENCH_GO] "
         "[--impls NAME,...]");
}

/* parse_impls: a comma-separated list of kImplNames as a bit mask;
 * heapwatch always runs (every ratio is about it). */
unsigned parse_impls(const char *list)
{
    unsigned mask = 1u << kHeapwatch;
    std::string rest = list;
    while (!rest.empty()) {
        size_t comma = rest.find(',');
        std::string name = rest.substr(0, comma);
        rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
        int found = -1;
        for (int i = 0; i < kImplCount; i++)
            if (name == kImplNames[i])
                found = i;
        if (found < 0)
            fail("--impls: unknown table '%s'", name.c_str());
        mask |= 1u << found;
    }
    return mask;
}

std::vector<size_t> parse_sizes(const char *list)
{
    std::vector<size_t> sizes;
    for (const char *p = list; *p != '\0';) {
        char *end;
        unsigned long long n = std::strtoull(p, &end, 10);
        if (end == p || n == 0 || (*end != ',' && *end != '\0'))
            fail("--sizes: expected positive integers separated by commas, "
                 "got '%s'", list);
        sizes.push_back(size_t(n));
        p = *end == ',' ? end + 1 : end;
    }
    if (sizes.empty())
        usage();
    std::sort(sizes.begin(), sizes.end());
    return sizes;
}

Options parse_options(int argc, char **argv)
{
    Options opt;
    bool sizes_given = false;
    int reps = 0;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        bool has_value = i + 1 < argc;
        if (arg == "--quick") {
            opt.quick = true;
        } else if (arg == "--tsv" && has_value) {
            opt.tsv_path = argv[++i];
        } else if (arg == "--impls" && has_value) {
            opt.impls = parse_impls(argv[++i]);
        } else if (arg == "--go" && has_value) {
            opt.go_path = argv[++i];
        } else if (arg == "--growth-tsv" && has_value) {
            opt.growth_tsv_path = argv[++i];
        } else if (arg == "--sizes" && has_value) {
            opt.sizes = parse_sizes(argv[++i]);
            sizes_given = true;
        } else if (arg == "--reps" && has_value) {
            reps = std::atoi(argv[++i]);
            if (reps < 1)
                usage();
        } else {
            usage();
        }
    }
    if (opt.quick) {
        if (!sizes_given)
            opt.sizes = {1000, 100000};
        opt.reps_small = opt.reps_large = 3;
        opt.min_ops = 500000;
    }
    if (reps > 0)
        opt.reps_small = opt.reps_large = reps;
    return opt;
}

}  // namespace

int main(int argc, char **argv)
{
    Options opt = parse_options(argc, argv);
    std::printf("map_bench%s: 8-byte malloc-pointer keys, 24-byte values, "
                "one hash (mum fold) for all; heapwatch on the mmap arena\n",
                opt.quick ? " --quick" : "");
    print_machine_load();
    std::fflush(stdout);

    std::unique_ptr<GoChild> go;
    if (opt.go_path != nullptr)
        go.reset(new GoChild(opt.go_path));
    std::vector<SizeResult> results;
    std::vector<GrowthStats> growth;
    const size_t growth_entries = opt.sizes.back();
    for (size_t entries : opt.sizes) {
        progress("%zu entries: making keys", entries);
        KeyPool pool = make_key_pool(entries);
        if (go)
            go->send_keys(pool);
        results.push_back(measure_size(opt, pool, go.get()));
        if (entries == growth_entries)
            growth = measure_all_growth(opt, pool.live, go.get());
        free_key_pool(pool);
    }

    print_op_table(opt, results);
    print_growth_table(opt, growth_entries, growth);
    print_go_table(opt, results);
    go.reset();
    if (opt.tsv_path != nullptr)
        write_op_tsv(opt, opt.tsv_path, results, growth_entries, growth);
    if (opt.growth_tsv_path != nullptr)
        write_growth_tsv(opt, opt.growth_tsv_path, growth_entries, growth);
    std::printf("\ntotal run time %.1f s%s%s\n",
                double(now_ns() - g_start_ns) / 1e9,
                opt.tsv_path ? "; figures in " : "",
                opt.tsv_path ? opt.tsv_path : "");
    return 0;
}
