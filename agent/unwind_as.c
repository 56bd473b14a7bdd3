/*
 * unwind_as.c - this process as a libunwind address space of our own, in
 * which unwind.c's walk runs libunwind: the accessors, the checked reads
 * behind them, the unwind-table search, and libunwind's start-up, whose
 * validation pipe is closed at once.
 *
 * Why not libunwind's local unwinder. Debian's libunwind (1.6.2, built
 * with CONSERVATIVE_CHECKS) validates, in its local address space, every
 * address of an unw_step that misses its cache and every frame it guessed
 * (code without unwind tables: -fno-asynchronous-unwind-tables,
 * hand-written assembly, JIT) by reading and writing one byte through a
 * pipe kept in two static descriptor numbers, and when that read fails it
 * closes both numbers and makes a new pipe. A program that closed its
 * descriptors (daemons close 3..1023, shells `exec 3>file`) and reused the
 * numbers had its own files read, closed and replaced: its writes failed
 * with EBADF. So libunwind never runs in its local address space here: we
 * give it our own (libunwind-x86_64's unw_create_addr_space /
 * unw_init_remote, the API libunwind-ptrace uses), whose accessors read
 * this process, and libunwind validates only its local space.
 *
 * Reads. Unwind tables (.eh_frame_hdr, .eh_frame) of the object that
 * find_proc_info found (dl_iterate_phdr, as libunwind's local mode does)
 * are read directly. So are the stack slots a recipe names while the walk
 * is "trusted" (unwind.c reads those itself). Every other word (after a
 * frame-pointer guess or a libunwind step, code at an ip, libunwind's own
 * reads) goes through process_vm_readv on this process, which fails with
 * EFAULT instead of faulting, once per page and walk (later reads of that
 * page are direct; UNWIND_GOOD_PAGES = 16 pages remembered, and
 * UNWIND_INFO_SEGS = 4 objects' unwind tables). No descriptor. Without
 * process_vm_readv (a seccomp filter that refuses it, a kernel without
 * CONFIG_CROSS_MEMORY_ATTACH) every such read fails: stacks end at the
 * first frame that needs one; never a fault.
 *
 * libunwind's register-state cache is set "per thread": Debian's build has
 * no per-thread cache, and libunwind then uses its global cache without
 * taking its lock, as the local address space did before; its set-up and
 * its unwind-info pool still take locks (several per probe), whose
 * sigprocmask shim.c turns into nothing inside the agent's libunwind calls
 * (unwind.c, "Signals"). Since that cache is then unguarded, unwind.c
 * makes every libunwind call under its unwind_lock.
 *
 * Start-up at the first sample. The address space (agent_unwind_as_create)
 * and libunwind's global set-up with our space's caches
 * (agent_unwind_as_set_up) wait for the first libunwind call the walk
 * needs (unwind.c's as_ready): about 90 us that a process which never
 * samples, as most short ones, never pays. That runs inside a sample,
 * where the program's allocations are counted: the space's 26 KiB come
 * from libunwind's own malloc, which shim.c recognises by its caller
 * (agent_unwind_calling: libunwind's code, inside the agent's libunwind
 * call) and leaves uncounted; the set-up allocates nothing else.
 *
 * The validation pipe. libunwind's global set-up opens the pipe of its
 * local validation, which is never reached here. The set-up runs at the
 * process's first sample, mid-run, when other threads may be opening and
 * closing descriptors: a pipe made then could not be told from the
 * program's and closed safely. So the agent's pipe2 (shim.c) fails with
 * EMFILE for a call that comes from libunwind's code while this thread is
 * inside a libunwind call of the agent's (agent_unwind_calling: the
 * return address, and unwind_lock held): libunwind ignores the error (its
 * pipe numbers stay -1, as its own code expects when descriptors run out)
 * and no descriptor is made at all. A signal handler that interrupts the
 * set-up and makes a pipe of its own gets it.
 */
#define _GNU_SOURCE
#include <link.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#include "agent/unwind_as.h"

/* x86-64 .eh_frame_hdr encodings (LSB): the only table layout searched. */
#define EH_PE_udata4 0x03
#define EH_PE_sdata4 0x0b
#define EH_PE_pcrel 0x10
#define EH_PE_datarel 0x30
#define PAGE 4096u

/* find_s: dl_iterate_phdr's search for the object that holds an ip. */
typedef struct find_s {
    uintptr_t ip;
    uintptr_t text_lo, text_hi;          /* the PT_LOAD that holds ip */
    uintptr_t info_lo, info_hi;          /* the PT_LOAD that holds .eh_frame_hdr */
    const uint8_t *hdr;                  /* .eh_frame_hdr, or NULL */
} find_t;

/* Declared by libunwind's internal headers only; exported by
 * libunwind-x86_64.so (the table search its ptrace accessors use too). */
extern int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as, unw_word_t ip,
                                              unw_dyn_info_t *di, unw_proc_info_t *pi,
                                              int need_unwind_info, void *arg);

