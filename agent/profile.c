/*
 * profile.c - heap profiles from the stack table, through pprof/.
 *
 * A profile is a walk over the interned stacks: each stack with sampled
 * allocations becomes one sample whose alloc pair is what was sampled
 * there and whose in-use pair is that minus what was freed, unsampled by
 * pprof_heap_add with the sampling rate exactly as Go's runtime/pprof
 * does. The live map is not walked: the per-stack totals already say what
 * is live, so writing a profile never holds a lock the allocating threads
 * need (agent_stack_read).
 *
 * Mappings come from /proc/self/maps with their build IDs, and frames are
 * named in-process through a symbol cache kept for the life of the process
 * (libstdc++'s tables are parsed once, not at every profile), so a profile
 * opens on another machine. The exit profile and the peak profile (written
 * at exit, after it) are the last: files the cache does not hold are
 * named by one pass over their symbol table instead of a load and a sort
 * (a short process paid for cc1's 28,899 symbols at every exit; loading
 * them for the peak profiles of a make -j2's cc1s was 4 % of the build's
 * CPU), and a profile without samples reads neither the mappings nor a
 * symbol. The cache reads files with pread into the arena, never maps
 * them (a library the program truncates cannot fault us), and is bounded
 * (pprof/pprof_elf.c).
 *
 * Names: heap.<tag>.<seq>.<reason>.pb.gz (tag: the pid, or "<pid>-<n>",
 * see output.c), seq counting from 1 per process with at least 4 digits.
 * The profile is streamed into a temporary file created in the verified
 * output directory with O_CREAT|O_EXCL|O_NOFOLLOW under an unpredictable
 * name (out.c), fsync'ed with HEAPWATCH_FSYNC=on, and renamed to its final name without ever
 * replacing a file: it appears whole or not at all, and no planted link
 * or name is ever written through.
 *
 * Everything here allocates from the arena and runs under the recursion
 * guard; one lock serialises profile writers (exit, the background thread,
 * signal and alert requests). The exit path takes it with a bounded wait
 * (agent_lock, lock.c): a profile that cannot have it is skipped and noted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/buf.h"
#include "agent/core.h"
#include "agent/fds.h"
#include "agent/hot.h"
#include "agent/lock.h"
#include "agent/out.h"
#include "agent/output.h"
#include "agent/peak.h"
#include "agent/profile.h"
#include "agent/sample.h"
#include "agent/stacks.h"
#include "agent/thread.h"
#include "map/map.h"
#include "pprof/pprof.h"

static pthread_mutex_t profile_lock = PTHREAD_MUTEX_INITIALIZER;
static pprof_symcache_t *symcache;       /* kept across profiles */
static unsigned seq;                     /* profiles named so far (under the lock) */
/* What symcache holds, published after each use (under the lock) for
 * readers without it (the summary). */
static uint64_t symcache_tables, symcache_bytes;

/* publish_symcache_stats: symcache_tables and _bytes from the cache
 * (under the profile lock). */
static void publish_symcache_stats(void)
{
    pprof_symcache_stats_t st = { 0 };
    if (symcache) pprof_symcache_get_stats(symcache, &st);
    __atomic_store_n(&symcache_tables, (uint64_t)st.tables, __ATOMIC_RELAXED);
    __atomic_store_n(&symcache_bytes, (uint64_t)st.bytes, __ATOMIC_RELAXED);
}

uint64_t agent_profile_symbol_tables(void) { return __atomic_load_n(&symcache_tables, __ATOMIC_RELAXED); }
uint64_t agent_profile_symbol_table_bytes(void) { return __atomic_load_n(&symcache_bytes, __ATOMIC_RELAXED); }

/* peak_view_t: the stacks a profile holds: the table's totals now
 * (entries NULL), or a copy taken at the peak (peak.c). */
typedef struct peak_view_s {
    const agent_peak_entry_t *entries;
    size_t n;
    uint64_t live, ns;
} peak_view_t;

