/*
 * unwind.c - the call stacks of sampled allocations, captured by a walk of
 * our own: recipes cached per frame for the fast path, libunwind for the
 * rest, run in an address space of ours (unwind_as.c, which says why not
 * libunwind's local unwinder). stacks.c interns what is captured.
 *
 *  - Reads. The stack slots a recipe names are read directly while the
 *    walk is "trusted": every step since the capture's own registers came
 *    from DWARF (recipes, and signal frames, whose ucontext the kernel
 *    wrote), the trust libunwind's local fast tracer gave its cached
 *    frames. Every other word (after a frame-pointer guess or a libunwind
 *    step, code at an ip, libunwind's own reads) goes through unwind_as.c's
 *    checked reads: process_vm_readv on this process, which fails with
 *    EFAULT instead of faulting. No descriptor.
 *  - Recipes (the fast path). Like libunwind's own fast tracer, the walk
 *    caches per lookup address how to leave a frame: the CFA as rsp or rbp
 *    plus an offset, the return address at CFA - 8, the caller's rbp
 *    unchanged or at CFA plus an offset. A missing recipe is learnt by a
 *    probe: libunwind takes one step from a fake frame whose rsp and rbp
 *    point into two fake regions never read (access_mem makes up each word
 *    there as its own address plus UNWIND_FAKE_MARK), and where it found
 *    the CFA, the return address and rbp tells the recipe; any other rule
 *    (a CFA expression, another base register) makes the frame R_SLOW.
 *    Recipes live in a lock-free table (RCACHE_BITS, 4 ways; a slot holds
 *    key xor recipe beside the recipe, so a half-written slot reads as a
 *    miss), so a stack whose recipes are known takes no lock and blocks no
 *    signal (a program that single-steps itself, tests/integration/progs/
 *    life_step, dies if SIGTRAP is blocked across an allocation). Recipes
 *    are dropped only when code may have been unloaded (dlclose: a
 *    generation mixed into each slot's check, agent_unwind_code_unloaded),
 *    so other code loaded at the same address never follows a stale one.
 *  - Other frames. A signal trampoline (__restore_rt's code at the return
 *    address) is left from the ucontext it returns to; a frame without
 *    unwind info by its frame-pointer chain (rbp at most FP_SPAN = 1 MiB
 *    above sp, the return address inside a loaded object's code: else the
 *    stack ends there); any other frame by one libunwind step from rip, rsp
 *    and rbp (what libunwind's fast tracer does for its uncacheable frames).
 *  - unwind_lock. libunwind's register-state cache is unguarded as we use
 *    it (unwind_as.c), so every libunwind call (probes, single steps) is
 *    made under unwind_lock. A thread whose signal handler interrupted its
 *    own libunwind call never waits for it: that stack ends at the frame it
 *    needed, and nothing is cached for it; another thread's hold is one
 *    step, waited for a bounded time (unwind_lock_take). It is taken with
 *    no other lock (capture runs before interning). fork: prefork (fork.c,
 *    after the stack table's stripes) tries it UNWIND_FORK_TRIES times; a
 *    child forked while another thread held it never calls libunwind again
 *    (its locks may be held forever): it unwinds with the recipes it
 *    inherited. libunwind itself is set up at the first such call
 *    (as_ready; unwind_as.c, "Start-up at the first sample"), not at
 *    start.
 *  - Signals. libunwind's own locks (its set-up, its unwind-info pool:
 *    several per probe) block every signal with sigprocmask. A program
 *    that single-steps itself then dies: the kernel kills a thread whose
 *    SIGTRAP is blocked (tests/integration/progs/life_stepnew: a malloc
 *    stepped from a call site never seen before, at rate 1). unwind_lock
 *    already keeps a signal handler on this thread out of libunwind (it
 *    never waits for it: see above), which is what the blocking was for;
 *    so shim.c's sigprocmask does nothing for a call from libunwind's code
 *    while this thread holds unwind_lock (agent_unwind_calling, by the
 *    return address: a handler that interrupted libunwind is the
 *    program's, and its own calls pass). That also saves a short process
 *    two system calls per lock (cc1 on an empty file: about 250).
 *  - The last walk, replayed. Each thread logs its last walk; the next one
 *    takes the frames it shares with it from the log after checking the
 *    words they were read from (see that section).
 * Bounds: AGENT_MAX_FRAMES + 8 frames per walk; 16384 recipes (256 KiB);
 * 4.6 KiB per thread that samples (agent_walk_memo_t).
 * Start. A walk starts from rip, rsp and rbp read by agent_stack_capture
 * itself (three instructions), not from unw_getcontext, which also saved
 * every other register and the x87 environment: the walk never needs
 * them (a slow step or a probe hands libunwind a context of its own).
 * A sample's walk starts further out (agent_stack_capture_from): at the
 * frame that called agent_sample_slow, whose return address, stack
 * pointer and rbp sample.c's entry stub read at its first instruction;
 * the capture, record and agent_sample_slow frames are never walked.
 * Cost: a stack whose recipes are known costs what libunwind's fast tracer
 * did (a table lookup and one or two loads per frame); a frame whose
 * recipe is R_SLOW costs a libunwind step each time, and every frame after
 * a guess a system call per new page. Without process_vm_readv (a seccomp
 * filter that refuses it, a kernel without CONFIG_CROSS_MEMORY_ATTACH),
 * stacks end at the first frame that needs a checked read; never a fault.
 * The innermost frames may be the agent's own (agent_stack_capture's
 * walk starts in it; a sample's starts at the caller of the slow path,
 * which may be an interposed function that called it); every leading
 * frame whose address lies in
 * libheapwatch.so's executable segment is dropped, so pcs[0] is the return
 * address in the allocation function's caller: what SPEC asks ("no agent
 * frames"), and robust to inlining, which a fixed skip count is not.
 */
