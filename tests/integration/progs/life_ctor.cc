/*
 * life_ctor.cc - allocations before main and after it: a constructor and a
 * destructor of the program, a C++ static object whose constructor and
 * destructor allocate, atexit handlers (registered from the constructor
 * and from main), and the library liblife_ctorlib.so with its own
 * constructor, destructor and atexit handler. Each hook checks the agent's
 * counters moved by exactly its own allocations (LIFE_TAP) and records the
 * counters after its work (LIFE_RECORD); several never free what they
 * allocate, so the exit summary must show them live.
 *
 * stdout: the same few lines with and without the agent; stdout is closed
 * by an atexit handler, so what runs later cannot print.
 */
#include <new>
#include <vector>

#include "life_ctor.h"

static void *ctor_kept[MAIN_CTOR_MALLOCS];

static void leak(void *p) { (void)life_opaque(p); }

/* A static object: constructed before main, destroyed at exit. */
struct Holder {
    int *arrays[STATIC_OBJECTS];
    Holder()
    {
        heapwatch_counters_t c = life_read();
        for (int i = 0; i < STATIC_OBJECTS; i++) arrays[i] = new int[10 + i];
        life_check("C++ static object constructor", &c, STATIC_OBJECTS, 0);
        life_record("static_ctor", STATIC_OBJECTS);
    }
    ~Holder()
    {
        heapwatch_counters_t c = life_read();
        for (int i = 0; i < STATIC_OBJECTS; i++) delete[] arrays[i];
        for (int i = 0; i < STATIC_DTOR_LEAK; i++) leak(new char[16]);
        life_check("C++ static object destructor", &c, STATIC_DTOR_LEAK, STATIC_OBJECTS);
        life_record("static_dtor", STATIC_DTOR_LEAK - STATIC_OBJECTS);
    }
};
static Holder holder;

static void atexit_from_ctor(void)
{
    heapwatch_counters_t c = life_read();
    std::vector<void *> v;          /* the vector allocates too: reserve counts 1 */
    v.reserve(ATEXIT_MALLOCS);
    for (int i = 0; i < ATEXIT_MALLOCS; i++) v.push_back(life_opaque(malloc(8 + (size_t)i % 300)));
    for (void *p : v) free(p);
    v.clear();
    v.shrink_to_fit();              /* frees the vector's buffer */
    life_check("atexit handler registered by the constructor", &c, ATEXIT_MALLOCS + 1,
               ATEXIT_MALLOCS + 1);
    life_record("atexit_ctor", 0);
}

static void atexit_from_main(void)
{
    heapwatch_counters_t c = life_read();
    for (int i = 0; i < ATEXIT_MALLOCS; i++) free(life_opaque(malloc(100)));
    for (int i = 0; i < ATEXIT_LEAK; i++) leak(calloc(1, 50));
    life_check("atexit handler registered by main", &c, ATEXIT_MALLOCS + ATEXIT_LEAK,
               ATEXIT_MALLOCS);
    life_record("atexit_main", ATEXIT_LEAK);
    fclose(stdout);                 /* what runs later cannot print */
}

__attribute__((constructor)) static void main_ctor(void)
{
    heapwatch_counters_t c = life_read();
    for (int i = 0; i < MAIN_CTOR_MALLOCS; i++) ctor_kept[i] = malloc(64);
    for (int i = 0; i < MAIN_CTOR_MALLOCS / 2; i++) free(ctor_kept[i]);
    life_check("program constructor", &c, MAIN_CTOR_MALLOCS, MAIN_CTOR_MALLOCS / 2);
    atexit(atexit_from_ctor);
    life_record("main_ctor", MAIN_CTOR_MALLOCS / 2);
}

__attribute__((destructor)) static void main_dtor(void)
{
    heapwatch_counters_t c = life_read();
    for (int i = MAIN_CTOR_MALLOCS / 2; i < MAIN_CTOR_MALLOCS; i++) free(ctor_kept[i]);
    for (int i = 0; i < MAIN_DTOR_LEAK; i++) leak(malloc(32));
    life_check("program destructor", &c, MAIN_DTOR_LEAK, MAIN_CTOR_MALLOCS / 2);
    life_record("main_dtor", MAIN_DTOR_LEAK - MAIN_CTOR_MALLOCS / 2);
}

int main()
{
    printf("life_ctor: main runs, library linked: %d\n", life_ctorlib_touch());
    atexit(atexit_from_main);
    printf("life_ctor: main returns 0\n");
    return 0;
}
