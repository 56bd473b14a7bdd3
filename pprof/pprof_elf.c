/*
 * pprof_elf.c - ELF build IDs and symbol tables, and the cache that keeps
 * them between profiles.
 *
 * Symbol cache
 * ------------
 * One pp_elf_t per distinct file (device, inode, size, mtime from fstat of
 * the opened file) plus one for the vdso. A file is mmap'ed read-only when
 * first met (mapped pages are the page cache's, not our heap, and only the
 * pages we touch are read); its symbol table is parsed only when a location
 * first needs a name from it ("lazily"), into a sorted array of 16-byte
 * pp_sym_t taken from the caller's allocator, whose names point into the
 * mapped string section. Entries live until pprof_symcache_free, which
 * munmaps every image and frees every table. A file that cannot be opened
 * or is not a 64-bit ELF gets a `bad` entry so it is not retried, and its
 * locations stay unnamed (they keep their mapping).
 *
 * Which symbols: .symtab when the file has one (static functions
 * included), else .dynsym (a stripped binary or a distribution library:
 * exported functions only). Only STT_FUNC and STT_GNU_IFUNC symbols that
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
 * No stdio, no malloc: files are read with pread (build IDs) or mmap
 * (symbol tables).
 */
#include <elf.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
    unsigned phnum = eh.e_phnum > 128 ? 128 : eh.e_phnum;
    for (unsigned i = 0; i < phnum; i++) {
        Elf64_Phdr ph;
        off_t at = (off_t)(eh.e_phoff + (uint64_t)i * sizeof(ph));
        if (pread_all(fd, &ph, sizeof(ph), at) != (ssize_t)sizeof(ph)) return false;
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
    *out = c;
    return PPROF_OK;
}

void pprof_symcache_free(pprof_symcache_t *c)
{
    if (!c) return;
    pp_elf_t *e = c->files;
    while (e) {
        pp_elf_t *next = e->next;
        if (e->mmapped) munmap((void *)(uintptr_t)e->image, e->image_len);
        if (e->syms) c->a.free(c->a.ctx, e->syms);
        c->a.free(c->a.ctx, e);
        e = next;
    }
    map_allocator_t a = c->a;
    a.free(a.ctx, c);
}

void pprof_symcache_get_stats(const pprof_symcache_t *c, pprof_symcache_stats_t *out)
{
    out->files = c->nfiles;
    out->tables = c->ntables;
    out->symbols = c->nsyms;
    out->bytes = c->bytes;
}

static pp_elf_t *new_entry(pprof_symcache_t *c)
{
    pp_elf_t *e = c->a.alloc(c->a.ctx, sizeof(*e));
    if (!e) return NULL;
    memset(e, 0, sizeof(*e));
    e->next = c->files;
    c->files = e;
    c->nfiles++;
    c->bytes += sizeof(*e);
    return e;
}

pp_elf_t *pp_symcache_open_fd(pprof_symcache_t *c, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        /* Not worth caching: nothing identifies it. A shared bad entry. */
        for (pp_elf_t *e = c->files; e; e = e->next)
            if (e->bad && e->dev == UINT64_MAX) return e;
        pp_elf_t *e = new_entry(c);
        if (e) {
            e->bad = true;
            e->dev = UINT64_MAX;
        }
        return e;
    }
    for (pp_elf_t *e = c->files; e; e = e->next) {
        if (e->dev == (uint64_t)st.st_dev && e->ino == (uint64_t)st.st_ino &&
            e->size == (uint64_t)st.st_size && e->mtime_sec == st.st_mtim.tv_sec &&
            e->mtime_nsec == st.st_mtim.tv_nsec) {
            close(fd);
            return e;
        }
    }
    pp_elf_t *e = new_entry(c);
    if (!e) {
        close(fd);
        return NULL;
    }
    e->dev = (uint64_t)st.st_dev;
    e->ino = (uint64_t)st.st_ino;
    e->size = (uint64_t)st.st_size;
    e->mtime_sec = st.st_mtim.tv_sec;
    e->mtime_nsec = st.st_mtim.tv_nsec;
    if (st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
        e->bad = true;
        close(fd);
        return e;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        e->bad = true;
        return e;
    }
    e->image = p;
    e->image_len = (size_t)st.st_size;
    e->mmapped = true;
    Elf64_Ehdr eh;
    memcpy(&eh, e->image, sizeof(eh));
    if (!ehdr_ok(&eh)) e->bad = true;
    return e;
}

