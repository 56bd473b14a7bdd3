/*
 * base.h - what every file of agent/ shares: symbol visibility, the TLS
 * model, branch hints, clocks, and AGENT_ASSERT (agent/, private).
 *
 * Every internal header of agent/ includes this one and declares its names
 * inside `#pragma GCC visibility push(hidden)`: internal to
 * libheapwatch.so, so the compiler reaches them without the GOT. Only the
 * functions marked AGENT_EXPORT (agent.h's) leave the library.
 *
 * Conventions of agent/ (README, "Style"):
 *   - a function that can fail returns int: 0, or a negative errno value
 *     (-ENOMEM, -EBUSY, ...), never -1 with errno (except a hook that
 *     stands in for a system call, such as pprof's open hook in fds.c,
 *     which keeps the call's convention); a function that answers
 *     a question or says whether it did something returns bool (true: yes,
 *     done). Module error enums (pprof_err_t, alert_err_t, timeline_err_t)
 *     stay at the boundary of their module, with their _strerror.
 *   - AGENT_ASSERT(cond) states an invariant the code relies on. In the
 *     debug agent (AGENT_DEBUG=1: build/debug/libheapwatch.so, which the
 *     integration tests run, and the unit tests) a false one prints the
 *     file, line and condition to stderr (and, for the test suite, to the
 *     file HEAPWATCH_ASSERT_LOG names, if set) and aborts; in the release
 *     agent it compiles to nothing (its argument is not evaluated).
 */
#ifndef HEAPWATCH_AGENT_BASE_H
#define HEAPWATCH_AGENT_BASE_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#pragma GCC visibility push(hidden)

/* AGENT_EXPORT: the only symbols the shared library exports (-fvisibility=hidden). */
#define AGENT_EXPORT __attribute__((visibility("default")))
#define AGENT_TLS __thread __attribute__((tls_model("initial-exec")))
#define AGENT_LIKELY(x) __builtin_expect(!!(x), 1)
#define AGENT_UNLIKELY(x) __builtin_expect(!!(x), 0)

#ifndef AGENT_DEBUG
#if defined(HEAPWATCH_TEST)
#define AGENT_DEBUG 1
#else
#define AGENT_DEBUG 0
#endif
#endif

/* agent_assert_fail: one line naming the broken invariant, then abort().
 * Writes with write(2) only: it may run inside malloc. (lock.c) */
_Noreturn void agent_assert_fail(const char *file, int line, const char *cond);

#if AGENT_DEBUG
#define AGENT_ASSERT(cond) \
    ((cond) ? (void)0 : agent_assert_fail(__FILE__, __LINE__, #cond))
#else
#define AGENT_ASSERT(cond) ((void)sizeof(cond))
#endif

/* agent_clock_ns: clk (CLOCK_MONOTONIC, CLOCK_REALTIME, ...) in ns. */
static inline uint64_t agent_clock_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* agent_mono_ns: CLOCK_MONOTONIC in ns. */
static inline uint64_t agent_mono_ns(void) { return agent_clock_ns(CLOCK_MONOTONIC); }

/* agent_single_stepped: the x86 trap flag is set: the program is stepping
 * through this code one instruction at a time, a SIGTRAP after each (a
 * self-debugging program; tests/integration/progs/life_step). The kernel
 * cannot hold such a SIGTRAP back: raised while blocked, it kills the
 * process. So a stretch that blocks signals (agent_signals_block) is put
 * off while this is true; the work waits for a later allocation.
 * (pushfq writes below rsp: the asm steps over the red zone first.) */
static inline bool agent_single_stepped(void)
{
#if defined(__x86_64__)
    uint64_t flags;
    __asm__ volatile("lea -128(%%rsp), %%rsp\n\tpushfq\n\tpopq %0\n\tlea 128(%%rsp), %%rsp"
                     : "=r"(flags) : : "memory");
    return (flags & 0x100) != 0;
#else
    return false;
#endif
}

/* agent_signals_block: blocks every signal a thread can hold back, around
 * a stretch in which a handler of the program must not run (it would find
 * a lock of ours held by its own thread, and its allocations would pass
 * uncounted); *old receives the mask to restore with pthread_sigmask. The
 * signals an instruction raises on itself (SIGTRAP, SIGSEGV, SIGBUS,
 * SIGILL, SIGFPE, SIGSYS) stay open: blocked, the kernel delivers them by
 * killing the process. */
static inline void agent_signals_block(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    static const int synchronous[] = { SIGTRAP, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS };
    for (size_t i = 0; i < sizeof synchronous / sizeof synchronous[0]; i++) sigdelset(&all, synchronous[i]);
    pthread_sigmask(SIG_SETMASK, &all, old);
}

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_BASE_H */
