// map_bench.go - Go's own runtime map in map_bench (the "go1.19" rows).
//
// heapwatch's map is a C port of Go's classic runtime map (buckets of 8,
// tophash bytes, overflow chains, incremental evacuation), so Go's map is
// the reference implementation it is measured against. This program is a
// child of map_bench (tests/bench/map_bench.cc, which documents what is
// measured); it does the same operations on the same keys with the same
// timing, and answers over a pipe, so its runs are interleaved with the
// C++ tables' repetitions.
//
// What runs
//   map[uint64]value24 with value24 = three uint64 (24 bytes, no pointers).
//   An 8-byte key with no pointers and an element of at most 128 bytes
//   takes the runtime's 64-bit fast paths (runtime/map_fast64.go):
//   mapassign_fast64, mapaccess2_fast64 and mapdelete_fast64, the same
//   family heapwatch's map_insert64 / map_lookup64 / map_delete64 port; so
//   it is that Go path ours is compared against. Go hashes the key with
//   its own memhash64 (AES-based where the CPU has AES-NI) and a random
//   per-map seed; the C++ tables share one hash (mum fold), Go cannot be
//   given it.
//   The keys are map_bench's own: the same malloc pointers in the same
//   orders (live, reordered, spares), sent down the pipe; churn draws its
//   victims from the same splitmix64 sequence (kChurnSeed). Every table
//   starts empty with no size hint (make(map[uint64]value24)), as the C++
//   ones do.
//
// Garbage collection
//   The collector is off (SetGCPercent(-1)); runtime.GC() runs before each
//   fill-and-empty round and debug.FreeOSMemory (a collection, then the
//   freed heap returned to the kernel) after each command, outside every
//   timed phase: the figures are the map's, not the collector's (its buckets
//   hold no pointers, so marking them costs little anyway; what a
//   collection would add is sweeping and the collector's own CPU time).
//   The collection before each round lets the next table reuse the last
//   one's memory, as the C++ tables reuse theirs through malloc: without
//   it every round would fault in fresh pages (at 1k entries that made
//   Go's insert about twice as slow).
//   After each command (a repetition, a growth run) debug.FreeOSMemory
//   hands the freed heap back to the kernel, as glibc (blocks from 32 MiB)
//   and heapwatch's arena (from 2 MiB) unmap a large table's arrays when it
//   is freed; so every table's next repetition faults its pages in again.
//   Go's heap would keep them, and from the second repetition on its
//   10M-entry table would run on pages already faulted in (its insert at
//   10M measured 260 against heapwatch's 440 ns/op that way, on a VM where
//   faulting in a 2 MiB page the host has taken back costs up to 5 ms, 25
//   times what it costs when the page was freed moments before).
//
// Clocks
//   Phases: time.Now / time.Since (CLOCK_MONOTONIC through the vDSO), as
//   map_bench's now_ns. Growth: runtime.cputicks (RDTSCP on amd64, as
//   map_bench's TickClock), calibrated against time.Now over 20 ms.
//
// Protocol (stdin: commands, stdout: one answer line each; any error ends
// the program with one stderr line and exit status 1)
//   keys N M        then 8*(2N+M) bytes, little-endian uint64: the N live
//                   keys (insertion order), the same N reordered, the M
//                   spares                          -> "ok"
//   ops MIN_OPS     one repetition of every op      -> "ops" and the ns/op
//                   of insert lookup_hit lookup_miss delete churn
//   growth          one growth run over the live keys
//                   -> "growth worst_ns p99.99_ns p99.9_ns mean_ns
//                       total_ms over_1ms"
//   EOF             exit 0
//
// Build: go build -o map_bench_go map_bench.go (standard library only;
// tests/bench/bench.mk does it with GOCACHE under the build directory).
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"
	_ "unsafe" // go:linkname
)

//go:linkname cputicks runtime.cputicks
func cputicks() int64

const churnSeed = 0x636875726e636875 // map_bench.cc's kChurnSeed

// value24: as big as what the agent stores per live allocation; the first
// word repeats the key so a lookup proves it found the right entry.
type value24 struct {
	keyCheck uint64
	stackID  uint64
	size     uint64
}

func valueFor(key uint64, pos int) value24 {
	return value24{key, uint64(pos), key & 511}
}

// splitMix64: map_bench.cc's SplitMix64, bit for bit.
type splitMix64 struct{ state uint64 }

