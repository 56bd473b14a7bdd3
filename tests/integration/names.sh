#!/usr/bin/env bash
# names.sh - frames people can read (issue 14, item 5).
#
#   - a stripped program (names_c, only .dynsym left: its static
#     allocating functions unnamed) whose debug file is installed the
#     Debian way, /usr/lib/debug/.build-id/xx/rest.debug: the exit profile
#     names the function; without the debug file it does not; an alert's
#     profile (the cached path) names it too;
#   - the .gnu_debuglink route (names_c_nobid: no build ID), the debug
#     file beside the program, in .debug/ there, under /usr/lib/debug/<dir>/;
#     a debug file whose CRC-32 does not match is not used;
#   - C++ (names_cxx): the profile's function names demangled, system names
#     mangled; the alert record's function and stack and the stderr line
#     demangled;
#   - an alert whose innermost non-wrapper frame has no name: its function
#     is file+offset (names_c+0x...), not a caller's name;
#   - exit() from a signal handler on an 8 KiB sigaltstack: status and a
#     demangled exit profile;
#   - jemalloc preloaded ahead of the agent, and jemalloc linked into the
#     executable (names_c_jemalloc, libjemalloc.a): the summary's
#     malloc_owner, the stderr line, the report's line and the page say
#     the agent saw no allocation, and where that malloc came from.
# Installing under /usr/lib/debug needs root (CI is root); without it those
# checks are skipped, saying so. Whatever is installed is removed at exit.
set -u
. tests/integration/lib.sh

