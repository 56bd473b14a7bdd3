/*
 * tools_profile.c - heap profiles read back (tools/profile.h): a profile
 * written by pprof/'s builder (this binary's own functions, named by the
 * in-process symbolizer) read back with its names and values, unsampled
 * values as the builder wrote them, interned names; profiles built by hand
 * with protobuf-c for what the builder does not write: inlined lines,
 * unnamed frames (file+0xoffset, bare addresses), ids that are not 1..n,
 * names that are not UTF-8 or too long, stacks past the depth bound; and
 * every way the input can be wrong: each truncation of a real file, bytes
 * flipped, a gzip bomb, trailing bytes, garbage, references and string
 * indexes that do not resolve, duplicate ids, a file too large, an empty
 * one, a directory. A wrong file is refused with a reason, never crashes
 * (this binary is also built with ASan and UBSan).
 */
#include "tools_test.h"

#include "tools/profile.h"
#include "pprof/pprof.h"
#include "pprof/profile.pb-c.h"

#include <fcntl.h>
#include <stdint.h>
#include <zlib.h>

typedef Perftools__Profiles__Profile pb_profile_t;

static profile_t prof;
static char msg[512];

static int setup(void **state)
{
    memset(&prof, 0, sizeof prof);
    msg[0] = 0;
    return tt_setup(state);
}

static int teardown(void **state)
{
    profile_free(&prof);
    return tt_teardown(state);
}

/* read_ok: name from the scratch directory; it must read. */
static void read_ok(const char *name)
{
    profile_free(&prof);
    if (profile_read(tt_path(name), &prof, msg, sizeof msg) != 0) fail_msg("profile_read %s: %s", name, msg);
}

/* read_bad: name must be refused, with a reason holding why. */
static void read_bad(const char *name, const char *why)
{
    profile_free(&prof);
    msg[0] = 0;
    if (profile_read(tt_path(name), &prof, msg, sizeof msg) == 0) fail_msg("%s was read; expected: %s", name, why);
    assert_contains(msg, why);
    assert_true(strchr(msg, '\n') == NULL);
    profile_free(&prof);
}

/* frame: the name of frame i of sample s. */
static const char *frame(size_t s, size_t i)
{
    assert_true(s < prof.nsamples);
    assert_true(i < prof.samples[s].nframes);
    uint32_t k = prof.samples[s].frames[i];
    assert_true(k < prof.nnames);
    return prof.names[k];
}

/* ------------------------------------------------------------------------ */
/* Profiles written by pprof/ (pprof_builder)                               */
/* ------------------------------------------------------------------------ */

static void *m_alloc(void *ctx, size_t n) { return calloc(1, n); }
static void m_free(void *ctx, void *p) { free(p); }
static const map_allocator_t malloc_allocator = { m_alloc, m_free, NULL };

__attribute__((noinline)) int tp_leak_here(int x);
__attribute__((noinline)) int tp_leak_here(int x)
{
    __asm__ volatile("" ::: "memory");
    return x * 3 + 1;
}

__attribute__((noinline)) int tp_build_list(int x);
__attribute__((noinline)) int tp_build_list(int x)
{
    __asm__ volatile("" ::: "memory");
    return tp_leak_here(x) + 2;
}

__attribute__((noinline)) int tp_main_loop(int x);
__attribute__((noinline)) int tp_main_loop(int x)
{
    __asm__ volatile("" ::: "memory");
    return tp_build_list(x) * 7;
}

static uint64_t pc_in(int (*f)(int)) { return (uint64_t)(uintptr_t)(void *)f + 4; }

/* write_builder_profile: two stacks of this binary's functions and one
 * frame in a mapping added by hand (a file that does not exist: unnamed),
 * at rate, gzip-encoded by the builder as the agent writes them (encoded
 * in memory and written here: pprof_builder_write_gz's two fsyncs took
 * seconds of this test's time on a busy disk). */
