/*
 * core.c - the agent's tracking core: start-up, the per-thread counter
 * blocks, the background thread, fork, and the exit summary.
 *
 * Counters. Every thread that allocates owns an agent_thread_t from the
 * arena and bumps its own counters with plain (relaxed atomic) stores: no
 * lock, no read-modify-write instruction on the hot path. Readers sum all
 * blocks. Blocks are never freed: when a thread exits (pthread key
 * destructor) its block is marked dead and the next new thread adopts it,
 * counters included, so the sum over blocks stays exact without any
 * folding step, and the registry is an append-only list that readers walk
 * without a lock.
 *
 * Start-up. The constructor calls agent_init, but an allocation made
 * before it (another library's constructor) initialises lazily on the slow
 * path. In a process with a sanitizer runtime that replaces
 * malloc (ASan, TSan, MSan, LSan), or whose malloc is not the agent's
 * (found by the shim's first resolution, before anything else), the agent
 * steps aside: one stderr line, then nothing (every call passed straight
 * on, no thread, no files, no fork handlers, nothing counted).
 *
 * The background thread (snapshots every HEAPWATCH_INTERVAL, with the
 * timeline and alerts; interval and HEAPWATCH_SIGNAL profiles; ending a
 * process whose main thread left with pthread_exit) must not be seen by a
 * program that is single-threaded: a multi-threaded process cannot enter a
 * new user namespace (unshare, setns: EINVAL), and programs such as
 * Chromium's zygote check that they are alone before sandboxing. So, by
 * HEAPWATCH_THREAD:
 *   auto (default)  the thread starts only once it is needed: when the
 *                   program starts a thread of its own (its first
 *                   allocation, thread_register), or when the first job
 *                   falls due (the first snapshot, HEAPWATCH_INTERVAL after
 *                   start; the first periodic profile; a HEAPWATCH_SIGNAL),
 *                   noticed by an allocating thread (ticks, below). With
 *                   HEAPWATCH_HTTP it starts at once (the server is a thread
 *                   anyway), and so it does with HEAPWATCH_SIGNAL or
 *                   HEAPWATCH_PROFILE_INTERVAL (an idle daemon asked for
 *                   its heap must answer). A program that
 *                   ends within HEAPWATCH_INTERVAL (`id`) never has one.
 *   on, 1           from the constructor, as before.
 *   off, 0          never: the allocating thread that notices a job is due
 *                   does it itself (run_due_jobs, under a try-lock, so it
 *                   never waits), and the exit does the final snapshot. An
 *                   idle program gets no records until it allocates again.
 * Ticks: while there is no thread, each thread's sampling countdown is cut
 * into AGENT_TICK_BYTES pieces (sample.c), so the sampling slow path runs
 * at least every 32 KiB allocated, at any rate, and compares a coarse clock
 * with agent_tick_due (one load when nothing is due). A start from there is
 * a start from inside malloc, after the real malloc returned: this thread
 * holds no allocator or agent lock (the restart after fork was always done
 * so).
 *
 * Each round of the thread's jobs runs on a short-lived worker thread with
 * an empty descriptor table of its own (see "The job worker" below and
 * fds.c): nothing the jobs open or close can meet the program's numbers.
 * The background thread itself stays in the program's table: when the
 * program's threads have all ended it calls exit(0) as glibc would, and
 * the exit handlers then run on it with the program's descriptors.
 *
 * unshare and setns (shim.c) call agent_thread_pause first: the thread is
 * asked to leave, joined (at most PAUSE_JOIN_NS: it finishes the file it is
 * writing) and the kernel is seen to have released it (/proc/self/task,
 * at most PAUSE_GONE_NS), so the call finds the process as the program
 * left it. agent_thread_resume: a process that is still single-threaded
 * gets the thread back at its next due job (ticks), a multi-threaded one at
 * once. A thread that did not leave in time is joined before another
 * starts.
 *
 * fork. The prepare handler takes the registry lock, every stack stripe,
 * every live-map shard and the arena lock (in that order), each waiting
 * at most until a deadline (never, when fork is called from a signal
 * handler that interrupted agent code on this thread: see lock.c); the
 * parent releases what was taken, in reverse; the child re-creates them
 * all. A lock that could not be had guards a structure that may be
 * mid-update in the child: the child never touches that stack table or
 * live map again (a missed shard drops every new sample, counted in
 * samples_dropped; a missed stripe gives new samples the empty stack), a
 * missed arena lock leaves the child its own arena chunks
 * (map_arena.c); the registry is an append-only list, consistent at every
 * instant. The child's summary says so under "incomplete".
 *
 * Child policy: the child keeps tracking, with its own pid in its file
 * names and the counters it inherited, as Go would see it: the parent's
 * live heap is really live in the child (copy-on-write), so live_objects
 * starts from the parent's value. Blocks of threads that did not survive
 * the fork are marked dead; the child, single-threaded, gets its own
 * background thread as any process does (below), at its first due job.
 *
 * exec. LD_PRELOAD is left as the user set it, so a program exec'ed by the
 * profiled one is profiled too, under its own pid.
 *
 * Exit. The summary is written once, from the library's destructor: the
 * preloaded agent is initialised before the program and its libraries and
 * so is finalised after them, after the program's atexit handlers and
 * destructors. A program that leaves with _exit or _Exit (shells, forked
 * children) gets its summary from the shim's _exit, except in a vfork or
 * posix_spawn child, which shares its parent's memory. Fatal signals skip
 * it. quick_exit and abort write nothing (glibc's quick_exit ends in its
 * own _exit, which the shim does not see).
 *
 * Exit never blocks (issue 11): any exit may come from a signal handler
 * that interrupted agent code holding a lock, or race with a thread
 * stopped inside the agent. The exit output runs in a bounded stretch
 * (lock.c): every lock is waited for AGENT_EXIT_WAIT_NS in all at most, or
 * only tried once when the exiting thread was itself inside the agent
 * (except the work lock, which that thread cannot hold); what cannot be
 * had is skipped and listed in the summary's "incomplete" array (always
 * present; [] when nothing was skipped): without the work lock (the
 * background or HTTP thread is writing, or stuck), no final timeline
 * record and no exit profile; without the profile lock, no exit profile;
 * without a shard or a stripe, partial statistics. The summary itself is
 * always written. /metrics reads under a bounded stretch too
 * (AGENT_METRICS_WAIT_NS).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent_internal.h"
#include "map/map.h"
#include "pprof/pprof.h"

/* glibc's registration of an exit handler (what atexit is built on). */
extern int __cxa_atexit(void (*fn)(void *), void *arg, void *dso);

AGENT_TLS agent_tls_t agent_tls;
int agent_enabled = 1;

static agent_conf_t conf;
static char out_dir[CONF_PATH_MAX];        /* absolute HEAPWATCH_OUT */
static int init_state;                     /* 0 new, 1 in progress, 2 done (atomic) */
static pthread_key_t thread_key;
static bool thread_key_ok;
static agent_thread_t *registry;           /* append-only list head (atomic) */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t start_ns;                  /* CLOCK_REALTIME at start */
static uint64_t peak_live_bytes;           /* max seen at snapshots and exit (atomic) */
static int bg_pid;                         /* pid of the process whose background
                                            * thread runs; 0: none (atomic) */
static pthread_t bg_handle;                /* joinable, while bg_pid or bg_unjoined */
static int bg_tid;                         /* its kernel thread id (atomic) */
static int worker_tid;                     /* the last job worker's (atomic; 0: none yet) */
static bool bg_stop;                       /* asks it to leave (atomic) */
static bool bg_unjoined;                   /* it was asked to leave and has not been joined */
static bool bg_failed;                     /* it cannot start: jobs run on allocating threads */
static int bg_control;                     /* held while starting or pausing (atomic flag) */
static int bg_paused;                      /* inside unshare/setns: no start (atomic) */
static uint64_t next_snapshot, next_profile; /* CLOCK_MONOTONIC deadlines (under work_lock,
                                            * or before the thread exists) */
uint64_t agent_tick_due = UINT64_MAX;
static int summary_written;                /* once (atomic) */
static int own_pid;                        /* getpid() at init and after fork */

static bool out_dir_ok = true;             /* false: no output for this process */
static int exiting;                        /* exit output started (atomic; read under work_lock) */
static pthread_mutex_t work_lock = PTHREAD_MUTEX_INITIALIZER;  /* one output job at a time */

/* work_unlock: the end of a round of output: the output directory's
 * descriptor is closed (none of ours stays in the program's table between
 * rounds), then the work lock is let go. */
