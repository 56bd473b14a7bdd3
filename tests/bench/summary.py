#!/usr/bin/env python3
"""summary.py - the one summary `make bench` ends with (make bench-summary).

Reads the tables the other bench targets wrote under BUILD/bench and prints
them together, measuring nothing itself:

  compare.tsv    issue 13's table (make bench-compare): CPU-time ratios to
                 the bare program under heaptrack, jemalloc prof, heapwatch
                 at its default rate and at rate 1, with the targets
  agent_exit.tsv what a short process pays (make bench-agent-exit)
  map.tsv        the map's ns/op beside the other hash maps (make bench-map),
                 go1.19 included when bench-map measured it: per op and size
                 heapwatch's time over each other's, and whether heapwatch
                 is the fastest; the worst insert while growing, absl's over
                 heapwatch's (goal >= 20x)

A missing file is one line saying which target writes it. With --quick the
_quick files of the quick targets are read instead (compare_quick.tsv,
map_quick.tsv; agent_exit.tsv has no quick variant).
"""

import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_bench import table  # noqa: E402


def out(line=""):
    print(line, flush=True)


def read_tsv(path):
    """(header, rows as dicts) or None when the file is missing or empty."""
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return rows if rows else None


def missing(path, target):
    out(f"  (no {os.path.basename(path)}: run make {target})")
    out("")


def age(path):
    import datetime
    t = datetime.datetime.fromtimestamp(os.path.getmtime(path))
    return t.isoformat(timespec="minutes")


def summary_compare(path, target):
    out("== issue 13: CPU time / bare program, median of paired interleaved runs ==")
    rows = read_tsv(path)
    if rows is None:
        return missing(path, target)
    out(f"  from {path} ({age(path)}, {rows[0].get('reps', '?')} repetitions)")

    def cell(v, t="", verdict="", nd=2):
        if not v:
            return "-"
        s = f"{float(v):.{nd}f}"
        if t:
            s += f" (<= {float(t):.2f} {verdict})"
        return s

    trows = []
    for r in rows:
        added, half = r["rate1_added"], r["half_heaptrack_added"]
        trows.append([r["label"], cell(r["heaptrack"]), cell(r["jemalloc_prof"]),
                      cell(r.get("interposer_only", ""), nd=3),
                      cell(r["heapwatch_default"], r["default_target"], r["default_verdict"], 3),
                      cell(r["heapwatch_rate1"], r["rate1_target"], r["rate1_verdict"]),
                      f"{float(added):+.2f} vs {float(half):+.2f} {r['half_heaptrack_verdict']}"
                      if half else "-"])
    table(out, ["workload", "heaptrack", "jemalloc prof", "interposer only", "heapwatch default",
                "heapwatch rate 1", "rate 1 adds vs half heaptrack's"], trows)
    verdicts = [r[k] for r in rows for k in ("default_verdict", "rate1_verdict", "half_heaptrack_verdict")
                if r[k]]
    out(f"  targets met: {verdicts.count('met')} of {len(verdicts)}")
    out("")


def summary_exit(path, target):
    out("== issue 13: what a short process pays (wall ms, medians of interleaved runs) ==")
    rows = read_tsv(path)
    if rows is None:
        return missing(path, target)
    out(f"  from {path} ({age(path)})")
    header = list(rows[0].keys())
    align = "ll" + "r" * (len(header) - 3) + "l"
    table(out, header, [[r[h] or "" for h in header] for r in rows], align=align)
    out("")


def summary_map(path, target):
    out("== the map: ns/op (best of the runs), heapwatch against each other map ==")
    rows = read_tsv(path)
    if rows is None:
        return missing(path, target)
    out(f"  from {path} ({age(path)})")
    impls = []
    for r in rows:
        if r["impl"] not in impls:
            impls.append(r["impl"])
    others = [i for i in impls if i != "heapwatch"]
    if "go1.19" not in impls:
        out("  (no go1.19 rows in it: bench-map did not measure Go's map)")
    cells = {}
    keys = []
    for r in rows:
        k = (r["op"], int(r["entries"]))
        if k not in keys:
            keys.append(k)
        cells[(k, r["impl"])] = float(r["ns_per_op"])
    trows = []
    worst = None
    for k in keys:
        if k[0] == "worst_insert_ns":
            worst = k
            continue
        hw = cells.get((k, "heapwatch"))
        vals = [f"{cells[(k, i)]:.1f}" if (k, i) in cells else "-" for i in impls]
        best_other = min((cells[(k, i)], i) for i in others if (k, i) in cells) if others else None
        ratio = f"{hw / best_other[0]:.2f} ({best_other[1]})" if hw and best_other else "-"
        go = f"{hw / cells[(k, 'go1.19')]:.2f}" if hw and (k, "go1.19") in cells else "-"
        trows.append([k[0], k[1]] + vals + [go, ratio])
    table(out, ["op", "entries"] + impls + ["hw/go1.19", "hw/best other"], trows)
    if worst:
        hw = cells.get((worst, "heapwatch"))
        absl = cells.get((worst, "absl"))
        line = "  worst single insert while growing to %d: " % worst[1]
        line += ", ".join(f"{i} {cells[(worst, i)] / 1e3:.0f} us" for i in impls if (worst, i) in cells)
        if hw and absl:
            line += f"; absl / heapwatch = {absl / hw:.1f}x (goal >= 20x)"
        out(line)
    beaten = sum(1 for t in trows if t[-1] != "-" and float(t[-1].split()[0]) < 1.0)
    out(f"  heapwatch fastest on {beaten} of {len(trows)} (op, size) rows")
    gos = [t[-2] for t in trows if t[-2] != "-"]
    if gos:
        out(f"  heapwatch beats go1.19 on {sum(1 for g in gos if float(g) < 1.0)} of {len(gos)} "
            f"(op, size) rows (issue 13: on every one)")
    out("")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--quick", action="store_true", help="read the _quick tables")
    args = ap.parse_args()
    bench = os.path.join(args.build, "bench")
    q = "_quick" if args.quick else ""
    out("=" * 30 + " heapwatch: make bench summary " + "=" * 30)
    out("")
    summary_compare(os.path.join(bench, f"compare{q}.tsv"), f"bench-compare{'-quick' if q else ''}")
    summary_exit(os.path.join(bench, "agent_exit.tsv"), "bench-agent-exit")
    summary_map(os.path.join(bench, f"map{q}.tsv"), f"bench-map{'-quick' if q else ''}")


if __name__ == "__main__":
    main()
