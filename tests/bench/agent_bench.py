#!/usr/bin/env python3
"""agent_bench.py - what the agent (build/libheapwatch.so) costs a program.

Run by `make bench-agent` (full) and `make bench-agent-quick` (a few
seconds). Four parts, each printed as a table with the exact command lines,
and written as a TSV file under BUILD/bench/:

 1. instructions   callgrind (instruction counts: repeatable on a noisy
                   machine) of agent_churn's loop only (--collect-atstart=no
                   --toggle-collect=churn_loop), N malloc+free pairs, without
                   the agent and under it at HEAPWATCH_RATE=0 and at the
                   default rate. added Ir/pair = (Ir with - Ir without) / N;
                   glibc Ir/pair = Ir inside libc.so.6 / N, without the agent.
                   Also each function's own (self) Ir per pair.
                   -> agent_instr.tsv, agent_instr_funcs.tsv
 2. time           ns per pair of agent_churn, 1 and 2 threads (each thread
                   its own loop), without the agent, at rate 0 and at the
                   default rate, runs interleaved (the order rotates every
                   repetition); medians and the ratio of medians.
                   -> agent_time.tsv
 3. wall           wall and CPU time of agent_mix (an allocation-heavy
                   program) without the agent, at HEAPWATCH_RATE=0, at the
                   default rate, at HEAPWATCH_RATE=1, and under heaptrack
                   (default mode, and --raw, which records without
                   interpreting), interleaved; medians and ratios.
                   -> agent_wall.tsv
 4. memory         agent_live holds N small blocks live at exit: the agent's
                   memory (summary agent_memory_bytes = mapped,
                   agent_memory_inuse_bytes = handed out) and the process's
                   VmRSS difference, divided by the number of tracked (live
                   sampled) allocations; also the same run with N=0, for the
                   fixed part. -> agent_memory.tsv

Nothing here knows what the agent does inside: whatever the current
libheapwatch.so does is what is measured. Targets (issue 4) are printed
next to the figures; they are never used to produce a figure.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time

DEFAULT_RATE_LABEL = "default"

# Summary keys that may hold the number of live sampled allocations the
# agent tracks (the first present wins; the agent is gaining them).
TRACKED_KEYS = ("sampled_live_objects", "sampled_live", "live_sampled", "map_count",
                "map.count", "tracked_live", "tracked")


# --------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------

class Out:
    """Prints to stdout and to a text file at once."""

    def __init__(self, path):
        self.f = open(path, "w")

    def __call__(self, line=""):
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()


def table(out, header, rows, align=None):
    """A plain text table: first column left-aligned, the others right."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, r in enumerate(cells):
        parts = []
        for i, c in enumerate(r):
            left = (align[i] == "l") if align else (i == 0)
            parts.append(c.ljust(widths[i]) if left else c.rjust(widths[i]))
        out("  " + "  ".join(parts).rstrip())
        if n == 0:
            out("  " + "  ".join("-" * w for w in widths))


def write_tsv(path, header, rows):
    with open(path, "w") as f:
        f.write("\t".join(header) + "\n")
        for r in rows:
            f.write("\t".join(str(c) for c in r) + "\n")


def fmt(v, nd=2):
    if v is None:
        return "n/a"
    if isinstance(v, int):
        return str(v)
    return f"{v:.{nd}f}"


def shell_line(env_extra, cmd):
    env = " ".join(f"{k}={v}" for k, v in env_extra.items())
    return (env + " " if env else "") + " ".join(cmd)


# --------------------------------------------------------------------------
# Running programs
# --------------------------------------------------------------------------

