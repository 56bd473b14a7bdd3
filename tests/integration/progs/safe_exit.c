/*
 * safe_exit.c - leaves from a signal handler while allocating (issue 11,
 * class 2: exit and fork paths never block).
 *
 *   safe_exit MODE THREADS [DELAY_US]
 *
 * THREADS threads (1: the main thread alone) malloc, realloc and free in a
 * loop; after DELAY_US microseconds (default: 2000 plus a few hundred
 * depending on the pid, so runs hit different instructions) a SIGALRM
 * handler, run by whichever allocating thread the signal interrupts, does
 * MODE:
 *   _exit   _exit(3)
 *   exit    exit(3)
 *   Exit    _Exit(3)
 *   quick   quick_exit(3)
 *   fork    fork(); the child allocates, frees and leaves with exit(4); the
 *           parent's main thread stops the loop, waits for the child and
 *           exits 0 when the child's status is 4 (else 1). A handler that
 *           interrupted libc itself does not fork but re-arms the timer:
 *           a fork from a handler that interrupted glibc's malloc, in a
 *           process with more than one thread, deadlocks in glibc's own
 *           fork handler (it locks every malloc arena), with or without
 *           the agent. What is tested is the agent's part: handlers that
 *           interrupt the agent (or the program's own code).
 *   thread  (not a handler) a thread calls exit(3) while the others are
 *           allocating
 *   stuck   a SIGUSR1 handler stops one allocating thread for good, where it
 *           was (at rate 1 mostly inside the agent, perhaps holding one of
 *           its locks); then the main thread, which does not allocate
 *           meanwhile, calls exit(3). THREADS >= 2.
 *   stuckwait as stuck, but the main thread first writes "stuck" on stdout
 *           and sleeps 0.8 s (a test reads /metrics meanwhile).
 * The loop gives up after 10 s with status 2 (the handler never ran).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <time.h>
#include <unistd.h>

static const char *mode;
static volatile sig_atomic_t stop;
static volatile pid_t child = -1;

static void churn_once(unsigned *seed)
{
    void *p[8];
    for (int i = 0; i < 8; i++) {
        p[i] = malloc(16 + (rand_r(seed) % 4096));
        if (p[i]) memset(p[i], i, 16);
    }
    for (int i = 0; i < 8; i += 2) {
        void *q = realloc(p[i], 64 + (rand_r(seed) % 8192));
        if (q) p[i] = q;
    }
    for (int i = 0; i < 8; i++) free(p[i]);
}

/* libc's executable mapping (x86-64: the handler reads the interrupted
 * instruction pointer; elsewhere every handler forks). */
static uintptr_t libc_lo, libc_hi;

static void find_libc(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && perms[2] == 'x' &&
            strstr(line, "/libc.so")) {
            libc_lo = lo;
            libc_hi = hi;
        }
    }
    if (f) fclose(f);
}

static int interrupted_libc(void *uc)
{
#if defined(__x86_64__)
    uintptr_t pc = (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
    return pc >= libc_lo && pc < libc_hi;
#else
    (void)uc;
    return 0;
#endif
}

static void on_alarm(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    if (strcmp(mode, "fork") == 0 && interrupted_libc(uc)) {
        struct itimerval again = { { 0, 0 }, { 0, 50 + (getpid() % 5) * 37 } };
        setitimer(ITIMER_REAL, &again, NULL);
        return;
    }
    if (strcmp(mode, "_exit") == 0) _exit(3);
    if (strcmp(mode, "Exit") == 0) _Exit(3);
    if (strcmp(mode, "exit") == 0) exit(3);
    if (strcmp(mode, "quick") == 0) quick_exit(3);
    if (strcmp(mode, "fork") == 0 && child < 0) {
        pid_t pid = fork();
        if (pid == 0) {
            unsigned seed = 7;
            for (int i = 0; i < 200; i++) churn_once(&seed);
            exit(4);
        }
        child = pid;
        stop = 1;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    double end = now_s() + 10;
    for (unsigned n = 0; !stop; n++) {
        churn_once(&seed);
        if ((n & 255) == 0 && now_s() > end) break;
    }
    return NULL;
}

static volatile sig_atomic_t stuck;

static void on_usr1(int sig)
{
    (void)sig;
    stuck = 1;
    for (;;) pause();
}

static void *exiter(void *arg)
{
    useconds_t delay = (useconds_t)(uintptr_t)arg;
    usleep(delay);
    exit(3);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s _exit|exit|Exit|quick|fork|thread|stuck THREADS [DELAY_US]\n", argv[0]);
        return 64;
    }
    mode = argv[1];
    int threads = atoi(argv[2]);
    long delay = argc > 3 ? atol(argv[3]) : 2000 + (getpid() % 7) * 97;
    if (threads < 1) threads = 1;
    pthread_t tid[64];
    int extra = threads - 1 < 64 ? threads - 1 : 64;
    for (int i = 0; i < extra; i++) pthread_create(&tid[i], NULL, worker, (void *)(uintptr_t)(i + 11));
    if (strncmp(mode, "stuck", 5) == 0) {
        if (extra < 1) return 64;
        signal(SIGUSR1, on_usr1);
        usleep((useconds_t)delay);
        pthread_kill(tid[0], SIGUSR1);
        for (int i = 0; i < 5000 && !stuck; i++) usleep(1000);
        if (stuck && strcmp(mode, "stuckwait") == 0) {
            /* No allocation here: the stopped thread may hold a live-map
             * shard that this thread's sampled allocation would wait for. */
            ssize_t w = write(1, "stuck\n", 6);
            (void)w;
            usleep(800000);
        }
        exit(stuck ? 3 : 2);
    }
    if (strcmp(mode, "thread") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, exiter, (void *)(uintptr_t)delay);
    } else {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        find_libc();
        sa.sa_sigaction = on_alarm;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval it = { { 0, 0 }, { delay / 1000000, delay % 1000000 } };
        setitimer(ITIMER_REAL, &it, NULL);
    }
    worker((void *)(uintptr_t)5);
    if (strcmp(mode, "fork") == 0 && child > 0) {
        stop = 1;
        for (int i = 0; i < extra; i++) pthread_join(tid[i], NULL);
        int st;
        if (waitpid(child, &st, 0) != child) return 1;
        return WIFEXITED(st) && WEXITSTATUS(st) == 4 ? 0 : 1;
    }
    return 2;
}