pp_elf_t *pp_symcache_vdso(pprof_symcache_t *c, const void *image, size_t len)
{
    for (pp_elf_t *e = c->files; e; e = e->next)
        if (!e->mmapped && e->image == image) return e;
    pp_elf_t *e = new_entry(c);
    if (!e) return NULL;
    e->image = image;
    e->image_len = len;
    Elf64_Ehdr eh;
    if (len < sizeof(eh)) {
        e->bad = true;
        return e;
    }
    memcpy(&eh, image, sizeof(eh));
    if (!ehdr_ok(&eh)) e->bad = true;
    return e;
}

/* ------------------------------------------------------------------------ */
/* Symbol tables                                                            */
/* ------------------------------------------------------------------------ */

/* sort_sym_t: a symbol while sorting; rank orders aliases (lower wins). */
typedef struct sort_sym_s {
    uint64_t addr;
    uint32_t size;
    uint32_t name;
    uint32_t rank;
    uint32_t pad;
} sort_sym_t;

static int cmp_sort_sym(const void *x, const void *y)
{
    const sort_sym_t *a = x, *b = y;
    if (a->addr != b->addr) return a->addr < b->addr ? -1 : 1;
    if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
    return 0;
}

/* get_shdr: section header i, bounds-checked. */
static bool get_shdr(const pp_elf_t *e, const Elf64_Ehdr *eh, size_t i, Elf64_Shdr *out)
{
    uint64_t at = eh->e_shoff + (uint64_t)i * sizeof(Elf64_Shdr);
    if (eh->e_shoff == 0 || at < eh->e_shoff || at > e->image_len ||
        e->image_len - at < sizeof(Elf64_Shdr))
        return false;
    memcpy(out, e->image + at, sizeof(*out));
    return true;
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

/* load_table: the function symbols of section `sec` (SYMTAB or DYNSYM).
 * @return PPROF_OK with e->syms set (possibly empty), or PPROF_ERR_NOMEM. */
static pprof_err_t load_table(pprof_symcache_t *c, pp_elf_t *e, const Elf64_Ehdr *eh,
                              const Elf64_Shdr *sec, size_t shnum)
{
    Elf64_Shdr strsec;
    if (sec->sh_entsize != sizeof(Elf64_Sym) || sec->sh_link >= shnum ||
        !get_shdr(e, eh, sec->sh_link, &strsec) || strsec.sh_type != SHT_STRTAB ||
        sec->sh_offset > e->image_len || sec->sh_size > e->image_len - sec->sh_offset ||
        strsec.sh_offset > e->image_len || strsec.sh_size > e->image_len - strsec.sh_offset ||
        strsec.sh_size == 0)
        return PPROF_OK;
    const unsigned char *symp = e->image + sec->sh_offset;
    size_t nsym = (size_t)(sec->sh_size / sizeof(Elf64_Sym));
    const char *strtab = (const char *)e->image + strsec.sh_offset;
    size_t strlen_ = (size_t)strsec.sh_size;

    size_t n = 0;
    for (size_t i = 0; i < nsym; i++) {
        Elf64_Sym s;
        memcpy(&s, symp + i * sizeof(s), sizeof(s));
        unsigned type = ELF64_ST_TYPE(s.st_info);
        if ((type == STT_FUNC || type == STT_GNU_IFUNC) && s.st_shndx != SHN_UNDEF &&
            s.st_value != 0 && s.st_name != 0 && s.st_name < strlen_)
            n++;
    }
    if (n == 0) return PPROF_OK;
    sort_sym_t *tmp = c->a.alloc(c->a.ctx, n * sizeof(sort_sym_t));
    if (!tmp) return PPROF_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < nsym && k < n; i++) {
        Elf64_Sym s;
        memcpy(&s, symp + i * sizeof(s), sizeof(s));
        unsigned type = ELF64_ST_TYPE(s.st_info);
        if (!((type == STT_FUNC || type == STT_GNU_IFUNC) && s.st_shndx != SHN_UNDEF &&
              s.st_value != 0 && s.st_name != 0 && s.st_name < strlen_))
            continue;
        tmp[k].addr = s.st_value;
        tmp[k].size = s.st_size > UINT32_MAX ? UINT32_MAX : (uint32_t)s.st_size;
        tmp[k].name = s.st_name;
        tmp[k].rank = alias_rank(ELF64_ST_BIND(s.st_info), strtab + s.st_name,
                                 strlen_ - s.st_name);
        tmp[k].pad = 0;
        k++;
    }
    pp_heapsort(tmp, k, sizeof(sort_sym_t), cmp_sort_sym);
    size_t uniq = 0;
    for (size_t i = 0; i < k; i++)
        if (i == 0 || tmp[i].addr != tmp[i - 1].addr) uniq++;
    pp_sym_t *syms = c->a.alloc(c->a.ctx, uniq * sizeof(pp_sym_t));
    if (!syms) {
        c->a.free(c->a.ctx, tmp);
        return PPROF_ERR_NOMEM;
    }
    size_t j = 0;
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
        j++;
    }
    c->a.free(c->a.ctx, tmp);
    e->syms = syms;
    e->nsyms = uniq;
    e->strtab = strtab;
    e->strtab_len = strlen_;
    c->ntables++;
    c->nsyms += uniq;
    c->bytes += uniq * sizeof(pp_sym_t);
    return PPROF_OK;
}

