#!/usr/bin/env python3
"""experiments/table3_vs_paper.py on a made-up sweep directory: the deltas, the directions, the
agreement verdicts, the noise band from a repeated baseline, and its errors."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../experiments/table3_vs_paper.py")


def write_result(directory, vid, ppl, bleu, status="ok"):
    os.makedirs(os.path.join(directory, vid))
    with open(os.path.join(directory, vid, "result.json"), "w") as f:
        json.dump({"id": vid, "status": status, "reason": "" if status == "ok" else "kv_heads (3) must divide heads (2)",
                   "dev_perplexity": ppl, "test_bleu": bleu, "parameters": 7_400_000}, f)


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def row(out, vid):
    return next(line for line in out.splitlines() if f"`{vid}`" in line)


class Table3VsPaper(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.sweep = os.path.join(self.tmp.name, "sweep")
        write_result(self.sweep, "baseline", 10.0, 20.0)
        write_result(self.sweep, "layers=1", 12.0, 18.0)        # paper: N=2 worse on both: agrees
        write_result(self.sweep, "d_model=512", 11.0, 19.0)     # paper: d_model 1024 better on both: disagrees
        write_result(self.sweep, "heads=16+d_k=16+d_v=16", 10.05, 20.1)  # both inside the noise, as the paper's
        write_result(self.sweep, "d_k=8", 0.0, 0.0, status="failed")
        write_result(self.sweep, "foo=1", 10.0, 20.0)

    def tearDown(self):
        self.tmp.cleanup()

    def test_rows_deltas_and_verdicts(self):
        r = run(self.sweep)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("| (C) | `layers=1` | N=2 | +2.00 ↑ | +1.19 ↑ | -2.00 ↓ | -2.1 ↓ | yes | yes |", r.stdout)
        self.assertIn("| (C) | `d_model=512` | d_model=1024, d_k=d_v=128 | +1.00 ↑ | -0.26 ↓ | -1.00 ↓ | +0.2 ↑ | **no** | **no** |", r.stdout)
        self.assertIn("| +0.05 ≈ | -0.01 ≈ | +0.10 ≈ | +0.0 ≈ | yes | yes |", row(r.stdout, "heads=16+d_k=16+d_v=16"))
        self.assertIn("failed: kv_heads (3) must divide heads (2)", row(r.stdout, "d_k=8"))
        self.assertIn("not run yet", row(r.stdout, "layers=2"))
        self.assertIn("Runs without a row of the paper's to compare with: `foo=1`.", r.stdout)
        self.assertIn("Directions agree on perplexity in 2 of 3 rows and on BLEU in 2 of 3", r.stdout)

    def test_repeated_baseline_sets_the_noise_band(self):
        repeat = os.path.join(self.tmp.name, "seed2")
        os.makedirs(repeat)
        with open(os.path.join(repeat, "metrics.jsonl"), "w") as f:
            f.write(json.dumps({"event": "valid", "step": 800, "ppl": 11.5}) + "\n")
            f.write(json.dumps({"event": "test", "step": 800, "bleu": 21.0}) + "\n")
        r = run(self.sweep, "--repeat", repeat)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Band 1.5 perplexity, 1.0 BLEU: d_model=512's +1.00 and -1.00 are now noise.
        self.assertIn("| +1.00 ≈ | -0.26 ↓ | -1.00 ≈ | +0.2 ↑ | partly | partly |", row(r.stdout, "d_model=512"))
        self.assertIn("between two seeds of the baseline (perplexity 10.00 and 11.50, BLEU 20.00 and 21.00)", r.stdout)

    def test_errors_name_the_problem(self):
        r = run(os.path.join(self.tmp.name, "nowhere"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("nowhere: not a directory (give the sweep's --out DIR)", r.stderr)
        r = run(self.sweep, "--repeat", self.tmp.name)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no metrics.jsonl (give the run directory of a finished run)", r.stderr)
        empty = os.path.join(self.tmp.name, "empty")
        os.makedirs(empty)
        r = run(empty)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("the baseline has not finished; nothing to compare against", r.stderr)


if __name__ == "__main__":
    unittest.main()
