/*
 * pprof_proc.c - the executable mappings of this process, from
 * /proc/self/maps, with their GNU build IDs; and finding the file behind a
 * mapping (shared with symbolization).
 *
 * Finding a mapping's file: /proc/self/map_files/<start>-<end> is the very
 * inode that is mapped, even when the path was deleted or replaced since
 * (an upgraded library, a rebuilt binary): we try it first. Reading those
 * links needs CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE) on most kernels, so
 * an unprivileged agent falls back to the path. For a path whose maps line
 * says " (deleted)", whatever now lives at that path is another file: it is
 * used only when its device and inode still match the maps line (they do
 * not after a delete-and-recreate). A live path is trusted as is (its
 * device may legitimately differ from the maps line on overlayfs). A
 * mapping whose file cannot be found keeps its address range, path and
 * build ID (when known), so pprof can still symbolize it elsewhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "pprof/pprof_internal.h"

static const char deleted_suffix[] = " (deleted)";

/* maps_line_t: one parsed line of /proc/self/maps. */
typedef struct maps_line_s {
    uint64_t start, end, offset, ino;
    unsigned dev_major, dev_minor;
    char perms[4];
    const char *path;        /* not NUL-terminated */
    size_t path_len;         /* " (deleted)" removed */
    bool deleted;
} maps_line_t;

static bool parse_hex(const char **pp, const char *end, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    size_t n = 0;
    while (p < end) {
        char ch = *p;
        unsigned d;
        if (ch >= '0' && ch <= '9') d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') d = (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') d = (unsigned)(ch - 'A' + 10);
        else break;
        v = v << 4 | d;
        p++;
        n++;
    }
    if (n == 0 || n > 16) return false;
    *pp = p;
    *out = v;
    return true;
}

static bool parse_dec(const char **pp, const char *end, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    size_t n = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
        n++;
    }
    if (n == 0 || n > 19) return false;
    *pp = p;
    *out = v;
    return true;
}

static bool expect(const char **pp, const char *end, char ch)
{
    if (*pp >= end || **pp != ch) return false;
    (*pp)++;
    return true;
}

static void skip_spaces(const char **pp, const char *end)
{
    while (*pp < end && (**pp == ' ' || **pp == '\t')) (*pp)++;
}

/* parse_line: one line [p, end) (without the newline). */
static bool parse_line(const char *p, const char *end, maps_line_t *l)
{
    uint64_t maj, min;
    if (!parse_hex(&p, end, &l->start) || !expect(&p, end, '-') ||
        !parse_hex(&p, end, &l->end) || !expect(&p, end, ' ') || end - p < 5)
        return false;
    memcpy(l->perms, p, 4);
    p += 4;
    if (!expect(&p, end, ' ') || !parse_hex(&p, end, &l->offset) || !expect(&p, end, ' ') ||
        !parse_hex(&p, end, &maj) || !expect(&p, end, ':') || !parse_hex(&p, end, &min) ||
        !expect(&p, end, ' ') || !parse_dec(&p, end, &l->ino))
        return false;
    l->dev_major = (unsigned)maj;
    l->dev_minor = (unsigned)min;
    skip_spaces(&p, end);
    l->path = p;
    l->path_len = (size_t)(end - p);
    l->deleted = false;
    size_t sl = sizeof(deleted_suffix) - 1;
    if (l->path_len > sl && memcmp(end - sl, deleted_suffix, sl) == 0) {
        l->path_len -= sl;
        l->deleted = true;
    }
    return l->end > l->start;
}

/* map_files_path: "/proc/self/map_files/<start>-<end>" into buf (>= 64). */
static void map_files_path(char *buf, uint64_t start, uint64_t end)
{
    static const char prefix[] = "/proc/self/map_files/";
    size_t n = sizeof(prefix) - 1;
    memcpy(buf, prefix, n);
    n += pp_fmt_u64(buf + n, start, 16);
    buf[n++] = '-';
    n += pp_fmt_u64(buf + n, end, 16);
    buf[n] = '\0';
}

int pp_open_mapping(const pp_mapping_t *m, const char *path)
{
    if (m->from_proc) {
        char mf[80];
        map_files_path(mf, m->start, m->limit);
        int fd = pp_sys_open(mf, O_RDONLY | O_CLOEXEC, 0);
        if (fd >= 0) return fd;
    }
    if (!path || path[0] != '/') return -1;
    /* O_NONBLOCK: a hand-made mapping may name a FIFO; never block on it
     * (no effect on regular files, and non-regular files are refused). */
    int fd = pp_sys_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0) return -1;
    if (m->deleted) {
        struct stat st;
        if (fstat(fd, &st) != 0 || (uint64_t)st.st_ino != m->ino ||
            (uint64_t)st.st_dev != m->dev) {
            pp_close(fd);
            return -1;
        }
    }
    return fd;
}

