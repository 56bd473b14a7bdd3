/*
 * rundir_summary.c - summary.<tag>.json, the counters at exit
 * (rundir_internal.h). The file is read whole, at most SUMMARY_MAX bytes,
 * and must be one JSON object.
 */
#define _GNU_SOURCE
#include "tools/rundir_internal.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* read_small_file: the whole file dir/name (or the path name, when dir is
 * NULL), at most max bytes, NUL-terminated. */
static char *read_small_file(const char *dir, const char *name, size_t max, size_t *len, const char **why)
{
    FILE *f = dir ? rundir_open(dir, name) : fopen(name, "rb");
    if (!f) {
        *why = strerror(errno);
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad || n > max) {
        *why = !buf ? "out of memory" : bad ? "read error" : "too large";
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* The numeric fields of a summary (agent/records.h). */
#define SUMMARY_FIELD(name, type, doc) RUNDIR_FIELD_##type(rundir_summary_t, name)
static const rundir_field_t summary_fields[] = { HEAPWATCH_SUMMARY_FIELDS(SUMMARY_FIELD) };

/* decode: the fields of a summary object into *s (NAN for those it lacks). */
static void decode(const json_t *v, rundir_summary_t *s)
{
    rundir_json_fields(v, summary_fields, sizeof summary_fields / sizeof *summary_fields, s);
    if (isnan(s->duration_s) && !isnan(s->start_time) && !isnan(s->end_time))
        s->duration_s = s->end_time - s->start_time;
}

/* shrink: buf (n bytes and a NUL, built in room for RUNDIR_CMDLINE_MAX)
 * copied to its size, buf freed: 20,000 processes keep their command
 * lines, not 20,000 buffers of 8 KiB. */
static char *shrink(char *buf, size_t n)
{
    char *exact = malloc(n + 1);
    if (exact) memcpy(exact, buf, n + 1);
    free(buf);
    return exact;
}

/* put_c, put_s: a byte, a string onto buf[*n], as far as RUNDIR_CMDLINE_MAX. */
static void put_c(char *buf, size_t *n, char c)
{
    if (*n < RUNDIR_CMDLINE_MAX) buf[(*n)++] = c;
}

static void put_s(char *buf, size_t *n, const char *s)
{
    while (*s) put_c(buf, n, *s++);
}

/* take_cmdline: p's cmdline from obj's "cmdline" (an array of strings):
 * the arguments joined by spaces, one holding a space, a quote, a shell
 * character or nothing in single quotes (' as '\''), as a shell reads it
 * back; cut at RUNDIR_CMDLINE_MAX bytes. */
static void take_cmdline(rundir_proc_t *p, const json_t *obj)
{
    const json_t *args = json_object_get(obj, "cmdline");
    if (!json_array_size(args)) return;
    char *buf = malloc(RUNDIR_CMDLINE_MAX + 1);
    if (!buf) return;
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(args); i++) {
        const char *a = json_string_value(json_array_get(args, i));
        if (!a) a = "?";
        bool quote = !*a || strpbrk(a, " \t\n'\"\\$`;&|<>()*?~#!{}[]") != NULL;
        if (i) put_c(buf, &n, ' ');
        if (quote) put_c(buf, &n, '\'');
        for (; *a; a++) {
            if (*a == '\'' && quote) put_s(buf, &n, "'\\''");
            else put_c(buf, &n, *a);
        }
        if (quote) put_c(buf, &n, '\'');
    }
    buf[n] = 0;
    free(p->cmdline);
    p->cmdline = shrink(buf, n);
}

/* is_operand: an argument that names a file or a number (what changes from
 * one run of a command to the next): not an option, and holding a '/', a
 * '.', or only digits. */
static bool is_operand(const char *a)
{
    if (a[0] == '-' && a[1]) return false;
    if (strchr(a, '/') || strchr(a, '.')) return true;
    return *a && strspn(a, "0123456789") == strlen(a);
}

/* take_pattern: p's command pattern: the executable's name from argv[0],
 * then the arguments, each operand (is_operand) as '*' and a run of them
 * as one: "cc1 -quiet /tmp/a.c -o /tmp/a.s" -> "cc1 -quiet * -o *". */
static void take_pattern(rundir_proc_t *p, const json_t *obj)
{
    const json_t *args = json_object_get(obj, "cmdline");
    if (!json_array_size(args)) return;
    char *buf = malloc(RUNDIR_CMDLINE_MAX + 1);
    if (!buf) return;
    size_t n = 0;
    bool star = false;
    for (size_t i = 0; i < json_array_size(args); i++) {
        const char *a = json_string_value(json_array_get(args, i));
        if (!a) a = "?";
        if (i == 0) {
            const char *slash = strrchr(a, '/');
            put_s(buf, &n, slash && slash[1] ? slash + 1 : a);
            continue;
        }
        bool operand = is_operand(a);
        if (operand && star) continue;
        star = operand;
        put_c(buf, &n, ' ');
        put_s(buf, &n, operand ? "*" : a);
    }
    buf[n] = 0;
    free(p->cmd_pattern);
    p->cmd_pattern = shrink(buf, n);
}

void rundir_load_summary(rundir_proc_t *p, const char *dir, const char *name)
{
    size_t len = 0;
    const char *why = NULL;
    char *text = read_small_file(dir, name, SUMMARY_MAX, &len, &why);
    if (!text) {
        RUNDIR_ERROR(p, "%s: %s", name, why);
        return;
    }
    json_t *v = rundir_json_doc(p, name, text, len);
    free(text);
    if (!v) return;
    decode(v, &p->summary);
    if (!isnan(p->summary.pid) && p->summary.pid != (double)p->pid)
        RUNDIR_NOTE(p, "%s: says pid %.0f", name, p->summary.pid);
    free(p->exe);
    p->exe = NULL;
    rundir_take_exe(p, v);   /* the summary's word wins over a record's */
    take_cmdline(p, v);
    const char *peak = rundir_json_str(v, "peak_profile");
    free(p->peak_profile);
    p->peak_profile = peak && *peak ? strndup(peak, EXE_MAX) : NULL;
    take_pattern(p, v);
    const char *owner = rundir_json_str(v, "malloc_owner");
    free(p->malloc_owner);
    p->malloc_owner = owner ? strndup(owner, EXE_MAX) : NULL;
    p->has_summary = true;
    json_decref(v);
}

bool rundir_read_summary(const char *path, rundir_summary_t *s)
{
    size_t len = 0;
    const char *why = NULL;
    char *text = read_small_file(NULL, path, SUMMARY_MAX, &len, &why);
    if (!text) return false;
    json_t *v;
    size_t at;
    bool ok = !rundir_json_parse(text, len, &v, &at) && json_is_object(v);
    free(text);
    if (ok) decode(v, s);
    json_decref(v);
    return ok;
}
