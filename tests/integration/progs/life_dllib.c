/*
 * life_dllib.c - the shared library life_dlopen loads, unloads and loads
 * again (built as liblife_dl.so). Its constructor allocates LIFE_DL_CTOR
 * blocks that its destructor frees; its functions allocate and free on
 * behalf of the program, so blocks cross the library boundary both ways.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define LIFE_DL_CTOR 1000

#define EXPORT __attribute__((visibility("default")))

static void *ctor_blocks[LIFE_DL_CTOR];
static int generation;          /* 1 after each load: statics start afresh */
static int loads;               /* constructor runs seen by this image */

__attribute__((constructor)) static void dl_ctor(void)
{
    loads++;
    generation++;
    for (int i = 0; i < LIFE_DL_CTOR; i++) ctor_blocks[i] = malloc(32 + (size_t)i % 100);
}

__attribute__((destructor)) static void dl_dtor(void)
{
    for (int i = 0; i < LIFE_DL_CTOR; i++) free(ctor_blocks[i]);
}

/* life_dl_generation: 1 in a freshly loaded image (the statics were reset). */
EXPORT int life_dl_generation(void) { return generation + 100 * (loads - 1); }

/* life_dl_ctor_count: how many blocks the constructor keeps. */
EXPORT int life_dl_ctor_count(void) { return LIFE_DL_CTOR; }

/* life_dl_alloc: n blocks made inside the library, by every allocation
 * function in turn; their usable bytes are added to *usable. */
EXPORT void life_dl_alloc(void **out, int n, unsigned long long *usable)
{
    for (int i = 0; i < n; i++) {
        size_t size = 8 + (size_t)(i * 37) % 3000;
        void *p = NULL;
        switch (i % 5) {
        case 0: p = malloc(size); break;
        case 1: p = calloc(1, size); break;
        case 2: p = realloc(NULL, size); break;
        case 3: if (posix_memalign(&p, 64, size)) p = NULL; break;
        case 4: p = strdup("a string duplicated inside the loaded library"); break;
        }
        out[i] = p;
        if (p) *usable += malloc_usable_size(p);
    }
}

/* life_dl_free: frees n blocks the program made; their usable bytes are
 * added to *usable. */
EXPORT void life_dl_free(void **blocks, int n, unsigned long long *usable)
{
    for (int i = 0; i < n; i++) {
        if (blocks[i]) *usable += malloc_usable_size(blocks[i]);
        free(blocks[i]);
        blocks[i] = NULL;
    }
}

/* life_dl_grow: reallocs n blocks the program made (one free and one
 * allocation each, README's rule); the bytes freed and allocated are added. */
EXPORT void life_dl_grow(void **blocks, int n, unsigned long long *freed,
                         unsigned long long *allocated)
{
    for (int i = 0; i < n; i++) {
        *freed += malloc_usable_size(blocks[i]);
        void *q = realloc(blocks[i], 5000 + (size_t)i);
        if (!q) abort();
        blocks[i] = q;
        *allocated += malloc_usable_size(q);
    }
}
