/*
 * core.c - the core's shared services: start-up, the configuration in
 * force, the work lock, snapshots and the peak, and the exit output.
 *
 * The rooms around it: thread.c (the registry and the hot path's slow
 * paths), sample.c (sampling), unwind.c, stacks.c and live.c (what a
 * sample records), background.c (the background thread and its jobs), output.c
 * (files, profiles), summary.c (the summary and /metrics), fork.c, and
 * preload.c, the only file that runs by itself (constructor, exit
 * handler): without it the rest links into unit tests.
 *
 * Start-up. The constructor (preload.c) calls agent_init, but an
 * allocation made before it (another library's constructor) initialises
 * lazily on the slow path. In a process with a sanitizer runtime that
 * replaces malloc (ASan, TSan, MSan, LSan), or whose malloc is not the
 * agent's (found by the shim's first resolution, before anything else),
 * the agent steps aside: one stderr line, then nothing (every call passed
 * straight on, no thread, no files, no fork handlers, nothing counted). In
 * a setuid or setgid process (AT_SECURE) it is off, silently.
 *
 * Exit. The exit output (the process's entry out of targets.json, a last
 * timeline record, the exit profile, then the summary that lists them) is
 * written once per process, by an exit
 * handler that the constructor registers (preload.c) before
 * __libc_start_main registers ld.so's finaliser: handlers run in reverse
 * order, so ours runs after the program's atexit handlers and after every
 * library's destructors. (The library's destructor writes it only when no
 * handler could be registered.) A program that leaves with _exit or _Exit
 * (shells, forked children) gets it from the shim's _exit
 * (agent_on_quick_exit), except in a vfork or posix_spawn child, which
 * shares its parent's memory. Fatal signals skip it. quick_exit and abort
 * write nothing (glibc's quick_exit ends in its own _exit, which the shim
 * does not see).
 *
 * An exit from a signal handler on a sigaltstack writes the exit output
 * on a stack of the agent's own (see "Exit from a signal handler" below):
 * a small sigaltstack is enough for glibc's exit, not for ours.
 *
 * Exit never blocks (issue 11): any exit may come from a signal handler
 * that interrupted agent code holding a lock, or race with a thread
 * stopped inside the agent. The exit output runs in a bounded stretch
 * (lock.c): every lock is waited for AGENT_EXIT_WAIT_NS in all at most, or
 * only tried once when the exiting thread was itself inside the agent
 * (except the work lock, which that thread cannot hold: a program thread
 * holds it only with its signals blocked, or for the few instructions of
 * the try in agent_bg_resume); what cannot be had is skipped
 * and listed in the summary's "incomplete" array (always present; [] when
 * nothing was skipped): without the work lock (the background or HTTP
 * thread is writing, or stuck), no final timeline record and no exit
 * profile; without the profile lock, no exit profile; without a shard or
 * a stripe, partial statistics. The summary itself is always written.
 * /metrics reads under a bounded stretch too (AGENT_METRICS_WAIT_NS).
 *
 * The work lock: one round of output at a time (core.h). The debug agent
 * records its owner, so that functions documented "under the work lock"
 * can check it (AGENT_ASSERT_WORK_HELD).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "agent/background.h"
#include "agent/buf.h"
#include "agent/conf.h"
#include "agent/core.h"
#include "agent/fds.h"
#include "agent/fork.h"
#include "agent/http.h"
#include "agent/live.h"
#include "agent/lock.h"
#include "agent/log.h"
#include "agent/out.h"
#include "agent/output.h"
#include "agent/peak.h"
#include "agent/sample.h"
#include "agent/shim.h"
#include "agent/spawn.h"
#include "agent/stacks.h"
#include "agent/summary.h"
#include "agent/targets.h"
#include "agent/thread.h"
#include "agent/unwind.h"
#include "agent/watch.h"

int agent_enabled = 1;
agent_conf_t agent_conf;
uint64_t agent_start_real_ns;

static int init_state;                     /* 0 new, 1 in progress, 2 done (atomic) */
static uint64_t peak_live_bytes;           /* max seen at snapshots and exit (atomic) */
static uint64_t peak_time_ns;              /* CLOCK_REALTIME when it was seen (atomic) */
static int summary_written;                /* once (atomic) */
static int own_pid;                        /* getpid() at init and after fork */
static int exiting;                        /* exit output started (atomic) */
static pthread_mutex_t work_lock = PTHREAD_MUTEX_INITIALIZER;  /* one output job at a time */
static int work_owner;                     /* debug: the holder's tid, 0: none (atomic) */
static int work_borrower;                  /* debug: the job worker it was lent to */

/* ------------------------------------------------------------------------ */
/* The work lock                                                            */
/* ------------------------------------------------------------------------ */

