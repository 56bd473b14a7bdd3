/*
 * sanit_heap.c - a heap program for the sanitizer tests
 * (tests/integration/safety_sanitizers.sh), built by safety_sanit.mk with
 * -fsanitize=address (gcc: shared runtime; clang: static runtime),
 * -fsanitize=leak and, with clang, -fsanitize=memory.
 *
 *   sanit_heap clean    allocates, reallocates and frees 1000 blocks
 *                       (valloc and reallocarray too), prints a line, exits 0
 *   sanit_heap uaf      then reads a freed block: ASan reports a
 *                       heap-use-after-free and exits 1
 *   sanit_heap leak     then drops a block: LSan (alone or in ASan)
 *                       reports the leak at exit
 *   sanit_heap uninit   then branches on uninitialised heap memory (MSan)
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

static int work(void)
{
    void *blocks[1000];
    for (int i = 0; i < 1000; i++) {
        blocks[i] = malloc((size_t)(16 + i % 64));
        memset(blocks[i], i & 0xff, (size_t)(16 + i % 64));
    }
    for (int i = 0; i < 1000; i += 2) blocks[i] = realloc(blocks[i], 200);
    int sum = 0;
    for (int i = 0; i < 1000; i++) {
        sum += ((unsigned char *)blocks[i])[3];
        free(blocks[i]);
    }
    void *v = valloc(100);
    void *r = reallocarray(NULL, 10, 10);
    free(v);
    free(r);
    return sum;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "clean";
    printf("sanit_heap %s: sum %d\n", mode, work());
    fflush(stdout);
    if (strcmp(mode, "uaf") == 0) {
        char *p = malloc(32);
        strcpy(p, "freed");
        free(p);
        sink = p;
        return ((volatile char *)sink)[1];          /* heap-use-after-free */
    }
    if (strcmp(mode, "leak") == 0) {
        sink = malloc(77);
        sink = NULL;                                 /* 77 bytes lost */
    }
    if (strcmp(mode, "uninit") == 0) {
        int *u = malloc(sizeof *u * 4);
        sink = u;
        if (u[2] > 0) puts("positive");              /* use of uninitialised value */
        free(u);
    }
    return 0;
}
