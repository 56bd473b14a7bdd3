#!/usr/bin/env python3
"""pprof_raw.py - reads `go tool pprof -raw` output (stdin) and prints JSON:

  {"by_leaf": {function: [alloc_objects, alloc_space, inuse_objects, inuse_space]},
   "stacks": [[function names, innermost first], ...],
   "mappings": [paths], "location_mappings": [paths that locations fall in]}

Values are summed over the samples whose innermost named frame is that
function. The helper only parses; the tests decide what to compare.
"""
import json
import re
import sys

samples, locs, loc_map, maps = [], {}, {}, []
section = None
for line in sys.stdin:
    line = line.rstrip("\n")
    if line in ("Samples:", "Locations", "Mappings"):
        section = line
        continue
    if section == "Samples:":
        m = re.match(r"^\s*(-?\d+(?:\s+-?\d+)*):\s*([\d ]*)$", line)
        if m:
            samples.append(([int(v) for v in m.group(1).split()], [int(x) for x in m.group(2).split()]))
    elif section == "Locations":
        m = re.match(r"^\s*(\d+):\s+0x[0-9a-f]+\s+M=(\d+)\s*(.*)$", line)
        if m:
            # "fn :line s=0" entries; inlined frames continue on lines without an id.
            fn = m.group(3).split(" :")[0].strip() if m.group(3) else ""
            locs[int(m.group(1))] = fn or "?"
            loc_map[int(m.group(1))] = int(m.group(2))
    elif section == "Mappings":
        m = re.match(r"^\s*\d+:\s+0x[0-9a-f]+/0x[0-9a-f]+/0x[0-9a-f]+\s+(\S+)", line)
        if m:
            maps.append(m.group(1))

by_leaf, stacks = {}, []
for values, ids in samples:
    names = [locs.get(i, "?") for i in ids]
    stacks.append(names)
    leaf = names[0] if names else "(none)"
    acc = by_leaf.setdefault(leaf, [0] * len(values))
    for i, v in enumerate(values):
        acc[i] += v
# the mapping path of every location (index M=1.. into the mapping list)
loc_paths = sorted({maps[m - 1] if 0 < m <= len(maps) else "?" for m in loc_map.values()})
json.dump({"by_leaf": by_leaf, "stacks": stacks, "mappings": maps, "location_mappings": loc_paths},
          sys.stdout)
print()
