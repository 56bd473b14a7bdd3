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
 * path; the background thread is started only from the constructor, never
 * from inside malloc.
 *
 * fork. The prepare handler takes the registry lock and the arena lock (in
 * that order); the parent releases them in reverse; the child re-creates
 * them. Child policy: the child keeps tracking, with its own pid in its file
 * names and the counters it inherited, as Go would see it: the parent's
 * live heap is really live in the child (copy-on-write), so live_objects
 * starts from the parent's value. Blocks of threads that did not survive
 * the fork are marked dead; the background thread is restarted by the
 * child's first allocation.
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
 * it; nothing can hang.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent_internal.h"
#include "map/map.h"

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
static bool bg_running;                    /* background thread alive (atomic) */
static bool bg_restart;                    /* child: restart it on the slow path */
static int summary_written;                /* once (atomic) */
static int own_pid;                        /* getpid() at init and after fork */

#define FILES_MAX 64
static char files_written[FILES_MAX][96];  /* names written by this process */
static unsigned nfiles;
static unsigned nfiles_total;

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

agent_thread_t *agent_thread_slow(void)
{
    if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != 2) agent_init();
    if (!agent_enabled || agent_inside()) return NULL;
    agent_enter();
    agent_thread_t *t = adopt_dead_block();
    if (!t) t = new_block();
    if (t) {
        agent_tls.thread = t;
        if (thread_key_ok) pthread_setspecific(thread_key, t);
    }
    if (__atomic_load_n(&bg_restart, __ATOMIC_RELAXED)) {
        __atomic_store_n(&bg_restart, false, __ATOMIC_RELAXED);
        start_background_thread();
    }
    agent_leave();
    return t;
}

/* slow_thread: the calling thread's block when it may count, else NULL. */
static agent_thread_t *slow_thread(void)
{
    if (agent_inside()) return NULL;
    agent_thread_t *t = agent_tls.thread;
    if (t) return t;
    if (!agent_enabled) return NULL;
    return agent_thread_slow();
}

void *agent_on_alloc_slow(void *ptr)
{
    agent_thread_t *t = slow_thread();
    if (t) agent_count_alloc(t, ptr);
    return ptr;
}

void agent_on_free_slow(void *ptr)
{
    agent_thread_t *t = slow_thread();
    if (t) agent_count_free(t, ptr);
}

/* thread_exit: pthread key destructor. Allocations the thread makes after
 * this (later destructors) register it again, which is harmless. */
static void thread_exit(void *p)
{
    agent_thread_t *t = p;
    agent_tls.thread = NULL;
    __atomic_store_n(&t->alive, 0, __ATOMIC_RELEASE);
}

void agent_counters_read(heapwatch_counters_t *out)
{
    memset(out, 0, sizeof *out);
    for (agent_thread_t *t = __atomic_load_n(&registry, __ATOMIC_ACQUIRE); t; t = t->next) {
        out->mallocs += __atomic_load_n(&t->mallocs, __ATOMIC_RELAXED);
        out->frees += __atomic_load_n(&t->frees, __ATOMIC_RELAXED);
        out->alloc_bytes += __atomic_load_n(&t->alloc_bytes, __ATOMIC_RELAXED);
        out->free_bytes += __atomic_load_n(&t->free_bytes, __ATOMIC_RELAXED);
    }
}

AGENT_EXPORT void heapwatch_read_counters(heapwatch_counters_t *out)
{
    agent_counters_read(out);
}

/* count_blocks: threads that ever allocated (blocks are reused, so this
 * is at most the peak number of allocating threads alive at once, plus
 * threads that allocated after their exit destructor). */