H=$PWD/$BUILD/heapwatch
C=$PROGS/names_c
CNB=$PROGS/names_c_nobid
CXX=$PROGS/names_cxx
DBG=/usr/lib/debug
installed=()
cleanup() {
    local f
    for f in "${installed[@]}"; do rm -f "$f"; rmdir -p --ignore-fail-on-non-empty "$(dirname "$f")" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT

# install_debug SRC DEST: SRC copied to DEST (under /usr/lib/debug), removed at exit.
install_debug() {
    mkdir -p "$(dirname "$2")" 2>/dev/null && cp "$1" "$2" 2>/dev/null || return 1
    installed+=("$2")
}
can_install=false
[ -d "$DBG/.build-id" ] || installed+=("$DBG/.build-id/.")   # made here: removed at exit when empty
if mkdir -p "$DBG/.build-id" 2>/dev/null && [ -w "$DBG/.build-id" ]; then can_install=true; fi

# raw DIR REASON [FLAG]: go tool pprof -raw of DIR's first profile of REASON.
raw() {
    local f
    f=$(ls "$1"/heap.*."$2".pb.gz 2>/dev/null | head -n1)
    [ -n "$f" ] && go tool pprof ${3:-} -raw "$f" 2>/dev/null
}
# names DIR REASON [FLAG]: the function names of that profile's locations, one per line.
names() { raw "$1" "$2" "${3:-}" | python3 tests/integration/pprof_raw.py | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("\n".join(sorted({f for s in d["stacks"] for f in s})))'; }
# first_alert DIR KEY: KEY of the first alert record's top[0] ("stack" joined by |).
first_alert() {
    python3 - "$1" "$2" <<'PY'
import glob, json, sys
recs = [json.loads(l) for f in glob.glob(sys.argv[1] + "/alerts.*.jsonl") for l in open(f)]
recs = [r for r in recs if r.get("event") == "alert" and r.get("top")]
if recs:
    v = recs[0]["top"][0][sys.argv[2]]
    print("|".join(v) if isinstance(v, list) else v)
PY
}
# hold DIR PROG: PROG hold, every allocation sampled.
hold() { env HEAPWATCH_RATE=1 HEAPWATCH_OUT="$1" LD_PRELOAD="$AGENT" "$2" hold >/dev/null 2>"$1.err"; }
# grow DIR PROG: 5000 objects/s for 2.5 s, an alert within the first second.
grow() {
    env HEAPWATCH_SUSTAIN=0 HEAPWATCH_GRACE=0 HEAPWATCH_INTERVAL=0.2 HEAPWATCH_WINDOW=1 HEAPWATCH_RATE=4096 \
        HEAPWATCH_OUT="$1" LD_PRELOAD="$AGENT" "$2" grow 5000 2.5 >/dev/null 2>"$1.err"
}

# --- the build-ID route ----------------------------------------------------
mkdir -p "$T/bid"
cp "$C" "$T/bid/names_c"
objcopy --only-keep-debug "$T/bid/names_c" "$T/names_c.debug"
strip --strip-all "$T/bid/names_c"
check "stripped names_c has no .symtab" bash -c "! readelf -S '$T/bid/names_c' | grep -q '\.symtab'"
bid=$(readelf -n "$T/bid/names_c" | awk '/Build ID/ {print $3}')
check_match "names_c has a GNU build ID" '^[0-9a-f]{40}$' "$bid"

hold "$T/nodebug" "$T/bid/names_c"
check_eq "no debug file: names_c_hold_blocks is not named" "" "$(names "$T/nodebug" exit | grep -x names_c_hold_blocks)"
grow "$T/nodebug-grow" "$T/bid/names_c"
fn=$(first_alert "$T/nodebug-grow" function)
check_match "no debug file: the alert's function is names_c+offset, not a caller's name" '^names_c\+0x[0-9a-f]+$' "$fn"
check_match "no debug file: the stderr line names names_c+offset" 'top: names_c\+0x[0-9a-f]+ \+' "$(cat "$T/nodebug-grow.err")"
check_match "no debug file: stack[0] is the same frame, file+offset" "^names_c\+0x[0-9a-f]+\|" "$(first_alert "$T/nodebug-grow" stack)"

if $can_install && [ -n "$bid" ]; then
    install_debug "$T/names_c.debug" "$DBG/.build-id/${bid:0:2}/${bid:2}.debug"
    hold "$T/debug" "$T/bid/names_c"
    check_eq "debug file by build ID: the exit profile names names_c_hold_blocks" names_c_hold_blocks \
        "$(names "$T/debug" exit | grep -x names_c_hold_blocks)"
    grow "$T/debug-grow" "$T/bid/names_c"
    check_eq "debug file by build ID: the alert's function is names_c_grow_node" names_c_grow_node \
        "$(first_alert "$T/debug-grow" function)"
    check_contains "debug file by build ID: the alert profile names it too" \
        "$(names "$T/debug-grow" alert)" names_c_grow_node
    # Another build's debug file under this build ID: refused.
    rm -f "$DBG/.build-id/${bid:0:2}/${bid:2}.debug"
    objcopy --only-keep-debug "$CNB" "$DBG/.build-id/${bid:0:2}/${bid:2}.debug"
    hold "$T/wrongid" "$T/bid/names_c"
    check_eq "a debug file with another build ID is not used" "" \
        "$(names "$T/wrongid" exit | grep -x names_c_hold_blocks)"
else
    ok "debug file by build ID # SKIP cannot write $DBG/.build-id (not root)"
fi

# --- the .gnu_debuglink route ------------------------------------------------
mkdir -p "$T/dl/.debug"
cp "$CNB" "$T/dl/names_c_nobid"
objcopy --only-keep-debug "$T/dl/names_c_nobid" "$T/dl/names_c_nobid.debug"
strip --strip-all "$T/dl/names_c_nobid"
(cd "$T/dl" && objcopy --add-gnu-debuglink=names_c_nobid.debug names_c_nobid)
check "names_c_nobid: no build ID, a .gnu_debuglink" \
    bash -c "! readelf -n '$T/dl/names_c_nobid' | grep -q 'Build ID' && readelf -S '$T/dl/names_c_nobid' | grep -q gnu_debuglink"
hold "$T/link-same" "$T/dl/names_c_nobid"
check_eq "debug link beside the program: named" names_c_hold_blocks "$(names "$T/link-same" exit | grep -x names_c_hold_blocks)"
mv "$T/dl/names_c_nobid.debug" "$T/dl/.debug/"
hold "$T/link-dot" "$T/dl/names_c_nobid"
check_eq "debug link in .debug/: named" names_c_hold_blocks "$(names "$T/link-dot" exit | grep -x names_c_hold_blocks)"
cp "$T/dl/.debug/names_c_nobid.debug" "$T/bad.debug"
printf x >> "$T/dl/.debug/names_c_nobid.debug"   # still an ELF file, another CRC
hold "$T/link-crc" "$T/dl/names_c_nobid"
check_eq "debug link with a CRC that does not match: not used" "" "$(names "$T/link-crc" exit | grep -x names_c_hold_blocks)"
rm -f "$T/dl/.debug/names_c_nobid.debug"
if $can_install; then
    install_debug "$T/bad.debug" "$DBG$T/dl/names_c_nobid.debug"
    hold "$T/link-root" "$T/dl/names_c_nobid"
    check_eq "debug link under /usr/lib/debug/<dir>/: named" names_c_hold_blocks \
        "$(names "$T/link-root" exit | grep -x names_c_hold_blocks)"
else
    ok "debug link under $DBG # SKIP cannot write there (not root)"
fi

# --- C++ --------------------------------------------------------------------
hold "$T/cxx" "$CXX"
cxxraw=$(raw "$T/cxx" exit)
check_contains "C++: the profile's function is demangled, its system name mangled" "$cxxraw" \
    'names::Pool::hold(unsigned long) :0 s=0(_ZN5names4Pool4holdEm)'
check_contains "C++: operator new demangled (new[] tail-calls it)" "$cxxraw" 'operator new(unsigned long) :0 s=0(_Znwm)'
# pprof demangles names equal to their system name itself; with -symbolize=none
# it shows the names as the profile holds them.
cxxnames=$(names "$T/cxx" exit -symbolize=none)
check_contains "C++: the profile holds the demangled name itself" "$cxxnames" "names::Pool::hold(unsigned long)"
check_eq "C++: no function name left mangled in the profile" "" "$(echo "$cxxnames" | grep '^_Z')"
grow "$T/cxx-grow" "$CXX"
check_eq "C++: the alert's function is demangled (operator new skipped)" "names::Pool::grow(unsigned long)" \
    "$(first_alert "$T/cxx-grow" function)"
check_match "C++: the alert's stack is demangled" '^operator new\(unsigned long\)\|names::Pool::grow\(unsigned long\)\|main' \
    "$(first_alert "$T/cxx-grow" stack)"
check_contains "C++: the stderr line is demangled" "$(cat "$T/cxx-grow.err")" "top: names::Pool::grow(unsigned long) +"
# exit() from a handler on an 8 KiB sigaltstack (enough for glibc's exit):
# the exit output runs on the agent's own stack (core.c), and the demangler
# on the module's (pprof_demangle.c).
"$CXX" altexit 8 >/dev/null 2>&1
check_eq "exit from an 8 KiB sigaltstack, bare: status 0" 0 $?
env HEAPWATCH_RATE=1 HEAPWATCH_OUT="$T/alt" LD_PRELOAD="$AGENT" "$CXX" altexit 8 >/dev/null 2>"$T/alt.err"
check_eq "exit from an 8 KiB sigaltstack under the agent: status 0 (a crash before)" 0 $?
check_contains "exit from an 8 KiB sigaltstack: the exit profile, demangled" \
    "$(names "$T/alt" exit -symbolize=none)" "names::Pool::hold(unsigned long)"

# --- a malloc bound ahead of the agent --------------------------------------
JE=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
if [ -e "$JE" ]; then
    env HEAPWATCH_OUT="$T/je" LD_PRELOAD="$JE:$AGENT" "$C" hold >"$T/je.out" 2>"$T/je.err"
    check_eq "jemalloc first: the program runs as bare" "held 256 blocks" "$(cat "$T/je.out")"
    sum=$(ls "$T"/je/summary.*.json 2>/dev/null | head -n1)
    check_eq "jemalloc first: the summary's malloc_owner" "$JE" \
        "$([ -n "$sum" ] && python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["malloc_owner"])' "$sum")"
    check_eq "jemalloc first: mallocs 0" 0 "$([ -n "$sum" ] && json_get "$sum" mallocs)"
    check_contains "jemalloc first: one stderr line says so" "$(cat "$T/je.err")" \
        "is $JE's, bound ahead of the agent's (preloaded before it): the agent sees no allocation"
    check_contains "jemalloc first: heapwatch report says the agent saw no allocation" \
        "$("$H" report "$T/je" 2>&1)" "the agent saw no allocation: $JE provides malloc"
    env HEAPWATCH_OUT="$T/plain" LD_PRELOAD="$AGENT" "$C" hold >/dev/null 2>&1
    sum=$(ls "$T"/plain/summary.*.json 2>/dev/null | head -n1)
    check_eq "the agent's own malloc: malloc_owner null" None \
        "$([ -n "$sum" ] && python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["malloc_owner"])' "$sum")"
else
    ok "jemalloc first # SKIP $JE missing: Debian package libjemalloc2"
fi

# jemalloc linked into the executable: its malloc comes before any
# preloaded one. Before, the agent stepped aside without a word in the
# summary (no summary at all), as for a static sanitizer runtime.
CJ=$PROGS/names_c_jemalloc
"$CJ" hold >"$T/jes.bare" 2>&1
env HEAPWATCH_OUT="$T/jes" LD_PRELOAD="$AGENT" "$CJ" hold >"$T/jes.out" 2>"$T/jes.err"
check_eq "jemalloc linked in: status 0" 0 $?
check_eq "jemalloc linked in: the program runs as bare" "$(cat "$T/jes.bare")" "$(cat "$T/jes.out")"
sum=$(ls "$T"/jes/summary.*.json 2>/dev/null | head -n1)
check_eq "jemalloc linked in: the summary's malloc_owner is the executable" "$CJ" \
    "$([ -n "$sum" ] && python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["malloc_owner"])' "$sum")"
check_eq "jemalloc linked in: mallocs 0" 0 "$([ -n "$sum" ] && json_get "$sum" mallocs)"
check_eq "jemalloc linked in: one stderr line says so" \
    "heapwatch: malloc in this process (pid $(basename "$sum" .json | cut -d. -f2)) is $CJ's, bound ahead of the agent's (linked into the program): the agent sees no allocation" \
    "$(cat "$T/jes.err")"
out=$("$H" report "$T/jes" 2>&1)
check_contains "jemalloc linked in: heapwatch report says the agent saw no allocation" \
    "$out" "the agent saw no allocation: $CJ provides malloc, bound ahead of the agent (linked into the program)"
check "jemalloc linked in: the report claims no leaks it could not see" test "${out/leaks at exit/}" = "$out"
check_contains "jemalloc linked in: the page says so" "$(cat "$T/jes/report.html" 2>/dev/null)" \
    "<b>the agent saw no allocation</b>: $CJ provides malloc, bound ahead of the agent (linked into the program)"

finish
