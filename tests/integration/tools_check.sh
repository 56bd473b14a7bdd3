#!/usr/bin/env bash
# tools_check.sh - `heapwatch check DIR`: exit 0 within the limits, 1 a limit
# broken (one line naming pid, exe, metric, value, limit and the top
# function), 2 for a directory that cannot be read, holds no results, or a
# damaged file; the limits (--fail-on, --max-*), --junit, -q; a killed
# process (unfinished zstd frame, no summary), several frames, several
# processes; damaged and random input never crashes the tool (ASan build).
# Fixtures: tests/integration/fixtures/tools/make_results.py.
set -u
. tests/integration/lib.sh
HW=$PWD/$BUILD/heapwatch
HWA=$PWD/$BUILD/asan/heapwatch
[ -x "$HWA" ] || HWA=$HW   # no ASan build: the same checks, without sanitizers
export ASAN_OPTIONS=exitcode=86 UBSAN_OPTIONS=halt_on_error=1:exitcode=87:print_stacktrace=1
F=$T/fx
python3 tests/integration/fixtures/tools/make_results.py "$F" || { not_ok "fixtures built"; finish; }

# run_check NAME ARGS...: runs check (ASan build), output in $T/NAME.out/.err, status in $rc.
run_check() {
    local name=$1; shift
    "$HWA" check "$@" >"$T/$name.out" 2>"$T/$name.err"
    rc=$?
}
has() { grep -q -- "$2" "$T/$1.out"; }          # has NAME PATTERN (stdout)
has_err() { grep -q -- "$2" "$T/$1.err"; }

check "heapwatch --help lists check and report" sh -c "'$HW' --help | grep -q '^  check DIR' && '$HW' --help | grep -q '^  report DIR'"
check "check --help documents every option" sh -c "'$HW' check --help >'$T/help' && for o in --fail-on --max-objects-rate --max-bytes-rate --max-live-bytes --max-live-objects --max-peak-bytes --junit --quiet --failures-only --top 'exit status'; do grep -q -- \"\$o\" '$T/help' || exit 1; done"

run_check clean "$F/clean"
check_eq "a clean process: exit 0" 0 "$rc"
check "  one ok line naming pid and exe" has clean '^heapwatch check: ok   pid 100 (clean): ran 5.0 s'
check "  temporary and foreign files ignored" [ ! -s "$T/clean.err" ]

run_check crit "$F/crit"
check_eq "a crit alert: exit 1" 1 "$rc"
check "  the FAIL line names pid, exe, level, metric, value, limit, time and top function" \
    has crit '^heapwatch check: FAIL pid 200 (leaky): crit alert.*: objects_rate 5012/s > 2000/s at +5.0s; top: leak_node <- build_list'
check "  and the profile taken" has crit 'profile heap.200.0003.alert.pb.gz'
check_eq "  exactly one FAIL line (one limit broken)" 1 "$(grep -c FAIL "$T/crit.out")"
run_check crit_none "$F/crit" --fail-on none
check_eq "--fail-on none: alerts do not fail" 0 "$rc"

run_check warn "$F/warn"
check_eq "warn alerts only: exit 0 by default (--fail-on crit)" 0 "$rc"
check "  noted as below --fail-on" has warn 'note pid 300 (warner): raised warn alert'
run_check warn_fail "$F/warn" --fail-on warn
check_eq "warn alerts with --fail-on warn: exit 1" 1 "$rc"
check "  FAIL line: warn alert, value, threshold, top function" \
    has warn_fail 'FAIL pid 300 (warner): warn alert: objects_rate 700/s > 500/s at +11.0s; top: cache_put'
run_check crit_warn "$F/crit" --fail-on warn
check "--fail-on warn with crit alerts: the crit one is reported" has crit_warn 'FAIL pid 200 (leaky): crit alert'

run_check rate_ok "$F/clean" --max-objects-rate 50
check_eq "--max-objects-rate at the maximum (50/s): exit 0" 0 "$rc"
# Rates over a few milliseconds are not judged (issue 15): 200 brief
# processes with rates of 54,293/s and up never break a limit of 1,000/s,
# nor one from an older agent (no rate_judged) spanning 4 ms; a long one
# does, at its judged record only.
run_check brief "$F/brief" --max-objects-rate 1000
check_eq "200 brief processes (rates over 4 ms of 54k/s) pass --max-objects-rate 1000" 0 "$rc"
check "  the last line says how many were too brief for a rate, judged on counts" \
    grep -q "201 processes, 0 failed; 201 ran too briefly for a rate to be judged .*: judged on counts" "$T/brief.out"
