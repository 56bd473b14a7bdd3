/*
 * tools.h - what the files of the heapwatch command share: the verbs'
 * entry points, exit codes, and the formatting helpers of fmt.c.
 *
 * Private to tools/ (the command is one program; rundir.h is its reader
 * of the agent's results, this header its glue).
 */
#ifndef HEAPWATCH_TOOLS_H
#define HEAPWATCH_TOOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define EXIT_LIMIT 1           /* check: a limit was broken */
#define EXIT_USAGE 2           /* bad usage, unreadable or empty results */

/* The verbs: argv[0] is the verb; @return the exit status. */
int cmd_check(int argc, char **argv);
int cmd_report(int argc, char **argv);

/*
 * Formatting. Each fmt_* returns a string in one of FMT_RING static
 * buffers used in turn, so up to FMT_RING of them can appear in a single
 * printf. NAN (a field the agent did not write) prints as "?".
 */
#define FMT_RING 16

/* fmt_bytes: 1536 -> "1.5 KiB", 100 -> "100 B". */
const char *fmt_bytes(double v);
/* fmt_count: 1234567 -> "1,234,567". */
const char *fmt_count(double v);
/* fmt_num: a plain number, with decimals only when it is small. */
const char *fmt_num(double v);
/* fmt_metric: a value of a metric: "5012/s" for objects_rate, "1.2 MiB/s"
 * for bytes_rate, bytes for *_bytes, else fmt_num. */
const char *fmt_metric(const char *metric, double v);
/* fmt_duration: 0.0123 -> "0.012 s", 75 -> "1m15s". */
const char *fmt_duration(double seconds);
/* fmt_reltime: seconds after the start, "+3.0s", "+2m05s", "+27h46m" (or "?"). */
const char *fmt_reltime(double seconds);
/* fmt_stack: "fn <- caller <- ..." with up to max frames after fn (frames
 * innermost first; when fn is one of them, only its callers follow). */
const char *fmt_stack(const char *fn, char *const *frames, size_t nframes, size_t max);
/* fmt_utf8_len: the length of the valid UTF-8 sequence at s (1 to 4), or 0
 * for a control character (C0, DEL, C1), a NUL, or bytes that are not
 * UTF-8. Reads no further than a NUL. */
size_t fmt_utf8_len(const unsigned char *s);
/* fmt_clean: s with control characters (and bytes of broken UTF-8) shown
 * as '?', cut at 1000 bytes with "...": safe for a terminal. NULL -> "?". */
const char *fmt_clean(const char *s);
/* fmt_clean_max: fmt_clean, cut after max bytes (at most 1000) with "...",
 * never inside a character: a command line on one line of a table. */
const char *fmt_clean_max(const char *s, size_t max);

#endif
