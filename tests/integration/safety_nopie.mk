# tests/integration/safety_nopie.mk - the programs of safety_nopie.sh: an
# executable built -no-pie that takes malloc's address (its PLT entry is
# then malloc's canonical address), and a malloc of its own to preload
# before the agent.
$(BUILD)/progs/nopie_count: tests/integration/progs/nopie_count.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O1 -g -no-pie -fno-pie $< -o $@
$(BUILD)/progs/libpremalloc.so: tests/integration/progs/premalloc.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O1 -g -shared -fPIC $< -o $@
TEST_PREREQS += $(BUILD)/progs/nopie_count $(BUILD)/progs/libpremalloc.so
