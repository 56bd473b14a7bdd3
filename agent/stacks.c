/*
 * stacks.c - call stacks of sampled allocations: captured with libunwind,
 * interned so that each distinct stack is stored once, never freed.
 *
 * Capture, and why not libunwind's local unwinder. Debian's libunwind
 * (1.6.2, built with CONSERVATIVE_CHECKS) validates, in its local address
 * space, every address of an unw_step that misses its cache and every
 * frame it guessed (code without unwind tables: -fno-asynchronous-unwind-
 * tables, hand-written assembly, JIT) by reading and writing one byte
 * through a pipe kept in two static descriptor numbers, and when that read
 * fails it closes both numbers and makes a new pipe. A program that closed
 * its descriptors (daemons close 3..1023, shells `exec 3>file`) and reused
 * the numbers had its own files read, closed and replaced: its writes
 * failed with EBADF. So libunwind never runs in its local address space
 * here: we give it our own (libunwind-x86_64's unw_create_addr_space /
 * unw_init_remote, the API libunwind-ptrace uses), whose accessors read
 * this process, and libunwind validates only its local space.
 *  - Reads. Unwind tables (.eh_frame_hdr, .eh_frame) of the object that
 *    find_proc_info found (dl_iterate_phdr, as libunwind's local mode
 *    does) are read directly. So are the stack slots a recipe names while
 *    the walk is "trusted": every step since the capture's own registers
 *    came from DWARF (recipes, and signal frames, whose ucontext the
 *    kernel wrote), the trust libunwind's local fast tracer gave its
 *    cached frames. Every other word (after a frame-pointer guess or a
 *    libunwind step, code at an ip, libunwind's own reads) goes through
 *    process_vm_readv on this process, which fails with EFAULT instead of
 *    faulting, once per page and walk (later reads of that page are
 *    direct; 16 pages remembered). No descriptor.
 *  - Recipes (the fast path). Like libunwind's own fast tracer, the walk
 *    caches per lookup address how to leave a frame: the CFA as rsp or rbp
 *    plus an offset, the return address at CFA - 8, the caller's rbp
 *    unchanged or at CFA plus an offset. A missing recipe is learnt by a
 *    probe: libunwind takes one step from a fake frame whose rsp and rbp
 *    point into two fake regions never read (access_mem makes up each word
 *    there as its own address plus FAKE_MARK), and where it found the CFA,
 *    the return address and rbp tells the recipe; any other rule (a CFA
 *    expression, another base register) makes the frame R_SLOW. Recipes
 *    live in a lock-free table (RCACHE_BITS, 4 ways; a slot holds key xor
 *    recipe beside the recipe, so a half-written slot reads as a miss), so
 *    a stack whose recipes are known takes no lock and blocks no signal
 *    (a program that single-steps itself, tests/integration/progs/
 *    life_step, dies if SIGTRAP is blocked across an allocation). Recipes
 *    are never dropped: code unloaded and other code loaded at the same
 *    address may get wrong stacks, never a bad read.
 *  - Other frames. A signal trampoline (__restore_rt's code at the return
 *    address) is left from the ucontext it returns to; a frame without
 *    unwind info by its frame-pointer chain (rbp at most FP_SPAN = 1 MiB
 *    above sp, the return address inside a loaded object's code: else the
 *    stack ends there); any other frame by one libunwind step from rip, rsp
 *    and rbp (what libunwind's fast tracer does for its uncacheable frames).
 *  - libunwind's register-state cache is set "per thread": Debian's build
 *    has no per-thread cache, and libunwind then uses its global cache
 *    without taking its lock (which blocks every signal), as the local
 *    address space did before; its unwind-info pool still takes a lock
 *    (all signals blocked) on a miss, during probes only. Since that cache
 *    is then unguarded, every libunwind call (probes, single steps) is made
 *    under unwind_lock. A thread whose signal handler interrupted its own
 *    libunwind call never waits for it: that stack ends at the frame it
 *    needed, and nothing is cached for it; another thread's hold is one
 *    step, waited for a bounded time (unwind_lock_take). fork
 *    tries it UNWIND_FORK_TRIES times; a child forked while another thread
 *    held it never calls libunwind again (its locks may be held forever):
 *    it unwinds with the recipes it inherited.
 *  - libunwind still opens its pipe once when it initialises (agent
 *    start); close_validation_pipe closes it at once, only after checking
 *    (a probe pipe just before, then fstat, F_GETFL, F_GETFD) that the two
 *    numbers are that new pipe; libunwind never touches them again since
 *    its local validation is never reached.
 * Bounds: AGENT_MAX_FRAMES + 8 frames per walk; 16384 recipes (256 KiB).
 * Cost: a stack whose recipes are known costs what libunwind's fast tracer
 * did (a table lookup and one or two loads per frame); a frame whose
 * recipe is R_SLOW costs a libunwind step each time, and every frame after
 * a guess a system call per new page. Without process_vm_readv (a seccomp
 * filter that refuses it, a kernel without CONFIG_CROSS_MEMORY_ATTACH),
 * stacks end at the first frame that needs a checked read; never a fault.
 * The innermost frames are the agent's own (the capture, the sampling slow
 * path, the interposed malloc); every leading frame whose address lies in
 * libheapwatch.so's executable segment is dropped, so pcs[0] is the return
 * address in the allocation function's caller: what SPEC asks ("no agent
 * frames"), and robust to inlining, which a fixed skip count is not.
 *
 * Interning. A stack is hashed (its frames, mixed) and looked up in one of
 * STRIPES tables chosen by the hash, each a map/ map from hash to stack id
 * under its own mutex, so threads sampling at rate 1 rarely contend. A hit
 * is confirmed by comparing the frames; two different stacks with the same
 * 64-bit hash (never seen, but possible) are told apart by probing hash+1,
 * hash+2, ... Records live in a two-level directory indexed by id that
 * readers (profiles, alerts) walk without a lock: a record is fully written
 * before its pointer is published (release), and ids are handed out by an
 * atomic counter, so a reader may meet an id whose pointer is not yet
 * published and simply skips it.
 *
 * Record 0 is the empty stack: samples whose stack could not be stored
 * (table full, no memory) are counted there rather than lost.
 *
 * Lock order: a stripe lock, then the arena's (records and table growth
 * allocate under it; the whole order is in lock.c); unwind_lock is taken
 * with no other (capture runs before interning). fork: prefork takes
 * every stripe in index order, each waiting at most until the fork's
 * deadline (agent/lock.c), then tries unwind_lock (see Capture). A stripe
 * it could not take may be mid-update in the child, so the child interns
 * no stack again (lost: every sample gets record 0, and core.c notes it
 * in the child's summary); the records themselves stay readable (the
 * directory is published lock-free). agent_stacks_bytes takes each stripe
 * with agent_lock: at exit a busy stripe is skipped and noted.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <libunwind.h>                   /* generic API: libunwind-x86_64 */
