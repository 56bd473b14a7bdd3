# tests/bench/agent_bench.mk - what the agent costs a program (issue 4),
# included by the top Makefile after tests/bench/bench.mk.
#
#   make bench-agent        the full run (a few minutes); text in
#                           $(BUILD)/bench/agent.txt, tables in
#                           $(BUILD)/bench/agent_{instr,instr_funcs,time,wall,memory}.tsv
#   make bench-agent-quick  the same four parts, smaller (seconds; for make
#                           demo); files with a _quick suffix
#   make bench-agent-exit   the per-process cost of short programs
#                           (tests/bench/agent_exit.py)
#   make bench-agent-jobs   whole jobs: make -j2 of this project, a loop of
#                           1,000 short commands (tests/bench/agent_jobs.py)
#   make bench-compare      issue 13's table: CPU time under heaptrack,
#                           jemalloc prof, the agent at its default rate and
#                           at rate 1, as ratios to the bare program, on five
#                           workloads (tests/bench/compare.py; ~10 min);
#                           $(BUILD)/bench/compare.{txt,tsv}
#   make bench-compare-quick  the same, small inputs (seconds)
#   make bench-compare-perf   where the agent's time goes in them (perf;
#                           WORKLOADS=python,cc1,... ; default python)
#   make bench-summary      one summary of the tables above and of bench-map's
#                           (tests/bench/summary.py); `make bench` ends with it
#
# The programs (tests/bench/agent_{churn,mix,live}.c) link nothing of
# heapwatch: the agent, build/libheapwatch.so as it is at the time of the
# run, is preloaded. tests/bench/agent_bench.py runs them and says what each
# part measures. It needs valgrind (callgrind) and heaptrack; when one is
# missing and we are root, the target installs it with apt-get the way
# `make deps` installs DEB_PACKAGES.

AGENT_BENCH_DIR   := $(BUILD)/bench
AGENT_BENCH_PROGS := $(addprefix $(AGENT_BENCH_DIR)/,agent_churn agent_mix agent_live)
# "package:file that proves it is installed", as DEB_PACKAGES
AGENT_BENCH_DEBS  := valgrind:/usr/bin/valgrind heaptrack:/usr/bin/heaptrack python3:/usr/bin/python3

# Plain -O2, no -march=native, no sanitizer (they run under LD_PRELOAD).
$(AGENT_BENCH_DIR)/agent_%: tests/bench/agent_%.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -pthread $(WARN) $< -o $@

# bench_install_debs TAG, "package:file" list: apt-get install the packages
# whose file is missing (as root; otherwise one line naming them, and fail).
define bench_install_debs
@missing=""; for p in $(2); do \
  [ -e "$${p#*:}" ] || missing="$$missing $${p%%:*}"; done; \
if [ -n "$$missing" ]; then \
  echo "$(1): installing$$missing"; \
  if [ "$$(id -u)" != 0 ]; then echo "$(1): need root to apt-get install:$$missing" >&2; exit 1; fi; \
  export DEBIAN_FRONTEND=noninteractive; \
  apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing; } || \
    { echo "$(1): apt-get install failed for:$$missing" >&2; exit 1; }; \
fi
endef

.PHONY: bench-agent bench-agent-quick bench-agent-deps
bench-agent-deps:
	$(call bench_install_debs,bench-agent,$(AGENT_BENCH_DEBS))

bench-agent: bench-agent-deps $(BUILD)/libheapwatch.so $(AGENT_BENCH_PROGS)
	python3 tests/bench/agent_bench.py --build $(BUILD)

bench-agent-quick: bench-agent-deps $(BUILD)/libheapwatch.so $(AGENT_BENCH_PROGS)
	python3 tests/bench/agent_bench.py --build $(BUILD) --quick

BENCH_TARGETS += bench-agent

# What a short process pays (issue 13): /bin/true, perl -e 1 and cc1 on an
# empty file, bare and under the agent (HEAPWATCH_OUT on tmpfs and on the
# disk), interleaved; $(BUILD)/bench/agent_exit.{txt,tsv}. About 10 s.
.PHONY: bench-agent-exit
bench-agent-exit: $(BUILD)/libheapwatch.so
	python3 tests/bench/agent_exit.py --build $(BUILD) --variant fsync:HEAPWATCH_FSYNC=on