func (r *splitMix64) next() uint64 {
	r.state += 0x9E3779B97F4A7C15
	z := r.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// below: uniform in [0, n) by multiply-high, as map_bench.cc.
func (r *splitMix64) below(n uint64) uint64 {
	hi, _ := bits.Mul64(r.next(), n)
	return hi
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "map_bench_go: "+format+"\n", args...)
	os.Exit(1)
}

// sink: written by every lookup loop so the compiler keeps the lookups.
var sink uint64

type keyPool struct {
	live      []uint64
	reordered []uint64
	spares    []uint64
}

// ---------------------------------------------------------------------
// Timed phases; each returns elapsed nanoseconds and checks the result.
// ---------------------------------------------------------------------

func timeInserts(m map[uint64]value24, keys []uint64) int64 {
	start := time.Now()
	for pos, k := range keys {
		m[k] = valueFor(k, pos)
	}
	elapsed := time.Since(start).Nanoseconds()
	if len(m) != len(keys) {
		fail("insert: size %d after %d inserts", len(m), len(keys))
	}
	return elapsed
}

func timeLookups(m map[uint64]value24, keys []uint64, ops int, expectHits bool) int64 {
	var found, wrong uint64
	i := 0
	start := time.Now()
	for op := 0; op < ops; op++ {
		var keyCheck uint64
		if v, ok := m[keys[i]]; ok {
			keyCheck = v.keyCheck
		}
		if keyCheck != 0 {
			found++
			if keyCheck != keys[i] {
				wrong++
			}
		}
		if i++; i == len(keys) {
			i = 0
		}
	}
	elapsed := time.Since(start).Nanoseconds()
	sink += found
	want := uint64(0)
	if expectHits {
		want = uint64(ops)
	}
	if found != want || wrong != 0 {
		fail("lookup (hits expected: %v): %d of %d keys found, %d with another key's value",
			expectHits, found, ops, wrong)
	}
	return elapsed
}

// timeChurn: ops times, insert the oldest spare and delete a random live
// key, which becomes the newest spare (map_bench.cc's time_churn). delete
// does not say whether the key was there: the size check at the end does
// (every fresh key is new, so a missed delete would leave one entry more).
func timeChurn(m map[uint64]value24, live, spares []uint64, ops int) int64 {
	rng := splitMix64{churnSeed}
	head := 0
	start := time.Now()
	for op := 0; op < ops; op++ {
		pos := int(rng.below(uint64(len(live))))
		fresh := spares[head]
		m[fresh] = valueFor(fresh, pos)
		delete(m, live[pos])
		spares[head] = live[pos]
		live[pos] = fresh
		if head++; head == len(spares) {
			head = 0
		}
	}
	elapsed := time.Since(start).Nanoseconds()
	if len(m) != len(live) {
		fail("churn: size %d (want %d)", len(m), len(live))
	}
	return elapsed
}

func timeDeletes(m map[uint64]value24, keys []uint64) int64 {
	start := time.Now()
	for _, k := range keys {
		delete(m, k)
	}
	elapsed := time.Since(start).Nanoseconds()
	if len(m) != 0 {
		fail("delete: size %d left after %d deletes", len(m), len(keys))
	}
	return elapsed
}

// measureOps: map_bench.cc's measure_ops: round 0 fills a table, times
// lookups and churn on it, then empties it; further rounds (only when
// N < minOps) fill and empty fresh tables.
func measureOps(pool *keyPool, minOps int) [5]float64 {
	n := len(pool.live)
	rounds := (minOps + n - 1) / n
	if rounds < 1 {
		rounds = 1
	}
	var insertNs, deleteNs, hitNs, missNs, churnNs int64
	{
		live := append([]uint64(nil), pool.live...)
		spares := append([]uint64(nil), pool.spares...)
		m := make(map[uint64]value24)
		insertNs += timeInserts(m, live)
		hitNs = timeLookups(m, pool.reordered, minOps, true)
		missNs = timeLookups(m, pool.spares, minOps, false)
		churnNs = timeChurn(m, live, spares, minOps)
		deleteNs += timeDeletes(m, live)
	}
	for round := 1; round < rounds; round++ {
		runtime.GC() // the last round's table is reused memory, as in C++
		m := make(map[uint64]value24)
		insertNs += timeInserts(m, pool.live)
		deleteNs += timeDeletes(m, pool.reordered)
	}
	total := float64(rounds * n)
	return [5]float64{
		float64(insertNs) / total,
		float64(hitNs) / float64(minOps),
		float64(missNs) / float64(minOps),
		float64(deleteNs) / total,
		float64(churnNs) / float64(minOps),
	}
}

