/*
 * rundir_json.c - the JSON texts of the agent's files read with jansson,
 * and what is said when one cannot be (rundir_internal.h).
 *
 * What jansson is handed. One summary (at most SUMMARY_MAX bytes) or one
 * line (at most LINE_MAX_BYTES), by length (json_loadb: it never reads past
 * it and needs no NUL). jansson's tree of a 1 MiB text is bounded by it: a
 * value costs at most some 50 bytes and takes at least 2 bytes of text, so
 * at most about 25 MiB, freed before the next text is read. Its parser
 * recurses once per level and stops at 2048 (JSON_PARSER_MAX_DEPTH); a
 * tree deeper than JSON_DEPTH_MAX (64, the bound the tool's own parser had)
 * is refused after the parse, so no record is deeper than that.
 *
 * Flags, chosen to read what the tool's own parser read before:
 *   JSON_DECODE_INT_AS_REAL  every number is a double, correctly rounded
 *                            (strtod): counters are u64 and may pass 2^63,
 *                            which jansson's integers (long long) refuse;
 *                            above 2^53 they are read to the nearest double,
 *                            as before (a relative error below 1.2e-16).
 *                            A number beyond the double range (1e999) is a
 *                            bad record: jansson refuses it; the old parser
 *                            read it as absent.
 *   JSON_DECODE_ANY          a text that is not an object parses, and is
 *                            then "not a JSON object", as before.
 *   JSON_ALLOW_NUL           \u0000 inside a string value, as before (the
 *                            tools then see the string up to it). jansson
 *                            refuses it inside a key: a bad record.
 *   JSON_REJECT_DUPLICATES   a key twice in one object is a bad record.
 *                            The old parser took the first value; jansson
 *                            can keep only the last or refuse, and a record
 *                            that says two things is not the agent's.
 *
 * Strings. The agent writes the bytes of file and function names as they
 * are (agent/records.h, str), so a name need not be UTF-8, which jansson
 * refuses; and an escaped lone surrogate (\ud800) is refused too, where the
 * old parser read U+FFFD. A text jansson refuses is therefore read once
 * more from a copy in which every byte that does not start or continue a
 * valid UTF-8 sequence is '?' - what the tools print for it anyway
 * (fmt_clean) - and every lone surrogate escape is \uFFFD: same length,
 * same structure, so the copy is valid exactly when nothing else was wrong.
 * Only refused texts pay for the copy.
 */
#define _GNU_SOURCE
#include "tools/rundir_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JSON_DEPTH_MAX 64
#define LOAD_FLAGS (JSON_DECODE_INT_AS_REAL | JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES)

/* utf8_len: the length of the valid UTF-8 sequence at s[0..n) (1 for
 * ASCII), or 0 when s[0] starts none (overlong forms, surrogates and code
 * points past U+10FFFF are not valid). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    size_t len = s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3 : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    uint32_t cp = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* hex4: the value of 4 hex digits at s, or -1. */
static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    return v;
}

/* repair: text[0..len) with its bytes of broken UTF-8 made '?' and its
 * lone surrogate escapes \uFFFD, in place. @return whether it changed
 * anything. Every backslash is taken to start an escape: outside a string
 * one is an error anyway, and nothing here changes the structure. */
static bool repair(char *text, size_t len)
{
    bool changed = false;
    for (size_t i = 0; i < len;) {
        const unsigned char *u = (const unsigned char *)text + i;
        if (u[0] >= 0x80) {
            size_t n = utf8_len(u, len - i);
            if (!n) {
                text[i] = '?';
                changed = true;
            }
            i += n ? n : 1;
        } else if (u[0] != '\\' || i + 1 >= len) {
            i++;
        } else if (text[i + 1] != 'u' || len - i < 6 || hex4(text + i + 2) < 0) {
            i += 2;   /* another escape, or a broken one */
        } else {
            int cp = hex4(text + i + 2);
            int lo = len - i >= 12 && text[i + 6] == '\\' && text[i + 7] == 'u' ? hex4(text + i + 8) : -1;
            if (cp >= 0xD800 && cp <= 0xDBFF && lo >= 0xDC00 && lo <= 0xDFFF) {
                i += 12;   /* a surrogate pair */
                continue;
            }
            if (cp >= 0xD800 && cp <= 0xDFFF) {
                memcpy(text + i, "\\uFFFD", 6);
                changed = true;
            }
            i += 6;
        }
    }
    return changed;
}

/* too_deep: whether v, a value at depth d (the top value's is 1), is or
 * holds a value deeper than JSON_DEPTH_MAX (recursion: at most that). */
