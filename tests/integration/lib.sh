# tests/integration/lib.sh - helpers for the integration scripts (sourced).
#
# Each check prints one TAP-style line, "ok - what" or "not ok - what",
# which tests/run.sh counts. Scripts run from the repository root with
# $BUILD set; each gets a scratch directory $T, removed at exit.

BUILD=${BUILD:-build}
# The agent under test: the release build, or the one tests/run.sh names
# (the debug agent, asserts on); `heapwatch run` preloads the same.
AGENT=${HEAPWATCH_TEST_AGENT:-$PWD/$BUILD/libheapwatch.so}
if [ -n "${HEAPWATCH_TEST_AGENT:-}" ]; then export HEAPWATCH_AGENT=$HEAPWATCH_TEST_AGENT; fi
PROGS=$PWD/$BUILD/progs
T=$(mktemp -d /tmp/heapwatch-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
nfail=0

ok()     { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; nfail=$((nfail + 1)); }

# check DESCRIPTION COMMAND...: ok when the command succeeds.
check() {
    local what=$1; shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
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
