# tests/integration/lib.sh - helpers for the integration scripts (sourced).
#
# Each check prints one TAP-style line, "ok - what" or "not ok - what",
# which tests/run.sh counts (it counts the lines that start "ok " and
# "not ok "); anything else a script prints for people starts with "#", a
# TAP comment. Scripts run from the repository root with $BUILD set; each
# gets a scratch directory $T, removed at exit.
#
# The checks (each prints exactly one ok/not ok line):
#
#   check WHAT CMD...                ok when CMD succeeds
#   check_eq WHAT EXPECTED ACTUAL    the two strings are equal
#   check_ne WHAT UNWANTED ACTUAL    the two strings differ
#   check_lt WHAT A B                the number A < B (and check_le: A <= B,
#   check_le, check_gt, check_ge     check_gt: A > B, check_ge: A >= B)
#   check_range WHAT A MIN MAX       MIN <= A <= MAX
#   check_match WHAT REGEX STRING    STRING matches REGEX (bash's =~, ERE)
#   check_contains WHAT STRING NEEDLE  STRING holds NEEDLE (a fixed string;
#                                    for a file: "$(cat FILE)")
#
# Numbers are integers (compared exactly, any length) or decimals ("0.25",
# "1e3": compared as doubles); a value that is not a number (an empty one,
# say) fails the check. On failure the value checks follow "not ok - WHAT"
# with two TAP comments saying what was expected and what was seen:
#
#   not ok - threads reuse thread blocks
#   #   expected: <= 40
#   #   actual:   57
#
# Strings are shown quoted, with \ and control characters escaped (\n, \t,
# \x1b) and cut after 200 bytes, so each diagnostic is one line that
# tests/run.sh does not count (a value holding "\nok - ..." cannot add a
# passing check). The value checks return 0 when they pass and 1 when they
# fail; `check` always returns 0.

BUILD=${BUILD:-build}
# A clean environment: these scripts may themselves run under the agent
# (`heapwatch run -- make test`, the README's CI recipe): what they inherit
# of it (LD_PRELOAD, HEAPWATCH_OUT and the other settings) must not leak
# into the programs they test, which set their own. Only the variables of
# the test harness itself stay.
unset LD_PRELOAD
for _v in $(compgen -e | grep '^HEAPWATCH_'); do
    case $_v in HEAPWATCH_TEST_AGENT | HEAPWATCH_ASSERT_LOG) ;; *) unset "$_v" ;; esac
done
unset _v
# Whether a short program writes a timeline and an exit profile depends on
# whether the sampler happened to pick one of its allocations
# (HEAPWATCH_BRIEF, default auto): the scripts count files, so they run
# with all three files written; agent_basics tests the default itself.
export HEAPWATCH_BRIEF=off
# The agent under test: the release build, or the one tests/run.sh names
# (the debug agent, asserts on); `heapwatch run` preloads the same.
AGENT=${HEAPWATCH_TEST_AGENT:-$PWD/$BUILD/libheapwatch.so}
if [ -n "${HEAPWATCH_TEST_AGENT:-}" ]; then export HEAPWATCH_AGENT=$HEAPWATCH_TEST_AGENT; fi
PROGS=$PWD/$BUILD/progs
T=$(mktemp -d /tmp/heapwatch-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
nfail=0

# A check's description is kept on its line: control characters in it
# (a newline from an embedded $(head -c 200 FILE), say) are escaped.
ok() {
    _tap_escape "$*"
    echo "ok - $_tap_esc"
}
not_ok() {
    _tap_escape "$*"
    echo "not ok - $_tap_esc"
    nfail=$((nfail + 1))
}

# check DESCRIPTION COMMAND...: ok when the command succeeds.
check() {
    local what=$1; shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}

# _tap_escape TEXT [MAX [QUOTE]]: TEXT as one line in $_tap_esc: control
# characters escaped (\n, \r, \t, \xHH); with MAX, cut after MAX bytes and
# the full length said; with QUOTE, in double quotes and \ escaped too.
_tap_escape() {
    local LC_ALL=C
    local s=$1 max=${2:-} quote=${3:-} out='' c i n
    n=${#s}
    if [ -n "$max" ] && [ "$n" -gt "$max" ]; then s=${s:0:max}; fi
    if [[ $s == *[[:cntrl:]]* ]] || { [ -n "$quote" ] && [[ $s == *\\* ]]; }; then
        for ((i = 0; i < ${#s}; i++)); do
            c=${s:i:1}
            case $c in
            $'\n') out+='\n' ;;
            $'\t') out+='\t' ;;
            $'\r') out+='\r' ;;
            \\) if [ -n "$quote" ]; then out+='\\'; else out+=$c; fi ;;
            [[:cntrl:]]) printf -v c '\\x%02x' "'$c"; out+=$c ;;
            *) out+=$c ;;
            esac
        done
    else
        out=$s
    fi
    if [ -n "$quote" ]; then out="\"$out\""; fi
    if [ -n "$max" ] && [ "$n" -gt "$max" ]; then out+="... ($n bytes in all)"; fi
    _tap_esc=$out
}

