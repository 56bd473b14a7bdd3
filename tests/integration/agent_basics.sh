#!/usr/bin/env bash
# agent_basics.sh - the agent on real programs: exact counters against
# programs that count their own allocations, the exit summary, identical
# output and exit status of real programs, bad configuration, an
# unwritable output directory, fork and exec.
set -u
. tests/integration/lib.sh

# --- exact counters (the programs print their own TAP lines) ---------------
with_agent "$T/truth" "$PROGS/agent_truth"; rc=$?
check_eq "agent_truth exits 0 under the agent" 0 "$rc"
with_agent "$T/truth" "$PROGS/agent_truth_cxx"; rc=$?
check_eq "agent_truth_cxx exits 0 under the agent" 0 "$rc"
"$PROGS/agent_truth" >/dev/null; rc=$?
check_eq "agent_truth runs without the agent (exit 77: not loaded)" 77 "$rc"

# --- the summary ----------------------------------------------------------
out=$T/sum
with_agent "$out" "$PROGS/agent_truth" >/dev/null
files=("$out"/summary.*.json)
check "one summary.<pid>.json written" [ ${#files[@]} = 1 -a -f "${files[0]}" ]
s=${files[0]}
check "summary is valid JSON with the SPEC fields" python3 - "$s" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
need = ["pid", "exe", "mallocs", "frees", "live_objects", "live_bytes", "peak_live_bytes",
        "alloc_bytes", "rate", "files", "start_time", "end_time", "agent_memory_bytes"]
missing = [k for k in need if k not in d]
assert not missing, missing
assert d["live_objects"] == d["mallocs"] - d["frees"]
assert d["live_bytes"] == d["alloc_bytes"] - d["free_bytes"]
assert d["mallocs"] >= 40000 + 1000 + 100
assert d["exe"].endswith("/agent_truth"), d["exe"]
assert d["rate"] == 524288
assert d["peak_live_bytes"] >= d["live_bytes"] >= 0
assert ("summary.%d.json" % d["pid"]) in d["files"]
assert sys.argv[1].endswith("summary.%d.json" % d["pid"])
PY
# The peak's time and the kernel's peak RSS (issue 14): a program that
# touched 64 MiB once shows it in VmHWM whatever the snapshots saw.
out=$T/peak
with_agent "$out" /usr/bin/python3 -c 'x = bytearray(64 << 20)
for i in range(0, len(x), 4096): x[i] = 1' >/dev/null 2>&1
check "summary: peak_live_bytes, seen between snapshots, and peak_rss_bytes (VmHWM) at least the 64 MiB touched; peak_time within the run" \
    python3 - "$out"/summary.*.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["start_time"] <= d["peak_time"] <= d["end_time"], (d["start_time"], d["peak_time"], d["end_time"])
assert d["peak_rss_bytes"] >= 64 << 20, d["peak_rss_bytes"]
# No snapshot in so short a run: the peak comes from the sampled allocation.
assert d["peak_live_bytes"] >= 64 << 20, d["peak_live_bytes"]
assert d["live_bytes"] < 16 << 20, d["live_bytes"]   # python freed it before exit
assert d["peak_rss_bytes"] < 1 << 40
PY

# HEAPWATCH_BRIEF (issue 15): a process that sampled nothing, took no
# snapshot and raised no alert writes only its summary; off: all three.
out=$T/brief
HEAPWATCH_BRIEF=auto with_agent "$out" /bin/true
check_eq "HEAPWATCH_BRIEF default: /bin/true writes only its summary, which lists itself" \
    "1 1" "$(ls "$out" | wc -l) $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["files"]))' "$out"/summary.*.json)"
out=$T/brief_off
HEAPWATCH_BRIEF=off with_agent "$out" /bin/true
check_eq "HEAPWATCH_BRIEF=off: the summary, the timeline and the exit profile" 3 "$(ls "$out" | wc -l)"
HEAPWATCH_BRIEF=sometimes HEAPWATCH_OUT=$T/brief_bad LD_PRELOAD=$AGENT /bin/true 2>"$T/brief.err"
check "a bad HEAPWATCH_BRIEF: one line naming it" \
    sh -c "[ \$(wc -l < '$T/brief.err') = 1 ] && grep -q '^heapwatch: HEAPWATCH_BRIEF=\"sometimes\" is not valid' '$T/brief.err'"

# The command line (issue 14: the report's process table names processes by it).
out=$T/cmdline
with_agent "$out" /bin/echo "two words" $'tab\there' "$(printf 'é%.0s' $(seq 1500))" >/dev/null
check "summary: cmdline holds the arguments, escaped, a long one cut with ... inside 2 KiB, never inside a UTF-8 character" \
    python3 - "$out"/summary.*.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["cmdline"]
assert c[:3] == ["/bin/echo", "two words", "tab\there"], c[:3]
assert c[3].endswith("...") and set(c[3][:-3]) == {"é"}, c[3][:10]
assert len("\0".join(c).encode()) <= 2048 + 3, len("\0".join(c).encode())
PY
out=$T/cmdline64
with_agent "$out" /bin/echo $(seq 100) >/dev/null
check_eq "summary: cmdline keeps the first 64 arguments" "64 63" \
    "$(python3 -c 'import json,sys; c = json.load(open(sys.argv[1]))["cmdline"]; print(len(c), c[-1])' "$out"/summary.*.json)"

out=$T/sum
check_eq "only the summary, the timeline, the exit and peak profiles, no temporary files" "" \
    "$(ls -A "$out" | grep -v '^summary\.[0-9]*\.json$' | grep -v '^heap\.[0-9]*\.0001\.exit\.pb\.gz$' |
       grep -v '^heap\.[0-9]*\.0002\.peak\.pb\.gz$' |
       grep -v '^timeline\.[0-9]*\.jsonl\.zst$')"

# --- real programs: same output, same exit status --------------------------
same_run() {   # what, cmd...: stdout+stderr and exit status identical with and without the agent
    local what=$1; shift
    (cd "$T" && "$@") >"$T/plain.out" 2>&1; local rc1=$?
    (cd "$T" && with_agent "$T/real" "$@") >"$T/agent.out" 2>&1; local rc2=$?
    if [ $rc1 = $rc2 ] && cmp -s "$T/plain.out" "$T/agent.out"; then
        ok "$what: identical output and exit status ($rc1)"
    else
        not_ok "$what: exit $rc1 vs $rc2, output $(cmp "$T/plain.out" "$T/agent.out" 2>&1 | head -1)"
    fi
}
PY3=$(command -v python3)
same_run "python3 (PYTHONMALLOC=malloc)" env PYTHONMALLOC=malloc "$PY3" -c \
    'import json, collections; d = {str(i): list(range(i % 50)) for i in range(20000)}; print(len(json.dumps(d)), collections.Counter(len(v) for v in d.values()).most_common(2))'
same_run "perl" perl -e 'my %h; $h{$_} = [1..($_ % 40)] for 1..20000; print scalar(keys %h), "\n"; exit 5'
seq 1 20000 | sort -R --random-source=/dev/zero > "$T/numbers"
same_run "sort" sort -n "$T/numbers"
same_run "sort of a missing file (exit 2)" sort /nonexistent/file
printf '#include <stdio.h>\nint main(void){puts("built");return 0;}\n' > "$T/hello.c"
same_run "gcc compiling a program" gcc -O2 "$T/hello.c" -o "$T/hello"
check_eq "the program gcc built under the agent runs" built "$("$T/hello")"
check_ge "gcc's exec'ed tools (cc1, as, collect2/ld) are profiled too" \
    "$(grep -l '"exe": ".*/\(cc1\|as\|collect2\|ld[^"]*\)"' "$T/real"/summary.*.json 2>/dev/null | wc -l)" 2

# --- bad configuration: one line naming the variable, program unharmed ------
for kv in HEAPWATCH_RATE=-1 HEAPWATCH_INTERVAL=0 HEAPWATCH_WINDOW=abc HEAPWATCH_WARN=0 \
          HEAPWATCH_CRIT=1e9 HEAPWATCH_SUSTAIN=x HEAPWATCH_GRACE=-1 \
          HEAPWATCH_PROFILE_INTERVAL=soon HEAPWATCH_SIGNAL=SEGV HEAPWATCH_HTTP=nowhere \
          HEAPWATCH_FSYNC=sometimes HEAPWATCH_OUT=; do
    var=${kv%%=*}
    if [ "$var" = HEAPWATCH_OUT ]; then set -- "$kv"; else set -- HEAPWATCH_OUT="$T/bad" "$kv"; fi
    (cd "$T" && env "$@" LD_PRELOAD=$AGENT sort -n "$T/numbers") >"$T/bad.out" 2>"$T/bad.err"
    rc=$?
    lines=$(wc -l < "$T/bad.err")
    if [ $rc = 0 ] && [ "$lines" = 1 ] && grep -q "^heapwatch: $var=" "$T/bad.err" &&
       grep -q expected "$T/bad.err" && sort -n "$T/numbers" | cmp -s - "$T/bad.out"; then
        ok "bad $kv: one stderr line naming $var, output unchanged"
    else
        not_ok "bad $kv: exit $rc, $lines stderr lines: $(head -c 300 "$T/bad.err")"
    fi
done

# --- HEAPWATCH_FSYNC: whole files either way; fsync only when asked ----------
# Off (the default) and on: the same three files, whole (the summary
# parses and lists all three, the profile's gzip stream is whole, the
# timeline decodes with its frame checksums); with
# strace, no fsync at all when off and one per file (the timeline twice)
# when on.
for mode in default off on; do
    out=$T/fsync-$mode
    if [ $mode = default ]; then set --; else set -- HEAPWATCH_FSYNC=$mode; fi
    env "$@" HEAPWATCH_OUT="$out" LD_PRELOAD=$AGENT sort -n "$T/numbers" >/dev/null 2>"$T/fsync.err"
    check_eq "HEAPWATCH_FSYNC=$mode: no message" "" "$(cat "$T/fsync.err")"
    check "HEAPWATCH_FSYNC=$mode: the summary, whole" python3 -c \
        'import json, sys; d = json.load(open(sys.argv[1])); assert len(d["files"]) == 3, d["files"]' \
        "$out"/summary.*.json
    check "HEAPWATCH_FSYNC=$mode: the exit profile, whole" gzip -t "$out"/heap.*.0001.exit.pb.gz
    check "HEAPWATCH_FSYNC=$mode: the timeline, whole" zstd -t -q "$out"/timeline.*.jsonl.zst
    check_eq "HEAPWATCH_FSYNC=$mode: no temporary file left" "" "$(ls -A "$out" | grep '^\.')"
    if command -v strace >/dev/null; then
        rm -rf "$out"
        strace -f -qq -e trace=fsync,fdatasync -o "$T/fsync.strace" \
            env "$@" HEAPWATCH_OUT="$out" LD_PRELOAD=$AGENT sort -n "$T/numbers" >/dev/null 2>&1
        n=$(grep -c 'fsync(' "$T/fsync.strace")
        if [ $mode = on ]; then check_eq "HEAPWATCH_FSYNC=on: an fsync per file, the timeline's twice" 4 "$n"
        else check_eq "HEAPWATCH_FSYNC=$mode: no fsync" 0 "$n"; fi
    fi
done

# --- an output directory that cannot be created ----------------------------
# (GNU sort closes stderr at exit: the agent must report at start.)
HEAPWATCH_OUT=/proc/heapwatch-cannot-exist LD_PRELOAD=$AGENT sort -n "$T/numbers" \
    >"$T/ro.out" 2>"$T/ro.err"; rc=$?
if [ $rc = 0 ] && [ "$(wc -l < "$T/ro.err")" = 1 ] && grep -q "HEAPWATCH_OUT" "$T/ro.err" &&
   sort -n "$T/numbers" | cmp -s - "$T/ro.out"; then
    ok "unwritable HEAPWATCH_OUT: one message, program unharmed"
else
    not_ok "unwritable HEAPWATCH_OUT: exit $rc, stderr: $(head -c 300 "$T/ro.err")"
fi

# --- fork and exec ---------------------------------------------------------
out=$T/fork
with_agent "$out" "$PROGS/agent_fork" /usr/bin/sort -n "$T/numbers" > "$T/fork.out"
line=$(head -1 "$T/fork.out")
parent=$(echo "$line" | awk '{print $2}'); child=$(echo "$line" | awk '{print $4}')
check_eq "fork: the child's exit status is unchanged" 3 "$(echo "$line" | awk '{print $6}')"
check "fork: the child writes its own summary.<child pid>.json" [ -f "$out/summary.$child.json" ]
check "fork: the child's counters include what it inherited and its own" python3 - "$out/summary.$child.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["mallocs"] >= 1000 and d["frees"] >= 100, d
assert d["live_objects"] == d["mallocs"] - d["frees"]
PY
check_eq "exec: the exec'ed program (same pid) is profiled as itself" \
    /usr/bin/sort "$(json_get "$out/summary.$parent.json" exe 2>/dev/null)"

finish
