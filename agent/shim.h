/*
 * shim.h - what the interposition shim (shim.c) offers the core (agent/,
 * private). The hot path's side of the contract is in hot.h.
 */
#ifndef HEAPWATCH_AGENT_SHIM_H
#define HEAPWATCH_AGENT_SHIM_H

#include "agent/base.h"

#include <stdbool.h>

#pragma GCC visibility push(hidden)

/* agent_shim_init: resolves the real allocation functions now. */
void agent_shim_init(void);

/* agent_shim_aside_reason: why the agent steps aside in this process
 * (agent_enabled is then 0), as a phrase ("AddressSanitizer runtime"): a
 * sanitizer runtime found at resolution (ASan, TSan, MSan, LSan, HWASan;
 * shared, or linked into the executable); NULL when it does not. (shim.c) */
const char *agent_shim_aside_reason(void);

/* agent_shim_malloc_owner: the path of the object whose malloc the
 * program's calls reach instead of the agent's (a malloc preloaded before
 * it, or an allocator linked into the executable; no sanitizer): the agent
 * runs but sees no allocation; NULL when the agent's malloc is the one
 * bound (or the agent steps aside). (shim.c) */
const char *agent_shim_malloc_owner(void);

/* agent_shim_malloc_owner_is_executable: that object is the executable
 * (an allocator linked into the program). (shim.c) */
bool agent_shim_malloc_owner_is_executable(void);


#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_SHIM_H */
