#!/bin/bash
# safety_conf.sh - issue 11, classes 6, 7 and 11:
#   - HEAPWATCH_SIGNAL takes only USR1, USR2 and the real-time signals: a
#     signal with a meaning of its own (TERM, INT, CHLD, PIPE, TSTP) is
#     refused in one stderr line and keeps its meaning (status as bare);
#     the accepted ones write a profile; a program's own handler and an
#     inherited SIG_IGN are kept;
#   - a value holding a newline or control bytes gives exactly one stderr
#     line, escaped;
#   - `heapwatch check` on hostile results (a timeline bomb, a timeline past
#     the record and byte caps, an alerts flood, too many files) completes
#     with a clear verdict in bounded memory (ulimit -v and max RSS).
. tests/integration/lib.sh
HW=$PWD/$BUILD/heapwatch
P=$PROGS/safe_sigmeaning

# one_line FILE PATTERN: FILE is exactly one line and it matches PATTERN.
one_line() { [ "$(wc -l < "$1")" = 1 ] && grep -q -- "$2" "$1"; }

# --- signals with a meaning of their own -----------------------------------
# (A simple command, not with_agent, in the background: $! is then the
# program itself, not a subshell.)
# run_killed SIG VALUE: status of `safe_sigmeaning wait` sent SIG after 0.3 s
# with HEAPWATCH_SIGNAL=VALUE (stderr in $T/k.err).
run_killed() {
    HEAPWATCH_SIGNAL=$2 HEAPWATCH_OUT=$T/k LD_PRELOAD=$AGENT "$P" wait > "$T/k.out" 2> "$T/k.err" &
    local pid=$!
    wait_ready "$T/k.out"
    kill -"$1" $pid
    wait $pid 2>/dev/null   # (no "Hangup" job message)
}
# wait_ready FILE: until the program wrote "ready" there (at most 10 s).
wait_ready() {
    for _ in $(seq 200); do grep -q ready "$1" 2>/dev/null && return; sleep 0.05; done
}
"$P" wait > "$T/b.out" & bare_pid=$!; wait_ready "$T/b.out"; kill -TERM $bare_pid; wait $bare_pid; bare=$?
run_killed TERM TERM; rc=$?
if [ $bare = 143 ] && [ $rc = 143 ] && one_line "$T/k.err" 'HEAPWATCH_SIGNAL="TERM" is not valid.*USR1, USR2'; then
    ok "HEAPWATCH_SIGNAL=TERM refused in one line; kill -TERM still ends the program (143, as bare)"
else
    not_ok "HEAPWATCH_SIGNAL=TERM: status $rc (bare $bare), stderr: $(head -c 300 "$T/k.err")"
fi
# (SIGINT is ignored in a background job of a script: it is checked below
# with the other refused values.)
run_killed HUP SIGHUP; rc=$?
if [ $rc = 129 ] && one_line "$T/k.err" 'HEAPWATCH_SIGNAL="SIGHUP" is not valid'; then
    ok "HEAPWATCH_SIGNAL=SIGHUP refused in one line; kill -HUP still ends the program (129)"
else
    not_ok "HEAPWATCH_SIGNAL=SIGHUP: status $rc, stderr: $(head -c 300 "$T/k.err")"
fi

bare=$("$P" chld)
out=$(HEAPWATCH_SIGNAL=CHLD with_agent "$T/c" "$P" chld 2> "$T/c.err"); rc=$?
if [ "$bare" = "slept 1 s" ] && [ "$out" = "$bare" ] && [ $rc = 0 ] &&
   one_line "$T/c.err" 'HEAPWATCH_SIGNAL="CHLD" is not valid'; then
    ok "HEAPWATCH_SIGNAL=CHLD refused in one line; a child's exit does not cut sleep(1) short"
else
    not_ok "HEAPWATCH_SIGNAL=CHLD: '$out' (bare '$bare'), status $rc, stderr: $(head -c 300 "$T/c.err")"
fi

bare=$(yes | head -1 > /dev/null; echo "${PIPESTATUS[0]}")
# The agent in yes, the writer that meets the closed pipe.
st=$( (HEAPWATCH_SIGNAL=PIPE HEAPWATCH_OUT=$T/p LD_PRELOAD=$AGENT yes 2> "$T/p.err") | head -1 > /dev/null
      echo "${PIPESTATUS[0]}")
if [ "$bare" = 141 ] && [ "$st" = 141 ] && one_line "$T/p.err" 'HEAPWATCH_SIGNAL="PIPE" is not valid'; then
    ok "HEAPWATCH_SIGNAL=PIPE refused in one line; yes | head: yes ends by SIGPIPE (141, as bare)"