static void work_unlock(void)
{
    agent_outdir_drop();
    pthread_mutex_unlock(&work_lock);
}
static sem_t wake;                         /* posted to wake the background thread */
static bool wake_ok;
static int profile_requested;              /* HEAPWATCH_SIGNAL arrived (atomic) */

#define FILES_MAX 64
static char files_written[FILES_MAX][96];  /* names written by this process */
static unsigned nfiles;                    /* (under work_lock) */
static unsigned nfiles_total;
static char files_removed[FILES_MAX][96];  /* HEAPWATCH_MAX_PROFILES removed these */
static unsigned nremoved, nremoved_total;
static char (*kept)[64];                   /* capped profiles kept, a ring of max_profiles */
static unsigned nkept, kept_head;
static char tag[32];                       /* "<pid>" or "<pid>-<n>": see Output */
static unsigned tag_n;                     /* n; 0: not chosen yet */
static bool tag_fixed;                     /* a file was published with it */

/* ------------------------------------------------------------------------ */
/* Time                                                                     */
/* ------------------------------------------------------------------------ */

static uint64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Thread blocks                                                            */
/* ------------------------------------------------------------------------ */

/* adopt_dead_block: a block whose thread has exited, or NULL. */
static agent_thread_t *adopt_dead_block(void)
{
    agent_thread_t *found = NULL;
    pthread_mutex_lock(&registry_lock);
    for (agent_thread_t *t = __atomic_load_n(&registry, __ATOMIC_ACQUIRE); t; t = t->next) {
        if (!__atomic_load_n(&t->alive, __ATOMIC_RELAXED)) {
            __atomic_store_n(&t->alive, 1, __ATOMIC_RELAXED);
            found = t;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return found;
}

static agent_thread_t *new_block(void)
{
    agent_thread_t *t = map_arena_alloc(sizeof *t);
    if (!t) return NULL;
    t->alive = 1;
    pthread_mutex_lock(&registry_lock);
    t->next = registry;
    __atomic_store_n(&registry, t, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&registry_lock);
    return t;
}

static void start_background_thread(void);
static agent_thread_t *thread_register(void);

agent_thread_t *agent_thread_slow(void)
{
    int saved_errno = errno;   /* registration must not change the program's errno */
    agent_thread_t *t = thread_register();
    errno = saved_errno;
    return t;
}

/* adopt_pending: moves what signal handlers allocated and freed while the
 * thread had no block (agent_tls_t.pending) into its new block t. Called
 * once agent_tls.thread is t: a handler that runs now counts into t
 * directly, so nothing is added to pending while it is emptied. */
static void adopt_pending(agent_thread_t *t)
{
    uint64_t *p = agent_tls.pending;
    agent_tally_add(&t->mallocs, p[AGENT_COUNT_MALLOCS]);
    agent_tally_add(&t->alloc_bytes, p[AGENT_COUNT_MALLOCS + 1]);
    agent_tally_add(&t->frees, p[AGENT_COUNT_FREES]);
    agent_tally_add(&t->free_bytes, p[AGENT_COUNT_FREES + 1]);
    memset(p, 0, sizeof agent_tls.pending);
}

/*
 * thread_register: a block for the calling thread. The body is quiet (see
 * agent_tls_t): the arena and the registry lock allocate nothing, so a
 * signal handler's allocation meanwhile is counted, into pending until the
 * block is ready. pthread_setspecific allocates only for a key past its
 * first 32 (glibc), once per thread; inside the quiet stretch that
 * allocation is counted, and so is the free glibc makes of it when the
 * thread exits. Starting the background thread (the program's second
 * thread, HEAPWATCH_THREAD=auto) is not quiet: pthread_create allocates
 * for the agent (under the guard), and those allocations must not count.
 */
static agent_thread_t *thread_register(void)
{
    if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != 2) agent_init();
    if (!agent_enabled || agent_inside()) return NULL;
    agent_tls.quiet++;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);   /* the mark before the guard, as sample_enter */
    agent_enter();
    agent_thread_t *t = adopt_dead_block();
    if (!t) t = new_block();
    if (t) {
        agent_sample_thread_init(t);
        agent_tls.thread = t;
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        adopt_pending(t);
        if (thread_key_ok) pthread_setspecific(thread_key, t);
    }
    agent_leave();
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    agent_tls.quiet--;
    /* A thread of the program's own: the process is multi-threaded anyway,
     * so the agent's thread costs nothing observable now. */
    if (t && conf.thread == CONF_THREAD_AUTO &&
        __atomic_load_n(&bg_pid, __ATOMIC_RELAXED) != getpid() && gettid() != getpid()) {
        agent_enter();
        start_background_thread();
        agent_leave();
    }
    return t;
}

agent_thread_t *agent_current_thread(void)
{
    if (agent_inside()) return NULL;
    agent_thread_t *t = agent_tls.thread;
    if (t) return t;
    if (!agent_enabled) return NULL;
    return agent_thread_slow();
}

void *agent_on_alloc_slow(void *ptr)
{
    agent_thread_t *t = agent_current_thread();
    if (t) return agent_count_alloc(t, ptr, agent_usable_size(ptr));
    if (agent_in_handler())
        agent_count_handler(AGENT_COUNT_MALLOCS, 1, agent_usable_size(ptr) + AGENT_BLOCK_EXTRA);
    return ptr;
}

void agent_on_free_slow(void *ptr)
{
    agent_thread_t *t = agent_current_thread();
    if (!t) {
        if (agent_in_handler())
            agent_count_handler(AGENT_COUNT_FREES, 1, agent_usable_size(ptr) + AGENT_BLOCK_EXTRA);
        return;
    }
    agent_count_free(t, agent_usable_size(ptr));
    if (agent_maybe_sampled(ptr)) agent_free_sampled(t, ptr);
}

/* thread_exit: pthread key destructor. Allocations the thread makes after
 * this (later destructors) register it again, which is harmless. */
static void thread_exit(void *p)
{
    agent_thread_t *t = p;
    agent_tls.thread = NULL;
    agent_tls.fast = NULL;
    __atomic_store_n(&t->alive, 0, __ATOMIC_RELEASE);
}

void agent_counters_read(heapwatch_counters_t *out)
{
    memset(out, 0, sizeof *out);
    for (agent_thread_t *t = __atomic_load_n(&registry, __ATOMIC_ACQUIRE); t; t = t->next) {
        /* Bytes first: a count read after its bytes is never behind them,
         * so a block never reads as more bytes than its blocks explain. */
        uint64_t alloc_bytes = __atomic_load_n(&t->alloc_bytes, __ATOMIC_ACQUIRE);
        uint64_t free_bytes = __atomic_load_n(&t->free_bytes, __ATOMIC_ACQUIRE);
        uint64_t mallocs = __atomic_load_n(&t->mallocs, __ATOMIC_ACQUIRE);
        uint64_t frees = __atomic_load_n(&t->frees, __ATOMIC_ACQUIRE);
        out->mallocs += mallocs;
        out->frees += frees;
        out->alloc_bytes += alloc_bytes - AGENT_BLOCK_EXTRA * mallocs;   /* see AGENT_BLOCK_EXTRA */
        out->free_bytes += free_bytes - AGENT_BLOCK_EXTRA * frees;
    }
}

AGENT_EXPORT void heapwatch_read_counters(heapwatch_counters_t *out)
{
    agent_counters_read(out);
}


/* ------------------------------------------------------------------------ */
/* Output files                                                             */
/* ------------------------------------------------------------------------ */

/*
 * Output. Everything goes through the verified directory descriptor of
 * out.c (agent_output_dirfd), under work_lock. Final names are never
 * replaced, so that no process's result replaces another's, even when
 * processes in different pid namespaces share a pid and a directory:
 * each process names its files with a tag, "<pid>", or "<pid>-<n>" (n =
 * 2, 3, ...) when a file of that pid already exists. The tag is chosen at
 * the first file the process publishes (skipping a tag whose summary,
 * timeline or alerts file exists) and kept for every later file, so the
 * files of one process share it; a name that turns out to be taken moves
 * the process to the next tag from then on (only two processes racing on
 * their very first files can split one process's files over two tags;
 * nothing is ever replaced). tools/rundir.c reads "<pid>-<n>" as its own
 * process.
 *
 * HEAPWATCH_MAX_PROFILES bounds the interval, signal and http profiles
 * kept: once a new one is written, the oldest beyond the cap is removed
 * (exit, alert and peak profiles are never removed). The summary lists
 * the files that exist ("files") and those removed ("files_removed", the
 * first FILES_MAX names, with "files_removed_total").
 */

