# map/: the Go-style hash map and the mmap arena. Needs libc only.
MODULES += map
map_SRCS := $(sort $(wildcard map/*.c))
map_DEPS :=
map_LIBS :=
map_CPPFLAGS :=