check "  their ok lines say so instead of a rate" sh -c "grep -c 'too short to judge a rate' '$T/brief.out' | grep -qx 201"
run_check brief_long "$F/brief_and_long" --max-objects-rate 1000
check_eq "a long process above the limit still fails beside a brief one" 1 "$rc"
check "  only at its judged record (1 of 1 records above)" \
    sh -c "grep -q 'FAIL pid 1401 (/usr/bin/leaker --n 3): objects_rate 3000/s > 1000/s (--max-objects-rate) at +3.0s; 1 of 1 timeline records above' '$T/brief_long.out' && ! grep -q 'FAIL pid 1400' '$T/brief_long.out'"

# One verdict first (issue 15): the run summary opens the output.
check "the run summary comes first: processes, commands, allocations, alerts" \
    sh -c "head -1 '$T/brief.out' | grep -q '^heapwatch check: run: 201 processes in 2 commands, 1,005,000 allocations' && sed -n 2p '$T/brief.out' | grep -qx 'heapwatch check: alerts: none'"
check "  rolled up per command pattern: the 200 mkdir -p DIR are one line" \
    grep -q '^heapwatch check:  *3.91 MiB  mkdir -p \*  (200 processes)$' "$T/brief.out"
check "  the processes that broke a limit, and the top command by growth" \
    sh -c "grep -A1 '^heapwatch check: broke a limit:' '$T/brief_long.out' | grep -q '1 failed  leaker --n \*  (1 process)' && grep -A1 'top commands by growth' '$T/brief_long.out' | grep -q '3000/s  leaker --n \*  (1 process, failed)'"
run_check failures_only "$F/brief_and_long" --max-objects-rate 1000 --failures-only --top 1
check "--failures-only: no ok line; --top 1: one command per list" \
    sh -c "[ $rc = 1 ] && ! grep -q ' ok ' '$T/failures_only.out' && grep -q 'FAIL pid 1401' '$T/failures_only.out' && grep -q '  ... and 1 more' '$T/failures_only.out'"

run_check rate_bad "$F/clean" --max-objects-rate 20
check_eq "--max-objects-rate 20: exit 1" 1 "$rc"
check "  names the value, the limit, the option and when" \
    has rate_bad 'FAIL pid 100 (clean): objects_rate 50/s > 20/s (--max-objects-rate) at +5.0s; 3 of 5 timeline records above'
run_check rate_k "$F/crit" --fail-on none --max-objects-rate 5k
check_eq "--max-objects-rate 5k (= 5000): 5012/s fails" 1 "$rc"
run_check brate_bad "$F/crit" --fail-on none --max-bytes-rate 100K
check "--max-bytes-rate 100K: 256 KiB/s fails" sh -c "[ $rc = 1 ] && grep -q 'bytes_rate 256.0 KiB/s > 100.0 KiB/s (--max-bytes-rate)' '$T/brate_bad.out'"
run_check brate_ok "$F/crit" --fail-on none --max-bytes-rate 1MiB
check_eq "--max-bytes-rate 1MiB: exit 0" 0 "$rc"

run_check live_ok "$F/crit" --fail-on none --max-live-bytes 3M
check_eq "--max-live-bytes 3M (= live at exit): exit 0" 0 "$rc"
run_check live_bad "$F/crit" --fail-on none --max-live-bytes 1M
check "--max-live-bytes 1M: exit 1, value and limit in bytes" \
    sh -c "[ $rc = 1 ] && grep -q 'FAIL pid 200 (leaky): live_bytes at exit 3145728 (3.00 MiB) > 1048576 (1.00 MiB) (--max-live-bytes)' '$T/live_bad.out'"
run_check lobj_bad "$F/crit" --fail-on none --max-live-objects 10000
check "--max-live-objects 10000: exit 1" sh -c "[ $rc = 1 ] && grep -q 'live_objects at exit 36,000 > 10,000' '$T/lobj_bad.out'"
run_check peak_bad "$F/clean" --max-peak-bytes 32K
check "--max-peak-bytes 32K: exit 1" sh -c "[ $rc = 1 ] && grep -q 'peak_live_bytes 40960' '$T/peak_bad.out'"
run_check two "$F/crit" --max-live-bytes 1M
check_eq "two limits broken: two FAIL lines" 2 "$(grep -c FAIL "$T/two.out")"

