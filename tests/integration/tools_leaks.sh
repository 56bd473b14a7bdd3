#!/usr/bin/env bash
# tools_leaks.sh - `heapwatch report DIR` on a real run: the leaks at exit
# (from the exit profile, LSan style: top stacks by bytes, the function
# that leaked, not the allocation wrapper under it, a SUMMARY line) within
# a sampling tolerance of the ground truth the program prints; the peak
# (when, peak RSS, the stacks at the peak); --top; rate 0; a damaged
# profile is a note, not a crash (ASan build); and the page: written to
# DIR/report.html by default and named on the last line, --html FILE,
# --no-html, never through a symlink, a DIR the user cannot write gets one
# line and exit 1 with the text report printed.
# Program: tests/integration/progs/report_leak.cc.
set -u
. tests/integration/lib.sh
HW=$PWD/$BUILD/heapwatch
HWA=$PWD/$BUILD/asan/heapwatch
[ -x "$HWA" ] || HWA=$HW
export ASAN_OPTIONS=exitcode=86 UBSAN_OPTIONS=halt_on_error=1:exitcode=87:print_stacktrace=1
PROG=$PROGS/report_leak
if [ ! -f "$AGENT" ] || [ ! -x "$PROG" ]; then
    not_ok "the agent ($AGENT) and $PROG are built"
    finish
fi

# Rate 16 KiB: the leaks (32, 8 and 8 MiB of 4 KiB blocks) are sampled
# about 2048, 512 and 512 times: a relative error of 2.2 % and 4.4 % (one
# standard deviation), so +-20 % is over four of them.
RATE=16384
TOL=20
HEAPWATCH_RATE=$RATE "$HW" run -q -o "$T/run" -- "$PROG" >"$T/truth" 2>"$T/run.err"
check "the program ran under the agent and wrote an exit profile" \
    sh -c "grep -q '^truth leaks ' '$T/truth' && ls '$T/run'/heap.*.exit.pb.gz >/dev/null"
truth() { awk -v f="$1" -v c="$2" '$1 == "truth" && $2 == f { print $c }' "$T/truth"; }

# run_report NAME DIR ARGS...: the ASan build, output in $T/NAME.out/.err, status in $rc.
run_report() {
    local name=$1; shift
    "$HWA" report "$@" >"$T/$name.out" 2>"$T/$name.err"
    rc=$?
}
no_sanitizer() { ! grep -q 'Sanitizer\|runtime error' "$T/$1.err"; }