// ---------------------------------------------------------------------
// Growth latency
// ---------------------------------------------------------------------

// nsPerTick: cputicks calibrated against the monotonic clock (20 ms).
func nsPerTick() float64 {
	t0, c0 := time.Now(), cputicks()
	for time.Since(t0) < 20*time.Millisecond {
	}
	ns, c1 := time.Since(t0).Nanoseconds(), cputicks()
	return float64(ns) / float64(c1-c0)
}

type uint32s []uint32

func (s uint32s) Len() int           { return len(s) }
func (s uint32s) Less(i, j int) bool { return s[i] < s[j] }
func (s uint32s) Swap(i, j int)      { s[i], s[j] = s[j], s[i] }

// percentile: map_bench.cc's percentile_ticks on sorted ticks.
func percentile(sorted []uint32, q float64) uint32 {
	k := int(q * float64(len(sorted)))
	if k > len(sorted)-1 {
		k = len(sorted) - 1
	}
	return sorted[k]
}

// measureGrowth: inserts the keys one by one into an empty map, timing
// each insert on its own.
func measureGrowth(keys []uint64, ticks []uint32, nsTick float64) string {
	var total int64
	var worst uint32
	m := make(map[uint64]value24)
	for pos, k := range keys {
		start := cputicks()
		m[k] = valueFor(k, pos)
		spent := cputicks() - start
		t := uint32(0xffffffff)
		if spent < int64(t) {
			t = uint32(spent)
		}
		ticks[pos] = t
		total += spent
		if t > worst {
			worst = t
		}
	}
	if len(m) != len(keys) {
		fail("growth: size %d after %d inserts", len(m), len(keys))
	}
	sort.Sort(uint32s(ticks))
	over := len(ticks) - sort.Search(len(ticks), func(i int) bool {
		return float64(ticks[i])*nsTick > 1e6
	})
	return fmt.Sprintf("growth %.0f %.0f %.0f %.2f %.2f %d",
		float64(worst)*nsTick,
		float64(percentile(ticks, 0.9999))*nsTick,
		float64(percentile(ticks, 0.999))*nsTick,
		float64(total)*nsTick/float64(len(keys)),
		float64(total)*nsTick/1e6, over)
}

// ---------------------------------------------------------------------
// The command loop
// ---------------------------------------------------------------------

func readKeys(in *bufio.Reader, n int) []uint64 {
	buf := make([]byte, 8*n)
	if _, err := io.ReadFull(in, buf); err != nil {
		fail("reading %d keys: %v", n, err)
	}
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = binary.LittleEndian.Uint64(buf[8*i:])
	}
	return keys
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		fail("bad number %q", s)
	}
	return n
}

func main() {
	debug.SetGCPercent(-1)
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriter(os.Stdout)
	var pool *keyPool
	var ticks []uint32
	nsTick := nsPerTick()
	for {
		line, err := in.ReadString('\n')
		if err == io.EOF && line == "" {
			return
		}
		if err != nil {
			fail("reading a command: %v", err)
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "keys":
			n, m := atoi(f[1]), atoi(f[2])
			pool = nil
			runtime.GC()
			pool = &keyPool{readKeys(in, n), readKeys(in, n), readKeys(in, m)}
			ticks = nil
			fmt.Fprintln(out, "ok")
		case len(f) == 2 && f[0] == "ops" && pool != nil:
			t := measureOps(pool, atoi(f[1]))
			fmt.Fprintf(out, "ops %.4f %.4f %.4f %.4f %.4f\n", t[0], t[1], t[2], t[3], t[4])
		case len(f) == 1 && f[0] == "growth" && pool != nil:
			if ticks == nil {
				ticks = make([]uint32, len(pool.live))
				for i := range ticks {
					ticks[i] = 1 // touched before timing
				}
			}
			fmt.Fprintln(out, measureGrowth(pool.live, ticks, nsTick))
		default:
			fail("bad command %q", strings.TrimSpace(line))
		}
		debug.FreeOSMemory() // the table is freed: see "Garbage collection"
		if err := out.Flush(); err != nil {
			fail("writing: %v", err)
		}
	}
}
