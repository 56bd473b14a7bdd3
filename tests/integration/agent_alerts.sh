#!/usr/bin/env bash
# agent_alerts.sh - growth-rate alerts and the zstd timeline on real
# programs (agent_leak): a known leak rate raises crit (or warn only), steady
# churn raises nothing, a load phase is what README documents (quiet under
# the default GRACE and SUSTAIN, an alert with both at 0), the alert's
# profile opens in go tool pprof, and the timeline decodes (also after
# kill -9) with consistent records.
set -u
. tests/integration/lib.sh
LEAK=$PROGS/agent_leak

# alerts FILE: the alert records as JSON lines -> python list on stdout.
first_alert_check() {   # OUTDIR PYTHON-ASSERTIONS (d = first alert record, s = summary)
    python3 - "$1" "$2" <<'PY'
import glob, json, sys
out, code = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for f in glob.glob(out + "/alerts.*.jsonl") for l in open(f)]
alerts = [r for r in recs if r.get("event", "alert") == "alert"]
s = json.load(open(glob.glob(out + "/summary.*.json")[0]))
d = alerts[0] if alerts else None
try:
    exec(code)
except AssertionError as e:
    print("# assertion failed:", e, "alerts:", [(r["level"], r["time"] - s["start_time"]) for r in alerts])
    sys.exit(1)
PY
}

# Runs that take a while go in parallel. leak_node leaks 512-byte nodes:
# at 5000/s that is ~5 samples/s at the default rate, so the leak is named
# (its expected samples over the window are ~15; none at all: p ~ 3e-7).
SZ="HEAPWATCH_SUSTAIN=0 HEAPWATCH_GRACE=0"
env $SZ HEAPWATCH_OUT=$T/crit LD_PRELOAD=$AGENT "$LEAK" leak 5000 8 >"$T/crit.out" 2>"$T/crit.err" &
env $SZ HEAPWATCH_RATE=65536 HEAPWATCH_OUT=$T/warn LD_PRELOAD=$AGENT "$LEAK" leak 1000 9 >"$T/warn.out" 2>"$T/warn.err" &
env HEAPWATCH_SUSTAIN=0 HEAPWATCH_GRACE=6 HEAPWATCH_OUT=$T/steady LD_PRELOAD=$AGENT "$LEAK" leak 0 10 >/dev/null 2>"$T/steady.err" &
env $SZ HEAPWATCH_OUT=$T/load0 LD_PRELOAD=$AGENT "$LEAK" load 1000000 4 >/dev/null 2>"$T/load0.err" &
env HEAPWATCH_OUT=$T/loaddef LD_PRELOAD=$AGENT "$LEAK" load 1000000 13 >/dev/null 2>"$T/loaddef.err" &
env HEAPWATCH_OUT=$T/leakdef LD_PRELOAD=$AGENT "$LEAK" leak 5000 15 >/dev/null 2>"$T/leakdef.err" &
env $SZ HEAPWATCH_RATE=0 HEAPWATCH_OUT=$T/rate0 LD_PRELOAD=$AGENT "$LEAK" leak 5000 7 >/dev/null 2>"$T/rate0.err" &
( env HEAPWATCH_INTERVAL=0.2 HEAPWATCH_OUT=$T/kill LD_PRELOAD=$AGENT "$LEAK" leak 100 60 >/dev/null 2>&1 &
  sleep 3; kill -9 $!; wait $! ) 2>/dev/null &
wait

# --- 5000 objects/s: crit, fast, attributed --------------------------------
first_alert_check "$T/crit" '
assert d and d["level"] == "crit", "no crit alert"
t = d["time"] - s["start_time"]
assert t <= 5 + 2 * 1 + 0.5, "crit after %.1f s (window 5 + 2 intervals)" % t
assert d["top"] and d["top"][0]["function"] == "leak_node", d["top"][:1]
assert d["metric"] == "objects_rate" and d["threshold"] == 2000 and d["value"] > 2000
for k in ("time", "pid", "level", "metric", "value", "threshold", "window_s", "live_objects", "live_bytes", "profile", "top"):
    assert k in d, k
