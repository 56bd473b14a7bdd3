/*
 * pprof_roundtrip.c - profiles built with the API, encoded, decoded with
 * protobuf-c, every field checked; the edge cases of the issue (no
 * samples, depth 1 and 128, 100k distinct stacks, long and non-ASCII
 * paths, a mapping without build ID); the validator's rules; and every
 * out-of-memory path (no crash, no leak).
 */
#include "pprof_test.h"

static test_alloc_t ta;
static map_allocator_t alloc;

static int setup(void **state)
{
    memset(&ta, 0, sizeof(ta));
    alloc = test_allocator(&ta);
    return 0;
}

static int teardown(void **state)
{
    assert_int_equal(ta.live_blocks, 0);   /* nothing leaked */
    return 0;
}

/* Every field of a small profile, by hand. */
static void test_every_field(void **state)
{
    pprof_builder_t *b;
    assert_int_equal(pprof_builder_new(&alloc, &b), PPROF_OK);
    pprof_value_type_t types[2] = { { "samples", "count" }, { "cpu", "nanoseconds" } };
    pprof_value_type_t period = { "cpu", "nanoseconds" };
    assert_int_equal(pprof_builder_set_sample_types(b, types, 2, &period, 10000000), PPROF_OK);
    assert_int_equal(pprof_builder_set_default_sample_type(b, "cpu"), PPROF_OK);
    assert_int_equal(pprof_builder_set_time(b, 1700000000123456789ll, 5000000000ll), PPROF_OK);
    assert_int_equal(pprof_builder_add_comment(b, "first comment"), PPROF_OK);
    assert_int_equal(pprof_builder_add_comment(b, "second"), PPROF_OK);
    assert_int_equal(pprof_builder_set_pc_kind(b, PPROF_PCS_LEAF_EXACT), PPROF_OK);

    pprof_mapping_t m1 = { 0x400000, 0x500000, 0x1000, "/usr/bin/prog", "0123abcd" };
    pprof_mapping_t m2 = { 0x7f0000000000, 0x7f0000100000, 0, "/lib/libfoo.so", NULL };
    assert_int_equal(pprof_builder_add_mapping(b, &m1), PPROF_OK);
    assert_int_equal(pprof_builder_add_mapping(b, &m2), PPROF_OK);

    uint64_t s1[3] = { 0x401000, 0x402001, 0x7f0000000101 };
    uint64_t s2[2] = { 0x402001, 0x900000 };   /* 0x900000: in no mapping */
    int64_t v1[2] = { 1, 10000000 }, v2[2] = { 3, -30000000 };
    pprof_label_t l1[2] = { { "thread", "main", 0, NULL }, { "size", NULL, 64, "bytes" } };
    assert_int_equal(pprof_builder_add_sample(b, s1, 3, v1, l1, 2), PPROF_OK);
    assert_int_equal(pprof_builder_add_sample(b, s2, 2, v2, NULL, 0), PPROF_OK);
    /* Types cannot change once samples exist. */
    assert_int_equal(pprof_builder_set_sample_types(b, types, 2, NULL, 0), PPROF_ERR_STATE);
    assert_int_equal(pprof_builder_set_pc_kind(b, PPROF_PCS_EXACT), PPROF_ERR_STATE);

    pprof_builder_stats_t st;
    pprof_builder_get_stats(b, &st);
    assert_int_equal(st.samples, 2);
    assert_int_equal(st.locations, 5);   /* 0x402001 leaf-exact vs caller differ */
    assert_int_equal(st.mappings, 2);

    pb_profile_t *p = t_roundtrip(b, &alloc);
    assert_string_equal(p->string_table[0], "");
    for (size_t i = 1; i < p->n_string_table; i++)      /* interned: no duplicates */
        for (size_t j = i + 1; j < p->n_string_table; j++)
            assert_string_not_equal(p->string_table[i], p->string_table[j]);
    assert_int_equal(p->n_sample_type, 2);
    assert_string_equal(t_str(p, p->sample_type[0]->type), "samples");
    assert_string_equal(t_str(p, p->sample_type[0]->unit), "count");
    assert_string_equal(t_str(p, p->sample_type[1]->type), "cpu");
    assert_string_equal(t_str(p, p->sample_type[1]->unit), "nanoseconds");
    assert_non_null(p->period_type);
    assert_string_equal(t_str(p, p->period_type->type), "cpu");
    assert_int_equal(p->period, 10000000);
    assert_string_equal(t_str(p, p->default_sample_type), "cpu");
    assert_int_equal(p->time_nanos, 1700000000123456789ll);
    assert_int_equal(p->duration_nanos, 5000000000ll);
    assert_int_equal(p->n_comment, 2);
    assert_string_equal(t_str(p, p->comment[0]), "first comment");
    assert_string_equal(t_str(p, p->comment[1]), "second");
    assert_int_equal(p->drop_frames, 0);
    assert_int_equal(p->keep_frames, 0);

    assert_int_equal(p->n_sample, 2);
    const Perftools__Profiles__Sample *a = p->sample[0], *c = p->sample[1];
    assert_int_equal(a->n_location_id, 3);
    assert_int_equal(a->n_value, 2);
    assert_int_equal(a->value[0], 1);
    assert_int_equal(a->value[1], 10000000);
    assert_int_equal(c->value[1], -30000000);
    /* Leaf exact, callers minus 1; ids 1, 2, 3... in first-use order. */
    assert_int_equal(a->location_id[0], 1);
    assert_int_equal(a->location_id[1], 2);
    assert_int_equal(a->location_id[2], 3);
    assert_int_equal(t_loc(p, 1)->address, 0x401000);
    assert_int_equal(t_loc(p, 2)->address, 0x402000);
    assert_int_equal(t_loc(p, 3)->address, 0x7f0000000100);
    assert_int_equal(c->location_id[0], 4);                /* 0x402001 as a leaf */
    assert_int_equal(t_loc(p, 4)->address, 0x402001);
    assert_int_equal(c->location_id[1], 5);
    assert_int_equal(t_loc(p, 5)->address, 0x8fffff);
    /* Locations attached to mappings; unnamed (no symbolization). */
    assert_int_equal(t_loc(p, 1)->mapping_id, 1);
    assert_int_equal(t_loc(p, 3)->mapping_id, 2);
    assert_int_equal(t_loc(p, 5)->mapping_id, 0);
    for (uint64_t id = 1; id <= 5; id++) assert_int_equal(t_loc(p, id)->n_line, 0);
    assert_int_equal(p->n_function, 0);

    assert_int_equal(a->n_label, 2);
    assert_string_equal(t_str(p, a->label[0]->key), "thread");
    assert_string_equal(t_str(p, a->label[0]->str), "main");
    assert_int_equal(a->label[0]->num, 0);
    assert_string_equal(t_str(p, a->label[1]->key), "size");
    assert_int_equal(a->label[1]->str, 0);
    assert_int_equal(a->label[1]->num, 64);
    assert_string_equal(t_str(p, a->label[1]->num_unit), "bytes");
    assert_int_equal(c->n_label, 0);

    assert_int_equal(p->n_mapping, 2);
    const Perftools__Profiles__Mapping *mp = t_map(p, 1);
    assert_int_equal(mp->memory_start, 0x400000);
    assert_int_equal(mp->memory_limit, 0x500000);
    assert_int_equal(mp->file_offset, 0x1000);
    assert_string_equal(t_str(p, mp->filename), "/usr/bin/prog");
    assert_string_equal(t_str(p, mp->build_id), "0123abcd");
    assert_false(mp->has_functions);
    assert_false(mp->has_filenames || mp->has_line_numbers || mp->has_inline_frames);
    assert_string_equal(t_str(p, t_map(p, 2)->build_id), "");   /* no build ID */
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);
}

