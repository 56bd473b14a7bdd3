/*
 * regression_driver.c - replays fuzz inputs through a libFuzzer-style target
 * without libFuzzer, so CI can run the corpora under ASan + UBSan with the
 * normal compiler. Generic: it links with any tests/fuzz/<target>.c that
 * defines LLVMFuzzerTestOneInput (and optionally LLVMFuzzerInitialize).
 *
 * usage: <target> PATH...
 *   PATH is an input file or a directory, whose regular files (not
 *   subdirectories, not dot files) are replayed in name order.
 * Each input is read into a buffer of exactly its size (so ASan catches an
 * over-read) and passed to LLVMFuzzerTestOneInput once. The path is printed
 * to stderr before it runs, so a crash names its input; the last line on
 * stdout is "replayed N inputs".
 *
 * Exit status: 0 when every input ran; 1 when a path is missing or
 * unreadable, a directory holds no input, or no path was given; a crash or
 * sanitizer report ends the process with its own status.
 *
 * Replaying one failing input: build/asan/fuzz/<target> path/to/input
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* read_file: the whole file in a malloc'd buffer of exactly its size, so
 * that ASan catches a read past the end (1 byte for an empty file, reported
 * as size 0). @return NULL on error. */
static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = malloc(1), chunk[1 << 16];
    size_t len = 0, n;
    while (buf && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        uint8_t *grown = realloc(buf, len + n);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        memcpy(buf + len, chunk, n);
        len += n;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = len;
    return buf;
}

/* replay_file: runs one input. @return 0, or -1 if it cannot be read. */
static int replay_file(const char *path)
{
    size_t size = 0;
    uint8_t *data = read_file(path, &size);
    if (!data) {
        fprintf(stderr, "regression_driver: cannot read %s: %s\n", path,
                errno ? strerror(errno) : "read error");
        return -1;
    }
    fprintf(stderr, "replaying %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

static int skip_dot(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

/* replay_dir: runs every regular file of dir in name order.
 * @return the number replayed, or -1 on error (including none). */
static long replay_dir(const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, skip_dot, alphasort);
    if (n < 0) {
        fprintf(stderr, "regression_driver: cannot list %s: %s\n", dir, strerror(errno));
        return -1;
    }
    long done = 0;
    int err = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (!err && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (replay_file(path) != 0)
                err = 1;
            else
                done++;
        }
        free(names[i]);
    }
    free(names);
    if (!err && done == 0)
        fprintf(stderr, "regression_driver: no inputs in %s\n", dir);
    return err || done == 0 ? -1 : done;
}

int main(int argc, char **argv)
{
    long total = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
        return 1;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "regression_driver: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        long n = S_ISDIR(st.st_mode) ? replay_dir(argv[i])
                                     : (replay_file(argv[i]) == 0 ? 1 : -1);
        if (n < 0)
            return 1;
        total += n;
    }
    fflush(stderr);
    printf("replayed %ld inputs\n", total);
    return 0;
}
