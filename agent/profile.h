/*
 * profile.h - heap profiles of the stack table, and frame names (profile.c)
 * (agent/, private).
 */
#ifndef HEAPWATCH_AGENT_PROFILE_H
#define HEAPWATCH_AGENT_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/base.h"
#include "agent/stacks.h"
#include "pprof/pprof.h"

#pragma GCC visibility push(hidden)

/* agent_profile_write: writes heap.<tag>.<seq>.<reason>.pb.gz into the
 * directory dirfd from the stack table (temporary file O_EXCL|O_NOFOLLOW,
 * published by agent_output_publish: never replacing a file); name
 * (optional, namecap bytes) receives the file name; with keep_fd, the
 * file's descriptor at offset 0 goes to *keep_fd (the caller closes it).
 * Runs under the recursion guard; serialised by its own lock, taken with
 * agent_lock (in a bounded stretch a busy writer is noted and nothing is
 * written: *busy set); the caller holds the work lock.
 * @return PPROF_OK (nothing written when *busy), or why it failed. */
pprof_err_t agent_profile_write(int dirfd, const char *reason, char *name, size_t namecap,
                                int *keep_fd, bool *busy);

/* agent_profile_write_peak: agent_profile_write of the last copy of the
 * stacks at the peak (peak.c), reason "peak", stamped with the copy's
 * time. Nothing written (name "") when there is no copy or it holds
 * nothing in use; nor when exit_live, the live bytes now, is within
 * AGENT_PEAK_MARGIN_PCT of the copy's (*at_exit set: a profile now shows
 * the peak as well); a note (agent_incomplete_add) when a copy was being
 * taken at that moment. */
pprof_err_t agent_profile_write_peak(int dirfd, uint64_t exit_live, char *name, size_t namecap, bool *busy,
                                     bool *at_exit);

/* agent_profile_name_stacks: names the frames of n stacks: builds a
 * throwaway profile of them, symbolizes it with the profile writer's symbol
 * cache, and calls fn once, with that builder (read names with
 * pprof_builder_frame_name) or with NULL when naming failed.
 * @return PPROF_OK, or why naming failed. */
pprof_err_t agent_profile_name_stacks(agent_stack_t *const *stacks, size_t n,
                              void (*fn)(struct pprof_builder_s *b, void *ctx), void *ctx);

/* agent_profile_name_pcs: agent_profile_name_stacks for n exact
 * instruction addresses (as a profile's locations hold them); read each
 * name with pprof_builder_frame_name(b, pcs, i). */
pprof_err_t agent_profile_name_pcs(const uint64_t *pcs, size_t n,
                           void (*fn)(struct pprof_builder_s *b, void *ctx), void *ctx);

/* agent_profile_symbol_tables, agent_profile_symbol_table_bytes: the
 * symbol tables the profile writer's name cache holds, and their bytes,
 * as of its last use (read without its lock). */
uint64_t agent_profile_symbol_tables(void);
uint64_t agent_profile_symbol_table_bytes(void);

/* agent_profile_postfork_child: a new process: sequence numbers restart
 * and the lock is re-created. */
void agent_profile_postfork_child(void);


#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_PROFILE_H */