class Runner:
    def __init__(self, args):
        self.build = args.build
        self.lib = os.path.abspath(args.lib)
        self.bindir = os.path.join(args.build, "bench")
        self.outroot = os.path.join(self.bindir, "agent-out")
        self.base_env = {k: v for k, v in os.environ.items()
                         if not k.startswith("HEAPWATCH_") and k != "LD_PRELOAD"}

    def prog(self, name):
        return os.path.join(self.bindir, name)

    def config_env(self, config, outdir):
        """The variables a config adds: "none" adds none; "agent@rate=R"
        preloads the agent, output in outdir, HEAPWATCH_RATE=R unless R is
        "default" (then the variable is left unset: the agent's default)."""
        if config == "none":
            return {}
        env = {"LD_PRELOAD": self.lib, "HEAPWATCH_OUT": outdir}
        rate = config.split("rate=", 1)[1]
        if rate != DEFAULT_RATE_LABEL:
            env["HEAPWATCH_RATE"] = rate
        return env

    def fresh_dir(self, *parts):
        d = os.path.join(self.outroot, *parts)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d, exist_ok=True)
        return d

    def run(self, cmd, env_extra, cwd=None):
        """Runs cmd; returns (stdout, wall seconds, cpu seconds of it and its
        waited-for children)."""
        env = dict(self.base_env)
        env.update(env_extra)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            raise SystemExit(f"agent_bench: command failed ({p.returncode}): "
                             f"{shell_line(env_extra, cmd)}")
        return p.stdout, wall, cpu


def read_summary(outdir):
    """The one summary.<pid>.json of a run, or None. If the run left several
    (a launcher that exec'ed), the one with the most mallocs."""
    best = None
    for name in os.listdir(outdir):
        if name.startswith("summary.") and name.endswith(".json"):
            with open(os.path.join(outdir, name)) as f:
                try:
                    s = json.load(f)
                except ValueError:
                    continue
            if best is None or s.get("mallocs", 0) > best.get("mallocs", 0):
                best = s
    return best


def flatten(d, prefix=""):
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(flatten(v, prefix + k + "."))
        else:
            flat[prefix + k] = v
    return flat


def tracked_count(summary, rate_is_one):
    """(count, label) of live sampled allocations from a summary."""
    if summary is None:
        return None, "no summary"
    flat = flatten(summary)
    for k in TRACKED_KEYS:
        if k in flat and isinstance(flat[k], (int, float)):
            return int(flat[k]), k
    if rate_is_one:
        return int(summary.get("live_objects", 0)), \
            "live_objects (rate 1 samples every allocation; no sampled-live field in the summary yet)"
    return None, "no sampled-live field in the summary yet"


def sample_count(summary):
    """Allocations sampled over the run, if the summary says (a field whose
    name says samples, not live ones), else None."""
    if not summary:
        return None
    flat = flatten(summary)
    for k, v in flat.items():
        if isinstance(v, int) and re.search(r"sampl", k) and "live" not in k and "rate" not in k:
            return f"{v} ({k})"
    return None


def parse_kv(line):
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def median(xs):
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------
# Part 1: callgrind
# --------------------------------------------------------------------------

def parse_callgrind(path):
    """Self cost (first event, Ir) per (object, function, file) from a
    callgrind output file, and the file's total."""
    names = {"ob": {}, "fl": {}, "fn": {}}
    space = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl",
             "cfi": "fl", "cfl": "fl", "fn": "fn", "cfn": "fn"}
    ob = fl = fi = fn = "?"
    skip_next = False
    costs = {}
    total = None
    spec_re = re.compile(r"^\((\d+)\)(?: (.*))?$")
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                ir = int(parts[1]) if len(parts) > 1 else 0
                key = (ob, fn, fi)
                costs[key] = costs.get(key, 0) + ir
                continue
            if "=" in line:
                k, v = line.split("=", 1)
                if k in space:
                    m = spec_re.match(v)
                    if m:
                        table_ = names[space[k]]
                        if m.group(2) is not None:
                            table_[m.group(1)] = m.group(2)
                        v = table_.get(m.group(1), "?")
                    if k == "ob":
                        ob = v
                    elif k == "fl":
                        fl = fi = v
                    elif k in ("fi", "fe"):
                        fi = v
                    elif k == "fn":
                        fn = v
                        fi = fl
                    continue
                if k == "calls":
                    skip_next = True
                    continue
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
    own = sum(costs.values())
    if total is not None and total != own:
        sys.stderr.write(f"agent_bench: {path}: summary {total} != sum of self costs {own}\n")
    return costs, (total if total is not None else own)


