# tests/bench/bench.mk - the map benchmark (included by the top Makefile).
#
#   make bench-map        1k, 100k and 10M entries, growth to 10M (~3 min);
#                         writes $(BUILD)/bench/map.tsv and map_growth.tsv
#   make bench-map-quick  1k and 100k, growth to 100k (a few seconds; what
#                         make demo runs); writes map_quick.tsv and
#                         map_growth_quick.tsv
#
# heapwatch's map (release objects) against absl::flat_hash_map,
# boost::unordered_flat_map, std::unordered_map, GLib's GHashTable and Go's
# runtime map (rows "go1.19": tests/bench/map_bench.go, a child of
# map_bench); see the comment at the top of map_bench.cc for what is
# measured and how. Plain -O2, no -march=native: the figures must mean the
# same on CI. The Go program uses the standard library only; go build
# keeps its cache under $(BUILD)/bench (nothing in $HOME, no network).

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

BENCH_MAP_GO    := $(BENCH_DIR)/map_bench_go
BENCH_GO_ENV    := GOCACHE=$(abspath $(BENCH_DIR))/go-cache \
                   GOPATH=$(abspath $(BENCH_DIR))/go-path \
                   GO111MODULE=off GOFLAGS= GOENV=off GOPROXY=off GOTOOLCHAIN=local

$(BENCH_MAP_GO): tests/bench/map_bench.go
	$(call require_pkgs,golang-go)
	@mkdir -p $(@D)
	cd tests/bench && $(BENCH_GO_ENV) go build -o $(abspath $@) map_bench.go

.PHONY: bench-map bench-map-quick
bench-map: $(BENCH_MAP_BIN) $(BENCH_MAP_GO)
	$(BENCH_MAP_BIN) --go $(BENCH_MAP_GO) --tsv $(BENCH_DIR)/map.tsv \
	    --growth-tsv $(BENCH_DIR)/map_growth.tsv

bench-map-quick: $(BENCH_MAP_BIN) $(BENCH_MAP_GO)
	$(BENCH_MAP_BIN) --quick --go $(BENCH_MAP_GO) --tsv $(BENCH_DIR)/map_quick.tsv \
	    --growth-tsv $(BENCH_DIR)/map_growth_quick.tsv

BENCH_TARGETS += bench-map
