/*
 * agent_shim_double.c - the shim's side of its contract with the core, for
 * unit tests of agent/ (which link every file of agent/ but the shim and
 * preload.c): the next allocator is the test binary's own (glibc's, or a
 * sanitizer's), asked for usable sizes by call, never read inline.
 */
#include <malloc.h>
#include <stddef.h>

#include "agent/hot.h"
#include "agent/shim.h"

size_t (*agent_real_usable_size)(void *) = malloc_usable_size;
bool agent_usable_is_glibc = false;

void agent_shim_init(void) {}

const char *agent_shim_aside_reason(void) { return NULL; }

const char *agent_shim_malloc_owner(void) { return NULL; }
bool agent_shim_malloc_owner_is_executable(void) { return false; }