static void test_raw_and_gzip_agree(void **state)
{
    pprof_builder_t *b;
    assert_int_equal(pprof_builder_new(&alloc, &b), PPROF_OK);
    assert_int_equal(pprof_builder_set_heap_types(b, 1), PPROF_OK);
    uint64_t pcs[2] = { 0x1234, 0x5678 };
    pprof_heap_counts_t c = { 2, 64, 1, 32, 0 };
    assert_int_equal(pprof_heap_add(b, pcs, 2, &c), PPROF_OK);
    void *raw, *gz;
    size_t rawlen, gzlen;
    assert_int_equal(pprof_builder_encode(b, false, &raw, &rawlen), PPROF_OK);
    assert_int_equal(pprof_builder_encode(b, true, &gz, &gzlen), PPROF_OK);
    assert_true(((unsigned char *)gz)[0] == 0x1f && ((unsigned char *)gz)[1] == 0x8b);
    size_t n;
    unsigned char *inflated = t_gunzip(gz, gzlen, &n);
    assert_int_equal(n, rawlen);
    assert_memory_equal(inflated, raw, rawlen);
    /* Written twice: identical (the builder is not changed by encoding). */
    void *gz2;
    size_t gz2len;
    assert_int_equal(pprof_builder_encode(b, true, &gz2, &gz2len), PPROF_OK);
    assert_int_equal(gz2len, gzlen);
    assert_memory_equal(gz2, gz, gzlen);
    free(inflated);
    alloc.free(alloc.ctx, raw);
    alloc.free(alloc.ctx, gz);
    alloc.free(alloc.ctx, gz2);
    pprof_builder_free(b);
}

