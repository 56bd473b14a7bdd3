/*
 * rundir_json.c - one JSON text of the agent's files read into a tree, and
 * what is said when it cannot be (rundir_internal.h).
 */
#define _GNU_SOURCE
#include "tools/rundir_internal.h"

#include <math.h>
#include <string.h>

json_t *rundir_json_line(rundir_reader_t *rd, const char *line, size_t len)
{
    json_t *v = NULL;
    size_t off = 0;
    json_err_t jerr = json_parse(line, len, &v, &off);
    if (jerr == JSON_OK && v->type == JSON_OBJECT) return v;
    if (rd->bad++ == 0) {
        if (jerr != JSON_OK)
            ERROR(rd->proc, "%s: line %zu: %s at byte %zu", rd->file, rd->lineno, json_strerror(jerr), off);
        else ERROR(rd->proc, "%s: line %zu: not a JSON object", rd->file, rd->lineno);
    }
    json_free(v);
    return NULL;
}

json_t *rundir_json_doc(rundir_proc_t *p, const char *name, const char *text, size_t len)
{
    json_t *v = NULL;
    size_t off = 0;
    json_err_t jerr = json_parse(text, len, &v, &off);
    if (jerr == JSON_OK && v->type == JSON_OBJECT) return v;
    if (jerr != JSON_OK) ERROR(p, "%s: %s at byte %zu", name, json_strerror(jerr), off);
    else ERROR(p, "%s: not a JSON object", name);
    json_free(v);
    return NULL;
}

double rundir_json_num(const json_t *obj, const char *key)
{
    double v;
    return json_get_num(obj, key, &v) && isfinite(v) ? v : NAN;
}

void rundir_take_exe(rundir_proc_t *p, const json_t *obj)
{
    const char *exe = json_get_str(obj, "exe");
    if (exe && !p->exe) p->exe = strndup(exe, EXE_MAX);
}

void rundir_bad_record(rundir_reader_t *rd, const char *why)
{
    if (rd->bad++ == 0) ERROR(rd->proc, "%s: line %zu: %s", rd->file, rd->lineno, why);
}

void rundir_report_bad(const rundir_reader_t *rd)
{
    if (rd->bad > 1) ERROR(rd->proc, "%s: %zu bad lines in all", rd->file, rd->bad);
}
