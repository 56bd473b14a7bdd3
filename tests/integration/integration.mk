# tests/integration/integration.mk - build rules for the integration test
# programs that need more than agent.mk's one-file rule: the lifecycle
# programs (tests/integration/progs/life_*), their shared libraries, and
# the allocator variants. Plain builds (-O1 -g -pthread, no sanitizer):
# they run under LD_PRELOAD.

LIFE_CFLAGS := -std=gnu11 -O1 -g -pthread -Wall -Wextra -I. -Itests/integration/progs
LIFE_CXXFLAGS := -std=c++17 -O1 -g -pthread -Wall -Wextra -I. -Itests/integration/progs
LIFE_DEPS := tests/integration/progs/life_common.h agent/agent.h

# One-file C programs.
LIFE_C_PROGS := $(addprefix $(BUILD)/progs/,life_dlopen life_exit life_threads \
                  life_signals life_step life_stepnew life_fork life_exec life_edge life_alloc)
$(LIFE_C_PROGS): $(BUILD)/progs/%: tests/integration/progs/%.c $(LIFE_DEPS)
	@mkdir -p $(@D)
	$(CC) $(LIFE_CFLAGS) $< -o $@ -ldl

# The library life_dlopen loads and unloads.
$(BUILD)/progs/liblife_dl.so: tests/integration/progs/life_dllib.c
	@mkdir -p $(@D)
	$(CC) $(LIFE_CFLAGS) -shared -fPIC $< -o $@

# life_ctor: a C++ program with a static object, linked with a library
# whose constructor and destructor allocate (found next to it: $ORIGIN).
$(BUILD)/progs/liblife_ctorlib.so: tests/integration/progs/life_ctorlib.c tests/integration/progs/life_ctor.h $(LIFE_DEPS)
	@mkdir -p $(@D)
	$(CC) $(LIFE_CFLAGS) -shared -fPIC $< -o $@ -ldl
$(BUILD)/progs/life_ctor: tests/integration/progs/life_ctor.cc tests/integration/progs/life_ctor.h $(BUILD)/progs/liblife_ctorlib.so $(LIFE_DEPS)
	@mkdir -p $(@D)
	$(CXX) $(LIFE_CXXFLAGS) $< -o $@ -L$(BUILD)/progs -llife_ctorlib '-Wl,-rpath,$$ORIGIN' -ldl

LIFE_PROGS := $(LIFE_C_PROGS) $(BUILD)/progs/liblife_dl.so $(BUILD)/progs/life_ctor

# life_alloc linked with jemalloc itself, when libjemalloc-dev is installed
# (agent_allocators.sh skips that case, naming the package, otherwise).
ifneq ($(wildcard /usr/include/jemalloc/jemalloc.h),)
$(BUILD)/progs/life_alloc_je: tests/integration/progs/life_alloc.c $(LIFE_DEPS)
	@mkdir -p $(@D)
	$(CC) $(LIFE_CFLAGS) -DLIFE_LINKED_JEMALLOC $< -o $@ -ljemalloc -ldl
LIFE_PROGS += $(BUILD)/progs/life_alloc_je
endif

.PHONY: life-progs
life-progs: $(LIFE_PROGS)
TEST_PREREQS += $(LIFE_PROGS)

# Safety programs (issue 11): tests/integration/progs/safe_*.c, one-file C
# programs built plainly; a topic that needs special flags keeps its own
# rules in tests/integration/safety_<topic>.mk (included by the Makefile).
SAFE_C_PROGS := $(patsubst tests/integration/progs/%.c,$(BUILD)/progs/%,$(wildcard tests/integration/progs/safe_*.c))
$(SAFE_C_PROGS): $(BUILD)/progs/%: tests/integration/progs/%.c $(LIFE_DEPS)
	@mkdir -p $(@D)
	$(CC) $(LIFE_CFLAGS) $< -o $@ -ldl
TEST_PREREQS += $(SAFE_C_PROGS)