static unsigned count_blocks(void)
{
    unsigned n = 0;
    for (agent_thread_t *t = __atomic_load_n(&registry, __ATOMIC_ACQUIRE); t; t = t->next) n++;
    return n;
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

static void *background_main(void *arg)
{
    (void)arg;
    agent_enter();     /* everything this thread does is the agent's own */
    uint64_t next = now_ns(CLOCK_MONOTONIC);
    for (;;) {
        next += conf.interval_ns;
        struct timespec ts = { (time_t)(next / 1000000000ull), (long)(next % 1000000000ull) };
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
        heapwatch_counters_t c;
        snapshot(&c);
    }
    return NULL;
}

/* start_background_thread: with every signal blocked, so the host's signals
 * are never delivered to it. */
static void start_background_thread(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t tid;
    agent_enter();
    int err = pthread_create(&tid, &attr, background_main, NULL);
    agent_leave();
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err == 0) {
        __atomic_store_n(&bg_running, true, __ATOMIC_RELAXED);
        pthread_setname_np(tid, "heapwatch");
    } else {
        agent_log("heapwatch: cannot start the background thread; "
                  "the timeline and alerts are off for this process\n");
    }
}

/* ------------------------------------------------------------------------ */
/* fork                                                                     */
/* ------------------------------------------------------------------------ */

/* Lock order: registry_lock, then the arena's. */
static void prefork(void)
{
    agent_enter();
    pthread_mutex_lock(&registry_lock);
    map_arena_prefork();
}

static void postfork_parent(void)
{
    map_arena_postfork_parent();
    pthread_mutex_unlock(&registry_lock);
    agent_leave();
}

