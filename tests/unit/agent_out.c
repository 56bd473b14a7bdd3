/*
 * agent_out.c - the output directory and its files (agent/out.c), without
 * any preload: which directories are refused and why (one line), what
 * happens when the program closes or reuses the directory's descriptor or
 * removes the directory, and that files are created without following a
 * link and published without replacing anything.
 *
 * The ownership checks need another user: they run as root only (chown
 * to 65534, the conventional nobody) and are skipped otherwise.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent/out.h"

#define NOBODY 65534

static char top[256];

static void rm_rf(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path);
}

static int setup(void **state)
{
    (void)state;
    strcpy(top, "/tmp/hw_out_XXXXXX");
    return mkdtemp(top) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rm_rf(top);
    return 0;
}

static void sub(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", top, name);
}

/* init: agent_outdir_init on path; why into why. */
static int init(const char *path, char *why, size_t cap)
{
    why[0] = 0;
    return agent_outdir_init(path, why, cap);
}

static void test_plain_and_created(void **state)
{
    (void)state;
    char p[512], why[1024];
    sub(p, sizeof p, "a/b/c");
    mode_t old = umask(0);   /* the agent must not create world-writable directories */
    assert_int_equal(init(p, why, sizeof why), 0);
    umask(old);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    sub(p, sizeof p, "a");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    int fd = agent_outdir_fd(why, sizeof why);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_true(fd >= 10);   /* away from the numbers shells take */
}

static void test_refused_modes(void **state)
{
    (void)state;
    char p[512], why[1024];
    sub(p, sizeof p, "open");
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(chmod(p, 0777), 0);
    assert_int_equal(init(p, why, sizeof why), -EPERM);
    assert_non_null(strstr(why, "without the sticky bit (mode 0777)"));
    assert_null(strchr(why, '\n'));
    assert_int_equal(chmod(p, 0775), 0);
    assert_int_equal(init(p, why, sizeof why), -EPERM);   /* group-writable too */
    assert_int_equal(chmod(p, 01777), 0);
    assert_int_equal(init(p, why, sizeof why), 0);        /* /tmp-like: accepted */
    /* Below a non-sticky 0777 parent: refused, naming the parent. */
    assert_int_equal(chmod(p, 0777), 0);
    char q[600];
    snprintf(q, sizeof q, "%s/inner", p);
    assert_int_equal(init(q, why, sizeof why), -EPERM);
    assert_non_null(strstr(why, "/open\" is group"));
}

static void test_refused_owner_and_links(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        skip();
        return;
    }
    char p[512], why[1024], q[600];
    sub(p, sizeof p, "theirs");
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(chown(p, NOBODY, NOBODY), 0);
    assert_int_equal(init(p, why, sizeof why), -EPERM);
    assert_non_null(strstr(why, "is owned by uid 65534"));
    snprintf(q, sizeof q, "%s/below", p);   /* a parent another user can replace */
    assert_int_equal(init(q, why, sizeof why), -EPERM);

    /* A link: followed when ours, refused when another user's. */
    char target[512];
    sub(target, sizeof target, "target");
    assert_int_equal(mkdir(target, 0700), 0);
    sub(p, sizeof p, "link");
    assert_int_equal(symlink(target, p), 0);
    assert_int_equal(init(p, why, sizeof why), 0);
    assert_int_equal(lchown(p, NOBODY, NOBODY), 0);
    assert_int_equal(init(p, why, sizeof why), -ELOOP);
    assert_non_null(strstr(why, "is a symbolic link owned by another user"));
    DIR *d = opendir(target);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(n, 0);
}

static void test_escaped_reason(void **state)
{
    (void)state;
    char p[512], why[1024];
    sub(p, sizeof p, "bad\nname");
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(chmod(p, 0777), 0);
    assert_int_equal(init(p, why, sizeof why), -EPERM);
    assert_null(strchr(why, '\n'));
    assert_non_null(strstr(why, "bad\\nname"));
}

/* The program takes the descriptor's number over, or removes the
 * directory: the agent never touches the number again and finds the
 * directory by path. */
static void test_descriptor_taken_over(void **state)
{
    (void)state;
    char p[512], why[1024];
    sub(p, sizeof p, "out");
    assert_int_equal(init(p, why, sizeof why), 0);
    int fd = agent_outdir_fd(why, sizeof why);
    assert_true(fd >= 0);
    int other = open("/", O_RDONLY | O_DIRECTORY);   /* not close-on-exec, another inode */
    assert_int_equal(dup2(other, fd), fd);
    int fd2 = agent_outdir_fd(why, sizeof why);
    assert_true(fd2 >= 0 && fd2 != fd);
    struct stat a, b;
    assert_int_equal(fstat(fd, &a), 0);              /* still open: not closed by the agent */
    assert_int_equal(stat("/", &b), 0);
    assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    assert_int_equal(fstat(fd2, &a), 0);
    assert_int_equal(stat(p, &b), 0);
    assert_true(a.st_ino == b.st_ino);
    close(fd);
    close(other);

    /* Removed: created again, and that is the one used. */
    rm_rf(p);
    int fd3 = agent_outdir_fd(why, sizeof why);
    assert_true(fd3 >= 0);
    assert_int_equal(fstat(fd3, &a), 0);
    assert_int_equal(stat(p, &b), 0);
    assert_true(a.st_ino == b.st_ino);
}

