/*
 * pprof_elf.c - ELF build IDs and symbol tables, and the cache that keeps
 * them between profiles.
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
 * Which symbols: .symtab when the file has one (static functions
 * included); else the .symtab of its separate debug file when one is
 * installed (below); else .dynsym (a stripped binary or a distribution
 * library: exported functions only). Only STT_FUNC and STT_GNU_IFUNC symbols that
 * are defined (st_shndx != SHN_UNDEF) with a nonzero value are kept. At
 * one address, aliases collapse to one name: global before weak before
 * local, then the name with fewer leading underscores (malloc over
 * __libc_malloc), then the shorter one.
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
 * Debug files
 * -----------
 * Debian strips its binaries and ships their symbols in -dbgsym packages:
 * /usr/lib/debug/.build-id/<first 2 hex digits>/<the rest>.debug. A file
 * without a .symtab is looked up as gdb does: first by its GNU build ID
 * (the debug file must carry the same ID), then by its .gnu_debuglink
 * section (a base name and a CRC-32) in the file's directory, in .debug/
 * there, and under /usr/lib/debug/<the file's directory>/; a candidate is
 * taken when its build ID equals the file's or the CRC-32 of its whole
 * contents matches (read 64 KiB at a time, only for files up to
 * PP_DEBUG_MAX_CRC_BYTES, 64 MiB; a larger one with no matching build ID
 * is not used). The directory is the mapping's path as /proc/self/maps
 * gives it. The debug file is opened through the module's open hooks,
 * must be a regular 64-bit ELF file other than the file itself, is read
 * with pread under the same bounds as the file (section headers, a
 * .symtab and its string section of at most 16 MiB each; the debug
 * sections themselves are never read), and checked unchanged (fstat)
 * after reading; its .symtab replaces the file's symbols, whose PT_LOAD
 * segments still turn offsets into addresses (a debug file keeps the
 * program headers, and its symbols the link-time addresses). Finding it
 * costs a few opens and, for .gnu_debuglink, one read of the section
 * names (at most PP_DEBUG_MAX_SHSTRTAB, 1 MiB); it is done once per file
 * the cache loads, or per one-pass naming. A debug file installed after a
 * file was cached is seen when that file's entry is read again.
 *
 * No stdio, no malloc, no mmap of a file: pread (and memcpy for the vdso).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>   /* crc32: .gnu_debuglink's checksum */

#include "pprof/pprof_internal.h"

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

