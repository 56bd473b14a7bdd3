/*
 * agent_sites.c - allocation sites with known totals, for the heap-profile
 * tests (tests/integration/agent_profiles.sh).
 *
 *   agent_sites exact FILE    sites of every allocation kind, on 4 threads
 *                             too; writes the ground truth per site (usable
 *                             bytes, as the agent counts) as JSON to FILE
 *   agent_sites large FILE    a few large sites for the default-rate test
 *   agent_sites signal DIR    raises HEAPWATCH_SIGNAL (SIGUSR1) and waits
 *                             for heap.*.signal.pb.gz to appear in DIR
 *   agent_sites sleep SECS    allocates steadily for SECS seconds
 *
 * Each site function allocates directly (no libc call in between that
 * might allocate), is noinline, and is reached through level2 <- level1
 * <- main (or the thread's entry), so the stack test can check callers.
 * The ground truth is the raw (unsampled) truth: objects and usable bytes
 * allocated at each site, and what is still live at exit.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

typedef struct truth_s {
    const char *site;
    long alloc_objects, alloc_bytes, inuse_objects, inuse_bytes;
} truth_t;

static truth_t truth[16];
static int ntruth;
static pthread_mutex_t truth_lock = PTHREAD_MUTEX_INITIALIZER;

static truth_t *site(const char *name)
{
    pthread_mutex_lock(&truth_lock);
    for (int i = 0; i < ntruth; i++) {
        if (strcmp(truth[i].site, name) == 0) {
            pthread_mutex_unlock(&truth_lock);
            return &truth[i];
        }
    }
    truth[ntruth].site = name;
    truth_t *t = &truth[ntruth++];
    pthread_mutex_unlock(&truth_lock);
    return t;
}

static void got(truth_t *t, void *p)
{
    long u = (long)malloc_usable_size(p);
    __atomic_add_fetch(&t->alloc_objects, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&t->alloc_bytes, u, __ATOMIC_RELAXED);
    __atomic_add_fetch(&t->inuse_objects, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&t->inuse_bytes, u, __ATOMIC_RELAXED);
}

static void gone(truth_t *t, void *p)
{
    long u = (long)malloc_usable_size(p);
    __atomic_sub_fetch(&t->inuse_objects, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&t->inuse_bytes, u, __ATOMIC_RELAXED);
}

/* Live blocks kept to the end, so the exit profile has something in use. */
static void *keep[200000];
static int nkeep;
static pthread_mutex_t keep_lock = PTHREAD_MUTEX_INITIALIZER;

static void hold(void *p)
{
    pthread_mutex_lock(&keep_lock);
    keep[nkeep++] = p;
    pthread_mutex_unlock(&keep_lock);
}

/* ------------------------------------------------------------------------ */
/* Sites                                                                    */
/* ------------------------------------------------------------------------ */

NOINLINE void site_malloc(int n, size_t size)
{
    truth_t *t = site("site_malloc");
    for (int i = 0; i < n; i++) {
        void *p = malloc(size + (size_t)(i % 7) * 16);
        got(t, p);
        if (i % 3 == 0) hold(p);
        else { gone(t, p); free(p); }
    }
}

NOINLINE void site_calloc(int n)
{
    truth_t *t = site("site_calloc");
    for (int i = 0; i < n; i++) {
        void *p = calloc(10, 24 + (size_t)(i % 5) * 8);
        got(t, p);
        if (i % 2 == 0) hold(p);
        else { gone(t, p); free(p); }
    }
}

/* Each realloc that succeeds is a free of the old block (its site's) and an
 * allocation at this site, as the agent counts it. */
NOINLINE void site_realloc(int n)
{
    truth_t *t = site("site_realloc");
    for (int i = 0; i < n; i++) {
        void *p = NULL;
        for (size_t size = 16; size <= 4096; size *= 4) {
            if (p) gone(t, p);
            void *q = realloc(p, size);
            got(t, q);
            p = q;
        }
        if (i % 4 == 0) hold(p);
        else { gone(t, p); free(p); }
    }
}