def object_class(obj, prog):
    base = os.path.basename(obj)
    if os.path.basename(prog) == base:
        return "program"
    if base.startswith("libc.so") or base.startswith("libc-"):
        return "glibc"
    if base == "libheapwatch.so":
        return "agent"
    return "other"


def part_instructions(r, out, quick, tsv_suffix):
    n = 100000 if quick else 1000000
    prog = r.prog("agent_churn")
    configs = ["none", "agent@rate=0", f"agent@rate={DEFAULT_RATE_LABEL}"]
    cgdir = os.path.join(r.bindir, "agent-callgrind")
    os.makedirs(cgdir, exist_ok=True)
    out("== 1. Instructions per malloc+free pair (callgrind, the loop only) ==")
    out(f"N = {n} pairs per run; sizes cycle through 64 values in 16..512 bytes.")
    out("pair: p = malloc(size); free(p).  live: a ring of 256 live blocks, "
        "each iteration frees the oldest and allocates anew.")
    rows, tsv, func_tsv = [], [], []
    results = {}
    for pattern in ("pair", "live"):
        for config in configs:
            label = config.replace("agent@", "")
            outfile = os.path.join(cgdir, f"callgrind.{pattern}.{label}.out")
            hwout = r.fresh_dir("instr", f"{pattern}.{label}")
            env = r.config_env(config, hwout)
            cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no",
                   "--toggle-collect=churn_loop", f"--callgrind-out-file={outfile}",
                   prog, "--pattern", pattern, "--n", str(n)]
            out(f"  $ {shell_line(env, cmd)}")
            r.run(cmd, env)
            costs, total = parse_callgrind(outfile)
            by_class = {}
            for (ob, _fn, _fi), ir in costs.items():
                cl = object_class(ob, prog)
                by_class[cl] = by_class.get(cl, 0) + ir
            summ = read_summary(hwout) if config != "none" else None
            results[(pattern, config)] = (costs, total, by_class, summ)
            # a readable per-function listing, kept next to the raw file
            with open(outfile + ".annotate.txt", "w") as f:
                subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100",
                                outfile], stdout=f, stderr=subprocess.DEVNULL)
    out("")
    header = ["pattern", "config", "Ir/pair", "glibc", "agent .so", "other libs", "loop",
              "added Ir/pair", "added/glibc pair", "samples"]
    for pattern in ("pair", "live"):
        base_total = results[(pattern, "none")][1]
        glibc_pair = results[(pattern, "none")][2].get("glibc", 0) / n
        for config in configs:
            costs, total, by_class, summ = results[(pattern, config)]
            added = None if config == "none" else (total - base_total) / n
            ratio = None if added is None else added / glibc_pair
            samples = sample_count(summ)
            row = [pattern, config, total / n, by_class.get("glibc", 0) / n,
                   by_class.get("agent", 0) / n, by_class.get("other", 0) / n,
                   by_class.get("program", 0) / n, added, ratio]
            rows.append([row[0], row[1]] + [fmt(v, 1) for v in row[2:8]]
                        + [("n/a" if ratio is None else f"{100 * ratio:.1f} %"),
                           "n/a" if samples is None else samples])
            tsv.append([pattern, config, n, total] + [fmt(v, 3) for v in row[2:9]]
                       + ["" if samples is None else samples])
    table(out, header, rows, align="llrrrrrrrr")
    out("  Ir/pair = all instructions in churn_loop and below / N; glibc, agent .so, other libs, loop")
    out("  = self instructions in libc.so.6, libheapwatch.so, other objects (ld.so, libunwind...), the")
    out("  program's loop. added = (Ir/pair with agent) - (Ir/pair without); added/glibc pair divides by")
    out("  the glibc Ir/pair of the run without the agent. samples: from the summary, if it says.")
    out("  Targets (issue 4): added <= 40 Ir/pair and <= 25 % of glibc's pair, for pairs not sampled")
    out("  (rate 0 never samples; at the default rate the rare sampled pairs are averaged in).")
    for pattern in ("pair", "live"):
        for config in configs[1:]:
            t = [x for x in tsv if x[0] == pattern and x[1] == config][0]
            added, ratio = float(t[9]), float(t[10])
            ok = added <= 40 and ratio <= 0.25
            out(f"  {pattern:4} {config:22} added {added:6.1f} Ir/pair, {100 * ratio:5.1f} % of glibc: "
                f"{'within' if ok else 'OUTSIDE'} target")
    write_tsv(os.path.join(r.bindir, f"agent_instr{tsv_suffix}.tsv"),
              ["pattern", "config", "n", "total_ir", "ir_per_pair", "glibc_ir_per_pair",
               "agent_so_ir_per_pair", "other_ir_per_pair", "loop_ir_per_pair",
               "added_ir_per_pair", "added_over_glibc_pair", "samples"], tsv)

    # Per-function self cost: every function of the agent and other
    # non-glibc objects, plus glibc's, side by side for the three configs.
    out("")
    out("  Self Ir per pair by function (object, function, source file), >= 0.05 Ir/pair in a config:")
    for pattern in ("pair", "live"):
        keys = set()
        for config in configs:
            keys.update(k for k, v in results[(pattern, config)][0].items() if v / n >= 0.05)
        order = sorted(keys, key=lambda k: -max(results[(pattern, c)][0].get(k, 0) for c in configs))
        frows = []
        for k in order:
            ob, fn, fi = k
            vals = [results[(pattern, c)][0].get(k, 0) / n for c in configs]
            frows.append([pattern, os.path.basename(ob), fn, os.path.basename(fi)]
                         + [fmt(v, 2) for v in vals])
            func_tsv.append([pattern, os.path.basename(ob), fn, fi] + [fmt(v, 4) for v in vals])
        table(out, ["pattern", "object", "function", "file"] + configs, frows, align="llllrrr")
        out("")
    out("  (a function's inlined parts appear under the file they come from; callgrind_annotate")
    out(f"  listings: {cgdir}/callgrind.*.annotate.txt)")
    write_tsv(os.path.join(r.bindir, f"agent_instr_funcs{tsv_suffix}.tsv"),
              ["pattern", "object", "function", "file"] + [f"ir_per_pair_{c}" for c in configs],
              func_tsv)
    out("")


