/*
 * pprof_validate.c - the rules `go tool pprof` applies to a profile
 * (docs/pprof.md 1a: decode-time index checks and CheckValid), plus the
 * references the schema requires but pprof silently drops, so our own tests
 * and the fuzz target catch writer bugs that pprof would let pass.
 *
 * Decoding uses protobuf-c's generated unpacker with a ProtobufCAllocator
 * on the caller's map_allocator_t; gzip input (1f 8b) is inflated first.
 */
#include <string.h>

#include "pprof/pprof_internal.h"
#include "pprof/profile.pb-c.h"

#define MAX_INFLATED (1ull << 31)   /* refuse decompression bombs */

static void *pb_alloc(void *data, size_t size)
{
    const map_allocator_t *a = data;
    return a->alloc(a->ctx, size ? size : 1);
}

static void pb_free(void *data, void *ptr)
{
    const map_allocator_t *a = data;
    if (ptr) a->free(a->ctx, ptr);
}

/* why_t: a bounded one-line message, built without stdio. */
typedef struct why_s {
    char *buf;
    size_t cap, len;
} why_t;

static void why_s(why_t *w, const char *s)
{
    while (w->buf && *s && w->len + 1 < w->cap) w->buf[w->len++] = *s++;
    if (w->buf && w->cap) w->buf[w->len] = '\0';
}

static void why_u(why_t *w, uint64_t v)
{
    char tmp[24];
    size_t n = pp_fmt_u64(tmp, v, 10);
    tmp[n] = '\0';
    why_s(w, tmp);
}

