/*
 * life_signals.c - a program with its own signal handlers that allocate,
 * under timer and pthread_kill storms, while several threads allocate.
 *
 * Handlers that call malloc are async-signal-unsafe, but common. To keep
 * the program itself correct (so any misbehaviour is the agent's), a
 * handler allocates only when the interrupted instruction is in this
 * program's own code or in the agent's: then the thread is not inside
 * libc's malloc (which is not reentrant), but may well be inside the
 * agent's wrappers, between the real malloc and the counting, which is
 * exactly what is tested. Handlers keep a ring of blocks per thread,
 * freeing the oldest as they go; the thread frees what is left at the end.
 * With the agent loaded, the counters must match everything the threads
 * and their handlers did (LIFE_TAP).
 *
 * Before the storm, deterministic EINTR checks: ppoll with a pending
 * SIGUSR1 (no SA_RESTART), read(2) restarted under SIGALRM (SA_RESTART),
 * read(2) and nanosleep interrupted by SIGUSR1. At the end the timers are
 * re-armed and main returns, so the process exits (and the agent writes
 * its summary) under the storm.
 *
 * usage: life_signals [ITERATIONS]    stdout is the same with and without
 *                                     the agent; exit 0
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>

#include "life_common.h"

#define WORKERS 3
#define RING 64
#define WORK_RING 128

/* --- the handlers ---------------------------------------------------- */

typedef struct {
    uint64_t mallocs, frees, alloc_bytes, free_bytes;
} tally_t;

static __thread struct {
    int armed;                /* this thread's handler may allocate */
    unsigned next;
    void *ring[RING];
    tally_t t;                /* written only by the handler (they do not nest) */
} hs;

static void handler(int sig, siginfo_t *si, void *ucv)
{
    (void)si;
    int saved = errno;
    ucontext_t *uc = ucv;
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    if (hs.armed && life_in_code(pc)) {
        unsigned slot = hs.next++ % RING;
        if (hs.ring[slot]) {
            hs.t.frees++;
            hs.t.free_bytes += malloc_usable_size(hs.ring[slot]);
            free(hs.ring[slot]);
        }
        size_t size = 8 + (hs.next * 53) % 700;
        void *p = sig == SIGUSR1 ? calloc(1, size) : malloc(size);
        if (p) {
            hs.t.mallocs++;
            hs.t.alloc_bytes += malloc_usable_size(p);
        }
        hs.ring[slot] = p;
    }
    errno = saved;
}

/* drain: the thread's handler ring, freed with the signals blocked; the
 * handler's tally and these frees are added to *t. */
static void drain(tally_t *t)
{
    sigset_t s, old;
    sigemptyset(&s);
    sigaddset(&s, SIGALRM);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &s, &old);
    hs.armed = 0;
    t->mallocs += hs.t.mallocs;
    t->frees += hs.t.frees;
    t->alloc_bytes += hs.t.alloc_bytes;
    t->free_bytes += hs.t.free_bytes;
    memset(&hs.t, 0, sizeof hs.t);
    for (int i = 0; i < RING; i++) {
        if (!hs.ring[i]) continue;
        t->frees++;
        t->free_bytes += malloc_usable_size(hs.ring[i]);
        free(hs.ring[i]);
        hs.ring[i] = NULL;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void install(int sig, int restart)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | (restart ? SA_RESTART : 0);
    sigemptyset(&sa.sa_mask);            /* handlers never nest: one tally */
    sigaddset(&sa.sa_mask, SIGALRM);
    sigaddset(&sa.sa_mask, SIGUSR1);
    sigaddset(&sa.sa_mask, SIGPROF);
    sigaction(sig, &sa, NULL);
}

static void timers(long usec)
{
    struct itimerval it = { { 0, usec }, { 0, usec } };
    setitimer(ITIMER_REAL, &it, NULL);
    setitimer(ITIMER_PROF, &it, NULL);
}

static void block_storm_signals(int how)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGALRM);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGPROF);
    pthread_sigmask(how, &s, NULL);
}

/* --- deterministic EINTR checks ----------------------------------------- */

static pthread_t main_thread;
static int poke_sig;
static int poke_stop;          /* atomic */
static int poke_pipe = -1;     /* write "hello" here after the pokes, if >= 0 */

