/*
 * agent_fleet.c - a process and the child it forks, both allocating at a
 * steady pace, for HEAPWATCH_HTTP=host:0 (every process its own port) and
 * the real-Prometheus test (tests/integration/prometheus_fleet.sh).
 *
 *   agent_fleet leak|steady SECONDS [nofork]
 *
 * Each process allocates PER_MS 32-byte objects every millisecond: `leak`
 * keeps them (live objects grow by about PER_MS x 1000 per second, far
 * above the 2000/s of HeapwatchLiveObjectsGrowthCritical), `steady` frees
 * each at once (live objects stay flat). Both stop after SECONDS or at
 * SIGTERM, and leave with exit (the exit output: the entry leaves
 * targets.json). Prints "parent PID child PID" once both run.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PER_MS 10

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run(int leak, double seconds)
{
    double end = now_s() + seconds;
    struct timespec ms = { 0, 1000000 };
    while (!stop && now_s() < end) {
        for (int i = 0; i < PER_MS; i++) {
            char *p = malloc(32);
            if (!p) break;
            memset(p, i, 32);
            if (!leak) free(p);
        }
        nanosleep(&ms, NULL);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: agent_fleet leak|steady SECONDS [nofork]\n");
        return 2;
    }
    int leak = strcmp(argv[1], "leak") == 0;
    double seconds = atof(argv[2]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    pid_t child = -1;
    if (argc < 4 || strcmp(argv[3], "nofork") != 0) {
        child = fork();
        if (child == 0) {
            run(leak, seconds);
            exit(0);
        }
    }
    printf("parent %d child %d\n", (int)getpid(), (int)child);
    fflush(stdout);
    run(leak, seconds);
    if (child > 0) {
        kill(child, SIGTERM);
        waitpid(child, NULL, 0);
    }
    return 0;
}
