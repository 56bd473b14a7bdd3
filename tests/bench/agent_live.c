/*
 * agent_live.c - holds a known large live set at exit, for the agent's
 * memory benchmark (tests/bench/agent_bench.py, part 4).
 *
 * Allocates --n N blocks (default 1,000,000) of 16..64 bytes (cycling
 * 16, 24, ..., 64) and keeps every one live until the process exits, so the
 * agent's exit summary sees N live objects (plus the program's few own).
 * The pointer array is mmap'ed, not malloc'ed, so the only heap blocks the
 * program holds are the N measured ones. Before returning, it prints its
 * own VmRSS and VmHWM (kB) from /proc/self/status, read after the live set
 * is complete:
 *   live n=N bytes_requested=B vmrss_kb=R vmhwm_kb=H
 *
 * usage: agent_live [--n N]
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* status_kb: the value of a "Name:   123 kB" line of /proc/self/status. */
static long status_kb(const char *name)
{
    char buf[8192];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    size_t len = strlen(name);
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (!strncmp(line, name, len) && line[len] == ':') return strtol(line + len + 1, NULL, 10);
    return -1;
}

int main(int argc, char **argv)
{
    uint64_t n = 1000000;
    if (argc == 3 && !strcmp(argv[1], "--n")) {
        n = strtoull(argv[2], NULL, 10);
    } else if (argc != 1) {
        fprintf(stderr, "usage: agent_live [--n N]\n");
        return 2;
    }
    size_t cap = n ? (size_t)n * sizeof(void *) : 1;
    void **ptrs = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ptrs == MAP_FAILED) {
        perror("agent_live: mmap");
        return 1;
    }
    uint64_t requested = 0;
    for (uint64_t i = 0; i < n; i++) {
        size_t sz = 16 + 8 * (size_t)(i % 7);   /* 16..64 */
        unsigned char *p = malloc(sz);
        if (!p) {
            fprintf(stderr, "agent_live: out of memory after %" PRIu64 " blocks\n", i);
            return 1;
        }
        p[0] = (unsigned char)i;
        ptrs[i] = p;
        requested += sz;
    }
    /* Read the figures first, print them after: stdio's buffer is then
     * allocated after the measure. */
    long rss = status_kb("VmRSS"), hwm = status_kb("VmHWM");
    printf("live n=%" PRIu64 " bytes_requested=%" PRIu64 " vmrss_kb=%ld vmhwm_kb=%ld\n", n,
           requested, rss, hwm);
    return 0;   /* the blocks stay live: the agent's exit summary sees them */
}
