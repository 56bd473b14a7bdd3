/*
 * life_exec.c - an exec chain: the program execve's itself with a counter
 * argument until it reaches 3, so one pid runs four images.
 *
 * usage: life_exec [N]     (N = 0 to start the chain; 3 = the last image)
 *
 * Image N keeps 1000 * (N + 1) blocks live, then appends one line to the
 * file named by LIFE_RECORD:
 *     image <N> pid <pid> mallocs <agent mallocs> live <agent live objects>
 * (zeros without the agent), and execs image N + 1 (the last returns 0).
 * An exec is not an exit: no destructor runs in the image that exec'ed.
 */
#define _GNU_SOURCE
#include "life_common.h"

extern char **environ;

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 0;
    int keep = 1000 * (n + 1);
    for (int i = 0; i < keep; i++) (void)life_opaque(malloc(48));
    heapwatch_counters_t c = life_read();
    const char *rec = getenv("LIFE_RECORD");
    if (rec && *rec) {
        char line[200];
        int len = snprintf(line, sizeof line, "image %d pid %d mallocs %llu live %lld\n", n,
                           (int)getpid(), (unsigned long long)c.mallocs,
                           (long long)(c.mallocs - c.frees));
        int fd = open(rec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            life_write_all(fd, line, (size_t)len);
            close(fd);
        }
    }
    if (n >= 3) return 0;
    char next[16];
    snprintf(next, sizeof next, "%d", n + 1);
    char *args[] = { argv[0], next, NULL };
    execve("/proc/self/exe", args, environ);
    perror("execve");
    return 1;
}
