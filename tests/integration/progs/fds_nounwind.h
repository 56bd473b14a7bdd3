/* fds_nounwind.h - see fds_nounwind.c. */
#ifndef FDS_NOUNWIND_H
#define FDS_NOUNWIND_H
#include <stddef.h>
void *fds_nounwind_alloc(int depth, size_t n);
#endif