/* work_taken / work_given: the owner, in the debug agent. */
static void work_taken(void)
{
    if (AGENT_DEBUG) __atomic_store_n(&work_owner, (int)gettid(), __ATOMIC_RELAXED);
}

static void work_given(void)
{
    AGENT_ASSERT(__atomic_load_n(&work_owner, __ATOMIC_RELAXED) == (int)gettid());
    if (AGENT_DEBUG) __atomic_store_n(&work_owner, 0, __ATOMIC_RELAXED);
}

void agent_work_lock(void)
{
    AGENT_ASSERT(!agent_work_held());   /* not recursive */
    agent_lock_ranked(&work_lock, AGENT_RANK_WORK);
    work_taken();
}

bool agent_work_trylock(void)
{
    if (!agent_lock_ranked_until(&work_lock, AGENT_RANK_WORK, 0)) return false;
    work_taken();
    return true;
}

bool agent_work_lock_until(uint64_t deadline_ns)
{
    if (!agent_lock_ranked_until(&work_lock, AGENT_RANK_WORK, deadline_ns)) return false;
    work_taken();
    return true;
}

bool agent_work_lock_bounded(void)
{
    if (!agent_lock_ranked_note(&work_lock, AGENT_RANK_WORK, NULL)) return false;
    work_taken();
    return true;
}

void agent_work_unlock(void)
{
    agent_outdir_drop();   /* none of our descriptors stays between rounds */
    work_given();
    agent_unlock_ranked(&work_lock, AGENT_RANK_WORK);
}

bool agent_work_held(void)
{
    if (!AGENT_DEBUG) return true;
    int me = (int)gettid();
    return __atomic_load_n(&work_owner, __ATOMIC_RELAXED) == me ||
           __atomic_load_n(&work_borrower, __ATOMIC_RELAXED) == me;
}

void agent_work_lend(void)
{
    AGENT_ASSERT(__atomic_load_n(&work_owner, __ATOMIC_RELAXED) != 0);
    if (AGENT_DEBUG) __atomic_store_n(&work_borrower, (int)gettid(), __ATOMIC_RELAXED);
}

void agent_work_unlend(void)
{
    if (AGENT_DEBUG) __atomic_store_n(&work_borrower, 0, __ATOMIC_RELAXED);
}

bool agent_exiting(void) { return __atomic_load_n(&exiting, __ATOMIC_ACQUIRE); }

bool agent_ready(void) { return __atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == 2; }

bool agent_own_process(void)
{
    return (pid_t)__atomic_load_n(&own_pid, __ATOMIC_RELAXED) == getpid();
}

/* ------------------------------------------------------------------------ */
/* Snapshots                                                                */
/* ------------------------------------------------------------------------ */

