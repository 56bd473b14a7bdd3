#!/usr/bin/env bash
# prometheus_rules.sh - contrib/prometheus/heapwatch.rules.yml with
# Debian's promtool (package prometheus): the file is valid (`promtool
# check rules`) and its unit tests pass (`promtool test rules`
# contrib/prometheus/heapwatch.rules.test.yml: a leak fires, a steady
# process and a load-then-steady one do not). Then the same tests against
# a copy of the rules with `for:` cut to 3 s, which must fail: the
# load-then-steady case is what the 18 s `for:` is for. No network, no
# Prometheus server; promtool evaluates the rules on the test's series.
set -u
. tests/integration/lib.sh

RULES=contrib/prometheus/heapwatch.rules.yml
TESTS=contrib/prometheus/heapwatch.rules.test.yml

if ! command -v promtool >/dev/null; then
    not_ok "promtool is installed (Debian package prometheus: make deps)"
    finish
fi

promtool check rules "$RULES" >"$T/check.out" 2>&1
check_eq "promtool check rules $RULES" 0 "$?"
check_contains "promtool counts the 4 rules (2 recording, 2 alerts)" "$(cat "$T/check.out")" "SUCCESS: 4 rules found"

promtool test rules "$TESTS" >"$T/test.out" 2>&1
rc=$?
sed 's/^/# /' "$T/test.out" | grep -v '^# *$' | head -40
check_eq "promtool test rules $TESTS passes" 0 "$rc"
for name in "leak fires, steady beside it does not" "a leak between the thresholds warns only" \
            "steady churn does not fire" "load then steady does not fire" "leak fires at a 5 s scrape"; do
    check_contains "the unit tests hold the case '$name'" "$(cat "$TESTS")" "name: $name"
done

# The tests can fail: `for: 3s` lets the load phase fire.
mkdir -p "$T/cut"
sed 's/for: 18s/for: 3s/' "$RULES" >"$T/cut/heapwatch.rules.yml"
cp "$TESTS" "$T/cut/"
promtool test rules "$T/cut/heapwatch.rules.test.yml" >"$T/cut.out" 2>&1
check_ne "with for: 3s the unit tests fail" 0 "$?"
check_contains "...on the load-then-steady case" "$(cat "$T/cut.out")" "name: load then steady does not fire"

finish
