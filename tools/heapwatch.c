/*
 * heapwatch.c - the command-line tool.
 *
 *   heapwatch run [options] -- PROGRAM [ARGS...]
 *   heapwatch check DIR [options]        (check.c)
 *   heapwatch report DIR [options]       (report.c)
 *
 * `run` runs PROGRAM with libheapwatch.so preloaded (options become the
 * HEAPWATCH_* variables of SPEC.md), prints a short summary to stderr when
 * it ends, and exits with PROGRAM's own status (128 + N when a signal N
 * killed it, as a shell reports it). `check` and `report` read the results
 * directory (rundir.c) and judge them for CI or show them to a human.
 *
 * The agent is found, in order: $HEAPWATCH_AGENT; libheapwatch.so beside
 * this executable (the build tree); ../lib/libheapwatch.so (an install).
 *
 * Sanitized programs. ASan's shared runtime refuses to start when another
 * library is preloaded before it, unless ASAN_OPTIONS holds
 * verify_asan_link_order=0: `run` appends that to the user's own
 * ASAN_OPTIONS (kept whole; a verify_asan_link_order the user set is left
 * as set), for the program and everything it starts (`heapwatch run --
 * make test`). In a process with a sanitizer runtime that replaces malloc
 * (ASan, TSan, MSan, LSan) the agent steps aside and says so in one stderr
 * line (agent/shim.c), as it does when the executable exports its own
 * malloc (gcc's static sanitizer runtimes); the program runs, reports and
 * exits as it does bare. When the program left no summary, `run` tells why as far as it
 * can know: how it ended (status or signal), and nothing more when its
 * executable carries a sanitizer runtime (the agent's line said it).
 */
#define _GNU_SOURCE
#include "tools/rundir.h"
#include "tools/runsum.h"
#include "tools/tools.h"

#include <elf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef HEAPWATCH_VERSION
#define HEAPWATCH_VERSION "0.1.0"
#endif

static const char usage_main[] =
    "usage: heapwatch [--help] [--version] VERB [ARGS...]\n"
    "\n"
    "heapwatch profiles the heap of a Linux program: exact allocation counters,\n"
    "sampled heap profiles for go tool pprof, a timeline, and growth alerts.\n"
    "\n"
    "verbs:\n"
    "  run [options] -- PROGRAM [ARGS...]   run PROGRAM under the agent\n"
    "  check DIR [options]                  check the results in DIR against limits (for CI):\n"
    "                                       exit 0 within limits, 1 a limit broken, 2 no results\n"
    "  report DIR [options]                 a report of the results in DIR: counters, growth,\n"
    "                                       charts over time, alerts, top growing stacks, the\n"
    "                                       peak, leaks at exit; and the page DIR/report.html\n"
    "\n"
    "'heapwatch VERB --help' describes a verb.\n";

