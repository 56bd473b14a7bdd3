/*
 * pprof_heap.c - Go's unsampling (pprof_heap_scale) against hand-computed
 * values, and heap samples as Go writes them (pprof_heap_add).
 */
#include "pprof_test.h"

static test_alloc_t ta;
static map_allocator_t alloc;

static void scale_is(int64_t c, int64_t b, int64_t rate, int64_t wc, int64_t wb)
{
    int64_t oc, ob;
    pprof_heap_scale(c, b, rate, &oc, &ob);
    if (oc != wc || ob != wb)
        fprintf(stderr, "scale(%lld, %lld, %lld) = (%lld, %lld), want (%lld, %lld)\n",
                (long long)c, (long long)b, (long long)rate, (long long)oc, (long long)ob,
                (long long)wc, (long long)wb);
    assert_int_equal(oc, wc);
    assert_int_equal(ob, wb);
}

static void test_scale_by_hand(void **state)
{
    /* Go's own figure (docs/pprof.md): 63 objects, 516096 bytes at rate
     * 4096: avg 8192 = 2*rate, scale = 1/(1-e^-2) = 1.15651764...,
     * 63*1.1565 = 72.86 -> 72, 516096*1.1565 = 596874.6 -> 596874. */
    scale_is(63, 516096, 4096, 72, 596874);
    /* avg = 2*rate again: 1048576 * 1.15651764 = 1212696.6; 1.1565 -> 1. */
    scale_is(1, 1048576, 524288, 1, 1212696);
    /* Tiny objects: avg 8 at rate 524288: 1/(1-e^(-x)) = 1/x + 1/2 + x/12...
     * with x = 8/524288: scale = 65536.5000025 -> 100*scale = 6553650,
     * 800*scale = 52429200. */
    scale_is(100, 800, 524288, 6553650, 52429200);
    /* One byte: scale = 524288.5 -> truncated 524288 both. */
    scale_is(1, 1, 524288, 524288, 524288);
    /* Big objects: avg 10^6 = 1.9073 * rate: scale = 1/(1-e^-1.9073) = 1.17436;
     * 7 * 1.17437 = 8.22 -> 8; 7000000 * 1.17437... = 8220531. */
    scale_is(7, 7000000, 524288, 8, 8220531);
    /* rate <= 1: every allocation recorded, values unchanged. */
    scale_is(3, 96, 1, 3, 96);
    scale_is(2, 64, 0, 2, 64);
    scale_is(2, 64, -5, 2, 64);
    /* count or bytes zero: (0, 0), whatever the rate. */
    scale_is(5, 0, 512, 0, 0);
    scale_is(0, 5, 512, 0, 0);
    scale_is(0, 0, 1, 0, 0);
}

/* Properties that must hold for any input. */
static void test_scale_properties(void **state)
{
    uint64_t rng = 7;
    for (int i = 0; i < 100000; i++) {
        int64_t c = (int64_t)(test_rand(&rng) % 100000) + 1;
        int64_t avg = (int64_t)(test_rand(&rng) % (1u << 24)) + 1;
        int64_t rate = (int64_t)(test_rand(&rng) % (1u << 22)) + 2;
        int64_t oc, ob;
        pprof_heap_scale(c, c * avg, rate, &oc, &ob);
        assert_true(oc >= c);                      /* never fewer than sampled */
        assert_true(ob >= c * avg);
        /* The average object size is preserved (within truncation). */
        double ratio = (double)ob / (double)(oc ? oc : 1);
        assert_true(ratio >= (double)avg * 0.999 - 1 || oc < 10);
    }
}

/* extra_bytes: the sampler counted 8 bytes more per object than the size
 * reported (heapwatch samples glibc chunk bytes): 4 x 16 B at rate 4096
 * scale by 1/(1-e^(-24/4096)) = 171.167 -> 684 objects, 10954 bytes,
 * where Go's rule would give 1026 and 16416. */