# --------------------------------------------------------------------------
# Part 2: ns per pair, 1 and 2 threads
# --------------------------------------------------------------------------

def part_time(r, out, quick, tsv_suffix):
    n = 300000 if quick else 5000000
    reps = 5 if quick else 9
    prog = r.prog("agent_churn")
    configs = ["none", "agent@rate=0", f"agent@rate={DEFAULT_RATE_LABEL}"]
    cases = [(p, t) for p in ("pair", "live") for t in (1, 2)]
    out("== 2. Time per malloc+free pair, 1 and 2 threads (agent_churn) ==")
    out(f"N = {n} pairs per thread; {reps} repetitions; within each repetition every case runs each")
    out("config once, in an order that rotates every repetition. ns/pair = loop time / N per thread,")
    out("averaged over threads; wall by the monotonic clock, cpu by the thread's own CPU clock (not")
    out("counting time the thread was descheduled by the machine's other load).")
    for config in configs:
        env = r.config_env(config, os.path.join(r.outroot, "time", config.replace("agent@", "")))
        out(f"  $ {shell_line(env, [prog, '--pattern', 'pair|live', '--threads', '1|2', '--n', str(n)])}")
    samples = {(c, case): [] for c in configs for case in cases}
    cpu = {(c, case): [] for c in configs for case in cases}
    for rep in range(reps):
        for ci, case in enumerate(cases):
            p, t = case
            k = (rep + ci) % len(configs)
            for config in configs[k:] + configs[:k]:
                hwout = r.fresh_dir("time", config.replace("agent@", ""))
                env = r.config_env(config, hwout)
                cmd = [prog, "--pattern", p, "--threads", str(t), "--n", str(n)]
                stdout, _, _ = r.run(cmd, env)
                line = [x for x in stdout.splitlines() if x.startswith("churn ")][-1]
                kv = parse_kv(line)
                samples[(config, case)].append(float(kv["ns_per_pair"]))
                cpu[(config, case)].append(float(kv["cpu_ns_per_pair"]))
    rows, tsv = [], []
    for case in cases:
        p, t = case
        base = median(samples[("none", case)])
        cbase = median(cpu[("none", case)])
        for config in configs:
            xs, cs = samples[(config, case)], cpu[(config, case)]
            med, cmed = median(xs), median(cs)
            rows.append([p, t, config, fmt(med, 2), fmt(min(xs), 2), fmt(max(xs), 2),
                         fmt(med - base, 2) if config != "none" else "", fmt(med / base, 3),
                         fmt(cmed, 2), fmt(cmed - cbase, 2) if config != "none" else "",
                         fmt(cmed / cbase, 3)])
            tsv.append([p, t, config, n, reps, fmt(med, 3), fmt(min(xs), 3), fmt(max(xs), 3),
                        fmt(med - base, 3), fmt(med / base, 4), fmt(cmed, 3), fmt(cmed - cbase, 3),
                        fmt(cmed / cbase, 4), ",".join(fmt(x, 3) for x in xs),
                        ",".join(fmt(x, 3) for x in cs)])
    out("")
    table(out, ["pattern", "threads", "config", "wall ns/pair", "min", "max", "added",
                "ratio", "cpu ns/pair", "added", "cpu ratio"], rows, align="lrlrrrrrrrr")
    out("  medians over the repetitions; ratio = median with / median without the agent (same case,")
    out("  same run); min and max show the spread of the wall figures.")
    write_tsv(os.path.join(r.bindir, f"agent_time{tsv_suffix}.tsv"),
              ["pattern", "threads", "config", "n_per_thread", "reps", "median_ns_per_pair",
               "min_ns", "max_ns", "added_ns", "ratio", "median_cpu_ns_per_pair", "added_cpu_ns",
               "cpu_ratio", "all_ns", "all_cpu_ns"], tsv)
    out("")