static const char usage_run[] =
    "usage: heapwatch run [options] -- PROGRAM [ARGS...]\n"
    "\n"
    "Runs PROGRAM with libheapwatch.so preloaded, prints a summary to stderr\n"
    "when it ends, and exits with PROGRAM's exit status.\n"
    "\n"
    "options (each sets the variable named; the agent checks the value):\n"
    "  -o, --out DIR              HEAPWATCH_OUT       output directory (heapwatch-out)\n"
    "  -r, --rate BYTES           HEAPWATCH_RATE      mean bytes between samples (524288;\n"
    "                                                 1 = every allocation, 0 = none)\n"
    "  -i, --interval SECONDS     HEAPWATCH_INTERVAL  between counter snapshots (1)\n"
    "      --window SECONDS       HEAPWATCH_WINDOW    growth-rate window (5)\n"
    "      --warn OBJECTS_PER_S   HEAPWATCH_WARN      warn threshold (500)\n"
    "      --crit OBJECTS_PER_S   HEAPWATCH_CRIT      crit threshold (2000)\n"
    "      --sustain SECONDS      HEAPWATCH_SUSTAIN   time above a threshold before it fires (3)\n"
    "      --grace SECONDS        HEAPWATCH_GRACE     quiet time after start (10)\n"
    "      --profile-interval S   HEAPWATCH_PROFILE_INTERVAL  periodic profiles (0 = off)\n"
    "      --max-profiles N       HEAPWATCH_MAX_PROFILES  interval, signal and http profiles\n"
    "                                                 kept per process, oldest removed (64)\n"
    "      --signal SIG           HEAPWATCH_SIGNAL    signal that requests a profile: USR1,\n"
    "                                                 USR2, RTMIN+n or RTMAX-n (or 10, 12, 34-64)\n"
    "      --http HOST:PORT       HEAPWATCH_HTTP      serve /debug/pprof/heap and /metrics\n"
    "                                                 (port 0: every process its own free port,\n"
    "                                                 listed in OUT/targets.json for Prometheus)\n"
    "      --thread auto|on|off   HEAPWATCH_THREAD    the agent's background thread: only once\n"
    "                                                 needed (auto), from start (on), or none:\n"
    "                                                 allocating threads take the snapshots (off)\n"
    "      --only GLOBS           HEAPWATCH_ONLY      profile only processes whose executable\n"
    "                                                 (or argv[0]) name matches one of these\n"
    "                                                 comma-separated globs, e.g. 'test_*,mydaemon'\n"
    "      --exclude GLOBS        HEAPWATCH_EXCLUDE   never profile these, e.g. 'sh,make,sed';\n"
    "                                                 an excluded process writes nothing, and\n"
    "                                                 the programs it runs follow the same rules\n"
    "      --append               add to the results of an earlier run in the output\n"
    "                             directory (refused without --append or --clean)\n"
    "      --clean                remove the results of an earlier run first\n"
    "  -q, --quiet                no summary on stderr\n"
    "  -h, --help                 this text\n"
    "\n"
    "A process with a sanitizer runtime that replaces malloc (ASan, TSan, MSan,\n"
    "LSan) runs as it does bare: the agent steps aside for it, with one line on\n"
    "stderr. For ASan, verify_asan_link_order=0 is added to ASAN_OPTIONS (after\n"
    "the user's own options, which are kept).\n";

typedef struct {
    const char *name;     /* long option */
    const char *var;      /* environment variable it sets */
} run_option_t;

static const run_option_t run_options[] = {
    { "out", "HEAPWATCH_OUT" },
    { "rate", "HEAPWATCH_RATE" },
    { "interval", "HEAPWATCH_INTERVAL" },
    { "window", "HEAPWATCH_WINDOW" },
    { "warn", "HEAPWATCH_WARN" },
    { "crit", "HEAPWATCH_CRIT" },
    { "sustain", "HEAPWATCH_SUSTAIN" },
    { "grace", "HEAPWATCH_GRACE" },
    { "profile-interval", "HEAPWATCH_PROFILE_INTERVAL" },
    { "max-profiles", "HEAPWATCH_MAX_PROFILES" },
    { "signal", "HEAPWATCH_SIGNAL" },
    { "http", "HEAPWATCH_HTTP" },
    { "thread", "HEAPWATCH_THREAD" },
    { "only", "HEAPWATCH_ONLY" },
    { "exclude", "HEAPWATCH_EXCLUDE" },
};
#define NRUN_OPTIONS (sizeof run_options / sizeof *run_options)

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* find_agent: the path of libheapwatch.so, or NULL. */
static const char *find_agent(char *buf, size_t cap)
{
    const char *env = getenv("HEAPWATCH_AGENT");
    if (env && *env) return file_exists(env) ? env : NULL;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return NULL;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (!slash) return NULL;
    *slash = 0;
    snprintf(buf, cap, "%s/libheapwatch.so", self);
    if (file_exists(buf)) return buf;
    snprintf(buf, cap, "%s/../lib/libheapwatch.so", self);
    if (file_exists(buf)) return buf;
    return NULL;
}

/* summary_path: the newest summary of pid in out_dir: summary.<pid>.json,
 * or summary.<pid>-<n>.json when that name was taken (the agent never
 * replaces another process's file: a re-run, another pid namespace).
 * @return false when there is none. */
static bool summary_path(const char *out_dir, pid_t pid, char *path, size_t cap)
{
    char p[2 * PATH_MAX + 64];
    struct timespec best = { 0, 0 };
    bool found = false;
    for (unsigned n = 1; n <= 1000; n++) {
        if (n == 1) snprintf(p, sizeof p, "%s/summary.%d.json", out_dir, (int)pid);
        else snprintf(p, sizeof p, "%s/summary.%d-%u.json", out_dir, (int)pid, n);
        struct stat st;
        if (stat(p, &st) != 0) {
            if (n > 1) break;   /* tags are taken in order */
            continue;
        }
        if (!found || st.st_mtim.tv_sec > best.tv_sec ||
            (st.st_mtim.tv_sec == best.tv_sec && st.st_mtim.tv_nsec >= best.tv_nsec)) {
            best = st.st_mtim;
            snprintf(path, cap, "%s", p);
            found = true;
        }
    }
    return found;
}

