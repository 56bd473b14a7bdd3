/*
 * profile.c - a heap profile read back (profile.h): the file, gunzipped,
 * decoded, checked, and turned into samples of interned frame names.
 *
 * Four steps, each bounded before it takes memory, each refusing the whole
 * file with a one-line reason (never a profile read in part):
 *
 *   1. read: a regular file of at most PROFILE_FILE_MAX bytes, read whole.
 *   2. gunzip (zlib, gzip members one after another as gunzip takes them;
 *      data that does not start with the gzip magic is taken as raw
 *      protobuf, as pprof does): the output grows by doubling up to
 *      PROFILE_RAW_MAX; one byte more is a bomb and refused. Truncated
 *      streams, bad CRCs and bytes after the last member are refused.
 *   3. decode: protobuf-c's generated unpacker (build/gen/pprof), its
 *      memory from a counting allocator that fails past PROFILE_DECODE_MAX
 *      (1 byte of packed varints can become an 8-byte array element, so
 *      the raw bound alone does not bound the decoder).
 *   4. check and build: every id a sample, location or line refers to must
 *      resolve (ids looked up directly when they run 1..n, as Go and our
 *      agent write them, else by binary search; duplicates refused); every
 *      string index in range; one value per sample type. Each location is
 *      named once (its lines innermost first, or file+0xoffset, or its
 *      address), the names cleaned (bytes that are not UTF-8, and control
 *      characters, as '?'; cut at PROFILE_NAME_MAX bytes with "...") and
 *      interned in an open-addressing table, so each sample is an array of
 *      uint32 name indexes, innermost first, held in one pool.
 *
 * The tools are one single-threaded program: plain malloc throughout.
 * Memory at most: while gunzipping, the file (64 MiB) and the raw bytes
 * (256 MiB); while decoding, the raw bytes and the decoder's (1 GiB);
 * while building, the decoder's and the result: the names (at most 4 KiB
 * each), the samples (48 bytes each, 1M) and the frame pool (4 bytes a
 * frame, 16M), plus per location its frames (the same bound). Measured:
 * a 29 MB file (39 MB raw) of 400k samples of 30 frames each is read and
 * its stacks added up in 1.1-1.6 s with 270 MB at most resident
 * (heapwatch report, two shared cores); the agent's profiles are far
 * smaller (python3 at rate 256: 7,907 samples, 90 KB).
 */
#define _GNU_SOURCE
#include "tools/profile.h"

#include "tools/tools.h"
#include "pprof/profile.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef Perftools__Profiles__Profile pb_profile_t;
typedef Perftools__Profiles__Location pb_location_t;
typedef Perftools__Profiles__Function pb_function_t;
typedef Perftools__Profiles__Mapping pb_mapping_t;

/* priv_t: what profile_t.priv holds. */
typedef struct {
    uint32_t *frames;          /* every sample's frames, one pool */
} priv_t;

