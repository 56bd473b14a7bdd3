# tests/integration/safety_elf.mk - the library safety_elf.sh's program
# dlopens (issue 11, class 4: mapped files). safe_elf itself is built by
# the safe_*.c pattern rule in integration.mk.
$(BUILD)/progs/libsafe_elf.so: tests/integration/progs/safelib_elf.c
	@mkdir -p $(@D)
	$(CC) $(LIFE_CFLAGS) -shared -fPIC $< -o $@
TEST_PREREQS += $(BUILD)/progs/libsafe_elf.so
