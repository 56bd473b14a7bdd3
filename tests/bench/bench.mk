# tests/bench/bench.mk - the map benchmark (included by the top Makefile).
#
#   make bench-map        1k, 100k and 10M entries, growth to 10M (~3 min);
#                         writes $(BUILD)/bench/map.tsv and map_growth.tsv
#   make bench-map-quick  1k and 100k, growth to 100k (a few seconds; what
#                         make demo runs); writes map_quick.tsv and
#                         map_growth_quick.tsv
#
# heapwatch's map (release objects) against absl::flat_hash_map,
# boost::unordered_flat_map, std::unordered_map and GLib's GHashTable; see
# the comment at the top of map_bench.cc for what is measured and how.
# Plain -O2, no -march=native: the figures must mean the same on CI.

BENCH_DIR       := $(BUILD)/bench
BENCH_MAP_BIN   := $(BENCH_DIR)/map_bench
BENCH_MAP_DEBS  := pkg-config libabsl-dev libboost1.81-dev libglib2.0-dev
# pkg-config modules: absl's list is long; --as-needed keeps only the
# libraries really used (libabsl_raw_hash_set with a custom hasher).
BENCH_MAP_PC    := absl_flat_hash_map glib-2.0
BENCH_CXXFLAGS  := -std=c++17 -O2 -g -Wall -Wextra -Wshadow $(filter -Werror,$(WARN)) -I.

$(BENCH_MAP_BIN): tests/bench/map_bench.cc map/map.h $(call mod_objs,rel,map)
	$(call require_pkgs,$(BENCH_MAP_DEBS))
	@mkdir -p $(@D)
	$(CXX) $(BENCH_CXXFLAGS) $$(pkg-config --cflags $(BENCH_MAP_PC)) $< \
	    $(call mod_objs,rel,map) -o $@ \
	    -Wl,--as-needed $$(pkg-config --libs $(BENCH_MAP_PC)) $(call mod_libs,map)

.PHONY: bench-map bench-map-quick
bench-map: $(BENCH_MAP_BIN)
	$(BENCH_MAP_BIN) --tsv $(BENCH_DIR)/map.tsv --growth-tsv $(BENCH_DIR)/map_growth.tsv

bench-map-quick: $(BENCH_MAP_BIN)
	$(BENCH_MAP_BIN) --quick --tsv $(BENCH_DIR)/map_quick.tsv \
	    --growth-tsv $(BENCH_DIR)/map_growth_quick.tsv

BENCH_TARGETS += bench-map
