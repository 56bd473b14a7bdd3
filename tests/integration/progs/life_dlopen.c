/*
 * life_dlopen.c - a dlopen'ed library that allocates: blocks made in the
 * library are freed by the program and the other way round, the library is
 * closed and loaded again (its constructor and destructor allocate and
 * free), and a block made by the library outlives its dlclose. Every phase
 * that nothing else can disturb is checked exactly against the agent's
 * counters; dlopen and dlclose themselves allocate (the loader's own
 * bookkeeping), so those are checked as lower bounds.
 *
 * usage: life_dlopen PATH/liblife_dl.so     (exit 77 without the agent)
 */
#define _GNU_SOURCE
#include <malloc.h>

#include "life_common.h"

#define N 4000
typedef void (*alloc_fn)(void **, int, unsigned long long *);
typedef void (*grow_fn)(void **, int, unsigned long long *, unsigned long long *);

static void *blocks[N];

static void *sym(void *h, const char *name)
{
    void *s = dlsym(h, name);
    if (!s) {
        life_tap(0, "dlsym %s: %s", name, dlerror());
        exit(1);
    }
    return s;
}

static void cycle(const char *path, int round, void **survivor)
{
    heapwatch_counters_t before = life_read();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        life_tap(0, "dlopen %s: %s", path, dlerror());
        exit(1);
    }
    heapwatch_counters_t loaded = life_read();
    int (*ctor_count)(void) = (int (*)(void))sym(h, "life_dl_ctor_count");
    int (*generation)(void) = (int (*)(void))sym(h, "life_dl_generation");
    alloc_fn lib_alloc = (alloc_fn)sym(h, "life_dl_alloc");
    alloc_fn lib_free = (alloc_fn)sym(h, "life_dl_free");
    grow_fn lib_grow = (grow_fn)sym(h, "life_dl_grow");
    uint64_t m = loaded.mallocs - before.mallocs;
    life_tap(m >= (uint64_t)ctor_count(),
             "round %d: dlopen counts the constructor's %d allocations (dlopen made %llu)",
             round, ctor_count(), (unsigned long long)m);
    life_tap(generation() == 1, "round %d: the library was loaded afresh (generation %d)",
             round, generation());

    /* malloc in the library, free in the program. */
    unsigned long long ab = 0, fb = 0;
    heapwatch_counters_t c = life_read();
    lib_alloc(blocks, N, &ab);
    for (int i = 0; i < N; i++) {
        fb += malloc_usable_size(blocks[i]);
        free(blocks[i]);
    }
    char what[128];
    snprintf(what, sizeof what, "round %d: library allocates, program frees", round);
    life_expect(what, &c, N, N, ab, fb);

    /* malloc in the program, realloc and free in the library. */
    ab = fb = 0;
    c = life_read();
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(16 + (size_t)i % 500);
        ab += malloc_usable_size(blocks[i]);
    }
    lib_grow(blocks, N / 2, &fb, &ab);
    lib_free(blocks, N, &fb);
    snprintf(what, sizeof what, "round %d: program allocates, library reallocs and frees", round);
    life_expect(what, &c, N + N / 2, N + N / 2, ab, fb);

    /* One block made by the library outlives it. */
    ab = 0;
    c = life_read();
    lib_alloc(survivor, 1, &ab);
    snprintf(what, sizeof what, "round %d: a block that will outlive dlclose", round);
    life_expect(what, &c, 1, 0, ab, 0);

    c = life_read();
    if (dlclose(h) != 0) {
        life_tap(0, "dlclose: %s", dlerror());
        exit(1);
    }
    heapwatch_counters_t closed = life_read();
    life_tap(closed.frees - c.frees >= 1000,
             "round %d: dlclose counts the destructor's frees (%llu)", round,
             (unsigned long long)(closed.frees - c.frees));
    life_tap(dlopen(path, RTLD_NOW | RTLD_NOLOAD) == NULL,
             "round %d: the library is really unloaded", round);
}

int main(int argc, char **argv)
{
    life_require_agent("life_dlopen");
    if (argc != 2) {
        fprintf(stderr, "usage: life_dlopen LIBRARY\n");
        return 2;
    }
    static void *survivors[3];
    for (int round = 0; round < 3; round++) cycle(argv[1], round, &survivors[round]);

    heapwatch_counters_t c = life_read();
    unsigned long long fb = 0;
    for (int i = 0; i < 3; i++) {
        fb += malloc_usable_size(survivors[i]);
        free(survivors[i]);
    }
    life_expect("blocks of an unloaded library freed by the program", &c, 0, 3, 0, fb);

    /* RTLD_DEEPBIND: the library binds malloc to libc's own, past the
     * agent. Nothing may break; what is counted is reported, not asserted. */
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (h) {
        alloc_fn lib_alloc = (alloc_fn)sym(h, "life_dl_alloc");
        unsigned long long ab = 0;
        c = life_read();
        lib_alloc(blocks, 100, &ab);
        for (int i = 0; i < 100; i++) free(blocks[i]);
        heapwatch_counters_t d = life_read();
        char note[200];
        int n = snprintf(note, sizeof note,
                         "# note: RTLD_DEEPBIND library: its 100 allocations counted %llu, "
                         "the program's 100 frees of them counted %llu\n",
                         (unsigned long long)(d.mallocs - c.mallocs),
                         (unsigned long long)(d.frees - c.frees));
        life_write_all(life_tap_fd(), note, (size_t)n);
        life_tap(dlclose(h) == 0, "RTLD_DEEPBIND library loaded, used and closed");
    }
    return life_failures ? 1 : 0;
}
