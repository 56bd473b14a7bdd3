# tools/: the heapwatch command. Uses public headers only.
MODULES += tools
tools_SRCS := $(sort $(wildcard tools/*.c))
tools_DEPS :=
tools_LIBS :=

$(BUILD)/heapwatch: $(call mod_objs,rel,tools)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(call mod_libs,tools)
PRODUCTS += $(BUILD)/heapwatch
TEST_PREREQS += $(BUILD)/heapwatch
