#!/usr/bin/env python3
"""tools_bench.py - what `heapwatch check` and `heapwatch report` cost on a
run of thousands of processes, and what each process writes (issue 15;
make bench-tools).

The template: real short programs run under the agent (build/libheapwatch.so
at its defaults): /bin/true, sort of 2,000 numbers, ls, a python3 that
builds a small dict; their files are what a test suite's processes write.
Bytes written per process are measured on them (every file the agent
wrote, on disk sizes of the file contents).

The runs of N processes (5,000 and 20,000): the template's files copied
under new pids (the summary's pid field rewritten, every other byte as the
agent wrote it), so that check and report read real files at scale without
running 20,000 programs. Then, each --reps times, interleaved:
  check DIR                      (the verdict, every process judged)
  report DIR --no-html           (the text report)
  report DIR --html FILE         (the text and the page)
wall time and peak RSS from wait4's rusage, medians. Writes
BUILD/bench/tools.txt and tools.tsv.
"""

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TEMPLATE = [
    ["/bin/true"],
    ["sort", "-n", "{nums}"],
    ["ls", "/usr/bin"],
    ["/usr/bin/python3", "-c", "d = {str(i): i for i in range(2000)}"],
]


def run_template(lib, work):
    """Runs each template program under the agent into its own directory;
    (dirs, bytes per process for each)."""
    nums = os.path.join(work, "nums")
    with open(nums, "w") as f:
        f.write("\n".join(str((i * 7919) % 2000) for i in range(2000)) + "\n")
    out = []
    for k, cmd in enumerate(TEMPLATE):
        d = os.path.join(work, "tpl%d" % k)
        env = dict(os.environ, LD_PRELOAD=lib, HEAPWATCH_OUT=d)
        subprocess.run([a.replace("{nums}", nums) for a in cmd], env=env, stdout=subprocess.DEVNULL, check=True)
        size = sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))
        out.append((d, size, len(os.listdir(d))))
    return out


PID_RE = re.compile(r"^(summary|timeline|alerts)\.(\d+)(\.json|\.jsonl\.zst|\.jsonl)$|^heap\.(\d+)\.(.*)$")


def replicate(templates, n, dest):
    """n processes in dest, cycling through the template directories."""
    os.makedirs(dest)
    for i in range(n):
        d = templates[i % len(templates)][0]
        pid = 100000 + i
        for name in os.listdir(d):
            m = PID_RE.match(name)
            if not m:
                continue
            if m.group(1):
                new = "%s.%d%s" % (m.group(1), pid, m.group(3))
            else:
                new = "heap.%d.%s" % (pid, m.group(5))
            src = os.path.join(d, name)
            if m.group(1) == "summary":
                with open(src) as f:
                    s = json.load(f)
                s["pid"] = pid
                with open(os.path.join(dest, new), "w") as f:
                    json.dump(s, f)
            else:
                os.link(src, os.path.join(dest, new))


def timed(cmd):
    """(wall s, peak RSS bytes) of cmd, its output discarded."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit("tools_bench: %s exited %d" % (" ".join(cmd[:3]), code))
    return wall, ru.ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--sizes", default="5000,20000")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    hw = os.path.join(args.build, "heapwatch")
    lib = os.path.abspath(os.path.join(args.build, "libheapwatch.so"))
    benchdir = os.path.join(args.build, "bench")
    os.makedirs(benchdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="heapwatch-tools-bench-")
    lines, rows = [], []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    try:
        tpl = run_template(lib, work)
        out("heapwatch check and report on runs of many processes (tests/bench/tools_bench.py)")
        out("machine: %d CPUs, load average %.2f" % (os.cpu_count(), os.getloadavg()[0]))
        out("")
        out("bytes written per process (the agent at its defaults):")
        for (d, size, nfiles), cmd in zip(tpl, TEMPLATE):
            out("  %-45s %6d bytes in %d files" % (" ".join(cmd)[:45], size, nfiles))
            rows.append(("bytes_per_process", " ".join(cmd), "", size, nfiles))
        out("")
        out("%-8s %-26s %10s %12s" % ("procs", "command", "wall s", "peak RSS MB"))
        for n in [int(x) for x in args.sizes.split(",")]:
            dest = os.path.join(work, "run%d" % n)
            replicate(tpl, n, dest)
            cmds = {
                "check": [hw, "check", dest],
                "report --no-html": [hw, "report", dest, "--no-html"],
                "report (text and page)": [hw, "report", dest, "--html", os.path.join(work, "page.html")],
            }
            res = {k: [] for k in cmds}
            for _ in range(args.reps):
                for k, c in cmds.items():
                    res[k].append(timed(c))
            for k in cmds:
                wall = statistics.median(r[0] for r in res[k])
                rss = statistics.median(r[1] for r in res[k]) / 1e6
                out("%-8d %-26s %10.2f %12.1f" % (n, k, wall, rss))
                rows.append(("tools", k, n, "%.3f" % wall, "%.1f" % rss))
            if n == max(int(x) for x in args.sizes.split(",")):
                out("  the page for %d processes: %.2f MB" % (n, os.path.getsize(os.path.join(work, "page.html")) / 1e6))
            shutil.rmtree(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(benchdir, "tools.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(benchdir, "tools.tsv"), "w") as f:
        f.write("part\tname\tprocs\tvalue\textra\n")
        for r in rows:
            f.write("\t".join(str(x) for x in r) + "\n")


if __name__ == "__main__":
    main()
