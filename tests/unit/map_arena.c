/*
 * map_arena.c - the arena never makes a path that must not block wait
 * (issue 11, class 2): in no-wait mode (map_arena_set_nowait) allocations
 * succeed, zeroed, while another thread holds the arena lock, and frees
 * return; map_arena_prefork gives up at its deadline; a fork child whose
 * prepare handler missed the lock still allocates (its own chunks).
 *
 * The lock is held by a helper thread through map_arena_prefork (the only
 * public way to hold it). An alarm kills a test that blocks.
 *
 * Also (issue 13): from map_arena_huge_allocator(), a large block over
 * 2 MiB + 4 KiB starts on a 2 MiB boundary and its whole 2 MiB pages are advised
 * MADV_HUGEPAGE, the tail past them and smaller blocks not, nor any block
 * from map_arena_alloc; read back from the VmFlags ("hg") of
 * /proc/self/smaps.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "map/map.h"

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The holder: takes the arena lock, waits to be told, releases it. */
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static int hold_state;   /* 0 start, 1 holding, 2 release, 3 released */

static void set_state(int s)
{
    pthread_mutex_lock(&hold_mu);
    hold_state = s;
    pthread_cond_broadcast(&hold_cv);
    pthread_mutex_unlock(&hold_mu);
}

static void wait_state(int s)
{
    pthread_mutex_lock(&hold_mu);
    while (hold_state != s) pthread_cond_wait(&hold_cv, &hold_mu);
    pthread_mutex_unlock(&hold_mu);
}

static void *holder(void *arg)
{
    (void)arg;
    assert_true(map_arena_prefork(UINT64_MAX));
    set_state(1);
    wait_state(2);
    map_arena_postfork_parent();
    set_state(3);
    return NULL;
}

static pthread_t hold_lock(void)
{
    pthread_t t;
    hold_state = 0;
    assert_int_equal(pthread_create(&t, NULL, holder, NULL), 0);
    wait_state(1);
    return t;
}

static void release_lock(pthread_t t)
{
    set_state(2);
    wait_state(3);
    pthread_join(t, NULL);
}

/* use: a block of n bytes is zeroed and ours to write. */
static void use(unsigned char *p, size_t n)
{
    assert_non_null(p);
    for (size_t i = 0; i < n; i += 4096) assert_int_equal(p[i], 0);
    assert_int_equal(p[n - 1], 0);
    memset(p, 0xa5, n);
}

#define HUGE_PAGE ((uintptr_t)2 << 20)

/* vma_advised_huge: 1 if the mapping holding addr has VmFlags "hg"
 * (MADV_HUGEPAGE), 0 if not, -1 if no mapping holds it. */
static int vma_advised_huge(const void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    char line[512];
    bool inside = false;
    int found = -1;
    uintptr_t a = (uintptr_t)addr;
    while (found < 0 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = a >= lo && a < hi;
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            found = strstr(line, " hg") != NULL;
        }
    }
    fclose(f);
    return found;
}

/* thp_available: the kernel has transparent huge pages and does not
 * refuse them outright ("never"). */
static bool thp_available(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return false;
    char line[128] = "";
    bool ok = fgets(line, sizeof line, f) && !strstr(line, "[never]");
    fclose(f);
    return ok;
}

static void test_large_blocks_get_huge_pages(void **state)
{
    (void)state;
    const size_t big = (5u << 20) + 12345;   /* advised: its first 4 MiB */
    map_allocator_t huge = map_arena_huge_allocator();
    unsigned char *p = huge.alloc(huge.ctx, big);
    use(p, big);
    assert_int_equal(((uintptr_t)p - 16) & (HUGE_PAGE - 1), 0);   /* block start */
    unsigned char *small = huge.alloc(huge.ctx, (2u << 20) - 4096);   /* cacheable: plain */
    use(small, (2u << 20) - 4096);
    unsigned char *plain = map_arena_alloc(big);   /* not the huge allocator */
    use(plain, big);
    if (thp_available()) {
        assert_int_equal(vma_advised_huge(p), 1);
        assert_int_equal(vma_advised_huge(p + (4u << 20) - 17), 1);
        assert_int_equal(vma_advised_huge(p + (4u << 20) - 16), 0);   /* tail */
        assert_int_equal(vma_advised_huge(p + big - 1), 0);
        assert_int_equal(vma_advised_huge(small), 0);
        assert_int_equal(vma_advised_huge(small + (2u << 20) - 4097), 0);
        for (size_t off = 0; off < big; off += 1u << 20)
            assert_int_equal(vma_advised_huge(plain + off), 0);
    }
    huge.free(huge.ctx, p);
    huge.free(huge.ctx, small);
    map_arena_free(plain);
    if (!thp_available()) skip();
}

static void test_nowait_allocates_while_locked(void **state)
{
    (void)state;
    alarm(10);
    /* Warm the free lists and the cache so that no-wait has something to
     * skip. */
    void *warm[3] = { map_arena_alloc(100), map_arena_alloc(60000), map_arena_alloc(1 << 20) };
    for (int i = 0; i < 3; i++) map_arena_free(warm[i]);
    pthread_t t = hold_lock();
    map_arena_set_nowait(true);
    size_t sizes[] = { 1, 100, 4000, 60000, 70000, 1 << 20, 3 << 20 };
    void *p[2][sizeof sizes / sizeof sizes[0]];
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            p[round][i] = map_arena_alloc(sizes[i]);
            use(p[round][i], sizes[i]);
        }
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) map_arena_free(p[round][i]);
    map_arena_set_nowait(false);
    release_lock(t);
    /* Afterwards the shared lists serve as before. */
    void *q = map_arena_alloc(100);
    use(q, 100);
    map_arena_free(q);
    alarm(0);
}

static void test_prefork_gives_up_at_deadline(void **state)
{
    (void)state;
    alarm(10);
    pthread_t t = hold_lock();
    uint64_t t0 = mono_ns();
    assert_false(map_arena_prefork(0));                  /* one try */
    map_arena_postfork_parent();                          /* releases nothing */
    assert_true(mono_ns() - t0 < 40000000ull);
    t0 = mono_ns();
    assert_false(map_arena_prefork(t0 + 50000000ull));   /* 50 ms */
    uint64_t waited = mono_ns() - t0;
    map_arena_postfork_parent();
    assert_true(waited >= 45000000ull && waited < 2000000000ull);
    release_lock(t);
    assert_true(map_arena_prefork(mono_ns() + 50000000ull));
    map_arena_postfork_parent();
    alarm(0);
}

static void test_child_without_lock_allocates(void **state)
{
    (void)state;
    alarm(10);
    pthread_t t = hold_lock();
    assert_false(map_arena_prefork(0));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The lock's holder does not exist here; the lists are lost. */
        int bad = map_arena_postfork_child() ? 1 : 0;
        for (int i = 0; i < 1000 && !bad; i++) {
            unsigned char *b = map_arena_alloc((size_t)(i * 97 % 70000) + 1);
            if (!b || b[0] != 0) bad = 2;
            else map_arena_free(b);
        }
        _exit(bad);
    }
    map_arena_postfork_parent();
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    release_lock(t);
    alarm(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nowait_allocates_while_locked),
        cmocka_unit_test(test_prefork_gives_up_at_deadline),
        cmocka_unit_test(test_child_without_lock_allocates),
        cmocka_unit_test(test_large_blocks_get_huge_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
