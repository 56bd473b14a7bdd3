/*
 * safe_fds_http.c - a daemon-style program under HEAPWATCH_HTTP (see
 * tests/integration/safety_fds.sh): it closes every descriptor from 3 to
 * its limit (the agent's listening socket among them, wherever the agent
 * put it), opens NFILES files of its own and moves the last one to the
 * number where the agent puts what it holds (1024, or half the limit:
 * agent/fds.c), so that it has the socket's old number; waits, binds the agent's port
 * itself, then forks; parent and child append lines to every file.
 *
 * The agent must never close the number the program now uses (not in the
 * forked child either) and must let the port go once its socket is gone.
 * Prints "bind: ok|<error>", "child: <status>", "parent write errors: N";
 * exits 0 when the bind worked and every write of both processes succeeded.
 *
 * Usage: safe_fds_http DIR PORT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NFILES 8

static int fds[NFILES];

static int write_lines(const char *who)
{
    int errors = 0;
    for (int i = 0; i < 100; i++) {
        char line[64];
        int len = snprintf(line, sizeof line, "%s line %d\n", who, i);
        if (write(fds[i % NFILES], line, (size_t)len) != len) errors++;
        free(malloc(64 + (size_t)i));   /* allocations too, sampled or not */
    }
    return errors;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: safe_fds_http DIR PORT\n");
        return 2;
    }
    fflush(stdout);
    long limit = sysconf(_SC_OPEN_MAX);
    if (limit < 0 || limit > 65536) limit = 65536;
    for (int fd = 3; fd < limit; fd++) close(fd);
    for (int f = 0; f < NFILES; f++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/own%d.txt", argv[1], f);
        fds[f] = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
        if (fds[f] < 0) {
            printf("open: %s\n", strerror(errno));
            return 1;
        }
    }

    int high = limit >= 2048 ? 1024 : (int)(limit / 2);
    if (dup2(fds[NFILES - 1], high) != high) {
        printf("dup2: %s\n", strerror(errno));
        return 1;
    }
    close(fds[NFILES - 1]);
    fds[NFILES - 1] = high;

    struct timespec wait = { 1, 500 * 1000000 };
    nanosleep(&wait, NULL);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(argv[2]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int bound = s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 && listen(s, 4) == 0;
    printf("bind: %s\n", bound ? "ok" : strerror(errno));
    fflush(stdout);

    pid_t pid = fork();
    if (pid == 0) _exit(write_lines("child") ? 1 : 0);
    int status = -1;
    if (pid > 0) waitpid(pid, &status, 0);
    printf("child: %d\n", status);
    int errors = write_lines("parent");
    printf("parent write errors: %d\n", errors);
    for (int f = 0; f < NFILES; f++)
        if (close(fds[f]) != 0) errors++;
    return bound && status == 0 && errors == 0 ? 0 : 1;
}
