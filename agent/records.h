/*
 * records.h - the format of the agent's records, shared by the agent that
 * writes them and the tools that read them.
 *
 * No code: X-macro lists only, one per kind of record, each calling X once
 * per field in the order the agent writes the fields. A writer and a
 * reader expand the same list, so a field added, renamed or moved here
 * moves in both (a writer that names its values per field, as watch.c,
 * summary.c and http_endpoints.c do, stops compiling until the new field
 * has a value). One exception: the entries of an alert's "top" are nested
 * objects, written by hand in watch.c (top_json) in the order of
 * HEAPWATCH_ALERT_TOP_FIELDS, which the reader expands.
 *
 *   X(name, type, doc)                  HEAPWATCH_TIMELINE_FIELDS,
 *                                       HEAPWATCH_MAP_FIELDS (in the two
 *                                       lists below and, as gauges, in
 *                                       HEAPWATCH_METRICS),
 *                                       HEAPWATCH_SUMMARY_FIELDS,
 *                                       HEAPWATCH_ALERT_FIELDS,
 *                                       HEAPWATCH_ALERT_TOP_FIELDS
 *   X(name, type, kind, help)           HEAPWATCH_METRICS
 *
 *   name   the JSON key (a C identifier, so #name is the key's text); for
 *          the metrics, the name after "heapwatch_"
 *   type   how the value is written:
 *            u64      an unsigned decimal integer (counters: up to 2^64 - 1,
 *                     beyond the 2^53 a double holds exactly)
 *            i64      a signed decimal integer (differences of counters)
 *            f3       a number with exactly 3 decimals ("1.500"; rates and
 *                     short spans of seconds)
 *            f6       a number with exactly 6 decimals (Unix times and
 *                     durations in seconds, to the microsecond; a ratio)
 *            str      a JSON string: the agent's bytes, with '"', '\' and
 *                     control bytes escaped and nothing else changed, so
 *                     a file name that is not UTF-8 stays as it is
 *            strnull  a str, or null
 *            strs     an array of str
 *            tops     an array of objects of HEAPWATCH_ALERT_TOP_FIELDS
 *            info     (metrics) labels pid and exe on the value 1
 *   kind   (metrics) the Prometheus TYPE: counter or gauge
 *   doc    one line on the field (for the metrics, `help` is the HELP
 *          text itself, written as it stands)
 *
 * Files (README.md, "Files in HEAPWATCH_OUT"): a timeline record is one
 * line of timeline.<tag>.jsonl.zst, an alert record one line of
 * alerts.<tag>.jsonl, a summary the whole of summary.<tag>.json; /metrics
 * is the Prometheus text page of HEAPWATCH_HTTP. Readers must ignore keys
 * they do not know, and take a key that is missing as unknown (files of
 * another version of the agent, or not the agent's at all).
 */
#ifndef HEAPWATCH_AGENT_RECORDS_H
#define HEAPWATCH_AGENT_RECORDS_H

/* The live map's state over the whole map (all its shards, each read under
 * its lock), in the timeline, the summary and /metrics under these names.
 * Every shard keeps Go's invariant count <= 6.5 x 2^B, so the map does:
 * map_entries <= 6.5 x map_buckets <= 6.5 x 2^map_log2_buckets (unless a
 * growth failed for lack of memory: the summary's map_grow_failures). */
#define HEAPWATCH_MAP_FIELDS(X) \
    X(map_entries, u64, "sampled allocations live in the agent's map") \
    X(map_buckets, u64, "buckets of the map, all shards (each shard's 2^B; a growing shard's new table)") \
    X(map_log2_buckets, u64, "log2 of map_buckets, rounded up: the B of one Go map with at least as many buckets") \
    X(map_overflow_buckets, u64, "overflow buckets linked in the map's tables, counted exactly") \
    X(map_shards, u64, "shards of the map") \
    X(map_shards_growing, u64, "shards evacuating their old table into a new one") \
    X(map_nevacuate, u64, "old buckets evacuated so far, summed over the growing shards (Go's nevacuate)") \
    X(map_noldbuckets, u64, "old buckets of the growing shards: map_nevacuate / map_noldbuckets is the evacuation's progress")

