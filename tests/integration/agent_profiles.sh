#!/usr/bin/env bash
# agent_profiles.sh - the heap profiles the agent writes, read back by the
# real `go tool pprof`: exact per-function totals at HEAPWATCH_RATE=1,
# unsampled estimates within derived bounds at the default rate, stacks
# without agent frames, and the exit, signal, interval and fork dumps.
set -u
. tests/integration/lib.sh
PP=$PWD/tests/integration/pprof_raw.py

# raw FILE: the profile as pprof_raw.py's JSON (go tool pprof parses it).
raw() { go tool pprof -raw "$1" 2>"$T/pprof.err" | python3 "$PP"; }

one_profile() {   # DIR REASON: the single heap.*.REASON.pb.gz in DIR
    local f=("$1"/heap.*."$2".pb.gz)
    [ ${#f[@]} = 1 ] && [ -f "${f[0]}" ] && echo "${f[0]}"
}

# --- rate 1: every allocation, exact ---------------------------------------
out=$T/exact
HEAPWATCH_RATE=1 with_agent "$out" "$PROGS/agent_sites" exact "$T/exact.truth"; rc=$?
check_eq "agent_sites exact exits 0 under the agent at rate 1" 0 "$rc"
prof=$(one_profile "$out" exit)
check_match "one exit profile, named heap.<pid>.0001.exit.pb.gz" \
    '^heap\.[0-9]+\.0001\.exit\.pb\.gz$' "$(basename "$prof")"
raw "$prof" > "$T/exact.json"
check "go tool pprof reads the exit profile" [ -s "$T/exact.json" ]
python3 - "$T/exact.truth" "$T/exact.json" <<'PY' && ok "rate 1: per-site alloc and inuse objects and bytes equal the ground truth" || not_ok "rate 1: per-site totals differ from the ground truth"
import json, sys
truth = json.load(open(sys.argv[1]))
got = json.load(open(sys.argv[2]))["by_leaf"]
bad = {k: (v, got.get(k)) for k, v in truth.items() if got.get(k) != v}
if bad:
    print("# differences (truth, profile):", bad)
sys.exit(1 if bad else 0)
PY
python3 - "$T/exact.json" <<'PY' && ok "stacks: site <- level2 <- level1 <- main/thread_main; no agent frame or location" || not_ok "stacks: callers wrong or agent frames present"
import json, sys
d = json.load(open(sys.argv[1]))
want_caller = {"site_thread": "thread_main"}
ok = True
for s in d["stacks"]:
    if s and s[0].startswith("site_"):
        tail = want_caller.get(s[0], "main")
        if s[1:4] != ["level2", "level1", tail]:
            print("# bad stack:", s); ok = False
    for fn in s:
        if fn.startswith("agent_") or fn in ("malloc", "calloc", "realloc", "free", "memalign",
                                             "aligned_alloc", "posix_memalign", "unw_backtrace"):
            print("# agent or allocator frame:", s); ok = False
if any("libheapwatch" in m for m in d["location_mappings"]):
    print("# a location in the agent:", d["location_mappings"]); ok = False
sys.exit(0 if ok else 1)
PY
sum=("$out"/summary.*.json)
python3 - "${sum[0]}" <<'PY' && ok "rate 1: summary sampled_live == live_objects, map stats present, no drops" || not_ok "rate 1: summary sampling fields wrong"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["rate"] == 1
assert d["sampled_live"] == d["live_objects"] == d["map_count"], (d["sampled_live"], d["live_objects"])
assert d["samples"] == d["mallocs"], (d["samples"], d["mallocs"])
assert d["samples_dropped"] == 0
for k in ("map_B", "map_noverflow", "stacks", "filter_false_positive_rate", "agent_memory_bytes"):
    assert k in d, k
assert any(f.endswith(".exit.pb.gz") for f in d["files"]), d["files"]
PY

# --- solo (agent/live.c): one thread changes the live map unlocked ---------
# Each of 12 forked children samples alone, then starts 4 threads that
# free its blocks and churn their own while it churns too: the first
# change by another thread ends solo under load. Every child's summary
# must still say sampled_live == live_objects: no change lost or doubled.
out=$T/solo
HEAPWATCH_RATE=1 with_agent "$out" "$PROGS/agent_solo" 12 > "$T/solo.out" 2>&1; rc=$?
check_eq "agent_solo: 12 children, each ending solo under load, exit 0" 0 "$rc"
check "solo: every child's sampled_live == live_objects (504 blocks live), no drop, nothing incomplete" \
    python3 - "$out" <<'PY'
import glob, json, os, sys
n = 0
for f in glob.glob(os.path.join(sys.argv[1], "summary.*.json")):
    d = json.load(open(f))
    if d["live_objects"] == 0 and d["mallocs"] < 100:
        continue   # the parent: it only forks
    n += 1
    assert d["sampled_live"] == d["live_objects"] == d["map_count"], (f, d["sampled_live"], d["live_objects"])
    assert d["live_objects"] >= 500, (f, d["live_objects"])
    assert d["samples_dropped"] == 0 and d["incomplete"] == [], (f, d["samples_dropped"], d["incomplete"])
assert n == 12, n
PY

# --- default rate: unsampled estimates within derived bounds -----------------
# A site of N allocations of s usable bytes is sampled k ~ Binomial(N, p)
# times, p = 1 - exp(-s/rate); pprof's estimate is k/p objects, so
# estimate/truth = k/(Np), with mean 1 and relative standard deviation
# sigma = sqrt((1-p)/(Np)). The bound is 6 sigma: a correct agent fails it
# with probability about 2e-9 per check (the binomial tails at Np >= 180
# are close to normal), so the test is deterministic in practice, while a
# wrong scaling (no unsampling: estimate = p, or the wrong p) is off by far
# more. N and s are chosen so that the bounds are tight: ~11% for 100000
# blocks of 16 KiB, ~26% for 4000 blocks of 64 KiB held live, ~44% for 4M
# blocks of 24 bytes.
out=$T/large
with_agent "$out" "$PROGS/agent_sites" large "$T/large.truth"; rc=$?
check_eq "agent_sites large exits 0 under the agent (default rate)" 0 "$rc"
raw "$(one_profile "$out" exit)" > "$T/large.json"
python3 - "$T/large.truth" "$T/large.json" <<'PY' && ok "default rate: large sites within 6 sigma of the truth" || not_ok "default rate: an estimate is outside its bound"
import json, math, sys
rate = 524288
truth = json.load(open(sys.argv[1]))
got = json.load(open(sys.argv[2]))["by_leaf"]
ok = True
for site, t in truth.items():
    n, b = t[0], t[1]
    p = 1 - math.exp(-(b / n) / rate)
    sigma = math.sqrt((1 - p) / (n * p))
    e = got.get(site, [0, 0, 0, 0])
    for i, what in ((0, "alloc_objects"), (1, "alloc_space"), (2, "inuse_objects"), (3, "inuse_space")):
        if t[i] == 0:
            good = e[i] == 0
            ratio = float("nan")
        else:
            ratio = e[i] / t[i]
            good = abs(ratio - 1) <= 6 * sigma
        print("# %-12s %-13s truth %11d estimate %11d ratio %.3f bound +-%.3f %s"
              % (site, what, t[i], e[i], ratio, 6 * sigma, "ok" if good else "FAIL"))
        ok &= good
sys.exit(0 if ok else 1)
PY

# --- frees the agent did not see (issue 13: one map operation per sample) --
# __libc_free hands blocks back past the interposed free(); glibc serves the
# next allocations from the same addresses, and the live map's record of
# each reused address is replaced: the replaced allocation counts as freed.
out=$T/unseen
HEAPWATCH_RATE=1 with_agent "$out" "$PROGS/agent_unseen_free" > "$T/unseen.out"; rc=$?
check_eq "agent_unseen_free exits 0 under the agent at rate 1" 0 "$rc"
reused=$(sed -n 's/^reused //p' "$T/unseen.out")
check_ge "glibc reused the addresses freed past the agent" "${reused:-0}" 150
raw "$(one_profile "$out" exit)" > "$T/unseen.json"
python3 - "$T/unseen.json" "${reused:-0}" <<'PY' && ok "unseen frees: a reused address counts its old allocation freed; kept blocks stay in use" || not_ok "unseen frees: in-use counts wrong"
import json, sys
by = json.load(open(sys.argv[1]))["by_leaf"]
reused = int(sys.argv[2])
lost, reuse, keep = by.get("site_lost"), by.get("site_reuse"), by.get("site_keep")
print("# site_lost", lost, "site_reuse", reuse, "site_keep", keep, "reused", reused)
ok = (lost and lost[0] == 200 and lost[2] == 200 - reused and
      reuse and reuse[0] == 200 and reuse[2] == 0 and
      keep and keep[0] == 7 and keep[2] == 7)
sys.exit(0 if ok else 1)
PY

# --- rate 0: counters only ---------------------------------------------------
out=$T/rate0
HEAPWATCH_BRIEF=off HEAPWATCH_RATE=0 with_agent "$out" "$PROGS/agent_sites" exact "$T/r0.truth" >/dev/null
sum=("$out"/summary.*.json)
check "rate 0: no samples, an empty exit profile still opens" bash -c \
    '[ "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[\"samples\"])" "$1")" = 0 ] &&
     go tool pprof -raw "$2"/heap.*.exit.pb.gz >/dev/null 2>&1' _ "${sum[0]}" "$out"

# --- on demand: HEAPWATCH_SIGNAL -------------------------------------------
out=$T/signal
HEAPWATCH_RATE=1 HEAPWATCH_SIGNAL=USR1 with_agent "$out" "$PROGS/agent_sites" signal "$out" > "$T/signal.out"; rc=$?
check "HEAPWATCH_SIGNAL=USR1: the program sees its signal profile and exits 0" \
    bash -c '[ "$1" = 0 ] && grep -q "signal profile seen" "$2"' _ $rc "$T/signal.out"
check "signal profile heap.<pid>.0001.signal.pb.gz, then exit profile 0002" bash -c \
    'ls "$1" | grep -qE "^heap\.[0-9]+\.0001\.signal\.pb\.gz$" && ls "$1" | grep -qE "^heap\.[0-9]+\.0002\.exit\.pb\.gz$"' _ "$out"
check "the signal profile opens in go tool pprof" \
    bash -c 'go tool pprof -top "$1"/heap.*.signal.pb.gz 2>/dev/null | grep -q site_malloc' _ "$out"
# Without the variable, SIGUSR1 keeps its default action (terminates).
sh -c 'HEAPWATCH_OUT=$1 LD_PRELOAD=$2 "$3" signal "$1"; echo $? > "$1.rc"' _ "$T/nosig" "$AGENT" "$PROGS/agent_sites" >/dev/null 2>&1
rc=$(cat "$T/nosig.rc")
check_eq "without HEAPWATCH_SIGNAL, SIGUSR1 keeps its default action (exit 138)" 138 "$rc"

# --- periodic: HEAPWATCH_PROFILE_INTERVAL ----------------------------------
out=$T/interval
HEAPWATCH_PROFILE_INTERVAL=0.2 with_agent "$out" "$PROGS/agent_sites" sleep 1.5; rc=$?
n=$(ls "$out" | grep -cE '^heap\.[0-9]+\.[0-9]{4}\.interval\.pb\.gz$')
check_range "HEAPWATCH_PROFILE_INTERVAL=0.2 over 1.5 s: 4 to 8 interval profiles ($n)" "$n" 4 8
check "interval profiles count up from 0001, the exit profile is last (but the peak profile)" bash -c \
    'ls "$1" | grep -q "\.0001\.interval\." && last=$(ls "$1" | grep -E "^heap\." | grep -v "\.peak\." | sort | tail -1) && [[ $last == *.exit.pb.gz ]]' _ "$out"
bad=0
for f in "$out"/heap.*.pb.gz; do go tool pprof -raw "$f" >/dev/null 2>&1 || bad=$((bad + 1)); done
check_eq "every interval profile opens in go tool pprof" 0 "$bad"
check_eq "no temporary file left in the output directory" "" "$(ls -A "$out" | grep '^\.')"
check "interval profiles keep the symbol tables they loaded: the summary's symbol_tables >= 1, with their bytes" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["symbol_tables"] >= 1 and d["symbol_table_bytes"] > 0, d' "$out"/summary.*.json

# --- the peak: heap.<pid>.<seq>.peak.pb.gz, checked against heaptrack --------
# agent_peak holds 68 MiB (64 MiB from climb_to_peak), frees the 64 MiB and
# ends holding 20 MiB (after_peak): the peak profile must show
# climb_to_peak, the exit profile after_peak; heaptrack run on the same
# program must agree on the peak (within 10 %) and on who held it.
out=$T/peak
with_agent "$out" "$PROGS/agent_peak" > "$T/peak.truth"; rc=$?
check_eq "agent_peak exits 0 under the agent" 0 "$rc"
read -r _ truth_peak _ truth_exit < "$T/peak.truth"
pk=$(one_profile "$out" peak)
check_match "one peak profile, written after the exit profile: heap.<pid>.0002.peak.pb.gz" \
    '^heap\.[0-9]+\.0002\.peak\.pb\.gz$' "$(basename "${pk:-none}")"
top_inuse() { go tool pprof -top -sample_index=inuse_space "$1" 2>/dev/null | awk '/flat%/ {getline; print $NF; exit}'; }
check_eq "the peak profile's top function (in use) is climb_to_peak" climb_to_peak "$(top_inuse "$pk")"
check_eq "the exit profile's top function (in use) is after_peak" after_peak "$(top_inuse "$(one_profile "$out" exit)")"
check "the summary lists the peak profile; peak_live_bytes within 10 % of the $truth_peak bytes held" \
    python3 - "$out"/summary.*.json "$pk" "$truth_peak" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
assert os.path.basename(sys.argv[2]) in d["files"], d["files"]
assert d["peak_profile"] == os.path.basename(sys.argv[2]), d["peak_profile"]
truth = int(sys.argv[3])
assert abs(d["peak_live_bytes"] - truth) <= truth / 10, (d["peak_live_bytes"], truth)
PY
# Both profiles are written at exit, the process's last: each names the
# files by one pass over their symbols; none loads and sorts a table
# (cc1's peak profiles took 4 % of a make -j2 that way).
check "the exit and peak profiles are named without loading a symbol table: symbol_tables 0" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["symbol_tables"] == 0, d' "$out"/summary.*.json
check "the peak profile says the live bytes it was copied at: at least the peak / 1.1" bash -c \
    'c=$(go tool pprof -raw "$1" 2>/dev/null | grep -o "live bytes [0-9]*" | grep -o "[0-9]*$");
     p=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[\"peak_live_bytes\"])" "$2");
     [ -n "$c" ] && [ $((c * 11)) -ge $((p * 10)) ] && [ "$c" -le "$p" ]' _ "$pk" "$out"/summary.*.json
if command -v heaptrack >/dev/null && command -v heaptrack_print >/dev/null; then
    heaptrack -o "$T/ht.peak" "$PROGS/agent_peak" >/dev/null 2>&1
    heaptrack_print -f "$T"/ht.peak*.zst > "$T/ht.txt" 2>/dev/null
    ht_top=$(grep -A2 '^PEAK MEMORY CONSUMERS' "$T/ht.txt" | sed -n 3p | awk '{print $1}')
    check_eq "heaptrack's top function at the peak is the peak profile's" "$(top_inuse "$pk")" "$ht_top"
    check "peak_live_bytes within 10 % of heaptrack's peak heap memory consumption" \
        python3 - "$out"/summary.*.json "$T/ht.txt" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1]))
