/*
 * pprof.h - public API of heapwatch's pprof writer: turns stacks and counts
 * into gzip-compressed profile.proto files that `go tool pprof` reads with
 * no extra flags, named in-process so a profile is self-contained.
 *
 * A profile is built in four steps:
 *
 *   pprof_builder_new(&alloc, &b);
 *   pprof_builder_set_heap_types(b, rate);          // or _set_sample_types
 *   for each stack: pprof_heap_add(b, pcs, depth, &counts);
 *                                                   // or _add_sample
 *   pprof_builder_add_mappings_from_proc(b);        // executable mappings
 *   pprof_builder_symbolize(b, cache);              // function names
 *   pprof_builder_write_gz(b, dir, "heap.1.0001.exit.pb.gz");
 *   pprof_builder_free(b);
 *
 * Memory: the module never calls malloc, calloc, realloc, free or stdio.
 * Every byte comes from the map_allocator_t given at creation (the agent's
 * arena): the builder's tables, the symbol tables, zlib's state (through
 * zalloc/zfree) and protobuf-c's decoder (through a ProtobufCAllocator).
 * Packing streams each message through a ProtobufCBuffer into zlib and
 * straight to the file, so the encoded profile is never held whole.
 * Files are read with open/read/mmap, written with open/write/fsync/rename.
 *
 * Threads: a builder, and a symbol cache, may be used by one thread at a
 * time. Different builders are independent.
 *
 * Dependencies: map/map.h (for map_allocator_t only), protobuf-c, zlib;
 * not libm (pprof_math.c).
 */
#ifndef HEAPWATCH_PPROF_H
#define HEAPWATCH_PPROF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "map/map.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* pprof_err_t: the module's error codes. Values are stable. */
typedef enum {
    PPROF_OK = 0,
    PPROF_ERR_NOMEM = 1,     /* the allocator returned NULL */
    PPROF_ERR_INVALID = 2,   /* bad argument (NULL, count out of range) */
    PPROF_ERR_STATE = 3,     /* call out of order (e.g. types after samples) */
    PPROF_ERR_LIMIT = 4,     /* more than 2^32-2 strings, locations, ... */
    PPROF_ERR_NOSPACE = 5,   /* write failed: no space left (ENOSPC, EDQUOT) */
    PPROF_ERR_PERM = 6,      /* no permission (EACCES, EPERM, EROFS) */
    PPROF_ERR_NOENT = 7,     /* the directory does not exist (ENOENT, ENOTDIR) */
    PPROF_ERR_IO = 8,        /* any other system call failure */
    PPROF_ERR_PROC = 9,      /* /proc/self/maps could not be read */
    PPROF_ERR_ZLIB = 10,     /* zlib failed (other than out of memory) */
    PPROF_ERR_DECODE = 11,   /* pprof_validate: not a decodable profile */
    PPROF_ERR_MALFORMED = 12,/* pprof_validate: decodes, but breaks a rule */
} pprof_err_t;

/* pprof_strerror: a static, human-readable text for an error code. */
const char *pprof_strerror(pprof_err_t err);

/* ------------------------------------------------------------------------ */
/* Builder                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct pprof_builder_s pprof_builder_t;

/*
 * pprof_builder_new: an empty profile. The allocator is copied and must
 * outlive the builder.
 * @return PPROF_OK and *out set, PPROF_ERR_INVALID, or PPROF_ERR_NOMEM.
 */
pprof_err_t pprof_builder_new(const map_allocator_t *allocator,
                              pprof_builder_t **out);

/* pprof_builder_free: releases every byte of the builder (NULL is a no-op). */
void pprof_builder_free(pprof_builder_t *b);

/* pprof_value_type_t: a (type, unit) pair such as ("inuse_space", "bytes"). */
typedef struct pprof_value_type_s {
    const char *type;
    const char *unit;
} pprof_value_type_t;

#define PPROF_MAX_SAMPLE_TYPES 64

/*
 * pprof_builder_set_sample_types: the value columns (1..64) of every
 * sample, and optionally the period type (NULL: none) and period. Strings
 * are copied. Must be called before the first sample.
 * @return PPROF_OK, PPROF_ERR_INVALID, PPROF_ERR_STATE (samples exist),
 *         PPROF_ERR_NOMEM.
 */
