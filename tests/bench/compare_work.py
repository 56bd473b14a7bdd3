"""compare_work.py - the python workload of tests/bench/compare.py.

Allocation-heavy interpreter work of the everyday kind: building dicts of
records keyed by strings, lists of them sorted and filtered, string
formatting, splitting and joining, and a JSON round trip, repeated ROUNDS
times (argv[1], default 20). Run with PYTHONMALLOC=malloc, every object
goes through malloc/free, which is what a malloc profiler sees. Prints one
checksum line (deterministic), so a run that went wrong shows.
"""
import json
import sys


def one_round(r):
    records = {}
    for i in range(4000):
        key = "user-%d-%d" % (r, i)
        records[key] = {"id": i, "name": key.upper(), "tags": [str(i % 7), "t%d" % (i % 13)],
                        "score": (i * 7919 + r) % 1000 / 10.0}
    rows = sorted(records.values(), key=lambda d: (d["score"], d["id"]))
    kept = [d for d in rows if d["score"] > 25.0]
    text = json.dumps(kept)
    back = json.loads(text)
    words = " ".join(d["name"] for d in back).lower().split()
    counts = {}
    for w in words:
        part = w.rsplit("-", 1)[0]
        counts[part] = counts.get(part, 0) + 1
    lines = ["%s=%d" % kv for kv in sorted(counts.items())]
    return len(text) + len(lines) + sum(len(t) for d in back for t in d["tags"])


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    total = 0
    for r in range(rounds):
        total += one_round(r)
    print("python checksum", total)


main()
