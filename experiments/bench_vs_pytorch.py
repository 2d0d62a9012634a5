#!/usr/bin/python3
"""attnlab against the PyTorch reference on the two benchmark shapes, in one go, 2 threads each.

For each shape runs
  attnlab bench [--set ...] --batch B --src-len S --tgt-len T --vocab V --threads 2 --peak --json
  /usr/bin/python3 ../shared/bench/torch_transformer.py 2 B S T V [d layers dff heads]
(the reference is not modified: its peak RSS is this process's RUSAGE_CHILDREN maximum after it
exits, the same ru_maxrss attnlab reports for itself), then prints each run's figures and a table
of ratios (attnlab / PyTorch; memory: attnlab / PyTorch, lower is better) and the fraction of the
machine's GEMM peak the attnlab training step reaches.

usage: experiments/bench_vs_pytorch.py [--attnlab PATH] [--reference PATH] [--threads N]
                                       [--only small|base|tiny] [--json-out FILE]
Run from the repository root (defaults: build/attnlab, ../shared/bench/torch_transformer.py).
Standard library only; run with /usr/bin/python3 (the one that has python3-torch).
"""
import argparse
import json
import os
import resource
import subprocess
import sys

SHAPES = {
    # name: (model overrides, batch, src_len, tgt_len, vocab)
    "small": ({"d_model": 256, "layers": 3, "d_ff": 512, "heads": 8}, 128, 24, 24, 8000),
    "base": ({}, 64, 32, 32, 8000),
}
# Not run by default: checks the script end to end in seconds (--only tiny).
EXTRA_SHAPES = {"tiny": ({"d_model": 32, "layers": 1, "d_ff": 64, "heads": 4}, 2, 4, 4, 50)}
BASE_MODEL = {"d_model": 512, "layers": 6, "d_ff": 2048, "heads": 8}  # the reference's defaults


def run_json(command):
    """Runs a command that prints one JSON object on its last line; returns it."""
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit("failed (exit %d): %s\n%s" % (done.returncode, " ".join(command), done.stderr))
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_reference(command):
    """The reference in a child of a fresh wrapper process, whose RUSAGE_CHILDREN maximum RSS is
    then the reference's own."""
    wrapper = ("import resource, subprocess, sys\n"
               "done = subprocess.run(sys.argv[1:])\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
               "sys.exit(done.returncode)\n")
    done = subprocess.run([sys.executable, "-c", wrapper] + command, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit("failed (exit %d): %s\n%s" % (done.returncode, " ".join(command), done.stderr))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = int(done.stderr.strip().splitlines()[-1]) / 1024.0  # Linux: kilobytes
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attnlab", default="build/attnlab")
    parser.add_argument("--reference", default="../shared/bench/torch_transformer.py")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=sorted(SHAPES) + sorted(EXTRA_SHAPES))
    parser.add_argument("--json-out", help="also write every run's figures to this file")
    args = parser.parse_args()
    for path in (args.attnlab, args.reference):
        if not os.path.exists(path):
            sys.exit("not found: %s (run from the repository root, or pass --attnlab/--reference)" % path)

    load = os.getloadavg()
    print("load average before: %.2f %.2f %.2f" % load)
    results = {}
    shapes = {args.only: dict(SHAPES, **EXTRA_SHAPES)[args.only]} if args.only else SHAPES
    for name, (sets, batch, src, tgt, vocab) in shapes.items():
        model = dict(BASE_MODEL, **sets)
        ours_cmd = [args.attnlab, "bench"]
        for key, value in sets.items():
            ours_cmd += ["--set", "%s=%s" % (key, value)]
        ours_cmd += ["--batch", str(batch), "--src-len", str(src), "--tgt-len", str(tgt), "--vocab", str(vocab),
                     "--threads", str(args.threads), "--peak", "--json"]
        ref_cmd = ["/usr/bin/python3", args.reference, str(args.threads), str(batch), str(src), str(tgt), str(vocab),
                   str(model["d_model"]), str(model["layers"]), str(model["d_ff"]), str(model["heads"])]
        print("$ " + " ".join(ours_cmd), flush=True)
        ours = run_json(ours_cmd)
        print(json.dumps(ours))
        print("$ " + " ".join(ref_cmd), flush=True)
        ref = run_reference(ref_cmd)
        print(json.dumps(ref), flush=True)
        results[name] = {"attnlab": ours, "pytorch": ref}

    print("\nload average after: %.2f %.2f %.2f" % os.getloadavg())
    print("\n| shape | engine | params | train tok/s | decode tok/s | cached-decode tok/s | peak RSS MB "
          "| train GFLOP/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        for engine in ("attnlab", "pytorch"):
            x = r[engine]
            # attnlab always decodes with its key/value cache; the reference reports both loops.
            cached = x.get("decode_cached_tokens_per_s", x["decode_tokens_per_s"])
            print("| %s | %s | %d | %.0f | %.0f | %.0f | %.0f | %s |" % (
                name, x["engine"], x["parameters"], x["train_tokens_per_s"], x["decode_tokens_per_s"], cached,
                x["peak_rss_mb"], "%.1f" % x["gflops"] if "gflops" in x else "-"))
    # The honest decoding ratio is against the reference's cached loop (decode_cached_tokens_per_s);
    # the one against its uncached loop (which re-runs the whole decoder each step) is kept beside it.
    print("\n| shape | train ratio (>= 3) | greedy decode vs cached (>= 3) | vs uncached | memory ratio (<= 1) "
          "| GEMM-peak fraction | FMA-peak fraction (>= 0.65) | GEMM peak GFLOP/s | kernel |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        ours, ref = r["attnlab"], r["pytorch"]
        print("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %.1f | %s |" % (
            name, ours["train_tokens_per_s"] / ref["train_tokens_per_s"],
            ours["decode_tokens_per_s"] / ref["decode_cached_tokens_per_s"],
            ours["decode_tokens_per_s"] / ref["decode_tokens_per_s"], ours["peak_rss_mb"] / ref["peak_rss_mb"],
            ours["gemm_peak_fraction"],
            "%.2f" % ours["fma_peak_fraction"] if "fma_peak_fraction" in ours else "-", ours["gemm_peak_gflops"],
            ours.get("backend", "-")))
    if args.json_out:
        with open(args.json_out, "w") as out:
            json.dump({"load_before": load, "results": results}, out, indent=1)


if __name__ == "__main__":
    main()
