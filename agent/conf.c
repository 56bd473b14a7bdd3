/*
 * conf.c - parsing the HEAPWATCH_* variables (declared in agent_internal.h).
 *
 * Runs inside the host process before anything else of the agent, possibly
 * before the host's own constructors: no malloc, no stdio, no locale; every
 * message is built in a stack buffer and handed to the caller's reporter.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <strings.h>

#include "agent/agent_internal.h"

#define NS_PER_S 1000000000ull
#define SECONDS_MAX (100ull * 365 * 24 * 3600)    /* a century: "forever" */
#define RATE_MAX (1ull << 40)                       /* 1 TiB between samples */

void agent_conf_defaults(agent_conf_t *c)
{
    memset(c, 0, sizeof *c);
    memcpy(c->out_dir, CONF_DEFAULT_OUT, sizeof CONF_DEFAULT_OUT);
    c->rate = CONF_DEFAULT_RATE;
    c->interval_ns = CONF_DEFAULT_INTERVAL_NS;
    c->window_ns = CONF_DEFAULT_WINDOW_NS;
    c->warn = CONF_DEFAULT_WARN;
    c->crit = CONF_DEFAULT_CRIT;
    c->sustain_ns = CONF_DEFAULT_SUSTAIN_NS;
    c->grace_ns = CONF_DEFAULT_GRACE_NS;
    c->max_profiles = CONF_DEFAULT_MAX_PROFILES;
}

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

bool agent_conf_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !is_digit(*s)) return false;
    uint64_t v = 0;
    for (; is_digit(*s); s++) {
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
            return false;
    }
    if (*s || v < min || v > max) return false;
    *out = v;
    return true;
}

bool agent_conf_parse_seconds(const char *s, uint64_t min_ns, uint64_t max_ns, uint64_t *out_ns)
{
    if (!s || !(is_digit(*s) || (*s == '.' && is_digit(s[1])))) return false;
    uint64_t whole = 0, frac = 0, scale = NS_PER_S;
    for (; is_digit(*s); s++) {
        whole = whole * 10 + (uint64_t)(*s - '0');
        if (whole > SECONDS_MAX) return false;
    }
    if (*s == '.') {
        s++;
        if (!is_digit(*s)) return false;
        for (int digits = 0; is_digit(*s); s++, digits++) {
            if (digits == 9) return false;
            scale /= 10;
            frac += (uint64_t)(*s - '0') * scale;
        }
    }
    if (*s) return false;
    uint64_t ns = whole * NS_PER_S + frac;
    if (ns < min_ns || ns > max_ns) return false;
    *out_ns = ns;
    return true;
}

typedef struct { const char *name; int signo; } signal_name_t;

