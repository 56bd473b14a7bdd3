#!/usr/bin/env bash
# prometheus_fleet.sh - a real Prometheus (Debian's /usr/bin/prometheus,
# DEB_PACKAGES) scraping a fleet found through targets.json, with the
# rules of contrib/prometheus/heapwatch.rules.yml (issue 16): a leaking
# program and the leaking child it forks, under HEAPWATCH_HTTP=127.0.0.1:0
# (each its own port), next to a steady program and its steady child.
# Within a bound, /api/v1/alerts shows HeapwatchLiveObjectsGrowthCritical
# firing for both leaking pids (and its pprof_heap URL answers with a
# profile), /api/v1/query?query=heapwatch_live_objects returns all four
# processes, and the steady ones raise nothing, not even a pending alert.
#
# Prometheus runs on 127.0.0.1 on a free port, with its own configuration
# and storage under $T (scrape and evaluation interval 1 s, file_sd with
# refresh_interval 1s), never a system instance's (port 9090); it and the
# programs are stopped, and its files removed, at exit (trap). Alerts come
# from Prometheus alone: the agent's own thresholds play no part. About
# 30 s: the rules' `for: 18s` after a 15 s rate window.
set -u
. tests/integration/lib.sh

PROG=$PROGS/agent_fleet
RULES=$PWD/contrib/prometheus/heapwatch.rules.yml
PROM=/usr/bin/prometheus
FIRE_BOUND=50   # seconds from the programs' start to both alerts firing

PROM_PID=""
RUNS=()
cleanup() {
    local p
    for p in "${RUNS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    [ -n "$PROM_PID" ] && kill -TERM "$PROM_PID" 2>/dev/null
    for p in "${RUNS[@]}" $PROM_PID; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT

if [ ! -x "$PROM" ]; then
    not_ok "Debian's prometheus is installed ($PROM: run 'make deps')"
    finish
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# api PATH: the JSON of Prometheus' HTTP API (empty when no answer).
api() { curl -sf --max-time 5 "http://127.0.0.1:$PROM_PORT$1" 2>/dev/null; }

# --- Prometheus, on its own port, config and storage ----------------------
LEAK=$T/leak STEADY=$T/steady
mkdir -p "$T/prom" "$LEAK" "$STEADY"
cat >"$T/prom/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $RULES
scrape_configs:
  - job_name: heapwatch
    file_sd_configs:
      - files:
          - $LEAK/targets.json
          - $STEADY/targets.json
        refresh_interval: 1s
YML
for attempt in 1 2 3; do
    PROM_PORT=$(free_port)
    "$PROM" --config.file="$T/prom/prometheus.yml" --storage.tsdb.path="$T/prom/data" \
        --web.listen-address="127.0.0.1:$PROM_PORT" >"$T/prom/log" 2>&1 &
    PROM_PID=$!
    for _ in $(seq 100); do
        api /-/ready >/dev/null && break
        kill -0 "$PROM_PID" 2>/dev/null || break
        sleep 0.1
    done
    api /-/ready >/dev/null && break
    kill -TERM "$PROM_PID" 2>/dev/null; wait "$PROM_PID" 2>/dev/null; PROM_PID=""   # port taken meanwhile: again
done
check "prometheus is ready on 127.0.0.1" test -n "$PROM_PID"
if [ -z "$PROM_PID" ]; then
    sed 's/^/# /' "$T/prom/log" | tail -20
    finish
fi
check_eq "prometheus loaded the rules file" "success" \
    "$(api /api/v1/rules | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"] if d["data"]["groups"] else "no groups")')"

# --- the fleet: a leak and its child, a steady program and its child ------
HEAPWATCH_OUT=$LEAK LD_PRELOAD=$AGENT HEAPWATCH_HTTP=127.0.0.1:0 "$PROG" leak 90 >"$T/leak.txt" 2>"$T/leak.err" &
RUNS+=($!)
HEAPWATCH_OUT=$STEADY LD_PRELOAD=$AGENT HEAPWATCH_HTTP=127.0.0.1:0 "$PROG" steady 90 >"$T/steady.txt" 2>"$T/steady.err" &
RUNS+=($!)
START=$SECONDS
for _ in $(seq 50); do grep -q child "$T/leak.txt" && grep -q child "$T/steady.txt" && break; sleep 0.1; done
read -r _ LP _ LC <"$T/leak.txt"
read -r _ SP _ SC <"$T/steady.txt"
check_match "the leaking program and its child run" '^[0-9]+ [0-9]+$' "${LP:-} ${LC:-}"
check_match "the steady program and its child run" '^[0-9]+ [0-9]+$' "${SP:-} ${SC:-}"