run_check killed "$F/killed"
check_eq "a killed process (no summary, unfinished zstd frame): exit 0" 0 "$rc"
check "  every complete record read (6), the cut noted, not an error" \
    sh -c "grep -q 'ok   pid 400 (?): no summary (killed?); 6 timeline records' '$T/killed.out' && grep -q 'unfinished zstd frame.*6 records read, a partial last line dropped' '$T/killed.out' && [ ! -s '$T/killed.err' ]"
run_check killed_live "$F/killed" --max-live-bytes 24575
check "  live bytes at exit from the last complete record (24576), and said so" \
    sh -c "[ $rc = 1 ] && grep -q 'live_bytes at exit 24576 .* (no summary: .* from the last timeline record, at +6.0s)' '$T/killed_live.out'"
run_check killed_ok "$F/killed" --max-live-bytes 24576
check_eq "  --max-live-bytes at that value: exit 0" 0 "$rc"

run_check multi "$F/multiframe" --max-objects-rate 1000
check "three concatenated frames (zstd, raw blocks, zstd): all read, the spike in the last caught" \
    sh -c "[ $rc = 1 ] && grep -q 'objects_rate 9999/s > 1000/s (--max-objects-rate) at +8.0s; 1 of 9 timeline records' '$T/multi.out'"

run_check family "$F/family"
check_eq "three processes in one directory: exit 1 for the child's crit alert" 1 "$rc"
check "  one FAIL (pid 601), two ok lines (600, the killed 602)" \
    sh -c "grep -q 'FAIL pid 601 (/usr/bin/parent --serve' '$T/family.out' && grep -q 'ok   pid 600' '$T/family.out' && grep -q 'ok   pid 602' '$T/family.out' && grep -q '3 processes, 1 failed' '$T/family.out'"
run_check quiet "$F/family" -q
check "-q: only the failure and the total" sh -c "[ $rc = 1 ] && ! grep -q ' ok ' '$T/quiet.out' && [ \$(wc -l <'$T/quiet.out') = 2 ]"
run_check quiet_ok "$F/clean" -q
check "-q with nothing wrong: silent, exit 0" sh -c "[ $rc = 0 ] && [ ! -s '$T/quiet_ok.out' ]"

# Unreadable or empty: exit 2 with the reason on stderr.
run_check missing "$F/does-not-exist"
check "a missing directory: exit 2, the reason on stderr" sh -c "[ $rc = 2 ] && grep -q 'No such file or directory' '$T/missing.err'"
run_check empty "$F/empty"
check "an empty directory: exit 2, 'no heapwatch results'" sh -c "[ $rc = 2 ] && grep -q 'no heapwatch results' '$T/empty.err'"
run_check only_profiles "$F/only_profiles"
check_eq "only heap profiles: exit 2" 2 "$rc"
run_check a_file "$F/a_file"
check "a file instead of a directory: exit 2, 'not a directory'" sh -c "[ $rc = 2 ] && grep -q 'not a directory' '$T/a_file.err'"
if [ "$(id -u)" != 0 ]; then
    mkdir "$T/locked" && chmod 000 "$T/locked"
    run_check locked "$T/locked"
    check_eq "an unreadable directory: exit 2" 2 "$rc"
fi
run_check gsum "$F/garbage_summary"
check "a garbage summary: exit 2, file and byte named" sh -c "[ $rc = 2 ] && grep -q 'ERROR pid 800 (?): summary.800.json: not valid JSON at byte' '$T/gsum.err'"
run_check gzst "$F/garbage_zstd"
check "a timeline that is not zstd: exit 2" sh -c "[ $rc = 2 ] && grep -q 'timeline.801.jsonl.zst: damaged zstd data' '$T/gzst.err'"
run_check galerts "$F/garbage_alerts"
check "garbage alert lines: exit 2, first bad line named, bad lines counted" \
    sh -c "[ $rc = 2 ] && grep -q 'alerts.802.jsonl: line 2: not valid JSON' '$T/galerts.err' && grep -q '2 bad lines' '$T/galerts.err'"
