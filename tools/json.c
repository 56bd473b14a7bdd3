/*
 * json.c - a strict, bounded JSON reader (see json.h for the contract).
 *
 * Recursive descent over a length-delimited buffer. Every read checks the
 * cursor against the end, so the input need not be NUL-terminated and a
 * value cut short is an error, never an overread. Recursion is bounded by
 * JSON_MAX_DEPTH, so a file of ten thousand '[' is rejected, not a stack
 * overflow. On any error the partial tree is freed before returning.
 *
 * Numbers follow the JSON grammar exactly (no leading '+', no leading
 * zeros, no "1." or ".5", no NaN or Infinity); the validated text is then
 * converted with strtod, which the tool never runs under a locale with a
 * decimal comma (it never calls setlocale for LC_NUMERIC).
 */
#include "tools/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p;             /* cursor */
    const char *end;           /* one past the last byte */
    const char *start;         /* for error offsets */
    json_err_t err;
    const char *err_at;
} parser_t;

static json_t *parse_value(parser_t *ps, int depth);

static json_t *fail(parser_t *ps, json_err_t err)
{
    if (ps->err == JSON_OK) {
        ps->err = err;
        ps->err_at = ps->p;
    }
    return NULL;
}

static void skip_blanks(parser_t *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static json_t *new_value(parser_t *ps, json_type_t type)
{
    json_t *v = calloc(1, sizeof *v);
    if (!v) return fail(ps, JSON_ERR_NOMEM);
    v->type = type;
    return v;
}

/* literal: true, false or null. */
static json_t *parse_literal(parser_t *ps)
{
    static const struct {
        const char *word;
        json_type_t type;
        bool b;
    } words[] = { { "true", JSON_BOOL, true }, { "false", JSON_BOOL, false }, { "null", JSON_NULL, false } };
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        size_t n = strlen(words[i].word);
        if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, words[i].word, n) == 0) {
            json_t *v = new_value(ps, words[i].type);
            if (!v) return NULL;
            v->u.b = words[i].b;
            ps->p += n;
            return v;
        }
    }
    return fail(ps, JSON_ERR_SYNTAX);
}

static bool is_digit(const parser_t *ps)
{
    return ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9';
}

static void skip_digits(parser_t *ps)
{
    while (is_digit(ps)) ps->p++;
}

/* parse_number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static json_t *parse_number(parser_t *ps)
{
    const char *begin = ps->p;
    if (ps->p < ps->end && *ps->p == '-') ps->p++;
    if (!is_digit(ps)) return fail(ps, JSON_ERR_NUMBER);
    if (*ps->p == '0') ps->p++;
    else skip_digits(ps);
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (!is_digit(ps)) return fail(ps, JSON_ERR_NUMBER);
        skip_digits(ps);
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (!is_digit(ps)) return fail(ps, JSON_ERR_NUMBER);
        skip_digits(ps);
    }
    char buf[64];
    size_t n = (size_t)(ps->p - begin);
    char *copy = n < sizeof buf ? buf : malloc(n + 1);
    if (!copy) return fail(ps, JSON_ERR_NOMEM);
    memcpy(copy, begin, n);
    copy[n] = 0;
    double d = strtod(copy, NULL);     /* validated above; overflow gives +-HUGE_VAL */
    if (copy != buf) free(copy);
    json_t *v = new_value(ps, JSON_NUMBER);
    if (v) v->u.num = d;
    return v;
}

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

/* put_utf8: appends code point cp to out; @return bytes written. */
static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* unicode_escape: after "\u" at ps->p; a high surrogate must be followed by
 * "\u" and a low one. A lone surrogate becomes U+FFFD (as browsers do). */
