#!/usr/bin/env bash
# prometheus_metrics.sh - /metrics as Prometheus wants it, and the live
# map's state as Go's means it (issue 16):
#   - a leaking program at HEAPWATCH_RATE=1 (every allocation in the live
#     map, so its shards grow and evacuate), under HEAPWATCH_HTTP, whose
#     executable's path holds a quote, a backslash, a newline and a byte
#     that is not UTF-8: `promtool check metrics` finds nothing on three /metrics
#     pages read while it runs, counters end in _total, the one series
#     with labels is heapwatch_process_info{pid, exe} 1 with the process's
#     pid and its path escaped (the bad byte as U+FFFD);
#   - every timeline record and the summary hold Go's invariant over the
#     whole map: map_count <= 6.5 x 2^map_B (and <= 6.5 x map_buckets,
#     2^(map_B-1) < map_buckets <= 2^map_B, evacuation within bounds), with
#     the new names equal to the old ones (map_entries = map_count,
#     map_log2_buckets = map_B), the same map fields in the timeline, the
#     summary and /metrics;
#   - README.md's list of metrics (its "| `heapwatch_<name>` |" rows) is
#     the list /metrics serves, both ways.
# Every run is bounded by timeout; nothing here measures time.
set -u
. tests/integration/lib.sh

if ! command -v promtool >/dev/null; then
    not_ok "promtool is installed (Debian package prometheus: make deps)"
    finish
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
get() {   # get URL FILE: the body, or exit 1
    python3 -c '
import sys, urllib.request
sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=10).read())' "$1" >"$2" 2>/dev/null
}

# An executable whose path is hard to put in a label.
odd="$T/bin/leak\"q\\b$(printf '\377')x"$'\n'"y"
mkdir -p "$T/bin" "$T/out"
cp "$PROGS/agent_leak" "$odd"
port=$(free_port)
timeout 60 env HEAPWATCH_RATE=1 HEAPWATCH_INTERVAL=0.05 HEAPWATCH_HTTP=127.0.0.1:$port \
    HEAPWATCH_OUT="$T/out" LD_PRELOAD="$AGENT" "$odd" leak 20000 4 >"$T/leak.out" 2>"$T/leak.err" &
pid=$!
pages=0
for i in $(seq 1 80); do
    if get "http://127.0.0.1:$port/metrics" "$T/metrics.$pages.txt"; then
        pages=$((pages + 1))
        [ $pages = 3 ] && break
        sleep 0.8
    else
        sleep 0.05
    fi
done
wait $pid
check_eq "the leaking program under the agent ends with status 0" 0 "$?"
summary=$(ls "$T"/out/summary.*.json)
pid=${summary##*/summary.}
pid=${pid%.json}
check_eq "three /metrics pages read while it ran" 3 "$pages"

for p in $(seq 0 $((pages - 1))); do
    f=$T/metrics.$p.txt
    promtool check metrics <"$f" >"$T/lint.$p" 2>&1
    rc=$?
    check_eq "promtool check metrics on /metrics page $p: status 0" 0 "$rc"
    check_eq "promtool check metrics on /metrics page $p: nothing said" "" "$(cat "$T/lint.$p")"
done

# The page's structure: names, types, labels (python: exact parsing).
check "/metrics: counters end in _total and only they do; every series has HELP and TYPE; only heapwatch_process_info has labels, {pid, exe} = this process, value 1" \
    python3 - "$T/metrics.0.txt" "$pid" "$odd" <<'PY'
import sys, re
text = open(sys.argv[1], encoding="utf-8").read()   # valid UTF-8, or this raises
pid, exe = sys.argv[2], sys.argv[3].encode("utf-8", "surrogateescape")
types, helps, samples = {}, set(), {}
for line in text.splitlines():
    if line.startswith("# TYPE "):
        _, _, n, t = line.split(" ", 3); types[n] = t
    elif line.startswith("# HELP "):
        helps.add(line.split(" ", 3)[2])
    else:
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$', line)
        assert m, line
        samples[m.group(1)] = (m.group(2), m.group(3))
assert set(types) == helps == set(samples), (types, helps, samples)
for n, t in types.items():
    assert (t == "counter") == n.endswith("_total"), (n, t)
    assert n.startswith("heapwatch_"), n
labelled = {n for n, (l, v) in samples.items() if l}
assert labelled == {"heapwatch_process_info"}, labelled
labels, value = samples["heapwatch_process_info"]
assert value == "1", value
want = exe.decode("utf-8", "replace").replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
assert labels == '{pid="%s",exe="%s"}' % (pid, want), (labels, want)
assert "\ufffd" in labels
PY

# Go's invariant on every timeline record and the summary.
zstd -dc "$T"/out/timeline.*.jsonl.zst >"$T/timeline.jsonl" 2>/dev/null
check "the timeline and summary hold map_count <= 6.5 x 2^map_B on every record, and the map fields agree" \
    python3 - "$T/timeline.jsonl" "$summary" "$T/metrics.2.txt" <<'PY'
import sys, json
recs = [json.loads(l) for l in open(sys.argv[1])]
summ = json.loads(open(sys.argv[2], "rb").read().decode("utf-8", "surrogateescape"))   # exe: not UTF-8
assert len(recs) >= 20, len(recs)
growing = 0
for i, r in enumerate(recs + [summ]):
    c, B, k = r["map_count"], r["map_B"], r["map_buckets"]
    assert c <= 6.5 * 2 ** B, (i, c, B)
    assert c <= 6.5 * k, (i, c, k)
    assert k == 0 and B == 0 or 2 ** (B - 1) < k <= 2 ** B, (i, k, B)
    assert r["map_entries"] == c and r["map_log2_buckets"] == B, (i, r)
    assert r["map_shards"] == 128 and 0 <= r["map_shards_growing"] <= 128, (i, r)
    assert r["map_nevacuate"] <= r["map_noldbuckets"], (i, r)
    assert (r["map_shards_growing"] == 0) == (r["map_noldbuckets"] == 0), (i, r)
    assert r["map_noldbuckets"] <= k, (i, r)
    growing += r["map_shards_growing"] > 0
assert recs[-1]["map_count"] > 40000, recs[-1]["map_count"]   # rate 1: the leak is in the map
# the same map names in the timeline, the summary and /metrics
mapnames = {k for k in recs[0] if k.startswith("map_")}
assert mapnames <= set(summ), mapnames - set(summ)
served = {l.split()[2][len("heapwatch_"):] for l in open(sys.argv[3]) if l.startswith("# TYPE ")}
new = mapnames - {"map_count", "map_B"}
assert new <= served, new - served
assert {n for n in served if n.startswith("map_")} == new, served
print("# %d timeline records, %d with a shard growing; last map_count %d, map_B %d, map_buckets %d"
      % (len(recs), growing, recs[-1]["map_count"], recs[-1]["map_B"], recs[-1]["map_buckets"]))
PY

# README.md's list of metrics is what /metrics serves.
served=$(sed -n 's/^# TYPE \(heapwatch_[a-z0-9_]*\) .*/\1/p' "$T/metrics.0.txt" | sort)
listed=$(sed -n 's/^| `\(heapwatch_[a-z0-9_]*\)` |.*/\1/p' README.md | sort -u)
check_eq "README.md lists (| \`heapwatch_<name>\` | rows) exactly the metrics /metrics serves" "$served" "$listed"

finish
