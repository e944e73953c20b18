"""Render the results tables of README.md and docs/*.md from the committed JSON.

A table lives in the Markdown between two markers:

    <!-- table:NAME -->
    | ... the rendered table ... |
    <!-- /table:NAME -->

This script rewrites only what lies between such markers, so the prose around each table stays
hand-written while every number in a table comes from the JSON under benchmarks/results/ (and
the shipped networks' pretrained/*/metrics.json). TABLES below says which file feeds which table.

    python benchmarks/render_docs.py           # rewrite the tables in place
    python benchmarks/render_docs.py --check   # exit 1 naming every table that differs

Pure JSON in, Markdown out: no torch, no gankd import, so it runs anywhere in a second.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs")  # files, or folders whose *.md are scanned
MARKER = re.compile(r"(<!-- table:([\w.-]+) -->\n)(.*?)(<!-- /table:\2 -->)", re.S)
DASH = "–"


# ------------------------------------------------------------------ formatting
def sig(v: float | None, n: int = 3) -> str:
    """``v`` to ``n`` significant digits, trailing zeros kept, never in exponent form."""
    if v is None:
        return DASH
    if v == 0:
        return "0"
    decimals = max(n - 1 - math.floor(math.log10(abs(v))), 0)
    r = round(v, decimals)  # 9.997 rounds to 10.0: count the digits of the rounded value
    decimals = max(n - 1 - math.floor(math.log10(abs(r))), 0) if r else decimals
    return f"{r:,.{decimals}f}"


def pm(mean: float, std: float | None, n: int = 3) -> str:
    """mean ± std, the std to the mean's decimals (no ± for one value)."""
    m = sig(mean, n)
    if not std:
        return m
    decimals = len(m.split(".")[1]) if "." in m else 0
    return f"{m} ± {std:.{decimals}f}"


def si(v: float | None, n: int = 3) -> str:
    """3.75 M, 435 k: ``n`` significant digits with a k/M/G unit."""
    if v is None:
        return DASH
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= f:
            return f"{sig(v / f, n)} {unit}"
    return sig(v, n)


def frac(v: float) -> str:
    """0.25 -> 1/4, 0.125 -> 1/8, 1 -> 1."""
    return "1" if v == 1 else f"1/{round(1 / v)}"


def small(v: float) -> str:
    """A rate in [0, 1]: two decimals, three below 0.095 (recall near zero stays visible)."""
    return f"{v:.2f}" if v >= 0.095 else f"{v:.3f}"


def x_spread(r: dict | None, digits: int = 2, sign: str = "×", dash: str = DASH) -> str:
    """A speed-up ``{"median", "min", "max"}`` as 7.46× (7.24–10.38)."""
    if not r:
        return dash
    return f"{r['median']:.{digits}f}{sign} ({r['min']:.{digits}f}–{r['max']:.{digits}f})"


def bold(s: str, on: bool = True) -> str:
    return f"**{s}**" if on else s


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def load(root: Path, rel: str) -> dict:
    return json.loads((root / rel).read_text())


