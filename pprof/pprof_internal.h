/*
 * pprof_internal.h - private declarations of the pprof module: the
 * builder's tables, the growable containers they are made of, the ELF
 * symbol cache, and the OS seams. Only the module's .c files and its own unit
 * tests include this file.
 */
#ifndef HEAPWATCH_PPROF_INTERNAL_H
#define HEAPWATCH_PPROF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pprof/pprof.h"

/* ------------------------------------------------------------------------ */
/* Error helpers (zstd error_private.h style)                               */
/* ------------------------------------------------------------------------ */

/* PP_TRY: evaluate an expression returning pprof_err_t, return it on error. */
#define PP_TRY(expr)                                                         \
    do {                                                                     \
        pprof_err_t pp_try_err_ = (expr);                                    \
        if (pp_try_err_ != PPROF_OK) return pp_try_err_;                     \
    } while (0)

/* pp_errno_to_err: the pprof_err_t for a failed system call's errno. */
pprof_err_t pp_errno_to_err(int err);

/* ------------------------------------------------------------------------ */
/* OS seams (STYLE.md point 14): writable in test builds only               */
/* ------------------------------------------------------------------------ */

#ifdef HEAPWATCH_TEST
#define PP_SEAM
#else
#define PP_SEAM const
#endif

extern int (*PP_SEAM pp_sys_open)(const char *path, int flags, mode_t mode);
extern ssize_t (*PP_SEAM pp_sys_write)(int fd, const void *buf, size_t n);
extern int (*PP_SEAM pp_sys_fsync)(int fd);
extern int (*PP_SEAM pp_sys_rename)(const char *from, const char *to);

/* pp_write_all: writes n bytes, retrying on EINTR and after short writes.
 * @return 0, or the errno of the failure (ENOSPC for a write returning 0). */
int pp_write_all(int fd, const void *buf, size_t n);

/* pp_close: closes a descriptor this module opened (through the hooks of
 * pprof_set_fd_hooks when set: closed only while still the one opened). */
void pp_close(int fd);

/* pp_fd_t: a descriptor this module opened, with the file it was then.
 * The program may close any descriptor at any time (daemons close
 * 3..1023) and get the same number back for a file of its own: every
 * read and the close go through pp_fd_ours first, so a number that now
 * holds another file (device, inode) or lost its close-on-exec flag
 * (dup2 clears it) is never read, written or closed, only forgotten. */
typedef struct pp_fd_s {
    int fd;                  /* -1: none */
    dev_t dev;
    ino_t ino;
} pp_fd_t;

/* pp_fd_open: opens path with flags | O_CLOEXEC. @return success (errno
 * set on failure). */
bool pp_fd_open(pp_fd_t *f, const char *path, int flags);

/* pp_fd_ours: f's number still holds the file opened, close-on-exec. */
bool pp_fd_ours(const pp_fd_t *f);

/* pp_fd_close: closes f if it is still ours (else leaves the number to the
 * program); f->fd becomes -1. */
void pp_fd_close(pp_fd_t *f);

/* pp_read_file: the whole of a (possibly /proc) file into a buffer from a;
 * *out is NUL-terminated. @return PPROF_OK or an error (errno mapped). */
pprof_err_t pp_read_file(const map_allocator_t *a, const char *path,
                         char **out, size_t *len);

/* ------------------------------------------------------------------------ */
/* Containers on a map_allocator_t                                          */
/* ------------------------------------------------------------------------ */

/* pp_vec_t: a growable array of fixed-size elements (doubling). */
typedef struct pp_vec_s {
    void *data;
    size_t len;              /* elements in use */
    size_t cap;              /* elements allocated */
    size_t elem;             /* element size in bytes */
} pp_vec_t;

void pp_vec_init(pp_vec_t *v, size_t elem);
/* pp_vec_reserve: room for `more` elements beyond len. */
pprof_err_t pp_vec_reserve(const map_allocator_t *a, pp_vec_t *v, size_t more);
/* pp_vec_push: appends a copy of elem (NULL: zero-filled); *slot (optional)
 * gets the new element's address. */
pprof_err_t pp_vec_push(const map_allocator_t *a, pp_vec_t *v,
                        const void *elem, void **slot);
void pp_vec_free(const map_allocator_t *a, pp_vec_t *v);
#define PP_VEC_AT(v, type, i) (((type *)(v)->data)[i])

