# tests/integration/safety_fds.mk - the descriptor tests' programs
# (tests/integration/safety_fds.sh). fds_daemon allocates through
# fds_nounwind.c, an object built without unwind tables (as hand-written
# assembly or JIT code is): the unwinder meets frames it has no DWARF for.

FDS_CFLAGS := -std=gnu11 -O1 -g -pthread -Wall -Wextra -I. -Itests/integration/progs

$(BUILD)/progs/fds_nounwind.o: tests/integration/progs/fds_nounwind.c tests/integration/progs/fds_nounwind.h tests/integration/safety_fds.mk
	@mkdir -p $(@D)
	$(CC) $(FDS_CFLAGS) -fno-asynchronous-unwind-tables -fno-unwind-tables -fno-omit-frame-pointer -c $< -o $@

$(BUILD)/progs/fds_daemon: tests/integration/progs/fds_daemon.c tests/integration/progs/fds_nounwind.h $(BUILD)/progs/fds_nounwind.o
	@mkdir -p $(@D)
	$(CC) $(FDS_CFLAGS) $< $(BUILD)/progs/fds_nounwind.o -o $@ -ldl

TEST_PREREQS += $(BUILD)/progs/fds_daemon

# fds_firstsample: the first sample (libunwind's set-up) mid-run, while a
# thread makes and closes pipes.
$(BUILD)/progs/fds_firstsample: tests/integration/progs/fds_firstsample.c
	@mkdir -p $(@D)
	$(CC) $(FDS_CFLAGS) $< -o $@

TEST_PREREQS += $(BUILD)/progs/fds_firstsample
