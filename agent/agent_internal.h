/*
 * agent_internal.h - private declarations of agent/: the narrow core API the
 * interposition shim calls, the recursion guard, per-thread state, and the
 * agent's own no-malloc output helpers.
 *
 * The shim (shim.c) knows nothing of tracking; the core (core.c) never calls
 * dlsym. Everything the core does that may allocate or block runs under the
 * recursion guard, and allocations made while the guard is held pass through
 * untracked.
 */
#ifndef HEAPWATCH_AGENT_INTERNAL_H
#define HEAPWATCH_AGENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/agent.h"

/* Everything declared below is internal to libheapwatch.so: hidden, so the
 * compiler reaches it without going through the GOT. */
#pragma GCC visibility push(hidden)

/* AGENT_EXPORT: the only symbols the shared library exports (-fvisibility=hidden). */
#define AGENT_EXPORT __attribute__((visibility("default")))
#define AGENT_TLS __thread __attribute__((tls_model("initial-exec")))
#define AGENT_LIKELY(x) __builtin_expect(!!(x), 1)
#define AGENT_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------------------------------ */
/* The real allocator (resolved by the shim)                                */
/* ------------------------------------------------------------------------ */

/* agent_real_usable_size: the next allocator's malloc_usable_size. */
extern size_t (*agent_real_usable_size)(void *);

/* agent_usable_is_glibc: the next allocator is glibc's (its malloc and its
 * malloc_usable_size both), so the usable size can be read inline. */
extern bool agent_usable_is_glibc;

/* agent_usable_size: the usable size of a live block. For glibc this is
 * its musable() inline: the chunk's size field (flags in the low 3 bits)
 * minus the header that precedes the user pointer, 16 bytes for an mmap'd
 * chunk (flag 2) and 8 otherwise (the next chunk's prev_size field is
 * usable while this one is in use). tests/integration/progs/agent_truth.c
 * checks it, byte for byte, against the real malloc_usable_size. */
static inline size_t agent_usable_size(void *ptr)
{
    if (AGENT_LIKELY(agent_usable_is_glibc)) {
        size_t head = ((const size_t *)ptr)[-1];
        return (head & ~(size_t)7) - 8 - ((head & 2) << 2);   /* 8 more if mmap'd */
    }
    return agent_real_usable_size(ptr);
}

/* ------------------------------------------------------------------------ */
/* Recursion guard                                                          */
/* ------------------------------------------------------------------------ */

struct agent_thread_s;

/* agent_tls_t: the agent's whole thread-local state, one TLS object so the
 * hot path computes one TLS address. */
typedef struct agent_tls_s {
    struct agent_thread_s *thread;  /* this thread's counter block, or NULL */
    int depth;                      /* agent code on this thread's stack */
} agent_tls_t;

extern AGENT_TLS agent_tls_t agent_tls;

/* While depth is above zero, the shim's calls pass straight through to the
 * real allocator, untracked. */
static inline void agent_enter(void) { agent_tls.depth++; }
static inline void agent_leave(void) { agent_tls.depth--; }
static inline bool agent_inside(void) { return agent_tls.depth > 0; }

/* ------------------------------------------------------------------------ */
/* Per-thread counters                                                      */
/* ------------------------------------------------------------------------ */

/*
 * agent_thread_t: one per thread that allocates, from the arena, never
 * freed: a thread that exits marks its block dead and a later thread reuses
 * it, counters and all, so the sum over every block is always exact with
 * no folding step. Counters are written only by the owning thread, with
 * plain increments (one `add` to memory), and read by anyone with relaxed
 * atomic loads: aligned 8-byte accesses cannot tear on the 64-bit targets
 * we build for, and a reader only needs some recent value. A relaxed
 * atomic read-modify-write would cost a locked instruction; a relaxed
 * load + store pair, two extra instructions on the hottest path.
 */
typedef struct agent_thread_s {
    uint64_t mallocs;           /* successful allocations */
    uint64_t frees;             /* frees of non-NULL pointers */
    uint64_t alloc_bytes;       /* usable bytes allocated */
    uint64_t free_bytes;        /* usable bytes freed */
    struct agent_thread_s *next;/* registry link (all blocks, live or dead) */
    int alive;                  /* owned by a running thread */
} agent_thread_t;

/* agent_thread_slow: registers the calling thread; NULL if impossible
 * (agent off, or inside the agent). */
agent_thread_t *agent_thread_slow(void);

/* ------------------------------------------------------------------------ */
/* Core API called by the shim                                              */
/* ------------------------------------------------------------------------ */

