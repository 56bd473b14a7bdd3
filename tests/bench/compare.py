#!/usr/bin/env python3
"""compare.py - heapwatch beside heaptrack and jemalloc's profiler (issue 13's table).

Run by `make bench-compare` (full: about 10 minutes) and
`make bench-compare-quick` (seconds, smaller inputs, same code). One table:
a row per workload, a column per profiler, each cell the median over
--reps repetitions of

    CPU time of the run under the profiler / CPU time of the bare run
                                              of the same repetition

where a run's CPU time is user + system of the whole process tree the
benchmark waited for (the rusage os.wait4 returns: the program and every
descendant it, or its descendants, waited for). For heaptrack that is its
launcher script, the program, heaptrack_interpret and the compressor.
Runs are interleaved: in every repetition each workload runs under every
configuration back to back, the order of the configurations rotating by
one each repetition, so slow phases of the shared machine fall on all of
them alike.

Workloads (the issue's rows; inputs sized for 0.35 to 1.6 s of bare CPU; churn is
the shortest because heaptrack makes it some 50 times slower):
  churn    build/bench/agent_churn --pattern live --threads 2: two threads,
           each a loop of malloc+free with a ring of --live blocks kept live
  python   /usr/bin/python3 tests/bench/compare_work.py with
           PYTHONMALLOC=malloc (every object through malloc): dicts, lists,
           str formatting, sort, a JSON round trip
  perl     perl tests/bench/compare_work.pl: hash and string work
  cc1      cc1 -quiet -O2 on a generated 20,000-line C file
           (BUILD/bench/compare_cc1.c; cc1 is `gcc -print-prog-name=cc1`)
  threads  build/bench/agent_threads (tests/bench/agent_threads.cc): 16
           threads of std::string / std::vector / std::map work on glibc

Configurations:
  bare              the program alone
  heaptrack         heaptrack -o DIR/ht PROGRAM...  (its default mode: records
                    every allocation and interprets on the fly)
  jemalloc prof     LD_PRELOAD=libjemalloc.so.2
                    MALLOC_CONF=prof:true,lg_prof_sample:19 (jemalloc replaces
                    glibc's malloc and samples every 512 KiB on average; it
                    writes no file at exit unless asked to)
  interposer only   LD_PRELOAD=BUILD/bench/libinterpose_only.so
                    (tests/bench/interpose_only.c): malloc, free, calloc and
                    realloc forwarded to glibc's, nothing else: what any
                    LD_PRELOAD agent pays before it counts anything, the
                    floor under the default-rate column
  heapwatch         LD_PRELOAD=libheapwatch.so HEAPWATCH_OUT=DIR (default rate)
  heapwatch rate 1  the same with HEAPWATCH_RATE=1 (every allocation)
Output directories are on the same filesystem (under BUILD/bench) and are
emptied after every run. Each run's exit status must be 0 and its stdout
must hold the bare run's output (the program's checksum line): a profiler
that changes a program's result fails the benchmark.

Before measuring, the script checks that this jemalloc is built with
profiling (MALLOC_CONF=prof:true,prof_final:true must write a .heap file);
if it is not, the column is measured as "jemalloc (no prof)" and says so.

Targets (issue 13) are printed beside the heapwatch cells, never used to
produce a figure: default rate <= 1.03 on python, perl and cc1, <= 1.05 on
churn; rate 1 <= 3.3 (python), 1.75 (perl), 1.5 (cc1), 7 (churn), and on
every workload rate 1's added cost at most half heaptrack's:
(rate1 - 1) <= (heaptrack - 1) / 2, both sides printed.

Below the table: the first and third quartiles of the per-repetition
ratios (the noise), and min CPU(config) / min CPU(bare), a check on the
medians that a busy machine disturbs least.

Files: BUILD/bench/compare.txt (what is printed) and compare.tsv (one row
per workload); --quick writes compare_quick.{txt,tsv}.
"""

import argparse
import datetime
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_bench import Out, git_state, table, write_tsv  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
JEMALLOC_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
                       "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                       "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2")
JEMALLOC_CONF = "prof:true,lg_prof_sample:19"