/* add_line: adds the executable mapping of line l, with its build ID. */
static pprof_err_t add_line(pprof_builder_t *b, const maps_line_t *l, char *pathbuf,
                            size_t pathcap)
{
    pp_mapping_t extra;
    memset(&extra, 0, sizeof(extra));
    extra.from_proc = true;
    extra.deleted = l->deleted;
    extra.dev = (uint64_t)makedev(l->dev_major, l->dev_minor);
    extra.ino = l->ino;
    size_t plen = l->path_len < pathcap - 1 ? l->path_len : pathcap - 1;
    memcpy(pathbuf, l->path, plen);
    pathbuf[plen] = '\0';

    char hex[2 * PP_BUILD_ID_MAX + 1];
    hex[0] = '\0';
    unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
    if (strcmp(pathbuf, "[vdso]") == 0 && vdso == l->start) {
        extra.vdso = true;
        pp_elf_build_id_mem((const unsigned char *)(uintptr_t)vdso,
                            (size_t)(l->end - l->start), hex);
    } else if (l->ino != 0) {
        extra.start = l->start;
        extra.limit = l->end;
        pp_fd_t f = { pp_open_mapping(&extra, pathbuf), 0, 0 };
        struct stat st;
        if (f.fd >= 0 && fstat(f.fd, &st) == 0) {
            f.dev = st.st_dev;
            f.ino = st.st_ino;
            /* A number the program took back meanwhile is neither trusted
             * (its bytes are not this mapping's) nor closed. */
            if (!pp_elf_build_id_fd(f.fd, hex) || !pp_fd_ours(&f)) hex[0] = '\0';
            pp_fd_close(&f);
        } else if (f.fd >= 0) {
            pp_close(f.fd);
        }
    }
    pprof_mapping_t m = { l->start, l->end, l->offset, pathbuf, hex };
    return pp_add_mapping_full(b, &m, &extra);
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* holds_location: some of the sorted addresses at[0..n) lies in l. */
static bool holds_location(const uint64_t *at, size_t n, const maps_line_t *l)
{
    size_t lo = 0, hi = n;   /* the first address >= l->start */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (at[mid] < l->start) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && at[lo] < l->end;
}

/* add_from_proc: see pprof_builder_add_mappings_from_proc and _used;
 * used: only the main executable's lines and those holding a location. */
static pprof_err_t add_from_proc(pprof_builder_t *b, bool used)
{
    if (!b) return PPROF_ERR_INVALID;
    uint64_t *at = NULL;   /* used: the locations' addresses, sorted */
    size_t nat = b->locs.len;
    if (used && nat) {
        at = b->a.alloc(b->a.ctx, nat * sizeof(uint64_t));
        if (!at) return PPROF_ERR_NOMEM;
        const pp_loc_t *locs = b->locs.data;
        for (size_t i = 0; i < nat; i++) at[i] = locs[i].addr;
        pp_heapsort(at, nat, sizeof(uint64_t), cmp_u64);
    }
    char *buf;
    size_t len;
    if (pp_read_file(&b->a, "/proc/self/maps", &buf, &len) != PPROF_OK) {
        if (at) b->a.free(b->a.ctx, at);
        return PPROF_ERR_PROC;
    }
    /* Paths in maps are at most PATH_MAX (4096) bytes. */
    size_t pathcap = 4096 + 1;
    char *pathbuf = b->a.alloc(b->a.ctx, pathcap);
    if (!pathbuf) {
        b->a.free(b->a.ctx, buf);
        if (at) b->a.free(b->a.ctx, at);
        return PPROF_ERR_NOMEM;
    }

    /* The main executable: the object whose mapping holds our program
     * headers (AT_PHDR). Its executable mappings go first: pprof treats
     * mapping[0] as the main binary. */
    uint64_t phdr = getauxval(AT_PHDR);
    maps_line_t main_l;
    memset(&main_l, 0, sizeof(main_l));
    bool have_main = false;
    const char *end = buf + len;
    for (const char *p = buf; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        maps_line_t l;
        if (parse_line(p, le, &l) && phdr >= l.start && phdr < l.end && l.ino != 0) {
            main_l = l;
            have_main = true;
            break;
        }
        p = le + 1;
    }
    pprof_err_t err = PPROF_OK;
    for (int pass = have_main ? 0 : 1; pass < 2 && err == PPROF_OK; pass++) {
        for (const char *p = buf; p < end && err == PPROF_OK;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            maps_line_t l;
            if (parse_line(p, le, &l) && l.perms[2] == 'x') {
                bool is_main = have_main && l.ino == main_l.ino &&
                               l.dev_major == main_l.dev_major &&
                               l.dev_minor == main_l.dev_minor &&
                               l.path_len == main_l.path_len &&
                               memcmp(l.path, main_l.path, l.path_len) == 0;
                bool wanted = !used || is_main || holds_location(at, at ? nat : 0, &l);
                if ((pass == 0) == is_main && wanted) err = add_line(b, &l, pathbuf, pathcap);
            }
            p = le + 1;
        }
    }
    b->a.free(b->a.ctx, pathbuf);
    b->a.free(b->a.ctx, buf);
    if (at) b->a.free(b->a.ctx, at);
    return err;
}

pprof_err_t pprof_builder_add_mappings_from_proc(pprof_builder_t *b)
{
    return add_from_proc(b, false);
}

pprof_err_t pprof_builder_add_mappings_from_proc_used(pprof_builder_t *b)
{
    return add_from_proc(b, true);
}