static void write_builder_profile(const char *name, int64_t rate)
{
    pprof_builder_t *b;
    assert_int_equal(pprof_builder_new(&malloc_allocator, &b), PPROF_OK);
    assert_int_equal(pprof_builder_set_pc_kind(b, PPROF_PCS_EXACT), PPROF_OK);
    assert_int_equal(pprof_builder_set_heap_types(b, rate), PPROF_OK);
    assert_int_equal(pprof_builder_set_time(b, 1700000000123456789ll, 0), PPROF_OK);
    pprof_mapping_t fake = { 0x7f0000100000ull, 0x7f0000200000ull, 0x3000, "/opt/nowhere/libfake.so.1", NULL };
    assert_int_equal(pprof_builder_add_mapping(b, &fake), PPROF_OK);
    uint64_t s1[] = { pc_in(tp_leak_here), pc_in(tp_build_list), pc_in(tp_main_loop) };
    uint64_t s2[] = { 0x7f0000100abcull, pc_in(tp_main_loop) };
    pprof_heap_counts_t c1 = { 10, 10240, 4, 4096, 0 };
    pprof_heap_counts_t c2 = { 3, 3 << 20, 3, 3 << 20, 0 };
    assert_int_equal(pprof_heap_add(b, s1, 3, &c1), PPROF_OK);
    assert_int_equal(pprof_heap_add(b, s2, 2, &c2), PPROF_OK);
    assert_int_equal(pprof_builder_add_mappings_from_proc(b), PPROF_OK);
    assert_int_equal(pprof_builder_symbolize(b, NULL), PPROF_OK);
    void *data;
    size_t len;
    assert_int_equal(pprof_builder_encode(b, true, &data, &len), PPROF_OK);
    tt_write(name, data, len);
    malloc_allocator.free(NULL, data);
    pprof_builder_free(b);
}

static void test_builder_profile_read_back(void **state)
{
    write_builder_profile("heap.1.0001.exit.pb.gz", 1);
    read_ok("heap.1.0001.exit.pb.gz");
    assert_int_equal(prof.nsamples, 2);
    assert_int_equal(prof.period, 1);
    assert_int_equal(prof.time_nanos, 1700000000123456789ll);
    /* Names as the symbolizer gave them, innermost first. */
    assert_int_equal(prof.samples[0].nframes, 3);
    assert_string_equal(frame(0, 0), "tp_leak_here");
    assert_string_equal(frame(0, 1), "tp_build_list");
    assert_string_equal(frame(0, 2), "tp_main_loop");
    /* Values at rate 1: as counted. */
    assert_int_equal(prof.samples[0].alloc_objects, 10);
    assert_int_equal(prof.samples[0].alloc_bytes, 10240);
    assert_int_equal(prof.samples[0].inuse_objects, 4);
    assert_int_equal(prof.samples[0].inuse_bytes, 4096);
    /* A frame in a file that cannot be read: its file and offset in it. */
    assert_int_equal(prof.samples[1].nframes, 2);
    assert_string_equal(frame(1, 0), "libfake.so.1+0x3abc");
    /* Interned: tp_main_loop once, shared by both samples. */
    assert_int_equal(prof.samples[0].frames[2], prof.samples[1].frames[1]);
    assert_int_equal(prof.nnames, 4);
    assert_int_equal(prof.samples[1].inuse_bytes, 3 << 20);
}

/* At a sampling rate the values are the builder's unsampled estimates. */
static void test_builder_profile_unsampled(void **state)
{
    write_builder_profile("heap.1.0002.exit.pb.gz", 524288);
    read_ok("heap.1.0002.exit.pb.gz");
    assert_int_equal(prof.period, 524288);
    int64_t objs, bytes;
    pprof_heap_scale(4, 4096, 524288, &objs, &bytes);
    assert_true(bytes > 4096 * 100);   /* a small object is rarely sampled: scaled up a lot */
    assert_int_equal(prof.samples[0].inuse_objects, objs);
    assert_int_equal(prof.samples[0].inuse_bytes, bytes);
    pprof_heap_scale(10, 10240, 524288, &objs, &bytes);
    assert_int_equal(prof.samples[0].alloc_objects, objs);
    assert_int_equal(prof.samples[0].alloc_bytes, bytes);
}