# to_bytes "31.9 MiB": the bytes fmt_bytes printed (3 digits).
to_bytes() {
    awk -v v="$1" -v u="$2" 'BEGIN { m = u == "B" ? 1 : u == "KiB" ? 1024 : u == "MiB" ? 1048576 : u == "GiB" ? 1073741824 : -1; printf "%.0f\n", v * m }'
}
# leak_line NAME FUNCTION: "RANK BYTES" of FUNCTION's line among the leaks
# ("N. 31.9 MiB in 8,150 objects: FUNCTION <- ..."), or nothing.
leak_line() {
    local line
    line=$(sed -n '/^  leaks at exit/,/^  SUMMARY/p' "$T/$1.out" | grep -E "^ *[0-9]+\. .*: $2( <-|\$)" | head -1)
    set -- $(echo "$line" | sed -E 's/^ *([0-9]+)\. ([0-9.]+) ([KMG]?i?B) in.*/\1 \2 \3/')
    [ $# = 3 ] && echo "$1 $(to_bytes "$2" "$3")"
}
within() {   # within WHAT ACTUAL EXPECTED: |ACTUAL - EXPECTED| <= TOL %
    local lo hi
    lo=$(( $3 * (100 - TOL) / 100 )); hi=$(( $3 * (100 + TOL) / 100 ))
    check_range "$1 (truth $3, +-$TOL %)" "${2:-none}" "$lo" "$hi"
}

run_report rep "$T/run" --width 80
check_eq "report on a real run: exit 0" 0 "$rc"
check "  no sanitizer report" no_sanitizer rep
check "  the leaks at exit, from the exit profile" grep -q '^  leaks at exit (heap\.[0-9]*\.[0-9]*\.exit\.pb\.gz): [0-9]* stacks still live, top' "$T/rep.out"
set -- $(leak_line rep leak_from_here)
check_eq "  leak_from_here leaks most: first" 1 "${1:-}"
within "  leak_from_here: bytes live at exit" "${2:-}" "$(truth leak_from_here 3)"
set -- $(leak_line rep leak_via_xmalloc)
within "  leak_via_xmalloc (through the wrapper xmalloc): bytes" "${2:-}" "$(truth leak_via_xmalloc 3)"
set -- $(leak_line rep cxx_leak_here)
within "  cxx_leak_here (through operator new[]): bytes" "${2:-}" "$(truth cxx_leak_here 3)"
check "  a wrapper is never named as the function (xmalloc, operator new, _Zna/_Znw)" \
    sh -c "! sed -n '/^  leaks at exit/,/^  SUMMARY/p' '$T/rep.out' | grep -qE '^ *[0-9]+\. [^:]*: (xmalloc|operator new|_Zn[aw])'"
check "  what was freed is not a leak (churn, peak_holder)" \
    sh -c "! sed -n '/^  leaks at exit/,/^  SUMMARY/p' '$T/rep.out' | grep -qE 'churn|peak_holder'"
objs=$(grep -E '^ *[0-9]+\. .*: leak_from_here' "$T/rep.out" | head -1 | sed -E 's/.* in ([0-9,]+) objects?:.*/\1/' | tr -d ,)
within "  leak_from_here: objects live at exit" "$objs" "$(truth leak_from_here 4)"
sum=$(sed -nE 's/^  SUMMARY: ([0-9,]+) bytes \(.*\) in [0-9,]+ objects? live at exit \(sampled estimate; counted exactly: [0-9.]+ [KMG]?i?B in [0-9,]+ objects\)$/\1/p' "$T/rep.out" | tr -d ,)
within "  SUMMARY: bytes live at exit (sampled estimate)" "$sum" "$(truth leaks 3)"

# The peak: when and how high, the kernel's peak RSS, and the stacks at
# the peak when the agent wrote a peak profile.
check "  the peak line: bytes, when, peak RSS" grep -qE '^  peak: [0-9.]+ [KMG]iB live at \+[0-9.]+s; peak RSS [0-9.]+ [KMG]iB' "$T/rep.out"
check "  the summary names the peak profile, which is there" \
    sh -c "pp=\$(sed -nE 's/.*\"peak_profile\": \"(heap\.[0-9.]*peak\.pb\.gz)\".*/\\1/p' '$T/run'/summary.*.json) && [ -n \"\$pp\" ] && [ -f '$T/run'/\"\$pp\" ]"
check "  at the peak: from the peak profile, peak_holder first (it held 96 MiB, freed before exit)" \
    sh -c "grep -q '^  at the peak (heap\.[0-9]*\.[0-9]*\.peak\.pb\.gz): .* (sampled estimate), top' '$T/rep.out' && sed -n '/^  at the peak (/,/^\$/p' '$T/rep.out' | grep -qE '^ *1\. .*: peak_holder( <-|\$)'"
pk=$(sed -n '/^  at the peak (/,/^$/p' "$T/rep.out" | grep -E '^ *1\. .*: peak_holder' | sed -E 's/^ *1\. ([0-9.]+) ([KMG]?i?B) in.*/\1 \2/')
# The copy is taken when live bytes are within 10 % of the peak (91 %).
TOL=25 within "  peak_holder's bytes at the peak" "$(to_bytes $pk)" "$(truth peak_holder 3)"
check "  the diff command leaves the peak profile out (written last, it shows an earlier moment)" \
    sh -c "! grep -q 'diff_base=.*peak\.pb\.gz' '$T/rep.out'"

# What the summary's peak_profile says, each way: the exit profile (exit
# within 10 % of the peak), a file not there, none (and then a peak profile
# found by name, as from an older agent).
pdir() {   # pdir NAME PEAK_PROFILE_JSON: a copy of the run without its peak profile
    rm -rf "$T/$1"; cp -r "$T/run" "$T/$1"; rm -f "$T/$1"/heap.*.peak.pb.gz "$T/$1/report.html"
    sed -i -E "s/(\"peak_profile\": )(\"[^\"]*\"|null)/\\1$2/" "$T/$1"/summary.*.json
}
ex=$(basename "$(ls "$T/run"/heap.*.exit.pb.gz | head -1)")
pdir pexit "\"$ex\""
run_report pexit "$T/pexit" --no-html
check "peak_profile naming the exit profile: its stacks, said to be the exit's" \
    sh -c "grep -q '^  at the peak ($ex, the exit profile: exit was within 10 % of the peak): ' '$T/pexit.out' && sed -n '/^  at the peak (/,/^\$/p' '$T/pexit.out' | grep -qE '^ *1\. .*: leak_from_here'"
pdir pgone '"heap.1.0009.peak.pb.gz"'
run_report pgone "$T/pgone" --no-html
check "peak_profile naming a file not there: one line" grep -q '^  at the peak: heap.1.0009.peak.pb.gz (the summary.s peak_profile) is not in the directory' "$T/pgone.out"
pdir pnull null
run_report pnull "$T/pnull" --no-html
check "no peak_profile and no peak profile: one line saying why" grep -q '^  at the peak: no profile shows it (the agent writes none when too few sampled allocations' "$T/pnull.out"
cp "$T/run/$ex" "$T/pnull/${ex%.*.exit.pb.gz}.9999.peak.pb.gz"
run_report pold "$T/pnull" --no-html
check "no peak_profile (an older agent) but a peak profile: its stacks" \
    sh -c "grep -q '^  at the peak (heap\.[0-9]*\.9999\.peak\.pb\.gz): .* in [0-9]* stacks (sampled estimate), top' '$T/pold.out'"

run_report top2 "$T/run" --no-html --top 2
check "--top 2: two stacks listed, the rest counted" \
    sh -c "[ \$(sed -n '/^  leaks at exit/,/^  SUMMARY/p' '$T/top2.out' | grep -cE '^ *[0-9]+\. ') = 2 ] && grep -qE '^        \([0-9]+ more stacks?, ' '$T/top2.out'"
run_report top0 "$T/run" --no-html --top 0
check "--top 0: bad usage, exit 2" sh -c "[ $rc = 2 ] && grep -q -- '--top' '$T/top0.err'"

# Rate 0: nothing sampled, said in one line.
HEAPWATCH_RATE=0 "$HW" run -q -o "$T/rate0" -- "$PROG" >/dev/null 2>&1
run_report rate0 "$T/rate0" --no-html
check "rate 0: 'not measured' in one line, no SUMMARY" \
    sh -c "[ $rc = 0 ] && grep -q '^  leaks at exit: not measured: sampling was off (rate 0)' '$T/rate0.out' && ! grep -q SUMMARY '$T/rate0.out'"

# Damaged profiles: a note, the rest of the report, no crash.
cp -r "$T/run" "$T/dmg"
rm -f "$T/dmg/report.html"
ex=$(ls "$T/dmg"/heap.*.exit.pb.gz | head -1)
head -c $(( $(stat -c %s "$ex") / 2 )) "$ex" >"$T/half" && mv "$T/half" "$ex"
run_report dmg "$T/dmg" --no-html
check "a truncated exit profile: exit 0, a note naming it, the rest of the report" \
    sh -c "[ $rc = 0 ] && grep -q '^  note: heap\.[0-9]*\.[0-9]*\.exit\.pb\.gz: gzip data truncated.*; the leaks at exit not shown' '$T/dmg.out' && grep -q '^  peak: ' '$T/dmg.out'"
check "  no sanitizer report" no_sanitizer dmg
head -c 3000 /dev/urandom >"$ex"
run_report rnd "$T/dmg" --no-html
check "random bytes as the exit profile: exit 0, a note, no sanitizer report" \
    sh -c "[ $rc = 0 ] && grep -q '^  note: heap\..*exit\.pb\.gz: .*; the leaks at exit not shown' '$T/rnd.out'" 
check "  no sanitizer report" no_sanitizer rnd
printf '\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03' >"$ex"; head -c 100000 /dev/zero | gzip -c | tail -c +11 >>"$ex"
run_report zero "$T/dmg" --no-html
check "a gzip of zeros as the exit profile: a note, no crash" \
    sh -c "[ $rc = 0 ] && grep -q '^  note: heap\..*exit\.pb\.gz: ' '$T/zero.out'" 
check "  no sanitizer report" no_sanitizer zero

# The real exit profile cut short at 40 places and flipped at 40 bytes:
# each report (ASan) exits 0, reads it or says why in a note, never crashes.
ex=$(ls "$T/run"/heap.*.exit.pb.gz | head -1)
python3 - "$ex" "$T/mut" <<'PY'
import os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
d = os.path.dirname(src)
keep = [f for f in os.listdir(d) if f.startswith(("summary.", "timeline."))]
muts = [data[:len(data) * i // 40] for i in range(1, 40)]
for i in range(40):
    b = bytearray(data); k = 10 + (len(data) - 10) * i // 40; b[k] ^= 0xa5; muts.append(bytes(b))
for i, m in enumerate(muts):
    o = os.path.join(dst, "m%02d" % i); os.makedirs(o)
    for f in keep: shutil.copy(os.path.join(d, f), o)
    open(os.path.join(o, os.path.basename(src)), "wb").write(m)
PY
bad=0; noted=0; n=0
for d in "$T"/mut/m*; do
    n=$((n + 1))
    "$HWA" report "$d" --no-html >"$T/mut.out" 2>"$T/mut.err"; r=$?
    if [ $r != 0 ] || grep -q 'Sanitizer\|runtime error' "$T/mut.err" || ! grep -q '^  SUMMARY: \|^  note: heap\..*exit\.pb\.gz: ' "$T/mut.out"; then
        bad=$((bad + 1)); echo "# $d: status $r"; head -3 "$T/mut.err"
    fi
    grep -q '^  note: heap\..*exit\.pb\.gz: ' "$T/mut.out" && noted=$((noted + 1))
done
check_eq "$n damaged exit profiles: exit 0, a SUMMARY or a note, no sanitizer report ($(basename "$HWA") build)" 0 "$bad"
check_ge "  most of them refused with a note (gzip's CRC)" "$noted" 70

# A hostile exit profile that decodes: stacks of 2^63-1 bytes and
# -1 objects, a name with control characters and bytes that are not UTF-8.
python3 - "$T/dmg/$(basename "$ex")" <<'PY'
import gzip, sys
def v(n):
    n &= (1 << 64) - 1; o = bytearray()
    while True:
        b = n & 0x7f; n >>= 7
        if n: o.append(b | 0x80)
        else: o.append(b); return bytes(o)
def f(num, wt, x): return v(num << 3 | wt) + (v(x) if wt == 0 else v(len(x)) + x)
strs = [b"", b"alloc_objects", b"count", b"alloc_space", b"bytes", b"inuse_objects", b"inuse_space",
        b"evil\x1b[2J\xff\xfe name", b"other"]
p = b"".join(f(1, 2, f(1, 0, t) + f(2, 0, u)) for t, u in ((1, 2), (3, 4), (5, 2), (6, 4)))
for locs in ((1, 2), (2, 1), (2,), (1, 2)):   # three stacks, one twice (merged, saturated)
    vals = b"".join(v(x) for x in (1, 2**63 - 1, -1, 2**63 - 1))
    p += f(2, 2, f(1, 2, b"".join(v(l) for l in locs)) + f(2, 2, vals))
for i in (1, 2): p += f(4, 2, f(1, 0, i) + f(4, 2, f(1, 0, i)))
for i in (1, 2): p += f(5, 2, f(1, 0, i) + f(2, 0, 6 + i))
p += b"".join(f(6, 2, s) for s in strs)
open(sys.argv[1], "wb").write(gzip.compress(p))
PY
run_report evil "$T/dmg" --no-html --top 1
check "a hostile exit profile (2^63-1 bytes, -1 objects): read, sums saturated, the rest added up" \
    sh -c "[ $rc = 0 ] && grep -q '^  SUMMARY: 9.22e+18 bytes (8192.0 PiB) in 0 objects' '$T/evil.out' && grep -q '(2 more stacks, 16384.0 PiB)' '$T/evil.out'"
check "  no sanitizer report" no_sanitizer evil
run_report evil3 "$T/dmg" --no-html --top 3
check "  its names cleaned of control characters and bytes that are not UTF-8" \
    sh -c "[ $rc = 0 ] && grep -q ': evil?\[2J?? name <- other$' '$T/evil3.out' && ! grep -q \$'\\x1b' '$T/evil3.out'"

# The page.
check "the page: DIR/report.html written by default" test -s "$T/run/report.html"
check_eq "  the last line names it" "report: $T/run/report.html (open it in a browser)" "$(tail -n 1 "$T/rep.out")"
check "  no temporary file left beside it" sh -c "! ls -A '$T/run' | grep -q tmp"
check "  the page is HTML" grep -q '<html' "$T/run/report.html"
cp -r "$T/run" "$T/nohtml"
rm -f "$T/nohtml/report.html"
run_report nohtml "$T/nohtml" --no-html
check "--no-html: no page, no line naming one" \
    sh -c "[ $rc = 0 ] && [ ! -e '$T/nohtml/report.html' ] && ! grep -q '^report: ' '$T/nohtml.out' && [ \"\$(ls -A '$T/nohtml' | grep -vc '^heap\.\|^summary\.\|^timeline\.\|^alerts\.')\" = 0 ]"
run_report other "$T/nohtml" --html "$T/elsewhere.html"
check "--html FILE: the page there, not in DIR; the last line names it" \
    sh -c "[ $rc = 0 ] && grep -q '<html' '$T/elsewhere.html' && [ ! -e '$T/nohtml/report.html' ] && [ \"\$(tail -n 1 '$T/other.out')\" = 'report: $T/elsewhere.html (open it in a browser)' ]"
run_report both "$T/nohtml" --html "$T/x.html" --no-html
check_eq "--html with --no-html: bad usage, exit 2" 2 "$rc"
echo keep >"$T/victim"
ln -s "$T/victim" "$T/nohtml/report.html"
run_report link "$T/nohtml"
check "a symlink at DIR/report.html is replaced, never written through" \
    sh -c "[ $rc = 0 ] && [ \"\$(cat '$T/victim')\" = keep ] && [ ! -L '$T/nohtml/report.html' ] && grep -q '<html' '$T/nohtml/report.html'"
run_report again "$T/nohtml"
check "written again over the last one: exit 0" sh -c "[ $rc = 0 ] && grep -q '<html' '$T/nohtml/report.html'"
mkdir "$T/nohtml/sub.html"
run_report isdir "$T/nohtml" --html "$T/nohtml/sub.html"
check "--html naming a directory: one line, exit 1, the text report printed, nothing left behind" \
    sh -c "[ $rc = 1 ] && [ \$(wc -l <'$T/isdir.err') = 1 ] && grep -q 'cannot write $T/nohtml/sub.html' '$T/isdir.err' && grep -q '^  SUMMARY: ' '$T/isdir.out' && ! ls -A '$T/nohtml' | grep -q tmp"

# A DIR the user cannot write (as nobody, when root can switch to it).
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    mkdir -p "$T/ro"
    cp "$T/run"/summary.* "$T/run"/timeline.* "$T/run"/heap.* "$T/ro/"
    chmod 755 "$T/ro"; chmod 644 "$T/ro"/*; chmod o+x "$T"
    setpriv --reuid=65534 --regid=65534 --clear-groups "$HW" report "$T/ro" >"$T/ro.out" 2>"$T/ro.err"
    rc=$?
    check "a DIR the user cannot write: exit 1" test "$rc" = 1
    check "  one line on stderr naming the page and why" \
        sh -c "[ \$(wc -l <'$T/ro.err') = 1 ] && grep -q 'heapwatch report: cannot write $T/ro/report.html: Permission denied' '$T/ro.err'"
    check "  the text report printed all the same" grep -q '^  SUMMARY: ' "$T/ro.out"
    check "  no page, no line naming one" sh -c "[ ! -e '$T/ro/report.html' ] && ! grep -q '^report: ' '$T/ro.out'"
else
    echo "# not root, or no setpriv: the unwritable DIR case is skipped"
fi
finish
