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

#include <stdbool.h>
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

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_BASE_H */
