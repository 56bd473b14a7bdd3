/*
 * pprof_builder.c - the profile under construction: string table, value
 * types, samples, and the interning of locations, functions and mappings.
 *
 * String table
 * ------------
 * profile.proto stores every string once, in Profile.string_table, and
 * refers to it by index everywhere else; entry 0 must be "" (pprof rejects
 * the file otherwise, and resolves unset fields to index 0). The builder
 * keeps:
 *   strs      char *[]: the table itself, in the exact layout protobuf-c
 *             wants for a `repeated string` field, so the encoder hands it
 *             over without a copy;
 *   str_pool  the bytes, NUL-terminated, in never-moving chunks (so the
 *             pointers in strs stay valid while the table grows);
 *   str_ix    a hash index (hash, index+1) over strs for interning: every
 *             string is stored once, like Go's profileBuilder.stringIndex.
 * Indexes are 32-bit inside the builder (a table of 2^32 strings would not
 * fit anyone's memory) and widened to int64 only when encoding.
 *
 * Location dedup by address
 * -------------------------
 * A Location is one instruction address; many samples share frames, so
 * locations are interned by address through loc_ix and samples store
 * 32-bit location indexes (id = index + 1, ids run 1, 2, ... in order of
 * first use, as Go's do). Return addresses point after the call, possibly
 * at the first instruction of the next line or function; like Go, the
 * builder stores them as address - 1 (inside the call instruction), so the
 * stored address is the one pprof shows and the one we symbolize.
 * Dedup happens on the stored address. An exact PC and an adjusted return
 * address cannot collide: address - 1 of a return address lies inside the
 * call instruction, never at the start of an instruction.
 *
 * A location is attached to the mapping containing its address lazily (at
 * symbolization or encoding), because the agent records stacks long before
 * it reads /proc/self/maps.
 *
 * Failure: a failed add_sample adds no sample, but strings and locations
 * it interned before failing stay (unused entries are valid for pprof).
 */
#include <string.h>

#include "pprof/pprof_internal.h"

/* Chunk sizes of the pools: big enough to amortize, small enough for the
 * arena's large-block path. */
#define STR_CHUNK (64u * 1024u)
#define SAMPLE_CHUNK (256u * 1024u)

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

pprof_err_t pprof_builder_new(const map_allocator_t *allocator,
                              pprof_builder_t **out)
{
    if (!allocator || !allocator->alloc || !allocator->free || !out)
        return PPROF_ERR_INVALID;
    pprof_builder_t *b = allocator->alloc(allocator->ctx, sizeof(*b));
    if (!b) return PPROF_ERR_NOMEM;
    memset(b, 0, sizeof(*b));
    b->a = *allocator;
    pp_vec_init(&b->strs, sizeof(char *));
    pp_vec_init(&b->str_lens, sizeof(uint32_t));
    pp_pool_init(&b->str_pool, STR_CHUNK);
    pp_vec_init(&b->comments, sizeof(int64_t));
    pp_vec_init(&b->samples, sizeof(pp_sample_t));
    pp_pool_init(&b->sample_pool, SAMPLE_CHUNK);
    pp_vec_init(&b->locs, sizeof(pp_loc_t));
    pp_vec_init(&b->funcs, sizeof(pp_func_t));
    pp_vec_init(&b->maps, sizeof(pp_mapping_t));
    pp_vec_init(&b->map_order, sizeof(uint32_t));
    b->pc_kind = PPROF_PCS_RETURN;
    uint32_t zero;
    pprof_err_t err = pp_str_intern(b, "", 0, &zero);
    if (err != PPROF_OK) {
        pprof_builder_free(b);
        return err;
    }
    *out = b;
    return PPROF_OK;
}