static const signal_name_t signal_names[] = {
    { "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "USR1", SIGUSR1 },
    { "USR2", SIGUSR2 }, { "PIPE", SIGPIPE }, { "ALRM", SIGALRM }, { "TERM", SIGTERM },
    { "CHLD", SIGCHLD }, { "CONT", SIGCONT }, { "TSTP", SIGTSTP }, { "TTIN", SIGTTIN },
    { "TTOU", SIGTTOU }, { "URG", SIGURG }, { "XCPU", SIGXCPU }, { "XFSZ", SIGXFSZ },
    { "VTALRM", SIGVTALRM }, { "PROF", SIGPROF }, { "WINCH", SIGWINCH }, { "IO", SIGIO },
    { "PWR", SIGPWR },
};

/* signal_allowed: signals that mean a crash or cannot be caught stay the
 * program's. */
static bool signal_allowed(int signo)
{
    switch (signo) {
    case SIGKILL: case SIGSTOP: case SIGSEGV: case SIGBUS: case SIGFPE:
    case SIGILL: case SIGABRT: case SIGTRAP: case SIGSYS:
        return false;
    }
    return signo > 0 && signo < NSIG;
}

bool agent_conf_parse_signal(const char *s, int *out)
{
    if (!s || !*s) return false;
    uint64_t num;
    int signo = 0;
    if (agent_conf_parse_u64(s, 1, (uint64_t)NSIG - 1, &num)) {
        signo = (int)num;
    } else {
        if (strncasecmp(s, "SIG", 3) == 0) s += 3;
        if (strncasecmp(s, "RTMIN", 5) == 0) {
            uint64_t off = 0;
            if (s[5] != 0 && (s[5] != '+' || !agent_conf_parse_u64(s + 6, 0, 64, &off))) return false;
            signo = SIGRTMIN + (int)off;
            if (signo > SIGRTMAX) return false;
        } else {
            for (size_t i = 0; i < sizeof signal_names / sizeof *signal_names; i++)
                if (strcasecmp(s, signal_names[i].name) == 0) signo = signal_names[i].signo;
        }
    }
    if (!signal_allowed(signo)) return false;
    *out = signo;
    return true;
}

bool agent_conf_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    if (!s || !*s) return false;
    const char *colon;
    const char *hstart = s;
    size_t hlen;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return false;
        hstart = s + 1;
        hlen = (size_t)(close - hstart);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return false;
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen)) return false;   /* bare IPv6 needs brackets */
    }
    uint64_t p;
    if (hlen == 0 || hlen >= hostlen || !agent_conf_parse_u64(colon + 1, 1, 65535, &p)) return false;
    memcpy(host, hstart, hlen);
    host[hlen] = 0;
    *port = (uint16_t)p;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct {
    char buf[512];
    size_t len;
} line_t;

static void line_add(line_t *l, const char *s)
{
    size_t n = strlen(s);
    if (n > sizeof l->buf - 1 - l->len) n = sizeof l->buf - 1 - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    l->buf[l->len] = 0;
}

/* line_add_value: the user's value, quoted, control characters as '?',
 * cut at 64 bytes, so one bad variable is always one line. */
static void line_add_value(line_t *l, const char *v)
{
    char tmp[80];
    size_t o = 0;
    tmp[o++] = '"';
    for (size_t i = 0; v[i] && o < 68; i++)
        tmp[o++] = (unsigned char)v[i] < 0x20 || v[i] == 0x7f ? '?' : v[i];
    if (strlen(v) > 66) { tmp[o++] = '.'; tmp[o++] = '.'; tmp[o++] = '.'; }
    tmp[o++] = '"';
    tmp[o] = 0;
    line_add(l, tmp);
}

static void report_bad(void (*report)(const char *), const char *var, const char *value,
                       const char *expected, const char *fallback)
{
    line_t l = { .len = 0 };
    l.buf[0] = 0;
    line_add(&l, "heapwatch: ");
    line_add(&l, var);
    line_add(&l, "=");
    line_add_value(&l, value);
    line_add(&l, " is not valid: expected ");
    line_add(&l, expected);
    line_add(&l, "; ");
    line_add(&l, fallback);
    line_add(&l, "\n");
    report(l.buf);
}

typedef struct {
    const char *(*getenv_fn)(const char *);
    void (*report)(const char *);
    int bad;
} loader_t;

static void load_u64(loader_t *ld, const char *var, uint64_t min, uint64_t max,
                     uint64_t *dst, const char *expected, const char *fallback)
{
    const char *v = ld->getenv_fn(var);
    if (!v) return;
    if (!agent_conf_parse_u64(v, min, max, dst)) {
        report_bad(ld->report, var, v, expected, fallback);
        ld->bad++;
    }
}

static void load_seconds(loader_t *ld, const char *var, uint64_t min_ns, uint64_t *dst,
                         const char *expected, const char *fallback)
{
    const char *v = ld->getenv_fn(var);
    if (!v) return;
    if (!agent_conf_parse_seconds(v, min_ns, SECONDS_MAX * NS_PER_S, dst)) {
        report_bad(ld->report, var, v, expected, fallback);
        ld->bad++;
    }
}

