/*
 * agent_fork.c - fork and exec under the agent. The parent allocates, forks
 * a child that allocates more and exits with status 3, waits for it, then
 * execs the program named in argv[1] (if any). Prints the pids it used so
 * the test can find each process's summary.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static void *keep[1000];
    for (int i = 0; i < 500; i++) keep[i] = malloc(64);
    pid_t child = fork();
    if (child == 0) {
        for (int i = 500; i < 1000; i++) keep[i] = malloc(128);
        for (int i = 0; i < 100; i++) free(keep[i]);
        exit(3);
    }
    int status = 0;
    waitpid(child, &status, 0);
    printf("parent %d child %d child_status %d\n", (int)getpid(), (int)child,
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    fflush(stdout);
    if (argc > 1) {
        execv(argv[1], argv + 1);
        perror("execv");
        return 1;
    }
    return 0;
}
