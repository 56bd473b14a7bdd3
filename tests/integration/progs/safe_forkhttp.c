/*
 * safe_forkhttp.c - a program under HEAPWATCH_HTTP that forks while the
 * agent's server thread holds a client connection
 * (tests/integration/safety_fdfork.sh). It prints "ready", waits until the
 * file GO exists (the test has connected by then), forks a child that
 * sleeps SECONDS and exits, and waits for it. The connection is the
 * agent's: a child that kept its copy would keep it open, so the client
 * would see the end of the server's answer only when the child exits.
 *
 * usage: safe_forkhttp GO SECONDS
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3) return 2;
    printf("ready\n");
    fflush(stdout);
    struct stat st;
    for (int i = 0; i < 1000 && stat(argv[1], &st) != 0; i++) {
        struct timespec t = { 0, 10 * 1000000 };
        nanosleep(&t, NULL);
    }
    free(malloc(100));
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        sleep((unsigned)atoi(argv[2]));
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