static pprof_err_t load_syms(pprof_symcache_t *c, pp_elf_t *e)
{
    e->syms_loaded = true;
    Elf64_Ehdr eh;
    memcpy(&eh, e->image, sizeof(eh));
    if (eh.e_shentsize != sizeof(Elf64_Shdr)) return PPROF_OK;
    size_t shnum = eh.e_shnum;
    Elf64_Shdr sh0;
    if (shnum == 0) {   /* more than SHN_LORESERVE sections: count in sh0 */
        if (!get_shdr(e, &eh, 0, &sh0)) return PPROF_OK;
        shnum = (size_t)sh0.sh_size;
    }
    if (shnum > e->image_len / sizeof(Elf64_Shdr)) return PPROF_OK;
    for (unsigned pass = 0; pass < 2 && e->nsyms == 0; pass++) {
        uint32_t want = pass == 0 ? SHT_SYMTAB : SHT_DYNSYM;
        for (size_t i = 1; i < shnum; i++) {
            Elf64_Shdr sh;
            if (!get_shdr(e, &eh, i, &sh)) return PPROF_OK;
            if (sh.sh_type != want) continue;
            PP_TRY(load_table(c, e, &eh, &sh, shnum));
            break;
        }
    }
    return PPROF_OK;
}

/* fo_to_vaddr: the link-time address of file offset fo, via PT_LOAD. */
static bool fo_to_vaddr(const pp_elf_t *e, uint64_t fo, uint64_t *vaddr)
{
    Elf64_Ehdr eh;
    memcpy(&eh, e->image, sizeof(eh));
    if (eh.e_phoff > e->image_len ||
        (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > e->image_len - eh.e_phoff)
        return false;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, e->image + eh.e_phoff + (size_t)i * sizeof(ph), sizeof(ph));
        if (ph.p_type != PT_LOAD) continue;
        if (fo >= ph.p_offset && fo - ph.p_offset < ph.p_filesz) {
            *vaddr = fo - ph.p_offset + ph.p_vaddr;
            return true;
        }
    }
    return false;
}

const char *pp_elf_lookup(pprof_symcache_t *c, pp_elf_t *e, uint64_t fo,
                          size_t *len)
{
    if (!e || e->bad) return NULL;
    if (!e->syms_loaded && load_syms(c, e) != PPROF_OK) {
        e->syms_loaded = false;   /* out of memory: try again next time */
        return NULL;
    }
    if (e->nsyms == 0) return NULL;
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
    const char *name = e->strtab + s->name;
    size_t max = e->strtab_len - s->name, n = 0;
    while (n < max && name[n]) n++;   /* an unterminated last name is cut */
    *len = n;
    return name;
}
