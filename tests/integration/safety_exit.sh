#!/bin/bash
# safety_exit.sh - issue 11, class 2: exit and fork paths never block.
#
# A program leaves from a signal handler (_exit, exit, _Exit, quick_exit:
# glibc ends that one in its own _exit, unseen, so it writes no summary) or
# forks from one while its threads allocate, at HEAPWATCH_RATE 1, the
# default and 0, many runs each (tests/integration/progs/safe_exit.c); a
# thread calls exit while others allocate; a thread is stopped for good
# inside a handler (perhaps holding an agent lock) and the main thread
# exits. Every run must
# end (a run still alive after RUN_TIMEOUT seconds is killed and counted as
# a hang), with the status of a bare run; every summary written must be
# valid JSON with an "incomplete" array of strings (what the exit skipped).
#
# On the agent before the fix, about 1 run in 4 at rate 1 hung for good
# (the exit output or fork's prepare handler waited for a live-map shard,
# a stack stripe or the arena lock held by the code the handler
# interrupted): the runs below make that a near certainty.
. tests/integration/lib.sh

PROG=$PROGS/safe_exit
RUN_TIMEOUT=5   # the exit output waits 2 s at most (AGENT_EXIT_WAIT_NS)

# bare_status MODE THREADS: the program's status without the agent.
bare_status() {
    timeout -s KILL $RUN_TIMEOUT "$PROG" "$1" "$2" >/dev/null 2>&1
    echo $?
}

# summaries_ok DIR COUNT: COUNT summaries in DIR (any number when COUNT
# is "any"), each valid JSON whose "incomplete" is an array of strings.
summaries_ok() {
    python3 - "$1" "$2" <<'EOF'
import glob, json, sys
files = glob.glob(sys.argv[1] + "/summary.*.json")
bad = []
for f in files:
    try:
        d = json.load(open(f))
        inc = d["incomplete"]
        if not isinstance(inc, list) or not all(isinstance(s, str) and s for s in inc):
            bad.append(f + ": incomplete is " + repr(inc))
    except Exception as e:
        bad.append(f + ": " + str(e))
if sys.argv[2] != "any" and len(files) != int(sys.argv[2]):
    bad.append("%d summaries, expected %s" % (len(files), sys.argv[2]))
for b in bad[:3]:
    print("  " + b, file=sys.stderr)
if len(bad) > 3:
    print("  ... %d more" % (len(bad) - 3), file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
}

# run_config NAME MODE THREADS RATE RUNS SUMMARIES_PER_RUN ("any": not
# counted)
run_config() {
    local name=$1 mode=$2 threads=$3 rate=$4 runs=$5 per=$6
    local out=$T/$name hangs=0 wrong=0 noisy=0 st i
    local expect
    expect=$(bare_status "$mode" "$threads")
    local rate_env=(HEAPWATCH_RATE="$rate")
    [ "$rate" = default ] && rate_env=(-u HEAPWATCH_RATE)
    for i in $(seq "$runs"); do
        {   # (bash's own "Killed" notice about a hung run goes nowhere)
            env "${rate_env[@]}" HEAPWATCH_OUT="$out" \
                timeout -s KILL $RUN_TIMEOUT env LD_PRELOAD="$AGENT" "$PROG" "$mode" "$threads" \
                >/dev/null 2>"$T/err"
            st=$?
        } 2>/dev/null
        if [ $st = 137 ]; then
            hangs=$((hangs + 1))
        elif [ "$st" != "$expect" ]; then
            wrong=$((wrong + 1))
            echo "  $name run $i: status $st, bare $expect" >&2
        fi
        [ -s "$T/err" ] && noisy=$((noisy + 1)) && head -3 "$T/err" >&2
    done
    if [ $hangs = 0 ]; then ok "$name: no run hung ($runs runs)"
    else not_ok "$name: $hangs of $runs runs hung (killed after $RUN_TIMEOUT s)"; fi
    if [ $wrong = 0 ]; then ok "$name: status $expect in every run that ended, as bare"
    else not_ok "$name: $wrong of $runs runs ended with another status than bare's $expect"; fi
    if [ $noisy = 0 ]; then ok "$name: nothing on stderr"
    else not_ok "$name: $noisy runs wrote to stderr"; fi
    local want=any
    [ "$per" != any ] && want=$((runs * per))
    if [ $hangs = 0 ]; then
        check "$name: $want summaries, valid JSON with an \"incomplete\" array" \
            summaries_ok "$out" $want
    fi
}

check_eq "bare: _exit(3) from the handler gives status 3" 3 "$(bare_status _exit 1)"

#          name              mode   threads rate    runs summaries/run
run_config _exit-1t-rate1    _exit  1       1       20   1
run_config _exit-1t-default  _exit  1       default 10   1
run_config _exit-1t-rate0    _exit  1       0       6    1
run_config _exit-4t-rate1    _exit  4       1       16   1
run_config _exit-4t-default  _exit  4       default 6    1
run_config exit-1t-rate1     exit   1       1       20   1
run_config exit-1t-default   exit   1       default 10   1
run_config exit-1t-rate0     exit   1       0       6    1
run_config exit-4t-rate1     exit   4       1       16   1
run_config _Exit-1t-rate1    Exit   1       1       10   1
run_config quick_exit-1t-rate1 quick 1      1       8    any
run_config thread-4t-rate1   thread 4       1       8    1
run_config thread-4t-default thread 4       default 4    1
run_config fork-1t-rate1     fork   1       1       16   2
run_config fork-4t-rate1     fork   4       1       16   2
run_config fork-1t-default   fork   1       default 6    2
run_config stuck-2t-rate1    stuck  2       1       6    1

# /metrics while a thread is stopped inside the agent: the HTTP thread's
# reader waits 0.2 s at most for a lock (AGENT_METRICS_WAIT_NS), so the
# answer comes; then the program exits, status as bare.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
http_metrics() {   # PORT: 0 when /metrics answered 200 within 1.5 s
    python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    r = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=1.5)
    sys.exit(0 if r.status == 200 and b"heapwatch" in r.read() else 1)
except Exception as e:
    print("  /metrics: %s" % e, file=sys.stderr)
    sys.exit(1)
EOF
}
metrics_hung=0 metrics_runs=5 metrics_status=0
for i in $(seq $metrics_runs); do
    port=$(free_port)
    : >"$T/stuck.out"
    {
        HEAPWATCH_RATE=1 HEAPWATCH_HTTP=127.0.0.1:$port HEAPWATCH_OUT=$T/metrics \
            timeout -s KILL $RUN_TIMEOUT env LD_PRELOAD="$AGENT" "$PROG" stuckwait 2 \
            >"$T/stuck.out" 2>/dev/null &
        pid=$!
        for _ in $(seq 300); do grep -q stuck "$T/stuck.out" && break; sleep 0.01; done
        http_metrics "$port" || metrics_hung=$((metrics_hung + 1))
        wait $pid
        st=$?
    } 2>/dev/null
    [ $st != 3 ] && metrics_status=$((metrics_status + 1))
done
if [ $metrics_hung = 0 ]; then ok "stuckwait: /metrics answered in every run ($metrics_runs runs)"
else not_ok "stuckwait: /metrics did not answer in $metrics_hung of $metrics_runs runs"; fi
if [ $metrics_status = 0 ]; then ok "stuckwait: status 3 in every run"
else not_ok "stuckwait: $metrics_status of $metrics_runs runs hung or ended with another status than 3"; fi

finish
