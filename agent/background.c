/*
 * background.c - the background thread and its jobs.
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
 *                   allocation: agent_bg_new_thread), or when the first job
 *                   falls due (the first snapshot, HEAPWATCH_INTERVAL after
 *                   start; the first periodic profile; a HEAPWATCH_SIGNAL),
 *                   noticed by an allocating thread (ticks, below). With
 *                   HEAPWATCH_HTTP it starts at once (the server is a thread
 *                   anyway), and so it does with HEAPWATCH_SIGNAL or
 *                   HEAPWATCH_PROFILE_INTERVAL (an idle daemon asked for
 *                   its heap must answer). A program that
 *                   ends within HEAPWATCH_INTERVAL (`id`) never has one.
 *   on, 1           from the constructor.
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
 * unshare and setns (shim.c) call agent_bg_pause first: the thread is
 * asked to leave, joined (at most PAUSE_JOIN_NS: it finishes the file it is
 * writing) and the kernel is seen to have released it (/proc/self/task,
 * at most PAUSE_GONE_NS), so the call finds the process as the program
 * left it. agent_bg_resume: a process that is still single-threaded
 * gets the thread back at its next due job (ticks), a multi-threaded one at
 * once. A thread that did not leave in time is joined before another
 * starts.
 *
 * Lock order: the work lock is taken first and alone by the paths here
 * (lock.c has the agent's whole order); the jobs take the profile lock,
 * stripes and shards under it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/background.h"
#include "agent/buf.h"
#include "agent/conf.h"
#include "agent/core.h"
#include "agent/fds.h"
#include "agent/http.h"
#include "agent/log.h"
#include "agent/output.h"
#include "agent/sample.h"
#include "agent/spawn.h"
#include "agent/thread.h"
#include "agent/watch.h"

uint64_t agent_tick_due = UINT64_MAX;

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
static uint64_t next_snapshot, next_profile; /* CLOCK_MONOTONIC deadlines (under the work
                                            * lock, or before the thread exists) */
static sem_t wake;                         /* posted to wake the background thread */
static bool wake_ok;
static int profile_requested;              /* HEAPWATCH_SIGNAL arrived (atomic) */

/* ------------------------------------------------------------------------ */
/* Profiles on signal                                                       */
/* ------------------------------------------------------------------------ */

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

/* agent_bg_install_signal: HEAPWATCH_SIGNAL's handler, only where the signal is
 * still at its default: a disposition the program inherited (SIG_IGN from
 * nohup or a parent that ignores it) or set before us is the program's,
 * and is kept, with one line saying profiles on signal are off. A handler
 * the program installs later replaces ours (sigaction is not interposed). */