/* pp_pool_t: a bump allocator of never-moving chunks, freed all at once. */
typedef struct pp_chunk_s pp_chunk_t;
typedef struct pp_pool_s {
    pp_chunk_t *head;        /* newest chunk first */
    size_t bytes;            /* bytes obtained from the allocator */
    size_t chunk_size;       /* default chunk payload size */
} pp_pool_t;

void pp_pool_init(pp_pool_t *p, size_t chunk_size);
/* pp_pool_alloc: n bytes aligned to 8 (zero-filled); NULL on failure. */
void *pp_pool_alloc(const map_allocator_t *a, pp_pool_t *p, size_t n);
void pp_pool_free(const map_allocator_t *a, pp_pool_t *p);

/*
 * pp_index_t: an open-addressing hash index over the elements of a pp_vec_t
 * (or any array addressed by a 32-bit index). A slot holds the element's
 * 32-bit hash and index + 1 (0 = empty), so growing never rehashes keys and
 * a probe compares a key only when the hashes match. Linear probing, load
 * at most 1/2. No deletion (the builder never forgets anything).
 */
typedef struct pp_index_s {
    uint64_t *slots;
    size_t mask;             /* capacity - 1 (capacity is a power of two), or 0 */
    size_t n;                /* entries */
} pp_index_t;

/* pp_index_eq: does element idx have the key the caller is looking for? */
typedef bool (*pp_index_eq)(const void *ctx, uint32_t idx, const void *key);

/* pp_index_find: the index of the element equal to key, or UINT32_MAX. */
uint32_t pp_index_find(const pp_index_t *ix, uint32_t hash, pp_index_eq eq,
                       const void *ctx, const void *key);
/* pp_index_insert: records element idx (not present yet) under hash. */
pprof_err_t pp_index_insert(const map_allocator_t *a, pp_index_t *ix,
                            uint32_t hash, uint32_t idx);
/* pp_index_reserve: room for `more` insertions without failing. */
pprof_err_t pp_index_reserve(const map_allocator_t *a, pp_index_t *ix,
                             size_t more);
void pp_index_free(const map_allocator_t *a, pp_index_t *ix);

/* Hashing. */
uint64_t pp_hash_bytes(const void *p, size_t n);
static inline uint64_t pp_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* pp_heapsort: in-place heapsort (glibc's qsort may malloc a merge
 * buffer; this never allocates). */
void pp_heapsort(void *base, size_t n, size_t size,
                 int (*cmp)(const void *, const void *));

/* Small string helpers (no stdio anywhere in the module). */
size_t pp_fmt_u64(char *out, uint64_t v, unsigned base);  /* no NUL */

/* ------------------------------------------------------------------------ */
/* The builder                                                              */
/* ------------------------------------------------------------------------ */

#define PP_NONE UINT32_MAX

/* pp_label_t: a label with its strings interned. */
typedef struct pp_label_s {
    uint32_t key;            /* string index */
    uint32_t str;            /* string index, 0 for a numeric label */
    uint32_t unit;           /* string index of num_unit, or 0 */
    int64_t num;
} pp_label_t;

/* pp_sample_t: one sample; its arrays live in the builder's sample pool. */
typedef struct pp_sample_s {
    uint32_t *locs;          /* location indexes (id - 1), leaf first */
    int64_t *values;         /* ntypes values */
    pp_label_t *labels;
    uint32_t depth;
    uint32_t nlabels;
} pp_sample_t;

/* pp_loc_t: one Location, interned by address. */
typedef struct pp_loc_s {
    uint64_t addr;           /* as stored: return addresses already minus 1 */
    uint32_t mapping;        /* mapping index + 1, 0 = none */
    uint32_t function;       /* function index + 1, 0 = not named */
} pp_loc_t;

/* pp_func_t: one Function, interned by (name, system_name, filename). */
typedef struct pp_func_s {
    uint32_t name;
    uint32_t system_name;
    uint32_t filename;
} pp_func_t;

/* pp_mapping_t: one Mapping plus what symbolization needs to find its file. */
typedef struct pp_mapping_s {
    uint64_t start, limit, offset;
    uint32_t filename;       /* string index (" (deleted)" removed) */
    uint32_t build_id;       /* string index */
    uint64_t dev, ino;       /* from /proc/self/maps; 0 for manual mappings */
    bool from_proc;          /* found in /proc/self/maps: map_files usable */
    bool deleted;            /* the maps line said " (deleted)" */
    bool vdso;               /* the kernel's vdso: symbolized from memory */
    bool has_functions;      /* computed when encoding */
} pp_mapping_t;