# _tap_show VALUE: VALUE quoted, escaped and cut for a diagnostic, in $_tap_esc.
_tap_show() { _tap_escape "$1" 200 quote; }

# _tap_diag LABEL TEXT: one diagnostic line (TEXT already escaped).
_tap_diag() { printf '#   %-9s %s\n' "$1:" "$2"; }

# _tap_fail WHAT EXPECTED ACTUAL: not ok, then both diagnostics; returns 1.
_tap_fail() {
    not_ok "$1"
    _tap_diag expected "$2"
    _tap_diag actual "$3"
    return 1
}

# _tap_args WHAT WANT GOT HELPER: a helper called with the wrong number of
# arguments is a failing check (an unquoted empty value shifts the rest).
_tap_args() {
    [ "$2" = "$3" ] && return 0
    not_ok "$1"
    echo "#   $4: $(( $2 - 1 )) arguments after WHAT expected, got $(( $3 - 1 ))"
    return 1
}

check_eq() {
    _tap_args "${1-}" 3 $# check_eq || return 1
    if [ "$2" = "$3" ]; then ok "$1"; return 0; fi
    local e
    _tap_show "$2"; e=$_tap_esc
    _tap_show "$3"
    _tap_fail "$1" "$e" "$_tap_esc"
}

check_ne() {
    _tap_args "${1-}" 3 $# check_ne || return 1
    if [ "$2" != "$3" ]; then ok "$1"; return 0; fi
    local e
    _tap_show "$2"; e="anything but $_tap_esc"
    _tap_show "$3"
    _tap_fail "$1" "$e" "$_tap_esc"
}

# _tap_isnum VALUE: an integer or a decimal.
_tap_isnum() { [[ $1 =~ ^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]]; }

# _tap_num VALUE: VALUE for a diagnostic, said when it is not a number.
_tap_num() {
    if _tap_isnum "$1"; then _tap_esc=$1; else _tap_show "$1"; _tap_esc+=" (not a number)"; fi
}

