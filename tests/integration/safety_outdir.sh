#!/usr/bin/env bash
# safety_outdir.sh - issue 11, classes 1 (output half), 3, 5 and 10: the
# agent's output files and descriptors in a hostile world.
#
#   - a shared directory owned by another user (nobody, via setpriv) with
#     links planted at every name the agent may use (final names and the
#     old predictable temporary names) pointing at a root-only file: the
#     file never changes, the directory is refused with one stderr line;
#     the same in a root-owned sticky world-writable directory (accepted:
#     every result written as a regular file under a fresh name); a 0777
#     non-sticky directory refused; HEAPWATCH_OUT a link planted by nobody
#     refused; umask 000: created directories not group/world-writable;
#   - HTTP: /debug/pprof/heap while nobody swaps links to the root-only
#     file in at the profile names: never served; HEAD writes nothing;
#   - the timeline's descriptor: a shell doing `exec 3>&1 ... 9>&1` after
#     the timeline started prints exactly its own lines; `exec 3>log3.txt
#     ... 9>log9.txt` and 3000 lines each at HEAPWATCH_INTERVAL=0.01: all
#     3000 lines in each file, nothing else;
#   - HEAPWATCH_MAX_PROFILES=3 with interval profiles every 0.1 s: at most
#     3 interval profiles kept, the exit profile kept, the summary lists the
#     removed ones (and they are gone); a bad value: one stderr line;
#   - three pid namespaces at once (unshare --fork --pid): every process's
#     summary kept, and heapwatch check sees every process.
# Every run is bounded by timeout.
set -u
. tests/integration/lib.sh

HW=$PWD/$BUILD/heapwatch
chmod 755 "$T"                       # nobody must reach the shared directories
SECRET=$T/secret
printf 'TOPSECRET root only\n' >"$SECRET"
chmod 600 "$SECRET"
secret_sum=$(sha256sum <"$SECRET")
secret_intact() { [ "$(sha256sum <"$SECRET")" = "$secret_sum" ] && [ "$(stat -c %s "$SECRET")" = 20 ]; }

as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; }

# plant DIR PID: links to $SECRET at every name a process PID may write
# (as nobody).
plant() {
    as_nobody sh -c '
        d=$1 p=$2 s=$3
        for n in summary.$p.json timeline.$p.jsonl.zst alerts.$p.jsonl \
                 .summary.$p.json.tmp.$p .timeline.$p.jsonl.zst.tmp.$p .alerts.$p.jsonl.tmp.$p; do
            ln -s "$s" "$d/$n"
        done
        for q in 0001 0002 0003 0004 0005 0006; do
            for r in exit interval alert peak http signal; do
                ln -s "$s" "$d/heap.$p.$q.$r.pb.gz"
                for k in 1 2 3; do ln -s "$s" "$d/.heap.$p.$q.$r.pb.gz.tmp.$p.$k"; done
            done
        done' _ "$1" "$2" "$SECRET"
}

# run_planted DIR NAME: a leaking program under the agent whose every
# output name was planted in DIR before it started (its pid is known:
# the shell plants, then execs it). Alerts and a timeline on.
run_planted() {
    local dir=$1 name=$2
    timeout 60 bash -c '
        plant_dir=$1; shift
        echo $$ >"$plant_dir.pid"
        "$@" "$$" && exec env HEAPWATCH_OUT="$plant_dir" HEAPWATCH_INTERVAL=0.05 HEAPWATCH_WINDOW=0.2 \
            HEAPWATCH_WARN=1 HEAPWATCH_CRIT=2 HEAPWATCH_SUSTAIN=0 HEAPWATCH_GRACE=0 \
            LD_PRELOAD="$AGENT" "$PROGS/agent_leak" leak 300 0.6' \
        _ "$dir" plant_wrap "$dir" >"$T/$name.out" 2>"$T/$name.err"
}
plant_wrap() { plant "$1" "$2"; }
export -f plant plant_wrap as_nobody
export SECRET AGENT PROGS