static bool ehdr_ok(const Elf64_Ehdr *eh)
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
    if (pread_all(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) || !ehdr_ok(&eh))
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
    if (!ehdr_ok(&eh) || eh.e_phoff > len ||
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

/* src_t: where an image's bytes come from. */
typedef struct src_s {
    int fd;                  /* the file, or -1 */
    const unsigned char *mem;/* the vdso image, or NULL */
    uint64_t len;            /* file size (fstat) or image length */
} src_t;

/* src_read: exactly n bytes at off, or false (out of bounds, error, or a
 * short read: the file was truncated since fstat). */
static bool src_read(const src_t *s, uint64_t off, void *buf, size_t n)
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

/* touch: e was used: it becomes the most recent. */
static void touch(pprof_symcache_t *c, pp_elf_t *e)
{
    if (c->files == e) return;
    unlink_entry(c, e);
    push_front(c, e);
}

static pprof_err_t load_image(pprof_symcache_t *c, pp_elf_t *e, const src_t *src,
                              const char *path);
static bool same_file(const struct stat *a, const struct stat *b);

static bool same_stat(const pp_elf_t *e, const struct stat *st)
{
    return e->dev == (uint64_t)st->st_dev && e->ino == (uint64_t)st->st_ino &&
           e->size == (uint64_t)st->st_size && e->mtime_sec == st->st_mtim.tv_sec &&
           e->mtime_nsec == st->st_mtim.tv_nsec && e->ctime_sec == st->st_ctim.tv_sec &&
           e->ctime_nsec == st->st_ctim.tv_nsec;
}

/* find_file: the entry of the file st describes, or NULL; an entry of the
 * same device and inode that differs otherwise is a changed file: dropped. */
static pp_elf_t *find_file(pprof_symcache_t *c, const struct stat *st)
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
            touch(c, e);
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
    pp_elf_t *e = find_file(c, &st);
    if (e) {
        pp_close(fd);
        touch(c, e);
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
            touch(c, e);
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

/* ------------------------------------------------------------------------ */
/* Symbol tables                                                            */
/* ------------------------------------------------------------------------ */

/* sort_sym_t: a symbol while sorting; rank orders aliases (lower wins),
 * then index (the symbol's place in its section: the first wins, so that
 * the choice among equal ranks does not depend on the sort, and the
 * one-pass naming below makes the same one). */
typedef struct sort_sym_s {
    uint64_t addr;
    uint32_t size;
    uint32_t name;
    uint32_t rank;
    uint32_t index;
} sort_sym_t;

static int cmp_sort_sym(const void *x, const void *y)
{
    const sort_sym_t *a = x, *b = y;
    if (a->addr != b->addr) return a->addr < b->addr ? -1 : 1;
    if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
    if (a->index != b->index) return a->index < b->index ? -1 : 1;
    return 0;
}

static uint32_t alias_rank(unsigned bind, const char *name, size_t maxlen)
{
    uint32_t r = bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2;
    size_t us = 0, len = 0;
    while (us < maxlen && name[us] == '_') us++;
    while (len < maxlen && name[len]) len++;
    if (us > 15) us = 15;
    if (len > 0xffff) len = 0xffff;
    return r << 24 | (uint32_t)us << 16 | (uint32_t)len;
}

static bool wanted(const Elf64_Sym *s, size_t strsz)
{
    unsigned type = ELF64_ST_TYPE(s->st_info);
    return (type == STT_FUNC || type == STT_GNU_IFUNC) && s->st_shndx != SHN_UNDEF &&
           s->st_value != 0 && s->st_name != 0 && s->st_name < strsz;
}

#define SYM_CHUNK 4096   /* symbols read per pread (96 KiB) */

/* table_t: a symbol section and its string section, as read. */
typedef struct table_s {
    uint64_t sym_off, nsym;  /* the symbol section in the image */
    char *str;               /* its string section, in memory (NULL: the
                              * one-pass naming reads names one by one) */
    size_t strsz;
    uint64_t str_off;        /* the string section in the image */
} table_t;

/* scan_syms: one pass over the symbols of t in chunks of SYM_CHUNK: counts
 * the wanted ones (out == NULL) or records up to max of them in out.
 * @return the number seen, or SIZE_MAX when a read failed. */
static size_t scan_syms(const src_t *src, const table_t *t, Elf64_Sym *chunk,
                        sort_sym_t *out, size_t max)
{
    size_t k = 0;
    for (uint64_t i = 0; i < t->nsym; i += SYM_CHUNK) {
        size_t n = t->nsym - i < SYM_CHUNK ? (size_t)(t->nsym - i) : SYM_CHUNK;
        if (!src_read(src, t->sym_off + i * sizeof(Elf64_Sym), chunk, n * sizeof(Elf64_Sym)))
            return SIZE_MAX;
        for (size_t j = 0; j < n; j++) {
            const Elf64_Sym *s = &chunk[j];
            if (!wanted(s, t->strsz)) continue;
            if (out) {
                if (k == max) return k;   /* the image changed between passes */
                out[k].addr = s->st_value;
                out[k].size = s->st_size > UINT32_MAX ? UINT32_MAX : (uint32_t)s->st_size;
                out[k].name = s->st_name;
                out[k].rank = alias_rank(ELF64_ST_BIND(s->st_info), t->str + s->st_name,
                                         t->strsz - s->st_name);
                out[k].index = (uint32_t)(i + j);   /* < 700k: PP_ELF_MAX_SYMTAB */
            }
            k++;
        }
    }
    return k;
}

/* name_len: the length of the name at off in t (cut at PP_ELF_MAX_NAME and
 * at the end of an unterminated section). */
static size_t name_len(const table_t *t, uint32_t off)
{
    size_t max = t->strsz - off, n = 0;
    if (max > PP_ELF_MAX_NAME) max = PP_ELF_MAX_NAME;
    while (n < max && t->str[off + n]) n++;
    return n;
}

/* keep_syms: the sorted, deduplicated symbols tmp[0..k) and their names
 * become e's table. The names are copied, packed, unless that would take
 * more than the string section itself (many symbols sharing long names: a
 * hostile file): then the section read is kept as it is (t->str moves to
 * the entry). Either way the names held are at most t->strsz bytes.
 * @return PPROF_OK or PPROF_ERR_NOMEM. */
static pprof_err_t keep_syms(pprof_symcache_t *c, pp_elf_t *e, table_t *t,
                             sort_sym_t *tmp, size_t k)
{
    pp_heapsort(tmp, k, sizeof(sort_sym_t), cmp_sort_sym);
    size_t uniq = 0, names = 0;
    for (size_t i = 0; i < k; i++)
        if (i == 0 || tmp[i].addr != tmp[i - 1].addr) {
            uniq++;
            names += name_len(t, tmp[i].name) + 1;
        }
    bool packed = names <= t->strsz;
    if (!packed) names = t->strsz;
    pp_sym_t *syms = c->a.alloc(c->a.ctx, uniq * sizeof(pp_sym_t));
    char *buf = syms && packed ? c->a.alloc(c->a.ctx, names) : t->str;
    if (!syms || !buf) {
        if (syms) c->a.free(c->a.ctx, syms);
        return PPROF_ERR_NOMEM;
    }
    if (!packed) t->str = NULL;   /* the entry owns it now */
    size_t j = 0, at = 0;
    for (size_t i = 0; i < k; i++) {
        if (i > 0 && tmp[i].addr == tmp[i - 1].addr) {
            /* An alias: the first (best ranked) keeps its name; take the
             * largest size so a sized alias covers a size-0 one. */
            if (tmp[i].size > syms[j - 1].size) syms[j - 1].size = tmp[i].size;
            continue;
        }
        syms[j].addr = tmp[i].addr;
        syms[j].size = tmp[i].size;
        syms[j].name = tmp[i].name;
        if (packed) {
            size_t n = name_len(t, tmp[i].name);
            memcpy(buf + at, t->str + tmp[i].name, n);
            buf[at + n] = '\0';
            syms[j].name = (uint32_t)at;
            at += n + 1;
        }
        j++;
    }
    e->syms = syms;
    e->nsyms = uniq;
    e->names = buf;
    e->names_len = names;
    size_t held = uniq * sizeof(pp_sym_t) + names;
    e->bytes += held;
    c->bytes += held;
    c->ntables++;
    c->nsyms += uniq;
    return PPROF_OK;
}

/* load_table: the function symbols of table t into e.
 * @return PPROF_OK (e->syms set, or no symbols), PPROF_ERR_NOMEM. */
static pprof_err_t load_table(pprof_symcache_t *c, pp_elf_t *e, const src_t *src, table_t *t)
{
    Elf64_Sym *chunk = c->a.alloc(c->a.ctx, SYM_CHUNK * sizeof(Elf64_Sym));
    if (!chunk) return PPROF_ERR_NOMEM;
    pprof_err_t err = PPROF_OK;
    sort_sym_t *tmp = NULL;
    size_t n = scan_syms(src, t, chunk, NULL, 0);
    if (n != SIZE_MAX && n > 0) {
        tmp = c->a.alloc(c->a.ctx, n * sizeof(sort_sym_t));
        if (!tmp) err = PPROF_ERR_NOMEM;
    }
    if (tmp) {
        size_t k = scan_syms(src, t, chunk, tmp, n);
        if (k != SIZE_MAX) err = keep_syms(c, e, t, tmp, k < n ? k : n);
        c->a.free(c->a.ctx, tmp);
    }
    c->a.free(c->a.ctx, chunk);
    return err;
}

/* find_table: the symbol section of type `want` in the section headers
 * sh[0..shnum) whose sections lie inside the image and within the bounds,
 * and its string section; false when there is none. */
static bool find_table(const src_t *src, const Elf64_Shdr *sh, size_t shnum, uint32_t want,
                       uint64_t *sym_off, uint64_t *sym_size, uint64_t *str_off,
                       uint64_t *str_size)
{
    for (size_t i = 1; i < shnum; i++) {
        if (sh[i].sh_type != want) continue;
        const Elf64_Shdr *s = &sh[i];
        if (s->sh_entsize != sizeof(Elf64_Sym) || s->sh_link >= shnum) return false;
        const Elf64_Shdr *str = &sh[s->sh_link];
        if (str->sh_type != SHT_STRTAB || str->sh_size == 0 ||
            s->sh_size > PP_ELF_MAX_SYMTAB || str->sh_size > PP_ELF_MAX_STRTAB ||
            s->sh_offset > src->len || s->sh_size > src->len - s->sh_offset ||
            str->sh_offset > src->len || str->sh_size > src->len - str->sh_offset)
            return false;
        *sym_off = s->sh_offset;
        *sym_size = s->sh_size;
        *str_off = str->sh_offset;
        *str_size = str->sh_size;
        return true;
    }
    return false;
}

/* find_tables: where .symtab (off[0]) and .dynsym (off[1]) are: symbol
 * section offset and size, string section offset and size; have[i] false
 * for a table the file lacks or that is past the bounds. @return PPROF_OK
 * or PPROF_ERR_NOMEM. */
static pprof_err_t find_tables(pprof_symcache_t *c, const src_t *src, const Elf64_Ehdr *eh,
                               bool have[2], uint64_t off[2][4])
{
    have[0] = have[1] = false;
    if (eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shoff == 0) return PPROF_OK;
    uint64_t shnum = eh->e_shnum;
    if (shnum == 0) {   /* more than SHN_LORESERVE sections: count in sh0 */
        Elf64_Shdr sh0;
        if (!src_read(src, eh->e_shoff, &sh0, sizeof(sh0))) return PPROF_OK;
        shnum = sh0.sh_size;
    }
    if (shnum < 2 || shnum > PP_ELF_MAX_SECTIONS ||
        shnum > src->len / sizeof(Elf64_Shdr))
        return PPROF_OK;
    Elf64_Shdr *sh = c->a.alloc(c->a.ctx, (size_t)shnum * sizeof(Elf64_Shdr));
    if (!sh) return PPROF_ERR_NOMEM;
    if (src_read(src, eh->e_shoff, sh, (size_t)shnum * sizeof(Elf64_Shdr))) {
        have[0] = find_table(src, sh, (size_t)shnum, SHT_SYMTAB, &off[0][0], &off[0][1],
                             &off[0][2], &off[0][3]);
        have[1] = find_table(src, sh, (size_t)shnum, SHT_DYNSYM, &off[1][0], &off[1][1],
                             &off[1][2], &off[1][3]);
    }
    c->a.free(c->a.ctx, sh);
    return PPROF_OK;
}

/* ------------------------------------------------------------------------ */
/* Debug files                                                              */
/* ------------------------------------------------------------------------ */

/* dbg_t: a separate debug file, open. */
typedef struct dbg_s {
    src_t src;
    Elf64_Ehdr eh;
    struct stat st;          /* when opened: checked again after reading */
} dbg_t;

/* dbg_open: path opened read-only, a regular 64-bit ELF file that is not
 * the main file itself (main_st). */
static bool dbg_open(const char *path, const struct stat *main_st, dbg_t *d)
{
    /* O_NONBLOCK: a FIFO planted under that name never blocks us. */
    int fd = pp_sys_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0) return false;
    d->src = (src_t){ fd, NULL, 0 };
    if (fstat(fd, &d->st) != 0 || !S_ISREG(d->st.st_mode) ||
        (d->st.st_dev == main_st->st_dev && d->st.st_ino == main_st->st_ino))
        goto no;
    d->src.len = (uint64_t)d->st.st_size;
    if (!src_read(&d->src, 0, &d->eh, sizeof d->eh) || !ehdr_ok(&d->eh)) goto no;
    return true;
no:
    pp_close(fd);
    return false;
}

/* dbg_same_build: d's GNU build ID is hex (a non-empty one). */
static bool dbg_same_build(const dbg_t *d, const char *hex)
{
    char dhex[2 * PP_BUILD_ID_MAX + 1];
    return hex[0] && pp_elf_build_id_fd(d->src.fd, dhex) && strcmp(dhex, hex) == 0;
}

/* dbg_crc_ok: the CRC-32 of the whole of d is crc; files over
 * PP_DEBUG_MAX_CRC_BYTES are not read (and not used). */
static bool dbg_crc_ok(pprof_symcache_t *c, const dbg_t *d, uint32_t crc)
{
    if (d->src.len > PP_DEBUG_MAX_CRC_BYTES) return false;
    enum { CHUNK = 64 * 1024 };
    unsigned char *buf = c->a.alloc(c->a.ctx, CHUNK);
    if (!buf) return false;
    uLong sum = crc32(0L, Z_NULL, 0);
    bool ok = true;
    for (uint64_t off = 0; ok && off < d->src.len; off += CHUNK) {
        size_t n = d->src.len - off < CHUNK ? (size_t)(d->src.len - off) : CHUNK;
        ok = src_read(&d->src, off, buf, n);
        if (ok) sum = crc32(sum, buf, (uInt)n);
    }
    c->a.free(c->a.ctx, buf);
    return ok && (uint32_t)sum == crc;
}

/* put: appends s to the path being built in p (cap bytes); false when it
 * does not fit. */
static bool put(char *p, size_t cap, size_t *at, const char *s, size_t n)
{
    if (n >= cap - *at) return false;
    memcpy(p + *at, s, n);
    *at += n;
    p[*at] = '\0';
    return true;
}

/* dbg_by_build_id: /usr/lib/debug/.build-id/<xx>/<rest>.debug, with the
 * same build ID as the main file (hex). */
static bool dbg_by_build_id(char *path, const char *hex, const struct stat *main_st, dbg_t *d)
{
    size_t n = strlen(hex), at = 0;
    if (n < 4) return false;
    if (!put(path, PP_DEBUG_PATH_MAX, &at, PP_DEBUG_ROOT "/.build-id/", sizeof PP_DEBUG_ROOT "/.build-id/" - 1) ||
        !put(path, PP_DEBUG_PATH_MAX, &at, hex, 2) || !put(path, PP_DEBUG_PATH_MAX, &at, "/", 1) ||
        !put(path, PP_DEBUG_PATH_MAX, &at, hex + 2, n - 2) ||
        !put(path, PP_DEBUG_PATH_MAX, &at, ".debug", 6))
        return false;
    if (!dbg_open(path, main_st, d)) return false;
    if (dbg_same_build(d, hex)) return true;
    pp_close(d->src.fd);
    return false;
}

bool pp_elf_parse_debuglink(const unsigned char *sec, size_t size, char *name, uint32_t *crc)
{
    /* The file name, NUL-terminated, padded to 4 bytes, then the CRC-32
     * (the file's byte order: little-endian here). */
    size_t len = strnlen((const char *)sec, size < PP_DEBUGLINK_NAME_MAX + 1 ? size : PP_DEBUGLINK_NAME_MAX + 1);
    if (len == 0 || len > PP_DEBUGLINK_NAME_MAX || len == size) return false;
    size_t at = (len + 1 + 3) & ~(size_t)3;
    if (at > size || size - at < 4) return false;
    if (memchr(sec, '/', len) || strcmp((const char *)sec, ".") == 0 || strcmp((const char *)sec, "..") == 0)
        return false;   /* a base name only: nothing outside the three places */
    memcpy(name, sec, len + 1);
    *crc = (uint32_t)sec[at] | (uint32_t)sec[at + 1] << 8 | (uint32_t)sec[at + 2] << 16 |
           (uint32_t)sec[at + 3] << 24;
    return true;
}

/* find_debuglink: the main file's .gnu_debuglink (name, CRC), read
 * through its section headers and their name section (at most
 * PP_DEBUG_MAX_SHSTRTAB bytes). */
static bool find_debuglink(pprof_symcache_t *c, const src_t *src, const Elf64_Ehdr *eh,
                           char *name, uint32_t *crc)
{
    if (eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shoff == 0) return false;
    uint64_t shnum = eh->e_shnum;
    uint32_t shstrndx = eh->e_shstrndx;
    if (shnum == 0 || shstrndx == SHN_XINDEX) {
        Elf64_Shdr sh0;
        if (!src_read(src, eh->e_shoff, &sh0, sizeof(sh0))) return false;
        if (shnum == 0) shnum = sh0.sh_size;
        if (shstrndx == SHN_XINDEX) shstrndx = sh0.sh_link;
    }
    if (shnum < 2 || shnum > PP_ELF_MAX_SECTIONS || shnum > src->len / sizeof(Elf64_Shdr) ||
        shstrndx == 0 || shstrndx >= shnum)
        return false;
    Elf64_Shdr *sh = c->a.alloc(c->a.ctx, (size_t)shnum * sizeof(Elf64_Shdr));
    if (!sh) return false;
    char *names = NULL;
    bool found = false;
    static const char want[] = ".gnu_debuglink";
    if (!src_read(src, eh->e_shoff, sh, (size_t)shnum * sizeof(Elf64_Shdr))) goto out;
    const Elf64_Shdr *ss = &sh[shstrndx];
    if (ss->sh_type != SHT_STRTAB || ss->sh_size == 0 || ss->sh_size > PP_DEBUG_MAX_SHSTRTAB)
        goto out;
    names = c->a.alloc(c->a.ctx, (size_t)ss->sh_size);
    if (!names || !src_read(src, ss->sh_offset, names, (size_t)ss->sh_size)) goto out;
    for (uint64_t i = 1; i < shnum && !found; i++) {
        if (sh[i].sh_type != SHT_PROGBITS || sh[i].sh_name > ss->sh_size - sizeof want ||
            memcmp(names + sh[i].sh_name, want, sizeof want) != 0)
            continue;
        unsigned char sec[PP_DEBUGLINK_NAME_MAX + 8];
        if (sh[i].sh_size < 8 || sh[i].sh_size > sizeof sec) break;
        if (!src_read(src, sh[i].sh_offset, sec, (size_t)sh[i].sh_size)) break;
        found = pp_elf_parse_debuglink(sec, (size_t)sh[i].sh_size, name, crc);
        break;
    }
out:
    if (names) c->a.free(c->a.ctx, names);
    c->a.free(c->a.ctx, sh);
    return found;
}

/* dbg_by_link: the .gnu_debuglink file in the main file's directory, in
 * .debug/ there, then under /usr/lib/debug/<directory>/: the first that
 * has the main file's build ID or the CRC the link gives. */
static bool dbg_by_link(pprof_symcache_t *c, char *path, const char *main_path, const char *hex,
                        const char *link, uint32_t crc, const struct stat *main_st, dbg_t *d)
{
    const char *slash = main_path ? strrchr(main_path, '/') : NULL;
    if (!main_path || main_path[0] != '/' || !slash) return false;
    size_t dirlen = (size_t)(slash - main_path) + 1;   /* with the slash */
    size_t linklen = strlen(link);
    for (int where = 0; where < 3; where++) {
        size_t at = 0;
        path[0] = '\0';
        if (where == 2 && !put(path, PP_DEBUG_PATH_MAX, &at, PP_DEBUG_ROOT, sizeof PP_DEBUG_ROOT - 1))
            return false;
        if (!put(path, PP_DEBUG_PATH_MAX, &at, main_path, dirlen) ||
            (where == 1 && !put(path, PP_DEBUG_PATH_MAX, &at, ".debug/", 7)) ||
            !put(path, PP_DEBUG_PATH_MAX, &at, link, linklen))
            continue;
        if (!dbg_open(path, main_st, d)) continue;
        if (dbg_same_build(d, hex) || dbg_crc_ok(c, d, crc)) return true;
        pp_close(d->src.fd);
    }
    return false;
}

/* open_debug: the separate debug file of the main file (src, eh; its
 * path main_path, may be NULL), as gdb looks for it: by build ID, then
 * by .gnu_debuglink. @return whether d is open (the caller closes it). */
static bool open_debug(pprof_symcache_t *c, const src_t *src, const Elf64_Ehdr *eh,
                       const char *main_path, dbg_t *d)
{
    struct stat main_st;
    if (src->fd < 0 || fstat(src->fd, &main_st) != 0) return false;
    char hex[2 * PP_BUILD_ID_MAX + 1];
    if (!pp_elf_build_id_fd(src->fd, hex)) hex[0] = '\0';
    char *path = c->a.alloc(c->a.ctx, PP_DEBUG_PATH_MAX);
    if (!path) return false;
    bool ok = hex[0] && dbg_by_build_id(path, hex, &main_st, d);
    if (!ok) {
        char link[PP_DEBUGLINK_NAME_MAX + 1];
        uint32_t crc;
        ok = find_debuglink(c, src, eh, link, &crc) &&
             dbg_by_link(c, path, main_path, hex, link, crc, &main_st, d);
    }
    c->a.free(c->a.ctx, path);
    return ok;
}

/* dbg_unchanged: d is still the file it was when opened. */
static bool dbg_unchanged(const dbg_t *d)
{
    struct stat st;
    return fstat(d->src.fd, &st) == 0 && same_file(&d->st, &st);
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
    if (src_read(src, off[2], t.str, t.strsz)) err = load_table(c, e, src, &t);
    if (t.str) c->a.free(c->a.ctx, t.str);   /* NULL: kept by the entry */
    return err;
}

/* load_debug_syms: without a .symtab of its own, the .symtab of the
 * file's separate debug file, when there is one. */
static pprof_err_t load_debug_syms(pprof_symcache_t *c, pp_elf_t *e, const src_t *src,
                                   const Elf64_Ehdr *eh, const char *path)
{
    dbg_t d;
    if (!open_debug(c, src, eh, path, &d)) return PPROF_OK;
    uint64_t off[2][4];
    bool have[2];
    pprof_err_t err = find_tables(c, &d.src, &d.eh, have, off);
    if (err == PPROF_OK && have[0]) err = load_table_at(c, e, &d.src, off[0]);
    if (err == PPROF_OK && e->nsyms && !dbg_unchanged(&d)) {   /* mixed: none of its names */
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
    PP_TRY(find_tables(c, src, eh, have, off));
    if (have[0]) PP_TRY(load_table_at(c, e, src, off[0]));
    if (e->nsyms == 0 && src->fd >= 0) PP_TRY(load_debug_syms(c, e, src, eh, path));
    if (e->nsyms == 0 && have[1]) PP_TRY(load_table_at(c, e, src, off[1]));
    return PPROF_OK;
}

/* load_loads: the PT_LOAD segments (the first PP_ELF_MAX_LOADS among the
 * first PP_ELF_MAX_PHDRS program headers). @return false: unreadable. */
static bool load_loads(pp_elf_t *e, const src_t *src, const Elf64_Ehdr *eh)
{
    unsigned phnum = eh->e_phnum > PP_ELF_MAX_PHDRS ? PP_ELF_MAX_PHDRS : eh->e_phnum;
    for (unsigned i = 0; i < phnum && e->nloads < PP_ELF_MAX_LOADS; i++) {
        Elf64_Phdr ph;
        if (!src_read(src, eh->e_phoff + (uint64_t)i * sizeof(ph), &ph, sizeof(ph)))
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
    if (!src_read(src, 0, &eh, sizeof(eh)) || !ehdr_ok(&eh) ||
        eh.e_phoff > src->len || !load_loads(e, src, &eh)) {
        e->bad = true;
        return PPROF_OK;
    }
    return load_syms(c, e, src, &eh, path);
}

/* fo_to_vaddr: the link-time address of file offset fo, via PT_LOAD. */
static bool fo_to_vaddr(const pp_elf_t *e, uint64_t fo, uint64_t *vaddr)
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

/* unversioned_len: the length of name[0..len) without the default
 * version's suffix ("__libc_start_main@@GLIBC_2.34" in a .symtab read from
 * glibc's debug file: the function people know by its plain name). An
 * older version's single "@" ("dlopen@GLIBC_2.2.5") stays: that is
 * another function, kept for old binaries. A name that is only a suffix
 * stays whole. */
static size_t unversioned_len(const char *name, size_t len)
{
    for (size_t i = 1; i + 1 < len; i++)
        if (name[i] == '@' && name[i + 1] == '@') return i;
    return len;
}

const char *pp_elf_lookup(const pp_elf_t *e, uint64_t fo, size_t *len)
{
    if (!e || e->bad || e->nsyms == 0) return NULL;
    uint64_t va;
    if (!fo_to_vaddr(e, fo, &va)) return NULL;
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
    *len = unversioned_len(name, strnlen(name, max < PP_ELF_MAX_NAME ? max : PP_ELF_MAX_NAME));
    return name;
}

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
 * bounds (find_table), symbols read SYM_CHUNK at a time, a name at most
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
        if (!src_read(src, t->str_off + off + len, piece, n)) return false;
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
    for (uint64_t i = 0; i < t->nsym; i += SYM_CHUNK) {
        size_t n = t->nsym - i < SYM_CHUNK ? (size_t)(t->nsym - i) : SYM_CHUNK;
        if (!src_read(src, t->sym_off + i * sizeof(Elf64_Sym), chunk, n * sizeof(Elf64_Sym)))
            return SIZE_MAX;
        for (size_t s = 0; s < n; s++) {
            const Elf64_Sym *sym = &chunk[s];
            if (!wanted(sym, t->strsz)) continue;
            k++;
            uint64_t a = sym->st_value;
            if (a > *high) *high = a;
            size_t lo = first_at_or_above(q, m, a);
            if (lo == m) continue;
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

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
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
    if (!src_read(src, 0, &eh, sizeof(eh)) || !ehdr_ok(&eh) || eh.e_phoff > src->len ||
        !load_loads(&loads, src, &eh))
        return PPROF_OK;   /* not a readable ELF: no names */
    uint64_t off[2][4], doff[2][4];
    bool have[2], dhave[2] = { false, false };
    if (find_tables(c, src, &eh, have, off) != PPROF_OK) return PPROF_OK;
    /* The tables in the order a load tries them: .symtab, the debug
     * file's .symtab, .dynsym. */
    dbg_t d;
    bool debug = !have[0] && open_debug(c, src, &eh, path, &d);
    if (debug && find_tables(c, &d.src, &d.eh, dhave, doff) != PPROF_OK) dhave[0] = false;
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
        if (fo_to_vaddr(&loads, fo[i], &va)) w.qs[nq++] = (query_t){ va, i };
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
        if (!src_read(tsrc, t.str_off + name, w.names + at, max)) goto out;   /* no names */
        size_t len = strnlen(w.names + at, max);
        w.names[at + len] = '\0';
        w.name_at[j] = at;
        at += len + 1;
    }
    /* Changed while read: no names, as for a load. */
    struct stat st2;
    if (fstat(src->fd, &st2) != 0 || !same_file(st, &st2)) goto out;
    if (tsrc == &d.src && !dbg_unchanged(&d)) goto out;
    for (size_t i = 0; i < n && err == PPROF_OK; i++) {
        size_t j = w.which[i];
        if (j == SIZE_MAX || w.name_at[j] == SIZE_MAX) continue;
        const char *name = w.names + w.name_at[j];
        size_t len = unversioned_len(name, strlen(name));
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
    pp_elf_t *e = find_file(c, &st);
    if (e) {   /* loaded before: its table */
        pp_close(fd);
        touch(c, e);
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
