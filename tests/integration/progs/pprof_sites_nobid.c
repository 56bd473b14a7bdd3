/* pprof_sites_nobid.c - a shared library linked with --build-id=none. */
#include "pprof_sites.h"

__attribute__((noinline)) void *pprof_nobid_alloc(size_t n, sites_alloc_fn alloc)
{
    void *p = alloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}
