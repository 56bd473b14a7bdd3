/*
 * life_alloc.c - the agent in front of another allocator (jemalloc or
 * tcmalloc preloaded after it, or jemalloc linked into the program): the
 * blocks must come from that allocator, malloc_usable_size must be its
 * own, and the agent's counters, bytes included, must match what the
 * program did, measured with the allocator's own size function
 * (jemalloc's sallocx, tcmalloc's tc_malloc_size, glibc's
 * malloc_usable_size).
 *
 * usage: life_alloc glibc|jemalloc|tcmalloc
 * stdout: the same with and without the agent; checks of the counters go
 * to LIFE_TAP when the agent is loaded. Exit 0, 1 on a failed check.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>

#include "life_common.h"

#ifdef LIFE_LINKED_JEMALLOC
#include <jemalloc/jemalloc.h>
/* Referenced, so the program really needs libjemalloc (--as-needed). */
static size_t (*volatile linked_sallocx)(const void *, int) = sallocx;
#endif

/* This program makes failing calls on purpose. */
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="

static size_t (*own_size)(void *);
static size_t (*je_sallocx)(const void *, int);
static size_t je_size(void *p) { return je_sallocx(p, 0); }

/* same_object: a and b are defined in the same loaded object (dlsym on a
 * handle also searches the object's dependencies, libc among them). */
static int same_object(void *a, void *b)
{
    Dl_info ia, ib;
    return a && b && dladdr(a, &ia) && dladdr(b, &ib) && ia.dli_fbase == ib.dli_fbase;
}

static uint64_t m, f, ab, fb;   /* this phase's own tally (main thread) */

static void *got(void *p)
{
    if (p) {
        m++;
        ab += own_size(p);
    }
    return p;
}

static void put(void *p)
{
    if (p) {
        f++;
        fb += own_size(p);
    }
    free(p);
}

static void begin(heapwatch_counters_t *c)
{
    m = f = ab = fb = 0;
    *c = life_read();
}

static void expect(const char *what, const heapwatch_counters_t *c)
{
    if (life_agent()) life_expect(what, c, m, f, ab, fb);
}

#define THREADS 4
#define PER 5000
static void *tblocks[THREADS][PER];
static uint64_t tm[THREADS], tab[THREADS], tfb[THREADS];
static pthread_barrier_t bar;

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    pthread_barrier_wait(&bar);
    for (int i = 0; i < PER; i++) {
        tblocks[id][i] = malloc(1 + (size_t)(i * 97 + id) % 9000);
        tab[id] += own_size(tblocks[id][i]);
        tm[id]++;
    }
    pthread_barrier_wait(&bar);
    int victim = (id + 1) % THREADS;
    for (int i = 0; i < PER; i++) {
        tfb[id] += own_size(tblocks[victim][i]);
        free(tblocks[victim][i]);
    }
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *want = argc > 1 ? argv[1] : "glibc";
    void *h = NULL;
    if (!strcmp(want, "jemalloc")) {
        h = dlopen("libjemalloc.so.2", RTLD_NOLOAD | RTLD_LAZY);
        je_sallocx = h ? (size_t (*)(const void *, int))dlsym(h, "sallocx") : NULL;
        own_size = je_sallocx ? je_size : NULL;
    } else if (!strcmp(want, "tcmalloc")) {
        h = dlopen("libtcmalloc.so.4", RTLD_NOLOAD | RTLD_LAZY);
        if (!h) h = dlopen("libtcmalloc_minimal.so.4", RTLD_NOLOAD | RTLD_LAZY);
        own_size = h ? (size_t (*)(void *))dlsym(h, "tc_malloc_size") : NULL;
    } else {
        h = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
        own_size = h ? (size_t (*)(void *))dlsym(h, "malloc_usable_size") : NULL;
    }
    printf("life_alloc: %s loaded: %s\n", want, own_size ? "yes" : "no");
    if (!own_size) return 1;
    void *usable = dlsym(RTLD_DEFAULT, "malloc_usable_size");
    printf("malloc_usable_size is %s's own: %s\n", want,
           usable == dlsym(h, "malloc_usable_size") ? "yes" : "no");

    /* The blocks come from the allocator: it knows their size. */
    void *p = malloc(100);
    size_t mine = own_size(p), theirs = malloc_usable_size(p);
    int owned = mine >= 100 && mine == theirs;
    if (!strcmp(want, "tcmalloc")) {
        int (*ownership)(const void *) =
            (int (*)(const void *))dlsym(h, "MallocExtension_GetOwnership");
        owned = owned && ownership && ownership(p) == 1;     /* kOwned */
    } else if (!strcmp(want, "jemalloc")) {
        int (*ctl)(const char *, void *, size_t *, void *, size_t) =
            (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(h, "mallctl");
        unsigned arena = 0;
        size_t sz = sizeof arena;
        /* arenas.lookup: the arena of a pointer jemalloc owns, an error otherwise. */
        owned = owned && ctl && ctl("arenas.lookup", &arena, &sz, &p, sizeof p) == 0;
    } else {
        owned = owned && mine == 104;                         /* glibc's chunk rounding */
    }
    free(p);
    printf("malloc(100) is served by %s: %s\n", want, owned ? "yes" : "no");
    fflush(stdout);

    /* jemalloc has no pvalloc: the program's call would reach glibc's and
     * mix heaps (the agent builds its own on memalign, but the program
     * must behave the same without it). */
    int has_pvalloc = same_object(dlsym(h, "pvalloc"), dlsym(h, "malloc"));
    heapwatch_counters_t c;
    static void *b[200];
    begin(&c);
    int n = 0;
    for (int i = 0; i < 20; i++) {
        b[n++] = got(malloc((size_t)1 << (i % 18)));
        b[n++] = got(calloc((size_t)i + 1, 33));
        b[n++] = got(aligned_alloc(256, 512));
        b[n++] = got(memalign(64, 1000 + (size_t)i));
        void *x = NULL;
        if (posix_memalign(&x, 128, 77) == 0) b[n++] = got(x);
        b[n++] = got(valloc(100));
        if (has_pvalloc) b[n++] = got(pvalloc(5000));
        b[n++] = got(strdup("a string copied by libc"));
    }
    for (int i = 0; i < n; i++) put(b[i]);
    expect("every allocation function, sizes from the allocator's own function", &c);

    begin(&c);
    char *r = got(malloc(10));
    for (size_t size = 20; size < 2000000; size *= 3) {
        f++;
        fb += own_size(r);
        r = got(realloc(r, size));
    }
    void *fail = realloc(r, SIZE_MAX / 2);       /* fails: nothing counted */
    if (fail) return 1;
    void *huge = malloc(SIZE_MAX / 2);
    void *over = calloc(SIZE_MAX / 2, 3);
    if (huge || over) return 1;
    put(r);
    expect("realloc growth; failed realloc, malloc and calloc count nothing", &c);

    /* Threads: each frees its neighbour's blocks. */
    pthread_t t[THREADS];
    pthread_barrier_init(&bar, NULL, THREADS + 1);
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0) return 1;
    begin(&c);
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    for (int i = 0; i < THREADS; i++) {
        m += tm[i];
        f += tm[i];
        ab += tab[i];
        fb += tfb[i];
    }
    expect("4 threads, each freeing another's blocks", &c);
    pthread_barrier_wait(&bar);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    printf("life_alloc: done\n");
    return life_failures ? 1 : 0;
}
