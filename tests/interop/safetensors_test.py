#!/usr/bin/env python3
"""`attnlab export --format safetensors` read with the standard library and numpy, checked
against the checkpoint (decoded from its protobuf wire format here): every parameter's name,
shape and values, the spec and tokenizer in the metadata. Then `attnlab run --init-from` starts
from the file, and every bad argument is a one-line error with exit code 1.

usage: safetensors_test.py ATTNLAB_EXE SOURCE_DIR"""
import base64
import json
import os
import struct
import sys

try:
    import numpy as np
except ImportError:
    print("numpy (python3-numpy) is not installed: skipped")
    sys.exit(77)

import tiny_run
from tiny_run import check, fields


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack_from("<Q", data)
    check(n % 8 == 0, "header padded to 8 bytes")
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    metadata = header.pop("__metadata__")
    tensors, covered = {}, 0
    for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        check(entry["dtype"] == "F32", f"{name}: dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        check(begin == covered, f"{name}: back to back")
        covered = end
        tensors[name] = np.frombuffer(body[begin:end], dtype="<f4").reshape(entry["shape"])
    check(covered == len(body), "the tensors fill the data")
    return tensors, metadata


def read_checkpoint(path):
    """name -> float32 array, and the string fields, of an attnlab checkpoint (24-byte header)."""
    data = open(path, "rb").read()
    check(data[:8] == b"ATTNCKPT", "checkpoint magic")
    params, strings = {}, {}
    for number, value in fields(data[24:]):
        if number == 7:  # TensorData: name 1, shape 2 (packed int64), data 3 (packed float)
            name, shape, values = None, [], b""
            for n, v in fields(value):
                if n == 1:
                    name = v.decode()
                elif n == 2:
                    i = 0
                    while i < len(v):
                        d, i = tiny_run.varint(v, i)
                        shape.append(d)
                elif n == 3:
                    values += v
            params[name] = np.frombuffer(values, dtype="<f4").reshape(shape)
        elif number in (2, 5, 6, 17):  # spec_text, tokenizer_kind, tokenizer, experiment_text
            strings[number] = value
    return params, strings


exe, source_dir = sys.argv[1:3]
with tiny_run.Workspace(exe, source_dir, steps=12, valid_every=0, checkpoint_every=0) as ws:
    ws.run("a")
    out = ws.path("a.safetensors")
    ws.attnlab("export", "--checkpoint", ws.path("a"), "--format", "safetensors", "--out", out)
    tensors, metadata = read_safetensors(out)
    params, strings = read_checkpoint(ws.path("a", "checkpoints", "step-000000012.ckpt"))
    check(sorted(tensors) == sorted(params), f"names: {sorted(set(tensors) ^ set(params))}")
    check(len(tensors) > 5, f"{len(tensors)} parameters")
    for name, value in params.items():
        check(tensors[name].shape == value.shape, f"{name}: shape {tensors[name].shape}, checkpoint {value.shape}")
        check(np.array_equal(tensors[name], value), f"{name}: values differ")
    check(metadata["format"] == "attnlab", "format")
    check(metadata["attnlab.spec"].encode() == strings[2], "the resolved spec")
    check(metadata["attnlab.experiment"].encode() == strings[17], "the experiment")
    check(metadata["attnlab.tokenizer_kind"].encode() == strings[5], "tokenizer kind")
    check(base64.b64decode(metadata["attnlab.tokenizer"]) == strings[6], "the tokenizer bytes")
    check(json.loads(metadata["attnlab.settings"])["train.max_steps"] == "12", "settings")
    check(metadata["attnlab.step"] == "12", "step")

    # A run from the exported weights starts where the first run ended, not from scratch.
    ws.run("b", "--init-from", out, "--set", "train.max_steps=1")
    first_loss = lambda run: [json.loads(l) for l in open(ws.path(run, "metrics.jsonl"))][0]["loss"]
    train_a = [json.loads(l)["loss"] for l in open(ws.path("a", "metrics.jsonl")) if '"event":"train"' in l]
    check(first_loss("b") < (train_a[0] + train_a[-1]) / 2,
          f"--init-from: first loss {first_loss('b')}, fresh {train_a[0]}, trained {train_a[-1]}")

    def error(args, *expected):
        code, _, err = ws.attnlab(*args, expect=None)
        check(code == 1, f"{' '.join(args)}: exit {code}\n{err}")
        for e in expected:
            check(e in err, f"{' '.join(args)}: no {e!r} in\n{err}")

    # Weights of another model: a parameter it lacks, one of another shape.
    error(["run", ws.experiment, "--out", ws.path("c"), "--init-from", out, "--set", "layers=2"],
          "--init-from " + out, "missing from the checkpoint", "encoder_layer1")
    error(["run", ws.experiment, "--out", ws.path("d"), "--init-from", out, "--set", "d_ff=48"],
          "--init-from " + out, "shape differs", "[16, 48]")
    check(not os.path.exists(ws.path("c")) and not os.path.exists(ws.path("d")), "a refused run writes nothing")
    error(["run", ws.experiment, "--out", ws.path("a"), "--resume", "--init-from", out], "--init-from", "not with --resume")
    bad = ws.path("bad.safetensors")
    with open(bad, "wb") as f:
        f.write(open(out, "rb").read()[:-4])
    error(["run", ws.experiment, "--out", ws.path("e"), "--init-from", bad], bad, "past the")
    error(["run", ws.experiment, "--out", ws.path("e"), "--init-from", ws.path("none.safetensors")], "none.safetensors", "cannot read")
    # Export's own errors.
    error(["export", "--checkpoint", ws.path("a"), "--format", "pickle", "--out", ws.path("x")], "--format", "pickle")
    error(["export", "--checkpoint", ws.path("nowhere"), "--format", "safetensors", "--out", ws.path("x")], "nowhere")
    error(["export", "--checkpoint", ws.path("a"), "--format", "safetensors", "--out", ws.path("no", "dir", "x")], "does not exist")
    error(["export", "--checkpoint", ws.path("a"), "--format", "onnx", "--out", ws.path("no", "dir", "x.onnx")], "does not exist")
    check(not os.path.exists(ws.path("x")), "a refused export writes nothing")
print("ok")