/* A real file cut at every length, and each of its bytes past the gzip
 * header flipped: refused with a reason (or, for a flip that zlib's CRC
 * cannot see, read whole), never a crash or a read past the data. */
static void test_truncated_and_flipped(void **state)
{
    write_builder_profile("whole.pb.gz", 1);
    FILE *f = fopen(tt_path("whole.pb.gz"), "rb");
    assert_non_null(f);
    unsigned char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(len > 100 && len < sizeof buf);
    for (size_t cut = 1; cut < len; cut++) {
        tt_write("cut.pb.gz", buf, cut);
        read_bad("cut.pb.gz", cut < 10 ? "" : "truncated");
        assert_true(msg[0] != 0);
    }
    size_t refused = 0;
    for (size_t i = 10; i < len; i++) {
        buf[i] ^= 0x5a;
        tt_write("flip.pb.gz", buf, len);
        profile_free(&prof);
        msg[0] = 0;
        if (profile_read(tt_path("flip.pb.gz"), &prof, msg, sizeof msg) != 0) {
            assert_true(msg[0] != 0);
            refused++;
        }
        buf[i] ^= 0x5a;
    }
    assert_true(refused >= (len - 10) * 9 / 10);
}

/* ------------------------------------------------------------------------ */
/* Profiles built by hand                                                   */
/* ------------------------------------------------------------------------ */

/* The strings, functions, locations, mappings and samples of a small
 * profile: location 1 holds an inlined call (two lines), location 2 one
 * function, location 3 no line in a mapping, location 4 no line and no
 * mapping. Tests change a field, then write it. */
enum { S_EMPTY, S_AO, S_COUNT, S_AS, S_BYTES, S_IO, S_IS, S_INLINED, S_OUTER, S_CALLER, S_LIBFILE, S_MANGLED, NSTR };
static char *h_str[NSTR + 2];
static Perftools__Profiles__ValueType h_vt[4];
static Perftools__Profiles__ValueType *h_vtp[4];
static Perftools__Profiles__Function h_fn[4];
static Perftools__Profiles__Function *h_fnp[4];
static Perftools__Profiles__Line h_line[4];
static Perftools__Profiles__Line *h_linep[4];
static Perftools__Profiles__Location h_loc[4];
static Perftools__Profiles__Location *h_locp[4];
static Perftools__Profiles__Mapping h_map;
static Perftools__Profiles__Mapping *h_mapp[1];
static uint64_t h_ids0[] = { 1, 2, 3 }, h_ids1[] = { 4, 3 };
static int64_t h_val0[] = { 2, 200, 1, 100 }, h_val1[] = { 5, 500, 5, 500 };
static Perftools__Profiles__Sample h_s[2];
static Perftools__Profiles__Sample *h_sp[2];
static pb_profile_t h_p;