int agent_conf_load(agent_conf_t *c, const char *(*getenv_fn)(const char *),
              void (*report)(const char *line))
{
    loader_t ld = { getenv_fn, report, 0 };
    agent_conf_defaults(c);

    const char *out = getenv_fn("HEAPWATCH_OUT");
    if (out) {
        if (!*out || strlen(out) >= CONF_PATH_MAX - 64) {
            report_bad(report, "HEAPWATCH_OUT", out,
                       "a directory path of 1 to 4000 bytes", "using heapwatch-out");
            ld.bad++;
        } else {
            memcpy(c->out_dir, out, strlen(out) + 1);
        }
    }
    load_u64(&ld, "HEAPWATCH_RATE", 0, RATE_MAX, &c->rate,
             "a whole number of bytes from 0 to 1099511627776 (1 samples every "
             "allocation, 0 none)", "using 524288");
    load_seconds(&ld, "HEAPWATCH_INTERVAL", NS_PER_S / 100, &c->interval_ns,
                 "seconds, at least 0.01 (fractions allowed, e.g. 0.5)", "using 1");
    load_seconds(&ld, "HEAPWATCH_WINDOW", NS_PER_S / 100, &c->window_ns,
                 "seconds, at least 0.01 (fractions allowed, e.g. 2.5)", "using 5");
    load_u64(&ld, "HEAPWATCH_WARN", 1, UINT32_MAX, &c->warn,
             "live objects per second, a whole number from 1 to 4294967295", "using 500");
    load_u64(&ld, "HEAPWATCH_CRIT", 1, UINT32_MAX, &c->crit,
             "live objects per second, a whole number from 1 to 4294967295", "using 2000");
    load_seconds(&ld, "HEAPWATCH_SUSTAIN", 0, &c->sustain_ns,
                 "seconds, 0 or more (fractions allowed)", "using 3");
    load_seconds(&ld, "HEAPWATCH_GRACE", 0, &c->grace_ns,
                 "seconds, 0 or more (fractions allowed)", "using 10");
    load_seconds(&ld, "HEAPWATCH_PROFILE_INTERVAL", 0, &c->profile_interval_ns,
                 "seconds between periodic profiles, 0 for none (fractions allowed)",
                 "periodic profiles off");
    if (c->profile_interval_ns && c->profile_interval_ns < NS_PER_S / 10) {
        report_bad(report, "HEAPWATCH_PROFILE_INTERVAL", getenv_fn("HEAPWATCH_PROFILE_INTERVAL"),
                   "0 (off) or at least 0.1 seconds", "periodic profiles off");
        c->profile_interval_ns = 0;
        ld.bad++;
    }
    load_u64(&ld, "HEAPWATCH_MAX_PROFILES", 1, CONF_MAX_PROFILES_MAX, &c->max_profiles,
             "a whole number of interval, signal and http profiles kept per process, "
             "from 1 to 4096", "using 64");

    const char *sig = getenv_fn("HEAPWATCH_SIGNAL");
    if (sig && *sig && !agent_conf_parse_signal(sig, &c->signal)) {
        report_bad(report, "HEAPWATCH_SIGNAL", sig,
                   "a signal name or number such as USR2, SIGUSR1, RTMIN+1 or 12 "
                   "(not KILL, STOP, SEGV, BUS, FPE, ILL, ABRT, TRAP, SYS)",
                   "profiles on signal off");
        ld.bad++;
    }
    const char *http = getenv_fn("HEAPWATCH_HTTP");
    if (http && *http &&
        !agent_conf_parse_hostport(http, c->http_host, sizeof c->http_host, &c->http_port)) {
        c->http_host[0] = 0;
        report_bad(report, "HEAPWATCH_HTTP", http,
                   "host:port such as 127.0.0.1:6060 or [::1]:6060", "HTTP server off");
        ld.bad++;
    }
    if (c->warn > c->crit) {
        report_bad(report, "HEAPWATCH_WARN", getenv_fn("HEAPWATCH_WARN") ?
                   getenv_fn("HEAPWATCH_WARN") : "500",
                   "a rate no higher than HEAPWATCH_CRIT", "using HEAPWATCH_CRIT for both");
        c->warn = c->crit;
        ld.bad++;
    }
    return ld.bad;
}
