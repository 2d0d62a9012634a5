#!/bin/sh
# Data-parallel throughput on one machine (docs/performance.md, "Two ranks against two threads"):
# the same Multi30k training steps as 1 rank x 2 threads and as 2 ranks x 1 thread, one after the
# other in one invocation, then the tokens/s ratio and the allreduce time per step with the part
# hidden behind backward. Run it on a quiet machine, from the repository root:
#   experiments/measure_distributed.sh [DATA_DIR] [STEPS]
# (defaults: ../shared/data/multi30k, 300 steps). EXPERIMENT=file.attn measures another experiment.
set -eu
data=${1:-../shared/data/multi30k}
steps=${2:-300}
experiment=${EXPERIMENT:-experiments/multi30k.attn}
exe=${ATTNLAB:-build/attnlab}
out=$(mktemp -d /tmp/attnlab-measure-XXXXXX)
# Shared memory between the two ranks; no network interface.
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_oob_tcp_if_include=lo
common="--data $data --set train.max_steps=$steps --set train.max_minutes=0 --set train.valid_every=0 --set train.checkpoint_every=0 --set train.valid_bleu_sentences=0"
# shellcheck disable=SC2086
"$exe" run "$experiment" $common --threads 2 --out "$out/one-rank" >"$out/one-rank.log" 2>&1
# shellcheck disable=SC2086
mpirun -np 2 --oversubscribe --allow-run-as-root --bind-to core "$exe" run "$experiment" $common --threads 1 --out "$out/two-ranks" \
  >"$out/two-ranks.log" 2>&1
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def train(run):
    return [e for e in map(json.loads, open(f"{out}/{run}/metrics.jsonl")) if e["event"] == "train"]
one, two = train("one-rank"), train("two-ranks")
skip = min(20, len(one) // 5)  # plan building and page faults of the first steps
def rate(ev):
    a, b = ev[skip], ev[-1]
    return sum(e["tokens"] for e in ev[skip + 1:]) / (b["elapsed_s"] - a["elapsed_s"])
r1, r2 = rate(one), rate(two)
ar = [e["allreduce_s"] for e in two[skip:]]
ex = [e["allreduce_exposed_s"] for e in two[skip:]]
mean = lambda v: sum(v) / len(v)
steps_s = (two[-1]["elapsed_s"] - two[skip]["elapsed_s"]) / (len(two) - skip - 1)
print(f"1 rank x 2 threads: {r1:,.0f} target tokens/s")
print(f"2 ranks x 1 thread: {r2:,.0f} target tokens/s  (ratio {r2 / r1:.3f})")
print(f"2 ranks: step {steps_s * 1e3:.1f} ms, allreduce {mean(ar) * 1e3:.2f} ms per step, of which exposed after backward "
      f"{mean(ex) * 1e3:.2f} ms (hidden {100 * (1 - mean(ex) / mean(ar)):.0f} %)")
print(f"losses after {len(one)} steps: {one[-1]['loss']:.5f} (1 rank), {two[-1]['loss']:.5f} (2 ranks)")
PY
echo "runs and logs: $out"
