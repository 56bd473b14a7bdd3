#!/usr/bin/env bash
# report_page.sh - the report page (tools/report_html.c) in a real browser:
# Debian's headless Chromium driven by playwright-core (pinned in
# tests/browser/package-lock.json, installed into $BUILD/browser by `make
# test`'s prerequisites) through tests/browser/page_check.js, which reports
# what it saw; the checks are here.
#
#   leak   page_leak (leaks from leak_from_here, holds 48 MiB in hold_peak)
#          under the agent, with a crit alert, started by a shell after a
#          small page_leak: the table puts it first; no console error, page error
#          or request that failed or left the machine; the in-use flame
#          graph holds leak_from_here, a click on it makes it the full
#          width (and the root zooms back), hover names its bytes, the
#          search box marks it; the leaks at exit name it; the screenshot
#          is not blank; with a peak profile, the peak graph holds hold_peak
#   odd    the same results with hostile names (</script>, U+2029) in an
#          alert's stack and the command line: shown as text, no script
#          injected, the page is UTF-8
#   many   200 small processes from one shell loop: the table lists them
#          all (and the shell), the page is under 2 MB, sections closed and
#          their graphs not drawn until opened; a row's link opens its one
set -u
. tests/integration/lib.sh
HW=$PWD/$BUILD/asan/heapwatch      # the page is written under ASan + UBSan
[ -x "$HW" ] || HW=$PWD/$BUILD/heapwatch
export ASAN_OPTIONS=exitcode=86 UBSAN_OPTIONS=halt_on_error=1:exitcode=87:print_stacktrace=1
MODULES=$PWD/$BUILD/browser/node_modules
LEAK=$PROGS/page_leak

if [ ! -x /usr/bin/chromium ] || [ ! -f "$MODULES/playwright-core/package.json" ]; then
    not_ok "chromium and playwright-core installed (make deps; make $BUILD/browser/node_modules/playwright-core/package.json)"
    finish
fi

# The page's script, a file of its own (tools/report_assets.c embeds it):
# node parses it, and the page carries it byte for byte.
err=$(node --check tools/report_page.js 2>&1)
check_eq "tools/report_page.js parses (node --check)" "" "$err"

# --- the runs ---------------------------------------------------------------
env HEAPWATCH_SUSTAIN=0 HEAPWATCH_GRACE=0 HEAPWATCH_WINDOW=1 HEAPWATCH_INTERVAL=0.25 HEAPWATCH_RATE=65536 \
    HEAPWATCH_OUT=$T/leak LD_PRELOAD=$AGENT sh -c '"$0" 0 10 && "$0" 3' "$LEAK" >"$T/leak.out" 2>"$T/leak.err"
check_eq "page_leak ran under the agent" 0 "$?"
env HEAPWATCH_RATE=4096 HEAPWATCH_OUT=$T/many LD_PRELOAD=$AGENT \
    sh -c 'i=0; while [ $i -lt 200 ]; do "$0" 0 $((i % 40 + 10)) >/dev/null || exit 1; i=$((i + 1)); done' "$LEAK" \
    2>"$T/many.err"
check_eq "200 processes ran under the agent" 0 "$?"

# odd: a copy of the leak results with hostile names where the files
# carry names (an alert's stack, the command line).
cp -r "$T/leak" "$T/odd"
python3 - "$T/odd" <<'EOF' || not_ok "odd results made"
import glob, json, sys
d = sys.argv[1]
a = glob.glob(d + '/alerts.*.jsonl')[0]
s = a.replace('/alerts.', '/summary.').replace('.jsonl', '.json')
v = json.load(open(s))
v['cmdline'] = ['page_leak', '</script><script>document.title="pwned"</script>', "it's", '\u2029']
open(s, 'w').write(json.dumps(v))
lines = [json.loads(l) for l in open(a)]
lines[0]['top'].insert(0, {'stack': ['</script><script>document.title="pwned"</script>\u2029', 'main'],
                           'function': 'x', 'growth_bytes': 1 << 30, 'growth_objects': 1})
open(a, 'w').write(''.join(json.dumps(l) + '\n' for l in lines))
EOF

for r in leak odd many; do
    "$HW" report "$T/$r" --html "$T/$r/report.html" >"$T/$r.report" 2>&1
    check_eq "$r: heapwatch report --html exits 0" 0 "$?"
done
size=$(stat -c %s "$T/many/report.html")
echo "# page sizes: leak $(stat -c %s "$T/leak/report.html"), many $size bytes"
check_lt "many: the page of 201 processes is under 2 MB" "$size" 2000000
check "the page carries tools/report_page.js byte for byte" python3 -c '
import sys
page, js = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
assert b"<script>" + js + b"</script>" in page' "$T/leak/report.html" tools/report_page.js
check "odd: the page is UTF-8" python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8")' "$T/odd/report.html"

# --- the browser ------------------------------------------------------------
mkdir -p "$T/shots"
node tests/browser/page_check.js "$MODULES" "$T/shots" "leak:$T/leak/report.html:leak_from_here" \
    "leak:$T/odd/report.html:leak_from_here" "many:$T/many/report.html" >"$T/seen.jsonl" 2>"$T/seen.err"
