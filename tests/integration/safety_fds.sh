#!/bin/bash
# tests/integration/safety_fds.sh - issue 11, class 1: the agent never reads,
# writes, closes or replaces a descriptor that is not its own at that moment.
#
#  - a shell script that takes fds 3..9 (`exec 3>&1 ... 9>&1`) after the
#    agent's background thread has written timeline records: its stdout is
#    exactly its own lines (no zstd bytes);
#  - `bash -c 'exec 3>log.txt; ...'`: log.txt has all 3,000 lines;
#  - fds_daemon (closes 3..1023, opens its own files, writes 2,000 lines
#    while allocating through code without unwind tables) at rates 0, 1 and
#    the default: its files byte-identical to a bare run, every write
#    succeeds, exit status as bare;
#  - HEAPWATCH_HTTP in a program that closed every descriptor and forks: the
#    agent never closes the number the program took back;
#  - no descriptor kept by the agent at start, nor made at the first sample
#    (libunwind's set-up, mid-run, while a thread makes and closes pipes:
#    fds_firstsample).
# Each case runs twice: with HEAPWATCH_INTERVAL=1000 (no timeline record
# before exit: only the unwinder can touch the program's descriptors), and
# with a short interval (the timeline writer too).
source tests/integration/lib.sh

DAEMON=$PROGS/fds_daemon
RATES="0 1 default"

# rate_env RATE: the HEAPWATCH_RATE assignment for env (none for default).
rate_env() { [ "$1" = default ] && echo "HEAPWATCH_UNUSED=1" || echo "HEAPWATCH_RATE=$1"; }

# --- a shell script that takes fds 3..9 after start --------------------------
cat > "$T/takefds.sh" <<'SH'
sleep 0.5
exec 3>&1 4>&1 5>&1 6>&1 7>&1 8>&1 9>&1
for round in 1 2 3; do
    for fd in 3 4 5 6 7 8 9; do echo "round $round via fd $fd" >&$fd; done
    sleep 0.3
done
echo done
SH
bash "$T/takefds.sh" > "$T/takefds.bare" 2>&1
for interval in 1000 0.1; do
    out=$T/takefds.$interval
    HEAPWATCH_INTERVAL=$interval HEAPWATCH_RATE=1 with_agent "$T/out.takefds.$interval" \
        bash "$T/takefds.sh" > "$out" 2>"$out.err"
    if cmp -s "$T/takefds.bare" "$out"; then
        ok "exec 3>&1 ... 9>&1 after start (interval $interval): stdout is exactly the script's lines"
    else
        not_ok "exec 3>&1 ... 9>&1 after start (interval $interval): stdout is exactly the script's lines ($(wc -c < "$out") bytes, $(tr -d '[:print:]\n' < "$out" | wc -c) non-text; expected $(wc -c < "$T/takefds.bare"))"
    fi
done

# --- exec 3>log.txt, 3,000 lines ---------------------------------------------
for interval in 1000 0.1; do
    for rate in 1 default; do
        d=$T/log.$interval.$rate; mkdir -p "$d"
        ( cd "$d" && env HEAPWATCH_INTERVAL=$interval "$(rate_env $rate)" HEAPWATCH_OUT="$d/out" LD_PRELOAD=$AGENT \
            bash -c 'exec 3>log.txt; for i in $(seq 3000); do echo "line $i" >&3; done' ) 2>"$d/err"
        st=$?
        seq 3000 | sed 's/^/line /' > "$d/expected"
        if [ $st -eq 0 ] && cmp -s "$d/expected" "$d/log.txt" && [ ! -s "$d/err" ]; then
            ok "exec 3>log.txt (interval $interval, rate $rate): all 3000 lines, status 0, no error"
        else
            not_ok "exec 3>log.txt (interval $interval, rate $rate): all 3000 lines, status 0, no error (status $st, $(grep -c '^line' "$d/log.txt" 2>/dev/null) lines, $(head -c 200 "$d/err"))"
        fi
    done
done

# --- the daemon ----------------------------------------------------------------
mkdir -p "$T/bare"
"$DAEMON" "$T/bare" 2000 20000 > "$T/bare.stdout"
bare_status=$?
check_eq "bare fds_daemon: status 0, no write error" \
    "status 0, write errors: 0" "status $bare_status, $(cat "$T/bare.stdout")"
