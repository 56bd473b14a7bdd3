#!/usr/bin/env bash
# safety_fdrace.sh - issue 11, class 1: a program that keeps taking the low
# descriptor numbers back with dup2 (as a shell's `exec 3>log` does) while
# the agent's background thread writes a timeline record every 10 ms.
# safe_fdrace checks itself: every write succeeds and each of its seven
# files holds exactly its own lines. The agent must have been writing all
# along (timeline records counted), at rate 0 and at the default rate.
set -u
. tests/integration/lib.sh

for rate in 0 524288; do
    for run in 1 2; do
        d=$T/r$rate.$run
        mkdir -p "$d"
        out=$(HEAPWATCH_RATE=$rate HEAPWATCH_THREAD=on HEAPWATCH_INTERVAL=0.01 \
              with_agent "$d/out" timeout 60 "$PROGS/safe_fdrace" "$d" 60000 2>"$d/err"); st=$?
        records=$(zstd -dc "$d"/out/timeline.*.jsonl.zst 2>/dev/null | wc -l)
        if [ $st = 0 ] && [ "$out" = ok ] && [ "$records" -ge 5 ] && [ ! -s "$d/err" ]; then
            ok "rate $rate, run $run: 420000 dup2s over 3..9 while the agent wrote $records records: every write landed, every file exactly its own lines"
        else
            not_ok "rate $rate, run $run: status $st, '$out', $records records, stderr: $(head -c 300 "$d/err")"
        fi
    done
done
finish
