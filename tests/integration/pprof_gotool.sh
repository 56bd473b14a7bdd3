#!/usr/bin/env bash
# pprof_gotool.sh - heap profiles written by pprof/ as read by the real
# `go tool pprof` (Go 1.19 on Debian 12): -raw and -top for all four sample
# types name the right functions (a static C function, an exported one, a
# function in a shared library, a C++ method, a library without build ID, a
# dlopen'ed library whose file was deleted), still after the binary is
# deleted; -diff_base; unsampled values; a non-PIE and a stripped binary;
# the edge cases (no samples, depth 1 and 128, 100k stacks, long non-ASCII
# paths); and the web UI.
#
# Run from the repo root with BUILD set (tests/run.sh does). Prints TAP
# lines: "ok N - ..." / "not ok N - ...".
set -u
BUILD=${BUILD:-build}
P=$BUILD/pprof-progs
T=$(mktemp -d "${TMPDIR:-/tmp}/pprof_gotool.XXXXXX")
trap 'rm -rf "$T"' EXIT
# A fresh environment for go: nothing from the caller's home is needed.
export HOME=$T/home GOCACHE=$T/gocache GOPATH=$T/gopath PPROF_TMPDIR=$T/pproftmp
export GOFLAGS= GOTOOLCHAIN=local GO111MODULE=off
mkdir -p "$HOME" "$GOCACHE" "$GOPATH" "$PPROF_TMPDIR" "$T/out"

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else notok "$what"; fi; }
skip() { n=$((n + 1)); echo "ok $n - $1 # skip $2"; }

if ! command -v go >/dev/null; then
    echo "not ok 1 - go is not installed (make deps installs golang-go)"
    exit 1
fi
for f in pprof_sites pprof_sites_nopie pprof_sites_stripped pprof_edge libpprof_sites_dl.so; do
    if [ ! -e "$P/$f" ]; then echo "not ok 1 - $P/$f missing (make test-build)"; exit 1; fi
done

pp() { go tool pprof "$@" 2>"$T/pprof.err"; }

# top_flat FILE TYPE FUNC: the flat value pprof -top shows for FUNC
# (bytes in B, counts plain), empty when FUNC is not listed.
top_flat() {
    pp -top -nodefraction=0 -nodecount=1000 -unit=byte -sample_index="$2" "$1" |
        awk -v f="$3" 'NF >= 6 { n = $6; for (i = 7; i <= NF; i++) n = n " " $i }
                       NF >= 6 && n == f { v = $1; sub(/[A-Za-z]+$/, "", v); print v; exit }'
}

