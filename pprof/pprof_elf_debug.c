/*
 * pprof_elf_debug.c - the separate debug file of a stripped ELF file
 * (pprof_elf.h; pprof_elf.c says how files are read and bounded).
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
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>   /* crc32: .gnu_debuglink's checksum */

#include "pprof/pprof_elf.h"

/* ------------------------------------------------------------------------ */
/* Debug files                                                              */
/* ------------------------------------------------------------------------ */

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
    if (!pp_elf_src_read(&d->src, 0, &d->eh, sizeof d->eh) || !pp_elf_ehdr_ok(&d->eh)) goto no;
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
        ok = pp_elf_src_read(&d->src, off, buf, n);
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
        if (!pp_elf_src_read(src, eh->e_shoff, &sh0, sizeof(sh0))) return false;
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
    if (!pp_elf_src_read(src, eh->e_shoff, sh, (size_t)shnum * sizeof(Elf64_Shdr))) goto out;
    const Elf64_Shdr *ss = &sh[shstrndx];
    if (ss->sh_type != SHT_STRTAB || ss->sh_size == 0 || ss->sh_size > PP_DEBUG_MAX_SHSTRTAB)
        goto out;
    names = c->a.alloc(c->a.ctx, (size_t)ss->sh_size);
    if (!names || !pp_elf_src_read(src, ss->sh_offset, names, (size_t)ss->sh_size)) goto out;
    for (uint64_t i = 1; i < shnum && !found; i++) {
        if (sh[i].sh_type != SHT_PROGBITS || sh[i].sh_name > ss->sh_size - sizeof want ||
            memcmp(names + sh[i].sh_name, want, sizeof want) != 0)
            continue;
        unsigned char sec[PP_DEBUGLINK_NAME_MAX + 8];
        if (sh[i].sh_size < 8 || sh[i].sh_size > sizeof sec) break;
        if (!pp_elf_src_read(src, sh[i].sh_offset, sec, (size_t)sh[i].sh_size)) break;
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

/* pp_elf_open_debug: the separate debug file of the main file (src, eh; its
 * path main_path, may be NULL), as gdb looks for it: by build ID, then
 * by .gnu_debuglink. @return whether d is open (the caller closes it). */
bool pp_elf_open_debug(pprof_symcache_t *c, const src_t *src, const Elf64_Ehdr *eh,
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

/* pp_elf_dbg_unchanged: d is still the file it was when opened. */
bool pp_elf_dbg_unchanged(const dbg_t *d)
{
    struct stat st;
    return fstat(d->src.fd, &st) == 0 && pp_elf_same_file(&d->st, &st);
}
