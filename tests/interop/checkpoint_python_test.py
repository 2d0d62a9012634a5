#!/usr/bin/env python3
"""A checkpoint read from Python with protoc's generated modules (docs/tools.md): the modules of
core/proto import beside another library's graph.proto (as torch's OpenCV brings one), and
experiments/read_checkpoint.py gives the run's step, metrics and parameters.

usage: checkpoint_python_test.py ATTNLAB_EXE SOURCE_DIR PROTOC
Exit 77 (skipped) without python3-protobuf."""
import json
import os
import subprocess
import sys

import tiny_run
from tiny_run import check

exe, source_dir, protoc = sys.argv[1:4]
try:
    import google.protobuf  # noqa: F401
except ImportError:
    print("python3-protobuf is not installed: skipped")
    sys.exit(77)

with tiny_run.Workspace(exe, source_dir, steps=10, valid_every=4) as ws:
    ws.run("run")
    py = ws.path("py")
    os.makedirs(py)
    # Another library's graph.proto at the root of its import path, with a message of the same
    # name: before the package paths, registering both in the default pool failed.
    with open(ws.path("graph.proto"), "w") as f:
        f.write('syntax = "proto3";\npackage opencv_onnx;\nmessage GraphDef { string other = 1; }\n')
    subprocess.run([protoc, "--python_out", py, "-I", ws.dir, "graph.proto"], check=True)
    proto_root = os.path.join(source_dir, "core", "proto")
    subprocess.run([protoc, "--python_out", py, "-I", proto_root, "attnlab/ir/graph.proto", "attnlab/ckpt/checkpoint.proto"],
                   check=True)
    sys.path.insert(0, py)
    sys.path.insert(0, os.path.join(source_dir, "experiments"))
    import graph_pb2  # noqa: F401  the other library's module, imported first
    import read_checkpoint

    ckpt_dir = ws.path("run", "checkpoints")
    c = read_checkpoint.read_checkpoint(os.path.join(ckpt_dir, "step-000000010.ckpt"))
    check(c.step == 10, f"step {c.step}")
    events = [json.loads(line) for line in open(ws.path("run", "metrics.jsonl"))]
    valid = [e for e in events if e["event"] == "valid"]
    check([e["step"] for e in valid] == [4, 8, 10], f"validations at {[e['step'] for e in valid]}")
    check(abs(c.metrics.last["valid_loss"] - valid[-1]["loss"]) < 1e-12, "metrics.last holds the final validation's loss")
    # The best validation by the run's metric (higher is better; a loss is negated), the first
    # on a tie, as the trainer keeps it.
    metric = c.metrics.best_metric.removeprefix("valid_")
    score = (lambda e: -e["loss"]) if metric == "loss" else (lambda e: e[metric])
    best = max(valid, key=score)
    check(abs(c.metrics.best_score - score(best)) < 1e-9, f"best score {c.metrics.best_score}, metrics.jsonl {score(best)}")
    check(c.metrics.has_best and c.metrics.best_step == best["step"], f"best step {c.metrics.best_step}, metrics.jsonl {best['step']}")
    graph = read_checkpoint.graph_of(c)
    check(any(n.type.startswith("attention.") for n in graph.nodes), "the graph has attention nodes")
    params = read_checkpoint.parameters(c)
    check(len(params) == len(c.parameters) > 0, "parameters by name")
    for t in c.parameters:
        check(list(params[t.name].shape) == list(t.shape), f"{t.name}: shape")
    # The command-line summary runs too.
    out = subprocess.run([sys.executable, os.path.join(source_dir, "experiments", "read_checkpoint.py"),
                          os.path.join(ckpt_dir, "best.ckpt")], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=py))
    check(out.returncode == 0 and f"best {c.metrics.best_metric}" in out.stdout and "valid_loss = " in out.stdout, out.stdout + out.stderr)
    # A damaged file is refused with its name.
    bad = ws.path("bad.ckpt")
    with open(os.path.join(ckpt_dir, "best.ckpt"), "rb") as f:
        data = bytearray(f.read())
    data[-1] ^= 0xFF
    with open(bad, "wb") as f:
        f.write(data)
    try:
        read_checkpoint.read_checkpoint(bad)
        check(False, "a damaged checkpoint was read")
    except ValueError as e:
        check("checksum mismatch" in str(e) and "bad.ckpt" in str(e), str(e))
print("ok")
