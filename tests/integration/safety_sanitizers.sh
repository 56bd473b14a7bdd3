#!/bin/bash
# safety_sanitizers.sh - issue 11, class 8: sanitized programs run as they
# do bare, under `heapwatch run` and with the agent preloaded by hand.
#
# The programs (safety_sanit.mk): sanit_heap built with ASan (gcc's shared
# runtime and clang's static one), LSan and, when clang's runtime is there,
# MSan; sanit_race with TSan; sanit_ubsan with UBSan only. For each, clean
# and with a real bug, the same as bare: exit status, stdout, the first
# lines of the sanitizer's report (pids and addresses masked). Where the
# sanitizer replaces malloc the agent steps aside: exactly one heapwatch
# line on stderr (naming the sanitizer), no file written. The UBSan-only
# program is profiled: its own count of what it allocated equals the
# agent's counters exactly, and a summary is written. Also: the user's
# ASAN_OPTIONS are kept, and an ASan program started by a profiled shell.
# gcc's static runtimes (-static-libasan, -static-libtsan) export no
# sanitizer symbol but their malloc comes first, with their interceptors
# of pthread_create and sigaction: the agent steps aside too (names.sh
# has an allocator linked into the executable, which it profiles).
. tests/integration/lib.sh

H=$PWD/$BUILD/heapwatch

# norm: masks what differs from run to run in a sanitizer's report.
norm() { sed -E 's/==[0-9]+==/==PID==/g; s/0x[0-9a-f]+/0xADDR/g; s/pid=[0-9]+/pid=PID/g'; }
# head3 FILE: the first three lines that are not the agent's, masked.
head3() { grep -v '^heapwatch: ' "$1" | head -3 | norm; }
# prog_frames FILE: the program's own frames in a report, in order
# ("main .../sanit_heap.c:49"): where it allocated, freed, raced.
prog_frames() { grep -o '[A-Za-z_0-9]* [^ ]*sanit_[a-z]*\.c:[0-9]*' "$1"; }
# hw_lines FILE: how many heapwatch lines.
hw_lines() { grep -c '^heapwatch' "$1"; }
# same3 A B C: all three strings equal.
same3() { [ "$1" = "$2" ] && [ "$1" = "$3" ]; }
# statuses_are WANT: the three runs of run3 all ended with WANT.
statuses_are() { same3 "$1" "$rc_bare" "$rc_run" && [ "$1" = "$rc_hand" ]; }
# same_files A B C: B and C hold what A holds.
same_files() { cmp -s "$1" "$2" && cmp -s "$1" "$3"; }
# no_files_of ERRFILE DIR: DIR holds no file of the process the agent's
# line in ERRFILE names (other processes, such as the llvm-symbolizer ASan
# starts, or `timeout`, are profiled as usual).
no_files_of() {
    local pid
    pid=$(sed -n 's/^heapwatch: .* in this process (pid \([0-9]*\)).*/\1/p' "$1")
    [ -n "$pid" ] && ! ls -A "$2" 2>/dev/null | grep -q "\.$pid\."
}
# one_line PREFIX TEXT: both runs' stderr hold one heapwatch line, which
# starts with TEXT.
one_line() {
    local f
    for f in "$1.run.err" "$1.hand.err"; do
        [ "$(grep -c '^heapwatch' "$f")" = 1 ] && grep '^heapwatch' "$f" | grep -qF "$2" || return 1
    done
}
# no_files_of_both PREFIX: neither run (PREFIX.run, PREFIX.hand) left a file.
no_files_of_both() { no_files_of "$1.run.err" "$1.run.d" && no_files_of "$1.hand.err" "$1.hand.d"; }
# summary_of DIR EXE_SUFFIX: the summary of the process whose exe ends so.
summary_of() {
    for f in "$1"/summary.*.json; do
        [ -f "$f" ] && case $(json_get "$f" exe) in *"$2") echo "$f"; return;; esac
    done
}

# run3 NAME ENV... -- PROG ARGS: bare, under heapwatch run, by hand;
# outputs in $T/NAME.{bare,run,hand}.{out,err}, statuses in rc_*.
run3() {
    local name=$1; shift
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" "$@" >"$T/$name.bare.out" 2>"$T/$name.bare.err"; rc_bare=$?
    env "${envs[@]}" timeout 30 "$H" run -o "$T/$name.run.d" -- "$@" >"$T/$name.run.out" 2>"$T/$name.run.err"; rc_run=$?
    local asan=verify_asan_link_order=0
    for e in "${envs[@]}"; do case $e in ASAN_OPTIONS=*) asan="${e#ASAN_OPTIONS=}:$asan";; esac; done
    env "${envs[@]}" ASAN_OPTIONS="$asan" HEAPWATCH_OUT="$T/$name.hand.d" LD_PRELOAD="$AGENT" \
        timeout 30 "$@" >"$T/$name.hand.out" 2>"$T/$name.hand.err"; rc_hand=$?
}