NOINLINE void site_aligned(int n)
{
    truth_t *t = site("site_aligned");
    for (int i = 0; i < n; i++) {
        void *p = NULL;
        switch (i % 3) {
        case 0: p = aligned_alloc(64, 256); break;
        case 1: if (posix_memalign(&p, 128, 200) != 0) p = NULL; break;
        default: p = memalign(256, 100); break;
        }
        if (!p) abort();
        got(t, p);
        if (i % 2) hold(p);
        else { gone(t, p); free(p); }
    }
}

NOINLINE void site_thread(int n)
{
    truth_t *t = site("site_thread");
    for (int i = 0; i < n; i++) {
        void *p = malloc(48);
        got(t, p);
        if (i % 5 == 0) hold(p);
        else { gone(t, p); free(p); }
    }
}

NOINLINE void level2(const char *what)
{
    if (!strcmp(what, "malloc")) site_malloc(30000, 40);
    else if (!strcmp(what, "calloc")) site_calloc(20000);
    else if (!strcmp(what, "realloc")) site_realloc(5000);
    else if (!strcmp(what, "aligned")) site_aligned(6000);
    else if (!strcmp(what, "thread")) site_thread(10000);
}

NOINLINE void level1(const char *what)
{
    level2(what);
}

static void *thread_main(void *arg)
{
    (void)arg;
    level1("thread");
    return NULL;
}

static void write_truth(const char *file)
{
    FILE *f = fopen(file, "w");
    if (!f) { perror(file); exit(1); }
    fprintf(f, "{");
    for (int i = 0; i < ntruth; i++)
        fprintf(f, "%s\"%s\": [%ld, %ld, %ld, %ld]", i ? ", " : "", truth[i].site,
                truth[i].alloc_objects, truth[i].alloc_bytes, truth[i].inuse_objects,
                truth[i].inuse_bytes);
    fprintf(f, "}\n");
    fclose(f);
}

static int run_exact(const char *file)
{
    level1("malloc");
    level1("calloc");
    level1("realloc");
    level1("aligned");
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, thread_main, NULL);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    write_truth(file);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Large sites for the default rate                                         */
/* ------------------------------------------------------------------------ */

/* big_churn: n blocks of `size` bytes, each freed at once (alloc_* only). */
NOINLINE void big_churn(int n, size_t size)
{
    truth_t *t = site("big_churn");
    for (int i = 0; i < n; i++) {
        void *p = malloc(size);
        got(t, p);
        gone(t, p);
        free(p);
    }
}

/* big_live: n blocks of `size` bytes kept live (never touched: cheap RSS). */
NOINLINE void big_live(int n, size_t size)
{
    truth_t *t = site("big_live");
    for (int i = 0; i < n; i++) {
        void *p = malloc(size);
        got(t, p);
        hold(p);
    }
}

/* small_churn: many small blocks, freed at once. */
NOINLINE void small_churn(int n)
{
    truth_t *t = site("small_churn");
    for (int i = 0; i < n; i++) {
        void *p = malloc(24);
        got(t, p);
        gone(t, p);
        free(p);
    }
}

static int run_large(const char *file)
{
    big_churn(100000, 16384);
    big_live(4000, 65536);
    small_churn(4000000);
    write_truth(file);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Dumps on demand and over time                                            */
/* ------------------------------------------------------------------------ */

static int has_profile(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    size_t sl = strlen(suffix);
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] != '.' && l > sl && strcmp(e->d_name + l - sl, suffix) == 0) found = 1;
    }
    closedir(d);
    return found;
}

static int run_signal(const char *dir)
{
    level1("malloc");
    raise(SIGUSR1);
    for (int i = 0; i < 200; i++) {          /* up to 10 s */
        if (has_profile(dir, ".signal.pb.gz")) {
            printf("signal profile seen\n");
            return 0;
        }
        usleep(50000);
    }
    printf("no signal profile after 10 s\n");
    return 1;
}

static int run_sleep(double secs)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        site_thread(1000);
        usleep(10000);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) * 1e-9 < secs);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "exact")) return run_exact(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "large")) return run_large(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "signal")) return run_signal(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "sleep")) return run_sleep(atof(argv[2]));
    fprintf(stderr, "usage: agent_sites exact|large FILE | signal DIR | sleep SECS\n");
    return 2;
}