static bool summary_exists(const char *out_dir, pid_t pid)
{
    char path[2 * PATH_MAX + 64];
    return summary_path(out_dir, pid, path, sizeof path);
}

/* or_minus1: a number of the summary, or -1 when it is missing. */
static double or_minus1(double x)
{
    return isnan(x) ? -1 : x;
}

/* ------------------------------------------------------------------------ */
/* Sanitized executables                                                    */
/* ------------------------------------------------------------------------ */

/* The names that mark a sanitizer runtime replacing malloc: in DT_NEEDED
 * (a shared runtime: gcc's libasan.so.8, clang's libclang_rt.asan-*.so) or
 * in the dynamic symbol table (the executable calls or, with clang's static
 * runtime, exports its init function). UBSan is not here: the agent
 * profiles a UBSan-only program as any other. */
static const struct { const char *marker, *name; } sanitizer_marks[] = {
    { "__asan_init", "AddressSanitizer" }, { "libasan.so", "AddressSanitizer" },
    { "clang_rt.asan", "AddressSanitizer" },
    { "__hwasan_init", "HWAddressSanitizer" }, { "clang_rt.hwasan", "HWAddressSanitizer" },
    { "__tsan_init", "ThreadSanitizer" }, { "libtsan.so", "ThreadSanitizer" },
    { "clang_rt.tsan", "ThreadSanitizer" },
    { "__msan_init", "MemorySanitizer" }, { "clang_rt.msan", "MemorySanitizer" },
    { "__lsan_init", "LeakSanitizer" }, { "liblsan.so", "LeakSanitizer" },
    { "clang_rt.lsan", "LeakSanitizer" },
};

static const char *sanitizer_mark(const char *name)
{
    for (size_t i = 0; i < sizeof sanitizer_marks / sizeof *sanitizer_marks; i++) {
        const char *m = sanitizer_marks[i].marker;
        if (m[0] == '_' ? strcmp(name, m) == 0 : strstr(name, m) != NULL) return sanitizer_marks[i].name;
    }
    return NULL;
}

/* read_at: len bytes at off into a new buffer (NULL when short or over
 * 64 MiB: no real dynamic table is that large). */
static void *read_at(int fd, uint64_t off, uint64_t len)
{
    if (len == 0 || len > (64u << 20)) return NULL;
    char *buf = malloc(len);
    if (!buf) return NULL;
    if (pread(fd, buf, len, (off_t)off) != (ssize_t)len) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* section_sanitizer: the sanitizer named by a string in section `sec` (its
 * entries: DT_NEEDED of SHT_DYNAMIC, names of SHT_DYNSYM) or NULL. */
static const char *section_sanitizer(int fd, const Elf64_Shdr *sh, const Elf64_Shdr *strsh)
{
    const char *found = NULL;
    char *strs = read_at(fd, strsh->sh_offset, strsh->sh_size);
    char *ents = read_at(fd, sh->sh_offset, sh->sh_size);
    if (strs && ents && strs[strsh->sh_size - 1] == 0) {
        bool dyn = sh->sh_type == SHT_DYNAMIC;
        size_t each = dyn ? sizeof(Elf64_Dyn) : sizeof(Elf64_Sym);
        for (size_t i = 0; !found && i < sh->sh_size / each; i++) {
            uint64_t name;
            if (dyn) {
                const Elf64_Dyn *d = (const Elf64_Dyn *)(ents + i * each);
                if (d->d_tag != DT_NEEDED) continue;
                name = d->d_un.d_val;
            } else {
                const Elf64_Sym *sym = (const Elf64_Sym *)(ents + i * each);
                name = sym->st_name;
                /* Its own malloc, exported: found before the agent's, which
                 * then steps aside (gcc's -static-libasan, -static-libtsan). */
                if (sym->st_shndx != SHN_UNDEF && name < strsh->sh_size &&
                    strcmp(strs + name, "malloc") == 0) {
                    found = "its own malloc";
                    break;
                }
            }
            if (name < strsh->sh_size) found = sanitizer_mark(strs + name);
        }
    }
    free(strs);
    free(ents);
    return found;
}

/* elf_sanitizer: the sanitizer runtime an ELF executable carries (or "its
 * own malloc" when it exports one), for which the agent steps aside; NULL
 * when none (not ELF, not 64-bit, unreadable: NULL too). */
static const char *elf_sanitizer(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    const char *found = NULL;
    Elf64_Ehdr eh;
    Elf64_Shdr *sh = NULL;
    if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
        eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_shentsize == sizeof(Elf64_Shdr) && eh.e_shnum > 0)
        sh = read_at(fd, eh.e_shoff, (uint64_t)eh.e_shnum * sizeof *sh);
    for (unsigned i = 0; sh && !found && i < eh.e_shnum; i++) {
        if ((sh[i].sh_type == SHT_DYNAMIC || sh[i].sh_type == SHT_DYNSYM) && sh[i].sh_link < eh.e_shnum)
            found = section_sanitizer(fd, &sh[i], &sh[sh[i].sh_link]);
    }
    free(sh);
    close(fd);
    return found;
}

