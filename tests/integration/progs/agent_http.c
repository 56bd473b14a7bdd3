/*
 * agent_http.c - a program to query over HEAPWATCH_HTTP while it idles.
 *
 * It allocates 1000 blocks of 1000 bytes in http_keep (kept live) and 500
 * of 3000 in http_churn (freed), prints "ready", writes the agent's
 * counters as it read them (through heapwatch_read_counters) to COUNTS,
 * and then allocates nothing until its standard input reaches end of file:
 * whatever the server reports meanwhile must be exactly those counters.
 * Then it frees everything and exits 0.
 *
 * usage: agent_http COUNTS [plain|fork|pexit]
 *   fork   a child (forked before "ready") waits for the same end of file;
 *          its pid is the second line of COUNTS
 *   pexit  main waits in a thread and ends with pthread_exit; the process
 *          must still end when that thread returns
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"

#define KEEP 1000
static void *kept[KEEP];

__attribute__((noinline)) static void *http_keep(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

__attribute__((noinline)) static void http_churn(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" : "+r"(p) : : "memory");
    free(p);
}

static void wait_eof(void)
{
    char c;
    while (read(0, &c, 1) > 0) {
    }
}

static void *waiter(void *arg)
{
    (void)arg;
    wait_eof();
    return NULL;
}

/* write_counts: "mallocs frees alloc_bytes free_bytes\n[child]\n", no malloc. */
static void write_counts(const char *path, pid_t child)
{
    heapwatch_counters_t c;
    memset(&c, 0, sizeof c);
    void (*rd)(heapwatch_counters_t *) =
        (void (*)(heapwatch_counters_t *))dlsym(RTLD_DEFAULT, "heapwatch_read_counters");
    if (rd) rd(&c);
    char line[256];
    int n = snprintf(line, sizeof line, "%llu %llu %llu %llu\n%d\n", (unsigned long long)c.mallocs,
                     (unsigned long long)c.frees, (unsigned long long)c.alloc_bytes,
                     (unsigned long long)c.free_bytes, (int)child);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n || close(fd) != 0 || rename(tmp, path) != 0) exit(3);
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    const char *mode = argc > 2 ? argv[2] : "plain";
    for (int i = 0; i < KEEP; i++) kept[i] = http_keep(1000);
    for (int i = 0; i < 500; i++) http_churn(3000);
    pid_t child = 0;
    if (strcmp(mode, "fork") == 0) {
        child = fork();
        if (child == 0) {
            wait_eof();
            _exit(0);
        }
    }
    printf("ready\n");
    fflush(stdout);
    if (strcmp(mode, "pexit") == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, waiter, NULL) != 0) return 4;
        write_counts(argv[1], 0);
        pthread_exit(NULL);
    }
    write_counts(argv[1], child);
    wait_eof();
    for (int i = 0; i < KEEP; i++) free(kept[i]);
    if (child > 0) waitpid(child, NULL, 0);
    return 0;
}
