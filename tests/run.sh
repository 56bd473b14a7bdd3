#!/usr/bin/env bash
# tests/run.sh - runs every test and ends with one aggregate line
#   N passed, N failed
#
# usage: tests/run.sh UNIT_BIN... -- FUZZ_REGRESSION_BIN...
#
#   unit binaries     cmocka programs; their "[  PASSED  ] N test(s)." and
#                     "[  FAILED  ] N test(s)" lines are counted; a binary
#                     that dies without its summary counts as one failure.
#   integration       tests/integration/*.sh, run from the repo root with
#                     BUILD set; each "ok ..." / "not ok ..." line they print
#                     counts as one test (TAP style); a script that prints
#                     none counts as one test judged by its exit status, and
#                     a non-zero exit always counts one more failure.
#                     The scripts named in DEBUG_AGENT_SCRIPTS run a second
#                     time under the debug agent ($BUILD/debug/libheapwatch.so,
#                     asserts on), reported as "integration/<name> [debug]".
#                     A log with "heapwatch: assertion failed", or an assert
#                     line the debug agent wrote to HEAPWATCH_ASSERT_LOG
#                     (programs' stderr often goes elsewhere), fails its run.
#   fuzz regression   each replays tests/fuzz/corpus/<name>/ (one test each).
#
# Select with TEST_FILTER=<substring>. Full logs: $BUILD/test-logs/ (TEST_LOGS=DIR
# elsewhere: a run nested in another, tools_dogfood.sh).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
LOGS=${TEST_LOGS:-$BUILD/test-logs}
mkdir -p "$LOGS"
passed=0
failed=0
failures=()

unit=()
fuzz=()
seen_sep=0
for a in "$@"; do
    if [ "$a" = "--" ]; then seen_sep=1; continue; fi
    if [ $seen_sep = 0 ]; then unit+=("$a"); else fuzz+=("$a"); fi
done

selected() { [ -z "${TEST_FILTER:-}" ] || [[ "$1" == *"$TEST_FILTER"* ]]; }

report_failure() {   # name logfile
    failures+=("$1")
    echo "---- $1: last lines of $2"
    tail -n 25 "$2" | sed 's/^/    /'
}

for bin in "${unit[@]}"; do
    selected "$bin" || continue
    variant=$(basename "$(dirname "$(dirname "$bin")")")
    name="$(basename "$bin") ($variant)"
    log="$LOGS/$(basename "$bin").$variant.log"
    "$bin" >"$log" 2>&1
    rc=$?
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n1)
    p=${p:-0}; f=${f:-0}
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi   # died without a summary
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" = 0 ]; then
        printf 'PASS  %-40s %4d tests\n' "$name" "$p"
    else
        printf 'FAIL  %-40s %4d passed, %d failed (exit %d)\n' "$name" "$p" "$f" "$rc"
        report_failure "$name" "$log"
    fi
done

# run_integration SCRIPT AGENT_VARIANT: one run of an integration script;
# variant "debug" preloads the debug agent instead of the release one.
run_integration() {
    local script=$1 variant=$2 name label log rc p f
    name=$(basename "$script" .sh)
    label="integration/$name"
    log="$LOGS/integration.$name.log"
    local -a env=(BUILD="$BUILD")
    local asserts=""
    if [ "$variant" = debug ]; then
        label="$label [debug]"
        log="$LOGS/integration.$name.debug.log"
        asserts="$PWD/$LOGS/asserts.$name.log"   # the debug agent's assert lines (HEAPWATCH_ASSERT_LOG)
        rm -f "$asserts"
        env+=(HEAPWATCH_TEST_AGENT="$PWD/$BUILD/debug/libheapwatch.so" HEAPWATCH_ASSERT_LOG="$asserts")
    fi
    env "${env[@]}" bash "$script" >"$log" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^not ok ' "$log")
    if [ "$p" = 0 ] && [ "$f" = 0 ]; then
        if [ "$rc" = 0 ]; then p=1; else f=1; fi
    elif [ "$rc" != 0 ]; then
        f=$((f + 1))
    fi
    if grep -q 'heapwatch: assertion failed' "$log" || { [ -n "$asserts" ] && [ -s "$asserts" ]; }; then
        echo "not ok - the agent's asserts held ($(cat "$asserts" 2>/dev/null | head -n1; grep -m1 'heapwatch: assertion failed' "$log"))" >>"$log"
        f=$((f + 1))
    fi
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" = 0 ]; then
        printf 'PASS  %-40s %4d tests\n' "$label" "$p"
    else
        printf 'FAIL  %-40s %4d passed, %d failed (exit %d)\n' "$label" "$p" "$f" "$rc"
        grep '^not ok ' "$log" | sed 's/^/    /'
        report_failure "$label" "$log"
    fi
}

for script in $(ls tests/integration/*.sh 2>/dev/null | grep -v '/lib\.sh$'); do
    selected "$script" || continue
    run_integration "$script" release
done
for name in ${DEBUG_AGENT_SCRIPTS:-}; do
    script=tests/integration/$name.sh
    [ -f "$script" ] || { echo "run.sh: DEBUG_AGENT_SCRIPTS names $name: no $script" >&2; failed=$((failed + 1)); continue; }
    selected "$script" || continue
    run_integration "$script" debug
done

for bin in "${fuzz[@]}"; do
    selected "$bin" || continue
    name=$(basename "$bin")
    corpus=tests/fuzz/corpus/$name
    log="$LOGS/fuzz.$name.log"
    "$bin" "$corpus" >"$log" 2>&1
    rc=$?
    if [ "$rc" = 0 ]; then
        passed=$((passed + 1))
        printf 'PASS  %-40s %s\n' "fuzz-regression/$name" "$(tail -n1 "$log")"
    else
        failed=$((failed + 1))
        printf 'FAIL  %-40s exit %d\n' "fuzz-regression/$name" "$rc"
        report_failure "fuzz-regression/$name" "$log"
    fi
done

if [ ${#failures[@]} -gt 0 ]; then
    echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
