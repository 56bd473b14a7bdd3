/*
 * pprof_encode.c - the builder's tables as profile.proto bytes, gzip'ed,
 * streamed to a file descriptor or a memory buffer.
 *
 * A protobuf message is a sequence of fields, and repeated fields may be
 * spread across the stream, so the Profile is written piece by piece with
 * the protoc-c generated messages: first a Profile holding only the scalar
 * fields, sample types and comments (packed as a top-level message), then
 * each Sample, Mapping, Location and Function as its own length-delimited
 * field 2, 3, 4, 5 (tag, size from protobuf_c_message_get_packed_size,
 * then protobuf_c_message_pack_to_buffer), and last a Profile holding only
 * string_table (the builder's char *[] handed over as is). Readers see one
 * Profile; time_nanos appears once, so pprof's "concatenated profiles"
 * check is not tripped. Only one small message exists at a time, so
 * memory stays flat however large the profile: the scratch arrays below
 * (the deepest stack, the most labels) and zlib's state, all from the
 * builder's allocator. protobuf_c_message_pack_to_buffer allocates nothing;
 * the bytes go through our ProtobufCBuffer into a staging buffer, then
 * deflate (zalloc/zfree on the same allocator, level 1 like Go's
 * BestSpeed), then the sink.
 */
#include <errno.h>
#include <string.h>
#include <zlib.h>

#include "pprof/pprof_internal.h"
#include "pprof/profile.pb-c.h"

#define STAGE_SIZE (64u * 1024u)
#define ZOUT_SIZE (64u * 1024u)

/* ------------------------------------------------------------------------ */
/* Allocators for zlib                                                      */
/* ------------------------------------------------------------------------ */

void *pp_zalloc(void *opaque, unsigned items, unsigned size)
{
    const map_allocator_t *a = opaque;
    if (size && items > SIZE_MAX / size) return Z_NULL;
    size_t n = (size_t)items * size;
    return a->alloc(a->ctx, n ? n : 1);
}

void pp_zfree(void *opaque, void *ptr)
{
    const map_allocator_t *a = opaque;
    if (ptr) a->free(a->ctx, ptr);
}

/* ------------------------------------------------------------------------ */
/* Sink                                                                     */
/* ------------------------------------------------------------------------ */

struct pp_sink_s {
    ProtobufCBuffer base;    /* first: protobuf-c calls base.append */
    const map_allocator_t *a;
    bool gzip;
    bool z_live;             /* deflateInit2 succeeded */
    z_stream zs;
    unsigned char *stage;    /* STAGE_SIZE bytes of not yet compressed input */
    size_t nstage;
    unsigned char *zout;     /* ZOUT_SIZE bytes of deflate output */
    int fd;                  /* -1: memory */
    unsigned char *mem;
    size_t mlen, mcap;
    pprof_err_t err;
};

/* emit: final bytes to the fd or the memory buffer. */
static void emit(pp_sink_t *s, const unsigned char *p, size_t n)
{
    if (s->err != PPROF_OK || n == 0) return;
    if (s->fd >= 0) {
        int e = pp_write_all(s->fd, p, n);
        if (e) s->err = pp_errno_to_err(e);
        return;
    }
    if (s->mcap - s->mlen < n) {
        size_t ncap = s->mcap ? s->mcap : 64 * 1024;
        while (ncap - s->mlen < n) {
            if (ncap > SIZE_MAX / 2) {
                s->err = PPROF_ERR_NOMEM;
                return;
            }
            ncap *= 2;
        }
        unsigned char *nm = s->a->alloc(s->a->ctx, ncap);
        if (!nm) {
            s->err = PPROF_ERR_NOMEM;
            return;
        }
        if (s->mem) {
            memcpy(nm, s->mem, s->mlen);
            s->a->free(s->a->ctx, s->mem);
        }
        s->mem = nm;
        s->mcap = ncap;
    }
    memcpy(s->mem + s->mlen, p, n);
    s->mlen += n;
}

