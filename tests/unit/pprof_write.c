/*
 * pprof_write.c - atomic output and failure injection. Through the seams
 * (write, fsync, rename, open; writable with -DHEAPWATCH_TEST): a full disk
 * at write and at fsync, a write that makes no progress, no permission, a
 * failed rename, short writes and EINTR; without seams: a missing
 * directory, a path under a regular file, and, when mount(2) is allowed, a
 * real full tmpfs and a read-only one. Every failure returns its code and
 * leaves no file behind (and an existing profile untouched).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pprof_test.h"
#include "pprof/pprof_internal.h"

static test_alloc_t ta;
static map_allocator_t alloc;
static char dir[256];
static pprof_builder_t *b;

static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_fsync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_open)(const char *, int, mode_t);

static size_t write_budget;     /* bytes the fake disk still takes */
static int write_calls;

static ssize_t write_full_disk(int fd, const void *p, size_t n)
{
    if (write_budget == 0) {
        errno = ENOSPC;
        return -1;
    }
    if (n > write_budget) n = write_budget;   /* a short write first */
    write_budget -= n;
    return real_write(fd, p, n);
}

static ssize_t write_zero(int fd, const void *p, size_t n)
{
    return 0;
}

static ssize_t write_short_eintr(int fd, const void *p, size_t n)
{
    if (write_calls++ % 2 == 0) {
        errno = EINTR;
        return -1;
    }
    return real_write(fd, p, n > 7 ? 7 : n);
}

static int fsync_enospc(int fd)
{
    errno = ENOSPC;
    return -1;
}

static int fsync_eio(int fd)
{
    errno = EIO;
    return -1;
}

static int rename_exdev(const char *a, const char *c)
{
    errno = EXDEV;
    return -1;
}

static int open_eacces(const char *path, int flags, mode_t mode)
{
    if (flags & O_CREAT) {
        errno = EACCES;
        return -1;
    }
    return real_open(path, flags, mode);
}

/* A profile large enough to need many writes. */
static int setup(void **state)
{
    memset(&ta, 0, sizeof(ta));
    alloc = test_allocator(&ta);
    strcpy(dir, "/tmp/pprof_write.XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(pprof_builder_new(&alloc, &b), PPROF_OK);
    assert_int_equal(pprof_builder_set_heap_types(b, 512), PPROF_OK);
    uint64_t rng = 3;
    for (int i = 0; i < 20000; i++) {
        uint64_t pcs[16];
        for (int d = 0; d < 16; d++) pcs[d] = test_rand(&rng) | 1;
        pprof_heap_counts_t c = { 1, 100, 1, 100, 0 };
        assert_int_equal(pprof_heap_add(b, pcs, 16, &c), PPROF_OK);
    }
    real_write = pp_sys_write;
    real_fsync = pp_sys_fsync;
    real_rename = pp_sys_rename;
    real_open = pp_sys_open;
    return 0;
}

static int count_entries(const char *d)
{
    DIR *dd = opendir(d);
    if (!dd) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dd)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(dd);
    return n;
}