void pprof_builder_free(pprof_builder_t *b)
{
    if (!b) return;
    const map_allocator_t *a = &b->a;
    pp_vec_free(a, &b->strs);
    pp_vec_free(a, &b->str_lens);
    pp_index_free(a, &b->str_ix);
    pp_pool_free(a, &b->str_pool);
    pp_vec_free(a, &b->comments);
    pp_vec_free(a, &b->samples);
    pp_pool_free(a, &b->sample_pool);
    pp_vec_free(a, &b->locs);
    pp_index_free(a, &b->loc_ix);
    pp_vec_free(a, &b->funcs);
    pp_index_free(a, &b->func_ix);
    pp_vec_free(a, &b->maps);
    pp_vec_free(a, &b->map_order);
    map_allocator_t copy = b->a;
    copy.free(copy.ctx, b);
}

void pprof_builder_get_stats(const pprof_builder_t *b, pprof_builder_stats_t *out)
{
    out->samples = b->samples.len;
    out->locations = b->locs.len;
    out->functions = b->funcs.len;
    out->mappings = b->maps.len;
    out->strings = b->strs.len;
    const pp_vec_t *vecs[] = { &b->strs, &b->str_lens, &b->comments, &b->samples,
                               &b->locs, &b->funcs, &b->maps, &b->map_order };
    size_t bytes = sizeof(*b) + b->str_pool.bytes + b->sample_pool.bytes;
    for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++)
        bytes += vecs[i]->cap * vecs[i]->elem;
    const pp_index_t *ixs[] = { &b->str_ix, &b->loc_ix, &b->func_ix };
    for (size_t i = 0; i < 3; i++)
        if (ixs[i]->slots) bytes += (ixs[i]->mask + 1) * sizeof(uint64_t);
    out->bytes = bytes;
}

/* ------------------------------------------------------------------------ */
/* Strings                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct str_key_s {
    const char *s;
    size_t len;
} str_key_t;

static bool str_eq(const void *ctx, uint32_t idx, const void *key)
{
    const pprof_builder_t *b = ctx;
    const str_key_t *k = key;
    return PP_VEC_AT(&b->str_lens, uint32_t, idx) == k->len &&
           memcmp(PP_VEC_AT(&b->strs, char *, idx), k->s, k->len) == 0;
}

pprof_err_t pp_str_intern(pprof_builder_t *b, const char *s, size_t len,
                          uint32_t *idx)
{
    if (len >= UINT32_MAX) return PPROF_ERR_LIMIT;
    str_key_t key = { s, len };
    uint32_t h = (uint32_t)pp_hash_bytes(s, len);
    uint32_t found = pp_index_find(&b->str_ix, h, str_eq, b, &key);
    if (found != UINT32_MAX) {
        *idx = found;
        return PPROF_OK;
    }
    if (b->strs.len >= UINT32_MAX - 1) return PPROF_ERR_LIMIT;
    /* Reserve everything first so that no failure leaves a half entry. */
    PP_TRY(pp_vec_reserve(&b->a, &b->strs, 1));
    PP_TRY(pp_vec_reserve(&b->a, &b->str_lens, 1));
    PP_TRY(pp_index_reserve(&b->a, &b->str_ix, 1));
    char *copy = pp_pool_alloc(&b->a, &b->str_pool, len + 1);
    if (!copy) return PPROF_ERR_NOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    uint32_t i = (uint32_t)b->strs.len;
    uint32_t len32 = (uint32_t)len;
    pp_vec_push(&b->a, &b->strs, &copy, NULL);
    pp_vec_push(&b->a, &b->str_lens, &len32, NULL);
    pp_index_insert(&b->a, &b->str_ix, h, i);
    *idx = i;
    return PPROF_OK;
}

pprof_err_t pp_str_intern0(pprof_builder_t *b, const char *s, uint32_t *idx)
{
    if (!s) {
        *idx = 0;
        return PPROF_OK;
    }
    return pp_str_intern(b, s, strlen(s), idx);
}

/* ------------------------------------------------------------------------ */
/* Types, time, comments                                                    */
/* ------------------------------------------------------------------------ */

