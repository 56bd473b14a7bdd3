#!/usr/bin/env bash
# tools_run.sh - `heapwatch run`: options become variables, the program's
# exit status (or 128 + signal) comes back, the summary is printed.
set -u
. tests/integration/lib.sh
HW=$PWD/$BUILD/heapwatch

check "heapwatch --version" sh -c "'$HW' --version | grep -q '^heapwatch [0-9]'"
check "heapwatch --help exits 0 and lists run" sh -c "'$HW' --help | grep -q 'run \[options\]'"
check "heapwatch run --help exits 0" sh -c "'$HW' run --help | grep -q HEAPWATCH_RATE"
"$HW" run >/dev/null 2>&1; check_eq "run with no program exits 2" 2 "$?"
"$HW" frobnicate >/dev/null 2>&1; check_eq "an unknown verb exits 2" 2 "$?"

"$HW" run -o "$T/a" -- sh -c 'echo out; echo err >&2; exit 7' >"$T/out" 2>"$T/err"; rc=$?
check_eq "the program's exit status comes back (7)" 7 "$rc"
check_eq "the program's stdout is untouched" out "$(cat "$T/out")"
check "stderr: the program's line, then the summary" \
    sh -c "head -1 '$T/err' | grep -qx err && grep -q '^heapwatch: sh (pid [0-9]*): [0-9]* allocations' '$T/err'"
check "--out is honoured (summary written there)" sh -c "ls '$T/a'/summary.*.json >/dev/null"

"$HW" run -q -o "$T/b" -- sh -c 'kill -TERM $$' 2>"$T/err"; rc=$?
check_eq "killed by SIGTERM: exit 143, as a shell reports it" 143 "$rc"
check "-q prints nothing" [ ! -s "$T/err" ]

"$HW" run -o "$T/c" -- /nonexistent/program 2>"$T/err"; rc=$?
check_eq "a missing program: exit 127 and one message" "status 127, 1 stderr line" "status $rc, $(wc -l < "$T/err") stderr line"

"$HW" run -o "$T/d" --rate 1 --interval 0.5 -- sh -c 'echo "$HEAPWATCH_RATE $HEAPWATCH_INTERVAL $HEAPWATCH_OUT $LD_PRELOAD"' >"$T/env" 2>/dev/null
check "options become HEAPWATCH_* variables and LD_PRELOAD names the agent" \
    sh -c "grep -q '^1 0.5 $T/d .*libheapwatch.so' '$T/env'"
check_eq "the summary records the rate" 1 "$(json_get "$(ls "$T/d"/summary.*.json | head -1)" rate)"
(cd "$T" && "$HW" run -q -- true); check "default output directory ./heapwatch-out" [ -d "$T/heapwatch-out" ]
finish
