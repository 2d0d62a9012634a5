#!/bin/bash
# tests/fuzz/campaign.sh — runs every libFuzzer target until it has executed 10^7 inputs in all,
# in chunks of 10^6, so that a campaign stopped at any moment keeps what it counted and continues
# where it stopped when started again. Each chunk starts from the corpus the earlier ones grew.
#
#   tests/fuzz/campaign.sh BUILD_FUZZ_DIR OUT_DIR [TARGET...]    (default: every target)
#
# OUT_DIR/<target>.count holds one line per finished chunk (executions, wall seconds),
# OUT_DIR/<target>.log libFuzzer's output (each chunk's appended when it ends), OUT_DIR/campaign.log one line per chunk, and
# OUT_DIR/<target>-* any crash, leak, timeout or slow input libFuzzer writes. A chunk that ends with
# a non-zero status (a crash) stops that target, except a timeout whose input runs in time when run
# again alone (below). Scratch files go to TMPDIR (tmpfs is faster).
set -u
if [ $# -lt 2 ]; then echo "usage: $0 BUILD_FUZZ_DIR OUT_DIR [TARGET...]" >&2; exit 2; fi
build=$1; out=$2; shift 2
src=$(cd "$(dirname "$0")/../.." && pwd)
targets=${*:-tokenizer overrides parser checkpoint experiment text sentencepiece}
total=10000000; chunk=1000000
mkdir -p "$out"
for t in $targets; do
  bin=$build/fuzz_$t
  if [ ! -x "$bin" ]; then echo "$0: $bin is not built" >&2; exit 1; fi
  mkdir -p "$out/corpus/$t" && cp -rn "$src/tests/fuzz/corpus/$t/." "$out/corpus/$t/"
  touch "$out/$t.count"
  while :; do
    done_runs=$(awk '{s += $1} END {print s + 0}' "$out/$t.count")
    [ "$done_runs" -ge "$total" ] && break
    start=$(date +%s)
    # The chunk's own log, then appended to the target's: two campaigns may run the same target
    # at once (one a core), and each must count its own chunk.
    chunk_log=$(mktemp "$out/$t.chunk.XXXXXX")
    nice -n 19 "$bin" "$out/corpus/$t" -runs=$chunk -max_len=4096 -timeout=600 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$out/$t-" > "$chunk_log" 2>&1
    status=$?
    runs=$(grep 'stat::number_of_executed_units' "$chunk_log" | tail -1 | awk '{print $2}')
    cat "$chunk_log" >> "$out/$t.log" && rm -f "$chunk_log"
    echo "$(date -u +%FT%TZ) $t chunk status=$status runs=$runs wall=$(( $(date +%s) - start ))s" >> "$out/campaign.log"
    if [ $status -eq 70 ]; then
      # libFuzzer's timeout is wall-clock time: a fuzzer held (SIGSTOP while the machine is measured,
      # a suspended VM) past -timeout reports the input it was on. Such an input runs in time alone;
      # it is kept as <file>.ran-in-time and the executions before the alarm count. One that times
      # out alone again is a finding and stops the target like a crash.
      unit=$(ls -t "$out/$t-timeout-"* 2>/dev/null | grep -v '\.ran-in-time$' | head -1)
      if [ -n "$unit" ] && nice -n 19 "$bin" -runs=1 -timeout=600 -rss_limit_mb=2048 "$unit" >> "$out/$t.log" 2>&1; then
        mv "$unit" "$unit.ran-in-time"
        echo "$(date -u +%FT%TZ) $t timeout of a held process: $(basename "$unit") ran in time alone" >> "$out/campaign.log"
        status=0
      fi
    fi
    if [ $status -ne 0 ]; then echo "$(date -u +%FT%TZ) $t stopped: status $status" >> "$out/campaign.log"; break; fi
    echo "$runs $(( $(date +%s) - start ))" >> "$out/$t.count"
  done
done