m = re.search(r"peak heap memory consumption: ([\d.]+)([KMG]?)", open(sys.argv[2]).read())
scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]
ht = float(m.group(1)) * scale
print("# heapwatch", d["peak_live_bytes"], "heaptrack", ht, "ratio %.3f" % (d["peak_live_bytes"] / ht))
assert abs(d["peak_live_bytes"] - ht) <= ht / 10
PY
else
    not_ok "heaptrack is missing: make deps installs it"
fi
out=$T/peakexit
with_agent "$out" /usr/bin/python3 -c 'import os; x = [bytes(1000) for i in range(100000)]; os._exit(0)'
check "a peak at exit: no separate peak profile, the summary's peak_profile names the exit profile" \
    python3 - "$out" <<'PY'
import glob, json, os, sys
d = json.load(open(glob.glob(os.path.join(sys.argv[1], "summary.*.json"))[0]))
assert not glob.glob(os.path.join(sys.argv[1], "heap.*.peak.pb.gz"))
assert d["peak_profile"] and d["peak_profile"].endswith(".exit.pb.gz"), d["peak_profile"]
assert d["live_bytes"] >= 100000 * 1000
PY
out=$T/peak0
HEAPWATCH_RATE=0 with_agent "$out" "$PROGS/agent_peak" >/dev/null
check_eq "HEAPWATCH_RATE=0: no peak profile (no stack sampled)" "" "$(ls "$out" | grep '\.peak\.')"
check_eq "HEAPWATCH_RATE=0: the summary's peak_profile is null" None \
    "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["peak_profile"])' "$out"/summary.*.json)"

