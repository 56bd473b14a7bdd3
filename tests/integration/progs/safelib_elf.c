/*
 * safelib_elf.c - the shared library safe_elf dlopens (built as
 * libsafe_elf.so, copied into the test's scratch directory). Its one
 * function allocates blocks and keeps them, so every heap profile and every
 * /debug/pprof/symbol request names frames in this file while the test
 * truncates and rewrites it. The many padding functions give it a symbol
 * table the agent has to read (a few hundred entries).
 */
#include <stdlib.h>

#define EXPORT __attribute__((visibility("default")))

#define PAD(n) EXPORT int safelib_pad_##n(int x) { return x * (n) + 1; }
#define PAD10(n) PAD(n##0) PAD(n##1) PAD(n##2) PAD(n##3) PAD(n##4) \
                 PAD(n##5) PAD(n##6) PAD(n##7) PAD(n##8) PAD(n##9)
PAD10(1) PAD10(2) PAD10(3) PAD10(4) PAD10(5) PAD10(6) PAD10(7) PAD10(8) PAD10(9)

/* safelib_keep: n blocks of 100..1099 bytes into out[] (kept live). */
EXPORT __attribute__((noinline)) void safelib_keep(void **out, int n)
{
    for (int i = 0; i < n; i++) {
        out[i] = malloc(100 + (size_t)(i % 1000));
        __asm__ volatile("" : : "r"(out[i]) : "memory");
    }
}
