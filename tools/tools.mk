# tools/: the heapwatch command (run, check, report). Uses public headers
# only; reads the agent's zstd timelines with libzstd, its JSON with jansson,
# and its heap profiles (tools/profile.c) with zlib and protobuf-c's code
# generated from pprof/profile.proto (pprof/pprof.mk), linked in as a source
# of its own: the tool reads profiles with plain malloc, not pprof/'s arena.
MODULES += tools
tools_SRCS := $(sort $(wildcard tools/*.c)) $(PPROF_GEN)/profile.pb-c.c
tools_DEPS :=
tools_LIBS := -lzstd -ljansson -lm -lprotobuf-c -lz
# The report page's style and script are files of their own, embedded by
# the assembler (tools/report_assets.c: .incbin, names relative to here).
tools_CPPFLAGS := -Wa,-I$(CURDIR)
$(foreach v,$(VARIANTS),$(call objs,$(v),tools/report_assets.c)): tools/report_page.css tools/report_page.js
# Unit tests (tests/unit/tools_*.c) link everything but main().
tools_TEST_SRCS := $(filter-out tools/heapwatch.c,$(tools_SRCS))
# ... and are rebuilt when the agent's record format changes (their
# objects follow it through -MMD; the test sources through this).
$(foreach v,dbg asan,$(patsubst tests/unit/%.c,$(BUILD)/$(v)/tests/%,$(wildcard tests/unit/tools_*.c))): agent/records.h
# The objects that include the generated header wait for it.
$(foreach v,$(VARIANTS),$(call objs,$(v),tools/profile.c)): $(PPROF_GEN)/profile.pb-c.h
# tools_profile's test writes profiles with pprof/'s builder: it links
# pprof/ and map/ too (their objects first, so the libraries follow them).
TOOLS_PPROF_SRCS = $(filter-out $(PPROF_GEN)/profile.pb-c.c,$(pprof_SRCS)) $(map_SRCS)
$(foreach v,dbg asan,$(eval $(BUILD)/$(v)/tests/tools_profile: $(call objs,$(v),$(TOOLS_PPROF_SRCS))))
$(foreach v,dbg asan,$(eval $(BUILD)/$(v)/tests/tools_profile: tools_LIBS := $(call objs,$(v),$(TOOLS_PPROF_SRCS)) $(tools_LIBS) -liberty))
# A plain build that misses jansson stops with one line naming the package.
$(foreach v,$(VARIANTS),$(call objs,$(v),$(tools_SRCS))): | tools-pkgs
.PHONY: tools-pkgs
tools-pkgs:
	$(call require_pkgs,libjansson-dev zlib1g-dev libprotobuf-c-dev)

$(BUILD)/heapwatch: $(call mod_objs,rel,tools)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(call mod_libs,tools)
PRODUCTS += $(BUILD)/heapwatch
TEST_PREREQS += $(BUILD)/heapwatch

# The same tool under ASan + UBSan: the integration tests feed it damaged
# and hostile result files (tests/integration/tools_check.sh).
$(BUILD)/asan/heapwatch: $(call mod_objs,asan,tools)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_asan) -o $@ $^ $(call mod_libs,tools)
TEST_PREREQS += $(BUILD)/asan/heapwatch

# The README's main job: a real program (python3 building a large JSON
# document, its allocations routed through malloc) under the agent, then
# what it wrote: the files, the exit profile read by go tool pprof, and the
# heapwatch report, which ends naming the page it wrote (build/demo/report.html).
DEMO_DIR := $(BUILD)/demo
.PHONY: demo-run
demo-run: $(BUILD)/heapwatch $(BUILD)/libheapwatch.so
	@rm -rf $(DEMO_DIR)
	$(BUILD)/heapwatch run --out $(DEMO_DIR) -- env PYTHONMALLOC=malloc /usr/bin/python3 -c \
	    'import json; d = {str(i): list(range(i % 100)) for i in range(100000)}; print("python3 wrote", len(json.dumps(d)), "bytes of JSON")'
	@echo; echo "--- $(DEMO_DIR)/:"; ls $(DEMO_DIR)
	@echo; echo "--- go tool pprof -top -sample_index=alloc_space (bytes allocated, by function):"
	@go tool pprof -top -nodecount=12 -sample_index=alloc_space $(DEMO_DIR)/heap.*.exit.pb.gz 2>/dev/null
	@echo; echo "--- heapwatch report $(DEMO_DIR) (its last line names the page it wrote):"
	@$(BUILD)/heapwatch report --width 78 $(DEMO_DIR)