#include <link.h>
#include <stddef.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#include "agent/live.h"
#include "agent/lock.h"
#include "agent/log.h"
#include "agent/stacks.h"
#include "agent/thread.h"
#include "map/map.h"

#define STRIPES 16                       /* interning tables (power of two) */
#define CHUNK_BITS 12                    /* ids per directory chunk */
#define CHUNK_IDS (1u << CHUNK_BITS)
#define CHUNKS (AGENT_STACKS_MAX / CHUNK_IDS)
#define PROBES 8                         /* hash collisions tolerated per stack */

typedef struct stripe_s {
    pthread_mutex_t lock;
    map_t *index;                        /* hash -> id */
} __attribute__((aligned(64))) stripe_t;

static stripe_t stripes[STRIPES];
static agent_stack_t **directory[CHUNKS];/* id -> record, by chunk (atomic) */
static uint32_t next_id;                 /* ids handed out (atomic) */
static size_t table_bytes;               /* records and chunks (atomic) */
static map_allocator_t allocator;
static int ready;                        /* init succeeded */
static bool lost;                        /* child of a fork that missed a stripe */
static AGENT_TLS bool prefork_took[STRIPES]; /* stripes this thread's prepare handler holds */
static uintptr_t own_lo, own_hi;         /* libheapwatch.so's executable segment */

#ifdef HEAPWATCH_TEST
uint32_t agent_stacks_test_max = AGENT_STACKS_MAX;
uint64_t (*agent_stacks_test_hash)(const uint64_t *pcs, size_t depth);
#define STACKS_LIMIT agent_stacks_test_max  /* see stacks.h */
void agent_stacks_test_own_range(uintptr_t lo, uintptr_t hi)
{
    own_lo = lo;
    own_hi = hi;
}
#else
#define STACKS_LIMIT AGENT_STACKS_MAX       /* ids handed out at most */
#endif

/* ------------------------------------------------------------------------ */
/* Capture                                                                  */
/* ------------------------------------------------------------------------ */

/* x86-64 .eh_frame_hdr encodings (LSB): the only table layout searched. */
#define EH_PE_udata4 0x03
#define EH_PE_sdata4 0x0b
#define EH_PE_pcrel 0x10
#define EH_PE_datarel 0x30
#define INFO_SEGS 4                      /* unwind-info segments a walk remembers */
#define GOOD_PAGES 16                    /* pages a walk has checked readable */
#define PAGE 4096u

