/*
 * pprof_elf_symtab.c - an ELF file's function symbols read into a cache
 * entry (pprof_elf.h; pprof_elf.c says how files are read and bounded).
 *
 * Which symbols: .symtab when the file has one (static functions
 * included); else the .symtab of its separate debug file when one is
 * installed (below); else .dynsym (a stripped binary or a distribution
 * library: exported functions only). Only STT_FUNC and STT_GNU_IFUNC symbols that
 * are defined (st_shndx != SHN_UNDEF) with a nonzero value are kept. At
 * one address, aliases collapse to one name: global before weak before
 * local, then the name with fewer leading underscores (malloc over
 * __libc_malloc), then the shorter one.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pprof/pprof_elf.h"

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

/* scan_syms: one pass over the symbols of t in chunks of SYM_CHUNK: counts
 * the wanted ones (out == NULL) or records up to max of them in out.
 * @return the number seen, or SIZE_MAX when a read failed. */
static size_t scan_syms(const src_t *src, const table_t *t, Elf64_Sym *chunk,
                        sort_sym_t *out, size_t max)
{
    size_t k = 0;
    for (uint64_t i = 0; i < t->nsym; i += SYM_CHUNK) {
        size_t n = t->nsym - i < SYM_CHUNK ? (size_t)(t->nsym - i) : SYM_CHUNK;
        if (!pp_elf_src_read(src, t->sym_off + i * sizeof(Elf64_Sym), chunk, n * sizeof(Elf64_Sym)))
            return SIZE_MAX;
        for (size_t j = 0; j < n; j++) {
            const Elf64_Sym *s = &chunk[j];
            if (!pp_elf_wanted(s, t->strsz)) continue;
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

/* pp_elf_load_table: the function symbols of table t into e.
 * @return PPROF_OK (e->syms set, or no symbols), PPROF_ERR_NOMEM. */
pprof_err_t pp_elf_load_table(pprof_symcache_t *c, pp_elf_t *e, const src_t *src, table_t *t)
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

/* pp_elf_find_table: the symbol section of type `want` in the section headers
 * sh[0..shnum) whose sections lie inside the image and within the bounds,
 * and its string section; false when there is none. */
bool pp_elf_find_table(const src_t *src, const Elf64_Shdr *sh, size_t shnum, uint32_t want,
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

/* pp_elf_find_tables: where .symtab (off[0]) and .dynsym (off[1]) are: symbol
 * section offset and size, string section offset and size; have[i] false
 * for a table the file lacks or that is past the bounds. @return PPROF_OK
 * or PPROF_ERR_NOMEM. */
pprof_err_t pp_elf_find_tables(pprof_symcache_t *c, const src_t *src, const Elf64_Ehdr *eh,
                               bool have[2], uint64_t off[2][4])
{
    have[0] = have[1] = false;
    if (eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shoff == 0) return PPROF_OK;
    uint64_t shnum = eh->e_shnum;
    if (shnum == 0) {   /* more than SHN_LORESERVE sections: count in sh0 */
        Elf64_Shdr sh0;
        if (!pp_elf_src_read(src, eh->e_shoff, &sh0, sizeof(sh0))) return PPROF_OK;
        shnum = sh0.sh_size;
    }
    if (shnum < 2 || shnum > PP_ELF_MAX_SECTIONS ||
        shnum > src->len / sizeof(Elf64_Shdr))
        return PPROF_OK;
    Elf64_Shdr *sh = c->a.alloc(c->a.ctx, (size_t)shnum * sizeof(Elf64_Shdr));
    if (!sh) return PPROF_ERR_NOMEM;
    if (pp_elf_src_read(src, eh->e_shoff, sh, (size_t)shnum * sizeof(Elf64_Shdr))) {
        have[0] = pp_elf_find_table(src, sh, (size_t)shnum, SHT_SYMTAB, &off[0][0], &off[0][1],
                             &off[0][2], &off[0][3]);
        have[1] = pp_elf_find_table(src, sh, (size_t)shnum, SHT_DYNSYM, &off[1][0], &off[1][1],
                             &off[1][2], &off[1][3]);
    }
    c->a.free(c->a.ctx, sh);
    return PPROF_OK;
}