static void test_no_samples(void **state)
{
    pprof_builder_t *b;
    assert_int_equal(pprof_builder_new(&alloc, &b), PPROF_OK);
    /* Not even sample types: still a valid (empty) profile. */
    pb_profile_t *p = t_roundtrip(b, &alloc);
    assert_int_equal(p->n_sample, 0);
    assert_int_equal(p->n_string_table, 1);
    perftools__profiles__profile__free_unpacked(p, NULL);
    assert_int_equal(pprof_builder_set_heap_types(b, 524288), PPROF_OK);
    p = t_roundtrip(b, &alloc);
    assert_int_equal(p->n_sample, 0);
    assert_int_equal(p->n_sample_type, 4);
    assert_int_equal(p->period, 524288);
    perftools__profiles__profile__free_unpacked(p, NULL);
    /* A sample needs sample types first. */
    pprof_builder_t *b2;
    assert_int_equal(pprof_builder_new(&alloc, &b2), PPROF_OK);
    int64_t v = 1;
    assert_int_equal(pprof_builder_add_sample(b2, NULL, 0, &v, NULL, 0), PPROF_ERR_STATE);
    pprof_builder_free(b2);
    pprof_builder_free(b);
}

static void test_depths(void **state)
{
    pprof_builder_t *b;
    assert_int_equal(pprof_builder_new(&alloc, &b), PPROF_OK);
    assert_int_equal(pprof_builder_set_heap_types(b, 1), PPROF_OK);
    pprof_heap_counts_t c = { 1, 100, 1, 100, 0 };
    assert_int_equal(pprof_heap_add(b, NULL, 0, &c), PPROF_OK);        /* empty stack */
    uint64_t one = 0xabc;
    assert_int_equal(pprof_heap_add(b, &one, 1, &c), PPROF_OK);
    uint64_t deep[128];
    for (int i = 0; i < 128; i++) deep[i] = 0x10000 + 0x10 * (uint64_t)i;
    assert_int_equal(pprof_heap_add(b, deep, 128, &c), PPROF_OK);
    pb_profile_t *p = t_roundtrip(b, &alloc);
    assert_int_equal(p->n_sample, 3);
    assert_int_equal(p->sample[0]->n_location_id, 0);
    assert_int_equal(p->sample[1]->n_location_id, 1);
    assert_int_equal(t_loc(p, p->sample[1]->location_id[0])->address, 0xabb);
    assert_int_equal(p->sample[2]->n_location_id, 128);
    for (int i = 0; i < 128; i++)
        assert_int_equal(t_loc(p, p->sample[2]->location_id[i])->address,
                         0x10000 + 0x10 * (uint64_t)i - 1);
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);
}

/* 100k distinct stacks of depth 32 over a shared pool of frames. */
static void test_100k_stacks(void **state)
{
    pprof_builder_t *b;
    assert_int_equal(pprof_builder_new(&alloc, &b), PPROF_OK);
    assert_int_equal(pprof_builder_set_heap_types(b, 1), PPROF_OK);
    uint64_t rng = 42;
    enum { N = 100000, D = 32, POOL = 20000 };
    for (uint64_t i = 0; i < N; i++) {
        uint64_t pcs[D];
        pcs[0] = 0x100000 + i * 16 + 1;    /* a distinct leaf: distinct stacks */
        for (int d = 1; d < D; d++) pcs[d] = 0x800000 + (test_rand(&rng) % POOL) * 16 + 1;
        pprof_heap_counts_t c = { 1, (int64_t)(i + 1), 1, (int64_t)(i + 1), 0 };
        assert_int_equal(pprof_heap_add(b, pcs, D, &c), PPROF_OK);
    }
    pprof_builder_stats_t st;
    pprof_builder_get_stats(b, &st);
    assert_int_equal(st.samples, N);
    assert_true(st.locations <= N + POOL);
    pb_profile_t *p = t_roundtrip(b, &alloc);
    assert_int_equal(p->n_sample, N);
    assert_int_equal(p->n_location, st.locations);
    int64_t total = 0;
    for (size_t i = 0; i < p->n_sample; i++) {
        assert_int_equal(p->sample[i]->n_location_id, D);
        total += p->sample[i]->value[3];
    }
    assert_int_equal(total, (int64_t)N * (N + 1) / 2);
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);
}

