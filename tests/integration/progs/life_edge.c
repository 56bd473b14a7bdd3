/*
 * life_edge.c - edge cases that must behave the same with and without the
 * agent. stdout (and the exit status) is compared by the script; with the
 * agent loaded, exact counter checks go to LIFE_TAP.
 *
 * usage: life_edge sizes      0-byte and impossible sizes, calloc overflow,
 *                             realloc to 0, odd alignments, errno
 *        life_edge rlimit     RLIMIT_AS just above the current use: allocate
 *                             until malloc fails; failures count nothing
 *        life_edge closefds DATA BREAK
 *                             closes stdout and stderr, opens DATA (which
 *                             gets descriptors 1 and 2), allocates, writes
 *                             its data there; if BREAK is not "-", replaces
 *                             that directory (the agent's output) by a
 *                             plain file first, so the agent cannot write
 *                             at exit; exits 5
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "life_common.h"

/* This program makes failing and overflowing calls on purpose. */
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#pragma GCC diagnostic ignored "-Wuse-after-free"

static int clobbered, successes;   /* successful calls that changed errno (it was 0) */

/* show: the outcome; errno for failures only (successes are tallied: glibc
 * leaves errno alone then, and the agent must too). */
static void show(const char *what, const void *p, int err)
{
    if (p) {
        successes++;
        clobbered += err != 0;
        printf("%-40s ptr\n", what);
    } else {
        printf("%-40s NULL errno=%s\n", what, err ? strerrorname_np(err) : "0");
    }
}

/* call: runs one allocation with errno cleared first, prints the outcome;
 * a block is freed (and counted) by the caller's tally. */
#define CALL(what, expr, m, f)                                   \
    do {                                                         \
        errno = 0;                                               \
        void *p_ = (expr);                                       \
        int e_ = errno;                                          \
        show(what, p_, e_);                                      \
        if (p_) { (m)++; free(p_); (f)++; }                      \
    } while (0)

static int do_sizes(void)
{
    uint64_t m = 0, f = 0;
    printf("life_edge sizes\n");
    fflush(stdout);
    heapwatch_counters_t before = life_read();
    CALL("malloc(0)", malloc(0), m, f);
    CALL("malloc(SIZE_MAX)", malloc(SIZE_MAX), m, f);
    CALL("malloc(PTRDIFF_MAX + 1)", malloc((size_t)PTRDIFF_MAX + 1), m, f);
    CALL("malloc(1 << 46)", malloc((size_t)1 << 46), m, f);
    CALL("calloc(0, 0)", calloc(0, 0), m, f);
    CALL("calloc(0, 16)", calloc(0, 16), m, f);
    CALL("calloc(SIZE_MAX / 2, 4) overflow", calloc(SIZE_MAX / 2, 4), m, f);
    CALL("calloc(1 << 33, 1 << 33) overflow", calloc((size_t)1 << 33, (size_t)1 << 33), m, f);
    CALL("realloc(NULL, 0)", realloc(NULL, 0), m, f);
    CALL("reallocarray(NULL, SIZE_MAX, 2)", reallocarray(NULL, SIZE_MAX, 2), m, f);
    size_t aligns[] = { 0, 1, 2, 3, 7, 24, 48, 100, 4096, (size_t)1 << 20, SIZE_MAX / 2 + 1 };
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "aligned_alloc(%zu, 64)", aligns[i]);
        CALL(what, aligned_alloc(aligns[i], 64), m, f);
        snprintf(what, sizeof what, "memalign(%zu, 10)", aligns[i]);
        CALL(what, memalign(aligns[i], 10), m, f);
        void *p = NULL;
        int r = posix_memalign(&p, aligns[i], 32);
        printf("posix_memalign(%-20zu, 32)          %s ret=%s\n", aligns[i], p ? "ptr" : "NULL",
               r ? strerrorname_np(r) : "0");
        if (r == 0) { m++; free(p); f++; }
    }
    CALL("valloc(0)", valloc(0), m, f);
    CALL("pvalloc(0)", pvalloc(0), m, f);
    CALL("valloc(SIZE_MAX)", valloc(SIZE_MAX), m, f);
    CALL("pvalloc(SIZE_MAX)", pvalloc(SIZE_MAX), m, f);

    /* realloc to 0 frees (glibc) and returns NULL; a failed realloc keeps
     * the block; realloc to the same size. */
    char *p = malloc(100);
    m++;
    strcpy(p, "kept");
    errno = 0;
    char *q = realloc(p, SIZE_MAX);
    printf("realloc(p, SIZE_MAX)                     %s errno=%s block intact=%s\n",
           q ? "ptr" : "NULL", errno ? strerrorname_np(errno) : "0", strcmp(p, "kept") ? "no" : "yes");
    q = realloc(p, 100);                  /* a success: one free, one allocation */
    f++, m++;
    errno = 0;
    char *r = realloc(q, 0);
    int e = errno;
    show("realloc(p, 0)", r, e);
    if (r) { m++; free(r); }
    f++;                                  /* q was freed either way */
    printf("malloc_usable_size(NULL)                 %zu\n", malloc_usable_size(NULL));
    free(NULL);
    fflush(stdout);
    if (life_agent()) {
        life_expect("0-byte, impossible and misaligned requests: only successes count",
                    &before, m, f, UINT64_MAX, UINT64_MAX);
        life_tap(clobbered == 0, "successful allocations leave errno alone (%d of %d changed it)",
                 clobbered, successes);
    }

    /* errno across a new thread's first allocations (the agent's slow path). */
    return 0;
}