static bool unicode_escape(parser_t *ps, uint32_t *cp)
{
    if (ps->end - ps->p < 4) return false;
    int hi = hex4(ps->p);
    if (hi < 0) return false;
    ps->p += 4;
    *cp = (uint32_t)hi;
    if (hi >= 0xD800 && hi <= 0xDBFF) {
        if (ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u') {
            int lo = hex4(ps->p + 2);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                ps->p += 6;
                *cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                return true;
            }
        }
        *cp = 0xFFFD;
    } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
        *cp = 0xFFFD;
    }
    return true;
}

/* scan_string: decodes the string whose opening quote is at ps->p into a
 * new buffer. The decoded form is never longer than the source (an escape
 * of 6 or 12 bytes gives at most 4), so one allocation of the source
 * length suffices. */
static char *scan_string(parser_t *ps, size_t *len)
{
    ps->p++;   /* opening quote */
    const char *q = ps->p;
    while (q < ps->end && *q != '"') q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
    if (q >= ps->end) {
        ps->p = ps->end;
        fail(ps, JSON_ERR_STRING);
        return NULL;
    }
    char *out = malloc((size_t)(q - ps->p) + 1);
    if (!out) {
        fail(ps, JSON_ERR_NOMEM);
        return NULL;
    }
    size_t n = 0;
    while (*ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) goto bad;
        if (c != '\\') {
            out[n++] = (char)c;
            ps->p++;
            continue;
        }
        ps->p++;
        char e = *ps->p++;
        switch (e) {
        case '"': out[n++] = '"'; break;
        case '\\': out[n++] = '\\'; break;
        case '/': out[n++] = '/'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (!unicode_escape(ps, &cp)) goto bad;
            n += put_utf8(out + n, cp);
            break;
        }
        default:
            ps->p--;
            goto bad;
        }
    }
    ps->p++;   /* closing quote */
    out[n] = 0;
    *len = n;
    return out;
bad:
    free(out);
    fail(ps, JSON_ERR_STRING);
    return NULL;
}

static json_t *parse_string(parser_t *ps)
{
    size_t len;
    char *s = scan_string(ps, &len);
    if (!s) return NULL;
    json_t *v = new_value(ps, JSON_STRING);
    if (!v) {
        free(s);
        return NULL;
    }
    v->u.str.s = s;
    v->u.str.len = len;
    return v;
}

/* grow: makes room for one more element of size elem in *items (capacity
 * *cap, count n). */
static bool grow(parser_t *ps, void **items, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap) return true;
    size_t ncap = *cap ? *cap * 2 : 4;
    void *p = realloc(*items, ncap * elem);
    if (!p) {
        fail(ps, JSON_ERR_NOMEM);
        return false;
    }
    *items = p;
    *cap = ncap;
    return true;
}

static json_t *parse_array(parser_t *ps, int depth)
{
    json_t *v = new_value(ps, JSON_ARRAY);
    if (!v) return NULL;
    size_t cap = 0;
    ps->p++;   /* '[' */
    skip_blanks(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return v;
    }
    for (;;) {
        if (!grow(ps, (void **)&v->u.arr.items, &cap, v->u.arr.n, sizeof *v->u.arr.items)) break;
        json_t *item = parse_value(ps, depth + 1);
        if (!item) break;
        v->u.arr.items[v->u.arr.n++] = item;
        skip_blanks(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return v;
        }
        fail(ps, JSON_ERR_SYNTAX);
        break;
    }
    json_free(v);
    return NULL;
}

/* parse_member: "key" blanks ':' value, into *m. */
static bool parse_member(parser_t *ps, json_member_t *m, int depth)
{
    skip_blanks(ps);
    if (ps->p >= ps->end || *ps->p != '"') {
        fail(ps, JSON_ERR_SYNTAX);
        return false;
    }
    size_t len;
    m->key = scan_string(ps, &len);
    if (!m->key) return false;
    skip_blanks(ps);
    if (ps->p >= ps->end || *ps->p != ':') {
        fail(ps, JSON_ERR_SYNTAX);
        free(m->key);
        return false;
    }
    ps->p++;
    m->value = parse_value(ps, depth + 1);
    if (!m->value) {
        free(m->key);
        return false;
    }
    return true;
}

