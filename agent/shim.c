/*
 * shim.c - the interposed allocation functions, and nothing else.
 *
 * Each exported function calls the real one, found with dlsym(RTLD_NEXT),
 * and reports to the core (hot.h) only what succeeded: a free is
 * reported *before* the real free (afterwards another thread could already
 * have been handed the same address), an allocation after it returned.
 *
 * Why dlsym(RTLD_NEXT) and not glibc's __libc_malloc family: the program
 * keeps its own allocator. With jemalloc or tcmalloc preloaded after us (or
 * linked into the program), RTLD_NEXT finds theirs; __libc_malloc would
 * hand out glibc memory that their free() cannot take.
 *
 * Only malloc, free, calloc, realloc, memalign, posix_memalign,
 * aligned_alloc and malloc_usable_size are taken from the next allocator.
 * valloc, pvalloc and reallocarray are built here on top of them: an
 * allocator that replaces malloc but not, say, pvalloc would otherwise mix
 * two heaps (RTLD_NEXT would find glibc's pvalloc).
 *
 * _exit and _Exit are interposed too: they skip destructors, and the agent
 * writes its exit summary from them first (agent_on_quick_exit).
 *
 * unshare and setns are interposed because the kernel refuses some of them
 * to a multi-threaded process (a new user namespace; joining a user, mount
 * or time namespace: EINVAL, EUSERS): the agent's background thread leaves
 * first and comes back later (agent_bg_pause/resume in background.c). Only
 * the flags that need a lone thread pause it. A program that makes the
 * system call itself (syscall(SYS_unshare)) is not seen; clone and clone3
 * with CLONE_NEWUSER need no lone thread (the new namespace is the
 * child's), nor does chroot.
 *
 * pipe2 and sigprocmask are interposed for libunwind alone: called from
 * libunwind's code inside a libunwind call of the agent's
 * (agent_unwind_calling), pipe2 fails, so that libunwind's unused
 * validation pipe never lands in the program's descriptor table
 * (unwind_as.c), and sigprocmask does nothing, so that libunwind's locks
 * never block the signals of a program that single-steps itself (unwind.c,
 * "Signals"). Every other call is passed on.
 *
 * Bootstrap: dlsym itself may call calloc/malloc (for its error buffer)
 * before the real functions are known. Those calls, made while this thread
 * is resolving, are served from a static buffer; free() ignores pointers
 * into it and realloc() moves them out.
 *
 * Sanitized programs. ASan, HWASan, TSan, MSan and LSan replace malloc
 * themselves and keep their own metadata for every block; ours on top of
 * theirs is not safe (ASan's runtime may still be initialising when it
 * first calls malloc: its interceptors, dlopen among them, are not yet
 * usable, and the agent's start-up would call them). So the very first
 * thing resolve() does, before any call a sanitizer intercepts, is look
 * for a sanitizer runtime in the process (find_aside_reason: one of
 * their init symbols, found with dlsym(RTLD_DEFAULT): a shared runtime, or
 * clang's static one, which the executable exports). When there is one the
 * agent steps aside for this process: agent_enabled is cleared before the
 * real functions are published, every interposed call goes straight to
 * the next definition, by a tail call (the sanitizer's: valloc, pvalloc
 * and reallocarray too, so its own checks and reports are intact, frame
 * for frame), nothing is counted, no file is written, no thread started
 * (core.c's agent_init prints one line). gcc's -static-libasan,
 * -static-libtsan and -static-liblsan export no such symbol, but their
 * malloc, in the executable, comes before ours, and so do their
 * interceptors of pthread_create and sigaction, which no allocator
 * defines (runtime_in_executable): the agent steps aside for those too
 * (it would see no allocation, and its thread would only disturb the
 * program: a sanitizer numbers it). Any other malloc bound ahead of ours
 * is an allocator's: a shared object loaded before the agent
 * (LD_PRELOAD=libjemalloc.so.2:libheapwatch.so), or one linked into the
 * executable (jemalloc's libjemalloc.a, the program's own). Then the
 * agent runs as usual, sees no allocation (none reaches it), and says so:
 * one stderr line and the summary's malloc_owner (that object's path;
 * agent_shim_malloc_owner), instead of a silent "mallocs 0".
 * UBSan alone has no allocator: the agent profiles such a program as any
 * other.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>      /* struct link_map, ElfW */
