/*
 * interpose_only.c - the thinnest LD_PRELOAD allocator interposer: malloc,
 * free, calloc and realloc forwarded to the next definitions, nothing
 * counted. tests/bench/compare.py runs it as its "interposer only" column:
 * what any agent that interposes the allocation functions pays before it
 * does anything, the floor under heapwatch's default-rate ratios.
 *
 * The real functions are resolved with dlsym(RTLD_NEXT) in a constructor;
 * dlsym itself may call calloc before that returns, so a calloc made
 * while resolving is served from a small static buffer (zeroed: .bss),
 * and free ignores pointers into it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>

static void *(*real_malloc)(size_t);
static void (*real_free)(void *);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);

static unsigned char boot[4096] __attribute__((aligned(16)));
static size_t boot_used;

static int in_boot(const void *p)
{
    return (uintptr_t)p - (uintptr_t)boot < sizeof boot;
}

__attribute__((constructor)) static void resolve(void)
{
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_free = dlsym(RTLD_NEXT, "free");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
}

void *malloc(size_t n)
{
    if (!real_malloc) resolve();
    return real_malloc(n);
}

void free(void *p)
{
    if (in_boot(p)) return;
    if (!real_free) resolve();
    real_free(p);
}

void *calloc(size_t n, size_t size)
{
    if (!real_calloc) {
        /* dlsym's own calloc, while calloc is being resolved */
        if (size && n > (sizeof boot - boot_used) / size) return NULL;
        size_t bytes = (n * size + 15) & ~(size_t)15;
        if (bytes > sizeof boot - boot_used) return NULL;
        void *p = boot + boot_used;
        boot_used += bytes;
        return p;
    }
    return real_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    if (!real_realloc) resolve();
    return real_realloc(p, n);
}