static void set_msg(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_msg(char *msg, size_t cap, const char *fmt, ...)
{
    if (!msg || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* 1. read, 2. gunzip                                                       */
/* ------------------------------------------------------------------------ */

/* read_file: the whole regular file at path, at most PROFILE_FILE_MAX bytes. */
static unsigned char *read_file(const char *path, size_t *len, char *msg, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        set_msg(msg, cap, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    unsigned char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        set_msg(msg, cap, "cannot stat: %s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        set_msg(msg, cap, "not a regular file");
        goto out;
    }
    if ((uint64_t)st.st_size > PROFILE_FILE_MAX) {
        set_msg(msg, cap, "%" PRIu64 " bytes, more than the %u MiB a profile may have: not read",
                (uint64_t)st.st_size, PROFILE_FILE_MAX >> 20);
        goto out;
    }
    if (st.st_size == 0) {
        set_msg(msg, cap, "empty file");
        goto out;
    }
    /* One byte more than the size: a file that grew since fstat is noticed. */
    size_t want = (size_t)st.st_size + 1, n = 0;
    buf = malloc(want);
    if (!buf) {
        set_msg(msg, cap, "out of memory");
        goto out;
    }
    while (n < want) {
        ssize_t r = read(fd, buf + n, want - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            set_msg(msg, cap, "cannot read: %s", strerror(errno));
            goto fail;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (n != (size_t)st.st_size) {
        set_msg(msg, cap, "the file changed while it was read (%zu bytes, %" PRIu64 " expected)", n,
                (uint64_t)st.st_size);
        goto fail;
    }
    *len = n;
    close(fd);
    return buf;
fail:
    free(buf);
    buf = NULL;
out:
    close(fd);
    return NULL;
}

/* gunzip: the gzip members of in, one after another; NULL with a reason
 * when truncated, corrupt, followed by other bytes, or larger than
 * PROFILE_RAW_MAX once inflated. */
static unsigned char *gunzip(const unsigned char *in, size_t len, size_t *out_len, char *msg, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK) {
        set_msg(msg, cap, "zlib: cannot start inflating");
        return NULL;
    }
    /* Room for PROFILE_RAW_MAX + 1 bytes at most: the extra byte tells a
     * stream of exactly the bound from one over it. */
    const size_t limit = (size_t)PROFILE_RAW_MAX + 1;
    size_t ocap = len < limit / 4 ? len * 4 : limit, n = 0;
    if (ocap < 65536) ocap = 65536;
    if (ocap > limit) ocap = limit;
    unsigned char *out = malloc(ocap);
    if (!out) goto nomem;
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;   /* len <= PROFILE_FILE_MAX < 4 GiB */
    for (;;) {
        if (n == ocap) {
            if (ocap == limit) {
                set_msg(msg, cap, "more than %u MiB once decompressed: refused (a gzip bomb?)", PROFILE_RAW_MAX >> 20);
                goto fail;
            }
            size_t ncap = ocap > limit / 2 ? limit : ocap * 2;
            unsigned char *o = realloc(out, ncap);
            if (!o) goto nomem;
            out = o;
            ocap = ncap;
        }
        zs.next_out = out + n;
        zs.avail_out = (uInt)(ocap - n);
        int r = inflate(&zs, Z_NO_FLUSH);
        n = ocap - zs.avail_out;
        if (r == Z_STREAM_END) {
            if (zs.avail_in == 0) break;
            /* Another member (gzip -c a b > ab), or trailing bytes. */
            if (zs.avail_in < 2 || zs.next_in[0] != 0x1f || zs.next_in[1] != 0x8b) {
                set_msg(msg, cap, "%u bytes after the end of the gzip data", zs.avail_in);
                goto fail;
            }
            inflateReset(&zs);
            continue;
        }
        if (r == Z_OK) continue;   /* progress; at the end of the input the next call says Z_BUF_ERROR */
        if (r == Z_BUF_ERROR && zs.avail_out == 0) continue;   /* output full: grow */
        if (r == Z_BUF_ERROR) {   /* no progress with output room: the input ended early */
            set_msg(msg, cap, "gzip data truncated (%zu bytes inflated before the end of the file)", n);
            goto fail;
        }
        if (r == Z_MEM_ERROR) goto nomem;
        set_msg(msg, cap, "corrupt gzip data (%s)", zs.msg ? zs.msg : "zlib error");
        goto fail;
    }
    inflateEnd(&zs);
    *out_len = n;
    return out;
nomem:
    set_msg(msg, cap, "out of memory while decompressing");
fail:
    free(out);
    inflateEnd(&zs);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* 3. decode with a counting allocator                                      */
/* ------------------------------------------------------------------------ */

typedef struct {
    size_t used;               /* bytes handed out and not freed */
    bool over;                 /* a request was refused for the bound */
} budget_t;

#define BLOCK_HDR 16           /* size header, keeps 16-byte alignment */

static void *budget_alloc(void *ctx, size_t size)
{
    budget_t *b = ctx;
    if (size > PROFILE_DECODE_MAX || b->used > PROFILE_DECODE_MAX - size) {
        b->over = true;
        return NULL;
    }
    unsigned char *p = malloc(size + BLOCK_HDR);
    if (!p) return NULL;
    memcpy(p, &size, sizeof size);
    b->used += size;
    return p + BLOCK_HDR;
}

static void budget_free(void *ctx, void *ptr)
{
    budget_t *b = ctx;
    if (!ptr) return;
    unsigned char *p = (unsigned char *)ptr - BLOCK_HDR;
    size_t size;
    memcpy(&size, p, sizeof size);
    b->used -= size;
    free(p);
}

/* ------------------------------------------------------------------------ */
/* 4. check and build                                                       */
/* ------------------------------------------------------------------------ */

/* id_index_t: an id -> array index lookup for one kind of message. */
typedef struct {
    bool dense;                /* ids are 1..n in array order */
    size_t n;
    uint64_t *pairs;           /* otherwise (id, index) pairs sorted by id */
} id_index_t;

static int cmp_pair(const void *a, const void *b)
{
    uint64_t x = ((const uint64_t *)a)[0], y = ((const uint64_t *)b)[0];
    return x < y ? -1 : x > y;
}

/* id_index_build: ids[i] read at id_offset in items[i]; refuses id 0 and
 * duplicates. @return 0, -1 with msg. */
static int id_index_build(id_index_t *ix, const char *kind, void *const *items, size_t n, size_t id_offset, char *msg,
                          size_t cap)
{
    ix->n = n;
    ix->dense = true;
    ix->pairs = NULL;
    for (size_t i = 0; i < n && ix->dense; i++) {
        uint64_t id;
        memcpy(&id, (const char *)items[i] + id_offset, sizeof id);
        ix->dense = id == (uint64_t)i + 1;
    }
    if (ix->dense) return 0;
    ix->pairs = malloc(n * 2 * sizeof *ix->pairs);
    if (!ix->pairs) {
        set_msg(msg, cap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(&ix->pairs[2 * i], (const char *)items[i] + id_offset, sizeof(uint64_t));
        ix->pairs[2 * i + 1] = i;
    }
    qsort(ix->pairs, n, 2 * sizeof *ix->pairs, cmp_pair);
    for (size_t i = 0; i < n; i++) {
        if (ix->pairs[2 * i] == 0) {
            set_msg(msg, cap, "a %s with id 0 (reserved)", kind);
            return -1;
        }
        if (i && ix->pairs[2 * i] == ix->pairs[2 * i - 2]) {
            set_msg(msg, cap, "two %ss with id %" PRIu64, kind, ix->pairs[2 * i]);
            return -1;
        }
    }
    return 0;
}

/* id_index_find: the array index of id, or SIZE_MAX. */
static size_t id_index_find(const id_index_t *ix, uint64_t id)
{
    if (ix->dense) return id >= 1 && id <= ix->n ? (size_t)(id - 1) : SIZE_MAX;
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t v = ix->pairs[2 * mid];
        if (v == id) return (size_t)ix->pairs[2 * mid + 1];
        if (v < id) lo = mid + 1;
        else hi = mid;
    }
    return SIZE_MAX;
}

/* builder_t: the state of step 4. */
typedef struct {
    const pb_profile_t *pb;
    profile_t *out;
    id_index_t locs, funcs, maps;
    uint32_t *slots;           /* intern table: name index + 1, 0 empty */
    size_t nslots;             /* a power of two, at least twice the names */
    size_t names_cap;
    uint32_t *loc_off;         /* location i's frames: loc_frames[loc_off[i] ..] */
    uint32_t *loc_n;           /* ... loc_n[i] of them (at least 1) */
    uint32_t *loc_frames;
    char *msg;
    size_t cap;
} builder_t;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* clean_name: s as UTF-8 safe for every output (bytes that are not UTF-8
 * and control characters as '?'), at most PROFILE_NAME_MAX bytes (cut at
 * a character, "..." added). A fresh malloc'd string, or NULL. */
static char *clean_name(const char *s)
{
    size_t len = strlen(s), max = len < PROFILE_NAME_MAX ? len : PROFILE_NAME_MAX;
    char *o = malloc(max + 4);
    if (!o) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (*p) {
        size_t k = fmt_utf8_len(p);
        if (n + (k ? k : 1) > PROFILE_NAME_MAX - 3 && len > PROFILE_NAME_MAX) {
            memcpy(o + n, "...", 3);
            n += 3;
            break;
        }
        if (k) memcpy(o + n, p, k);
        else o[n] = '?';
        n += k ? k : 1;
        p += k ? k : 1;
    }
    o[n] = 0;
    return o;
}

/* intern: the index of name among out->names (added when new), or -1. */
static int64_t intern(builder_t *b, const char *raw)
{
    profile_t *out = b->out;
    if (out->nnames >= UINT32_MAX - 1) {
        set_msg(b->msg, b->cap, "more than 2^32 names");
        return -1;
    }
    char *name = clean_name(raw);
    if (!name) goto nomem;
    if ((out->nnames + 1) * 2 > b->nslots) {   /* grow: rehash into twice the slots */
        size_t ns = b->nslots ? b->nslots * 2 : 1024;
        uint32_t *s = calloc(ns, sizeof *s);
        if (!s) goto nomem;
        for (size_t i = 0; i < out->nnames; i++) {
            size_t h = (size_t)hash_str(out->names[i]) & (ns - 1);
            while (s[h]) h = (h + 1) & (ns - 1);
            s[h] = (uint32_t)i + 1;
        }
        free(b->slots);
        b->slots = s;
        b->nslots = ns;
    }
    size_t h = (size_t)hash_str(name) & (b->nslots - 1);
    for (; b->slots[h]; h = (h + 1) & (b->nslots - 1)) {
        uint32_t i = b->slots[h] - 1;
        if (strcmp(out->names[i], name) == 0) {
            free(name);
            return i;
        }
    }
    if (out->nnames == b->names_cap) {
        size_t nc = b->names_cap ? b->names_cap * 2 : 256;
        char **nn = realloc(out->names, nc * sizeof *nn);
        if (!nn) goto nomem;
        out->names = nn;
        b->names_cap = nc;
    }
    out->names[out->nnames] = name;
    b->slots[h] = (uint32_t)out->nnames + 1;
    return (int64_t)out->nnames++;
nomem:
    free(name);
    set_msg(b->msg, b->cap, "out of memory");
    return -1;
}

/* str_at: string_table[idx], or NULL (msg set) when idx is out of range. */
static const char *str_at(builder_t *b, int64_t idx, const char *what, uint64_t id)
{
    if (idx < 0 || (uint64_t)idx >= b->pb->n_string_table) {
        set_msg(b->msg, b->cap, "%s %" PRIu64 " names string %" PRId64 " of %zu", what, id, idx, b->pb->n_string_table);
        return NULL;
    }
    return b->pb->string_table[idx];
}

/* address_name: "file+0xoffset" (the mapping's file name without its
 * directory, and the address's offset in that file), or "0x<address>". */
static int64_t address_name(builder_t *b, const pb_location_t *l)
{
    char buf[512];
    snprintf(buf, sizeof buf, "0x%" PRIx64, l->address);
    if (l->mapping_id) {
        size_t mi = id_index_find(&b->maps, l->mapping_id);
        if (mi == SIZE_MAX) {
            set_msg(b->msg, b->cap, "location %" PRIu64 " is in mapping %" PRIu64 ", which does not exist", l->id,
                    l->mapping_id);
            return -1;
        }
        const pb_mapping_t *m = b->pb->mapping[mi];
        const char *file = str_at(b, m->filename, "mapping", m->id);
        if (!file) return -1;
        const char *base = strrchr(file, '/');
        base = base && base[1] ? base + 1 : file;
        if (*base && l->address >= m->memory_start)
            snprintf(buf, sizeof buf, "%.400s+0x%" PRIx64, base, l->address - m->memory_start + m->file_offset);
    }
    return intern(b, buf);
}

/* name_locations: each location's frames (one per line, innermost first;
 * one named by address without lines or names). @return 0, -1 with msg. */
static int name_locations(builder_t *b)
{
    const pb_profile_t *pb = b->pb;
    size_t total = 0;
    for (size_t i = 0; i < pb->n_location; i++) total += pb->location[i]->n_line ? pb->location[i]->n_line : 1;
    if (total > PROFILE_FRAMES_MAX) {
        set_msg(b->msg, b->cap, "%zu location lines, more than %u", total, PROFILE_FRAMES_MAX);
        return -1;
    }
    b->loc_off = malloc((pb->n_location + 1) * sizeof *b->loc_off);
    b->loc_n = malloc((pb->n_location + 1) * sizeof *b->loc_n);
    b->loc_frames = malloc((total + 1) * sizeof *b->loc_frames);
    if (!b->loc_off || !b->loc_n || !b->loc_frames) {
        set_msg(b->msg, b->cap, "out of memory");
        return -1;
    }
    uint32_t at = 0;
    for (size_t i = 0; i < pb->n_location; i++) {
        const pb_location_t *l = pb->location[i];
        b->loc_off[i] = at;
        for (size_t j = 0; j < l->n_line; j++) {
            uint64_t fid = l->line[j]->function_id;
            const char *name = "";
            if (fid) {
                size_t fi = id_index_find(&b->funcs, fid);
                if (fi == SIZE_MAX) {
                    set_msg(b->msg, b->cap, "location %" PRIu64 " names function %" PRIu64 ", which does not exist",
                            l->id, fid);
                    return -1;
                }
                const pb_function_t *f = pb->function[fi];
                if (!(name = str_at(b, f->name, "function", f->id))) return -1;
                if (!*name && !(name = str_at(b, f->system_name, "function", f->id))) return -1;
            }
            int64_t k = *name ? intern(b, name) : address_name(b, l);
            if (k < 0) return -1;
            b->loc_frames[at++] = (uint32_t)k;
        }
        if (!l->n_line) {
            int64_t k = address_name(b, l);
            if (k < 0) return -1;
            b->loc_frames[at++] = (uint32_t)k;
        }
        b->loc_n[i] = at - b->loc_off[i];
    }
    return 0;
}

/* value_column: the index of the sample type named type, or -1. */
static int64_t value_column(builder_t *b, const char *type)
{
    for (size_t i = 0; i < b->pb->n_sample_type; i++) {
        const char *t = str_at(b, b->pb->sample_type[i]->type, "sample type", (uint64_t)i);
        if (t && strcmp(t, type) == 0) return (int64_t)i;
    }
    return -1;
}

/* build_samples: out->samples and the frame pool. @return 0, -1 with msg. */
static int build_samples(builder_t *b)
{
    const pb_profile_t *pb = b->pb;
    profile_t *out = b->out;
    for (size_t i = 0; i < pb->n_sample_type; i++)
        if (!str_at(b, pb->sample_type[i]->type, "sample type", (uint64_t)i)) return -1;
    int64_t col[4] = { value_column(b, "alloc_objects"), value_column(b, "alloc_space"),
                       value_column(b, "inuse_objects"), value_column(b, "inuse_space") };
    if (pb->n_sample && col[0] < 0 && col[1] < 0 && col[2] < 0 && col[3] < 0) {
        set_msg(b->msg, b->cap, "not a heap profile (no alloc_objects, alloc_space, inuse_objects or inuse_space values)");
        return -1;
    }
    if (pb->n_sample > PROFILE_SAMPLES_MAX) {
        set_msg(b->msg, b->cap, "%zu samples, more than %u", pb->n_sample, PROFILE_SAMPLES_MAX);
        return -1;
    }
    /* Pass 1: check every reference, count the frames kept. */
    size_t total = 0;
    for (size_t i = 0; i < pb->n_sample; i++) {
        const Perftools__Profiles__Sample *s = pb->sample[i];
        if (s->n_value != pb->n_sample_type) {
            set_msg(b->msg, b->cap, "sample %zu has %zu values for %zu sample types", i, s->n_value, pb->n_sample_type);
            return -1;
        }
        size_t depth = 0;
        for (size_t j = 0; j < s->n_location_id; j++) {
            size_t li = id_index_find(&b->locs, s->location_id[j]);
            if (li == SIZE_MAX) {
                set_msg(b->msg, b->cap, "sample %zu names location %" PRIu64 ", which does not exist", i,
                        s->location_id[j]);
                return -1;
            }
            depth += b->loc_n[li];
        }
        total += depth < PROFILE_DEPTH_MAX ? depth : PROFILE_DEPTH_MAX;
        if (total > PROFILE_FRAMES_MAX) {
            set_msg(b->msg, b->cap, "more than %u frames in all samples", PROFILE_FRAMES_MAX);
            return -1;
        }
    }
    priv_t *priv = out->priv;
    out->samples = calloc(pb->n_sample ? pb->n_sample : 1, sizeof *out->samples);
    priv->frames = malloc((total ? total : 1) * sizeof *priv->frames);
    if (!out->samples || !priv->frames) {
        set_msg(b->msg, b->cap, "out of memory");
        return -1;
    }
    /* Pass 2: the frames, innermost first, the outermost dropped past the
     * depth bound. */
    uint32_t *pool = priv->frames;
    for (size_t i = 0; i < pb->n_sample; i++) {
        const Perftools__Profiles__Sample *s = pb->sample[i];
        profile_sample_t *o = &out->samples[i];
        o->frames = pool;
        for (size_t j = 0; j < s->n_location_id && o->nframes < PROFILE_DEPTH_MAX; j++) {
            size_t li = id_index_find(&b->locs, s->location_id[j]);
            for (uint32_t k = 0; k < b->loc_n[li] && o->nframes < PROFILE_DEPTH_MAX; k++)
                pool[o->nframes++] = b->loc_frames[b->loc_off[li] + k];
        }
        pool += o->nframes;
        int64_t *dst[4] = { &o->alloc_objects, &o->alloc_bytes, &o->inuse_objects, &o->inuse_bytes };
        for (int c = 0; c < 4; c++) *dst[c] = col[c] >= 0 ? s->value[col[c]] : 0;
    }
    out->nsamples = pb->n_sample;
    return 0;
}

static int build(const pb_profile_t *pb, profile_t *out, char *msg, size_t cap)
{
    builder_t b = { .pb = pb, .out = out, .msg = msg, .cap = cap };
    int rc = -1;
    if (id_index_build(&b.locs, "location", (void *const *)pb->location, pb->n_location,
                       offsetof(pb_location_t, id), msg, cap) != 0 ||
        id_index_build(&b.funcs, "function", (void *const *)pb->function, pb->n_function,
                       offsetof(pb_function_t, id), msg, cap) != 0 ||
        id_index_build(&b.maps, "mapping", (void *const *)pb->mapping, pb->n_mapping, offsetof(pb_mapping_t, id), msg,
                       cap) != 0)
        goto out;
    if (name_locations(&b) != 0 || build_samples(&b) != 0) goto out;
    out->period = pb->period;
    out->time_nanos = pb->time_nanos;
    rc = 0;
out:
    free(b.locs.pairs);
    free(b.funcs.pairs);
    free(b.maps.pairs);
    free(b.slots);
    free(b.loc_off);
    free(b.loc_n);
    free(b.loc_frames);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                             */
/* ------------------------------------------------------------------------ */

/* decode: steps 2 to 4 on the file's bytes (consumed: freed here). */
static int decode(unsigned char *file, size_t len, profile_t *out, char *msg, size_t msgcap)
{
    size_t rawlen;
    unsigned char *raw;
    if (len >= 2 && file[0] == 0x1f && file[1] == 0x8b) {
        raw = gunzip(file, len, &rawlen, msg, msgcap);
        free(file);
        if (!raw) return -1;
    } else {
        raw = file;   /* raw protobuf, as `go tool pprof` accepts it */
        rawlen = len;
    }
    budget_t budget = { 0, false };
    ProtobufCAllocator pa = { budget_alloc, budget_free, &budget };
    pb_profile_t *pb = perftools__profiles__profile__unpack(&pa, rawlen, raw);
    free(raw);
    if (!pb) {
        if (budget.over) set_msg(msg, msgcap, "decoding it takes more than %u MiB: refused", PROFILE_DECODE_MAX >> 20);
        else set_msg(msg, msgcap, "not a profile (protobuf decoding failed)");
        return -1;
    }
    int rc = build(pb, out, msg, msgcap);
    perftools__profiles__profile__free_unpacked(pb, &pa);
    return rc;
}

/* start: *out empty, with its priv. */
static int start(profile_t *out, char *msg, size_t msgcap)
{
    memset(out, 0, sizeof *out);
    set_msg(msg, msgcap, "%s", "");
    if ((out->priv = calloc(1, sizeof(priv_t)))) return 0;
    set_msg(msg, msgcap, "out of memory");
    return -1;
}

int profile_read(const char *path, profile_t *out, char *msg, size_t msgcap)
{
    if (start(out, msg, msgcap) != 0) return -1;
    size_t len;
    unsigned char *file = read_file(path, &len, msg, msgcap);
    if (!file) return -1;
    if (decode(file, len, out, msg, msgcap) == 0) return 0;
    profile_free(out);
    return -1;
}

int profile_read_mem(const void *data, size_t len, profile_t *out, char *msg, size_t msgcap)
{
    if (start(out, msg, msgcap) != 0) return -1;
    if (len == 0 || len > PROFILE_FILE_MAX) {
        if (len) set_msg(msg, msgcap, "more than the %u MiB a profile may have", PROFILE_FILE_MAX >> 20);
        else set_msg(msg, msgcap, "empty");
        return -1;
    }
    unsigned char *copy = malloc(len);
    if (!copy) {
        set_msg(msg, msgcap, "out of memory");
        return -1;
    }
    memcpy(copy, data, len);
    if (decode(copy, len, out, msg, msgcap) == 0) return 0;
    profile_free(out);
    return -1;
}

void profile_free(profile_t *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nnames; i++) free(p->names[i]);
    free(p->names);
    free(p->samples);
    priv_t *priv = p->priv;
    if (priv) free(priv->frames);
    free(priv);
    memset(p, 0, sizeof *p);
}
