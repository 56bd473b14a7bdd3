/*
 * safe_thread.c - a single-threaded program that watches its own thread
 * count (/proc/self/status "Threads:"), for safety_thread.sh: the agent must
 * not make it multi-threaded where that shows, must step aside around
 * unshare/setns, and must still take snapshots without a thread.
 *
 *   safe_thread count N         threads at start and after N allocations
 *   safe_thread steady S [SIG]  allocates steadily for S seconds, leaking
 *                               ~5000 objects/s; with SIG, raises it halfway;
 *                               prints the most threads seen
 *   safe_thread unshare S       allocates for S seconds, then
 *   safe_thread setns S         unshare(CLONE_NEWUSER) / setns(own mount ns),
 *                               then allocates for S seconds again
 *   safe_thread fork S          allocates for S seconds, forks; the child
 *                               reports its threads after 100000 allocations
 *
 * Every line is "key=value"; the exit status is 0 unless the call failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static int threads(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *p = strstr(buf, "\nThreads:");
    return p ? atoi(p + 9) : -1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *volatile sink;

/* allocate: for `seconds`, 10 allocations of 64 bytes a millisecond, half
 * kept (leaked); @return the most threads seen. */
static int allocate(double seconds, int sig)
{
    double end = now() + seconds, half = now() + seconds / 2;
    int most = threads();
    struct timespec ms = { 0, 1000000 };
    while (now() < end) {
        for (int i = 0; i < 10; i++) {
            void *p = malloc(64);
            if (i & 1) free(p);
            else sink = p;
        }
        if (sig && now() >= half) {
            raise(sig);
            sig = 0;
        }
        int t = threads();
        if (t > most) most = t;
        nanosleep(&ms, NULL);
    }
    return most;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: safe_thread count N | steady S [SIG] | unshare S | setns S\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("threads_start=%d\n", threads());
    if (!strcmp(argv[1], "count")) {
        long n = atol(argv[2]);
        for (long i = 0; i < n; i++) {
            void *p = malloc((size_t)(16 + i % 200));
            if (i % 3) free(p);
            else sink = p;
        }
        printf("threads_after=%d\n", threads());
        return 0;
    }
    double s = atof(argv[2]);
    if (!strcmp(argv[1], "steady")) {
        int sig = argc > 3 ? atoi(argv[3]) : 0;
        printf("threads_most=%d\n", allocate(s, sig));
        return 0;
    }
    printf("threads_busy=%d\n", allocate(s, 0));
    if (!strcmp(argv[1], "fork")) {
        pid_t pid = fork();
        if (pid == 0) {
            int first = threads();
            for (int i = 0; i < 100000; i++) {
                void *p = malloc(48);
                if (i % 4) free(p);
                else sink = p;
            }
            printf("child_threads=%d,%d\n", first, threads());
            return 0;
        }
        int st = 0;
        waitpid(pid, &st, 0);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    int r, err;
    if (!strcmp(argv[1], "unshare")) {
        r = unshare(CLONE_NEWUSER);
    } else {
        int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
        r = fd < 0 ? -1 : setns(fd, CLONE_NEWNS);
        err = errno;
        if (cwd[0] && chdir(cwd) != 0) perror("chdir");   /* setns moved us to / */
        if (fd >= 0) close(fd);
        errno = err;
    }
    err = errno;
    printf("%s=%s\n", argv[1], r == 0 ? "ok" : strerror(err));
    printf("threads_after=%d\n", threads());
    printf("threads_later=%d\n", allocate(s, 0));
    return r == 0 ? 0 : 1;
}