static pprof_err_t add_one(pprof_builder_t *b, const agent_stack_t *s, const agent_stack_totals_t *t)
{
    pprof_heap_counts_t c = {
        .alloc_objects = t->alloc_objects,
        .alloc_bytes = t->alloc_bytes,
        .inuse_objects = t->inuse_objects,
        .inuse_bytes = t->inuse_bytes,
        .extra_bytes = AGENT_BLOCK_EXTRA,   /* sampling counted usable + 8 */
    };
    return pprof_heap_add(b, s->pcs, s->depth, &c);
}

/* add_stacks: one heap sample per stack with samples (of the peak copy,
 * with one); their number into *added. */
static pprof_err_t add_stacks(pprof_builder_t *b, const peak_view_t *peak, size_t *added)
{
    *added = 0;
    if (peak) {
        for (size_t i = 0; i < peak->n; i++) {
            pprof_err_t err = add_one(b, peak->entries[i].stack, &peak->entries[i].totals);
            if (err != PPROF_OK) return err;
            ++*added;
        }
        return PPROF_OK;
    }
    uint32_t n = agent_stacks_count();
    for (uint32_t id = 0; id < n; id++) {
        agent_stack_t *s = agent_stack_get(id);
        if (!s) continue;
        agent_stack_totals_t t;
        agent_stack_read(s, &t);
        if (t.alloc_objects == 0) continue;
        pprof_err_t err = add_one(b, s, &t);
        if (err != PPROF_OK) return err;
        ++*added;
    }
    return PPROF_OK;
}

/* profile_suffix: ".<seq>.<reason>.pb.gz", what follows the tag. */
static void profile_suffix(char *suffix, size_t cap, unsigned n, const char *reason)
{
    agent_buf_t nb;
    agent_buf_init(&nb, suffix, cap);
    agent_buf_str(&nb, ".");
    for (unsigned pad = 1000; pad > 1 && n < pad; pad /= 10) agent_buf_str(&nb, "0");
    agent_buf_u64(&nb, n);
    agent_buf_str(&nb, ".");
    agent_buf_str(&nb, reason);
    agent_buf_str(&nb, ".pb.gz");
}

static pprof_err_t errno_err(int e)
{
    switch (e) {
    case ENOSPC: case EDQUOT: case EFBIG: return PPROF_ERR_NOSPACE;
    case EACCES: case EPERM: case EROFS: return PPROF_ERR_PERM;
    case ENOENT: case ENOTDIR: return PPROF_ERR_NOENT;
    default: return PPROF_ERR_IO;
    }
}

/* write_file: the profile into a new temporary file of dirfd, durable,
 * then published; its name into name. */
static pprof_err_t write_file(pprof_builder_t *b, int dirfd, const char *reason, char *name,
                              size_t namecap, int *keep_fd)
{
    char suffix[64], base[96], tmp[160];
    profile_suffix(suffix, sizeof suffix, ++seq, reason);
    agent_buf_t bb;
    agent_buf_init(&bb, base, sizeof base);
    agent_buf_str(&bb, "heap.");
    agent_buf_str(&bb, agent_output_tag());
    agent_buf_str(&bb, suffix);
    int fd = agent_tmp_create(dirfd, base, tmp, sizeof tmp);
    if (fd < 0) return errno_err(-fd);
    pprof_err_t err = pprof_builder_write_fd(b, fd);
    if (!err) {
        int serr = agent_file_sync(fd);
        if (serr) err = errno_err(-serr);
    }
    if (!err) {
        int perr = agent_output_publish(dirfd, tmp, "heap.", suffix, name, namecap);
        if (perr) err = errno_err(-perr);
    }
    if (err) (void)unlinkat(dirfd, tmp, 0);
    if (!err && keep_fd && lseek(fd, 0, SEEK_SET) == 0) {
        *keep_fd = fd;   /* created just now, ours */
        return PPROF_OK;
    }
    agent_fd_release(fd);
    return err;
}

/* build: the profile for `reason` into b; last: the process writes no
 * profile after this one (its exit profile, and the peak profile written
 * right after it). */
