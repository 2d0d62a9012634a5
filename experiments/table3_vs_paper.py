#!/usr/bin/env python3
"""Compares an `attnlab ablate experiments/table3.attn` sweep with Table 3 of "Attention Is All
You Need" (Vaswani et al., 2017): for every row, the change of dev perplexity and BLEU from the
baseline, ours next to the paper's, and whether the direction agrees.

    python3 experiments/table3_vs_paper.py ablations/table3 [--repeat RUN_DIR] > comparison.md

Reads DIR/results.json when the sweep has finished, otherwise every DIR/*/result.json (a sweep in
progress: rows not run yet are listed as such). Prints a Markdown table.

A change smaller than the noise of one run counts as "no change" (≈). With --repeat RUN_DIR (the
baseline trained again with another seed: `attnlab run experiments/table3.attn --seed 2 --out
RUN_DIR`), the noise band is the difference between the two baselines; without it, a change of
less than 1 % of perplexity or 0.3 BLEU is taken as noise.

Our rows are scaled to the Multi30k model (3 layers, d_model 256, d_k 32, d_ff 512): each keeps its
ratio to the baseline, so the paper's N=2/4/8 are our 1/2/4 layers, d_model 256/1024 our 128/512,
d_ff 1024/4096 our 256/1024, d_k 16/32 our 8/16. The paper's figures are on newstest2013 (English
to German, perplexity per word piece, BLEU with beam search, 100K steps); ours are Multi30k val
perplexity per word and test2016 BLEU (beam 4), German to English, after 800 steps.
"""
import argparse
import json
import math
import os
import sys

# Table 3 of the paper: dev perplexity, dev BLEU, parameters (×10⁶). "base": 4.92, 25.8, 65.
PAPER_BASE = (4.92, 25.8, 65)

# Our variant id → (row, the paper's setting, its perplexity, BLEU, parameters or None).
PAPER_ROWS = {
    "heads=1+d_k=256+d_v=256": ("A", "h=1, d_k=d_v=512", 5.29, 24.9, None),
    "heads=4+d_k=64+d_v=64": ("A", "h=4, d_k=d_v=128", 5.00, 25.5, None),
    "heads=16+d_k=16+d_v=16": ("A", "h=16, d_k=d_v=32", 4.91, 25.8, None),
    "heads=32+d_k=8+d_v=8": ("A", "h=32, d_k=d_v=16", 5.01, 25.4, None),
    "d_k=8": ("B", "d_k=16", 5.16, 25.1, 58),
    "d_k=16": ("B", "d_k=32", 5.01, 25.4, 60),
    "layers=1": ("C", "N=2", 6.11, 23.7, 36),
    "layers=2": ("C", "N=4", 5.19, 25.3, 50),
    "layers=4": ("C", "N=8", 4.88, 25.5, 80),
    "d_model=128": ("C", "d_model=256, d_k=d_v=32", 5.75, 24.5, 28),
    "d_model=512": ("C", "d_model=1024, d_k=d_v=128", 4.66, 26.0, 168),
    "d_ff=256": ("C", "d_ff=1024", 5.12, 25.4, 53),
    "d_ff=1024": ("C", "d_ff=4096", 4.75, 26.2, 90),
    "train.dropout=0.0": ("D", "P_drop=0.0", 5.77, 24.6, None),
    "train.dropout=0.2": ("D", "P_drop=0.2", 4.95, 25.5, None),
    "train.label_smoothing=0.0": ("D", "ε_ls=0.0", 4.67, 25.3, None),
    "train.label_smoothing=0.2": ("D", "ε_ls=0.2", 5.47, 25.7, None),
    "posenc=posenc.learned": ("E", "positional embedding instead of sinusoids", 4.92, 25.7, None),
}

# Differences smaller than these count as "no change": the paper's rounding (two decimals of
# perplexity, one of BLEU), and for our single-seed rows the default band when no repeated
# baseline measures it.
PAPER_FLAT = (0.02, 0.1)
DEFAULT_FLAT_RELATIVE_PPL = 0.01
DEFAULT_FLAT_BLEU = 0.3


def load_rows(directory):
    summary = os.path.join(directory, "results.json")
    if os.path.exists(summary):
        with open(summary) as f:
            return {v["id"]: v for v in json.load(f)["variants"]}
    rows = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name, "result.json")
        if os.path.exists(path):
            with open(path) as f:
                row = json.load(f)
            rows[row.get("id", name)] = row
    return rows