# --- A directory owned by another user --------------------------------
D=$T/nobody_dir
mkdir "$D" && chown nobody:nogroup "$D" && chmod 755 "$D"
run_planted "$D" nob; st=$?
check_eq "nobody's directory: the program ran as bare (status 0)" 0 "$st"
check "nobody's directory: the root-only file planted behind every name is unchanged" secret_intact
check "nobody's directory: refused with exactly one stderr line naming HEAPWATCH_OUT and the owner" \
    bash -c '[ "$(grep -c HEAPWATCH_OUT "$1")" = 1 ] && grep -q "^heapwatch: HEAPWATCH_OUT: .*owned by uid 65534" "$1"' _ "$T/nob.err"
check "nobody's directory: nothing written there (only the planted links)" \
    bash -c '[ -z "$(find "$1" -mindepth 1 ! -type l)" ]' _ "$D"

# --- A root-owned sticky world-writable directory (like /tmp) -----------
S=$T/sticky
mkdir "$S" && chmod 1777 "$S"
run_planted "$S" sticky; st=$?
pid=$(cat "$S.pid")
check_eq "sticky directory: the program ran as bare (status 0)" 0 "$st"
check "sticky directory: the root-only file planted behind every name is unchanged" secret_intact
check "sticky directory: accepted (no heapwatch line but alerts)" \
    bash -c '! grep -q "HEAPWATCH_OUT" "$1"' _ "$T/sticky.err"
check "sticky directory: its summary, timeline, alerts and exit profile are regular files of its own under fresh names" \
    bash -c 'cd "$1" && for f in summary.$2-2.json timeline.$2-2.jsonl.zst alerts.$2-2.jsonl; do
               [ -f "$f" ] && [ ! -L "$f" ] && [ "$(stat -c %U "$f")" = root ] || exit 1; done
             ls heap.$2-2.*.exit.pb.gz >/dev/null' _ "$S" "$pid"
check "sticky directory: the summary is this process's (pid; every listed file exists)" \
    python3 -c '
import json, os, sys
d, pid = sys.argv[1], int(sys.argv[2])
s = json.load(open(os.path.join(d, "summary.%d-2.json" % pid)))
assert s["pid"] == pid, s["pid"]
for f in s["files"]:
    p = os.path.join(d, f)
    assert os.path.isfile(p) and not os.path.islink(p), f
' "$S" "$pid"
check "sticky directory: no temporary file left" bash -c '[ -z "$(find "$1" -name ".*tmp*" ! -type l)" ]' _ "$S"
check "sticky directory: heapwatch check sees the process (tag $pid-2)" \
    bash -c '"$1" check "$2" >"$3" 2>&1; grep -q "pid $4-2 ([^)]*agent_leak" "$3"' _ "$HW" "$S" "$T/sticky.check" "$pid"

# --- A 0777 directory without the sticky bit ----------------------------
W=$T/open777
mkdir "$W" && chmod 777 "$W"
timeout 30 env HEAPWATCH_OUT=$W LD_PRELOAD=$AGENT sh -c 'echo hello' >"$T/w.out" 2>"$T/w.err"; st=$?
check "0777 directory: refused with one stderr line, output and status as bare" \
    bash -c '[ "$3" = 0 ] && [ "$(cat "$1")" = hello ] && [ "$(wc -l <"$2")" = 1 ] &&
             grep -q "^heapwatch: HEAPWATCH_OUT: .*open777\" is group- or world-writable without the sticky bit (mode 0777)" "$2"' \
    _ "$T/w.out" "$T/w.err" "$st"
check_eq "0777 directory: nothing written" "" "$(ls -A "$W")"

# --- HEAPWATCH_OUT itself a link planted by nobody ----------------------
mkdir "$T/rootdir" && chmod 700 "$T/rootdir"
as_nobody ln -s "$T/rootdir" "$S/hw-out"
timeout 30 env HEAPWATCH_OUT=$S/hw-out LD_PRELOAD=$AGENT sh -c 'echo hi' >"$T/l.out" 2>"$T/l.err"
check "HEAPWATCH_OUT a link owned by nobody: refused (one line), nothing in its target" \
    bash -c '[ "$(wc -l <"$1")" = 1 ] && grep -q "hw-out\" is a symbolic link owned by another user" "$1" && [ -z "$(ls -A "$2")" ]' \
    _ "$T/l.err" "$T/rootdir"

# --- umask 000 -----------------------------------------------------------
(umask 000; timeout 30 env HEAPWATCH_OUT=$T/um/a/b LD_PRELOAD=$AGENT true)
check "umask 000: created directories are 0755, not writable by others" \
    bash -c '[ "$(stat -c %a "$1/um")" = 755 ] && [ "$(stat -c %a "$1/um/a")" = 755 ] && [ "$(stat -c %a "$1/um/a/b")" = 755 ]' _ "$T"