static pprof_err_t build(pprof_builder_t *b, const char *reason, const peak_view_t *peak, bool last)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t when = peak ? (int64_t)peak->ns : (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    char comment[192];
    agent_buf_t cb;
    agent_buf_init(&cb, comment, sizeof comment);
    agent_buf_str(&cb, "heapwatch heap profile (");
    agent_buf_str(&cb, reason);
    agent_buf_str(&cb, "), sampling rate ");
    agent_buf_u64(&cb, agent_sample_rate);
    agent_buf_str(&cb, " bytes");
    if (peak) {
        agent_buf_str(&cb, "; live bytes ");
        agent_buf_u64(&cb, peak->live);
        agent_buf_str(&cb, " (all allocations, exact) when these stacks were copied");
    }

    pprof_err_t err = pprof_builder_set_heap_types(b, (int64_t)agent_sample_rate);
    if (!err) err = pprof_builder_set_time(b, when, 0);
    if (!err) err = pprof_builder_add_comment(b, comment);
    size_t samples = 0;
    if (!err) err = add_stacks(b, peak, &samples);
    if (err || samples == 0) return err;   /* no frame: no mapping or name needed */
    /* Only the mappings the frames fall in (and the executable's): the
     * others' build IDs would be read for nothing. */
    err = pprof_builder_add_mappings_from_proc_used(b);
    if (err == PPROF_ERR_PROC) err = PPROF_OK;   /* unnamed frames, still a profile */
    if (!err) {
        if (!symcache) {
            map_allocator_t a = map_arena_allocator();
            if (pprof_symcache_new(&a, &symcache) != PPROF_OK) symcache = NULL;
        }
        /* The process's last profiles: what the cache does not hold yet
         * is named by one pass per file, not loaded and sorted
         * (pprof_builder_symbolize_once). */
        err = last ? pprof_builder_symbolize_once(b, symcache) : pprof_builder_symbolize(b, symcache);
        publish_symcache_stats();
    }
    return err;
}

/* write_profile: agent_profile_write, of peak when given; last as for build. */
static pprof_err_t write_profile(int dirfd, const char *reason, const peak_view_t *peak, bool last,
                                 char *name, size_t namecap, int *keep_fd, bool *busy)
{
    AGENT_ASSERT_WORK_HELD();
    *busy = false;
    char local[128];
    if (!name || namecap == 0) {
        name = local;
        namecap = sizeof local;
    }
    name[0] = 0;
    agent_enter();
    if (!agent_lock_ranked_note(&profile_lock, AGENT_RANK_PROFILE, "profile: the profile writer was busy")) {
        agent_leave();
        *busy = true;
        return PPROF_OK;
    }
    map_allocator_t a = map_arena_allocator();
    pprof_builder_t *b = NULL;
    pprof_err_t err = pprof_builder_new(&a, &b);
    if (!err) err = build(b, reason, peak, last);
    if (!err) {
        err = write_file(b, dirfd, reason, name, namecap, keep_fd);
        if (err) name[0] = 0;
    }
    pprof_builder_free(b);
    agent_unlock_ranked(&profile_lock, AGENT_RANK_PROFILE);
    agent_leave();
    return err;
}

pprof_err_t agent_profile_write(int dirfd, const char *reason, char *name, size_t namecap,
                                int *keep_fd, bool *busy)
{
    return write_profile(dirfd, reason, NULL, strcmp(reason, "exit") == 0, name, namecap, keep_fd, busy);
}

pprof_err_t agent_profile_write_peak(int dirfd, uint64_t exit_live, char *name, size_t namecap, bool *busy,
                                     bool *at_exit)
{
    *busy = *at_exit = false;
    name[0] = 0;
    peak_view_t peak;
    int held = agent_peak_take(&peak.entries, &peak.n, &peak.live, &peak.ns);
    if (held < 0) agent_incomplete_add("peak profile: the stacks at the peak were being copied");
    if (held <= 0) return PPROF_OK;
    pprof_err_t err = PPROF_OK;
    uint64_t margin = peak.live / 100 * AGENT_PEAK_MARGIN_PCT + peak.live % 100 * AGENT_PEAK_MARGIN_PCT / 100;
    int64_t in_use = 0;
    for (size_t i = 0; i < peak.n; i++) in_use += peak.entries[i].totals.inuse_objects;
    if (in_use < AGENT_PEAK_MIN_SAMPLES) {
        /* too few samples: no peak profile */
    } else if (exit_live + margin >= peak.live) {
        *at_exit = true;
    } else {
        /* Written only at exit, after the exit profile: the last. */
        err = write_profile(dirfd, "peak", &peak, true, name, namecap, NULL, busy);
    }
    agent_peak_give();
    return err;
}