/* agent_enabled: tracking is on (set once at start; cleared on a fatal
 * error or in a setuid process). */
extern int agent_enabled;

/* agent_count_alloc / agent_count_free: the counting itself. */
static inline void agent_count_alloc(agent_thread_t *t, void *ptr)
{
    size_t usable = agent_usable_size(ptr);
    t->mallocs++;
    t->alloc_bytes += usable;
}

static inline void agent_count_free(agent_thread_t *t, void *ptr)
{
    size_t usable = agent_usable_size(ptr);
    t->frees++;
    t->free_bytes += usable;
}

/* agent_on_alloc_slow / agent_on_free_slow: the first call of a thread,
 * calls from inside the agent, a disabled agent, an allocator other than
 * glibc. Out of line, and called in tail position (alloc returns its
 * argument), so the fast paths need no stack frame. */
void *agent_on_alloc_slow(void *ptr);
void agent_on_free_slow(void *ptr);

/* agent_fast_thread: the block to count in on the fast path, or NULL when
 * the slow path must decide. */
static inline agent_thread_t *agent_fast_thread(void)
{
    agent_thread_t *t = agent_tls.thread;
    if (AGENT_UNLIKELY(!t || agent_tls.depth || !agent_usable_is_glibc)) return NULL;
    return t;
}

/* agent_on_alloc: ptr (non-NULL) was just returned by the real allocator.
 * @return ptr. */
static inline void *agent_on_alloc(void *ptr)
{
    agent_thread_t *t = agent_fast_thread();
    if (AGENT_UNLIKELY(!t)) return agent_on_alloc_slow(ptr);
    agent_count_alloc(t, ptr);
    return ptr;
}

/* agent_on_free: ptr (non-NULL) is about to be given to the real free. */
static inline void agent_on_free(void *ptr)
{
    agent_thread_t *t = agent_fast_thread();
    if (AGENT_UNLIKELY(!t)) {
        agent_on_free_slow(ptr);
        return;
    }
    agent_count_free(t, ptr);
}

/* agent_on_realloc_before: ptr (non-NULL) is about to be given to the real
 * realloc; counts it freed. @return a token for agent_on_realloc_after. */
static inline size_t agent_on_realloc_before(void *ptr)
{
    agent_thread_t *t = agent_tls.thread;
    if (AGENT_UNLIKELY(!t)) {
        if (!agent_enabled || agent_inside() || !(t = agent_thread_slow())) return SIZE_MAX;
    } else if (AGENT_UNLIKELY(agent_tls.depth)) {
        return SIZE_MAX;
    }
    size_t usable = agent_usable_size(ptr);
    t->frees++;
    t->free_bytes += usable;
    return usable;
}

/* agent_on_realloc_after: the real realloc(old, size) returned result. */
static inline void agent_on_realloc_after(size_t token, void *result, size_t size)
{
    if (token == SIZE_MAX) return;              /* the free was not counted */
    if (result) {
        agent_on_alloc(result);
    } else if (size != 0) {
        /* Failed: the old block is intact; take its free back. */
        agent_thread_t *t = agent_tls.thread;
        t->frees--;
        t->free_bytes -= token;
    }
}

/* agent_counters_read: sums every thread block (exact at the instant each
 * block is read). */
void agent_counters_read(heapwatch_counters_t *out);

/* agent_shim_init: resolves the real allocation functions now. */
void agent_shim_init(void);

/* agent_init: reads the configuration and starts tracking (idempotent). */
void agent_init(void);

/* agent_on_quick_exit: the process is leaving through _exit/_Exit, which
 * skips destructors: write what exit would have written. */
void agent_on_quick_exit(void);

/* ------------------------------------------------------------------------ */
/* Configuration (conf.c): the HEAPWATCH_* variables of SPEC.md, parsed once */
/* at start by pure, allocation-free functions. A bad value never stops the  */
/* program: one line names the variable and the accepted form, the default  */
/* is kept.                                                                  */
/* ------------------------------------------------------------------------ */


#define CONF_PATH_MAX 4096
#define CONF_HOST_MAX 256