check "umask 000: the summary was written" bash -c 'ls "$1"/um/a/b/summary.*.json >/dev/null' _ "$T"

# --- HTTP ---------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# fetch PORT N METHOD [COUNTFILE]: N requests (their number so far in
# COUNTFILE); prints "<200s> <secret bodies> <gzip bodies>".
fetch() {
    python3 - "$1" "$2" "$3" "$SECRET" "${4:-}" <<'EOF'
import sys, time, urllib.request, urllib.error
port, n, method, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3], open(sys.argv[4], "rb").read()
countfile = sys.argv[5]
url = "http://127.0.0.1:%s/debug/pprof/heap" % port
ok = bad = gz = 0
for i in range(n):
    for attempt in range(100):
        try:
            r = urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10)
            status, body = r.status, r.read()
            break
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
            break
        except Exception:
            time.sleep(0.05)
    else:
        print("no answer", file=sys.stderr); sys.exit(1)
    if countfile:
        open(countfile, "w").write(str(i + 1))
    ok += status == 200
    bad += secret in body
    gz += body[:2] == b"\x1f\x8b"
print(ok, bad, gz)
EOF
}
export -f fetch

# http_run DIR NAME N: `sleep` serving HTTP with output in DIR while nobody
# swaps links to the root-only file in at every http profile name.
http_run() {
    local dir=$1 name=$2 n=$3 port
    port=$(free_port)
    timeout 60 sh -c 'echo $$ >"$1.pid"; exec env HEAPWATCH_OUT="$1" HEAPWATCH_HTTP=127.0.0.1:$2 LD_PRELOAD="$3" sleep 8' \
        _ "$dir" "$port" "$AGENT" 2>"$T/$name.err" &
    local spid=$!
    while [ ! -s "$dir.pid" ]; do sleep 0.01; done
    local p; p=$(cat "$dir.pid")
    # The attacker knows how many answers came ($dir.count, written by
    # fetch) and keeps swapping a link in at the next profile's names.
    timeout 30 setpriv --reuid=nobody --regid=nogroup --clear-groups -- /usr/bin/python3 -c '
import os, sys
d, p, secret, count = sys.argv[1:5]
k = 0
while True:
    try:
        c = int(open(count).read() or 0)
    except Exception:
        c = 0
    for q in (c + 1, c + 2):
        for tag in (p, p + "-2"):
            name = os.path.join(d, "heap.%s.%04d.http.pb.gz" % (tag, q))
            tmp = os.path.join(d, ".swap%d" % k)
            k += 1
            try:
                os.symlink(secret, tmp)
                os.rename(tmp, name)
            except OSError:
                try: os.unlink(tmp)
                except OSError: pass
' "$dir" "$p" "$SECRET" "$dir.count" 2>/dev/null &
    local apid=$!
    fetch "$port" "$n" GET "$dir.count" >"$T/$name.fetch"
    kill "$apid" 2>/dev/null; wait "$apid" 2>/dev/null
    kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
}
H=$T/http_nobody
mkdir "$H" && chown nobody:nogroup "$H"
http_run "$H" hnob 40
read h_ok h_bad h_gz <"$T/hnob.fetch" || h_bad=unknown
check_eq "HTTP, nobody's directory: 40 requests, none answered with the root-only file ($h_bad were)" 0 "$h_bad"
check "HTTP, nobody's directory: the root-only file unchanged" secret_intact

H2=$T/http_sticky
mkdir "$H2" && chmod 1777 "$H2"
http_run "$H2" hsticky 20
read -r hs_ok hs_bad hs_gz <"$T/hsticky.fetch"
check_eq "HTTP, sticky directory with links swapped in: every answer a profile (gzip), none the root-only file" \
    "200: 20, root-only file: 0, gzip: 20" "200: ${hs_ok-}, root-only file: ${hs_bad-}, gzip: ${hs_gz-}"