static void hand_profile(void)
{
    static const char *const strs[NSTR] = { "", "alloc_objects", "count", "alloc_space", "bytes", "inuse_objects",
                                            "inuse_space", "inlined_leaf", "outer_fn", "the_caller",
                                            "/usr/lib/x86_64-linux-gnu/libfoo.so.2", "_Z10mangled_fnv" };
    for (int i = 0; i < NSTR; i++) h_str[i] = (char *)strs[i];
    perftools__profiles__profile__init(&h_p);
    h_p.n_string_table = NSTR;
    h_p.string_table = h_str;
    for (int i = 0; i < 4; i++) {
        perftools__profiles__value_type__init(&h_vt[i]);
        h_vt[i].type = (int64_t[]){ S_AO, S_AS, S_IO, S_IS }[i];
        h_vt[i].unit = i % 2 ? S_BYTES : S_COUNT;
        h_vtp[i] = &h_vt[i];
    }
    h_p.n_sample_type = 4;
    h_p.sample_type = h_vtp;
    /* Functions 1..3 named; function 4 by its system name only. */
    for (int i = 0; i < 4; i++) {
        perftools__profiles__function__init(&h_fn[i]);
        h_fn[i].id = (uint64_t)i + 1;
        h_fn[i].name = i < 3 ? S_INLINED + i : S_EMPTY;
        h_fn[i].system_name = i < 3 ? h_fn[i].name : S_MANGLED;
        h_fnp[i] = &h_fn[i];
    }
    h_p.n_function = 4;
    h_p.function = h_fnp;
    for (int i = 0; i < 4; i++) {
        perftools__profiles__line__init(&h_line[i]);
        h_linep[i] = &h_line[i];
    }
    h_line[0].function_id = 1;   /* inlined into ... */
    h_line[1].function_id = 2;   /* ... this one: location 1 */
    h_line[2].function_id = 3;   /* location 2 */
    perftools__profiles__mapping__init(&h_map);
    h_map.id = 1;
    h_map.memory_start = 0x7f0000000000ull;
    h_map.memory_limit = 0x7f0000100000ull;
    h_map.file_offset = 0x1000;
    h_map.filename = S_LIBFILE;
    h_mapp[0] = &h_map;
    h_p.n_mapping = 1;
    h_p.mapping = h_mapp;
    for (int i = 0; i < 4; i++) {
        perftools__profiles__location__init(&h_loc[i]);
        h_loc[i].id = (uint64_t)i + 1;
        h_locp[i] = &h_loc[i];
    }
    h_loc[0].n_line = 2;
    h_loc[0].line = &h_linep[0];
    h_loc[1].n_line = 1;
    h_loc[1].line = &h_linep[2];
    h_loc[2].mapping_id = 1;
    h_loc[2].address = 0x7f0000012345ull;
    h_loc[3].address = 0x5555deadbeefull;
    h_p.n_location = 4;
    h_p.location = h_locp;
    for (int i = 0; i < 2; i++) {
        perftools__profiles__sample__init(&h_s[i]);
        h_sp[i] = &h_s[i];
        h_s[i].n_value = 4;
    }
    h_s[0].n_location_id = 3;
    h_s[0].location_id = h_ids0;
    h_s[0].value = h_val0;
    h_s[1].n_location_id = 2;
    h_s[1].location_id = h_ids1;
    h_s[1].value = h_val1;
    h_p.n_sample = 2;
    h_p.sample = h_sp;
    h_p.period = 4096;
}

/* write_pb: p packed, gzip-compressed (gzip) or raw, as name. */
static void write_pb(const char *name, const pb_profile_t *p, int gzip)
{
    size_t n = perftools__profiles__profile__get_packed_size(p);
    uint8_t *raw = malloc(n + 1);
    assert_non_null(raw);
    assert_int_equal(perftools__profiles__profile__pack(p, raw), n);
    if (!gzip) {
        tt_write(name, raw, n);
    } else {
        gzFile g = gzopen(tt_path(name), "wb");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, raw, (unsigned)n), (int)n);
        assert_int_equal(gzclose(g), Z_OK);
    }
    free(raw);
}