/* walk_t: one capture's state, libunwind's as_arg for our address space. */
typedef struct walk_s {
    const unw_context_t *uc;             /* registers at the capture */
    uintptr_t seg_lo[INFO_SEGS], seg_hi[INFO_SEGS]; /* unwind tables' segments */
    unsigned nsegs;
    uintptr_t good[GOOD_PAGES];          /* pages read through the kernel */
    unsigned ngood;
    pid_t pid;                           /* 0 until the first checked read */
    bool probe;                          /* a probe: stack reads are synthetic */
    bool trusted;                        /* every step so far by a recipe */
} walk_t;

/* find_s: dl_iterate_phdr's search for the object that holds an ip. */
typedef struct find_s {
    uintptr_t ip;
    uintptr_t text_lo, text_hi;          /* the PT_LOAD that holds ip */
    uintptr_t info_lo, info_hi;          /* the PT_LOAD that holds .eh_frame_hdr */
    const uint8_t *hdr;                  /* .eh_frame_hdr, or NULL */
} find_t;

static unw_addr_space_t self_as;         /* our address space (see top) */
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

static bool unwind_lock_take(void)
{
    if (unwind_off || unwind_mine) return false;
    /* The flag goes up before the lock is tried: a signal handler that
     * allocates on this thread from here on never waits for it. */
    unwind_mine = true;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    uint64_t deadline = 0;
    while (pthread_mutex_trylock(&unwind_lock) != 0) {
        uint64_t now = agent_mono_ns();
        if (!deadline) deadline = now + UNWIND_WAIT_NS;
        if (unwind_off || now >= deadline) {
            unwind_mine = false;
            return false;
        }
        sched_yield();
    }
    agent_rank_taken(AGENT_RANK_UNWIND);
    return true;
}

static void unwind_lock_give(void)
{
    agent_unlock_ranked(&unwind_lock, AGENT_RANK_UNWIND);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    unwind_mine = false;   /* after the unlock: see unwind_lock_take */
}
static AGENT_TLS bool unwind_held_at_fork;         /* prefork got unwind_lock */

/* Declared by libunwind's internal headers only; exported by
 * libunwind-x86_64.so (the table search its ptrace accessors use too). */
extern int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as, unw_word_t ip,
                                              unw_dyn_info_t *di, unw_proc_info_t *pi,
                                              int need_unwind_info, void *arg);

/* checked_read: len bytes at addr through process_vm_readv on this very
 * process, which fails (EFAULT) instead of faulting when the memory is not
 * readable. No descriptor involved. @return true when all were read. */
static bool checked_read(walk_t *w, uintptr_t addr, void *out, size_t len)
{
    if (!w->pid) w->pid = (pid_t)syscall(SYS_getpid);
    struct iovec local = {out, len};
    struct iovec remote = {(void *)addr, len};
    return syscall(SYS_process_vm_readv, w->pid, &local, 1UL, &remote, 1UL, 0UL) == (long)len;
}

static bool in_info_segment(const walk_t *w, uintptr_t addr, size_t len)
{
    for (unsigned i = 0; i < w->nsegs; i++)
        if (addr >= w->seg_lo[i] && addr + len <= w->seg_hi[i]) return true;
    return false;
}

static bool page_good(const walk_t *w, uintptr_t page)
{
    for (unsigned i = 0; i < w->ngood; i++)
        if (w->good[i] == page) return true;
    return false;
}

static void remember_page(walk_t *w, uintptr_t page)
{
    if (page_good(w, page)) return;
    w->good[w->ngood % GOOD_PAGES] = page;   /* oldest out when full */
    if (w->ngood < 2 * GOOD_PAGES) w->ngood++;
    if (w->ngood > GOOD_PAGES) w->ngood = GOOD_PAGES;
}

/* access_mem: libunwind reads a word. Unwind tables of the object found
 * last are read directly; anything else (stack slots, code at an ip, a
 * guessed frame pointer) directly only on a page this walk has already read
 * through the kernel, else through the kernel: a bad address fails the
 * step, it never faults. */
static bool read_word(walk_t *w, uintptr_t a, uint64_t *val);

static int access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write, void *arg)
{
    (void)as;
    if (write) return -UNW_EREADONLYREG;
    uint64_t v;
    if (!read_word(arg, (uintptr_t)addr, &v)) return -UNW_EINVAL;
    *val = (unw_word_t)v;
    return 0;
}

/* Probes (see "Recipes" at top): the stack pointer and frame pointer of a
 * probe point into two fake regions that are never read; a word "read"
 * there is its own address plus FAKE_MARK, so the values libunwind derives
 * tell where it read them. */
#define FAKE_SP 0x100000000000ull
#define FAKE_BP 0x200000000000ull
#define FAKE_SPAN 0x40000000ull          /* +-1 GiB around each */
#define FAKE_MARK 0x4000000000000000ull

static bool in_fake(uint64_t a, uint64_t base)
{
    return a >= base - FAKE_SPAN && a < base + FAKE_SPAN;
}

/* stack_word: a word the current recipe says is on the stack: read
 * directly while the walk is trusted (see top), else as read_word. */
