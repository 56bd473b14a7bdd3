/*
 * pprof_builder.c - libFuzzer target over the pprof builder: the input is
 * a little program of builder calls (samples of random stacks, values and
 * labels, heap samples, mappings with arbitrary paths, comments, times,
 * /proc mappings + symbolization, injected allocation failures). Whatever
 * it does, the profile it produces must decode, pass pprof_validate (the
 * rules go tool pprof applies), and hold exactly the samples that were
 * accepted, with their values; no memory may leak.
 *
 * Replayed in `make test` by tests/fuzz/regression_driver.c over
 * tests/fuzz/corpus/pprof_builder/; `make fuzz` builds the libFuzzer binary.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pprof/pprof.h"
#include "pprof/profile.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz_s {
    const uint8_t *p;
    size_t n;
} fz_t;

static uint8_t u8(fz_t *f)
{
    if (!f->n) return 0;
    f->n--;
    return *f->p++;
}

static uint64_t u64(fz_t *f, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++) v = v << 8 | u8(f);
    return v;
}

/* str: up to 15 arbitrary non-NUL bytes from the input, or a pooled name. */
static const char *str(fz_t *f, char *buf)
{
    static const char *pool[] = { "bytes", "count", "thread", "", "\xc3\xa9t\xc3\xa9",
                                  "inuse_space", "pprof::x", "k" };
    uint8_t h = u8(f);
    if (h < 128) return pool[h % 8];
    size_t len = h % 16, k = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = u8(f);
        if (c) buf[k++] = (char)c;
    }
    buf[k] = '\0';
    return buf;
}

/* A counting allocator that can fail the Nth call. */
typedef struct fa_s {
    long live;
    long calls;
    long fail_at;
} fa_t;

static void *fa_alloc(void *ctx, size_t n)
{
    fa_t *a = ctx;
    if (a->fail_at && ++a->calls == a->fail_at) return NULL;
    void *p = calloc(1, n);
    if (p) a->live++;
    return p;
}

static void fa_free(void *ctx, void *p)
{
    fa_t *a = ctx;
    a->live--;
    free(p);
}

