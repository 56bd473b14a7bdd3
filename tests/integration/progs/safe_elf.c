/*
 * safe_elf.c - a host whose mapped library is truncated and rewritten under
 * it (tests/integration/safety_elf.sh).
 *
 * usage: safe_elf LIB INFO
 *
 * dlopens LIB, allocates 2000 blocks through its safelib_keep (kept live:
 * every heap profile has stacks in LIB), writes "<pid> <address of
 * safelib_keep>\n" to INFO (written whole, then renamed), prints "ready",
 * and then runs no code of LIB and allocates nothing until its standard
 * input reaches end of file: the test owns the file meanwhile (it may hold
 * garbage; only the agent reads it). At end of file it frees its blocks,
 * prints "done" and ends with _exit(0): truncating a file makes the kernel
 * drop every page mapped from it, the relocated private copies included,
 * so LIB's destructors (exit, dlclose) would run unrelocated code even
 * after the test restored the bytes; that would be the program's own
 * crash, not the agent's. The agent writes its exit profile from _exit.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NBLOCKS 2000
static void *blocks[NBLOCKS];

static void write_info(const char *path, void *fn)
{
    char line[128], tmp[4200];
    int n = snprintf(line, sizeof line, "%d %p\n", (int)getpid(), fn);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n || close(fd) != 0 || rename(tmp, path) != 0)
        exit(3);
}

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "safe_elf: %s\n", dlerror());
        return 4;
    }
    void (*keep)(void **, int) = (void (*)(void **, int))dlsym(h, "safelib_keep");
    if (!keep) return 5;
    keep(blocks, NBLOCKS);
    write_info(argv[2], (void *)keep);
    printf("ready\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    for (int i = 0; i < NBLOCKS; i++) free(blocks[i]);
    printf("done\n");
    fflush(stdout);
    _exit(0);
}
