# tests/integration/progs/life_lib.sh - helpers of agent_lifecycle.sh and
# agent_allocators.sh, sourced after tests/integration/lib.sh (it lives
# here, not in tests/integration/, because tests/run.sh runs every *.sh
# there as a test).
#
# Known agent bugs. A check that fails today because of a reported agent
# bug goes through known_bug: it prints "ok - WHAT" when it passes, and
# "ok - WHAT # SKIP known agent bug: ..." when it fails, unless
# LIFE_KNOWN_BUGS=1, which makes it a plain check ("not ok" on failure).
# Once the bug is fixed, turn the known_bug back into a check.
#
# LIFE_BASE_PRELOAD: a library preloaded after the agent in every run
# (and alone in the runs "without the agent"), e.g. jemalloc.

TO=(timeout -k 5 60)            # nothing may hang: every run is bounded
PY3=$(command -v python3)

# known_bug ID WHAT COMMAND...: a check that a reported agent bug breaks.
known_bug() {
    local id=$1 what=$2; shift 2
    if "$@"; then
        ok "$what"
    elif [ "${LIFE_KNOWN_BUGS:-0}" = 1 ]; then
        not_ok "$what (known agent bug: $id)"
    else
        ok "$what # SKIP known agent bug: $id (LIFE_KNOWN_BUGS=1 checks it)"
    fi
}

# relay TAPFILE [PATTERN BUG]...: the program's TAP lines, counted here;
# a failing line matching PATTERN (grep -E) is the known bug BUG.
relay() {
    local file=$1; shift
    local known=("$@") line what bug i
    [ -s "$file" ] || { not_ok "$(basename "$file" .tap): the program wrote no check"; return; }
    while IFS= read -r line; do
        case "$line" in
        "ok - "*) ok "${line#ok - }" ;;
        "#"*) echo "$line" ;;
        "not ok - "*)
            what=${line#not ok - }
            bug=
            for ((i = 0; i + 1 < ${#known[@]}; i += 2)); do
                if grep -qE -- "${known[$i]}" <<<"$what"; then bug=${known[$((i + 1))]}; fi
            done
            if [ -n "$bug" ]; then known_bug "$bug" "$what" false; else not_ok "$what"; fi
            ;;
        esac
    done < "$file"
}

# py CODE ARGS...: a python3 check; on failure its last error line is
# shown as a TAP comment.
py() {
    local code=$1; shift
    if "$PY3" -c "$code" "$@" 2>"$T/py.err"; then return 0; fi
    echo "# $(tail -n 1 "$T/py.err")"
    return 1
}

# summaries_ok MIN_MALLOCS FILE...: each is valid JSON naming its own pid,
# live_objects = mallocs - frees, and at least MIN_MALLOCS mallocs.
summaries_ok() {
    py '
import json, re, sys
least = int(sys.argv[1])
for path in sys.argv[2:]:
    d = json.load(open(path))
    pid = int(re.search(r"summary\.(\d+)\.json$", path).group(1))
    assert d["pid"] == pid, (path, d["pid"])
    assert d["live_objects"] == d["mallocs"] - d["frees"], (path, d)
    assert d["live_bytes"] == d["alloc_bytes"] - d["free_bytes"], (path, d)
    assert d["mallocs"] >= least, (path, d["mallocs"], least)
' "$@"
}
summary_ok() { summaries_ok "${2:-0}" "$1"; }

# only_summary DIR: the one summary.<pid>.json in DIR (other files, such as
# heap profiles and timelines, may be there too), or "" if not exactly one.
only_summary() {
    local f=("$1"/summary.*.json)
    if [ ${#f[@]} = 1 ] && [ -f "${f[0]}" ]; then echo "${f[0]}"; fi
}

# same_behaviour WHAT OUTDIR CMD...: stdout, stderr and exit status are the
# same with and without the agent; sets $rc_agent and $out_agent.
same_behaviour() {
    local what=$1 out=$2; shift 2
    local base=${LIFE_BASE_PRELOAD:-}
    "${TO[@]}" env ${base:+LD_PRELOAD="$base"} "$@" >"$T/plain.out" 2>"$T/plain.err"; local rc1=$?
    HEAPWATCH_OUT=$out "${TO[@]}" env LD_PRELOAD="$AGENT${base:+ $base}" "$@" >"$T/agent.out" 2>"$T/agent.err"
    rc_agent=$?
    out_agent=$T/agent.out
    if [ $rc1 = $rc_agent ] && cmp -s "$T/plain.out" "$T/agent.out" &&
       cmp -s "$T/plain.err" "$T/agent.err"; then
        ok "$what: same stdout, stderr and exit status ($rc1) with and without the agent"
    else
        not_ok "$what: exit $rc1 vs $rc_agent; stdout $(cmp "$T/plain.out" "$T/agent.out" 2>&1 | head -1); stderr $(head -c 200 "$T/agent.err")"
    fi
}

# run_agent OUTDIR CMD...: CMD under the agent and timeout; sets $rc.
run_agent() {
    local out=$1; shift
    local base=${LIFE_BASE_PRELOAD:-}
    HEAPWATCH_OUT=$out "${TO[@]}" env LD_PRELOAD="$AGENT${base:+ $base}" "$@"
    rc=$?
}
