/*
 * map_internal.h - private declarations of map/, for the map sources and the
 * module's own unit tests (tests/unit/map_...) only.
 */
#ifndef HEAPWATCH_MAP_INTERNAL_H
#define HEAPWATCH_MAP_INTERNAL_H

#include "map/map.h"

/*
 * map_debug_check: walks the whole map and verifies its invariants:
 * count matches the live cells; no live cell after an emptyRest in chain
 * order; every live key is found by lookup; evacuation marks consistent
 * with nevacuate (old buckets below nevacuate are evacuated, and every
 * cell of an evacuated chain carries an evacuated mark); live tophashes
 * are >= minTopHash and equal tophash(hash(key)); every key sits in the
 * bucket its hash selects. O(size of the map).
 * @return 0 when every invariant holds; otherwise -1 with a description
 * of the first violation written into why (NUL-terminated, truncated to
 * whylen).
 */
int map_debug_check(const map_t *m, char *why, size_t whylen);

/*
 * map_debug_set_seed: makes a map's hash seed and private random stream
 * (the iteration start, the re-seed of an emptied map, noverflow's
 * sampling) a pure function of seed, so a failing randomized run replays
 * exactly. Only on an empty map with no growth and no live iterator.
 * @return MAP_OK, or MAP_ERR_INVALID (map unchanged).
 */
map_err_t map_debug_set_seed(map_t *m, uint64_t seed);

/* map_debug_hash: the 64-bit hash the map uses for key (its current seed). */
uint64_t map_debug_hash(const map_t *m, const void *key);

/*
 * map_debug_chain: copies the tophash bytes of the chain of bucket
 * `bucket` (of the old array when old is true) into out, 8 per bucket in
 * chain order, at most max bytes.
 * @return the number of buckets in the chain (which may exceed max/8).
 */
size_t map_debug_chain(const map_t *m, bool old, size_t bucket, uint8_t *out, size_t max);

#endif /* HEAPWATCH_MAP_INTERNAL_H */
