#!/usr/bin/env bash
# safety_elf.sh - issue 11, class 4 (mapped files): the symbol cache reads
# ELF files the program controls; no change to such a file may raise a
# signal in the host or grow the process's mappings.
#
# progs/safe_elf dlopens a copy of libsafe_elf.so in $T, keeps 2000 blocks
# allocated through it (HEAPWATCH_RATE=1: every stack has a frame in it)
# and idles. Meanwhile periodic profiles run (HEAPWATCH_PROFILE_INTERVAL
# 0.1) and a driver (python3) changes the library's file 2000 times, in
# place (same inode, the one /proc/PID/map_files opens): truncated to 0,
# replaced by garbage, cut in the middle of its tables, rewritten whole;
# after each change it asks /debug/pprof/symbol for the library's
# function (every 10th change: /debug/pprof/heap, a whole profile), and
# every 100 changes it counts the lines of /proc/PID/maps (total, and
# those naming the file). Then the file flips between empty and whole with
# its size and mtime put back (cp -p, rsync -t) while 300 more symbol
# requests run. Then it puts the original bytes back, and the program
# exits. Checks: status 0 (a SIGBUS is 135), the file's mappings never
# above the program's own (the agent keeps none), the total map count and
# resident memory bounded, names exactly when the file is whole (change
# detection: a stale entry is never used), the exit profile naming it. The whole run is bounded by
# timeout; nothing here measures time.
set -u
. tests/integration/lib.sh

PROG=$PROGS/safe_elf
LIB=$T/libsafe_elf.so
cp "$PROGS/libsafe_elf.so" "$LIB"
cp "$PROGS/libsafe_elf.so" "$T/orig.so"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out=$T/out
mkdir -p "$out"
mkfifo "$T/stdin.fifo"
timeout 120 env HEAPWATCH_RATE=1 HEAPWATCH_PROFILE_INTERVAL=0.1 \
    HEAPWATCH_HTTP=127.0.0.1:$port HEAPWATCH_OUT=$out LD_PRELOAD=$AGENT \
    "$PROG" "$LIB" "$T/info" <"$T/stdin.fifo" >"$T/stdout" 2>"$T/stderr" &
pid=$!
exec 7>"$T/stdin.fifo"
for _ in $(seq 1 200); do
    [ -s "$T/info" ] && break
    sleep 0.05
done
check "the program dlopened its library and says ready" test -s "$T/info"

python3 - "$LIB" "$T/orig.so" "$T/info" "$port" "${CHANGES:-2000}" >"$T/driver.json" 2>"$T/driver.err" <<'PYEOF'
import json, os, random, shutil, sys, urllib.request
lib, orig, info, port, changes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
pid, addr = open(info).read().split()
pid = int(pid)
FLIPS = int(os.environ.get("FLIPS", "300"))
good = open(orig, "rb").read()
rnd = random.Random(11)
base = "http://127.0.0.1:%d" % port

def maps():
    try:
        lines = open("/proc/%d/maps" % pid).read().splitlines()
    except OSError:
        return None
    return len(lines), sum(1 for l in lines if l.split()[-1] == lib or l.endswith(lib + " (deleted)"))

def ask(path, data=None):
    try:
        r = urllib.request.urlopen(urllib.request.Request(base + path, data=data), timeout=20)
        return r.read()
    except Exception as e:
        return None

def rewrite(data):          # in place: same inode, as cp over a file does
    with open(lib, "r+b") as f:
        f.truncate(0)
        f.write(data)

def rss_kib():
    try:
        for l in open("/proc/%d/status" % pid):
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    except OSError:
        return None

def symbol():
    body = ask("/debug/pprof/symbol", addr.encode())
    return body.decode(errors="replace") if body is not None else None

r = {"base": maps(), "first_symbol": symbol(), "max_total": 0, "max_lib": 0,
     "samples": [], "answers": 0, "died_at": None, "rss_base": rss_kib(),
     "whole_asked": 0, "whole_named": 0, "broken_named": 0}