/* One timeline record: the counters at a snapshot, every HEAPWATCH_INTERVAL
 * and once more at exit. HEAPWATCH_TIMELINE_FIELDS_MAP(X, M) is the same
 * list with M for the fields of HEAPWATCH_MAP_FIELDS, for a reader that
 * keeps every record and wants none of them (the tools: rundir.h). */
#define HEAPWATCH_TIMELINE_FIELDS(X) HEAPWATCH_TIMELINE_FIELDS_MAP(X, X)
#define HEAPWATCH_TIMELINE_FIELDS_MAP(X, M) \
    X(time, f6, "when the snapshot was taken (Unix seconds)") \
    X(elapsed_s, f3, "seconds since the agent started") \
    X(mallocs, u64, "successful allocations so far") \
    X(frees, u64, "frees of non-NULL pointers so far") \
    X(live_objects, i64, "mallocs - frees") \
    X(live_bytes, i64, "alloc_bytes - free_bytes") \
    X(alloc_bytes, u64, "usable bytes allocated so far") \
    X(free_bytes, u64, "usable bytes freed so far") \
    X(objects_rate, f3, "growth of live objects per second over the window (0: no rate yet)") \
    X(bytes_rate, f3, "growth of live bytes per second over the window (0: no rate yet)") \
    X(window_s, f3, "the seconds the rates span (0: no rate yet)") \
    X(rate_judged, u64, "1 when window_s is at least half of HEAPWATCH_WINDOW: the rates count toward alerts (and heapwatch check's rate limits); 0: too short a span to judge") \
    X(level, str, "the alert level after this snapshot: none, warn or crit") \
    X(peak_live_bytes, u64, "the highest live_bytes seen so far (snapshots and sampled allocations)") \
    X(map_count, u64, "sampled allocations live in the agent's map (the old name of map_entries)") \
    X(map_B, u64, "map_log2_buckets under its old name (before issue 16: the largest shard's B)") \
    X(map_noverflow, u64, "overflow buckets of the map (approximate, as Go's; summed over the shards)") \
    HEAPWATCH_MAP_FIELDS(M) \
    X(stacks, u64, "distinct sampled stacks") \
    X(agent_memory_bytes, u64, "memory the agent has mapped")