pprof_err_t pprof_builder_set_sample_types(pprof_builder_t *b,
                                           const pprof_value_type_t *types,
                                           size_t ntypes,
                                           const pprof_value_type_t *period_type,
                                           int64_t period)
{
    if (!b || !types || ntypes == 0 || ntypes > PPROF_MAX_SAMPLE_TYPES)
        return PPROF_ERR_INVALID;
    if (b->samples.len) return PPROF_ERR_STATE;
    uint32_t t[PPROF_MAX_SAMPLE_TYPES], u[PPROF_MAX_SAMPLE_TYPES], pt = 0, pu = 0;
    for (size_t i = 0; i < ntypes; i++) {
        if (!types[i].type) return PPROF_ERR_INVALID;
        PP_TRY(pp_str_intern0(b, types[i].type, &t[i]));
        PP_TRY(pp_str_intern0(b, types[i].unit, &u[i]));
    }
    if (period_type) {
        PP_TRY(pp_str_intern0(b, period_type->type, &pt));
        PP_TRY(pp_str_intern0(b, period_type->unit, &pu));
    }
    memcpy(b->type_str, t, ntypes * sizeof(uint32_t));
    memcpy(b->unit_str, u, ntypes * sizeof(uint32_t));
    b->ntypes = (uint32_t)ntypes;
    b->has_period_type = period_type != NULL;
    b->period_type_str = pt;
    b->period_unit_str = pu;
    b->period = period;
    b->heap = false;
    return PPROF_OK;
}

pprof_err_t pprof_builder_set_heap_types(pprof_builder_t *b, int64_t rate)
{
    static const pprof_value_type_t heap_types[4] = {
        { "alloc_objects", "count" },
        { "alloc_space", "bytes" },
        { "inuse_objects", "count" },
        { "inuse_space", "bytes" },
    };
    static const pprof_value_type_t space = { "space", "bytes" };
    if (rate < 0) return PPROF_ERR_INVALID;
    PP_TRY(pprof_builder_set_sample_types(b, heap_types, 4, &space, rate));
    b->heap = true;
    return PPROF_OK;
}

pprof_err_t pprof_builder_set_default_sample_type(pprof_builder_t *b,
                                                  const char *type)
{
    if (!b) return PPROF_ERR_INVALID;
    return pp_str_intern0(b, type, &b->default_type_str);
}

pprof_err_t pprof_builder_set_time(pprof_builder_t *b, int64_t time_nanos,
                                   int64_t duration_nanos)
{
    if (!b || time_nanos < 0 || duration_nanos < 0) return PPROF_ERR_INVALID;
    b->time_nanos = time_nanos;
    b->duration_nanos = duration_nanos;
    return PPROF_OK;
}

pprof_err_t pprof_builder_add_comment(pprof_builder_t *b, const char *text)
{
    if (!b || !text) return PPROF_ERR_INVALID;
    uint32_t idx;
    PP_TRY(pp_str_intern0(b, text, &idx));
    int64_t v = idx;
    return pp_vec_push(&b->a, &b->comments, &v, NULL);
}

pprof_err_t pprof_builder_set_pc_kind(pprof_builder_t *b, pprof_pc_kind_t kind)
{
    if (!b || (kind != PPROF_PCS_RETURN && kind != PPROF_PCS_LEAF_EXACT &&
               kind != PPROF_PCS_EXACT))
        return PPROF_ERR_INVALID;
    if (b->samples.len) return PPROF_ERR_STATE;
    b->pc_kind = kind;
    return PPROF_OK;
}

/* ------------------------------------------------------------------------ */
/* Locations and functions                                                  */
/* ------------------------------------------------------------------------ */

static bool loc_eq(const void *ctx, uint32_t idx, const void *key)
{
    const pprof_builder_t *b = ctx;
    return PP_VEC_AT(&b->locs, pp_loc_t, idx).addr == *(const uint64_t *)key;
}