/* report_out_dir: the one message about an unusable HEAPWATCH_OUT. */
static void report_out_dir(int err, const char *why)
{
    char line[CONF_PATH_MAX + 600];
    agent_buf_t b;
    agent_buf_init(&b, line, sizeof line);
    agent_buf_str(&b, "heapwatch: HEAPWATCH_OUT: ");
    if (why && why[0]) {
        agent_buf_str(&b, why);
        if (err == -EPERM || err == -ELOOP)
            agent_buf_str(&b, "; refused: the output directory and every directory above it must "
                              "belong to this user or root and be writable by no one else, unless sticky");
    } else {
        agent_buf_str(&b, "the directory \"");
        agent_buf_str_escaped(&b, out_dir, AGENT_QUOTE_MAX);   /* one line, whatever the path holds */
        agent_buf_str(&b, "\" cannot be written (");
        agent_buf_str(&b, strerror(-err));
        agent_buf_str(&b, ")");
    }
    agent_buf_str(&b, "; the program runs on without heapwatch output\n");
    if (b.overflow) line[sizeof line - 2] = '\n';
    agent_log(line);
}

/* output_dirfd: the verified output directory (under work_lock), or -1
 * after one message, when there is no output any more. */
static int output_dirfd(void)
{
    if (!out_dir_ok) return -1;
    char why[CONF_PATH_MAX + 200];
    int fd = agent_outdir_fd(why, sizeof why);
    if (fd < 0) {
        out_dir_ok = false;
        report_out_dir(fd, why);
        return -1;
    }
    return fd;
}

/* files_*: the summary's lists (under work_lock). */
static void remember_file(const char *name)
{
    if (nfiles < FILES_MAX) {
        agent_buf_t b;
        agent_buf_init(&b, files_written[nfiles++], sizeof files_written[0]);
        agent_buf_str(&b, name);
    }
    nfiles_total++;
}

static void forget_file(const char *name)
{
    for (unsigned i = 0; i < nfiles; i++) {
        if (strcmp(files_written[i], name) != 0) continue;
        memmove(files_written[i], files_written[i + 1], (nfiles - i - 1) * sizeof files_written[0]);
        nfiles--;
        break;
    }
    if (nfiles_total) nfiles_total--;
    if (nremoved < FILES_MAX) {
        agent_buf_t b;
        agent_buf_init(&b, files_removed[nremoved++], sizeof files_removed[0]);
        agent_buf_str(&b, name);
    }
    nremoved_total++;
}

/* tag_set: the tag for instance n (1: the bare pid). */
static void tag_set(unsigned n)
{
    tag_n = n;
    agent_buf_t b;
    agent_buf_init(&b, tag, sizeof tag);
    agent_buf_u64(&b, (uint64_t)getpid());
    if (n > 1) {
        agent_buf_str(&b, "-");
        agent_buf_u64(&b, n);
    }
}

/* tag_taken: a summary, timeline or alerts file of tag t exists. */
static bool tag_taken(int dirfd)
{
    static const char *const kinds[][2] = {
        { "summary.", ".json" }, { "timeline.", ".jsonl.zst" }, { "alerts.", ".jsonl" },
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        char name[96];
        agent_buf_t b;
        agent_buf_init(&b, name, sizeof name);
        agent_buf_str(&b, kinds[i][0]);
        agent_buf_str(&b, tag);
        agent_buf_str(&b, kinds[i][1]);
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT) return true;
    }
    return false;
}

#define TAG_TRIES 1000   /* instances of one pid in one directory, at most */

/* output_name: prefix + tag + suffix (choosing the tag at the process's
 * first file). @return false when no tag is left. */
static bool output_name(int dirfd, const char *prefix, const char *suffix, char *name, size_t cap)
{
    if (!tag_fixed) {
        if (!tag_n) tag_set(1);
        while (tag_n < TAG_TRIES && tag_taken(dirfd)) tag_set(tag_n + 1);
    }
    if (tag_n >= TAG_TRIES) return false;
    agent_buf_t b;
    agent_buf_init(&b, name, cap);
    agent_buf_str(&b, prefix);
    agent_buf_str(&b, tag);
    agent_buf_str(&b, suffix);
    return !b.overflow;
}

int agent_output_publish(int dirfd, const char *tmp, const char *prefix, const char *suffix,
                         char *name, size_t cap)
{
    for (unsigned tries = 0; tries < TAG_TRIES; tries++) {
        if (!output_name(dirfd, prefix, suffix, name, cap)) break;
        int err = agent_publish_at(dirfd, tmp, name);
        if (err != -EEXIST) {
            if (!err) tag_fixed = true;
            return err;
        }
        tag_set(tag_n + 1);   /* taken: this process moves on */
    }
    name[0] = 0;
    return -EEXIST;
}

const char *agent_output_tag(void)
{
    if (!tag_n) tag_set(1);
    return tag;
}

int agent_output_dirfd(void) { return output_dirfd(); }

/* output_summary: writes the summary (built by build for its own name)
 * under a name no other file has (under work_lock). */
static int output_summary(void (*build)(agent_buf_t *b, const char *own_name), char *text, size_t cap)
{
    int dirfd = output_dirfd();
    if (dirfd < 0) return -EACCES;
    char tmp[128];
    int err = -EEXIST;
    for (unsigned tries = 0; tries < 8 && err == -EEXIST; tries++) {
        char name[96];
        if (!output_name(dirfd, "summary.", ".json", name, sizeof name)) break;
        agent_buf_t b;
        agent_buf_init(&b, text, cap);
        build(&b, name);
        int fd = agent_tmp_create(dirfd, name, tmp, sizeof tmp);
        if (fd < 0) {
            err = fd;
            break;
        }
        err = agent_write_all(fd, b.buf, b.len);
        if (!err && fsync(fd) != 0) err = -errno;
        agent_fd_release(fd);
        if (!err) err = agent_publish_at(dirfd, tmp, name);
        if (err) (void)unlinkat(dirfd, tmp, 0);
        if (err == -EEXIST) tag_set(tag_n + 1);
        if (!err) tag_fixed = true;
    }
    if (err) {
        out_dir_ok = false;             /* one message, then quiet */
        report_out_dir(err, NULL);
    }
    return err;
}

/* capped: a profile reason that HEAPWATCH_MAX_PROFILES bounds. */
static bool capped(const char *reason)
{
    return strcmp(reason, "interval") == 0 || strcmp(reason, "signal") == 0 ||
           strcmp(reason, "http") == 0;
}

/* keep_capped: name was just written; removes the oldest capped profile
 * beyond the cap (under work_lock). */
static void keep_capped(int dirfd, const char *name)
{
    unsigned max = (unsigned)conf.max_profiles;
    if (!kept) {
        kept = map_arena_alloc((size_t)max * sizeof *kept);
        if (!kept) return;   /* no memory: nothing is removed (never a file we did not list) */
    }
    if (nkept == max) {
        const char *oldest = kept[kept_head];
        if (unlinkat(dirfd, oldest, 0) == 0 || errno == ENOENT) forget_file(oldest);
        kept_head = (kept_head + 1) % max;
        nkept--;
    }
    agent_buf_t b;
    agent_buf_init(&b, kept[(kept_head + nkept) % max], sizeof kept[0]);
    agent_buf_str(&b, name);
    nkept++;
}

/* write_profile_named: a heap profile for `reason` (under work_lock); its
 * file name into name, "" when none was written. With keep_fd, the
 * descriptor of the file written (read it from offset 0) goes to
 * *keep_fd, for the caller to close. */
static void write_profile_fd(const char *reason, char *name, size_t cap, int *keep_fd)
{
    static bool reported;
    name[0] = 0;
    int dirfd = output_dirfd();
    if (dirfd < 0) return;
    int err = agent_profile_write(dirfd, reason, name, cap, keep_fd);
    if (err == AGENT_PROFILE_BUSY) return;   /* exit: skipped, and noted (lock.c) */
    if (err == 0) {
        remember_file(name);
        if (capped(reason)) keep_capped(dirfd, name);
    } else if (!reported) {
        reported = true;
        char line[256];
        agent_buf_t b;
        agent_buf_init(&b, line, sizeof line);
        agent_buf_str(&b, "heapwatch: cannot write a heap profile in HEAPWATCH_OUT: ");
        agent_buf_str(&b, pprof_strerror((pprof_err_t)err));
        agent_buf_str(&b, "; the program runs on\n");
        agent_log(line);
    }
}

static void write_profile_named(const char *reason, char *name, size_t cap)
{
    write_profile_fd(reason, name, cap, NULL);
}

