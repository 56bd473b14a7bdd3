#!/usr/bin/env bash
# agent_fleet.sh - HEAPWATCH_HTTP=host:0 (issue 16): every process, a
# forked child too, serves on a free port of its own, announced in
# http.<tag>.addr, and targets.json (Prometheus file_sd_configs) lists
# every serving process as processes start and exit: a child that exits
# leaves it, the last one leaves "[]", a process killed with SIGKILL is
# dropped by the next process's rebuild, six processes starting and ending
# together converge. host:port keeps serving from the first process only.
# The program is progs/agent_fleet.c; every wait is bounded.
set -u
. tests/integration/lib.sh

PROG=$PROGS/agent_fleet

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
wait_for() {
    local n=$(( $1 * 10 )); shift
    while (( n-- > 0 )); do "$@" && return 0; sleep 0.1; done
    return 1
}
have() { [ -e "$1" ]; }
gone() { [ ! -e "$1" ]; }

# targets DIR: "addr pid" per entry of DIR/targets.json, sorted (python3
# parses it: an invalid file fails loudly).
targets() {
    python3 - "$1/targets.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
assert isinstance(t, list)
for e in t:
    assert set(e) == {"targets", "labels"} and len(e["targets"]) == 1
    print(e["targets"][0], e["labels"]["heapwatch_pid"])
PY
}
targets_are() { [ "$(targets "$1" 2>/dev/null | sort)" = "$2" ]; }

# listener_pid PORT: the pid whose descriptor listens on 127.0.0.1:PORT.
listener_pid() {
    python3 - "$1" <<'PY'
import os, sys
port = int(sys.argv[1])
inode = None
for line in open("/proc/net/tcp").readlines()[1:]:
    f = line.split()
    if int(f[1].split(":")[1], 16) == port and f[3] == "0A":
        inode = f[9]
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        for fd in os.listdir("/proc/%s/fd" % pid):
            if os.readlink("/proc/%s/fd/%s" % (pid, fd)) == "socket:[%s]" % inode:
                print(pid); sys.exit(0)
    except OSError:
        pass
PY
}

metrics_ok() { curl -sf --max-time 5 "http://$1/metrics" | grep -q '^heapwatch_mallocs_total '; }

# (Programs are started as simple commands, so that $! is their pid.)

