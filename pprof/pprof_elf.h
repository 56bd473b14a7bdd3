/*
 * pprof_elf.h - the ELF component's own header (pprof/, private): what its
 * files share. pprof_elf.c reads build IDs, keeps the symbol cache, loads
 * an image and looks addresses up (its design comment says how files are
 * read and bounded); pprof_elf_symtab.c reads a file's function symbols;
 * pprof_elf_debug.c finds a stripped file's separate debug file;
 * pprof_elf_scan.c names a few addresses of an uncached file in one pass.
 * The rest of the module sees only pprof_internal.h.
 */
#ifndef HEAPWATCH_PPROF_ELF_H
#define HEAPWATCH_PPROF_ELF_H

#include <elf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "pprof/pprof_internal.h"

#pragma GCC visibility push(hidden)

/* src_t: where an image's bytes come from. */
typedef struct src_s {
    int fd;                  /* the file, or -1 */
    const unsigned char *mem;/* the vdso image, or NULL */
    uint64_t len;            /* file size (fstat) or image length */
} src_t;

#define SYM_CHUNK 4096   /* symbols read per pread (96 KiB) */

/* table_t: a symbol section and its string section, as read. */
typedef struct table_s {
    uint64_t sym_off, nsym;  /* the symbol section in the image */
    char *str;               /* its string section, in memory (NULL: the
                              * one-pass naming reads names one by one) */
    size_t strsz;
    uint64_t str_off;        /* the string section in the image */
} table_t;

/* dbg_t: a separate debug file, open. */
typedef struct dbg_s {
    src_t src;
    Elf64_Ehdr eh;
    struct stat st;          /* when opened: checked again after reading */
} dbg_t;

/* ------------------------------------------------------------------------ */
/* Reading (pprof_elf.c)                                                    */
/* ------------------------------------------------------------------------ */

/* pp_elf_ehdr_ok: eh is a little-endian 64-bit ELF header whose program
 * headers, if any, have the expected size. */
bool pp_elf_ehdr_ok(const Elf64_Ehdr *eh);

/* pp_elf_src_read: exactly n bytes at off, or false (out of bounds, error,
 * or a short read: the file was truncated since fstat). */
bool pp_elf_src_read(const src_t *s, uint64_t off, void *buf, size_t n);

/* pp_elf_same_file: a and b (fstat) describe the same file, unchanged:
 * device, inode, size, mtime and ctime. */
bool pp_elf_same_file(const struct stat *a, const struct stat *b);

/* pp_elf_load_loads: the PT_LOAD segments of the image into e (the first
 * PP_ELF_MAX_LOADS among the first PP_ELF_MAX_PHDRS program headers).
 * @return false: unreadable. */
bool pp_elf_load_loads(pp_elf_t *e, const src_t *src, const Elf64_Ehdr *eh);

/* pp_elf_fo_to_vaddr: the link-time address of file offset fo, via e's
 * PT_LOAD segments; false when none holds it. */
bool pp_elf_fo_to_vaddr(const pp_elf_t *e, uint64_t fo, uint64_t *vaddr);

/* pp_elf_unversioned_len: the length of name[0..len) without a default
 * version's "@@..." suffix (an older version's "@..." stays). */
size_t pp_elf_unversioned_len(const char *name, size_t len);

/* pp_symcache_find_file: the cache entry of the file st describes, or
 * NULL; an entry of the same device and inode that differs otherwise is a
 * changed file: dropped. */
pp_elf_t *pp_symcache_find_file(pprof_symcache_t *c, const struct stat *st);

/* pp_symcache_touch: e was used: it becomes the most recent. */
void pp_symcache_touch(pprof_symcache_t *c, pp_elf_t *e);

/* ------------------------------------------------------------------------ */
/* Symbol tables (pprof_elf_symtab.c)                                       */
/* ------------------------------------------------------------------------ */

/* pp_elf_wanted: s is a symbol that names code: a defined function (or
 * IFUNC) with a nonzero value and a name inside the string section.
 * Inline: the scans call it for every symbol of a table (cc1: 28,902). */
static inline bool pp_elf_wanted(const Elf64_Sym *s, size_t strsz)
{
    unsigned type = ELF64_ST_TYPE(s->st_info);
    return (type == STT_FUNC || type == STT_GNU_IFUNC) && s->st_shndx != SHN_UNDEF &&
           s->st_value != 0 && s->st_name != 0 && s->st_name < strsz;
}

/* pp_elf_find_table: the symbol section of type `want` in the section
 * headers sh[0..shnum) whose sections lie inside the image and within
 * the bounds, and its string section; false when there is none. */
bool pp_elf_find_table(const src_t *src, const Elf64_Shdr *sh, size_t shnum, uint32_t want, uint64_t *sym_off,
                       uint64_t *sym_size, uint64_t *str_off, uint64_t *str_size);

/* pp_elf_find_tables: where .symtab (off[0]) and .dynsym (off[1]) are:
 * symbol section offset and size, string section offset and size; have[i]
 * false for a table the file lacks or that is past the bounds.
 * @return PPROF_OK or PPROF_ERR_NOMEM. */
pprof_err_t pp_elf_find_tables(pprof_symcache_t *c, const src_t *src, const Elf64_Ehdr *eh, bool have[2],
                               uint64_t off[2][4]);

/* pp_elf_load_table: the function symbols of table t into e. @return
 * PPROF_OK (e->syms set, or no symbols), PPROF_ERR_NOMEM. */
pprof_err_t pp_elf_load_table(pprof_symcache_t *c, pp_elf_t *e, const src_t *src, table_t *t);

/* ------------------------------------------------------------------------ */
/* Debug files (pprof_elf_debug.c)                                          */
/* ------------------------------------------------------------------------ */

/* pp_elf_open_debug: the separate debug file of the main file (src, eh;
 * its path main_path, may be NULL), as gdb looks for it: by build ID,
 * then by .gnu_debuglink. @return whether d is open (the caller closes
 * it). */
bool pp_elf_open_debug(pprof_symcache_t *c, const src_t *src, const Elf64_Ehdr *eh, const char *main_path, dbg_t *d);

/* pp_elf_dbg_unchanged: d is still the file it was when opened. */
bool pp_elf_dbg_unchanged(const dbg_t *d);

#pragma GCC visibility pop

#endif /* HEAPWATCH_PPROF_ELF_H */
