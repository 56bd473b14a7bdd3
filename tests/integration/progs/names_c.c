/*
 * names_c.c - a program whose allocating function only a symbol table
 * names, for tests/integration/names.sh: the test strips it and installs
 * its debug file the Debian way (build ID, .gnu_debuglink).
 *
 *   names_c hold            names_c_hold_blocks (static, so no .dynsym
 *                           entry) allocates 256 blocks of 64 KiB, keeps
 *                           them, and the program exits
 *   names_c grow RATE SECS  names_c_grow_node leaks RATE 512-byte
 *                           objects per second for SECS seconds (an alert)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))

static void *kept[256];
static void *chain;

static NOINLINE void names_c_hold_blocks(void)
{
    for (int i = 0; i < 256; i++) {
        kept[i] = malloc(64 * 1024);
        memset(kept[i], 1, 64);
    }
}

static NOINLINE void names_c_grow_node(void)
{
    void **n = malloc(512);
    *n = chain;
    chain = n;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "hold") == 0) {
        names_c_hold_blocks();
        printf("held %d blocks\n", 256);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "grow") == 0) {
        double rate = atof(argv[2]), secs = atof(argv[3]), start = now();
        long done = 0;
        for (;;) {
            double t = now() - start;
            if (t >= secs) break;
            while (done < (long)(t * rate)) {
                names_c_grow_node();
                done++;
            }
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
        printf("leaked %ld nodes\n", done);
        return 0;
    }
    fprintf(stderr, "usage: names_c hold | grow RATE SECS\n");
    return 2;
}
