#!/usr/bin/env bash
# tools_report.sh - `heapwatch report DIR`: counters, growth rates, charts of
# live bytes and live objects (width and height as asked, Unicode or ASCII),
# alerts with their top stacks, the top growing stacks, the profiles with
# the command that opens them; several processes; a killed one; --pid;
# --html; exit 2 for an empty or unreadable directory.
# Fixtures: tests/integration/fixtures/tools/make_results.py.
set -u
. tests/integration/lib.sh
HW=$PWD/$BUILD/heapwatch
HWA=$PWD/$BUILD/asan/heapwatch
[ -x "$HWA" ] || HWA=$HW
export ASAN_OPTIONS=exitcode=86 UBSAN_OPTIONS=halt_on_error=1:exitcode=87:print_stacktrace=1
F=$T/fx
python3 tests/integration/fixtures/tools/make_results.py "$F" || { not_ok "fixtures built"; finish; }

# run_report NAME ARGS...: output in $T/NAME.out/.err, status in $rc.
run_report() {
    local name=$1; shift
    "$HWA" report "$@" >"$T/$name.out" 2>"$T/$name.err"
    rc=$?
}
has() { grep -q -- "$2" "$T/$1.out"; }

check "report --help documents the options" \
    sh -c "'$HW' report --help >'$T/help' && for o in --width --height --pid --ascii --html --no-html --top 'DIR/report.html' SUMMARY 'go tool pprof'; do grep -q -- \"\$o\" '$T/help' || exit 1; done"

run_report crit "$F/crit" --width 90
check_eq "a process with alerts: exit 0" 0 "$rc"
check "  header: pid, exe, duration, counters at exit, peak" \
    sh -c "grep -q '^pid 200  leaky  (/opt/app/leaky)' '$T/crit.out' && grep -q 'ran 12.0 s, exited' '$T/crit.out' && grep -q 'live at exit 36,000 objects, 3.00 MiB; peak 3.00 MiB' '$T/crit.out'"
check "  growth: objects_rate max (and when) and mean" has crit 'objects_rate  max 5012/s at +5.0s, mean 3541/s'
check "  a chart of live bytes with block characters and a size axis" \
    sh -c "grep -q '^  live bytes (highest 3.00 MiB' '$T/crit.out' && grep -q '3.00 MiB ┤.*█' '$T/crit.out' && grep -q '0 B ┤' '$T/crit.out'"
check "  a chart of live objects" sh -c "grep -q '^  live objects (highest 36,000' '$T/crit.out' && grep -q '36.0k ┤' '$T/crit.out'"
check "  alert markers under the time axis (W, then C)" grep -q '^ *alerts  *W  *C  *C$' "$T/crit.out"
check "  the axis runs from the first to the last record" grep -q '+1.0s  *+12.0s$' "$T/crit.out"
check "  each alert with its time, level, value, threshold" \
    sh -c "grep -q '+3.0s    warn  objects_rate 612/s > 500/s over 5.0 s' '$T/crit.out' && grep -q '+5.0s    CRIT  objects_rate 5012/s > 2000/s' '$T/crit.out'"
check "  and its top stacks (function and frames, growth)" \
    has crit 'top: leak_node <- build_list <- main <- __libc_start_main  (+1.20 MiB, +3,000 objects)'
check "  top growing stacks, most first, with their frames" \
    sh -c "grep -A3 '1. leak_node  *+1.20 MiB, +3,000 objects; in 3 alerts' '$T/crit.out' | grep -q '^ *build_list$' && grep -q '2. cache_put' '$T/crit.out'"
check "  the profiles, and how to open one (the last alert's)" \
    sh -c "grep -q '$F/crit/heap.200.0001.interval.pb.gz' '$T/crit.out' && grep -q 'go tool pprof -http=: $F/crit/heap.200.0003.alert.pb.gz' '$T/crit.out'"

# --width: every chart line exactly as wide as asked.
widths_py='
import sys
w = int(sys.argv[2])
chart = [l for l in open(sys.argv[1], encoding="utf-8").read().split("\n") if "┤" in l or "│" in l or "└" in l]
assert len(chart) >= 18, "no charts"
bad = [l for l in chart if len(l) != w]
assert not bad, bad[:2]
'
for w in 40 90 150; do
    run_report "w$w" "$F/crit" --width $w
    check "--width $w: every chart row is $w columns" python3 -c "$widths_py" "$T/w$w.out" $w
done
run_report h4 "$F/crit" --width 60 --height 4
check_eq "--height 4: four rows per chart" \
    4 "$(sed -n '/^  live bytes (/,/└/p' "$T/h4.out" | grep -c '[┤│]')"
