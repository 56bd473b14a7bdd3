/*
 * runsum.h - the verdict of a whole run, before any detail (runsum.c):
 * what `heapwatch check`, `report` and `run` open with. A run of a test
 * suite is thousands of processes; a person first wants the totals, the
 * alerts, who broke a limit, and which commands grew or held the most,
 * rolled up per command pattern (rundir_proc_t.cmd_pattern: the command
 * with its files and numbers as '*', so the 140 runs of
 * "cc1 -quiet * -o *" of a build are one line).
 */
#ifndef HEAPWATCH_TOOLS_RUNSUM_H
#define HEAPWATCH_TOOLS_RUNSUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "tools/rundir.h"

/* runsum_group_t: the processes of one command pattern. */
typedef struct {
    const char *name;          /* the pattern, else the executable's name (not owned) */
    size_t procs;
    size_t crit, warn;         /* processes whose highest alert was crit / warn */
    size_t failed;             /* processes that broke a limit (check) */
    double max_rate;           /* highest judged objects_rate (rundir_rate_judged), NAN: none */
    double live_bytes;         /* summed at exit (summary, else the last record) */
    double live_objects;
} runsum_group_t;

typedef struct {
    size_t procs;
    size_t no_summary;         /* processes without a summary (killed, or running) */
    double mallocs, alloc_bytes;   /* summed over the summaries */
    double live_bytes, live_objects;
    size_t crit, warn;         /* processes by their highest alert */
    size_t alerts;             /* alert records, recoveries not counted */
    size_t failed;
    runsum_group_t *groups;    /* one per pattern, sorted by name */
    size_t ngroups;
} runsum_t;

/* runsum_build: the totals and groups of rd; failed (one flag per
 * process, or NULL) marks the processes that broke a limit. @return 0, or
 * -1 out of memory (*out then empty). */
int runsum_build(const rundir_t *rd, const bool *failed, runsum_t *out);

/* runsum_print: the summary as lines that each start with prefix; at most
 * top commands in each list. */
void runsum_print(FILE *f, const runsum_t *s, const char *prefix, size_t top);

void runsum_free(runsum_t *s);

#endif
