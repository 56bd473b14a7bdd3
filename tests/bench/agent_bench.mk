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

.PHONY: bench-agent bench-agent-quick bench-agent-deps
bench-agent-deps:
	@missing=""; for p in $(AGENT_BENCH_DEBS); do \
	  [ -e "$${p#*:}" ] || missing="$$missing $${p%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "bench-agent: installing$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "bench-agent: need root to apt-get install:$$missing" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing; } || \
	    { echo "bench-agent: apt-get install failed for:$$missing" >&2; exit 1; }; \
	fi

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
