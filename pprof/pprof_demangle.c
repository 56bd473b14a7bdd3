/*
 * pprof_demangle.c - C++ names people can read: Function.name demangled,
 * Function.system_name the linker's (mangled) symbol.
 *
 * Why here and not in pprof: a profile read by heapwatch's own report, or
 * an alert record, has no demangler behind it; and go tool pprof keeps a
 * name that differs from its system_name as it is (it demangles only
 * functions whose name equals their system name), so the one profile
 * reads the same everywhere.
 *
 * Which demangler: libiberty's cplus_demangle_v3_callback (the one behind
 * c++filt and gdb), linked statically and hidden (agent/agent.mk). Its
 * callback form allocates nothing (__cxa_demangle mallocs, which the agent
 * may not call): it builds its component tree in arrays on the stack,
 * sized from the mangled length, and prints recursively. Flags: parameters
 * and cv-qualifiers (DMGL_PARAMS | DMGL_ANSI), as c++filt prints them.
 *
 * Stack. That stack use grows with the mangled length: measured (libiberty
 * 20230104) at 13.6 KiB for libstdc++'s longest exported name (177 bytes),
 * 47.6 KiB for libLLVM-14's longest (545 bytes) and, for hostile nesting
 * (`_Z1fPPPP...Pi`), about 425 bytes per mangled byte: 214 KiB at 505
 * bytes. Symbolization runs on whatever stack its caller has: the agent's
 * background worker (256 KiB), an allocating thread of the program whose
 * job fell due (HEAPWATCH_THREAD=off), the exiting thread, which may be in
 * a signal handler on a small sigaltstack. So the demangler never runs on
 * the caller's stack: every call runs on this module's own stack
 * (PP_DEMANGLE_STACK, 512 KiB mapped anonymously once, below it a guard
 * page), entered with swapcontext, and names longer than
 * PP_DEMANGLE_MAX_MANGLED (512 bytes: 2.4 times below the stack at the
 * worst rate measured) stay mangled, as does a name whose demangled form
 * passes PP_DEMANGLE_MAX_OUT (4096 bytes) or that libiberty refuses.
 * While on that stack every signal is blocked (the context's mask): a
 * handler cannot run on it, and a second signal for a sigaltstack handler
 * cannot be delivered while the kernel would no longer see us on the
 * sigaltstack (it would build its frame over the interrupted one).
 * swapcontext restores the caller's mask on the way back.
 *
 * One stack for the process: a pass claims it with a compare-and-swap of
 * its owner (the pid: a child of fork finds its parent's pid there when a
 * thread was demangling at the fork, and takes it over); a pass that finds
 * it busy in its own process demangles nothing (names stay mangled in that
 * profile: never a wait). The agent symbolizes under its profile lock, so
 * this only happens to other callers.
 *
 * Cost: one demangle per distinct mangled function per profile (about a
 * microsecond each for typical names) and two sigprocmask calls per pass.
 */
#define _GNU_SOURCE
#include <libiberty/demangle.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "pprof/pprof_internal.h"

/* pass_t: one pass over a builder's functions, run on the module stack. */
typedef struct pass_s {
    pprof_builder_t *b;
    size_t first, end;       /* functions [first, end) to look at */
    uint32_t *remap;         /* end - first: new index, or UINT32_MAX */
    size_t done;             /* names demangled */
    pprof_err_t err;
} pass_t;

/* out_t: the demangled text being printed. */
typedef struct out_s {
    char buf[PP_DEMANGLE_MAX_OUT + 1];
    size_t len;
    bool overflow;
} out_t;

static void *stack_base;     /* the mapping (guard page first), or NULL */
static int stack_owner;      /* pid of the process using it, 0: free (atomic) */
static ucontext_t back_ctx, run_ctx;
static pass_t *run_pass;     /* the pass on the stack (while owned) */
static out_t run_out;        /* (while owned) */

