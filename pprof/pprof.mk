# pprof/: profile.proto writer, in-process symbolization, atomic gzip output.
# Needs map/ (map_allocator_t only), protobuf-c (protoc-c + libprotobuf-c) and zlib.
MODULES += pprof

PPROF_GEN := $(BUILD)/gen/pprof
pprof_SRCS := $(sort $(wildcard pprof/*.c)) $(PPROF_GEN)/profile.pb-c.c
pprof_DEPS := map
pprof_LIBS := -lprotobuf-c -lz -lm
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
# them here with a target-specific variable on PPROF_GEN_OBJS only.
# (The top Makefile defines `objs` after including this file, so the object
# paths are spelled out here.)
PPROF_OBJS := $(foreach v,$(VARIANTS),$(patsubst %.c,$(BUILD)/$(v)/%.o,$(pprof_SRCS)))
$(PPROF_OBJS): $(PPROF_GEN)/profile.pb-c.h
.SECONDARY: $(PPROF_GEN)/profile.pb-c.c $(PPROF_GEN)/profile.pb-c.h
