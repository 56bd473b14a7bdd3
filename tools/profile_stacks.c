/*
 * profile_stacks.c - the stacks of a heap profile added up (profile.h):
 * what the report lists as leaks at exit and as the top stacks at the
 * peak, and what the page tabulates.
 *
 * A profile may hold several samples with the same frames (the agent
 * writes one per call site address; two sites on different lines of one
 * function have the same names), so samples are merged by their frames:
 * names are interned, so equal frame index arrays are equal stacks. The
 * live ones are sorted by frames and merged neighbour by neighbour, then
 * sorted by bytes: O(n log n) for n samples, one array of n entries.
 *
 * The function of a stack is its innermost frame that is not an
 * allocation wrapper: agent/records.h's HEAPWATCH_WRAPPER_PREFIXES, the
 * list the agent names an alert's "function" with, in both spellings (the
 * agent writes names demangled, older profiles mangled).
 */
#include "tools/profile.h"

#include "agent/records.h"

#include <stdlib.h>
#include <string.h>

bool profile_is_wrapper(const char *name)
{
#define WRAPPER_PREFIX(p) p,
    static const char *const prefixes[] = { HEAPWATCH_WRAPPER_PREFIXES(WRAPPER_PREFIX) };
#undef WRAPPER_PREFIX
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0) return true;
    return false;
}

uint32_t profile_function(const profile_t *p, const uint32_t *frames, uint32_t n)
{
    if (!n) return UINT32_MAX;
    for (uint32_t i = 0; i < n; i++)
        if (!profile_is_wrapper(p->names[frames[i]])) return frames[i];
    return frames[0];
}

/* add_sat: a + b for a, b >= 0, at most INT64_MAX (the values come from a file). */
static int64_t add_sat(int64_t a, int64_t b)
{
    return b > INT64_MAX - a ? INT64_MAX : a + b;
}

static int cmp_frames(const void *a, const void *b)
{
    const profile_stack_t *x = a, *y = b;
    if (x->nframes != y->nframes) return x->nframes < y->nframes ? -1 : 1;
    for (uint32_t i = 0; i < x->nframes; i++)
        if (x->frames[i] != y->frames[i]) return x->frames[i] < y->frames[i] ? -1 : 1;
    return 0;
}

static int cmp_bytes(const void *a, const void *b)
{
    const profile_stack_t *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes > y->bytes ? -1 : 1;
    if (x->objects != y->objects) return x->objects > y->objects ? -1 : 1;
    return cmp_frames(a, b);
}

size_t profile_stacks(const profile_t *p, profile_which_t which, profile_stack_t **out, int64_t *total_objects,
                      int64_t *total_bytes)
{
    int64_t tobj = 0, tbytes = 0;
    size_t n = 0;
    profile_stack_t *s = malloc((p->nsamples ? p->nsamples : 1) * sizeof *s);
    *out = NULL;
    if (!s) return (size_t)-1;
    for (size_t i = 0; i < p->nsamples; i++) {
        const profile_sample_t *x = &p->samples[i];
        int64_t objs = which == PROFILE_INUSE ? x->inuse_objects : x->alloc_objects;
        int64_t bytes = which == PROFILE_INUSE ? x->inuse_bytes : x->alloc_bytes;
        if (objs <= 0 && bytes <= 0) continue;
        if (objs < 0) objs = 0;   /* a file's nonsense: negative counts as none */
        if (bytes < 0) bytes = 0;
        s[n++] = (profile_stack_t){ x->frames, x->nframes, 0, objs, bytes };
    }
    if (n) qsort(s, n, sizeof *s, cmp_frames);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && cmp_frames(&s[m - 1], &s[i]) == 0) {
            s[m - 1].objects = add_sat(s[m - 1].objects, s[i].objects);
            s[m - 1].bytes = add_sat(s[m - 1].bytes, s[i].bytes);
        } else {
            s[m++] = s[i];
        }
    }
    /* The wrapper test once per name, not once per frame of every stack
     * (24 prefixes compared: it was 10 % of reading a 400k-stack profile). */
    uint8_t *wrapper = calloc(p->nnames ? p->nnames : 1, 1);   /* 0 unknown, 1 no, 2 yes */
    for (size_t i = 0; i < m; i++) {
        if (!wrapper) {
            s[i].function = profile_function(p, s[i].frames, s[i].nframes);
        } else {
            s[i].function = s[i].nframes ? s[i].frames[0] : UINT32_MAX;
            for (uint32_t f = 0; f < s[i].nframes; f++) {
                uint32_t k = s[i].frames[f];
                if (!wrapper[k]) wrapper[k] = profile_is_wrapper(p->names[k]) ? 2 : 1;
                if (wrapper[k] == 1) {
                    s[i].function = k;
                    break;
                }
            }
        }
        tobj = add_sat(tobj, s[i].objects);
        tbytes = add_sat(tbytes, s[i].bytes);
    }
    free(wrapper);
    if (m) qsort(s, m, sizeof *s, cmp_bytes);
    if (total_objects) *total_objects = tobj;
    if (total_bytes) *total_bytes = tbytes;
    *out = s;
    return m;
}
