/*
 * pprof_elf_scan.c - names for a few addresses of a file the symbol
 * cache does not hold, in one pass (pprof_elf.h; pprof_elf.c says how
 * files are read and bounded).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pprof/pprof_elf.h"

/* ------------------------------------------------------------------------ */
/* A few addresses in a file not cached: one pass, nothing sorted or kept   */
/* ------------------------------------------------------------------------ */

/*
 * A profile written once (the exit profile of a short process) names a
 * few dozen addresses, but loading a file's table reads every function
 * symbol and its name and sorts them: cc1's 28,899 took 40 % of its run
 * under the agent. pp_symcache_scan_fd names the addresses in one pass
 * over the symbol section instead, reading no name but the ones it needs,
 * and keeps nothing. The result is the one pp_elf_lookup gives after a
 * load, by the same rules:
 *
 *   - the sorted table's candidate for an address va is the last distinct
 *     symbol address <= va. The queries are sorted (q[0] < q[1] < ...);
 *     a symbol at a goes to bucket j, the first query with q[j] >= a,
 *     which keeps its highest address (and there, the aliases). Query j's
 *     candidate is then bucket j's, or when that bucket is empty query
 *     j-1's (every symbol below q[j] is in a bucket <= j, and buckets hold
 *     increasing addresses);
 *   - aliases at one address: the size is the largest, the name that of
 *     the best (alias_rank, index) - index being the symbol's place in the
 *     section, which the sorted path uses to break rank ties too. The pass
 *     meets aliases in index order, so a later one wins only with a
 *     strictly lower rank; ranks are read (the name's underscores and
 *     length) only when two aliases meet;
 *   - a sized symbol covers [a, a + size); a size-0 one up to the next
 *     symbol, never past the highest of the table (tracked over the pass);
 *   - .symtab if it has a wanted symbol (and reads), else .dynsym.
 * Each query costs a binary search per symbol (log2 of the queries), which
 * is why the caller uses it only up to PP_ELF_SCAN_MAX addresses.
 * Reads are bounded as the load's: sections within the file and the
 * bounds (pp_elf_find_table), symbols read SYM_CHUNK at a time, a name at most
 * PP_ELF_MAX_NAME bytes (a rank reads at most 64 KiB: the cap of its
 * length field). The file's identity is checked after everything was
 * read: a change means no names, as for a load.
 */

#define RANK_UNKNOWN UINT32_MAX

/* bucket_t: the best symbol met so far for one query's bucket. */
typedef struct bucket_s {
    uint64_t addr;           /* 0: none yet */
    uint32_t size;           /* the largest size among its aliases */
    uint32_t name;           /* st_name of the winning alias */
    uint32_t rank;           /* its alias_rank, or RANK_UNKNOWN */
    uint8_t bind;            /* its binding (for the rank) */
} bucket_t;

/* read_rank: alias_rank of the name at off in t, read from the image in
 * pieces. @return false when a read failed. */
static bool read_rank(const src_t *src, const table_t *t, unsigned bind, uint32_t off,
                      uint32_t *rank)
{
    size_t max = t->strsz - off;   /* what alias_rank may look at */
    if (max > 0xffff) max = 0xffff;   /* its length saturates there */
    size_t us = 0, len = 0;
    bool in_prefix = true;
    char piece[256];
    while (len < max) {
        size_t n = max - len < sizeof piece ? max - len : sizeof piece;
        if (!pp_elf_src_read(src, t->str_off + off + len, piece, n)) return false;
        size_t i = 0;
        for (; i < n && piece[i]; i++)
            if (in_prefix && piece[i] == '_') us++;
            else in_prefix = false;
        len += i;
        if (i < n) break;   /* the NUL */
    }
    uint32_t r = bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2;
    if (us > 15) us = 15;
    *rank = r << 24 | (uint32_t)us << 16 | (uint32_t)len;
    return true;
}

/* first_at_or_above: the index of the first of the sorted q[0..m) (m > 0)
 * that is >= a, m if none. Branchless: the answer lies in [base, base +
 * n] throughout, and each step halves n with a conditional move; the
 * branchy search mispredicted on most of a table's symbols (cc1, 16
 * queries: 0.73 ms a pass). */
static size_t first_at_or_above(const uint64_t *q, size_t m, uint64_t a)
{
    const uint64_t *base = q;
    size_t n = m;
    while (n > 1) {
        size_t half = n / 2;
        base = base[half] < a ? base + half : base;
        n -= half;
    }
    return (size_t)(base - q) + (*base < a);
}

/* scan_pass: one pass over table t: bucket[0..m) for the sorted queries
 * q[0..m); *high: the highest symbol address. @return the number of
 * wanted symbols met, or SIZE_MAX when a read failed. */