static void *poker(void *arg)
{
    (void)arg;
    struct timespec ts = { 0, 2000000 };
    if (poke_pipe >= 0) {
        for (int i = 0; i < 10; i++) {
            pthread_kill(main_thread, poke_sig);
            nanosleep(&ts, NULL);
        }
        if (write(poke_pipe, "hello", 5) != 5) abort();
        return NULL;
    }
    while (!__atomic_load_n(&poke_stop, __ATOMIC_ACQUIRE)) {
        pthread_kill(main_thread, poke_sig);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static pthread_t start_poker(int sig, int pipe_fd)
{
    pthread_t t;
    poke_sig = sig;
    poke_pipe = pipe_fd;
    __atomic_store_n(&poke_stop, 0, __ATOMIC_RELEASE);
    if (pthread_create(&t, NULL, poker, NULL) != 0) abort();
    return t;
}

static void stop_poker(pthread_t t)
{
    __atomic_store_n(&poke_stop, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
}

static void eintr_checks(void)
{
    int p[2];
    if (pipe(p) != 0) abort();

    /* ppoll with SIGUSR1 pending and unblocked only inside the call. */
    block_storm_signals(SIG_BLOCK);
    pthread_kill(pthread_self(), SIGUSR1);
    sigset_t during;
    pthread_sigmask(SIG_BLOCK, NULL, &during);
    sigdelset(&during, SIGUSR1);
    struct pollfd pfd = { p[0], POLLIN, 0 };
    struct timespec five = { 5, 0 };
    int r = ppoll(&pfd, 1, &five, &during);
    printf("ppoll with a pending SIGUSR1: %d %s\n", r, r < 0 ? strerrorname_np(errno) : "-");
    block_storm_signals(SIG_UNBLOCK);

    /* read(2) restarted under SIGALRM (SA_RESTART). */
    char buf[16];
    pthread_t t = start_poker(SIGALRM, p[1]);
    ssize_t n = read(p[0], buf, sizeof buf);
    pthread_join(t, NULL);
    printf("read under SA_RESTART SIGALRM: %zd %.*s\n", n, n > 0 ? (int)n : 0, buf);

    /* read(2) interrupted by SIGUSR1 (no SA_RESTART). */
    t = start_poker(SIGUSR1, -1);
    n = read(p[0], buf, sizeof buf);
    int err = errno;
    stop_poker(t);
    printf("read interrupted by SIGUSR1: %zd %s\n", n, n < 0 ? strerrorname_np(err) : "-");

    /* nanosleep interrupted by SIGUSR1: -1 EINTR with time remaining. */
    t = start_poker(SIGUSR1, -1);
    struct timespec longer = { 30, 0 }, rem = { 0, 0 };
    r = nanosleep(&longer, &rem);
    err = errno;
    stop_poker(t);
    printf("nanosleep interrupted by SIGUSR1: %d %s, time remaining: %s\n", r,
           r < 0 ? strerrorname_np(err) : "-", rem.tv_sec > 0 ? "yes" : "no");
    close(p[0]);
    close(p[1]);
    fflush(stdout);
}

/* --- the storm ----------------------------------------------------------- */

static long iterations = 200000;
static pthread_barrier_t barrier;
static tally_t totals[WORKERS + 1];
static int workers_done;       /* atomic */

/* work: allocation churn; the thread's own tally in *t. */
static void work(tally_t *t, unsigned seed)
{
    void *ring[WORK_RING] = { 0 };
    hs.armed = 1;
    for (long i = 0; i < iterations; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned slot = (seed >> 9) % WORK_RING;
        if (ring[slot]) {
            t->frees++;
            t->free_bytes += malloc_usable_size(ring[slot]);
            free(ring[slot]);
        }
        size_t size = 1 + (seed >> 12) % 2000;
        void *q = (seed & 3) == 0 ? calloc(1, size) : malloc(size);
        if (!q) abort();
        t->mallocs++;
        t->alloc_bytes += malloc_usable_size(q);
        if ((seed & 15) == 1) {
            t->frees++;
            t->free_bytes += malloc_usable_size(q);
            q = realloc(q, size + 3000);
            if (!q) abort();
            t->mallocs++;
            t->alloc_bytes += malloc_usable_size(q);
        }
        ring[slot] = q;
    }
    for (int s = 0; s < WORK_RING; s++) {
        if (!ring[s]) continue;
        t->frees++;
        t->free_bytes += malloc_usable_size(ring[s]);
        free(ring[s]);
    }
    drain(t);
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    free(life_opaque(malloc(1)));            /* the agent registers this thread now */
    pthread_barrier_wait(&barrier);          /* ready: main reads the counters */
    pthread_barrier_wait(&barrier);          /* the phase starts */
    work(&totals[id], (unsigned)id * 7919u + 1);
    __atomic_add_fetch(&workers_done, 1, __ATOMIC_RELEASE);
    pthread_barrier_wait(&barrier);          /* the phase ends */
    return NULL;
}

static void *stormer(void *arg)
{
    pthread_t *w = arg;
    struct timespec ts = { 0, 20000 };
    for (unsigned k = 0; __atomic_load_n(&workers_done, __ATOMIC_ACQUIRE) < WORKERS; k++) {
        pthread_kill(k % (WORKERS + 1) == WORKERS ? main_thread : w[k % (WORKERS + 1)], SIGUSR1);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1) iterations = atol(argv[1]);
    main_thread = pthread_self();
    life_find_code(1);
    install(SIGALRM, 1);
    install(SIGPROF, 1);
    install(SIGUSR1, 0);
    printf("life_signals: handlers installed\n");
    fflush(stdout);

    eintr_checks();

    pthread_barrier_init(&barrier, NULL, WORKERS + 1);
    pthread_t w[WORKERS], storm;
    for (int i = 0; i < WORKERS; i++)
        if (pthread_create(&w[i], NULL, worker, (void *)(intptr_t)i) != 0) abort();
    block_storm_signals(SIG_BLOCK);          /* the storm thread inherits this */
    if (pthread_create(&storm, NULL, stormer, w) != 0) abort();
    block_storm_signals(SIG_UNBLOCK);
    free(life_opaque(malloc(1)));

    pthread_barrier_wait(&barrier);          /* every thread is registered */
    heapwatch_counters_t before = life_read();
    timers(100);
    pthread_barrier_wait(&barrier);
    work(&totals[WORKERS], 4242);            /* main allocates under the storm too */
    while (__atomic_load_n(&workers_done, __ATOMIC_ACQUIRE) < WORKERS) sched_yield();
    timers(0);
    pthread_barrier_wait(&barrier);
    heapwatch_counters_t after = life_read();

    tally_t sum = { 0, 0, 0, 0 };
    for (int i = 0; i <= WORKERS; i++) {
        sum.mallocs += totals[i].mallocs;
        sum.frees += totals[i].frees;
        sum.alloc_bytes += totals[i].alloc_bytes;
        sum.free_bytes += totals[i].free_bytes;
    }
    if (life_agent()) {
        /* Objects and bytes on separate lines: a lost update of a byte
         * counter (a handler that allocates between the agent's load and
         * store) shows on the second only. */
        life_expect("allocations of threads and of their signal handlers under storms",
                    &before, sum.mallocs, sum.frees, UINT64_MAX, UINT64_MAX);
        uint64_t ab = after.alloc_bytes - before.alloc_bytes;
        uint64_t fb = after.free_bytes - before.free_bytes;
        life_tap(ab == sum.alloc_bytes && fb == sum.free_bytes,
                 "bytes of allocations made by signal handlers that interrupt the agent: "
                 "alloc_bytes %llu/%llu free_bytes %llu/%llu",
                 (unsigned long long)ab, (unsigned long long)sum.alloc_bytes,
                 (unsigned long long)fb, (unsigned long long)sum.free_bytes);
    }
    for (int i = 0; i < WORKERS; i++) pthread_join(w[i], NULL);
    pthread_join(storm, NULL);
    printf("life_signals: storm over, every thread joined\n");
    fflush(stdout);

    /* Leave under the storm: handlers allocate while the process exits. */
    hs.armed = 1;
    timers(50);
    return 0;
}