static json_t *parse_object(parser_t *ps, int depth)
{
    json_t *v = new_value(ps, JSON_OBJECT);
    if (!v) return NULL;
    size_t cap = 0;
    ps->p++;   /* '{' */
    skip_blanks(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return v;
    }
    for (;;) {
        if (!grow(ps, (void **)&v->u.obj.members, &cap, v->u.obj.n, sizeof *v->u.obj.members)) break;
        if (!parse_member(ps, &v->u.obj.members[v->u.obj.n], depth)) break;
        v->u.obj.n++;
        skip_blanks(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            return v;
        }
        fail(ps, JSON_ERR_SYNTAX);
        break;
    }
    json_free(v);
    return NULL;
}

static json_t *parse_value(parser_t *ps, int depth)
{
    if (depth > JSON_MAX_DEPTH) return fail(ps, JSON_ERR_DEPTH);
    skip_blanks(ps);
    if (ps->p >= ps->end) return fail(ps, JSON_ERR_SYNTAX);
    switch (*ps->p) {
    case '{': return parse_object(ps, depth);
    case '[': return parse_array(ps, depth);
    case '"': return parse_string(ps);
    case 't':
    case 'f':
    case 'n': return parse_literal(ps);
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return parse_number(ps);
        return fail(ps, JSON_ERR_SYNTAX);
    }
}

json_err_t json_parse(const char *text, size_t len, json_t **out, size_t *err_offset)
{
    parser_t ps = { text, text + len, text, JSON_OK, NULL };
    *out = NULL;
    skip_blanks(&ps);
    json_t *v = NULL;
    if (ps.p >= ps.end) {
        fail(&ps, JSON_ERR_EMPTY);
    } else {
        v = parse_value(&ps, 1);
        skip_blanks(&ps);
        if (v && ps.p < ps.end) fail(&ps, JSON_ERR_TRAILING);
    }
    if (ps.err != JSON_OK) {
        json_free(v);
        if (err_offset) *err_offset = (size_t)(ps.err_at - ps.start);
        return ps.err;
    }
    *out = v;
    return JSON_OK;
}

void json_free(json_t *v)
{
    if (!v) return;
    switch (v->type) {
    case JSON_STRING:
        free(v->u.str.s);
        break;
    case JSON_ARRAY:
        for (size_t i = 0; i < v->u.arr.n; i++) json_free(v->u.arr.items[i]);
        free(v->u.arr.items);
        break;
    case JSON_OBJECT:
        for (size_t i = 0; i < v->u.obj.n; i++) {
            free(v->u.obj.members[i].key);
            json_free(v->u.obj.members[i].value);
        }
        free(v->u.obj.members);
        break;
    default:
        break;
    }
    free(v);
}

const char *json_strerror(json_err_t err)
{
    switch (err) {
    case JSON_OK: return "no error";
    case JSON_ERR_NOMEM: return "out of memory";
    case JSON_ERR_EMPTY: return "empty";
    case JSON_ERR_SYNTAX: return "not valid JSON";
    case JSON_ERR_STRING: return "bad string";
    case JSON_ERR_NUMBER: return "bad number";
    case JSON_ERR_DEPTH: return "nested too deep";
    case JSON_ERR_TRAILING: return "unexpected text after the value";
    }
    return "unknown error";
}

const json_t *json_get(const json_t *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->u.obj.n; i++)
        if (strcmp(obj->u.obj.members[i].key, key) == 0) return obj->u.obj.members[i].value;
    return NULL;
}

bool json_get_num(const json_t *obj, const char *key, double *out)
{
    const json_t *v = json_get(obj, key);
    if (!v || v->type != JSON_NUMBER) return false;
    *out = v->u.num;
    return true;
}

const char *json_get_str(const json_t *obj, const char *key)
{
    const json_t *v = json_get(obj, key);
    return v && v->type == JSON_STRING ? v->u.str.s : NULL;
}
