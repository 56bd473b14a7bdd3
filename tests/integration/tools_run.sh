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

# --- an output directory with earlier results (issue 15: reruns piled up) --
"$HW" run -q -o "$T/again" -- true
echo mine > "$T/again/notes.txt"
"$HW" run -q -o "$T/again" -- sh -c 'echo ran' >"$T/again.out" 2>"$T/again.err"; rc=$?
check "a second run into the same directory is refused: exit 2, one line, the program not run" \
    sh -c "[ $rc = 2 ] && [ ! -s '$T/again.out' ] && [ \$(wc -l < '$T/again.err') = 1 ] && grep -q 'holds [0-9]* result files of an earlier run: give --append to add to them, or --clean' '$T/again.err'"
"$HW" run -q -o "$T/again" --append -- true; rc=$?
check_eq "--append: runs, and both runs' summaries are there" "0 2" "$rc $(ls "$T/again" | grep -c '^summary\.')"
touch "$T/again/report.html" "$T/again/junit.xml"
ln -s "$T/victim" "$T/again/heap.1.0001.exit.pb.gz"; echo keep > "$T/victim"
"$HW" run -q -o "$T/again" --clean -- true; rc=$?
check_eq "--clean: the earlier results, report and JUnit file removed, one new summary; other files kept" \
    "0 1 notes.txt" "$rc $(ls "$T/again" | grep -c '^summary\.') $(ls "$T/again" | grep -v '^summary\.\|^timeline\.\|^heap\.' | xargs)"
check_eq "--clean: a link named like a result is removed, its target untouched" keep "$(cat "$T/victim")"
"$HW" run -q -o "$T/again" --clean --append -- true 2>/dev/null; rc=$?
check_eq "--clean with --append: exit 2" 2 "$rc"
(cd "$T" && mkdir -p rel && cd rel && "$HW" run -o out -- sh -c 'cd / && echo "$HEAPWATCH_OUT"') >"$T/rel.out" 2>/dev/null
check_eq "run hands the agent an absolute HEAPWATCH_OUT" "$T/rel/out" "$(cat "$T/rel.out")"

# --- the whole tree's verdict at the end (issue 15) --------------------------
seq 2000 | sort -R > "$T/nums"
"$HW" run -o "$T/tree" -- sh -c 'sort -n "$1" | tail -1 >/dev/null; ls / >/dev/null; exit 3' _ "$T/nums" 2>"$T/tree.err"; rc=$?
check_eq "run over a tree of processes: the program's status comes back" 3 "$rc"
check "  stderr ends with the whole tree's summary: processes, commands, alerts, top commands" \
    sh -c "grep -q '^heapwatch: run: 4 processes in 4 commands, [0-9,]* allocations' '$T/tree.err' && grep -q '^heapwatch: alerts: none' '$T/tree.err' && grep -q '^heapwatch:  *[0-9.]* [KM]iB  ls \*  (1 process)' '$T/tree.err'"
"$HW" run -o "$T/single" -- true 2>"$T/single.err"
check_eq "  a single process: only its own two lines" 2 "$(wc -l < "$T/single.err")"

# --- --only / --exclude (HEAPWATCH_ONLY / HEAPWATCH_EXCLUDE, issue 15) -----
# sh runs sort, ls and cat: the rule holds for each program exec'ed, by
# its executable's name or its argv[0]'s; an excluded process writes
# nothing and its output is untouched.
job='sort -n "$1" | tail -1; ls "$1" >/dev/null; cat "$1" | wc -l'
"$HW" run -o "$T/only" --only 'so?t' -- sh -c "$job" _ "$T/nums" >"$T/only.out" 2>"$T/only.err"; rc=$?
check_eq "--only: the program's exit status and output are untouched" "0 2000 2000" "$rc $(tr '\n' ' ' < "$T/only.out" | xargs)"
exes() { for f in "$1"/summary.*.json; do [ -f "$f" ] && basename "$(json_get "$f" exe)"; done | sort | xargs; }
check_eq "--only 'so?t': only sort wrote results" sort "$(exes "$T/only")"
spid=$(ls "$T/only" | sed -n 's/^summary\.\([0-9]*\)\.json$/\1/p')
check_eq "--only: every file in the directory is sort's (its summary, and its timeline and profile when it sampled)" "" \
    "$(ls "$T/only" | grep -v "^[a-z]*\.$spid\.")"
check "--only: run says its own program was not profiled, and how many were" \
    grep -q "^heapwatch: sh (pid [0-9]*) exited with status 0; not profiled itself (--only/--exclude); 1 profiled process(es) left results in $T/only" "$T/only.err"
"$HW" run -o "$T/excl" --exclude 'sh, [lt]*' -- sh -c "$job" _ "$T/nums" >"$T/excl.out" 2>/dev/null; rc=$?
check_eq "--exclude 'sh, [lt]*': output untouched" "0 2000 2000" "$rc $(tr '\n' ' ' < "$T/excl.out" | xargs)"
check_eq "--exclude 'sh, [lt]*': sort, cat and wc profiled, sh, tail and ls not" "cat sort wc" "$(exes "$T/excl")"
"$HW" run -q -o "$T/none" --only nothing-matches -- sh -c "$job" _ "$T/nums" >/dev/null 2>&1
check "--only matching nothing: no file, not even the directory" [ ! -e "$T/none" ]
HEAPWATCH_OUT=$T/bad HEAPWATCH_ONLY='bin/sort' LD_PRELOAD=$PWD/$BUILD/libheapwatch.so sort -n "$T/nums" >/dev/null 2>"$T/bad.err"
check "a bad HEAPWATCH_ONLY: one line naming it, and every process profiled" \
    sh -c "[ \$(wc -l < '$T/bad.err') = 1 ] && grep -q '^heapwatch: HEAPWATCH_ONLY=\"bin/sort\" is not valid' '$T/bad.err' && ls '$T/bad'/summary.*.json >/dev/null"
finish
