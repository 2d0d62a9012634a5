#!/usr/bin/env python3
"""`attnlab attention` checked in a real browser: headless Chromium loads the page the command
writes (a model with two layers of each kind of attention), and the test reads the rendered DOM
(one heatmap cell per query and key, the tokens on the axes, the chosen layer and head, the
average over heads equal to the mean of the heads' probabilities) and a screenshot (not blank).
It also checks that the page is self-contained and that the probabilities are distributions.

usage: attention_page_test.py ATTNLAB_EXE SOURCE_DIR
Exit 77 (skipped) without chromium (Debian's `chromium` package)."""
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

import tiny_run
from tiny_run import check

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args):
    p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                        "--user-data-dir=" + PROFILE, *args], capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, f"chromium {' '.join(args)}: exit {p.returncode}\n{p.stderr[-2000:]}")
    return p.stdout


def png_pixels(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB or RGBA PNG."""
    data = open(path, "rb").read()
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG file")
    at, idat, width = 8, b"", 0
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            check(depth == 8 and colour in (2, 6), f"PNG depth {depth} colour type {colour}")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = prev[x], prev[x - channels] if x >= channels else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, channels)])
        prev = line
    return width, height, rows


def page_data(text):
    m = re.search(r'<script type="application/json" id="attention-data">(.*?)</script>', text, re.S)
    check(m, "the page embeds its data")
    return json.loads(m.group(1).replace("<\\/", "</"))


def cells(dom):
    """{(row, col): p} of the rendered heatmap."""
    out = {}
    for m in re.finditer(r'<rect [^>]*class="cell"[^>]*>', dom):
        attrs = dict(re.findall(r'([a-z-]+)="([^"]*)"', m.group(0)))
        out[(int(attrs["data-row"]), int(attrs["data-col"]))] = float(attrs["data-p"])
    return out


if not CHROMIUM:
    print("chromium is not installed: skipped")
    sys.exit(77)

exe, source_dir = sys.argv[1:3]
with tiny_run.Workspace(exe, source_dir, steps=12, valid_every=0, checkpoint_every=0) as ws:
    PROFILE = ws.path("chromium-profile")
    ws.run("run", "--set", "layers=2")
    src = open(ws.path("run", "test.src")).readline().strip()
    ref = open(ws.path("run", "test.ref")).readline().strip()
    page = ws.path("page.html")
    ws.attnlab("attention", "--checkpoint", ws.path("run"), "--src", src, "--tgt", ref, "--out", page)
    text = open(page).read()

    # Self-contained: no script, style, image or frame from elsewhere.
    for pattern in (r"<script[^>]+src=", r"<link", r"<img", r"<iframe", r"url\(", r"@import", r"https?://(?!www\.w3\.org/2000/svg)"):
        check(not re.search(pattern, text), f"the page refers outside itself: {pattern}")

    data = page_data(text)
    check(data["src_tokens"] == src.split(), f"source tokens {data['src_tokens']}")
    check(data["tgt_tokens"] == ["<s>"] + ref.split(), f"target tokens {data['tgt_tokens']}")
    kinds = {}
    for m in data["maps"]:
        kinds.setdefault(m["kind"], []).append(m)
    check(sorted(kinds) == ["cross-attention", "decoder self-attention", "encoder self-attention"], f"kinds {sorted(kinds)}")
    for kind, maps in kinds.items():
        check([m["layer"] for m in maps] == [0, 1], f"{kind}: two layers")
        for m in maps:
            rows = len(data[m["rows"] + "_tokens"])
            cols = len(data[m["cols"] + "_tokens"])
            check(m["heads"] == 2 and m["row_count"] == rows and m["col_count"] == cols, f"{m['node']}: shape")
            for h in range(m["heads"]):
                for i in range(rows):
                    row = m["probs"][(h * rows + i) * cols:(h * rows + i + 1) * cols]
                    check(abs(sum(row) - 1) < 2e-3, f"{m['node']} head {h} row {i} sums to {sum(row)}")
                    if kind == "decoder self-attention":
                        check(all(p == 0 for p in row[i + 1:]), f"{m['node']}: causal")

    # The default view, then a chosen kind, layer and head, and the average of the heads.
    dom = chromium("--dump-dom", "file://" + page)
    check('data-rendered="encoder self-attention|0|avg"' in dom, "the default view is rendered")
    for token in data["src_tokens"]:
        check(f'class="row-token">{html.escape(token)}</text>' in dom, f"source token {token!r} on the axis")
    cross = kinds["cross-attention"][1]
    for head in ("avg", 1):
        dom = chromium("--dump-dom", f"file://{page}#kind=cross-attention&layer=1&head={head}")
        check(f'data-rendered="cross-attention|1|{head}"' in dom, f"view cross-attention layer 1 head {head}")
        got = cells(dom)
        rows, cols = cross["row_count"], cross["col_count"]
        check(len(got) == rows * cols, f"{len(got)} heatmap cells, expected {rows * cols}")
        for (i, j), p in got.items():
            heads = [cross["probs"][(h * rows + i) * cols + j] for h in range(cross["heads"])]
            want = sum(heads) / len(heads) if head == "avg" else heads[head]
            check(abs(p - want) < 2e-4, f"cell ({i}, {j}) of head {head}: {p}, expected {want}")
        check(dom.count('class="thumb"') == cross["heads"], "one small heatmap per head")
        check('class="col-token">' + html.escape(data["src_tokens"][0]) + "</text>" in dom, "source tokens along the top")

    shot = ws.path("page.png")
    chromium("--window-size=1000,900", "--hide-scrollbars", "--screenshot=" + shot, "file://" + page)
    width, height, pixels = png_pixels(shot)
    colours = {p for row in pixels for p in row[::3]}
    dark = sum(1 for row in pixels for p in row if sum(p) < 600)
    check(len(colours) > 20 and dark > 1000, f"the screenshot is blank ({len(colours)} colours, {dark} dark pixels)")

    # Without --tgt, the model's own translation; errors are one line and exit code 1.
    ws.attnlab("attention", "--checkpoint", ws.path("run"), "--src", src, "--out", ws.path("own.html"))
    check(page_data(open(ws.path("own.html")).read())["tgt_tokens"][0] == "<s>", "a translation as the target")

    def error(args, *expected):
        code, _, err = ws.attnlab(*args, expect=None)
        check(code == 1, f"{' '.join(args)}: exit {code}\n{err}")
        for e in expected:
            check(e in err, f"{' '.join(args)}: no {e!r} in\n{err}")

    error(["attention", "--checkpoint", ws.path("nowhere"), "--src", src], "nowhere")
    error(["attention", "--checkpoint", ws.path("run"), "--src", "   "], "--src", "no tokens")
    error(["attention", "--checkpoint", ws.path("run"), "--src", src, "--out", ws.path("no", "dir", "a.html")], "--out")
    error(["attention", "--checkpoint", ws.path("run"), "--src", src, "--input", "spoken"], "--input")
    # Text is checked as translate's input is; a page is bounded (train/limits.h: each map is tokens x tokens).
    error(["attention", "--checkpoint", ws.path("run"), "--src", "ein \udcff"], "--src:1:5: invalid UTF-8 (byte 0xFF)")
    error(["attention", "--checkpoint", ws.path("run"), "--src", src, "--tgt", "a\x01b"], "--tgt:1:2: control byte 0x01 in text")
    long_src = " ".join([src] * (300 // len(src.split()) + 1))
    error(["attention", "--checkpoint", ws.path("run"), "--src", long_src], "--src: the text encodes to ", " tokens; the page shows at most 256")
print("ok")
