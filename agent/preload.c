/*
 * preload.c - what runs by itself when libheapwatch.so is loaded: the
 * constructor, the exit handler and the destructor.
 *
 * Everything else in agent/ runs only when called, so the unit tests link
 * all of agent/ but this file and the shim (shim.c, which would interpose
 * malloc in the test binary) and drive the core directly, as heaptrack
 * tests its tracker.
 */
#include <stdbool.h>

#include "agent/core.h"
#include "agent/thread.h"

/* glibc's registration of an exit handler (what atexit is built on). */
extern int __cxa_atexit(void (*fn)(void *), void *arg, void *dso);

static bool exit_handler_registered;

static void exit_handler(void *arg)
{
    (void)arg;
    agent_exit_output();
}

__attribute__((constructor)) static void agent_ctor(void)
{
    agent_init();
    if (!agent_enabled) return;
    /* The exit output is written by an exit handler registered now, before
     * __libc_start_main registers ld.so's finaliser: handlers run in reverse
     * order, so ours runs after every library's destructors (ld.so runs the
     * preloaded agent's own destructor before those of the libraries the
     * program links). */
    exit_handler_registered = __cxa_atexit(exit_handler, NULL, NULL) == 0;
    agent_start();
}

/* agent_dtor: the exit output when no exit handler could be registered
 * (or the library is being unloaded some other way). */
__attribute__((destructor)) static void agent_dtor(void)
{
    if (exit_handler_registered) return;
    agent_exit_output();
}