# HEAD writes nothing.
HD=$T/head
mkdir "$HD"
port=$(free_port)
timeout 60 env HEAPWATCH_OUT=$HD HEAPWATCH_HTTP=127.0.0.1:$port LD_PRELOAD=$AGENT sleep 6 &
spid=$!
fetch "$port" 50 HEAD >"$T/head.fetch"
n_http=$(ls "$HD" | grep -c '\.http\.pb\.gz$')
kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
read -r hd_ok _ <"$T/head.fetch"
check_eq "HEAD: 50 answered 200, no profile file written (found $n_http)" \
    "200: 50, profile files: 0" "200: ${hd_ok-}, profile files: $n_http"

# --- The timeline's descriptor -------------------------------------------
TL=$T/tl
mkdir "$TL"
timeout 60 env HEAPWATCH_OUT=$TL HEAPWATCH_INTERVAL=0.01 LD_PRELOAD=$AGENT bash -c '
    sleep 0.3
    exec 3>&1 4>&1 5>&1 6>&1 7>&1 8>&1 9>&1
    for i in $(seq 300); do echo "line $i"; [ $((i % 30)) = 0 ] && sleep 0.02; done
    exit 0' >"$T/tl.out" 2>"$T/tl.err"; st=$?
check "exec 3>&1 ... 9>&1 after the timeline started: stdout exactly the script's 300 lines (status $st)" \
    bash -c '[ "$2" = 0 ] && cmp -s "$1" <(seq 300 | sed "s/^/line /")' _ "$T/tl.out" "$st"
check_ge "exec 3>&1 ... 9>&1: the timeline is still whole (zstd reads it)" \
    "$(zstd -dc "$TL"/timeline.*.jsonl.zst 2>/dev/null | python3 -c 'import sys,json; print(sum(1 for l in sys.stdin if json.loads(l)))')" 10