static void test_long_and_utf8_paths(void **state)
{
    pprof_builder_t *b;
    assert_int_equal(pprof_builder_new(&alloc, &b), PPROF_OK);
    assert_int_equal(pprof_builder_set_heap_types(b, 1), PPROF_OK);
    char *longp = malloc(5000);
    longp[0] = '/';
    for (int i = 1; i < 4999; i++) longp[i] = (i % 50 == 0) ? '/' : (char)('a' + i % 26);
    longp[4999] = '\0';
    const char *utf8 = "/tmp/h\xc3\xa9\x61p/\xe6\xb5\x8b\xe8\xaf\x95/libm\xc3\xbc.so \xf0\x9f\x94\xa5";
    pprof_mapping_t m1 = { 0x1000, 0x2000, 0, longp, NULL };
    pprof_mapping_t m2 = { 0x3000, 0x4000, 0, utf8, "ff" };
    assert_int_equal(pprof_builder_add_mapping(b, &m1), PPROF_OK);
    assert_int_equal(pprof_builder_add_mapping(b, &m2), PPROF_OK);
    uint64_t pcs[2] = { 0x1800, 0x3800 };
    pprof_heap_counts_t c = { 1, 8, 0, 0, 0 };
    assert_int_equal(pprof_heap_add(b, pcs, 2, &c), PPROF_OK);
    /* Files that do not exist: symbolization names nothing, keeps mappings. */
    assert_int_equal(pprof_builder_symbolize(b, NULL), PPROF_OK);
    pb_profile_t *p = t_roundtrip(b, &alloc);
    assert_string_equal(t_str(p, t_map(p, 1)->filename), longp);
    assert_string_equal(t_str(p, t_map(p, 2)->filename), utf8);
    assert_int_equal(t_loc(p, 1)->mapping_id, 1);
    assert_int_equal(t_loc(p, 2)->mapping_id, 2);
    assert_int_equal(t_loc(p, 1)->n_line, 0);
    assert_false(t_map(p, 1)->has_functions);
    perftools__profiles__profile__free_unpacked(p, NULL);
    free(longp);
    pprof_builder_free(b);
}

static void test_bad_arguments(void **state)
{
    pprof_builder_t *b;
    assert_int_equal(pprof_builder_new(NULL, &b), PPROF_ERR_INVALID);
    assert_int_equal(pprof_builder_new(&alloc, &b), PPROF_OK);
    assert_int_equal(pprof_builder_set_sample_types(b, NULL, 1, NULL, 0), PPROF_ERR_INVALID);
    pprof_value_type_t t = { "x", "y" };
    assert_int_equal(pprof_builder_set_sample_types(b, &t, 0, NULL, 0), PPROF_ERR_INVALID);
    assert_int_equal(pprof_builder_set_sample_types(b, &t, 65, NULL, 0), PPROF_ERR_INVALID);
    assert_int_equal(pprof_builder_set_heap_types(b, -1), PPROF_ERR_INVALID);
    assert_int_equal(pprof_builder_set_sample_types(b, &t, 1, NULL, 0), PPROF_OK);
    pprof_heap_counts_t c = { 1, 1, 1, 1, 0 };
    assert_int_equal(pprof_heap_add(b, NULL, 0, &c), PPROF_ERR_STATE);   /* not heap types */
    int64_t v = 1;
    assert_int_equal(pprof_builder_add_sample(b, NULL, 2, &v, NULL, 0), PPROF_ERR_INVALID);
    pprof_label_t nokey = { NULL, "v", 0, NULL };
    assert_int_equal(pprof_builder_add_sample(b, NULL, 0, &v, &nokey, 1), PPROF_ERR_INVALID);
    pprof_mapping_t bad = { 0x2000, 0x1000, 0, "x", NULL };
    assert_int_equal(pprof_builder_add_mapping(b, &bad), PPROF_ERR_INVALID);
    assert_int_equal(pprof_builder_write_gz(b, "/tmp", "a/b"), PPROF_ERR_INVALID);
    assert_int_equal(pprof_builder_write_gz(b, "/tmp", ""), PPROF_ERR_INVALID);
    assert_int_equal(pprof_builder_write_gz(b, "/tmp", ".."), PPROF_ERR_INVALID);
    pprof_builder_stats_t st;
    pprof_builder_get_stats(b, &st);
    assert_int_equal(st.samples, 0);
    pprof_builder_free(b);
    pprof_builder_free(NULL);
    assert_string_equal(pprof_strerror(PPROF_OK), "ok");
    assert_string_equal(pprof_strerror(PPROF_ERR_NOSPACE), "no space left on device");
    assert_string_equal(pprof_strerror((pprof_err_t)999), "unknown error");
}