static bool stack_word(walk_t *w, uintptr_t a, uint64_t *val)
{
    if (w->trusted) {
        memcpy(val, (const void *)a, sizeof *val);
        return true;
    }
    return read_word(w, a, val);
}

/* read_word: the word at a, or false when it cannot be read (never a
 * fault): see access_mem. */
static bool read_word(walk_t *w, uintptr_t a, uint64_t *val)
{
    if (w->probe && (in_fake(a, FAKE_SP) || in_fake(a, FAKE_BP))) {
        *val = (uint64_t)a + FAKE_MARK;
        return true;
    }
    if (a > UINTPTR_MAX - sizeof *val) return false;
    uintptr_t first = a & ~(uintptr_t)(PAGE - 1), last = (a + sizeof *val - 1) & ~(uintptr_t)(PAGE - 1);
    if (in_info_segment(w, a, sizeof *val) || (page_good(w, first) && page_good(w, last))) {
        memcpy(val, (const void *)a, sizeof *val);
        return true;
    }
    if (!checked_read(w, a, val, sizeof *val)) return false;
    remember_page(w, first);
    remember_page(w, last);
    return true;
}

/* access_reg: the registers saved by unw_getcontext at the capture. */
static int access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *val, int write, void *arg)
{
    (void)as;
    static const signed char greg[] = {
        [UNW_X86_64_RAX] = REG_RAX, [UNW_X86_64_RDX] = REG_RDX, [UNW_X86_64_RCX] = REG_RCX,
        [UNW_X86_64_RBX] = REG_RBX, [UNW_X86_64_RSI] = REG_RSI, [UNW_X86_64_RDI] = REG_RDI,
        [UNW_X86_64_RBP] = REG_RBP, [UNW_X86_64_RSP] = REG_RSP, [UNW_X86_64_R8] = REG_R8,
        [UNW_X86_64_R9] = REG_R9, [UNW_X86_64_R10] = REG_R10, [UNW_X86_64_R11] = REG_R11,
        [UNW_X86_64_R12] = REG_R12, [UNW_X86_64_R13] = REG_R13, [UNW_X86_64_R14] = REG_R14,
        [UNW_X86_64_R15] = REG_R15, [UNW_X86_64_RIP] = REG_RIP,
    };
    const walk_t *w = arg;
    if (write || reg < 0 || (size_t)reg >= sizeof greg) return -UNW_EBADREG;
    *val = (unw_word_t)w->uc->uc_mcontext.gregs[(int)greg[reg]];
    return 0;
}

static int access_fpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t *val, int write, void *arg)
{
    (void)as, (void)reg, (void)val, (void)write, (void)arg;
    return -UNW_EBADREG;
}

static int resume(unw_addr_space_t as, unw_cursor_t *c, void *arg)
{
    (void)as, (void)c, (void)arg;
    return -UNW_EINVAL;
}

/* No dynamically registered (_U_dyn_register) unwind info: JIT frames
 * without tables end the walk or are guessed, as any other such frame. */
static int get_dyn_info_list_addr(unw_addr_space_t as, unw_word_t *addr, void *arg)
{
    (void)as, (void)addr, (void)arg;
    return -UNW_ENOINFO;
}

/* put_unwind_info: libunwind frees the DWARF info it allocated itself
 * (from its own mmap pool); nothing of ours to release. */
static void put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg)
{
    (void)as, (void)pi, (void)arg;
}

static int find_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    find_t *f = data;
    const ElfW(Phdr) *text = NULL, *eh = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && f->ip >= lo && f->ip < lo + ph->p_memsz) text = ph;
        else if (ph->p_type == PT_GNU_EH_FRAME) eh = ph;
    }
    if (!text) return 0;
    f->text_lo = info->dlpi_addr + text->p_vaddr;
    f->text_hi = f->text_lo + text->p_memsz;
    if (!eh) return 1;
    uintptr_t hdr = info->dlpi_addr + eh->p_vaddr;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_R) && hdr >= lo && hdr + 12 <= lo + ph->p_filesz) {
            f->info_lo = lo;
            f->info_hi = lo + ph->p_filesz;
            f->hdr = (const uint8_t *)hdr;
        }
    }
    return 1;
}

/* find_proc_info: the FDE of ip, from the binary-search table of the
 * .eh_frame_hdr of the loaded object that holds ip (the layout every
 * x86-64 toolchain writes; another layout counts as no unwind info). */
