# agent/: the LD_PRELOAD agent. Needs map/ (and, for profiles, pprof/).
MODULES += agent
agent_SRCS := $(sort $(wildcard agent/*.c))
agent_DEPS := map
agent_LIBS := -ldl -lpthread
agent_CPPFLAGS :=

# The shared library: release objects of agent/ and everything it needs.
# -Wl,-z,nodelete: a dlclose can never unmap code a thread is running.
$(BUILD)/libheapwatch.so: $(call mod_objs,rel,agent)
	@mkdir -p $(@D)
	$(CC) -shared -fPIC -Wl,-z,nodelete -Wl,--no-undefined -o $@ $^ $(call mod_libs,agent) -lm
PRODUCTS += $(BUILD)/libheapwatch.so
TEST_PREREQS += $(BUILD)/libheapwatch.so
