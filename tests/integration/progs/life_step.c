/*
 * life_step.c - a signal handler that allocates at every instruction
 * boundary of the agent's allocation paths.
 *
 * life_signals fires timers at random moments and hopes one lands in a
 * bad window of the agent; this program leaves nothing to chance. It sets
 * the x86 trap flag before each allocation call, so the kernel raises
 * SIGTRAP after every single instruction the call executes. Whenever the
 * interrupted instruction is in the agent's own code, the SIGTRAP handler
 * frees an old block of its ring and mallocs a new one, so that a handler
 * allocation happens between every two instructions of every agent path
 * the calls take: counting, the live filter, the mmap'd-chunk paths,
 * realloc's before/after split, thread registration and, when sampling,
 * the sampling slow path. (In libc the handler does nothing: glibc's
 * malloc is not reentrant, and a program that allocates in a handler must
 * avoid that itself.)
 *
 * A counter update the compiler split into load and store, a lock the
 * handler's allocation would take again, a thread block not yet ready:
 * each shows here as a hang, a crash, or counters that are not exactly
 * what the program and its handler did. The program counts both
 * (malloc_usable_size for bytes) and checks the agent's counters after
 * each stepped call and at the end (TAP lines, see life_common.h).
 *
 * usage: life_step [ROUNDS]      stdout is the same with and without the
 *                                agent; exit 0. x86-64 only (elsewhere it
 *                                says so and exits 0).
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <ucontext.h>

#include "life_common.h"

#define RING 32

/* --- the stepping handler ---------------------------------------------- */

typedef struct {
    uint64_t mallocs, frees, alloc_bytes, free_bytes;
} tally_t;

/* Per thread: the handler runs on the thread it interrupts. */
static __thread struct {
    volatile int stepping;    /* keep the trap flag set */
    unsigned next;
    void *ring[RING];
    tally_t t;                /* the handler's own allocations */
    uint64_t traps, in_agent; /* instructions stepped, of them in the agent */
    uint64_t skip;            /* the handler lets this many agent instructions go by */
} st;

#if defined(__x86_64__)
#define TRAP_FLAG 0x100

static void on_trap(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    (void)si;
    int saved = errno;
    ucontext_t *uc = ucv;
    if (!st.stepping) {
        uc->uc_mcontext.gregs[REG_EFL] &= ~(greg_t)TRAP_FLAG;
        errno = saved;
        return;
    }
    st.traps++;
    if (life_in_code((uintptr_t)uc->uc_mcontext.gregs[REG_RIP]) && st.in_agent++ >= st.skip) {
        unsigned slot = st.next++ % RING;
        if (st.ring[slot] && st.next % 7 == 0) {
            /* Now and then a realloc: one free and one allocation. */
            size_t old = malloc_usable_size(st.ring[slot]);
            void *q = realloc(st.ring[slot], 16 + (st.next * 29) % 900);
            if (q) {
                st.t.frees++;
                st.t.free_bytes += old;
                st.t.mallocs++;
                st.t.alloc_bytes += malloc_usable_size(q);
                st.ring[slot] = q;
            }
            errno = saved;
            return;
        }
        if (st.ring[slot]) {
            st.t.frees++;
            st.t.free_bytes += malloc_usable_size(st.ring[slot]);
            free(st.ring[slot]);
        }
        /* Small blocks mostly, and now and then one glibc mmaps alone. */
        size_t size = st.next % 61 == 0 ? (size_t)1 << 20 : 16 + (st.next * 37) % 500;
        void *p = st.next % 5 == 0 ? calloc(1, size) : malloc(size);
        if (p) {
            st.t.mallocs++;
            st.t.alloc_bytes += malloc_usable_size(p);
        }
        st.ring[slot] = p;
    }
    errno = saved;
}

/* step_begin / step_end: every instruction between them traps. */
static inline __attribute__((always_inline)) void step_begin(void)
{
    st.stepping = 1;
    __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq" ::: "memory", "cc");
}
static inline __attribute__((always_inline)) void step_end(void)
{
    st.stepping = 0;   /* the next trap clears the flag */
    __asm__ volatile("nop" ::: "memory");
}
#endif

/* drain: frees the handler's ring; adds the handler's tally and these
 * frees to *t. Runs with no stepping, so the handler does nothing. */
static void drain(tally_t *t)
{
    t->mallocs += st.t.mallocs;
    t->frees += st.t.frees;
    t->alloc_bytes += st.t.alloc_bytes;
    t->free_bytes += st.t.free_bytes;
    memset(&st.t, 0, sizeof st.t);
    for (int i = 0; i < RING; i++) {
        if (!st.ring[i]) continue;
        t->frees++;
        t->free_bytes += malloc_usable_size(st.ring[i]);
        free(st.ring[i]);
        st.ring[i] = NULL;
    }
}

/* --- the stepped calls --------------------------------------------------- */