static int teardown(void **state)
{
    pp_sys_write = real_write;
    pp_sys_fsync = real_fsync;
    pp_sys_rename = real_rename;
    pp_sys_open = real_open;
    pprof_builder_free(b);
    assert_int_equal(ta.live_blocks, 0);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static char *path_in(const char *name)
{
    static char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return p;
}

/* The file equals what encode produces, and validates. */
static void assert_profile_file(const char *path)
{
    size_t flen, mlen;
    unsigned char *f = slurp(path, &flen);
    assert_non_null(f);
    void *m;
    assert_int_equal(pprof_builder_encode(b, true, &m, &mlen), PPROF_OK);
    assert_int_equal(flen, mlen);
    assert_memory_equal(f, m, flen);
    assert_int_equal(pprof_validate(&alloc, f, flen, NULL, 0), PPROF_OK);
    alloc.free(alloc.ctx, m);
    free(f);
}

static void test_success(void **state)
{
    assert_int_equal(pprof_builder_write_gz(b, dir, "heap.1.0001.exit.pb.gz"), PPROF_OK);
    assert_int_equal(count_entries(dir), 1);   /* no temporary file left */
    assert_profile_file(path_in("heap.1.0001.exit.pb.gz"));
    /* Overwriting an existing profile is atomic too. */
    char withslash[300];
    snprintf(withslash, sizeof(withslash), "%s/", dir);
    assert_int_equal(pprof_builder_write_gz(b, withslash, "heap.1.0001.exit.pb.gz"), PPROF_OK);
    assert_int_equal(count_entries(dir), 1);
    assert_profile_file(path_in("heap.1.0001.exit.pb.gz"));
}

static void test_short_writes_and_eintr(void **state)
{
    write_calls = 0;
    pp_sys_write = write_short_eintr;
    assert_int_equal(pprof_builder_write_gz(b, dir, "p.pb.gz"), PPROF_OK);
    pp_sys_write = real_write;
    assert_true(write_calls > 1000);
    assert_profile_file(path_in("p.pb.gz"));
    assert_int_equal(count_entries(dir), 1);
}

/* old: an existing profile that a failed write must leave as it was. */
static void put_old(void)
{
    FILE *f = fopen(path_in("p.pb.gz"), "w");
    fputs("OLD", f);
    fclose(f);
}

static void assert_old_only(void)
{
    assert_int_equal(count_entries(dir), 1);
    size_t n;
    unsigned char *d = slurp(path_in("p.pb.gz"), &n);
    assert_int_equal(n, 3);
    assert_memory_equal(d, "OLD", 3);
    free(d);
}

static void test_full_disk_at_write(void **state)
{
    put_old();
    for (size_t budget = 0; budget < 200000; budget = budget * 3 + 1000) {
        write_budget = budget;
        pp_sys_write = write_full_disk;
        assert_int_equal(pprof_builder_write_gz(b, dir, "p.pb.gz"), PPROF_ERR_NOSPACE);
        pp_sys_write = real_write;
        assert_old_only();
    }
    pp_sys_write = write_zero;   /* no progress at all counts as full */
    assert_int_equal(pprof_builder_write_gz(b, dir, "p.pb.gz"), PPROF_ERR_NOSPACE);
    pp_sys_write = real_write;
    assert_old_only();
}

static void test_full_disk_at_fsync(void **state)
{
    put_old();
    pp_sys_fsync = fsync_enospc;
    assert_int_equal(pprof_builder_write_gz(b, dir, "p.pb.gz"), PPROF_ERR_NOSPACE);
    pp_sys_fsync = fsync_eio;
    assert_int_equal(pprof_builder_write_gz(b, dir, "p.pb.gz"), PPROF_ERR_IO);
    pp_sys_fsync = real_fsync;
    assert_old_only();
}

static void test_no_permission(void **state)
{
    put_old();
    pp_sys_open = open_eacces;
    assert_int_equal(pprof_builder_write_gz(b, dir, "p.pb.gz"), PPROF_ERR_PERM);
    pp_sys_open = real_open;
    assert_old_only();
    pp_sys_rename = rename_exdev;
    assert_int_equal(pprof_builder_write_gz(b, dir, "p.pb.gz"), PPROF_ERR_IO);
    pp_sys_rename = real_rename;
    assert_old_only();
}

static void test_bad_directories(void **state)
{
    assert_int_equal(pprof_builder_write_gz(b, path_in("missing"), "p.pb.gz"), PPROF_ERR_NOENT);
    FILE *f = fopen(path_in("regular"), "w");
    fclose(f);
    /* A path under a regular file: unwritable even for root. */
    assert_int_equal(pprof_builder_write_gz(b, path_in("regular"), "p.pb.gz"), PPROF_ERR_NOENT);
    assert_int_equal(count_entries(dir), 1);
}

static void test_write_fd(void **state)
{
    int fd = open(path_in("fd.pb.gz"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(pprof_builder_write_fd(b, fd), PPROF_OK);
    close(fd);
    assert_profile_file(path_in("fd.pb.gz"));
    assert_int_equal(pprof_builder_write_fd(b, -1), PPROF_ERR_INVALID);
}

/* Real filesystems: a 256 KiB tmpfs (the profile is ~1 MiB), then the same
 * mounted read-only. Needs mount(2) (root, and a container that allows
 * it); skipped otherwise. */
static void test_real_tmpfs(void **state)
{
    char mnt[300];
    snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
    assert_int_equal(mkdir(mnt, 0755), 0);
    if (mount("pprof_test", mnt, "tmpfs", 0, "size=256k") != 0) {
        fprintf(stderr, "mount tmpfs: %s: skipped\n", strerror(errno));
        skip();
    }
    pprof_err_t full = pprof_builder_write_gz(b, mnt, "p.pb.gz");
    int left_full = count_entries(mnt);
    /* A small profile fits. */
    pprof_builder_t *small;
    assert_int_equal(pprof_builder_new(&alloc, &small), PPROF_OK);
    assert_int_equal(pprof_builder_set_heap_types(small, 1), PPROF_OK);
    pprof_err_t ok = pprof_builder_write_gz(small, mnt, "small.pb.gz");
    int left_ok = count_entries(mnt);
    int ro = mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL);
    pprof_err_t rofs = ro == 0 ? pprof_builder_write_gz(small, mnt, "ro.pb.gz") : PPROF_ERR_PERM;
    int left_ro = count_entries(mnt);
    pprof_builder_free(small);
    umount2(mnt, MNT_DETACH);
    assert_int_equal(full, PPROF_ERR_NOSPACE);
    assert_int_equal(left_full, 0);
    assert_int_equal(ok, PPROF_OK);
    assert_int_equal(left_ok, 1);
    assert_int_equal(rofs, PPROF_ERR_PERM);
    assert_int_equal(left_ro, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_writes_and_eintr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_at_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_at_fsync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_permission, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_directories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_tmpfs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
