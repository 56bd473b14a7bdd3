/*
 * sanit_race.c - a threaded program for the sanitizer tests, built by
 * safety_sanit.mk with -fsanitize=thread.
 *
 *   sanit_race clean   two threads increment a heap counter one after the
 *                      other (joined in between), exit 0
 *   sanit_race race    the same two threads, unsynchronised: the second
 *                      starts when the first has written (a relaxed
 *                      atomic flag, which orders nothing for TSan), so TSan
 *                      reports the same data race every time (write by T2,
 *                      previous write by T1) and exits 66
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int *counter;
static int first_done;                   /* relaxed: no happens-before */

static void *bump(void *arg)
{
    (void)arg;
    counter[0] = counter[0] + 1;
    __atomic_store_n(&first_done, 1, __ATOMIC_RELAXED);
    return NULL;
}

int main(int argc, char **argv)
{
    int race = argc > 1 && strcmp(argv[1], "race") == 0;
    counter = calloc(4, sizeof *counter);
    pthread_t a, b;
    pthread_create(&a, NULL, bump, NULL);
    if (!race) pthread_join(a, NULL);
    while (!__atomic_load_n(&first_done, __ATOMIC_RELAXED)) usleep(1000);
    pthread_create(&b, NULL, bump, NULL);
    if (race) pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("sanit_race %s: done\n", race ? "race" : "clean");
    free(counter);
    return 0;
}
