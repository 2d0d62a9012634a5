#!/usr/bin/env python3
"""On-paper model of a data-parallel training step against node count (docs/distributed.md).

Strong scaling: a fixed global batch (the one a single process takes) split over N nodes. Per
step each rank computes 1/N of the batch (forward + backward), then the gradients are summed with
a ring allreduce of P float32 values, bucketed (4 MiB buckets) and started while backward runs.

  bytes reduced per step   B = 4 P
  ring allreduce time      T_ar = 2 (N-1)/N * B / link + 2 (N-1) * K * alpha   (K buckets)
  compute per rank         T_c = T_1 / N,  backward T_b = 2/3 T_c
  exposed (not hidden)     E = max(T_ar / K, T_ar - T_b * (K-1)/K)   (the last bucket waits for
                           the end of backward; the others overlap until the link is the limit)
  step time                T(N) = T_c + E

T_1 is the step of one node (two cores, measured in docs/performance.md and docs/experiments.md).
Prints one table per model: step time, share of the reduction hidden behind backward, speed-up
over one node and parallel efficiency, for 10, 25 and 100 Gb/s links.
"""
import math

MODELS = {
    # name: (parameters, step seconds on one 2-core node, global batch described)
    "base (63.0M parameters, the paper's 25k+25k-token batch)": (63_045_632, 20.0),
    "Multi30k (7.44M parameters, 4096-token batch)": (7_437_056, 0.36),
}
LINKS_GBPS = [10, 25, 100]
NODES = [1, 2, 4, 8, 16, 32, 64]
ALPHA = 25e-6          # seconds per message (TCP over Ethernet)
BUCKET = 4 * 2**20     # bytes


def step(params, t1, nodes, gbps):
    b = 4.0 * params
    k = max(1, math.ceil(b / BUCKET))
    tc = t1 / nodes
    if nodes == 1:
        return tc, 0.0, 0.0, b, k
    link = gbps * 1e9 / 8
    t_ar = 2 * (nodes - 1) / nodes * b / link + 2 * (nodes - 1) * k * ALPHA
    tb = 2.0 / 3.0 * tc
    exposed = max(t_ar / k, t_ar - tb * (k - 1) / k)
    return tc + exposed, t_ar, exposed, b, k


for name, (params, t1) in MODELS.items():
    b = 4.0 * params
    print(f"\n{name}: {b / 1e6:.1f} MB reduced per step, {math.ceil(b / BUCKET)} buckets of 4 MiB, one node {t1:.2f} s/step")
    print("| nodes | " + " | ".join(f"{g} Gb/s: step s / allreduce s / hidden / speed-up / efficiency" for g in LINKS_GBPS) + " |")
    print("|---:|" + "---|" * len(LINKS_GBPS))
    for n in NODES:
        cells = []
        for g in LINKS_GBPS:
            t, t_ar, e, _, _ = step(params, t1, n, g)
            hidden = 1 - e / t_ar if t_ar > 0 else 1.0
            speedup = t1 / t
            cells.append(f"{t:.3f} / {t_ar:.3f} / {100 * hidden:.0f}% / {speedup:.1f}x / {100 * speedup / n:.0f}%")
        print(f"| {n} | " + " | ".join(cells) + " |")
