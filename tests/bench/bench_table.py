#!/usr/bin/env python3
"""Markdown tables from Google Benchmark JSON (gemm_bench, cross_entropy_bench).

Usage: bench_table.py RESULT.json

Each benchmark may have several repetitions (--benchmark_repetitions=N); the table shows the BEST
of them (highest rate). On a shared machine other work only ever slows a run down, so the best
repetition is the closest to what the code does on an otherwise idle machine.
"""
import json
import sys
from collections import OrderedDict


def main(path):
    with open(path) as f:
        data = json.load(f)
    ctx = data["context"]
    print(f"<!-- {ctx.get('date', '')}, load average {ctx.get('load_avg', '')} -->")
    best = OrderedDict()
    for b in data["benchmarks"]:
        if b.get("run_type", "iteration") != "iteration":
            continue
        name = b["run_name"] if "run_name" in b else b["name"]
        for counter in ("GFLOP/s", "GB/s", "Gelem/s"):
            if counter in b:
                best[(name, counter)] = max(best.get((name, counter), 0.0), b[counter])
    # gemm/<shape>/<variant>/<threads>[/real_time] (and small/...) -> rows of shapes, columns of variants
    rows, cols, cells = OrderedDict(), OrderedDict(), {}
    for (name, counter), value in best.items():
        parts = [p for p in name.split("/") if p not in ("real_time", "process_time")]
        if parts[0] in ("gemm", "small"):
            row, col = parts[1], "/".join(parts[2:])
        elif parts[0] == "peak":
            print(f"- single-precision peak, {parts[1]} register-blocked FMA loop, 1 thread: {value:.1f} GFLOP/s")
            continue
        else:  # BM_CrossEntropy/<pass>/rows:R/V:V/threads:N
            row = " ".join(parts[1:-1])
            col = parts[-1].replace("threads:", "") + " thr " + counter
        rows[row] = True
        cols[col] = True
        cells[(row, col)] = value
    cols = list(cols)
    print()
    print("| | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for row in rows:
        print(f"| {row} | " + " | ".join(f"{cells[(row, c)]:.1f}" if (row, c) in cells else "" for c in cols) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