run_check deep "$F/deep"
check "100000 nested arrays: exit 2, no stack overflow" sh -c "[ $rc = 2 ] && grep -q 'nested too deep' '$T/deep.err'"
run_check usage1
check_eq "no DIR: exit 2" 2 "$rc"
run_check usage2 "$F/clean" --fail-on sometimes
check "--fail-on sometimes: exit 2 and the accepted values" sh -c "[ $rc = 2 ] && grep -q 'warn, crit or none' '$T/usage2.err'"
run_check usage3 "$F/clean" --max-live-bytes 12Q
check_eq "--max-live-bytes 12Q: exit 2" 2 "$rc"
run_check usage4 "$F/clean" --bogus
check_eq "an unknown option: exit 2" 2 "$rc"

# JUnit XML.
junit_py='
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = list(root.iter("testcase"))
want = [int(x) for x in sys.argv[2].split(",")]   # expected failures per case, in order
got = [len(c.findall("failure")) for c in cases]
assert got == want, (got, want)
assert int(root.get("tests")) == len(cases) and int(root.get("failures")) == sum(want)
for c in cases:
    float(c.get("time"))
print("\n".join(c.get("name") + "|" + "|".join(f.get("message") for f in c.findall("failure")) for c in cases))
'
run_check junit "$F/family" -q --junit "$T/family.xml"
check "--junit: well-formed, one testcase per process, a failure for 601 only" \
    sh -c "python3 -c '$junit_py' '$T/family.xml' 0,1,0 >'$T/family.junit' && grep -q '^/usr/bin/parent --serve .it.*s. #2|crit alert: objects_rate 2500/s > 2000/s' '$T/family.junit'"
check "--junit: test names are command lines, the first bare, a repeat with #2; the pid in the output" \
    python3 - "$T/family.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
names = [c.get("name") for c in cases]
assert names[0] == "/usr/bin/parent --serve 'it'\\''s'", names
assert names[1] == names[0] + " #2", names
assert all("pid" not in n for n in names), names
outs = [c.find("system-out").text for c in cases]
assert outs[1].startswith("pid 601, parent 600, /usr/bin/parent"), outs[1][:60]
PY
run_check junit_odd "$F/odd" --junit "$T/odd.xml"
check "--junit: an exe name with <>&\"' a control byte and broken UTF-8 is escaped" \
    sh -c "python3 -c '$junit_py' '$T/odd.xml' 1 >'$T/odd.junit' && grep -q \"^we<ird> & \\\"quoted\\\" 'name'?é??|.*top: <bad>&\\\"fn\\\"\" '$T/odd.junit'"
check "  and the terminal line shows the name with the control byte replaced" \
    has junit_odd "FAIL pid 700 (we<ird> & \"quoted\" 'name'?é??)"
run_check junit_long "$F/long" --junit "$T/long.xml"
check "--junit: a 5000-byte exe name kept whole, a 3000-byte function name does not break the XML" \
    sh -c "[ $rc = 1 ] && python3 -c '$junit_py' '$T/long.xml' 1 | python3 -c 'import sys; n=sys.stdin.read().split(\"|\")[0]; assert n == \"x\" * 5000, n[:40]'"
run_check junit_empty "$F/empty" --junit "$T/empty.xml"
check "--junit on an empty directory: exit 2, an error testcase saying why" \
    sh -c "[ $rc = 2 ] && python3 -c 'import xml.etree.ElementTree as E,sys; r=E.parse(sys.argv[1]).getroot(); e=r.find(\".//error\"); assert \"no heapwatch results\" in e.get(\"message\")' '$T/empty.xml'"
run_check junit_bad "$F/clean" --junit "$T/no/such/dir/out.xml"
check_eq "--junit to an unwritable path: exit 2" 2 "$rc"

# Damaged input never crashes: seeded random mutations of every fixture
# file, and truncations of the timeline at every length, under ASan/UBSan.
python3 - "$F" "$T/mut" <<'EOF'
import os, random, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
rng = random.Random(5)
files = []
for case in ("clean", "crit", "warn", "killed", "multiframe", "family"):
    for n in sorted(os.listdir(os.path.join(src, case))):
        if n.endswith((".json", ".jsonl", ".zst")):
            files.append(os.path.join(src, case, n))
