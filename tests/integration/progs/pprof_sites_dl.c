/* pprof_sites_dl.c - a library the program dlopens from a copy it then
 * deletes, so its mapping reads " (deleted)" in /proc/self/maps. */
#include "pprof_sites.h"

__attribute__((noinline)) void *pprof_dl_alloc(size_t n, sites_alloc_fn alloc)
{
    void *p = alloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}
