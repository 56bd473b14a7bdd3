/*
 * safe_fdrace.c - a program that keeps taking the low descriptor numbers
 * back, as shells do (`exec 3>log3.txt`): for ROUNDS rounds it closes
 * each of 3..9 and dup2's its own file there at once, then writes one
 * line through it, while it allocates (so the agent's snapshots, timeline
 * appends and alerts run meanwhile and open their own files). Any number
 * the agent was holding is the program's after the dup2; an agent that
 * then writes to or closes it corrupts the program's files.
 *
 * usage: safe_fdrace DIR ROUNDS
 * Checks itself: every write succeeds, and each DIR/log<k>.txt holds
 * exactly its ROUNDS lines. Exit 0 when all is well, 1 otherwise (with
 * one line saying what).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LO 3
#define HI 9

int main(int argc, char **argv)
{
    if (argc != 3) return 2;
    const char *dir = argv[1];
    long rounds = strtol(argv[2], NULL, 10);
    int src[HI + 1];
    char path[4096];
    for (int k = LO; k <= HI; k++) {
        snprintf(path, sizeof path, "%s/log%d.txt", dir, k);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
        if (fd < 0) { perror(path); return 1; }
        src[k] = fcntl(fd, F_DUPFD, 100 + k);   /* kept away from 3..9 */
        close(fd);
    }
    void *keep[64] = { 0 };
    long failures = 0;
    for (long i = 0; i < rounds; i++) {
        for (int k = LO; k <= HI; k++) {
            close(k);
            /* what the agent opens now may land on k ... */
            void *p = malloc(64 + (size_t)(i % 512));
            free(keep[i % 64]);
            keep[i % 64] = p;
            /* ... and is replaced here, as a shell's exec 3> does */
            /* (EBUSY: another thread's open is installing that very
             * number; the kernel asks to try again) */
            int r;
            while ((r = dup2(src[k], k)) < 0 && errno == EBUSY) {
            }
            if (r != k) { perror("dup2"); return 1; }
            char line[64];
            int n = snprintf(line, sizeof line, "line %ld\n", i);
            if (write(k, line, (size_t)n) != n) failures++;
        }
    }
    for (int k = LO; k <= HI; k++) close(k);
    if (failures) { printf("%ld writes failed\n", failures); return 1; }
    for (int k = LO; k <= HI; k++) {
        snprintf(path, sizeof path, "%s/log%d.txt", dir, k);
        FILE *f = fopen(path, "r");
        if (!f) { perror(path); return 1; }
        char line[256];
        long want = 0;
        while (fgets(line, sizeof line, f)) {
            char expect[64];
            snprintf(expect, sizeof expect, "line %ld\n", want);
            if (strcmp(line, expect) != 0) {
                printf("log%d.txt: line %ld is not ours\n", k, want + 1);
                fclose(f);
                return 1;
            }
            want++;
        }
        fclose(f);
        if (want != rounds) { printf("log%d.txt: %ld lines, not %ld\n", k, want, rounds); return 1; }
    }
    printf("ok\n");
    return 0;
}