# expect_top FILE LABEL TYPE FUNC=VALUE...
expect_top() {
    local file=$1 label=$2 type=$3; shift 3
    local bad="" kv func want got
    for kv in "$@"; do
        func=${kv%=*}; want=${kv##*=}
        got=$(top_flat "$file" "$type" "$func")
        if [ "$want" = "-" ]; then
            [ -z "$got" ] || [ "$got" = 0 ] || bad="$bad $func=$got(want none)"
        elif [ "$got" != "$want" ]; then
            bad="$bad $func=${got:-absent}(want $want)"
        fi
    done
    if [ -z "$bad" ]; then ok "$label: -top $type"; else notok "$label: -top $type:$bad"; fi
}

# The profile names it demangled in full (pprof_demangle.c); a name with a
# space: quoted wherever it is passed.
CXX='hwtest::Widget::grow(unsigned long)'
# expect_all FILE LABEL SCALE: the four sample types of a pprof_sites run.
expect_all() {
    local f=$1 l=$2 s=$3
    expect_top "$f" "$l" alloc_objects "$CXX"=$((20*s)) site_static_c=$((10*s)) \
        site_global_c=$((8*s)) pprof_lib_alloc=$((5*s)) pprof_nobid_alloc=$((3*s)) \
        pprof_dl_alloc=$((7*s))
    expect_top "$f" "$l" alloc_space "$CXX"=$((40960*s)) site_static_c=$((10000*s)) \
        site_global_c=$((5600*s)) pprof_lib_alloc=$((20480*s)) pprof_nobid_alloc=$((1536*s)) \
        pprof_dl_alloc=$((2100*s))
    expect_top "$f" "$l" inuse_objects "$CXX"=$((20*s)) site_static_c=$((6*s)) \
        site_global_c=$((8*s)) pprof_lib_alloc=- pprof_nobid_alloc=$((3*s)) \
        pprof_dl_alloc=$((7*s))
    expect_top "$f" "$l" inuse_space "$CXX"=$((40960*s)) site_static_c=$((6000*s)) \
        site_global_c=$((5600*s)) pprof_lib_alloc=- pprof_nobid_alloc=$((1536*s)) \
        pprof_dl_alloc=$((2100*s))
}

DL=$P/libpprof_sites_dl.so

# ---- 1. a PIE binary ------------------------------------------------------
if "$P/pprof_sites" "$T/out" pie.pb.gz --dl "$DL" --cache 2>"$T/sites.err"; then
    ok "pprof_sites (PIE) wrote a profile"
else
    notok "pprof_sites (PIE) wrote a profile: $(cat "$T/sites.err")"
fi
F=$T/out/pie.pb.gz
check "gzip magic" test "$(head -c2 "$F" | od -An -tx1 | tr -d ' ')" = 1f8b
check "no temporary file left" test -z "$(ls -A "$T/out" | grep -v '^pie.pb.gz$')"
if pp -raw "$F" >"$T/pie.raw"; then ok "-raw parses"; else notok "-raw parses: $(cat "$T/pprof.err")"; fi
check "-raw: period type space/bytes" grep -q '^PeriodType: space bytes$' "$T/pie.raw"
check "-raw: the four sample types in Go's order" \
    grep -q '^alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes$' "$T/pie.raw"
check "-raw: Time set" grep -q '^Time: ' "$T/pie.raw"
map1=$(sed -n '/^Mappings$/{n;p;q}' "$T/pie.raw")
exe=$(readlink -f "$P/pprof_sites")
check "-raw: mapping 1 is the executable, named [FN]" \
    bash -c '[[ "$1" == "1: "*" $2 "*"[FN]"* ]]' _ "$map1" "$exe"
if command -v readelf >/dev/null; then
    bid=$(readelf -n "$P/pprof_sites" | awk '/Build ID:/ { print $3 }')
    check "-raw: executable build ID = readelf's ($bid)" grep -q " $exe $bid " "$T/pie.raw"
else
    skip "executable build ID" "readelf not installed"
fi
nobid=$(grep 'libpprof_sites_nobid.so' "$T/pie.raw" | head -1)
check "-raw: library linked --build-id=none has an empty build ID" \
    bash -c '[[ "$1" =~ libpprof_sites_nobid\.so\ +\[FN\]$ ]]' _ "$nobid"
check "-raw: deleted dlopen'ed copy: path without ' (deleted)'" \
    bash -c 'grep -q "/tmp/pprof_sites_dl\.[A-Za-z0-9]* [0-9a-f]* *\[FN\]$" "$1" && ! grep -q "(deleted)" "$1"' _ "$T/pie.raw"
check "-raw: the C++ method is demangled in the profile, its system name mangled" \
    grep -q 'hwtest::Widget::grow(unsigned long) :0 s=0(_ZN6hwtest6Widget4growEm)' "$T/pie.raw"
expect_all "$F" "PIE" 1
check "-top: callers named too (main, sites_cxx_alloc)" \
    bash -c 'go tool pprof -top -nodefraction=0 "$1" 2>/dev/null | grep -q " main$" &&
             go tool pprof -top -nodefraction=0 "$1" 2>/dev/null | grep -q " sites_cxx_alloc$"' _ "$F"
check "-symbolize=none: names come from the file itself" \
    bash -c 'go tool pprof -symbolize=none -top -nodefraction=0 "$1" 2>/dev/null | grep -q " site_static_c$"' _ "$F"

# ---- 2. the binary deleted after the run, and during it ------------------
mkdir -p "$T/bin"
cp "$P/pprof_sites" "$T/bin/pprof_sites_copy"
"$T/bin/pprof_sites_copy" "$T/out" copy.pb.gz --dl "$DL" 2>"$T/sites.err"
rm -f "$T/bin/pprof_sites_copy"
expect_all "$T/out/copy.pb.gz" "binary deleted after the run" 1

cp "$P/pprof_sites" "$T/bin/pprof_sites_self"
if "$T/bin/pprof_sites_self" "$T/out" self.pb.gz --delete-self --dl "$DL" 2>"$T/sites.err"; then
    ok "binary deleted while running: profile written"
else
    notok "binary deleted while running: $(cat "$T/sites.err")"
fi
check "binary deleted while running: it is gone" test ! -e "$T/bin/pprof_sites_self"
pp -raw "$T/out/self.pb.gz" >"$T/self.raw"
check "binary deleted while running: mapping 1 path without ' (deleted)'" \
    bash -c 'sed -n "/^Mappings$/{n;p;q}" "$1" | grep -q "/bin/pprof_sites_self [0-9a-f]\{40\} \[FN\]$"' _ "$T/self.raw"
if [ "$(id -u)" = 0 ]; then
    # Root reads /proc/self/map_files/, so even the deleted executable is named.
    expect_all "$T/out/self.pb.gz" "binary deleted while running" 1
else
    skip "binary deleted while running: names" "needs CAP_SYS_ADMIN for /proc/self/map_files"
fi

# ---- 3. -diff_base -------------------------------------------------------
"$P/pprof_sites" "$T/out" scale3.pb.gz --scale 3 --dl "$DL" 2>"$T/sites.err"
pp -top -nodefraction=0 -unit=byte -sample_index=inuse_space -diff_base="$F" \
    "$T/out/scale3.pb.gz" >"$T/diff.top"
flat() { awk -v f="$2" 'NF >= 6 { n = $6; for (i = 7; i <= NF; i++) n = n " " $i }
                        NF >= 6 && n == f { v = $1; sub(/[A-Za-z]+$/, "", v); print v; exit }' "$1"; }
check "-diff_base: site_static_c grew by 12000 B" test "$(flat "$T/diff.top" site_static_c)" = 12000
check "-diff_base: $CXX grew by 81920 B" test "$(flat "$T/diff.top" "$CXX")" = 81920
check "-diff_base: pprof_dl_alloc grew by 4200 B" test "$(flat "$T/diff.top" pprof_dl_alloc)" = 4200
expect_all "$T/out/scale3.pb.gz" "scale 3" 3

# ---- 4. unsampled values (rate 4096) ------------------------------------
"$P/pprof_sites" "$T/out" rate.pb.gz --rate 4096 --dl "$DL" 2>"$T/sites.err"
# Go's formula computed independently here: count, bytes * 1/(1-exp(-avg/rate)).
want() { awk -v c="$1" -v b="$2" -v r=4096 -v w="$3" 'BEGIN { s = 1/(1-exp(-(b/c)/r)); v = (w == "c" ? c : b) * s; printf "%d\n", v }'; }
expect_top "$T/out/rate.pb.gz" "rate 4096" alloc_objects \
    site_static_c="$(want 10 10000 c)" "$CXX"="$(want 20 40960 c)" pprof_lib_alloc="$(want 5 20480 c)"
expect_top "$T/out/rate.pb.gz" "rate 4096" inuse_space \
    site_static_c="$(want 6 6000 b)" "$CXX"="$(want 20 40960 b)" pprof_nobid_alloc="$(want 3 1536 b)"
check "rate 4096: Period 4096" bash -c 'go tool pprof -raw "$1" 2>/dev/null | grep -q "^Period: 4096$"' _ "$T/out/rate.pb.gz"

# ---- 5. non-PIE and stripped --------------------------------------------
"$P/pprof_sites_nopie" "$T/out" nopie.pb.gz --dl "$DL" 2>"$T/sites.err"
expect_all "$T/out/nopie.pb.gz" "non-PIE" 1
"$P/pprof_sites_stripped" "$T/out" stripped.pb.gz --dl "$DL" 2>"$T/sites.err"
expect_top "$T/out/stripped.pb.gz" "stripped (.dynsym)" alloc_objects \
    site_global_c=8 "$CXX"=20 pprof_lib_alloc=5 site_static_c=-
pp -raw "$T/out/stripped.pb.gz" >"$T/stripped.raw"
check "stripped: the static function's location keeps its mapping, unnamed" \
    bash -c 'sed -n "/^Locations$/,/^Mappings$/p" "$1" | grep -Eq "^ +[0-9]+: 0x[0-9a-f]+ M=1 *$"' _ "$T/stripped.raw"
check "stripped: mapping 1 not marked [FN] (pprof may still try)" \
    bash -c 'sed -n "/^Mappings$/{n;p;q}" "$1" | grep -vq "\[FN\]"' _ "$T/stripped.raw"

# ---- 6. edge cases -------------------------------------------------------
mkdir -p "$T/edge"
if libpath=$("$P/pprof_edge" "$T/edge" "$DL" 2>"$T/edge.err"); then
    ok "pprof_edge wrote its profiles"
else
    notok "pprof_edge: $(cat "$T/edge.err")"
fi
for f in empty depth1 depth128 many paths; do
    if pp -raw "$T/edge/$f.pb.gz" >"$T/$f.raw"; then ok "edge $f: -raw parses"
    else notok "edge $f: -raw: $(cat "$T/pprof.err")"; fi
done
check "edge empty: no samples" bash -c \
    '[ "$(sed -n "/^Samples:$/,/^Locations$/p" "$1" | wc -l)" = 3 ]' _ "$T/empty.raw"
check "edge empty: -top works" bash -c 'go tool pprof -top "$1" >/dev/null 2>&1' _ "$T/edge/empty.pb.gz"
expect_top "$T/edge/depth1.pb.gz" "edge depth 1" inuse_space edge_leaf=16
check "edge depth 128: one sample of 128 frames" bash -c \
    '[ "$(awk -F: "/^ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+: / { print \$2 }" "$1" | wc -w)" = 128 ]' _ "$T/depth128.raw"
check "edge depth 128: -traces names edge_rec" bash -c \
    '[ "$(go tool pprof -traces "$1" 2>/dev/null | grep -c " edge_rec$")" = 127 ]' _ "$T/edge/depth128.pb.gz"
check "edge 100k stacks: 100000 samples" bash -c \
    'go tool pprof -top -sample_index=alloc_objects "$1" 2>/dev/null | grep -q "of 100000 total"' _ "$T/edge/many.pb.gz"
check "edge paths: long non-ASCII path kept byte for byte" grep -qF "$libpath" "$T/paths.raw"
check "edge paths: library at that path named" bash -c \
    'go tool pprof -top -nodefraction=0 "$1" 2>/dev/null | grep -q " pprof_dl_alloc$"' _ "$T/edge/paths.pb.gz"
check "edge paths: library without build ID named" bash -c \
    'go tool pprof -top -nodefraction=0 "$1" 2>/dev/null | grep -q " pprof_nobid_alloc$"' _ "$T/edge/paths.pb.gz"

# ---- 7. the web UI -------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null)
if [ -n "$port" ]; then
    go tool pprof -no_browser -http=127.0.0.1:$port "$F" >"$T/http.log" 2>&1 &
    hp=$!
    got=""
    for _ in $(seq 1 100); do
        got=$(python3 - "$port" <<'EOF' 2>/dev/null
import sys, urllib.request
b = urllib.request.urlopen("http://127.0.0.1:%s/ui/flamegraph?si=alloc_space" % sys.argv[1], timeout=5).read().decode()
print("yes" if "site_static_c" in b and "Widget::grow" in b else "no")
EOF
)
        [ -n "$got" ] && break
        sleep 0.1
    done
    kill "$hp" 2>/dev/null; wait "$hp" 2>/dev/null
    check "-http: the flame graph page names the sites" test "$got" = yes
else
    skip "-http" "python3 missing"
fi

[ -s "$T/pprof.err" ] && { echo "# last pprof stderr:"; sed 's/^/#   /' "$T/pprof.err"; }
exit 0