run_report ascii "$F/crit" --width 60 --ascii
check "--ascii: ASCII only, bars of #" sh -c "! LC_ALL=C grep -q '[^ -~]' '$T/ascii.out' && grep -q '#' '$T/ascii.out'"
COLUMNS=70 "$HW" report "$F/crit" >"$T/cols.out" 2>&1
check "no --width and no terminal: \$COLUMNS (70)" python3 -c "$widths_py" "$T/cols.out" 70

run_report killed "$F/killed" --width 60
check "a killed process: no summary said, records charted, the cut noted" \
    sh -c "[ $rc = 0 ] && grep -q 'no summary: the process was killed' '$T/killed.out' && grep -q 'growth over 6 timeline records' '$T/killed.out' && grep -q '24.0 KiB ┤' '$T/killed.out' && grep -q 'note: .*unfinished zstd frame' '$T/killed.out'"

run_report family "$F/family" --width 80
check "several processes: a table first, one row each, named by command line, the killed one marked" \
    sh -c "grep -q '^  pid  *parent  *ran .* command$' '$T/family.out' && grep -q '^  602  .*(killed)$' '$T/family.out' && grep -q '^  601  *600 .* /usr/bin/parent --serve .it' '$T/family.out' && [ \$(grep -c '^pid 60[012]  ' '$T/family.out') = 3 ]"
check "  the run's verdict opens the report: processes, commands, alerts, top commands" \
    sh -c "grep -q '^run: 3 processes in 2 commands' '$T/family.out' && grep -q '^alerts: 1 process crit, 0 warn' '$T/family.out' && [ \$(grep -n '^run: ' '$T/family.out' | cut -d: -f1) -lt \$(grep -n '^  pid ' '$T/family.out' | cut -d: -f1) ]"
run_report failures "$F/family" --failures-only --no-html
check "--failures-only: only the process with an alert gets a section; the table says how many it hides" \
    sh -c "[ \$(grep -c '^pid 60[012]  ' '$T/failures.out') = 1 ] && grep -q '^pid 601  ' '$T/failures.out' && grep -q '2 processes without an alert or an error not shown' '$T/failures.out'"
run_report pid "$F/family" --pid 601
check "--pid 601: only that process, no table" \
    sh -c "[ $rc = 0 ] && grep -q '^pid 601 ' '$T/pid.out' && ! grep -q '^pid 600 ' '$T/pid.out' && ! grep -q '^  pid  *parent' '$T/pid.out'"
run_report nopid "$F/family" --pid 4242
check "--pid of no process: exit 2" sh -c "[ $rc = 2 ] && grep -q 'no results for pid 4242' '$T/nopid.err'"

run_report html "$F/crit" --width 80 --html "$T/crit.html"
check "--html: a self-contained page with SVG charts and the alerts" \
    sh -c "[ $rc = 0 ] && grep -q '<svg' '$T/crit.html' && grep -c '<polyline' '$T/crit.html' | grep -qx 2 && grep -q 'crit alert: objects_rate 5012/s' '$T/crit.html' && ! grep -Eq 'src=|href=\"[^#]' '$T/crit.html'"
run_report html_odd "$F/odd" --html "$T/odd.html"
check "--html: names from the files are escaped" \
    sh -c "! grep -q '<ird>\|<bad>' '$T/odd.html' && grep -q '&lt;ird&gt;' '$T/odd.html'"

run_report empty "$F/empty"
check "an empty directory: exit 2" sh -c "[ $rc = 2 ] && grep -q 'no heapwatch results' '$T/empty.err'"
run_report missing "$F/nope"
check_eq "a missing directory: exit 2" 2 "$rc"
run_report file "$F/a_file"
check_eq "a file instead of a directory: exit 2" 2 "$rc"
run_report badw "$F/crit" --width 5
check_eq "--width 5: exit 2 (too narrow)" 2 "$rc"
run_report garbage "$F/garbage_alerts"
check "damaged alerts: the report still shows the rest, and the error" \
    sh -c "[ $rc = 0 ] && grep -q 'error: alerts.802.jsonl: line 2' '$T/garbage.out' && grep -q '+0.5s    warn' '$T/garbage.out'"

if [ -f "$AGENT" ]; then
    "$HW" run -q -o "$T/real" -- sh -c true
    run_report real "$T/real"
    check "end to end: the report of heapwatch run -- sh -c true" sh -c "[ $rc = 0 ] && grep -q '^pid [0-9]*  ' '$T/real.out'"
fi
finish