# _tap_holds A OP B: the numbers A and B compare so (OP: < <= > >=).
# Integers compare exactly, whatever their length; other numbers in awk
# (as doubles).
_tap_holds() {
    local LC_ALL=C
    local a=$1 op=$2 b=$3 sa sb c
    if [[ $a =~ ^([-+]?)0*([0-9]+)$ ]]; then
        sa=${BASH_REMATCH[1]} a=${BASH_REMATCH[2]}
        if [[ $b =~ ^([-+]?)0*([0-9]+)$ ]]; then
            sb=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
            [ "$a" = 0 ] && sa=
            [ "$b" = 0 ] && sb=
            # c: -1, 0 or 1 as |A| is below, equal to or above |B|
            if [ ${#a} != ${#b} ]; then
                c=$(( ${#a} < ${#b} ? -1 : 1 ))
            elif [ "$a" = "$b" ]; then c=0
            elif [[ $a < $b ]]; then c=-1
            else c=1
            fi
            # then as A is below, equal to or above B
            if [ "$sa" = - ] && [ "$sb" = - ]; then c=$(( -c ))
            elif [ "$sa" = - ]; then c=-1
            elif [ "$sb" = - ]; then c=1
            fi
            case $op in
            '<') (( c < 0 )) ;;
            '<=') (( c <= 0 )) ;;
            '>') (( c > 0 )) ;;
            '>=') (( c >= 0 )) ;;
            esac
            return
        fi
    fi
    awk -v a="$1" -v op="$op" -v b="$3" 'BEGIN {
        a += 0; b += 0
        r = op == "<" ? a < b : op == "<=" ? a <= b : op == ">" ? a > b : a >= b
        exit !r }'
}

# _tap_compare HELPER WHAT A OP B ARGC
_tap_compare() {
    _tap_args "$2" 3 "$6" "$1" || return 1
    local what=$2 a=$3 op=$4 b=$5 e
    if _tap_isnum "$a" && _tap_isnum "$b" && _tap_holds "$a" "$op" "$b"; then
        ok "$what"; return 0
    fi
    _tap_num "$b"; e="$op $_tap_esc"
    _tap_num "$a"
    _tap_fail "$what" "$e" "$_tap_esc"
}

check_lt() { _tap_compare check_lt "${1-}" "${2-}" '<' "${3-}" $#; }
check_le() { _tap_compare check_le "${1-}" "${2-}" '<=' "${3-}" $#; }
check_gt() { _tap_compare check_gt "${1-}" "${2-}" '>' "${3-}" $#; }
check_ge() { _tap_compare check_ge "${1-}" "${2-}" '>=' "${3-}" $#; }

check_range() {
    _tap_args "${1-}" 4 $# check_range || return 1
    local what=$1 a=$2 lo=$3 hi=$4 e
    if _tap_isnum "$a" && _tap_isnum "$lo" && _tap_isnum "$hi" &&
       _tap_holds "$a" '>=' "$lo" && _tap_holds "$a" '<=' "$hi"; then
        ok "$what"; return 0
    fi
    _tap_num "$lo"; e=">= $_tap_esc"
    _tap_num "$hi"; e+=" and <= $_tap_esc"
    _tap_num "$a"
    _tap_fail "$what" "$e" "$_tap_esc"
}

check_match() {
    _tap_args "${1-}" 3 $# check_match || return 1
    local what=$1 re=$2 s=$3 rc e
    [[ $s =~ $re ]]; rc=$?
    if [ $rc = 0 ]; then ok "$what"; return 0; fi
    _tap_show "$re"; e="a match for $_tap_esc"
    [ $rc = 2 ] && e+=" (not a valid regular expression)"
    _tap_show "$s"
    _tap_fail "$what" "$e" "$_tap_esc"
}

check_contains() {
    _tap_args "${1-}" 3 $# check_contains || return 1
    local what=$1 s=$2 needle=$3 e
    if [[ $s == *"$needle"* ]]; then ok "$what"; return 0; fi
    _tap_show "$needle"; e="a string holding $_tap_esc"
    _tap_show "$s"
    _tap_fail "$what" "$e" "$_tap_esc"
}

# json_get FILE KEY: a top-level value of a JSON file (python3 parses it,
# so an invalid file fails loudly).
json_get() {
    python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(json.dumps(v) if isinstance(v,(list,dict)) else v)' "$1" "$2"
}

# with_agent OUTDIR CMD...: runs CMD with the agent preloaded, output in OUTDIR.
with_agent() {
    local out=$1; shift
    HEAPWATCH_OUT=$out LD_PRELOAD=$AGENT "$@"
}

finish() { exit $(( nfail > 0 )); }
