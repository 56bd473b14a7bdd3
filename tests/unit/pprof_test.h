/*
 * pprof_test.h - helpers shared by the pprof unit tests: decoding a
 * profile independently of the module (zlib's uncompress path + protobuf-c
 * with the default malloc allocator), and small lookups on the result.
 * Tests may use malloc and stdio freely.
 */
#ifndef HEAPWATCH_PPROF_TEST_H
#define HEAPWATCH_PPROF_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "pprof/pprof.h"
#include "pprof/profile.pb-c.h"
#include "test_util.h"

typedef Perftools__Profiles__Profile pb_profile_t;

/* t_gunzip: inflates a gzip buffer with plain zlib (malloc). */
static inline unsigned char *t_gunzip(const void *in, size_t len, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 16) != Z_OK) return NULL;
    size_t cap = len * 8 + 4096, n = 0;
    unsigned char *out = malloc(cap);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    for (;;) {
        if (n == cap) {
            cap *= 2;
            out = realloc(out, cap);
        }
        zs.next_out = out + n;
        zs.avail_out = (uInt)(cap - n);
        int r = inflate(&zs, Z_NO_FLUSH);
        n = cap - zs.avail_out;
        if (r == Z_STREAM_END) break;
        if (r != Z_OK && !(r == Z_BUF_ERROR && n == cap)) {
            free(out);
            inflateEnd(&zs);
            return NULL;
        }
    }
    inflateEnd(&zs);
    *out_len = n;
    return out;
}

/* t_decode: the profile in a gzip or raw buffer, decoded; NULL on error. */
static inline pb_profile_t *t_decode(const void *data, size_t len)
{
    const unsigned char *p = data;
    if (len >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
        size_t rl;
        unsigned char *raw = t_gunzip(data, len, &rl);
        if (!raw) return NULL;
        pb_profile_t *prof = perftools__profiles__profile__unpack(NULL, rl, raw);
        free(raw);
        return prof;
    }
    return perftools__profiles__profile__unpack(NULL, len, data);
}

/* t_encode_decode: encodes b (gzip), checks pprof_validate, decodes. */
static inline pb_profile_t *t_roundtrip(pprof_builder_t *b, const map_allocator_t *a)
{
    void *data;
    size_t len;
    assert_int_equal(pprof_builder_encode(b, true, &data, &len), PPROF_OK);
    char why[256];
    pprof_err_t v = pprof_validate(a, data, len, why, sizeof(why));
    if (v != PPROF_OK) fprintf(stderr, "validate: %s\n", why);
    assert_int_equal(v, PPROF_OK);
    pb_profile_t *p = t_decode(data, len);
    assert_non_null(p);
    a->free(a->ctx, data);
    return p;
}

static inline const char *t_str(const pb_profile_t *p, int64_t idx)
{
    assert_true(idx >= 0 && (size_t)idx < p->n_string_table);
    return p->string_table[idx];
}

static inline const Perftools__Profiles__Location *t_loc(const pb_profile_t *p, uint64_t id)
{
    for (size_t i = 0; i < p->n_location; i++)
        if (p->location[i]->id == id) return p->location[i];
    return NULL;
}

static inline const Perftools__Profiles__Function *t_func(const pb_profile_t *p, uint64_t id)
{
    for (size_t i = 0; i < p->n_function; i++)
        if (p->function[i]->id == id) return p->function[i];
    return NULL;
}

static inline const Perftools__Profiles__Mapping *t_map(const pb_profile_t *p, uint64_t id)
{
    for (size_t i = 0; i < p->n_mapping; i++)
        if (p->mapping[i]->id == id) return p->mapping[i];
    return NULL;
}

/* t_loc_name: the function name of a location, or NULL when unnamed. */
static inline const char *t_loc_name(const pb_profile_t *p, uint64_t loc_id)
{
    const Perftools__Profiles__Location *l = t_loc(p, loc_id);
    if (!l || l->n_line == 0) return NULL;
    const Perftools__Profiles__Function *f = t_func(p, l->line[0]->function_id);
    return f ? t_str(p, f->name) : NULL;
}

/* t_name_of_addr: the name pprof would show for the location at address. */
static inline const char *t_name_of_addr(const pb_profile_t *p, uint64_t addr)
{
    for (size_t i = 0; i < p->n_location; i++)
        if (p->location[i]->address == addr) return t_loc_name(p, p->location[i]->id);
    return NULL;
}

#endif /* HEAPWATCH_PPROF_TEST_H */