#define MAX_KEPT 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = { data, size };
    fa_t fa = { 0, 0, 0 };
    map_allocator_t a = { fa_alloc, fa_free, &fa };
    pprof_builder_t *b;
    if (pprof_builder_new(&a, &b) != PPROF_OK) abort();

    uint8_t hdr = u8(&f);
    bool heap = hdr & 1;
    bool gzip = hdr & 2;
    size_t ntypes = heap ? 4 : 1 + (hdr >> 2) % 6;
    int64_t rate = (int64_t)u64(&f, 3);
    pprof_builder_set_pc_kind(b, (pprof_pc_kind_t)((hdr >> 5) % 3));
    if (heap) {
        if (pprof_builder_set_heap_types(b, rate) != PPROF_OK) abort();
    } else {
        pprof_value_type_t t[8];
        char names[8][16];
        for (size_t i = 0; i < ntypes; i++) {
            t[i].type = str(&f, names[i]);
            t[i].unit = (i & 1) ? "bytes" : "count";
        }
        pprof_value_type_t period = { "space", "bytes" };
        if (pprof_builder_set_sample_types(b, t, ntypes, (hdr & 0x80) ? &period : NULL, rate) !=
            PPROF_OK)
            abort();
    }

    /* What the profile must contain: the values of each accepted sample. */
    static int64_t kept[MAX_KEPT][8];
    static size_t kept_depth[MAX_KEPT];
    size_t nkept = 0, naccepted = 0;
    int ops = 0;
    while (f.n && ops++ < 2000) {
        uint8_t op = u8(&f);
        pprof_err_t err = PPROF_OK;
        if (op >= 0xf8) {   /* arm an allocation failure a few calls ahead */
            fa.calls = 0;
            fa.fail_at = 1 + u8(&f) % 32;
            continue;
        }
        switch (op % 8) {
        case 0:
        case 1:
        case 2: {
            size_t depth = u8(&f) % 140;
            uint64_t pcs[140];
            uint64_t base = u64(&f, 4) << 4;
            for (size_t i = 0; i < depth; i++) {
                uint8_t s = u8(&f);
                pcs[i] = s < 200 ? base + s * 3 : u64(&f, 8);
            }
            if (heap && op % 8 == 2) {
                pprof_heap_counts_t c = { 0 };   /* extra_bytes 0: Go's rule */
                c.alloc_objects = (int64_t)u64(&f, 2);
                c.alloc_bytes = (int64_t)u64(&f, 4);
                c.inuse_objects = (int64_t)u64(&f, 2);
                c.inuse_bytes = (int64_t)u64(&f, 4);
                err = pprof_heap_add(b, pcs, depth, &c);
                if (err == PPROF_OK) {
                    int64_t v[4];
                    pprof_heap_scale(c.alloc_objects, c.alloc_bytes, rate, &v[0], &v[1]);
                    pprof_heap_scale(c.inuse_objects, c.inuse_bytes, rate, &v[2], &v[3]);
                    if (nkept < MAX_KEPT) {
                        memcpy(kept[nkept], v, sizeof(v));
                        kept_depth[nkept++] = depth;
                    }
                    naccepted++;
                }
                break;
            }
            int64_t v[8];
            for (size_t i = 0; i < ntypes; i++) v[i] = (int64_t)u64(&f, 8);
            pprof_label_t l[4];
            char lb[4][2][16];
            size_t nl = u8(&f) % 5;
            for (size_t i = 0; i < nl; i++) {
                l[i].key = str(&f, lb[i][0]);
                l[i].str = u8(&f) & 1 ? str(&f, lb[i][1]) : NULL;
                l[i].num = (int64_t)u64(&f, 2);
                l[i].num_unit = u8(&f) & 1 ? "bytes" : NULL;
            }
            err = pprof_builder_add_sample(b, pcs, depth, v, l, nl);
            bool bad_key = false;
            for (size_t i = 0; i < nl; i++) bad_key |= !l[i].key[0];
            if (bad_key && err != PPROF_ERR_INVALID) abort();
            if (err == PPROF_OK) {
                if (nkept < MAX_KEPT) {
                    memcpy(kept[nkept], v, sizeof(int64_t) * ntypes);
                    kept_depth[nkept++] = depth;
                }
                naccepted++;
            }
            break;
        }
        case 3: {
            char pb[16], bb[16];
            pprof_mapping_t m;
            m.start = u64(&f, 5) << 8;
            m.limit = m.start + u64(&f, 3);
            m.offset = u64(&f, 3) << 12;
            m.path = str(&f, pb);
            m.build_id = str(&f, bb);
            err = pprof_builder_add_mapping(b, &m);
            if (m.limit <= m.start && err != PPROF_ERR_INVALID) abort();
            break;
        }
        case 4: {
            char cb[16];
            err = pprof_builder_add_comment(b, str(&f, cb));
            break;
        }
        case 5:
            err = pprof_builder_set_time(b, (int64_t)(u64(&f, 8) >> 1), (int64_t)u64(&f, 4));
            break;
        case 6:
            err = pprof_builder_add_mappings_from_proc(b);
            if (err == PPROF_OK) err = pprof_builder_symbolize(b, NULL);
            break;
        case 7: {
            char db[16];
            err = pprof_builder_set_default_sample_type(b, str(&f, db));
            break;
        }
        }
        if (err != PPROF_OK && err != PPROF_ERR_NOMEM && err != PPROF_ERR_INVALID &&
            err != PPROF_ERR_STATE && err != PPROF_ERR_PROC) {
            fprintf(stderr, "unexpected error %s\n", pprof_strerror(err));
            abort();
        }
        if (err == PPROF_ERR_NOMEM && !fa.fail_at) abort();   /* only when injected */
        fa.fail_at = 0;
    }
    fa.fail_at = 0;

    void *out;
    size_t len;
    if (pprof_builder_encode(b, gzip, &out, &len) != PPROF_OK) abort();
    char why[256];
    if (pprof_validate(&a, out, len, why, sizeof(why)) != PPROF_OK) {
        fprintf(stderr, "invalid profile: %s\n", why);
        abort();
    }
    a.free(a.ctx, out);
    /* The samples, checked on the raw encoding (same tables, no gzip). */
    if (pprof_builder_encode(b, false, &out, &len) != PPROF_OK) abort();
    Perftools__Profiles__Profile *p = perftools__profiles__profile__unpack(NULL, len, out);
    if (!p || p->n_sample != naccepted || p->n_sample_type != ntypes) abort();
    for (size_t i = 0; i < nkept; i++) {
        if (p->sample[i]->n_location_id != kept_depth[i]) abort();
        if (memcmp(p->sample[i]->value, kept[i], sizeof(int64_t) * ntypes) != 0) abort();
    }
    perftools__profiles__profile__free_unpacked(p, NULL);
    a.free(a.ctx, out);
    pprof_builder_free(b);
    if (fa.live != 0) abort();
    return 0;
}
