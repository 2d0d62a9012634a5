"""Shared by the interoperability tests: experiments/soak.py's tiny experiment (the model and data
of tests/support/tiny_experiment.h), trained by the attnlab executable in a temporary directory.
The readers decode protobuf with experiments/soak.py's wire-format decoder (standard library only, independent of attnlab's and
of any generated code): `fields(message)` gives (field number, raw bytes) per field, and
`varint(bytes, i)` decodes a varint."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "experiments"))
from soak import TINY_EXPERIMENT, fields, varint  # noqa: E402,F401  re-exported for the tests


class Workspace:
    """A temporary directory with the tiny experiment in it; removed on exit."""

    def __init__(self, exe, source_dir, steps=12, valid_every=4, checkpoint_every=4, sections=""):
        self.exe = exe
        self.dir = tempfile.mkdtemp(prefix="attnlab_interop.")
        self.experiment = os.path.join(self.dir, "tiny.attn")
        with open(self.experiment, "w") as f:
            f.write(TINY_EXPERIMENT.format(steps=steps, batch_tokens=256, valid_every=valid_every,
                                           checkpoint_every=checkpoint_every, extra_train=", valid_bleu_sentences: 10",
                                           sections=sections))
        shutil.copy(os.path.join(source_dir, "experiments", "transformer_base.attn"), self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def attnlab(self, *args, expect=0, timeout=600):
        """Runs the executable; returns (exit code, stdout, stderr), failing on an unexpected code."""
        p = subprocess.run([self.exe, *args], capture_output=True, text=True, timeout=timeout)
        if expect is not None and p.returncode != expect:
            sys.exit(f"attnlab {' '.join(args)}: exit {p.returncode}, expected {expect}\n{p.stdout}\n{p.stderr}")
        return p.returncode, p.stdout, p.stderr

    def run(self, out, *extra):
        return self.attnlab("run", self.experiment, "--out", self.path(out), "--threads", "2", *extra)


def check(condition, message):
    if not condition:
        sys.exit("FAIL: " + message)

