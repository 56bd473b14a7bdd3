/*
 * output.h - the core's output services: the verified output directory,
 * the process's file tag, publishing files without ever replacing one,
 * heap profiles by reason, and the lists the summary gives (output.c)
 * (agent/, private).
 *
 * Callers hold the work lock (core.h), except agent_output_profile_fd,
 * which takes it.
 */
#ifndef HEAPWATCH_AGENT_OUTPUT_H
#define HEAPWATCH_AGENT_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/base.h"
#include "agent/buf.h"

#pragma GCC visibility push(hidden)

/* agent_output_ready: the output directory exists and may be written.
 * agent_output_remember: a file written, for the summary's list.
 * agent_output_profile: writes a heap profile, its name into name ("" if none). */
bool agent_output_ready(void);
void agent_output_remember(const char *name);
/* agent_output_dirfd: the verified output directory descriptor (borrowed),
 * or -errno once there is no output (reported once).
 * agent_output_tag: this process's file tag, "<pid>" or "<pid>-<n>".
 * agent_output_publish: renames tmp (in dirfd) to prefix + tag + suffix,
 * never replacing a file (a taken name moves the process to its next
 * tag); the name into name. @return 0 or -errno. */
int agent_output_dirfd(void);
const char *agent_output_tag(void);
int agent_output_publish(int dirfd, const char *tmp, const char *prefix, const char *suffix,
                         char *name, size_t cap);
void agent_output_profile(const char *reason, char *name, size_t cap);

/* agent_output_profile_reason: agent_output_profile, the name unused. */
void agent_output_profile_reason(const char *reason);

/* agent_output_profile_peak: the peak profile (reason "peak") from the
 * last copy of the stacks at the peak (peak.c), when there is one with
 * something in use, at exit, after the exit profile (exit_name, "" if
 * none): unless live bytes at exit (exit_live) are within
 * AGENT_PEAK_MARGIN_PCT of the copy's, when the exit profile already shows
 * the peak. agent_output_peak_profile: the file that shows the peak (the
 * summary's peak_profile), "" when none. */
void agent_output_profile_peak(uint64_t exit_live, const char *exit_name);
const char *agent_output_peak_profile(void);

/* agent_output_profile_fd: writes a heap profile for `reason` (takes the
 * work lock), its file name into name and a descriptor of the very file
 * written into *fd (at offset 0; the caller closes it), so that what is
 * sent is what was written, never a file reopened by name. @return 0,
 * -ESHUTDOWN once the exit output has begun, or -EIO when no profile
 * could be written. */
int agent_output_profile_fd(const char *reason, char *name, size_t cap, int *fd);

/* agent_output_start: HEAPWATCH_OUT (configured) made absolute, created
 * and checked now, at start, while stderr is surely still open
 * (programs such as GNU sort close it at exit): a bad or unsafe directory
 * is reported once, up front (out.c). */
void agent_output_start(const char *configured);
/* agent_output_path: the output directory's absolute path (HEAPWATCH_OUT
 * against the start-up working directory: a later chdir does not move it). */
const char *agent_output_path(void);

/* agent_output_summary: writes the summary, built by build for its own
 * name, into text (cap bytes), under a name no other file has.
 * @return 0 or -errno (reported once). */
int agent_output_summary(void (*build)(agent_buf_t *b, const char *own_name), char *text, size_t cap);

/* The summary's lists: agent_output_files_json, the files that exist (the
 * first 64) then own_name, as a JSON array; agent_output_files_total, all
 * of them, the summary included; agent_output_removed_json and _total,
 * the profiles HEAPWATCH_MAX_PROFILES removed. */
void agent_output_files_json(agent_buf_t *b, const char *own_name);
uint64_t agent_output_files_total(void);
void agent_output_removed_json(agent_buf_t *b);
uint64_t agent_output_removed_total(void);

/* agent_output_postfork_child: a new process: a new tag, and the parent's
 * files are the parent's. */
void agent_output_postfork_child(void);

#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_OUTPUT_H */