/* checked_read: len bytes at addr through process_vm_readv on this very
 * process, which fails (EFAULT) instead of faulting when the memory is not
 * readable. No descriptor involved. @return true when all were read. */
static bool checked_read(agent_unwind_walk_t *w, uintptr_t addr, void *out, size_t len)
{
    if (!w->pid) w->pid = (pid_t)syscall(SYS_getpid);
    struct iovec local = {out, len};
    struct iovec remote = {(void *)addr, len};
    return syscall(SYS_process_vm_readv, w->pid, &local, 1UL, &remote, 1UL, 0UL) == (long)len;
}

static bool in_info_segment(const agent_unwind_walk_t *w, uintptr_t addr, size_t len)
{
    for (unsigned i = 0; i < w->nsegs; i++)
        if (addr >= w->seg_lo[i] && addr + len <= w->seg_hi[i]) return true;
    return false;
}

static bool page_good(const agent_unwind_walk_t *w, uintptr_t page)
{
    for (unsigned i = 0; i < w->ngood; i++)
        if (w->good[i] == page) return true;
    return false;
}

static void remember_page(agent_unwind_walk_t *w, uintptr_t page)
{
    if (page_good(w, page)) return;
    w->good[w->ngood % UNWIND_GOOD_PAGES] = page;   /* oldest out when full */
    if (w->ngood < 2 * UNWIND_GOOD_PAGES) w->ngood++;
    if (w->ngood > UNWIND_GOOD_PAGES) w->ngood = UNWIND_GOOD_PAGES;
}

/* access_mem: libunwind reads a word. Unwind tables of the object found
 * last are read directly; anything else (stack slots, code at an ip, a
 * guessed frame pointer) directly only on a page this walk has already read
 * through the kernel, else through the kernel: a bad address fails the
 * step, it never faults. */
static int access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write, void *arg)
{
    (void)as;
    if (write) return -UNW_EREADONLYREG;
    uint64_t v;
    if (!agent_unwind_read_word(arg, (uintptr_t)addr, &v)) return -UNW_EINVAL;
    *val = (unw_word_t)v;
    return 0;
}

/* agent_unwind_read_word: the word at a, or false when it cannot be read
 * (never a fault): see access_mem. */
bool agent_unwind_read_word(agent_unwind_walk_t *w, uintptr_t a, uint64_t *val)
{
    if (w->probe && (agent_unwind_in_fake(a, UNWIND_FAKE_SP) || agent_unwind_in_fake(a, UNWIND_FAKE_BP))) {
        *val = (uint64_t)a + UNWIND_FAKE_MARK;
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

/* access_reg: the registers of the context a probe or a slow step made. */
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
    const agent_unwind_walk_t *w = arg;
    if (write || !w->uc || reg < 0 || (size_t)reg >= sizeof greg) return -UNW_EBADREG;
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

/* agent_unwind_find_proc_info: the FDE of ip, from the binary-search
 * table of the .eh_frame_hdr of the loaded object that holds ip (the
 * layout every x86-64 toolchain writes; another layout counts as no unwind
 * info). */
int agent_unwind_find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi,
                                int need_unwind_info, void *arg)
{
    agent_unwind_walk_t *w = arg;
    if (w->probe && (agent_unwind_in_fake(ip, UNWIND_FAKE_SP) || agent_unwind_in_fake(ip, UNWIND_FAKE_BP))) return -UNW_ENOINFO;
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
    w->seg_lo[w->nsegs % UNWIND_INFO_SEGS] = f.info_lo;
    w->seg_hi[w->nsegs % UNWIND_INFO_SEGS] = f.info_hi;
    if (w->nsegs < UNWIND_INFO_SEGS) w->nsegs++;
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

unw_addr_space_t agent_unwind_as_create(void)
{
    static unw_accessors_t accessors = {
        .find_proc_info = agent_unwind_find_proc_info,
        .put_unwind_info = put_unwind_info,
        .get_dyn_info_list_addr = get_dyn_info_list_addr,
        .access_mem = access_mem,
        .access_reg = access_reg,
        .access_fpreg = access_fpreg,
        .resume = resume,
        .get_proc_name = NULL,
    };
    return unw_create_addr_space(&accessors, 0);
}

bool agent_unwind_as_set_up(unw_addr_space_t as)
{
    /* libunwind initialises at the first of these calls: see "The
     * validation pipe" at the top for why its pipe2 fails. */
    /* "Per thread": in Debian's build (no per-thread cache compiled in)
     * libunwind then uses its one cache without its lock (one lock and two
     * system calls fewer per step); the local address space ran that way
     * before. */
    unw_set_caching_policy(as, UNW_CACHE_PER_THREAD);
    unw_context_t uc;
    unw_cursor_t cursor;
    agent_unwind_walk_t w;
    memset(&w, 0, sizeof w);
    w.uc = &uc;
    return unw_getcontext(&uc) == 0 && unw_init_remote(&cursor, as, &w) == 0;
}