# firing: the pids HeapwatchLiveObjectsGrowthCritical fires for, sorted.
firing() {
    api /api/v1/alerts | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(" ".join(sorted(a["labels"]["pid"] for a in d["data"]["alerts"]
      if a["labels"]["alertname"] == "HeapwatchLiveObjectsGrowthCritical" and a["state"] == "firing")))' 2>/dev/null
}
WANT=$(printf '%s\n' "$LP" "$LC" | sort | tr '\n' ' ' | sed 's/ $//')
GOT=""
while (( SECONDS - START < FIRE_BOUND )); do
    GOT=$(firing)
    [ "$GOT" = "$WANT" ] && break
    sleep 1
done
check_eq "HeapwatchLiveObjectsGrowthCritical fires for the leak and its child within ${FIRE_BOUND} s" "$WANT" "$GOT"
echo "# both alerts firing $(( SECONDS - START )) s after the programs started"

# The alerts of the steady processes: none, in any state.
ALERTS=$(api /api/v1/alerts)
check_eq "the steady program and its child raise nothing (not even pending)" "" \
    "$(printf '%s' "$ALERTS" | python3 -c '
import json, sys
steady = set(sys.argv[1:])
d = json.load(sys.stdin)
print(" ".join(sorted("%s:%s:%s" % (a["labels"]["alertname"], a["labels"].get("pid"), a["state"])
      for a in d["data"]["alerts"] if a["labels"].get("pid") in steady)))' "$SP" "$SC")"

# The alert names the process and its profile URL, which answers.
URL=$(printf '%s' "$ALERTS" | python3 -c '
import json, sys
for a in json.load(sys.stdin)["data"]["alerts"]:
    if a["labels"]["alertname"] == "HeapwatchLiveObjectsGrowthCritical" and a["labels"]["pid"] == sys.argv[1]:
        print(a["annotations"]["pprof_heap"]); break' "$LC")
check_eq "the child's alert points at the child's own /debug/pprof/heap" \
    "http://$(cat "$LEAK/http.$LC.addr" 2>/dev/null)/debug/pprof/heap" "$URL"
check_eq "that URL answers with a gzip'ed profile" "1f8b" \
    "$(curl -sf --max-time 10 "$URL" 2>/dev/null | head -c 2 | od -An -tx1 | tr -d ' \n')"

# heapwatch_live_objects: all four processes, each under its own target.
LIVE=$(api '/api/v1/query?query=heapwatch_live_objects' | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(" ".join(sorted(s["metric"]["heapwatch_pid"] for s in r)))' 2>/dev/null)
ALL=$(printf '%s\n' "$LP" "$LC" "$SP" "$SC" | sort | tr '\n' ' ' | sed 's/ $//')
check_eq "heapwatch_live_objects returns the four processes" "$ALL" "$LIVE"
UP=$(api '/api/v1/query?query=up' | python3 -c '
import json, sys
print(" ".join(sorted(s["value"][1] for s in json.load(sys.stdin)["data"]["result"])))' 2>/dev/null)
check_eq "every target is up" "1 1 1 1" "$UP"

# The end: every program leaves targets.json as it exits.
for p in "${RUNS[@]}"; do kill -TERM "$p"; wait "$p"; done
RUNS=()
check_eq "the leak's targets.json is empty after its exit" "[]" "$(tr -d ' \n' <"$LEAK/targets.json")"
check_eq "the steady program's too" "[]" "$(tr -d ' \n' <"$STEADY/targets.json")"
check_eq "prometheus logged no error about the targets files" "" \
    "$(grep -i 'level=error' "$T/prom/log" | grep -i 'file_sd\|discovery' | head -3)"
echo "# in all $(( SECONDS - START )) s after the programs started"
finish