#define _GNU_SOURCE
#include <libunwind.h>                   /* generic API: libunwind-x86_64 */
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <ucontext.h>

#include "agent/lock.h"
#include "agent/log.h"
#include "agent/stacks.h"
#include "agent/unwind.h"
#include "agent/unwind_as.h"
#include "map/map.h"

static unw_addr_space_t self_as;         /* our address space (unwind_as.c), under unwind_lock */
static bool self_as_set_up;              /* libunwind set up in it (as_ready), under unwind_lock */
static bool unwind_ready;                /* agent_unwind_init ran */
static bool unwind_broken;               /* libunwind could not be set up: no stacks (atomic) */
static uintptr_t own_lo, own_hi;         /* libheapwatch.so's executable segment */
static uintptr_t libunwind_lo, libunwind_hi;   /* libunwind-x86_64's (agent_unwind_calling) */

#ifdef HEAPWATCH_TEST
void agent_stacks_test_own_range(uintptr_t lo, uintptr_t hi)   /* see stacks.h */
{
    own_lo = lo;
    own_hi = hi;
}
#endif

/* ---- The unwind lock ----------------------------------------------------- */

/* unwind_lock: one libunwind call at a time (its caches are not thread-
 * safe the way we use them, see top). Never waited for by the thread that
 * holds it (a signal handler that allocates, interrupting a libunwind
 * call): that stack ends there. Another thread's hold is a single step or
 * probe, so a thread that finds it taken tries again for a bounded time
 * (UNWIND_WAIT_NS) before it ends its stack: two threads that
 * meet a new frame at once both get the whole stack. */
static pthread_mutex_t unwind_lock = PTHREAD_MUTEX_INITIALIZER;
static AGENT_TLS bool unwind_mine;       /* this thread holds unwind_lock */
static bool unwind_off;                  /* a child forked while libunwind ran: never again */
#define UNWIND_WAIT_NS 20000000ull      /* 20 ms: another thread's step or probe takes microseconds */

static bool as_ready(void);

/* unwind_lock_take: unwind_lock, and libunwind set up (as_ready); false
 * (nothing taken) when either cannot be had. */
static bool unwind_lock_take(void)
{
    if (unwind_off || unwind_mine) return false;
    /* The flag goes up before the lock is tried: a signal handler that
     * allocates on this thread from here on never waits for it. */
    unwind_mine = true;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    uint64_t deadline = 0;
    while (!agent_lock_ranked_until(&unwind_lock, AGENT_RANK_UNWIND, 0)) {   /* one try */
        uint64_t now = agent_mono_ns();
        if (!deadline) deadline = now + UNWIND_WAIT_NS;
        if (unwind_off || now >= deadline) {
            unwind_mine = false;
            return false;
        }
        sched_yield();
    }
    if (as_ready()) return true;
    agent_unlock_ranked(&unwind_lock, AGENT_RANK_UNWIND);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    unwind_mine = false;
    return false;
}

static void unwind_lock_give(void)
{
    agent_unlock_ranked(&unwind_lock, AGENT_RANK_UNWIND);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    unwind_mine = false;   /* after the unlock: see unwind_lock_take */
}

bool agent_unwind_calling(const void *ra)
{
    uintptr_t a = (uintptr_t)ra;
    return unwind_mine && a >= libunwind_lo && a < libunwind_hi;
}

/* ---- libunwind's set-up, at the first call ------------------------------- */

/* as_ready: our address space (self_as) made and libunwind set up in it,
 * at the first libunwind call of the process, under unwind_lock. Why not
 * at start-up: that cost a short process about 90 us, a third of the
 * agent's start-up, and most short processes never sample (the walk itself
 * needs libunwind only for frames it has no recipe for). The address
 * space is libunwind's own malloc, inside a sample: shim.c leaves it
 * uncounted by its caller (agent_unwind_calling). When it cannot be made:
 * one stderr line, and every capture from then on is empty
 * (unwind_broken). */
