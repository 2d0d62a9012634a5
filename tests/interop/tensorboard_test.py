#!/usr/bin/env python3
"""TensorBoard event files read back with the standard library alone — TFRecord framing, masked
CRC32C and the Event/Summary wire format decoded here, independently of attnlab's writer — and
checked against metrics.jsonl: for an uninterrupted run, for a resumed one whose events went
past its last checkpoint (and whose last record was cut by a kill), and for every run of a sweep.

usage: tensorboard_test.py ATTNLAB_EXE SOURCE_DIR"""
import glob
import json
import os
import struct
import sys

import tiny_run
from tiny_run import check, fields, varint


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path):
    data = open(path, "rb").read()
    at, out = 0, []
    while at < len(data):
        check(len(data) - at >= 12, f"{path}: truncated record header at byte {at}")
        length, length_crc = struct.unpack_from("<QI", data, at)
        check(length_crc == masked(crc32c(data[at:at + 8])), f"{path}: length CRC at byte {at}")
        payload = data[at + 12:at + 12 + length]
        check(len(payload) == length and len(data) >= at + 16 + length, f"{path}: truncated record at byte {at}")
        (data_crc,) = struct.unpack_from("<I", data, at + 12 + length)
        check(data_crc == masked(crc32c(payload)), f"{path}: data CRC at byte {at}")
        out.append(payload)
        at += 16 + length
    return out


def event(payload):
    """TensorFlow's Event: wall_time 1 (double), step 2 (varint), file_version 3, summary 5
    {value 1 {tag 1, simple_value 2 (float)}}."""
    e = {"step": 0, "values": {}}
    for number, value in fields(payload):
        if number == 1:
            e["wall_time"] = struct.unpack("<d", value)[0]
        elif number == 2:
            e["step"] = varint(value, 0)[0]
        elif number == 3:
            e["file_version"] = value.decode()
        elif number == 5:
            for n, v in fields(value):
                check(n == 1, "Summary holds values only")
                tag, simple = None, None
                for n2, v2 in fields(v):
                    if n2 == 1:
                        tag = v2.decode()
                    elif n2 == 2:
                        check(len(v2) == 4, "simple_value is a float")
                        simple = struct.unpack("<f", v2)[0]
                check(tag is not None and simple is not None, f"a value with a tag and a simple_value ({tag})")
                e["values"][tag] = simple
    return e


def scalars(run_dir):
    """{(tag, step): [values...]} over every event file of the run, in TensorBoard's (name) order."""
    files = sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*")))
    check(files, f"{run_dir}: no event file")
    out = {}
    for f in files:
        evs = [event(p) for p in records(f)]
        check(evs and evs[0].get("file_version") == "brain.Event:2", f"{f}: starts with the file version")
        check(all(e["wall_time"] > 1.6e9 for e in evs), f"{f}: wall times")
        for e in evs[1:]:
            for tag, v in e["values"].items():
                out.setdefault((tag, e["step"]), []).append(v)
    return out, files


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


REQUIRED = {"train": ["loss", "lr", "grad_norm", "tokens_per_s"], "valid": ["loss", "ppl", "accuracy", "bleu"],
            "test": ["loss", "ppl", "accuracy", "bleu"]}


def check_against_metrics(run_dir):
    got, files = scalars(run_dir)
    for tag_step, values in got.items():
        check(len(values) == 1, f"{run_dir}: {tag_step} written {len(values)} times")
    metrics = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    expected = {}
    for m in metrics:
        for key, value in m.items():
            if key not in ("event", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                expected[(m["event"] + "/" + key, m["step"])] = value
    for event_kind, keys in REQUIRED.items():
        for key in keys:
            check(any(t == event_kind + "/" + key for t, _ in expected), f"{run_dir}: metrics.jsonl has {event_kind}/{key}")
    check(set(got) == set(expected), f"{run_dir}: tags and steps differ: only in events {sorted(set(got) - set(expected))[:5]}, "
                                     f"only in metrics.jsonl {sorted(set(expected) - set(got))[:5]}")
    for k, v in expected.items():
        check(got[k][0] == f32(v), f"{run_dir}: {k}: {got[k][0]} in the events, {v} in metrics.jsonl")
    return got, files


exe, source_dir = sys.argv[1:3]
with tiny_run.Workspace(exe, source_dir, steps=12, valid_every=4, checkpoint_every=4) as ws:
    ws.run("whole")
    whole, files = check_against_metrics(ws.path("whole"))
    check(len(files) == 1, "one event file for one run")
    check(sum(1 for t, _ in whole if t == "train/loss") == 12, "12 train steps")

    # A run that logged steps 5 and 6 (and its end-of-run test) after its last checkpoint at
    # step 4, then was killed in the middle of writing a record: the step-6 checkpoint is removed
    # and half a record appended.
    ws.run("split", "--set", "train.max_steps=6")
    os.remove(ws.path("split", "checkpoints", "step-000000006.ckpt"))
    (first_file,) = glob.glob(ws.path("split", "events.out.tfevents.*"))
    with open(first_file, "ab") as f:
        f.write(struct.pack("<Q", 40) + b"\x00\x01")
    ws.run("split", "--resume", "--set", "train.max_steps=12")
    split, files = check_against_metrics(ws.path("split"))
    check(len(files) == 2, f"the resumed run writes a second file ({len(files)})")
    steps = sorted(s for t, s in split if t == "train/loss")
    check(steps == list(range(1, 13)), f"each step once after --resume: {steps}")
    # Resume is exact: the same losses as the uninterrupted run.
    for s in range(1, 13):
        a, b = whole[("train/loss", s)][0], split[("train/loss", s)][0]
        check(abs(a - b) <= 1e-6 * max(1.0, abs(a)), f"train/loss at step {s}: {a} uninterrupted, {b} resumed")
    check(("test/loss", 6) not in split and ("test/loss", 12) in split, "only the final run's test figures")

    # Every variant of a sweep is its own run with its own event file.
    ws.attnlab("ablate", ws.experiment, "--vary", "heads=1,4", "--out", ws.path("sweep"), "--set", "train.max_steps=4")
    runs = sorted(os.path.dirname(m) for m in glob.glob(ws.path("sweep", "**", "metrics.jsonl"), recursive=True))
    check(len(runs) == 3, f"baseline and two variants: {runs}")
    for run in runs:
        check_against_metrics(run)
print("ok")
