#!/usr/bin/env python3
"""Time and memory of self-attention against length: runs long_attention_bench, writes the SVG chart
and prints a Markdown table (standard library only).

Usage:
  long_attention_report.py --bench build/long_attention_bench [--json OUT.json] [--svg docs/long_attention.svg]
  long_attention_report.py --from-json OUT.json [MORE.json ...] [--svg docs/long_attention.svg]

Each configuration (kernel, length, threads) runs in its own processes (--repetitions, default 3;
the fastest is kept), so that the peak resident set
(getrusage) belongs to that configuration alone. The table and chart show, per configuration, the
wall-clock time of one forward+backward step, the bytes the node declares (saved + workspace) and the
process's peak resident set (inputs, parameters, their gradients, outputs and the declared buffers).
Several JSON files (runs at different times) are merged configuration by configuration, keeping the
fastest run of each.
"""
import argparse
import json
import math
import re
import subprocess
import sys

NAME = re.compile(r"^(tiled|materialised)/len:(\d+)/threads:(\d+)/tile:(-?\d+)")


def run_bench(bench, repetitions):
    listed = subprocess.run([bench, "--benchmark_list_tests"], check=True, capture_output=True, text=True).stdout
    names = [n for n in listed.split() if NAME.match(n)]
    results = []
    for name in names:
        # Repetitions in separate processes; the fastest is kept (on a shared machine other work
        # only ever slows a run down).
        best = None
        for _ in range(repetitions):
            out = subprocess.run([bench, "--benchmark_filter=^" + name + "$", "--benchmark_format=json"],
                                 check=True, capture_output=True, text=True).stdout
            data = json.loads(out)
            for b in data["benchmarks"]:
                if b.get("run_type", "iteration") == "iteration" and (best is None or b["real_time"] < best["real_time"]):
                    best = b
        results.append(best)
        print(f"{name}: {best['real_time']:.1f} ms", file=sys.stderr)
    return {"context": data["context"], "benchmarks": results}


def rows(data):
    out = []
    for b in data["benchmarks"]:
        m = NAME.match(b["name"])
        if not m:
            continue
        scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
        out.append({"kernel": m.group(1), "len": int(m.group(2)), "threads": int(m.group(3)),
                    "ms": b["real_time"] * scale, "declared_mb": b["declared_MB"], "peak_rss_mb": b["peak_rss_MB"]})
    return out