/* ---- the validator rejects what pprof rejects ---- */

static pprof_err_t validate_msg(pb_profile_t *p, char *why)
{
    size_t n = perftools__profiles__profile__get_packed_size(p);
    unsigned char *buf = malloc(n + 1);
    perftools__profiles__profile__pack(p, buf);
    pprof_err_t e = pprof_validate(&alloc, buf, n, why, 200);
    free(buf);
    return e;
}

static void test_validator_rules(void **state)
{
    char s0[2] = "", sx[2] = "x", s1[] = "alloc_space", s2[] = "bytes", s3[] = "f";
    char *strs[4] = { s0, s1, s2, s3 };
    Perftools__Profiles__ValueType vt = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
    Perftools__Profiles__ValueType *vtp = &vt;
    vt.type = 1;
    vt.unit = 2;
    uint64_t locid = 1;
    int64_t val = 5;
    Perftools__Profiles__Sample s = PERFTOOLS__PROFILES__SAMPLE__INIT;
    Perftools__Profiles__Sample *sp = &s;
    s.n_location_id = 1;
    s.location_id = &locid;
    s.n_value = 1;
    s.value = &val;
    Perftools__Profiles__Line line = PERFTOOLS__PROFILES__LINE__INIT;
    Perftools__Profiles__Line *linep = &line;
    line.function_id = 1;
    Perftools__Profiles__Location loc = PERFTOOLS__PROFILES__LOCATION__INIT;
    Perftools__Profiles__Location *locs[2] = { &loc, &loc };
    loc.id = 1;
    loc.n_line = 1;
    loc.line = &linep;
    Perftools__Profiles__Function fn = PERFTOOLS__PROFILES__FUNCTION__INIT;
    Perftools__Profiles__Function *fnp = &fn;
    fn.id = 1;
    fn.name = 3;
    Perftools__Profiles__Profile p = PERFTOOLS__PROFILES__PROFILE__INIT;
    p.n_sample_type = 1;
    p.sample_type = &vtp;
    p.n_sample = 1;
    p.sample = &sp;
    p.n_location = 1;
    p.location = locs;
    p.n_function = 1;
    p.function = &fnp;
    p.n_string_table = 4;
    p.string_table = strs;
    char why[200];
    assert_int_equal(validate_msg(&p, why), PPROF_OK);

    strs[0] = sx;
    assert_int_equal(validate_msg(&p, why), PPROF_ERR_MALFORMED);
    assert_non_null(strstr(why, "string_table[0]"));
    strs[0] = s0;
    fn.name = 4;
    assert_int_equal(validate_msg(&p, why), PPROF_ERR_MALFORMED);
    assert_non_null(strstr(why, "out of range"));
    fn.name = 3;
    s.n_value = 0;
    assert_int_equal(validate_msg(&p, why), PPROF_ERR_MALFORMED);
    assert_non_null(strstr(why, "mismatch"));
    s.n_value = 1;
    locid = 2;
    assert_int_equal(validate_msg(&p, why), PPROF_ERR_MALFORMED);
    assert_non_null(strstr(why, "nil location"));
    locid = 1;
    p.n_location = 2;   /* the same location twice: duplicate id */
    assert_int_equal(validate_msg(&p, why), PPROF_ERR_MALFORMED);
    assert_non_null(strstr(why, "same id"));
    p.n_location = 1;
    line.function_id = 7;
    assert_int_equal(validate_msg(&p, why), PPROF_ERR_MALFORMED);
    assert_non_null(strstr(why, "nil function"));
    line.function_id = 1;
    fn.id = 0;
    assert_int_equal(validate_msg(&p, why), PPROF_ERR_MALFORMED);
    assert_non_null(strstr(why, "reserved ID=0"));
    fn.id = 1;
    loc.mapping_id = 3;
    assert_int_equal(validate_msg(&p, why), PPROF_ERR_MALFORMED);
    loc.mapping_id = 0;
    p.n_sample_type = 0;
    assert_int_equal(validate_msg(&p, why), PPROF_ERR_MALFORMED);
    assert_non_null(strstr(why, "missing sample type"));
    p.n_sample_type = 1;
    assert_int_equal(validate_msg(&p, why), PPROF_OK);

    /* Not a profile at all. */
    assert_int_equal(pprof_validate(&alloc, "", 0, why, sizeof(why)), PPROF_ERR_DECODE);
    unsigned char junk[5] = { 0x0f, 0xff, 0xff, 0xff, 0xff };
    assert_int_equal(pprof_validate(&alloc, junk, sizeof(junk), why, sizeof(why)),
                     PPROF_ERR_DECODE);
    /* A truncated gzip stream. */
    pprof_builder_t *b;
    assert_int_equal(pprof_builder_new(&alloc, &b), PPROF_OK);
    assert_int_equal(pprof_builder_set_heap_types(b, 512), PPROF_OK);
    void *gz;
    size_t gzlen;
    assert_int_equal(pprof_builder_encode(b, true, &gz, &gzlen), PPROF_OK);
    assert_int_equal(pprof_validate(&alloc, gz, gzlen, why, sizeof(why)), PPROF_OK);
    assert_int_equal(pprof_validate(&alloc, gz, gzlen - 4, why, sizeof(why)), PPROF_ERR_DECODE);
    alloc.free(alloc.ctx, gz);
    pprof_builder_free(b);
}