/* program_path: PROGRAM as execvp finds it (a name without '/' searched
 * in $PATH), into buf; false when not found. */
static bool program_path(const char *prog, char *buf, size_t cap)
{
    if (strchr(prog, '/')) {
        snprintf(buf, cap, "%s", prog);
        return true;
    }
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/bin:/usr/bin";
    for (const char *p = path; ; ) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        snprintf(buf, cap, "%.*s%s%s", (int)len, p, len ? "/" : "", prog);
        if (access(buf, X_OK) == 0 && file_exists(buf)) return true;
        if (!end) return false;
        p = end + 1;
    }
}

/* add_asan_option: ASAN_OPTIONS += verify_asan_link_order=0, so ASan's
 * shared runtime accepts the agent preloaded before it (and the agent then
 * steps aside). The user's options stay, in order, first; one they set
 * for verify_asan_link_order themselves is theirs to keep. */
static int add_asan_option(void)
{
    static const char opt[] = "verify_asan_link_order=0";
    const char *old = getenv("ASAN_OPTIONS");
    if (!old || !*old) return setenv("ASAN_OPTIONS", opt, 1);
    if (strstr(old, "verify_asan_link_order")) return 0;
    size_t len = strlen(old) + sizeof opt + 1;
    char *v = malloc(len);
    if (!v) return -1;
    snprintf(v, len, "%s:%s", old, opt);
    int r = setenv("ASAN_OPTIONS", v, 1);
    free(v);
    return r;
}

/* report_no_summary: why PROGRAM left no summary, as far as we know. */
/* count_summaries: the summary.*.json files in out_dir. */
static size_t count_summaries(const char *out_dir)
{
    DIR *d = opendir(out_dir);
    if (!d) return 0;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "summary.", 8) == 0 && len > 13 && strcmp(e->d_name + len - 5, ".json") == 0) n++;
    }
    closedir(d);
    return n;
}

static void report_no_summary(const char *out_dir, pid_t pid, const char *prog, int status)
{
    char path[PATH_MAX + 64];
    if (program_path(prog, path, sizeof path) && elf_sanitizer(path))
        return;   /* the agent stepped aside, and said so in its one line */
    char how[64];
    if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
    const char *only = getenv("HEAPWATCH_ONLY"), *exclude = getenv("HEAPWATCH_EXCLUDE");
    if ((only && *only) || (exclude && *exclude)) {
        fprintf(stderr, "heapwatch: %s (pid %d) %s; not profiled itself (--only/--exclude); "
                "%zu profiled process(es) left results in %s\n",
                fmt_clean(prog), (int)pid, how, count_summaries(out_dir), fmt_clean(out_dir));
        return;
    }
    fprintf(stderr, "heapwatch: %s (pid %d) %s and left no heapwatch summary in %s%s\n",
            fmt_clean(prog), (int)pid, how, fmt_clean(out_dir),
            WIFSIGNALED(status) ? "" : " (the agent did not run in it, stepped aside, or could not write there)");
}

/* print_summary: the agent's summary.<pid>.json, in two lines; or why
 * there is none. */
