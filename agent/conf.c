/*
 * conf.c - parsing the HEAPWATCH_* variables (declared in conf.h).
 *
 * Runs inside the host process before anything else of the agent, possibly
 * before the host's own constructors: no malloc, no stdio, no locale; every
 * message is built in a stack buffer and handed to the caller's reporter.
 *
 * A bad value is one line, always: it names the variable, quotes the value
 * escaped and cut (agent_buf_str_escaped: a newline or an escape sequence
 * in the value cannot make a second line or reach the terminal), says what
 * is accepted and what is used instead; the program runs on.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "agent/buf.h"
#include "agent/conf.h"

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
    c->fsync = CONF_DEFAULT_FSYNC;
    c->brief = CONF_DEFAULT_BRIEF;
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

/*
 * The profile signal. Only signals that mean nothing to anybody else are
 * accepted: USR1, USR2 and the real-time signals. Every other signal has a
 * meaning of its own (TERM and INT end the program, CHLD interrupts its
 * sleeps, PIPE ends a writer whose reader went away, TSTP stops it, ...),
 * and a handler of ours would silently take that meaning away: `kill -TERM`
 * would no longer end the program. Accepted forms, case-insensitive, with
 * or without "SIG": USR1, USR2, RTMIN, RTMIN+n, RTMAX, RTMAX-n (within
 * SIGRTMIN..SIGRTMAX), or a number: 10, 12 or SIGRTMIN..SIGRTMAX.
 */

/* rt_offset: the n of "+n"/"-n" after RTMIN/RTMAX ("" is 0); false when
 * anything else follows. */
static bool rt_offset(const char *s, char sign, int *off)
{
    uint64_t v = 0;
    if (*s == 0) {
        *off = 0;
        return true;
    }
    if (*s != sign || !agent_conf_parse_u64(s + 1, 0, 64, &v)) return false;
    *off = (int)v;
    return true;
}

bool agent_conf_signal_allowed(int signo)
{
    return signo == SIGUSR1 || signo == SIGUSR2 || (signo >= SIGRTMIN && signo <= SIGRTMAX);
}