static void test_heap_extra_bytes(void **state)
{
    (void)state;
    memset(&ta, 0, sizeof(ta));
    alloc = test_allocator(&ta);
    pprof_builder_t *b;
    assert_int_equal(pprof_builder_new(&alloc, &b), PPROF_OK);
    assert_int_equal(pprof_builder_set_heap_types(b, 4096), PPROF_OK);
    uint64_t pcs[1] = { 0x1001 };
    pprof_heap_counts_t c = { 4, 64, 4, 64, 8 };
    assert_int_equal(pprof_heap_add(b, pcs, 1, &c), PPROF_OK);
    pb_profile_t *p = t_roundtrip(b, &alloc);
    const Perftools__Profiles__Sample *s = p->sample[0];
    assert_int_equal(s->value[0], 684);
    assert_int_equal(s->value[1], 10954);
    assert_int_equal(s->value[2], 684);
    assert_int_equal(s->value[3], 10954);
    assert_int_equal(s->label[0]->num, 16);            /* the reported size */
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);
    assert_int_equal(ta.live_blocks, 0);
}

static void test_heap_add(void **state)
{
    memset(&ta, 0, sizeof(ta));
    alloc = test_allocator(&ta);
    pprof_builder_t *b;
    assert_int_equal(pprof_builder_new(&alloc, &b), PPROF_OK);
    assert_int_equal(pprof_builder_set_heap_types(b, 4096), PPROF_OK);
    uint64_t pcs[2] = { 0x1001, 0x2001 };
    pprof_heap_counts_t c = { 63, 516096, 10, 81920, 0 };   /* in use: avg 8192 too */
    assert_int_equal(pprof_heap_add(b, pcs, 2, &c), PPROF_OK);
    pprof_heap_counts_t freed = { 4, 64, 0, 0, 0 };           /* all freed */
    assert_int_equal(pprof_heap_add(b, pcs, 1, &freed), PPROF_OK);
    pprof_heap_counts_t none = { 0, 0, 0, 0, 0 };
    assert_int_equal(pprof_heap_add(b, pcs, 1, &none), PPROF_OK);
    pb_profile_t *p = t_roundtrip(b, &alloc);
    assert_int_equal(p->n_sample_type, 4);
    const char *want[4][2] = { { "alloc_objects", "count" }, { "alloc_space", "bytes" },
                               { "inuse_objects", "count" }, { "inuse_space", "bytes" } };
    for (int i = 0; i < 4; i++) {
        assert_string_equal(t_str(p, p->sample_type[i]->type), want[i][0]);
        assert_string_equal(t_str(p, p->sample_type[i]->unit), want[i][1]);
    }
    assert_string_equal(t_str(p, p->period_type->type), "space");
    assert_string_equal(t_str(p, p->period_type->unit), "bytes");
    assert_int_equal(p->period, 4096);
    assert_int_equal(p->default_sample_type, 0);   /* unset, as Go's heap profile */
    assert_int_equal(p->n_sample, 3);
    const Perftools__Profiles__Sample *s = p->sample[0];
    assert_int_equal(s->value[0], 72);
    assert_int_equal(s->value[1], 596874);
    /* 10 objects of 8192 at rate 4096: 10 * 1.15651764 = 11.6 -> 11,
     * 81920 * 1.15651764 = 94741.9 -> 94741. */
    assert_int_equal(s->value[2], 11);
    assert_int_equal(s->value[3], 94741);
    assert_int_equal(s->n_label, 1);
    assert_string_equal(t_str(p, s->label[0]->key), "bytes");
    assert_int_equal(s->label[0]->num, 8192);          /* object size */
    assert_int_equal(s->label[0]->num_unit, 0);
    /* freed: 4 x 16 B at 4096: scale = 1/(1-e^(-16/4096)) = 256.5 ->
     * 1026, 16416; in-use pair (0, 0). */
    s = p->sample[1];
    assert_int_equal(s->value[0], 1026);
    assert_int_equal(s->value[1], 16416);
    assert_int_equal(s->value[2], 0);
    assert_int_equal(s->value[3], 0);
    assert_int_equal(s->label[0]->num, 16);
    /* Nothing at all: zeros, and no size label (Go omits a zero one). */
    s = p->sample[2];
    for (int i = 0; i < 4; i++) assert_int_equal(s->value[i], 0);
    assert_int_equal(s->n_label, 0);
    perftools__profiles__profile__free_unpacked(p, NULL);
    pprof_builder_free(b);
    assert_int_equal(ta.live_blocks, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scale_by_hand),
        cmocka_unit_test(test_scale_properties),
        cmocka_unit_test(test_heap_add),
        cmocka_unit_test(test_heap_extra_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
