/*
 * pprof_nomalloc.c - the module never calls the libc allocator: this test
 * binary defines malloc, calloc, realloc, free (and friends) itself, so
 * every call from the module, protobuf-c and zlib lands here, and counts
 * them while the whole pipeline runs (build, /proc/self/maps, symbolize
 * with ELF files, gzip encode, atomic write, validate). The count must be
 * zero. Under ASan the sanitizer owns malloc, so the test is skipped there.
 */
#include "pprof_test.h"

#if defined(__SANITIZE_ADDRESS__)
#define NOMALLOC_ACTIVE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NOMALLOC_ACTIVE 0
#endif
#endif
#ifndef NOMALLOC_ACTIVE
#define NOMALLOC_ACTIVE 1
#endif

static volatile int counting;
static volatile long libc_calls;

#if NOMALLOC_ACTIVE
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

void *malloc(size_t n)
{
    if (counting) libc_calls++;
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t n)
{
    if (counting) libc_calls++;
    return __libc_calloc(a, n);
}

void *realloc(void *p, size_t n)
{
    if (counting) libc_calls++;
    return __libc_realloc(p, n);
}

void free(void *p)
{
    if (counting && p) libc_calls++;
    __libc_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (counting) libc_calls++;
    void *p = __libc_memalign(align, n);
    if (!p) return 12;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    if (counting) libc_calls++;
    return __libc_memalign(align, n);
}
#endif

/* The module's allocator for this test: a bump arena in static memory,
 * so it does not touch malloc either. */
static unsigned char arena[256 << 20] __attribute__((aligned(64)));
static size_t arena_used, arena_peak;

static void *arena_alloc(void *ctx, size_t n)
{
    size_t need = (n + 16 + 63) & ~(size_t)63;
    if (arena_used + need > sizeof(arena)) return NULL;
    unsigned char *p = arena + arena_used;
    arena_used += need;
    if (arena_used > arena_peak) arena_peak = arena_used;
    memset(p, 0, n);
    return p;
}

static void arena_free(void *ctx, void *p) { (void)p; }

__attribute__((noinline)) static void nm_site(void) { __asm__ volatile("" ::: "memory"); }

static void test_pipeline_without_malloc(void **state)
{
    if (!NOMALLOC_ACTIVE) skip();
    map_allocator_t a = { arena_alloc, arena_free, NULL };
    char dir[] = "/tmp/pprof_nomalloc.XXXXXX";
    assert_non_null(mkdtemp(dir));
    uint64_t pcs[3] = { (uint64_t)(uintptr_t)nm_site + 1, (uint64_t)(uintptr_t)deflate + 1,
                        (uint64_t)(uintptr_t)strlen + 1 };

    counting = 1;
    pprof_builder_t *b;
    pprof_symcache_t *c;
    pprof_err_t e1 = pprof_builder_new(&a, &b);
    pprof_err_t e2 = pprof_builder_set_heap_types(b, 512);
    pprof_heap_counts_t cnt = { 3, 300, 1, 100, 0 };
    pprof_err_t e3 = pprof_heap_add(b, pcs, 3, &cnt);
    pprof_err_t e4 = pprof_builder_add_mappings_from_proc(b);
    pprof_err_t e5 = pprof_symcache_new(&a, &c);
    pprof_err_t e6 = pprof_builder_symbolize(b, c);
    pprof_err_t e7 = pprof_builder_write_gz(b, dir, "heap.pb.gz");
    void *data = NULL;
    size_t len = 0;
    pprof_err_t e8 = pprof_builder_encode(b, true, &data, &len);
    pprof_err_t e9 = pprof_validate(&a, data, len, NULL, 0);
    pprof_symcache_free(c);
    pprof_builder_free(b);
    counting = 0;

    assert_int_equal(e1 | e2 | e3 | e4 | e5 | e6 | e7 | e8 | e9, PPROF_OK);
    assert_int_equal(libc_calls, 0);
    pb_profile_t *p = t_decode(data, len);
    assert_string_equal(t_name_of_addr(p, pcs[0] - 1), "nm_site");
    assert_string_equal(t_name_of_addr(p, pcs[1] - 1), "deflate");
    perftools__profiles__profile__free_unpacked(p, NULL);
    char path[128];
    snprintf(path, sizeof(path), "%s/heap.pb.gz", dir);
    unlink(path);
    rmdir(dir);
}

/* The counter works: a malloc while counting is seen. */
static void test_counter_sees_malloc(void **state)
{
    if (!NOMALLOC_ACTIVE) skip();
    counting = 1;
    void *volatile p = malloc(10);
    free(p);
    counting = 0;
    assert_int_equal(libc_calls, 2);
    libc_calls = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_sees_malloc),
        cmocka_unit_test(test_pipeline_without_malloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
