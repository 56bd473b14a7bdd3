/*
 * pprof_elf.c - ELF build IDs and symbol tables, and the cache that keeps
 * them between profiles. The component's other files (pprof_elf.h): which
 * symbols are read, pprof_elf_symtab.c; separate debug files,
 * pprof_elf_debug.c; a few addresses of an uncached file in one pass,
 * pprof_elf_scan.c. The rules and bounds below hold for all of them.
 *
 * Rule: no read of a file can raise a signal in the host
 * --------------------------------------------------------
 * The files read here are the program's: it may truncate or rewrite a
 * library while it is loaded (an upgrade, a test, a hostile program). A
 * mapped file read after such a change faults (SIGBUS beyond the new end
 * of file), on whatever thread symbolizes: the HTTP server, the
 * background thread, exit. So nothing here maps a file: what is needed is
 * read with pread into memory from the caller's allocator (the agent's
 * arena, never libc malloc), every offset and size checked against the
 * file size fstat gave and against the buffer it lands in. A pread that
 * comes back short (the file was truncated meanwhile) or a file whose
 * identity changed while it was read means "no symbols" for that file.
 * The vdso is the one image read from memory: the kernel's, not a file.
 *
 * Symbol cache
 * ------------
 * One pp_elf_t per distinct file, keyed by device, inode, size, mtime and
 * ctime from fstat of the opened file (ctime changes with every write or
 * truncate and cannot be set back, so a rewrite that keeps size and mtime,
 * as cp -p or rsync -t do, is still seen), plus one for the vdso. When a
 * file is first met its program headers (PT_LOAD segments), its function
 * symbols and their names are read at once and the file is closed: an
 * entry holds no descriptor and no mapping, only a sorted array of 16-byte
 * pp_sym_t and a packed buffer of NUL-terminated names (or the string
 * section as read, when packing would take more: symbols sharing names). An entry with the
 * same device and inode but another size, mtime or ctime is a changed
 * file: it is dropped (freed) when the new one is read. A file that cannot
 * be read, is not a 64-bit ELF or changed while read gets a `bad` entry
 * (no names) so it is not re-read until it changes again.
 *
 * Bounds (per file and per cache):
 *   - program headers: the first PP_ELF_MAX_PHDRS (128); PT_LOAD segments
 *     kept: PP_ELF_MAX_LOADS (16);
 *   - section headers: at most PP_ELF_MAX_SECTIONS (65536, 4 MiB), freed
 *     once the symbol and string sections are found;
 *   - a symbol section of at most PP_ELF_MAX_SYMTAB (16 MiB, 700k
 *     symbols, read 4096 at a time) and its string section of at most
 *     PP_ELF_MAX_STRTAB (16 MiB): a larger .symtab falls back to
 *     .dynsym; a larger .dynsym too, and the file has no names;
 *   - one name: at most PP_ELF_MAX_NAME (4096) bytes kept, longer ones cut;
 *     all the names of a file: at most its string section's size;
 *   - the cache: at most PP_SYMCACHE_MAX_FILES (64) entries and
 *     PP_SYMCACHE_MAX_BYTES (64 MiB) held; least recently used entries
 *     are evicted (freed) when a new one would pass either bound. The
 *     entry just returned is never evicted, so one file larger than the
 *     byte bound is held alone until the next file is met.
 * While a file is read, its string section (<= 16 MiB) and a 24-byte sort
 * record per function symbol (<= 16 MiB) are held besides what is kept
 * (16 bytes per symbol and its name, <= 27 MiB): a peak near 60 MiB for
 * the largest tables accepted, about 1 MiB for libstdc++'s .dynsym; the
 * temporaries are freed before returning.
 * An entry returned by pp_symcache_open_fd or pp_symcache_vdso is valid
 * until the next of those calls (which may evict it): pprof_symbolize.c
 * names all the locations of one mapping before resolving the next.
 *
 * Address to symbol: the caller passes the file offset of the address
 * (mapping offset + address - mapping start), which is independent of
 * where the object was loaded: the PT_LOAD segment containing that offset
 * turns it into a link-time virtual address (offset - p_offset + p_vaddr),
 * the value symbols carry. That one rule covers non-PIE executables (bias
 * 0), PIE executables and shared libraries (any bias), and the vdso,
 * whose image in memory is its file (mapping offset 0). A symbol covers
 * [st_value, st_value + st_size); a symbol of size 0 (assembly) covers up
 * to the next symbol, never past the last one.
 *
 * No stdio, no malloc, no mmap of a file: pread (and memcpy for the vdso).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pprof/pprof_elf.h"

/* ------------------------------------------------------------------------ */
/* Build IDs                                                                */
/* ------------------------------------------------------------------------ */