struct pprof_builder_s {
    map_allocator_t a;

    /* string table: strs[i] is a NUL-terminated copy in str_pool; strs[0] = "" */
    pp_vec_t strs;           /* char * */
    pp_vec_t str_lens;       /* uint32_t, length of strs[i] */
    pp_index_t str_ix;
    pp_pool_t str_pool;

    /* value types */
    uint32_t ntypes;
    uint32_t type_str[PPROF_MAX_SAMPLE_TYPES];
    uint32_t unit_str[PPROF_MAX_SAMPLE_TYPES];
    uint32_t period_type_str, period_unit_str;
    bool has_period_type;
    int64_t period;
    bool heap;               /* set_heap_types: pprof_heap_add allowed */
    uint32_t default_type_str;

    int64_t time_nanos, duration_nanos;
    pp_vec_t comments;       /* int64_t string indexes */
    pprof_pc_kind_t pc_kind;

    /* samples */
    pp_vec_t samples;        /* pp_sample_t */
    pp_pool_t sample_pool;
    uint32_t max_depth;      /* deepest stack, for the encoder's scratch */
    uint32_t max_labels;

    /* locations, functions, mappings */
    pp_vec_t locs;           /* pp_loc_t */
    pp_index_t loc_ix;
    pp_vec_t funcs;          /* pp_func_t */
    pp_index_t func_ix;
    pp_vec_t maps;           /* pp_mapping_t, in id order */
    pp_vec_t map_order;      /* uint32_t mapping indexes sorted by start */
    uint64_t maps_version;   /* bumped by each add_mapping */
    uint64_t attach_version; /* maps_version when locations were attached */
    size_t attached;         /* locations [0, attached) are attached */
    size_t demangled;        /* functions [0, demangled) were looked at by
                              * pp_demangle_functions */
};

/* pp_str_intern: the string index of s (len bytes, copied if new). */
pprof_err_t pp_str_intern(pprof_builder_t *b, const char *s, size_t len,
                          uint32_t *idx);
pprof_err_t pp_str_intern0(pprof_builder_t *b, const char *s, uint32_t *idx);
static inline const char *pp_str(const pprof_builder_t *b, uint32_t idx)
{
    return PP_VEC_AT(&b->strs, char *, idx);
}

/* pp_func_intern: the index of the function (name, system_name, filename). */
pprof_err_t pp_func_intern(pprof_builder_t *b, uint32_t name,
                           uint32_t system_name, uint32_t filename,
                           uint32_t *idx);

/* pp_add_mapping_full: pprof_builder_add_mapping; `extra` (optional)
 * carries the fields only /proc/self/maps knows (dev, ino, deleted...). */
pprof_err_t pp_add_mapping_full(pprof_builder_t *b, const pprof_mapping_t *m,
                                const pp_mapping_t *extra);

/* pp_open_mapping: a read-only fd on the file behind mapping m (path: its
 * filename), or -1. See pprof_proc.c for the search order. */
int pp_open_mapping(const pp_mapping_t *m, const char *path);

/* pp_attach_locations: attaches every location to the mapping containing
 * its address (binary search over map_order). */
pprof_err_t pp_attach_locations(pprof_builder_t *b);

/* ------------------------------------------------------------------------ */
/* ELF images and symbol tables (pprof_elf.c)                              */
/* ------------------------------------------------------------------------ */

/* pp_sym_t: one function symbol, sorted by addr. */
typedef struct pp_sym_s {
    uint64_t addr;           /* st_value (link-time virtual address) */
    uint32_t size;           /* st_size, 0 = unknown (extends to the next) */
    uint32_t name;           /* offset into the entry's names */
} pp_sym_t;

#define PP_BUILD_ID_MAX 64   /* bytes of a build ID we keep (hex: twice) */