static size_t scan_pass(const src_t *src, const table_t *t, Elf64_Sym *chunk, const uint64_t *q,
                        size_t m, bucket_t *bucket, uint64_t *high)
{
    size_t k = 0;
    memset(bucket, 0, m * sizeof(*bucket));
    *high = 0;
    const uint64_t qlo = q[0], qhi = q[m - 1];
    for (uint64_t i = 0; i < t->nsym; i += SYM_CHUNK) {
        size_t n = t->nsym - i < SYM_CHUNK ? (size_t)(t->nsym - i) : SYM_CHUNK;
        if (!pp_elf_src_read(src, t->sym_off + i * sizeof(Elf64_Sym), chunk, n * sizeof(Elf64_Sym)))
            return SIZE_MAX;
        for (size_t s = 0; s < n; s++) {
            const Elf64_Sym *sym = &chunk[s];
            if (!pp_elf_wanted(sym, t->strsz)) continue;
            k++;
            uint64_t a = sym->st_value;
            if (a > *high) *high = a;
            /* Most symbols of a big table lie above the last query or
             * below the first: no search for those. */
            if (a > qhi) continue;
            size_t lo = a <= qlo ? 0 : first_at_or_above(q, m, a);
            bucket_t *bk = &bucket[lo];
            uint32_t size = sym->st_size > UINT32_MAX ? UINT32_MAX : (uint32_t)sym->st_size;
            unsigned bind = ELF64_ST_BIND(sym->st_info);
            if (a > bk->addr) {
                *bk = (bucket_t){ a, size, sym->st_name, RANK_UNKNOWN, (uint8_t)bind };
                continue;
            }
            if (a < bk->addr) continue;
            /* An alias: the largest size; the name of the better rank (an
             * equal rank keeps the earlier symbol). */
            if (size > bk->size) bk->size = size;
            uint32_t r;
            if (bk->rank == RANK_UNKNOWN && !read_rank(src, t, bk->bind, bk->name, &bk->rank))
                return SIZE_MAX;
            if (!read_rank(src, t, bind, sym->st_name, &r)) return SIZE_MAX;
            if (r < bk->rank) {
                bk->name = sym->st_name;
                bk->rank = r;
                bk->bind = (uint8_t)bind;
            }
        }
    }
    return k;
}

/* query_t: a query while sorting: its link-time address and its place. */
typedef struct query_s {
    uint64_t va;
    size_t i;
} query_t;

static int cmp_query(const void *x, const void *y)
{
    const query_t *a = x, *b = y;
    return a->va != b->va ? (a->va < b->va ? -1 : 1) : 0;
}

/* scan_work_t: what one scan holds (freed by scan_free). */
typedef struct scan_work_s {
    query_t *qs;             /* n queries, sorted by va */
    uint64_t *q;             /* the m distinct addresses */
    size_t *which;           /* n: query i's distinct index, or SIZE_MAX */
    bucket_t *bucket;        /* m */
    Elf64_Sym *chunk;
    char *names;             /* the names found, NUL-separated */
    size_t *name_at;         /* m: where name j starts in names, SIZE_MAX: none */
} scan_work_t;

static void scan_free(pprof_symcache_t *c, scan_work_t *w)
{
    void *p[] = { w->qs, w->q, w->which, w->bucket, w->chunk, w->names, w->name_at };
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        if (p[i]) c->a.free(c->a.ctx, p[i]);
}

/* scan_image: the names of fo[0..n) in the image src (fstat st) by one
 * pass, delivered to fn. Out of memory here means no names for the file,
 * as a load that cannot allocate (pp_symcache_open_fd returns NULL); only
 * fn's errors are returned. */