# --- a parent and its forked child, each on its own port ----------------
OUT=$T/fleet
HEAPWATCH_OUT=$OUT LD_PRELOAD=$AGENT HEAPWATCH_HTTP=127.0.0.1:0 "$PROG" leak 40 >"$T/fleet.txt" 2>"$T/fleet.err" &
RUN=$!
wait_for 10 grep -q child "$T/fleet.txt"
read -r _ PARENT _ CHILD <"$T/fleet.txt"
check_match "the fleet program started a child" '^[0-9]+ [0-9]+$' "${PARENT:-} ${CHILD:-}"
check "the parent announces its address" wait_for 10 have "$OUT/http.$PARENT.addr"
check "the forked child announces its own" wait_for 10 have "$OUT/http.$CHILD.addr"
PA=$(cat "$OUT/http.$PARENT.addr" 2>/dev/null); CA=$(cat "$OUT/http.$CHILD.addr" 2>/dev/null)
check_match "the parent's addr file is host:port" '^127\.0\.0\.1:[1-9][0-9]*$' "$PA"
check_match "the child's addr file is host:port" '^127\.0\.0\.1:[1-9][0-9]*$' "$CA"
check_ne "parent and child have different ports" "$PA" "$CA"
check_eq "the parent's port is the parent's socket" "$PARENT" "$(listener_pid "${PA##*:}")"
check_eq "the child's port is the child's socket" "$CHILD" "$(listener_pid "${CA##*:}")"
check "the parent's /metrics answers" metrics_ok "$PA"
check "the child's /metrics answers" metrics_ok "$CA"
BOTH=$(printf '%s %s\n%s %s\n' "$PA" "$PARENT" "$CA" "$CHILD" | sort)
check "targets.json lists both processes" wait_for 5 targets_are "$OUT" "$BOTH"
check_eq "targets.json is all that is left of the rebuilds (no temporary file)" "" \
    "$(ls -A "$OUT" | grep -E '^\.targets|tmp' || true)"

kill -TERM "$CHILD"
check "the child's addr file goes at its exit" wait_for 10 gone "$OUT/http.$CHILD.addr"
check "targets.json then lists the parent only" wait_for 5 targets_are "$OUT" "$PA $PARENT"
check_eq "the child's summary lists nothing incomplete" "[]" "$(json_get "$OUT/summary.$CHILD.json" incomplete)"
kill -TERM "$PARENT"
wait "$RUN"
check_eq "the program's exit status is unchanged" 0 $?
check "the parent's addr file goes at its exit" gone "$OUT/http.$PARENT.addr"
check_eq "the last exit leaves targets.json empty" "[]" "$(tr -d ' \n' <"$OUT/targets.json")"
check_eq "nothing on stderr but the agent's alerts" "" "$(grep -v '^heapwatch: \(warn\|crit\): ' "$T/fleet.err")"

# --- a process killed with SIGKILL is dropped by the next rebuild --------
OUT=$T/killed
HEAPWATCH_OUT=$OUT LD_PRELOAD=$AGENT HEAPWATCH_HTTP=127.0.0.1:0 "$PROG" steady 30 nofork >"$T/k1.txt" 2>&1 &
K1=$!
check "a process announces itself" wait_for 10 have "$OUT/http.$K1.addr"
kill -KILL "$K1"; wait "$K1" 2>/dev/null
check "killed with SIGKILL, it leaves its addr file" have "$OUT/http.$K1.addr"
HEAPWATCH_OUT=$OUT LD_PRELOAD=$AGENT HEAPWATCH_HTTP=127.0.0.1:0 "$PROG" steady 30 nofork >"$T/k2.txt" 2>&1 &
K2=$!
check "the next process announces itself" wait_for 10 have "$OUT/http.$K2.addr"
check "its rebuild lists itself, not the dead process" \
    wait_for 5 targets_are "$OUT" "$(cat "$OUT/http.$K2.addr" 2>/dev/null) $K2"
kill -TERM "$K2"; wait "$K2"

# --- a wrapper that execs (env, under the agent too): one entry, its own --
OUT=$T/exec
with_agent "$OUT" env HEAPWATCH_HTTP=127.0.0.1:0 "$PROG" steady 3 nofork >"$T/exec.txt" 2>&1 &
RUN=$!
wait_for 10 grep -q child "$T/exec.txt"
read -r _ EP _ <"$T/exec.txt"
check "after an exec, the program announces itself" wait_for 10 have "$OUT/http.$EP.addr"
check "targets.json lists it once, whatever the image before the exec wrote" \
    wait_for 5 targets_are "$OUT" "$(cat "$OUT/http.$EP.addr" 2>/dev/null) $EP"
wait "$RUN"
check_eq "after an exec, the exit leaves targets.json empty" "[]" "$(tr -d ' \n' <"$OUT/targets.json")"
check_eq "and no addr file" "" "$(cd "$OUT" && ls http.*.addr 2>/dev/null)"

# --- six processes starting and ending together converge ----------------
OUT=$T/six
pids=()
for i in 1 2 3 4 5 6; do
    HEAPWATCH_OUT=$OUT LD_PRELOAD=$AGENT HEAPWATCH_HTTP=127.0.0.1:0 "$PROG" steady 4 nofork >/dev/null 2>&1 &
    pids+=($!)
done
six() {
    local want="" p
    for p in "${pids[@]}"; do
        [ -e "$OUT/http.$p.addr" ] || return 1
        want+="$(cat "$OUT/http.$p.addr") $p"$'\n'
    done
    targets_are "$OUT" "$(printf '%s' "$want" | sort)"
}
check "six processes started together are all in targets.json" wait_for 4 six
for p in "${pids[@]}"; do wait "$p"; done
check_eq "six processes ended together leave targets.json empty" "[]" "$(tr -d ' \n' <"$OUT/targets.json")"
check_eq "and no addr file" "" "$(cd "$OUT" && ls http.*.addr 2>/dev/null)"

# --- targets.json that cannot be written (a directory in its place) --------
OUT=$T/planted
mkdir -p "$OUT/targets.json"
HEAPWATCH_OUT=$OUT LD_PRELOAD=$AGENT HEAPWATCH_HTTP=127.0.0.1:0 "$PROG" steady 6.5 nofork >"$T/planted.txt" 2>"$T/planted.err" &
PL=$!
check "targets.json planted as a directory: the process still announces itself" wait_for 10 have "$OUT/http.$PL.addr"
wait "$PL"
check_eq "targets.json planted as a directory: the program's exit status is unchanged" 0 $?
check_contains "... and after 5 s of retries its summary says targets.json was given up" \
    "$(json_get "$OUT/summary.$PL.json" incomplete 2>/dev/null)" "targets.json: could not be written (gave up)"
check_eq "... with nothing on stderr" "" "$(cat "$T/planted.err")"
check_eq "... and no temporary file left" "" "$(ls -A "$OUT" | grep tmp || true)"

# --- host:port: the first process serves, a forked child does not -------
OUT=$T/fixed
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
HEAPWATCH_OUT=$OUT LD_PRELOAD=$AGENT HEAPWATCH_HTTP=127.0.0.1:$PORT "$PROG" leak 30 >"$T/fixed.txt" 2>"$T/fixed.err" &
RUN=$!
wait_for 10 grep -q child "$T/fixed.txt"
read -r _ PARENT _ CHILD <"$T/fixed.txt"
check "host:port: the first process announces it" wait_for 10 have "$OUT/http.$PARENT.addr"
check_eq "host:port: its addr file holds the configured port" "127.0.0.1:$PORT" "$(cat "$OUT/http.$PARENT.addr" 2>/dev/null)"
sleep 2   # past the child's first due job, when a host:0 child would bind
check "host:port: the forked child does not serve" gone "$OUT/http.$CHILD.addr"
check_eq "host:port: targets.json lists the first process" "127.0.0.1:$PORT $PARENT" "$(targets "$OUT")"
kill -TERM "$PARENT"; wait "$RUN"
check_eq "host:port: nothing on stderr but the agent's alerts" "" "$(grep -v '^heapwatch: \(warn\|crit\): ' "$T/fixed.err")"

finish