static void test_hand_profile_names(void **state)
{
    hand_profile();
    write_pb("hand.pb.gz", &h_p, 1);
    read_ok("hand.pb.gz");
    assert_int_equal(prof.nsamples, 2);
    assert_int_equal(prof.period, 4096);
    /* Location 1's two lines: the inlined function first, as pprof shows. */
    assert_int_equal(prof.samples[0].nframes, 4);
    assert_string_equal(frame(0, 0), "inlined_leaf");
    assert_string_equal(frame(0, 1), "outer_fn");
    assert_string_equal(frame(0, 2), "the_caller");
    /* No line, in a mapping: the file's name and the offset in the file. */
    assert_string_equal(frame(0, 3), "libfoo.so.2+0x13345");
    /* No line, no mapping: the address. */
    assert_string_equal(frame(1, 0), "0x5555deadbeef");
    assert_int_equal(prof.samples[1].frames[1], prof.samples[0].frames[3]);
    assert_int_equal(prof.samples[0].alloc_objects, 2);
    assert_int_equal(prof.samples[0].alloc_bytes, 200);
    assert_int_equal(prof.samples[0].inuse_objects, 1);
    assert_int_equal(prof.samples[0].inuse_bytes, 100);
    assert_int_equal(prof.samples[1].inuse_bytes, 500);
    assert_int_equal(prof.nnames, 5);

    /* Raw protobuf (not gzip) is read as pprof reads it. */
    write_pb("hand.pb", &h_p, 0);
    read_ok("hand.pb");
    assert_string_equal(frame(0, 1), "outer_fn");

    /* A function without a name: its system name. */
    h_line[2].function_id = 4;
    write_pb("sys.pb.gz", &h_p, 1);
    read_ok("sys.pb.gz");
    assert_string_equal(frame(0, 2), "_Z10mangled_fnv");
    /* A line without a function: the location's address name. */
    h_line[2].function_id = 0;
    h_loc[1].address = 0x7f0000000010ull;
    h_loc[1].mapping_id = 1;
    write_pb("nofn.pb.gz", &h_p, 1);
    read_ok("nofn.pb.gz");
    assert_string_equal(frame(0, 2), "libfoo.so.2+0x1010");
}

/* Ids need not run 1..n (pprof allows any nonzero unique ids). */
static void test_sparse_ids(void **state)
{
    hand_profile();
    uint64_t ids0[] = { 1000, 77, 5 }, ids1[] = { 9, 5 };
    h_loc[0].id = 1000;
    h_loc[1].id = 77;
    h_loc[2].id = 5;
    h_loc[3].id = 9;
    h_s[0].location_id = ids0;
    h_s[1].location_id = ids1;
    h_fn[1].id = 42;
    h_line[1].function_id = 42;
    write_pb("sparse.pb.gz", &h_p, 1);
    read_ok("sparse.pb.gz");
    assert_string_equal(frame(0, 1), "outer_fn");
    assert_string_equal(frame(0, 2), "the_caller");
    assert_string_equal(frame(1, 0), "0x5555deadbeef");
    assert_string_equal(frame(1, 1), "libfoo.so.2+0x13345");
}

/* Names that are not UTF-8, or hold control characters, come out as '?';
 * a very long one is cut with "..." within PROFILE_NAME_MAX. */
static void test_names_cleaned_and_bounded(void **state)
{
    hand_profile();
    char bad[] = "bad\xff\xfe name\x1b[31m \xc3\xa9t\xc3\xa9";
    size_t longlen = PROFILE_NAME_MAX * 3;
    char *lng = malloc(longlen + 1);
    assert_non_null(lng);
    for (size_t i = 0; i < longlen; i++) lng[i] = "std::vector<int>::"[i % 18];
    lng[longlen] = 0;
    h_str[S_INLINED] = bad;
    h_str[S_OUTER] = lng;
    write_pb("odd.pb.gz", &h_p, 1);
    read_ok("odd.pb.gz");
    assert_string_equal(frame(0, 0), "bad?? name?[31m \xc3\xa9t\xc3\xa9");
    assert_true(strlen(frame(0, 1)) <= PROFILE_NAME_MAX);
    assert_true(strlen(frame(0, 1)) > PROFILE_NAME_MAX - 8);
    assert_non_null(strstr(frame(0, 1), "..."));
    assert_int_equal(strncmp(frame(0, 1), lng, 100), 0);
    free(lng);
}

/* A stack deeper than PROFILE_DEPTH_MAX frames keeps its innermost ones. */
static void test_depth_bound(void **state)
{
    hand_profile();
    size_t depth = PROFILE_DEPTH_MAX + 100;
    uint64_t *ids = malloc(depth * sizeof *ids);
    assert_non_null(ids);
    ids[0] = 1;   /* two frames (inlined) */
    for (size_t i = 1; i < depth; i++) ids[i] = 2;
    h_s[0].location_id = ids;
    h_s[0].n_location_id = depth;
    write_pb("deep.pb.gz", &h_p, 1);
    read_ok("deep.pb.gz");
    assert_int_equal(prof.samples[0].nframes, PROFILE_DEPTH_MAX);
    assert_string_equal(frame(0, 0), "inlined_leaf");
    assert_string_equal(frame(0, PROFILE_DEPTH_MAX - 1), "the_caller");
    assert_int_equal(prof.samples[1].nframes, 2);
    free(ids);
}

