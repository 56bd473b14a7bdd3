# heapwatch - top-level Makefile
#
#   make            build/libheapwatch.so and build/heapwatch (what exists so far)
#   make deps       install the Debian packages the build, tests and benchmarks need
#   make test       deps, then every test: unit (debug and ASan+UBSan builds),
#                   integration, fuzz-corpus regression; ends "N passed, N failed"
#   make bench      deps, then the benchmarks (figures in build/bench/)
#   make demo       deps, then the README's main job
#   make fuzz       libFuzzer binaries (clang) in build/fuzz/
#   make install    PREFIX=/usr/local DESTDIR=
#   make clean
#
# Each module owns a fragment (map/map.mk, pprof/pprof.mk, ...) that sets
#   <mod>_SRCS  its C sources          <mod>_DEPS  modules it builds on
#   <mod>_LIBS  libraries it links     <mod>_CPPFLAGS extra preprocessor flags
# and the rules below turn those into objects for each build variant:
#   rel   -O2, -fPIC -fvisibility=hidden: what ships and what is benchmarked
#   dbg   -O1 -DMAP_DEBUG ...: unit tests with invariant checks
#   asan  dbg + ASan + UBSan
#   adbg  rel + the agent's and the map's asserts (AGENT_DEBUG, MAP_DEBUG):
#         build/debug/libheapwatch.so, which integration tests also run
# Unit tests are tests/unit/<mod>_<topic>.c: one cmocka binary each, linked
# with <mod> and its dependencies, built for dbg and asan.

.DEFAULT_GOAL := all
SHELL := /bin/bash

BUILD   ?= build
PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif
CXX     ?= g++
CLANG   ?= clang

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wpointer-arith -Wcast-align -Wwrite-strings -Wundef -Wvla \
        -Wformat=2 -Wno-unused-parameter
# Warnings are errors in CI (CI=true) and whenever WERROR=1.
ifneq ($(filter true 1,$(CI) $(WERROR)),)
WARN += -Werror
endif

BASE_CFLAGS := -std=gnu11 -g -pthread $(WARN) -I. -I$(BUILD)/gen
CFLAGS_rel  := $(BASE_CFLAGS) -O2 -fPIC -fvisibility=hidden
# Uninitialised locals hold a pattern (0xFE bytes) in the test builds, so a
# read of one misbehaves the same way on every run instead of by chance.
CFLAGS_dbg  := $(BASE_CFLAGS) -O1 -fno-omit-frame-pointer -ftrivial-auto-var-init=pattern \
               -DMAP_DEBUG=1 -DHEAPWATCH_TEST=1
CFLAGS_asan := $(CFLAGS_dbg) -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS_asan := -fsanitize=address,undefined
CFLAGS_adbg := $(CFLAGS_rel) -DAGENT_DEBUG=1 -DMAP_DEBUG=1
VARIANTS := rel dbg asan adbg

# ---------------------------------------------------------------------------
# Debian packages: "package:file-that-proves-it-is-installed"
# ---------------------------------------------------------------------------
DEB_PACKAGES := \
  gcc:/usr/bin/gcc \
  g++:/usr/bin/g++ \
  make:/usr/bin/make \
  clang:/usr/bin/clang \
  libclang-rt-14-dev:/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a \
  pkg-config:/usr/bin/pkg-config \
  libcmocka-dev:/usr/include/cmocka.h \
  libunwind-dev:/usr/include/x86_64-linux-gnu/libunwind.h \
  libzstd-dev:/usr/include/zstd.h \
  libjansson-dev:/usr/include/jansson.h \
  zstd:/usr/bin/zstd \
  zlib1g-dev:/usr/include/zlib.h \
  libprotobuf-c-dev:/usr/include/protobuf-c/protobuf-c.h \
  protobuf-c-compiler:/usr/bin/protoc-c \
  libiberty-dev:/usr/lib/x86_64-linux-gnu/libiberty.a \
  binutils:/usr/bin/objcopy \
  golang-go:/usr/bin/go \
  python3:/usr/bin/python3 \
  valgrind:/usr/bin/valgrind \
  perl:/usr/bin/perl \
  libjemalloc2:/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \
  libjemalloc-dev:/usr/include/jemalloc/jemalloc.h \
  libgoogle-perftools4:/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4 \
  heaptrack:/usr/bin/heaptrack \
  libabsl-dev:/usr/include/absl/container/flat_hash_map.h \
  libboost1.81-dev:/usr/include/boost/unordered/unordered_flat_map.hpp \
  libglib2.0-dev:/usr/include/glib-2.0/glib.h \
  libasan8:/usr/lib/x86_64-linux-gnu/libasan.so.8 \
  libtsan2:/usr/lib/x86_64-linux-gnu/libtsan.so.2 \
  liblsan0:/usr/lib/x86_64-linux-gnu/liblsan.so.0 \
  libubsan1:/usr/lib/x86_64-linux-gnu/libubsan.so.1 \
  libgcc-12-dev:/usr/lib/gcc/x86_64-linux-gnu/12/libasan.a \
  util-linux:/usr/bin/setpriv \
  curl:/usr/bin/curl \
  time:/usr/bin/time \
  chromium:/usr/bin/chromium \
  nodejs:/usr/bin/node \
  npm:/usr/bin/npm \
  prometheus:/usr/bin/prometheus