static void to_hex(const unsigned char *p, size_t n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    if (n > PP_BUILD_ID_MAX) n = PP_BUILD_ID_MAX;
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[p[i] >> 4];
        hex[2 * i + 1] = digits[p[i] & 15];
    }
    hex[2 * n] = '\0';
}

/* parse_notes: finds NT_GNU_BUILD_ID among the notes in p[0..n). */
static bool parse_notes(const unsigned char *p, size_t n, size_t align, char *hex)
{
    size_t off = 0;
    while (n - off >= sizeof(Elf64_Nhdr)) {
        Elf64_Nhdr nh;
        memcpy(&nh, p + off, sizeof(nh));
        off += sizeof(nh);
        size_t namesz = ((size_t)nh.n_namesz + align - 1) & ~(align - 1);
        size_t descsz = ((size_t)nh.n_descsz + align - 1) & ~(align - 1);
        if (namesz > n - off || descsz > n - off - namesz || nh.n_descsz > descsz)
            return false;
        if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
            memcmp(p + off, "GNU", 4) == 0 && nh.n_descsz > 0) {
            to_hex(p + off + namesz, nh.n_descsz, hex);
            return true;
        }
        off += namesz + descsz;
    }
    return false;
}

bool pp_elf_ehdr_ok(const Elf64_Ehdr *eh)
{
    return memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 &&
           eh->e_ident[EI_CLASS] == ELFCLASS64 &&
           eh->e_ident[EI_DATA] == ELFDATA2LSB &&
           (eh->e_phnum == 0 || eh->e_phentsize == sizeof(Elf64_Phdr));
}