pprof_err_t pprof_builder_set_sample_types(pprof_builder_t *b,
                                           const pprof_value_type_t *types,
                                           size_t ntypes,
                                           const pprof_value_type_t *period_type,
                                           int64_t period);

/*
 * pprof_builder_set_heap_types: the profile Go writes for the heap:
 * alloc_objects/count, alloc_space/bytes, inuse_objects/count,
 * inuse_space/bytes (in this order), period type space/bytes, period =
 * rate (the mean bytes between sampled allocations; 1 = every allocation).
 * pprof_heap_add then unsamples with this rate. rate >= 0.
 * @return as pprof_builder_set_sample_types.
 */
pprof_err_t pprof_builder_set_heap_types(pprof_builder_t *b, int64_t rate);

/*
 * pprof_builder_set_default_sample_type: the type pprof shows when none is
 * asked for (unset: the last one, inuse_space for heap profiles; Go's
 * "allocs" profile sets alloc_space).
 */
pprof_err_t pprof_builder_set_default_sample_type(pprof_builder_t *b,
                                                  const char *type);

/* pprof_builder_set_time: collection time (ns since the Unix epoch) and
 * duration (ns; 0 = not set, as Go leaves it for heap profiles). */
pprof_err_t pprof_builder_set_time(pprof_builder_t *b, int64_t time_nanos,
                                   int64_t duration_nanos);

/* pprof_builder_add_comment: a line of free text shown by pprof -comments. */
pprof_err_t pprof_builder_add_comment(pprof_builder_t *b, const char *text);

/*
 * pprof_pc_kind_t: what the addresses of a stack are. A return address
 * points after the call instruction, possibly into the next function or
 * line, so such frames are stored (as Go does) and symbolized at
 * address - 1, inside the call.
 */
typedef enum {
    PPROF_PCS_RETURN = 0,    /* every frame is a return address: stacks
                              * unwound from inside a call, like malloc's
                              * caller chain (the default) */
    PPROF_PCS_LEAF_EXACT = 1,/* the leaf is an exact PC (e.g. taken from a
                              * signal context), the callers are return
                              * addresses */
    PPROF_PCS_EXACT = 2,     /* every frame is an exact instruction address */
} pprof_pc_kind_t;

/* pprof_builder_set_pc_kind: how add_sample reads pcs (before any sample).
 * @return PPROF_OK, PPROF_ERR_INVALID, PPROF_ERR_STATE. */
pprof_err_t pprof_builder_set_pc_kind(pprof_builder_t *b, pprof_pc_kind_t kind);

/*
 * pprof_label_t: a sample label. str != NULL makes a string label;
 * otherwise num (with the optional unit num_unit, e.g. "bytes") is the
 * value. Keys starting "pprof::" are reserved by pprof.
 */
typedef struct pprof_label_s {
    const char *key;
    const char *str;
    int64_t num;
    const char *num_unit;
} pprof_label_t;

#define PPROF_MAX_LABELS 64

/*
 * pprof_builder_add_sample: one sample. pcs[0] is the innermost frame (the
 * leaf), pcs[depth-1] the outermost; depth may be 0. values has one entry
 * per sample type. Locations are interned by address: the same address in
 * many stacks is one Location. Strings are copied.
 * @return PPROF_OK, PPROF_ERR_INVALID (NULL pcs with depth > 0, no sample
 *         types, a label without key, more than 64 labels),
 *         PPROF_ERR_NOMEM or PPROF_ERR_LIMIT: no sample is added (strings
 *         or locations interned before the failure stay, unused, which
 *         pprof accepts); the builder remains usable.
 */
pprof_err_t pprof_builder_add_sample(pprof_builder_t *b, const uint64_t *pcs,
                                     size_t depth, const int64_t *values,
                                     const pprof_label_t *labels,
                                     size_t nlabels);

/* ------------------------------------------------------------------------ */
/* Heap profiles                                                            */
/* ------------------------------------------------------------------------ */

