# tests/integration/safety_sanit.mk - the sanitized programs of
# tests/integration/safety_sanitizers.sh (issue 11, class 8). Each is built
# with its sanitizer, -O1 -g, from tests/integration/progs/sanit_*.c:
#   sanit_heap_asan        gcc -fsanitize=address (shared runtime, libasan8)
#   sanit_heap_asan_clang  clang -fsanitize=address (static runtime)
#   sanit_heap_asan_static gcc -fsanitize=address -static-libasan
#   sanit_race_tsan_static gcc -fsanitize=thread -static-libtsan (gcc's
#                          static runtimes export no init symbol: the agent
#                          runs, sees no allocation, the program as bare)
#   sanit_heap_lsan        gcc -fsanitize=leak (liblsan0)
#   sanit_heap_msan        clang -fsanitize=memory (only when clang's MSan
#                          runtime is installed: libclang-rt-14-dev)
#   sanit_race_tsan        gcc -fsanitize=thread (libtsan2)
#   sanit_ubsan            gcc -fsanitize=undefined (libubsan1): the agent
#                          profiles it normally
SANIT_SRC := tests/integration/progs
SANIT_FLAGS := -std=gnu11 -O1 -g -pthread -I.
SANIT_MSAN_RT := $(wildcard /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.msan-x86_64.a)

$(BUILD)/progs/sanit_heap_asan: $(SANIT_SRC)/sanit_heap.c
	@mkdir -p $(@D)
	$(CC) $(SANIT_FLAGS) -fsanitize=address $< -o $@
$(BUILD)/progs/sanit_heap_asan_clang: $(SANIT_SRC)/sanit_heap.c
	@mkdir -p $(@D)
	clang $(SANIT_FLAGS) -fsanitize=address $< -o $@
$(BUILD)/progs/sanit_heap_asan_static: $(SANIT_SRC)/sanit_heap.c
	@mkdir -p $(@D)
	$(CC) $(SANIT_FLAGS) -fsanitize=address -static-libasan $< -o $@
$(BUILD)/progs/sanit_race_tsan_static: $(SANIT_SRC)/sanit_race.c
	@mkdir -p $(@D)
	$(CC) $(SANIT_FLAGS) -fsanitize=thread -static-libtsan $< -o $@
$(BUILD)/progs/sanit_heap_lsan: $(SANIT_SRC)/sanit_heap.c
	@mkdir -p $(@D)
	$(CC) $(SANIT_FLAGS) -fsanitize=leak $< -o $@
$(BUILD)/progs/sanit_heap_msan: $(SANIT_SRC)/sanit_heap.c
	@mkdir -p $(@D)
	clang $(SANIT_FLAGS) -fsanitize=memory $< -o $@
$(BUILD)/progs/sanit_race_tsan: $(SANIT_SRC)/sanit_race.c
	@mkdir -p $(@D)
	$(CC) $(SANIT_FLAGS) -fsanitize=thread $< -o $@
$(BUILD)/progs/sanit_ubsan: $(SANIT_SRC)/sanit_ubsan.c agent/agent.h
	@mkdir -p $(@D)
	$(CC) $(SANIT_FLAGS) -fsanitize=undefined $< -o $@ -ldl

SANIT_PROGS := $(addprefix $(BUILD)/progs/,sanit_heap_asan sanit_heap_asan_clang sanit_heap_asan_static \
                 sanit_heap_lsan sanit_race_tsan sanit_race_tsan_static sanit_ubsan)
ifneq ($(SANIT_MSAN_RT),)
SANIT_PROGS += $(BUILD)/progs/sanit_heap_msan
endif

.PHONY: sanit-progs
sanit-progs: $(SANIT_PROGS)
TEST_PREREQS += $(SANIT_PROGS)