assert d["profile"] in s["files"], (d["profile"], s["files"])
for t in d["top"]:
    assert set(t) >= {"function", "stack", "growth_bytes", "growth_objects"}, t
' && ok "5000 objects/s leak: crit within window + 2 intervals, top[0].function is leak_node" \
  || not_ok "5000 objects/s leak: no timely, attributed crit alert"
check "the crit alert printed one stderr line naming the function and the profile" \
    bash -c '[ "$(grep -c "^heapwatch: crit: agent_leak" "$1")" = 1 ] && grep -q "top: leak_node .*profile heap\." "$1"' _ "$T/crit.err"
prof=$(ls "$T/crit"/heap.*.alert.pb.gz 2>/dev/null | head -1)
check "the alert's profile opens in go tool pprof and shows leak_node" \
    bash -c 'go tool pprof -top -sample_index=inuse_space "$1" 2>/dev/null | grep -q " leak_node$"' _ "$prof"
check "the program's own output is unchanged (stdout)" grep -q "^leaked [0-9]* objects$" "$T/crit.out"

# --- 1000 objects/s: warn, never crit --------------------------------------
# (At 512 KB/s the leak makes ~1 sample/s at the default rate: too few to
# name it for sure within a 3 s window, so this run samples every 64 KiB.)
first_alert_check "$T/warn" '
levels = [r["level"] for r in alerts]
assert levels == ["warn"], levels
assert d["top"][0]["function"] == "leak_node", d["top"][:1]
' && ok "1000 objects/s: one warn alert, no crit" || not_ok "1000 objects/s: expected exactly one warn"

# --- steady churn, constant live set: nothing ---------------------------------
# The churn's live set (1024 blocks) is built in its first milliseconds;
# rates count from the program's start, so that build-up stays in the 5 s
# window until ~5 s. GRACE=6 lets it leave; SUSTAIN=0 then fires on any
# single window above 500/s: none may occur while the live set is constant.
check "steady churn (constant live set) for 10 s, SUSTAIN=0 GRACE=6: no alert" \
    bash -c '! ls "$1"/alerts.*.jsonl >/dev/null 2>&1 && [ ! -s "$2" ]' _ "$T/steady" "$T/steady.err"

# --- a load phase ------------------------------------------------------------
first_alert_check "$T/load0" '
assert d and d["level"] == "crit", "no alert"
assert d["top"][0]["function"] == "load_table", d["top"][:1]
' && ok "load phase with SUSTAIN=0 GRACE=0: alerts at the first crossing, blaming load_table" \
  || not_ok "load phase with SUSTAIN=0 GRACE=0: expected a crit alert"
check "load phase under the defaults (GRACE 10 s, SUSTAIN 3 s): no alert over 13 s" \
    bash -c '! ls "$1"/alerts.*.jsonl >/dev/null 2>&1' _ "$T/loaddef"
first_alert_check "$T/leakdef" '
assert d and d["level"] == "crit", "no alert"
t = d["time"] - s["start_time"]
assert 10 <= t <= 14.5, "crit at %.1f s" % t
' && ok "a real leak under the defaults: crit once the grace ends (10 s to 14.5 s)" \
  || not_ok "a real leak under the defaults: no crit after the grace"

# --- rate 0: counters, timeline and alerts, no stacks ------------------------
first_alert_check "$T/rate0" '
assert d and d["level"] == "crit", "no alert"
assert d["top"] == [], d["top"]
assert d["profile"], "no profile"
' && ok "HEAPWATCH_RATE=0: crit alert still raised, with an empty top" \
  || not_ok "HEAPWATCH_RATE=0: alerting broken"