static bool as_ready(void)
{
    AGENT_ASSERT_HELD(AGENT_RANK_UNWIND);
    if (self_as_set_up) return true;
    if (__atomic_load_n(&unwind_broken, __ATOMIC_RELAXED)) return false;
    if (!self_as) self_as = agent_unwind_as_create();
    if (!self_as || !agent_unwind_as_set_up(self_as)) {
        __atomic_store_n(&unwind_broken, true, __ATOMIC_RELAXED);
        agent_log("heapwatch: libunwind could not be set up; sampled allocations get no stack\n");
        return false;
    }
    self_as_set_up = true;
    return true;
}
static AGENT_TLS bool unwind_held_at_fork;         /* prefork got unwind_lock */

/* ---- Reads and the agent's own frames ------------------------------------ */

/* stack_word: a word the current recipe says is on the stack: read
 * directly while the walk is trusted (see top), else as
 * agent_unwind_read_word. */
static bool stack_word(agent_unwind_walk_t *w, uintptr_t a, uint64_t *val)
{
    if (w->trusted) {
        memcpy(val, (const void *)a, sizeof *val);
        return true;
    }
    /* Through a word of its own: a walk's registers whose address no
     * call takes stay in registers (see walk). */
    uint64_t v;
    if (!agent_unwind_read_word(w, a, &v)) return false;
    *val = v;
    return true;
}

/* segment_t: the executable PT_LOAD of the object that holds probe. */
typedef struct segment_s {
    uintptr_t probe, lo, hi;
} segment_t;

static int find_segment(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    segment_t *seg = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        uintptr_t hi = lo + ph->p_memsz;
        if (seg->probe >= lo && seg->probe < hi) {
            seg->lo = lo;
            seg->hi = hi;
            return 1;
        }
    }
    return 0;
}

static bool is_own(uint64_t pc)
{
    return pc >= own_lo && pc < own_hi;
}

/* ---- Recipes: the fast path ---------------------------------------------- */

/* A recipe says how to leave the frame whose unwind info is looked up at
 * an address: kind, then for R_STD the CFA (the caller's stack pointer) as
 * rsp or rbp plus an offset, the return address at CFA - 8, and the
 * caller's rbp either unchanged or saved at CFA + an offset. */
enum { R_NONE = 0, R_STD = 1, R_END = 2, R_SLOW = 3 };
#define R_NOINFO 4u                      /* R_SLOW: no unwind info at all */
#define R_KIND(r) ((unsigned)((r) & 3))
#define R_CFA_RBP 4u                     /* CFA from rbp (else rsp) */
#define R_RBP_SAVED 8u                   /* caller's rbp at CFA + rbp_off */
#define R_CFA_OFF(r) ((int64_t)(int32_t)(uint32_t)((r) >> 8))
#define R_RBP_OFF(r) ((int64_t)((int64_t)(r) >> 40))
#define RCACHE_BITS 14                   /* 16384 recipes, 256 KiB */
#define RCACHE_WAYS 4

/* rslot_t: one cached recipe. x is the lookup address xor the recipe, so a
 * reader that meets a half-written slot (no lock) sees x ^ r != key and
 * misses, rather than taking another address's recipe. */
typedef struct rslot_s {
    uint64_t x, r;
} rslot_t;

static rslot_t rcache[1u << RCACHE_BITS];
/* rcache_gen: bumped when code may have been unmapped (dlclose: shim.c);
 * mixed into every slot's check, so recipes learnt before are misses and
 * another library loaded at the same address is probed afresh. */
static uint64_t rcache_gen;

/* gen_mix_of: what generation gen mixes into a slot's check. */
static uint64_t gen_mix_of(uint64_t gen)
{
    return gen * 0x9e3779b97f4a7c15ull;
}

static uint64_t gen_mix(void)
{
    return gen_mix_of(__atomic_load_n(&rcache_gen, __ATOMIC_ACQUIRE));
}

void agent_unwind_code_unloaded(void)
{
    __atomic_add_fetch(&rcache_gen, 1, __ATOMIC_ACQ_REL);
}

static unsigned rcache_index(uint64_t key)
{
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    return (unsigned)(h >> (64 - RCACHE_BITS));
}

/* rcache_get: key's recipe, or R_NONE. gmix: gen_mix(), read once per
 * walk by the caller (a walk that races a dlclose may use recipes of the
 * generation it started with: the code it is walking was mapped then). */
static uint64_t rcache_get(uint64_t key, uint64_t gmix)
{
    unsigned i = rcache_index(key);
    uint64_t want = key ^ gmix;
    for (unsigned k = 0; k < RCACHE_WAYS; k++) {
        rslot_t *sl = &rcache[(i + k) & ((1u << RCACHE_BITS) - 1)];
        uint64_t r = __atomic_load_n(&sl->r, __ATOMIC_ACQUIRE);
        uint64_t x = __atomic_load_n(&sl->x, __ATOMIC_ACQUIRE);
        if (r && (x ^ r) == want) return r;
    }
    return R_NONE;
}

/* rcache_put: into the first empty way, else over the first (the table
 * is a cache: a recipe lost is probed again). */
