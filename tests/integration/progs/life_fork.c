/*
 * life_fork.c - processes made while other threads allocate.
 *
 * usage: life_fork ITERATIONS     (the parent)
 *        life_fork child TAG      (an exec'ed child: allocates, exits 0)
 *
 * The parent starts 4 threads that allocate and free in tight loops, then
 * for each iteration forks a child while they run (the agent's and libc's
 * fork handlers must not deadlock). The child checks the counters moved by
 * exactly its own allocations (LIFE_TAP) and leaves through exit(),
 * _exit() or _Exit() in turn, with a status it names. Every fifth
 * iteration also starts a child with vfork+execve, one with posix_spawn
 * (both exec this program as "child"), and every tenth runs system(); one
 * vfork child's execve fails on purpose and it _exits (it shares the
 * parent's memory: the agent must not write from it).
 *
 * stdout, "parent <pid> 0", then one line per process started:
 * "<kind> <pid> <status>" (the
 * script checks each has its own summary.<pid>.json; system() prints the
 * shell's pid itself, to LIFE_PIDS).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <spawn.h>
#include <sys/wait.h>

#include "life_common.h"

extern char **environ;

#define THREADS 4
static int stop;                /* atomic */

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    void *ring[32] = { 0 };
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        seed = seed * 1103515245u + 12345u;
        unsigned s = (seed >> 8) % 32;
        free(ring[s]);
        ring[s] = malloc(1 + (seed >> 12) % 3000);
    }
    for (int s = 0; s < 32; s++) free(ring[s]);
    return NULL;
}

static int child_work(const char *tag)
{
    static void *keep[200];
    heapwatch_counters_t before = life_read();
    for (int i = 0; i < 200; i++) keep[i] = malloc(16 + (size_t)i);
    for (int i = 0; i < 80; i++) free(keep[i]);
    if (life_agent()) {
        char what[128];
        snprintf(what, sizeof what, "%s child %d: its own allocations, counted exactly", tag,
                 (int)getpid());
        return life_expect(what, &before, 200, 80, UINT64_MAX, UINT64_MAX);
    }
    return 1;
}

static int wait_status(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "child")) return child_work(argv[2]) ? 0 : 1;
    int iterations = argc > 1 ? atoi(argv[1]) : 50;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 2;
    self[n] = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("parent %d 0\n", (int)getpid());
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1)) != 0) return 2;

    for (int it = 0; it < iterations; it++) {
        pid_t pid = fork();
        if (pid < 0) return 3;
        if (pid == 0) {
            int ok = child_work("fork");
            int status = ok ? 10 + it % 3 : 1;
            fflush(stdout);
            switch (it % 3) {
            case 0: exit(status);
            case 1: _exit(status);
            default: _Exit(status);
            }
        }
        printf("fork %d %d\n", (int)pid, wait_status(pid));

        if (it % 5 == 0) {
            char tag[32];
            snprintf(tag, sizeof tag, "vfork%d", it);
            char *args[] = { self, "child", tag, NULL };
            pid = vfork();
            if (pid == 0) {
                execve(self, args, environ);
                _exit(127);
            }
            printf("vfork+exec %d %d\n", (int)pid, wait_status(pid));

            snprintf(tag, sizeof tag, "spawn%d", it);
            if (posix_spawn(&pid, self, NULL, NULL, args, environ) != 0) return 4;
            printf("posix_spawn %d %d\n", (int)pid, wait_status(pid));
        }
        if (it % 10 == 0) {
            int st = system("echo \"$$\" >> \"${LIFE_PIDS:-/dev/null}\"; exit 7");
            printf("system %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        }
    }

    /* A vfork child whose exec fails: it shares our memory and _exits. */
    char *none[] = { "/nonexistent/heapwatch-life", NULL };
    pid_t pid = vfork();
    if (pid == 0) {
        execve(none[0], none, environ);
        _exit(127);
    }
    printf("vfork-failed %d %d\n", (int)pid, wait_status(pid));

    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    return 0;
}