/* drain: pushes the staged bytes through deflate (or straight out). */
/* zstart: deflateInit2 at the first drain. When the whole profile is
 * staged by then (Z_FINISH: a profile under STAGE_SIZE), the window is no
 * larger than the profile (at least 2^9) and the hash table sized to
 * match (memLevel = window bits - 7): the same stream a bigger window
 * would give but for the hash, and a few KiB of state instead of the
 * 256 KiB that a short process's exit profile of 1 KiB paid for in page
 * faults and a 64 KiB memset. Otherwise (more to come) windowBits 15 and
 * memLevel 8. windowBits + 16: a gzip wrapper. */
static bool zstart(pp_sink_t *s, int flush)
{
    int wbits = 15;
    if (flush == Z_FINISH)
        while (wbits > 9 && ((size_t)1 << (wbits - 1)) >= s->nstage) wbits--;
    int r = deflateInit2(&s->zs, 1, Z_DEFLATED, wbits + 16, wbits - 7, Z_DEFAULT_STRATEGY);
    if (r != Z_OK) {
        s->err = r == Z_MEM_ERROR ? PPROF_ERR_NOMEM : PPROF_ERR_ZLIB;
        return false;
    }
    s->z_live = true;
    return true;
}

static void drain(pp_sink_t *s, int flush)
{
    if (s->err != PPROF_OK) return;
    if (!s->gzip) {
        emit(s, s->stage, s->nstage);
        s->nstage = 0;
        return;
    }
    if (!s->z_live && !zstart(s, flush)) return;
    s->zs.next_in = s->stage;
    s->zs.avail_in = (uInt)s->nstage;
    for (;;) {
        s->zs.next_out = s->zout;
        s->zs.avail_out = ZOUT_SIZE;
        int r = deflate(&s->zs, flush);
        if (r == Z_STREAM_ERROR) {
            s->err = PPROF_ERR_ZLIB;
            return;
        }
        emit(s, s->zout, ZOUT_SIZE - s->zs.avail_out);
        if (s->err != PPROF_OK) return;
        if (flush == Z_FINISH ? r == Z_STREAM_END
                              : s->zs.avail_in == 0 && s->zs.avail_out != 0)
            break;
        if (r == Z_BUF_ERROR && s->zs.avail_out != 0 && flush != Z_FINISH) break;
    }
    s->nstage = 0;
}

static void sink_append(ProtobufCBuffer *buf, size_t len, const uint8_t *data)
{
    pp_sink_t *s = (pp_sink_t *)buf;
    while (len > 0 && s->err == PPROF_OK) {
        size_t n = STAGE_SIZE - s->nstage;
        if (n > len) n = len;
        memcpy(s->stage + s->nstage, data, n);
        s->nstage += n;
        data += n;
        len -= n;
        if (s->nstage == STAGE_SIZE) drain(s, Z_NO_FLUSH);
    }
}

static pprof_err_t sink_init(pp_sink_t *s, const map_allocator_t *a, bool gzip, int fd)
{
    memset(s, 0, sizeof(*s));
    s->base.append = sink_append;
    s->a = a;
    s->gzip = gzip;
    s->fd = fd;
    s->stage = a->alloc(a->ctx, STAGE_SIZE);
    if (!s->stage) return PPROF_ERR_NOMEM;
    if (!gzip) return PPROF_OK;
    s->zout = a->alloc(a->ctx, ZOUT_SIZE);
    if (!s->zout) return PPROF_ERR_NOMEM;
    s->zs.zalloc = pp_zalloc;
    s->zs.zfree = pp_zfree;
    s->zs.opaque = (voidpf)(uintptr_t)a;
    return PPROF_OK;   /* deflate starts at the first drain (zstart) */
}

static pprof_err_t sink_finish(pp_sink_t *s)
{
    drain(s, Z_FINISH);
    return s->err;
}