static void rcache_put(uint64_t key, uint64_t r)
{
    unsigned i = rcache_index(key);
    rslot_t *sl = &rcache[i];
    for (unsigned k = 0; k < RCACHE_WAYS; k++) {
        rslot_t *c = &rcache[(i + k) & ((1u << RCACHE_BITS) - 1)];
        if (!__atomic_load_n(&c->r, __ATOMIC_RELAXED)) {
            sl = c;
            break;
        }
    }
    __atomic_store_n(&sl->r, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&sl->x, key ^ r ^ gen_mix(), __ATOMIC_RELEASE);
    __atomic_store_n(&sl->r, r, __ATOMIC_RELEASE);
}

/* has_fde: the address has DWARF unwind info (else libunwind would guess). */
static bool has_fde(agent_unwind_walk_t *w, uint64_t addr)
{
    unw_proc_info_t pi;
    memset(&pi, 0, sizeof pi);
    return agent_unwind_find_proc_info(self_as, (unw_word_t)addr, &pi, 0, w) == 0;
}

/* probe_recipe: the recipe at addr, learnt by letting libunwind take one
 * step from a fake frame (rip = addr, rsp and rbp in the fake regions) and
 * reading back where it found the CFA, the return address and rbp. A
 * frame whose rule is anything else (a signal trampoline, a CFA
 * expression, a register other than rsp/rbp, no unwind info) is R_SLOW. */
static __attribute__((noinline)) uint64_t probe_recipe_locked(uint64_t addr);

static uint64_t probe_recipe(uint64_t addr)
{
    if (!unwind_lock_take()) return R_NONE;
    uint64_t r = probe_recipe_locked(addr);
    if (r != R_NONE) rcache_put(addr, r);   /* under the lock: one writer at a time */
    unwind_lock_give();
    return r;
}

static __attribute__((noinline)) uint64_t probe_recipe_locked(uint64_t addr)
{
    AGENT_ASSERT_HELD(AGENT_RANK_UNWIND);
    unw_context_t uc;
    memset(&uc, 0, sizeof uc);
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)addr;
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)UNWIND_FAKE_SP;
    uc.uc_mcontext.gregs[REG_RBP] = (greg_t)UNWIND_FAKE_BP;
    agent_unwind_walk_t w;
    memset(&w, 0, sizeof w);
    w.uc = &uc;
    w.probe = true;
    if (!has_fde(&w, addr)) return R_SLOW | R_NOINFO;
    unw_cursor_t c;
    if (unw_init_remote(&c, self_as, &w) != 0) return R_SLOW;
    int ret = unw_step(&c);
    if (ret == 0) return R_END;
    unw_word_t ip, sp, bp;
    if (ret < 0 || unw_get_reg(&c, UNW_REG_IP, &ip) != 0 || unw_get_reg(&c, UNW_X86_64_RSP, &sp) != 0 ||
        unw_get_reg(&c, UNW_X86_64_RBP, &bp) != 0)
        return R_SLOW;
    uint64_t base = agent_unwind_in_fake(sp, UNWIND_FAKE_SP) ? UNWIND_FAKE_SP : agent_unwind_in_fake(sp, UNWIND_FAKE_BP) ? UNWIND_FAKE_BP : 0;
    if (!base || ip != sp - 8 + UNWIND_FAKE_MARK) return R_SLOW;
    int64_t cfa_off = (int64_t)(sp - base);
    if (cfa_off <= 0 || cfa_off > INT32_MAX) return R_SLOW;
    uint64_t r = R_STD | (base == UNWIND_FAKE_BP ? R_CFA_RBP : 0) | ((uint64_t)(uint32_t)cfa_off << 8);
    if (bp != UNWIND_FAKE_BP) {
        uint64_t slot = bp - UNWIND_FAKE_MARK;
        if (!agent_unwind_in_fake(slot, base)) return R_SLOW;
        int64_t rbp_off = (int64_t)(slot - sp);
        if (rbp_off < -(1 << 23) || rbp_off >= (1 << 23)) return R_SLOW;
        r |= R_RBP_SAVED | ((uint64_t)rbp_off << 40);
    }
    return r;
}

/* ---- Capture ------------------------------------------------------------- */

/* record: appends ip to pcs unless it is one of the agent's leading frames. */
static void record(uint64_t ip, uint64_t *pcs, size_t *depth, bool *leading)
{
    if (*leading && is_own(ip)) return;
    *leading = false;
    pcs[(*depth)++] = ip;
}

/* sigreturn_step: when ip is glibc's x86-64 signal trampoline
 * (__restore_rt: mov $15,%rax; syscall), the frame below is the
 * interrupted one, whose registers are in the ucontext at sp.
 * @return true when it was (and *ip, *sp, *bp are the interrupted ones). */
