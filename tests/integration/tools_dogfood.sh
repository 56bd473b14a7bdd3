#!/usr/bin/env bash
# tools_dogfood.sh - the README's CI recipe, literally, on this project
# (issue 15): `heapwatch run --out hw -- make test` passes, and
# `heapwatch check hw --junit hw/junit.xml` gives a clean verdict. On a
# subset (TEST_FILTER): the whole suite under the agent would double the
# time of `make test`. The nested run keeps its logs in $T (TEST_LOGS), so
# the outer run's are untouched, and its filter never selects this script.
set -u
. tests/integration/lib.sh
HW=$PWD/$BUILD/heapwatch

# TEST_FILTER on make's command line, and no MAKEFLAGS: an outer
# `make test TEST_FILTER=tools` passes its own TEST_FILTER down in
# MAKEFLAGS, which beats the environment, and this script ran itself
# again and again.
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL TEST_LOGS="$T/logs" \
    "$HW" run --out "$T/hw" -- make -s --no-print-directory BUILD="$BUILD" TEST_FILTER=tools_check test \
    >"$T/make.out" 2>"$T/make.err"; rc=$?
check_eq "heapwatch run --out hw -- make test (tools_check): the suite's exit status, 0" 0 "$rc"
check "  the suite ran and passed: its last line says N passed, 0 failed" \
    grep -qE '^[1-9][0-9]* passed, 0 failed' "$T/make.out"
check "  run ended with the whole tree's summary (make, the shells, the tests' own programs)" \
    grep -qE '^heapwatch: run: [0-9,]+ processes in [0-9]+ commands' "$T/make.err"
n=$(ls "$T/hw" | grep -c '^summary\.')
check_gt "  many processes profiled ($n)" "$n" 20
"$HW" check "$T/hw" --junit "$T/hw/junit.xml" >"$T/check.out" 2>"$T/check.err"; rc=$?
check_eq "heapwatch check hw --junit hw/junit.xml: a clean verdict (exit 0)" 0 "$rc"
check "  with no error and no failure" sh -c "[ ! -s '$T/check.err' ] && grep -q ' processes, 0 failed' '$T/check.out'"
check "  the JUnit file has one test case per process, none failing" python3 - "$T/hw/junit.xml" "$n" <<'PY'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
cases = r.findall(".//testcase")
assert len(cases) == int(sys.argv[2]), (len(cases), sys.argv[2])
assert int(r.get("failures")) == 0 and int(r.get("errors")) == 0
PY
finish