typedef struct agent_conf_s {
    char out_dir[CONF_PATH_MAX];   /* HEAPWATCH_OUT, as given (made absolute by the agent) */
    uint64_t rate;                 /* HEAPWATCH_RATE: mean bytes between samples; 0 = none */
    uint64_t interval_ns;          /* HEAPWATCH_INTERVAL */
    uint64_t window_ns;            /* HEAPWATCH_WINDOW */
    uint64_t warn;                 /* HEAPWATCH_WARN: objects/s */
    uint64_t crit;                 /* HEAPWATCH_CRIT: objects/s */
    uint64_t sustain_ns;           /* HEAPWATCH_SUSTAIN */
    uint64_t grace_ns;             /* HEAPWATCH_GRACE */
    uint64_t profile_interval_ns;  /* HEAPWATCH_PROFILE_INTERVAL; 0 = off */
    int signal;                    /* HEAPWATCH_SIGNAL; 0 = off */
    char http_host[CONF_HOST_MAX]; /* HEAPWATCH_HTTP host; "" = off */
    uint16_t http_port;
} agent_conf_t;

/* Defaults (SPEC.md; SUSTAIN and GRACE are ours, see README). */
#define CONF_DEFAULT_OUT "heapwatch-out"
#define CONF_DEFAULT_RATE 524288u
#define CONF_DEFAULT_INTERVAL_NS 1000000000ull
#define CONF_DEFAULT_WINDOW_NS 5000000000ull
#define CONF_DEFAULT_WARN 500u
#define CONF_DEFAULT_CRIT 2000u
#define CONF_DEFAULT_SUSTAIN_NS 3000000000ull
#define CONF_DEFAULT_GRACE_NS 10000000000ull

/* agent_conf_defaults: fills *c with every default. */
void agent_conf_defaults(agent_conf_t *c);

/* agent_conf_parse_u64: a whole decimal number in [min, max], nothing else.
 * @return true on success. */
bool agent_conf_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* agent_conf_parse_seconds: seconds as a decimal number with an optional
 * fraction ("1", "0.25", "2.5"), at most 9 fraction digits, in
 * [min_ns, max_ns] once converted to nanoseconds. @return true on success. */
bool agent_conf_parse_seconds(const char *s, uint64_t min_ns, uint64_t max_ns, uint64_t *out_ns);

/* agent_conf_parse_signal: a signal by number ("10"), name ("USR1", "SIGUSR1",
 * case-insensitive) or real-time offset ("RTMIN+2", "SIGRTMIN+2"). Signals
 * the agent must not take (KILL, STOP, SEGV, BUS, FPE, ILL, ABRT, TRAP, SYS)
 * are refused. @return true on success. */
bool agent_conf_parse_signal(const char *s, int *out);

/* agent_conf_parse_hostport: "host:port" or "[v6]:port", port 1..65535, host
 * non-empty and shorter than CONF_HOST_MAX. @return true on success. */
bool agent_conf_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

/*
 * agent_conf_load: reads every variable through getenv_fn (secure_getenv in the
 * agent, a table in tests) into *c, starting from the defaults. Each bad
 * value is reported once through report(line) as a complete line such as
 *   heapwatch: HEAPWATCH_RATE="abc" is not valid: expected ...; using 524288
 * and the default is kept. @return the number of bad values.
 */
int agent_conf_load(agent_conf_t *c, const char *(*getenv_fn)(const char *),
              void (*report)(const char *line));

/* ------------------------------------------------------------------------ */
/* Output without malloc (out.c)                                            */
/* ------------------------------------------------------------------------ */

/* agent_buf_t: text built into caller-provided memory; always NUL-terminated;
 * overflow is sticky and truncates. */
typedef struct agent_buf_s {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
} agent_buf_t;

void agent_buf_init(agent_buf_t *b, char *mem, size_t cap);
void agent_buf_mem(agent_buf_t *b, const void *p, size_t n);
void agent_buf_str(agent_buf_t *b, const char *s);
void agent_buf_u64(agent_buf_t *b, uint64_t v);
void agent_buf_i64(agent_buf_t *b, int64_t v);
/* agent_buf_fixed: writes v / 10^decimals, e.g. (1234567, 3) -> "1234.567". */
void agent_buf_fixed(agent_buf_t *b, int64_t v, unsigned decimals);
/* agent_buf_json_str: s as a quoted JSON string (escapes ", \ and controls). */
void agent_buf_json_str(agent_buf_t *b, const char *s);

/* agent_write_all: writes everything, retrying on EINTR. @return 0 or -errno. */
int agent_write_all(int fd, const void *data, size_t len);
/* agent_log: one line to stderr, errno preserved. */
void agent_log(const char *line);
/* agent_mkdir_p: creates path and its parents. @return 0 or -errno. */
int agent_mkdir_p(const char *path);
/* agent_write_file_atomic: dir/name appears whole with data, or not at all.
 * @return 0 or -errno. */
int agent_write_file_atomic(const char *dir, const char *name, const void *data, size_t len);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_INTERNAL_H */