static pprof_err_t loc_intern(pprof_builder_t *b, uint64_t addr, uint32_t *idx)
{
    uint32_t h = (uint32_t)pp_mix64(addr);
    uint32_t found = pp_index_find(&b->loc_ix, h, loc_eq, b, &addr);
    if (found != UINT32_MAX) {
        *idx = found;
        return PPROF_OK;
    }
    if (b->locs.len >= UINT32_MAX - 1) return PPROF_ERR_LIMIT;
    PP_TRY(pp_vec_reserve(&b->a, &b->locs, 1));
    PP_TRY(pp_index_reserve(&b->a, &b->loc_ix, 1));
    pp_loc_t l = { addr, 0, 0 };
    uint32_t i = (uint32_t)b->locs.len;
    pp_vec_push(&b->a, &b->locs, &l, NULL);
    pp_index_insert(&b->a, &b->loc_ix, h, i);
    *idx = i;
    return PPROF_OK;
}

/* frame_loc: the location of frame i of pcs, or NULL. */
static const pp_loc_t *frame_loc(const pprof_builder_t *b, const uint64_t *pcs, size_t i)
{
    if (!b || !pcs) return NULL;
    bool ret = b->pc_kind == PPROF_PCS_RETURN || (b->pc_kind == PPROF_PCS_LEAF_EXACT && i > 0);
    uint64_t addr = ret && pcs[i] > 0 ? pcs[i] - 1 : pcs[i];
    uint32_t idx = pp_index_find(&b->loc_ix, (uint32_t)pp_mix64(addr), loc_eq, b, &addr);
    return idx == UINT32_MAX ? NULL : &PP_VEC_AT(&b->locs, pp_loc_t, idx);
}

const char *pprof_builder_frame_name(const pprof_builder_t *b, const uint64_t *pcs, size_t i)
{
    const pp_loc_t *l = frame_loc(b, pcs, i);
    if (!l || l->function == 0) return NULL;
    return pp_str(b, PP_VEC_AT(&b->funcs, pp_func_t, l->function - 1).name);
}

bool pprof_builder_frame_info(const pprof_builder_t *b, const uint64_t *pcs, size_t i,
                              pprof_frame_info_t *out)
{
    memset(out, 0, sizeof *out);
    const pp_loc_t *l = frame_loc(b, pcs, i);
    if (!l) return false;
    if (l->function) {
        const pp_func_t *f = &PP_VEC_AT(&b->funcs, pp_func_t, l->function - 1);
        out->name = pp_str(b, f->name);
        out->system_name = pp_str(b, f->system_name);
    }
    if (l->mapping) {
        const pp_mapping_t *m = &PP_VEC_AT(&b->maps, pp_mapping_t, l->mapping - 1);
        out->file = pp_str(b, m->filename);
        out->file_offset = l->addr - m->start + m->offset;
    }
    return true;
}

static bool func_eq(const void *ctx, uint32_t idx, const void *key)
{
    const pprof_builder_t *b = ctx;
    const pp_func_t *f = &PP_VEC_AT(&b->funcs, pp_func_t, idx);
    const pp_func_t *k = key;
    return f->name == k->name && f->system_name == k->system_name &&
           f->filename == k->filename;
}

pprof_err_t pp_func_intern(pprof_builder_t *b, uint32_t name,
                           uint32_t system_name, uint32_t filename,
                           uint32_t *idx)
{
    pp_func_t key = { name, system_name, filename };
    uint32_t h = (uint32_t)pp_mix64(((uint64_t)name << 32 | system_name) ^
                                    ((uint64_t)filename * 0x9E3779B97F4A7C15ull));
    uint32_t found = pp_index_find(&b->func_ix, h, func_eq, b, &key);
    if (found != UINT32_MAX) {
        *idx = found;
        return PPROF_OK;
    }
    if (b->funcs.len >= UINT32_MAX - 1) return PPROF_ERR_LIMIT;
    PP_TRY(pp_vec_reserve(&b->a, &b->funcs, 1));
    PP_TRY(pp_index_reserve(&b->a, &b->func_ix, 1));
    uint32_t i = (uint32_t)b->funcs.len;
    pp_vec_push(&b->a, &b->funcs, &key, NULL);
    pp_index_insert(&b->a, &b->func_ix, h, i);
    *idx = i;
    return PPROF_OK;
}