# --- the timeline ---------------------------------------------------------------
tl=$(ls "$T/crit"/timeline.*.jsonl.zst)
check "zstd -t: the timeline of a process that exited is complete" zstd -q -t "$tl"
zstd -dc "$tl" > "$T/tl.jsonl" 2>/dev/null
python3 - "$T/tl.jsonl" <<'PY' && ok "timeline records: SPEC fields, increasing times, live == mallocs - frees, ~duration/interval records" || not_ok "timeline records are wrong"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
need = ["time", "mallocs", "frees", "live_objects", "live_bytes", "alloc_bytes", "objects_rate",
        "bytes_rate", "map_count", "map_B", "map_noverflow"]
for r in recs:
    missing = [k for k in need if k not in r]
    assert not missing, missing
    assert r["live_objects"] == r["mallocs"] - r["frees"], r
    assert r["live_bytes"] == r["alloc_bytes"] - r["free_bytes"], r
times = [r["time"] for r in recs]
assert all(b > a for a, b in zip(times, times[1:])), times
assert 8 <= len(recs) <= 10, len(recs)      # 8 s at 1 s, plus the exit record
assert max(r["objects_rate"] for r in recs) > 4000
PY
ktl=$(ls "$T/kill"/timeline.*.jsonl.zst 2>/dev/null)
n=$(zstd -dc "$ktl" 2>/dev/null | wc -l)
check_ge "after kill -9 at ~3 s (interval 0.2 s), the flushed records decode ($n)" "$n" 10
check "after kill -9, every decoded line is a whole JSON record" \
    bash -c 'zstd -dc "$1" 2>/dev/null | python3 -c "import json,sys; [json.loads(l) for l in sys.stdin]"' _ "$ktl"
check "after kill -9, no summary and no temporary files" \
    bash -c '! ls "$1"/summary.* >/dev/null 2>&1 && [ -z "$(ls -A "$1" | grep "^\.")" ]' _ "$T/kill"

# --- heapwatch check and report on these real result directories -----------
HW=$PWD/$BUILD/heapwatch
"$HW" check "$T/crit" --junit "$T/crit.xml" > "$T/check.out" 2>&1; rc=$?
check "heapwatch check on the leaking run: exit 1, a FAIL line naming the crit alert and leak_node" \
    bash -c '[ "$1" = 1 ] && grep -q "FAIL pid [0-9]* ([^)]*agent_leak[^)]*): crit alert" "$2" && grep -q "leak_node" "$2"' _ $rc "$T/check.out"
check "heapwatch check --junit: XML with one failing test case" python3 -c '
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
cases = r.findall(".//testcase")
assert len(cases) == 1 and cases[0].find("failure") is not None
' "$T/crit.xml"
"$HW" check -q "$T/steady"; rc=$?
check_eq "heapwatch check on the steady run: exit 0" 0 "$rc"
"$HW" check -q "$T/warn"; rc1=$?
"$HW" check -q --fail-on warn "$T/warn" >/dev/null; rc2=$?
check_eq "heapwatch check on the warn run: 0 by default, 1 with --fail-on warn" \
    "default 0, --fail-on warn 1" "default $rc1, --fail-on warn $rc2"
"$HW" check -q --max-live-objects 1000 "$T/steady" >/dev/null; rc=$?
check_eq "heapwatch check --max-live-objects 1000 on the steady run (1024 live): exit 1" 1 "$rc"
mkdir -p "$T/empty"; "$HW" check "$T/empty" 2>/dev/null; rc=$?
check_eq "heapwatch check on an empty directory: exit 2" 2 "$rc"
"$HW" check -q "$T/kill" >/dev/null 2>&1; rc=$?
check_eq "heapwatch check reads the killed run from its timeline alone (exit 0)" 0 "$rc"
"$HW" report --width 70 "$T/crit" > "$T/report.out" 2>&1; rc=$?
check "heapwatch report on the leaking run: charts, the crit alert and leak_node" \
    bash -c '[ "$1" = 0 ] && grep -q "live objects" "$2" && grep -q "crit" "$2" && grep -q leak_node "$2"' _ $rc "$T/report.out"

finish
