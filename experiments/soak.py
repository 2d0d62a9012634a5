#!/usr/bin/python3
"""Soak test: training, an ablation sweep and checkpoint averaging killed at random moments.

Each scenario runs once uninterrupted (the reference), then again under fire: the process is
killed with SIGKILL at a random moment, resumed (`attnlab run --resume`; `attnlab ablate` is run
again, which resumes a sweep), killed again, and so on until it finishes by itself. The final
checkpoints (the last step's, best.ckpt and average.ckpt of every run) must then hold exactly the
reference's weights, optimizer state, step, data position and random counters, bit for bit.

  run       a tiny experiment, 4000 steps, a checkpoint every 20, `--average 3` at the end
  ablate    the same experiment swept over heads=1,2 (1500 steps each)
A scenario is repeated (each time in a new directory, against the same reference) until its share
of the kills (three fifths for run, the rest for ablate) has landed.

usage: experiments/soak.py [--attnlab build/attnlab] [--kills 50] [--seed 1] [--keep DIR]
Standard library only. Not part of ctest (it takes minutes); docs/reliability.md has its last result.
"""
import argparse
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

# The tiny experiment (tests/support/tiny_experiment.h's model and data) as a template: the soak
# and the interoperability tests (tests/interop/tiny_run.py) each fill in their schedule.
TINY_EXPERIMENT = """
experiment tiny {{
  model = "transformer_base.attn" with {{ layers = 1, d_model = 16, d_ff = 32, heads = 2 }}
  data  = synthetic(train: 300, dev: 20, test: 20, seed: 3)
  seed  = 5
  train {{
    adam(0.9, 0.98, 1e-9), noam(factor: 2.0, warmup: 10), label_smoothing: 0.1, dropout: 0.1,
    batch_tokens: {batch_tokens}, max_steps: {steps}, valid_every: {valid_every}, checkpoint_every: {checkpoint_every}{extra_train}
  }}
  {sections}
}}
"""

# ---- checkpoints: the 24-byte header, then a protobuf message (core/proto/attnlab/ckpt/checkpoint.proto)
# The fields compared: parameters (7), optimizer (8), step (9), epoch (10), data_position (11),
# random (12, whose map of counters is compared as a dict: protobuf does not order map entries).
COMPARED = {7: "parameters", 8: "optimizer", 9: "step", 10: "epoch", 11: "data_position"}


def varint(buf, i):
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def fields(buf):
    """(field number, raw value) for each top-level field of a protobuf message, in order."""
    i, out = 0, []
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            start = i
            _, i = varint(buf, i)
            out.append((number, buf[start:i]))
        elif wire == 1:
            out.append((number, buf[i:i + 8]))
            i += 8
        elif wire == 2:
            length, i = varint(buf, i)
            out.append((number, buf[i:i + length]))
            i += length
        elif wire == 5:
            out.append((number, buf[i:i + 4]))
            i += 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
    return out