# --------------------------------------------------------------------------
# Part 3: wall time of an allocation-heavy program, vs heaptrack
# --------------------------------------------------------------------------

def part_wall(r, out, quick, tsv_suffix):
    rounds = 4 if quick else 60
    reps = 2 if quick else 5
    prog = r.prog("agent_mix")
    have_ht = shutil.which("heaptrack") is not None
    configs = ["none", "agent@rate=0", f"agent@rate={DEFAULT_RATE_LABEL}", "agent@rate=1"]
    if have_ht:
        configs += ["heaptrack", "heaptrack --raw"]
    out("== 3. Wall time of an allocation-heavy program (agent_mix) ==")
    out(f"agent_mix --rounds {rounds}: trees, hash tables, growing vectors, strings, big buffers;")
    out(f"{reps} repetitions, configs interleaved (order rotating). cpu = user+sys of the process and")
    out("its waited-for children (heaptrack's interpreter and compressor run beside the program).")
    if not have_ht:
        out("  heaptrack is not installed: its rows are left out (make bench-agent installs it as root).")
    htdir = r.fresh_dir("heaptrack")
    cmds = {}
    for config in configs:
        base = [prog, "--rounds", str(rounds)]
        if config.startswith("heaptrack"):
            extra = ["--raw"] if config.endswith("--raw") else []
            cmds[config] = (["heaptrack"] + extra + ["-o", os.path.join(htdir, "ht")] + base, {})
        else:
            hwout = os.path.join(r.outroot, "wall", config.replace("agent@", ""))
            env = r.config_env(config, hwout)
            cmds[config] = (base, env)
        out(f"  $ {shell_line(cmds[config][1], cmds[config][0])}")
    walls = {c: [] for c in configs}
    cpus = {c: [] for c in configs}
    checks = {}
    summaries = {}
    for rep in range(reps):
        k = rep % len(configs)
        for config in configs[k:] + configs[:k]:
            cmd, env = cmds[config]
            if env:
                r.fresh_dir("wall", config.replace("agent@", ""))
            for name in os.listdir(htdir):
                os.unlink(os.path.join(htdir, name))
            stdout, wall, cpu = r.run(cmd, env)
            walls[config].append(wall)
            cpus[config].append(cpu)
            line = [x for x in stdout.splitlines() if x.startswith("mix ")][-1]
            checks.setdefault(config, set()).add(line)
            if env:
                summaries[config] = read_summary(env["HEAPWATCH_OUT"])
    if len({frozenset(v) for v in checks.values()}) != 1:
        out(f"  WARNING: the program's output differs between configs: {checks}")
    base_w, base_c = median(walls["none"]), median(cpus["none"])
    rows, tsv = [], []
    for config in configs:
        w, c = median(walls[config]), median(cpus[config])
        s = summaries.get(config)
        mallocs = s.get("mallocs") if s else None
        samples = s.get("samples") if s else None
        rows.append([config, fmt(w, 3), fmt(min(walls[config]), 3), fmt(max(walls[config]), 3),
                     fmt(w / base_w, 3), fmt(c, 3), fmt(c / base_c, 3),
                     "" if mallocs is None else mallocs, "" if samples is None else samples])
        tsv.append([config, rounds, reps, fmt(w, 4), fmt(min(walls[config]), 4),
                    fmt(max(walls[config]), 4), fmt(w / base_w, 4), fmt(c, 4), fmt(c / base_c, 4),
                    "" if mallocs is None else mallocs, "" if samples is None else samples,
                    ",".join(fmt(x, 4) for x in walls[config])])
    out("")
    table(out, ["config", "median wall s", "min", "max", "wall ratio", "median cpu s", "cpu ratio",
                "mallocs seen", "samples"], rows, align="lrrrrrrrr")
    out("  mallocs seen, samples: from the agent's summary of the last repetition.")
    out(f"  program output (same in every config): {sorted(next(iter(checks.values())))[0]}")
    r_def = median(walls[f"agent@rate={DEFAULT_RATE_LABEL}"]) / base_w
    r_one = median(walls["agent@rate=1"]) / base_w
    out(f"  Target: default-rate wall ratio <= 1.05: {r_def:.3f} -> "
        f"{'within' if r_def <= 1.05 else 'OUTSIDE'} target")
    if have_ht:
        r_ht = median(walls["heaptrack"]) / base_w
        out(f"  Target: rate-1 slowdown < half heaptrack's: rate 1 adds {100 * (r_one - 1):.0f} %, "
            f"heaptrack adds {100 * (r_ht - 1):.0f} % (half: {50 * (r_ht - 1):.0f} %) -> "
            f"{'within' if (r_one - 1) < 0.5 * (r_ht - 1) else 'OUTSIDE'} target")
    write_tsv(os.path.join(r.bindir, f"agent_wall{tsv_suffix}.tsv"),
              ["config", "rounds", "reps", "median_wall_s", "min_wall_s", "max_wall_s",
               "wall_ratio", "median_cpu_s", "cpu_ratio", "mallocs_seen", "samples", "all_wall_s"], tsv)
    out("")