/* Bounds of what one file may cost (see pprof_elf.c's design comment). */
#define PP_ELF_MAX_PHDRS 128            /* program headers read */
#define PP_ELF_MAX_LOADS 16             /* PT_LOAD segments kept */
#define PP_ELF_MAX_SECTIONS 65536u      /* section headers read (4 MiB) */
#define PP_ELF_MAX_SYMTAB (16u << 20)   /* bytes of a symbol section read */
#define PP_ELF_MAX_STRTAB (16u << 20)   /* bytes of its string section read */
#define PP_ELF_MAX_NAME 4096u           /* bytes of one name kept */
/* Bounds of the cache: entries and bytes held (LRU eviction). */
#define PP_SYMCACHE_MAX_FILES 64u
#define PP_SYMCACHE_MAX_BYTES ((size_t)64 << 20)

/* pp_load_t: a PT_LOAD segment: file offset and size, link-time address. */
typedef struct pp_load_s {
    uint64_t offset, filesz, vaddr;
} pp_load_t;

typedef enum {
    PP_ELF_FILE = 0,         /* a regular file, keyed by its fstat */
    PP_ELF_VDSO = 1,         /* the kernel's vdso, keyed by its address */
    PP_ELF_SPECIAL = 2,      /* the shared entry of non-regular files */
} pp_elf_kind_t;

/* pp_elf_t: what was read of one ELF image (a file or the vdso): its
 * PT_LOAD segments and function symbols, all in memory from the cache's
 * allocator (no mapping, no descriptor). */
typedef struct pp_elf_s {
    struct pp_elf_s *prev, *next; /* LRU list, most recently used first */
    pp_elf_kind_t kind;
    uint64_t dev, ino, size; /* identity (fstat) of a file */
    int64_t mtime_sec, mtime_nsec;
    int64_t ctime_sec, ctime_nsec;
    const void *vdso;        /* the image of a PP_ELF_VDSO entry */
    bool bad;                /* unreadable, not a usable ELF, or changed
                              * while read: no names */
    bool debug;              /* its symbols came from its separate debug file */
    unsigned nloads;
    pp_load_t loads[PP_ELF_MAX_LOADS];
    pp_sym_t *syms;          /* function symbols sorted by addr */
    size_t nsyms;
    char *names;             /* names, packed and NUL-terminated, or the
                              * string section as read (see keep_syms);
                              * pp_sym_t.name indexes it */
    size_t names_len;
    size_t bytes;            /* held by this entry, itself included */
} pp_elf_t;

struct pprof_symcache_s {
    map_allocator_t a;
    pp_elf_t *files;         /* most recently used first */
    pp_elf_t *lru_tail;      /* least recently used */
    size_t nfiles, ntables, nsyms, bytes;
    size_t max_files, max_bytes;
    size_t evicted, dropped;
};

/* pp_symcache_set_limits: the cache's bounds (tests; the agent keeps the
 * defaults PP_SYMCACHE_MAX_FILES and PP_SYMCACHE_MAX_BYTES). */
void pp_symcache_set_limits(pprof_symcache_t *c, size_t max_files, size_t max_bytes);

/* pp_elf_build_id_fd: the lowercase hex GNU build ID of the ELF file open
 * on fd (PT_NOTE segments read with pread), written NUL-terminated into
 * hex (2*PP_BUILD_ID_MAX+1 bytes). @return false when there is none. */
bool pp_elf_build_id_fd(int fd, char *hex);

/* pp_elf_build_id_mem: the same for an ELF image in memory (the vdso). */
bool pp_elf_build_id_mem(const unsigned char *image, size_t len, char *hex);

/* pp_symcache_open_fd: the cache entry for the file open on fd (consumed:
 * closed in every case; a new file is read whole before returning); path
 * (may be NULL) is where the file lives, for its .gnu_debuglink. NULL
 * only when out of memory. The entry stays valid until the next call of
 * pp_symcache_open_fd or pp_symcache_vdso, which may evict it. */
pp_elf_t *pp_symcache_open_fd(pprof_symcache_t *c, int fd, const char *path);

/* pp_symcache_vdso: the cache entry of the vdso image, or NULL (out of
 * memory); valid as pp_symcache_open_fd's. */
pp_elf_t *pp_symcache_vdso(pprof_symcache_t *c, const void *image, size_t len);