static void print_summary(const char *out_dir, pid_t pid, const char *prog, int status)
{
    char path[2 * PATH_MAX + 64];
    FILE *f = summary_path(out_dir, pid, path, sizeof path) ? fopen(path, "r") : NULL;
    if (!f) {
        report_no_summary(out_dir, pid, prog, status);
        return;
    }
    fclose(f);
    rundir_summary_t s;
    if (!rundir_read_summary(path, &s)) {
        fprintf(stderr, "heapwatch: %s (pid %d): cannot read %s\n", fmt_clean(prog), (int)pid, fmt_clean(path));
        return;
    }
    fprintf(stderr,
            "heapwatch: %s (pid %d): %.0f allocations (%s), %.0f frees; "
            "at exit %.0f live objects, %s live (peak %s)\n"
            "heapwatch: results in %s\n",
            fmt_clean(prog), (int)pid, or_minus1(s.mallocs), fmt_bytes(or_minus1(s.alloc_bytes)), or_minus1(s.frees),
            or_minus1(s.live_objects), fmt_bytes(or_minus1(s.live_bytes)), fmt_bytes(or_minus1(s.peak_live_bytes)),
            fmt_clean(out_dir));
}

/* print_tree_summary: when the program ran others under the agent (a
 * shell, make, a test runner), the verdict of the whole tree, as check
 * opens with it (runsum.h). */
static void print_tree_summary(const char *out_dir)
{
    if (count_summaries(out_dir) < 2) return;
    rundir_t rd;
    char msg[256];
    if (rundir_load(out_dir, &rd, msg, sizeof msg) == RUNDIR_OK && rd.nprocs > 1) {
        runsum_t sum;
        if (runsum_build(&rd, NULL, &sum) == 0) {
            runsum_print(stderr, &sum, "heapwatch: ", 3);
            runsum_free(&sum);
        }
    }
    rundir_free(&rd);
}

/* set_preload: LD_PRELOAD = agent [+ ' ' + what the user had]: the agent
 * first, so a preloaded allocator is the next malloc it finds. @return 0,
 * or -1 (out of memory). */
static int set_preload(const char *agent)
{
    const char *old = getenv("LD_PRELOAD");
    if (!old || !*old) return setenv("LD_PRELOAD", agent, 1);
    size_t len = strlen(agent) + strlen(old) + 2;
    char *v = malloc(len);
    if (!v) return -1;
    snprintf(v, len, "%s %s", agent, old);
    int r = setenv("LD_PRELOAD", v, 1);
    free(v);
    return r;
}

/* stale_name: a file a run leaves in its output directory: the agent's
 * results, and what report and check write there by default. */
static bool stale_name(const char *name)
{
    return rundir_is_result_name(name) || strcmp(name, "report.html") == 0 || strcmp(name, "junit.xml") == 0 ||
           strcmp(name, "targets.json") == 0 ||
           (strncmp(name, "http.", 5) == 0 && strlen(name) > 10 && strcmp(name + strlen(name) - 5, ".addr") == 0);
}

/* earlier_results_ok: whether the run may go on in out_dir: it holds no
 * result of an earlier run, or append, or clean (which removes them, and
 * only them, through the directory's descriptor: never a file elsewhere
 * through a link). A refusal is one line. */
static bool earlier_results_ok(const char *out_dir, int append, int clean)
{
    int dfd = open(out_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return true;   /* none yet (or the agent says why it cannot write) */
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return true;
    }
    size_t found = 0, removed = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!stale_name(e->d_name)) continue;
        found++;
        if (clean && unlinkat(dirfd(d), e->d_name, 0) == 0) removed++;
    }
    closedir(d);
    if (!found || append) return true;
    if (clean) {
        if (removed == found) return true;
        fprintf(stderr, "heapwatch run: --clean: %zu of the %zu earlier result files in %s could not be removed\n",
                found - removed, found, fmt_clean(out_dir));
        return false;
    }
    fprintf(stderr, "heapwatch run: %s holds %zu result files of an earlier run: give --append to add to them, "
            "or --clean to remove them first\n", fmt_clean(out_dir), found);
    return false;
}

