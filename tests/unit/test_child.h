/*
 * test_child.h - running a piece of a unit test in a forked child, its
 * stderr captured: for checks that must end the process (an AGENT_ASSERT
 * of the debug build aborts).
 */
#ifndef HEAPWATCH_TEST_CHILD_H
#define HEAPWATCH_TEST_CHILD_H

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    int status;                 /* waitpid's */
    char err[2048];             /* the child's stderr */
} child_t;

/* in_child: runs fn in a forked child whose stderr is a pipe; the child
 * exits 0 if fn returns. */
static inline child_t in_child(void (*fn)(void))
{
    child_t c;
    memset(&c, 0, sizeof c);
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        fn();
        _exit(0);
    }
    close(p[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(p[0], c.err + len, sizeof c.err - 1 - len)) > 0) len += (size_t)n;
    c.err[len] = 0;
    close(p[0]);
    assert_int_equal(waitpid(pid, &c.status, 0), pid);
    return c;
}

/* assert_aborted: the child died of SIGABRT after one stderr line saying
 * "heapwatch: assertion failed" and `what`. */
static inline void assert_aborted(const child_t *c, const char *what)
{
    if (!WIFSIGNALED(c->status) || WTERMSIG(c->status) != SIGABRT)
        fail_msg("the child did not die of SIGABRT (status %#x); stderr: \"%s\"", c->status, c->err);
    if (!strstr(c->err, "heapwatch: assertion failed") || !strstr(c->err, what))
        fail_msg("stderr lacks \"heapwatch: assertion failed\" or \"%s\": \"%s\"", what, c->err);
    assert_non_null(strchr(c->err, '\n'));   /* one line */
    assert_int_equal(strchr(c->err, '\n')[1], 0);
}

#endif /* HEAPWATCH_TEST_CHILD_H */