static int find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi,
                          int need_unwind_info, void *arg)
{
    walk_t *w = arg;
    if (w->probe && (in_fake(ip, FAKE_SP) || in_fake(ip, FAKE_BP))) return -UNW_ENOINFO;
    find_t f = {.ip = (uintptr_t)ip};
    if (!dl_iterate_phdr(find_object, &f) || !f.hdr) return -UNW_ENOINFO;
    const uint8_t *h = f.hdr;
    if (h[0] != 1 || h[1] != (EH_PE_pcrel | EH_PE_sdata4) || h[2] != EH_PE_udata4 ||
        h[3] != (EH_PE_datarel | EH_PE_sdata4))
        return -UNW_ENOINFO;
    uint32_t count;
    memcpy(&count, h + 8, sizeof count);
    if ((uintptr_t)(h + 12) + (uint64_t)count * 8 > f.info_hi) return -UNW_ENOINFO;
    /* The table and the FDEs it points to are read directly from now on. */
    w->seg_lo[w->nsegs % INFO_SEGS] = f.info_lo;
    w->seg_hi[w->nsegs % INFO_SEGS] = f.info_hi;
    if (w->nsegs < INFO_SEGS) w->nsegs++;
    unw_dyn_info_t di;
    memset(&di, 0, sizeof di);
    di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
    di.start_ip = f.text_lo;
    di.end_ip = f.text_hi;
    di.u.rti.segbase = (unw_word_t)(uintptr_t)h;
    di.u.rti.table_data = (unw_word_t)(uintptr_t)(h + 12);
    di.u.rti.table_len = (unw_word_t)count * 8 / sizeof(unw_word_t);
    return _Ux86_64_dwarf_search_unwind_table(as, ip, &di, pi, need_unwind_info, arg);
}

