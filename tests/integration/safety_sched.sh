#!/usr/bin/env bash
# safety_sched.sh - issue 11, class 9: with HEAPWATCH_THREAD=auto the
# agent's thread starts from whichever program thread notices the first
# due job; it must not inherit that thread's CPU pinning or real-time
# policy (safe_sched pins its main thread to CPU 0 and, as root, makes it
# SCHED_FIFO before it allocates).
set -u
. tests/integration/lib.sh

want_cpus=$(python3 -c 'import os; s=sorted(os.sched_getaffinity(0)); print(len(s))')
out=$(HEAPWATCH_INTERVAL=0.1 with_agent "$T/out" "$PROGS/safe_sched" 2>"$T/err"); st=$?
echo "# $out"
kv() { echo "$out" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
check_eq "safe_sched ran (status $st) and pinned itself to CPU 0" "status 0, main_cpus 0" "status $st, main_cpus $(kv main_cpus)"
if [ "$want_cpus" -gt 1 ]; then
    # (the program inherits this shell's CPUs: its start CPUs)
    check_eq "the agent's thread keeps the CPUs the process had at start ($(kv agent_cpus)), not the pinned thread's" \
        "$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)" "$(kv agent_cpus)"
else
    ok "the agent's thread's CPUs # SKIP a single CPU here"
fi
if [ "$(kv rt)" = 1 ]; then
    check_eq "the program thread is SCHED_FIFO ($(kv main_policy)); the agent's thread is SCHED_OTHER ($(kv agent_policy))" \
        "main_policy 1, agent_policy 0" "main_policy $(kv main_policy), agent_policy $(kv agent_policy)"
else
    ok "real-time policy # SKIP the program may not take SCHED_FIFO here (not root)"
fi
finish