static void put(const char *s, size_t n, void *opaque)
{
    out_t *o = opaque;
    if (o->overflow || n > PP_DEMANGLE_MAX_OUT - o->len) {
        o->overflow = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

/* demangle_here: the demangled form of mangled into o; false when it
 * stays mangled. Only on the module stack. */
static bool demangle_here(const char *mangled, size_t len, out_t *o)
{
    o->len = 0;
    o->overflow = false;
    if (len < 3 || len > PP_DEMANGLE_MAX_MANGLED || mangled[0] != '_' || mangled[1] != 'Z')
        return false;
    if (!cplus_demangle_v3_callback(mangled, DMGL_PARAMS | DMGL_ANSI, put, o)) return false;
    if (o->overflow || o->len == 0) return false;
    o->buf[o->len] = '\0';
    return true;
}

/* pass_main: the pass, on the module stack. */
static void pass_main(void)
{
    pass_t *p = run_pass;
    pprof_builder_t *b = p->b;
    for (size_t i = p->first; i < p->end && p->err == PPROF_OK; i++) {
        p->remap[i - p->first] = UINT32_MAX;
        pp_func_t f = PP_VEC_AT(&b->funcs, pp_func_t, i);
        if (f.name != f.system_name) continue;   /* already a readable name */
        const char *s = pp_str(b, f.name);
        size_t len = PP_VEC_AT(&b->str_lens, uint32_t, f.name);
        if (!demangle_here(s, len, &run_out)) continue;
        uint32_t name, idx;
        p->err = pp_str_intern(b, run_out.buf, run_out.len, &name);
        if (p->err == PPROF_OK) p->err = pp_func_intern(b, name, f.system_name, f.filename, &idx);
        if (p->err == PPROF_OK) {
            p->remap[i - p->first] = idx;
            p->done++;
        }
    }
}

/* claim: the module stack for this pass, mapped on first use; false when
 * a thread of this process is using it (or it cannot be mapped). */
static bool claim(void)
{
    int me = (int)getpid(), cur = 0;
    if (!__atomic_compare_exchange_n(&stack_owner, &cur, me, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)) {
        /* A parent's claim inherited through fork is stale: take it. */
        if (cur == me || !__atomic_compare_exchange_n(&stack_owner, &cur, me, false,
                                                      __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return false;
    }
    if (!stack_base) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        void *m = mmap(NULL, PP_DEMANGLE_STACK + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (m == MAP_FAILED) goto fail;
        if (mprotect(m, page, PROT_NONE) != 0) {
            munmap(m, PP_DEMANGLE_STACK + page);
            goto fail;
        }
        stack_base = m;
    }
    return true;
fail:
    __atomic_store_n(&stack_owner, 0, __ATOMIC_RELEASE);
    return false;
}

/* run_on_stack: pass_main on the module stack, every signal blocked. */
static bool run_on_stack(pass_t *p)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    run_pass = p;
    if (getcontext(&run_ctx) != 0) return false;
    run_ctx.uc_stack.ss_sp = (char *)stack_base + page;
    run_ctx.uc_stack.ss_size = PP_DEMANGLE_STACK;
    run_ctx.uc_link = &back_ctx;
    sigfillset(&run_ctx.uc_sigmask);
    makecontext(&run_ctx, pass_main, 0);
    return swapcontext(&back_ctx, &run_ctx) == 0;
}

pprof_err_t pp_demangle_functions(pprof_builder_t *b)
{
    size_t first = b->demangled, end = b->funcs.len;
    if (first >= end) return PPROF_OK;
    /* Only a mangled name is worth the trip to the other stack. */
    bool any = false;
    for (size_t i = first; i < end && !any; i++) {
        const pp_func_t *f = &PP_VEC_AT(&b->funcs, pp_func_t, i);
        const char *s = pp_str(b, f->name);
        any = f->name == f->system_name && s[0] == '_' && s[1] == 'Z';
    }
    if (!any) {
        b->demangled = end;
        return PPROF_OK;
    }
    pass_t p = { b, first, end, NULL, 0, PPROF_OK };
    p.remap = b->a.alloc(b->a.ctx, (end - first) * sizeof(uint32_t));
    if (!p.remap) return PPROF_ERR_NOMEM;
    if (!claim()) {   /* busy: this profile keeps mangled names */
        b->a.free(b->a.ctx, p.remap);
        return PPROF_OK;
    }
    bool ran = run_on_stack(&p);
    __atomic_store_n(&stack_owner, 0, __ATOMIC_RELEASE);
    if (ran && p.done) {
        pp_loc_t *locs = b->locs.data;
        for (size_t i = 0; i < b->locs.len; i++) {
            uint32_t f = locs[i].function;
            if (f == 0 || f - 1 < first || f - 1 >= end) continue;
            uint32_t to = p.remap[f - 1 - first];
            if (to != UINT32_MAX) locs[i].function = to + 1;
        }
    }
    b->a.free(b->a.ctx, p.remap);
    if (p.err != PPROF_OK) return p.err;
    /* The functions demangled into are new ones past end: never mangled
     * (name != system_name), so the next pass starts after them. */
    b->demangled = b->funcs.len;
    return PPROF_OK;
}