static int find_own_segment(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    uintptr_t probe = (uintptr_t)data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        uintptr_t hi = lo + ph->p_memsz;
        if (probe >= lo && probe < hi) {
            own_lo = lo;
            own_hi = hi;
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

static uint64_t gen_mix(void)
{
    return __atomic_load_n(&rcache_gen, __ATOMIC_ACQUIRE) * 0x9e3779b97f4a7c15ull;
}

void agent_stacks_code_unloaded(void)
{
    __atomic_add_fetch(&rcache_gen, 1, __ATOMIC_ACQ_REL);
}

static unsigned rcache_index(uint64_t key)
{
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    return (unsigned)(h >> (64 - RCACHE_BITS));
}

static uint64_t rcache_get(uint64_t key)
{
    unsigned i = rcache_index(key);
    for (unsigned k = 0; k < RCACHE_WAYS; k++) {
        rslot_t *sl = &rcache[(i + k) & ((1u << RCACHE_BITS) - 1)];
        uint64_t r = __atomic_load_n(&sl->r, __ATOMIC_ACQUIRE);
        uint64_t x = __atomic_load_n(&sl->x, __ATOMIC_ACQUIRE);
        if (r && (x ^ r ^ gen_mix()) == key) return r;
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
static bool has_fde(walk_t *w, uint64_t addr)
{
    unw_proc_info_t pi;
    memset(&pi, 0, sizeof pi);
    return find_proc_info(self_as, (unw_word_t)addr, &pi, 0, w) == 0;
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
    unw_context_t uc;
    memset(&uc, 0, sizeof uc);
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)addr;
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)FAKE_SP;
    uc.uc_mcontext.gregs[REG_RBP] = (greg_t)FAKE_BP;
    walk_t w;
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
    uint64_t base = in_fake(sp, FAKE_SP) ? FAKE_SP : in_fake(sp, FAKE_BP) ? FAKE_BP : 0;
    if (!base || ip != sp - 8 + FAKE_MARK) return R_SLOW;
    int64_t cfa_off = (int64_t)(sp - base);
    if (cfa_off <= 0 || cfa_off > INT32_MAX) return R_SLOW;
    uint64_t r = R_STD | (base == FAKE_BP ? R_CFA_RBP : 0) | ((uint64_t)(uint32_t)cfa_off << 8);
    if (bp != FAKE_BP) {
        uint64_t slot = bp - FAKE_MARK;
        if (!in_fake(slot, base)) return R_SLOW;
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
static bool sigreturn_step(walk_t *w, uint64_t *ip, uint64_t *sp, uint64_t *bp)
{
    uint64_t code0, code1;
    if (!read_word(w, (uintptr_t)*ip, &code0) || !read_word(w, (uintptr_t)*ip + 8, &code1)) return false;
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
static bool fp_step(walk_t *w, uint64_t *ip, uint64_t *sp, uint64_t *bp)
{
    uint64_t b = *bp, ra, nbp;
    if (b < *sp || b - *sp > FP_SPAN || (b & 7)) return false;
    if (!read_word(w, (uintptr_t)(b + 8), &ra) || !read_word(w, (uintptr_t)b, &nbp) || !is_code(ra))
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
static __attribute__((noinline)) bool slow_step(walk_t *w, uint64_t key, uint64_t *ip, uint64_t *sp, uint64_t *bp)
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

/* walk: the stack by cached recipes (probing the missing ones), a frame
 * no recipe covers by sigreturn_step or slow_step. @return the depth. */
static size_t walk(const unw_context_t *uc, uint64_t *pcs, size_t max)
{
    walk_t w;
    memset(&w, 0, sizeof w);
    w.uc = uc;
    w.trusted = true;
    uint64_t ip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    uint64_t sp = (uint64_t)uc->uc_mcontext.gregs[REG_RSP];
    uint64_t bp = (uint64_t)uc->uc_mcontext.gregs[REG_RBP];
    uint64_t key = ip;                   /* the first frame: its own ip */
    size_t depth = 0;
    bool leading = true;
    for (unsigned steps = 0; steps < AGENT_MAX_FRAMES + 8 && depth < max; steps++) {
        record(ip, pcs, &depth, &leading);
        uint64_t r = rcache_get(key);
        if (r == R_NONE) {
            r = probe_recipe(key);
            if (r == R_NONE) break;      /* libunwind busy: the stack ends here */
        }
        if (R_KIND(r) == R_END) break;
        if (R_KIND(r) == R_SLOW) {
            uint64_t osp = sp;
            if (sigreturn_step(&w, &ip, &sp, &bp)) {
                key = ip;                /* interrupted, not called: ip itself */
            } else {
                w.trusted = false;       /* a guess, or libunwind's: check every read from here */
                bool stepped = (r & R_NOINFO) ? fp_step(&w, &ip, &sp, &bp) : slow_step(&w, key, &ip, &sp, &bp);
                if (!stepped || sp <= osp) break;
                key = ip - 1;
            }
            if (ip < 0x4000) break;
            continue;
        }
        uint64_t cfa = ((r & R_CFA_RBP) ? bp : sp) + (uint64_t)R_CFA_OFF(r);
        uint64_t ra;
        if (cfa <= sp || !stack_word(&w, (uintptr_t)(cfa - 8), &ra)) break;
        if ((r & R_RBP_SAVED) && !stack_word(&w, (uintptr_t)(cfa + (uint64_t)R_RBP_OFF(r)), &bp)) break;
        sp = cfa;
        ip = ra;
        if (ip < 0x4000) break;          /* no code there: the end, or junk */
        key = ip - 1;                    /* a return address: the call is before it */
    }
    return depth;
}

size_t agent_stack_capture(uint64_t *pcs, size_t max)
{
    if (!self_as) return 0;
    unw_context_t uc;
    if (unw_getcontext(&uc) != 0) return 0;
    return walk(&uc, pcs, max);
}

/* close_validation_pipe: runs init, which makes libunwind initialise, and
 * closes the pipe libunwind opens then for its local memory validation,
 * which this file never uses (see top). pipe2 takes the two lowest free
 * numbers, which a probe pipe has just shown; they are closed only if they
 * are, after init, a new pipe with libunwind's flags (O_NONBLOCK, and
 * FD_CLOEXEC), so a descriptor another thread opened meanwhile is never
 * touched. */
static void close_validation_pipe(void (*init)(void))
{
    int probe[2];
    struct stat old;
    bool probed = pipe2(probe, O_CLOEXEC) == 0;
    if (probed) {
        probed = fstat(probe[0], &old) == 0;
        close(probe[0]);
        close(probe[1]);
    }
    init();
    if (!probed) return;
    struct stat r, wr;
    if (fstat(probe[0], &r) != 0 || fstat(probe[1], &wr) != 0) return;
    if (!S_ISFIFO(r.st_mode) || r.st_dev != wr.st_dev || r.st_ino != wr.st_ino ||
        (r.st_dev == old.st_dev && r.st_ino == old.st_ino))
        return;
    int fl0 = fcntl(probe[0], F_GETFL), fl1 = fcntl(probe[1], F_GETFL);
    int fd0 = fcntl(probe[0], F_GETFD), fd1 = fcntl(probe[1], F_GETFD);
    if (fl0 < 0 || fl1 < 0 || fd0 < 0 || fd1 < 0) return;
    if ((fl0 & (O_ACCMODE | O_NONBLOCK)) != (O_RDONLY | O_NONBLOCK) ||
        (fl1 & (O_ACCMODE | O_NONBLOCK)) != (O_WRONLY | O_NONBLOCK) ||
        !(fd0 & FD_CLOEXEC) || !(fd1 & FD_CLOEXEC))
        return;
    close(probe[0]);
    close(probe[1]);
}

static void create_self_as(void)
{
    static unw_accessors_t accessors = {
        .find_proc_info = find_proc_info,
        .put_unwind_info = put_unwind_info,
        .get_dyn_info_list_addr = get_dyn_info_list_addr,
        .access_mem = access_mem,
        .access_reg = access_reg,
        .access_fpreg = access_fpreg,
        .resume = resume,
        .get_proc_name = NULL,
    };
    unw_addr_space_t as = unw_create_addr_space(&accessors, 0);
    if (!as) return;
    /* "Per thread": in Debian's build (no per-thread cache compiled in)
     * libunwind then uses its one cache without its lock, which blocks
     * every signal (a program single-stepping itself would die of the
     * SIGTRAP); the local address space ran that way before. */
    unw_set_caching_policy(as, UNW_CACHE_PER_THREAD);
    /* libunwind initialises (and opens its pipe) at its first cursor. */
    unw_context_t uc;
    unw_cursor_t cursor;
    walk_t w;
    memset(&w, 0, sizeof w);
    w.uc = &uc;
    if (unw_getcontext(&uc) != 0 || unw_init_remote(&cursor, as, &w) != 0) {
        unw_destroy_addr_space(as);
        return;
    }
    self_as = as;
}

/* ------------------------------------------------------------------------ */
/* Records                                                                  */
/* ------------------------------------------------------------------------ */

static uint64_t hash_frames(const uint64_t *pcs, size_t depth)
{
#ifdef HEAPWATCH_TEST
    if (agent_stacks_test_hash) return agent_stacks_test_hash(pcs, depth);
#endif
    uint64_t h = 0x84222325cbf29ce4ull ^ depth;
    for (size_t i = 0; i < depth; i++) {
        h ^= pcs[i];
        h *= 0x100000001b3ull;
        h ^= h >> 29;
    }
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

agent_stack_t *agent_stack_get(uint32_t id)
{
    if (id >= AGENT_STACKS_MAX) return NULL;
    agent_stack_t **chunk = __atomic_load_n(&directory[id >> CHUNK_BITS], __ATOMIC_ACQUIRE);
    if (!chunk) return NULL;
    return __atomic_load_n(&chunk[id & (CHUNK_IDS - 1)], __ATOMIC_ACQUIRE);
}

uint32_t agent_stacks_count(void)
{
    uint32_t n = __atomic_load_n(&next_id, __ATOMIC_ACQUIRE);
    return n < STACKS_LIMIT ? n : STACKS_LIMIT;
}

size_t agent_stacks_bytes(void)
{
    size_t n = __atomic_load_n(&table_bytes, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < STRIPES; i++) {
        map_stats_t st;
        if (__atomic_load_n(&lost, __ATOMIC_RELAXED)) break;
        if (!agent_lock_ranked_note(&stripes[i].lock, AGENT_RANK_STRIPE, "stack table size: a stripe was busy")) continue;
        if (stripes[i].index) {
            map_get_stats(stripes[i].index, &st);
            n += st.bytes;
        }
        agent_unlock_ranked(&stripes[i].lock, AGENT_RANK_STRIPE);
    }
    return n;
}

/* publish: stores record r under id, creating its directory chunk.
 * @return false when the chunk cannot be allocated. Called with a stripe
 * lock held; chunk creation races between stripes are settled by CAS. */
static bool publish(uint32_t id, agent_stack_t *r)
{
    agent_stack_t ***slot = &directory[id >> CHUNK_BITS];
    agent_stack_t **chunk = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!chunk) {
        agent_stack_t **fresh = allocator.alloc(allocator.ctx, CHUNK_IDS * sizeof *fresh);
        if (!fresh) return false;
        if (__atomic_compare_exchange_n(slot, &chunk, fresh, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            chunk = fresh;
            __atomic_add_fetch(&table_bytes, CHUNK_IDS * sizeof *fresh, __ATOMIC_RELAXED);
        } else {
            allocator.free(allocator.ctx, fresh);   /* another stripe made it */
        }
    }
    __atomic_store_n(&chunk[id & (CHUNK_IDS - 1)], r, __ATOMIC_RELEASE);
    return true;
}

/* new_record: a record for the stack with this hash, published under a
 * fresh id, or NULL. */
static agent_stack_t *new_record(const uint64_t *pcs, size_t depth, uint64_t hash)
{
    uint32_t id = __atomic_fetch_add(&next_id, 1, __ATOMIC_ACQ_REL);
    if (id >= STACKS_LIMIT) {
        __atomic_store_n(&next_id, STACKS_LIMIT, __ATOMIC_RELAXED);
        return NULL;
    }
    size_t bytes = sizeof(agent_stack_t) + depth * sizeof pcs[0];
    agent_stack_t *r = allocator.alloc(allocator.ctx, bytes);
    if (!r) return NULL;   /* the id stays unpublished: readers skip it */
    r->hash = hash;
    r->id = id;
    r->depth = (uint32_t)depth;
    if (depth) memcpy(r->pcs, pcs, depth * sizeof pcs[0]);
    if (!publish(id, r)) {
        allocator.free(allocator.ctx, r);
        return NULL;
    }
    __atomic_add_fetch(&table_bytes, bytes, __ATOMIC_RELAXED);
    return r;
}

/* lookup_or_add: in stripe st (locked), the record of this stack. */
static agent_stack_t *lookup_or_add(stripe_t *st, const uint64_t *pcs, size_t depth, uint64_t hash)
{
    for (unsigned probe = 0; probe < PROBES; probe++) {
        uint64_t key = hash + probe;
        void *slot;
        bool inserted;
        if (map_assign64(st->index, key, &slot, &inserted) != MAP_OK) return NULL;
        if (!inserted) {
            uint32_t id;
            memcpy(&id, slot, sizeof id);
            agent_stack_t *r = agent_stack_get(id);
            if (r && r->depth == depth && memcmp(r->pcs, pcs, depth * sizeof pcs[0]) == 0)
                return r;
            continue;   /* a different stack with this hash: probe on */
        }
        agent_stack_t *r = new_record(pcs, depth, hash);
        if (!r) {
            map_delete64(st->index, key, NULL);
            return NULL;
        }
        memcpy(slot, &r->id, sizeof r->id);
        return r;
    }
    return NULL;
}

agent_stack_t *agent_stack_intern(const uint64_t *pcs, size_t depth)
{
    if (!ready || __atomic_load_n(&lost, __ATOMIC_RELAXED)) return agent_stack_get(0);
    uint64_t hash = hash_frames(pcs, depth);
    stripe_t *st = &stripes[hash >> 60 & (STRIPES - 1)];
    agent_lock_ranked(&st->lock, AGENT_RANK_STRIPE);
    agent_stack_t *r = lookup_or_add(st, pcs, depth, hash);
    agent_unlock_ranked(&st->lock, AGENT_RANK_STRIPE);
    return r ? r : agent_stack_get(0);
}

/* ------------------------------------------------------------------------ */
/* Start-up and fork                                                        */
/* ------------------------------------------------------------------------ */

int agent_stacks_init(void)
{
    allocator = map_arena_allocator();
    for (unsigned i = 0; i < STRIPES; i++) pthread_mutex_init(&stripes[i].lock, NULL);
    dl_iterate_phdr(find_own_segment, (void *)(uintptr_t)agent_stack_capture);
    close_validation_pipe(create_self_as);
    if (!self_as) agent_log("heapwatch: libunwind could not be set up; sampled allocations get no stack\n");
    /* Record 0: the empty stack. */
    if (!new_record(NULL, 0, 0)) return -1;
    for (unsigned i = 0; i < STRIPES; i++)
        if (map_new(8, sizeof(uint32_t), 64, &allocator, &stripes[i].index) != MAP_OK) return -1;
    ready = 1;
    return 0;
}

/* UNWIND_FORK_TRIES: how many times prefork tries unwind_lock (a few
 * milliseconds at most, and never past the fork's deadline; never waits
 * on it: the forking thread may be a signal handler that interrupted a
 * libunwind call). */
#define UNWIND_FORK_TRIES 1000

bool agent_stacks_prefork(uint64_t deadline_ns)
{
    bool all = true;
    for (unsigned i = 0; i < STRIPES; i++) {
        prefork_took[i] = agent_lock_ranked_until(&stripes[i].lock, AGENT_RANK_STRIPE, deadline_ns);
        all &= prefork_took[i];
    }
    unwind_held_at_fork = false;
    for (unsigned t = 0; t < UNWIND_FORK_TRIES && !unwind_held_at_fork; t++) {
        unwind_held_at_fork = pthread_mutex_trylock(&unwind_lock) == 0;
        if (unwind_held_at_fork) agent_rank_taken(AGENT_RANK_UNWIND);
        if (!unwind_held_at_fork) {
            if (agent_mono_ns() >= deadline_ns) break;
            sched_yield();
        }
    }
    return all;
}

void agent_stacks_postfork_parent(void)
{
    if (unwind_held_at_fork) agent_unlock_ranked(&unwind_lock, AGENT_RANK_UNWIND);
    for (unsigned i = STRIPES; i-- > 0;) {
        if (prefork_took[i]) agent_unlock_ranked(&stripes[i].lock, AGENT_RANK_STRIPE);
        prefork_took[i] = false;
    }
}

bool agent_stacks_postfork_child(void)
{
    /* A child forked while another thread was inside libunwind inherits
     * its locks and caches mid-update: it uses the recipes it has, and
     * libunwind never again (stacks end at a frame with no recipe). */
    if (!unwind_held_at_fork) unwind_off = true;
    pthread_mutex_init(&unwind_lock, NULL);
    for (unsigned i = 0; i < STRIPES; i++) {
        pthread_mutex_init(&stripes[i].lock, NULL);
        if (!prefork_took[i]) __atomic_store_n(&lost, true, __ATOMIC_RELAXED);
        prefork_took[i] = false;
    }
    return !__atomic_load_n(&lost, __ATOMIC_RELAXED);
}