def get(d: dict, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return default
        d = d[k]
    return d


def mean_std(vals: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


# ------------------------------------------------------------------ make demo
def t_demo(root: Path) -> str:
    b = "benchmarks/results/demo/"
    t, s = load(root, b + "eval_teacher.json"), load(root, b + "eval_student.json")
    vt = s["efficiency"]["speed_vs_teacher"]
    rows = []
    for name, r, ms in (
        ("teacher", t, vt["teacher"]["onnx"]["latency"]["median_ms"]),
        ("width 1/4 student", s, s["efficiency"]["speed"]["onnx"]["latency"]["median_ms"]),
    ):
        steps = get(r, "model_info", "folder_meta", "trained_steps")
        rows.append([name, f"{steps:,}" if r is s else DASH, si(r["efficiency"]["macs"]), sig(r["quality"]["fid"]),
                     f"{r['class_consistency']['accuracy']:.3f}", f"{ms:.2f}",
                     DASH if r is t else x_spread(vt["ratio"]["eager"]["latency"], 1, "x"),
                     DASH if r is t else x_spread(vt["ratio"]["onnx"]["latency"], 1, "x")])  # fmt: skip
    return table(["model", "distillation steps", "MACs/img", "FID", "class consistency", "ONNX b1 ms (interleaved)",
                  "eager b1 × teacher", "ONNX b1 × teacher"], rows)  # fmt: skip


# ------------------------------------------------------------------ own images (Wesnoth)
def t_own_images_progress(root: Path) -> str:
    bn = load(root, "benchmarks/results/own_data_bn/progress_indomain/progress.json")
    old = load(root, "benchmarks/results/own_data/progress_indomain/progress.json")
    old_rows = {r["name"]: r for r in old["rows"]}
    snaps = [r for r in bn["rows"] if re.fullmatch(r"t\d+min", r["name"])]
    best = {"fid": min(r["fid"] for r in snaps), "isc": max(r["isc"] for r in snaps),
            "recall": max(r["recall"] for r in snaps)}  # fmt: skip
    rows = []
    for r in snaps:
        o = old_rows.get(r["name"])
        rows.append([f"{r['name'][1:-3]} min", f"{r['step']:,}", bold(sig(r["fid"]), r["fid"] == best["fid"]),
                     bold(sig(r["isc"]), r["isc"] == best["isc"]), f"{r['precision']:.2f}",
                     bold(f"{r['recall']:.3f}", r["recall"] == best["recall"]),
                     f"{sig(o['fid'])} / {o['recall']:.3f}" if o else DASH])  # fmt: skip
    f = bn["floor"]
    rows.append(["real floor (fit vs test)", DASH, sig(f["fid"]), sig(f["isc_mean"]), f"{f['precision']:.2f}",
                 f"{f['recall']:.2f}", ""])  # fmt: skip
    return table(["snapshot", "step", "FID (in-domain)", "IS", "precision", "recall",
                  "*earlier recipe, same minute: FID / recall*"], rows)  # fmt: skip


def t_own_images_chain(root: Path) -> str:
    b = "benchmarks/results/own_data_bn/"
    te, st = load(root, b + "eval_teacher.json"), load(root, b + "eval_student.json")
    ti, si_ = load(root, b + "eval_teacher_indomain.json"), load(root, b + "eval_student_indomain.json")
    floor_in = load(root, b + "progress_indomain/progress.json")["floor"]
    old_t = load(root, "benchmarks/results/own_data/eval_teacher.json")
    old_in = {r["name"]: r for r in load(root, "benchmarks/results/own_data/progress_indomain/progress.json")["rows"]}
    fl = st["real_floor"]["quality"]

    def onnx_ms(r):
        return sig(get(r, "efficiency", "speed", "onnx", "latency", "median_ms"))

    def row(name, ev, indomain_fid, indomain_is, indomain_recall, x=DASH):
        q, tf = ev["quality"], ev.get("teacher_fidelity") or {}
        psnr = f"{tf['psnr_db']:.1f} dB" if tf.get("psnr_db") else DASH
        return [name, si(ev["efficiency"]["params"]), si(ev["efficiency"]["macs"]), sig(q["fid"]),
                f"{small(q['precision'])} / {small(q['recall'])}", indomain_fid, indomain_is, indomain_recall,
                psnr, f"{tf['ssim']:.3f}" if tf.get("ssim") else DASH, onnx_ms(ev), x]  # fmt: skip

    ratio = get(st, "efficiency", "speed_vs_teacher", "ratio", "onnx", "latency")
    final = old_in["final"]
    rows = [
        ["real floor (fit vs test; in-domain: the progress protocol)", DASH, DASH, sig(fl["fid"]),
         f"{fl['precision']:.2f} / {fl['recall']:.2f}", sig(floor_in["fid"]), sig(floor_in["isc_mean"]),
         f"{floor_in['recall']:.2f}", DASH, DASH, DASH, DASH],
        row(f"teacher (BatchNorm D, {load(root, b + 'timing.json')['teacher_run']['train_wall_s'] / 60:.0f} min)", te,
            sig(ti["quality"]["fid"]), sig(ti["quality"]["isc_mean"]), small(ti["quality"]["recall"])),
        row("width 1/4 student (10 min)", st, sig(si_["quality"]["fid"]), sig(si_["quality"]["isc_mean"]),
            small(si_["quality"]["recall"]), x_spread(ratio)),
        row(f"*earlier:* teacher (spectral-norm D, {final['wall_minutes']:.0f} min; in-domain from "
            f"{load(root, 'benchmarks/results/own_data/progress_indomain/progress.json')['num_samples']:,} samples)",
            old_t, sig(final["fid"]), sig(final["isc"]), small(final["recall"])),
    ]  # fmt: skip
    return table(["model", "params", "MACs/img", "FID random-conv", "precision / recall", "FID in-domain",
                  "IS in-domain", "recall in-domain", "PSNR→T", "SSIM→T", "ONNX b1 ms", "ONNX b1 × teacher"],
                 rows)  # fmt: skip


# ------------------------------------------------------------------ your own GAN
def t_own_gan(root: Path) -> str:
    res = load(root, "benchmarks/results/foreign/results.json")
    sp, rows = res["speed"], []
    for name, r in res["models"].items():
        e = r["vs_teacher_samples"]["efficiency"]
        qt, qd = r["vs_teacher_samples"]["quality"], r["vs_data_test"]["quality"]
        tf = r["vs_teacher_samples"].get("teacher_fidelity") or {}
        m = sp["models"][name]
        rows.append([name, f"{e['params'] / 1e6:.3g} M", f"{e['macs'] / 1e6:.3g} M", str(r.get("steps", DASH)),
                     f"{qt['fid']:.3g}", f"{qd['fid']:.3g}", f"{qd['precision']:.2f} / {qd['recall']:.2f}",
                     f"{tf['psnr_db']:.2f}" if tf else DASH, f"{tf['ssim']:.3f}" if tf else DASH,
                     f"{m['eager']['latency']['median_ms']:.3g}", f"{m['onnx']['latency']['median_ms']:.3g}",
                     x_spread(get(sp, "ratios", name, "onnx", "latency"))])  # fmt: skip
    return table(["model", "params", "MACs/img", "steps", "FID vs teacher samples", "FID vs data (test)",
                  "precision / recall (data)", "PSNR→T dB", "SSIM→T", "eager b1 ms", "ONNX b1 ms",
                  "ONNX b1 × teacher"], rows)  # fmt: skip


# ------------------------------------------------------------------ image-to-image
def t_image_to_image(root: Path) -> str:
    res = load(root, "benchmarks/results/i2i/results.json")
    card = load(root, "pretrained/wesnoth-restore64/metrics.json")
    sizes = [str(res["trained_size"]), *(str(s) for s in res["sizes"])]
    te = res["teacher_eval"]["vs_target"]
    t_ms = [next(iter(card["speed"][s]["models"].values()))["onnx"]["latency"]["median_ms"] for s in sizes]
    t_threads = {card["speed"][s]["fingerprint"]["torch_threads"] for s in sizes}
    rows = [
        [
            "teacher",
            "1x",
            f"{te['psnr_db']['mean']:.2f}",
            DASH,
            f"{te['ssim']['mean']:.3f}",
            DASH,
            " / ".join(sig(v) for v in t_ms) + f" ms (its card, {'/'.join(map(str, sorted(t_threads)))} threads)",
        ]
    ]
    for w in res["widths"]:
        full, scratch = res["summary"][f"w{w:g} full"], res["summary"].get(f"w{w:g} scratch") or {}
        n = full["psnr"]["n"]

        def cell(s, key, digits):
            if not s or not s.get(key) or s[key]["mean"] is None:
                return DASH
            m, sd = s[key]["mean"], s[key]["std"]
            return f"{m:.{digits}f}" + (f" ± {sd:.{digits}f}" if s[key]["n"] > 1 else "")

        ups = [get(res, "speedups", s, f"w{w:g}", "onnx", "median") for s in sizes]
        rows.append([frac(w) + (f" ({n} seeds)" if n > 1 else ""), f"{full['mac_ratio'][sizes[0]]:.1f}x",
                     cell(full, "psnr", 2), cell(scratch, "psnr", 2), cell(full, "ssim", 3),
                     cell(scratch, "ssim", 3), " / ".join(f"{u:.1f}x" if u else DASH for u in ups)])  # fmt: skip
    return table(["width", "MACs ratio", "full: PSNR dB", "scratch: PSNR dB", "full: SSIM", "scratch: SSIM",
                  "ONNX b1 × teacher @ " + " / ".join(sizes) + " px"], rows)  # fmt: skip


# ------------------------------------------------------------------ Fashion-MNIST results
def t_teacher(root: Path) -> str:
    m = load(root, "pretrained/fmnist-teacher/metrics.json")
    q, f = m["quality"], m["real_floor"]["quality"]
    steps = m["model_info"]["folder_meta"]["trained_steps"]
    return table(
        ["params", "MACs/img", "steps (epochs)", "training", "FID (floor)", "IS (floor)", "precision / recall",
         "class consistency", "evaluator test accuracy"],
        [[si(m["efficiency"]["params"]), si(m["efficiency"]["macs"]),
          f"{steps:,} ({m['training']['epochs']:.1f})", f"{m['training']['wall_minutes']:g} min on one NVIDIA H200",
          f"{sig(q['fid'])} ({sig(f['fid'], 2)})", f"{q['isc_mean']:.2f} ({f['isc_mean']:.2f})",
          f"{q['precision']:.2f} / {q['recall']:.2f}", f"{m['class_consistency']['accuracy']:.3f}",
          f"{100 * m['evaluator_test_acc']:.2f} %"]],
    )  # fmt: skip


CURVE_COLUMNS = [  # (header, results folder, curve)
    ("w1/4 full (lr 2e-4)", "curves", "w0.25 full"),
    ("w1/4 pixel-only", "curves", "w0.25 pixel"),
    ("w1/4 pixel-only, lr8x-cosine", "curves_lr8x_cosine", "w0.25 pixel+lr8x-cosine"),
    ("w1/4 scratch", "curves", "w0.25 scratch"),
    ("w1/8 full+lr8x", "curves", "w0.125 full+lr8x"),
    ("w1/8 full+lr8x-cosine", "curves_lr8x_cosine", "w0.125 full+lr8x-cosine"),
    ("w1/8 full", "curves", "w0.125 full"),
]


def t_curves(root: Path) -> str:
    src = {d: load(root, f"benchmarks/results/{d}/results.json")["curves"] for d in ("curves", "curves_lr8x_cosine")}
    head = {p["minutes"]: p for p in src["curves"]["w0.25 full+lr8x"]["points"]}
    cols = [{p["minutes"]: p for p in src[d][c]["points"]} for _, d, c in CURVE_COLUMNS]
    minutes = sorted({m for c in [head, *cols] for m in c})
    best = {w: min(p["fid_mean"] for (_, _, c), col in zip(CURVE_COLUMNS, cols) if c.startswith(w)
                   for p in col.values()) for w in ("w0.25", "w0.125")}  # fmt: skip
    rows = []
    for m in minutes:
        h = head.get(m)
        row = [f"{m:g}", f"{round(h['steps_mean']):,}" if h else DASH,
               pm(h["fid_mean"], h["fid_std"]) if h else DASH]  # fmt: skip
        for (_, _, c), col in zip(CURVE_COLUMNS, cols):
            p = col.get(m)
            if p is None:
                row.append(DASH)
                continue
            s = bold(pm(p["fid_mean"], p["fid_std"]), p["fid_mean"] == best[c.split()[0]])
            row.append(s + ("" if h else f" ({round(p['steps_mean']):,} steps)"))
        rows.append(row)
    n = src["curves"]["w0.25 full+lr8x"]["points"][0]["seeds"]
    return table(["minutes", f"w1/4 full+lr8x, {n} seeds: steps", "FID", *(h for h, _, _ in CURVE_COLUMNS)], rows)


def t_step_budget(root: Path) -> str:
    res = load(root, "benchmarks/results/step_budget/results.json")
    rows = sorted(res["rows"], key=lambda r: (-r["width"], r["fraction"], "perc0" not in r["recipe"]))
    out = []
    for r in rows:
        many = len(r["seeds"]) > 1
        fid = (f"{pm(r['fid_mean'], r['fid_std'])} ({', '.join(f'{f:.2f}' for f in r['fids'])})" if many
               else f"{r['fid_mean']:.2f} (seed {r['seeds'][0]})")  # fmt: skip
        target = DASH
        if many and r["fraction"] <= 0.25:
            target = f"≤ {r['target_x_teacher']:g}x: " + ("**met**" if r["target_met"] else "missed")
        recipe = r["recipe"] if "perc0" in r["recipe"] else f"{r['recipe']} (perceptual and KD on)"
        out.append([frac(r["width"]), recipe, f"{100 * r['fraction']:g} %", f"{r['steps']:,}",
                    bold(fid, r["target_met"]), bold(f"{r['fid_over_teacher']:.2f}", r["target_met"]),
                    target])  # fmt: skip
    return table(["width", "recipe", "share of the teacher's steps", "steps", "FID, mean ± std (seeds)",
                  "× teacher", "target"], out)  # fmt: skip


STUDENTS = ("fmnist-student-w05", "fmnist-student-w025", "fmnist-student-w0125")


def t_shipped_students(root: Path) -> str:
    t = load(root, "pretrained/fmnist-teacher/metrics.json")
    t_fid = t["quality"]["fid"]

    def cells(m):
        q = m["quality"]
        return [si(m["efficiency"]["params"]), si(m["efficiency"]["macs"]), q["fid"], f"{q['isc_mean']:.2f}",
                f"{q['precision']:.2f} / {q['recall']:.2f}", f"{m['class_consistency']['accuracy']:.3f}"]  # fmt: skip

    p, mac, fid, *rest = cells(t)
    rows = [
        [
            "fmnist-teacher",
            "1",
            f"{t['training']['wall_minutes']:g} min on a GPU, "
            f"{t['model_info']['folder_meta']['trained_steps']:,} steps",
            p,
            mac,
            sig(fid),
            *rest,
            DASH,
        ]
    ]
    for name in STUDENTS:
        m = load(root, f"pretrained/{name}/metrics.json")
        c = m["curve"]
        p, mac, fid, *rest = cells(m)
        point = c.get("curve_point") or {}
        fid_s = bold(sig(fid), fid < t_fid)
        if point.get("seeds", 1) > 1:
            fid_s += f" ({point['seeds']} seeds: {pm(point['fid_mean'], point['fid_std'])})"
        ratio = get(m, "efficiency", "speed_vs_teacher", "ratio", "onnx", "latency")
        rows.append([f"[{name}](../pretrained/{name}/MODEL_CARD.md)", f"{c['width']:g}",
                     f"{c['minutes']:.0f} min ({c['recipe']}), {c['steps']:,} steps", p, mac, fid_s, *rest,
                     x_spread(ratio, 1, "x")])  # fmt: skip
    return table(["model", "width", "training (1 CPU thread)", "params", "MACs/img", "FID", "IS",
                  "precision / recall", "class consistency", "ONNX b1 × teacher"], rows)  # fmt: skip


RECIPE_NAMES = {"full": "gankd full recipe", "pixel": "pixel-only KD", "scratch": "GAN from scratch"}


def _matrix_rows(results: list[dict]) -> dict[str, dict]:
    """Results by row key ('floor', 'teacher', 'w0.25 full', ...): numbers as (mean, std)."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        key = r.get("group") or r["role"]
        groups.setdefault(key, []).append(r)
    out = {}
    for key, rs in groups.items():

        def ms(*path):
            vals = [get(r, *path) for r in rs]
            vals = [v for v in vals if v is not None]
            return mean_std(vals) if vals else None

        out[key] = {"n": len(rs), "macs": get(rs[0], "efficiency", "macs"), "fid": ms("quality", "fid"),
                    "isc": ms("quality", "isc_mean"), "precision": ms("quality", "precision"),
                    "recall": ms("quality", "recall"), "class_acc": ms("class_consistency", "accuracy"),
                    "eval_dist": ms("teacher_fidelity", "evaluator_lpips_style"),
                    "psnr": ms("teacher_fidelity", "psnr_db"),
                    "x_onnx": get(rs[0], "efficiency", "speed_vs_teacher", "ratio", "onnx", "latency"),
                    "params": get(rs[0], "efficiency", "params")}  # fmt: skip
    return out


def _two(v) -> str:
    if v is None:
        return DASH
    m, s = v
    return f"{m:.2f}" + (f" ± {s:.2f}" if s is not None else "")


def _fid(v) -> str:
    m, s = v
    return sig(m) + (f" ± {sig(s)}" if s is not None else "")


def _matrix_table(rows: dict[str, dict], widths: list[float], recipes: list[str]) -> str:
    out = []
    for key, label in (("floor", "real data (floor)"), ("teacher", "teacher")):
        r = rows[key]
        out.append([label, si(r["macs"]) if key == "teacher" else DASH, sig(r["fid"][0]), f"{r['isc'][0]:.2f}",
                    f"{r['precision'][0]:.2f}", f"{r['recall'][0]:.2f}", f"{r['class_acc'][0]:.2f}", DASH])  # fmt: skip
    for w in sorted(widths, reverse=True):
        cells = {rc: rows[f"w{w:g} {rc}"] for rc in recipes if f"w{w:g} {rc}" in rows}
        best = min(c["fid"][0] for c in cells.values())
        for rc in ("full", "pixel", "scratch"):
            if rc not in cells:
                continue
            r = cells[rc]
            out.append([f"w{frac(w)} {RECIPE_NAMES[rc]}", si(r["macs"]), bold(_fid(r["fid"]), r["fid"][0] == best),
                        _two(r["isc"]), _two(r["precision"]), _two(r["recall"]), _two(r["class_acc"]),
                        _two(r["eval_dist"])])  # fmt: skip
    return table(["model", "MACs/img", "FID", "IS", "precision", "recall", "class acc", "eval-dist→T"], out)


def t_cpu_matrix(root: Path) -> str:
    res = load(root, "benchmarks/results/results.json")
    return _matrix_table(_matrix_rows(res["results"]), res["args"]["widths"], res["args"]["recipes"])


def t_gpu_matrix(root: Path) -> str:
    res = load(root, "benchmarks/results/gpu_matrix/results.json")
    return _matrix_table(_matrix_rows(res["results"]), res["args"]["widths"], res["args"]["recipes"])


def t_quick(root: Path) -> str:
    res = load(root, "benchmarks/results/quick/results.json")
    rows = _matrix_rows(res["results"])
    out = []
    t = rows["teacher"]
    out.append(["teacher", si(t["macs"]), sig(t["fid"][0]), f"{t['isc'][0]:.2f}", f"{t['precision'][0]:.2f}",
                f"{t['recall'][0]:.2f}", f"{t['class_acc'][0]:.2f}", DASH, DASH])  # fmt: skip
    for w in res["args"]["widths"]:
        cells = {rc: rows[f"w{w:g} {rc}"] for rc in ("full", "pixel", "scratch") if f"w{w:g} {rc}" in rows}
        best = min(c["fid"][0] for c in cells.values())
        shown = False
        for rc, r in cells.items():
            x = "same architecture" if shown else x_spread(r["x_onnx"])
            shown = shown or r["x_onnx"] is not None
            label = RECIPE_NAMES[rc].replace("gankd ", "")
            out.append([f"w{frac(w)} {label}", si(r["macs"]), bold(sig(r["fid"][0]), r["fid"][0] == best),
                        f"{r['isc'][0]:.2f}", f"{r['precision'][0]:.2f}", f"{r['recall'][0]:.2f}",
                        f"{r['class_acc'][0]:.2f}", f"{r['psnr'][0]:.1f} dB", x])  # fmt: skip
    return table(["model", "MACs/img", "FID", "IS", "precision", "recall", "class acc", "PSNR→T", "ONNX b1 × teacher"],
                 out)  # fmt: skip


def t_speed(root: Path) -> str:
    sp = load(root, "benchmarks/results/speed.json")
    rows = _matrix_rows(load(root, "benchmarks/results/results.json")["results"])
    t_onnx = sp["teacher"]["speed"]["onnx"]["latency"]["median_ms"]
    out = []
    for name, rec in sp.items():
        s = rec["speed"]
        r = rows["teacher"] if name == "teacher" else rows[f"{name} full"]
        onnx = s["onnx"]["latency"]["median_ms"]
        out.append([name if name == "teacher" else f"w{frac(float(name[1:]))}", si(r["params"]),
                    f"{r['macs'] / 1e6:.2f} M", f"{s['eager']['latency']['median_ms']:.2f}", f"{onnx:.3f}",
                    DASH if name == "teacher" else f"{t_onnx / onnx:.1f}x",
                    f"{s['eager']['throughput']['images_per_s']:.0f}",
                    f"{s['onnx']['throughput']['images_per_s']:.0f}"])  # fmt: skip
    return table(["model", "params", "MACs/img", "eager b1 ms", "ONNX b1 ms", "ONNX b1 speed-up",
                  "eager img/s (b256)", "ONNX img/s (b256)"], out)  # fmt: skip


def _targets(res: dict) -> list[str]:
    """The matrix's targets as four cells: w1/4 gap, w1/8 gap, full vs scratch per width, w1/4 speed."""
    ts = res["targets"]

    def yn(t):
        return "yes" if t["met"] else "no"

    gaps = [next(t for t in ts if t["target"].startswith(f"w{w} full recipe FID within")) for w in ("0.25", "0.125")]
    scratch = sorted(
        (t for t in ts if "below scratch" in t["target"]), key=lambda t: -float(t["target"][1:].split(":")[0])
    )
    speed = next(t for t in ts if "speed-up" in t["target"])
    pct = " / ".join(t["value"].split("%")[0] for t in scratch)
    widths = ", ".join(frac(float(t["target"][1:].split(":")[0])) for t in scratch)
    return [*(f"{yn(t)}: {t['value']}" for t in gaps),
            f"{'yes' if all(t['met'] for t in scratch) else 'no'}: {pct} % (w{widths})",
            f"{yn(speed)}: {speed['value']}"]  # fmt: skip


def t_targets(root: Path) -> str:
    cpu = load(root, "benchmarks/results/results.json")
    gpu = load(root, "benchmarks/results/gpu_matrix/results.json")
    names = [
        "w1/4 full recipe within 10 % of the teacher's FID",
        "w1/8 full recipe within 50 % of the teacher's FID",
        "full recipe >= 30 % below scratch at equal time, every width",
        "w1/4 ONNX Runtime batch-1 speed-up >= 8x",
    ]
    a, b = _targets(cpu), _targets(gpu)
    b[3] += " (the CPU speeds)"
    head = [
        f"CPU matrix ({cpu['args']['minutes']:g} min, {len(cpu['args']['seeds'])} seeds)",
        f"GPU cells ({gpu['args']['minutes']:g} min, {len(gpu['args']['seeds'])} seed)",
    ]
    return table(["target", *head], [[n, x, y] for n, x, y in zip(names, a, b)])


# ------------------------------------------------------------------ classifier distillation
def t_classifier_kd(root: Path) -> str:
    res = load(root, "benchmarks/results/classifier_kd/results.json")
    t, lat = res["teacher"], res["latency"]

    def acc(s):
        return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}" if s else "—"

    rows = [
        [
            f"teacher ({Path(t['path']).name})",
            f"{t['params']:,}",
            f"{t['macs'] / 1e6:.2f} M",
            f"{lat['teacher']['median_ms']:.3f}",
            "1×",
            f"{100 * t['test_acc']:.2f}",
            "—",
            "—",
        ]
    ]
    for w in res["config"]["widths"]:
        row = res["students"][f"{w:g}"]
        ce, kd = row.get("ce"), row.get("kd_T4")
        d = [100 * (b - a) for a, b in zip(ce["values"], kd["values"])]
        delta = f"{statistics.fmean(d):+.2f} ± {statistics.stdev(d) if len(d) > 1 else 0:.2f}".replace("-", "−")
        lw = lat[f"w{w:g}"]
        rows.append([f"student ×{w:g}", f"{row['params']:,}", f"{row['macs'] / 1e6:.2f} M", f"{lw['median_ms']:.3f}",
                     x_spread(lw["speedup_vs_teacher"]), acc(ce), acc(kd), delta])  # fmt: skip
    return table(["model", "params", "MACs/img", "latency b=1 (ms)", "speed-up", "test acc CE (%)",
                  "test acc KD, T = 4 (%)", "KD − CE (pts)"], rows)  # fmt: skip


# ------------------------------------------------------------------ the registry
# name -> (renderer, the files it reads): --check names these when a table differs
# ------------------------------------------------------------------ the recipe study (plain beside gankd)
RECIPE_SETTINGS = {"wesnoth64-free": "wesnoth-dcgan64, data-free", "wesnoth64-data": "wesnoth-dcgan64, with data",
                   "fmnist": "fmnist-teacher, with data", "restore64": "wesnoth-restore64, image-to-image"}  # fmt: skip
# the same teachers at another width (the choice ran at width 1/4 only)
WIDTH_SETTINGS = {"fmnist-w8": "fmnist-teacher, with data, width 1/8"}
# teachers the default was not chosen on (StyleGAN2-, FastGAN-style, trained outside gankd)
UNSEEN_SETTINGS = {"sg2-fmnist": "fmnist-stylegan2 (StyleGAN2-style), width 1/4",
                   "sg2-fmnist-w2": "fmnist-stylegan2 (StyleGAN2-style), width 1/2",
                   "sg2-fmnist-copy": "fmnist-stylegan2, a narrower copy of its class (`--student-kwargs`), width 1/4",
                   "fastgan64": "wesnoth-fastgan64 (FastGAN-style), width 1/4",
                   "fastgan64-w2": "wesnoth-fastgan64 (FastGAN-style), width 1/2"}  # fmt: skip


def _pm_row(row: dict, side: str, key: str, digits: int) -> str:
    st = get(row, side, key)
    if not st or st.get("mean") is None:
        return DASH
    text = f"{st['mean']:.{digits}f}"
    return text + (f" ± {st['std']:.{digits}f}" if st.get("std") is not None else "")


def _twin(res: dict, recipe: str) -> str | None:
    """The recipe that is ``recipe`` without its ``adv_max_steps`` cap (None: no cap or no such recipe)."""
    return res.get("uncapped_twins", {}).get(recipe)


def _uncapped_here(res: dict, row: dict) -> bool:
    """A recipe with a capped adversarial phase whose every cell in ``row`` is its twin's run (the cap did not
    bind at this budget): the twin's row already shows those numbers."""
    return bool(res["recipes"].get(row["recipe"], {}).get("adv_max_steps")) and all(
        res["cells"][c].get("same_run_as") for c in row["cells"])


def t_recipes(root: Path, budget: str = "c5", settings: dict | None = None) -> str:
    """Every recipe of the study at one calibrated budget, test side, plain first (mean ± std over seeds)."""
    res = load(root, "benchmarks/results/recipes/results.json")
    chosen = res["compress_default"]
    twin = _twin(res, chosen)
    first = {"plain": 0, "classic": 1, twin: 2, chosen: 2}
    rows = []
    for setting, label in (settings or RECIPE_SETTINGS).items():
        mine = [r for r in res["rows"] if r["setting"] == setting and r["budget"] == budget]
        hidden = {r["recipe"] for r in mine if _uncapped_here(res, r)}
        for r in sorted((r for r in mine if r["recipe"] not in hidden), key=lambda r: first.get(r["recipe"], 3)):
            tag = (" = **default**" if r["recipe"] == chosen else
                   " = **default** (its cap does not bind here)" if chosen in hidden and r["recipe"] == twin else "")
            name = bold(r["recipe"] + tag, r["recipe"] == "plain")
            rows.append([label, name, str(len(r["seeds"])), f"{r['steps']['mean']:,.0f}",
                         _pm_row(r, "test", "fid_vs_teacher", 2 if setting.startswith("fmnist") else 3),
                         _pm_row(r, "test", "psnr_to_teacher", 2), _pm_row(r, "test", "ssim_to_teacher", 3),
                         _pm_row(r, "test", "fid_vs_data", 2)])  # fmt: skip
    return table(["teacher", "recipe", "seeds", "steps", "FID vs teacher samples", "PSNR to teacher (dB)",
                  "SSIM to teacher", "FID vs test split"], rows)  # fmt: skip


def t_recipes_verdict(root: Path) -> str:
    """The issue's test of the default against plain, per teacher and budget (10, 20 and 40 calibrated minutes where
    both recipes ran them, else the longest budget both ran), test side, mean over the seeds both ran: FID
    against teacher samples below plain's, and PSNR to the teacher at most 0.3 dB below plain's."""
    res = load(root, "benchmarks/results/recipes/results.json")
    chosen = res["compress_default"]
    by = {}  # (setting, budget, recipe) -> {seed: test side}
    for c in res["cells"].values():
        by.setdefault((c["setting"], c["budget"]["tag"], c["recipe"]), {})[c["seed"]] = c["test"]
    rows = []
    for setting, label in {**RECIPE_SETTINGS, **WIDTH_SETTINGS, **UNSEEN_SETTINGS}.items():
        both = [b for b in ("c5", "c10", "c20", "c40") if set(by.get((setting, b, chosen), {}))
                & set(by.get((setting, b, "plain"), {}))]  # fmt: skip
        rows += _verdict_rows(label, [b for b in both if b != "c5"] or both[-1:], by, setting, chosen)
    return table(["teacher", "budget", "seeds", "FID vs teacher samples: default / plain", "ratio",
                  "PSNR: default − plain (dB)", "default vs plain"], rows)  # fmt: skip


REPRODUCED = "benchmarks/results/recipes/reproduce"


def t_recipes_reproduce(root: Path) -> str:
    """The user's command for a committed cell of the default recipe, rerun in a fresh process
    (benchmarks/reproduce_default.py): its test numbers beside the cell's and whether all agree."""
    rows = []
    for f in sorted((root / REPRODUCED).glob("*.json")):
        r = json.loads(f.read_text())
        t = r["numbers"]["test"]
        same = {True: "yes", False: "**no**", None: "run folder not here"}
        rel = max(abs(v["cell"] - v["command"]) / max(abs(v["cell"]), 1e-12)
                  for side in r["numbers"].values() for v in side.values())  # fmt: skip
        rows.append([f"`{r['cell']}`", f"`{r['command']}`", f"{r['steps']:,}",
                     f"{sig(t['fid_vs_teacher']['cell'], 4)} / {sig(t['fid_vs_teacher']['command'], 4)}",
                     f"{t['psnr_to_teacher']['cell']:.3f} / {t['psnr_to_teacher']['command']:.3f}",
                     "0 (all equal)" if rel == 0 else f"{rel:.1g}", same[r["weights_equal_to_cell_run"]]])  # fmt: skip
    return table(["cell", "the user's command", "steps", "test FID vs teacher: cell / command",
                  "test PSNR (dB): cell / command", "largest relative difference, every val and test number",
                  "weights bit for bit"], rows)  # fmt: skip


def t_recipes_data(root: Path) -> str:
    """The recipes for FID against the data (Fashion-MNIST, 20 calibrated minutes): val chooses, test reported,
    each FID also as a multiple of the teacher's on the same split; plain and the default beside."""
    c = load(root, "benchmarks/results/recipes/results.json")["data_choice"]
    rows = []
    for r, v in c["rows"].items():
        role = ("plain" if r == "plain" else "default" if r == c["default"] else
                "**chosen on val**" if r == c["chosen"] else "candidate")  # fmt: skip
        rows.append([f"`{r}`", role, ", ".join(map(str, v["seeds"])),
                     *(f"{sig(v[s]['fid_vs_data'])} ({v[s]['x_teacher']:.2f}x)" for s in ("val", "test")),
                     sig(v["test"]["fid_vs_teacher"]), f"{v['test']['psnr_to_teacher']:.2f}"])  # fmt: skip
    return table(["recipe", "role", "seeds", "val FID vs data (x teacher's)", "test FID vs data (x teacher's)",
                  "test FID vs teacher samples", "test PSNR to teacher (dB)"], rows)  # fmt: skip


def t_recipes_choice(root: Path) -> str:
    """The val-side choice at 10, 20 and 40 calibrated minutes (results.json -> choice, default_choice): per recipe
    that ran every study teacher of the budget, the settings where it meets the test against plain, its mean FID
    ratio and PSNR gain; a capped recipe whose numbers are its twin's (the same runs) is left out."""
    res = load(root, "benchmarks/results/recipes/results.json")
    pairs = res["default_choice"]["pairs_met"]
    rows = []
    for budget in ("c10", "c20", "c40"):
        c = res["choice"].get(budget)
        if c is None:
            continue
        for recipe, v in c["recipes"].items():
            twin = _twin(res, recipe)
            if not v["complete"] or (twin and c["recipes"].get(twin, {}).get("settings") == v["settings"]):
                continue
            per = ", ".join(f"{s} {'yes' if x['ok'] else 'no'} ({x['fid_ratio_to_plain']:.2f}x, "
                            f"{x['psnr_gain_db']:+.2f} dB)" for s, x in v["settings"].items())  # fmt: skip
            rows.append([f"{budget[1:]} min", recipe, f"{v['settings_met']} of {len(v['settings'])}", per,
                         bold(f"{pairs.get(recipe, 0)}", recipe == res["default_choice"]["chosen"])])  # fmt: skip
    return table(["budget", "recipe", "meets the test", "per teacher: met (FID / plain's, PSNR − plain's)",
                  "pairs met, all budgets"], rows)  # fmt: skip


def _verdict_rows(label: str, budgets: list[str], by: dict, setting: str, chosen: str) -> list[list[str]]:
    rows = []
    for budget in budgets:
        me, base = by[(setting, budget, chosen)], by[(setting, budget, "plain")]
        seeds = sorted(set(me) & set(base))

        def mean(side: dict, key: str) -> float:
            return sum(side[k][key] for k in seeds) / len(seeds)

        fid_m, fid_p = mean(me, "fid_vs_teacher"), mean(base, "fid_vs_teacher")
        dpsnr = mean(me, "psnr_to_teacher") - mean(base, "psnr_to_teacher")
        wins_fid, holds_psnr = fid_m < fid_p, dpsnr >= -0.3
        verdict = "ahead" if wins_fid and holds_psnr else "behind on " + " and ".join(
            x for x, bad in (("FID", not wins_fid), ("PSNR", not holds_psnr)) if bad)
        if verdict == "ahead" and dpsnr < 0:
            verdict = "ahead (PSNR below plain's, within 0.3 dB)"
        digits = 2 if fid_p >= 1 else 3
        rows.append([label, f"{budget[1:]} min", ", ".join(map(str, seeds)), f"{fid_m:.{digits}f} / {fid_p:.{digits}f}",
                     f"{fid_m / fid_p:.2f}", f"{dpsnr:+.2f}", bold(verdict, verdict == "ahead")])  # fmt: skip
    return rows


def t_qat(root: Path) -> str:
    """Post-training int8 against quantization-aware distillation on the same student (benchmarks/qat.py)."""
    res = load(root, "benchmarks/results/qat/results.json")
    rows = []
    for r in res["rows"]:
        label = "post-training int8" if r["qat_start"] >= 1 else f"`--qat-start {r['qat_start']:g}`, then int8"
        rows.append([label, f"{r['fid_fp32']:.2f}", f"{r['fid_int8']:.2f}", f"{100 * r['fid_rise']:+.1f} %",
                     f"{r['psnr_int8_to_fp32_db']:.2f}", f"{r['psnr_int8_to_teacher_db']:.2f}"])  # fmt: skip
    return table(["student", "FID fp32", "FID int8", "FID rise", "PSNR int8 → fp32 (dB)",
                  "PSNR int8 → teacher (dB)"], rows)  # fmt: skip


QAT_FINETUNE = ("benchmarks/results/qat/finetune/results.json", "benchmarks/results/qat/finetune_full/results.json")


def t_qat_finetune(root: Path) -> str:
    """The shipped width-1/4 student fine-tuned with and without the int8 rounding (benchmarks/qat.py --init-from)."""
    rows, seen = [], False
    for rel in QAT_FINETUNE:
        res = load(root, rel)
        for r in res["rows"]:
            if r["qat_start"] is None:
                if seen:
                    continue
                seen, label = True, "as shipped, post-training int8"
            else:
                how = "plain" if r["qat_start"] >= 1 else "through the int8 rounding"
                recipe = res.get("recipe", "default")
                label = f"{res['steps']:,} steps of `{recipe}` at lr {res['lr_g']:g}, {how}, then int8"
            rows.append([label, f"{r['fid_fp32']:.2f}", f"{r['fid_int8']:.2f}", f"{100 * r['fid_rise']:+.1f} %",
                         f"{r['psnr_int8_to_fp32_db']:.2f}", f"{r['psnr_int8_to_teacher_db']:.2f}"])  # fmt: skip
    return table(["student", "FID fp32", "FID int8", "FID rise", "PSNR int8 → fp32 (dB)",
                  "PSNR int8 → teacher (dB)"], rows)  # fmt: skip


PRECISION_LABELS = {"int8-ct": "int8, ConvTranspose kept fp32", "int8-sp": "int8, ConvTranspose rewritten"}


def _ops_cell(r: dict) -> str:
    """Compute ops in int8 / fp16 / fp32 (``all fp32`` for the fp32 export)."""
    ops = r.get("ops") or {}
    tot = {k: sum(c.get(k, 0) for c in ops.values()) for k in ("int8", "fp16", "fp32")} if ops else None
    return f"{tot['int8']} / {tot['fp16']} / {tot['fp32']}" if tot else "all fp32"


def deploy_tables(res: dict) -> tuple[str, str]:
    """(precision table, latency-budget table) of benchmarks/deploy.py's results (Fashion-MNIST students)."""
    rows = []
    for key, r in res["models"].items():
        s = res["speed"][key]
        rows.append([r["model"], PRECISION_LABELS.get(r["precision"], r["precision"]), f"{r['macs'] / 1e6:.3g} M",
                     _ops_cell(r), sig(r.get("fid")),
                     DASH if r.get("psnr_to_fp32_db") is None else f"{r['psnr_to_fp32_db']:.1f}",
                     f"{sig(s['b1']['median_ms'])} ({s['b1']['speedup_median']:.2f}×, {s['b1']['speedup_min']:.2f}–"
                     f"{s['b1']['speedup_max']:.2f})",
                     f"{sig(s['b64']['median_ms'])} ({s['b64']['speedup_median']:.2f}×)"])  # fmt: skip
    models = table(["model", "precision", "MACs/img", "ops in int8 / fp16 / fp32", "FID", "PSNR to fp32 dB",
                    "b1 ms (× teacher, min–max)", "b64 ms (× teacher)"], rows)  # fmt: skip
    budgets = table(["budget", "student timed as", "width picked", "ms in the search", "ms re-timed", "within 10 %"],
                    [[f"{sig(b['budget_ms'])} ms ({b['fraction_of_teacher']:g} × teacher)",
                      ("int8 export" if b.get("runtime") == "onnx-int8" else "fp32 export")
                      + (f", {b['layout']} layout" if b.get("layout") else ""), f"{b['width']:.3g}",
                      sig(b["measured_in_search_ms"]), sig(b["remeasured_ms"]), "yes" if b["within_10pct"] else "no"]
                     for b in res["budgets"]])  # fmt: skip
    return models, budgets


def deploy_i2i_tables(res: dict) -> tuple[str, str]:
    """(precision table, latency-budget table) of benchmarks/deploy_i2i.py's results."""
    rows = []
    for r in res["models"].values():
        s64, s256 = res["speed"]["64"][r["key"]], res["speed"]["256"][r["key"]]
        rows.append([r["model"], PRECISION_LABELS.get(r["precision"], r["precision"]), f"{r['macs'] / 1e6:.3g} M",
                     _ops_cell(r), sig(r["fid"]),
                     DASH if r["psnr_to_target_db"] is None else f"{r['psnr_to_target_db']:.2f}",
                     DASH if r["psnr_to_fp32_db"] is None else f"{r['psnr_to_fp32_db']:.1f}",
                     f"{sig(s64['b1']['median_ms'])} ({s64['b1']['speedup_median']:.2f}×)",
                     f"{sig(s64['b64']['median_ms'])} ({s64['b64']['speedup_median']:.2f}×)",
                     f"{sig(s256['b1']['median_ms'])} ({s256['b1']['speedup_median']:.2f}×, "
                     f"{s256['b1']['speedup_min']:.2f}–{s256['b1']['speedup_max']:.2f})"])  # fmt: skip
    models = table(["model", "precision", "MACs at 64 px", "ops in int8 / fp16 / fp32", "FID vs targets",
                    "PSNR to targets dB", "PSNR to fp32 dB", "64 px b1 ms (× teacher)", "64 px b64 ms (×)",
                    "256 px b1 ms (×, min–max)"], rows)  # fmt: skip
    return models, deploy_tables({"models": {}, "budgets": res["budgets"]})[1]


def t_deploy(root: Path) -> str:
    """fp32 / fp16 / int8 of the Fashion-MNIST teacher and its students (benchmarks/deploy.py)."""
    return deploy_tables(load(root, "benchmarks/results/deploy/results.json"))[0]


def t_deploy_budgets(root: Path) -> str:
    """--target-latency for the Fashion-MNIST teacher (benchmarks/deploy.py)."""
    return deploy_tables(load(root, "benchmarks/results/deploy/results.json"))[1]


def t_deploy_foreign(root: Path) -> str:
    """fp32 / fp16 / int8 of the imported wesnoth-dcgan64 and two of its students (benchmarks/deploy_foreign.py)."""
    return deploy_tables(load(root, "benchmarks/results/deploy_foreign/results.json"))[0]


def t_deploy_i2i(root: Path) -> str:
    """fp32 / fp16 / int8 of the image-to-image teacher and its students (benchmarks/deploy_i2i.py)."""
    return deploy_i2i_tables(load(root, "benchmarks/results/deploy_i2i/results.json"))[0]


def t_deploy_i2i_budgets(root: Path) -> str:
    """--target-latency at 256 px for the image-to-image teacher (benchmarks/deploy_i2i.py)."""
    return deploy_i2i_tables(load(root, "benchmarks/results/deploy_i2i/results.json"))[1]


def t_modern_mapping(root: Path) -> str:
    """The StyleGAN2-style mapping network's share of each model (benchmarks/modern_gans.py --mapping)."""
    res = load(root, "benchmarks/results/modern/mapping.json")
    rows = [[k, f"{r['mapping']['params']:,} of {r['generator']['params']:,} ({100 * r['params_share']:.1f} %)",
             f"{100 * r['macs_share']:.2f} %",
             f"{r['eager_b1_ms']['mapping']:.3g} of {r['eager_b1_ms']['generator']:.3g} "
             f"({100 * r['latency_share']:.1f} %)"] for k, r in res["rows"].items()]  # fmt: skip
    return table(["model", "mapping params", "mapping MACs", "eager b1 ms (share)"], rows)


TABLES: dict[str, tuple[Callable[[Path], str], tuple[str, ...]]] = {
    "modern-mapping": (t_modern_mapping, ("benchmarks/results/modern/mapping.json",)),
    "deploy": (t_deploy, ("benchmarks/results/deploy/results.json",)),
    "deploy-budgets": (t_deploy_budgets, ("benchmarks/results/deploy/results.json",)),
    "deploy-foreign": (t_deploy_foreign, ("benchmarks/results/deploy_foreign/results.json",)),
    "deploy-i2i": (t_deploy_i2i, ("benchmarks/results/deploy_i2i/results.json",)),
    "deploy-i2i-budgets": (t_deploy_i2i_budgets, ("benchmarks/results/deploy_i2i/results.json",)),
    "qat": (t_qat, ("benchmarks/results/qat/results.json",)),
    "qat-finetune": (t_qat_finetune, QAT_FINETUNE),
    "recipes": (t_recipes, ("benchmarks/results/recipes/results.json",)),
    "recipes-verdict": (t_recipes_verdict, ("benchmarks/results/recipes/results.json",)),
    "recipes-c10": (lambda root: t_recipes(root, "c10", {**RECIPE_SETTINGS, **WIDTH_SETTINGS}),
                    ("benchmarks/results/recipes/results.json",)),
    "recipes-reproduce": (t_recipes_reproduce, tuple(str(p.relative_to(ROOT)) for p in sorted((ROOT / REPRODUCED)
                                                                                          .glob("*.json")))),
    "recipes-choice": (t_recipes_choice, ("benchmarks/results/recipes/results.json",)),
    "recipes-data": (t_recipes_data, ("benchmarks/results/recipes/results.json",)),
    "recipes-c20": (lambda root: t_recipes(root, "c20"), ("benchmarks/results/recipes/results.json",)),
    "recipes-c40": (lambda root: t_recipes(root, "c40"), ("benchmarks/results/recipes/results.json",)),
    "recipes-unseen": (lambda root: t_recipes(root, "c5", UNSEEN_SETTINGS),
                       ("benchmarks/results/recipes/results.json",)),
    "demo": (t_demo, ("benchmarks/results/demo/eval_teacher.json", "benchmarks/results/demo/eval_student.json")),
    "own-images-progress": (t_own_images_progress, (
        "benchmarks/results/own_data_bn/progress_indomain/progress.json",
        "benchmarks/results/own_data/progress_indomain/progress.json")),
    "own-images-chain": (t_own_images_chain, (
        "benchmarks/results/own_data_bn/eval_teacher.json", "benchmarks/results/own_data_bn/eval_student.json",
        "benchmarks/results/own_data_bn/eval_teacher_indomain.json",
        "benchmarks/results/own_data_bn/eval_student_indomain.json", "benchmarks/results/own_data_bn/timing.json",
        "benchmarks/results/own_data_bn/progress_indomain/progress.json",
        "benchmarks/results/own_data/eval_teacher.json",
        "benchmarks/results/own_data/progress_indomain/progress.json")),
    "own-gan": (t_own_gan, ("benchmarks/results/foreign/results.json",)),
    "image-to-image": (t_image_to_image, ("benchmarks/results/i2i/results.json",
                                          "pretrained/wesnoth-restore64/metrics.json")),
    "teacher": (t_teacher, ("pretrained/fmnist-teacher/metrics.json",)),
    "curves": (t_curves, ("benchmarks/results/curves/results.json",
                          "benchmarks/results/curves_lr8x_cosine/results.json")),
    "step-budget": (t_step_budget, ("benchmarks/results/step_budget/results.json",)),
    "shipped-students": (t_shipped_students, ("pretrained/fmnist-teacher/metrics.json",
                                              *(f"pretrained/{n}/metrics.json" for n in STUDENTS))),
    "cpu-matrix": (t_cpu_matrix, ("benchmarks/results/results.json",)),
    "quick": (t_quick, ("benchmarks/results/quick/results.json",)),
    "gpu-matrix": (t_gpu_matrix, ("benchmarks/results/gpu_matrix/results.json",)),
    "speed": (t_speed, ("benchmarks/results/speed.json", "benchmarks/results/results.json")),
    "targets": (t_targets, ("benchmarks/results/results.json", "benchmarks/results/gpu_matrix/results.json")),
    "classifier-kd": (t_classifier_kd, ("benchmarks/results/classifier_kd/results.json",)),
}  # fmt: skip


def doc_files(root: Path = ROOT) -> list[Path]:
    out = []
    for d in DOCS:
        p = root / d
        out += sorted(p.glob("*.md")) if p.is_dir() else ([p] if p.is_file() else [])
    return out


def render_text(text: str, root: Path = ROOT, where: str = "") -> tuple[str, list[str]]:
    """``text`` with every marked table rendered, and the names of the tables that changed."""
    changed: list[str] = []

    def sub(m: re.Match) -> str:
        name = m.group(2)
        if name not in TABLES:
            raise SystemExit(f"render_docs: {where}: unknown table {name!r} (known: {', '.join(TABLES)})")
        body = TABLES[name][0](root) + "\n"
        if body != m.group(3):
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return MARKER.sub(sub, text), changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 naming every table that differs")
    ap.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = ap.parse_args(argv)
    stale, seen = [], set()
    for path in doc_files(args.root):
        rel = path.relative_to(args.root)
        old = path.read_text()
        new, changed = render_text(old, args.root, str(rel))
        seen.update(m.group(2) for m in MARKER.finditer(old))
        for name in changed:
            stale.append(name)
            if args.check:
                print(f"{rel}: table {name!r} differs from {', '.join(TABLES[name][1])} "
                      "(run python benchmarks/render_docs.py)")  # fmt: skip
                a = re.search(rf"<!-- table:{re.escape(name)} -->\n(.*?)<!-- /table:", old, re.S).group(1)
                b = re.search(rf"<!-- table:{re.escape(name)} -->\n(.*?)<!-- /table:", new, re.S).group(1)
                sys.stdout.writelines(f"    {x}\n" for x in difflib.unified_diff(
                    a.splitlines(), b.splitlines(), "committed", "rendered", lineterm="", n=0))  # fmt: skip
        if changed and not args.check:
            path.write_text(new)
            print(f"rendered {rel}: {', '.join(changed)}")
    missing = sorted(set(TABLES) - seen)
    if missing:
        print(f"render_docs: no marker for table(s) {', '.join(missing)} in {', '.join(DOCS)}")
        return 1
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