bool agent_conf_parse_signal(const char *s, int *out)
{
    if (!s || !*s) return false;
    uint64_t num;
    int signo = 0, off = 0;
    if (agent_conf_parse_u64(s, 1, (uint64_t)NSIG - 1, &num)) {
        signo = (int)num;
    } else {
        if (strncasecmp(s, "SIG", 3) == 0) s += 3;
        if (strcasecmp(s, "USR1") == 0) signo = SIGUSR1;
        else if (strcasecmp(s, "USR2") == 0) signo = SIGUSR2;
        else if (strncasecmp(s, "RTMIN", 5) == 0 && rt_offset(s + 5, '+', &off)) signo = SIGRTMIN + off;
        else if (strncasecmp(s, "RTMAX", 5) == 0 && rt_offset(s + 5, '-', &off)) signo = SIGRTMAX - off;
    }
    if (!agent_conf_signal_allowed(signo)) return false;
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
    if (hlen == 0 || hlen >= hostlen || !agent_conf_parse_u64(colon + 1, 0, 65535, &p)) return false;
    for (size_t i = 0; i < hlen; i++)   /* no host name holds a control byte or a space */
        if ((unsigned char)hstart[i] <= 0x20 || hstart[i] == 0x7f) return false;
    memcpy(host, hstart, hlen);
    host[hlen] = 0;
    *port = (uint16_t)p;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

/* report_bad: the one line about a bad variable. The value is quoted
 * escaped and cut (agent_buf_str_escaped), so whatever it holds, one bad
 * variable is one line; the buffer fits the longest line with room. */
/* ------------------------------------------------------------------------ */
/* HEAPWATCH_ONLY, HEAPWATCH_EXCLUDE                                        */
/* ------------------------------------------------------------------------ */
/* Our own glob, not fnmatch(3): fnmatch may allocate (multibyte patterns),
 * and this runs in the constructor, inside the malloc it would call. */

/* class_match: c against the set that starts after '[' at pat[*i]; *i then
 * past the closing ']'. @return -1 when the set is not closed (the '['
 * is then a plain character), else whether c is in it. */
static int class_match(const char *pat, size_t len, size_t *i, unsigned char c)
{
    size_t j = *i;
    bool negate = j < len && (pat[j] == '!' || pat[j] == '^');
    if (negate) j++;
    bool in = false, first = true;
    while (j < len && (pat[j] != ']' || first)) {
        first = false;
        unsigned char lo = (unsigned char)pat[j];
        if (lo == '\\' && j + 1 < len) lo = (unsigned char)pat[++j];
        unsigned char hi = lo;
        if (j + 2 < len && pat[j + 1] == '-' && pat[j + 2] != ']') {
            hi = (unsigned char)pat[j + 2];
            j += 2;
        }
        if (lo <= c && c <= hi) in = true;
        j++;
    }
    if (j >= len) return -1;
    *i = j + 1;
    return in != negate;
}

/* match_one: whether the glob element at pat[p] (not '*') matches c;
 * *next is past it. */
static bool match_one(const char *pat, size_t len, size_t p, unsigned char c, size_t *next)
{
    if (pat[p] == '?') {
        *next = p + 1;
        return true;
    }
    if (pat[p] == '[') {
        size_t j = p + 1;
        int m = class_match(pat, len, &j, c);
        if (m >= 0) {
            *next = j;
            return m;
        }
    }
    if (pat[p] == '\\' && p + 1 < len) p++;
    *next = p + 1;
    return (unsigned char)pat[p] == c;
}

bool agent_conf_glob(const char *pat, size_t len, const char *name)
{
    /* Backtracking over the last '*' only: linear in practice, and at most
     * len * strlen(name) steps (both bounded: 1 KiB of globs, one name). */
    size_t p = 0, star = (size_t)-1;
    const char *n = name, *star_n = NULL;
    while (*n) {
        if (p < len && pat[p] == '*') {
            star = ++p;
            star_n = n;
            continue;
        }
        size_t next;
        if (p < len && match_one(pat, len, p, (unsigned char)*n, &next)) {
            p = next;
            n++;
            continue;
        }
        if (star == (size_t)-1) return false;
        p = star;
        n = ++star_n;
    }
    while (p < len && pat[p] == '*') p++;
    return p == len;
}

bool agent_conf_parse_names(const char *s, char *out, size_t cap)
{
    size_t n = strlen(s);
    if (n == 0 || n >= cap || n >= CONF_NAMES_MAX) return false;
    size_t o = 0;
    const char *p = s;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end) end = s + n;
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
        if (a == b || memchr(a, '/', (size_t)(b - a))) return false;
        for (const char *q = a; q < b; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f) return false;
        if (o) out[o++] = ',';
        memcpy(out + o, a, (size_t)(b - a));
        o += (size_t)(b - a);
        if (!*end) break;
        p = end + 1;
    }
    out[o] = 0;
    return true;
}

/* names_match: name matches one of the comma-separated globs of list. */
static bool names_match(const char *list, const char *name)
{
    if (!name || !*name) return false;
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (agent_conf_glob(p, len, name)) return true;
        if (!end) break;
        p = end + 1;
    }
    return false;
}

bool agent_conf_profiles(const agent_conf_t *c, const char *exe, const char *argv0)
{
    if (c->only[0] && !names_match(c->only, exe) && !names_match(c->only, argv0)) return false;
    return !(c->exclude[0] && (names_match(c->exclude, exe) || names_match(c->exclude, argv0)));
}

/* parse_switch: an on/off value: off or 0 sets *out false; on, 1 or the
 * variable's own word for on (`on_word`: "all", "auto") sets it true.
 * @return false, *out untouched, for anything else. */