#include <malloc.h>    /* prototypes of the functions we define */
#include <sched.h>     /* unshare, setns, CLONE_* */
#include <signal.h>    /* sigprocmask */
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/background.h"
#include "agent/core.h"
#include "agent/hot.h"
#include "agent/live.h"
#include "agent/shim.h"
#include "agent/unwind.h"
#include "agent/thread.h"

typedef void *(*malloc_fn_t)(size_t);
typedef void (*free_fn_t)(void *);
typedef void *(*calloc_fn_t)(size_t, size_t);
typedef void *(*realloc_fn_t)(void *, size_t);
typedef void *(*memalign_fn_t)(size_t, size_t);
typedef int (*posix_memalign_fn_t)(void **, size_t, size_t);
typedef size_t (*usable_fn_t)(void *);
typedef void (*exit_fn_t)(int);
typedef int (*unshare_fn_t)(int);
typedef int (*setns_fn_t)(int, int);
typedef int (*dlclose_fn_t)(void *);
typedef int (*pipe2_fn_t)(int *, int);
typedef int (*sigprocmask_fn_t)(int, const sigset_t *, sigset_t *);

static void *malloc_first(size_t size);
/* real_malloc: malloc_first until the real functions are resolved, so the
 * hot path calls through it without testing it. */
static malloc_fn_t real_malloc = malloc_first;
static free_fn_t real_free;
static calloc_fn_t real_calloc;
static realloc_fn_t real_realloc;
static memalign_fn_t real_memalign;
static memalign_fn_t real_aligned_alloc;    /* may stay NULL: then memalign */
static posix_memalign_fn_t real_posix_memalign;
static exit_fn_t real_exit, real_Exit;      /* resolved up front: never dlsym at exit */
/* Only when the agent steps aside for a sanitizer (the sanitizer's own,
 * with its checks); otherwise built here on malloc/memalign. May be NULL. */
static malloc_fn_t real_valloc, real_pvalloc;
static void *(*real_reallocarray)(void *, size_t, size_t);
static const char *aside_reason;            /* why the agent steps aside, or NULL */
/* This library's own malloc (an alias: &malloc would find the process's). */
void *shim_own_malloc(size_t size);
static unshare_fn_t real_unshare;
static setns_fn_t real_setns;
static dlclose_fn_t real_dlclose;
static pipe2_fn_t real_pipe2;
static sigprocmask_fn_t real_sigprocmask;

static size_t usable_size_unknown(void *p) { (void)p; return 0; }
size_t (*agent_real_usable_size)(void *) = usable_size_unknown;
bool agent_usable_is_glibc;

/* ------------------------------------------------------------------------ */
/* Bootstrap buffer                                                         */
/* ------------------------------------------------------------------------ */

#define BOOT_BYTES (64 * 1024)
#define BOOT_HEADER 16

static unsigned char boot_buf[BOOT_BYTES] __attribute__((aligned(64)));
static size_t boot_used;                 /* bump offset, atomic */
static AGENT_TLS int resolving;          /* this thread is inside dlsym */

