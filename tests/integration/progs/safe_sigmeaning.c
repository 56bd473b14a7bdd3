/*
 * safe_sigmeaning.c - what a program sees of its signals, for
 * safety_conf.sh: the agent's HEAPWATCH_SIGNAL must take nothing away.
 *
 * usage: safe_sigmeaning MODE
 *   chld   a child exits 0.1 s into the parent's sleep(1): prints whether
 *          the parent slept the whole second (a SIGCHLD handler cuts it)
 *   own    installs its own SIGUSR1 handler, raises SIGUSR1 three times
 *          while allocating: prints how often its handler ran
 *   disp   prints SIGUSR1's disposition as the program found it at main
 *          (ignored, default or handler): an inherited SIG_IGN must stay
 *   wait   prints "ready" (flushed), then allocates and sleeps 1 s in
 *          10 ms steps (a signal may interrupt one), then prints "done"
 * The output is the same with and without the agent; exit 0.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t own_runs;

static void own_handler(int sig)
{
    (void)sig;
    own_runs++;
}

static int mode_chld(void)
{
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        usleep(100 * 1000);   /* exit while the parent sleeps */
        _exit(0);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sleep(1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    waitpid(pid, NULL, 0);
    double slept = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("%s\n", slept >= 0.95 ? "slept 1 s" : "woken early");
    return 0;
}

static int mode_own(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = own_handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0) return 1;
    for (int i = 0; i < 3; i++) {
        char *volatile p = malloc(1000);
        raise(SIGUSR1);
        free(p);
    }
    printf("own handler ran %d\n", (int)own_runs);
    return 0;
}

static int mode_disp(void)
{
    struct sigaction old;
    if (sigaction(SIGUSR1, NULL, &old) != 0) return 1;
    printf("%s\n", old.sa_handler == SIG_IGN ? "ignored" : old.sa_handler == SIG_DFL ? "default" : "handler");
    return 0;
}

static int mode_wait(void)
{
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < 100; i++) {
        char *volatile p = malloc(64 + (size_t)i);
        free(p);
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    printf("done\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "chld") == 0) return mode_chld();
    if (strcmp(mode, "own") == 0) return mode_own();
    if (strcmp(mode, "disp") == 0) return mode_disp();
    if (strcmp(mode, "wait") == 0) return mode_wait();
    fprintf(stderr, "usage: safe_sigmeaning chld|own|disp|wait\n");
    return 2;
}