for interval in 1000 0.1; do
    for rate in $RATES; do
        d=$T/daemon.$interval.$rate; mkdir -p "$d"
        env HEAPWATCH_INTERVAL=$interval "$(rate_env $rate)" HEAPWATCH_OUT="$d/out" LD_PRELOAD=$AGENT \
            "$DAEMON" "$d" 2000 20000 > "$d/stdout" 2>"$d/stderr"
        st=$?
        same=yes
        for f in 0 1 2 3; do cmp -s "$T/bare/data$f.txt" "$d/data$f.txt" || same=no; done
        if [ $st -eq $bare_status ] && [ "$(cat "$d/stdout")" = "write errors: 0" ] && [ $same = yes ]; then
            ok "fds_daemon (interval $interval, rate $rate): every write succeeds, files byte-identical to bare, status $st"
        else
            not_ok "fds_daemon (interval $interval, rate $rate): every write succeeds, files byte-identical to bare (status $st, same files: $same, $(head -c 300 "$d/stdout" | tr '\n' ' '))"
        fi
    done
done

# The rate-1 profile's stacks go through the frames without unwind info
# (their frame-pointer chain) up to deep() and main().
prof=$(ls "$T"/daemon.1000.1/out/heap.*.exit.pb.gz 2>/dev/null | head -1)
if [ -n "$prof" ] && command -v go >/dev/null; then
    traces=$(go tool pprof -traces -sample_index=alloc_space "$prof" 2>/dev/null)
    if echo "$traces" | awk '/^-+\+/{blk=""} {blk=blk" "$NF} /main$/ && blk ~ /fds_nounwind_alloc .*deep .*main/ {found=1} END{exit !found}'; then
        ok "fds_daemon rate 1: stacks run from fds_nounwind_alloc (no unwind tables) through deep to main"
    else
        not_ok "fds_daemon rate 1: stacks run from fds_nounwind_alloc (no unwind tables) through deep to main"
    fi
else
    not_ok "fds_daemon rate 1: an exit profile and go tool pprof to read it"
fi

# --- HEAPWATCH_HTTP: the listener's number, taken back by the program -----------
# safe_fds_http closes every descriptor from 3, opens 8 files (the last
# moved to the number the listening socket had), binds the agent's port
# itself, forks; both processes
# write to every file. The agent's fork handler must not close that number.
port=$((20000 + RANDOM % 20000))
d=$T/http; mkdir -p "$d"
HEAPWATCH_HTTP=127.0.0.1:$port with_agent "$d/out" "$PROGS/safe_fds_http" "$d" "$port" > "$d/stdout" 2>"$d/stderr"
st=$?
lines=$(cat "$d"/own*.txt | wc -l)
if [ $st -eq 0 ] && [ "$lines" -eq 200 ]; then
    ok "HEAPWATCH_HTTP, program closed every descriptor and forked: the child's and parent's writes all land (200 lines), the port is free again"
else
    not_ok "HEAPWATCH_HTTP, program closed every descriptor and forked: all writes land (status $st, $lines of 200 lines, $(tr '\n' ' ' < "$d/stdout"))"
fi

# --- the unwinder keeps no descriptor --------------------------------------------
# A program that lists its own descriptors after the agent started: only 0-2
# (and the one ls opens to read /proc/self/fd).
fds=$(HEAPWATCH_INTERVAL=1000 HEAPWATCH_RATE=1 with_agent "$T/out.ls" ls /proc/self/fd | sort -n | tr '\n' ' ')
fds_bare=$(ls /proc/self/fd | sort -n | tr '\n' ' ')
check_eq "no descriptor kept by the agent at start (rate 1): $fds" "$fds_bare" "$fds"

# --- the first sample, mid-run: libunwind's set-up opens nothing -------------
# fds_firstsample notes its descriptors, allocates 4 GiB in 16 MiB blocks
# (never touched) at a rate of 256 MiB while a thread makes and closes
# pipes, and looks again. Its pipes all work, no descriptor came or went,
# and the samples have their stacks (big_alloc).
d=$T/firstsample; mkdir -p "$d"
"$PROGS/fds_firstsample" > "$d/bare" 2>&1
HEAPWATCH_INTERVAL=1000 HEAPWATCH_RATE=268435456 with_agent "$d/out" "$PROGS/fds_firstsample" > "$d/stdout" 2>"$d/stderr"
st=$?
check_eq "first sample mid-run, pipes made and closed meanwhile: exit status as bare" 0 "$st"
check_eq "first sample mid-run: the program's pipes all work, no descriptor came or went" "$(cat "$d/bare")" "$(cat "$d/stdout")"
check_eq "first sample mid-run: nothing on stderr" "" "$(cat "$d/stderr")"
samples=$(json_get "$(ls "$d"/out/summary.*.json | head -1)" samples)
check_ge "first sample mid-run: allocations were sampled" "$samples" 1
check "first sample mid-run: the sampled stacks name big_alloc (libunwind set up then)" \
    bash -c 'go tool pprof -traces -sample_index=alloc_space "$1" 2>/dev/null | grep -q "big_alloc"' _ "$(ls "$d"/out/heap.*.exit.pb.gz | head -1)"

finish