TL3=$T/tl3
mkdir "$TL3"
# HEAPWATCH_RATE=0: the timeline's descriptor alone (sampled stacks go
# through libunwind, whose own descriptors are unwind_as.c's business).
# Every number from 3 to 9 is taken over, whichever the agent had.
(cd "$T" && timeout 60 env HEAPWATCH_RATE=0 HEAPWATCH_OUT=$TL3 HEAPWATCH_INTERVAL=0.01 LD_PRELOAD=$AGENT bash -c '
    sleep 0.2
    exec 3>log3.txt 4>log4.txt 5>log5.txt 6>log6.txt 7>log7.txt 8>log8.txt 9>log9.txt
    for i in $(seq 3000); do for f in 3 4 5 6 7 8 9; do echo "line $i" >&$f; done; done' 2>"$T/tl3.err"); st=$?
check "exec 3>log3.txt ... 9>log9.txt, 3000 lines each at HEAPWATCH_INTERVAL=0.01 (RATE=0): every file exactly its 3000 lines (status $st)" \
    bash -c '[ "$2" = 0 ] && for f in 3 4 5 6 7 8 9; do cmp -s "$1/log$f.txt" <(seq 3000 | sed "s/^/line /") || exit 1; done' _ "$T" "$st"
check "exec 3>log3.txt ... 9>log9.txt: no error on stderr" [ ! -s "$T/tl3.err" ]

# A daemon-style script: closes every descriptor from 3 to 1023 once the
# timeline runs (the agent's directory among them), then opens its own
# files on 3..9. Its files hold exactly its lines, and the timeline goes on.
DM=$T/daemon
mkdir "$DM"
(cd "$T" && timeout 60 env HEAPWATCH_RATE=0 HEAPWATCH_OUT=$DM HEAPWATCH_INTERVAL=0.01 LD_PRELOAD=$AGENT bash -c '
    sleep 0.2
    for fd in $(seq 3 1023); do eval "exec $fd>&-"; done
    date +%s.%N >closed_at
    sleep 0.2
    exec 3>d3.txt 4>d4.txt 5>d5.txt 6>d6.txt 7>d7.txt 8>d8.txt 9>d9.txt
    for i in $(seq 1000); do
        for f in 3 4 5 6 7 8 9; do echo "line $i" >&$f; done
        [ $((i % 50)) = 0 ] && sleep 0.02
    done
    exit 0' 2>"$T/dm.err"); st=$?
check "a script that closes 3..1023 and opens its own files on 3..9: each file exactly its 1000 lines (status $st)" \
    bash -c '[ "$2" = 0 ] && for f in 3 4 5 6 7 8 9; do cmp -s "$1/d$f.txt" <(seq 1000 | sed "s/^/line /") || exit 1; done' _ "$T" "$st"
n_after=$(zstd -dc "$DM"/timeline.*.jsonl.zst 2>/dev/null | python3 -c '
import json, sys
closed = float(open(sys.argv[1]).read())
print(sum(json.loads(l)["time"] > closed for l in sys.stdin))' "$T/closed_at")
check_ge "closes 3..1023: the timeline went on after ($n_after records after the close, at least 10)" \
    "$n_after" 10
check "closes 3..1023: nothing on stderr ($(head -c 120 "$T/dm.err"))" [ ! -s "$T/dm.err" ]

# --- HEAPWATCH_MAX_PROFILES ----------------------------------------------
MP=$T/maxp
mkdir "$MP"
timeout 60 env HEAPWATCH_OUT=$MP HEAPWATCH_PROFILE_INTERVAL=0.1 HEAPWATCH_MAX_PROFILES=3 LD_PRELOAD=$AGENT \
    sh -c 'echo $$ >"$1"; exec sleep 2' _ "$T/maxp.pid" 2>"$T/maxp.err"
mpid=$(cat "$T/maxp.pid")
n_int=$(ls "$MP" | grep -c "^heap\.$mpid\..*\.interval\.pb\.gz$")
check_range "MAX_PROFILES=3, a profile every 0.1 s for 2 s: at most 3 interval profiles kept ($n_int)" \
    "$n_int" 1 3
check "MAX_PROFILES=3: the exit profile kept" bash -c 'ls "$1"/heap.$2.*.exit.pb.gz >/dev/null' _ "$MP" "$mpid"
check "MAX_PROFILES=3: the summary lists the removed profiles (gone) and only files that exist" \
    python3 -c '
import json, os, sys
d, pid = sys.argv[1], sys.argv[2]
s = json.load(open(os.path.join(d, "summary.%s.json" % pid)))
rem = s["files_removed"]
assert s["files_removed_total"] >= 5 and len(rem) == min(64, s["files_removed_total"]), s["files_removed_total"]
assert all(r.endswith(".interval.pb.gz") and not os.path.exists(os.path.join(d, r)) for r in rem), rem
assert all(os.path.exists(os.path.join(d, f)) for f in s["files"]), s["files"]
assert s["max_profiles"] == 3
' "$MP" "$mpid"
timeout 30 env HEAPWATCH_OUT=$T/maxbad HEAPWATCH_MAX_PROFILES=0 LD_PRELOAD=$AGENT sh -c 'echo ok' >"$T/mb.out" 2>"$T/mb.err"
check "MAX_PROFILES=0: one stderr line naming the variable, the program runs on" \
    bash -c '[ "$(cat "$1")" = ok ] && [ "$(wc -l <"$2")" = 1 ] && grep -q "HEAPWATCH_MAX_PROFILES" "$2"' _ "$T/mb.out" "$T/mb.err"

# --- Three pid namespaces at once ----------------------------------------
if unshare --fork --pid true 2>/dev/null; then
    ns_run() {   # ns_run DIR: one namespace: sh (pid 1) running two programs
        timeout 60 unshare --fork --pid env HEAPWATCH_OUT=$1 LD_PRELOAD=$AGENT \
            sh -c '"$1" leak 50 0.3 >/dev/null; "$1" leak 50 0.3 >/dev/null; true' _ "$PROGS/agent_leak"
    }
    mkdir "$T/ns1" "$T/ns3"
    ns_run "$T/ns1"
    one=$(ls "$T/ns1" | grep -c '^summary\.')
    ns_run "$T/ns3" & ns_run "$T/ns3" & ns_run "$T/ns3" & wait
    three=$(ls "$T/ns3" | grep -c '^summary\.')
    check "three pid namespaces at once: every process's summary kept ($three = 3 x $one)" \
        bash -c '[ "$1" -ge 2 ] && [ "$2" = $((3 * $1)) ]' _ "$one" "$three"
    "$HW" check "$T/ns3" >"$T/ns3.check" 2>&1
    check_eq "three pid namespaces: heapwatch check sees every process" \
        "$three" "$(grep -c '^heapwatch check: ok   pid' "$T/ns3.check")"
else
    ok "# SKIP three pid namespaces: unshare --pid is not permitted here"
fi

finish