check_eq "the browser opened the three pages" 0 "$?"
[ -s "$T/seen.err" ] && sed 's/^/# /' "$T/seen.err" | head -20

# seen N EXPR: a Python expression over the Nth page's observations (r).
seen() {
    python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2])]; v=eval(sys.argv[3]); print(json.dumps(v) if not isinstance(v, str) else v)' \
        "$T/seen.jsonl" "$1" "$2" 2>/dev/null
}

for n in 0 1 2; do
    name=$(seen $n "['leak', 'odd', 'many'][$n]")
    check_eq "$name: no console error, page error, failed or remote request" '[[], [], [], []]' \
        "$(seen $n "[r['consoleErrors'], r['pageErrors'], r['failedRequests'], r['remoteRequests']]")"
done

# leak
check_eq "leak: the table has the shell and two page_leaks" 3 "$(seen 0 "r['procRows']")"
check_eq "  ... the one with a crit alert first" '["crit", "page_leak 3"]' \
    "$(seen 0 "[r['procClasses'][0], r['procCommands'][0].split('/')[-1]]")"
check_eq "  ... and all three sections open (5 or fewer)" 3 "$(seen 0 "r['openSections']")"
check_contains "leak: flame graphs in use, allocated, growth over the alert" "$(seen 0 "' '.join(r['kinds'])")" "inuse alloc"
check_contains "  ... and the growth over the alert's window" "$(seen 0 "' '.join(r['kinds'])")" "growth-1"
check_ge "leak: the in-use flame graph holds leak_from_here" "$(seen 0 "r['inuseHasFn']")" 1
check_ge "  ... and so does the alert's growth graph" "$(seen 0 "r['growthHasFn']")" 1
check_eq "leak: a click on it makes its box the full width" "$(seen 0 "r['svgWidth']")" "$(seen 0 "r['widthAfter']")"
check_eq "  ... as drawn on the screen" 1 "$(seen 0 "round(r['renderedRatio'], 3)")"
check_eq "  ... and a click on the root zooms back" "$(seen 0 "r['widthBefore']")" "$(seen 0 "r['widthReset']")"
check_match "leak: hover gives its bytes, share and objects" \
    '^leak_from_here — [0-9.]+ (KiB|MiB) \([0-9.]+%\), [0-9,]+ objects$' "$(seen 0 "r['hoverInfo']")"
check_eq "leak: the search box marks it (class match)" '["leak_from_here"]' "$(seen 0 "r['matches']")"
check_match "  ... and says how much it holds" '^matched: [0-9.]+ (KiB|MiB) \([0-9.]+%\)' "$(seen 0 "r['found']")"
check_match "leak: the leaks at exit name it, with objects and bytes" \
    $'\n[0-9,]+\t[0-9.]+ (KiB|MiB)\tleak_from_here\t' "$(seen 0 "r['leaksTable']")"
check_contains "leak: the top stacks allocated name hold_peak" "$(seen 0 "r['topTable']")" "hold_peak"
check_gt "leak: the screenshot is not blank (colours)" "$(seen 0 "r['screenshot']['colours']")" 16
check_lt "  ... (share of the commonest colour, %)" "$(seen 0 "int(100 * r['screenshot']['commonest'])")" 95
if ls "$T/leak"/heap.*.peak.pb.gz >/dev/null 2>&1; then
    check_contains "leak: the peak flame graph holds hold_peak" "$(seen 0 "' '.join(r['peakNames'])")" "hold_peak"
else
    check "leak: no peak profile, and the page says so" grep -q 'data-kind="peak">no peak profile' "$T/leak/report.html"
fi

# odd
check_contains "odd: a name with </script> is a frame name, as text" "$(seen 1 "'|'.join(r['growthNames'])")" \
    '</script><script>document.title="pwned"</script>'
check_eq "odd: no script was injected (one per section, one for the page)" 4 "$(seen 1 "r['scripts']")"
check_contains "odd: the command line is shown as text, quoted" "$(seen 1 "r['procCommands'][0]")" \
    "page_leak '</script><script>document.title=\"pwned\"</script>' 'it'\\''s'"
check_match "  ... and ran nothing" '^heapwatch report: ' "$(seen 1 "r['title']")"
check_ge "odd: the leak is still found and zoomed" "$(seen 1 "r['widthAfter']")" "$(seen 1 "r['svgWidth']")"

# many
nsum=$(ls "$T/many"/summary.*.json | wc -l)
check_ge "many: 200 processes and the shell wrote summaries" "$nsum" 201
check_eq "many: the table lists every one" "$nsum" "$(seen 2 "r['procRows']")"
check_eq "many: one section each, all closed" "[$nsum, 0]" "$(seen 2 "[r['sections'], r['openSections']]")"
check_eq "many: no flame graph drawn before a section opens" 0 "$(seen 2 "r['builtFlames']")"
check_eq "many: a row's link opens its section, which draws its graphs" '[true, "1"]' \
    "$(seen 2 "[r['clickedOpen'], r['clickedBuilt']]")"
echo "# many: page loaded in $(seen 2 "r['loadMs']") ms"
finish