/* pprof_heap_counts_t: raw (sampled) counts of one allocation site. */
typedef struct pprof_heap_counts_s {
    int64_t alloc_objects;   /* sampled allocations, freed or not */
    int64_t alloc_bytes;     /* their bytes */
    int64_t inuse_objects;   /* sampled allocations not yet freed */
    int64_t inuse_bytes;     /* their bytes */
    int64_t extra_bytes;     /* per object, bytes the sampler counted beyond
                              * the size reported (an allocator header); 0
                              * for Go's rule. The sampling probability was
                              * 1 - exp(-(size + extra)/rate). */
} pprof_heap_counts_t;

/*
 * pprof_heap_scale: Go's unsampling (runtime/pprof scaleHeapSample) of one
 * (count, bytes) pair sampled at `rate`: (0, 0) when count or bytes is 0;
 * unchanged when rate <= 1; otherwise both times 1/(1 - exp(-avg/rate))
 * with avg = bytes/count, truncated toward zero.
 */
void pprof_heap_scale(int64_t count, int64_t bytes, int64_t rate,
                      int64_t *count_out, int64_t *bytes_out);

/*
 * pprof_heap_add: a heap sample as Go writes it: the alloc pair and the
 * in-use pair each unsampled with the builder's rate (the average size plus
 * raw->extra_bytes in the sampling probability), and the numeric label
 * "bytes" = alloc_bytes / alloc_objects (the object size) when
 * alloc_objects > 0. The builder must have the heap types.
 * @return as pprof_builder_add_sample; PPROF_ERR_STATE without heap types.
 */
pprof_err_t pprof_heap_add(pprof_builder_t *b, const uint64_t *pcs,
                           size_t depth, const pprof_heap_counts_t *raw);

/* ------------------------------------------------------------------------ */
/* Maths without libm (pprof_math.c)                                        */
/* ------------------------------------------------------------------------ */

/*
 * pprof_exp, pprof_log: exp and log within a few units in the last place
 * of libm's, edge values as libm (NaN in, NaN out; log 0 = -inf, log of a
 * negative = NaN; exp overflows to inf and underflows to 0). The module,
 * and the agent that links it, need no libm.so: one library fewer for the
 * dynamic loader to load into every process.
 */
double pprof_exp(double x);
double pprof_log(double x);

/*
 * pprof_round_i64: x rounded to the nearest integer, halves away from
 * zero (llround); saturated to INT64_MIN / INT64_MAX beyond them, 0 for NaN.
 */
int64_t pprof_round_i64(double x);

/* ------------------------------------------------------------------------ */
/* Mappings and symbolization                                               */
/* ------------------------------------------------------------------------ */

/* pprof_mapping_t: a loaded object, for pprof_builder_add_mapping. */
typedef struct pprof_mapping_s {
    uint64_t start;          /* first address of the executable segment */
    uint64_t limit;          /* one past its last address */
    uint64_t offset;         /* file offset mapped at start */
    const char *path;        /* file path or pseudo name ("[vdso]"); may be NULL */
    const char *build_id;    /* lowercase hex; NULL or "" when unknown */
} pprof_mapping_t;

/*
 * pprof_builder_add_mapping: adds a mapping by hand (a process other than
 * this one, tests). Locations are attached to the mapping containing them
 * when the profile is symbolized or written. Overlapping mappings: the one
 * added first wins.
 * @return PPROF_OK, PPROF_ERR_INVALID (limit <= start), PPROF_ERR_NOMEM.
 */
pprof_err_t pprof_builder_add_mapping(pprof_builder_t *b,
                                      const pprof_mapping_t *m);

/*
 * pprof_builder_add_mappings_from_proc: adds every executable mapping of
 * the calling process from /proc/self/maps, as Go does: start, limit, file
 * offset, path (" (deleted)" removed) and the GNU build ID of the file
 * (read from /proc/self/map_files/ when possible, so a deleted or replaced
 * file still gives the right one). The main executable becomes mapping 1.
 * @return PPROF_OK, PPROF_ERR_PROC, PPROF_ERR_NOMEM.
 */
pprof_err_t pprof_builder_add_mappings_from_proc(pprof_builder_t *b);

/*
 * pprof_builder_add_mappings_from_proc_used: the same, but only the main
 * executable's mappings and those holding a location added so far; no
 * file is opened for the others. A mapping's build ID is what costs (the
 * file opened through /proc/self/map_files and read): a short process's
 * exit profile opened a dozen libraries to name frames in two. Locations
 * added later may fall in no mapping. @return as above.
 */