/* boot_alloc: zeroed memory from the static buffer, its size in a header. */
static void *boot_alloc(size_t size, size_t align)
{
    if (align < BOOT_HEADER) align = BOOT_HEADER;
    if (size > BOOT_BYTES || align > 4096) return NULL;
    size_t old = __atomic_load_n(&boot_used, __ATOMIC_RELAXED), start, end;
    do {
        start = (old + BOOT_HEADER + align - 1) & ~(align - 1);
        end = start + size;
        if (end > BOOT_BYTES) return NULL;
    } while (!__atomic_compare_exchange_n(&boot_used, &old, end, 1,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    memcpy(boot_buf + start - sizeof(size_t), &size, sizeof size);
    return boot_buf + start;
}

static inline int is_boot(const void *p)
{
    return (uintptr_t)p - (uintptr_t)boot_buf < BOOT_BYTES;   /* one compare */
}

static size_t boot_size(const void *p)
{
    size_t n;
    memcpy(&n, (const unsigned char *)p - sizeof(size_t), sizeof n);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Resolution                                                               */
/* ------------------------------------------------------------------------ */

static void *next_symbol(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

/* next_is_glibc: whether malloc and malloc_usable_size found next are
 * glibc's own (then the usable size is read inline). */
static bool next_is_glibc(void *m, void *usable)
{
    void *libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
    if (!libc) return false;
    bool same = m && usable && dlsym(libc, "malloc") == m &&
                dlsym(libc, "malloc_usable_size") == usable;
    dlclose(libc);
    return same;
}

/* find_aside_reason: what makes the agent step aside in this process
 * (a sanitizer runtime that replaces malloc, shared or linked into the
 * executable), or NULL; it notes in malloc_owner an allocator bound ahead
 * of ours, which the program and its libraries call instead. Only dlsym: a sanitizer does not
 * intercept it, and what it allocates (the error string of a symbol not
 * found) comes from the boot buffer while `resolving` is set. UBSan's
 * runtime is not looked for: it has no allocator of its own. */
/* defines_malloc: the object l defines malloc itself (a malloc symbol
 * with a section), not only a PLT entry standing for it. */
static bool defines_malloc(const struct link_map *l)
{
    void *h = dlopen(l->l_name, RTLD_NOLOAD | RTLD_LAZY);
    if (!h) return false;
    void *m = dlsym(h, "malloc");   /* may be found in one of l's dependencies */
    dlclose(h);
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    return m && dladdr1(m, &info, (void **)&sym, RTLD_DL_SYMENT) && sym &&
           sym->st_shndx != SHN_UNDEF && info.dli_fname && strcmp(info.dli_fname, l->l_name) == 0;
}

/* malloc_before_agent: m, the malloc the program's calls reach
 * (dlsym(RTLD_DEFAULT)), is not the agent's. It may be the executable's
 * PLT entry for malloc (a non-PIE executable that takes malloc's address
 * makes that entry malloc's canonical address, a symbol with no section):
 * then calls go where the entry binds, the first object after the
 * executable, in load order, that defines malloc; only if that is not the
 * agent has a malloc come before ours. */
static bool malloc_before_agent(void *m, struct link_map **owner)
{
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    *owner = NULL;
    if (!dladdr1(m, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym || sym->st_shndx != SHN_UNDEF) {
        /* a definition of malloc, not ours: its object is the owner */
        if (!dladdr1(m, &info, (void **)owner, RTLD_DL_LINKMAP)) *owner = NULL;
        return true;
    }
    Dl_info own;
    if (!dladdr((void *)shim_own_malloc, &own) || !own.dli_fname) return true;
    void *self = dlopen(NULL, RTLD_LAZY | RTLD_NOLOAD);
    struct link_map *l = NULL;
    if (!self) return true;
    bool before = true;
    if (dlinfo(self, RTLD_DI_LINKMAP, &l) == 0 && l) {
        for (l = l->l_next; l; l = l->l_next) {   /* after the executable */
            if (strcmp(l->l_name, own.dli_fname) == 0) {
                before = false;                   /* ours first */
                break;
            }
            if (defines_malloc(l)) {
                *owner = l;
                break;
            }
        }
    }
    dlclose(self);
    return before;
}

/* malloc_owner: the object whose malloc the program's calls reach
 * when it is bound ahead of the agent's (preloaded before it, or linked into the
 * executable), or "". */
static char malloc_owner[4096];   /* a path: PATH_MAX */
static bool malloc_owner_is_executable;   /* malloc_owner is the executable */

/* executable_map: the executable's link map, or NULL. */
static struct link_map *executable_map(void)
{
    void *self = dlopen(NULL, RTLD_LAZY | RTLD_NOLOAD);
    struct link_map *exe = NULL;
    if (self && dlinfo(self, RTLD_DI_LINKMAP, &exe) != 0) exe = NULL;
    if (self) dlclose(self);
    return exe;
}

/* shared_owner: l is a shared object loaded before the agent, not the
 * executable. */
static bool shared_owner(const struct link_map *l, const struct link_map *exe)
{
    return l && l->l_name && l->l_name[0] && exe && exe != l;
}

/* defined_in: the definition of `name` the program's calls reach is the
 * object `l`'s own (a symbol with a section, not a PLT entry). */
static bool defined_in(const char *name, const struct link_map *l)
{
    void *f = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    struct link_map *where = NULL;
    return f && dladdr1(f, &info, (void **)&sym, RTLD_DL_SYMENT) && sym &&
           sym->st_shndx != SHN_UNDEF &&
           dladdr1(f, &info, (void **)&where, RTLD_DL_LINKMAP) && where == l;
}

/* runtime_in_executable: the executable that defines malloc is a
 * sanitizer's static runtime, not an allocator linked in (jemalloc,
 * tcmalloc, mimalloc, a program's own). gcc's -static-libasan,
 * -static-libtsan and -static-liblsan export no init symbol, but every
 * one of them intercepts pthread_create and sigaction, which no allocator
 * defines: the agent steps aside for those. An allocator linked into the
 * executable is treated as one preloaded before the agent. */
static bool runtime_in_executable(const struct link_map *exe)
{
    return defined_in("pthread_create", exe) || defined_in("sigaction", exe);
}

/* set_owner_executable: malloc_owner is the executable's path ("the
 * executable" if /proc is not mounted). */
static void set_owner_executable(void)
{
    ssize_t n = readlink("/proc/self/exe", malloc_owner, sizeof malloc_owner - 1);
    if (n <= 0) {
        static const char unnamed[] = "the executable";
        memcpy(malloc_owner, unnamed, sizeof unnamed);
        n = sizeof unnamed - 1;
    }
    malloc_owner[n] = 0;
    malloc_owner_is_executable = true;
}

static const char *find_aside_reason(void)
{
    static const struct { const char *symbol, *name; } runtimes[] = {
        { "__asan_init", "AddressSanitizer runtime" },
        { "__hwasan_init", "HWAddressSanitizer runtime" },
        { "__tsan_init", "ThreadSanitizer runtime" },
        { "__msan_init", "MemorySanitizer runtime" },
        { "__lsan_init", "LeakSanitizer runtime" },
    };
    for (size_t i = 0; i < sizeof runtimes / sizeof *runtimes; i++)
        if (dlsym(RTLD_DEFAULT, runtimes[i].symbol)) return runtimes[i].name;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    struct link_map *owner;
    if (m && m != (void *)shim_own_malloc && malloc_before_agent(m, &owner)) {
        /* An allocator bound ahead of ours (preloaded before it, or
         * linked into the executable): no sanitizer, nothing to protect;
         * the agent runs, sees no allocation, and its summary names that
         * allocator. */
        struct link_map *exe = executable_map();
        if (shared_owner(owner, exe) && strlen(owner->l_name) < sizeof malloc_owner) {
            memcpy(malloc_owner, owner->l_name, strlen(owner->l_name) + 1);
            return NULL;
        }
        if (owner && owner == exe && !runtime_in_executable(exe)) {
            set_owner_executable();
            return NULL;
        }
        if (owner == exe) return "a sanitizer runtime linked into the executable";
        return "a malloc found before the agent's";
    }
    return NULL;
}

const char *agent_shim_aside_reason(void)
{
    return aside_reason;
}

const char *agent_shim_malloc_owner(void)
{
    return malloc_owner[0] ? malloc_owner : NULL;
}

bool agent_shim_malloc_owner_is_executable(void)
{
    return malloc_owner_is_executable;
}

/* resolve: looks the real functions up once (idempotent, thread-safe: a
 * racing thread resolves the same values). */
static void resolve(void)
{
    /* Inside the agent: whatever dlsym allocates is never counted. */
    agent_enter();
    resolving = 1;
    /* First, before anything a sanitizer intercepts (see the top). */
    aside_reason = find_aside_reason();
    (void)dlerror();           /* the program's dlerror() must not see our misses */
    if (aside_reason) {
        agent_enabled = 0;     /* before real_malloc is published below */
        real_valloc = (malloc_fn_t)next_symbol("valloc");
        real_pvalloc = (malloc_fn_t)next_symbol("pvalloc");
        real_reallocarray = (void *(*)(void *, size_t, size_t))next_symbol("reallocarray");
    }
    real_free = (free_fn_t)next_symbol("free");
    real_calloc = (calloc_fn_t)next_symbol("calloc");
    real_realloc = (realloc_fn_t)next_symbol("realloc");
    real_memalign = (memalign_fn_t)next_symbol("memalign");
    real_aligned_alloc = (memalign_fn_t)next_symbol("aligned_alloc");
    real_posix_memalign = (posix_memalign_fn_t)next_symbol("posix_memalign");
    real_exit = (exit_fn_t)next_symbol("_exit");
    real_Exit = (exit_fn_t)next_symbol("_Exit");
    real_unshare = (unshare_fn_t)next_symbol("unshare");
    real_setns = (setns_fn_t)next_symbol("setns");
    real_dlclose = (dlclose_fn_t)next_symbol("dlclose");
    real_pipe2 = (pipe2_fn_t)next_symbol("pipe2");
    real_sigprocmask = (sigprocmask_fn_t)next_symbol("sigprocmask");
    usable_fn_t usable = (usable_fn_t)next_symbol("malloc_usable_size");
    if (usable) agent_real_usable_size = usable;
    /* malloc last: it is the flag that everything is resolved. */
    malloc_fn_t m = (malloc_fn_t)next_symbol("malloc");
    /* next_is_glibc calls dlopen, which ASan intercepts (and cannot serve
     * while its runtime initialises); the answer does not matter when the
     * agent steps aside. */
    agent_usable_is_glibc = aside_reason ? false : next_is_glibc((void *)m, (void *)usable);
    resolving = 0;
    /* Before the fast path can run: free() of NULL or of a boot block must
     * always reach free_slow. */
    agent_live_filter_pin(NULL, 1);
    agent_live_filter_pin(boot_buf, __atomic_load_n(&boot_used, __ATOMIC_RELAXED));
    if (!m || !real_free || !real_calloc || !real_realloc) {
        static const char msg[] = "heapwatch: cannot find the real malloc functions; aborting\n";
        ssize_t r = write(2, msg, sizeof msg - 1);
        (void)r;
        _exit(127);
    }
    __atomic_store_n(&real_malloc, m, __ATOMIC_RELEASE);
    agent_leave();
}

/* ready: whether the real functions are known (resolving them if not);
 * false only inside dlsym, where the caller must use the boot buffer. */
static inline int ready(void)
{
    if (AGENT_LIKELY(__atomic_load_n(&real_malloc, __ATOMIC_ACQUIRE) != malloc_first)) return 1;
    if (resolving) return 0;
    resolve();
    return 1;
}

void agent_shim_init(void)
{
    (void)ready();
}

/* ------------------------------------------------------------------------ */
/* Interposed functions                                                     */
/* ------------------------------------------------------------------------ */

/* malloc_first: real_malloc until resolution: resolves, or serves dlsym's
 * own allocations from the boot buffer. */
static void *malloc_first(size_t size)
{
    if (!ready()) return boot_alloc(size, 16);
    return real_malloc(size);
}

/*
 * Each allocation function passes the call on as a tail call when the
 * agent is off (stepped aside for a sanitizer, or setuid): no agent frame
 * is then left on the stack. A sanitizer records where a block was
 * allocated from its interceptor's return address (TSan) or a frame-pointer
 * walk (ASan, LSan, MSan); with a frame of ours in between, the program's
 * allocating function vanished from its reports ("previously allocated
 * by", "Location is heap block ... allocated by"). The test costs malloc
 * three instructions (load, test, branch; malloc_inert keeps the compiler
 * from hoisting the call's target above it).
 */
__attribute__((noinline, cold)) static void *malloc_inert(size_t size)
{
    return real_malloc(size);          /* a tail call, as malloc's to here */
}

/* alloc_slow: agent_on_alloc_slow, except for an allocation of libunwind's
 * own inside a libunwind call of the agent's (its address space, made at
 * the first sample: unwind_as.c), which is the agent's, never counted. ra:
 * the allocation function's return address. */
__attribute__((noinline, cold)) static void *alloc_slow(void *p, const void *ra)
{
    if (agent_unwind_calling(ra)) return p;
    return agent_on_alloc_slow(p);
}

AGENT_EXPORT void *malloc(size_t size)
{
    if (AGENT_UNLIKELY(!agent_enabled)) return malloc_inert(size);
    void *p = real_malloc(size);
    agent_thread_t *t = agent_tls.fast;
    if (AGENT_UNLIKELY(t == NULL || p == NULL)) return p ? alloc_slow(p, __builtin_return_address(0)) : p;
    return agent_count_alloc_glibc(t, p);
}

#if defined(__has_attribute) && __has_attribute(copy)
void *shim_own_malloc(size_t size) __attribute__((alias("malloc"), copy(malloc)));
#else
void *shim_own_malloc(size_t size) __attribute__((alias("malloc")));
#endif

/* free_slow: every free the fast path declines: NULL, the boot buffer,
 * a thread outside the fast path, a pointer the live filter does not
 * clear (sampled, a false positive, or in a pinned slot), an mmap'd chunk. */
__attribute__((noinline)) static void free_slow(void *ptr, const void *ra)
{
    if (ptr == NULL || is_boot(ptr)) return;
    if (!agent_unwind_calling(ra)) agent_on_free_slow(ptr);   /* see alloc_slow */
    real_free(ptr);
}

/* free: NULL and the boot buffer are pinned in the live filter, so one
 * filter test sends them, and sampled pointers, to free_slow. */
AGENT_EXPORT void free(void *ptr)
{
    agent_thread_t *t = agent_tls.fast;
    if (AGENT_UNLIKELY(t == NULL || agent_maybe_sampled(ptr) || !agent_free_fast(t, ptr))) {
        free_slow(ptr, __builtin_return_address(0));
        return;
    }
    real_free(ptr);
}

AGENT_EXPORT void *calloc(size_t n, size_t size)
{
    if (AGENT_UNLIKELY(!ready())) {
        size_t total;
        if (__builtin_mul_overflow(n, size, &total)) return NULL;
        return boot_alloc(total, 16);
    }
    if (AGENT_UNLIKELY(!agent_enabled)) return real_calloc(n, size);
    void *p = real_calloc(n, size);
    if (AGENT_UNLIKELY(p == NULL)) return p;
    if (AGENT_UNLIKELY(agent_tls.fast == NULL)) return alloc_slow(p, __builtin_return_address(0));
    return agent_on_alloc(p);
}

/*
 * realloc counts, whether the block moved or was resized in place:
 *   realloc(NULL, n)          one allocation (it is malloc);
 *   realloc(p, n) succeeding  one free of p and one allocation of the
 *                             result, so live objects do not change and
 *                             live bytes change by the usable-size delta;
 *   realloc(p, n) failing     nothing (p is untouched);
 *   realloc(p, 0) freeing p   one free (glibc returns NULL after freeing;
 *                             other allocators return a fresh block, which
 *                             counts as above).
 */
AGENT_EXPORT void *realloc(void *ptr, size_t size)
{
    if (ptr == NULL) return malloc(size);
    if (AGENT_UNLIKELY(is_boot(ptr))) {
        void *q = malloc(size ? size : 1);
        if (q) {
            size_t old = boot_size(ptr);
            memcpy(q, ptr, old < size ? old : size);
        }
        return q;
    }
    if (AGENT_UNLIKELY(!ready())) return NULL;
    if (AGENT_UNLIKELY(!agent_enabled)) return real_realloc(ptr, size);
    /* Report the free first: once the real realloc returns, the old address
     * may already belong to another thread's allocation. A failure is then
     * answered by reporting the block again. */
    agent_realloc_t r;
    agent_on_realloc_before(ptr, &r);
    void *q = real_realloc(ptr, size);
    agent_on_realloc_after(&r, ptr, q, size);
    return q;
}

AGENT_EXPORT void *reallocarray(void *ptr, size_t n, size_t size)
{
    if (AGENT_UNLIKELY(real_reallocarray != NULL)) return real_reallocarray(ptr, n, size);
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(ptr, total);
}

AGENT_EXPORT void *memalign(size_t align, size_t size)
{
    if (AGENT_UNLIKELY(!ready())) return boot_alloc(size, align);
    if (AGENT_UNLIKELY(!agent_enabled)) return real_memalign(align, size);
    void *p = real_memalign(align, size);
    if (AGENT_LIKELY(p != NULL)) agent_on_alloc(p);
    return p;
}

AGENT_EXPORT void *aligned_alloc(size_t align, size_t size)
{
    if (AGENT_UNLIKELY(!ready())) return boot_alloc(size, align);
    if (AGENT_UNLIKELY(!agent_enabled))
        return real_aligned_alloc ? real_aligned_alloc(align, size) : real_memalign(align, size);
    void *p = real_aligned_alloc ? real_aligned_alloc(align, size)
                                 : real_memalign(align, size);
    if (AGENT_LIKELY(p != NULL)) agent_on_alloc(p);
    return p;
}

AGENT_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    if (AGENT_UNLIKELY(!ready())) {
        void *p = boot_alloc(size, align);
        if (!p) return ENOMEM;
        *out = p;
        return 0;
    }
    if (AGENT_UNLIKELY(!agent_enabled)) return real_posix_memalign(out, align, size);
    int err = real_posix_memalign(out, align, size);
    if (err == 0 && *out != NULL) agent_on_alloc(*out);
    return err;
}

static size_t page_size(void)
{
    static size_t cached;
    if (!cached) cached = (size_t)sysconf(_SC_PAGESIZE);
    return cached;
}

AGENT_EXPORT void *valloc(size_t size)
{
    if (AGENT_UNLIKELY(real_valloc != NULL)) return real_valloc(size);
    return memalign(page_size(), size);
}

AGENT_EXPORT void *pvalloc(size_t size)
{
    if (AGENT_UNLIKELY(real_pvalloc != NULL)) return real_pvalloc(size);
    size_t pg = page_size();
    size_t rounded;
    if (__builtin_add_overflow(size, pg - 1, &rounded)) {
        errno = ENOMEM;
        return NULL;
    }
    rounded &= ~(pg - 1);
    return memalign(pg, rounded ? rounded : pg);
}

/* quick_exit_common: summary first, then the real _exit (or the system
 * call itself if it cannot be found). */
__attribute__((noreturn)) static void quick_exit_common(exit_fn_t real, int status)
{
    agent_on_quick_exit();
    if (real) real(status);
    syscall(SYS_exit_group, status);
    __builtin_unreachable();
}

AGENT_EXPORT void _exit(int status)
{
    quick_exit_common(real_exit, status);
}

AGENT_EXPORT void _Exit(int status)
{
    quick_exit_common(real_Exit, status);
}

/* ------------------------------------------------------------------------ */
/* Namespaces                                                               */
/* ------------------------------------------------------------------------ */

/* unshare: a new user namespace (and CLONE_VM, CLONE_SIGHAND,
 * CLONE_THREAD) requires a process with one thread. */
AGENT_EXPORT int unshare(int flags)
{
    (void)ready();
    bool alone = flags & (CLONE_NEWUSER | CLONE_VM | CLONE_SIGHAND | CLONE_THREAD);
    if (alone) agent_bg_pause();
    int r = real_unshare ? real_unshare(flags) : (int)syscall(SYS_unshare, flags);
    int saved = errno;
    if (alone) agent_bg_resume();
    errno = saved;
    return r;
}

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* setns: joining a user namespace, a mount namespace (whose fs_struct the
 * threads share) or a time namespace requires one thread; nstype 0 may be
 * any of them. */
AGENT_EXPORT int setns(int fd, int nstype)
{
    (void)ready();
    bool alone = nstype == 0 || (nstype & (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWTIME));
    if (alone) agent_bg_pause();
    int r = real_setns ? real_setns(fd, nstype) : (int)syscall(SYS_setns, fd, nstype);
    int saved = errno;
    if (alone) agent_bg_resume();
    errno = saved;
    return r;
}

/* ------------------------------------------------------------------------ */
/* Unloaded code                                                            */
/* ------------------------------------------------------------------------ */

/* dlclose: code may be unmapped, and another library loaded at its
 * address later: the unwinder's recipes learnt so far are forgotten
 * (unwind.c). */
AGENT_EXPORT int dlclose(void *handle)
{
    (void)ready();
    int r = real_dlclose ? real_dlclose(handle) : -1;
    int saved = errno;
    agent_unwind_code_unloaded();
    errno = saved;
    return r;
}

/* ------------------------------------------------------------------------ */
/* libunwind's own calls                                                    */
/* ------------------------------------------------------------------------ */

/* pipe2: EMFILE to libunwind inside the agent's libunwind calls (its
 * validation pipe: unwind_as.c), the next pipe2 for every other caller.
 * noinline: the return address must be the caller's. */
AGENT_EXPORT __attribute__((noinline)) int pipe2(int fds[2], int flags)
{
    if (AGENT_UNLIKELY(agent_unwind_calling(__builtin_return_address(0)))) {
        errno = EMFILE;
        return -1;
    }
    (void)ready();
    return real_pipe2 ? real_pipe2(fds, flags) : (int)syscall(SYS_pipe2, fds, flags);
}

/* sigprocmask: nothing for libunwind inside the agent's libunwind calls
 * (unwind.c, "Signals": its locks would block SIGTRAP in a program that
 * single-steps itself), the next sigprocmask for every other caller. */
AGENT_EXPORT __attribute__((noinline)) int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
    if (AGENT_UNLIKELY(agent_unwind_calling(__builtin_return_address(0)))) return 0;
    (void)ready();
    return real_sigprocmask ? real_sigprocmask(how, set, old)
                            : (int)syscall(SYS_rt_sigprocmask, how, set, old, (size_t)(_NSIG / 8));
}
