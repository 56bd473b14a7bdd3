/*
 * life_common.h - helpers shared by the lifecycle test programs (life_*.c).
 *
 * The programs count their own allocations and compare them with the
 * agent's exact counters, read through heapwatch_read_counters (looked up
 * with dlsym, so every program also runs without the agent).
 *
 * TAP lines ("ok - ..." / "not ok - ...") go to the file named by the
 * environment variable LIFE_TAP when it is set (appended, one write(2) per
 * line, so forked children and exec'ed images can add theirs), else to
 * stdout. Programs that must behave identically with and without the agent
 * keep their stdout for the behaviour only and put checks in LIFE_TAP.
 *
 * Everything here avoids malloc: lines are formatted into stack buffers
 * with vsnprintf (which does not allocate for the integer and string
 * conversions used here) and written with write(2).
 */
#ifndef LIFE_COMMON_H
#define LIFE_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"

/* life_opaque: p, hidden from the optimiser, which would otherwise remove
 * a malloc whose block is never used, or a malloc/free pair. */
static inline void *life_opaque(void *p)
{
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

typedef void (*life_read_fn)(heapwatch_counters_t *);

/* life_agent: the agent's counter reader, or NULL without the agent. */
static inline life_read_fn life_agent(void)
{
    return (life_read_fn)dlsym(RTLD_DEFAULT, "heapwatch_read_counters");
}

/* life_read: counters now (all zero without the agent). */
static inline heapwatch_counters_t life_read(void)
{
    heapwatch_counters_t c;
    memset(&c, 0, sizeof c);
    life_read_fn rd = life_agent();
    if (rd) rd(&c);
    return c;
}

/* life_require_agent: exits 77 (skip) when the agent is not loaded. */
static inline life_read_fn life_require_agent(const char *prog)
{
    life_read_fn rd = life_agent();
    if (!rd) {
        char line[256];
        int n = snprintf(line, sizeof line, "# %s: heapwatch agent not loaded\n", prog);
        if (write(1, line, (size_t)n) < 0) _exit(77);
        exit(77);
    }
    return rd;
}

/* life_write_all: write(2) retrying on EINTR and short writes. */
static inline void life_write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

/* life_tap_fd: the descriptor TAP lines go to (LIFE_TAP opened once in
 * append mode, else stdout). */
static inline int life_tap_fd(void)
{
    static int fd = -2;
    if (fd == -2) {
        const char *path = getenv("LIFE_TAP");
        fd = path && *path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : 1;
        if (fd < 0) fd = 1;
    }
    return fd;
}

static int life_failures;

/* life_tap: one TAP line; counts failures. @return ok. */
__attribute__((format(printf, 2, 3)))
static inline int life_tap(int ok, const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "%s - ", ok ? "ok" : "not ok");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    life_write_all(life_tap_fd(), line, (size_t)n);
    if (!ok) life_failures++;
    return ok;
}

/* life_expect: the counters moved from *before by exactly the given
 * numbers of mallocs and frees (bytes are checked too when given as
 * something other than UINT64_MAX). @return ok. */
static inline int life_expect(const char *what, const heapwatch_counters_t *before,
                              uint64_t mallocs, uint64_t frees,
                              uint64_t alloc_bytes, uint64_t free_bytes)
{
    heapwatch_counters_t now = life_read();
    uint64_t m = now.mallocs - before->mallocs, f = now.frees - before->frees;
    uint64_t ab = now.alloc_bytes - before->alloc_bytes;
    uint64_t fb = now.free_bytes - before->free_bytes;
    int ok = m == mallocs && f == frees &&
             (alloc_bytes == UINT64_MAX || ab == alloc_bytes) &&
             (free_bytes == UINT64_MAX || fb == free_bytes);
    return life_tap(ok, "%s: mallocs %llu/%llu frees %llu/%llu alloc_bytes %llu/%llu free_bytes %llu/%llu",
                    what, (unsigned long long)m, (unsigned long long)mallocs,
                    (unsigned long long)f, (unsigned long long)frees,
                    (unsigned long long)ab,
                    (unsigned long long)(alloc_bytes == UINT64_MAX ? ab : alloc_bytes),
                    (unsigned long long)fb,
                    (unsigned long long)(free_bytes == UINT64_MAX ? fb : free_bytes));
}

/* --- code ranges: where a signal handler may allocate ------------------ */

/* The executable segments of the agent (and of the program itself when
 * asked): a handler that finds the interrupted instruction there knows the
 * thread is not inside libc's malloc, which is not reentrant. */
#define LIFE_MAX_RANGES 16
static struct { uintptr_t lo, hi; } life_ranges[LIFE_MAX_RANGES];
static int life_nranges;

static int life_add_ranges(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    int *program = (int *)data;   /* the first object is the program */
    int mine = *program || strstr(info->dlpi_name, "libheapwatch") != NULL;
    *program = 0;
    if (!mine) return 0;
    for (int i = 0; i < info->dlpi_phnum && life_nranges < LIFE_MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        life_ranges[life_nranges].lo = info->dlpi_addr + ph->p_vaddr;
        life_ranges[life_nranges].hi = life_ranges[life_nranges].lo + ph->p_memsz;
        life_nranges++;
    }
    return 0;
}

/* life_find_code: records the agent's code, and the program's if
 * with_program. @return the number of ranges found. */
static inline int life_find_code(int with_program)
{
    dl_iterate_phdr(life_add_ranges, &with_program);
    return life_nranges;
}

/* life_in_code: pc is in a range life_find_code recorded. */
static inline int life_in_code(uintptr_t pc)
{
    for (int i = 0; i < life_nranges; i++)
        if (pc >= life_ranges[i].lo && pc < life_ranges[i].hi) return 1;
    return 0;
}

#endif /* LIFE_COMMON_H */