def table(rs):
    lines = ["| length | tiled 1 thread (ms) | tiled 2 threads (ms) | materialised 1 thread (ms) | "
             "materialised 2 threads (ms) | tiled declared (MiB) | materialised declared (MiB) | "
             "tiled peak RSS (MiB) | materialised peak RSS (MiB) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    get = {(r["kernel"], r["len"], r["threads"]): r for r in rs}

    def cell(kernel, length, threads, key, fmt):
        r = get.get((kernel, length, threads))
        return fmt.format(r[key]) if r else "—"

    for length in sorted({r["len"] for r in rs}):
        lines.append("| " + " | ".join([
            str(length),
            cell("tiled", length, 1, "ms", "{:.1f}"), cell("tiled", length, 2, "ms", "{:.1f}"),
            cell("materialised", length, 1, "ms", "{:.1f}"), cell("materialised", length, 2, "ms", "{:.1f}"),
            cell("tiled", length, 1, "declared_mb", "{:.1f}"), cell("materialised", length, 1, "declared_mb", "{:.1f}"),
            cell("tiled", length, 1, "peak_rss_mb", "{:.0f}"),
            cell("materialised", length, 1, "peak_rss_mb", "{:.0f}")]) + " |")
    return "\n".join(lines)


# ---- SVG: two log-log panels (time, memory) against length ------------------------------------------

COLOURS = {"tiled": "#1f77b4", "materialised": "#d62728"}


def panel(x0, y0, w, h, title, ylabel, series):
    """series: list of (label, colour, dashed, [(length, value)]). Returns SVG elements."""
    pts = [p for _, _, _, ps in series for p in ps if p[1] > 0]
    xs = [math.log2(p[0]) for p in pts]
    ys = [math.log10(p[1]) for p in pts]
    xmin, xmax = min(xs), max(xs)
    ymin, ymax = math.floor(min(ys)), math.ceil(max(ys))
    if ymax == ymin:
        ymax += 1
    left, right, top, bottom = 64, 24, 28, 44
    pw, ph = w - left - right, h - top - bottom

    def px(v):
        return x0 + left + (math.log2(v) - xmin) / (xmax - xmin) * pw

    def py(v):
        return y0 + top + ph - (math.log10(v) - ymin) / (ymax - ymin) * ph

    e = [f'<text x="{x0 + w / 2}" y="{y0 + 16}" text-anchor="middle" font-size="14">{title}</text>',
         f'<rect x="{x0 + left}" y="{y0 + top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>']
    for k in range(int(ymin), int(ymax) + 1):
        v = 10.0 ** k
        y = py(v)
        e.append(f'<line x1="{x0 + left}" y1="{y:.1f}" x2="{x0 + left + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        label = f"{v:g}"
        e.append(f'<text x="{x0 + left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{label}</text>')
    length = 2 ** int(xmin)
    while length <= 2 ** int(xmax):
        x = px(length)
        e.append(f'<line x1="{x:.1f}" y1="{y0 + top}" x2="{x:.1f}" y2="{y0 + top + ph}" stroke="#eee"/>')
        e.append(f'<text x="{x:.1f}" y="{y0 + top + ph + 16}" text-anchor="middle" font-size="11">{length}</text>')
        length *= 2
    e.append(f'<text x="{x0 + left + pw / 2}" y="{y0 + h - 8}" text-anchor="middle" font-size="12">'
             f'sequence length (tokens)</text>')
    e.append(f'<text x="{x0 + 14}" y="{y0 + top + ph / 2}" text-anchor="middle" font-size="12" '
             f'transform="rotate(-90 {x0 + 14} {y0 + top + ph / 2})">{ylabel}</text>')
    for i, (label, colour, dashed, ps) in enumerate(series):
        ps = sorted(p for p in ps if p[1] > 0)
        if not ps:
            continue
        d = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in ps)
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        e.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for a, b in ps:
            e.append(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.5" fill="{colour}"/>')
        ly = y0 + top + 14 + 16 * i
        lx = x0 + left + 10
        e.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 22}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"{dash}/>')
        e.append(f'<text x="{lx + 28}" y="{ly}" font-size="11">{label}</text>')
    return e


def svg(rs, subtitle, note):
    def pts(kernel, threads, key):
        return [(r["len"], r[key]) for r in rs if r["kernel"] == kernel and r["threads"] == threads]

    time_series = [(f"{k} {t} thread{'s' if t > 1 else ''}", COLOURS[k], t > 1, pts(k, t, "ms"))
                   for k in ("tiled", "materialised") for t in (1, 2)]
    memory_series = [(f"{k}: declared saved+workspace", COLOURS[k], False, pts(k, 1, "declared_mb"))
                     for k in ("tiled", "materialised")]
    memory_series += [(f"{k}: peak RSS", COLOURS[k], True, pts(k, 1, "peak_rss_mb")) for k in ("tiled", "materialised")]
    w, h = 520, 380
    extra = 16 if note else 0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h + 30 + extra}" '
             f'font-family="sans-serif">', f'<rect width="{2 * w}" height="{h + 30 + extra}" fill="white"/>']
    parts += panel(0, 0, w, h, "forward+backward time (ms)", "ms per step", time_series)
    parts += panel(w, 0, w, h, "memory (MiB)", "MiB", memory_series)
    parts.append(f'<text x="{w}" y="{h + 20}" text-anchor="middle" font-size="11" fill="#555">{subtitle}</text>')
    if note:
        parts.append(f'<text x="{w}" y="{h + 36}" text-anchor="middle" font-size="11" fill="#555">{note}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--bench", help="path of long_attention_bench")
    src.add_argument("--from-json", nargs="+", help="JSON files written by earlier --bench runs")
    ap.add_argument("--json", help="write the combined benchmark JSON here (with --bench)")
    ap.add_argument("--svg", default="docs/long_attention.svg")
    ap.add_argument("--note", default="", help="a line printed under the chart (e.g. the conditions of the runs)")
    ap.add_argument("--repetitions", type=int, default=3, help="processes per configuration; the fastest is kept")
    args = ap.parse_args()
    if args.bench:
        data = run_bench(args.bench, args.repetitions)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(data, f, indent=1)
    else:
        best = {}
        for path in args.from_json:
            with open(path) as f:
                data = json.load(f)
            for b in data["benchmarks"]:
                if b["name"] not in best or b["real_time"] < best[b["name"]]["real_time"]:
                    best[b["name"]] = b
        data = {"context": data["context"], "benchmarks": list(best.values())}
    rs = rows(data)
    if not rs:
        sys.exit("no tiled/ or materialised/ benchmarks in the results")
    ctx = data["context"]
    subtitle = (f"attention.scaled_dot self-attention, batch 1, 8 heads, d_k 64, d_model 512; "
                f"{ctx.get('num_cpus', '?')} CPUs, load average {', '.join(f'{x:.2f}' for x in ctx.get('load_avg', []))}"
                f"; {ctx.get('date', '')}")
    with open(args.svg, "w") as f:
        f.write(svg(rs, subtitle, args.note))
    print(table(rs))


if __name__ == "__main__":
    main()