#if defined(__x86_64__)

/* One allocation function, stepped, and its own effect on the tally. */
static void step_alloc(const char *what, int kind, size_t size, tally_t *t)
{
    void *p = NULL;
    heapwatch_counters_t before = life_read();
    tally_t h0 = st.t;
    uint64_t traps0 = st.traps, agent0 = st.in_agent;
    step_begin();
    switch (kind) {
    case 0: p = malloc(size); break;
    case 1: p = calloc(1, size); break;
    case 2: if (posix_memalign(&p, 64, size) != 0) p = NULL; break;
    case 3: p = aligned_alloc(4096, size); break;
    case 4: p = memalign(256, size); break;
    case 5: p = valloc(size); break;
    default: p = reallocarray(NULL, 1, size); break;
    }
    step_end();
    p = life_opaque(p);
    tally_t mine = { 0, 0, 0, 0 };
    if (p) {
        mine.mallocs = 1;
        mine.alloc_bytes = malloc_usable_size(p);
    }
    /* The free is stepped too. */
    size_t usable = p ? malloc_usable_size(p) : 0;
    step_begin();
    free(p);
    step_end();
    if (p) {
        mine.frees = 1;
        mine.free_bytes = usable;
    }
    heapwatch_counters_t after = life_read();
    uint64_t hm = st.t.mallocs - h0.mallocs, hf = st.t.frees - h0.frees;
    uint64_t hab = st.t.alloc_bytes - h0.alloc_bytes, hfb = st.t.free_bytes - h0.free_bytes;
    if (life_agent())
        life_tap(after.mallocs - before.mallocs == mine.mallocs + hm &&
                     after.frees - before.frees == mine.frees + hf &&
                     after.alloc_bytes - before.alloc_bytes == mine.alloc_bytes + hab &&
                     after.free_bytes - before.free_bytes == mine.free_bytes + hfb,
                 "%s(%zu) and its free, stepped (%llu instructions, %llu in the agent, "
                 "each followed by a handler malloc+free): mallocs %llu/%llu frees %llu/%llu "
                 "alloc_bytes %llu/%llu free_bytes %llu/%llu",
                 what, size, (unsigned long long)(st.traps - traps0),
                 (unsigned long long)(st.in_agent - agent0),
                 (unsigned long long)(after.mallocs - before.mallocs),
                 (unsigned long long)(mine.mallocs + hm),
                 (unsigned long long)(after.frees - before.frees),
                 (unsigned long long)(mine.frees + hf),
                 (unsigned long long)(after.alloc_bytes - before.alloc_bytes),
                 (unsigned long long)(mine.alloc_bytes + hab),
                 (unsigned long long)(after.free_bytes - before.free_bytes),
                 (unsigned long long)(mine.free_bytes + hfb));
    t->mallocs += mine.mallocs;
    t->frees += mine.frees;
    t->alloc_bytes += mine.alloc_bytes;
    t->free_bytes += mine.free_bytes;
}

/* realloc from `from` to `to` bytes, stepped (in place, moved, to and
 * from mmap'd chunks), then the result freed unstepped. */
static void step_realloc(size_t from, size_t to, tally_t *t)
{
    void *p = life_opaque(malloc(from));
    if (!p) return;
    t->mallocs++;
    t->alloc_bytes += malloc_usable_size(p);
    size_t old_usable = malloc_usable_size(p);
    heapwatch_counters_t before = life_read();
    tally_t h0 = st.t;
    step_begin();
    void *q = realloc(p, to);
    step_end();
    q = life_opaque(q);
    heapwatch_counters_t after = life_read();
    uint64_t hm = st.t.mallocs - h0.mallocs, hf = st.t.frees - h0.frees;
    /* A successful realloc counts as the free of the old block and the
     * allocation of the new one. */
    if (life_agent())
        life_tap(q && after.mallocs - before.mallocs == 1 + hm &&
                     after.frees - before.frees == 1 + hf &&
                     after.alloc_bytes - before.alloc_bytes ==
                         malloc_usable_size(q) + (st.t.alloc_bytes - h0.alloc_bytes) &&
                     after.free_bytes - before.free_bytes ==
                         old_usable + (st.t.free_bytes - h0.free_bytes),
                 "realloc(%zu -> %zu), stepped: mallocs %llu/%llu frees %llu/%llu",
                 from, to, (unsigned long long)(after.mallocs - before.mallocs),
                 (unsigned long long)(1 + hm), (unsigned long long)(after.frees - before.frees),
                 (unsigned long long)(1 + hf));
    if (!q) return;
    t->frees++;
    t->free_bytes += old_usable;
    t->mallocs++;
    t->alloc_bytes += malloc_usable_size(q);
    t->frees++;
    t->free_bytes += malloc_usable_size(q);
    free(q);
}