# Targets of issue 13 (ratios to bare). None: the issue states none.
TARGET_DEFAULT = {"churn": 1.05, "python": 1.03, "perl": 1.03, "cc1": 1.03, "threads": None}
TARGET_RATE1 = {"churn": 7.0, "python": 3.3, "perl": 1.75, "cc1": 1.5, "threads": None}

CONFIGS = ("bare", "heaptrack", "jemalloc prof", "interposer only", "heapwatch", "heapwatch rate 1")
INTERPOSE_LIB = None                     # BUILD/bench/libinterpose_only.so, set by main


# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------

def gen_c_file(path, lines_total, functions):
    """A C file of exactly lines_total lines: `functions` small functions
    with a loop and branches (what -O2 works on), each after a constant
    table (cheap to compile: it fills the line count)."""
    out = ["/* generated by tests/bench/compare.py: the cc1 -O2 workload */",
           "struct rec { int a; long b; double c; struct rec *next; };"]
    per = (lines_total - len(out)) // functions
    for i in range(functions):
        body = [f"long f{i}(struct rec *r, int n, const char *s)",
                "{",
                "    long acc = 0;",
                "    for (int k = 0; k < n; k++) {",
                f"        acc += (long)k * {i % 89 + 3} + r->b + data{i}[k & 31];",
                "        if (s[k & 7] == 'x')",
                f"            acc ^= acc >> {i % 13 + 1};",
                "        else if (r->next)",
                "            acc += r->next->a;",
                "    }",
                "    return acc;",
                "}",
                ""]
        rows = max(4, per - len(body) - 2)
        out.append(f"const int data{i}[] = {{")
        out += ["    " + ", ".join(str((i * 7 + j * 13 + k) % 1000) for k in range(8)) + ","
                for j in range(rows)]
        out.append("};")
        out += body
    out += [""] * max(0, lines_total - len(out))
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return len(out)


