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
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
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
static bool bg_running;                    /* background thread alive (atomic) */
static bool bg_restart;                    /* child: restart it on the slow path */
static int summary_written;                /* once (atomic) */
static int own_pid;                        /* getpid() at init and after fork */

static bool out_dir_ok = true;             /* false: no output for this process */
static int exiting;                        /* exit output started (under work_lock) */
static pthread_mutex_t work_lock = PTHREAD_MUTEX_INITIALIZER;  /* one output job at a time */
static sem_t wake;                         /* posted to wake the background thread */
static bool wake_ok;
static int profile_requested;              /* HEAPWATCH_SIGNAL arrived (atomic) */

#define FILES_MAX 64
static char files_written[FILES_MAX][96];  /* names written by this process */
static unsigned nfiles;                    /* (under work_lock) */
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
 * thread exits. Restarting the background thread after a fork is not
 * quiet: pthread_create allocates for the agent (agent_spawn_thread holds
 * the guard), and those allocations must not count.
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
    if (__atomic_exchange_n(&bg_restart, false, __ATOMIC_RELAXED)) start_background_thread();
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

/* ensure_out_dir: the directory exists (the program may have removed it).
 * @return false, after one message, when there is no output any more. */
static bool ensure_out_dir(void)
{
    if (!out_dir_ok) return false;
    int err = agent_mkdir_p(out_dir);
    if (err) {
        out_dir_ok = false;
        report_out_dir(err);
    }
    return out_dir_ok;
}

/* remember_file: a name for the summary's "files" (under work_lock). */
static void remember_file(const char *name)
{
    if (nfiles < FILES_MAX) {
        agent_buf_t b;
        agent_buf_init(&b, files_written[nfiles++], sizeof files_written[0]);
        agent_buf_str(&b, name);
    }
    nfiles_total++;
}

/* output_file: writes out_dir/name atomically (under work_lock). */
static int output_file(const char *name, const void *data, size_t len)
{
    if (!ensure_out_dir()) return -EACCES;
    int err = agent_write_file_atomic(out_dir, name, data, len);
    if (err) {
        out_dir_ok = false;             /* one message, then quiet */
        report_out_dir(err);
        return err;
    }
    remember_file(name);
    return 0;
}

/* write_profile_named: a heap profile for `reason` (under work_lock); its
 * file name into name, "" when none was written. */