static ssize_t pread_all(int fd, void *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, off + (off_t)got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

bool pp_elf_build_id_fd(int fd, char *hex)
{
    Elf64_Ehdr eh;
    if (pread_all(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) || !pp_elf_ehdr_ok(&eh))
        return false;
    /* The program headers in one read (at most 128: 7 KiB), not one read
     * each: this runs for every executable mapping of every profile, and
     * at a short process's exit (10 files, some 13 headers each) the
     * reads were a tenth of the profile's cost. */
    unsigned phnum = eh.e_phnum > 128 ? 128 : eh.e_phnum;
    Elf64_Phdr phs[128];
    ssize_t got = pread_all(fd, phs, phnum * sizeof(Elf64_Phdr), (off_t)eh.e_phoff);
    if (got < 0) return false;
    unsigned whole = (unsigned)((size_t)got / sizeof(Elf64_Phdr));
    for (unsigned i = 0; i < phnum; i++) {
        if (i >= whole) return false;   /* a short read: as before, no ID */
        const Elf64_Phdr ph = phs[i];
        if (ph.p_type != PT_NOTE) continue;
        unsigned char buf[2048];   /* the build ID note comes first in practice */
        size_t n = ph.p_filesz < sizeof(buf) ? (size_t)ph.p_filesz : sizeof(buf);
        ssize_t r = pread_all(fd, buf, n, (off_t)ph.p_offset);
        if (r <= 0) continue;
        if (parse_notes(buf, (size_t)r, ph.p_align == 8 ? 8 : 4, hex)) return true;
    }
    return false;
}

bool pp_elf_build_id_mem(const unsigned char *image, size_t len, char *hex)
{
    Elf64_Ehdr eh;
    if (len < sizeof(eh)) return false;
    memcpy(&eh, image, sizeof(eh));
    if (!pp_elf_ehdr_ok(&eh) || eh.e_phoff > len ||
        (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
        return false;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, image + eh.e_phoff + (size_t)i * sizeof(ph), sizeof(ph));
        if (ph.p_type != PT_NOTE || ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
            continue;
        if (parse_notes(image + ph.p_offset, (size_t)ph.p_filesz,
                        ph.p_align == 8 ? 8 : 4, hex))
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Reading an image: a file by pread, or the vdso from memory               */
/* ------------------------------------------------------------------------ */

/* pp_elf_src_read: exactly n bytes at off, or false (out of bounds, error, or a
 * short read: the file was truncated since fstat). */
bool pp_elf_src_read(const src_t *s, uint64_t off, void *buf, size_t n)
{
    if (off > s->len || n > s->len - off) return false;
    if (s->mem) {
        memcpy(buf, s->mem + off, n);
        return true;
    }
    return pread_all(s->fd, buf, n, (off_t)off) == (ssize_t)n;
}

/* ------------------------------------------------------------------------ */
/* Cache entries                                                            */
/* ------------------------------------------------------------------------ */

pprof_err_t pprof_symcache_new(const map_allocator_t *allocator,
                               pprof_symcache_t **out)
{
    if (!allocator || !allocator->alloc || !allocator->free || !out)
        return PPROF_ERR_INVALID;
    pprof_symcache_t *c = allocator->alloc(allocator->ctx, sizeof(*c));
    if (!c) return PPROF_ERR_NOMEM;
    memset(c, 0, sizeof(*c));
    c->a = *allocator;
    c->bytes = sizeof(*c);
    c->max_files = PP_SYMCACHE_MAX_FILES;
    c->max_bytes = PP_SYMCACHE_MAX_BYTES;
    *out = c;
    return PPROF_OK;
}

void pp_symcache_set_limits(pprof_symcache_t *c, size_t max_files, size_t max_bytes)
{
    c->max_files = max_files ? max_files : 1;
    c->max_bytes = max_bytes;
}

/* clear_table: frees what an entry read (its symbols and names). */
static void clear_table(pprof_symcache_t *c, pp_elf_t *e)
{
    if (e->syms) {
        c->a.free(c->a.ctx, e->syms);
        c->ntables--;
        c->nsyms -= e->nsyms;
    }
    if (e->names) c->a.free(c->a.ctx, e->names);
    c->bytes -= e->bytes - sizeof(*e);
    e->bytes = sizeof(*e);
    e->syms = NULL;
    e->nsyms = 0;
    e->names = NULL;
    e->names_len = 0;
    e->nloads = 0;
}

static void unlink_entry(pprof_symcache_t *c, pp_elf_t *e)
{
    if (e->prev) e->prev->next = e->next;
    else c->files = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(pprof_symcache_t *c, pp_elf_t *e)
{
    e->prev = NULL;
    e->next = c->files;
    if (c->files) c->files->prev = e;
    else c->lru_tail = e;
    c->files = e;
}

/* free_entry: unlinks and frees e with everything it holds. */
static void free_entry(pprof_symcache_t *c, pp_elf_t *e)
{
    unlink_entry(c, e);
    clear_table(c, e);
    c->bytes -= sizeof(*e);
    c->nfiles--;
    c->a.free(c->a.ctx, e);
}

void pprof_symcache_free(pprof_symcache_t *c)
{
    if (!c) return;
    while (c->files) free_entry(c, c->files);
    map_allocator_t a = c->a;
    a.free(a.ctx, c);
}

void pprof_symcache_get_stats(const pprof_symcache_t *c, pprof_symcache_stats_t *out)
{
    out->files = c->nfiles;
    out->tables = c->ntables;
    out->symbols = c->nsyms;
    out->bytes = c->bytes;
    out->evicted = c->evicted;
    out->dropped = c->dropped;
}

/* new_entry: a zeroed entry, not yet in the list. */
static pp_elf_t *new_entry(pprof_symcache_t *c)
{
    pp_elf_t *e = c->a.alloc(c->a.ctx, sizeof(*e));
    if (!e) return NULL;
    memset(e, 0, sizeof(*e));
    e->bytes = sizeof(*e);
    c->nfiles++;
    c->bytes += sizeof(*e);
    return e;
}

/* insert: e becomes the most recent entry; the least recent others are
 * evicted while the cache is over a bound. */
static void insert(pprof_symcache_t *c, pp_elf_t *e)
{
    push_front(c, e);
    while ((c->nfiles > c->max_files || c->bytes > c->max_bytes) && c->lru_tail != e) {
        free_entry(c, c->lru_tail);
        c->evicted++;
    }
}

/* pp_symcache_touch: e was used: it becomes the most recent. */
void pp_symcache_touch(pprof_symcache_t *c, pp_elf_t *e)
{
    if (c->files == e) return;
    unlink_entry(c, e);
    push_front(c, e);
}

static pprof_err_t load_image(pprof_symcache_t *c, pp_elf_t *e, const src_t *src,
                              const char *path);

static bool same_stat(const pp_elf_t *e, const struct stat *st)
{
    return e->dev == (uint64_t)st->st_dev && e->ino == (uint64_t)st->st_ino &&
           e->size == (uint64_t)st->st_size && e->mtime_sec == st->st_mtim.tv_sec &&
           e->mtime_nsec == st->st_mtim.tv_nsec && e->ctime_sec == st->st_ctim.tv_sec &&
           e->ctime_nsec == st->st_ctim.tv_nsec;
}

/* pp_symcache_find_file: the entry of the file st describes, or NULL; an entry of the
 * same device and inode that differs otherwise is a changed file: dropped. */
pp_elf_t *pp_symcache_find_file(pprof_symcache_t *c, const struct stat *st)
{
    pp_elf_t *e = c->files;
    while (e) {
        pp_elf_t *next = e->next;
        if (e->kind == PP_ELF_FILE && e->dev == (uint64_t)st->st_dev &&
            e->ino == (uint64_t)st->st_ino) {
            if (same_stat(e, st)) return e;
            free_entry(c, e);
            c->dropped++;
        }
        e = next;
    }
    return NULL;
}

/* special_entry: the one shared `bad` entry of things that are not regular
 * files (nothing identifies them, nothing is read from them). */
static pp_elf_t *special_entry(pprof_symcache_t *c)
{
    for (pp_elf_t *e = c->files; e; e = e->next)
        if (e->kind == PP_ELF_SPECIAL) {
            pp_symcache_touch(c, e);
            return e;
        }
    pp_elf_t *e = new_entry(c);
    if (!e) return NULL;
    e->kind = PP_ELF_SPECIAL;
    e->bad = true;
    insert(c, e);
    return e;
}

/* discard_new: an entry from new_entry that could not be loaded (out of
 * memory): not cached, tried again next time. */
static void discard_new(pprof_symcache_t *c, pp_elf_t *e)
{
    clear_table(c, e);
    c->nfiles--;
    c->bytes -= sizeof(*e);
    c->a.free(c->a.ctx, e);
}

pp_elf_t *pp_symcache_open_fd(pprof_symcache_t *c, int fd, const char *path)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        pp_close(fd);
        return special_entry(c);
    }
    pp_elf_t *e = pp_symcache_find_file(c, &st);
    if (e) {
        pp_close(fd);
        pp_symcache_touch(c, e);
        return e;
    }
    e = new_entry(c);
    if (!e) {
        pp_close(fd);
        return NULL;
    }
    e->kind = PP_ELF_FILE;
    e->dev = (uint64_t)st.st_dev;
    e->ino = (uint64_t)st.st_ino;
    e->size = (uint64_t)st.st_size;
    e->mtime_sec = st.st_mtim.tv_sec;
    e->mtime_nsec = st.st_mtim.tv_nsec;
    e->ctime_sec = st.st_ctim.tv_sec;
    e->ctime_nsec = st.st_ctim.tv_nsec;
    src_t src = { fd, NULL, (uint64_t)st.st_size };
    pprof_err_t err = load_image(c, e, &src, path);
    /* Changed while read: what was read may mix two files. No names; the
     * entry keeps the identity seen first, so the file as it is now is
     * read afresh next time (and this entry dropped then). */
    struct stat st2;
    if (err == PPROF_OK && !e->bad && (fstat(fd, &st2) != 0 || !same_stat(e, &st2))) {
        clear_table(c, e);
        e->bad = true;
    }
    pp_close(fd);
    if (err != PPROF_OK) {   /* out of memory: not cached, tried again next time */
        discard_new(c, e);
        return NULL;
    }
    insert(c, e);
    return e;
}

pp_elf_t *pp_symcache_vdso(pprof_symcache_t *c, const void *image, size_t len)
{
    for (pp_elf_t *e = c->files; e; e = e->next)
        if (e->kind == PP_ELF_VDSO && e->vdso == image) {
            pp_symcache_touch(c, e);
            return e;
        }
    pp_elf_t *e = new_entry(c);
    if (!e) return NULL;
    e->kind = PP_ELF_VDSO;
    e->vdso = image;
    src_t src = { -1, image, len };
    if (load_image(c, e, &src, NULL) != PPROF_OK) {
        discard_new(c, e);
        return NULL;
    }
    insert(c, e);
    return e;
}

/* load_table_at: the symbol section off[0..4) of src into e (a table
 * past the bounds or unreadable leaves e without symbols). */
static pprof_err_t load_table_at(pprof_symcache_t *c, pp_elf_t *e, const src_t *src,
                                 const uint64_t off[4])
{
    table_t t = { off[0], off[1] / sizeof(Elf64_Sym), NULL, (size_t)off[3], off[2] };
    t.str = c->a.alloc(c->a.ctx, t.strsz);
    if (!t.str) return PPROF_ERR_NOMEM;
    pprof_err_t err = PPROF_OK;
    if (pp_elf_src_read(src, off[2], t.str, t.strsz)) err = pp_elf_load_table(c, e, src, &t);
    if (t.str) c->a.free(c->a.ctx, t.str);   /* NULL: kept by the entry */
    return err;
}

/* load_debug_syms: without a .symtab of its own, the .symtab of the
 * file's separate debug file, when there is one. */
static pprof_err_t load_debug_syms(pprof_symcache_t *c, pp_elf_t *e, const src_t *src,
                                   const Elf64_Ehdr *eh, const char *path)
{
    dbg_t d;
    if (!pp_elf_open_debug(c, src, eh, path, &d)) return PPROF_OK;
    uint64_t off[2][4];
    bool have[2];
    pprof_err_t err = pp_elf_find_tables(c, &d.src, &d.eh, have, off);
    if (err == PPROF_OK && have[0]) err = load_table_at(c, e, &d.src, off[0]);
    if (err == PPROF_OK && e->nsyms && !pp_elf_dbg_unchanged(&d)) {   /* mixed: none of its names */
        unsigned nloads = e->nloads;   /* the file's own segments stay */
        clear_table(c, e);
        e->nloads = nloads;
    }
    if (err == PPROF_OK && e->nsyms) e->debug = true;
    pp_close(d.src.fd);
    return err;
}

/* load_syms: .symtab; else the separate debug file's; else .dynsym (also
 * when .symtab is past the bounds). */
static pprof_err_t load_syms(pprof_symcache_t *c, pp_elf_t *e, const src_t *src,
                             const Elf64_Ehdr *eh, const char *path)
{
    uint64_t off[2][4];
    bool have[2];
    PP_TRY(pp_elf_find_tables(c, src, eh, have, off));
    if (have[0]) PP_TRY(load_table_at(c, e, src, off[0]));
    if (e->nsyms == 0 && src->fd >= 0) PP_TRY(load_debug_syms(c, e, src, eh, path));
    if (e->nsyms == 0 && have[1]) PP_TRY(load_table_at(c, e, src, off[1]));
    return PPROF_OK;
}

/* pp_elf_load_loads: the PT_LOAD segments (the first PP_ELF_MAX_LOADS among the
 * first PP_ELF_MAX_PHDRS program headers). @return false: unreadable. */
bool pp_elf_load_loads(pp_elf_t *e, const src_t *src, const Elf64_Ehdr *eh)
{
    unsigned phnum = eh->e_phnum > PP_ELF_MAX_PHDRS ? PP_ELF_MAX_PHDRS : eh->e_phnum;
    /* All in one read (cc1: 14 preads were one per header); a table cut
     * by the end of the file is read a header at a time, up to the cut. */
    Elf64_Phdr phs[PP_ELF_MAX_PHDRS];
    bool whole = pp_elf_src_read(src, eh->e_phoff, phs, phnum * sizeof(Elf64_Phdr));
    for (unsigned i = 0; i < phnum && e->nloads < PP_ELF_MAX_LOADS; i++) {
        Elf64_Phdr ph;
        if (whole) ph = phs[i];
        else if (!pp_elf_src_read(src, eh->e_phoff + (uint64_t)i * sizeof(ph), &ph, sizeof(ph)))
            return false;
        if (ph.p_type != PT_LOAD) continue;
        pp_load_t *l = &e->loads[e->nloads++];
        l->offset = ph.p_offset;
        l->filesz = ph.p_filesz;
        l->vaddr = ph.p_vaddr;
    }
    return true;
}

/* load_image: everything e needs from the image, into memory; e->bad when
 * the image is not a readable 64-bit ELF. @return PPROF_OK or NOMEM. */
static pprof_err_t load_image(pprof_symcache_t *c, pp_elf_t *e, const src_t *src,
                              const char *path)
{
    Elf64_Ehdr eh;
    if (!pp_elf_src_read(src, 0, &eh, sizeof(eh)) || !pp_elf_ehdr_ok(&eh) ||
        eh.e_phoff > src->len || !pp_elf_load_loads(e, src, &eh)) {
        e->bad = true;
        return PPROF_OK;
    }
    return load_syms(c, e, src, &eh, path);
}

/* pp_elf_fo_to_vaddr: the link-time address of file offset fo, via PT_LOAD. */
bool pp_elf_fo_to_vaddr(const pp_elf_t *e, uint64_t fo, uint64_t *vaddr)
{
    for (unsigned i = 0; i < e->nloads; i++) {
        const pp_load_t *l = &e->loads[i];
        if (fo >= l->offset && fo - l->offset < l->filesz) {
            *vaddr = fo - l->offset + l->vaddr;
            return true;
        }
    }
    return false;
}

/* pp_elf_unversioned_len: the length of name[0..len) without the default
 * version's suffix ("__libc_start_main@@GLIBC_2.34" in a .symtab read from
 * glibc's debug file: the function people know by its plain name). An
 * older version's single "@" ("dlopen@GLIBC_2.2.5") stays: that is
 * another function, kept for old binaries. A name that is only a suffix
 * stays whole. */
size_t pp_elf_unversioned_len(const char *name, size_t len)
{
    for (size_t i = 1; i + 1 < len; i++)
        if (name[i] == '@' && name[i + 1] == '@') return i;
    return len;
}

const char *pp_elf_lookup(const pp_elf_t *e, uint64_t fo, size_t *len)
{
    if (!e || e->bad || e->nsyms == 0) return NULL;
    uint64_t va;
    if (!pp_elf_fo_to_vaddr(e, fo, &va)) return NULL;
    size_t lo = 0, hi = e->nsyms;   /* first addr > va */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e->syms[mid].addr <= va)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0) return NULL;
    const pp_sym_t *s = &e->syms[lo - 1];
    if (s->size ? va - s->addr >= s->size : lo == e->nsyms) return NULL;
    const char *name = e->names + s->name;
    /* Packed names are NUL-terminated within PP_ELF_MAX_NAME; a kept
     * string section may end unterminated: cut at its end. */
    size_t max = e->names_len - s->name;
    *len = pp_elf_unversioned_len(name, strnlen(name, max < PP_ELF_MAX_NAME ? max : PP_ELF_MAX_NAME));
    return name;
}
/* ------------------------------------------------------------------------ */
/* File identity                                                            */
/* ------------------------------------------------------------------------ */

/* pp_elf_same_file: see pprof_elf.h. */
bool pp_elf_same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}
