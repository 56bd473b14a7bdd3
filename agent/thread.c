/*
 * thread.c - the thread registry and the slow paths of the hot path.
 *
 * Counters. Every thread that allocates owns an agent_thread_t from the
 * arena and bumps its own counters, each update one read-modify-write
 * instruction that a signal cannot split (agent_tally_add, thread.h) but
 * without a `lock` prefix: no other thread writes the block. Readers sum
 * all blocks. Blocks are never freed: when a thread exits (pthread key
 * destructor) its block is marked dead and the next new thread adopts it,
 * counters included, so the sum over blocks stays exact without any
 * folding step, and the registry is an append-only list that readers walk
 * without a lock (the registry lock only orders writers).
 *
 * The slow paths (agent_on_alloc_slow, agent_on_free_slow) take a thread's
 * first call (registration), calls from inside the agent (not counted,
 * except a signal handler's: agent_count_handler), a disabled agent and an
 * allocator other than glibc (usable size by call).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "agent/background.h"
#include "agent/core.h"
#include "agent/hot.h"
#include "agent/live.h"
#include "agent/lock.h"
#include "agent/sample.h"
#include "agent/stacks.h"
#include "agent/thread.h"
#include "map/map.h"

AGENT_TLS agent_tls_t agent_tls;

static pthread_key_t thread_key;
static bool thread_key_ok;
static agent_thread_t *registry;           /* append-only list head (atomic) */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned blocks_made;               /* up to AGENT_STACK_SHARED; under registry_lock */

/* ------------------------------------------------------------------------ */
/* Thread blocks                                                            */
/* ------------------------------------------------------------------------ */

/* adopt_dead_block: a block whose thread has exited, or NULL. */
static agent_thread_t *adopt_dead_block(void)
{
    agent_thread_t *found = NULL;
    agent_lock_ranked(&registry_lock, AGENT_RANK_REGISTRY);
    for (agent_thread_t *t = __atomic_load_n(&registry, __ATOMIC_ACQUIRE); t; t = t->next) {
        if (!__atomic_load_n(&t->alive, __ATOMIC_RELAXED)) {
            __atomic_store_n(&t->alive, 1, __ATOMIC_RELAXED);
            found = t;
            break;
        }
    }
    agent_unlock_ranked(&registry_lock, AGENT_RANK_REGISTRY);
    return found;
}

static agent_thread_t *new_block(void)
{
    agent_thread_t *t = map_arena_alloc(sizeof *t);
    if (!t) return NULL;
    t->alive = 1;
    agent_lock_ranked(&registry_lock, AGENT_RANK_REGISTRY);
    /* The first blocks own a share of every stack's totals: one thread at
     * a time owns a block, so no other thread writes that share. */
    t->share = blocks_made;
    if (blocks_made < AGENT_STACK_SHARED) blocks_made++;
    t->next = registry;
    __atomic_store_n(&registry, t, __ATOMIC_RELEASE);
    agent_unlock_ranked(&registry_lock, AGENT_RANK_REGISTRY);
    return t;
}

static agent_thread_t *thread_register(void);

agent_thread_t *agent_thread_slow(void)
{
    int saved_errno = errno;   /* registration must not change the program's errno */
    agent_thread_t *t = thread_register();
    errno = saved_errno;
    return t;
}

/* adopt_pending: moves what signal handlers allocated and freed while the
 * thread had no block (agent_tls_t.pending) into its new block t. Called
 * once agent_tls.thread is t: a handler that runs now counts into t
 * directly, so nothing is added to pending while it is emptied. */
static void adopt_pending(agent_thread_t *t)
{
    uint64_t *p = agent_tls.pending;
    agent_tally_add(&t->mallocs, p[AGENT_COUNT_MALLOCS]);
    agent_tally_add(&t->alloc_bytes, p[AGENT_COUNT_MALLOCS + 1]);
    agent_tally_add(&t->frees, p[AGENT_COUNT_FREES]);
    agent_tally_add(&t->free_bytes, p[AGENT_COUNT_FREES + 1]);
    memset(p, 0, sizeof agent_tls.pending);
}

/*
 * thread_register: a block for the calling thread. The body is quiet (see
 * agent_tls_t): the arena and the registry lock allocate nothing, so a
 * signal handler's allocation meanwhile is counted, into pending until the
 * block is ready. pthread_setspecific allocates only for a key past its
 * first 32 (glibc), once per thread; inside the quiet stretch that
 * allocation is counted, and so is the free glibc makes of it when the
 * thread exits. Starting the background thread (the program's second
 * thread, HEAPWATCH_THREAD=auto) is not quiet: pthread_create allocates
 * for the agent (under the guard), and those allocations must not count.
 */