pprof_err_t pprof_builder_add_mappings_from_proc_used(pprof_builder_t *b);

/*
 * pprof_fd_hooks_t: how the module opens and closes the files it reads
 * (/proc/self/maps, the files behind mappings). A preloaded agent routes
 * them through its own descriptor rules (agent/fds.c: a descriptor of the
 * agent's at a number the program does not pick, closed only while it is
 * still the agent's). open: a descriptor, or -1 with errno set (O_CLOEXEC
 * is in flags); close: closes it only while it is still the one opened.
 * NULL (the default): open(2) and close(2). Set once, before any use.
 */
typedef struct pprof_fd_hooks_s {
    int (*open)(const char *path, int flags);
    void (*close)(int fd);
} pprof_fd_hooks_t;
void pprof_set_fd_hooks(const pprof_fd_hooks_t *hooks);

/*
 * pprof_symcache_t: ELF symbol tables of mapped files, kept between
 * profiles so that an agent writing a profile every few seconds parses
 * libstdc++ once. A file is read with pread into memory from the cache's
 * allocator when first needed (never mapped: a file the program truncates
 * or rewrites cannot fault the reader; a short read means no names for
 * that file). Keyed by the file's device, inode, size, mtime and ctime: a
 * changed file is read afresh and its old entry dropped. Bounded: at most
 * 64 files and 64 MiB held (least recently used evicted), per file a
 * symbol and a string section of at most 16 MiB each.
 */
typedef struct pprof_symcache_s pprof_symcache_t;

/* pprof_symcache_new: an empty cache on `allocator` (copied).
 * @return PPROF_OK, PPROF_ERR_INVALID, PPROF_ERR_NOMEM. */
pprof_err_t pprof_symcache_new(const map_allocator_t *allocator,
                               pprof_symcache_t **out);

/* pprof_symcache_free: frees every table and the cache. */
void pprof_symcache_free(pprof_symcache_t *c);

/* pprof_symcache_stats_t: what the cache holds (for tests and benchmarks). */
typedef struct pprof_symcache_stats_s {
    size_t files;            /* ELF images cached (read or unreadable) */
    size_t tables;           /* symbol tables held */
    size_t symbols;          /* function symbols across those tables */
    size_t bytes;            /* bytes held from the allocator */
    size_t evicted;          /* entries evicted to stay within the bounds */
    size_t dropped;          /* entries dropped because their file changed */
} pprof_symcache_stats_t;

void pprof_symcache_get_stats(const pprof_symcache_t *c,
                              pprof_symcache_stats_t *out);

/*
 * pprof_builder_symbolize: names every location that falls in a mapping
 * whose file (or vdso image) has a symbol table entry covering it: .symtab
 * when present, else .dynsym. Locations are attached to their mappings.
 * Stripped files are named from their separate debug file when one is
 * installed (/usr/lib/debug/.build-id/, .gnu_debuglink: pprof_elf.c).
 * The Function gets system_name = the symbol as the linker knows it, and
 * name = the same, C++ `_Z` names demangled (libiberty, on a stack of
 * the module's own; a mangled name over 512 bytes stays mangled). A mapping gets has_functions
 * only when every one of its locations was named, as Go does; a location
 * that cannot be named keeps its address and mapping so pprof can still
 * try. Files are found through /proc/self/map_files/ first (exact even when
 * deleted), then by path. cache may be NULL: a temporary cache is used.
 * May be called again after more samples; named locations are kept.
 * @return PPROF_OK (also when some names were not found), PPROF_ERR_NOMEM.
 */
pprof_err_t pprof_builder_symbolize(pprof_builder_t *b, pprof_symcache_t *cache);

/*
 * pprof_builder_symbolize_once: the same names, for a profile after which
 * the process symbolizes nothing more (its exit profile): a file that
 * cache does not hold yet is not loaded into it; its locations are named
 * by one pass over its symbol section, without sorting it (a file with
 * more than 4096 locations is loaded as usual). pprof_builder_symbolize
 * with a NULL cache does this too. @return as pprof_builder_symbolize.
 */
pprof_err_t pprof_builder_symbolize_once(pprof_builder_t *b, pprof_symcache_t *cache);

