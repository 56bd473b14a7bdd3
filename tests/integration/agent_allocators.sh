#!/usr/bin/env bash
# agent_allocators.sh - the agent in front of another allocator: jemalloc
# and tcmalloc preloaded after it (LD_PRELOAD="$AGENT liballoc.so"), and a
# program linked with jemalloc. The agent calls the next malloc in the
# search order, so the program must keep its allocator: it still works,
# malloc_usable_size is the allocator's own, the counters are exact against
# the programs' own counts (agent_truth, life_alloc: bytes measured with the
# allocator's own size function), and a summary is written. A missing
# allocator is skipped with the Debian package that provides it.
set -u
. tests/integration/lib.sh
. tests/integration/progs/life_lib.sh

LIBDIR=/usr/lib/x86_64-linux-gnu
PY3=$(command -v python3)

# real_programs NAME: programs that do not count, same output either way.
real_programs() {
    local name=$1
    same_behaviour "$name: python3 (PYTHONMALLOC=malloc)" "$T/$name-py" env PYTHONMALLOC=malloc "$PY3" -c \
        'import json, collections; d = {str(i): list(range(i % 50)) for i in range(20000)}; print(len(json.dumps(d)), collections.Counter(len(v) for v in d.values()).most_common(2))'
    seq 1 20000 | sort -R --random-source=/dev/zero > "$T/numbers"
    same_behaviour "$name: sort" "$T/$name-sort" sort -n "$T/numbers"
    check "$name: sort: one valid summary" summary_ok "$(only_summary "$T/$name-sort")"
}

# allocator NAME LIBRARY PACKAGE: every check with LIBRARY preloaded after the agent.
allocator() {
    local name=$1 lib=$2 pkg=$3
    if [ ! -e "$lib" ]; then
        ok "$name: preloaded after the agent # SKIP $lib missing: add Debian package $pkg to DEB_PACKAGES"
        return
    fi
    export LIFE_BASE_PRELOAD=$lib

    # agent_truth: exact counters, bytes from malloc_usable_size (the allocator's).
    run_agent "$T/$name-truth" "$PROGS/agent_truth" >"$T/$name-truth.tap" 2>"$T/$name-truth.err"
    check_eq "$name: agent_truth exits 0 (exact counters, every allocation function)" 0 "$rc"
    sed -n "s/^\(\(not \)\{0,1\}ok\) - /\1 - $name: agent_truth: /p" "$T/$name-truth.tap" > "$T/$name-truth.rel"
    relay "$T/$name-truth.rel"
    check "$name: agent_truth: one valid summary" summary_ok "$(only_summary "$T/$name-truth")" 40000

    # agent_truth_cxx: operator new and delete. jemalloc and tcmalloc define
    # their own, which the program binds to before libstdc++'s: they never
    # reach the agent's malloc.
    run_agent "$T/$name-cxx" "$PROGS/agent_truth_cxx" >"$T/$name-cxx.tap" 2>&1
    sed -n "s/^\(\(not \)\{0,1\}ok\) - /\1 - $name: agent_truth_cxx: /p" "$T/$name-cxx.tap" > "$T/$name-cxx.rel"
    relay "$T/$name-cxx.rel" "agent_truth_cxx: " \
        "the agent does not interpose operator new/delete, which $name defines itself"
    known_bug "the agent does not interpose operator new/delete, which $name defines itself" \
        "$name: agent_truth_cxx exits 0" [ $rc = 0 ]

    # life_alloc: the allocator serves the blocks; same output without the agent.
    same_behaviour "$name: life_alloc" "$T/$name-alloc" env LIFE_TAP="$T/$name-alloc.tap" \
        "$PROGS/life_alloc" "$name"
    check_eq "$name: life_alloc: malloc and malloc_usable_size are $name's" \
        3 "$(grep -c ": yes$" "$out_agent")"
    sed -i "s/^\(\(not \)\{0,1\}ok\) - /\1 - $name: /" "$T/$name-alloc.tap"
    relay "$T/$name-alloc.tap"
    check "$name: life_alloc: one valid summary" summary_ok "$(only_summary "$T/$name-alloc")"

    real_programs "$name"
    unset LIFE_BASE_PRELOAD
}

allocator jemalloc "$LIBDIR/libjemalloc.so.2" libjemalloc2
allocator tcmalloc "$LIBDIR/libtcmalloc.so.4" libgoogle-perftools4

# --- a program linked with jemalloc ------------------------------------------
if [ -x "$PROGS/life_alloc_je" ]; then
    same_behaviour "linked jemalloc: life_alloc_je" "$T/je-linked" env LIFE_TAP="$T/je-linked.tap" \
        "$PROGS/life_alloc_je" jemalloc
    check_eq "linked jemalloc: malloc and malloc_usable_size are jemalloc's" \
        3 "$(grep -c ": yes$" "$out_agent")"
    sed -i "s/^\(\(not \)\{0,1\}ok\) - /\1 - linked jemalloc: /" "$T/je-linked.tap"
    relay "$T/je-linked.tap"
    check "linked jemalloc: one valid summary" summary_ok "$(only_summary "$T/je-linked")"
else
    ok "linked jemalloc # SKIP $PROGS/life_alloc_je not built: add Debian package libjemalloc-dev to DEB_PACKAGES"
fi

# --- glibc, for comparison ------------------------------------------------------
same_behaviour "glibc: life_alloc" "$T/glibc-alloc" env LIFE_TAP="$T/glibc-alloc.tap" "$PROGS/life_alloc" glibc
sed -i "s/^\(\(not \)\{0,1\}ok\) - /\1 - glibc: /" "$T/glibc-alloc.tap"
relay "$T/glibc-alloc.tap"

finish