/* Each broken reference is refused with what broke. */
static void test_bad_references(void **state)
{
    static const struct {
        const char *why;
        int field;
    } cases[] = {
        { "names location 99, which does not exist", 0 },
        { "names function 99, which does not exist", 1 },
        { "in mapping 7, which does not exist", 2 },
        { "names string 500 of", 3 },
        { "mapping 1 names string -1", 4 },
        { "has 3 values for 4 sample types", 5 },
        { "two locations with id 2", 6 },
        { "a function with id 0", 7 },
        { "sample type 2 names string 99", 8 },
        { "not a heap profile", 9 },
        { "names string 12 of 12", 10 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        hand_profile();
        uint64_t ids[] = { 1, 99 };
        switch (cases[i].field) {
        case 0: h_s[1].location_id = ids; break;
        case 1: h_line[2].function_id = 99; break;
        case 2: h_loc[2].mapping_id = 7; break;
        case 3: h_fn[0].name = 500; break;
        case 4: h_map.filename = -1; break;
        case 5: h_s[1].n_value = 3; break;
        case 6: h_loc[0].id = 2; break;
        case 7: h_fn[3].id = 0; break;
        case 8: h_vt[2].type = 99; break;
        case 9: for (int t = 0; t < 4; t++) h_vt[t].type = S_BYTES; break;
        case 10: h_fn[2].name = S_EMPTY; h_fn[2].system_name = NSTR; break;
        }
        char name[32];
        snprintf(name, sizeof name, "bad%zu.pb.gz", i);
        write_pb(name, &h_p, 1);
        read_bad(name, cases[i].why);
    }
}

/* ------------------------------------------------------------------------ */
/* Files that are not profiles, or too big                                  */
/* ------------------------------------------------------------------------ */

/* gz_append: n bytes of data deflated into g's file as one more member. */
static void gz_file(const char *name, const void *data, size_t n)
{
    gzFile g = gzopen(tt_path(name), "ab");
    assert_non_null(g);
    if (n) assert_int_equal(gzwrite(g, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(g), Z_OK);
}

static void test_gzip_bomb(void **state)
{
    /* 257 MiB of zeros, about 256 KiB compressed: one MiB over the bound. */
    gzFile g = gzopen(tt_path("bomb.pb.gz"), "wb9");
    assert_non_null(g);
    static unsigned char zeros[1 << 20];
    for (unsigned i = 0; i < (PROFILE_RAW_MAX >> 20) + 1; i++) assert_int_equal(gzwrite(g, zeros, sizeof zeros), (int)sizeof zeros);
    assert_int_equal(gzclose(g), Z_OK);
    struct stat st;
    assert_int_equal(stat(tt_path("bomb.pb.gz"), &st), 0);
    assert_true(st.st_size < (1 << 20));
    read_bad("bomb.pb.gz", "more than 256 MiB once decompressed");
}

static void test_not_profiles(void **state)
{
    hand_profile();
    size_t n = perftools__profiles__profile__get_packed_size(&h_p);
    uint8_t *raw = malloc(n);
    assert_non_null(raw);
    perftools__profiles__profile__pack(&h_p, raw);

    /* Two gzip members (gzip -c a b) make one profile, as gunzip reads them. */
    gz_file("two.pb.gz", raw, n / 2);
    gz_file("two.pb.gz", raw + n / 2, n - n / 2);
    read_ok("two.pb.gz");
    assert_string_equal(frame(0, 1), "outer_fn");

    /* Bytes after the gzip data. */
    gz_file("trail.pb.gz", raw, n);
    FILE *f = fopen(tt_path("trail.pb.gz"), "ab");
    assert_non_null(f);
    fputs("garbage", f);
    fclose(f);
    read_bad("trail.pb.gz", "7 bytes after the end of the gzip data");

    /* gzip magic, then nonsense. */
    tt_write("magic.pb.gz", "\x1f\x8b\x08\x00garbagegarbagegarbage", 25);
    read_bad("magic.pb.gz", "gzip");
    /* A good gzip stream of something that is not protobuf. */
    gz_file("text.pb.gz", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
    read_bad("text.pb.gz", "not a profile");
    tt_write_str("plain.txt", "hello, this is not a profile\n");
    read_bad("plain.txt", "not a profile");

    tt_write("empty.pb.gz", "", 0);
    read_bad("empty.pb.gz", "empty file");
    read_bad("missing.pb.gz", "cannot open: No such file");
    assert_int_equal(mkdir(tt_path("dir.pb.gz"), 0700), 0);
    read_bad("dir.pb.gz", "not a regular file");
    /* Larger than PROFILE_FILE_MAX (sparse): refused before it is read. */
    int fd = open(tt_path("huge.pb.gz"), O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)PROFILE_FILE_MAX + 1), 0);
    close(fd);
    read_bad("huge.pb.gz", "more than the 64 MiB");
    free(raw);
}

/* A profile with no samples reads as an empty one (a process that
 * allocated nothing that was sampled). */
static void test_empty_profile(void **state)
{
    hand_profile();
    h_p.n_sample = 0;
    write_pb("none.pb.gz", &h_p, 1);
    read_ok("none.pb.gz");
    assert_int_equal(prof.nsamples, 0);
    pb_profile_t bare = PERFTOOLS__PROFILES__PROFILE__INIT;
    write_pb("bare.pb.gz", &bare, 1);
    read_ok("bare.pb.gz");
    assert_int_equal(prof.nsamples, 0);
    assert_int_equal(prof.nnames, 0);
}

/* ------------------------------------------------------------------------ */
/* Stacks added up (profile_stacks.c)                                       */
/* ------------------------------------------------------------------------ */

/* A profile in memory: samples of names given innermost first. */
static char *st_names[16];
static uint32_t st_frames[8][8];
static profile_sample_t st_samples[8];

static void st_profile(profile_t *p, const char *const *names, size_t nnames)
{
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < nnames; i++) st_names[i] = (char *)names[i];
    p->names = st_names;
    p->nnames = nnames;
    p->samples = st_samples;
}