static bool sigreturn_step(agent_unwind_walk_t *w, uint64_t *ip, uint64_t *sp, uint64_t *bp)
{
    uint64_t code0, code1;
    if (!agent_unwind_read_word(w, (uintptr_t)*ip, &code0) || !agent_unwind_read_word(w, (uintptr_t)*ip + 8, &code1)) return false;
    if (code0 != 0x0f0000000fc0c748ull || (code1 & 0xff) != 0x05) return false;
    uint64_t gregs = *sp + offsetof(ucontext_t, uc_mcontext.gregs);
    uint64_t nip, nsp, nbp;
    if (!stack_word(w, (uintptr_t)(gregs + 8 * REG_RIP), &nip) ||
        !stack_word(w, (uintptr_t)(gregs + 8 * REG_RSP), &nsp) ||
        !stack_word(w, (uintptr_t)(gregs + 8 * REG_RBP), &nbp))
        return false;
    *ip = nip;
    *sp = nsp;
    *bp = nbp;
    return true;
}

/* is_code: addr lies in an executable segment of a loaded object. */
static int find_code(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    uintptr_t a = *(const uintptr_t *)data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && a >= lo && a < lo + ph->p_memsz) return 1;
    }
    return 0;
}

static bool is_code(uint64_t addr)
{
    uintptr_t a = (uintptr_t)addr;
    return dl_iterate_phdr(find_code, &a) != 0;
}

/* FP_SPAN: how far above the stack pointer a frame pointer may be. */
#define FP_SPAN (1u << 20)

/* fp_step: a frame without unwind info (-fno-asynchronous-unwind-tables,
 * hand-written assembly): the frame-pointer chain, if it has one: rbp
 * within FP_SPAN above sp, the caller's rbp at [rbp], a return address at
 * [rbp + 8] that lies in a loaded object's code. Every read checked; a
 * frame that fails any test ends the stack. @return success. */
static bool fp_step(agent_unwind_walk_t *w, uint64_t *ip, uint64_t *sp, uint64_t *bp)
{
    uint64_t b = *bp, ra, nbp;
    if (b < *sp || b - *sp > FP_SPAN || (b & 7)) return false;
    if (!agent_unwind_read_word(w, (uintptr_t)(b + 8), &ra) || !agent_unwind_read_word(w, (uintptr_t)b, &nbp) || !is_code(ra))
        return false;
    *ip = ra;
    *sp = b + 16;
    *bp = nbp;
    return true;
}

/* slow_step: one step by libunwind (our accessors) from rip = key (the
 * lookup address), rsp and rbp, as libunwind's own fast tracer does for
 * the frames it cannot cache: a frame without unwind info (libunwind's
 * frame-chain guess), a CFA expression. @return success. */
/* (noinline, as probe_recipe_locked: their libunwind cursors would add
 * kilobytes to the capture's frame on every allocating thread's stack.) */
static __attribute__((noinline)) bool slow_step(agent_unwind_walk_t *w, uint64_t key, uint64_t *ip, uint64_t *sp, uint64_t *bp)
{
    unw_context_t uc;
    memset(&uc, 0, sizeof uc);
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)key;
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)*sp;
    uc.uc_mcontext.gregs[REG_RBP] = (greg_t)*bp;
    if (!unwind_lock_take()) return false;
    const unw_context_t *saved = w->uc;
    w->uc = &uc;
    unw_cursor_t c;
    unw_word_t nip, nsp, nbp;
    bool ok = unw_init_remote(&c, self_as, w) == 0 && unw_step(&c) > 0 &&
              unw_get_reg(&c, UNW_REG_IP, &nip) == 0 && unw_get_reg(&c, UNW_X86_64_RSP, &nsp) == 0 &&
              unw_get_reg(&c, UNW_X86_64_RBP, &nbp) == 0;
    unwind_lock_give();
    w->uc = saved;
    if (!ok) return false;
    *ip = nip;
    *sp = nsp;
    *bp = nbp;
    return true;
}

/* ---- The last walk, replayed ------------------------------------------- */

/*
 * Consecutive allocations of a thread mostly share their outer frames
 * (python: 20-60 frames of interpreter, a few of them new), and each frame
 * of a walk costs a recipe lookup, a random line of the 256 KiB table that
 * misses the cache (a quarter of a rate-1 python run was that load). So
 * each thread keeps a log of its last walk: the registers (rip, rsp, rbp)
 * at every frame, and what the step out of it read.
 *
 * A walk is a function of its registers, the recipes and the stack words
 * it reads. A new walk that reaches a logged state (same rip and rsp, and
 * the same rbp if the rest of the logged walk reads it; recipes of the
 * same generation) therefore takes the logged steps for as long as the
 * words they read are unchanged: it compares each logged return address
 * (and saved rbp, where a later step uses it) with the stack, in order,
 * independent loads of hot lines instead of a chain of table lookups, and
 * takes the logged frames up to the first word that differs, where the
 * normal walk resumes, exact. Matching registers alone is not enough:
 * main -> x -> b -> a and main -> y -> b -> a can leave a and b at the same
 * rsp with the same return addresses, and differ above (the unit test
 * does that). rbp is compared only where a step takes the CFA from it
 * before a frame restores it from the stack: without frame pointers it is
 * a general register, the program's loop variable, and would otherwise
 * stop every replay at the first frame that saved it.
 *
 * Only trusted R_STD steps are logged (a walk stops logging at its first
 * other frame: their reads are libunwind's, or guesses), and a replay
 * starts only while the new walk is trusted, so every word it reads is one
 * the walk itself would read directly (by induction: its state equals the
 * logged one). Two logs per thread (the last walk, and the one being
 * written), 4.6 KiB from the arena, used by the owning thread only: a
 * capture never nests on a thread (a signal handler that allocates inside
 * the agent is counted, not sampled). A walk is replayed only when the
 * last one was REPLAY_MIN_DEPTH frames deep or more: a shallow stack's few
 * recipes stay in cache, and there matching cost more than it saved; and
 * a walk is logged only when the one before it took that many steps (a
 * thread's next stack is guessed as deep as its last), so shallow walks
 * skip the log's stores too.
 */
