/*
 * life_ctorlib.c - liblife_ctorlib.so, linked into life_ctor: its
 * constructor runs before the program's (and, as a library the program
 * needs, the loader may run it before the agent's own constructor); its
 * destructor and an atexit handler it registers run during the loader's
 * finalisation. Each allocates and frees a known amount, checks the
 * agent's counters moved by exactly that much, and records the counters
 * afterwards (life_record), so the test can check that the exit summary,
 * written at the very end, includes them.
 */
#define _GNU_SOURCE
#include "life_ctor.h"

#define EXPORT __attribute__((visibility("default")))

static void *kept[LIB_CTOR_MALLOCS];

static void lib_atexit(void)
{
    heapwatch_counters_t c = life_read();
    void *p[LIB_ATEXIT_MALLOCS];
    for (int i = 0; i < LIB_ATEXIT_MALLOCS; i++) p[i] = life_opaque(malloc(40));
    for (int i = 0; i < LIB_ATEXIT_MALLOCS; i++) free(p[i]);
    life_check("library atexit handler (run at the library's finalisation)", &c,
               LIB_ATEXIT_MALLOCS, LIB_ATEXIT_MALLOCS);
    life_record("lib_atexit", 0);
}

__attribute__((constructor)) static void lib_ctor(void)
{
    heapwatch_counters_t c = life_read();
    for (int i = 0; i < LIB_CTOR_MALLOCS; i++) kept[i] = life_opaque(malloc(24 + (size_t)i % 64));
    for (int i = 0; i < LIB_CTOR_MALLOCS / 2; i++) free(kept[i]);
    life_check("library constructor (maybe before the agent's own)", &c,
               LIB_CTOR_MALLOCS, LIB_CTOR_MALLOCS / 2);
    atexit(lib_atexit);
    life_record("lib_ctor", LIB_CTOR_MALLOCS / 2);
}

__attribute__((destructor)) static void lib_dtor(void)
{
    heapwatch_counters_t c = life_read();
    for (int i = LIB_CTOR_MALLOCS / 2; i < LIB_CTOR_MALLOCS; i++) free(kept[i]);
    for (int i = 0; i < LIB_DTOR_LEAK; i++) {
        (void)life_opaque(malloc(16));                 /* leaked on purpose */
    }
    life_check("library destructor (100000 allocations never freed)", &c,
               LIB_DTOR_LEAK, LIB_CTOR_MALLOCS / 2);
    life_record("lib_dtor", LIB_DTOR_LEAK - LIB_CTOR_MALLOCS / 2);
}

/* life_ctorlib_touch: gives the program a reason to link the library. */
EXPORT int life_ctorlib_touch(void) { return kept[LIB_CTOR_MALLOCS - 1] != NULL; }
