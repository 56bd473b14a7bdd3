/*
 * rundir_list.c - which files of a directory are the agent's: names
 * matched exactly against its patterns (rundir_internal.h, rundir_list).
 *
 *   summary.<tag>.json   timeline.<tag>.jsonl.zst   alerts.<tag>.jsonl
 *   heap.<tag>.<seq>.<reason>.pb.gz
 *
 * with <tag> = <pid>, or <pid>-<n> (n >= 2) for a later process with a pid
 * already used in the directory. Digits are read to at most 18 (a longer
 * number is not a name of ours, and cannot overflow). Everything else -
 * the agent's temporary files, other programs' files - is ignored; so are
 * names that match but are not regular files.
 */
#define _GNU_SOURCE
#include "tools/rundir_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* eat_digits: parses [0-9]+ at *s into *v (at most 18 digits). */
static bool eat_digits(const char **s, unsigned long *v, int *ndigits)
{
    const char *p = *s;
    unsigned long x = 0;
    int n = 0;
    while (*p >= '0' && *p <= '9' && n < 18) {
        x = x * 10 + (unsigned long)(*p - '0');
        p++;
        n++;
    }
    if (n == 0 || (*p >= '0' && *p <= '9')) return false;
    *s = p;
    *v = x;
    if (ndigits) *ndigits = n;
    return true;
}

static bool eat(const char **s, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*s, lit, n) != 0) return false;
    *s += n;
    return true;
}

/* eat_tag: the agent's process tag, <pid> or <pid>-<n> (n >= 2: a second
 * process with the same pid in the same directory, e.g. from another pid
 * namespace; the agent never replaces another process's file). */
static bool eat_tag(const char **s, unsigned long *pid, unsigned long *inst)
{
    if (!eat_digits(s, pid, NULL)) return false;
    *inst = 1;
    const char *p = *s;
    if (*p == '-') {
        p++;
        unsigned long n;
        if (!eat_digits(&p, &n, NULL) || n < 2) return false;
        *inst = n;
        *s = p;
    }
    return true;
}

/* parse_profile_name: heap.<tag>.<seq>.<reason>.pb.gz, reason [a-z0-9_-]+. */
static bool parse_profile_name(const char *name, rundir_entry_t *e)
{
    const char *s = name;
    unsigned long pid, seq, inst;
    if (!eat(&s, "heap.") || !eat_tag(&s, &pid, &inst) || !eat(&s, ".")) return false;
    if (!eat_digits(&s, &seq, NULL) || !eat(&s, ".")) return false;
    const char *r = s;
    while ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-') s++;
    if (s == r || strcmp(s, ".pb.gz") != 0) return false;
    e->reason = strndup(r, (size_t)(s - r));
    if (!e->reason) return false;
    e->pid = (long)pid;
    e->inst = inst;
    e->seq = seq;
    e->kind = F_PROFILE;
    return true;
}

/* classify: whether name is one of the agent's files; fills *e. */
static bool classify(const char *name, rundir_entry_t *e)
{
    static const struct {
        const char *prefix, *suffix;
        rundir_kind_t kind;
    } pats[] = {
        { "summary.", ".json", F_SUMMARY },
        { "timeline.", ".jsonl.zst", F_TIMELINE },
        { "alerts.", ".jsonl", F_ALERTS },
    };
    memset(e, 0, sizeof *e);
    for (size_t i = 0; i < sizeof pats / sizeof *pats; i++) {
        const char *s = name;
        unsigned long pid, inst;
        if (eat(&s, pats[i].prefix) && eat_tag(&s, &pid, &inst) && strcmp(s, pats[i].suffix) == 0) {
            e->pid = (long)pid;
            e->inst = inst;
            e->kind = pats[i].kind;
            return true;
        }
    }
    return parse_profile_name(name, e);
}

bool rundir_is_result_name(const char *name)
{
    rundir_entry_t e;
    if (!classify(name, &e)) return false;
    free(e.reason);
    return true;
}

static int cmp_entry(const void *a, const void *b)
{
    const rundir_entry_t *x = a, *y = b;
    if (x->pid != y->pid) return x->pid < y->pid ? -1 : 1;
    if (x->inst != y->inst) return x->inst < y->inst ? -1 : 1;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* is_regular: dir/name is a regular file; *size its size. */
static bool is_regular(const char *dir, const char *name, unsigned long long *size)
{
    char *path;
    if (asprintf(&path, "%s/%s", dir, name) < 0) return false;
    struct stat st;
    bool ok = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    free(path);
    *size = ok ? (unsigned long long)st.st_size : 0;
    return ok;
}

void rundir_entries_free(rundir_entry_t *es, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(es[i].name);
        free(es[i].reason);
    }
    free(es);
}

rundir_err_t rundir_list(const char *dir, rundir_entry_t **out, size_t *nout, size_t *skipped, char *msg, size_t cap)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        rundir_set_msg(msg, cap, "%s: %s", dir, strerror(errno));
        return RUNDIR_ERR_OPEN;
    }
    if (!S_ISDIR(st.st_mode)) {
        rundir_set_msg(msg, cap, "%s: not a directory", dir);
        return RUNDIR_ERR_NOTDIR;
    }
    DIR *d = opendir(dir);
    if (!d) {
        rundir_set_msg(msg, cap, "%s: %s", dir, strerror(errno));
        return RUNDIR_ERR_OPEN;
    }
    rundir_entry_t *es = NULL;
    size_t n = 0, ecap = 0;
    struct dirent *de;
    rundir_err_t err = RUNDIR_OK;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        rundir_entry_t e;
        if (!classify(de->d_name, &e)) continue;
        if (n >= RUNDIR_FILES_MAX) {
            free(e.reason);
            (*skipped)++;
            errno = 0;
            continue;
        }
        if (!is_regular(dir, de->d_name, &e.size) || !rundir_grow((void **)&es, &ecap, n, sizeof *es) ||
            !(e.name = strdup(de->d_name))) {
            free(e.reason);
            continue;   /* not a file (or out of memory: one file fewer) */
        }
        es[n++] = e;
        errno = 0;
    }
    if (errno != 0) {
        rundir_set_msg(msg, cap, "%s: %s", dir, strerror(errno));
        err = RUNDIR_ERR_OPEN;
    }
    closedir(d);
    if (err) {
        rundir_entries_free(es, n);
        return err;
    }
    if (n) qsort(es, n, sizeof *es, cmp_entry);
    *out = es;
    *nout = n;
    return RUNDIR_OK;
}
