/*
 * sanit_race.c - a threaded program for the sanitizer tests, built by
 * safety_sanit.mk with -fsanitize=thread.
 *
 *   sanit_race clean   two threads increment a heap counter one after the
 *                      other (joined in between), exit 0
 *   sanit_race race    the same two threads at once, unsynchronised: TSan
 *                      reports a data race and exits 66
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int *counter;

static void *bump(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) counter[0]++;
    return NULL;
}

int main(int argc, char **argv)
{
    int race = argc > 1 && strcmp(argv[1], "race") == 0;
    counter = calloc(4, sizeof *counter);
    pthread_t a, b;
    pthread_create(&a, NULL, bump, NULL);
    if (!race) pthread_join(a, NULL);
    pthread_create(&b, NULL, bump, NULL);
    if (race) pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("sanit_race %s: done\n", race ? "race" : "clean");
    free(counter);
    return 0;
}