static void step_calls(tally_t *t)
{
    static const struct { const char *name; int kind; size_t size; } calls[] = {
        { "malloc", 0, 24 },          { "malloc", 0, 1000 },
        { "malloc", 0, 40 << 20 },    { "malloc", 0, 0 },
        { "calloc", 1, 100 },         { "calloc", 1, 40 << 20 },
        { "posix_memalign", 2, 200 }, { "aligned_alloc", 3, 4096 },
        { "memalign", 4, 300 },       { "valloc", 5, 50 },
        { "reallocarray", 6, 70 },
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
        step_alloc(calls[i].name, calls[i].kind, calls[i].size, t);
    /* 40 MiB is above the most glibc's dynamic mmap threshold can grow to
     * (32 MiB), so these chunks are mmap'd alone whatever came before. */
    step_realloc(100, 120, t);            /* in place */
    step_realloc(100, 5000, t);           /* moved */
    step_realloc(64, 40 << 20, t);        /* to an mmap'd chunk */
    step_realloc(40 << 20, 64, t);        /* from one */
    /* free(NULL), stepped: counts nothing. */
    heapwatch_counters_t before = life_read();
    tally_t h0 = st.t;
    step_begin();
    free(NULL);
    step_end();
    heapwatch_counters_t after = life_read();
    if (life_agent())
        life_tap(after.frees - before.frees == st.t.frees - h0.frees,
                 "free(NULL), stepped: counts only the handler's frees");
}

/* Threads whose very first allocation is stepped: the agent registers
 * the thread around the handler's allocations. Thread k's handler lets its
 * first k agent instructions go by (the first would otherwise allocate and
 * register the thread itself), so that over k = 0..FIRST_SKIPS-1 handler
 * allocations land at every point of the registration. */
#define FIRST_SKIPS 64
static tally_t thread_tally;
static void *first_alloc_thread(void *arg)
{
    tally_t t = { 0, 0, 0, 0 };
    st.skip = (uint64_t)(uintptr_t)arg;
    heapwatch_counters_t before = life_read();
    step_begin();
    void *p = malloc(40);
    step_end();
    p = life_opaque(p);
    if (p) {
        t.mallocs++;
        t.alloc_bytes += malloc_usable_size(p);
        t.frees++;
        t.free_bytes += malloc_usable_size(p);
        free(p);
    }
    drain(&t);
    heapwatch_counters_t after = life_read();
    thread_tally.mallocs += after.mallocs - before.mallocs == t.mallocs;
    thread_tally.frees += after.frees - before.frees == t.frees;
    thread_tally.alloc_bytes += after.alloc_bytes - before.alloc_bytes == t.alloc_bytes;
    thread_tally.free_bytes += after.free_bytes - before.free_bytes == t.free_bytes;
    return NULL;
}
#endif

int main(int argc, char **argv)
{
#if !defined(__x86_64__)
    (void)argc;
    (void)argv;
    printf("life_step: x86-64 only\n");
    return 0;
#else
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    if (life_find_code(0) == 0 && life_agent()) {
        life_tap(0, "life_step: the agent's code was not found");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTRAP, &sa, NULL) != 0) return 2;
    free(life_opaque(malloc(1)));            /* the main thread is registered */

    tally_t t = { 0, 0, 0, 0 };
    heapwatch_counters_t start = life_read();
    for (int r = 0; r < rounds; r++) step_calls(&t);
    drain(&t);
    if (life_agent()) {
        life_expect("every stepped call and every handler allocation, main thread", &start,
                    t.mallocs, t.frees, t.alloc_bytes, t.free_bytes);
        life_tap(st.in_agent > 0, "the handler ran inside the agent (%llu of %llu instructions)",
                 (unsigned long long)st.in_agent, (unsigned long long)st.traps);
    }

    for (uintptr_t k = 0; k < FIRST_SKIPS; k++) {
        pthread_t th;
        if (pthread_create(&th, NULL, first_alloc_thread, (void *)k) != 0) return 2;
        pthread_join(th, NULL);
    }
    if (life_agent())
        life_tap(thread_tally.mallocs == FIRST_SKIPS && thread_tally.frees == FIRST_SKIPS &&
                     thread_tally.alloc_bytes == FIRST_SKIPS && thread_tally.free_bytes == FIRST_SKIPS,
                 "%d new threads, a handler allocating from the k-th agent instruction of "
                 "their first malloc on (k = 0..%d): exact mallocs in %llu, frees in %llu, "
                 "alloc_bytes in %llu, free_bytes in %llu",
                 FIRST_SKIPS, FIRST_SKIPS - 1, (unsigned long long)thread_tally.mallocs,
                 (unsigned long long)thread_tally.frees,
                 (unsigned long long)thread_tally.alloc_bytes,
                 (unsigned long long)thread_tally.free_bytes);

    printf("life_step: %d rounds stepped\n", rounds);
    return life_failures ? 1 : 0;
#endif
}
