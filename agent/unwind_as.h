/*
 * unwind_as.h - between unwind.c (the walk) and unwind_as.c (this process
 * as libunwind's address space) only: a capture's state, the fake regions
 * of a probe, checked reads, the unwind-table search (agent/, private;
 * the design is atop both files).
 */
#ifndef HEAPWATCH_AGENT_UNWIND_AS_H
#define HEAPWATCH_AGENT_UNWIND_AS_H

#include <libunwind.h>                   /* generic API: libunwind-x86_64 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

#define UNWIND_INFO_SEGS 4               /* unwind-info segments a walk remembers */
#define UNWIND_GOOD_PAGES 16             /* pages a walk has checked readable */

/* agent_unwind_walk_t: one capture's state, libunwind's as_arg for our
 * address space. */
typedef struct agent_unwind_walk_s {
    const unw_context_t *uc;             /* registers libunwind starts from (probe, slow step), or NULL */
    uintptr_t seg_lo[UNWIND_INFO_SEGS], seg_hi[UNWIND_INFO_SEGS]; /* unwind tables' segments */
    unsigned nsegs;
    uintptr_t good[UNWIND_GOOD_PAGES];   /* pages read through the kernel */
    unsigned ngood;
    pid_t pid;                           /* 0 until the first checked read */
    bool probe;                          /* a probe: stack reads are synthetic */
    bool trusted;                        /* every step so far by a recipe */
} agent_unwind_walk_t;

/* Probes (see "Recipes" atop unwind.c): the stack pointer and frame
 * pointer of a probe point into two fake regions that are never read; a
 * word "read" there is its own address plus UNWIND_FAKE_MARK, so the
 * values libunwind derives tell where it read them. */
#define UNWIND_FAKE_SP 0x100000000000ull
#define UNWIND_FAKE_BP 0x200000000000ull
#define UNWIND_FAKE_SPAN 0x40000000ull   /* +-1 GiB around each */
#define UNWIND_FAKE_MARK 0x4000000000000000ull

/* agent_unwind_in_fake: a lies in the fake region around base. */
static inline bool agent_unwind_in_fake(uint64_t a, uint64_t base)
{
    return a >= base - UNWIND_FAKE_SPAN && a < base + UNWIND_FAKE_SPAN;
}

/* agent_unwind_read_word: the word at a, or false when it cannot be read
 * (never a fault): unwind tables of the objects this walk found are read
 * directly, any other word directly only on a page this walk has already
 * read through the kernel, else through the kernel (unwind_as.c). In a
 * probe, a word of a fake region is made up. */
bool agent_unwind_read_word(agent_unwind_walk_t *w, uintptr_t a, uint64_t *val);

/* agent_unwind_find_proc_info: libunwind's find_proc_info accessor for our
 * address space (arg: the walk): the FDE of ip from the .eh_frame_hdr of
 * the loaded object that holds it, whose unwind tables the walk then reads
 * directly. @return 0, or -UNW_ENOINFO (no such object, table or FDE). */
int agent_unwind_find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi,
                                int need_unwind_info, void *arg);

/* agent_unwind_as_create: our address space, not yet set up (unwind_as.c,
 * "Start-up at the first sample"); NULL when libunwind has no memory.
 * Called once, under unwind_lock (unwind.c, as_ready). */
unw_addr_space_t agent_unwind_as_create(void);

/* agent_unwind_as_set_up: libunwind's global set-up, without its
 * validation pipe, and the caches of as. Allocates nothing. Called once,
 * under unwind_lock, at the first libunwind call the walk needs (unwind.c,
 * as_ready). @return false when libunwind refused. */
bool agent_unwind_as_set_up(unw_addr_space_t as);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_UNWIND_AS_H */