static pprof_err_t fail(why_t *w, const char *what, uint64_t v)
{
    why_s(w, what);
    why_u(w, v);
    return PPROF_ERR_MALFORMED;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* sorted_ids: the ids of one kind, sorted, checked nonzero and unique. */
static pprof_err_t sorted_ids(const map_allocator_t *a, why_t *w, const char *kind,
                              size_t n, const void *const *items, size_t id_offset,
                              uint64_t **out)
{
    *out = NULL;
    if (n == 0) return PPROF_OK;
    uint64_t *ids = a->alloc(a->ctx, n * sizeof(uint64_t));
    if (!ids) return PPROF_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        memcpy(&ids[i], (const char *)items[i] + id_offset, sizeof(uint64_t));
    pp_heapsort(ids, n, sizeof(uint64_t), cmp_u64);
    pprof_err_t err = PPROF_OK;
    if (ids[0] == 0) {
        why_s(w, "found ");
        why_s(w, kind);
        err = fail(w, " with reserved ID=", 0);
    }
    for (size_t i = 1; i < n && err == PPROF_OK; i++) {
        if (ids[i] == ids[i - 1]) {
            why_s(w, "multiple ");
            why_s(w, kind);
            err = fail(w, "s with same id: ", ids[i]);
        }
    }
    if (err != PPROF_OK) {
        a->free(a->ctx, ids);
        return err;
    }
    *out = ids;
    return PPROF_OK;
}

static bool has_id(const uint64_t *ids, size_t n, uint64_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ids[mid] == id) return true;
        if (ids[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

static pprof_err_t check(const map_allocator_t *a, const Perftools__Profiles__Profile *p,
                         why_t *w)
{
    size_t ns = p->n_string_table;
    if (ns == 0 || p->string_table[0][0] != '\0') {
        why_s(w, "string_table[0] is not the empty string");
        return PPROF_ERR_MALFORMED;
    }
#define STR_OK(idx, what)                                                   \
    do {                                                                    \
        if ((idx) < 0 || (uint64_t)(idx) >= ns)                             \
            return fail(w, what " string index out of range: ", (uint64_t)(idx)); \
    } while (0)
    STR_OK(p->drop_frames, "drop_frames");
    STR_OK(p->keep_frames, "keep_frames");
    STR_OK(p->default_sample_type, "default_sample_type");
    STR_OK(p->doc_url, "doc_url");
    for (size_t i = 0; i < p->n_comment; i++) STR_OK(p->comment[i], "comment");
    for (size_t i = 0; i < p->n_sample_type; i++) {
        STR_OK(p->sample_type[i]->type, "sample_type.type");
        STR_OK(p->sample_type[i]->unit, "sample_type.unit");
    }
    if (p->period_type) {
        STR_OK(p->period_type->type, "period_type.type");
        STR_OK(p->period_type->unit, "period_type.unit");
    }
    for (size_t i = 0; i < p->n_mapping; i++) {
        STR_OK(p->mapping[i]->filename, "mapping.filename");
        STR_OK(p->mapping[i]->build_id, "mapping.build_id");
    }
    for (size_t i = 0; i < p->n_function; i++) {
        STR_OK(p->function[i]->name, "function.name");
        STR_OK(p->function[i]->system_name, "function.system_name");
        STR_OK(p->function[i]->filename, "function.filename");
    }
    for (size_t i = 0; i < p->n_sample; i++) {
        const Perftools__Profiles__Sample *s = p->sample[i];
        for (size_t k = 0; k < s->n_label; k++) {
            STR_OK(s->label[k]->key, "label.key");
            STR_OK(s->label[k]->str, "label.str");
            STR_OK(s->label[k]->num_unit, "label.num_unit");
        }
    }
#undef STR_OK
    if (p->n_sample && p->n_sample_type == 0) {
        why_s(w, "missing sample type information");
        return PPROF_ERR_MALFORMED;
    }
    for (size_t i = 0; i < p->n_sample; i++) {
        if (p->sample[i]->n_value != p->n_sample_type) {
            why_s(w, "mismatch: sample has ");
            why_u(w, p->sample[i]->n_value);
            why_s(w, " values vs. ");
            why_u(w, p->n_sample_type);
            why_s(w, " types");
            return PPROF_ERR_MALFORMED;
        }
    }

    uint64_t *maps = NULL, *locs = NULL, *funcs = NULL;
    pprof_err_t err = sorted_ids(a, w, "mapping", p->n_mapping,
                                 (const void *const *)p->mapping,
                                 offsetof(Perftools__Profiles__Mapping, id), &maps);
    if (err == PPROF_OK)
        err = sorted_ids(a, w, "location", p->n_location, (const void *const *)p->location,
                         offsetof(Perftools__Profiles__Location, id), &locs);
    if (err == PPROF_OK)
        err = sorted_ids(a, w, "function", p->n_function, (const void *const *)p->function,
                         offsetof(Perftools__Profiles__Function, id), &funcs);
    for (size_t i = 0; i < p->n_sample && err == PPROF_OK; i++) {
        const Perftools__Profiles__Sample *s = p->sample[i];
        for (size_t k = 0; k < s->n_location_id && err == PPROF_OK; k++)
            if (!has_id(locs, p->n_location, s->location_id[k]))
                err = fail(w, "sample has nil location: id ", s->location_id[k]);
    }
    for (size_t i = 0; i < p->n_location && err == PPROF_OK; i++) {
        const Perftools__Profiles__Location *l = p->location[i];
        if (l->mapping_id && !has_id(maps, p->n_mapping, l->mapping_id))
            err = fail(w, "location has an unknown mapping: id ", l->mapping_id);
        for (size_t k = 0; k < l->n_line && err == PPROF_OK; k++)
            if (!has_id(funcs, p->n_function, l->line[k]->function_id))
                err = fail(w, "location has a line with nil function: location id ", l->id);
    }
    if (maps) a->free(a->ctx, maps);
    if (locs) a->free(a->ctx, locs);
    if (funcs) a->free(a->ctx, funcs);
    return err;
}

pprof_err_t pprof_validate(const map_allocator_t *allocator, const void *data, size_t len,
                           char *why, size_t whylen)
{
    why_t w = { why, whylen, 0 };
    if (why && whylen) why[0] = '\0';
    if (!allocator || (!data && len)) return PPROF_ERR_INVALID;
    if (len == 0) {
        why_s(&w, "empty input file");
        return PPROF_ERR_DECODE;
    }
    const unsigned char *raw = data;
    unsigned char *inflated = NULL;
    size_t rawlen = len;
    if (len >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
        pprof_err_t err = pp_gunzip(allocator, data, len, MAX_INFLATED, &inflated, &rawlen);
        if (err != PPROF_OK) {
            why_s(&w, "decompressing profile failed");
            return err == PPROF_ERR_NOMEM ? err : PPROF_ERR_DECODE;
        }
        raw = inflated;
    }
    ProtobufCAllocator pa = { pb_alloc, pb_free, (void *)(uintptr_t)allocator };
    Perftools__Profiles__Profile *p = perftools__profiles__profile__unpack(&pa, rawlen, raw);
    pprof_err_t err;
    if (!p) {
        why_s(&w, "protobuf decoding failed");
        err = PPROF_ERR_DECODE;
    } else {
        err = check(allocator, p, &w);
        perftools__profiles__profile__free_unpacked(p, &pa);
    }
    if (inflated) allocator->free(allocator->ctx, inflated);
    return err;
}
