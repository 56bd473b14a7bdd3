/*
 * tools_profile.c - libFuzzer target over the tools' profile reader
 * (tools/profile.c): any bytes, gzip or not, go through profile_read_mem.
 * Whatever they are, the reader refuses them with a one-line reason or
 * returns a profile whose every frame index names a name, every name is
 * a NUL-terminated string of at most PROFILE_NAME_MAX bytes without
 * control characters, every stack at most PROFILE_DEPTH_MAX frames; the
 * stacks added up (profile_stacks) keep their sums non-negative; no memory
 * leaks.
 *
 * Replayed in `make test` by tests/fuzz/regression_driver.c over
 * tests/fuzz/corpus/tools_profile/ (seeds: profiles the agent and
 * pprof_builder wrote, hand-made ones, cuts of them; grown with libFuzzer);
 * `make fuzz` builds the libFuzzer binary.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "tools_profile: broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    profile_t p;
    char msg[256];
    if (profile_read_mem(data, size, &p, msg, sizeof msg) != 0) {
        check(msg[0] != 0 && strchr(msg, '\n') == NULL, "a refusal without a one-line reason");
        profile_free(&p);
        return 0;
    }
    for (size_t i = 0; i < p.nnames; i++) {
        size_t n = strlen(p.names[i]);
        check(n <= PROFILE_NAME_MAX, "a name past PROFILE_NAME_MAX");
        for (size_t k = 0; k < n; k++)
            check((unsigned char)p.names[i][k] >= 0x20 && p.names[i][k] != 0x7f, "a control character in a name");
    }
    for (size_t i = 0; i < p.nsamples; i++) {
        check(p.samples[i].nframes <= PROFILE_DEPTH_MAX, "a stack past PROFILE_DEPTH_MAX");
        for (uint32_t f = 0; f < p.samples[i].nframes; f++) check(p.samples[i].frames[f] < p.nnames, "a frame index out of range");
    }
    for (int w = 0; w < 2; w++) {
        profile_stack_t *st;
        int64_t objs = -1, bytes = -1;
        size_t n = profile_stacks(&p, w ? PROFILE_ALLOC : PROFILE_INUSE, &st, &objs, &bytes);
        check(n != (size_t)-1, "out of memory");
        check(objs >= 0 && bytes >= 0, "negative sums");
        for (size_t i = 0; i < n; i++) {
            check(st[i].bytes >= 0 && st[i].objects >= 0, "a negative stack");
            check(i == 0 || st[i - 1].bytes >= st[i].bytes, "stacks out of order");
            check(st[i].function == UINT32_MAX || st[i].function < p.nnames, "a function out of range");
        }
        free(st);
    }
    profile_free(&p);
    return 0;
}