def checkpoint_state(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"ATTNCKPT":
        raise ValueError("%s: not an attnlab checkpoint" % path)
    (payload,) = struct.unpack("<Q", data[16:24])
    state = {name: [] for name in COMPARED.values()}
    state["random"] = {}
    for number, raw in fields(data[24:24 + payload]):
        if number in COMPARED:
            state[COMPARED[number]].append(raw)
        elif number == 12:
            for sub, value in fields(raw):
                if sub == 1:
                    state["random"]["<seed>"] = value
                elif sub == 2:  # a map entry: key (1), value (2)
                    entry = dict(fields(value))
                    state["random"][entry.get(1, b"")] = entry.get(2, b"")
    return state


def final_checkpoints(run_dir):
    """The checkpoints a finished run ends with: its last step's, best.ckpt, average.ckpt."""
    ckpt = os.path.join(run_dir, "checkpoints")
    steps = sorted(n for n in os.listdir(ckpt) if n.startswith("step-") and n.endswith(".ckpt"))
    names = steps[-1:] + [n for n in ("best.ckpt", "average.ckpt") if os.path.exists(os.path.join(ckpt, n))]
    return {n: os.path.join(ckpt, n) for n in names}


def compare_runs(reference_dir, soaked_dir, label):
    ref, got = final_checkpoints(reference_dir), final_checkpoints(soaked_dir)
    if sorted(ref) != sorted(got):
        return ["%s: checkpoints %s, the reference has %s" % (label, sorted(got), sorted(ref))]
    problems = []
    for name in sorted(ref):
        a, b = checkpoint_state(ref[name]), checkpoint_state(got[name])
        for part in a:
            if a[part] != b[part]:
                problems.append("%s: %s differs in %s" % (label, name, part))
    return problems


# ---- running under fire -----------------------------------------------------------------------

def resumable(cwd, command):
    """Whether `attnlab run --resume` takes up the run directory a `run ... --out DIR` command names:
    once the run was accepted (its checkpoints/ directory exists), with or without a step
    checkpoint (without one it starts again from step 0). A sweep's command, which has no such
    directory of its own, counts as resumable."""
    if command[1] != "run":
        return True
    return os.path.isdir(os.path.join(cwd, command[command.index("--out") + 1], "checkpoints"))


def run_to_end(command, cwd, resume_command, rng, kills):
    """Runs `command`, killing it at a random moment (0.05 to 0.6 s after each start) until `kills`
    kills have landed or it finishes first, resuming each time with `resume_command`; then lets it
    finish. Returns the number of kills that landed."""
    landed, attempt = 0, command
    while True:
        proc = subprocess.Popen(attempt, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if landed < kills:
            try:
                proc.wait(timeout=rng.uniform(0.05, 0.6))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                landed += 1
                # Killed before the run was accepted, there is nothing to resume: the same
                # command starts it. A sweep resumes in any case: its command is the same.
                attempt = resume_command(cwd) if resumable(cwd, command) else command
                continue
        else:
            proc.wait()
        err = proc.stderr.read().decode(errors="replace")
        if proc.returncode != 0:
            sys.exit("failed (exit %d): %s\n%s" % (proc.returncode, " ".join(attempt), err))
        return landed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attnlab", default="build/attnlab")
    parser.add_argument("--kills", type=int, default=50, help="kills in all (split between the scenarios)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", help="work in this directory and keep it")
    args = parser.parse_args()
    attnlab = os.path.abspath(args.attnlab)
    model = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transformer_base.attn")
    work = args.keep or tempfile.mkdtemp(prefix="attnlab-soak-")
    os.makedirs(work, exist_ok=True)
    rng = random.Random(args.seed)
    problems, report = [], []

    def experiment(name, steps):
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        shutil.copy(model, d)
        with open(os.path.join(d, "tiny.attn"), "w") as f:
            f.write(TINY_EXPERIMENT.format(steps=steps, batch_tokens=200, valid_every=100, checkpoint_every=20,
                                           extra_train="", sections=""))
        return d

    def soak(name, command, resume, share, compare):
        """Kills `command` (resumed by `resume`) until `share` kills have landed, in as many
        rounds as that takes; compares each round with the reference."""
        landed, rounds = 0, 0
        while landed < share:
            rounds += 1
            target = "soaked-%d" % rounds
            landed += run_to_end(command + [target], d, lambda cwd, t=target: resume(t), rng, share - landed)
            compare(target, "%s round %d" % (name, rounds))
        return landed, rounds

    # Scenario 1: training with averaging at the end.
    d = experiment("run", 4000)
    run = [attnlab, "run", "tiny.attn", "--threads", "2", "--average", "3", "--out"]
    t0 = time.time()
    subprocess.run(run + ["reference"], cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    life = time.time() - t0
    kills, rounds = soak("run", run, lambda t: run + [t, "--resume"], args.kills * 3 // 5,
                         lambda t, label: problems.extend(
                             compare_runs(os.path.join(d, "reference"), os.path.join(d, t), label)))
    report.append("run: %d kills in %d rounds (uninterrupted: %.1f s)" % (kills, rounds, life))

    # Scenario 2: an ablation sweep, resumed by running it again.
    d = experiment("ablate", 1500)
    sweep = [attnlab, "ablate", "tiny.attn", "--vary", "heads=1,2", "--threads", "2", "--out"]
    t0 = time.time()
    subprocess.run(sweep + ["reference"], cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    life = time.time() - t0
    ref_runs = sorted(n for n in os.listdir(os.path.join(d, "reference"))
                      if os.path.isdir(os.path.join(d, "reference", n, "checkpoints")))
    if not ref_runs:
        problems.append("ablate: the reference sweep left no run directories")

    def compare_sweep(target, label):
        for name in ref_runs:
            problems.extend(compare_runs(os.path.join(d, "reference", name), os.path.join(d, target, name),
                                         label + " " + name))

    kills, rounds = soak("ablate", sweep, lambda t: sweep + [t], args.kills - args.kills * 3 // 5, compare_sweep)
    report.append("ablate: %d kills in %d rounds over %d variants (uninterrupted: %.1f s)" %
                  (kills, rounds, len(ref_runs), life))

    for line in report:
        print(line)
    if problems:
        print("\n".join(problems))
        print("soak: FAILED (%d differences); work directory %s" % (len(problems), work))
        sys.exit(1)
    print("soak: passed: every final checkpoint equals the uninterrupted run's, bit for bit")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
