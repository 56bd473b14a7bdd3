#!/usr/bin/env bash
# lib_selftest.sh - the checks of lib.sh themselves (no build needed): each
# helper runs in a subshell on inputs that pass and inputs that fail, and
# its whole output, its status and the failure count it leaves are compared
# with what they must be. A failing input must give exactly one "not ok"
# line, followed by the expected and actual values as TAP comments; a value
# holding newlines, control characters or "ok - " cannot add a line that
# tests/run.sh would count; a long value is cut.
#
# The judging here uses plain string comparison, never the helpers under
# test (a broken check_eq cannot pass its own test).
set -u
. tests/integration/lib.sh

# expect CASE RC NFAIL OUTPUT HELPER ARGS...: one check: HELPER ARGS, run in
# a subshell with nfail=0, returns RC, leaves nfail at NFAIL and prints
# exactly OUTPUT (lines joined by newlines).
expect() {
    local case=$1 want_rc=$2 want_nfail=$3 want_out=$4; shift 4
    local got_rc got_nfail got_out
    ( nfail=0; "$@" >"$T/out" 2>"$T/err"; echo "$? $nfail" >"$T/st" )
    read -r got_rc got_nfail <"$T/st"
    got_out=$(cat "$T/out")
    if [ "$got_rc" = "$want_rc" ] && [ "$got_nfail" = "$want_nfail" ] &&
       [ "$got_out" = "$want_out" ] && [ ! -s "$T/err" ]; then
        ok "$case"
    else
        not_ok "$case"
        echo "#   status $got_rc (want $want_rc), nfail $got_nfail (want $want_nfail)"
        echo "#   output, then the wanted output, each line behind '| ':"
        sed 's/^/#   | /' "$T/out"
        echo "#   ---"
        printf '%s\n' "$want_out" | sed 's/^/#   | /'
        [ -s "$T/err" ] && sed 's/^/#   stderr: /' "$T/err"
    fi
}

# pass CASE HELPER ARGS...: HELPER passes: "ok - w", status 0, nfail 0
# (every case below describes its check as "w").
pass() { local case=$1; shift; expect "$case" 0 0 "ok - w" "$@"; }
# fail CASE EXPECTED ACTUAL HELPER ARGS...: HELPER fails with these two
# diagnostic lines, status 1, nfail 1.
fail() {
    local case=$1 e=$2 a=$3; shift 3
    expect "$case" 1 1 "not ok - w
#   expected: $e
#   actual:   $a" "$@"
}

# --- check (the plain one) ---------------------------------------------------
expect "check: a command that succeeds" 0 0 "ok - w" check w true
expect "check: a command that fails: not ok, nfail 1" 0 1 "not ok - w" check w false

# --- ok / not_ok: one line whatever the description -----------------------------
expect "not_ok: a newline in the description stays on the line" 0 1 'not ok - a\nok - b' not_ok $'a\nok - b'
expect "ok: control characters in the description escaped (a \\ kept as it is)" 0 0 'ok - x\x1by\tz\' ok $'x\ey\tz\\'

# --- check_eq ------------------------------------------------------------------
pass "check_eq: equal strings" check_eq w 3 3
pass "check_eq: two empty strings" check_eq w "" ""
pass "check_eq: equal multi-line strings" check_eq w $'a\nb' $'a\nb'
fail "check_eq: different values" '"3"' '"4"' check_eq w 3 4
fail "check_eq: a number is compared as a string (3 vs 03)" '"3"' '"03"' check_eq w 3 03
fail "check_eq: an empty actual value is shown" '"0"' '""' check_eq w 0 ""
fail "check_eq: a trailing space is shown" '"a"' '"a "' check_eq w a "a "
fail "check_eq: newlines, control characters and \\ escaped; no extra TAP line" \
    '"x"' '"a\nok - sneaky\tb\r\x01\x7f\\c\n"' check_eq w x $'a\nok - sneaky\tb\r\x01\x7f\\c\n'
fail "check_eq: UTF-8 text shown as it is" '"é"' '"e"' check_eq w é e
long=$(printf 'x%.0s' $(seq 5000))
fail "check_eq: a 5000-byte value is cut after 200 bytes, its length said" \
    '"a"' "\"${long:0:200}\"... (5000 bytes in all)" check_eq w a "$long"
expect "check_eq: a missing argument is a failure" 1 1 "not ok - w
#   check_eq: 2 arguments after WHAT expected, got 1" check_eq w 3
expect "check_eq: an extra argument is a failure" 1 1 "not ok - w
#   check_eq: 2 arguments after WHAT expected, got 3" check_eq w 3 3 3

# --- check_ne ------------------------------------------------------------------
pass "check_ne: different values" check_ne w 0 1
pass "check_ne: empty vs not" check_ne w "" x
fail "check_ne: equal values" 'anything but "0"' '"0"' check_ne w 0 0

