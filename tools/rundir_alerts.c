/*
 * rundir_alerts.c - alerts.<tag>.jsonl: one record per alert raised or
 * ended (rundir_internal.h).
 *
 * A record needs a "time" and a "level" (warn or crit); a line with
 * another "event" than alert or recovery is skipped (noted once). The
 * agent writes each line whole, so a last line without its newline was
 * cut by a crash: a note, unless it parses.
 *
 * Caps. A process keeps ALERTS_PER_PROC alerts and the directory
 * ALERT_BYTES_BUDGET bytes of them (an alert costs its line's length plus
 * 64 bytes per stack and frame kept); of each alert at most TOP_KEPT
 * stacks of FRAMES_KEPT frames. An alert past the caps is counted in
 * alerts_dropped, unless its level is higher than every level kept for the
 * process: then it is kept without its stacks and profile, its metric cut
 * to 64 bytes - at most two such per process (warn, crit), so the worst
 * level is never lost.
 */
#define _GNU_SOURCE
#include "tools/rundir_internal.h"
#include "tools/rundir_lines.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The numeric fields of an alert and of a stack of its top (agent/records.h). */
#define ALERT_FIELD(name, type, doc) RUNDIR_FIELD_##type(rundir_alert_t, name)
static const rundir_field_t alert_fields[] = { HEAPWATCH_ALERT_FIELDS(ALERT_FIELD) };
#define TOP_FIELD(name, type, doc) RUNDIR_FIELD_##type(rundir_stack_t, name)
static const rundir_field_t top_fields[] = { HEAPWATCH_ALERT_TOP_FIELDS(TOP_FIELD) };

/* alerts_t: the state of one alerts file being read. */
typedef struct {
    rundir_reader_t rd;
    rundir_lines_t lines;
    size_t items_cap;          /* capacity of proc->alerts */
    size_t skipped_events;     /* events of another kind */
    int worst_kept;            /* highest level kept so far (0 none) */
    rundir_budget_t *budget;
} alerts_t;

static void free_stack(rundir_stack_t *s)
{
    free(s->function);
    for (size_t i = 0; i < s->nframes; i++) free(s->frames[i]);
    free(s->frames);
}