static agent_thread_t *thread_register(void)
{
    if (!agent_ready()) agent_init();
    if (!agent_enabled || agent_inside()) return NULL;
    agent_tls.quiet++;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);   /* the mark before the guard, as sample_enter */
    agent_enter();
    agent_thread_t *t = adopt_dead_block();
    if (!t) t = new_block();
    if (t) {
        agent_sample_thread_init(t);
        agent_tls.thread = t;
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        adopt_pending(t);
        if (thread_key_ok) pthread_setspecific(thread_key, t);
    }
    agent_leave();
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    agent_tls.quiet--;
    if (t && gettid() != getpid()) agent_bg_new_thread();
    return t;
}

agent_thread_t *agent_current_thread(void)
{
    if (agent_inside()) return NULL;
    agent_thread_t *t = agent_tls.thread;
    if (t) return t;
    if (!agent_enabled) return NULL;
    return agent_thread_slow();
}

void *agent_on_alloc_slow(void *ptr)
{
    agent_thread_t *t = agent_current_thread();
    if (t) return agent_count_alloc(t, ptr, agent_usable_size(ptr));
    if (agent_in_handler())
        agent_count_handler(AGENT_COUNT_MALLOCS, 1, agent_usable_size(ptr) + AGENT_BLOCK_EXTRA);
    return ptr;
}

void agent_on_free_slow(void *ptr)
{
    agent_thread_t *t = agent_current_thread();
    if (!t) {
        if (agent_in_handler())
            agent_count_handler(AGENT_COUNT_FREES, 1, agent_usable_size(ptr) + AGENT_BLOCK_EXTRA);
        return;
    }
    bool sampled = agent_free_maybe_sampled(ptr);
    /* The live map's bucket is a cache miss in a large map: start it now,
     * so that it overlaps the counting (which reads the block's header). */
    if (sampled) agent_live_prefetch(ptr);
    agent_count_free(t, agent_usable_size(ptr));
    if (sampled) agent_free_sampled(t, ptr);
}

/* thread_exit: pthread key destructor. Allocations the thread makes after
 * this (later destructors) register it again, which is harmless. */
static void thread_exit(void *p)
{
    agent_thread_t *t = p;
    agent_tls.thread = NULL;
    agent_tls.fast = NULL;
    __atomic_store_n(&t->alive, 0, __ATOMIC_RELEASE);
}

void agent_counters_read(heapwatch_counters_t *out)
{
    memset(out, 0, sizeof *out);
    for (agent_thread_t *t = __atomic_load_n(&registry, __ATOMIC_ACQUIRE); t; t = t->next) {
        /* Bytes first: a count read after its bytes is never behind them,
         * so a block never reads as more bytes than its blocks explain. */
        uint64_t alloc_bytes = __atomic_load_n(&t->alloc_bytes, __ATOMIC_ACQUIRE);
        uint64_t free_bytes = __atomic_load_n(&t->free_bytes, __ATOMIC_ACQUIRE);
        uint64_t mallocs = __atomic_load_n(&t->mallocs, __ATOMIC_ACQUIRE);
        uint64_t frees = __atomic_load_n(&t->frees, __ATOMIC_ACQUIRE);
        out->mallocs += mallocs;
        out->frees += frees;
        out->alloc_bytes += alloc_bytes - AGENT_BLOCK_EXTRA * mallocs;   /* see AGENT_BLOCK_EXTRA */
        out->free_bytes += free_bytes - AGENT_BLOCK_EXTRA * frees;
    }
}

AGENT_EXPORT void heapwatch_read_counters(heapwatch_counters_t *out)
{
    agent_counters_read(out);
}


/* ------------------------------------------------------------------------ */

void agent_threads_sum(agent_thread_sums_t *out)
{
    memset(out, 0, sizeof *out);
    for (agent_thread_t *t = __atomic_load_n(&registry, __ATOMIC_ACQUIRE); t; t = t->next) {
        out->samples += __atomic_load_n(&t->samples, __ATOMIC_RELAXED);
        out->dropped += __atomic_load_n(&t->dropped, __ATOMIC_RELAXED);
        out->filter_hits += __atomic_load_n(&t->filter_hits, __ATOMIC_RELAXED);
        out->filter_false += __atomic_load_n(&t->filter_false, __ATOMIC_RELAXED);
        out->blocks++;
    }
}

void agent_threads_init(void)
{
    thread_key_ok = pthread_key_create(&thread_key, thread_exit) == 0;
}

/* ------------------------------------------------------------------------ */
/* fork                                                                     */
/* ------------------------------------------------------------------------ */

static AGENT_TLS bool took_registry;   /* per thread: two threads may fork at once */

bool agent_threads_prefork(uint64_t deadline_ns)
{
    took_registry = agent_lock_ranked_until(&registry_lock, AGENT_RANK_REGISTRY, deadline_ns);
    return took_registry;
}

void agent_threads_postfork_parent(void)
{
    if (took_registry) agent_unlock_ranked(&registry_lock, AGENT_RANK_REGISTRY);
}

void agent_threads_postfork_child(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    registry_lock = fresh;
    /* Only this thread survived: every other block is free for adoption. */
    for (agent_thread_t *t = registry; t; t = t->next)
        if (t != agent_tls.thread) t->alive = 0;
}