static void write_profile_named(const char *reason, char *name, size_t cap)
{
    static bool reported;
    name[0] = 0;
    if (!ensure_out_dir()) return;
    int err = agent_profile_write(out_dir, reason, name, cap);
    if (err == 0) {
        remember_file(name);
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

static void write_profile(const char *reason)
{
    char name[96];
    write_profile_named(reason, name, sizeof name);
}

bool agent_output_ready(void) { return ensure_out_dir(); }
void agent_output_remember(const char *name) { remember_file(name); }
void agent_output_profile(const char *reason, char *name, size_t cap)
{
    write_profile_named(reason, name, cap);
}
uint64_t agent_peak_live_bytes(void) { return __atomic_load_n(&peak_live_bytes, __ATOMIC_RELAXED); }

int agent_output_profile_path(const char *reason, char *path, size_t cap)
{
    char name[96];
    name[0] = 0;
    pthread_mutex_lock(&work_lock);
    bool over = exiting;
    if (!over) write_profile_named(reason, name, sizeof name);
    pthread_mutex_unlock(&work_lock);
    if (over) return -ESHUTDOWN;
    if (!name[0]) return -EIO;
    agent_buf_t b;
    agent_buf_init(&b, path, cap);
    agent_buf_str(&b, out_dir);
    agent_buf_str(&b, "/");
    agent_buf_str(&b, name);
    return b.overflow ? -ENAMETOOLONG : 0;
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
 * the profile. */
static void on_profile_signal(int sig)
{
    (void)sig;
    int saved = errno;
    __atomic_store_n(&profile_requested, 1, __ATOMIC_RELAXED);
    if (wake_ok) sem_post(&wake);
    errno = saved;
}

static void install_signal(void)
{
    if (!conf.signal) return;
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

/* exit_if_alone: the program's threads have all ended (main called
 * pthread_exit and the others returned); only this thread (and the HTTP
 * server's, when there is one) keeps the process alive. glibc would now
 * call exit(0): do so on its behalf, outside the agent so that what the
 * exit handlers allocate is the program's. */
static void exit_if_alone(void)
{
    if (live_threads() != 1 + agent_http_threads()) return;
    pthread_mutex_unlock(&work_lock);
    agent_leave();
    exit(0);
}

static void *background_main(void *arg)
{
    (void)arg;
    agent_enter();     /* everything this thread does is the agent's own */
    uint64_t now = now_ns(CLOCK_MONOTONIC);
    uint64_t next_snapshot = now + conf.interval_ns;
    uint64_t next_profile = conf.profile_interval_ns ? now + conf.profile_interval_ns : UINT64_MAX;
    pthread_mutex_lock(&work_lock);
    if (!exiting) {
        heapwatch_counters_t c;
        snapshot(&c);
        agent_watch_start(&c, now);
    }
    pthread_mutex_unlock(&work_lock);
    for (;;) {
        sleep_until(next_snapshot < next_profile ? next_snapshot : next_profile);
        now = now_ns(CLOCK_MONOTONIC);
        pthread_mutex_lock(&work_lock);
        if (exiting) {
            pthread_mutex_unlock(&work_lock);
            break;
        }
        if (__atomic_exchange_n(&profile_requested, 0, __ATOMIC_RELAXED)) write_profile("signal");
        if (now >= next_snapshot) {
            exit_if_alone();
            heapwatch_counters_t c;
            snapshot(&c);
            agent_watch_snapshot(&c, now, now_ns(CLOCK_REALTIME), start_ns, false);
            next_snapshot = advance(next_snapshot, conf.interval_ns, now);
        }
        if (now >= next_profile) {
            write_profile("interval");
            next_profile = advance(next_profile, conf.profile_interval_ns, now_ns(CLOCK_MONOTONIC));
        }
        pthread_mutex_unlock(&work_lock);
    }
    return NULL;
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

int agent_spawn_thread(void *(*fn)(void *), const char *name)
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
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t tid;
    agent_enter();
    int err = pthread_create(&tid, &attr, spawn_main, s);
    agent_leave();
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) a.free(a.ctx, s);
    return err;
}

/* start_background_thread: the snapshot, alert and profile thread. */
static void start_background_thread(void)
{
    if (agent_spawn_thread(background_main, "heapwatch") == 0) {
        __atomic_store_n(&bg_running, true, __ATOMIC_RELAXED);
    } else {
        agent_log("heapwatch: cannot start the background thread; "
                  "the timeline, alerts and periodic profiles are off for this process\n");
    }
}

/* ------------------------------------------------------------------------ */
/* fork                                                                     */
/* ------------------------------------------------------------------------ */

/* Lock order: registry_lock, the stack stripes, the live-map shards, then
 * the arena's. (work_lock and the profile lock are not taken: a fork must
 * not wait for a profile being written; the child re-creates them, and only
 * the parent's background thread, which does not exist in the child, could
 * have held them.) */
static void prefork(void)
{
    agent_enter();
    pthread_mutex_lock(&registry_lock);
    agent_stacks_prefork();
    agent_live_prefork();
    map_arena_prefork();
}

static void postfork_parent(void)
{
    map_arena_postfork_parent();
    agent_live_postfork_parent();
    agent_stacks_postfork_parent();
    pthread_mutex_unlock(&registry_lock);
    agent_leave();
}

static void postfork_child(void)
{
    map_arena_postfork_child();
    agent_live_postfork_child();
    agent_stacks_postfork_child();
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
    start_ns = now_ns(CLOCK_REALTIME);
    agent_watch_postfork_child(now_ns(CLOCK_MONOTONIC));
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
    agent_log_remember_stderr();
    agent_shim_init();
    own_pid = (int)getpid();
    start_ns = now_ns(CLOCK_REALTIME);
    if (getauxval(AT_SECURE)) {
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
    start_background_thread();
    if (conf.http_host[0]) agent_http_start(conf.http_host, conf.http_port);
}

/* ------------------------------------------------------------------------ */
/* The exit summary                                                         */
/* ------------------------------------------------------------------------ */

static void summary_name(char *name, size_t cap)
{
    agent_buf_t b;
    agent_buf_init(&b, name, cap);
    agent_buf_str(&b, "summary.");
    agent_buf_u64(&b, (uint64_t)getpid());
    agent_buf_str(&b, ".json");
}

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
    pthread_mutex_lock(&work_lock);
    snapshot(&m->counters);
    agent_watch_last(&m->objects_rate, &m->bytes_rate, &m->alert_level);
    pthread_mutex_unlock(&work_lock);
    sum_threads(&th);
    agent_live_get_stats(&live);
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
    agent_live_get_stats(&live);
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
    agent_buf_str(b, "\n}\n");
}

/* write_exit_output: the exit profile, then the summary that lists it;
 * once per process. The background thread finishes the job it is doing
 * (work_lock) and starts no other, so no file is left half-written when
 * the process ends. */
static void write_exit_output(void)
{
    if (!agent_enabled || __atomic_exchange_n(&summary_written, 1, __ATOMIC_ACQ_REL)) return;
    pthread_mutex_lock(&work_lock);
    exiting = 1;
    heapwatch_counters_t c;
    snapshot(&c);
    agent_watch_snapshot(&c, now_ns(CLOCK_MONOTONIC), now_ns(CLOCK_REALTIME), start_ns, true);
    agent_watch_close();
    write_profile("exit");
    static char text[16384];
    char name[64];
    summary_name(name, sizeof name);
    agent_buf_t b;
    agent_buf_init(&b, text, sizeof text);
    build_summary(&b, name);
    (void)output_file(name, b.buf, b.len);
    pthread_mutex_unlock(&work_lock);
}

static void exit_handler(void *arg)
{
    (void)arg;
    agent_enter();
    write_exit_output();
    agent_leave();
}

/* agent_dtor: the exit output when no exit handler could be registered
 * (or the library is being unloaded some other way). */
__attribute__((destructor)) static void agent_dtor(void)
{
    if (exit_handler_registered) return;
    agent_enter();
    write_exit_output();
    agent_leave();
}

void agent_on_quick_exit(void)
{
    /* A vfork or posix_spawn child shares its parent's memory and runs on
     * a small stack; it never ran our fork handler, so its pid differs from
     * the one we know. Only a real process of our own writes. */
    if ((pid_t)__atomic_load_n(&own_pid, __ATOMIC_RELAXED) != getpid()) return;
    agent_enter();
    write_exit_output();
    agent_leave();
}