static bool too_deep(json_t *v, int d)
{
    if (d > JSON_DEPTH_MAX) return true;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (too_deep(json_array_get(v, i), d + 1)) return true;
    } else if (json_is_object(v)) {
        const char *key;
        json_t *item;
        json_object_foreach (v, key, item)
            if (too_deep(item, d + 1)) return true;
    }
    return false;
}

/* too_deep_at: the byte of text where a value is deeper than
 * JSON_DEPTH_MAX (for the message). */
static size_t too_deep_at(const char *text, size_t len)
{
    int level = 0;   /* containers open */
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = false;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ':') {
            continue;
        } else if (c == ']' || c == '}') {
            level--;
        } else if (level >= JSON_DEPTH_MAX) {
            return i;   /* a value (or key) inside the deepest container allowed */
        } else if (c == '[' || c == '{') {
            level++;
        } else if (c == '"') {
            in_string = true;
        }
    }
    return len;
}

/* what: the words for a jansson error. */
static const char *what(const json_error_t *e)
{
    switch (json_error_code(e)) {
    case json_error_out_of_memory: return "out of memory";
    case json_error_stack_overflow: return "nested too deep";
    case json_error_duplicate_key: return "duplicate key";
    case json_error_numeric_overflow: return "bad number (out of range)";
    case json_error_end_of_input_expected: return "unexpected text after the value";
    case json_error_invalid_utf8:
    case json_error_null_character:
    case json_error_null_byte_in_key: return "bad string";
    default: return "not valid JSON";
    }
}

const char *rundir_json_parse(const char *text, size_t len, json_t **out, size_t *at)
{
    *out = NULL;
    *at = 0;
    size_t blank = 0;
    while (blank < len && (text[blank] == ' ' || text[blank] == '\t' || text[blank] == '\n' || text[blank] == '\r'))
        blank++;
    if (blank == len) {
        *at = len;
        return "empty";
    }
    json_error_t err;
    json_t *v = json_loadb(text, len, LOAD_FLAGS, &err);
    if (!v && json_error_code(&err) != json_error_out_of_memory && json_error_code(&err) != json_error_stack_overflow) {
        char *copy = malloc(len);
        if (copy) {
            memcpy(copy, text, len);
            if (repair(copy, len)) v = json_loadb(copy, len, LOAD_FLAGS, &err);
            free(copy);
        }
    }
    if (!v) {
        *at = json_error_code(&err) == json_error_stack_overflow ? too_deep_at(text, len) : (size_t)err.position;
        return what(&err);
    }
    if (too_deep(v, 1)) {
        json_decref(v);
        *at = too_deep_at(text, len);
        return "nested too deep";
    }
    *out = v;
    return NULL;
}

json_t *rundir_json_line(rundir_reader_t *rd, const char *line, size_t len)
{
    json_t *v;
    size_t at;
    const char *why = rundir_json_parse(line, len, &v, &at);
    if (!why && json_is_object(v)) return v;
    if (rd->bad++ == 0) {
        if (why) RUNDIR_ERROR(rd->proc, "%s: line %zu: %s at byte %zu", rd->file, rd->lineno, why, at);
        else RUNDIR_ERROR(rd->proc, "%s: line %zu: not a JSON object", rd->file, rd->lineno);
    }
    json_decref(v);
    return NULL;
}

json_t *rundir_json_doc(rundir_proc_t *p, const char *name, const char *text, size_t len)
{
    json_t *v;
    size_t at;
    const char *why = rundir_json_parse(text, len, &v, &at);
    if (!why && json_is_object(v)) return v;
    if (why) RUNDIR_ERROR(p, "%s: %s at byte %zu", name, why, at);
    else RUNDIR_ERROR(p, "%s: not a JSON object", name);
    json_decref(v);
    return NULL;
}

/* json_num: obj[key] when it is a finite number, else NAN. */
static double json_num(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    return isfinite(d) ? d : NAN;
}

void rundir_json_fields(const json_t *obj, const rundir_field_t *fields, size_t n, void *out)
{
    for (size_t i = 0; i < n; i++) {
        double x = json_num(obj, fields[i].key);
        memcpy((char *)out + fields[i].offset, &x, sizeof x);
    }
}

const char *rundir_json_str(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

void rundir_take_exe(rundir_proc_t *p, const json_t *obj)
{
    const char *exe = rundir_json_str(obj, "exe");
    if (exe && !p->exe) p->exe = strndup(exe, EXE_MAX);
}

void rundir_bad_record(rundir_reader_t *rd, const char *why)
{
    if (rd->bad++ == 0) RUNDIR_ERROR(rd->proc, "%s: line %zu: %s", rd->file, rd->lineno, why);
}

void rundir_report_bad(const rundir_reader_t *rd)
{
    if (rd->bad > 1) RUNDIR_ERROR(rd->proc, "%s: %zu bad lines in all", rd->file, rd->bad);
}