static void postfork_child(void)
{
    map_arena_postfork_child();
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    registry_lock = fresh;
    /* Only this thread survived: every other block is free for adoption. */
    for (agent_thread_t *t = registry; t; t = t->next)
        if (t != agent_tls.thread) t->alive = 0;
    own_pid = (int)getpid();
    nfiles = 0;
    nfiles_total = 0;
    __atomic_store_n(&summary_written, 0, __ATOMIC_RELAXED);
    if (__atomic_load_n(&bg_running, __ATOMIC_RELAXED)) {
        __atomic_store_n(&bg_running, false, __ATOMIC_RELAXED);
        __atomic_store_n(&bg_restart, true, __ATOMIC_RELAXED);
        agent_tls.thread = NULL;   /* the next allocation takes the slow path */
    }
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

static bool out_dir_ok = true;     /* false: no output for this process */

/* report_out_dir: the one message about an unusable HEAPWATCH_OUT. */
static void report_out_dir(int err)
{
    char line[CONF_PATH_MAX + 200];
    agent_buf_t b;
    agent_buf_init(&b, line, sizeof line);
    agent_buf_str(&b, "heapwatch: HEAPWATCH_OUT directory ");
    agent_buf_str(&b, out_dir);
    agent_buf_str(&b, " cannot be written (");
    agent_buf_str(&b, strerror(-err));
    agent_buf_str(&b, "): expected a directory this user can create or write; "
                      "the program runs on without heapwatch output\n");
    agent_log(line);
}

/* check_out_dir: creates HEAPWATCH_OUT at start, while stderr is surely
 * still open (programs such as GNU sort close it at exit), so a bad
 * directory is reported once, up front. */
static void check_out_dir(void)
{
    int err = agent_mkdir_p(out_dir);
    if (!err && access(out_dir, W_OK | X_OK) != 0) err = -errno;
    if (err) {
        out_dir_ok = false;
        report_out_dir(err);
    }
}

void agent_init(void)
{
    int expected = 0;
    if (!__atomic_compare_exchange_n(&init_state, &expected, 1, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;   /* done, or being done by this or another thread */
    agent_enter();
    agent_shim_init();
    own_pid = (int)getpid();
    start_ns = now_ns(CLOCK_REALTIME);
    if (getauxval(AT_SECURE)) {
        /* setuid/setgid: the environment is not the user's to trust. */
        agent_enabled = 0;
    } else {
        agent_conf_load(&conf, env_lookup, agent_log);
        resolve_out_dir();
        check_out_dir();
        thread_key_ok = pthread_key_create(&thread_key, thread_exit) == 0;
        pthread_atfork(prefork, postfork_parent, postfork_child);
    }
    agent_leave();
    __atomic_store_n(&init_state, 2, __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void agent_ctor(void)
{
    agent_init();
    if (agent_enabled) start_background_thread();
}

/* ------------------------------------------------------------------------ */
/* Files and the exit summary                                               */
/* ------------------------------------------------------------------------ */

/* output_file: writes out_dir/name atomically, creating the directory;
 * remembers the name for the summary. */
static int output_file(const char *name, const void *data, size_t len)
{
    if (!out_dir_ok) return -EACCES;
    int err = agent_mkdir_p(out_dir);   /* again: the program may have removed it */
    if (!err) err = agent_write_file_atomic(out_dir, name, data, len);
    if (err) {
        out_dir_ok = false;             /* one message, then quiet */
        report_out_dir(err);
        return err;
    }
    if (nfiles < FILES_MAX) {
        agent_buf_t b;
        agent_buf_init(&b, files_written[nfiles++], sizeof files_written[0]);
        agent_buf_str(&b, name);
    }
    nfiles_total++;
    return 0;
}

static void summary_name(char *name, size_t cap)
{
    agent_buf_t b;
    agent_buf_init(&b, name, cap);
    agent_buf_str(&b, "summary.");
    agent_buf_u64(&b, (uint64_t)getpid());
    agent_buf_str(&b, ".json");
}

static void json_key(agent_buf_t *b, const char *key)
{
    agent_buf_str(b, b->len > 1 ? ",\n  " : "\n  ");
    agent_buf_json_str(b, key);
    agent_buf_str(b, ": ");
}

static void json_u64(agent_buf_t *b, const char *key, uint64_t v)
{
    json_key(b, key);
    agent_buf_u64(b, v);
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
    json_u64(b, "pid", (uint64_t)getpid());
    json_u64(b, "ppid", (uint64_t)getppid());
    json_key(b, "exe");
    agent_buf_json_str(b, exe);
    json_key(b, "start_time");
    agent_buf_fixed(b, (int64_t)(start_ns / 1000), 6);
    json_key(b, "end_time");
    agent_buf_fixed(b, (int64_t)(end / 1000), 6);
    json_key(b, "duration_s");
    agent_buf_fixed(b, (int64_t)((end - start_ns) / 1000), 6);
    json_u64(b, "mallocs", c.mallocs);
    json_u64(b, "frees", c.frees);
    json_key(b, "live_objects");
    agent_buf_i64(b, (int64_t)(c.mallocs - c.frees));
    json_key(b, "live_bytes");
    agent_buf_i64(b, (int64_t)(c.alloc_bytes - c.free_bytes));
    json_u64(b, "peak_live_bytes", __atomic_load_n(&peak_live_bytes, __ATOMIC_RELAXED));
    json_u64(b, "alloc_bytes", c.alloc_bytes);
    json_u64(b, "free_bytes", c.free_bytes);
    json_u64(b, "rate", conf.rate);
    json_u64(b, "thread_blocks", count_blocks());
    json_u64(b, "agent_memory_bytes", arena.mapped_bytes);
    json_u64(b, "agent_memory_inuse_bytes", arena.inuse_bytes);
    json_key(b, "files");
    agent_buf_str(b, "[");
    for (unsigned i = 0; i < nfiles; i++) {
        agent_buf_str(b, i ? ", " : "");
        agent_buf_json_str(b, files_written[i]);
    }
    agent_buf_str(b, nfiles ? ", " : "");
    agent_buf_json_str(b, own_name);
    agent_buf_str(b, "]");
    json_u64(b, "files_total", nfiles_total + 1);
    agent_buf_str(b, "\n}\n");
}

static void write_summary(void)
{
    if (!agent_enabled || __atomic_exchange_n(&summary_written, 1, __ATOMIC_ACQ_REL)) return;
    static char text[16384];
    char name[64];
    summary_name(name, sizeof name);
    agent_buf_t b;
    agent_buf_init(&b, text, sizeof text);
    build_summary(&b, name);
    (void)output_file(name, b.buf, b.len);
}

__attribute__((destructor)) static void agent_dtor(void)
{
    agent_enter();
    write_summary();
    agent_leave();
}

void agent_on_quick_exit(void)
{
    /* A vfork or posix_spawn child shares its parent's memory and runs on
     * a small stack; it never ran our fork handler, so its pid differs from
     * the one we know. Only a real process of our own writes. */
    if ((pid_t)__atomic_load_n(&own_pid, __ATOMIC_RELAXED) != getpid()) return;
    agent_enter();
    write_summary();
    agent_leave();
}