k = 0
for path in files:
    data = open(path, "rb").read()
    for _ in range(12):
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            op = rng.randrange(4)
            i = rng.randrange(max(len(b), 1))
            if op == 0 and b: b[i] = rng.randrange(256)
            elif op == 1: b[i:i] = bytes(rng.choice([b"{", b"[", b"\"", b"\\u", b"\\ud800", b"-", b"1e999", b"\n", b"\x00", b"\xff"]))
            elif op == 2: del b[i:i + rng.randint(1, 16)]
            else: b = b[:i]
        d = os.path.join(dst, "m%04d" % k); k += 1
        os.makedirs(d)
        open(os.path.join(d, os.path.basename(path)), "wb").write(bytes(b))
tl = open(os.path.join(src, "crit", "timeline.200.jsonl.zst"), "rb").read()
for cut in range(0, len(tl), 7):
    d = os.path.join(dst, "m%04d" % k); k += 1
    os.makedirs(d)
    open(os.path.join(d, "timeline.200.jsonl.zst"), "wb").write(tl[:cut])
EOF
bad=0; n=0
for d in "$T"/mut/m*; do
    n=$((n + 1))
    "$HWA" check "$d" --max-live-bytes 1 --max-objects-rate 1 --junit "$T/mut.xml" >/dev/null 2>"$T/mut.err"; r1=$?
    "$HWA" report "$d" --width 50 --html "$T/mut.html" >/dev/null 2>>"$T/mut.err"; r2=$?
    if [ $r1 -gt 2 ] || [ $r2 -gt 2 ] || grep -q 'Sanitizer\|runtime error' "$T/mut.err"; then
        bad=$((bad + 1)); echo "# crash or bad status on $d: check $r1, report $r2"; head -5 "$T/mut.err"
    fi
done
check_eq "$n damaged result directories: check and report exit 0/1/2, no sanitizer report ($(basename "$HWA") build)" 0 "$bad"

# End to end with the real agent, when it is built.
if [ -f "$AGENT" ]; then
    "$HW" run -q -o "$T/real" -- sh -c true
    run_check real "$T/real"
    check "end to end: heapwatch run -- sh -c true, then check: exit 0" sh -c "[ $rc = 0 ] && grep -q 'ok   pid [0-9]* (' '$T/real.out'"
    # JUnit names follow a test from run to run: two runs of the same job.
    for r in 1 2; do
        "$HW" run -q -o "$T/stable$r" -- sh -c 'ls / >/dev/null; ls / >/dev/null; sort /dev/null'
        "$HW" check -q "$T/stable$r" --junit "$T/stable$r.xml" >/dev/null
    done
    names() { python3 -c 'import sys, xml.etree.ElementTree as E; print("\n".join(sorted(c.get("name") for c in E.parse(sys.argv[1]).getroot().iter("testcase"))))' "$1"; }
    check_eq "end to end: JUnit test names are the same in two runs (command lines, #2 for the repeat)" \
        "$(names "$T/stable1.xml")" "$(names "$T/stable2.xml")"
    check "  and they are: sh -c ..., ls /, ls / #2, sort /dev/null" \
        sh -c "python3 -c 'import sys, xml.etree.ElementTree as E; n=sorted(c.get(\"name\") for c in E.parse(sys.argv[1]).getroot().iter(\"testcase\")); assert n == [\"ls /\", \"ls / #2\", \"sh -c \x27ls / >/dev/null; ls / >/dev/null; sort /dev/null\x27\", \"sort /dev/null\"], n' '$T/stable1.xml'"
    # 200 real runs of a tiny program that allocates (issue 15: two identical
    # mkdir runs showed 0/s and 54,293/s, and a limit failed at random).
    for i in $(seq 200); do
        HEAPWATCH_OUT=$T/tiny LD_PRELOAD=$AGENT mkdir -p "$T/dirs/$i/a/b" || break
    done
    run_check tiny "$T/tiny" --max-objects-rate 1000 --max-bytes-rate 1K
    check "end to end: 200 runs of mkdir never break --max-objects-rate 1000 nor --max-bytes-rate 1K" \
        sh -c "[ $rc = 0 ] && grep -q '200 processes, 0 failed' '$T/tiny.out'"
else
    echo "# $AGENT not built: end-to-end case skipped"
fi
finish