static pprof_err_t scan_image(pprof_symcache_t *c, const src_t *src, const struct stat *st,
                              const char *path, const uint64_t *fo, size_t n, pp_scan_fn fn,
                              void *ctx)
{
    Elf64_Ehdr eh;
    pp_elf_t loads;   /* only its PT_LOAD segments are used */
    loads.nloads = 0;
    if (!pp_elf_src_read(src, 0, &eh, sizeof(eh)) || !pp_elf_ehdr_ok(&eh) || eh.e_phoff > src->len ||
        !pp_elf_load_loads(&loads, src, &eh))
        return PPROF_OK;   /* not a readable ELF: no names */
    uint64_t off[2][4], doff[2][4];
    bool have[2], dhave[2] = { false, false };
    if (pp_elf_find_tables(c, src, &eh, have, off) != PPROF_OK) return PPROF_OK;
    /* The tables in the order a load tries them: .symtab, the debug
     * file's .symtab, .dynsym. */
    dbg_t d;
    bool debug = !have[0] && pp_elf_open_debug(c, src, &eh, path, &d);
    if (debug && pp_elf_find_tables(c, &d.src, &d.eh, dhave, doff) != PPROF_OK) dhave[0] = false;
    struct { const src_t *src; const uint64_t *off; } cands[3];
    int ncands = 0;
    if (have[0]) cands[ncands++] = (typeof(cands[0])){ src, off[0] };
    if (dhave[0]) cands[ncands++] = (typeof(cands[0])){ &d.src, doff[0] };
    if (have[1]) cands[ncands++] = (typeof(cands[0])){ src, off[1] };
    const src_t *tsrc = src;   /* the table's image: names are read there */

    scan_work_t w = { 0 };
    pprof_err_t err = PPROF_OK;
    if (ncands == 0) goto out;
    w.qs = c->a.alloc(c->a.ctx, n * sizeof(*w.qs));
    w.q = c->a.alloc(c->a.ctx, n * sizeof(*w.q));
    w.which = c->a.alloc(c->a.ctx, n * sizeof(*w.which));
    w.bucket = c->a.alloc(c->a.ctx, n * sizeof(*w.bucket));
    w.name_at = c->a.alloc(c->a.ctx, n * sizeof(*w.name_at));
    w.chunk = c->a.alloc(c->a.ctx, SYM_CHUNK * sizeof(Elf64_Sym));
    if (!w.qs || !w.q || !w.which || !w.bucket || !w.name_at || !w.chunk) goto out;   /* no names */
    /* The distinct link-time addresses, sorted; queries outside every
     * PT_LOAD segment are not named (as pp_elf_lookup). */
    size_t nq = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        w.which[i] = SIZE_MAX;
        uint64_t va;
        if (pp_elf_fo_to_vaddr(&loads, fo[i], &va)) w.qs[nq++] = (query_t){ va, i };
    }
    pp_heapsort(w.qs, nq, sizeof(*w.qs), cmp_query);
    for (size_t i = 0; i < nq; i++) {
        if (m == 0 || w.q[m - 1] != w.qs[i].va) w.q[m++] = w.qs[i].va;
        w.which[w.qs[i].i] = m - 1;
    }
    if (m == 0) goto out;
    table_t t = { 0 };
    uint64_t high = 0;
    size_t found = 0;
    for (int k = 0; k < ncands && found == 0; k++) {
        const uint64_t *o = cands[k].off;
        t = (table_t){ o[0], o[1] / sizeof(Elf64_Sym), NULL, (size_t)o[3], o[2] };
        tsrc = cands[k].src;
        found = scan_pass(tsrc, &t, w.chunk, w.q, m, w.bucket, &high);
        if (found == SIZE_MAX) found = 0;   /* unreadable: as a load, the next table */
    }
    if (found == 0) goto out;
    /* Each distinct address's symbol (see above), and the room its name
     * may take. */
    size_t room = 0;
    const bucket_t *cand = NULL;
    for (size_t j = 0; j < m; j++) {
        if (w.bucket[j].addr) cand = &w.bucket[j];
        w.name_at[j] = SIZE_MAX;
        if (!cand) continue;
        if (cand->size ? w.q[j] - cand->addr >= cand->size : cand->addr == high) continue;
        w.bucket[j].name = cand->name;   /* bucket j's own symbol is no longer needed */
        w.name_at[j] = 0;
        size_t max = t.strsz - cand->name;
        room += (max < PP_ELF_MAX_NAME ? max : PP_ELF_MAX_NAME) + 1;
    }
    if (room == 0) goto out;
    w.names = c->a.alloc(c->a.ctx, room);
    if (!w.names) goto out;   /* no names */
    size_t at = 0;
    for (size_t j = 0; j < m; j++) {
        if (w.name_at[j] == SIZE_MAX) continue;
        uint32_t name = w.bucket[j].name;
        size_t max = t.strsz - name;
        if (max > PP_ELF_MAX_NAME) max = PP_ELF_MAX_NAME;
        if (!pp_elf_src_read(tsrc, t.str_off + name, w.names + at, max)) goto out;   /* no names */
        size_t len = strnlen(w.names + at, max);
        w.names[at + len] = '\0';
        w.name_at[j] = at;
        at += len + 1;
    }
    /* Changed while read: no names, as for a load. */
    struct stat st2;
    if (fstat(src->fd, &st2) != 0 || !pp_elf_same_file(st, &st2)) goto out;
    if (tsrc == &d.src && !pp_elf_dbg_unchanged(&d)) goto out;
    for (size_t i = 0; i < n && err == PPROF_OK; i++) {
        size_t j = w.which[i];
        if (j == SIZE_MAX || w.name_at[j] == SIZE_MAX) continue;
        const char *name = w.names + w.name_at[j];
        size_t len = pp_elf_unversioned_len(name, strlen(name));
        if (len) err = fn(ctx, i, name, len);
    }
out:
    scan_free(c, &w);
    if (debug) pp_close(d.src.fd);
    return err;
}

pprof_err_t pp_symcache_scan_fd(pprof_symcache_t *c, int fd, const char *path, const uint64_t *fo,
                                size_t n, pp_scan_fn fn, void *ctx)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        pp_close(fd);
        return PPROF_OK;   /* nothing identifies it, nothing is read */
    }
    pp_elf_t *e = pp_symcache_find_file(c, &st);
    if (e) {   /* loaded before: its table */
        pp_close(fd);
        pp_symcache_touch(c, e);
        for (size_t i = 0; i < n; i++) {
            size_t len;
            const char *name = pp_elf_lookup(e, fo[i], &len);
            if (name && len) PP_TRY(fn(ctx, i, name, len));
        }
        return PPROF_OK;
    }
    src_t src = { fd, NULL, (uint64_t)st.st_size };
    pprof_err_t err = scan_image(c, &src, &st, path, fo, n, fn, ctx);
    pp_close(fd);
    return err;
}
