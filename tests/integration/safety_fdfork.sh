#!/usr/bin/env bash
# safety_fdfork.sh - issue 11, class 1: a forked child keeps none of the
# descriptors the agent's threads held. The program forks while the
# agent's HTTP server holds a client connection (accepted, request not yet
# sent); the child sleeps 4 s. The client then sends its request: the
# answer must end (the connection close) at once, not when the child exits
# (a child holding a copy of the socket keeps the connection open).
set -u
. tests/integration/lib.sh

port=$((20000 + RANDOM % 20000))
HEAPWATCH_HTTP=127.0.0.1:$port with_agent "$T/out" "$PROGS/safe_forkhttp" "$T/go" 4 > "$T/prog.out" 2>"$T/prog.err" &
prog=$!
res=$(python3 - "$port" "$T/go" <<'PY'
import socket, sys, time, os
port, go = int(sys.argv[1]), sys.argv[2]
s = None
for _ in range(200):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        break
    except OSError:
        time.sleep(0.05)
if s is None:
    print("noconnect"); sys.exit(0)
time.sleep(0.3)                     # accepted by the agent's server by now
open(go, "w").close()               # the program forks now
time.sleep(0.5)
t0 = time.time()
s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
print("%s %.2f" % ("200" if data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200") else "bad", time.time() - t0))
PY
)
wait $prog; st=$?
echo "# $res (program status $st)"
set -- $res
check_eq "the answer came (200) and the program exited 0" "answer 200, status 0" "answer ${1:-}, status $st"
check_lt "the connection ended at once (${2:-?} s), not when the forked child exited (4 s)" "${2:-}" 2.0
finish
