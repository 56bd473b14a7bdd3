/*
 * profile.h - the agent's heap profiles (heap.<tag>.<seq>.<reason>.pb.gz)
 * read back by the tools: gunzip (zlib), then profile.proto (protobuf-c),
 * then each sample as a list of frame names and its four values, for the
 * report's leaks at exit and the page's flame graphs (profile.c).
 *
 * Frames are named as the profile names them (the Function's name, which
 * the agent writes demangled); a location without a function is named by
 * its mapping's file and the offset in it ("libfoo.so+0x1234"), or by its
 * address ("0x...") without a mapping. A location with inlined functions
 * gives one frame per line, innermost first, as pprof shows them. Names
 * are interned: equal names share one index.
 *
 * Every bound is checked before memory is taken (PROFILE_*_MAX below); a
 * file over one is refused with a message, never read in part (except the
 * two cuts said below: a stack deeper than PROFILE_DEPTH_MAX, a name
 * longer than PROFILE_NAME_MAX). So is a file that is not what it should
 * be: truncated, corrupt gzip, bytes after it, an id or string index that
 * does not resolve, a sample with the wrong number of values.
 */
#ifndef HEAPWATCH_TOOLS_PROFILE_H
#define HEAPWATCH_TOOLS_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROFILE_FILE_MAX (64u << 20)       /* compressed bytes read */
#define PROFILE_RAW_MAX (256u << 20)       /* bytes after gunzip */
#define PROFILE_SAMPLES_MAX 1000000u       /* samples kept */
#define PROFILE_DEPTH_MAX 512u             /* frames per sample (deeper: cut, outermost dropped) */
#define PROFILE_FRAMES_MAX (16u << 20)     /* frames kept in all samples, and location lines */
#define PROFILE_DECODE_MAX (1u << 30)      /* bytes the protobuf decoder may hold */
#define PROFILE_NAME_MAX 4096u             /* bytes of a name (longer: cut, "..." added) */

/* profile_sample_t: one sample; values as the profile holds them
 * (unsampled estimates, Go's four sample types). */
typedef struct {
    const uint32_t *frames;    /* indexes into profile_t.names, innermost first */
    uint32_t nframes;
    int64_t alloc_objects, alloc_bytes;
    int64_t inuse_objects, inuse_bytes;
} profile_sample_t;

typedef struct {
    char **names;              /* distinct frame names, UTF-8 (bad bytes as '?') */
    size_t nnames;
    profile_sample_t *samples;
    size_t nsamples;
    int64_t period;            /* the sampling rate in bytes (0: none) */
    int64_t time_nanos;        /* when the profile was taken (Unix ns) */
    void *priv;                /* storage, for profile_free */
} profile_t;

/* profile_read: the profile at path (gzip, or raw protobuf) into *out
 * (release with profile_free, also after an error). Values of a sample
 * type the file lacks are 0; a file with none of the four is refused.
 * @return 0, or -1 with a one-line reason in msg (the reason only: the
 * caller names the file). */
int profile_read(const char *path, profile_t *out, char *msg, size_t msgcap);

/* profile_read_mem: the same from len bytes at data (the fuzz target). */
int profile_read_mem(const void *data, size_t len, profile_t *out, char *msg, size_t msgcap);

void profile_free(profile_t *p);

/*
 * Stacks of a profile (profile_stacks.c), for the report's leaks at exit
 * and top stacks at the peak, and the page's tables.
 */

/* profile_which_t: which pair of values to add up. */
typedef enum {
    PROFILE_INUSE = 0,         /* inuse_objects, inuse_bytes: live when taken */
    PROFILE_ALLOC = 1,         /* alloc_objects, alloc_bytes: allocated in total */
} profile_which_t;

/* profile_stack_t: the samples with the same frames, added up. */
typedef struct {
    const uint32_t *frames;    /* as in the samples (innermost first) */
    uint32_t nframes;
    uint32_t function;         /* profile_function of the frames (a name index);
                                  UINT32_MAX for a stack without frames */
    int64_t objects, bytes;
} profile_stack_t;

/* profile_stacks: the distinct stacks of p with bytes or objects > 0 for
 * which, sorted by bytes (most first; ties by objects, then by frames),
 * into *out (malloc'd; free it; it points into p). *total_objects and
 * *total_bytes (may be NULL) get the sums over all of them.
 * @return the number of stacks, or (size_t)-1 when out of memory. */
size_t profile_stacks(const profile_t *p, profile_which_t which, profile_stack_t **out, int64_t *total_objects,
                      int64_t *total_bytes);

/* profile_is_wrapper: whether a frame name is an allocation wrapper rather
 * than where the program allocates: operator new and new[], std::allocator
 * and friends, strdup, xmalloc, ... in mangled and demangled spellings
 * (the list of agent/watch.c's is_wrapper, which names an alert's
 * "function"). */
bool profile_is_wrapper(const char *name);

/* profile_function: the innermost of frames[0..n) that is not a wrapper,
 * named or not (an unnamed frame is file+0xoffset: never a name from
 * further up the stack); frames[0] when all are wrappers; UINT32_MAX when
 * n is 0. */
uint32_t profile_function(const profile_t *p, const uint32_t *frames, uint32_t n);

#endif