static void st_add(profile_t *p, const char *frames, int64_t ao, int64_t ab, int64_t io, int64_t ib)
{
    /* frames: name indexes as digits, innermost first ("310": names 3, 1, 0) */
    profile_sample_t *x = &st_samples[p->nsamples];
    uint32_t *f = st_frames[p->nsamples++];
    uint32_t n = 0;
    for (const char *c = frames; *c; c++) f[n++] = (uint32_t)(*c - '0');
    *x = (profile_sample_t){ f, n, ao, ab, io, ib };
}

static void test_stacks_merged_sorted_named(void **state)
{
    static const char *const names[] = {
        "main", "build_list", "leak_node", "_Znwm", "operator new[](unsigned long)", "xmalloc",
        "std::__new_allocator<int>::allocate(unsigned long, void const*)", "libfoo.so.2+0x1234", "strdup",
    };
    profile_t p;
    st_profile(&p, names, 9);
    st_add(&p, "210", 5, 500, 2, 200);       /* leak_node <- build_list <- main */
    st_add(&p, "210", 1, 100, 1, 100);       /* the same stack again: merged */
    st_add(&p, "3410", 9, 900, 3, 9000);     /* operator new (both spellings) above build_list */
    st_add(&p, "5710", 4, 400, 4, 4000);     /* xmalloc above an unnamed frame */
    st_add(&p, "63", 1, 10, 0, 0);           /* freed: not in use */
    st_add(&p, "85", 2, 20, 2, 20);          /* wrappers only */
    st_add(&p, "", 1, 1, 1, 1);              /* no frames */
    profile_stack_t *st;
    int64_t objs, bytes;
    size_t n = profile_stacks(&p, PROFILE_INUSE, &st, &objs, &bytes);
    assert_int_equal(n, 5);
    assert_int_equal(bytes, 300 + 9000 + 4000 + 20 + 1);
    assert_int_equal(objs, 3 + 3 + 4 + 2 + 1);
    /* Most bytes first; the function is the innermost frame past the wrappers. */
    assert_int_equal(st[0].bytes, 9000);
    assert_string_equal(names[st[0].function], "build_list");
    assert_int_equal(st[1].bytes, 4000);
    assert_string_equal(names[st[1].function], "libfoo.so.2+0x1234");   /* unnamed: said so, not main */
    assert_int_equal(st[2].bytes, 300);                                  /* 200 + 100 merged */
    assert_int_equal(st[2].objects, 3);
    assert_int_equal(st[2].nframes, 3);
    assert_string_equal(names[st[2].function], "leak_node");
    assert_string_equal(names[st[3].function], "strdup");   /* wrappers only: the innermost */
    assert_int_equal(st[4].function, UINT32_MAX);
    free(st);
    /* Allocated in total: the freed stack counts too. */
    n = profile_stacks(&p, PROFILE_ALLOC, &st, &objs, &bytes);
    assert_int_equal(n, 6);
    assert_int_equal(bytes, 600 + 900 + 400 + 10 + 20 + 1);
    assert_string_equal(names[st[0].function], "build_list");
    assert_int_equal(st[0].bytes, 900);
    free(st);
    /* Values from a hostile file: negative ones count as none, sums saturate. */
    st_profile(&p, names, 9);
    st_add(&p, "0", 1, INT64_MAX, 1, INT64_MAX);
    st_add(&p, "0", 1, INT64_MAX, 1, INT64_MAX);
    st_add(&p, "1", -5, -5, -5, -5);
    st_add(&p, "2", 3, -7, 3, -7);
    n = profile_stacks(&p, PROFILE_INUSE, &st, &objs, &bytes);
    assert_int_equal(n, 2);
    assert_int_equal(st[0].bytes, INT64_MAX);
    assert_int_equal(bytes, INT64_MAX);
    assert_int_equal(st[1].bytes, 0);
    assert_int_equal(st[1].objects, 3);
    free(st);
    /* Empty. */
    st_profile(&p, names, 9);
    n = profile_stacks(&p, PROFILE_INUSE, &st, NULL, NULL);
    assert_int_equal(n, 0);
    free(st);
}

