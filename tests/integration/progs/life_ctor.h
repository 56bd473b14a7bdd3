/*
 * life_ctor.h - shared by life_ctor.cc and life_ctorlib.c: the amounts
 * each hook allocates, and the record each hook appends after its work.
 *
 * LIFE_RECORD names a file; each hook appends one line
 *     <hook> <agent mallocs> <agent frees> <objects it left live>
 * (the agent's counters as read right after the hook's own work), so the
 * test can compare the exit summary with the last thing the program did.
 */
#ifndef LIFE_CTOR_H
#define LIFE_CTOR_H

#include "life_common.h"

#define LIB_CTOR_MALLOCS 1000
#define LIB_ATEXIT_MALLOCS 300
#define LIB_DTOR_LEAK 100000
#define MAIN_CTOR_MALLOCS 2000
#define MAIN_DTOR_LEAK 3000
#define STATIC_OBJECTS 100
#define STATIC_DTOR_LEAK 4000
#define ATEXIT_MALLOCS 5000
#define ATEXIT_LEAK 700

#ifdef __cplusplus
extern "C" {
#endif
int life_ctorlib_touch(void);
#ifdef __cplusplus
}
#endif

/* life_check: exact deltas, checked only when the agent is loaded. */
static inline void life_check(const char *what, const heapwatch_counters_t *before,
                              uint64_t mallocs, uint64_t frees)
{
    if (life_agent()) life_expect(what, before, mallocs, frees, UINT64_MAX, UINT64_MAX);
}

/* life_record: appends "<hook> <mallocs> <frees> <live_left>" to LIFE_RECORD. */
static inline void life_record(const char *hook, long live_left)
{
    const char *path = getenv("LIFE_RECORD");
    if (!path || !*path) return;
    heapwatch_counters_t c = life_read();
    char line[200];
    int n = snprintf(line, sizeof line, "%s %llu %llu %ld\n", hook,
                     (unsigned long long)c.mallocs, (unsigned long long)c.frees, live_left);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    life_write_all(fd, line, (size_t)n);
    close(fd);
}

#endif /* LIFE_CTOR_H */
