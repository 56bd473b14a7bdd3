#!/usr/bin/env bash
# agent_http.sh - HEAPWATCH_HTTP: the real `go tool pprof` fetching
# http://HOST:PORT/debug/pprof/heap from a running program (symbolization
# through /debug/pprof/symbol included), /metrics equal to the counters
# the program read itself while idle, the http profile file, HTTP errors
# (404, 405, 400, a request that never ends), a busy port and a bad value
# (one stderr line, the program runs on), fork (the child does not hold
# the port), pthread_exit from main (the process still ends), exit while a
# client hangs. The program is progs/agent_http.c; every run is bounded by
# timeout and nothing here measures time.
set -u
. tests/integration/lib.sh

export HOME=$T/home GOCACHE=$T/gocache GOPATH=$T/gopath PPROF_TMPDIR=$T/pproftmp
mkdir -p "$HOME" "$GOCACHE" "$GOPATH" "$PPROF_TMPDIR"
PROG=$PROGS/agent_http

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# http METHOD URL [BODY]: prints "STATUS\n<headers>\n\n<body>" (python3, so no
# curl is needed); exit 1 when no HTTP answer came.
http() {
    python3 - "$@" <<'EOF'
import sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=data, method=method)
try:
    r = urllib.request.urlopen(req, timeout=20)
    status, headers, body = r.status, r.headers, r.read()
except urllib.error.HTTPError as e:
    status, headers, body = e.code, e.headers, e.read()
except Exception as e:
    print("no answer:", e, file=sys.stderr)
    sys.exit(1)
try:
    sys.stdout.write("%d\n%s\n\n" % (status, str(headers).strip()))
    sys.stdout.flush()
    sys.stdout.buffer.write(body)
    sys.stdout.flush()
except BrokenPipeError:   # a reader that wanted the status line only
    sys.stderr.close()
EOF
}
export -f http

# start NAME MODE [ENV...]: starts the program under the agent with its
# stdin on a fifo held open by fd 7 (closing fd 7 ends the program); waits
# for "ready" and the counts file. Sets $pid, $port, $out.
start() {
    local name=$1 mode=$2; shift 2
    port=$(free_port)
    out=$T/$name
    mkdir -p "$out"
    rm -f "$T/$name.fifo" && mkfifo "$T/$name.fifo"
    # (timeout outside LD_PRELOAD: a preloaded timeout would bind the port first)
    timeout 120 env "$@" HEAPWATCH_HTTP=127.0.0.1:$port HEAPWATCH_OUT=$out LD_PRELOAD=$AGENT \
        "$PROG" "$T/$name.counts" "$mode" <"$T/$name.fifo" >"$T/$name.stdout" 2>"$T/$name.stderr" &
    pid=$!
    exec 7>"$T/$name.fifo"
    for _ in $(seq 1 200); do
        [ -s "$T/$name.counts" ] && break
        sleep 0.05
    done
}

# stop: ends the program (EOF on its stdin); sets $rc.
stop() {
    exec 7>&-
    wait $pid
    rc=$?
}

# --- 1. go tool pprof from the URL, /metrics, the file ---------------------------
start main plain HEAPWATCH_RATE=1
check "the program under HEAPWATCH_HTTP says ready" grep -qx ready "$T/main.stdout"
read -r m f ab fb <"$T/main.counts"

http GET "http://127.0.0.1:$port/metrics" >"$T/metrics.txt"
check "/metrics: 200, Prometheus text format 0.0.4" \
    bash -c 'head -1 "$1" | grep -qx 200 && grep -qi "^Content-Type: text/plain; version=0.0.4" "$1"' _ "$T/metrics.txt"
metric() { awk -v k="heapwatch_$1" '$1 == k { print $2 }' "$T/metrics.txt"; }
check_eq "/metrics while the program idles = the counters it read itself: mallocs $(metric mallocs_total)/$m frees $(metric frees_total)/$f alloc_bytes $(metric alloc_bytes_total)/$ab free_bytes $(metric free_bytes_total)/$fb" \
    "mallocs $m frees $f alloc_bytes $ab free_bytes $fb" \
    "mallocs $(metric mallocs_total) frees $(metric frees_total) alloc_bytes $(metric alloc_bytes_total) free_bytes $(metric free_bytes_total)"
