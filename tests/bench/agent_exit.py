#!/usr/bin/env python3
"""agent_exit.py - what a short process pays for the agent (issue 13, per process).

Run by `make bench-agent-exit`. Short programs run bare and under the agent,
interleaved (the order of the configurations rotates every repetition), and
the table gives per program and configuration the median wall time, the
time added to the bare median, the ratio of medians, and the median CPU
time (user + system, from wait4):

  /bin/true                       a no-op process: the agent's fixed cost
  perl -e 1                       an interpreter that allocates a little
  cc1 -quiet empty.c -o /dev/null the C compiler proper on an empty file: a
                                  large binary (symbol table of ~29k
                                  functions) with a few samples

Configurations: "bare"; "libraries only": an empty library linked with
the agent's own dependencies (its DT_NEEDED entries), preloaded: what the
dynamic loader alone costs, the floor under the agent's figures; "agent"
with HEAPWATCH_OUT on a tmpfs (/dev/shm) and on the disk (a directory
under BUILD/bench; its filesystem type is printed);
every --variant (VAR=VALUE set for the agent, both directories); every
--other-lib (another libheapwatch.so, for a before/after in one run).

Then, once per program under the agent (disk directory), the system calls
of the whole run as `strace -f -c` counts them (fsync, mkdir, opens, ...),
when strace is installed.

Targets (issue 13): at most 1 ms added wall time for /bin/true and 3 ms for
cc1 on an empty file. They are printed beside the figures, never used to
produce one. The machine is shared: compare within one run.
"""

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_bench import Out, git_state, table, write_tsv  # noqa: E402

TARGET_MS = {"true": 1.0, "cc1": 3.0}


def programs(workdir):
    empty = os.path.join(workdir, "empty.c")
    with open(empty, "w") as f:
        f.write("\n")
    cc1 = subprocess.run(["gcc", "-print-prog-name=cc1"], stdout=subprocess.PIPE,
                         text=True).stdout.strip()
    progs = [("true", ["/bin/true"])]
    if shutil.which("perl"):
        progs.append(("perl", ["perl", "-e", "1"]))
    if cc1 and os.path.isabs(cc1) and os.access(cc1, os.X_OK):
        progs.append(("cc1", [cc1, "-quiet", empty, "-o", "/dev/null"]))
    return progs


def libs_only(lib, work):
    """An empty library that needs what lib needs (readelf -d), or None."""
    p = subprocess.run(["readelf", "-d", lib], stdout=subprocess.PIPE, text=True)
    needed = [line.split("[", 1)[1].split("]", 1)[0] for line in p.stdout.splitlines()
              if "(NEEDED)" in line]
    needed = [n for n in needed if not n.startswith(("libc.so", "ld-linux"))]
    src = os.path.join(work, "stub.c")
    with open(src, "w") as f:
        f.write("int heapwatch_bench_stub;\n")
    out = os.path.join(work, "libs-only.so")
    r = subprocess.run(["gcc", "-shared", "-fPIC", "-o", out, src, "-Wl,--no-as-needed"] +
                       [f"-l:{n}" for n in needed], stderr=subprocess.DEVNULL)
    return out if r.returncode == 0 else None