else
    not_ok "HEAPWATCH_SIGNAL=PIPE: yes status $st (bare $bare), stderr: $(head -c 300 "$T/p.err")"
fi

for sig in INT SIGINT 2 TSTP HUP 15 17 9 SEGV ALRM 0 65 RTMIN+99 USR3; do
    HEAPWATCH_SIGNAL=$sig with_agent "$T/r" "$P" disp > "$T/r.out" 2> "$T/r.err"; rc=$?
    if [ $rc = 0 ] && [ "$(cat "$T/r.out")" = default ] && one_line "$T/r.err" "HEAPWATCH_SIGNAL=\"$sig\" is not valid"; then
        ok "HEAPWATCH_SIGNAL=$sig refused in one line, the program runs on"
    else
        not_ok "HEAPWATCH_SIGNAL=$sig: status $rc, out '$(cat "$T/r.out")', stderr: $(head -c 300 "$T/r.err")"
    fi
done

# --- the accepted set: a profile on the signal -----------------------------
rtmin=$(kill -l RTMIN 2>/dev/null || echo 34)
for spec in USR1:USR1 SIGUSR2:USR2 10:USR1 12:USR2 RTMIN+1:RTMIN+1 SIGRTMAX-1:RTMAX-1 "$((rtmin + 2)):RTMIN+2"; do
    value=${spec%%:*} sig=${spec#*:}
    rm -rf "$T/a"
    HEAPWATCH_SIGNAL=$value HEAPWATCH_OUT=$T/a LD_PRELOAD=$AGENT "$P" wait > "$T/a.out" 2> "$T/a.err" &
    pid=$!
    wait_ready "$T/a.out"
    kill -s "$sig" $pid 2>/dev/null || kill -"$sig" $pid
    wait $pid; rc=$?
    n=$(ls "$T/a" 2>/dev/null | grep -c '\.signal\.pb\.gz$')
    if [ $rc = 0 ] && [ "$(tail -1 "$T/a.out")" = done ] && [ ! -s "$T/a.err" ] && [ "$n" = 1 ]; then
        ok "HEAPWATCH_SIGNAL=$value accepted: kill -$sig writes one signal profile, the program runs on"
    else
        not_ok "HEAPWATCH_SIGNAL=$value: status $rc, $n signal profiles, stderr: $(head -c 300 "$T/a.err")"
    fi
done

# --- the program's own handler, an inherited SIG_IGN -----------------------
out=$(HEAPWATCH_SIGNAL=USR1 HEAPWATCH_RATE=1 with_agent "$T/o" "$P" own 2> "$T/o.err"); rc=$?
n=$(ls "$T/o" 2>/dev/null | grep -c '\.signal\.pb\.gz$')
if [ $rc = 0 ] && [ "$out" = "own handler ran 3" ] && [ ! -s "$T/o.err" ] && [ "$n" = 0 ]; then
    ok "a program's own SIGUSR1 handler runs, not the agent's (3 of 3, no signal profile)"
else
    not_ok "own handler: '$out', status $rc, $n signal profiles, stderr: $(head -c 300 "$T/o.err")"
fi
bare=$(trap '' USR1; "$P" disp)
out=$(trap '' USR1; HEAPWATCH_SIGNAL=USR1 with_agent "$T/i" "$P" disp 2> "$T/i.err"); rc=$?
if [ "$bare" = ignored ] && [ "$out" = ignored ] && [ $rc = 0 ] &&
   one_line "$T/i.err" 'HEAPWATCH_SIGNAL: signal 10 is ignored by the program (inherited); left as it is'; then
    ok "an inherited SIG_IGN for HEAPWATCH_SIGNAL stays ignored, said in one line"
else
    not_ok "inherited SIG_IGN: '$out' (bare '$bare'), status $rc, stderr: $(head -c 300 "$T/i.err")"
fi
out=$(HEAPWATCH_SIGNAL=USR1 with_agent "$T/d" "$P" disp 2> "$T/d.err")
check_eq "without an inherited disposition the agent's handler is installed, silently" \
    "handler, 0 bytes on stderr" "$out, $(wc -c < "$T/d.err") bytes on stderr"

# --- a newline or control bytes in a value: one line, escaped ---------------
nl_case() {   # nl_case WHAT PATTERN VAR=VALUE...
    local what=$1 pat=$2; shift 2
    (cd "$T" && env HEAPWATCH_OUT="$T/nl" "$@" LD_PRELOAD=$AGENT "$P" disp) > "$T/nl.out" 2> "$T/nl.err"; local rc=$?
    if [ $rc = 0 ] && [ "$(cat "$T/nl.out")" = default ] && one_line "$T/nl.err" "$pat" &&
       ! grep -q $'[\x01-\x09\x0b-\x1f\x7f]' "$T/nl.err"; then
        ok "$what: exactly one stderr line, escaped"
    else
        not_ok "$what: status $rc, $(wc -l < "$T/nl.err") lines: $(head -c 300 "$T/nl.err" | od -c | head -5)"
    fi
}
nl_case "HEAPWATCH_RATE with a newline" 'HEAPWATCH_RATE="12\\nx" is not valid' HEAPWATCH_RATE=$'12\nx'
nl_case "HEAPWATCH_SIGNAL with a newline and ESC" 'HEAPWATCH_SIGNAL="USR1\\nx\\x1b\[2J"' HEAPWATCH_SIGNAL=$'USR1\nx\e[2J'
nl_case "HEAPWATCH_OUT (unwritable) with a newline" 'HEAPWATCH_OUT: "/proc/no\\nsuch\\tdir"' \
    HEAPWATCH_OUT=$'/proc/no\nsuch\tdir'
nl_case "HEAPWATCH_HTTP with a newline" 'HEAPWATCH_HTTP="a\\nb:6060" is not valid' HEAPWATCH_HTTP=$'a\nb:6060'
long=$(printf 'x%.0s' $(seq 5000))
nl_case "a 5000-byte HEAPWATCH_WINDOW" 'HEAPWATCH_WINDOW="x*\.\.\."' HEAPWATCH_WINDOW="$long"
check_lt "... and that line is cut (under 600 bytes)" "$(wc -c < "$T/nl.err")" 600
"$HW" check $'/nonexistent\ndir' > /dev/null 2> "$T/tool.err"
check "heapwatch check of a DIR with a newline: one stderr line" one_line "$T/tool.err" 'nonexistent?dir'
"$HW" run -- $'/no/such\nprog' > /dev/null 2> "$T/tool.err"
check "heapwatch run of a program with a newline in its name: one stderr line" one_line "$T/tool.err" 'cannot run /no/such?prog'

# --- heapwatch check on hostile results: bounded memory, clear verdict ------
# rss_check NAME DIR ARGS...: `heapwatch check DIR ARGS` under ulimit -v
# 100 MB; status in $rc, stdout+stderr in $T/NAME.out, max RSS (KiB) in
# $rss (from /usr/bin/time when present).
rss_check() {
    local name=$1 dir=$2; shift 2
    rss=0
    if [ -x /usr/bin/time ]; then
        (ulimit -v 102400; /usr/bin/time -f 'maxrss %M' -o "$T/$name.time" "$HW" check "$dir" "$@") > "$T/$name.out" 2>&1
        rc=$?
        rss=$(awk '/maxrss/ {print $2}' "$T/$name.time")
    else
        (ulimit -v 102400; "$HW" check "$dir" "$@") > "$T/$name.out" 2>&1
        rc=$?
    fi
}
mkdir -p "$T/bomb"
python3 -c 'import sys; sys.stdout.buffer.write(b"{\"time\": 1}\n" * 2000000)' | zstd -q -19 -o "$T/bomb/timeline.4242.jsonl.zst"
size=$(wc -c < "$T/bomb/timeline.4242.jsonl.zst")
rss_check bomb "$T/bomb"
if [ "$size" -lt 4096 ] && [ $rc = 0 ] && grep -q 'ok   pid 4242 .*2000000 timeline records' "$T/bomb.out" &&
   grep -q '2000000 records kept as [0-9]* samples' "$T/bomb.out" && [ "${rss:-0}" -lt 51200 ]; then
    ok "a $size-byte timeline of 2,000,000 records: check passes under ulimit -v 100 MB, says it merged, max RSS ${rss} KiB"
else
    not_ok "timeline bomb ($size bytes): status $rc, max RSS ${rss} KiB: $(head -c 400 "$T/bomb.out")"
fi

# Merging keeps what check judges exact: a spike in the middle, the last record.
mkdir -p "$T/merge"
python3 - "$T/merge/timeline.77.jsonl" <<'EOF'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(300000):
        r = {"time": 1000 + i * 0.01, "elapsed_s": i * 0.01, "live_objects": 100, "live_bytes": 5000 + (i % 7),
             "objects_rate": 10.0, "bytes_rate": 100.0, "window_s": 5.0, "peak_live_bytes": 6000}
        if i == 123457: r.update(objects_rate=987654.0, live_bytes=9000000, peak_live_bytes=9000000)
        if i == 299999: r.update(live_bytes=4242, live_objects=42)
        f.write(json.dumps(r) + "\n")
EOF
zstd -q --rm "$T/merge/timeline.77.jsonl"
rss_check merge "$T/merge" --max-objects-rate 987653 --max-peak-bytes 8999999 --max-live-bytes 4241
if [ $rc = 1 ] && grep -q 'objects_rate 987654/s > 987653/s' "$T/merge.out" &&
   grep -q 'peak_live_bytes 9000000 .* > 8999999 ' "$T/merge.out" &&
   grep -q 'live_bytes at exit 4242 .* > 4241 ' "$T/merge.out" &&
   grep -q '300000 records kept as' "$T/merge.out"; then
    ok "300,000 records merged: the spike (987,654/s), the peak and the last record's live bytes are judged exactly"
else
    not_ok "merged timeline: status $rc: $(head -c 800 "$T/merge.out")"
fi
rss_check merge2 "$T/merge" --max-objects-rate 987654 --max-peak-bytes 9000000 --max-live-bytes 4242
check_eq "... and the same limits set at those values pass (status $rc)" 0 "$rc"

# Past the caps: 4,200,000 records (concatenated frames), then 1.1 GB of lines.
mkdir -p "$T/records"
python3 -c 'import sys; sys.stdout.buffer.write(b"{\"time\": 1}\n" * 100000)' | zstd -q -19 > "$T/frame"
for i in $(seq 42); do cat "$T/frame"; done > "$T/records/timeline.5151.jsonl.zst"
rss_check records "$T/records"
if [ $rc = 2 ] && grep -q 'more than 4000000 records; the rest of the file was not read' "$T/records.out" &&
   [ "${rss:-0}" -lt 51200 ]; then
    ok "4,200,000 records: check stops at 4,000,000, says so, exits 2; max RSS ${rss} KiB"
else
    not_ok "records cap: status $rc, max RSS ${rss} KiB: $(head -c 400 "$T/records.out")"
fi
mkdir -p "$T/bytes"
python3 -c '
import sys
line = b"{\"time\": 1, \"pad\": \"" + b"p" * 999970 + b"\"}\n"
sys.stdout.buffer.write(line * 16)' | zstd -q -19 > "$T/frame"
for i in $(seq 70); do cat "$T/frame"; done > "$T/bytes/timeline.5252.jsonl.zst"
rss_check bytes "$T/bytes"
if [ $rc = 2 ] && grep -q 'more than 1024 MiB decompressed' "$T/bytes.out" && [ "${rss:-0}" -lt 51200 ]; then
    ok "$(wc -c < "$T/bytes/timeline.5252.jsonl.zst")-byte timeline of 1.1 GB: check stops at 1 GiB, says so, exits 2; max RSS ${rss} KiB"
else
    not_ok "bytes cap: status $rc, max RSS ${rss} KiB: $(head -c 400 "$T/bytes.out")"
fi

# An alerts flood: 20,000 warn alerts, then one crit.
mkdir -p "$T/alerts"
python3 - "$T/alerts/alerts.6161.jsonl" <<'EOF'
import json, sys
top = [{"function": "f%d" % k, "stack": ["f%d" % k] + ["caller%d" % j for j in range(60)],
        "growth_bytes": 10, "growth_objects": 1} for k in range(5)]
with open(sys.argv[1], "w") as f:
    for i in range(20000):
        f.write(json.dumps({"time": 1000 + i, "event": "alert", "level": "warn", "value": 600, "threshold": 500,
                            "top": top}) + "\n")
    f.write(json.dumps({"time": 30000, "event": "alert", "level": "crit", "value": 3000, "threshold": 2000,
                        "top": top, "profile": "heap.6161.0001.alert.pb.gz"}) + "\n")
EOF
rss_check alerts "$T/alerts"
if [ $rc = 1 ] && grep -q 'FAIL pid 6161.*crit alert' "$T/alerts.out" && grep -q 'alerts not kept' "$T/alerts.out"; then
    ok "20,001 alerts: the ones past the cap are counted, the crit after them still fails the check (max RSS ${rss} KiB)"
else
    not_ok "alerts flood: status $rc: $(head -c 600 "$T/alerts.out")"
fi

# Too many files: 65,600 summaries; the first 65,536 are read.
mkdir -p "$T/many"
python3 - "$T/many" <<'EOF'
import sys
for i in range(65600):
    with open("%s/summary.%d.json" % (sys.argv[1], i + 1), "w") as f:
        f.write('{"pid": %d, "exe": "/bin/x", "mallocs": 1, "frees": 1, "live_bytes": 0, "live_objects": 0}' % (i + 1))
EOF
rss_check many "$T/many" -q
if [ $rc = 2 ] && grep -q '64 result files past the first 65536 not read' "$T/many.out"; then
    ok "65,600 result files: the first 65,536 are read, the rest counted, check exits 2 (max RSS ${rss} KiB)"
else
    not_ok "many files: status $rc: $(tail -c 400 "$T/many.out")"
fi

finish