/* frames_t: samples to name: sample i is pcs(src, i, &depth). */
typedef struct frames_s {
    pprof_pc_kind_t kind;
    size_t nsamples;
    const uint64_t *(*pcs)(const void *src, size_t i, size_t *depth);
    const void *src;
} frames_t;

/* name_frames: a throwaway profile of the samples, symbolized with the
 * profile writer's cache, handed to fn (NULL when naming failed). */
static pprof_err_t name_frames(const frames_t *f, void (*fn)(struct pprof_builder_s *b, void *ctx), void *ctx)
{
    static const pprof_value_type_t count = { "samples", "count" };
    agent_enter();
    agent_lock_ranked(&profile_lock, AGENT_RANK_PROFILE);
    map_allocator_t a = map_arena_allocator();
    pprof_builder_t *b = NULL;
    pprof_err_t err = pprof_builder_new(&a, &b);
    if (!err) err = pprof_builder_set_pc_kind(b, f->kind);
    if (!err) err = pprof_builder_set_sample_types(b, &count, 1, NULL, 0);
    for (size_t i = 0; !err && i < f->nsamples; i++) {
        int64_t one = 1;
        size_t depth;
        const uint64_t *pcs = f->pcs(f->src, i, &depth);
        err = pprof_builder_add_sample(b, pcs, depth, &one, NULL, 0);
    }
    if (!err) err = pprof_builder_add_mappings_from_proc(b);
    if (err == PPROF_ERR_PROC) err = PPROF_OK;   /* then nothing is named */
    if (!err && !symcache && pprof_symcache_new(&a, &symcache) != PPROF_OK) symcache = NULL;
    if (!err) err = pprof_builder_symbolize(b, symcache);
    publish_symcache_stats();
    fn(err ? NULL : b, ctx);
    pprof_builder_free(b);
    agent_unlock_ranked(&profile_lock, AGENT_RANK_PROFILE);
    agent_leave();
    return err;
}

static const uint64_t *stack_pcs(const void *src, size_t i, size_t *depth)
{
    const agent_stack_t *s = ((agent_stack_t *const *)src)[i];
    *depth = s->depth;
    return s->pcs;
}

pprof_err_t agent_profile_name_stacks(agent_stack_t *const *stacks, size_t n,
                              void (*fn)(struct pprof_builder_s *b, void *ctx), void *ctx)
{
    frames_t f = { PPROF_PCS_RETURN, n, stack_pcs, stacks };
    return name_frames(&f, fn, ctx);
}

/* pcs_chunk: the addresses of agent_profile_name_pcs, 64 to a sample
 * (only the locations matter). */
typedef struct pcs_src_s {
    const uint64_t *pcs;
    size_t n;
} pcs_src_t;
#define PCS_PER_SAMPLE 64

static const uint64_t *pcs_chunk(const void *src, size_t i, size_t *depth)
{
    const pcs_src_t *p = src;
    size_t first = i * PCS_PER_SAMPLE;
    *depth = p->n - first < PCS_PER_SAMPLE ? p->n - first : PCS_PER_SAMPLE;
    return p->pcs + first;
}

pprof_err_t agent_profile_name_pcs(const uint64_t *pcs, size_t n,
                           void (*fn)(struct pprof_builder_s *b, void *ctx), void *ctx)
{
    pcs_src_t src = { pcs, n };
    frames_t f = { PPROF_PCS_EXACT, (n + PCS_PER_SAMPLE - 1) / PCS_PER_SAMPLE, pcs_chunk, &src };
    return name_frames(&f, fn, ctx);
}

void agent_profile_postfork_child(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    profile_lock = fresh;
    /* The parent's background thread may have been using the cache when
     * it forked; it is abandoned (arena memory), not reused. */
    symcache = NULL;
    symcache_tables = symcache_bytes = 0;
    seq = 0;
}
