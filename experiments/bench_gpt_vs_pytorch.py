#!/usr/bin/python3
"""attnlab against PyTorch's GPT (../shared/bench/torch_gpt.py) at the shakespeare_char shape.

Runs, one after the other, on the same threads and shape,
  attnlab bench experiments/gpt.attn --set layers=L --set d_model=D --set heads=H
                --use "posenc=posenc.learned(max_len: T)" --batch B --block T --vocab V --threads N --json
  /usr/bin/python3 ../shared/bench/torch_gpt.py N B T V D L H
and prints both runs' figures and the ratios attnlab / PyTorch of training tokens/s (AdamW,
clipping 1.0; the reference trains with dropout 0.2, attnlab with the model's) and of cached
sampling tokens/s (B rows of T tokens from one start token), and of peak memory (lower is better).
Default shape: batch 64, block 256, 384/6/6, vocab 65 (the GPU recipe's); --only tiny checks the
script end to end in seconds.

usage: experiments/bench_gpt_vs_pytorch.py [--attnlab PATH] [--reference PATH] [--threads N]
                                           [--only shakespeare_char|tiny] [--json-out FILE]
Run from the repository root; standard library only; run with /usr/bin/python3.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_pytorch import run_json, run_reference  # noqa: E402  (the same runners and memory accounting)

SHAPES = {
    # name: (d_model, layers, heads, batch, block, vocab)
    "shakespeare_char": (384, 6, 6, 64, 256, 65),
    "tiny": (16, 1, 2, 2, 8, 20),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attnlab", default="build/attnlab")
    parser.add_argument("--reference", default="../shared/bench/torch_gpt.py")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=sorted(SHAPES), default="shakespeare_char")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    d, layers, heads, batch, block, vocab = SHAPES[args.only]
    steps = ["--steps", "1"] if args.only == "tiny" else []
    ours = run_json([args.attnlab, "bench", "experiments/gpt.attn", "--set", "d_model=%d" % d, "--set", "layers=%d" % layers,
                     "--set", "heads=%d" % heads, "--set", "block_size=%d" % block,
                     "--use", "posenc=posenc.learned(max_len: %d)" % block,  # the reference's table: block rows
                     "--batch", str(batch), "--block", str(block),
                     "--vocab", str(vocab), "--threads", str(args.threads), "--json"] + steps)
    theirs = run_reference([sys.executable, args.reference, str(args.threads), str(batch), str(block), str(vocab), str(d),
                            str(layers), str(heads)])
    ratios = {
        "train_tokens_per_s": ours["train_tokens_per_s"] / theirs["train_tokens_per_s"],
        "sample_tokens_per_s": ours["sample_tokens_per_s"] / theirs["sample_tokens_per_s"],
        "peak_rss_mb": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
    }
    result = {"shape": args.only, "attnlab": ours, "pytorch": theirs, "ratio": ratios}
    print(json.dumps(result, indent=2))
    print("%s, %d threads: training %.2fx, sampling %.2fx PyTorch's tokens/s; memory %.2fx" %
          (args.only, args.threads, ratios["train_tokens_per_s"], ratios["sample_tokens_per_s"], ratios["peak_rss_mb"]))
    if args.json_out:
        with open(args.json_out, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