/* pp_symcache_scan_fd: names for the file offsets fo[0..n) of the file
 * open on fd (consumed), the names pp_elf_lookup gives after
 * pp_symcache_open_fd, but for a file the cache does not hold in one pass
 * over its symbol section, reading only the names it needs and keeping
 * nothing (pprof_elf.c, "A few addresses"); for a file it holds, from its
 * table. fn(ctx, i, name, len) is called for each offset that has a name
 * (name valid during the call only); an error from fn stops the scan and
 * is returned. Costs a binary search among the n offsets per symbol of
 * the file: for up to PP_ELF_SCAN_MAX offsets. @return PPROF_OK (also
 * when nothing could be named, out of memory here included, as for a
 * load), or fn's error (PPROF_ERR_NOMEM from the builder). */
#define PP_ELF_SCAN_MAX 4096u
typedef pprof_err_t (*pp_scan_fn)(void *ctx, size_t i, const char *name, size_t len);
pprof_err_t pp_symcache_scan_fd(pprof_symcache_t *c, int fd, const char *path, const uint64_t *fo,
                                size_t n, pp_scan_fn fn, void *ctx);

/* Separate debug files (pprof_elf.c, "Debug files"). */
#define PP_DEBUG_ROOT "/usr/lib/debug"
#define PP_DEBUG_PATH_MAX 4096u             /* a debug file's path, NUL included */
#define PP_DEBUGLINK_NAME_MAX 255u          /* .gnu_debuglink's file name */
#define PP_DEBUG_MAX_SHSTRTAB (1u << 20)    /* section names read to find it */
#define PP_DEBUG_MAX_CRC_BYTES ((uint64_t)64 << 20) /* a debug link file checksummed */

/* pp_elf_parse_debuglink: the contents of a .gnu_debuglink section (size
 * bytes): the file name (a base name, NUL-terminated, at most
 * PP_DEBUGLINK_NAME_MAX bytes) into name and its CRC-32. @return false for
 * a malformed section or a name that is not a plain base name. */
bool pp_elf_parse_debuglink(const unsigned char *sec, size_t size, char *name, uint32_t *crc);

/* pp_elf_lookup: the symbol name covering the file offset fo (mapping
 * offset + address - start) of elf, or NULL; *len gets its length. The
 * name is NUL-terminated, in the entry's memory (valid as the entry). */
const char *pp_elf_lookup(const pp_elf_t *elf, uint64_t fo, size_t *len);

/* ------------------------------------------------------------------------ */
/* C++ names (pprof_demangle.c)                                             */
/* ------------------------------------------------------------------------ */

#define PP_DEMANGLE_MAX_MANGLED 512u    /* longer mangled names stay mangled */
#define PP_DEMANGLE_MAX_OUT 4096u       /* a longer demangled form: stays mangled */
#define PP_DEMANGLE_STACK (512u << 10)  /* the demangler's own stack */

/* pp_demangle_functions: every function not looked at yet whose name is
 * its system name and a C++ mangled one gets name = the demangled form
 * (a new Function; locations repointed), system_name unchanged. Runs the
 * demangler on the module's own stack with signals blocked; when that
 * stack is busy (another thread of the process), names stay mangled.
 * @return PPROF_OK or PPROF_ERR_NOMEM (names kept so far stay). */
pprof_err_t pp_demangle_functions(pprof_builder_t *b);

/* ------------------------------------------------------------------------ */
/* Encoding (pprof_encode.c)                                                */
/* ------------------------------------------------------------------------ */

/* pp_sink_t: where the encoded bytes go. */
typedef struct pp_sink_s pp_sink_t;

/* pp_encode: streams the profile (gzip'ed or raw) into the fd or memory
 * buffer of the sink. */
pprof_err_t pp_encode_fd(pprof_builder_t *b, int fd, bool gzip);
pprof_err_t pp_encode_mem(pprof_builder_t *b, bool gzip, void **data,
                          size_t *len);

/* zlib and protobuf-c allocators on a map_allocator_t. */
void *pp_zalloc(void *opaque, unsigned items, unsigned size);
void pp_zfree(void *opaque, void *ptr);

/* pp_gunzip: inflates a gzip stream into a buffer from a (limit: max_out
 * bytes). @return PPROF_OK, PPROF_ERR_DECODE, PPROF_ERR_NOMEM. */
pprof_err_t pp_gunzip(const map_allocator_t *a, const void *in, size_t len,
                      size_t max_out, unsigned char **out, size_t *out_len);

#endif /* HEAPWATCH_PPROF_INTERNAL_H */