check_eq "/metrics: live_objects = mallocs - frees, live_bytes = alloc - free" \
    "live_objects $((m - f)) live_bytes $((ab - fb))" "live_objects $(metric live_objects) live_bytes $(metric live_bytes)"
check "/metrics: every sample has HELP and TYPE lines, sampling rate 1" \
    python3 -c '
import sys
lines = open(sys.argv[1]).read().split("\n\n", 1)[1].splitlines()
names = [l.split()[0].split("{")[0] for l in lines if l and not l.startswith("#")]
helps = {l.split()[2] for l in lines if l.startswith("# HELP ")}
types = {l.split()[2] for l in lines if l.startswith("# TYPE ")}
assert len(names) >= 15 and set(names) == helps == types, (names, helps, types)
assert "heapwatch_sampling_rate_bytes 1" in lines
' "$T/metrics.txt"

go tool pprof -raw "http://127.0.0.1:$port/debug/pprof/heap" >"$T/raw.txt" 2>"$T/gopprof.err"
check "go tool pprof http://.../debug/pprof/heap: fetched and read (symbolization over /debug/pprof/symbol included)" \
    bash -c '[ -s "$1" ] && ! grep -qi "error\|failed" "$2"' _ "$T/raw.txt" "$T/gopprof.err"
sed 's/^/# /' "$T/gopprof.err" | grep -v "Fetching\|Saved" | head -3
# The in-use bytes of http_keep at rate 1: its 1000 live blocks of 1000
# bytes (usable sizes: 1000 rounded up by glibc, at most 16 more each).
keep_bytes=$(go tool pprof -raw "http://127.0.0.1:$port/debug/pprof/heap" 2>/dev/null |
    python3 tests/integration/pprof_raw.py | python3 -c '
import json, sys
print(json.load(sys.stdin)["by_leaf"].get("http_keep", [0, 0, 0, 0])[3])')
check_range "the profile from the URL: http_keep holds 1000 x 1000 bytes in use (${keep_bytes:-?} bytes, usable sizes)" \
    "$keep_bytes" 1000000 1016000
n_http=$(ls "$out"/heap.*.http.pb.gz 2>/dev/null | wc -l)
check_eq "each request wrote heap.<pid>.<seq>.http.pb.gz in HEAPWATCH_OUT ($n_http files)" 2 "$n_http"

# --- 2. HTTP errors ---------------------------------------------------------------
check "GET /nope: 404" bash -c 'http GET "$1" | head -1 | grep -qx 404' _ "http://127.0.0.1:$port/nope"
check "POST /metrics: 405 with Allow" bash -c 'http POST "$1" x >"$2"; head -1 "$2" | grep -qx 405 && grep -qi "^Allow: GET, HEAD" "$2"' \
    _ "http://127.0.0.1:$port/metrics" "$T/405.txt"
check "GET /debug/pprof/heap?debug=1: 400 (protobuf only)" \
    bash -c 'http GET "$1" | head -1 | grep -qx 400' _ "http://127.0.0.1:$port/debug/pprof/heap?debug=1"
check "HEAD /metrics: 200, no body" bash -c 'http HEAD "$1" >"$2"; head -1 "$2" | grep -qx 200' \
    _ "http://127.0.0.1:$port/metrics" "$T/head.txt"
check "GET /debug/pprof/symbol: num_symbols: 1" \
    bash -c 'http GET "$1" | grep -qx "num_symbols: 1"' _ "http://127.0.0.1:$port/debug/pprof/symbol"
check "a request line that is not HTTP: 400" python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall(b"hello\r\n\r\n")
assert s.recv(100).startswith(b"HTTP/1.1 400 "), "no 400"
' "$port"
# A client that connects and sends nothing is dropped after 5 s; the next one is served.
check "a client that sends nothing is dropped; the next request is served" python3 -c '
import socket, sys, urllib.request
port = int(sys.argv[1])
idle = socket.create_connection(("127.0.0.1", port), timeout=30)
r = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=30)
assert r.status == 200
assert idle.recv(10) == b""   # closed by the server
' "$port"
stop
check_eq "the program exits 0 after being queried" 0 "$rc"
s=$(ls "$out"/summary.*.json 2>/dev/null | head -1)
check_eq "the summary lists the http profiles" 2 \
    "$([ -n "$s" ] && python3 -c 'import json,sys; print(sum(f.endswith(".http.pb.gz") for f in json.load(open(sys.argv[1]))["files"]))' "$s")"