/* summary.<tag>.json, written at exit (one key per line). */
#define HEAPWATCH_SUMMARY_FIELDS(X) \
    X(pid, u64, "the process id") \
    X(ppid, u64, "the parent's process id at exit") \
    X(exe, str, "the executable's path (/proc/self/exe)") \
    X(cmdline, strs, "the command line at exit (/proc/self/cmdline: the first 64 arguments and 2 KiB, a longer argument cut with \"...\")") \
    X(start_time, f6, "when the agent started (Unix seconds)") \
    X(end_time, f6, "when the summary was written (Unix seconds)") \
    X(duration_s, f6, "end_time - start_time") \
    X(mallocs, u64, "successful allocations") \
    X(frees, u64, "frees of non-NULL pointers") \
    X(live_objects, i64, "mallocs - frees: objects live at exit") \
    X(live_bytes, i64, "alloc_bytes - free_bytes: bytes live at exit") \
    X(peak_live_bytes, u64, "the highest live_bytes seen at a snapshot, a sampled allocation or at exit") \
    X(peak_time, f6, "when peak_live_bytes was seen (Unix seconds)") \
    X(peak_rss_bytes, u64, "the kernel's peak resident set size (VmHWM; 0 when unknown)") \
    X(peak_profile, strnull, "the profile of the stacks in use at the peak: the peak profile, or the exit profile when live bytes at exit were within 10 % of the peak's copy (null: none, or fewer than 8 sampled allocations held at the peak)") \
    X(malloc_owner, strnull, "null, or the object whose malloc the program's calls reach instead of the agent's (preloaded before it, or the executable with an allocator linked in): the agent saw no allocation") \
    X(alloc_bytes, u64, "usable bytes allocated") \
    X(free_bytes, u64, "usable bytes freed") \
    X(rate, u64, "HEAPWATCH_RATE: mean bytes between samples (0: no sampling)") \
    X(samples, u64, "allocations sampled") \
    X(samples_dropped, u64, "samples lost for lack of agent memory") \
    X(sampled_live, u64, "sampled allocations live at exit") \
    X(stacks, u64, "distinct sampled stacks") \
    X(stacks_bytes, u64, "memory of the stack table") \
    X(map_count, u64, "sampled allocations live in the agent's map (the old name of map_entries)") \
    X(map_B, u64, "map_log2_buckets under its old name (before issue 16: the largest shard's B)") \
    X(map_noverflow, u64, "overflow buckets of the map (approximate, as Go's; summed over the shards)") \
    HEAPWATCH_MAP_FIELDS(X) \
    X(map_bytes, u64, "memory of the live map") \
    X(map_grow_failures, u64, "times a shard could not grow (it kept its table)") \
    X(filter_bytes, u64, "memory of the free filter") \
    X(filter_hits, u64, "frees the filter sent to the live map") \
    X(filter_false_positives, u64, "of those, frees of allocations never sampled") \
    X(filter_false_positive_rate, f6, "false positives per unsampled free") \
    X(thread_blocks, u64, "per-thread counter blocks in use") \
    X(agent_memory_bytes, u64, "memory the agent has mapped") \
    X(agent_memory_inuse_bytes, u64, "of it, memory in use") \
    X(symbol_tables, u64, "symbol tables kept for naming frames (loaded for an interval, signal, HTTP or alert profile; the exit and peak profiles name the files not kept yet by one pass, and keep nothing)") \
    X(symbol_table_bytes, u64, "memory of the name cache: those tables and its own records (part of agent_memory_inuse_bytes)") \
    X(files, strs, "the files this process wrote (the first 64 names), then the summary itself") \
    X(files_total, u64, "the files this process wrote, the summary included, all counted") \
    X(files_removed, strs, "profiles removed by HEAPWATCH_MAX_PROFILES (the first 64 names)") \
    X(files_removed_total, u64, "profiles removed by HEAPWATCH_MAX_PROFILES, all counted") \
    X(max_profiles, u64, "HEAPWATCH_MAX_PROFILES") \
    X(incomplete, strs, "what the exit could not do ([] when nothing was skipped)")

/* One line of alerts.<tag>.jsonl: an alert raised (event "alert") or one
 * that ended (event "recovery"; level is then the level that ended). */
#define HEAPWATCH_ALERT_FIELDS(X) \
    X(time, f6, "when (Unix seconds)") \
    X(pid, u64, "the process id") \
    X(exe, str, "the executable's name") \
    X(event, str, "alert or recovery") \
    X(level, str, "warn or crit") \
    X(metric, str, "the rate judged: objects_rate") \
    X(value, f3, "the rate at the snapshot") \
    X(threshold, u64, "the threshold of the level (HEAPWATCH_WARN or HEAPWATCH_CRIT)") \
    X(window_s, f3, "the seconds the rate spans") \
    X(live_objects, i64, "live objects at the snapshot") \
    X(live_bytes, i64, "live bytes at the snapshot") \
    X(bytes_rate, f3, "growth of live bytes per second over the window") \
    X(growth_objects, i64, "growth of live objects over the window") \
    X(growth_bytes, i64, "growth of live bytes over the window") \
    X(profile, strnull, "the heap profile written for the alert, or null") \
    X(top, tops, "the stacks that grew most over the window, most first ([] on recovery)")

/* One entry of an alert's "top". */
/* HEAPWATCH_WRAPPER_PREFIXES(X): the allocation wrappers an alert's
 * "function" skips (and the report's leaks too): name prefixes, mangled
 * and demangled (profiles name functions demangled, older ones mangled).
 * X(prefix) for each; one list for the agent and the tools. */
#define HEAPWATCH_WRAPPER_PREFIXES(X) \
    X("_Znw") X("_Zna")                                   /* operator new, new[] */ \
    X("_ZNSt15__new_allocator") X("_ZN9__gnu_cxx13new_allocator") \
    X("_ZNSt16allocator_traits") X("_ZNSt12_Vector_base") \
    X("_ZNSaI")                                           /* std::allocator<...> */ \
    X("strdup") X("strndup") X("__strdup") X("__strndup") \
    X("__libc_") X("xmalloc") X("xcalloc") X("xrealloc") X("xstrdup") \
    X("operator new") X("std::__new_allocator") X("__gnu_cxx::new_allocator") \
    X("std::allocator_traits") X("std::_Vector_base") X("std::allocator<")