static void test_wrappers(void **state)
{
    static const char *const yes[] = { "_Znwm", "_Znam", "operator new(unsigned long)", "operator new[](unsigned long)",
                                       "_ZNSt15__new_allocatorIiE8allocateEmPKv", "std::allocator<char>::allocate(unsigned long)", "_ZNSaIcEC1Ev",
                                       "__gnu_cxx::new_allocator<int>::allocate(unsigned long, void const*)",
                                       "std::_Vector_base<int, std::allocator<int> >::_M_allocate(unsigned long)",
                                       "strdup", "__strndup", "__libc_calloc", "xmalloc", "xstrdup" };
    static const char *const no[] = { "main", "leak_node", "std::vector<int>::push_back(int const&)", "operator delete",
                                      "libfoo.so+0x10", "0x1234", "my_xmalloc", "" };
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        if (!profile_is_wrapper(yes[i])) fail_msg("%s: not taken for a wrapper", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (profile_is_wrapper(no[i])) fail_msg("%s: taken for a wrapper", no[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_builder_profile_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_builder_profile_unsampled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_and_flipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hand_profile_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sparse_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_cleaned_and_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_references, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gzip_bomb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_profiles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_profile, setup, teardown),
        cmocka_unit_test(test_stacks_merged_sorted_named),
        cmocka_unit_test(test_wrappers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