#define WALK_STEPS_MAX (AGENT_MAX_FRAMES + 8)   /* the walk's own bound on steps */
#define REPLAY_MIN_DEPTH 10                      /* states in the last walk's log */

typedef struct walk_state_s {
    uint64_t ip, sp, bp;                 /* at this frame (bp: the real rbp) */
    uint64_t r;                          /* the recipe of the step out (R_STD:
                                          * R_CFA_RBP, R_RBP_SAVED and its
                                          * offset); 0 on the last state */
} walk_state_t;

typedef struct walk_log_s {
    uint64_t gen;                        /* rcache_gen when logged */
    unsigned n;                          /* states logged: n - 1 steps taken */
    bool called0;                        /* state 0's ip is a return address too */
    walk_state_t st[WALK_STEPS_MAX + 1];
} walk_log_t;

struct agent_walk_memo_s {
    unsigned last;                       /* log[last]: the last walk */
    unsigned last_steps;                 /* steps the last walk took */
    walk_log_t log[2];
};

/* recipe: the recipe at key, from the shared table or a probe (R_NONE:
 * libunwind busy). */
static uint64_t recipe(uint64_t key, uint64_t gmix)
{
    uint64_t r = rcache_get(key, gmix);
    return r != R_NONE ? r : probe_recipe(key);
}

_Static_assert(sizeof(agent_walk_memo_t) <= 4736, "the memo's stated bound (4.6 KiB)");

agent_walk_memo_t *agent_walk_memo_new(void)
{
    return map_arena_alloc(sizeof(agent_walk_memo_t));   /* zeroed: nothing logged */
}

#ifdef HEAPWATCH_TEST
static uint64_t steps_replayed;
uint64_t agent_unwind_test_replayed(void)   /* see unwind.h */
{
    return steps_replayed;
}
#endif

/* reads_bp: the logged walk from state t reads the rbp it arrives with (a
 * step takes its CFA from rbp before a frame restores rbp from the
 * stack); for the last state, what follows was not logged: yes. */
static bool reads_bp(const walk_log_t *log, unsigned t)
{
    for (; t + 1 < log->n; t++) {
        uint64_t r = log->st[t].r;
        if (r & R_CFA_RBP) return true;
        if (r & R_RBP_SAVED) return false;
    }
    return true;
}

/* replay: from logged state `from`, which the walk is at (rbp *bp; the
 * log being written, when *top is not NULL, ends with it at *top), takes
 * the logged steps whose words the stack still holds, within the walk's
 * bounds: their frames recorded, their states logged with the real rbp.
 * @return the logged state reached (from when no step was taken); *bp is
 * the real rbp there. */
static unsigned replay(const walk_log_t *last, unsigned from, walk_state_t **top, uint64_t *bp, uint64_t *pcs,
                       size_t *depth_io, size_t max, bool *leading_io, unsigned *steps_io)
{
    /* Locals: the stores to pcs and the log cannot alias them. */
    size_t depth = *depth_io;
    unsigned steps = *steps_io;
    bool leading = *leading_io;
    uint64_t cur_bp = *bp;
    /* The walk's two bounds as one count of steps: a step records at most
     * one frame. Where it stops short of them (leading frames record
     * none), the walk goes on from the state reached, exact all the
     * same. */
    unsigned room = WALK_STEPS_MAX - steps;
    if (max - depth < room) room = (unsigned)(max - depth);
    const walk_state_t *s = &last->st[from];
    const walk_state_t *stop = &last->st[last->n - 1];
    if ((unsigned)(stop - s) > room) stop = s + room;
    walk_state_t *out = *top;
    for (; s < stop; s++) {
        const walk_state_t *next = s + 1;
        uint64_t ra, next_bp = cur_bp;
        memcpy(&ra, (const void *)(uintptr_t)(next->sp - 8), sizeof ra);
        if (ra != next->ip) break;
        if (s->r & R_RBP_SAVED)
            memcpy(&next_bp, (const void *)(uintptr_t)(next->sp + (uint64_t)R_RBP_OFF(s->r)), sizeof next_bp);
        if (next_bp != next->bp && reads_bp(last, (unsigned)(next - last->st))) break;
        if (!leading || !is_own(s->ip)) {
            leading = false;
            pcs[depth++] = s->ip;
        }
        if (out) {
            out->r = s->r;
            *++out = (walk_state_t){next->ip, next->sp, next_bp, 0};
        }
        cur_bp = next_bp;
    }
    unsigned t = (unsigned)(s - last->st);
    *top = out;
    *depth_io = depth;
    *steps_io = steps + (t - from);
    *leading_io = leading;
    *bp = cur_bp;
    return t;
}