void agent_bg_install_signal(void)
{
    if (!agent_conf.signal) return;
    struct sigaction old;
    if (sigaction(agent_conf.signal, NULL, &old) == 0 && old.sa_handler != SIG_DFL) {
        char line[200];
        agent_buf_t b;
        agent_buf_init(&b, line, sizeof line);
        agent_buf_str(&b, "heapwatch: HEAPWATCH_SIGNAL: signal ");
        agent_buf_u64(&b, (uint64_t)agent_conf.signal);
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
    if (sigaction(agent_conf.signal, &sa, NULL) != 0)
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
    if (agent_fd_read_text("/proc/self/stat", buf, sizeof buf) < 0) return 0;
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

/* agent_bg_start_watch: the first base of the growth rates, at start (and in a
 * forked child): growth from the very start is measured too. */
void agent_bg_start_watch(uint64_t now)
{
    /* Signals wait meanwhile: a handler that exits would otherwise find
     * the work lock held by its own thread (the exit waits for it). */
    sigset_t old;
    agent_signals_block(&old);
    agent_work_lock();
    if (!agent_exiting()) {
        heapwatch_counters_t c;
        agent_snapshot(&c);
        agent_watch_start(&c, now);
    }
    agent_work_unlock();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* next_due: the earliest deadline (under the work lock, or before the thread). */
static uint64_t next_due(void)
{
    return next_snapshot < next_profile ? next_snapshot : next_profile;
}

/* set_deadlines: the first snapshot and periodic profile after `now`. */
static void set_deadlines(uint64_t now)
{
    next_snapshot = now + agent_conf.interval_ns;
    next_profile = agent_conf.profile_interval_ns ? now + agent_conf.profile_interval_ns : UINT64_MAX;
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
 * `now` (under the work lock, not exiting), on the background thread's job
 * worker, on the background thread itself, or on an allocating one. With
 * `gone` (a thread of the agent's: `agent_threads` of them run now), a
 * due snapshot first checks whether the program's threads have all ended:
 * then *gone is set and nothing is done. */
static void run_due_jobs(uint64_t now, long agent_threads, bool *gone)
{
    AGENT_ASSERT_WORK_HELD();
    if (gone && now >= next_snapshot && program_threads_gone(agent_threads)) {
        *gone = true;
        return;
    }
    if (__atomic_exchange_n(&profile_requested, 0, __ATOMIC_RELAXED)) agent_output_profile_reason("signal");
    if (now >= next_snapshot) {
        heapwatch_counters_t c;
        agent_snapshot(&c);
        agent_watch_snapshot(&c, now, agent_clock_ns(CLOCK_REALTIME), agent_start_real_ns, false);
        next_snapshot = advance(next_snapshot, agent_conf.interval_ns, now);
    }
    if (now >= next_profile) {
        agent_output_profile_reason("interval");
        next_profile = advance(next_profile, agent_conf.profile_interval_ns, agent_clock_ns(CLOCK_MONOTONIC));
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
    agent_work_lend();   /* the background thread holds the work lock for this thread */
    run_due_jobs(j->now, 2, &j->gone);   /* the background thread and this one */
    agent_work_unlend();
    return NULL;
}

/* run_jobs_on_worker: the round of jobs at `now` on a worker (under
 * the work lock, held by the background thread for it). @return whether the
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
        agent_work_lock();
        bool over = agent_exiting();
        uint64_t due = next_due();
        agent_work_unlock();
        if (over) break;
        sleep_until(due);
        if (__atomic_load_n(&bg_stop, __ATOMIC_ACQUIRE)) break;
        uint64_t now = agent_clock_ns(CLOCK_MONOTONIC);
        agent_work_lock();
        if (!agent_exiting() && run_jobs_on_worker(now)) {
            /* The program's threads have all ended: exit as glibc would,
             * outside the agent, so that what the exit handlers allocate
             * is the program's. */
            agent_work_unlock();
            agent_leave();
            exit(0);
        }
        agent_work_unlock();
    }
    agent_leave();
    return NULL;
}

/* agent_bg_start (background.h). */
void agent_bg_start(void)
{
    /* Stepped: spawn would block signals (agent_single_stepped); a later
     * tick starts the thread. */
    if (agent_conf.thread == CONF_THREAD_OFF || bg_failed || agent_single_stepped()) return;
    int me = (int)getpid();
    if (__atomic_load_n(&bg_pid, __ATOMIC_RELAXED) == me ||
        __atomic_load_n(&bg_paused, __ATOMIC_RELAXED) ||
        __atomic_exchange_n(&bg_control, 1, __ATOMIC_ACQUIRE))
        return;
    int saved = errno;
    if (bg_unjoined && pthread_tryjoin_np(bg_handle, NULL) == 0) {
        bg_unjoined = false;
        agent_spawn_joinable_done();
    }
    if (!bg_unjoined && __atomic_load_n(&bg_pid, __ATOMIC_RELAXED) != me) {
        __atomic_store_n(&bg_stop, false, __ATOMIC_RELAXED);
        if (agent_spawn_joinable(background_main, "heapwatch", &bg_handle) == 0) {
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
 * would find the work lock held by its own thread (an exit from it would wait
 * for it forever) and its allocations would pass uncounted. */
static void tick_jobs(void)
{
    sigset_t old;
    agent_signals_block(&old);
    if (!agent_work_trylock()) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return;
    }
    if (!agent_exiting()) {
        run_due_jobs(agent_clock_ns(CLOCK_MONOTONIC), 0, NULL);
        __atomic_store_n(&agent_tick_due, next_due(), __ATOMIC_RELAXED);
        /* A signal that came meanwhile must not wait for the next job. */
        if (__atomic_load_n(&profile_requested, __ATOMIC_RELAXED))
            __atomic_store_n(&agent_tick_due, 0, __ATOMIC_RELAXED);
    }
    agent_work_unlock();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void agent_tick(void)
{
    uint64_t due = __atomic_load_n(&agent_tick_due, __ATOMIC_RELAXED);
    if (AGENT_LIKELY(due == UINT64_MAX)) return;
    if (due && agent_clock_ns(CLOCK_MONOTONIC_COARSE) < due) return;   /* a few ns (vDSO) */
    agent_tick_slow();
}

void agent_tick_slow(void)
{
    /* Stepped (see agent_single_stepped): the jobs and the thread's start
     * block signals, so they wait for an allocation that is not.
     * Quiet (agent_tls_t): this allocation is a signal handler's that
     * interrupted the agent between raising the mark and taking the guard
     * (or between leaving the guard and lowering it). The mark would make
     * what the jobs and the thread's start allocate through libc
     * (pthread_attr_setaffinity_np, getaddrinfo) count as the handler's:
     * they too wait for a later allocation. */
    if (!agent_enabled || !agent_ready() || agent_inside() || agent_tls.quiet ||
        __atomic_load_n(&bg_paused, __ATOMIC_RELAXED) || agent_single_stepped())
        return;
    int saved = errno;
    agent_enter();
    agent_http_child_start();   /* HEAPWATCH_HTTP=host:0, a forked child (http.c) */
    if (agent_conf.thread == CONF_THREAD_OFF || bg_failed) tick_jobs();
    else agent_bg_start();
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

void agent_bg_pause(void)
{
    if (!agent_enabled || !agent_ready() || !agent_own_process())
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
        uint64_t deadline = agent_clock_ns(CLOCK_REALTIME) + PAUSE_JOIN_NS;
        struct timespec ts = { (time_t)(deadline / 1000000000ull), (long)(deadline % 1000000000ull) };
        int tid = __atomic_load_n(&bg_tid, __ATOMIC_RELAXED);
        __atomic_store_n(&bg_pid, 0, __ATOMIC_RELEASE);
        if (pthread_timedjoin_np(bg_handle, NULL, &ts) == 0) {
            wait_gone(tid);
            /* Its last job worker was joined before it ended, but the
             * kernel may list that thread a little longer too. */
            int wtid = __atomic_load_n(&worker_tid, __ATOMIC_RELAXED);
            if (wtid) wait_gone(wtid);
            agent_spawn_joinable_done();
        } else {
            bg_unjoined = true;   /* it leaves after its job; joined before a restart */
        }
    }
    __atomic_store_n(&bg_control, 0, __ATOMIC_RELEASE);
out:
    agent_leave();
    errno = saved;
}

void agent_bg_resume(void)
{
    if (!agent_enabled || !agent_ready() || !agent_own_process())
        return;
    if (__atomic_sub_fetch(&bg_paused, 1, __ATOMIC_ACQ_REL) != 0) return;
    if (agent_conf.thread == CONF_THREAD_OFF || bg_failed ||
        __atomic_load_n(&bg_pid, __ATOMIC_ACQUIRE) == (int)getpid())
        return;
    int saved = errno;
    agent_enter();
    if (live_threads() > 1) {
        agent_bg_start();   /* multi-threaded anyway */
    } else {
        /* Back at the next due job, not before: the program may go on
         * with calls that want it alone (another unshare, a seccomp
         * filter, a check of its threads). */
        uint64_t due = agent_clock_ns(CLOCK_MONOTONIC) + agent_conf.interval_ns;
        if (agent_work_trylock()) {
            if (next_due() > due) due = next_due();
            agent_work_unlock();
        }
        arm_ticks(due);
    }
    agent_leave();
    errno = saved;
}

/* ------------------------------------------------------------------------ */
/* Start-up and fork                                                        */
/* ------------------------------------------------------------------------ */

void agent_bg_init(void)
{
    wake_ok = sem_init(&wake, 0, 0) == 0;
    set_deadlines(agent_mono_ns());
    if (agent_conf.thread != CONF_THREAD_ON) arm_ticks(next_due());
}

void agent_bg_new_thread(void)
{
    /* A thread of the program's own: the process is multi-threaded anyway,
     * so the agent's thread costs nothing observable now. */
    if (agent_conf.thread != CONF_THREAD_AUTO || agent_tls.quiet ||   /* see agent_tick_slow */
        __atomic_load_n(&bg_pid, __ATOMIC_RELAXED) == getpid())
        return;
    agent_enter();
    agent_http_child_start();   /* HEAPWATCH_HTTP=host:0, a forked child (http.c) */
    agent_bg_start();
    agent_leave();
}

void agent_bg_postfork_child(uint64_t now)
{
    if (wake_ok) sem_init(&wake, 0, 0);
    agent_bg_start_watch(now);
    /* The parent's background thread is not here. The child is
     * single-threaded: it gets its own thread (auto, on) or does its jobs
     * (off) when the first is due; with "on" at its next tick. */
    __atomic_store_n(&bg_pid, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&bg_control, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&bg_paused, 0, __ATOMIC_RELAXED);
    bg_unjoined = false;
    agent_spawn_joinable_done();   /* the parent's thread's stack, copied */
    set_deadlines(now);
    arm_ticks(agent_conf.thread == CONF_THREAD_ON ? 0 : next_due());
}