deb_missing = $(strip $(foreach p,$(DEB_PACKAGES),$(if $(wildcard $(lastword $(subst :, ,$(p)))),,$(firstword $(subst :, ,$(p))))))

.PHONY: deps
deps:
	@missing="$(call deb_missing)"; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; exit 0; fi; \
	echo "deps: installing $$missing"; \
	if [ "$$(id -u)" != 0 ]; then echo "deps: need root to apt-get install: $$missing" >&2; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing; } || \
	  { echo "deps: apt-get install failed for: $$missing" >&2; exit 1; }

# require_pkgs: stop a plain build with one clear line when a package is missing.
define require_pkgs
$(foreach p,$(1),$(if $(wildcard $(lastword $(subst :, ,$(filter $(p):%,$(DEB_PACKAGES))))),,$(error missing Debian package '$(p)': run 'make deps' (as root))))
endef

# ---------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------
# Functions the module fragments use (defined before they are included:
# prerequisite lists expand as they are read).
# objs VARIANT, SRCS -> object paths
objs = $(patsubst %.c,$(BUILD)/$(1)/%.o,$(filter %.c,$(2)))
# closure MOD -> MOD and every module it depends on (dependencies last)
closure = $(1) $(foreach d,$($(1)_DEPS),$(call closure,$(d)))
mod_objs = $(call objs,$(1),$(foreach m,$(call closure,$(2)),$($(m)_SRCS)))
mod_libs = $(foreach m,$(call closure,$(1)),$($(m)_LIBS))
mod_cppflags = $(foreach m,$(call closure,$(1)),$($(m)_CPPFLAGS))
# Unit tests and fuzz targets link <mod>_TEST_SRCS when a module sets it
# (the agent keeps its shim and constructors out of test binaries), plus the
# full sources of the modules it depends on.
test_srcs = $(if $($(1)_TEST_SRCS),$($(1)_TEST_SRCS),$($(1)_SRCS))
mod_test_srcs = $(call test_srcs,$(1)) $(foreach d,$($(1)_DEPS),$(foreach m,$(call closure,$(d)),$($(m)_SRCS)))
mod_test_objs = $(call objs,$(1),$(call mod_test_srcs,$(2)))
# mod_of FILE -> module named by the file's prefix (map_basic.c -> map)
mod_of = $(firstword $(subst _, ,$(basename $(notdir $(1)))))
# mod_headers MOD -> the headers of MOD and of every module it depends on: a
# test or fuzz binary is compiled from its own source against them, so a
# header change must rebuild it (objects track theirs through -MMD).
mod_headers = $(foreach m,$(call closure,$(1)),$(wildcard $(m)/*.h))

MODULES :=
PRODUCTS :=
TEST_PREREQS :=
BENCH_TARGETS :=
include map/map.mk
-include pprof/pprof.mk
-include agent/agent.mk
-include tools/tools.mk
# Test programs and scripts of the integration suite that need their own rules.
-include tests/integration/integration.mk
-include $(sort $(wildcard tests/integration/safety_*.mk))


define variant_rules
$(BUILD)/$(1)/%.o: %.c
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_$(1)) $$(call mod_cppflags,$$(call mod_of_src,$$<)) -MMD -MP -c $$< -o $$@
endef
# mod_of_src: the module a source belongs to is its top folder (map/x.c -> map)
mod_of_src = $(firstword $(subst /, ,$(1)))
$(foreach v,$(VARIANTS),$(eval $(call variant_rules,$(v))))

# ---------------------------------------------------------------------------
# Unit tests: tests/unit/<mod>_<topic>.c
# ---------------------------------------------------------------------------
UNIT_SRCS  := $(sort $(wildcard tests/unit/*.c))
UNIT_NAMES := $(basename $(notdir $(UNIT_SRCS)))
UNIT_BINS  := $(foreach v,dbg asan,$(addprefix $(BUILD)/$(v)/tests/,$(UNIT_NAMES)))

define unit_rule
$(BUILD)/$(2)/tests/$(1): tests/unit/$(1).c $$(call mod_test_objs,$(2),$(call mod_of,$(1))) \
    $$(wildcard tests/unit/*.h) $$(call mod_headers,$(call mod_of,$(1)))
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_$(2)) $$(call mod_cppflags,$(call mod_of,$(1))) -Itests/unit $$< \
	    $$(call mod_test_objs,$(2),$(call mod_of,$(1))) -o $$@ \
	    $$(LDFLAGS_$(2)) $$(call mod_libs,$(call mod_of,$(1))) -lcmocka -lm
endef
$(foreach t,$(UNIT_NAMES),$(foreach v,dbg asan,$(eval $(call unit_rule,$(t),$(v)))))

# ---------------------------------------------------------------------------
# Fuzz targets: tests/fuzz/<mod>_<name>.c define LLVMFuzzerTestOneInput.
#   make test replays tests/fuzz/corpus/<target>/ through regression_driver.c
#   (ASan + UBSan, no libFuzzer); make fuzz builds real libFuzzer binaries.
# ---------------------------------------------------------------------------
FUZZ_SRCS  := $(filter-out tests/fuzz/regression_driver.c,$(sort $(wildcard tests/fuzz/*.c)))
FUZZ_NAMES := $(basename $(notdir $(FUZZ_SRCS)))
FUZZ_REGRESSION_BINS := $(addprefix $(BUILD)/asan/fuzz/,$(FUZZ_NAMES))
FUZZ_BINS := $(addprefix $(BUILD)/fuzz/,$(FUZZ_NAMES))

define fuzz_rule
$(BUILD)/asan/fuzz/$(1): tests/fuzz/$(1).c tests/fuzz/regression_driver.c $$(call mod_test_objs,asan,$(call mod_of,$(1))) \
    $$(call mod_headers,$(call mod_of,$(1)))
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_asan) $$(call mod_cppflags,$(call mod_of,$(1))) $$(filter %.c,$$^) \
	    $$(call mod_test_objs,asan,$(call mod_of,$(1))) -o $$@ $$(LDFLAGS_asan) $$(call mod_libs,$(call mod_of,$(1))) -lm
$(BUILD)/fuzz/$(1): tests/fuzz/$(1).c $$(call mod_test_srcs,$(call mod_of,$(1))) \
    $$(call mod_headers,$(call mod_of,$(1)))
	@mkdir -p $$(@D)
	$$(CLANG) $$(filter-out -fsanitize=%,$$(CFLAGS_dbg)) -fsanitize=fuzzer,address,undefined \
	    $$(call mod_cppflags,$(call mod_of,$(1))) $$(filter %.c,$$^) -o $$@ $$(call mod_libs,$(call mod_of,$(1))) -lm
endef
$(foreach t,$(FUZZ_NAMES),$(eval $(call fuzz_rule,$(t))))

.PHONY: fuzz
fuzz: $(FUZZ_BINS)
	@echo "fuzz: run e.g. $(BUILD)/fuzz/$(firstword $(FUZZ_NAMES)) tests/fuzz/corpus/$(firstword $(FUZZ_NAMES))"

# ---------------------------------------------------------------------------
# Products, tests, benchmarks
# ---------------------------------------------------------------------------
.PHONY: all
all: $(PRODUCTS) $(call mod_objs,rel,map)

.PHONY: test test-build
test-build: $(UNIT_BINS) $(FUZZ_REGRESSION_BINS) $(TEST_PREREQS)
test: deps
	@$(MAKE) --no-print-directory test-build
	@BUILD=$(BUILD) DEBUG_AGENT_SCRIPTS="$(DEBUG_AGENT_SCRIPTS)" bash tests/run.sh $(UNIT_BINS) -- $(FUZZ_REGRESSION_BINS)

.PHONY: bench
bench: deps
	@$(MAKE) --no-print-directory $(filter-out bench-summary,$(BENCH_TARGETS))
	@$(MAKE) --no-print-directory bench-summary

# The main job last, so that the demo ends by naming the report page.
DEMO_TARGET ?= bench-map-quick bench-agent-quick demo-run
.PHONY: demo
demo: deps
	@$(MAKE) --no-print-directory $(DEMO_TARGET)

.PHONY: install
install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin
	@if [ -f $(BUILD)/libheapwatch.so ]; then install -m 0755 $(BUILD)/libheapwatch.so $(DESTDIR)$(PREFIX)/lib/; fi
	@if [ -f $(BUILD)/heapwatch ]; then install -m 0755 $(BUILD)/heapwatch $(DESTDIR)$(PREFIX)/bin/; fi
	@echo "installed what is built so far under $(DESTDIR)$(PREFIX)"

.PHONY: clean
clean:
	rm -rf $(BUILD)

-include tests/bench/bench.mk
-include tests/bench/agent_bench.mk

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