def repeat_figures(run_dir):
    """Dev perplexity and test BLEU of a finished `attnlab run` directory (its metrics.jsonl)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        sys.exit(f"table3_vs_paper: --repeat {run_dir}: no metrics.jsonl (give the run directory of a finished run)")
    ppl = bleu = None
    with open(path) as f:
        for line in f:
            event = json.loads(line)
            if event.get("event") == "valid":
                ppl = event.get("ppl")
            elif event.get("event") == "test":
                bleu = event.get("bleu")
    if ppl is None or bleu is None:
        sys.exit(f"table3_vs_paper: --repeat {run_dir}: the run has no final validation and test yet")
    return ppl, bleu


def direction(delta, flat):
    if delta is None or (isinstance(delta, float) and math.isnan(delta)):
        return None
    return 0 if abs(delta) <= flat + 1e-9 else (1 if delta > 0 else -1)


def arrow(d):
    return {None: "", 0: "≈", 1: "↑", -1: "↓"}[d]


def signed(x, digits):
    return f"{x:+.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="the sweep's --out directory")
    parser.add_argument("--repeat", metavar="RUN_DIR", help="the baseline trained again with another seed: sets the noise band")
    args = parser.parse_args()
    if not os.path.isdir(args.directory):
        sys.exit(f"table3_vs_paper: {args.directory}: not a directory (give the sweep's --out DIR)")
    rows = load_rows(args.directory)
    base = rows.get("baseline")
    if not base or base.get("status") != "ok":
        sys.exit(f"table3_vs_paper: {args.directory}: the baseline has not finished; nothing to compare against")

    b_ppl, b_bleu = base["dev_perplexity"], base["test_bleu"]
    flat_ppl, flat_bleu = DEFAULT_FLAT_RELATIVE_PPL * b_ppl, DEFAULT_FLAT_BLEU
    noise = "a change of less than 1 % of perplexity or 0.3 BLEU (no repeated baseline given)"
    if args.repeat:
        r_ppl, r_bleu = repeat_figures(args.repeat)
        flat_ppl, flat_bleu = abs(r_ppl - b_ppl), abs(r_bleu - b_bleu)
        noise = (f"a change no larger than between two seeds of the baseline (perplexity {b_ppl:.2f} and {r_ppl:.2f}, "
                 f"BLEU {b_bleu:.2f} and {r_bleu:.2f})")
    print(f"Baseline: ours dev perplexity {b_ppl:.2f}, test BLEU {b_bleu:.2f}, {base['parameters'] / 1e6:.1f}M parameters; "
          f"paper {PAPER_BASE[0]:.2f}, {PAPER_BASE[1]:.1f}, {PAPER_BASE[2]}M.\n")
    print("| row | ours | paper | ours Δ ppl | paper Δ ppl | ours Δ BLEU | paper Δ BLEU | perplexity agrees | BLEU agrees |")
    print("|---|---|---|---:|---:|---:|---:|:---:|:---:|")
    agree = {"ppl": [0, 0], "bleu": [0, 0]}
    for vid, (row, paper_setting, p_ppl, p_bleu, _) in PAPER_ROWS.items():
        ours = rows.get(vid)
        paper_dppl, paper_dbleu = p_ppl - PAPER_BASE[0], p_bleu - PAPER_BASE[1]
        pd_ppl, pd_bleu = direction(paper_dppl, PAPER_FLAT[0]), direction(paper_dbleu, PAPER_FLAT[1])
        if not ours or ours.get("status") != "ok":
            state = "not run yet" if not ours else f"{ours.get('status')}: {ours.get('reason', '')}"
            print(f"| ({row}) | `{vid}` | {paper_setting} | {state} | {signed(paper_dppl, 2)} {arrow(pd_ppl)} | | "
                  f"{signed(paper_dbleu, 1)} {arrow(pd_bleu)} | | |")
            continue
        dppl, dbleu = ours["dev_perplexity"] - b_ppl, ours["test_bleu"] - b_bleu
        od_ppl, od_bleu = direction(dppl, flat_ppl), direction(dbleu, flat_bleu)
        verdicts = []
        for key, o, p in (("ppl", od_ppl, pd_ppl), ("bleu", od_bleu, pd_bleu)):
            agree[key][1] += 1
            if o == p:
                agree[key][0] += 1
                verdicts.append("yes")
            elif o == 0 or p == 0:
                verdicts.append("partly")  # one side moved less than its noise band
            else:
                verdicts.append("**no**")
        print(f"| ({row}) | `{vid}` | {paper_setting} | {signed(dppl, 2)} {arrow(od_ppl)} | {signed(paper_dppl, 2)} {arrow(pd_ppl)} | "
              f"{signed(dbleu, 2)} {arrow(od_bleu)} | {signed(paper_dbleu, 1)} {arrow(pd_bleu)} | {verdicts[0]} | {verdicts[1]} |")
    others = [vid for vid, row in rows.items() if vid != "baseline" and vid not in PAPER_ROWS]
    if others:
        print(f"\nRuns without a row of the paper's to compare with: {', '.join('`' + v + '`' for v in others)}.")
    print(f"\nDirections agree on perplexity in {agree['ppl'][0]} of {agree['ppl'][1]} rows and on BLEU in "
          f"{agree['bleu'][0]} of {agree['bleu'][1]}; ≈ is a change inside the noise: the paper's rounding, and for us {noise}.")


if __name__ == "__main__":
    main()
