/*
 * rundir_zstd.c - a zstd file decompressed as one stream (rundir_zstd.h).
 *
 * libzstd's buffer sizes: ZSTD_DStreamInSize() in, ZSTD_DStreamOutSize()
 * out (a block each, 128 KiB): the memory is the decoder's, a few hundred
 * KiB at the agent's window size, whatever the file holds. The inner loop
 * runs while the input has bytes or the output came back full: a full
 * output may leave decoded bytes inside the decoder with no input left.
 */
#include "tools/rundir_zstd.h"

#include <stdlib.h>
#include <zstd.h>

rundir_zstd_status_t rundir_zstd_read(FILE *f, unsigned long long max, rundir_zstd_sink sink, void *ctx, const char **why)
{
    ZSTD_DStream *ds = ZSTD_createDStream();
    size_t in_cap = ZSTD_DStreamInSize(), out_cap = ZSTD_DStreamOutSize();
    char *in = malloc(in_cap), *out = malloc(out_cap);
    bool at_boundary = true;
    unsigned long long total = 0;   /* decompressed bytes */
    rundir_zstd_status_t st = RUNDIR_ZSTD_END;
    if (!ds || !in || !out) {
        *why = "out of memory";
        st = RUNDIR_ZSTD_DAMAGED;
        goto done;
    }
    ZSTD_initDStream(ds);
    size_t n;
    while ((n = fread(in, 1, in_cap, f)) > 0) {
        ZSTD_inBuffer input = { in, n, 0 };
        bool out_full = false;
        while (input.pos < input.size || out_full) {
            ZSTD_outBuffer output = { out, out_cap, 0 };
            size_t r = ZSTD_decompressStream(ds, &output, &input);
            if (ZSTD_isError(r)) {
                *why = ZSTD_getErrorName(r);
                st = RUNDIR_ZSTD_DAMAGED;
                goto done;
            }
            at_boundary = r == 0;
            out_full = output.pos == output.size;
            total += output.pos;
            if (total > max) {
                st = RUNDIR_ZSTD_TOO_BIG;
                goto done;
            }
            if (output.pos && !sink(ctx, out, output.pos)) {
                st = RUNDIR_ZSTD_STOPPED;
                goto done;
            }
            if (!out_full && input.pos == input.size) break;
        }
    }
    if (ferror(f)) {
        *why = "read error";
        st = RUNDIR_ZSTD_DAMAGED;
    } else {
        st = at_boundary ? RUNDIR_ZSTD_END : RUNDIR_ZSTD_CUT;
    }
done:
    ZSTD_freeDStream(ds);
    free(in);
    free(out);
    return st;
}