# --- 3. a busy port, a bad value: one line, the program runs on --------------------
busy=$(free_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); time.sleep(30)' "$busy" &
holder=$!
sleep 0.3
echo | timeout 60 env HEAPWATCH_HTTP=127.0.0.1:$busy HEAPWATCH_OUT=$T/busy LD_PRELOAD=$AGENT \
    "$PROG" "$T/busy.counts" >"$T/busy.out" 2>"$T/busy.err"
rc=$?
kill $holder 2>/dev/null; wait $holder 2>/dev/null
check_eq "a busy port: exit 0, stdout unchanged" "status 0, stdout ready" "status $rc, stdout $(cat "$T/busy.out")"
check "a busy port: exactly one stderr line, naming HEAPWATCH_HTTP ($(head -c 150 "$T/busy.err"))" \
    bash -c '[ "$(wc -l <"$1")" = 1 ] && grep -q "HEAPWATCH_HTTP=127.0.0.1:$2: cannot listen: Address already in use" "$1"' \
    _ "$T/busy.err" "$busy"
echo | timeout 60 env HEAPWATCH_HTTP=nonsense HEAPWATCH_OUT=$T/bad LD_PRELOAD=$AGENT \
    "$PROG" "$T/bad.counts" >"$T/bad.out" 2>"$T/bad.err"
rc=$?
check "HEAPWATCH_HTTP=nonsense: exit 0, one stderr line naming the variable" \
    bash -c '[ $1 = 0 ] && [ "$(wc -l <"$2")" = 1 ] && grep -q HEAPWATCH_HTTP "$2"' _ $rc "$T/bad.err"

# --- 4. fork: the child does not hold the port ------------------------------------
start fork fork
child=$(sed -n 2p "$T/fork.counts")
check "fork: the parent serves /metrics" bash -c 'http GET "$1" | head -1 | grep -qx 200' \
    _ "http://127.0.0.1:$port/metrics"
socks=$(ls -l /proc/"${child:-0}"/fd 2>/dev/null | grep -c "socket:")
check "fork: the child holds no socket (${socks} found)" [ -d /proc/"${child:-0}" -a "$socks" = 0 ]
stop
check_eq "fork: parent and child exit 0" 0 "$rc"

# --- 5. pthread_exit from main: the process still ends ----------------------------
start pexit pexit
check "pthread_exit: served while main is gone" bash -c 'http GET "$1" | head -1 | grep -qx 200' \
    _ "http://127.0.0.1:$port/metrics"
stop
check_eq "pthread_exit: the process ends with its last thread, status 0 (not killed by timeout: $rc)" 0 "$rc"

# --- 6. exit while a client hangs ---------------------------------------------------
start hang plain
python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /metrics HTTP/1.1\r\n")   # never finished
time.sleep(30)' "$port" 7>&- &
client=$!   # (without fd 7: the program's stdin must reach end of file)
sleep 0.3
stop
kill $client 2>/dev/null; wait $client 2>/dev/null
check "exit while a client holds a half-sent request: status 0, a summary" \
    bash -c '[ $1 = 0 ] && ls "$2"/summary.*.json >/dev/null 2>&1' _ $rc "$out"

finish