def fs_type(path):
    p = subprocess.run(["stat", "-f", "-c", "%T", path], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return p.stdout.strip() or "?"


def spawn_timed(cmd, env):
    """Runs cmd (stdout, stderr to /dev/null); (wall s, cpu s, status)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        acts = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
        t0 = time.perf_counter()
        pid = os.posix_spawnp(cmd[0], cmd, env, file_actions=acts)
        _, status, ru = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
    finally:
        os.close(devnull)
    return wall, ru.ru_utime + ru.ru_stime, status


def empty_dir(d):
    for name in os.listdir(d):
        try:
            os.unlink(os.path.join(d, name))
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--lib", default=None, help="the agent (default BUILD/libheapwatch.so)")
    ap.add_argument("--reps", type=int, default=40, help="runs per program and configuration")
    ap.add_argument("--variant", action="append", default=[],
                    help="LABEL:VAR=VALUE[,VAR=VALUE]: the agent with these variables too")
    ap.add_argument("--other-lib", action="append", default=[],
                    help="LABEL=PATH: another agent, measured beside the first")
    ap.add_argument("--no-strace", action="store_true")
    args = ap.parse_args()
    lib = os.path.abspath(args.lib or os.path.join(args.build, "libheapwatch.so"))
    benchdir = os.path.abspath(os.path.join(args.build, "bench"))
    os.makedirs(benchdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="exit-", dir=benchdir)
    # One copy of each agent for the whole run (a rebuild meanwhile changes nothing).
    libs = [("agent", lib)]
    for spec in args.other_lib:
        label, path = spec.split("=", 1)
        libs.append((label, os.path.abspath(path)))
    copies = []
    for i, (label, path) in enumerate(libs):
        copy = os.path.join(work, f"lib{i}.so")
        shutil.copyfile(path, copy)
        copies.append((label, copy))
    variants = [("", {})]
    for spec in args.variant:
        label, assigns = spec.split(":", 1)
        variants.append((label, dict(a.split("=", 1) for a in assigns.split(","))))
    dirs = {"tmpfs": tempfile.mkdtemp(prefix="heapwatch-exit-", dir="/dev/shm")
            if os.path.isdir("/dev/shm") else None,
            "disk": os.path.join(work, "out")}
    os.makedirs(dirs["disk"])
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith("HEAPWATCH_") and k != "LD_PRELOAD"}
    configs = [("bare", {})]
    stub = libs_only(copies[0][1], work)
    if stub:
        configs.append(("libraries only", {"LD_PRELOAD": stub}))
    for label, copy in copies:
        for vlabel, venv in variants:
            for kind in ("tmpfs", "disk"):
                if not dirs[kind]:
                    continue
                name = label + (" " + vlabel if vlabel else "") + ", out on " + kind
                env = {"LD_PRELOAD": copy, "HEAPWATCH_OUT": dirs[kind]}
                env.update(venv)
                configs.append((name, env))

    out = Out(os.path.join(benchdir, "agent_exit.txt"))
    head, dirty = git_state()
    out(f"heapwatch per-process cost, {datetime.datetime.now().isoformat(timespec='seconds')}")
    out(f"agents: " + "; ".join(f"{label} = {path}" for label, path in libs) + f"; tree at {head} ({dirty})")
    out(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
        f"(shared machine: compare within a run)")
    out(f"HEAPWATCH_OUT on tmpfs: {dirs['tmpfs']} ({fs_type(dirs['tmpfs']) if dirs['tmpfs'] else 'none'}); "
        f"on disk: {dirs['disk']} ({fs_type(dirs['disk'])})")
    progs = programs(work)
    for pname, cmd in progs:
        out(f"  {pname}: {' '.join(cmd)}")
    out("")

    walls = {(p, c): [] for p, _ in progs for c, _ in configs}
    cpus = {(p, c): [] for p, _ in progs for c, _ in configs}
    for pname, cmd in progs:          # warm the page cache and the agent's files
        for cname, cenv in configs:
            env = dict(base_env)
            env.update(cenv)
            spawn_timed(cmd, env)
    for d in dirs.values():
        if d:
            empty_dir(d)
    for rep in range(args.reps):
        order = configs[rep % len(configs):] + configs[:rep % len(configs)]
        for pname, cmd in progs:
            for cname, cenv in order:
                env = dict(base_env)
                env.update(cenv)
                wall, cpu, status = spawn_timed(cmd, env)
                if status != 0:
                    raise SystemExit(f"agent_exit: {pname} failed under {cname} (status {status})")
                walls[(pname, cname)].append(wall * 1e3)
                cpus[(pname, cname)].append(cpu * 1e3)
        for d in dirs.values():
            if d:
                empty_dir(d)

    out(f"== wall time per process: medians of {args.reps} interleaved runs (ms) ==")
    rows = []
    for pname, _ in progs:
        bare = statistics.median(walls[(pname, "bare")])
        bare_cpu = statistics.median(cpus[(pname, "bare")])
        for cname, _ in configs:
            w = statistics.median(walls[(pname, cname)])
            c = statistics.median(cpus[(pname, cname)])
            target = ""
            if cname not in ("bare", "libraries only") and pname in TARGET_MS:
                target = f"<= {TARGET_MS[pname]:.0f} ms: " + ("met" if w - bare <= TARGET_MS[pname] else "missed")
            rows.append([pname, cname, f"{w:.2f}", "" if cname == "bare" else f"{w - bare:+.2f}",
                         f"{w / bare:.2f}", f"{c:.2f}", "" if cname == "bare" else f"{c - bare_cpu:+.2f}",
                         target])
    header = ["program", "config", "wall ms", "added ms", "ratio", "cpu ms", "added cpu", "target (added wall)"]
    table(out, header, rows, align="llrrrrrl")
    write_tsv(os.path.join(benchdir, "agent_exit.tsv"), header, rows)
    out("")

    if not args.no_strace and shutil.which("strace"):
        out("== system calls of one run under the agent (strace -f -c; out on disk) ==")
        srows = []
        label, copy = copies[0]
        for pname, cmd in progs:
            env = dict(base_env)
            env.update({"LD_PRELOAD": copy, "HEAPWATCH_OUT": dirs["disk"]})
            bare_counts = strace_counts(cmd, base_env, work)
            counts = strace_counts(cmd, env, work)
            def n(c, *names):
                return sum(v[0] for k, v in c.items() if k in names)
            def errs(c):
                return sum(v[1] for v in c.values())
            total = sum(v[0] for v in counts.values())
            srows.append([pname, total - sum(v[0] for v in bare_counts.values()),
                          n(counts, "fsync", "fdatasync"), n(counts, "mkdir", "mkdirat"),
                          n(counts, "openat", "open") - n(bare_counts, "openat", "open"),
                          n(counts, "pread64") - n(bare_counts, "pread64"),
                          n(counts, "newfstatat", "fstat", "statx") - n(bare_counts, "newfstatat", "fstat", "statx"),
                          errs(counts) - errs(bare_counts)])
            empty_dir(dirs["disk"])
        table(out, ["program", "added calls", "fsync", "mkdir", "added opens", "added preads",
                    "added stats", "added errors"], srows)
        out("")
    for d in dirs.values():
        if d:
            shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    out(f"load average at the end: {os.getloadavg()[0]:.2f}; table in {os.path.join(benchdir, 'agent_exit.tsv')}")


def strace_counts(cmd, env, work):
    """{syscall: (calls, errors)} of one run of cmd under strace -f -c."""
    log = os.path.join(work, "strace.txt")
    subprocess.run(["strace", "-f", "-c", "-o", log] + cmd, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counts = {}
    with open(log) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 5 or not parts[0][0].isdigit():
                continue
            name = parts[-1]
            if name == "total":
                continue
            calls = int(parts[3])
            errors = int(parts[4]) if len(parts) == 6 else 0
            counts[name] = (calls, errors)
    return counts


if __name__ == "__main__":
    main()