static void free_alert(rundir_alert_t *a)
{
    free(a->metric);
    free(a->profile);
    for (size_t i = 0; i < a->ntop; i++) free_stack(&a->top[i]);
    free(a->top);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* parse_stack: one entry of "top". @return false out of memory or when
 * the entry is not an object. */
static bool parse_stack(const json_t *v, rundir_stack_t *s)
{
    memset(s, 0, sizeof *s);
    if (!json_is_object(v)) return false;
    const json_t *st = json_object_get(v, "stack");
    if (json_array_size(st)) {
        size_t n = json_array_size(st) < FRAMES_KEPT ? json_array_size(st) : FRAMES_KEPT;
        s->frames = calloc(n, sizeof *s->frames);
        if (!s->frames) return false;
        for (size_t i = 0; i < n; i++) {
            const json_t *fr = json_array_get(st, i);
            s->frames[i] = strdup(json_string_length(fr) ? json_string_value(fr) : "?");
            if (!s->frames[i]) return false;
            s->nframes++;
        }
    }
    const char *fn = rundir_json_str(v, "function");
    s->function = strdup(fn && *fn ? fn : s->nframes ? s->frames[0] : "?");
    rundir_json_fields(v, top_fields, sizeof top_fields / sizeof *top_fields, s);
    return s->function != NULL;
}

/* parse_alert: fills *a from a record; @return NULL or why it is bad. */
static const char *parse_alert(const json_t *v, rundir_alert_t *a)
{
    memset(a, 0, sizeof *a);
    rundir_json_fields(v, alert_fields, sizeof alert_fields / sizeof *alert_fields, a);
    if (isnan(a->time)) return "no \"time\"";
    const char *level = rundir_json_str(v, "level");
    if (!level) return "no \"level\"";
    if (strcmp(level, "warn") == 0) a->level = RUNDIR_WARN;
    else if (strcmp(level, "crit") == 0) a->level = RUNDIR_CRIT;
    else return "\"level\" is neither \"warn\" nor \"crit\"";
    const char *event = rundir_json_str(v, "event");
    a->recovery = event && strcmp(event, "recovery") == 0;
    const char *metric = rundir_json_str(v, "metric");
    a->metric = strdup(metric && *metric ? metric : "objects_rate");
    a->profile = dup_or_null(rundir_json_str(v, "profile"));
    if (!a->metric) return "out of memory";
    const json_t *top = json_object_get(v, "top");
    if (json_array_size(top)) {
        size_t n = json_array_size(top) < TOP_KEPT ? json_array_size(top) : TOP_KEPT;
        a->top = calloc(n, sizeof *a->top);
        if (!a->top) return "out of memory";
        for (size_t i = 0; i < n; i++) {
            bool ok = parse_stack(json_array_get(top, i), &a->top[a->ntop]);
            a->ntop++;   /* freed with the alert even when half-filled */
            if (!ok) return "an entry of \"top\" is not a stack object";
        }
    } else if (top && !json_is_array(top) && !json_is_null(top)) {
        return "\"top\" is not an array";
    }
    return NULL;
}

/* keep_alert: whether a parsed alert is kept: whole within the caps;
 * past them only when it raises the worst level kept, then without its
 * stacks and profile (at most two such per process: warn, crit). */
static bool keep_alert(alerts_t *al, rundir_alert_t *a, size_t len)
{
    size_t cost = len + 64;
    for (size_t i = 0; i < a->ntop; i++) cost += 64 * (1 + a->top[i].nframes);
    if (al->rd.proc->nalerts < ALERTS_PER_PROC && cost <= al->budget->alert_bytes_left) {
        al->budget->alert_bytes_left -= cost;
        return true;
    }
    if (a->recovery || (int)a->level <= al->worst_kept) return false;
    for (size_t i = 0; i < a->ntop; i++) free_stack(&a->top[i]);
    free(a->top);
    a->top = NULL;
    a->ntop = 0;
    free(a->profile);
    a->profile = NULL;
    if (strlen(a->metric) > 64) a->metric[64] = 0;
    return true;
}

/* alerts_line: one record (rundir_lines_fn). */
static bool alerts_line(void *ctx, const char *line, size_t len, size_t lineno)
{
    alerts_t *al = ctx;
    rundir_proc_t *p = al->rd.proc;
    al->rd.lineno = lineno;
    json_t *v = rundir_json_line(&al->rd, line, len);
    if (!v) return true;
    const char *event = rundir_json_str(v, "event");
    if (event && strcmp(event, "alert") != 0 && strcmp(event, "recovery") != 0) {
        if (al->skipped_events++ == 0) RUNDIR_NOTE(p, "%s: line %zu: event \"%s\" ignored", al->rd.file, lineno, event);
        json_decref(v);
        return true;
    }
    rundir_alert_t a;
    const char *why = parse_alert(v, &a);
    rundir_take_exe(p, v);
    json_decref(v);
    if (!why && !keep_alert(al, &a, len)) {
        free_alert(&a);
        p->alerts_dropped++;
        return true;
    }
    if (!why && !rundir_grow((void **)&p->alerts, &al->items_cap, p->nalerts, sizeof *p->alerts))
        why = "out of memory";
    if (why) {
        free_alert(&a);
        rundir_bad_record(&al->rd, why);
        return true;
    }
    if (!a.recovery && (int)a.level > al->worst_kept) al->worst_kept = (int)a.level;
    p->alerts[p->nalerts++] = a;
    return true;
}

void rundir_load_alerts(rundir_proc_t *p, const char *dir, const char *name, rundir_budget_t *budget)
{
    FILE *f = rundir_open(dir, name);
    p->has_alerts = true;
    if (!f) {
        RUNDIR_ERROR(p, "%s: %s", name, strerror(errno));
        return;
    }
    alerts_t al = { .rd = { .proc = p, .file = name }, .budget = budget };
    rundir_lines_init(&al.lines, LINE_MAX_BYTES, alerts_line, &al);
    char buf[65536];
    size_t n;
    rundir_lines_status_t st = RUNDIR_LINES_OK;
    while (st == RUNDIR_LINES_OK && (n = fread(buf, 1, sizeof buf, f)) > 0) st = rundir_lines_feed(&al.lines, buf, n);
    if (st == RUNDIR_LINES_TOO_LONG)
        RUNDIR_ERROR(p, "%s: line %zu is longer than %u bytes; stopped reading", name, al.lines.lineno + 1, LINE_MAX_BYTES);
    else if (st == RUNDIR_LINES_NOMEM) RUNDIR_ERROR(p, "%s: out of memory", name);
    if (ferror(f)) RUNDIR_ERROR(p, "%s: read error", name);
    fclose(f);
    size_t len = 0;
    const char *rest = rundir_lines_pending(&al.lines, &len);
    if (st == RUNDIR_LINES_OK && len) {
        /* No final newline: the agent writes each line whole, so this is a
         * line cut by a crash (a note) unless it parses. */
        json_t *v;
        size_t at;
        if (!rundir_json_parse(rest, len, &v, &at)) rundir_lines_finish(&al.lines);
        else RUNDIR_NOTE(p, "%s: an unfinished last line ignored", name);
        json_decref(v);
    }
    if (p->alerts_dropped)
        RUNDIR_NOTE(p, "%s: %zu alert%s not kept (past %u per process or %u MiB of alerts in all; the worst level is "
             "always kept)", name, p->alerts_dropped, p->alerts_dropped == 1 ? "" : "s", ALERTS_PER_PROC,
             ALERT_BYTES_BUDGET >> 20);
    rundir_report_bad(&al.rd);
    rundir_lines_free(&al.lines);
}

void rundir_free_alerts(rundir_proc_t *p)
{
    for (size_t i = 0; i < p->nalerts; i++) free_alert(&p->alerts[i]);
    free(p->alerts);
}