# --- check_lt / check_le / check_gt / check_ge ------------------------------------
pass "check_lt: 3 < 4" check_lt w 3 4
fail "check_lt: 4 < 4 fails" '< 4' '4' check_lt w 4 4
pass "check_le: 4 <= 4" check_le w 4 4
fail "check_le: 57 <= 40 fails" '<= 40' '57' check_le w 57 40
pass "check_gt: 5 > 4" check_gt w 5 4
fail "check_gt: 4 > 4 fails" '> 4' '4' check_gt w 4 4
pass "check_ge: 4 >= 4" check_ge w 4 4
fail "check_ge: 9 >= 10 fails (numbers, not strings)" '>= 10' '9' check_ge w 9 10
pass "check_ge: 10 >= 9 (numbers, not strings)" check_ge w 10 9
pass "check_le: 010 <= 10 (decimal, not octal)" check_le w 010 10
fail "check_gt: 010 > 10 fails (decimal, not octal)" '> 10' '010' check_gt w 010 10
pass "check_lt: negative numbers (-7 < -3)" check_lt w -7 -3
fail "check_gt: negative numbers (-7 > -3 fails)" '> -3' '-7' check_gt w -7 -3
pass "check_gt: integers past 64 bits compared exactly" check_gt w 123456789012345678901 123456789012345678900
fail "check_le: integers past 64 bits compared exactly" '<= 123456789012345678900' '123456789012345678901' \
    check_le w 123456789012345678901 123456789012345678900
pass "check_lt: decimals (0.35 < 2.0)" check_lt w 0.35 2.0
fail "check_lt: decimals (3.51 < 2.0 fails)" '< 2.0' '3.51' check_lt w 3.51 2.0
pass "check_ge: a decimal against an integer (1e3 >= 1000)" check_ge w 1e3 1000
fail "check_le: an empty value fails" '<= 40' '"" (not a number)' check_le w "" 40
fail "check_ge: a word fails" '>= 1' '"many" (not a number)' check_ge w many 1
fail "check_le: an equal non-number fails too" '<= "x" (not a number)' '"x" (not a number)' check_le w x x
fail "check_lt: a number followed by text fails" '< 9' '"5 6" (not a number)' check_lt w "5 6" 9
expect "check_lt: a missing argument is a failure" 1 1 "not ok - w
#   check_lt: 2 arguments after WHAT expected, got 1" check_lt w 3

# --- check_range ------------------------------------------------------------------
pass "check_range: inside" check_range w 6 4 8
pass "check_range: at the low end" check_range w 4 4 8
pass "check_range: at the high end" check_range w 8 4 8
fail "check_range: below" '>= 4 and <= 8' '3' check_range w 3 4 8
fail "check_range: above" '>= 4 and <= 8' '9' check_range w 9 4 8
pass "check_range: decimals" check_range w 0.5 0 1
fail "check_range: empty" '>= 4 and <= 8' '"" (not a number)' check_range w "" 4 8
expect "check_range: a missing argument is a failure" 1 1 "not ok - w
#   check_range: 3 arguments after WHAT expected, got 2" check_range w 5 4

# --- check_match ------------------------------------------------------------------
pass "check_match: an extended regex matches" check_match w '^heap\.[0-9]+\.0001\.exit\.pb\.gz$' heap.42.0001.exit.pb.gz
pass "check_match: unanchored, anywhere in a multi-line string" check_match w 'b+' $'a\nbbb\nc'
fail "check_match: no match" 'a match for "^heap\\.[0-9]+$"' '"heap.x"' check_match w '^heap\.[0-9]+$' heap.x
fail "check_match: an invalid regex fails, said so" 'a match for "(" (not a valid regular expression)' '"("' \
    check_match w '(' '('

# --- check_contains ----------------------------------------------------------------
pass "check_contains: a substring" check_contains w "hello world" "o w"
pass "check_contains: glob characters are plain (*)" check_contains w "a*c" "*"
fail "check_contains: glob characters are plain (* in abc)" 'a string holding "*"' '"abc"' check_contains w abc "*"
fail "check_contains: missing" 'a string holding "x"' '"a\nb"' check_contains w $'a\nb' x

# --- nfail adds up, finish exits by it ----------------------------------------------
several() { check_eq a 1 1; check_eq b 1 2; check_le c 9 8; check_match d x y; check w false; }
( nfail=0; several >"$T/out"; echo "$nfail" >"$T/st" )
if [ "$(cat "$T/st")" = 4 ] && [ "$(grep -c '^ok ' "$T/out")" = 1 ] && [ "$(grep -c '^not ok ' "$T/out")" = 4 ]; then
    ok "five checks, four failing: nfail 4, and tests/run.sh would count 1 ok and 4 not ok"
else
    not_ok "five checks, four failing: nfail $(cat "$T/st"), $(grep -c '^ok ' "$T/out") ok, $(grep -c '^not ok ' "$T/out") not ok"
fi
( nfail=0; check_eq w 1 2 >/dev/null; finish ); st_fail=$?
( nfail=0; check_eq w 1 1 >/dev/null; finish ); st_pass=$?
if [ $st_fail = 1 ] && [ $st_pass = 0 ]; then
    ok "finish: exit 1 after a failed check, 0 when all passed"
else
    not_ok "finish: exit $st_fail after a failed check, $st_pass when all passed"
fi

finish