# The same safety programs with jemalloc linked into the executable
# (libjemalloc.a): its malloc is bound ahead of the agent's, which runs
# alongside seeing no allocation (tests/integration/safety_unbound.sh).
UNBOUND_PROGS := $(BUILD)/progs/safe_exit_je $(BUILD)/progs/fds_daemon_je
$(BUILD)/progs/safe_exit_je: tests/integration/progs/safe_exit.c $(LIFE_DEPS)
	@mkdir -p $(@D)
	$(CC) $(LIFE_CFLAGS) $< -o $@ -Wl,-Bstatic -ljemalloc -Wl,-Bdynamic -ldl -lm
$(BUILD)/progs/fds_daemon_je: tests/integration/progs/fds_daemon.c tests/integration/progs/fds_nounwind.h $(BUILD)/progs/fds_nounwind.o
	@mkdir -p $(@D)
	$(CC) $(LIFE_CFLAGS) $< $(BUILD)/progs/fds_nounwind.o -o $@ -Wl,-Bstatic -ljemalloc -Wl,-Bdynamic -ldl -lm
TEST_PREREQS += $(UNBOUND_PROGS)

# The report's leaks at exit and peak (tests/integration/tools_leaks.sh): a
# C++ program that leaks from known functions, directly and through
# wrappers (xmalloc, operator new[]), and prints the ground truth.
$(BUILD)/progs/report_leak: tests/integration/progs/report_leak.cc
	@mkdir -p $(@D)
	$(CXX) $(LIFE_CXXFLAGS) $< -o $@
TEST_PREREQS += $(BUILD)/progs/report_leak

# The report page in a real browser (tests/integration/report_page.sh):
# page_leak, and playwright-core at the version pinned in
# tests/browser/package-lock.json, installed with `npm ci` into
# $(BUILD)/browser (the npm registry must be reachable the first time). It
# drives Debian's /usr/bin/chromium (DEB_PACKAGES); no browser download.
$(BUILD)/progs/page_leak: tests/integration/progs/page_leak.c
	@mkdir -p $(@D)
	$(CC) $(LIFE_CFLAGS) $< -o $@

BROWSER_DIR := $(BUILD)/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/playwright-core/package.json
$(BROWSER_STAMP): tests/browser/package.json tests/browser/package-lock.json
	$(call require_pkgs,nodejs chromium)
	@mkdir -p $(BROWSER_DIR)
	cp tests/browser/package.json tests/browser/package-lock.json $(BROWSER_DIR)/
	cd $(BROWSER_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@
.PHONY: browser-deps
browser-deps: $(BROWSER_STAMP)
TEST_PREREQS += $(BUILD)/progs/page_leak $(BROWSER_STAMP)

# Names (tests/integration/names.sh, issue 14): programs whose allocating
# functions only a symbol table names; the script strips copies and
# installs their debug files the Debian way. With a GNU build ID (the
# build-ID route) and without one (the .gnu_debuglink route, CRC-checked).
NAMES_FLAGS := -O1 -g -fno-omit-frame-pointer -fno-optimize-sibling-calls -Wall -Wextra
$(BUILD)/progs/names_c: tests/integration/progs/names_c.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(NAMES_FLAGS) -Wl,--build-id=sha1 $< -o $@
$(BUILD)/progs/names_c_nobid: tests/integration/progs/names_c.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(NAMES_FLAGS) -Wl,--build-id=none $< -o $@
$(BUILD)/progs/names_cxx: tests/integration/progs/names_cxx.cc
	@mkdir -p $(@D)
	$(CXX) -std=c++17 $(NAMES_FLAGS) -Wl,--build-id=sha1 $< -o $@
# names_c_jemalloc: jemalloc linked into the executable (libjemalloc.a),
# whose malloc is bound ahead of the agent's.
$(BUILD)/progs/names_c_jemalloc: tests/integration/progs/names_c.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(NAMES_FLAGS) $< -o $@ -Wl,-Bstatic -ljemalloc -Wl,-Bdynamic -lpthread -ldl -lm
TEST_PREREQS += $(BUILD)/progs/names_c $(BUILD)/progs/names_c_nobid $(BUILD)/progs/names_cxx $(BUILD)/progs/names_c_jemalloc
