/*
 * rundir_zstd.c - a zstd file decompressed as one stream (rundir_zstd.h).
 *
 * libzstd's buffer sizes: ZSTD_DStreamInSize() in, ZSTD_DStreamOutSize()
 * out (a block each, 128 KiB): the memory is the decoder's, a few hundred
 * KiB at the agent's window size, whatever the file holds; one decoder
 * serves every file of a directory (reset between them). The inner loop
 * runs while the input has bytes or the output came back full: a full
 * output may leave decoded bytes inside the decoder with no input left.
 */
#include "tools/rundir_zstd.h"

#include <stdlib.h>
#include <zstd.h>

struct rundir_zstd_s {
    ZSTD_DStream *ds;
    char *in, *out;
    size_t in_cap, out_cap;
};

rundir_zstd_t *rundir_zstd_new(void)
{
    rundir_zstd_t *z = calloc(1, sizeof *z);
    if (!z) return NULL;
    z->in_cap = ZSTD_DStreamInSize();
    z->out_cap = ZSTD_DStreamOutSize();
    z->ds = ZSTD_createDStream();
    z->in = malloc(z->in_cap);
    z->out = malloc(z->out_cap);
    if (!z->ds || !z->in || !z->out) {
        rundir_zstd_free(z);
        return NULL;
    }
    return z;
}

void rundir_zstd_free(rundir_zstd_t *z)
{
    if (!z) return;
    ZSTD_freeDStream(z->ds);
    free(z->in);
    free(z->out);
    free(z);
}

rundir_zstd_status_t rundir_zstd_read(rundir_zstd_t *z, FILE *f, unsigned long long max, rundir_zstd_sink sink, void *ctx,
                                      const char **why)
{
    if (!z) {
        *why = "out of memory";
        return RUNDIR_ZSTD_DAMAGED;
    }
    /* A fresh stream: whatever the last file left in the decoder (a cut
     * frame, damaged data) is dropped; its parameters are kept. */
    ZSTD_DCtx_reset(z->ds, ZSTD_reset_session_only);
    bool at_boundary = true;
    unsigned long long total = 0;   /* decompressed bytes */
    size_t n;
    while ((n = fread(z->in, 1, z->in_cap, f)) > 0) {
        ZSTD_inBuffer input = { z->in, n, 0 };
        bool out_full = false;
        while (input.pos < input.size || out_full) {
            ZSTD_outBuffer output = { z->out, z->out_cap, 0 };
            size_t r = ZSTD_decompressStream(z->ds, &output, &input);
            if (ZSTD_isError(r)) {
                *why = ZSTD_getErrorName(r);
                return RUNDIR_ZSTD_DAMAGED;
            }
            at_boundary = r == 0;
            out_full = output.pos == output.size;
            total += output.pos;
            if (total > max) return RUNDIR_ZSTD_TOO_BIG;
            if (output.pos && !sink(ctx, z->out, output.pos)) return RUNDIR_ZSTD_STOPPED;
            if (!out_full && input.pos == input.size) break;
        }
    }
    if (ferror(f)) {
        *why = "read error";
        return RUNDIR_ZSTD_DAMAGED;
    }
    return at_boundary ? RUNDIR_ZSTD_END : RUNDIR_ZSTD_CUT;
}