static void sink_release(pp_sink_t *s)
{
    if (s->z_live) deflateEnd(&s->zs);
    if (s->stage) s->a->free(s->a->ctx, s->stage);
    if (s->zout) s->a->free(s->a->ctx, s->zout);
    if (s->mem) s->a->free(s->a->ctx, s->mem);
    s->stage = s->zout = s->mem = NULL;
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

static void put_varint(pp_sink_t *s, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;
    while (v >= 0x80) {
        b[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b[n++] = (uint8_t)v;
    sink_append(&s->base, n, b);
}

/* put_field: msg as the length-delimited field `field` of Profile. */
static void put_field(pp_sink_t *s, unsigned field, const ProtobufCMessage *msg)
{
    put_varint(s, (uint64_t)field << 3 | 2);
    put_varint(s, protobuf_c_message_get_packed_size(msg));
    protobuf_c_message_pack_to_buffer(msg, &s->base);
}

/* Profile field numbers (profile.proto). */
enum { F_SAMPLE = 2, F_MAPPING = 3, F_LOCATION = 4, F_FUNCTION = 5 };

static void put_header(pprof_builder_t *b, pp_sink_t *s)
{
    Perftools__Profiles__Profile p = PERFTOOLS__PROFILES__PROFILE__INIT;
    Perftools__Profiles__ValueType vt[PPROF_MAX_SAMPLE_TYPES];
    Perftools__Profiles__ValueType *vtp[PPROF_MAX_SAMPLE_TYPES];
    Perftools__Profiles__ValueType period = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
    for (uint32_t i = 0; i < b->ntypes; i++) {
        perftools__profiles__value_type__init(&vt[i]);
        vt[i].type = b->type_str[i];
        vt[i].unit = b->unit_str[i];
        vtp[i] = &vt[i];
    }
    p.n_sample_type = b->ntypes;
    p.sample_type = vtp;
    if (b->has_period_type) {
        period.type = b->period_type_str;
        period.unit = b->period_unit_str;
        p.period_type = &period;
    }
    p.period = b->period;
    p.time_nanos = b->time_nanos;
    p.duration_nanos = b->duration_nanos;
    p.n_comment = b->comments.len;
    p.comment = b->comments.data;
    p.default_sample_type = b->default_type_str;
    protobuf_c_message_pack_to_buffer(&p.base, &s->base);
}

static pprof_err_t put_samples(pprof_builder_t *b, pp_sink_t *s)
{
    const map_allocator_t *a = &b->a;
    uint64_t *ids = NULL;
    Perftools__Profiles__Label *labels = NULL;
    Perftools__Profiles__Label **lp = NULL;
    if (b->max_depth) {
        ids = a->alloc(a->ctx, b->max_depth * sizeof(uint64_t));
        if (!ids) return PPROF_ERR_NOMEM;
    }
    if (b->max_labels) {
        labels = a->alloc(a->ctx, b->max_labels * (sizeof(*labels) + sizeof(*lp)));
        if (!labels) {
            if (ids) a->free(a->ctx, ids);
            return PPROF_ERR_NOMEM;
        }
        lp = (Perftools__Profiles__Label **)(void *)(labels + b->max_labels);
    }
    const pp_sample_t *samples = b->samples.data;
    for (size_t i = 0; i < b->samples.len && s->err == PPROF_OK; i++) {
        const pp_sample_t *sm = &samples[i];
        Perftools__Profiles__Sample msg = PERFTOOLS__PROFILES__SAMPLE__INIT;
        for (uint32_t d = 0; d < sm->depth; d++) ids[d] = (uint64_t)sm->locs[d] + 1;
        msg.n_location_id = sm->depth;
        msg.location_id = ids;
        msg.n_value = b->ntypes;
        msg.value = sm->values;
        for (uint32_t k = 0; k < sm->nlabels; k++) {
            perftools__profiles__label__init(&labels[k]);
            labels[k].key = sm->labels[k].key;
            labels[k].str = sm->labels[k].str;
            labels[k].num = sm->labels[k].num;
            labels[k].num_unit = sm->labels[k].unit;
            lp[k] = &labels[k];
        }
        msg.n_label = sm->nlabels;
        msg.label = sm->nlabels ? lp : NULL;
        put_field(s, F_SAMPLE, &msg.base);
    }
    if (ids) a->free(a->ctx, ids);
    if (labels) a->free(a->ctx, labels);
    return PPROF_OK;
}

/* put_mappings: with has_functions = every location of the mapping named. */
static pprof_err_t put_mappings(pprof_builder_t *b, pp_sink_t *s)
{
    size_t n = b->maps.len;
    if (n == 0) return PPROF_OK;
    uint32_t *count = b->a.alloc(b->a.ctx, 2 * n * sizeof(uint32_t));
    if (!count) return PPROF_ERR_NOMEM;
    uint32_t *named = count + n;
    const pp_loc_t *locs = b->locs.data;
    for (size_t i = 0; i < b->locs.len; i++) {
        if (!locs[i].mapping) continue;
        count[locs[i].mapping - 1]++;
        if (locs[i].function) named[locs[i].mapping - 1]++;
    }
    for (size_t i = 0; i < n && s->err == PPROF_OK; i++) {
        pp_mapping_t *m = &PP_VEC_AT(&b->maps, pp_mapping_t, i);
        m->has_functions = count[i] > 0 && named[i] == count[i];
        Perftools__Profiles__Mapping msg = PERFTOOLS__PROFILES__MAPPING__INIT;
        msg.id = i + 1;
        msg.memory_start = m->start;
        msg.memory_limit = m->limit;
        msg.file_offset = m->offset;
        msg.filename = m->filename;
        msg.build_id = m->build_id;
        msg.has_functions = m->has_functions;
        put_field(s, F_MAPPING, &msg.base);
    }
    b->a.free(b->a.ctx, count);
    return PPROF_OK;
}

static void put_locations(pprof_builder_t *b, pp_sink_t *s)
{
    const pp_loc_t *locs = b->locs.data;
    for (size_t i = 0; i < b->locs.len && s->err == PPROF_OK; i++) {
        Perftools__Profiles__Location msg = PERFTOOLS__PROFILES__LOCATION__INIT;
        Perftools__Profiles__Line line = PERFTOOLS__PROFILES__LINE__INIT;
        Perftools__Profiles__Line *lp = &line;
        msg.id = i + 1;
        msg.mapping_id = locs[i].mapping;
        msg.address = locs[i].addr;
        if (locs[i].function) {
            line.function_id = locs[i].function;
            msg.n_line = 1;
            msg.line = &lp;
        }
        put_field(s, F_LOCATION, &msg.base);
    }
}

static void put_functions(pprof_builder_t *b, pp_sink_t *s)
{
    const pp_func_t *f = b->funcs.data;
    for (size_t i = 0; i < b->funcs.len && s->err == PPROF_OK; i++) {
        Perftools__Profiles__Function msg = PERFTOOLS__PROFILES__FUNCTION__INIT;
        msg.id = i + 1;
        msg.name = f[i].name;
        msg.system_name = f[i].system_name;
        msg.filename = f[i].filename;
        put_field(s, F_FUNCTION, &msg.base);
    }
}

static void put_strings(pprof_builder_t *b, pp_sink_t *s)
{
    Perftools__Profiles__Profile p = PERFTOOLS__PROFILES__PROFILE__INIT;
    p.n_string_table = b->strs.len;
    p.string_table = b->strs.data;
    protobuf_c_message_pack_to_buffer(&p.base, &s->base);
}

static pprof_err_t encode(pprof_builder_t *b, pp_sink_t *s)
{
    PP_TRY(pp_attach_locations(b));
    put_header(b, s);
    PP_TRY(put_samples(b, s));
    PP_TRY(put_mappings(b, s));
    put_locations(b, s);
    put_functions(b, s);
    put_strings(b, s);
    return sink_finish(s);
}

pprof_err_t pp_encode_fd(pprof_builder_t *b, int fd, bool gzip)
{
    pp_sink_t s;
    pprof_err_t err = sink_init(&s, &b->a, gzip, fd);
    if (err == PPROF_OK) err = encode(b, &s);
    sink_release(&s);
    return err;
}

pprof_err_t pp_encode_mem(pprof_builder_t *b, bool gzip, void **data, size_t *len)
{
    pp_sink_t s;
    pprof_err_t err = sink_init(&s, &b->a, gzip, -1);
    if (err == PPROF_OK) err = encode(b, &s);
    if (err == PPROF_OK) {
        if (!s.mem) {   /* an empty raw profile is 0 bytes: return a block anyway */
            s.mem = b->a.alloc(b->a.ctx, 1);
            if (!s.mem) err = PPROF_ERR_NOMEM;
        }
        if (err == PPROF_OK) {
            *data = s.mem;
            *len = s.mlen;
            s.mem = NULL;
        }
    }
    sink_release(&s);
    return err;
}

pprof_err_t pprof_builder_encode(pprof_builder_t *b, bool gzip, void **data, size_t *len)
{
    if (!b || !data || !len) return PPROF_ERR_INVALID;
    return pp_encode_mem(b, gzip, data, len);
}

pprof_err_t pprof_builder_write_fd(pprof_builder_t *b, int fd)
{
    if (!b || fd < 0) return PPROF_ERR_INVALID;
    return pp_encode_fd(b, fd, true);
}

/* ------------------------------------------------------------------------ */
/* Decompression (pprof_validate)                                           */
/* ------------------------------------------------------------------------ */

pprof_err_t pp_gunzip(const map_allocator_t *a, const void *in, size_t len,
                      size_t max_out, unsigned char **out, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    zs.zalloc = pp_zalloc;
    zs.zfree = pp_zfree;
    zs.opaque = (voidpf)(uintptr_t)a;
    /* 15 + 32: gzip or zlib header, detected. */
    int r = inflateInit2(&zs, 15 + 32);
    if (r != Z_OK) return r == Z_MEM_ERROR ? PPROF_ERR_NOMEM : PPROF_ERR_ZLIB;
    size_t cap = len * 4 + 1024, n = 0;
    if (cap > max_out + 1) cap = max_out + 1;
    unsigned char *buf = a->alloc(a->ctx, cap);
    pprof_err_t err = buf ? PPROF_OK : PPROF_ERR_NOMEM;
    const unsigned char *ip = in;
    size_t left = len;
    while (err == PPROF_OK) {
        if (n == cap) {
            if (cap > max_out) {
                err = PPROF_ERR_DECODE;   /* larger than the caller allows */
                break;
            }
            size_t ncap = cap * 2 > max_out + 1 ? max_out + 1 : cap * 2;
            unsigned char *nb = a->alloc(a->ctx, ncap);
            if (!nb) {
                err = PPROF_ERR_NOMEM;
                break;
            }
            memcpy(nb, buf, n);
            a->free(a->ctx, buf);
            buf = nb;
            cap = ncap;
        }
        size_t in_chunk = left > (1u << 30) ? (1u << 30) : left;
        size_t out_chunk = cap - n > (1u << 30) ? (1u << 30) : cap - n;
        zs.next_in = (Bytef *)(uintptr_t)ip;
        zs.avail_in = (uInt)in_chunk;
        zs.next_out = buf + n;
        zs.avail_out = (uInt)out_chunk;
        r = inflate(&zs, Z_NO_FLUSH);
        ip += in_chunk - zs.avail_in;
        left -= in_chunk - zs.avail_in;
        n += out_chunk - zs.avail_out;
        if (r == Z_STREAM_END) {
            /* Concatenated gzip members form one stream, as Go reads them. */
            if (left == 0) break;
            if (inflateReset(&zs) != Z_OK) err = PPROF_ERR_ZLIB;
            continue;
        }
        if (r == Z_MEM_ERROR) err = PPROF_ERR_NOMEM;
        else if (r != Z_OK && !(r == Z_BUF_ERROR && n == cap)) err = PPROF_ERR_DECODE;
        else if (left == 0 && zs.avail_out != 0) err = PPROF_ERR_DECODE; /* truncated */
    }
    inflateEnd(&zs);
    if (err != PPROF_OK) {
        if (buf) a->free(a->ctx, buf);
        return err;
    }
    *out = buf;
    *out_len = n;
    return PPROF_OK;
}