#define HEAPWATCH_ALERT_TOP_FIELDS(X) \
    X(stack, strs, "function names (C++ demangled; unnamed: file+0xoffset, or a 0x address), innermost first") \
    X(function, str, "the innermost frame that is not an allocation wrapper, as in stack (\"?\" if none)") \
    X(growth_bytes, i64, "the stack's growth of live bytes over the window (unsampled)") \
    X(growth_objects, i64, "the stack's growth of live objects over the window (unsampled)")

/* GET /metrics: "# HELP heapwatch_<name> <help>", "# TYPE heapwatch_<name>
 * <kind>", "heapwatch_<name> <value>" for each, in this order; type info
 * is the one series with labels: heapwatch_process_info{pid="..",exe=".."}
 * 1 (the other series carry none: Prometheus adds job and instance, and
 * contrib/prometheus/heapwatch.rules.yml joins pid and exe on them).
 * Names as `promtool check metrics` wants them: counters end in _total,
 * no gauge ends in _count (so map_count is map_entries here) and no name
 * holds an abbreviated unit (so map_B is map_log2_buckets). */
#define HEAPWATCH_METRICS(X) \
    X(process_info, info, gauge, "The process: pid and exe (/proc/self/exe) as labels, always 1; join on (job, instance).") \
    X(mallocs_total, u64, counter, "Successful allocations.") \
    X(frees_total, u64, counter, "Frees of non-NULL pointers.") \
    X(alloc_bytes_total, u64, counter, "Usable bytes allocated.") \
    X(free_bytes_total, u64, counter, "Usable bytes freed.") \
    X(live_objects, i64, gauge, "Live objects: mallocs - frees.") \
    X(live_bytes, i64, gauge, "Live usable bytes: alloc_bytes - free_bytes.") \
    X(peak_live_bytes, u64, gauge, "Highest live bytes seen so far (snapshots and sampled allocations).") \
    X(objects_rate, f3, gauge, "Live objects per second over HEAPWATCH_WINDOW, at the last snapshot.") \
    X(bytes_rate, f3, gauge, "Live bytes per second over HEAPWATCH_WINDOW, at the last snapshot.") \
    X(alert_level, u64, gauge, "Growth alert level: 0 none, 1 warn, 2 crit.") \
    X(sampling_rate_bytes, u64, gauge, "HEAPWATCH_RATE: mean bytes between samples (0: none).") \
    X(samples_total, u64, counter, "Allocations sampled.") \
    X(samples_dropped_total, u64, counter, "Samples lost for lack of agent memory.") \
    X(map_entries, u64, gauge, "Live sampled allocations in the agent's map (timeline and summary: map_entries, and map_count).") \
    X(map_buckets, u64, gauge, "Buckets of the agent's map, all shards.") \
    X(map_log2_buckets, u64, gauge, "log2 of map_buckets, rounded up (timeline and summary: map_log2_buckets, and map_B).") \
    X(map_overflow_buckets, u64, gauge, "Overflow buckets of the map, counted exactly.") \
    X(map_noverflow, u64, gauge, "Overflow buckets of the map (approximate, as Go's; summed over the shards).") \
    X(map_shards, u64, gauge, "Shards of the map.") \
    X(map_shards_growing, u64, gauge, "Shards evacuating their old table into a new one.") \
    X(map_nevacuate, u64, gauge, "Old buckets evacuated so far, summed over the growing shards (Go's nevacuate).") \
    X(map_noldbuckets, u64, gauge, "Old buckets of the growing shards (progress: map_nevacuate / map_noldbuckets).") \
    X(stacks, u64, gauge, "Distinct sampled stacks.") \
    X(agent_memory_bytes, u64, gauge, "Memory the agent has mapped.") \
    X(start_time_seconds, u64, gauge, "When the process started (Unix seconds).")

#endif
