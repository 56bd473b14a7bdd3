/*
 * conf.h - the HEAPWATCH_* variables of SPEC.md, parsed once at start by
 * pure, allocation-free functions (conf.c) (agent/, private). A bad value
 * never stops the program: one line names the variable and the accepted
 * form, the default is kept.
 */
#ifndef HEAPWATCH_AGENT_CONF_H
#define HEAPWATCH_AGENT_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/base.h"

#pragma GCC visibility push(hidden)

#define CONF_PATH_MAX 4096
#define CONF_HOST_MAX 256
#define CONF_NAMES_MAX 1024            /* HEAPWATCH_ONLY, HEAPWATCH_EXCLUDE: bytes of globs */

typedef struct agent_conf_s {
    char out_dir[CONF_PATH_MAX];   /* HEAPWATCH_OUT, as given (made absolute by the agent) */
    uint64_t rate;                 /* HEAPWATCH_RATE: mean bytes between samples; 0 = none */
    uint64_t interval_ns;          /* HEAPWATCH_INTERVAL */
    uint64_t window_ns;            /* HEAPWATCH_WINDOW */
    uint64_t warn;                 /* HEAPWATCH_WARN: objects/s */
    uint64_t crit;                 /* HEAPWATCH_CRIT: objects/s */
    uint64_t sustain_ns;           /* HEAPWATCH_SUSTAIN */
    uint64_t grace_ns;             /* HEAPWATCH_GRACE */
    uint64_t profile_interval_ns;  /* HEAPWATCH_PROFILE_INTERVAL; 0 = off */
    int signal;                    /* HEAPWATCH_SIGNAL; 0 = off */
    char http_host[CONF_HOST_MAX]; /* HEAPWATCH_HTTP host; "" = off */
    uint16_t http_port;
    int thread;                    /* HEAPWATCH_THREAD: CONF_THREAD_* */
    uint64_t max_profiles;         /* HEAPWATCH_MAX_PROFILES: interval, signal, http kept */
    bool fsync;                    /* HEAPWATCH_FSYNC: fsync each file before it is published */
    bool brief;                    /* HEAPWATCH_BRIEF: a process with nothing to show writes only its summary */
    char only[CONF_NAMES_MAX];     /* HEAPWATCH_ONLY: executable-name globs, comma-separated; "" = all */
    char exclude[CONF_NAMES_MAX];  /* HEAPWATCH_EXCLUDE: the same; "" = none */
} agent_conf_t;

/* HEAPWATCH_THREAD: when the agent runs its background thread (background.c). */
enum {
    CONF_THREAD_AUTO = 0,          /* "auto" (default): only once it is needed */
    CONF_THREAD_ON = 1,            /* "on", "1": from start-up */
    CONF_THREAD_OFF = 2,           /* "off", "0": never; work done by the allocating thread */
};

/* HEAPWATCH_FSYNC (ours, not SPEC's): "off", "0" (default): files are
 * written and renamed into place, never fsync'ed; "on", "1", "all": each
 * file is fsync'ed before it is renamed, and the timeline again when it
 * is closed. Either way a file appears whole or not at all to a reader
 * and after a crash of the process (the rename), and the timeline keeps
 * every flushed record after kill -9 (write(2) reaches the page cache);
 * fsync only adds survival of a crash of the machine, at about 0.5 ms per
 * file on a disk (README, "Running a program under heapwatch"). */
#define CONF_DEFAULT_FSYNC false

/* HEAPWATCH_BRIEF (ours, not SPEC's): "auto" or "on" (default): a process
 * that sampled no allocation, took no snapshot and raised no alert writes
 * only its summary: its timeline would be one record of the counters the
 * summary gives, its exit profile empty (a build or a test suite runs
 * thousands of such processes); "off" or "0": always the timeline and the
 * exit profile too. */
#define CONF_DEFAULT_BRIEF true

/* Defaults (SPEC.md; SUSTAIN and GRACE are ours, see README). */
#define CONF_DEFAULT_OUT "heapwatch-out"
#define CONF_DEFAULT_RATE 524288u
#define CONF_DEFAULT_INTERVAL_NS 1000000000ull
#define CONF_DEFAULT_WINDOW_NS 5000000000ull
#define CONF_DEFAULT_WARN 500u
#define CONF_DEFAULT_CRIT 2000u
#define CONF_DEFAULT_SUSTAIN_NS 3000000000ull
#define CONF_DEFAULT_GRACE_NS 10000000000ull
#define CONF_DEFAULT_MAX_PROFILES 64u
#define CONF_MAX_PROFILES_MAX 4096u   /* bounds the core's list of kept names (64 B each) */

/* agent_conf_defaults: fills *c with every default. */
void agent_conf_defaults(agent_conf_t *c);

/* agent_conf_parse_u64: a whole decimal number in [min, max], nothing else.
 * @return true on success. */
bool agent_conf_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* agent_conf_parse_seconds: seconds as a decimal number with an optional
 * fraction ("1", "0.25", "2.5"), at most 9 fraction digits, in
 * [min_ns, max_ns] once converted to nanoseconds. @return true on success. */
bool agent_conf_parse_seconds(const char *s, uint64_t min_ns, uint64_t max_ns, uint64_t *out_ns);

/* agent_conf_parse_signal: the profile signal: USR1, USR2 or a real-time
 * signal, by name ("USR1", "SIGUSR2", "RTMIN+2", "SIGRTMAX-1",
 * case-insensitive) or number ("10", "12", "34".."64"). Every other signal
 * means something to the program (TERM, INT, CHLD, PIPE, TSTP...) and is
 * refused, as are KILL, STOP and the crash signals. @return true on success. */
bool agent_conf_parse_signal(const char *s, int *out);
/* agent_conf_signal_allowed: signo is USR1, USR2 or SIGRTMIN..SIGRTMAX. */
bool agent_conf_signal_allowed(int signo);

/* agent_conf_parse_hostport: "host:port" or "[v6]:port", port 1..65535, host
 * non-empty and shorter than CONF_HOST_MAX. @return true on success. */
bool agent_conf_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

/* agent_conf_parse_names: a HEAPWATCH_ONLY or HEAPWATCH_EXCLUDE value:
 * comma-separated globs (*, ?, [set], [!set] or [^set], ranges a-z;
 * a backslash makes the next character plain) of executable names, each
 * non-empty, without '/', the whole shorter than CONF_NAMES_MAX; spaces
 * around a glob are dropped. Copied to out (cap bytes). @return true on
 * success. */
bool agent_conf_parse_names(const char *s, char *out, size_t cap);

/* agent_conf_glob: name matches the glob pat[0, len) as a whole. */
bool agent_conf_glob(const char *pat, size_t len, const char *name);

/* agent_conf_profiles: whether a process named exe (the executable's file
 * name) and argv0 (its argv[0]'s file name; either may be NULL) is
 * profiled: it matches HEAPWATCH_ONLY (when set) by either name, and
 * HEAPWATCH_EXCLUDE by neither. */
bool agent_conf_profiles(const agent_conf_t *c, const char *exe, const char *argv0);

/*
 * agent_conf_load: reads every variable through getenv_fn (secure_getenv in the
 * agent, a table in tests) into *c, starting from the defaults. Each bad
 * value is reported once through report(line) as a complete line such as
 *   heapwatch: HEAPWATCH_RATE="abc" is not valid: expected ...; using 524288
 * and the default is kept. @return the number of bad values.
 */
int agent_conf_load(agent_conf_t *c, const char *(*getenv_fn)(const char *),
              void (*report)(const char *line));


#pragma GCC visibility pop

#endif /* HEAPWATCH_AGENT_CONF_H */
