/*
 * safe_sched.c - a program whose main thread pins itself to one CPU and,
 * when it may, takes a real-time policy, then allocates past the agent's
 * first snapshot, so that HEAPWATCH_THREAD=auto starts the agent's thread
 * from this very thread (tests/integration/safety_sched.sh). Prints, for
 * the agent's threads (named heapwatch*), their CPU list and scheduling
 * policy as the kernel reports them:
 *   main_cpus=0 main_policy=1 agent_cpus=0-1 agent_policy=0
 * The agent's thread must not take the program thread's pinning or
 * real-time policy (it would run its jobs at real-time priority, on the
 * program's pinned core).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* status_field: the value of "Key:" in /proc/self/task/TID/status. */
static void status_field(const char *tid, const char *key, char *out, size_t cap)
{
    char path[256], line[512];
    snprintf(path, sizeof path, "/proc/self/task/%s/status", tid);
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, k) == 0 && line[k] == ':') {
            char *v = line + k + 1;
            while (*v == ' ' || *v == '\t') v++;
            v[strcspn(v, "\n")] = 0;
            snprintf(out, cap, "%s", v);
        }
    }
    fclose(f);
}

/* policy: field 41 of /proc/self/task/TID/stat. */
static int policy(const char *tid)
{
    char path[256], buf[2048];
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    int field = 2;
    for (; *p && field < 41; p++)
        if (*p == ' ') field++;
    return atoi(p);
}

int main(void)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) { perror("sched_setaffinity"); return 1; }
    struct sched_param sp = { .sched_priority = 1 };
    int rt = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;   /* root only */
    /* Allocate past the first snapshot (HEAPWATCH_INTERVAL=0.1): the
     * agent starts its thread from here. Sleeps keep a real-time thread
     * from holding its CPU. */
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    void *keep[256] = { 0 };
    for (long i = 0;; i++) {
        free(keep[i & 255]);
        keep[i & 255] = malloc(64 + (size_t)(i & 1023));
        if ((i & 4095) == 0) {
            struct timespec nap = { 0, 1000000 };
            nanosleep(&nap, NULL);
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) > 600000000L) break;
        }
    }
    char self[32], cpus[256] = "", name[64], agent_cpus[256] = "?";
    snprintf(self, sizeof self, "%d", (int)gettid());
    status_field(self, "Cpus_allowed_list", cpus, sizeof cpus);
    int agent_policy = -1;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        status_field(e->d_name, "Name", name, sizeof name);
        if (strncmp(name, "heapwatch", 9) != 0) continue;
        status_field(e->d_name, "Cpus_allowed_list", agent_cpus, sizeof agent_cpus);
        agent_policy = policy(e->d_name);
    }
    if (d) closedir(d);
    printf("rt=%d main_cpus=%s main_policy=%d agent_cpus=%s agent_policy=%d\n", rt, cpus, policy(self),
           agent_cpus, agent_policy);
    return 0;
}
