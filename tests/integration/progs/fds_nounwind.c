/*
 * fds_nounwind.c - allocation helpers built WITHOUT unwind tables
 * (-fno-asynchronous-unwind-tables -fno-unwind-tables, see
 * tests/integration/safety_fds.mk): the stand-in for hand-written assembly
 * or JIT code on an allocation's stack. An unwinder that meets these frames
 * has no DWARF for them and must guess (frame chain) or stop.
 */
#include <stdlib.h>
#include <string.h>

#include "fds_nounwind.h"

/* Recursion and work after each call keep every level a real frame (no
 * tail calls), so the sampled stacks pass through `depth` frames of this
 * object. */
__attribute__((noinline)) void *fds_nounwind_alloc(int depth, size_t n)
{
    volatile char pad[32];
    pad[0] = (char)depth;
    void *p = depth > 0 ? fds_nounwind_alloc(depth - 1, n) : malloc(n);
    if (p) memset(p, pad[0] + 1, n < 64 ? n : 64);
    return p;
}