static bool parse_switch(const char *v, const char *on_word, bool *out)
{
    if (!strcasecmp(v, "off") || !strcmp(v, "0")) *out = false;
    else if (!strcasecmp(v, "on") || !strcmp(v, "1") || !strcasecmp(v, on_word)) *out = true;
    else return false;
    return true;
}

static void report_bad(void (*report)(const char *), const char *var, const char *value,
                       const char *expected, const char *fallback)
{
    char line[1024];
    agent_buf_t b;
    agent_buf_init(&b, line, sizeof line - 1);   /* room kept for the newline */
    agent_buf_str(&b, "heapwatch: ");
    agent_buf_str(&b, var);
    agent_buf_str(&b, "=\"");
    agent_buf_str_escaped(&b, value, AGENT_QUOTE_MAX);
    agent_buf_str(&b, "\" is not valid: expected ");
    agent_buf_str(&b, expected);
    agent_buf_str(&b, "; ");
    agent_buf_str(&b, fallback);
    line[b.len] = '\n';
    line[b.len + 1] = 0;
    report(line);
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
                   "USR1, USR2, RTMIN+n or RTMAX-n (with or without SIG), or a number: 10, 12, "
                   "or a real-time signal (34 to 64); other signals mean something to the program",
                   "profiles on signal off");
        ld.bad++;
    }
    const char *http = getenv_fn("HEAPWATCH_HTTP");
    if (http && *http &&
        !agent_conf_parse_hostport(http, c->http_host, sizeof c->http_host, &c->http_port)) {
        c->http_host[0] = 0;
        report_bad(report, "HEAPWATCH_HTTP", http,
                   "host:port such as 127.0.0.1:6060 or [::1]:6060 (port 0: each process its own free port)", "HTTP server off");
        ld.bad++;
    }
    const char *fs = getenv_fn("HEAPWATCH_FSYNC");
    if (fs && *fs && !parse_switch(fs, "all", &c->fsync)) {
        report_bad(report, "HEAPWATCH_FSYNC", fs,
                   "off or 0 (no fsync), on, 1 or all (each file fsync'ed before it is "
                   "published)", "using off");
        ld.bad++;
    }
    static const struct { const char *var; size_t off; const char *fallback; } names[] = {
        { "HEAPWATCH_ONLY", offsetof(agent_conf_t, only), "profiling every process" },
        { "HEAPWATCH_EXCLUDE", offsetof(agent_conf_t, exclude), "excluding no process" },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv_fn(names[i].var);
        char *dst = (char *)c + names[i].off;
        char parsed[CONF_NAMES_MAX];
        if (v && *v && agent_conf_parse_names(v, parsed, sizeof parsed)) {
            memcpy(dst, parsed, strlen(parsed) + 1);
        } else if (v && *v) {
            report_bad(report, names[i].var, v,
                       "comma-separated globs of executable names (*, ?, [a-z]; no '/'), "
                       "at most 1023 bytes, e.g. myprog,test_*", names[i].fallback);
            ld.bad++;
        }
    }
    const char *br = getenv_fn("HEAPWATCH_BRIEF");
    if (br && *br && !parse_switch(br, "auto", &c->brief)) {
        report_bad(report, "HEAPWATCH_BRIEF", br,
                   "auto (a process with no sample, snapshot or alert writes only its summary) "
                   "or off (always the timeline and the exit profile)", "using auto");
        ld.bad++;
    }
    const char *thr = getenv_fn("HEAPWATCH_THREAD");
    if (thr && *thr) {
        if (!strcasecmp(thr, "auto")) c->thread = CONF_THREAD_AUTO;
        else if (!strcasecmp(thr, "on") || !strcmp(thr, "1")) c->thread = CONF_THREAD_ON;
        else if (!strcasecmp(thr, "off") || !strcmp(thr, "0")) c->thread = CONF_THREAD_OFF;
        else {
            report_bad(report, "HEAPWATCH_THREAD", thr,
                       "auto (a thread only once needed), on or 1 (from start-up), "
                       "off or 0 (no thread)", "using auto");
            ld.bad++;
        }
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
