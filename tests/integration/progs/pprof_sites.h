/*
 * pprof_sites.h - shared between the pprof_sites test program and the
 * objects it is linked with (a C++ file, shared libraries): the recording
 * allocator every allocation site calls.
 */
#ifndef HEAPWATCH_PPROF_SITES_H
#define HEAPWATCH_PPROF_SITES_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* sites_alloc: malloc(n) that records the caller's stack (the leaf frame
 * is the function that called sites_alloc). */
void *sites_alloc(size_t n);
/* sites_free: free(p) that moves p's bytes out of its stack's in-use sum. */
void sites_free(void *p);

typedef void *(*sites_alloc_fn)(size_t n);

/* The allocation sites outside pprof_sites.c. */
void *pprof_lib_alloc(size_t n, sites_alloc_fn alloc);    /* libpprof_sites_lib.so */
void *pprof_nobid_alloc(size_t n, sites_alloc_fn alloc);  /* libpprof_sites_nobid.so */
void *pprof_dl_alloc(size_t n, sites_alloc_fn alloc);     /* libpprof_sites_dl.so */
void *sites_cxx_alloc(size_t n);                          /* pprof_sites_cxx.cc */
void *site_global_c(size_t n);

#ifdef __cplusplus
}
#endif

#endif