/* walk: the stack by cached recipes (probing the missing ones), a frame
 * no recipe covers by sigreturn_step or slow_step; the frames the last
 * walk (memo, may be NULL) shares with it replayed. @return the depth. */
static size_t walk(uint64_t ip, uint64_t sp, uint64_t bp, bool called, uint64_t *pcs, size_t max,
                   agent_walk_memo_t *memo)
{
    /* Only the counts are set: the arrays are read below their counts
     * (zeroing them was a tenth of a capture at rate 1). The walk's own
     * registers are never asked of libunwind: slow_step and probes hand it
     * a context of their own. */
    agent_unwind_walk_t w;
    w.uc = NULL;
    w.nsegs = w.ngood = 0;
    w.pid = 0;
    w.probe = false;
    w.trusted = true;
    uint64_t gen = __atomic_load_n(&rcache_gen, __ATOMIC_ACQUIRE);
    uint64_t gmix = gen_mix_of(gen);
    const walk_log_t *last = NULL;
    unsigned last_n = 0;                 /* last->n: the log being written cannot change it */
    walk_log_t *log = NULL;
    walk_state_t *top = NULL;            /* the log's last state; NULL: not logging */
    if (memo) {
        last = &memo->log[memo->last];
        /* A shallow stack is not replayed: its few recipes stay in
         * cache, and matching costs more than it saves (agent_mix, a C
         * program of 5 to 15 frames: 15 % more added time at rate 1 when
         * it was tried on every walk; from 10 steps on, with the agent's
         * frames no longer walked, a 14-step stack took 0.80 of the time
         * it took at 16, and agent_mix, perl and cc1 0.97 to 0.99). */
        if (last->gen != gen || last->n < REPLAY_MIN_DEPTH) last = NULL;
        else last_n = last->n;
        log = &memo->log[memo->last ^ 1];
        log->gen = gen;
        log->n = 0;
        log->called0 = called;
        /* Nor is a walk logged after a shallow one (a tenth of a shallow
         * walk's instructions were its log's stores, for nothing): the
         * thread's stacks are taken to be as deep as its last, and a
         * deep walk after a shallow one is logged by the next. */
        if (memo->last_steps >= REPLAY_MIN_DEPTH) {
            top = &log->st[0];
            *top = (walk_state_t){ip, sp, bp, 0};
        }
    }
    unsigned c = 0;                      /* the first logged state not below sp */
    uint64_t key = called ? ip - 1 : ip; /* the first frame: a return address, or its own ip */
    size_t depth = 0;
    bool leading = true;
    unsigned steps = 0;
    while (steps < WALK_STEPS_MAX && depth < max) {
        if (last && w.trusted) {
            while (c < last_n && last->st[c].sp < sp) c++;
            const walk_state_t *s = &last->st[c];
            /* A logged state was looked up at ip - 1 unless it is a
             * first one whose ip is not a return address; this one at
             * key (ip itself at a first frame not called, and after a
             * signal frame): only like meets like. */
            if (c < last_n && s->sp == sp && s->ip == ip &&
                (c > 0 || last->called0) == (key != ip) &&
                (s->bp == bp || !reads_bp(last, c))) {
                unsigned from = c, t = replay(last, from, &top, &bp, pcs, &depth, max, &leading, &steps);
#ifdef HEAPWATCH_TEST
                steps_replayed += t - from;
#endif
                c = t + 1;               /* neither these states nor t is tried again:
                                          * from t on, the stack differs */
                if (t > from) {          /* at logged state t, for real: go on from it */
                    ip = last->st[t].ip;
                    sp = last->st[t].sp;
                    key = ip - 1;        /* t > 0: a return address */
                    if (ip < 0x4000) break;
                    continue;
                }
            }
        }
        steps++;
        if (AGENT_UNLIKELY(leading)) {   /* the walk's start: maybe the agent's */
            record(ip, pcs, &depth, &leading);
        } else {                         /* the common step, its branch laid out
                                          * apart (measured: 2 to 4 % of a sample) */
            pcs[depth++] = ip;
        }
        uint64_t r = recipe(key, gmix);
        if (AGENT_UNLIKELY(R_KIND(r) != R_STD)) {
            /* R_NONE (libunwind busy: the stack ends here), R_END */
            if (R_KIND(r) != R_SLOW) break;
            if (top) {                   /* libunwind's reads, or a guess: not replayable */
                log->n = (unsigned)(top - log->st) + 1;
                top = NULL;
            }
            /* The steps out of line write copies: ip, sp and bp, whose
             * address no call takes, stay in registers along the recipes'
             * path (in memory, each step waited on a store and a load). */
            uint64_t nip = ip, nsp = sp, nbp = bp;
            if (sigreturn_step(&w, &nip, &nsp, &nbp)) {
                key = nip;               /* interrupted, not called: ip itself */
            } else {
                w.trusted = false;       /* a guess, or libunwind's: check every read from here */
                bool stepped = (r & R_NOINFO) ? fp_step(&w, &nip, &nsp, &nbp) : slow_step(&w, key, &nip, &nsp, &nbp);
                if (!stepped || nsp <= sp) break;
                key = nip - 1;
            }
            ip = nip;
            sp = nsp;
            bp = nbp;
            if (ip < 0x4000) break;
            continue;
        }
        uint64_t cfa = ((r & R_CFA_RBP) ? bp : sp) + (uint64_t)R_CFA_OFF(r);
        uint64_t ra;
        if (cfa <= sp || !stack_word(&w, (uintptr_t)(cfa - 8), &ra)) break;
        if ((r & R_RBP_SAVED) && !stack_word(&w, (uintptr_t)(cfa + (uint64_t)R_RBP_OFF(r)), &bp)) break;
        sp = cfa;
        ip = ra;
        if (top) {                       /* the step out of the top state, and where it led */
            AGENT_ASSERT(top < &log->st[WALK_STEPS_MAX]);
            top->r = r;
            *++top = (walk_state_t){ip, sp, bp, 0};
        }
        if (ip < 0x4000) break;          /* no code there: the end, or junk */
        key = ip - 1;                    /* a return address: the call is before it */
    }
    if (top) log->n = (unsigned)(top - log->st) + 1;
    if (memo) {
        memo->last ^= 1;
        memo->last_steps = steps;
    }
    return depth;
}