# --- fork: parent and child each write their own ----------------------------
out=$T/fork
HEAPWATCH_RATE=1 with_agent "$out" "$PROGS/agent_fork" > "$T/fork.out"
read -r _ parent _ child _ < "$T/fork.out"
check "fork: parent and child each write heap.<their pid>.0001.exit.pb.gz" \
    [ -f "$out/heap.$parent.0001.exit.pb.gz" -a -f "$out/heap.$child.0001.exit.pb.gz" ]
python3 - <(go tool pprof -raw "$out/heap.$parent.0001.exit.pb.gz" 2>/dev/null | python3 "$PP") \
          <(go tool pprof -raw "$out/heap.$child.0001.exit.pb.gz" 2>/dev/null | python3 "$PP") <<'PY' \
    && ok "fork: the child's profile has the inherited live heap less its frees, plus its own" \
    || not_ok "fork: parent/child in-use objects in main are wrong"
import json, sys
p = json.load(open(sys.argv[1]))["by_leaf"]["main"]
c = json.load(open(sys.argv[2]))["by_leaf"]["main"]
# parent: 500 x malloc(64) live in main; child: those, minus 100 freed, plus 500 x malloc(128)
print("# parent main inuse_objects", p[2], "child", c[2])
sys.exit(0 if p[2] >= 500 and c[2] - p[2] == 400 else 1)
PY

finish