# aside NAME WHY WANT_RC ENV... -- PROG ARGS: a program the agent steps
# aside for, checked against its bare run; WHY: a sanitizer's name, or
# "own" (the executable's own malloc: gcc's static runtimes).
aside() {
    local name=$1 san=$2 want=$3; shift 3
    local why="$san runtime"
    [ "$san" = own ] && why="a sanitizer runtime linked into the executable"
    run3 "$name" "$@"
    check "$name: exit status as bare ($want): bare $rc_bare, run $rc_run, by hand $rc_hand" \
        statuses_are "$want"
    check "$name: stdout as bare" \
        same_files "$T/$name.bare.out" "$T/$name.run.out" "$T/$name.hand.out"
    local b r h
    b=$(head3 "$T/$name.bare.err"); r=$(head3 "$T/$name.run.err"); h=$(head3 "$T/$name.hand.err")
    check "$name: the sanitizer's report as bare (first lines: '$(echo "$b" | grep -m1 -E 'ERROR|WARNING|^$' )')" \
        same3 "$b" "$r" "$h"
    b=$(prog_frames "$T/$name.bare.err"); r=$(prog_frames "$T/$name.run.err"); h=$(prog_frames "$T/$name.hand.err")
    check "$name: the program's frames in the report as bare ($(echo "$b" | grep -c .) frames: $(echo $b | tr '\n' ' ' | cut -c1-80))" \
        same3 "$b" "$r" "$h"
    check "$name: one heapwatch line ($why: the agent steps aside): run $(hw_lines "$T/$name.run.err"), by hand $(hw_lines "$T/$name.hand.err")" \
        one_line "$T/$name" "heapwatch: $why in this process (pid "
    check "$name: no heapwatch file of the sanitized process" \
        no_files_of_both "$T/$name"
}

aside asan_clean AddressSanitizer 0 -- "$PROGS/sanit_heap_asan" clean
aside asan_uaf AddressSanitizer 1 -- "$PROGS/sanit_heap_asan" uaf
check "asan_uaf: the report is a heap-use-after-free" grep -q 'ERROR: AddressSanitizer: heap-use-after-free' "$T/asan_uaf.run.err"
aside asan_leak AddressSanitizer 1 -- "$PROGS/sanit_heap_asan" leak
aside asan_exitcode AddressSanitizer 42 ASAN_OPTIONS=exitcode=42 -- "$PROGS/sanit_heap_asan" uaf
aside asan_clang_uaf AddressSanitizer 1 -- "$PROGS/sanit_heap_asan_clang" uaf
aside lsan_leak LeakSanitizer 23 -- "$PROGS/sanit_heap_lsan" leak
aside tsan_clean ThreadSanitizer 0 -- "$PROGS/sanit_race_tsan" clean
aside tsan_race ThreadSanitizer 66 -- "$PROGS/sanit_race_tsan" race
check "tsan_race: the report is a data race" grep -q 'WARNING: ThreadSanitizer: data race' "$T/tsan_race.run.err"
aside asan_static_uaf own 1 -- "$PROGS/sanit_heap_asan_static" uaf
aside tsan_static_race own 66 -- "$PROGS/sanit_race_tsan_static" race
if [ -x "$PROGS/sanit_heap_msan" ]; then
    aside msan_uninit MemorySanitizer 1 -- "$PROGS/sanit_heap_msan" uninit
else
    echo "# skipped: MemorySanitizer (clang's runtime, package libclang-rt-14-dev, not installed)"
fi

# An ASan program started by a profiled shell (heapwatch run -- make test).
"$H" run -q -o "$T/tree.d" -- sh -c "'$PROGS/sanit_heap_asan' uaf; echo status \$?" >"$T/tree.out" 2>"$T/tree.err"; rc=$?
check "an ASan program under a profiled shell: its report and status 1 (shell exit $rc)" \
    sh -c "[ $rc = 0 ] && grep -q '^status 1\$' '$T/tree.out' && grep -q 'ERROR: AddressSanitizer: heap-use-after-free' '$T/tree.err' &&
           [ \$(grep -c '^heapwatch' '$T/tree.err') = 1 ] && ls '$T/tree.d' | grep -q '^summary\.'"

# UBSan only: profiled, counts exact.
for mode in clean overflow; do
    run3 "ubsan_$mode" -- "$PROGS/sanit_ubsan" "$mode"
    check "ubsan $mode: exit status 0 as bare: bare $rc_bare, run $rc_run, by hand $rc_hand" \
        statuses_are 0
    for how in run hand; do
        f=$T/ubsan_$mode.$how.out
        check "ubsan $mode ($how): the agent's counters equal the program's own: $(grep '^counts' "$f")" \
            python3 -c 'import re,sys; l=[x for x in open(sys.argv[1]) if x.startswith("counts:")]; p=re.findall(r"(\d+)/(\d+)", l[0]) if l else []; sys.exit(not(len(p)==4 and all(a==b for a,b in p) and int(p[0][0])==3000))' "$f"
        s=$(summary_of "$T/ubsan_$mode.$how.d" /sanit_ubsan)
        check "ubsan $mode ($how): summary written, mallocs $( [ -n "$s" ] && json_get "$s" mallocs) >= 3000, frees >= 1000" \
            sh -c "[ -n '$s' ] && [ \$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(int(d[\"mallocs\"]>=3000 and d[\"frees\"]>=1000))' '$s') = 1 ]"
    done
    check_eq "ubsan $mode: UBSan's report as bare" \
        "$(head3 "$T/ubsan_$mode.bare.err")" "$(grep -v '^heapwatch: ' "$T/ubsan_$mode.hand.err" | head -3 | norm)"
done
check "ubsan overflow: UBSan reported the signed overflow" grep -q 'runtime error: signed integer overflow' "$T/ubsan_overflow.run.err"

# heapwatch run does not blame a kill when the program ended on its own.
"$H" run -o "$T/quiet.d" -- sh -c 'exec 2>&-; exit 5' 2>"$T/quiet.err"; rc=$?
"$H" run -o "$T/kill.d" -- sh -c 'kill -9 $$' 2>"$T/kill.err"; rc2=$?
check "no summary: run says how the program ended (status $rc / $rc2: $(head -1 "$T/kill.err"))" \
    sh -c "[ $rc = 5 ] && [ $rc2 = 137 ] && grep -q 'killed by signal 9' '$T/kill.err'"
finish
