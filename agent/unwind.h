/*
 * unwind.h - capture of call stacks: a walk of our own with libunwind
 * for the frames it cannot do alone (unwind.c and unwind_as.c; the design
 * is there) (agent/, private).
 */
#ifndef HEAPWATCH_AGENT_UNWIND_H
#define HEAPWATCH_AGENT_UNWIND_H

#include <stddef.h>
#include <stdint.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

/* AGENT_MAX_FRAMES: the frames a sampled allocation's stack keeps at most
 * (the size of the pcs array its capture fills). */
#define AGENT_MAX_FRAMES 64

/* agent_unwind_init: finds the agent's own code (its frames are dropped)
 * and libunwind's. libunwind is set up for this process at the first frame
 * the walk needs it for (unwind.c, as_ready); when it cannot be, one stderr
 * line, and every capture from then on is empty. Called once, at
 * start-up. */
void agent_unwind_init(void);

/* agent_unwind_calling: a call whose return address is ra is libunwind's
 * own, made inside a libunwind call of the agent on this thread (it holds
 * unwind_lock): shim.c's pipe2 then fails, so that libunwind's validation
 * pipe never lands in the program's table (unwind_as.c), and its
 * sigprocmask does nothing (unwind.c, "Signals"). A signal handler that
 * interrupted such a call is the program's code: its own calls pass. */
bool agent_unwind_calling(const void *ra);

/* agent_walk_memo_t: a thread's last walk, whose outer frames the next
 * capture on that thread replays where the stack still holds them
 * (unwind.c, "The last walk, replayed"). One per thread block, made on
 * its first sample: agent_walk_memo_new takes 4.6 KiB from the arena
 * (NULL when it has none). Used by one thread at a time. */
typedef struct agent_walk_memo_s agent_walk_memo_t;
agent_walk_memo_t *agent_walk_memo_new(void);

/* agent_stack_capture: unwinds the calling thread into pcs (at most max
 * frames), dropping the agent's own frames; memo (the thread's, or NULL)
 * holds its last walk. Never faults, opens no descriptor, waits for
 * another thread's libunwind call a bounded time (unwind.c). @return the
 * depth (0 before agent_unwind_init or without libunwind). */
size_t agent_stack_capture(uint64_t *pcs, size_t max, agent_walk_memo_t *memo);

/* agent_stack_capture_from: agent_stack_capture from the state of the
 * frame a call returns to, read at the callee's first instruction: ra the
 * return address, sp the address just above it, bp rbp (a callee has not
 * changed it yet). The agent's frames above that call are not walked at
 * all (sample.c's agent_sample_slow reads them so: three steps of a
 * rate-1 capture that were the agent's own); if ra is the agent's own
 * code, its frames are dropped as agent_stack_capture drops them. */
size_t agent_stack_capture_from(uint64_t ra, uint64_t sp, uint64_t bp, uint64_t *pcs, size_t max,
                                agent_walk_memo_t *memo);

#ifdef HEAPWATCH_TEST
/* agent_unwind_test_replayed: frames taken from a memo so far. */
uint64_t agent_unwind_test_replayed(void);
#endif

/* agent_unwind_code_unloaded: code may have been unmapped (dlclose): the
 * unwind recipes learnt so far are forgotten. Async-signal-safe (shim.c's
 * dlclose calls it). */
void agent_unwind_code_unloaded(void);

/* fork: agent_unwind_prefork tries unwind_lock (never waits for it; gives
 * up at deadline_ns: lock.c); the parent releases it if it was had; a
 * child forked without it never calls libunwind again (unwind.c). */
void agent_unwind_prefork(uint64_t deadline_ns);
void agent_unwind_postfork_parent(void);
void agent_unwind_postfork_child(void);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_UNWIND_H */