for i in range(changes):
    k = i % 4
    if k == 0:
        rewrite(b"")                                    # truncate -s 0
    elif k == 1:
        rewrite(os.urandom(rnd.randrange(0, 3 * len(good))))   # garbage
    elif k == 2:
        rewrite(good[:rnd.randrange(64, len(good))])    # cut in its tables
    else:
        rewrite(good)                                   # cp over
    if i % 10 == 9:
        ok = ask("/debug/pprof/heap") is not None
    else:
        body = symbol()
        ok = body is not None
        named = ok and "safelib_keep" in body
        if k == 3:                  # the whole file again: named again
            r["whole_asked"] += 1
            r["whole_named"] += named
        elif k < 2:                 # empty or garbage: nothing to name
            r["broken_named"] += named
    r["answers"] += ok
    if i % 100 == 99 or i == changes - 1:
        m = maps()
        if m is None:
            r["died_at"] = i
            break
        r["samples"].append(m)
        r["max_total"] = max(r["max_total"], m[0])
        r["max_lib"] = max(r["max_lib"], m[1])
# Phase 2: the file flips between empty and whole, put back with its size
# and mtime (as cp -p, rsync -t or tar do), as fast as a thread can, while
# symbol requests run: a reader trusting what it mapped earlier faults.
import threading
rewrite(good)
st = os.stat(lib)
symbol()
stop = threading.Event()
def flip():
    while not stop.is_set():
        rewrite(b"")
        rewrite(good)
        os.utime(lib, ns=(st.st_atime_ns, st.st_mtime_ns))
t = threading.Thread(target=flip)
t.start()
r["flip_answers"] = 0
for i in range(FLIPS):
    r["flip_answers"] += symbol() is not None
    if maps() is None:
        r["died_at"] = "flip %d" % i
        break
stop.set()
t.join()
rewrite(good)
r["last_symbol"] = symbol()
r["end"] = maps()
r["rss_end"] = rss_kib()
json.dump(r, sys.stdout)
PYEOF
exec 7>&-
wait $pid
rc=$?
echo "# driver: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r.pop("first_symbol",0); r.pop("last_symbol",0); s=r.pop("samples"); print(json.dumps(r), "samples:", s[:3], "...", s[-3:])' "$T/driver.json" 2>&1)"
get() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print(v)' "$T/driver.json" "$1"; }

check_eq "the host exits 0 after 2000 changes of its mapped library and $(get 'r["flip_answers"]') symbol requests while it flips (status $rc, no SIGBUS)" 0 "$rc"
check "the host ran to its end" grep -qx done "$T/stdout"
check_eq "the host lived through every change (driver: died_at $(get 'r["died_at"]'))" None "$(get 'r["died_at"]')"
base_lib=$(get 'r["base"][1]'); base_total=$(get 'r["base"][0]')
max_lib=$(get 'r["max_lib"]'); max_total=$(get 'r["max_total"]')
check_le "mappings of the file never above the program's own ($max_lib, program: $base_lib)" \
    "$max_lib" "$base_lib"
check_le "total mappings bounded ($max_total, at start $base_total, bound +32)" \
    "$max_total" $((base_total + 32))
check_eq "the server answered every request ($(get 'r["answers"]') of ${CHANGES:-2000})" \
    "${CHANGES:-2000}" "$(get 'r["answers"]')"
check "every symbol request after the whole file was written back named it ($(get 'r["whole_named"]') of $(get 'r["whole_asked"]'))" \
    test "$(get 'r["whole_named"]')" = "$(get 'r["whole_asked"]')" -a "$(get 'r["whole_asked"]')" -gt 0
check_eq "no symbol request named it from an empty or garbage file ($(get 'r["broken_named"]'))" \
    0 "$(get 'r["broken_named"]')"
check_lt "resident memory grew by less than 32 MiB ($(get 'r["rss_base"]') KiB -> $(get 'r["rss_end"]') KiB)" \
    "$(get '(r["rss_end"] or 1 << 30) - (r["rss_base"] or 0)')" 32768
check "/debug/pprof/symbol names the library's function before the changes" \
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["first_symbol"] or ""; sys.exit("safelib_keep" not in s)' "$T/driver.json"
check "/debug/pprof/symbol names it again once the file is restored (the changed entries were dropped)" \
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["last_symbol"] or ""; sys.exit("safelib_keep" not in s)' "$T/driver.json"
exitp=$(ls "$out"/heap.*.exit.pb.gz 2>/dev/null | head -1)
check "the exit profile names the restored library's function" \
    sh -c '[ -n "$1" ] && gzip -dc "$1" | grep -aq safelib_keep' sh "$exitp"
check "no stderr from the agent" test ! -s "$T/stderr"
[ -s "$T/stderr" ] && sed 's/^/# stderr: /' "$T/stderr" | head -5
finish