/* ------------------------------------------------------------------------ */
/* Samples                                                                  */
/* ------------------------------------------------------------------------ */

pprof_err_t pprof_builder_add_sample(pprof_builder_t *b, const uint64_t *pcs,
                                     size_t depth, const int64_t *values,
                                     const pprof_label_t *labels,
                                     size_t nlabels)
{
    if (!b || (depth && !pcs) || !values || (nlabels && !labels) ||
        nlabels > PPROF_MAX_LABELS || depth >= UINT32_MAX)
        return PPROF_ERR_INVALID;
    if (b->ntypes == 0) return PPROF_ERR_STATE;
    for (size_t i = 0; i < nlabels; i++)
        if (!labels[i].key || !labels[i].key[0]) return PPROF_ERR_INVALID;
    if (b->samples.len >= UINT32_MAX - 1) return PPROF_ERR_LIMIT;
    PP_TRY(pp_vec_reserve(&b->a, &b->samples, 1));

    size_t bytes = depth * sizeof(uint32_t);
    bytes = (bytes + 7) & ~(size_t)7;
    size_t vbytes = b->ntypes * sizeof(int64_t);
    size_t lbytes = nlabels * sizeof(pp_label_t);
    unsigned char *mem = pp_pool_alloc(&b->a, &b->sample_pool, bytes + vbytes + lbytes);
    if (!mem) return PPROF_ERR_NOMEM;

    pp_sample_t s;
    s.locs = (uint32_t *)(void *)mem;
    s.values = (int64_t *)(void *)(mem + bytes);
    s.labels = nlabels ? (pp_label_t *)(void *)(mem + bytes + vbytes) : NULL;
    s.depth = (uint32_t)depth;
    s.nlabels = (uint32_t)nlabels;
    for (size_t i = 0; i < depth; i++) {
        uint64_t pc = pcs[i];
        bool ret = b->pc_kind == PPROF_PCS_RETURN ||
                   (b->pc_kind == PPROF_PCS_LEAF_EXACT && i > 0);
        if (ret && pc > 0) pc--;
        PP_TRY(loc_intern(b, pc, &s.locs[i]));
    }
    memcpy(s.values, values, vbytes);
    for (size_t i = 0; i < nlabels; i++) {
        pp_label_t *l = &s.labels[i];
        PP_TRY(pp_str_intern0(b, labels[i].key, &l->key));
        PP_TRY(pp_str_intern0(b, labels[i].str, &l->str));
        if (labels[i].str) {
            l->num = 0;
            l->unit = 0;
        } else {
            l->num = labels[i].num;
            PP_TRY(pp_str_intern0(b, labels[i].num_unit, &l->unit));
        }
    }
    /* A pool block abandoned by an error above is simply unused. */
    pp_vec_push(&b->a, &b->samples, &s, NULL);
    if (s.depth > b->max_depth) b->max_depth = s.depth;
    if (s.nlabels > b->max_labels) b->max_labels = s.nlabels;
    return PPROF_OK;
}

/* ------------------------------------------------------------------------ */
/* Mappings                                                                 */
/* ------------------------------------------------------------------------ */