static void *errno_thread(void *arg)
{
    (void)arg;
    errno = 1234;
    void *p = malloc(10);
    int e1 = errno;
    free(p);
    int e2 = errno;
    printf("errno across a new thread's first malloc and free: %d %d\n", e1, e2);
    return NULL;
}

static int do_errno(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, errno_thread, NULL) != 0) return 1;
    pthread_join(t, NULL);
    return 0;
}

static long vm_size_kb(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *v = strstr(buf, "VmSize:");
    return v ? atol(v + 7) : -1;
}

static int do_rlimit(void)
{
    printf("life_edge rlimit\n");
    fflush(stdout);
    static void *blocks[1 << 20];
    long vm = vm_size_kb();
    if (vm < 0) return 2;
    struct rlimit rl = { (rlim_t)(vm + 64 * 1024) * 1024, RLIM_INFINITY };
    if (setrlimit(RLIMIT_AS, &rl) != 0) return 3;
    heapwatch_counters_t before = life_read();
    uint64_t ok = 0, failed = 0, freed = 0;
    size_t n = 0;
    /* Big blocks first (mmap'd by glibc), then small ones (the heap). */
    for (size_t size = 1 << 20; size >= 256; size >>= 4) {
        for (int misses = 0; misses < 3 && n < sizeof blocks / sizeof blocks[0];) {
            void *p = malloc(size);
            if (p) {
                blocks[n++] = p;
                ok++;
            } else {
                failed++;
                misses++;
            }
        }
    }
    void *c = calloc(1 << 20, 64);        /* 64 MiB: must fail */
    if (c) { blocks[n++] = c; ok++; } else failed++;
    void *r = realloc(blocks[0], (size_t)256 << 20);   /* must fail, keep the block */
    if (r) { blocks[0] = r; ok++; freed++; } else failed++;
    heapwatch_counters_t mid = life_read();
    for (size_t i = 0; i < n; i++) free(blocks[i]);
    freed += n;
    printf("malloc failed under RLIMIT_AS: %s; calloc of 64 MiB: %s; realloc to 256 MiB: %s\n",
           failed >= 3 ? "yes" : "no", c ? "succeeded" : "failed", r ? "succeeded" : "failed");
    if (life_agent()) {
        life_tap(mid.mallocs - before.mallocs == ok,
                 "RLIMIT_AS: %llu successes counted %llu, %llu failures counted nothing",
                 (unsigned long long)ok, (unsigned long long)(mid.mallocs - before.mallocs),
                 (unsigned long long)failed);
        life_expect("RLIMIT_AS: every success and free counted, no failure", &before, ok, freed,
                    UINT64_MAX, UINT64_MAX);
    }
    rl.rlim_cur = RLIM_INFINITY;
    setrlimit(RLIMIT_AS, &rl);
    return 0;
}

static int do_closefds(const char *data, const char *brk)
{
    printf("life_edge closefds: closing stdout and stderr\n");
    fflush(stdout);
    fclose(stdout);
    fclose(stderr);                       /* descriptors 1 and 2 are free now */
    int fd1 = open(data, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fd2 = open(data, O_WRONLY | O_APPEND);
    if (fd1 != 1 || fd2 != 2) return 20;
    static void *keep[5000];
    for (int i = 0; i < 5000; i++) keep[i] = malloc(100 + (size_t)i);
    for (int i = 0; i < 5000; i += 2) free(keep[i]);
    if (strcmp(brk, "-") != 0) {
        /* The agent's output directory (empty: the agent writes at exit)
         * becomes a plain file. */
        if (rmdir(brk) != 0) return 21;
        int fd = open(brk, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) return 22;
        life_write_all(fd, "not a directory\n", 16);
        close(fd);
    }
    life_write_all(1, "the program's own data, line 1\n", 31);
    life_write_all(2, "the program's own data, line 2\n", 31);
    return 5;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "sizes")) {
        int r = do_sizes();
        return r ? r : do_errno();
    }
    if (!strcmp(mode, "rlimit")) return do_rlimit();
    if (!strcmp(mode, "closefds") && argc == 4) return do_closefds(argv[2], argv[3]);
    fprintf(stderr, "usage: life_edge sizes|rlimit|closefds DATA BREAK\n");
    return 2;
}
