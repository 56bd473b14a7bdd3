# agent/: the LD_PRELOAD agent. Needs map/ (and, for profiles, pprof/).
MODULES += agent
agent_SRCS := $(sort $(wildcard agent/*.c))
agent_DEPS := pprof
agent_LIBS := -lunwind-x86_64 -lunwind -lzstd -ldl -lpthread
# No SLP vectorisation: it turns the hot path's two counter increments
# into SSE loads, adds and stores, longer than two `add` to memory.
agent_CPPFLAGS := -fno-tree-slp-vectorize

# The shared library: release objects of agent/ and everything it needs.
# -Wl,-z,nodelete: a dlclose can never unmap code a thread is running.
#
# Every library in the agent's DT_NEEDED list is opened, mapped and
# relocated by the dynamic loader in every process it is preloaded into
# (issue 13: 0.1-0.3 ms each for /bin/true). So the agent links libzstd,
# libprotobuf-c and zlib statically (Debian's .a files are PIC: no
# R_X86_64_32 relocation outside debug sections) and needs no libm
# (pprof/pprof_math.c). --exclude-libs,ALL makes their symbols local: a
# program's own zlib or zstd never binds to our copy, nor ours to its.
# libunwind stays shared: Debian's libunwind*.a are not PIC. libiberty
# (libiberty-dev: the C++ demangler, pprof/pprof_demangle.c) has no .so.
AGENT_STATIC_LIBS := -lzstd -lprotobuf-c -lz -liberty
AGENT_SO_LIBS = $(filter-out $(AGENT_STATIC_LIBS),$(call mod_libs,agent)) \
                -Wl,--exclude-libs,ALL -Wl,-Bstatic $(AGENT_STATIC_LIBS) -Wl,-Bdynamic
AGENT_SO_LINK = $(CC) -shared -fPIC -Wl,-z,nodelete -Wl,--no-undefined -o $@ $^ $(AGENT_SO_LIBS)
$(BUILD)/libheapwatch.so: $(call mod_objs,rel,agent)
	@mkdir -p $(@D)
	$(AGENT_SO_LINK)
PRODUCTS += $(BUILD)/libheapwatch.so
TEST_PREREQS += $(BUILD)/libheapwatch.so

# The debug agent: the same, with AGENT_ASSERT and the map's checks on
# (lock ranks, the work lock's holder, the invariants the comments state).
# tests/run.sh runs DEBUG_AGENT_SCRIPTS a second time under it; a line
# "heapwatch: assertion failed" in any integration log fails the run.
$(BUILD)/debug/libheapwatch.so: $(call mod_objs,adbg,agent)
	@mkdir -p $(@D)
	$(AGENT_SO_LINK)
TEST_PREREQS += $(BUILD)/debug/libheapwatch.so
DEBUG_AGENT_SCRIPTS := agent_basics agent_lifecycle agent_profiles agent_alerts agent_http agent_fleet \
                       safety_exit safety_fds safety_fdfork safety_thread

# Unit tests link all of agent/ but the shim, which would interpose malloc
# in the test binary, and preload.c, whose constructor would start the
# agent in it; a double stands in for the shim (the next allocator's usable
# size, no sanitizer to step aside for).
agent_TEST_SRCS := $(filter-out agent/shim.c agent/preload.c,$(agent_SRCS)) \
                   tests/unit/support/agent_shim_double.c

# Test programs run under the agent (plain builds: no sanitizer under LD_PRELOAD).
AGENT_PROGS := $(BUILD)/progs/agent_truth $(BUILD)/progs/agent_truth_cxx $(BUILD)/progs/agent_fork \
               $(BUILD)/progs/agent_sites $(BUILD)/progs/agent_leak $(BUILD)/progs/agent_http \
               $(BUILD)/progs/agent_unseen_free $(BUILD)/progs/agent_peak $(BUILD)/progs/agent_fleet \
               $(BUILD)/progs/agent_solo
$(BUILD)/progs/agent_%: tests/integration/progs/agent_%.c agent/agent.h
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O1 -g -pthread -Wall -Wextra -I. $< -o $@ -ldl
$(BUILD)/progs/agent_%: tests/integration/progs/agent_%.cc agent/agent.h
	@mkdir -p $(@D)
	$(CXX) -std=c++17 -O1 -g -Wall -Wextra -I. $< -o $@ -ldl
TEST_PREREQS += $(AGENT_PROGS)
