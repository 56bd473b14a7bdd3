/*
 * json.h - a small JSON reader for the heapwatch command.
 *
 * The agent's output files (summary.<pid>.json, the lines of
 * timeline.<pid>.jsonl.zst and alerts.<pid>.jsonl) are JSON, and the tool
 * must read them without a JSON library and without trusting them: a file
 * can be cut short, damaged, or not ours at all. json_parse() builds a tree
 * from one complete JSON text (RFC 8259), rejects anything else with an
 * error code and the byte offset, and never reads past the given length.
 *
 * Limits, so that garbage costs little: nesting depth JSON_MAX_DEPTH.
 * Strings are decoded (escapes, \u surrogate pairs to UTF-8) and stored
 * NUL-terminated with their length (a \u0000 inside stays in the length).
 * Numbers are kept as double. Duplicate keys are allowed; lookups return
 * the first.
 */
#ifndef HEAPWATCH_TOOLS_JSON_H
#define HEAPWATCH_TOOLS_JSON_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_MAX_DEPTH 64

typedef enum {
    JSON_OK = 0,
    JSON_ERR_NOMEM = 1,        /* out of memory */
    JSON_ERR_EMPTY = 2,        /* no value (only blanks) */
    JSON_ERR_SYNTAX = 3,       /* unexpected character */
    JSON_ERR_STRING = 4,       /* bad string: control character, escape, or unterminated */
    JSON_ERR_NUMBER = 5,       /* bad number */
    JSON_ERR_DEPTH = 6,        /* nested deeper than JSON_MAX_DEPTH */
    JSON_ERR_TRAILING = 7,     /* something after the value */
} json_err_t;

typedef enum {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_type_t;

typedef struct json_s json_t;

/* json_member_t: one "key": value pair of an object. */
typedef struct {
    char *key;                 /* decoded, NUL-terminated */
    json_t *value;
} json_member_t;

struct json_s {
    json_type_t type;
    union {
        bool b;                /* JSON_BOOL */
        double num;            /* JSON_NUMBER */
        struct {               /* JSON_STRING */
            char *s;
            size_t len;
        } str;
        struct {               /* JSON_ARRAY */
            json_t **items;
            size_t n;
        } arr;
        struct {               /* JSON_OBJECT */
            json_member_t *members;
            size_t n;
        } obj;
    } u;
};

/* json_parse: parses text[0..len) as exactly one JSON value, surrounded by
 * optional blanks. @return JSON_OK and *out (free with json_free), or an
 * error with *out NULL and *err_offset (if not NULL) the byte where the
 * problem was found. */
json_err_t json_parse(const char *text, size_t len, json_t **out, size_t *err_offset);

/* json_free: frees a tree from json_parse (NULL is fine). */
void json_free(json_t *v);

/* json_strerror: a short English description of an error code. */
const char *json_strerror(json_err_t err);

/* json_get: the value of key in object obj, or NULL when obj is not an
 * object or has no such key. */
const json_t *json_get(const json_t *obj, const char *key);

/* json_get_num: *out = obj[key] when it is a number. @return true if so. */
bool json_get_num(const json_t *obj, const char *key, double *out);

/* json_get_str: obj[key] when it is a string, else NULL. */
const char *json_get_str(const json_t *obj, const char *key);

#endif
