/*
 * pprof_write.c - atomic output: a profile appears whole under its final
 * name, or not at all.
 *
 * Steps (each failure removes the temporary file and returns its code):
 *   1. open dir/.NAME.tmp.PID.N with O_CREAT|O_EXCL (N counts per process,
 *      so concurrent writers never share a temporary file); same directory
 *      as the final name, so the rename cannot cross filesystems;
 *   2. stream the gzip'ed profile into it (write() retried on EINTR and
 *      after short writes; a write that returns 0 counts as a full disk);
 *   3. fsync it: errors that the page cache hid until now (ENOSPC on
 *      delayed allocation, EIO) surface here, before the rename;
 *   4. close it (NFS reports errors at close);
 *   5. rename over dir/NAME: readers see the old file or the new one;
 *   6. fsync dir, so the rename itself survives a crash (best effort).
 * Readers never see the temporary file under the final name, and a file
 * that failed at any step never gets the final name. The dot prefix keeps
 * the temporary file out of "heap.*" globs.
 *
 * The write, fsync, rename and open calls go through the seams of
 * pprof_internal.h so the unit tests can inject ENOSPC and EACCES.
 *
 * This is for directories the caller trusts (tests, tools): the name is
 * replaced if it exists, and the directory is used by path. The agent,
 * whose output directory other users may be able to reach, does not use
 * it: it streams pprof_builder_write_fd into a file it created O_EXCL|
 * O_NOFOLLOW in its verified directory descriptor and publishes it without
 * replacing anything (agent/profile.c, agent/out.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "pprof/pprof_internal.h"

static unsigned long tmp_counter;   /* atomically incremented */

pprof_err_t pprof_builder_write_gz(pprof_builder_t *b, const char *dir, const char *name)
{
    if (!b || !dir || !name || !dir[0] || !name[0] || strchr(name, '/') ||
        strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return PPROF_ERR_INVALID;
    size_t dlen = strlen(dir), nlen = strlen(name);
    if (dlen > 4000 || nlen > 200) return PPROF_ERR_INVALID;

    /* final: dir/name; tmp: dir/.name.tmp.<pid>.<n> */
    size_t cap = dlen + nlen + 64;
    char *final = b->a.alloc(b->a.ctx, 2 * cap);
    if (!final) return PPROF_ERR_NOMEM;
    char *tmp = final + cap;
    size_t k = 0;
    memcpy(final, dir, dlen);
    k = dlen;
    if (final[k - 1] != '/') final[k++] = '/';
    size_t dirpart = k;
    memcpy(final + k, name, nlen);
    final[k + nlen] = '\0';

    memcpy(tmp, final, dirpart);
    k = dirpart;
    tmp[k++] = '.';
    memcpy(tmp + k, name, nlen);
    k += nlen;
    memcpy(tmp + k, ".tmp.", 5);
    k += 5;
    k += pp_fmt_u64(tmp + k, (uint64_t)getpid(), 10);
    tmp[k++] = '.';
    k += pp_fmt_u64(tmp + k, __atomic_add_fetch(&tmp_counter, 1, __ATOMIC_RELAXED), 10);
    tmp[k] = '\0';

    pprof_err_t err = PPROF_OK;
    int fd = pp_sys_open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = pp_errno_to_err(errno);
        b->a.free(b->a.ctx, final);
        return err;
    }
    err = pp_encode_fd(b, fd, true);
    if (err == PPROF_OK) {
        int r;
        do r = pp_sys_fsync(fd); while (r != 0 && errno == EINTR);
        if (r != 0) err = pp_errno_to_err(errno);
    }
    if (close(fd) != 0 && err == PPROF_OK && errno != EINTR) err = pp_errno_to_err(errno);
    if (err == PPROF_OK && pp_sys_rename(tmp, final) != 0) err = pp_errno_to_err(errno);
    if (err != PPROF_OK) {
        unlink(tmp);
    } else {
        /* Make the rename durable; a failure here cannot be undone and the
         * file is complete, so it is not reported. */
        final[dirpart] = '\0';
        int dfd = pp_sys_open(final, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        if (dfd >= 0) {
            pp_sys_fsync(dfd);
            close(dfd);
        }
    }
    b->a.free(b->a.ctx, final);
    return err;
}