BENCH_TARGETS += bench-agent-exit

# What whole jobs pay (issue 13): a full `make -j2` of this project into a
# fresh BUILD directory and a shell loop of 1,000 small commands, bare and
# under `heapwatch run` with the output on the disk and on a tmpfs,
# interleaved, 3 runs each (tests/bench/agent_jobs.py);
# $(BUILD)/bench/agent_jobs.{txt,tsv}. A few minutes (the builds).
.PHONY: bench-agent-jobs
bench-agent-jobs: $(BUILD)/libheapwatch.so $(BUILD)/heapwatch
	python3 tests/bench/agent_jobs.py --build $(BUILD)

BENCH_TARGETS += bench-agent-jobs

# Issue 13's comparison table (tests/bench/compare.py says what it measures).
# agent_threads is C++ on glibc's allocator (operator new -> malloc).
COMPARE_DEBS := heaptrack:/usr/bin/heaptrack libjemalloc2:/usr/lib/$(shell $(CC) -print-multiarch)/libjemalloc.so.2 \
                python3:/usr/bin/python3 perl:/usr/bin/perl gcc:/usr/bin/gcc g++:/usr/bin/g++
COMPARE_PROGS := $(AGENT_BENCH_DIR)/agent_churn $(AGENT_BENCH_DIR)/agent_threads $(AGENT_BENCH_DIR)/libinterpose_only.so

# The "interposer only" column: the allocation functions forwarded, nothing
# else (tests/bench/interpose_only.c).
$(AGENT_BENCH_DIR)/libinterpose_only.so: tests/bench/interpose_only.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -shared -fPIC -Wall -Wextra $(filter -Werror,$(WARN)) $< -o $@ -ldl

$(AGENT_BENCH_DIR)/agent_threads: tests/bench/agent_threads.cc
	@mkdir -p $(@D)
	$(CXX) -std=c++17 -O2 -g -pthread -Wall -Wextra -Wshadow $(filter -Werror,$(WARN)) $< -o $@

.PHONY: bench-compare bench-compare-quick bench-compare-deps
bench-compare-deps:
	$(call bench_install_debs,bench-compare,$(COMPARE_DEBS))

bench-compare: bench-compare-deps $(BUILD)/libheapwatch.so $(COMPARE_PROGS)
	python3 tests/bench/compare.py --build $(BUILD)

bench-compare-quick: bench-compare-deps $(BUILD)/libheapwatch.so $(COMPARE_PROGS)
	python3 tests/bench/compare.py --build $(BUILD) --quick

BENCH_TARGETS += bench-compare

# Where the agent's time goes in those workloads (python by default):
# perf record -e cpu-clock -g bare, at the default rate and at rate 1; self
# shares per object and per function, the hottest instruction of the top
# agent functions (tests/bench/compare_perf.py); $(BUILD)/bench/compare_perf.txt.
# About a minute; not in BENCH_TARGETS (it explains the table).
.PHONY: bench-compare-perf
bench-compare-perf: bench-compare-deps $(BUILD)/libheapwatch.so $(COMPARE_PROGS)
	$(call bench_install_debs,bench-compare-perf,linux-perf:/usr/bin/perf)
	python3 tests/bench/compare_perf.py --build $(BUILD) $(if $(WORKLOADS),--workloads $(WORKLOADS))

# Last of `make bench` (the top Makefile runs it after every other
# BENCH_TARGETS entry): one summary of compare.tsv, agent_exit.tsv and
# map.tsv; a missing file is one line saying so.
.PHONY: bench-summary
bench-summary:
	@python3 tests/bench/summary.py --build $(BUILD)

BENCH_TARGETS += bench-summary

# heapwatch check and report on runs of 5,000 and 20,000 processes, and the
# bytes each process writes (issue 15; tests/bench/tools_bench.py): text in
# $(BUILD)/bench/tools.txt, table in tools.tsv.
.PHONY: bench-tools
bench-tools: $(BUILD)/libheapwatch.so $(BUILD)/heapwatch
	python3 tests/bench/tools_bench.py --build $(BUILD)
BENCH_TARGETS += bench-tools
