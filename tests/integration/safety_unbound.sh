#!/usr/bin/env bash
# safety_unbound.sh - the host is never harmed when an allocator linked
# into the executable (libjemalloc.a) is bound ahead of the agent's malloc:
# the agent then runs alongside, sees no allocation and says so (shim.c),
# where it used to step aside. The programs of safety_fds and safety_exit,
# linked with jemalloc (integration.mk: *_je):
#   - fds_daemon_je closes descriptors 3..1023, opens its own files and
#     writes 2,000 lines: files byte-identical to a bare run, every write
#     succeeds, status as bare, with and without timeline records (the
#     timeline writer running while the program reuses every number);
#   - safe_exit_je leaves from a SIGALRM handler (_exit, exit, _Exit,
#     quick_exit) while 1 and 3 threads allocate: status as bare, no hang,
#     and the summary (where one is written) names the executable in
#     malloc_owner;
#   - HEAPWATCH_OUT in a directory another user owns: refused with one
#     stderr line, nothing written there, the program's output and status
#     as bare.
set -u
. tests/integration/lib.sh

DAEMON=$PROGS/fds_daemon_je
EXIT=$PROGS/safe_exit_je

# owners DIR EXE: the malloc_owner of every summary in DIR written by EXE
# (timeout, preloaded too, writes its own), one per line.
owners() {
    python3 -c '
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/summary.*.json")):
    d = json.load(open(f))
    if d.get("exe") == sys.argv[2]:
        print(d.get("malloc_owner"))' "$1" "$2"
}

# --- descriptors closed and reused --------------------------------------------
mkdir -p "$T/bare"
"$DAEMON" "$T/bare" 2000 20000 > "$T/bare.stdout"
bare_status=$?
check_eq "bare fds_daemon_je: status 0, no write error" "status 0, write errors: 0" \
    "status $bare_status, $(cat "$T/bare.stdout")"
for interval in 1000 0.1; do
    d=$T/daemon.$interval; mkdir -p "$d"
    env HEAPWATCH_INTERVAL=$interval HEAPWATCH_OUT="$d/out" LD_PRELOAD="$AGENT" \
        timeout -k 5 60 "$DAEMON" "$d" 2000 20000 > "$d/stdout" 2>"$d/stderr"
    st=$?
    same=yes
    for f in 0 1 2 3; do cmp -s "$T/bare/data$f.txt" "$d/data$f.txt" || same=no; done
    check_eq "fds_daemon_je (interval $interval): status, writes and files as bare" \
        "status $bare_status, write errors: 0, same files yes" "status $st, $(cat "$d/stdout"), same files $same"
    check_eq "fds_daemon_je (interval $interval): its summary names the executable in malloc_owner" "$DAEMON" \
        "$(owners "$d/out" "$DAEMON")"
done

# --- leaving from a signal handler while threads allocate ----------------------
for mode in _exit exit Exit quick; do
    for threads in 1 3; do
        "$EXIT" "$mode" "$threads" >/dev/null 2>&1; bare=$?
        wrong=0
        for i in 1 2 3 4 5; do
            d=$T/exit.$mode.$threads.$i
            env HEAPWATCH_OUT="$d" LD_PRELOAD="$AGENT" timeout -k 2 10 "$EXIT" "$mode" "$threads" >/dev/null 2>"$d.err"
            st=$?
            [ "$st" = "$bare" ] || { wrong=$((wrong + 1)); echo "# $mode $threads run $i: status $st, bare $bare" >&2; }
            for o in $(owners "$d" "$EXIT"); do   # quick_exit writes none (glibc's own _exit)
                [ "$o" = "$EXIT" ] || { wrong=$((wrong + 1)); echo "# $d: malloc_owner $o" >&2; }
            done
        done
        check_eq "safe_exit_je $mode, $threads thread(s): status $bare in 5 runs as bare, no hang, summaries name the executable" \
            0 "$wrong"
    done
done

# --- an output directory another user owns --------------------------------------
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    chmod 755 "$T"
    D=$T/nobodys; mkdir "$D" && chown nobody "$D" && chmod 755 "$D"
    mkdir -p "$T/own"
    env HEAPWATCH_OUT="$D" LD_PRELOAD="$AGENT" "$DAEMON" "$T/own" 200 > "$T/own.stdout" 2>"$T/own.stderr"
    check_eq "nobody's directory: the program runs as bare" "status 0, write errors: 0" "status $?, $(cat "$T/own.stdout")"
    check_eq "nobody's directory: nothing written there" "" "$(ls -A "$D")"
    check_eq "nobody's directory: one stderr line names HEAPWATCH_OUT" 1 "$(grep -c 'HEAPWATCH_OUT' "$T/own.stderr")"
else
    ok "an output directory another user owns # SKIP needs root and user nobody"
fi

finish