def workloads(build, quick):
    """[(name, label, argv, extra env)] of the workloads that can run here."""
    bench = os.path.join(build, "bench")
    ws = []
    churn = os.path.join(bench, "agent_churn")
    n = 2000000 if quick else 12000000
    ws.append(("churn", "malloc churn, 2 threads",
               [churn, "--pattern", "live", "--threads", "2", "--n", str(n), "--live", "4096"], {}))
    py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    ws.append(("python", "python3, PYTHONMALLOC=malloc, dict/list/str/json work",
               [py, os.path.join(HERE, "compare_work.py"), "3" if quick else "36"],
               {"PYTHONMALLOC": "malloc"}))
    perl = shutil.which("perl")
    if perl:
        ws.append(("perl", "perl, hash and string work",
                   [perl, os.path.join(HERE, "compare_work.pl"), "1" if quick else "8"], {}))
    cc1 = subprocess.run(["gcc", "-print-prog-name=cc1"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True).stdout.strip()
    if cc1 and os.path.isabs(cc1) and os.access(cc1, os.X_OK):
        src = os.path.join(bench, "compare_cc1_quick.c" if quick else "compare_cc1.c")
        nlines = gen_c_file(src, 2000 if quick else 20000, 20 if quick else 200)
        ws.append(("cc1", f"cc1 -O2 on a generated {nlines}-line C file",
                   [cc1, "-quiet", "-O2", src, "-o", "/dev/null"], {}))
    ws.append(("threads", "C++, 16 threads allocating (glibc)",
               [os.path.join(bench, "agent_threads"), "--threads", "16",
                "--rounds", "30" if quick else "300"], {}))
    return ws


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------

def spawn(argv, env, outpath):
    """Runs argv with stdout to outpath and stderr to outpath + ".err";
    returns (cpu seconds of the waited-for tree, wall seconds, status)."""
    fo = os.open(outpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fe = os.open(outpath + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        acts = [(os.POSIX_SPAWN_DUP2, fo, 1), (os.POSIX_SPAWN_DUP2, fe, 2)]
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=acts)
        _, status, ru = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
    finally:
        os.close(fo)
        os.close(fe)
    return ru.ru_utime + ru.ru_stime, wall, os.waitstatus_to_exitcode(status)


def stable(text):
    """A program's output without its own timings (agent_churn prints
    ns_per_pair= and cpu_ns_per_pair=): what must not change under a profiler."""
    return re.sub(r"\S*ns_per_pair=\S+", "", text)


def empty_dir(d):
    for name in os.listdir(d):
        p = os.path.join(d, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass


def jemalloc_check(lib, work):
    """(has profiling, one line saying what was checked)."""
    d = tempfile.mkdtemp(prefix="jeprof-", dir=work)
    env = dict(os.environ, LD_PRELOAD=lib,
               MALLOC_CONF=f"prof:true,prof_final:true,prof_prefix:{d}/jeprof")
    prog = ["/usr/bin/perl", "-e", "1"] if os.path.exists("/usr/bin/perl") else [sys.executable, "-c", "pass"]
    p = subprocess.run(prog, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    heaps = [n for n in os.listdir(d) if n.endswith(".heap")]
    shutil.rmtree(d, ignore_errors=True)
    if heaps:
        return True, f"{lib} is built with profiling (prof:true,prof_final:true wrote {heaps[0]})"
    err = p.stderr.strip().splitlines()
    return False, (f"{lib} is NOT built with profiling (prof_final wrote no .heap file"
                   + (f"; it said: {err[0]}" if err else "") + ")")


def config_argv_env(config, argv, extra, lib, outdir, jelib):
    env = dict(extra)
    if config == "heaptrack":
        return [shutil.which("heaptrack") or "heaptrack", "-o", os.path.join(outdir, "ht")] + argv, env
    if config == "jemalloc prof":
        env.update({"LD_PRELOAD": jelib, "MALLOC_CONF": JEMALLOC_CONF})
    elif config == "interposer only":
        env["LD_PRELOAD"] = INTERPOSE_LIB
    elif config.startswith("heapwatch"):
        env.update({"LD_PRELOAD": lib, "HEAPWATCH_OUT": outdir})
        if config == "heapwatch rate 1":
            env["HEAPWATCH_RATE"] = "1"
    return list(argv), env


def shell_line(env, argv):
    return " ".join([f"{k}={v}" for k, v in env.items()] + argv)


# --------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------

def quartiles(xs):
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def verdict(value, target):
    if value is None or target is None:
        return ""
    return "met" if value <= target else "missed"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--lib", default=None, help="the agent (default BUILD/libheapwatch.so)")
    ap.add_argument("--quick", action="store_true", help="small inputs, 3 repetitions: seconds")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 7; 3 with --quick)")
    ap.add_argument("--only", default=None, help="comma-separated workload names (default all)")
    args = ap.parse_args()
    reps = args.reps or (3 if args.quick else 7)
    suffix = "_quick" if args.quick else ""
    build = os.path.abspath(args.build)
    bench = os.path.join(build, "bench")
    os.makedirs(bench, exist_ok=True)
    work = os.path.join(bench, "compare-work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    # One copy of the agent for the whole run: a rebuild meanwhile changes nothing.
    src_lib = os.path.abspath(args.lib or os.path.join(build, "libheapwatch.so"))
    lib = os.path.join(work, "libheapwatch.so")
    shutil.copyfile(src_lib, lib)
    with open(lib, "rb") as f:
        libsum = hashlib.sha256(f.read()).hexdigest()[:12]
    jelib = next((p for p in JEMALLOC_CANDIDATES if os.path.exists(p)), None)
    have_ht = shutil.which("heaptrack") is not None

    out = Out(os.path.join(bench, f"compare{suffix}.txt"))
    head, dirty = git_state()
    out(f"heapwatch beside heaptrack and jemalloc prof{' (quick)' if args.quick else ''}, "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    out(f"agent: {src_lib} (sha256 {libsum}, copied for this run); tree at {head} ({dirty})")
    out(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
        f"(shared machine: compare within a run)")
    configs = ["bare"]
    if have_ht:
        configs.append("heaptrack")
    else:
        out("heaptrack is not installed: its column is left empty (make bench-compare installs it as root)")
    je_label = "jemalloc prof"
    if jelib:
        has_prof, line = jemalloc_check(jelib, work)
        out("jemalloc: " + line)
        if not has_prof:
            je_label = "jemalloc (no prof)"
        configs.append("jemalloc prof")
    else:
        out("libjemalloc.so.2 is not installed: its column is left empty")
    global INTERPOSE_LIB
    INTERPOSE_LIB = os.path.join(bench, "libinterpose_only.so")
    if os.path.exists(INTERPOSE_LIB):
        configs.append("interposer only")
    else:
        out(f"{INTERPOSE_LIB} is not built: its column is left empty (make bench-compare builds it)")
    configs += ["heapwatch", "heapwatch rate 1"]

    ws = workloads(build, args.quick)
    if args.only:
        keep = args.only.split(",")
        ws = [w for w in ws if w[0] in keep]
    outdir = os.path.join(work, "out")
    os.makedirs(outdir)
    out(f"output directories: {outdir} ({fs_type(outdir)}), emptied after every run")
    out(f"CPU time = user + system of the waited-for process tree (wait4); "
        f"{reps} repetitions, configurations interleaved (order rotates each repetition)")
    out("")
    out("commands (DIR = the output directory):")
    for name, label, argv, extra in ws:
        out(f"  {name}: {label}")
        for c in configs:
            a, e = config_argv_env(c, argv, extra, lib, "DIR", jelib)
            out(f"    {c:17s} {shell_line(e, a)}")
    out("")

    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("HEAPWATCH_", "MALLOC_CONF", "PYTHONMALLOC")) and k != "LD_PRELOAD"}
    outfile = os.path.join(work, "stdout.txt")
    expected = {}
    for name, label, argv, extra in ws:      # warm the caches; the expected output
        env = dict(base_env)
        env.update(extra)
        cpu, _, status = spawn(argv, env, outfile)
        if status != 0:
            raise SystemExit(f"compare: {name} fails bare (status {status}): {' '.join(argv)}")
        with open(outfile) as f:
            expected[name] = stable(f.read())
        out(f"warm-up {name}: bare {cpu:.2f} s CPU")
    out("")

    cpus = {(w[0], c): [] for w in ws for c in configs}
    ratios = {(w[0], c): [] for w in ws for c in configs}
    t_start = time.monotonic()
    loads = []
    for rep in range(reps):
        order = configs[rep % len(configs):] + configs[:rep % len(configs)]
        for name, label, argv, extra in ws:
            got = {}
            for c in order:
                a, e = config_argv_env(c, argv, extra, lib, outdir, jelib)
                env = dict(base_env)
                env.update(e)
                cpu, wall, status = spawn(a, env, outfile)
                with open(outfile) as f:
                    text = stable(f.read())
                if status != 0 or expected[name] not in text:
                    with open(outfile + ".err") as f:
                        sys.stderr.write(f.read()[-2000:])
                    raise SystemExit(f"compare: {name} under {c}: status {status}"
                                     f"{'' if expected[name] in text else ', output differs from bare'}: "
                                     f"{shell_line(e, a)}")
                got[c] = cpu
                loads.append(os.getloadavg()[0])
                cpus[(name, c)].append(cpu)
                empty_dir(outdir)
            for c in configs:
                ratios[(name, c)].append(got[c] / got["bare"])
        out(f"repetition {rep + 1}/{reps} done, {time.monotonic() - t_start:.0f} s, "
            f"load average {os.getloadavg()[0]:.2f}")
    out("")

    med = {k: statistics.median(v) for k, v in ratios.items()}
    out(f"load average (1 min) after each run: {min(loads):.2f} to {max(loads):.2f}, median "
        f"{statistics.median(loads):.2f}, on {os.cpu_count()} CPUs")
    if max(loads) > (os.cpu_count() or 1):
        out("  above the CPU count: other processes shared the cores and caches with the runs, and")
        out("  a program's CPU time can vary by half between repetitions; read the quartiles below")
        out("  before a target's verdict")
    out("")
    out(f"== CPU time under each profiler / bare, median of {reps} paired runs ==")
    header = ["workload", "bare s", "heaptrack", je_label, "interposer", "heapwatch", "target", "",
              "rate 1", "target", "", "rate 1 adds", "half heaptrack's", ""]
    rows, tsv_rows = [], []
    for name, label, argv, extra in ws:
        bare_s = statistics.median(cpus[(name, "bare")])
        ht = med.get((name, "heaptrack"))
        je = med.get((name, "jemalloc prof"))
        io = med.get((name, "interposer only"))
        d = med[(name, "heapwatch")]
        r1 = med[(name, "heapwatch rate 1")]
        td, t1 = TARGET_DEFAULT.get(name), TARGET_RATE1.get(name)
        added, half = r1 - 1, (ht - 1) / 2 if ht is not None else None
        rows.append([label, f"{bare_s:.2f}", f"{ht:.2f}" if ht else "-", f"{je:.2f}" if je else "-",
                     f"{io:.3f}" if io else "-", f"{d:.3f}", f"<= {td:.2f}" if td else "-", verdict(d, td),
                     f"{r1:.2f}", f"<= {t1:.2f}" if t1 else "-", verdict(r1, t1),
                     f"{added:+.2f}", f"{half:+.2f}" if half is not None else "-", verdict(added, half)])
        tsv_rows.append([name, label, f"{bare_s:.3f}", f"{ht:.3f}" if ht else "", f"{je:.3f}" if je else "",
                         f"{d:.3f}", f"{td:.2f}" if td else "", verdict(d, td),
                         f"{r1:.3f}", f"{t1:.2f}" if t1 else "", verdict(r1, t1),
                         f"{added:.3f}", f"{half:.3f}" if half is not None else "", verdict(added, half), reps,
                         f"{io:.3f}" if io else ""])
    table(out, header, rows, align="lrrrrrlrrlrrrl")
    write_tsv(os.path.join(bench, f"compare{suffix}.tsv"),
              ["workload", "label", "bare_cpu_s", "heaptrack", "jemalloc_prof", "heapwatch_default",
               "default_target", "default_verdict", "heapwatch_rate1", "rate1_target", "rate1_verdict",
               "rate1_added", "half_heaptrack_added", "half_heaptrack_verdict", "reps",
               "interposer_only"], tsv_rows)
    out("  (bare s: median CPU seconds of the bare program; each ratio is the median over the")
    out("   repetitions of CPU(config) / CPU(bare) within one repetition. rate 1 adds = rate 1 - 1;")
    out("   half heaptrack's = (heaptrack - 1) / 2; met when the first is at most the second.)")
    out("")
    out("== spread: first and third quartile of the per-repetition ratios ==")
    srows = []
    for name, label, argv, extra in ws:
        r = [name]
        for c in configs[1:]:
            lo, hi = quartiles(ratios[(name, c)])
            r.append(f"{lo:.3f}..{hi:.3f}")
        srows.append(r)
    table(out, ["workload"] + [je_label if c == "jemalloc prof" else c for c in configs[1:]], srows)
    out("")
    out("== the same as ratios of the fastest runs: min CPU(config) / min CPU(bare) ==")
    out("  (a busy machine only ever adds CPU time to a run -- cache and TLB refills after other")
    out("   processes, frequency -- so the minima are the least disturbed; a check on the medians)")
    mrows = []
    for name, label, argv, extra in ws:
        b = min(cpus[(name, "bare")])
        mrows.append([name] + [f"{min(cpus[(name, c)]) / b:.3f}" for c in configs[1:]])
    table(out, ["workload"] + [je_label if c == "jemalloc prof" else c for c in configs[1:]], mrows)
    out("")
    shutil.rmtree(work, ignore_errors=True)
    out(f"load average at the end: {os.getloadavg()[0]:.2f}; table in "
        f"{os.path.join(bench, 'compare' + suffix + '.tsv')}")


def fs_type(path):
    p = subprocess.run(["stat", "-f", "-c", "%T", path], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return p.stdout.strip() or "?"


if __name__ == "__main__":
    main()
