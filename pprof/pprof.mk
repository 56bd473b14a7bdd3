# pprof/: profile.proto writer, in-process symbolization, atomic gzip output.
# Needs map/ (map_allocator_t only), protobuf-c (protoc-c + libprotobuf-c) and zlib.
MODULES += pprof

PPROF_GEN := $(BUILD)/gen/pprof
pprof_SRCS := $(sort $(wildcard pprof/*.c)) $(PPROF_GEN)/profile.pb-c.c
pprof_DEPS := map
# libiberty: the C++ demangler (pprof_demangle.c; a static archive only).
pprof_LIBS := -lprotobuf-c -lz -liberty
pprof_CPPFLAGS :=

# profile.proto -> $(BUILD)/gen/pprof/profile.pb-c.{c,h}. A pattern rule
# with two targets is one recipe run making both (safe under make -j).
$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: %.proto
	$(call require_pkgs,protobuf-c-compiler libprotobuf-c-dev)
	@mkdir -p $(@D)
	protoc-c --c_out=$(BUILD)/gen -I. $<

# Every object of the module (and the tests that include the generated
# header) waits for the generated header. The generated code compiles
# cleanly with our full warning set (checked with gcc 12 and clang 14), so
# it gets no special flags; should a protobuf-c release change that, add
# them here with a target-specific variable on the objects of
# $(PPROF_GEN)/profile.pb-c.c only.
PPROF_OBJS := $(foreach v,$(VARIANTS),$(call objs,$(v),$(pprof_SRCS)))
$(PPROF_OBJS): $(PPROF_GEN)/profile.pb-c.h
.SECONDARY: $(PPROF_GEN)/profile.pb-c.c $(PPROF_GEN)/profile.pb-c.h

# ---------------------------------------------------------------------------
# Integration test programs (tests/integration/pprof_*.sh), built by
# `make test` through TEST_PREREQS. Built -O0 with frame pointers and no
# sibling calls so every allocation site keeps its own frame.
# ---------------------------------------------------------------------------
PPROF_PROGS := $(BUILD)/pprof-progs
PPROF_PROG_SRC := tests/integration/progs
PPROF_REL_OBJS := $(call objs,rel,$(pprof_SRCS) $(map_SRCS))
PPROF_PROG_FLAGS := -g -O0 -fno-omit-frame-pointer -fno-optimize-sibling-calls \
    -fno-inline -I. -I$(BUILD)/gen -I$(PPROF_PROG_SRC)
PPROF_PROG_CFLAGS := -std=gnu11 $(WARN) $(PPROF_PROG_FLAGS)
PPROF_PROG_LIBS := -lprotobuf-c -lz -liberty -lm
PPROF_LIBDIR := $(abspath $(PPROF_PROGS))

$(PPROF_PROGS)/libpprof_sites_lib.so: $(PPROF_PROG_SRC)/pprof_sites_lib.c $(PPROF_PROG_SRC)/pprof_sites.h
	@mkdir -p $(@D)
	$(CC) $(PPROF_PROG_CFLAGS) -fPIC -shared $< -o $@
$(PPROF_PROGS)/libpprof_sites_dl.so: $(PPROF_PROG_SRC)/pprof_sites_dl.c $(PPROF_PROG_SRC)/pprof_sites.h
	@mkdir -p $(@D)
	$(CC) $(PPROF_PROG_CFLAGS) -fPIC -shared $< -o $@
# A library without a GNU build ID note.
$(PPROF_PROGS)/libpprof_sites_nobid.so: $(PPROF_PROG_SRC)/pprof_sites_nobid.c $(PPROF_PROG_SRC)/pprof_sites.h
	@mkdir -p $(@D)
	$(CC) $(PPROF_PROG_CFLAGS) -fPIC -shared -Wl,--build-id=none $< -o $@

$(PPROF_PROGS)/pprof_sites_cxx.o: $(PPROF_PROG_SRC)/pprof_sites_cxx.cc $(PPROF_PROG_SRC)/pprof_sites.h
	@mkdir -p $(@D)
	$(CXX) -std=c++17 -Wall -Wextra $(PPROF_PROG_FLAGS) -fPIC -c $< -o $@

PPROF_SITES_DEPS := $(PPROF_PROG_SRC)/pprof_sites.c $(PPROF_PROGS)/pprof_sites_cxx.o \
    $(PPROF_PROGS)/libpprof_sites_lib.so $(PPROF_PROGS)/libpprof_sites_nobid.so \
    $(PPROF_REL_OBJS)
PPROF_SITES_LINK = $(CXX) $(filter-out -std=gnu11,$(PPROF_PROG_CFLAGS)) -x c -std=gnu11 \
    $(PPROF_PROG_SRC)/pprof_sites.c -x none $(PPROF_PROGS)/pprof_sites_cxx.o $(PPROF_REL_OBJS) \
    -L$(PPROF_PROGS) -lpprof_sites_lib -lpprof_sites_nobid -Wl,-rpath,$(PPROF_LIBDIR) \
    $(PPROF_PROG_LIBS) -ldl

# PIE (the distribution default), non-PIE, and a stripped copy linked with
# -rdynamic (only .dynsym left: exported functions named, static ones not).
$(PPROF_PROGS)/pprof_sites: $(PPROF_SITES_DEPS)
	$(PPROF_SITES_LINK) -pie -fPIE -o $@
$(PPROF_PROGS)/pprof_sites_nopie: $(PPROF_SITES_DEPS)
	$(PPROF_SITES_LINK) -no-pie -o $@
$(PPROF_PROGS)/pprof_sites_stripped: $(PPROF_SITES_DEPS)
	$(PPROF_SITES_LINK) -rdynamic -o $@.tmp && strip --strip-all $@.tmp && mv $@.tmp $@

$(PPROF_PROGS)/pprof_edge: $(PPROF_PROG_SRC)/pprof_edge.c $(PPROF_REL_OBJS) $(PPROF_PROGS)/libpprof_sites_nobid.so
	$(CC) $(PPROF_PROG_CFLAGS) $< $(PPROF_REL_OBJS) -L$(PPROF_PROGS) -lpprof_sites_nobid \
	    -Wl,-rpath,$(PPROF_LIBDIR) -o $@ $(PPROF_PROG_LIBS)

TEST_PREREQS += $(PPROF_PROGS)/pprof_sites $(PPROF_PROGS)/pprof_sites_nopie \
    $(PPROF_PROGS)/pprof_sites_stripped $(PPROF_PROGS)/libpprof_sites_dl.so \
    $(PPROF_PROGS)/pprof_edge

# ---------------------------------------------------------------------------
# Benchmark (make bench): release objects, figures in $(BUILD)/bench/pprof.txt.
# Linked against libstdc++ and libz so the symbolization figure covers them.
# ---------------------------------------------------------------------------
$(BUILD)/bench/pprof_bench: tests/bench/pprof_bench.c $(PPROF_REL_OBJS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g $(WARN) -I. -I$(BUILD)/gen $< $(PPROF_REL_OBJS) -o $@ \
	    -Wl,--no-as-needed -lstdc++ -Wl,--as-needed $(PPROF_PROG_LIBS) -ldl

.PHONY: bench-pprof
bench-pprof: $(BUILD)/bench/pprof_bench
	@mkdir -p $(BUILD)/bench/pprof-out
	$(BUILD)/bench/pprof_bench $(BUILD)/bench/pprof-out | tee $(BUILD)/bench/pprof.txt
BENCH_TARGETS += bench-pprof