/*
 * pprof_builder_frame_name: the function name symbolization gave frame i of
 * a stack added with pprof_builder_add_sample (pcs as passed there, read
 * with the builder's pc kind), or NULL when the frame was not added or not
 * named. C++ names are demangled (pprof_builder_frame_info has the
 * mangled one). Valid until the builder is freed.
 */
const char *pprof_builder_frame_name(const pprof_builder_t *b, const uint64_t *pcs, size_t i);

/* pprof_frame_info_t: what the builder knows of one frame. */
typedef struct pprof_frame_info_s {
    const char *name;        /* the Function's name (C++ demangled), or NULL */
    const char *system_name; /* its system_name (the linker's symbol), or NULL */
    const char *file;        /* the path of the mapping holding it (may be
                              * "" or a pseudo name such as "[vdso]"), or
                              * NULL when in no mapping */
    uint64_t file_offset;    /* the address symbolized (a return address
                              * minus 1) as an offset in that file */
} pprof_frame_info_t;

/*
 * pprof_builder_frame_info: name, system name, file and offset of frame i
 * (as pprof_builder_frame_name; locations are attached to their mappings
 * by symbolization). Strings valid until the builder is freed.
 * @return false when the frame was not added (*out zeroed).
 */
bool pprof_builder_frame_info(const pprof_builder_t *b, const uint64_t *pcs, size_t i,
                              pprof_frame_info_t *out);

/* ------------------------------------------------------------------------ */
/* Output                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * pprof_builder_write_gz: writes the gzip-compressed profile as dir/name,
 * atomically: a temporary file ".name.tmp.<pid>.<n>" in dir is written,
 * fsync'ed and renamed over dir/name (then dir is fsync'ed). On failure the
 * temporary file is removed and dir/name is untouched. The builder is not
 * changed and may be written again.
 * @return PPROF_OK, PPROF_ERR_INVALID (name contains '/', empty),
 *         PPROF_ERR_NOSPACE, PPROF_ERR_PERM, PPROF_ERR_NOENT, PPROF_ERR_IO,
 *         PPROF_ERR_NOMEM, PPROF_ERR_ZLIB.
 */
pprof_err_t pprof_builder_write_gz(pprof_builder_t *b, const char *dir,
                                   const char *name);

/*
 * pprof_builder_write_fd: streams the gzip-compressed profile to fd (a
 * socket for /debug/pprof/heap, a pipe). Short writes and EINTR are
 * handled; the fd is not closed.
 */
pprof_err_t pprof_builder_write_fd(pprof_builder_t *b, int fd);

/*
 * pprof_builder_encode: the profile in memory, gzip-compressed when gzip is
 * true, raw protobuf otherwise. *data comes from the builder's allocator:
 * release it with the allocator's free.
 */
pprof_err_t pprof_builder_encode(pprof_builder_t *b, bool gzip, void **data,
                                 size_t *len);

/* pprof_builder_stats_t: sizes of a builder (tests, benchmarks). */
typedef struct pprof_builder_stats_s {
    size_t samples;
    size_t locations;
    size_t functions;
    size_t mappings;
    size_t strings;          /* string table entries, "" included */
    size_t bytes;            /* bytes held from the allocator */
} pprof_builder_stats_t;

void pprof_builder_get_stats(const pprof_builder_t *b,
                             pprof_builder_stats_t *out);

/* ------------------------------------------------------------------------ */
/* Checking                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * pprof_validate: decodes a profile (gzip or raw) with protobuf-c and
 * applies the rules `go tool pprof` enforces (docs/pprof.md), plus the ones
 * the schema states that pprof lets pass: string_table[0] == "", every
 * string index in range, sample types present when there are samples, one
 * value per sample type, every location, function and mapping reference
 * resolves, ids nonzero and unique per kind. Memory comes from allocator.
 * why (optional, whylen bytes) receives a one-line reason on failure.
 * @return PPROF_OK, PPROF_ERR_DECODE, PPROF_ERR_MALFORMED, PPROF_ERR_NOMEM,
 *         PPROF_ERR_INVALID.
 */
pprof_err_t pprof_validate(const map_allocator_t *allocator, const void *data,
                           size_t len, char *why, size_t whylen);

#ifdef __cplusplus
}
#endif

#endif /* HEAPWATCH_PPROF_H */
