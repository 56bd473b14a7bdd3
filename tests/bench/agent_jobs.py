#!/usr/bin/env python3
"""agent_jobs.py - what whole jobs of many processes pay for the agent (issue 13, per process).

Run by `make bench-agent-jobs`. Each job runs bare and under
`BUILD/heapwatch run --quiet --out DIR --` (the agent in every process of
the job) with DIR on the disk (under BUILD/bench) and on a tmpfs
(/dev/shm), interleaved (the order of the configurations rotates every
repetition), REPS times each. Every process writes three files (timeline,
exit profile, summary): where creating a file is slow (an ext4 on a
virtual disk: 1 to 3 ms a file here, measured without the agent), that
alone can dominate a job of short processes; the tmpfs row shows what is
the agent's. The table gives per job and configuration the median wall
time, the ratio of the medians (to bare), the median CPU time of the whole
process tree (user + system of the children, from wait4's rusage) and its
ratio, and how many processes the agent wrote a summary for (the job's
process count, as the agent saw it):

  make -j2     a full `make -j2` of this project (its default target, the
               agent and the tool) into a fresh BUILD directory: compilers,
               linkers, shells, protoc-c: ~140 processes, most of them
               short, a few (cc1) long
  short loop   a shell loop of 1,000 small external commands (true, echo,
               basename, expr, 250 of each): the per-process cost alone

Targets (issue 13): make -j2 within 1.10x of the bare build, the suite of
short processes within 1.25x (ratios of wall medians). They are printed
beside the figures, never used to produce one. The machine is shared:
compare within one run; the load average is printed at the start and end.
"""

import argparse
import datetime
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_bench import Out, git_state, table, write_tsv  # noqa: E402

TARGETS = {"make -j2": 1.10, "short loop": 1.25}

SHORT_LOOP = r"""
i=0
while [ $i -lt 250 ]; do
  /bin/true
  /bin/echo "$i" >/dev/null
  basename /a/b/c >/dev/null
  expr "$i" + 1 >/dev/null
  i=$((i + 1))
done
"""


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_timed(cmd, env, cwd):
    """Runs cmd to completion (output discarded); (wall s, cpu s of the tree)."""
    c0 = children_cpu()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    cpu = children_cpu() - c0
    if p.returncode != 0:
        sys.stderr.write(p.stderr.decode(errors="replace")[-2000:])
        raise SystemExit(f"agent_jobs: {' '.join(cmd[:6])} ... failed (status {p.returncode})")
    return wall, cpu


def count_summaries(d):
    return sum(1 for n in os.listdir(d) if n.startswith("summary.") and n.endswith(".json"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--reps", type=int, default=3, help="runs per job and configuration")
    ap.add_argument("--jobs", default="make,loop", help="which jobs: make, loop (comma-separated)")
    args = ap.parse_args()
    root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    build = os.path.abspath(args.build)
    tool = os.path.join(build, "heapwatch")
    lib = os.path.join(build, "libheapwatch.so")
    for f in (tool, lib):
        if not os.access(f, os.R_OK):
            raise SystemExit(f"agent_jobs: {f} is missing (make it first)")
    benchdir = os.path.join(build, "bench")
    os.makedirs(benchdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="jobs-", dir=benchdir)
    # One copy of the agent and the tool for the whole run: a rebuild meanwhile changes nothing.
    agent = os.path.join(work, "libheapwatch.so")
    shutil.copyfile(lib, agent)
    runner = os.path.join(work, "heapwatch")
    shutil.copyfile(tool, runner)
    os.chmod(runner, 0o755)
    outdirs = {"agent, out on disk": os.path.join(work, "out")}
    if os.path.isdir("/dev/shm"):
        outdirs["agent, out on tmpfs"] = tempfile.mkdtemp(prefix="heapwatch-jobs-", dir="/dev/shm")
    labels = ["bare"] + list(outdirs)

    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("HEAPWATCH_", "MAKE")) and k not in ("LD_PRELOAD", "MFLAGS")}
    agent_env = dict(base_env, HEAPWATCH_AGENT=agent)

    jobs = []
    wanted = args.jobs.split(",")
    if "make" in wanted:
        def make_cmd(i, label):
            d = os.path.join(work, f"build-{label}-{i}")
            shutil.rmtree(d, ignore_errors=True)
            return ["make", "--no-print-directory", "-j2", f"BUILD={d}"], root
        jobs.append(("make -j2", make_cmd))
    if "loop" in wanted:
        def loop_cmd(i, label):
            return ["/bin/sh", "-c", SHORT_LOOP], work
        jobs.append(("short loop", loop_cmd))

    out = Out(os.path.join(benchdir, "agent_jobs.txt"))
    head, dirty = git_state()
    out(f"heapwatch whole jobs, bare and under heapwatch run, "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    out(f"agent = {lib}; tree at {head} ({dirty})")
    out(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
        f"(shared machine: compare within a run); {args.reps} runs per job and configuration")
    out("")

    rows = []
    for name, make in jobs:
        walls = {label: [] for label in labels}
        cpus = {label: [] for label in labels}
        procs = []
        for i in range(args.reps):
            order = labels[i % len(labels):] + labels[:i % len(labels)]
            for j, label in enumerate(order):
                cmd, cwd = make(i, f"{j}")
                if label in outdirs:
                    outdir = outdirs[label]
                    shutil.rmtree(outdir, ignore_errors=True)
                    os.makedirs(outdir)
                    cmd = [runner, "run", "--quiet", "--out", outdir, "--"] + cmd
                    env = agent_env
                else:
                    env = base_env
                wall, cpu = run_timed(cmd, env, cwd)
                walls[label].append(wall)
                cpus[label].append(cpu)
                if label in outdirs:
                    procs.append(count_summaries(outdir))
                    shutil.rmtree(outdir, ignore_errors=True)
                out(f"  # {name}, {label}, run {i + 1}: wall {wall:.2f} s, cpu {cpu:.2f} s")
            for d in os.listdir(work):
                if d.startswith("build-"):
                    shutil.rmtree(os.path.join(work, d), ignore_errors=True)
        bw, bc = statistics.median(walls["bare"]), statistics.median(cpus["bare"])
        target = TARGETS.get(name)
        for label in labels:
            w, c = statistics.median(walls[label]), statistics.median(cpus[label])
            verdict = ""
            if label != "bare" and target:
                verdict = f"<= {target:.2f}x: " + ("met" if w / bw <= target else "missed")
            rows.append([name, label, "" if label == "bare" else f"{statistics.median(procs):.0f}",
                         f"{w:.2f}", f"{w / bw:.3f}", f"{c:.2f}", f"{c / bc:.3f}", verdict])
    out("")
    out(f"== whole jobs: medians of {args.reps} interleaved runs ==")
    header = ["job", "config", "processes", "wall s", "wall ratio", "cpu s", "cpu ratio",
              "target (wall ratio)"]
    table(out, header, rows, align="llrrrrrl")
    write_tsv(os.path.join(benchdir, "agent_jobs.tsv"), header, rows)
    out("")
    out(f"load average at the end: {os.getloadavg()[0]:.2f}; table in "
        f"{os.path.join(benchdir, 'agent_jobs.tsv')}")
    shutil.rmtree(work, ignore_errors=True)
    for d in outdirs.values():
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
