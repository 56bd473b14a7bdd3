/*
 * fds_daemon.c - a daemon-style program for the descriptor tests
 * (tests/integration/safety_fds.sh): it allocates a little, then closes
 * every descriptor from 3 to 1023 (as daemons do after start, taking the
 * agent's and libunwind's descriptors with them), opens its own data
 * files, and writes LINES lines across them while allocating through
 * fds_nounwind_alloc, code without unwind tables, at stack depths that
 * vary over 24 KiB.
 *
 * It checks every write and close itself: it prints "write errors: N" on
 * stdout, and exits 0 when every byte went where it should, 1 otherwise.
 * The files' contents are deterministic, so a run under the agent can be
 * compared byte for byte with a bare run.
 *
 * Usage: fds_daemon DIR [LINES [PAUSE_US]]: with PAUSE_US, it sleeps 15 times
 * that before closing its descriptors and PAUSE_US every 100 lines, so the
 * agent's background thread runs before and meanwhile.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fds_nounwind.h"

#define NFILES 4

/* deep: allocates k KiB-sized frames further down the stack, so the stacks
 * sampled span more pages than an unwinder's cache of checked pages. */
__attribute__((noinline)) static void *deep(int k, int depth, size_t n)
{
    volatile char frame[1024];
    frame[0] = (char)k;
    void *p = k > 0 ? deep(k - 1, depth, n) : fds_nounwind_alloc(depth, n);
    frame[1] = frame[0];
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fds_daemon DIR [LINES [PAUSE_US]]\n");
        return 2;
    }
    const char *dir = argv[1];
    int lines = argc > 2 ? atoi(argv[2]) : 2000;
    int pause_us = argc > 3 ? atoi(argv[3]) : 0;

    /* Warm up: the agent (and its unwinder) see this process first. */
    for (int i = 0; i < 64; i++) free(fds_nounwind_alloc(3, 4096));
    fflush(stdout);
    if (pause_us > 0) usleep(15u * (useconds_t)pause_us);   /* the agent's thread writes first */

    for (int fd = 3; fd < 1024; fd++) close(fd);

    int fds[NFILES];
    for (int f = 0; f < NFILES; f++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/data%d.txt", dir, f);
        fds[f] = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fds[f] < 0) {
            printf("open %s: %s\n", path, strerror(errno));
            return 1;
        }
    }

    long errors = 0;
    void *keep[16] = {0};
    for (int i = 0; i < lines; i++) {
        /* 4 KiB to 64 KiB blocks: the default rate samples some of them. */
        size_t n = 4096u << (i % 5);
        void *p = deep(i % 24, 1 + i % 3, n);
        free(keep[i % 16]);
        keep[i % 16] = p;

        char line[128];
        int len = snprintf(line, sizeof line, "line %d of file %d: %zu bytes\n", i, i % NFILES, n);
        if (pause_us > 0 && i % 100 == 99) usleep((useconds_t)pause_us);
        ssize_t w = write(fds[i % NFILES], line, (size_t)len);
        if (w != len) {
            if (errors < 3) printf("write %d: %s\n", i, w < 0 ? strerror(errno) : "short");
            errors++;
        }
    }
    for (int i = 0; i < 16; i++) free(keep[i]);
    for (int f = 0; f < NFILES; f++)
        if (close(fds[f]) != 0) {
            printf("close data%d.txt: %s\n", f, strerror(errno));
            errors++;
        }
    printf("write errors: %ld\n", errors);
    return errors ? 1 : 0;
}
