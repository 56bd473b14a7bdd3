#!/usr/bin/env bash
# safety_nopie.sh - which malloc the program's calls reach. A -no-pie
# executable that takes malloc's address (Debian's python3.11 is one) makes
# its own PLT entry malloc's canonical address: the agent must see that
# the entry binds to the agent, and profile the program, not step aside
# as for an allocator of the program's own. A malloc preloaded before the
# agent: the agent sees nothing and its summary says whose malloc it was.
source tests/integration/lib.sh

NOPIE=$PROGS/nopie_count
check "nopie_count is a -no-pie executable" bash -c "file -L '$NOPIE' | grep -q 'LSB executable'"

HEAPWATCH_RATE=1 with_agent "$T/nopie" "$NOPIE" 1000 >"$T/nopie.out" 2>"$T/nopie.err"
check_eq "-no-pie program: exit status 0" 0 $?
check_eq "-no-pie program: its output" "allocated 1000 freed 500" "$(cat "$T/nopie.out")"
check_eq "-no-pie program: nothing on stderr (the agent does not step aside)" "" "$(cat "$T/nopie.err")"
sum=$(ls "$T"/nopie/summary.*.json 2>/dev/null | head -n1)
check "-no-pie program: a summary" test -n "$sum"
if [ -n "$sum" ]; then
    check_ge "-no-pie program: its 1000 allocations counted" "$(json_get "$sum" mallocs)" 1000
    check_ge "-no-pie program: its 500 frees counted" "$(json_get "$sum" frees)" 500
    check_ge "-no-pie program: sampled at rate 1" "$(json_get "$sum" samples)" 1000
fi

# Debian's python3, -no-pie on this machine: profiled.
PY=/usr/bin/python3
if file -L "$PY" | grep -q 'LSB executable'; then
    PYTHONMALLOC=malloc with_agent "$T/py" "$PY" -c 'print(len([str(i) for i in range(10000)]))' \
        >"$T/py.out" 2>"$T/py.err"
    check_eq "python3 (-no-pie): output as bare" "10000" "$(cat "$T/py.out")"
    check_eq "python3 (-no-pie): no heapwatch line" "" "$(grep heapwatch "$T/py.err")"
    check "python3 (-no-pie): a summary and an exit profile" \
        bash -c "ls '$T'/py/summary.*.json '$T'/py/heap.*.exit.pb.gz >/dev/null"
else
    ok "python3 is a PIE here: nothing to check # SKIP"
fi

# A malloc preloaded before the agent (a shared object, no sanitizer): the
# agent runs, sees nothing, and says so (one line, the summary's malloc_owner).
HEAPWATCH_OUT=$T/pre LD_PRELOAD="$PROGS/libpremalloc.so $AGENT" "$NOPIE" 100 >"$T/pre.out" 2>"$T/pre.err"
check_eq "malloc preloaded first: exit status 0" 0 $?
check_eq "malloc preloaded first: output as bare" "allocated 100 freed 50" "$(cat "$T/pre.out")"
check_eq "malloc preloaded first: one heapwatch line, the agent sees no allocation" 1 \
    "$(grep -c "heapwatch: malloc in this process (pid [0-9]*) is $PROGS/libpremalloc.so's, bound ahead of the agent's (preloaded before it): the agent sees no allocation" "$T/pre.err")"
pre_sum=$(ls "$T"/pre/summary.*.json 2>/dev/null | head -n1)
check "malloc preloaded first: a summary" test -n "$pre_sum"
check_eq "malloc preloaded first: the summary's malloc_owner names it" "$PROGS/libpremalloc.so" \
    "$([ -n "$pre_sum" ] && python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["malloc_owner"])' "$pre_sum")"

# The agent first, then that malloc: the agent's comes first, it profiles.
HEAPWATCH_OUT=$T/post LD_PRELOAD="$AGENT $PROGS/libpremalloc.so" "$NOPIE" 100 >"$T/post.out" 2>"$T/post.err"
check_eq "agent preloaded first: no heapwatch line" "" "$(grep heapwatch "$T/post.err")"
check "agent preloaded first: a summary" bash -c "ls '$T'/post/summary.*.json >/dev/null"

finish