/* Every allocation of build + encode fails in turn: an error, no crash,
 * no leak, and the builder stays usable. */
static void test_out_of_memory(void **state)
{
    for (size_t nth = 1;; nth++) {
        test_alloc_heal(&ta);
        pprof_builder_t *b = NULL;
        test_alloc_fail_nth(&ta, nth, 0);
        pprof_err_t err = pprof_builder_new(&alloc, &b);
        if (err == PPROF_OK) err = pprof_builder_set_heap_types(b, 4096);
        for (int i = 0; i < 300 && err == PPROF_OK; i++) {
            uint64_t pcs[3] = { 0x1000 + (uint64_t)i, 0x2000, 0x3000 + (uint64_t)i % 7 };
            pprof_heap_counts_t c = { 1, 100, 1, 100, 0 };
            err = pprof_heap_add(b, pcs, 3, &c);
        }
        pprof_mapping_t m = { 0x1000, 0x4000, 0, "/nonexistent", NULL };
        if (err == PPROF_OK) err = pprof_builder_add_mapping(b, &m);
        if (err == PPROF_OK) err = pprof_builder_add_comment(b, "c");
        void *data = NULL;
        size_t len;
        if (err == PPROF_OK) err = pprof_builder_encode(b, true, &data, &len);
        if (err == PPROF_OK) {
            alloc.free(alloc.ctx, data);
            if (ta.fail_at >= ta.calls) {   /* nothing failed: every path covered */
                pprof_builder_free(b);
                break;
            }
        }
        assert_true(err == PPROF_OK || err == PPROF_ERR_NOMEM);
        if (err == PPROF_ERR_NOMEM && b) {
            /* Still usable once memory is back. */
            test_alloc_heal(&ta);
            void *d2;
            size_t l2;
            assert_int_equal(pprof_builder_encode(b, true, &d2, &l2), PPROF_OK);
            assert_int_equal(pprof_validate(&alloc, d2, l2, NULL, 0), PPROF_OK);
            alloc.free(alloc.ctx, d2);
        }
        pprof_builder_free(b);
        assert_int_equal(ta.live_blocks, 0);
        assert_true(nth < 100000);
    }
    test_alloc_heal(&ta);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_and_gzip_agree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_samples, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_100k_stacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_and_utf8_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validator_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
