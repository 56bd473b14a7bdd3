/*
 * life_stepnew.c - allocation calls single-stepped from call sites the
 * agent has never unwound, with a SIGTRAP handler that uses sigprocmask.
 *
 * At HEAPWATCH_RATE=1 every allocation is sampled, and a call site never
 * seen before makes the agent's unwinder ask libunwind how to leave the
 * new frames (a probe) while the trap flag is set. libunwind's own locks
 * block every signal with sigprocmask; with SIGTRAP blocked, the kernel
 * kills a single-stepped thread (status 133, "Trace/breakpoint trap"). The
 * agent keeps libunwind's sigprocmask from doing anything inside its own
 * libunwind calls (agent/unwind.c, "Signals"), and must leave the
 * program's own calls alone, even from a handler that interrupted
 * libunwind: at every stepped instruction the handler blocks SIGUSR2 with
 * sigprocmask, checks that it is blocked, and puts the mask back.
 *
 * stdout (the same with and without the agent): one line per stepped call
 * and "handler masks: ok"; exit 0.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

static volatile int stepping;
static volatile unsigned long traps, mask_failures;

static void on_trap(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = ucv;
#if defined(__x86_64__)
    if (!stepping) {
        uc->uc_mcontext.gregs[REG_EFL] &= ~(greg_t)0x100;
        return;
    }
#else
    (void)uc;
#endif
    traps++;
    sigset_t usr2, old, now;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    if (sigprocmask(SIG_BLOCK, &usr2, &old) != 0 || sigprocmask(SIG_BLOCK, NULL, &now) != 0 ||
        !sigismember(&now, SIGUSR2))
        mask_failures++;
    if (sigprocmask(SIG_SETMASK, &old, NULL) != 0 || sigprocmask(SIG_BLOCK, NULL, &now) != 0 ||
        sigismember(&now, SIGUSR2))
        mask_failures++;
}

#if defined(__x86_64__)
#define STEP_BEGIN() (stepping = 1, __extension__({ __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq" ::: "memory", "cc"); }))
#define STEP_END() (stepping = 0, __extension__({ __asm__ volatile("nop" ::: "memory"); }))
#else
#define STEP_BEGIN() ((void)0)
#define STEP_END() ((void)0)
#endif

/* Each a call site of its own, called once, stepped. */
__attribute__((noinline)) static void *site_malloc(size_t n) { return malloc(n); }
__attribute__((noinline)) static void *site_calloc(size_t n) { return calloc(1, n); }
__attribute__((noinline)) static void *site_realloc(void *p, size_t n) { return realloc(p, n); }
__attribute__((noinline)) static void site_free(void *p) { free(p); }

static void stepped_calls(void)
{
    STEP_BEGIN();
    void *a = site_malloc(100);
    STEP_END();
    printf("malloc(100) stepped: %s\n", a ? "ok" : "failed");
    STEP_BEGIN();
    void *b = site_calloc(200);
    STEP_END();
    printf("calloc(200) stepped: %s\n", b ? "ok" : "failed");
    STEP_BEGIN();
    void *c = site_realloc(a, 5000);
    STEP_END();
    printf("realloc(100 -> 5000) stepped: %s\n", c ? "ok" : "failed");
    STEP_BEGIN();
    site_free(b);
    STEP_END();
    printf("free stepped: ok\n");
    free(c ? c : a);
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    stepped_calls();
#if defined(__x86_64__)
    if (traps == 0) {
        printf("no instruction was stepped\n");
        return 1;
    }
#endif
    printf("handler masks: %s\n", mask_failures ? "FAILED" : "ok");
    return mask_failures != 0;
}
