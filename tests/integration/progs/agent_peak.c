/*
 * agent_peak.c - a heap with a peak in the middle: ground truth for the
 * peak profile (issue 14).
 *
 * keep_small() holds 4 MiB to the end; climb_to_peak() then holds 64 MiB
 * in 64 KiB blocks, which are all freed; after_peak() holds 16 MiB to the
 * end. So live bytes peak at about 68 MiB, with climb_to_peak() holding
 * 94 % of them, and end at about 20 MiB held by after_peak() and
 * keep_small(). Prints "peak <bytes> exit <bytes>" as it counted them.
 * Optional argument: milliseconds to hold the peak (default 0).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BLOCK (64 << 10)

static void *keep[4096];
static size_t nkeep;
static void *peak_blocks[1024];

__attribute__((noinline)) static size_t keep_small(void)
{
    size_t held = 0;
    for (int i = 0; i < 1024; i++) {
        keep[nkeep] = malloc(4096);
        memset(keep[nkeep++], 1, 4096);
        held += 4096;
    }
    return held;
}

__attribute__((noinline)) static size_t climb_to_peak(void)
{
    size_t held = 0;
    for (int i = 0; i < 1024; i++) {
        peak_blocks[i] = malloc(BLOCK);
        memset(peak_blocks[i], 2, BLOCK);
        held += BLOCK;
    }
    return held;
}

__attribute__((noinline)) static size_t after_peak(void)
{
    size_t held = 0;
    for (int i = 0; i < 256; i++) {
        keep[nkeep] = malloc(BLOCK);
        memset(keep[nkeep++], 3, BLOCK);
        held += BLOCK;
    }
    return held;
}

int main(int argc, char **argv)
{
    long hold_ms = argc > 1 ? atol(argv[1]) : 0;
    size_t small = keep_small();
    size_t peak = small + climb_to_peak();
    if (hold_ms > 0) {
        struct timespec ts = { hold_ms / 1000, (hold_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < 1024; i++) free(peak_blocks[i]);
    size_t end = small + after_peak();
    printf("peak %zu exit %zu\n", peak, end);
    return 0;
}
