/* pprof_sites_lib.c - a shared library with a known allocation site. */
#include "pprof_sites.h"

__attribute__((noinline)) void *pprof_lib_alloc(size_t n, sites_alloc_fn alloc)
{
    void *p = alloc(n);
    __asm__ volatile("" ::: "memory");   /* keep the call a call, not a jump */
    return p;
}
