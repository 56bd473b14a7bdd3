#!/usr/bin/env python3
"""compare_perf.py - where the agent's time goes in compare.py's workloads.

Run by `make bench-compare-perf` (about a minute; not part of `make bench`:
it explains the table, it adds no figure to it). For each workload named
by --workloads (default python), one run under `perf record -e cpu-clock
-g` (no hardware counters on these machines) bare, at the agent's default
rate and at HEAPWATCH_RATE=1, the same commands compare.py measures. For
each run it prints

  - the share of all samples per object (the program, libc, the agent,
    libunwind, the kernel), with sample counts;
  - the agent's functions and libunwind's by self samples, as a share of
    all samples of the run (--top of them);
  - for the --annotate hottest agent functions, the instruction with the
    most of the function's samples and the one before it, with their source
    lines: cpu-clock lands on the instruction after the one the CPU waited
    on, so a load just before an instruction that takes most of a
    function's samples is a cache miss.

Self samples only: the agent is built without frame pointers, so -g call
chains through it are incomplete and inclusive shares would be guesses.
One run per configuration: shares within a run are what it is for, the
ratios are compare.py's. Text in BUILD/bench/compare_perf.txt.
"""

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_bench import Out, git_state, table  # noqa: E402
from compare import config_argv_env, shell_line, workloads  # noqa: E402

AGENT_DSOS = ("libheapwatch.so",)
UNWIND_RE = re.compile(r"^libunwind")


def perf_report(data, *extra):
    p = subprocess.run(["perf", "report", "-i", data, "--no-children", "-g", "none", "-q",
                        "--stdio", "-n"] + list(extra),
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return p.stdout


def by_dso(data):
    """[(share %, samples, dso)] of all samples."""
    rows = []
    for line in perf_report(data, "--sort", "dso").splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\d+)\s+(\S.*?)\s*$", line)
        if m:
            rows.append((float(m.group(1)), int(m.group(2)), m.group(3)))
    return rows


def by_symbol(data, dsos):
    """[(share % of all samples, samples, dso, symbol)] of the functions in dsos."""
    rows = []
    for line in perf_report(data, "--sort", "dso,sym", "--dsos", ",".join(dsos)).splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\d+)\s+(\S+)\s+\[.\]\s+(.*?)\s*$", line)
        if m:
            rows.append((float(m.group(1)), int(m.group(2)), m.group(3), m.group(4)))
    return rows


def hottest_instruction(data, sym):
    """(share of the function's samples, the instruction, its source line,
    the instruction before it, that one's source line) or None. cpu-clock
    samples land on the instruction after the one the CPU waited on, so a
    load that misses shows as the instruction before the hottest one."""
    p = subprocess.run(["perf", "annotate", "-i", data, "--stdio", "-s", sym],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    best = None
    source = ""
    prev = ("", "")
    for line in p.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)\s+:\s+[0-9a-f]+:\s+(.*?)\s*$", line)
        if m:
            if best is None or float(m.group(1)) > best[0]:
                best = (float(m.group(1)), m.group(2), source) + prev
            prev = (m.group(2), source)
            continue
        m = re.match(r"\s*:\s+(\d+)\s+(.*?)\s*$", line)
        if m and m.group(2):
            source = f"line {m.group(1)}: {m.group(2)}"
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--lib", default=None, help="the agent (default BUILD/libheapwatch.so)")
    ap.add_argument("--workloads", default="python", help="comma-separated names of compare.py's workloads")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--annotate", type=int, default=4)
    args = ap.parse_args()
    if not shutil.which("perf"):
        raise SystemExit("compare_perf: perf is not installed (Debian: linux-perf)")
    build = os.path.abspath(args.build)
    bench = os.path.join(build, "bench")
    work = os.path.join(bench, "compare-perf-work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "out"))
    lib = os.path.join(work, "libheapwatch.so")
    shutil.copyfile(os.path.abspath(args.lib or os.path.join(build, "libheapwatch.so")), lib)
    out = Out(os.path.join(bench, "compare_perf.txt"))
    head, dirty = git_state()
    out(f"where the time goes (perf record -e cpu-clock -g, self samples), "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}; tree at {head} ({dirty})")
    out(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    out("")
    wanted = args.workloads.split(",")
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("HEAPWATCH_", "MALLOC_CONF", "PYTHONMALLOC")) and k != "LD_PRELOAD"}
    for name, label, argv, extra in workloads(build, False):
        if name not in wanted:
            continue
        for config in ("bare", "heapwatch", "heapwatch rate 1"):
            a, e = config_argv_env(config, argv, extra, lib, os.path.join(work, "out"), None)
            env = dict(base_env)
            env.update(e)
            data = os.path.join(work, "perf.data")
            cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-g", "-o", data, "--"] + a
            r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                raise SystemExit(f"compare_perf: failed ({r.returncode}): {shell_line(e, cmd)}\n{r.stderr[-1000:]}")
            out(f"== {name} ({label}), {config} ==")
            out(f"  {shell_line(e, cmd)}")
            dsos = by_dso(data)
            total = sum(d[1] for d in dsos)
            table(out, ["object", "share", "samples"],
                  [[d[2], f"{d[0]:.2f} %", d[1]] for d in dsos if d[0] >= 0.1])
            agent_dsos = [d[2] for d in dsos if d[2] in AGENT_DSOS or UNWIND_RE.match(d[2])]
            if agent_dsos:
                share = sum(d[0] for d in dsos if d[2] in agent_dsos)
                out(f"  agent and libunwind together: {share:.2f} % of {total} samples")
                syms = by_symbol(data, agent_dsos)[:args.top]
                out(f"  their top functions (self samples, share of all samples):")
                table(out, ["function", "object", "share", "samples"],
                      [[s[3], s[2], f"{s[0]:.2f} %", s[1]] for s in syms])
                for s in [s for s in syms if s[2] in AGENT_DSOS][:args.annotate]:
                    h = hottest_instruction(data, s[3])
                    if h:
                        out(f"  {s[3]}: {h[0]:.1f} % of its samples on `{h[1]}` ({h[2] or 'no source line'}),")
                        out(f"      after `{h[3]}` ({h[4] or 'no source line'})")
            out("")
            for n in os.listdir(os.path.join(work, "out")):
                os.unlink(os.path.join(work, "out", n))
    shutil.rmtree(work, ignore_errors=True)
    out(f"text in {os.path.join(bench, 'compare_perf.txt')}")


if __name__ == "__main__":
    main()