static int cmd_run(int argc, char **argv)
{
    enum { OPT_BASE = 256 };
    enum { OPT_APPEND = 'a' + 1000, OPT_CLEAN };
    struct option longopts[NRUN_OPTIONS + 5];
    for (size_t i = 0; i < NRUN_OPTIONS; i++)
        longopts[i] = (struct option){ run_options[i].name, required_argument, NULL, (int)(OPT_BASE + i) };
    longopts[NRUN_OPTIONS] = (struct option){ "quiet", no_argument, NULL, 'q' };
    longopts[NRUN_OPTIONS + 1] = (struct option){ "help", no_argument, NULL, 'h' };
    longopts[NRUN_OPTIONS + 2] = (struct option){ "append", no_argument, NULL, OPT_APPEND };
    longopts[NRUN_OPTIONS + 3] = (struct option){ "clean", no_argument, NULL, OPT_CLEAN };
    longopts[NRUN_OPTIONS + 4] = (struct option){ NULL, 0, NULL, 0 };
    int quiet = 0, append = 0, clean = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+o:r:i:qh", longopts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage_run, stdout);
            return 0;
        }
        if (c == 'q') { quiet = 1; continue; }
        if (c == OPT_APPEND) { append = 1; continue; }
        if (c == OPT_CLEAN) { clean = 1; continue; }
        const char *var = NULL;
        if (c == 'o') var = "HEAPWATCH_OUT";
        else if (c == 'r') var = "HEAPWATCH_RATE";
        else if (c == 'i') var = "HEAPWATCH_INTERVAL";
        else if (c >= OPT_BASE && c < OPT_BASE + (int)NRUN_OPTIONS) var = run_options[c - OPT_BASE].var;
        if (!var) {
            fputs(usage_run, stderr);
            return EXIT_USAGE;
        }
        setenv(var, optarg, 1);
    }
    if (optind >= argc) {
        fprintf(stderr, "heapwatch run: no program given\n%s", usage_run);
        return EXIT_USAGE;
    }
    char agent_buf[PATH_MAX + 64];
    const char *agent = find_agent(agent_buf, sizeof agent_buf);
    if (!agent) {
        fprintf(stderr, "heapwatch run: cannot find libheapwatch.so (set HEAPWATCH_AGENT)\n");
        return EXIT_USAGE;
    }
    /* The output directory, made absolute now, so the summary is found
     * whatever the program does with its working directory. */
    const char *out = getenv("HEAPWATCH_OUT");
    char out_abs[PATH_MAX + PATH_MAX + 2];
    if (!out || !*out) out = "heapwatch-out";
    if (strlen(out) >= PATH_MAX) {
        fprintf(stderr, "heapwatch run: --out: path too long\n");
        return EXIT_USAGE;
    }
    if (out[0] == '/') {
        snprintf(out_abs, sizeof out_abs, "%s", out);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
        snprintf(out_abs, sizeof out_abs, "%s/%s", cwd, out);
    }
    if (append && clean) {
        fprintf(stderr, "heapwatch run: --append and --clean exclude each other\n");
        return EXIT_USAGE;
    }
    if (!earlier_results_ok(out_abs, append, clean)) return EXIT_USAGE;
    setenv("HEAPWATCH_OUT", out_abs, 1);
    if (add_asan_option() != 0) {
        fprintf(stderr, "heapwatch run: cannot set ASAN_OPTIONS: %s\n", strerror(errno));
        return EXIT_USAGE;
    }
    if (set_preload(agent) != 0) {
        fprintf(stderr, "heapwatch run: cannot set LD_PRELOAD: %s\n", strerror(errno));
        return EXIT_USAGE;
    }

    char **prog = argv + optind;
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "heapwatch run: fork: %s\n", strerror(errno));
        return EXIT_USAGE;
    }
    if (pid == 0) {
        execvp(prog[0], prog);
        fprintf(stderr, "heapwatch run: cannot run %s: %s\n", fmt_clean(prog[0]), strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    /* Like a shell waiting for a foreground job: the terminal's ^C and ^\
     * go to the program; we report how it ended. */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "heapwatch run: waitpid: %s\n", strerror(errno));
            return EXIT_USAGE;
        }
    }
    /* 126/127 with no summary: the exec itself failed, already reported. */
    bool exec_failed = WIFEXITED(status) && WEXITSTATUS(status) >= 126;
    if (!quiet && !(exec_failed && !summary_exists(out_abs, pid))) {
        print_summary(out_abs, pid, prog[0], status);
        print_tree_summary(out_abs);
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(verb, "--version") == 0) {
        printf("heapwatch %s\n", HEAPWATCH_VERSION);
        return 0;
    }
    if (strcmp(verb, "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(verb, "check") == 0) return cmd_check(argc - 1, argv + 1);
    if (strcmp(verb, "report") == 0) return cmd_report(argc - 1, argv + 1);
    fprintf(stderr, "heapwatch: unknown verb '%s'\n%s", fmt_clean(verb), usage_main);
    return EXIT_USAGE;
}