/* A later round opens the path at once and keeps it only when it is the
 * directory the walk approved, still safe; anything else walks again
 * (agent/out.c, "Once a walk has approved the directory"). */
static void test_later_rounds(void **state)
{
    (void)state;
    char p[512], parent[512], old[512], why[1024];
    sub(parent, sizeof parent, "up");
    sub(p, sizeof p, "up/out");
    assert_int_equal(init(p, why, sizeof why), 0);
    struct stat approved, st;
    assert_int_equal(stat(p, &approved), 0);
    agent_outdir_drop();

    /* The parent becomes group-writable: a walk refuses it, but the
     * approved directory, which no one else can write to, is still used. */
    assert_int_equal(chmod(parent, 0775), 0);
    char fresh[1024];
    assert_int_equal(init(p, fresh, sizeof fresh), -EPERM);   /* a new walk refuses */
    assert_non_null(strstr(fresh, "without the sticky bit"));
    assert_int_equal(chmod(parent, 0755), 0);
    assert_int_equal(init(p, why, sizeof why), 0);               /* approved again */
    agent_outdir_drop();
    assert_int_equal(chmod(parent, 0775), 0);
    int fd = agent_outdir_fd(why, sizeof why);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(st.st_dev == approved.st_dev && st.st_ino == approved.st_ino);
    agent_outdir_drop();
    assert_int_equal(chmod(parent, 0755), 0);

    /* The approved directory itself becomes world-writable: refused, with
     * the walk's reason. */
    assert_int_equal(chmod(p, 0777), 0);
    why[0] = 0;
    assert_int_equal(agent_outdir_fd(why, sizeof why), -EPERM);
    assert_non_null(strstr(why, "without the sticky bit"));
    assert_int_equal(chmod(p, 0755), 0);

    /* Replaced by another directory at the same path: the walk checks it
     * and that one is used. */
    assert_true(agent_outdir_fd(why, sizeof why) >= 0);
    agent_outdir_drop();
    sub(old, sizeof old, "up/out.old");
    assert_int_equal(rename(p, old), 0);
    assert_int_equal(mkdir(p, 0700), 0);
    fd = agent_outdir_fd(why, sizeof why);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    struct stat now;
    assert_int_equal(stat(p, &now), 0);
    assert_true(st.st_ino == now.st_ino && st.st_ino != approved.st_ino);
    agent_outdir_drop();
}

static void test_files(void **state)
{
    (void)state;
    char p[512], why[1024], tmp[128], tmp2[128];
    sub(p, sizeof p, "files");
    assert_int_equal(init(p, why, sizeof why), 0);
    int dirfd = agent_outdir_fd(why, sizeof why);
    assert_true(dirfd >= 0);

    /* Temporary names: unpredictable, never the same twice. */
    int fd = agent_tmp_create(dirfd, "x.json", tmp, sizeof tmp);
    int fd2 = agent_tmp_create(dirfd, "x.json", tmp2, sizeof tmp2);
    assert_true(fd >= 0 && fd2 >= 0);
    assert_int_equal(strncmp(tmp, ".x.json.tmp.", 12), 0);
    assert_int_equal(strlen(tmp), 12 + 16);
    assert_string_not_equal(tmp, tmp2);
    assert_int_equal(write(fd, "abc", 3), 3);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(agent_file_check(fd, st.st_dev, st.st_ino), 0);
    assert_int_equal(agent_file_check(fd2, st.st_dev, st.st_ino), -ESTALE);
    close(fd2);
    assert_int_equal(agent_file_check(fd2, st.st_dev, st.st_ino), -EBADF);

    /* Published once; an existing name, file or link, is never replaced. */
    assert_int_equal(agent_publish_at(dirfd, tmp, "x.json"), 0);
    assert_int_equal(agent_publish_at(dirfd, tmp2, "x.json"), -EEXIST);
    char secret[512];
    sub(secret, sizeof secret, "secret");
    FILE *f = fopen(secret, "w");
    fputs("secret\n", f);
    fclose(f);
    assert_int_equal(symlinkat(secret, dirfd, "planted.json"), 0);
    assert_int_equal(agent_write_at(dirfd, "planted.json", "new\n", 4), -EEXIST);
    f = fopen(secret, "r");
    char line[32] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, "secret\n");
    assert_int_equal(agent_write_at(dirfd, "fresh.json", "new\n", 4), 0);
    close(fd);

    /* Nothing but the published files, the link and the unpublished tmp2. */
    DIR *d = opendir(p);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    assert_int_equal(n, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain_and_created, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_owner_and_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_later_rounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaped_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_descriptor_taken_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
