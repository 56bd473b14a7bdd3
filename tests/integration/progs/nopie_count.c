/*
 * nopie_count.c - built -no-pie and taking malloc's address, as Debian's
 * python3.11 does: the executable's PLT entry then is malloc's canonical
 * address (what dlsym(RTLD_DEFAULT, "malloc") returns), though the
 * executable defines no malloc. Makes N allocations of its own and frees
 * half, and says so: "allocated N freed M".
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    /* malloc's address taken in code: in a -no-pie executable that is an
     * absolute address fixed at link time, so the linker makes the PLT
     * entry malloc's canonical address (a data pointer would get a dynamic
     * relocation instead). */
    void *(*volatile take_address)(size_t) = malloc;
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    void **p = calloc((size_t)n, sizeof *p);
    for (int i = 0; i < n; i++) p[i] = take_address(16 + (size_t)i % 200);
    int freed = 0;
    for (int i = 0; i < n; i += 2, freed++) free(p[i]);
    printf("allocated %d freed %d\n", n, freed);
    return 0;
}