# --------------------------------------------------------------------------
# Part 4: agent memory per tracked allocation
# --------------------------------------------------------------------------

def part_memory(r, out, quick, tsv_suffix):
    n = 1000000     # quick too: the target is stated for a large live set
    prog = r.prog("agent_live")
    configs = ["none", f"agent@rate={DEFAULT_RATE_LABEL}", "agent@rate=1"]
    out("== 4. Agent memory per tracked allocation (agent_live) ==")
    out(f"agent_live holds N = {n} blocks of 16..64 bytes live at exit (and N = 0 for the fixed part).")
    out("mapped = summary agent_memory_bytes, inuse = agent_memory_inuse_bytes (both at exit);")
    out("RSS diff = the program's own VmRSS after building the live set, minus the same without the")
    out("agent. tracked = live sampled allocations at exit, from the summary (field named below).")
    res = {}
    for nn in (0, n):
        for config in configs:
            label = config.replace("agent@", "")
            hwout = r.fresh_dir("memory", f"{label}.{nn}")
            env = r.config_env(config, hwout)
            cmd = [prog, "--n", str(nn)]
            out(f"  $ {shell_line(env, cmd)}")
            stdout, _, _ = r.run(cmd, env)
            kv = parse_kv([x for x in stdout.splitlines() if x.startswith("live ")][-1])
            s = read_summary(hwout) if config != "none" else None
            tracked, tlabel = tracked_count(s, config.endswith("rate=1")) if s else (None, "")
            res[(config, nn)] = (int(kv["vmrss_kb"]) * 1024, s, tracked, tlabel)
    rows, tsv, labels = [], [], set()
    for config in configs:
        for nn in (0, n):
            rss, s, tracked, tlabel = res[(config, nn)]
            rss_diff = rss - res[("none", nn)][0]
            mapped = s.get("agent_memory_bytes") if s else None
            inuse = s.get("agent_memory_inuse_bytes") if s else None
            if tlabel:
                labels.add(f"{config}: {tlabel}")

            def per(v):
                return None if v is None or not tracked else v / tracked
            rows.append([config, nn, "" if s is None else s.get("rate", "?"),
                         "" if tracked is None else tracked,
                         "" if s is None else s.get("live_objects"),
                         "" if s is None else fmt(mapped), "" if s is None else fmt(inuse),
                         fmt(rss_diff) if config != "none" else "",
                         "" if s is None else fmt(per(mapped), 1),
                         "" if s is None else fmt(per(inuse), 1),
                         fmt(per(rss_diff), 1) if config != "none" else ""])
            tsv.append([config, nn, "" if tracked is None else tracked, tlabel,
                        "" if s is None else s.get("live_objects"), rss,
                        "" if config == "none" else rss_diff, "" if mapped is None else mapped,
                        "" if inuse is None else inuse, fmt(per(mapped), 2), fmt(per(inuse), 2),
                        fmt(per(rss_diff), 2) if config != "none" else ""])
    out("")
    table(out, ["config", "N", "rate", "tracked", "live_objects", "mapped B", "inuse B", "RSS diff B",
                "mapped/tracked", "inuse/tracked", "RSS diff/tracked"], rows, align="lrrrrrrrrrr")
    for lab in sorted(labels):
        out(f"  tracked, {lab}")
    # marginal cost: (N run - 0 run) / (tracked difference)
    out("  Marginal bytes per tracked allocation ((run with N) - (run with 0)) / (tracked difference):")
    for config in configs[1:]:
        a, b = res[(config, n)], res[(config, 0)]
        if a[2] is None or b[2] is None or a[2] == b[2] or a[1] is None or b[1] is None:
            out(f"    {config}: n/a (tracked count unknown or unchanged)")
            continue
        dt = a[2] - b[2]
        dm = a[1]["agent_memory_bytes"] - b[1]["agent_memory_bytes"]
        di = a[1]["agent_memory_inuse_bytes"] - b[1]["agent_memory_inuse_bytes"]
        dr = (a[0] - res[("none", n)][0]) - (b[0] - res[("none", 0)][0])
        out(f"    {config}: mapped {dm / dt:.1f}, inuse {di / dt:.1f}, RSS diff {dr / dt:.1f} bytes "
            f"({dt} more tracked)")
        tsv.append([config, "marginal", dt, "", "", "", dr, dm, di, fmt(dm / dt, 2),
                    fmt(di / dt, 2), fmt(dr / dt, 2)])
    # What the agent's memory is made of, where the summary says (its *_bytes
    # fields other than the program's own counters).
    program_keys = {"live_bytes", "peak_live_bytes", "alloc_bytes", "free_bytes",
                    "agent_memory_bytes", "agent_memory_inuse_bytes"}
    for config in configs[1:]:
        s1 = res[(config, n)][1]
        t1 = res[(config, n)][2]
        parts = [(k, v) for k, v in flatten(s1 or {}).items()
                 if k.endswith("_bytes") and k not in program_keys and isinstance(v, int)]
        if parts:
            out(f"  {config}, N={n}, agent memory by part (summary): " + ", ".join(
                f"{k} {v}" + (f" ({v / t1:.1f}/tracked)" if t1 else "") for k, v in parts))
    a = res[("agent@rate=1", n)]
    if a[2]:
        worst = max(a[1]["agent_memory_bytes"], a[0] - res[("none", n)][0]) / a[2]
        out(f"  Target: <= 64 bytes per tracked allocation at rate 1: the larger of mapped and RSS diff")
        out(f"  per tracked allocation is {worst:.1f} -> {'within' if worst <= 64 else 'OUTSIDE'} target")
        if not a[3].split()[0] in TRACKED_KEYS:
            out("  (provisional: 'tracked' is the live object count, not a count the agent reports of")
            out("  the allocations it tracks; if the agent does not index them yet, this says little)")
    write_tsv(os.path.join(r.bindir, f"agent_memory{tsv_suffix}.tsv"),
              ["config", "n", "tracked", "tracked_source", "live_objects", "vmrss_bytes",
               "rss_diff_bytes", "agent_memory_bytes", "agent_memory_inuse_bytes",
               "mapped_per_tracked", "inuse_per_tracked", "rss_diff_per_tracked"], tsv)
    out("")


