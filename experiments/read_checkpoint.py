#!/usr/bin/env python3
"""Reads an attnlab checkpoint in Python with the modules protoc generates from core/proto.

    protoc --python_out=py -I core/proto attnlab/ir/graph.proto attnlab/ckpt/checkpoint.proto
    PYTHONPATH=py python3 experiments/read_checkpoint.py RUN/checkpoints/best.ckpt

The .proto files live at their package paths, so the modules are attnlab.ir.graph_pb2 and
attnlab.ckpt.checkpoint_pb2 and coexist with any other library's graph.proto (OpenCV's, which
torch brings along). A checkpoint file is a 24-byte little-endian header (magic "ATTNCKPT",
format version, CRC32 of the payload, payload length) followed by the serialized Checkpoint.
Needs python3-protobuf; numpy only for parameters().
"""
import struct
import sys
import zlib

from attnlab.ckpt import checkpoint_pb2
from attnlab.ir import graph_pb2

MAGIC = b"ATTNCKPT"
HEADER = struct.Struct("<8sIIQ")  # magic, format version, CRC32 of the payload, payload length


def read_checkpoint(path):
    """The attnlab.ckpt.Checkpoint in `path`, after checking its header and checksum."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < HEADER.size:
        raise ValueError(f"{path}: {len(data)} bytes, shorter than the {HEADER.size}-byte header")
    magic, version, crc, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"{path}: not an attnlab checkpoint (magic {magic!r})")
    payload = data[HEADER.size:]
    if len(payload) != length:
        raise ValueError(f"{path}: payload of {len(payload)} bytes, the header says {length}")
    if zlib.crc32(payload) != crc:
        raise ValueError(f"{path}: checksum mismatch")
    checkpoint = checkpoint_pb2.Checkpoint()
    checkpoint.ParseFromString(payload)
    if checkpoint.format_version != version:
        raise ValueError(f"{path}: header version {version}, message version {checkpoint.format_version}")
    return checkpoint


def graph_of(checkpoint):
    """The elaborated model (attnlab.ir.GraphDef) the checkpoint was trained with."""
    graph = graph_pb2.GraphDef()
    graph.ParseFromString(checkpoint.graph)
    return graph


def parameters(checkpoint):
    """{name: numpy float32 array of its shape}, in the checkpoint's order."""
    import numpy as np
    return {t.name: np.asarray(t.data, dtype=np.float32).reshape(tuple(t.shape)) for t in checkpoint.parameters}


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: read_checkpoint.py CHECKPOINT")
    c = read_checkpoint(argv[1])
    m = c.metrics
    print(f"step {c.step}, epoch {c.epoch}, {len(c.parameters)} parameters, tokenizer {c.tokenizer_kind}")
    if m.has_best:
        print(f"best {m.best_metric} {m.best_score:g} at step {m.best_step}")
    for name in sorted(m.last):
        print(f"  {name} = {m.last[name]:g}")
    print(f"graph: {len(graph_of(c).nodes)} nodes")
    for t in c.parameters:
        print(f"  {t.name} {list(t.shape)}")


if __name__ == "__main__":
    main(sys.argv)
