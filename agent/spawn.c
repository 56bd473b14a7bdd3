/*
 * spawn.c - the agent's own threads (the background thread, its job
 * worker's parent, the HTTP server).
 *
 * Each starts with every signal blocked (the program's signals are never
 * delivered to it), the ordinary scheduling policy and the CPUs the
 * process had at start (not those of the thread that happened to start
 * it), names itself, and runs on memory of the agent's own: the joinable
 * background thread on a stack we map and unmap (never one from glibc's
 * cache: see bg_stack), its spawn record from the arena.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "agent/spawn.h"
#include "agent/thread.h"
#include "map/map.h"

#define THREAD_STACK (256 * 1024)

/* bg_stack: the background thread's own stack (mmap'd, a guard page at
 * its low end), or MAP_FAILED. The thread may now start at any time and
 * leave again (unshare): a stack from glibc's cache would be one a thread
 * of the program expected to reuse (then it allocates a new one, and its
 * TLS, where it did not before), and one it gave back would be cached. A
 * stack of our own is never cached; it is unmapped after the join. */
static void *bg_stack = MAP_FAILED;
static size_t bg_stack_len;

void agent_spawn_joinable_done(void)
{
    if (bg_stack != MAP_FAILED) munmap(bg_stack, bg_stack_len);
    bg_stack = MAP_FAILED;
}

/* spawn_t: what a new agent thread runs and its name, handed over in
 * arena memory that the thread frees. */
typedef struct spawn_s {
    void *(*fn)(void *);
    const char *name;
} spawn_t;

/* spawn_main: names the thread itself (prctl on the calling thread: no
 * /proc/self/task/<tid>/comm descriptor opened on the program's thread,
 * which naming another thread needs), then runs its function. */
static void *spawn_main(void *arg)
{
    spawn_t s = *(spawn_t *)arg;
    map_allocator_t a = map_arena_allocator();
    a.free(a.ctx, arg);
    pthread_setname_np(pthread_self(), s.name);
    return s.fn(NULL);
}

/* A thread of the agent's may be started from any thread of the
 * program (HEAPWATCH_THREAD=auto starts it from an allocating thread):
 * it must not take that thread's real-time policy and priority, nor its
 * CPU pinning. It gets the ordinary policy and the CPUs the process had
 * at start (init_cpus, read by agent_init on the main thread). */
static cpu_set_t init_cpus;
static bool init_cpus_ok;

static void plain_sched(pthread_attr_t *attr)
{
    struct sched_param sp = { .sched_priority = 0 };
    if (pthread_attr_setinheritsched(attr, PTHREAD_EXPLICIT_SCHED) == 0) {
        (void)pthread_attr_setschedpolicy(attr, SCHED_OTHER);
        (void)pthread_attr_setschedparam(attr, &sp);
    }
    if (init_cpus_ok) (void)pthread_attr_setaffinity_np(attr, sizeof init_cpus, &init_cpus);
}

/* spawn: an agent thread running fn(NULL), every signal blocked in it;
 * joinable ones on a stack of their own (bg_stack) when possible.
 * @return 0 or -errno. */
static int spawn(void *(*fn)(void *), const char *name, bool detached, pthread_t *out)
{
    map_allocator_t a = map_arena_allocator();
    spawn_t *s = a.alloc(a.ctx, sizeof *s);
    if (!s) return -ENOMEM;
    s->fn = fn;
    s->name = name;
    sigset_t old;
    agent_signals_block(&old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, detached ? PTHREAD_CREATE_DETACHED : PTHREAD_CREATE_JOINABLE);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    plain_sched(&attr);
    pthread_t tid;
    agent_enter();
    int err = EINVAL;
    if (!detached) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        bg_stack_len = THREAD_STACK + page;
        bg_stack = mmap(NULL, bg_stack_len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (bg_stack != MAP_FAILED && mprotect(bg_stack, page, PROT_NONE) == 0 &&
            pthread_attr_setstack(&attr, (char *)bg_stack + page, THREAD_STACK) == 0)
            err = pthread_create(&tid, &attr, spawn_main, s);
        if (err) {
            /* Too small for a large static TLS, say: glibc's stack. */
            agent_spawn_joinable_done();
            pthread_attr_destroy(&attr);
            pthread_attr_init(&attr);
            pthread_attr_setstacksize(&attr, THREAD_STACK);
            plain_sched(&attr);
        }
    }
    if (err) err = pthread_create(&tid, &attr, spawn_main, s);
    agent_leave();
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) a.free(a.ctx, s);
    else if (out) *out = tid;
    return -err;
}

int agent_spawn_thread(void *(*fn)(void *), const char *name)
{
    return spawn(fn, name, true, NULL);
}

int agent_spawn_joinable(void *(*fn)(void *), const char *name, pthread_t *out)
{
    return spawn(fn, name, false, out);
}

void agent_spawn_init(void)
{
    init_cpus_ok = sched_getaffinity(0, sizeof init_cpus, &init_cpus) == 0;
}