/* pp_add_mapping_full: adds m; `extra` (optional) carries the /proc fields. */
pprof_err_t pp_add_mapping_full(pprof_builder_t *b, const pprof_mapping_t *m,
                                const pp_mapping_t *extra)
{
    if (!b || !m || m->limit <= m->start) return PPROF_ERR_INVALID;
    if (b->maps.len >= UINT32_MAX - 1) return PPROF_ERR_LIMIT;
    pp_mapping_t pm;
    if (extra)
        pm = *extra;
    else
        memset(&pm, 0, sizeof(pm));
    pm.start = m->start;
    pm.limit = m->limit;
    pm.offset = m->offset;
    pm.has_functions = false;
    PP_TRY(pp_str_intern0(b, m->path, &pm.filename));
    PP_TRY(pp_str_intern0(b, m->build_id, &pm.build_id));
    PP_TRY(pp_vec_reserve(&b->a, &b->maps, 1));
    PP_TRY(pp_vec_reserve(&b->a, &b->map_order, 1));
    uint32_t idx = (uint32_t)b->maps.len;
    pp_vec_push(&b->a, &b->maps, &pm, NULL);
    /* Insertion into map_order sorted by start; equal starts keep the
     * order of addition (the first added wins lookups). */
    uint32_t *order = b->map_order.data;
    size_t n = b->map_order.len, pos = n;
    while (pos > 0 && PP_VEC_AT(&b->maps, pp_mapping_t, order[pos - 1]).start > pm.start)
        pos--;
    memmove(order + pos + 1, order + pos, (n - pos) * sizeof(uint32_t));
    order[pos] = idx;
    b->map_order.len++;
    b->maps_version++;
    return PPROF_OK;
}

pprof_err_t pprof_builder_add_mapping(pprof_builder_t *b, const pprof_mapping_t *m)
{
    return pp_add_mapping_full(b, m, NULL);
}

/* find_mapping: index + 1 of the mapping containing addr, 0 if none. With
 * overlapping mappings, the one added first among those containing addr.
 * maxlim[i] is the largest limit among map_order[0..i], which bounds the
 * walk back: with disjoint mappings it looks at one or two candidates. */
static uint32_t find_mapping(const pprof_builder_t *b, const uint64_t *maxlim,
                             uint64_t addr)
{
    const uint32_t *order = b->map_order.data;
    size_t lo = 0, hi = b->map_order.len;     /* first start > addr */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (PP_VEC_AT(&b->maps, pp_mapping_t, order[mid]).start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t best = 0;
    for (size_t i = lo; i-- > 0 && maxlim[i] > addr;) {
        const pp_mapping_t *m = &PP_VEC_AT(&b->maps, pp_mapping_t, order[i]);
        if (addr < m->limit && (best == 0 || order[i] + 1 < best)) best = order[i] + 1;
    }
    return best;
}

pprof_err_t pp_attach_locations(pprof_builder_t *b)
{
    if (b->attach_version != b->maps_version) {
        b->attached = 0;
        b->attach_version = b->maps_version;
    }
    if (b->attached == b->locs.len) return PPROF_OK;
    size_t n = b->map_order.len;
    uint64_t *maxlim = NULL;
    if (n) {
        maxlim = b->a.alloc(b->a.ctx, n * sizeof(uint64_t));
        if (!maxlim) return PPROF_ERR_NOMEM;
        uint64_t mx = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t l = PP_VEC_AT(&b->maps, pp_mapping_t,
                                   PP_VEC_AT(&b->map_order, uint32_t, i)).limit;
            mx = l > mx ? l : mx;
            maxlim[i] = mx;
        }
    }
    pp_loc_t *locs = b->locs.data;
    for (size_t i = b->attached; i < b->locs.len; i++) {
        uint32_t m = n ? find_mapping(b, maxlim, locs[i].addr) : 0;
        if (m != locs[i].mapping) {
            locs[i].mapping = m;
            locs[i].function = 0;   /* a name found under another mapping */
        }
    }
    if (maxlim) b->a.free(b->a.ctx, maxlim);
    b->attached = b->locs.len;
    return PPROF_OK;
}