# --------------------------------------------------------------------------

def git_state():
    def git(*a):
        p = subprocess.run(["git"] + list(a), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
        return p.stdout.strip() if p.returncode == 0 else "?"
    head = git("log", "-1", "--format=%h %s")
    dirty = git("status", "--porcelain", "--", "agent", "map", "pprof")
    return head, ("uncommitted changes in agent/ map/ pprof/" if dirty else "clean agent/ map/ pprof/")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--lib", default=None, help="the agent (default BUILD/libheapwatch.so)")
    ap.add_argument("--quick", action="store_true", help="a few seconds in all")
    ap.add_argument("--parts", default="instr,time,wall,memory")
    args = ap.parse_args()
    if args.lib is None:
        args.lib = os.path.join(args.build, "libheapwatch.so")
    os.makedirs(os.path.join(args.build, "bench", "agent-out"), exist_ok=True)
    # Measure one agent throughout: a copy, so a rebuild of BUILD/libheapwatch.so
    # by someone else while this runs cannot change the agent between parts.
    snapshot = os.path.join(args.build, "bench", "agent-out", "libheapwatch.so")
    shutil.copyfile(args.lib, snapshot)
    built = os.path.getmtime(args.lib)
    args.lib = snapshot
    r = Runner(args)
    suffix = "_quick" if args.quick else ""
    out = Out(os.path.join(r.bindir, f"agent{suffix}.txt"))
    head, dirty = git_state()
    with open(args.lib, "rb") as f:
        libsum = hashlib.sha256(f.read()).hexdigest()[:12]
    out(f"heapwatch agent benchmark{' (quick)' if args.quick else ''}, "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    out(f"agent: {r.lib} (sha256 {libsum}, built "
        f"{datetime.datetime.fromtimestamp(built).isoformat(timespec='seconds')}, copied for this run); "
        f"tree at {head} ({dirty})")
    out(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
        f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (shared machine: compare within a run)")
    out("")
    parts = args.parts.split(",")
    if "instr" in parts:
        if shutil.which("valgrind"):
            part_instructions(r, out, args.quick, suffix)
        else:
            out("== 1. skipped: valgrind is not installed ==\n")
    if "time" in parts:
        part_time(r, out, args.quick, suffix)
    if "wall" in parts:
        part_wall(r, out, args.quick, suffix)
    if "memory" in parts:
        part_memory(r, out, args.quick, suffix)
    out(f"load average at the end: {os.getloadavg()[0]:.2f}; text in "
        f"{os.path.join(r.bindir, 'agent' + suffix + '.txt')}, TSV files agent_*{suffix}.tsv beside it")


if __name__ == "__main__":
    main()