/* agent_stack_capture reads the three registers a walk starts from
 * itself: unw_getcontext saved every register and the x87 environment
 * (fnstenv), a few percent of a rate-1 run, for a walk that needs rip,
 * rsp and rbp. ip is the address after the lea, where rsp and rbp are what
 * the asm read (it does not touch the stack), so the recipe looked up at ip
 * describes exactly this frame. noinline: the frame is agent code, dropped
 * as a leading own frame like the rest. */
__attribute__((noinline)) size_t agent_stack_capture(uint64_t *pcs, size_t max, agent_walk_memo_t *memo)
{
    if (!unwind_ready || __atomic_load_n(&unwind_broken, __ATOMIC_RELAXED)) return 0;
    uint64_t ip, sp, bp;
    __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2"
                     : "=r"(ip), "=r"(sp), "=r"(bp));
    return walk(ip, sp, bp, false, pcs, max, memo);
}

/* agent_stack_capture_from: the walk starts at the frame a call returns
 * to: the agent's own frames between are never walked (see unwind.h). */
size_t agent_stack_capture_from(uint64_t ra, uint64_t sp, uint64_t bp, uint64_t *pcs, size_t max,
                                agent_walk_memo_t *memo)
{
    if (!unwind_ready || __atomic_load_n(&unwind_broken, __ATOMIC_RELAXED)) return 0;
    return walk(ra, sp, bp, true, pcs, max, memo);
}

/* ------------------------------------------------------------------------ */
/* Start-up and fork                                                        */
/* ------------------------------------------------------------------------ */

void agent_unwind_init(void)
{
    segment_t own = { (uintptr_t)agent_stack_capture, 0, 0 };
    dl_iterate_phdr(find_segment, &own);
    own_lo = own.lo;
    own_hi = own.hi;
    segment_t lib = { (uintptr_t)unw_init_remote, 0, 0 };   /* libunwind-x86_64's code */
    dl_iterate_phdr(find_segment, &lib);
    libunwind_lo = lib.lo;
    libunwind_hi = lib.hi;
    unwind_ready = true;   /* libunwind itself at its first call: as_ready */
}

/* UNWIND_FORK_TRIES: how many times prefork tries unwind_lock (a few
 * milliseconds at most, and never past the fork's deadline; never waits
 * on it: the forking thread may be a signal handler that interrupted a
 * libunwind call). */
#define UNWIND_FORK_TRIES 1000

void agent_unwind_prefork(uint64_t deadline_ns)
{
    unwind_held_at_fork = false;
    for (unsigned t = 0; t < UNWIND_FORK_TRIES && !unwind_held_at_fork; t++) {
        unwind_held_at_fork = agent_lock_ranked_until(&unwind_lock, AGENT_RANK_UNWIND, 0);
        if (!unwind_held_at_fork) {
            if (agent_mono_ns() >= deadline_ns) break;
            sched_yield();
        }
    }
}

void agent_unwind_postfork_parent(void)
{
    if (unwind_held_at_fork) agent_unlock_ranked(&unwind_lock, AGENT_RANK_UNWIND);
}

void agent_unwind_postfork_child(void)
{
    /* A child forked while another thread was inside libunwind inherits
     * its locks and caches mid-update: it uses the recipes it has, and
     * libunwind never again (stacks end at a frame with no recipe). */
    if (!unwind_held_at_fork) unwind_off = true;
    pthread_mutex_init(&unwind_lock, NULL);
}