static void write_profile(const char *reason)
{
    char name[96];
    write_profile_named(reason, name, sizeof name);
}

bool agent_output_ready(void) { return output_dirfd() >= 0; }
void agent_output_remember(const char *name) { remember_file(name); }
void agent_output_profile(const char *reason, char *name, size_t cap)
{
    write_profile_named(reason, name, cap);
}
uint64_t agent_peak_live_bytes(void) { return __atomic_load_n(&peak_live_bytes, __ATOMIC_RELAXED); }

int agent_output_profile_fd(const char *reason, char *name, size_t cap, int *fd)
{
    *fd = -1;
    name[0] = 0;
    pthread_mutex_lock(&work_lock);
    bool over = __atomic_load_n(&exiting, __ATOMIC_ACQUIRE);
    if (!over) write_profile_fd(reason, name, cap, fd);
    work_unlock();
    if (over) return -ESHUTDOWN;
    if (!name[0] || *fd < 0) return -EIO;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Snapshots and the background thread                                      */
/* ------------------------------------------------------------------------ */

/* snapshot: reads the counters and updates the peak. */
static void snapshot(heapwatch_counters_t *c)
{
    agent_counters_read(c);
    uint64_t live = c->alloc_bytes >= c->free_bytes ? c->alloc_bytes - c->free_bytes : 0;
    uint64_t peak = __atomic_load_n(&peak_live_bytes, __ATOMIC_RELAXED);
    while (live > peak &&
           !__atomic_compare_exchange_n(&peak_live_bytes, &peak, live, 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

/* on_profile_signal: HEAPWATCH_SIGNAL's handler. Async-signal-safe: it
 * only raises a flag and posts the semaphore; the background thread writes
 * the profile (with no thread, the next tick starts it or writes it). */
static void on_profile_signal(int sig)
{
    (void)sig;
    int saved = errno;
    __atomic_store_n(&profile_requested, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&bg_pid, __ATOMIC_RELAXED) != (int)syscall(SYS_getpid))
        __atomic_store_n(&agent_tick_due, 0, __ATOMIC_RELAXED);   /* no thread: the next tick */
    if (wake_ok) sem_post(&wake);
    errno = saved;
}

/* install_signal: HEAPWATCH_SIGNAL's handler, only where the signal is
 * still at its default: a disposition the program inherited (SIG_IGN from
 * nohup or a parent that ignores it) or set before us is the program's,
 * and is kept, with one line saying profiles on signal are off. A handler
 * the program installs later replaces ours (sigaction is not interposed). */
static void install_signal(void)
{
    if (!conf.signal) return;
    struct sigaction old;
    if (sigaction(conf.signal, NULL, &old) == 0 && old.sa_handler != SIG_DFL) {
        char line[200];
        agent_buf_t b;
        agent_buf_init(&b, line, sizeof line);
        agent_buf_str(&b, "heapwatch: HEAPWATCH_SIGNAL: signal ");
        agent_buf_u64(&b, (uint64_t)conf.signal);
        agent_buf_str(&b, old.sa_handler == SIG_IGN ? " is ignored by the program (inherited)"
                                                    : " already has the program's handler");
        agent_buf_str(&b, "; left as it is, profiles on signal are off\n");
        agent_log(line);
        return;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_profile_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(conf.signal, &sa, NULL) != 0)
        agent_log("heapwatch: HEAPWATCH_SIGNAL: cannot install the handler; profiles on demand are off\n");
}

/* sleep_until: waits on the semaphore until `deadline` (CLOCK_MONOTONIC
 * ns) or a post. */
static void sleep_until(uint64_t deadline)
{
    struct timespec ts = { (time_t)(deadline / 1000000000ull), (long)(deadline % 1000000000ull) };
    if (wake_ok) {
        while (sem_clockwait(&wake, CLOCK_MONOTONIC, &ts) != 0 && errno == EINTR) {
        }
    } else {
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
    }
}

/* advance: the next deadline of a periodic job after `now`. */
static uint64_t advance(uint64_t deadline, uint64_t period, uint64_t now)
{
    deadline += period;
    if (deadline <= now) deadline = now + period;   /* we fell behind: skip, do not burst */
    return deadline;
}

/* live_threads: the process's running threads, or 0 when unknown: field
 * 20 of /proc/self/stat (num_threads), less the main thread when it has
 * ended with pthread_exit (it stays a zombie, counted, and the process
 * state, field 3, is then its 'Z'). */
static long live_threads(void)
{
    char buf[1024];
    agent_fd_t f;   /* checked before the read and the close (fds.c) */
    if (!agent_fd_open(&f, "/proc/self/stat", O_RDONLY)) return 0;
    ssize_t n = agent_fd_ours(&f) ? read(f.fd, buf, sizeof buf - 1) : -1;
    agent_fd_close(&f);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *p = strrchr(buf, ')');   /* the command name may hold anything */
    if (!p || p[1] != ' ') return 0;
    bool leader_gone = p[2] == 'Z';
    int field = 2;                       /* p is at the space before field 3 */
    for (; *p && field < 20; p++)
        if (*p == ' ') field++;
    if (field != 20) return 0;
    return strtol(p, NULL, 10) - (leader_gone ? 1 : 0);
}

/* program_threads_gone: the program's threads have all ended (main
 * called pthread_exit and the others returned); only the agent's own
 * (`agent_threads` of them, and the HTTP server's) keep the process
 * alive. glibc would now call exit(0): the background thread does so on
 * its behalf (background_main). */
static bool program_threads_gone(long agent_threads)
{
    return live_threads() == agent_threads + agent_http_threads();
}

/* start_watch: the first base of the growth rates, at start (and in a
 * forked child): growth from the very start is measured too. */
static void start_watch(uint64_t now)
{
    /* Signals wait meanwhile: a handler that exits would otherwise find
     * work_lock held by its own thread (the exit waits for it). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_mutex_lock(&work_lock);
    if (!__atomic_load_n(&exiting, __ATOMIC_ACQUIRE)) {
        heapwatch_counters_t c;
        snapshot(&c);
        agent_watch_start(&c, now);
    }
    work_unlock();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* next_due: the earliest deadline (under work_lock, or before the thread). */
static uint64_t next_due(void)
{
    return next_snapshot < next_profile ? next_snapshot : next_profile;
}

/* set_deadlines: the first snapshot and periodic profile after `now`. */
static void set_deadlines(uint64_t now)
{
    next_snapshot = now + conf.interval_ns;
    next_profile = conf.profile_interval_ns ? now + conf.profile_interval_ns : UINT64_MAX;
}

/* arm_ticks: the allocating threads check agent_tick_due from now on
 * (this thread's countdown is recut at once; others at their next sample
 * or registration). */
static void arm_ticks(uint64_t due)
{
    __atomic_store_n(&agent_tick_bytes, AGENT_TICK_BYTES, __ATOMIC_RELAXED);
    __atomic_store_n(&agent_tick_due, due, __ATOMIC_RELAXED);
    if (agent_tls.thread) agent_sample_rearm(agent_tls.thread);
}

/* run_due_jobs: the signal profile, snapshot and periodic profile due at
 * `now` (under work_lock, not exiting), on the background thread's job
 * worker, on the background thread itself, or on an allocating one. With
 * `gone` (a thread of the agent's: `agent_threads` of them run now), a
 * due snapshot first checks whether the program's threads have all ended:
 * then *gone is set and nothing is done. */
static void run_due_jobs(uint64_t now, long agent_threads, bool *gone)
{
    if (gone && now >= next_snapshot && program_threads_gone(agent_threads)) {
        *gone = true;
        return;
    }
    if (__atomic_exchange_n(&profile_requested, 0, __ATOMIC_RELAXED)) write_profile("signal");
    if (now >= next_snapshot) {
        heapwatch_counters_t c;
        snapshot(&c);
        agent_watch_snapshot(&c, now, now_ns(CLOCK_REALTIME), start_ns, false);
        next_snapshot = advance(next_snapshot, conf.interval_ns, now);
    }
    if (now >= next_profile) {
        write_profile("interval");
        next_profile = advance(next_profile, conf.profile_interval_ns, now_ns(CLOCK_MONOTONIC));
    }
}

/* The job worker. The background thread's jobs open, write and close
 * files; in the program's descriptor table a shell's `exec 3>log` or a
 * daemon's close-and-reopen can meet them at any moment (fds.c). So each
 * round of jobs runs on a short-lived worker thread that first gives
 * itself an empty descriptor table of its own (agent_fds_private), while
 * the background thread, which stays in the program's table, waits for
 * it. (The background thread itself must stay there: when it ends the
 * process on behalf of a program whose threads have all ended, the exit
 * handlers run on it and need the program's descriptors.) One worker at a
 * time, on one stack of ours, reused. A worker costs a thread creation
 * and one close_range per round; when one cannot start (or the kernel
 * has no CLOSE_RANGE_UNSHARE), the round runs on the background thread,
 * in the shared table, with the rules of fds.c. */
typedef struct job_s {
    uint64_t now;
    bool gone;                         /* out: the program's threads have all ended */
} job_t;

#define WORKER_STACK (256 * 1024)       /* as the background thread's: the jobs it ran there run here */
static void *worker_stack = MAP_FAILED;
static size_t worker_stack_len;

static void *job_main(void *arg)
{
    job_t *j = arg;
    agent_enter();   /* never left: what glibc frees as this thread ends is the agent's */
    __atomic_store_n(&worker_tid, (int)gettid(), __ATOMIC_RELAXED);
    (void)agent_fds_private();
    run_due_jobs(j->now, 2, &j->gone);   /* the background thread and this one */
    return NULL;
}

/* run_jobs_on_worker: the round of jobs at `now` on a worker (under
 * work_lock, held by the background thread for it). @return whether the
 * program's threads have all ended. */
static bool run_jobs_on_worker(uint64_t now)
{
    job_t job = { now, false };
    if (worker_stack == MAP_FAILED) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        worker_stack_len = WORKER_STACK + page;
        worker_stack = mmap(NULL, worker_stack_len, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (worker_stack != MAP_FAILED && mprotect(worker_stack, page, PROT_NONE) != 0) {
            munmap(worker_stack, worker_stack_len);
            worker_stack = MAP_FAILED;
        }
    }
    pthread_attr_t attr;
    pthread_t tid;
    int err = EINVAL;
    if (worker_stack != MAP_FAILED && pthread_attr_init(&attr) == 0) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        if (pthread_attr_setstack(&attr, (char *)worker_stack + page, WORKER_STACK) == 0)
            err = pthread_create(&tid, &attr, job_main, &job);   /* signals: all blocked, as here */
        pthread_attr_destroy(&attr);
    }
    if (err == 0) {
        pthread_join(tid, NULL);
    } else {
        run_due_jobs(now, 1, &job.gone);
    }
    return job.gone;
}


static void *background_main(void *arg)
{
    (void)arg;
    agent_enter();     /* everything this thread does is the agent's own */
    __atomic_store_n(&bg_tid, (int)gettid(), __ATOMIC_RELAXED);
    for (;;) {
        pthread_mutex_lock(&work_lock);
        bool over = __atomic_load_n(&exiting, __ATOMIC_ACQUIRE);
        uint64_t due = next_due();
        work_unlock();
        if (over) break;
        sleep_until(due);
        if (__atomic_load_n(&bg_stop, __ATOMIC_ACQUIRE)) break;
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        pthread_mutex_lock(&work_lock);
        if (!__atomic_load_n(&exiting, __ATOMIC_ACQUIRE) && run_jobs_on_worker(now)) {
            /* The program's threads have all ended: exit as glibc would,
             * outside the agent, so that what the exit handlers allocate
             * is the program's. */
            work_unlock();
            agent_leave();
            exit(0);
        }
        work_unlock();
    }
    agent_leave();
    return NULL;
}

#define THREAD_STACK (256 * 1024)

/* bg_stack: the background thread's own stack (mmap'd, a guard page at
 * its low end), or MAP_FAILED. The thread may now start at any time and
 * leave again (unshare): a stack from glibc's cache would be one a thread
 * of the program expected to reuse (then it allocates a new one, and its
 * TLS, where it did not before), and one it gave back would be cached. A
 * stack of our own is never cached; it is unmapped after the join. */
static void *bg_stack = MAP_FAILED;
static size_t bg_stack_len;

static void bg_stack_free(void)
{
    if (bg_stack != MAP_FAILED) munmap(bg_stack, bg_stack_len);
    bg_stack = MAP_FAILED;
}

/* spawn_t: what a new agent thread runs and its name, handed over in
 * arena memory that the thread frees. */
typedef struct spawn_s {
    void *(*fn)(void *);
    const char *name;
} spawn_t;

/* spawn_main: names the thread itself (prctl on the calling thread: no
 * /proc/self/task/<tid>/comm descriptor opened on the program's thread,
 * which naming another thread needs), then runs its function. */
static void *spawn_main(void *arg)
{
    spawn_t s = *(spawn_t *)arg;
    map_allocator_t a = map_arena_allocator();
    a.free(a.ctx, arg);
    pthread_setname_np(pthread_self(), s.name);
    return s.fn(NULL);
}

/* spawn: an agent thread running fn(NULL), every signal blocked in it;
 * joinable ones on a stack of their own (bg_stack) when possible. */
/* A thread of the agent's may be started from any thread of the
 * program (HEAPWATCH_THREAD=auto starts it from an allocating thread):
 * it must not take that thread's real-time policy and priority, nor its
 * CPU pinning. It gets the ordinary policy and the CPUs the process had
 * at start (init_cpus, read by agent_init on the main thread). */
static cpu_set_t init_cpus;
static bool init_cpus_ok;

static void plain_sched(pthread_attr_t *attr)
{
    struct sched_param sp = { .sched_priority = 0 };
    if (pthread_attr_setinheritsched(attr, PTHREAD_EXPLICIT_SCHED) == 0) {
        (void)pthread_attr_setschedpolicy(attr, SCHED_OTHER);
        (void)pthread_attr_setschedparam(attr, &sp);
    }
    if (init_cpus_ok) (void)pthread_attr_setaffinity_np(attr, sizeof init_cpus, &init_cpus);
}

static int spawn(void *(*fn)(void *), const char *name, bool detached, pthread_t *out)
{
    map_allocator_t a = map_arena_allocator();
    spawn_t *s = a.alloc(a.ctx, sizeof *s);
    if (!s) return ENOMEM;
    s->fn = fn;
    s->name = name;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, detached ? PTHREAD_CREATE_DETACHED : PTHREAD_CREATE_JOINABLE);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    plain_sched(&attr);
    pthread_t tid;
    agent_enter();
    int err = EINVAL;
    if (!detached) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        bg_stack_len = THREAD_STACK + page;
        bg_stack = mmap(NULL, bg_stack_len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (bg_stack != MAP_FAILED && mprotect(bg_stack, page, PROT_NONE) == 0 &&
            pthread_attr_setstack(&attr, (char *)bg_stack + page, THREAD_STACK) == 0)
            err = pthread_create(&tid, &attr, spawn_main, s);
        if (err) {
            /* Too small for a large static TLS, say: glibc's stack. */
            bg_stack_free();
            pthread_attr_destroy(&attr);
            pthread_attr_init(&attr);
            pthread_attr_setstacksize(&attr, THREAD_STACK);
            plain_sched(&attr);
        }
    }
    if (err) err = pthread_create(&tid, &attr, spawn_main, s);
    agent_leave();
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) a.free(a.ctx, s);
    else if (out) *out = tid;
    return err;
}

int agent_spawn_thread(void *(*fn)(void *), const char *name)
{
    return spawn(fn, name, true, NULL);
}

/* start_background_thread: starts the snapshot, alert and profile thread
 * in this process, unless it runs, is not wanted (off), or unshare/setns
 * is under way; if it cannot start, the allocating threads do its jobs. */
static void start_background_thread(void)
{
    if (conf.thread == CONF_THREAD_OFF || bg_failed) return;
    int me = (int)getpid();
    if (__atomic_load_n(&bg_pid, __ATOMIC_RELAXED) == me ||
        __atomic_load_n(&bg_paused, __ATOMIC_RELAXED) ||
        __atomic_exchange_n(&bg_control, 1, __ATOMIC_ACQUIRE))
        return;
    int saved = errno;
    if (bg_unjoined && pthread_tryjoin_np(bg_handle, NULL) == 0) {
        bg_unjoined = false;
        bg_stack_free();
    }
    if (!bg_unjoined && __atomic_load_n(&bg_pid, __ATOMIC_RELAXED) != me) {
        __atomic_store_n(&bg_stop, false, __ATOMIC_RELAXED);
        if (spawn(background_main, "heapwatch", false, &bg_handle) == 0) {
            __atomic_store_n(&bg_pid, me, __ATOMIC_RELEASE);
            __atomic_store_n(&agent_tick_due, UINT64_MAX, __ATOMIC_RELAXED);
            __atomic_store_n(&agent_tick_bytes, 0, __ATOMIC_RELAXED);
        } else {
            bg_failed = true;   /* ticks stay armed: run_due_jobs on allocating threads */
            agent_log("heapwatch: cannot start the background thread; snapshots, alerts "
                      "and periodic profiles are taken by allocating threads\n");
        }
    }
    __atomic_store_n(&bg_control, 0, __ATOMIC_RELEASE);
    errno = saved;
}

/* tick_jobs: the due jobs, done on this allocating thread (off, or no
 * thread could start); skipped when another thread is at them. Signals
 * wait meanwhile (two system calls per due job): a handler that ran now
 * would find work_lock held by its own thread (an exit from it would wait
 * for it forever) and its allocations would pass uncounted. */
static void tick_jobs(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_mutex_trylock(&work_lock) != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return;
    }
    if (!exiting) {
        run_due_jobs(now_ns(CLOCK_MONOTONIC), 0, NULL);
        __atomic_store_n(&agent_tick_due, next_due(), __ATOMIC_RELAXED);
        /* A signal that came meanwhile must not wait for the next job. */
        if (__atomic_load_n(&profile_requested, __ATOMIC_RELAXED))
            __atomic_store_n(&agent_tick_due, 0, __ATOMIC_RELAXED);
    }
    work_unlock();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void agent_tick(void)
{
    uint64_t due = __atomic_load_n(&agent_tick_due, __ATOMIC_RELAXED);
    if (AGENT_LIKELY(due == UINT64_MAX)) return;
    if (due && now_ns(CLOCK_MONOTONIC_COARSE) < due) return;   /* a few ns (vDSO) */
    agent_tick_slow();
}

void agent_tick_slow(void)
{
    if (!agent_enabled || __atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != 2 ||
        agent_inside() || __atomic_load_n(&bg_paused, __ATOMIC_RELAXED))
        return;
    int saved = errno;
    agent_enter();
    if (conf.thread == CONF_THREAD_OFF || bg_failed) tick_jobs();
    else start_background_thread();
    agent_leave();
    errno = saved;
}

/* ------------------------------------------------------------------------ */
/* unshare and setns                                                        */
/* ------------------------------------------------------------------------ */

#define PAUSE_JOIN_NS 2000000000ull    /* the thread finishes the file it writes */
#define PAUSE_GONE_NS 100000000ull     /* the kernel releases an exited thread */
#define PAUSE_STEP_NS 1000000ull

static void nap(uint64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
    nanosleep(&ts, NULL);
}

/* wait_gone: the kernel no longer lists thread tid in this process (the
 * thread count unshare checks drops only then, a little after the join). */
static void wait_gone(int tid)
{
    char path[64];
    agent_buf_t b;
    agent_buf_init(&b, path, sizeof path);
    agent_buf_str(&b, "/proc/self/task/");
    agent_buf_u64(&b, (uint64_t)tid);
    if (access("/proc/self/task", F_OK) != 0) {   /* no /proc: a pause instead */
        nap(PAUSE_STEP_NS);
        return;
    }
    for (uint64_t waited = 0; waited < PAUSE_GONE_NS && access(path, F_OK) == 0; waited += PAUSE_STEP_NS)
        nap(PAUSE_STEP_NS);
}

/* own_process: not a vfork or posix_spawn child (which shares its parent's
 * memory and must change none of its state; see agent_on_quick_exit). */
static bool own_process(void)
{
    return (pid_t)__atomic_load_n(&own_pid, __ATOMIC_RELAXED) == getpid();
}

void agent_thread_pause(void)
{
    if (!agent_enabled || __atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != 2 || !own_process())
        return;
    __atomic_add_fetch(&bg_paused, 1, __ATOMIC_ACQ_REL);
    if (__atomic_load_n(&bg_pid, __ATOMIC_ACQUIRE) != (int)getpid()) return;
    int saved = errno;
    agent_enter();
    /* A start in progress on another thread ends quickly; bounded anyway. */
    for (uint64_t w = 0; __atomic_exchange_n(&bg_control, 1, __ATOMIC_ACQUIRE); w += PAUSE_STEP_NS) {
        if (w >= PAUSE_JOIN_NS) goto out;
        nap(PAUSE_STEP_NS);
    }
    if (__atomic_load_n(&bg_pid, __ATOMIC_ACQUIRE) == (int)getpid()) {
        __atomic_store_n(&bg_stop, true, __ATOMIC_RELEASE);
        if (wake_ok) sem_post(&wake);
        uint64_t deadline = now_ns(CLOCK_REALTIME) + PAUSE_JOIN_NS;
        struct timespec ts = { (time_t)(deadline / 1000000000ull), (long)(deadline % 1000000000ull) };
        int tid = __atomic_load_n(&bg_tid, __ATOMIC_RELAXED);
        __atomic_store_n(&bg_pid, 0, __ATOMIC_RELEASE);
        if (pthread_timedjoin_np(bg_handle, NULL, &ts) == 0) {
            wait_gone(tid);
            /* Its last job worker was joined before it ended, but the
             * kernel may list that thread a little longer too. */
            int wtid = __atomic_load_n(&worker_tid, __ATOMIC_RELAXED);
            if (wtid) wait_gone(wtid);
            bg_stack_free();
        } else {
            bg_unjoined = true;   /* it leaves after its job; joined before a restart */
        }
    }
    __atomic_store_n(&bg_control, 0, __ATOMIC_RELEASE);
out:
    agent_leave();
    errno = saved;
}

void agent_thread_resume(void)
{
    if (!agent_enabled || __atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != 2 || !own_process())
        return;
    if (__atomic_sub_fetch(&bg_paused, 1, __ATOMIC_ACQ_REL) != 0) return;
    if (conf.thread == CONF_THREAD_OFF || bg_failed ||
        __atomic_load_n(&bg_pid, __ATOMIC_ACQUIRE) == (int)getpid())
        return;
    int saved = errno;
    agent_enter();
    if (live_threads() > 1) {
        start_background_thread();   /* multi-threaded anyway */
    } else {
        /* Back at the next due job, not before: the program may go on
         * with calls that want it alone (another unshare, a seccomp
         * filter, a check of its threads). */
        uint64_t due = now_ns(CLOCK_MONOTONIC) + conf.interval_ns;
        if (pthread_mutex_trylock(&work_lock) == 0) {
            if (next_due() > due) due = next_due();
            work_unlock();
        }
        arm_ticks(due);
    }
    agent_leave();
    errno = saved;
}

/* ------------------------------------------------------------------------ */
/* fork                                                                     */
/* ------------------------------------------------------------------------ */

/* Lock order: registry_lock, the stack stripes, the live-map shards, then
 * the arena's (lock.c has the whole order). (work_lock and the profile
 * lock are not taken: a fork must not wait for a profile being written;
 * the child re-creates them, and only the parent's background and HTTP
 * threads, or a thread doing a due job (HEAPWATCH_THREAD=off), none of
 * which exists in the child, could have held them.) Every
 * lock is waited for until one deadline at most (AGENT_FORK_WAIT_NS in
 * all; one try each when this thread was inside the agent: a handler that
 * forks may have interrupted agent code holding any of them). */
static AGENT_TLS bool fork_took_registry;   /* per thread: two threads may fork at once */

static void prefork(void)
{
    uint64_t deadline = agent_bound_deadline(AGENT_FORK_WAIT_NS);
    agent_enter();
    fork_took_registry = agent_lock_until(&registry_lock, deadline);
    agent_stacks_prefork(deadline);
    agent_live_prefork(deadline);
    map_arena_prefork(deadline);
}

static void postfork_parent(void)
{
    map_arena_postfork_parent();
    agent_live_postfork_parent();
    agent_stacks_postfork_parent();
    if (fork_took_registry) pthread_mutex_unlock(&registry_lock);
    agent_leave();
}

/* postfork_child_notes: what the child lost at the fork (see the design
 * comment), noted for its summary. (Sampling needs no switch: a lost live
 * map drops every new sample, a lost stack table gives each the empty
 * stack; agent_sample_rate stays, for the samples the child inherited.) */
static void postfork_child_notes(bool arena_ok, bool live_ok, bool stacks_ok)
{
    agent_incomplete_reset();
    if (!fork_took_registry) agent_incomplete_add("fork: thread registry busy at fork");
    if (!arena_ok) agent_incomplete_add("fork: agent memory busy at fork: this process allocates from its own chunks");
    if (!live_ok) agent_incomplete_add("fork: live map busy at fork: new samples are dropped in this process");
    if (!stacks_ok) agent_incomplete_add("fork: stack table busy at fork: new samples have no stack in this process");
}

static void postfork_child(void)
{
    agent_fds_postfork_child();
    bool arena_ok = map_arena_postfork_child();
    bool live_ok = agent_live_postfork_child();
    bool stacks_ok = agent_stacks_postfork_child();
    postfork_child_notes(arena_ok, live_ok, stacks_ok);
    agent_profile_postfork_child();
    agent_http_postfork_child();
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    registry_lock = fresh;
    work_lock = fresh;
    if (wake_ok) sem_init(&wake, 0, 0);
    /* Only this thread survived: every other block is free for adoption. */
    for (agent_thread_t *t = registry; t; t = t->next)
        if (t != agent_tls.thread) t->alive = 0;
    own_pid = (int)getpid();
    nfiles = 0;
    nfiles_total = 0;
    nremoved = nremoved_total = 0;
    nkept = kept_head = 0;      /* the parent's profiles are the parent's */
    tag_n = 0;                  /* a new pid: a new tag */
    tag_fixed = false;
    start_ns = now_ns(CLOCK_REALTIME);
    uint64_t now = now_ns(CLOCK_MONOTONIC);
    agent_watch_postfork_child(now);
    __atomic_store_n(&summary_written, 0, __ATOMIC_RELAXED);
    start_watch(now);
    /* The parent's background thread is not here. The child is
     * single-threaded: it gets its own thread (auto, on) or does its jobs
     * (off) when the first is due; with "on" at its next tick. */
    __atomic_store_n(&bg_pid, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&bg_control, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&bg_paused, 0, __ATOMIC_RELAXED);
    bg_unjoined = false;
    bg_stack_free();   /* the parent's thread's stack, copied */
    set_deadlines(now);
    arm_ticks(conf.thread == CONF_THREAD_ON ? 0 : next_due());
    agent_leave();
}

/* ------------------------------------------------------------------------ */
/* Start-up                                                                 */
/* ------------------------------------------------------------------------ */

static const char *env_lookup(const char *name)
{
    return secure_getenv(name);
}

/* resolve_out_dir: HEAPWATCH_OUT made absolute against the start-up
 * working directory, so a later chdir does not move the output. */
static void resolve_out_dir(void)
{
    agent_buf_t b;
    agent_buf_init(&b, out_dir, sizeof out_dir);
    if (conf.out_dir[0] != '/') {
        char cwd[CONF_PATH_MAX];
        if (getcwd(cwd, sizeof cwd)) {
            agent_buf_str(&b, cwd);
            agent_buf_str(&b, "/");
        }
    }
    agent_buf_str(&b, conf.out_dir);
}

/* check_out_dir: creates and opens HEAPWATCH_OUT at start, while stderr
 * is surely still open (programs such as GNU sort close it at exit), so
 * a bad or unsafe directory is reported once, up front (out.c). */
static void check_out_dir(void)
{
    char why[CONF_PATH_MAX + 200];
    int err = agent_outdir_init(out_dir, why, sizeof why);
    if (err) {
        out_dir_ok = false;
        report_out_dir(err, why);
    }
    agent_outdir_drop();   /* checked; opened again for each round of output */
}

/* report_aside: the one line of a process the agent steps aside for
 * (agent_enabled is already 0: nothing else is set up); `reason` from
 * agent_shim_aside_reason. */
static void report_aside(const char *reason)
{
    char line[256];
    agent_buf_t b;
    agent_buf_init(&b, line, sizeof line);
    agent_buf_str(&b, "heapwatch: ");
    agent_buf_str(&b, reason);
    agent_buf_str(&b, " in this process (pid ");
    agent_buf_u64(&b, (uint64_t)getpid());
    agent_buf_str(&b, "): the agent steps aside; no heapwatch output for it\n");
    agent_log(line);
}

void agent_init(void)
{
    int expected = 0;
    if (!__atomic_compare_exchange_n(&init_state, &expected, 1, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;   /* done, or being done by this or another thread */
    agent_enter();
    /* The shim first: it finds a sanitizer runtime (or a malloc before
     * ours) before anything else runs (shim.c); then the agent only says
     * so. */
    agent_shim_init();
    agent_log_remember_stderr();
    own_pid = (int)getpid();
    init_cpus_ok = sched_getaffinity(0, sizeof init_cpus, &init_cpus) == 0;   /* see plain_sched */
    agent_fds_init();
    start_ns = now_ns(CLOCK_REALTIME);
    if (agent_shim_aside_reason()) {
        report_aside(agent_shim_aside_reason());
    } else if (getauxval(AT_SECURE)) {
        /* setuid/setgid: the environment is not the user's to trust. */
        agent_enabled = 0;
    } else {
        agent_conf_load(&conf, env_lookup, agent_log);
        agent_sample_rate = conf.rate;
        resolve_out_dir();
        check_out_dir();
        agent_watch_init(&conf, out_dir, now_ns(CLOCK_MONOTONIC));
        if (agent_stacks_init() != 0)
            agent_log("heapwatch: no memory for the stack table; sampled stacks are not recorded\n");
        wake_ok = sem_init(&wake, 0, 0) == 0;
        thread_key_ok = pthread_key_create(&thread_key, thread_exit) == 0;
        /* Before any thread registers, so that every countdown is cut. */
        set_deadlines(now_ns(CLOCK_MONOTONIC));
        if (conf.thread != CONF_THREAD_ON) arm_ticks(next_due());
        pthread_atfork(prefork, postfork_parent, postfork_child);
    }
    agent_leave();
    __atomic_store_n(&init_state, 2, __ATOMIC_RELEASE);
}

static bool exit_handler_registered;
static void exit_handler(void *arg);

__attribute__((constructor)) static void agent_ctor(void)
{
    agent_init();
    if (!agent_enabled) return;
    /* The exit output is written by an exit handler registered now, before
     * __libc_start_main registers ld.so's finaliser: handlers run in reverse
     * order, so ours runs after every library's destructors (ld.so runs the
     * preloaded agent's own destructor before those of the libraries the
     * program links). */
    exit_handler_registered = __cxa_atexit(exit_handler, NULL, NULL) == 0;
    install_signal();
    start_watch(now_ns(CLOCK_MONOTONIC));
    /* See "The background thread" atop this file. A HEAPWATCH_SIGNAL
     * request and periodic profiles must be served even to a program that
     * sits idle (a daemon asked for its heap): only a thread can do that. */
    if (conf.thread == CONF_THREAD_ON ||
        (conf.thread == CONF_THREAD_AUTO &&
         (conf.http_host[0] || conf.signal || conf.profile_interval_ns)))
        start_background_thread();
    if (conf.http_host[0]) agent_http_start(conf.http_host, conf.http_port);
}

/* ------------------------------------------------------------------------ */
/* The exit summary                                                         */
/* ------------------------------------------------------------------------ */

/* thread_sums_t: the sampling counters of every thread block. */
typedef struct thread_sums_s {
    uint64_t samples, dropped, filter_hits, filter_false, blocks;
} thread_sums_t;

static void sum_threads(thread_sums_t *out)
{
    memset(out, 0, sizeof *out);
    for (agent_thread_t *t = __atomic_load_n(&registry, __ATOMIC_ACQUIRE); t; t = t->next) {
        out->samples += __atomic_load_n(&t->samples, __ATOMIC_RELAXED);
        out->dropped += __atomic_load_n(&t->dropped, __ATOMIC_RELAXED);
        out->filter_hits += __atomic_load_n(&t->filter_hits, __ATOMIC_RELAXED);
        out->filter_false += __atomic_load_n(&t->filter_false, __ATOMIC_RELAXED);
        out->blocks++;
    }
}

void agent_metrics_read(agent_metrics_t *m)
{
    memset(m, 0, sizeof *m);
    thread_sums_t th;
    agent_live_stats_t live;
    map_arena_stats_t arena;
    /* Bounded (lock.c): the exit path may hold work_lock and a thread
     * stopped inside the agent a shard; what is busy reads as zeros. */
    agent_bounded_begin(agent_mono_ns() + AGENT_METRICS_WAIT_NS, false);
    snapshot(&m->counters);
    if (agent_lock(&work_lock)) {
        agent_watch_last(&m->objects_rate, &m->bytes_rate, &m->alert_level);
        work_unlock();
    }
    sum_threads(&th);
    (void)agent_live_get_stats(&live);
    agent_bounded_end();
    map_arena_get_stats(&arena);
    m->peak_live_bytes = __atomic_load_n(&peak_live_bytes, __ATOMIC_RELAXED);
    m->rate = conf.rate;
    m->samples = th.samples;
    m->samples_dropped = th.dropped;
    m->map_count = live.count;
    m->map_B = live.max_B;
    m->map_noverflow = live.noverflow;
    m->stacks = agent_stacks_count() > 0 ? agent_stacks_count() - 1 : 0;
    m->agent_memory_bytes = arena.mapped_bytes;
    m->start_real_ns = start_ns;
}

/* summary_sampling: what sampling, the live map and the filter hold. */
static void summary_sampling(agent_buf_t *b, const heapwatch_counters_t *c)
{
    thread_sums_t th;
    sum_threads(&th);
    agent_live_stats_t live;
    (void)agent_live_get_stats(&live);   /* a busy shard is noted (lock.c) */
    agent_buf_json_u64(b, "rate", conf.rate, true);
    agent_buf_json_u64(b, "samples", th.samples, true);
    agent_buf_json_u64(b, "samples_dropped", th.dropped, true);
    agent_buf_json_u64(b, "sampled_live", live.count, true);
    agent_buf_json_u64(b, "stacks", agent_stacks_count() > 0 ? agent_stacks_count() - 1 : 0, true);
    agent_buf_json_u64(b, "stacks_bytes", agent_stacks_bytes(), true);
    agent_buf_json_u64(b, "map_count", live.count, true);
    agent_buf_json_u64(b, "map_B", live.max_B, true);
    agent_buf_json_u64(b, "map_noverflow", live.noverflow, true);
    agent_buf_json_u64(b, "map_shards", live.shards, true);
    agent_buf_json_u64(b, "map_buckets", live.buckets, true);
    agent_buf_json_u64(b, "map_overflow_buckets", live.overflow_buckets, true);
    agent_buf_json_u64(b, "map_bytes", live.bytes, true);
    agent_buf_json_u64(b, "map_grow_failures", live.grow_failures, true);
    agent_buf_json_u64(b, "filter_bytes", live.filter_bytes, true);
    agent_buf_json_u64(b, "filter_hits", th.filter_hits, true);
    agent_buf_json_u64(b, "filter_false_positives", th.filter_false, true);
    /* The rate that matters: how many unsampled frees pay for a map lookup. */
    uint64_t unsampled = c->frees > th.filter_hits - th.filter_false
                         ? c->frees - (th.filter_hits - th.filter_false) : 0;
    agent_buf_json_key(b, "filter_false_positive_rate", true);
    agent_buf_fixed(b, unsampled ? (int64_t)(th.filter_false * 1000000 / unsampled) : 0, 6);
    agent_buf_json_u64(b, "thread_blocks", th.blocks, true);
}

/* build_summary: the JSON document of summary.<pid>.json. */
static void build_summary(agent_buf_t *b, const char *own_name)
{
    heapwatch_counters_t c;
    snapshot(&c);
    uint64_t end = now_ns(CLOCK_REALTIME);
    char exe[CONF_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    map_arena_stats_t arena;
    map_arena_get_stats(&arena);

    agent_buf_str(b, "{");
    agent_buf_json_u64(b, "pid", (uint64_t)getpid(), true);
    agent_buf_json_u64(b, "ppid", (uint64_t)getppid(), true);
    agent_buf_json_key(b, "exe", true);
    agent_buf_json_str(b, exe);
    agent_buf_json_key(b, "start_time", true);
    agent_buf_fixed(b, (int64_t)(start_ns / 1000), 6);
    agent_buf_json_key(b, "end_time", true);
    agent_buf_fixed(b, (int64_t)(end / 1000), 6);
    agent_buf_json_key(b, "duration_s", true);
    agent_buf_fixed(b, (int64_t)((end - start_ns) / 1000), 6);
    agent_buf_json_u64(b, "mallocs", c.mallocs, true);
    agent_buf_json_u64(b, "frees", c.frees, true);
    agent_buf_json_key(b, "live_objects", true);
    agent_buf_i64(b, (int64_t)(c.mallocs - c.frees));
    agent_buf_json_key(b, "live_bytes", true);
    agent_buf_i64(b, (int64_t)(c.alloc_bytes - c.free_bytes));
    agent_buf_json_u64(b, "peak_live_bytes", __atomic_load_n(&peak_live_bytes, __ATOMIC_RELAXED), true);
    agent_buf_json_u64(b, "alloc_bytes", c.alloc_bytes, true);
    agent_buf_json_u64(b, "free_bytes", c.free_bytes, true);
    summary_sampling(b, &c);
    agent_buf_json_u64(b, "agent_memory_bytes", arena.mapped_bytes, true);
    agent_buf_json_u64(b, "agent_memory_inuse_bytes", arena.inuse_bytes, true);
    agent_buf_json_key(b, "files", true);
    agent_buf_str(b, "[");
    for (unsigned i = 0; i < nfiles; i++) {
        agent_buf_str(b, i ? ", " : "");
        agent_buf_json_str(b, files_written[i]);
    }
    agent_buf_str(b, nfiles ? ", " : "");
    agent_buf_json_str(b, own_name);
    agent_buf_str(b, "]");
    agent_buf_json_u64(b, "files_total", nfiles_total + 1, true);
    agent_buf_json_key(b, "files_removed", true);
    agent_buf_str(b, "[");
    for (unsigned i = 0; i < nremoved; i++) {
        agent_buf_str(b, i ? ", " : "");
        agent_buf_json_str(b, files_removed[i]);
    }
    agent_buf_str(b, "]");
    agent_buf_json_u64(b, "files_removed_total", nremoved_total, true);
    agent_buf_json_u64(b, "max_profiles", conf.max_profiles, true);
    agent_buf_json_key(b, "incomplete", true);
    agent_incomplete_json(b);
    agent_buf_str(b, "\n}\n");
}

/* write_exit_output: the exit profile, then the summary that lists it;
 * once per process. The background thread finishes the job it is doing
 * (work_lock) and starts no other, so no file is left half-written when
 * the process ends; but the wait is bounded (see the design comment):
 * deadline from agent_bound_deadline, taken by the caller before its
 * agent_enter. */
static void write_exit_output(uint64_t deadline)
{
    if (!agent_enabled || __atomic_exchange_n(&summary_written, 1, __ATOMIC_ACQ_REL)) return;
    agent_bounded_begin(deadline, true);
    __atomic_store_n(&exiting, 1, __ATOMIC_RELEASE);   /* the background thread starts no job */
    /* The work lock is waited for even by a thread interrupted inside the
     * agent: a program thread holds it only with its signals blocked
     * (tick_jobs, start_watch) or for a few instructions (the try in
     * agent_thread_resume); otherwise only the agent's own threads do,
     * which finish their job and let go unless they wait for a lock the
     * interrupted code holds: bounded. */
    uint64_t work_deadline = deadline ? deadline : agent_mono_ns() + AGENT_EXIT_WAIT_NS;
    bool have_work = agent_lock_until(&work_lock, work_deadline);
    if (have_work) {
        heapwatch_counters_t c;
        snapshot(&c);
        agent_watch_snapshot(&c, now_ns(CLOCK_MONOTONIC), now_ns(CLOCK_REALTIME), start_ns, true);
        agent_watch_close();
        write_profile("exit");
    } else {
        agent_incomplete_add("timeline and exit profile: another agent thread kept the work lock");
    }
    static char text[32768];
    (void)output_summary(build_summary, text, sizeof text);
    if (have_work) work_unlock();
    agent_bounded_end();
}

static void exit_handler(void *arg)
{
    (void)arg;
    uint64_t deadline = agent_bound_deadline(AGENT_EXIT_WAIT_NS);
    agent_enter();
    write_exit_output(deadline);
    agent_leave();
}

/* agent_dtor: the exit output when no exit handler could be registered
 * (or the library is being unloaded some other way). */
__attribute__((destructor)) static void agent_dtor(void)
{
    if (exit_handler_registered) return;
    uint64_t deadline = agent_bound_deadline(AGENT_EXIT_WAIT_NS);
    agent_enter();
    write_exit_output(deadline);
    agent_leave();
}

void agent_on_quick_exit(void)
{
    /* A vfork or posix_spawn child shares its parent's memory and runs on
     * a small stack; it never ran our fork handler, so its pid differs from
     * the one we know. Only a real process of our own writes. */
    if ((pid_t)__atomic_load_n(&own_pid, __ATOMIC_RELAXED) != getpid()) return;
    uint64_t deadline = agent_bound_deadline(AGENT_EXIT_WAIT_NS);
    agent_enter();
    write_exit_output(deadline);
    agent_leave();
}