void agent_snapshot(heapwatch_counters_t *c)
{
    agent_counters_read(c);
    /* Each block's count is read after its bytes and a free after its
     * allocation is counted, but blocks are read one by one while threads
     * run: frees may lead mallocs by what other threads freed meanwhile,
     * so no invariant holds between the sums; only within a block. */
    uint64_t live = c->alloc_bytes >= c->free_bytes ? c->alloc_bytes - c->free_bytes : 0;
    uint64_t peak = __atomic_load_n(&peak_live_bytes, __ATOMIC_RELAXED);
    while (live > peak) {
        if (__atomic_compare_exchange_n(&peak_live_bytes, &peak, live, 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            /* Two snapshots raising it at once may leave the time of the
             * lower one: they are microseconds apart. */
            uint64_t now = agent_clock_ns(CLOCK_REALTIME);
            __atomic_store_n(&peak_time_ns, now, __ATOMIC_RELAXED);
            agent_peak_raised(live, now);
            break;
        }
    }
}

uint64_t agent_peak_live_bytes(void) { return __atomic_load_n(&peak_live_bytes, __ATOMIC_RELAXED); }
uint64_t agent_peak_time_ns(void) { return __atomic_load_n(&peak_time_ns, __ATOMIC_RELAXED); }

/* ------------------------------------------------------------------------ */
/* Start-up                                                                 */
/* ------------------------------------------------------------------------ */

static const char *env_lookup(const char *name)
{
    return secure_getenv(name);
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

/* profiled_by_name: HEAPWATCH_ONLY and HEAPWATCH_EXCLUDE against the
 * executable's file name and argv[0]'s (a link such as cc -> gcc-12, a
 * busybox applet): read only when either is set. */
static bool profiled_by_name(void)
{
    if (!agent_conf.only[0] && !agent_conf.exclude[0]) return true;
    static char exe[CONF_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    const char *slash = strrchr(exe, '/');
    return agent_conf_profiles(&agent_conf, slash ? slash + 1 : exe, program_invocation_short_name);
}

/* report_unbound: the one line of a process whose malloc is another
 * object's, bound ahead of the agent's (shim.c): nothing reaches
 * the agent; its summary says so too (malloc_owner). */
static void report_unbound(const char *owner)
{
    char line[768];
    agent_buf_t b;
    agent_buf_init(&b, line, sizeof line);
    agent_buf_str(&b, "heapwatch: malloc in this process (pid ");
    agent_buf_u64(&b, (uint64_t)getpid());
    agent_buf_str(&b, ") is ");
    agent_buf_str_escaped(&b, owner, AGENT_QUOTE_MAX);
    agent_buf_str(&b, agent_shim_malloc_owner_is_executable()
                          ? "'s, bound ahead of the agent's (linked into the program): the agent sees no allocation\n"
                          : "'s, bound ahead of the agent's (preloaded before it): the agent sees no allocation\n");
    if (b.overflow) line[sizeof line - 2] = '\n';
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
    agent_spawn_init();
    agent_fds_init();
    agent_start_real_ns = agent_clock_ns(CLOCK_REALTIME);
    if (agent_shim_aside_reason()) {
        report_aside(agent_shim_aside_reason());
    } else if (getauxval(AT_SECURE)) {
        /* setuid/setgid: the environment is not the user's to trust. */
        agent_enabled = 0;
    } else {
        agent_conf_load(&agent_conf, env_lookup, agent_log);
        if (!profiled_by_name()) {
            agent_enabled = 0;   /* inert: nothing set up, nothing written */
            agent_leave();
            __atomic_store_n(&init_state, 2, __ATOMIC_RELEASE);
            return;
        }
        agent_sample_rate = agent_conf.rate;
        if (agent_sample_rate == 1) agent_live_unfilter();   /* see hot.h, agent_live_unfiltered */
        agent_live_solo_init();   /* one thread still: see live.c, "Solo" */
        agent_out_fsync = agent_conf.fsync;
        agent_output_start(agent_conf.out_dir);
        agent_watch_init(&agent_conf, agent_output_path(), agent_mono_ns());
        agent_unwind_init();
        if (agent_stacks_init() != 0)
            agent_log("heapwatch: no memory for the stack table; sampled stacks are not recorded\n");
        agent_threads_init();
        agent_bg_init();   /* before any thread registers, so that every countdown is cut */
        agent_fork_init();
        if (agent_shim_malloc_owner()) report_unbound(agent_shim_malloc_owner());
    }
    agent_leave();
    __atomic_store_n(&init_state, 2, __ATOMIC_RELEASE);
}

void agent_start(void)
{
    agent_bg_install_signal();
    agent_bg_start_watch(agent_mono_ns());
    /* See "The background thread" in background.c. A HEAPWATCH_SIGNAL
     * request and periodic profiles must be served even to a program that
     * sits idle (a daemon asked for its heap): only a thread can do that. */
    if (agent_conf.thread == CONF_THREAD_ON ||
        (agent_conf.thread == CONF_THREAD_AUTO &&
         (agent_conf.http_host[0] || agent_conf.signal || agent_conf.profile_interval_ns)))
        agent_bg_start();
    if (agent_conf.http_host[0]) agent_http_start(agent_conf.http_host, agent_conf.http_port);
}

void agent_core_postfork_child(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    work_lock = fresh;
    __atomic_store_n(&work_owner, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&work_borrower, 0, __ATOMIC_RELAXED);
    own_pid = (int)getpid();
    agent_start_real_ns = agent_clock_ns(CLOCK_REALTIME);
    __atomic_store_n(&summary_written, 0, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------------ */
/* Exit                                                                     */
/* ------------------------------------------------------------------------ */

/* brief_exit: HEAPWATCH_BRIEF (conf.h): this process sampled nothing,
 * wrote no timeline record and raised no alert, so its exit writes only
 * the summary (under the work lock). */
static bool brief_exit(void)
{
    if (!agent_conf.brief || agent_watch_wrote()) return false;
    agent_thread_sums_t th;
    agent_threads_sum(&th);
    return th.samples == 0;
}

/* write_exit_output: the exit profile, then the summary that lists it;
 * once per process. The background thread finishes the job it is doing
 * (the work lock) and starts no other, so no file is left half-written
 * when the process ends; but the wait is bounded (see above): deadline
 * from agent_bound_deadline, taken by the caller before its agent_enter. */
static void write_exit_output(uint64_t deadline)
{
    if (!agent_enabled || __atomic_exchange_n(&summary_written, 1, __ATOMIC_ACQ_REL)) return;
    agent_bounded_begin(deadline, true);
    __atomic_store_n(&exiting, 1, __ATOMIC_RELEASE);   /* the background thread starts no job */
    /* The work lock is waited for even by a thread interrupted inside the
     * agent: a program thread holds it only with its signals blocked
     * (tick_jobs, agent_bg_start_watch) or for a few instructions (the try in
     * agent_bg_resume); otherwise only the agent's own threads do,
     * which finish their job and let go unless they wait for a lock the
     * interrupted code holds: bounded. */
    uint64_t work_deadline = deadline ? deadline : agent_mono_ns() + AGENT_EXIT_WAIT_NS;
    bool have_work = agent_work_lock_until(work_deadline);
    if (have_work) agent_targets_exit();   /* first: scrapers stop looking here */
    if (have_work && brief_exit()) {
        heapwatch_counters_t c;
        agent_snapshot(&c);   /* the peak at exit, for the summary */
    } else if (have_work) {
        heapwatch_counters_t c;
        agent_snapshot(&c);
        agent_watch_snapshot(&c, agent_mono_ns(), agent_clock_ns(CLOCK_REALTIME),
                             agent_start_real_ns, true);
        agent_watch_close();
        char exit_name[96];
        agent_output_profile("exit", exit_name, sizeof exit_name);
        /* After: the exit profile keeps its number. */
        agent_output_profile_peak(c.alloc_bytes >= c.free_bytes ? c.alloc_bytes - c.free_bytes : 0, exit_name);
    } else {
        agent_incomplete_add("timeline and exit profile: another agent thread kept the work lock");
        if (agent_conf.http_host[0]) agent_incomplete_add("http addr file and targets.json: entry not removed (work lock busy)");
    }
    static char text[65536];   /* the summary's bound: summary.c */
    (void)agent_output_summary(agent_summary_build, text, sizeof text);
    if (have_work) agent_work_unlock();
    agent_bounded_end();
}

/* Exit from a signal handler on a sigaltstack. A program may call exit
 * (or _exit, which the shim sees) from a handler running on a small
 * alternate stack: glibc's own exit then needs less than 8 KiB, but the
 * exit output (profile encoding, symbolization, the summary) needs about
 * 20 KiB (measured: a C++ program at HEAPWATCH_RATE=1 crashed with a
 * 16 KiB sigaltstack, wrote everything with 20 KiB). So on a sigaltstack
 * the exit output runs on a stack of the agent's own (EXIT_STACK, mapped
 * then, below it a guard page), entered with swapcontext with every signal
 * blocked: a second signal for a sigaltstack handler must not be delivered
 * while the kernel no longer sees the thread on the sigaltstack (it would
 * build its frame over the live one). swapcontext restores the mask on the
 * way back. One exit output per process: a thread that finds the stack
 * taken runs it where it is (it then finds the output written). When the
 * stack cannot be mapped, nothing is written (the host first). */
#define EXIT_STACK (256u << 10)
static ucontext_t exit_back, exit_run;
static uint64_t exit_run_deadline;
static int exit_stack_taken;               /* (atomic) */

static void exit_output_main(void) { write_exit_output(exit_run_deadline); }

static bool on_sigaltstack(void)
{
    stack_t ss;
    return sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK);
}

static void write_exit_output_any_stack(uint64_t deadline)
{
    if (!on_sigaltstack() || __atomic_exchange_n(&exit_stack_taken, 1, __ATOMIC_ACQ_REL)) {
        write_exit_output(deadline);
        return;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, EXIT_STACK + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return;
    if (mprotect(m, page, PROT_NONE) != 0 || getcontext(&exit_run) != 0) {
        munmap(m, EXIT_STACK + page);
        return;
    }
    exit_run_deadline = deadline;
    exit_run.uc_stack.ss_sp = m + page;
    exit_run.uc_stack.ss_size = EXIT_STACK;
    exit_run.uc_link = &exit_back;
    sigfillset(&exit_run.uc_sigmask);
    makecontext(&exit_run, exit_output_main, 0);
    (void)swapcontext(&exit_back, &exit_run);
    /* Left mapped: the process is ending, and a later exit path of
     * another thread may still be reading what is on it. */
}

void agent_exit_output(void)
{
    uint64_t deadline = agent_bound_deadline(AGENT_EXIT_WAIT_NS);
    agent_enter();
    write_exit_output_any_stack(deadline);
    agent_leave();
}

void agent_on_quick_exit(void)
{
    /* A vfork or posix_spawn child shares its parent's memory and runs on
     * a small stack; it never ran our fork handler, so its pid differs from
     * the one we know. Only a real process of our own writes. */
    if (!agent_own_process()) return;
    agent_exit_output();
}
