/*
 * pprof_heap.c - heap profiles as Go writes them, and Go's unsampling.
 *
 * Unsampling math
 * ---------------
 * The agent samples allocations by bytes like Go's MemProfileRate: the gap
 * between sampled bytes is exponential with mean `rate`, so each byte is
 * sampled with rate 1/rate, independently (a Poisson process over the
 * allocated bytes). An allocation of s bytes is sampled when at least one
 * of its bytes is hit:
 *
 *     P(sampled | s) = 1 - exp(-s / rate)
 *
 * Each sampled allocation therefore stands for 1 / P allocations of its
 * size. A site's record holds (count, bytes) of its sampled allocations;
 * with avg = bytes / count standing in for each allocation's size, the
 * unbiased estimates are
 *
 *     scale = 1 / (1 - exp(-avg / rate))
 *     count' = count * scale,  bytes' = bytes * scale
 *
 * exactly runtime/pprof's scaleHeapSample (Go 1.19, protomem.go), which
 * also: returns (0, 0) when count or bytes is 0; returns the values as
 * they are when rate <= 1 (every allocation recorded: P = 1); truncates
 * the products toward zero (Go's int64(float64)). The alloc pair and the
 * in-use pair are scaled separately, each with its own avg. We store the
 * unsampled values in the profile, as Go does: pprof does not rescale a
 * protobuf heap profile, `period` is informational.
 *
 * Large objects (avg >> rate) get scale -> 1; small ones (avg << rate)
 * get scale ~ rate / avg. Checked against Go: 63 objects / 516096 bytes at
 * rate 4096 become 72 / 596874 (docs/pprof.md); see the unit tests.
 */

#include "pprof/pprof_internal.h"

/* scale_with: pprof_heap_scale with `extra` bytes per object added to the
 * average size in the sampling probability only. */
static void scale_with(int64_t count, int64_t bytes, int64_t extra, int64_t rate,
                       int64_t *count_out, int64_t *bytes_out)
{
    if (count == 0 || bytes == 0) {
        *count_out = 0;
        *bytes_out = 0;
        return;
    }
    if (rate <= 1) {
        *count_out = count;
        *bytes_out = bytes;
        return;
    }
    double avg = (double)bytes / (double)count + (double)extra;
    double scale = 1.0 / (1.0 - pprof_exp(-avg / (double)rate));
    double c = (double)count * scale;
    double s = (double)bytes * scale;
    /* Go's int64(f) of an out-of-range float is implementation-defined;
     * saturate instead of invoking C's undefined behaviour. */
    *count_out = c >= 9.2e18 ? INT64_MAX : c <= -9.2e18 ? INT64_MIN : (int64_t)c;
    *bytes_out = s >= 9.2e18 ? INT64_MAX : s <= -9.2e18 ? INT64_MIN : (int64_t)s;
}

void pprof_heap_scale(int64_t count, int64_t bytes, int64_t rate,
                      int64_t *count_out, int64_t *bytes_out)
{
    scale_with(count, bytes, 0, rate, count_out, bytes_out);
}

pprof_err_t pprof_heap_add(pprof_builder_t *b, const uint64_t *pcs,
                           size_t depth, const pprof_heap_counts_t *raw)
{
    if (!b || !raw) return PPROF_ERR_INVALID;
    if (!b->heap) return PPROF_ERR_STATE;
    int64_t v[4];
    scale_with(raw->alloc_objects, raw->alloc_bytes, raw->extra_bytes, b->period, &v[0], &v[1]);
    scale_with(raw->inuse_objects, raw->inuse_bytes, raw->extra_bytes, b->period, &v[2], &v[3]);
    /* Go labels each record with its object size: AllocBytes/AllocObjects
     * of the raw record, omitted when zero. */
    int64_t block = raw->alloc_objects > 0 ? raw->alloc_bytes / raw->alloc_objects : 0;
    pprof_label_t label = { "bytes", NULL, block, NULL };
    return pprof_builder_add_sample(b, pcs, depth, v, &label, block != 0 ? 1 : 0);
}
