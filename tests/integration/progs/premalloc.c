/*
 * premalloc.c - a malloc of its own (glibc's, through its __libc_ names),
 * preloaded before the agent: the program's calls reach it first, so the
 * agent must step aside (one stderr line, no output), as it does for an
 * allocator linked into the executable.
 */
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

void *malloc(size_t n) { return __libc_malloc(n); }
void free(void *p) { __libc_free(p); }
void *calloc(size_t n, size_t s) { return __libc_calloc(n, s); }
void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
