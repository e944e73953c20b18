"""Image-to-image compression matrix: distilled vs from-scratch students of an i2i teacher.

    python benchmarks/i2i_matrix.py --teacher runs/restore/teacher --minutes 6
    python benchmarks/i2i_matrix.py --teacher DIR --minutes M [--seeds 3] [--widths 0.5,0.25,0.125]
        [--headline 0.25] [--runs runs/i2i_matrix] [--out benchmarks/results/i2i] [--sizes 256,512] [--no-speed]

1. Cells: for each width W two recipes with the same wall budget (``--minutes``), one CPU
   thread, the same torch-pruned student architecture and the same checkpoint selection
   (``val-l1``: L1 to the targets of the val split's pairs, every 250 steps):

   - ``full``: ``gankd compress``'s defaults: the student inherits the teacher's top-L1
     channels and learns from the teacher (pixel L1 + feature matching), adversarial with
     the teacher's conditional PatchGAN (the perceptual/KD terms switch themselves off
     without a perceptual net for the domain);
   - ``scratch``: the same architecture from random init, trained with the pix2pix recipe
     only (L1 to the ground truth x100 + adversarial x1 with a fresh conditional PatchGAN):
     no teacher signal at all.

   Seeds 0..``--seeds``-1 for the ``--headline`` width, seed 0 for the others. Each cell is
   a run folder ``RUNS/w{W}_{recipe}_s{seed}``, resumed from its ``state.pt``; a ``DONE``
   marker (train wall seconds, last step) keeps finished ones.
2. Evaluation of every student and of the teacher on the test pairs of the teacher's data
   and task (PSNR/SSIM/LPIPS vs target and vs teacher, FID/KID, MACs at the trained size and
   ``--sizes``): ``OUT/cells/<cell>.json`` and ``OUT/cells/teacher.json`` (kept when present).
3. One interleaved speed pass (teacher and the full-recipe seed-0 student of each width, eager
   and ONNX Runtime, batch 1 and 4) at the trained size and each of ``--sizes``; measured
   afresh on every invocation (``--no-speed`` skips it).
4. ``OUT/results.json`` (every number, the equivalent ``gankd compress`` command of each cell,
   the machine fingerprint), ``OUT/RESULTS.md`` (table and the targets, computed),
   ``OUT/psnr_vs_macs.png`` and ``OUT/grid.png`` (test pairs: source | teacher | the
   full-recipe seed-0 student of each width | target).

Training takes (2 x widths + 2 x (seeds - 1)) x ``--minutes`` (10 cells by default), plus the
evaluations and the speed pass. Rerunning the same command resumes: cells with a DONE marker and
existing cell JSONs are kept; the speed pass, tables, plot and grid are redone.

``--smoke``: tiny budgets for tests (a few steps, batch 4, a short speed pass).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

from gankd.adapter import adapter_for  # noqa: E402
from gankd.checkpoint import CONFIG, WEIGHTS, atomic_write_bytes, load_generator, load_state  # noqa: E402
from gankd.config import load_json  # noqa: E402
from gankd.data import to_float  # noqa: E402
from gankd.distill import CLASSIC, DistillConfig, compress  # noqa: E402
from gankd.evaluate import Pairs, Quality  # noqa: E402
from gankd.evaluate_i2i import evaluate_i2i, model_pairs  # noqa: E402
from gankd.fileio import portable_path  # noqa: E402
from gankd.metrics.efficiency import fingerprint, interleaved_speed  # noqa: E402
from gankd.runtimes import Options  # noqa: E402
from gankd.sampling import check_finite_images, generate, grid, save_png  # noqa: E402

RECIPES = ("full", "scratch")
METRICS = ("psnr", "ssim", "lpips", "fid", "kid")
# the pix2pix recipe on the same pruned architecture: no teacher signal, D fresh, real = the targets
SCRATCH = {"init": "random", "pixel": 0.0, "perceptual": 0.0, "feat": 0.0, "kd": 0.0, "gt": 100.0, "adv": 1.0,
           "real": "data", "d_init": "fresh"}  # fmt: skip
# DistillConfig field -> gankd compress flag (the rest go through --set)
FLAGS = {"teacher": "--teacher", "width": "--width", "init": "--init", "steps": "--steps", "batch_size": "--batch-size",
         "pixel": "--pixel", "perceptual": "--perc", "feat": "--feat", "adv": "--adv", "d_init": "--d-init",
         "real": "--real", "kd": "--kd", "gt": "--gt", "seed": "--seed", "max_minutes": "--max-minutes",
         "select": "--select", "eval_every": "--eval-every", "device": "--device"}  # fmt: skip
PSNR_TOL_DB, MIN_MAC_RATIO, SPEED_SIZE = 0.3, 8.0, 256
SMOKE = {"minutes": 0.05, "steps": 20, "eval_every": 5, "eval_samples": 8, "batch_size": 4, "num_samples": 8,
         "speed": dict(rounds=2, latency_calls=1, throughput_calls=1, big_batch=2)}  # fmt: skip
SPEED = dict(rounds=5, latency_calls=5, throughput_calls=1, big_batch=4)


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def _fmt(v: float) -> str:
    return f"{v:g}"


def cell_name(width: float, recipe: str, seed: int) -> str:
    return f"w{width:g}_{recipe}_s{seed}"


def teacher_folder(path: str) -> Path:
    """The teacher's generator folder: DIR itself, or DIR/generator for a train-teacher run folder."""
    p = Path(path)
    if not (p / WEIGHTS).exists() and (p / "generator" / WEIGHTS).exists():
        return p / "generator"
    if not (p / WEIGHTS).exists():
        raise SystemExit(f"--teacher {path}: no {WEIGHTS} there (nor in {p / 'generator'})")
    return p


def plan_cells(widths: list[float], headline: float, seeds: int) -> list[tuple[float, str, int]]:
    """Seed 0 of every width and recipe first (a partial run already compares them), then the
    headline width's other seeds."""
    cells = [(w, r, 0) for w in widths for r in RECIPES]
    cells += [(headline, r, s) for s in range(1, seeds) for r in RECIPES]
    return cells


def cell_config(args, teacher: Path, width: float, recipe: str, seed: int) -> dict:
    """The DistillConfig fields of a cell: the classic recipe its committed cells ran, at the cell's budget."""
    kw = {**CLASSIC, "teacher": str(teacher), "width": width, "steps": 10**6, "max_minutes": args.minutes,
          "eval_every": 250, "eval_samples": 500, "threads": 1, "seed": seed, "select": "val-l1", "device": args.device,
          "batch_size": args.batch_size}  # fmt: skip
    if args.smoke:
        kw.update(steps=SMOKE["steps"], eval_every=SMOKE["eval_every"], eval_samples=SMOKE["eval_samples"],
                  batch_size=SMOKE["batch_size"])  # fmt: skip
    if recipe == "scratch":
        kw.update(SCRATCH)
    return kw


def compress_command(kw: dict, run: Path) -> str:
    """The ``gankd compress`` line equivalent to a cell's config."""
    argv = ["gankd", "compress", "--out", portable_path(run)]
    sets = []
    for k, v in kw.items():
        if k == "device" and v == "cpu":
            continue
        v = portable_path(v) if k == "teacher" else v
        text = _fmt(v) if isinstance(v, float) else str(v)
        if k in FLAGS:
            argv += [FLAGS[k], text]
        else:
            sets += ["--set", f"{k}={json.dumps(v)}"]
    return shlex.join([*argv, "--no-progress", *sets])


def train_cell(args, teacher: Path, width: float, recipe: str, seed: int) -> dict:
    """Train one cell (resumed from its state.pt; skipped when DONE). Returns the cell's record."""
    name = cell_name(width, recipe, seed)
    run = Path(args.runs) / name
    kw = cell_config(args, teacher, width, recipe, seed)
    rec = {"name": name, "width": width, "recipe": recipe, "seed": seed, "run": portable_path(run),
           "student": portable_path(run / "student"), "command": compress_command(kw, run),
           "config": {k: (portable_path(v) if k == "teacher" else v) for k, v in kw.items()}}  # fmt: skip
    done = run / "DONE"
    if not done.exists():
        resume = (run / "state.pt").exists()
        print(f"[i2i_matrix] {'resuming' if resume else 'training'} {name} ({args.minutes:g} min)", flush=True)
        t0 = time.monotonic()
        student = compress(DistillConfig(**kw), run, resume=resume)
        st = load_state(run / "state.pt")
        meta = load_json(student / CONFIG)
        _write_json(done, {"train_wall_s": round(float(st.get("wall_s", 0.0)), 1), "last_step": int(st["step"]),
                           "selected_step": meta.get("trained_steps"), "minutes": args.minutes,
                           "this_invocation_s": round(time.monotonic() - t0, 1)})  # fmt: skip
    rec["train"] = json.loads(done.read_text())
    return rec


def eval_cell(args, out: Path, name: str, model: Path, teacher: Path | None, command: str) -> dict:
    path = out / "cells" / f"{name}.json"
    if path.exists():
        res = json.loads(path.read_text())
        if {str(s) for s in args.sizes} <= set(res["efficiency"]["model"]["macs"]):
            return res
        print(f"[i2i_matrix] {path} lacks MACs at --sizes {args.sizes}: evaluating {name} again", flush=True)
    print(f"[i2i_matrix] evaluating {name}", flush=True)
    res = evaluate_i2i(model, teacher, quality=Quality(metrics=METRICS, num_samples=args.num_samples),
                       pairs=Pairs(sizes=tuple(args.sizes)), device=args.device, command=command)  # fmt: skip
    _write_json(path, res)
    return res


def eval_command(args, model: Path, teacher: Path | None) -> str:
    argv = ["gankd", "eval", "--model", portable_path(model)]
    if teacher is not None:
        argv += ["--teacher", portable_path(teacher)]
    argv += ["--metrics", ",".join(METRICS), "--sizes", ",".join(map(str, args.sizes))]
    if args.num_samples:
        argv += ["--num-samples", str(args.num_samples)]
    return shlex.join(argv)


# ------------------------------------------------------------------ numbers
def stats(values: list[float]) -> dict:
    """Mean and std (sample std; None for one value) over seeds."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0, "values": []}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None,
            "n": len(vals), "values": vals}  # fmt: skip


def _metric(ev: dict, key: str, metric: str):
    d = ev.get(key) or {}
    return (d.get(metric) or {}).get("mean")


def summarize(cells: dict[str, dict], evals: dict[str, dict]) -> dict[str, dict]:
    """One row per (width, recipe): numbers over its seeds."""
    rows: dict[str, dict] = {}
    for name, c in cells.items():
        key = f"w{c['width']:g} {c['recipe']}"
        rows.setdefault(key, {"width": c["width"], "recipe": c["recipe"], "cells": []})["cells"].append(name)
    for row in rows.values():
        evs = [evals[n] for n in row["cells"]]
        first = evs[0]["efficiency"]
        row.update({
            "seeds": [cells[n]["seed"] for n in row["cells"]],
            "steps": [cells[n]["train"]["last_step"] for n in row["cells"]],
            "selected_steps": [cells[n]["train"].get("selected_step") for n in row["cells"]],
            "train_wall_s": [cells[n]["train"]["train_wall_s"] for n in row["cells"]],
            "psnr": stats([_metric(e, "vs_target", "psnr_db") for e in evs]),
            "ssim": stats([_metric(e, "vs_target", "ssim") for e in evs]),
            "lpips": stats([_metric(e, "vs_target", "lpips") for e in evs]),
            "psnr_gap_db": stats([e.get("psnr_gap_db") for e in evs]),
            "psnr_to_teacher": stats([_metric(e, "vs_teacher", "psnr_db") for e in evs]),
            "ssim_to_teacher": stats([_metric(e, "vs_teacher", "ssim") for e in evs]),
            "fid": stats([(e.get("distribution") or {}).get("fid") for e in evs]),
            "kid": stats([(e.get("distribution") or {}).get("kid_mean") for e in evs]),
            "params": first["model"]["params"],
            "macs": first["model"]["macs"],
            "mac_ratio": first.get("mac_ratio", {}),
        })  # fmt: skip
    return rows


def speedups(speed: dict[str, dict] | None) -> dict:
    """size -> model -> runtime -> batch-1 speed-up over the teacher {median, min, max} (per round)."""
    out: dict = {}
    for size, rec in (speed or {}).items():
        out[size] = {n: {rt: {k: r[rt]["latency"][k] for k in ("median", "min", "max")} for rt in r}
                     for n, r in rec["ratios"].items()}  # fmt: skip
    return out


def _ratio_at(row: dict, size) -> float | None:
    r = row.get("mac_ratio") or {}
    return r.get(str(size))


def check_targets(rows: dict, teacher_psnr: float, ups: dict, trained: int, headline: float,
                  speed_note: str | None = None) -> list[dict]:  # fmt: skip
    """The two targets, each with the measured value and whether it is met (None: not measured).

    1. PSNR (vs target, mean over seeds) within 0.3 dB of the teacher's at >= 8x fewer MACs,
       by a full-recipe student of some width.
    2. ONNX Runtime batch-1 speed-up over the teacher at 256 px >= half the MAC ratio at 256 px,
       for the headline width's full-recipe student (the other widths are listed)."""
    out = []
    full = sorted((r for r in rows.values() if r["recipe"] == "full"), key=lambda r: -r["width"])
    desc = []
    best = None
    for r in full:
        ratio, psnr = _ratio_at(r, trained), r["psnr"]["mean"]
        if ratio is None or psnr is None:
            continue
        gap = psnr - teacher_psnr
        desc.append(f"w{r['width']:g}: {gap:+.2f} dB ({psnr:.2f} vs {teacher_psnr:.2f}) at {ratio:.1f}x fewer MACs")
        if ratio >= MIN_MAC_RATIO and (best is None or gap > best):
            best = gap
    target = (
        f"a full-recipe student's PSNR within {PSNR_TOL_DB:g} dB of the teacher at >= {MIN_MAC_RATIO:g}x fewer MACs"
    )
    if not desc:
        out.append({"target": target, "value": "no full-recipe student evaluated", "met": None})
    else:
        note = "" if best is not None else f" (no width reaches {MIN_MAC_RATIO:g}x fewer MACs)"
        out.append({"target": target, "value": "; ".join(desc) + note,
                    "met": best is not None and best >= -PSNR_TOL_DB})  # fmt: skip
    target = f"w{headline:g} ONNX Runtime b1 speed-up at {SPEED_SIZE} px >= half the MAC ratio"
    at = ups.get(str(SPEED_SIZE))
    if not at:
        why = speed_note or f"no speed pass at {SPEED_SIZE} px (add {SPEED_SIZE} to --sizes)"
        out.append({"target": target, "value": f"not measured: {why}", "met": None})
        return out
    desc, met = [], None
    for r in full:
        name = f"w{r['width']:g}"
        x = (at.get(name) or {}).get("onnx")
        ratio = _ratio_at(r, SPEED_SIZE) or _ratio_at(r, trained)
        if x is None or ratio is None:
            continue
        desc.append(f"{name}: {x['median']:.2f}x (rounds {x['min']:.2f}-{x['max']:.2f}x) vs {ratio:.1f}x / 2 = "
                    f"{ratio / 2:.2f}x")  # fmt: skip
        if r["width"] == headline:
            met = x["median"] >= ratio / 2
    out.append({"target": target, "value": "; ".join(desc) or "not measured", "met": met})
    return out


# ------------------------------------------------------------------ outputs
def _pm(s: dict, digits: int = 2) -> str:
    if s is None or s.get("mean") is None:
        return "–"
    text = f"{s['mean']:.{digits}f}"
    return text + (f" ± {s['std']:.{digits}f}" if s.get("std") is not None else "")


def _x(d: dict | None) -> str:
    return f"{d['median']:.2f}× ({d['min']:.2f}–{d['max']:.2f})" if d else "–"


def _met(v) -> str:
    return "yes" if v is True else "**no**" if v is False else "not measured"


def render_targets(targets: list[dict]) -> str:
    """Markdown: the targets, measured value, met (yes / **no** / not measured)."""
    lines = ["## Targets (computed from the numbers above)", "", "| target | measured | met |", "|---|---|---|"]
    return "\n".join([*lines, *[f"| {x['target']} | {x['value']} | {_met(x['met'])} |" for x in targets]])


def render(res: dict) -> str:
    t = res["teacher_eval"]
    rows, ups = res["summary"], res["speedups"]
    sizes = list(ups)
    trained = str(res["trained_size"])
    tm = res["teacher_meta"]
    lines = [
        f"# Image-to-image compression: distilled vs from-scratch students ({tm['task']}, "
        f"{tm['family']} teacher, {trained} px)",
        "",
        f"Teacher: `{res['teacher']}` ({t['efficiency']['model']['params']:,} parameters, trained on "
        f"`{tm['data']}`). Students: the teacher torch-pruned to widths {', '.join(map(_fmt, res['widths']))}; each "
        f"cell trains {res['minutes']:g} min on one CPU thread and keeps its best checkpoint on the val split "
        "(`val-l1`). **full** = `gankd compress` defaults (inherits the teacher's channels; L1 + feature "
        "matching to the teacher, adversarial with the teacher's conditional PatchGAN); **scratch** = the "
        "same architecture from random init with the pix2pix recipe only (L1 to the target x100 + "
        "adversarial x1, fresh conditional PatchGAN). Both have identical MACs and speed.",
        "",
        f"Scored on {t['num_pairs']} test pairs (degradation seed 0, the same for every row). "
        f"± = std over seeds (n in the seeds column).",
        "",
        "| width | recipe | seeds | steps | PSNR vs target dB | SSIM | PSNR gap to teacher dB | PSNR to teacher dB "
        "| FID | MACs ratio | " + " | ".join(f"ONNX b1 speed-up @ {s} px" for s in sizes) + " |",
        "|---" * (10 + len(sizes)) + "|",
    ]
    src = t["source_vs_target"]
    blank = " | –" * len(sizes)
    lines.append(f"| – | source (do nothing) | – | – | {src['psnr_db']['mean']:.2f} | {src['ssim']['mean']:.3f} | "
                 f"{src['psnr_db']['mean'] - t['vs_target']['psnr_db']['mean']:+.2f} | – | – | –{blank} |")  # fmt: skip
    fid_t = (t.get("distribution") or {}).get("fid")
    lines.append(f"| 1 | teacher | – | {res['teacher_meta'].get('trained_steps', '–')} | "
                 f"{t['vs_target']['psnr_db']['mean']:.2f} | {t['vs_target']['ssim']['mean']:.3f} | 0 | – | "
                 f"{'–' if fid_t is None else f'{fid_t:.3g}'} | 1×" + " | 1×" * len(sizes) + " |")  # fmt: skip
    for r in sorted(rows.values(), key=lambda r: (-r["width"], RECIPES.index(r["recipe"]))):
        steps = r["steps"]
        st = str(steps[0]) if len(set(steps)) == 1 else f"{min(steps)}–{max(steps)}"
        ratio = _ratio_at(r, trained)
        sp = [_x((ups[s].get(f"w{r['width']:g}") or {}).get("onnx")) if r["recipe"] == "full" else "–"
              for s in sizes]  # fmt: skip
        lines.append(
            f"| {r['width']:g} | {r['recipe']} | {len(r['seeds'])} | {st} | {_pm(r['psnr'])} | {_pm(r['ssim'], 3)} | "
            f"{_pm(r['psnr_gap_db'])} | {_pm(r['psnr_to_teacher'])} | {_pm(r['fid'], 3)} | "
            f"{'–' if ratio is None else f'{ratio:.1f}×'}" + "".join(f" | {x}" for x in sp) + " |"
        )
    h = res["headline"]
    lines += [
        "",
        f"Headline width {h['width']:g} (full recipe, {h['psnr']['n']} seeds): PSNR {_pm(h['psnr'])} dB, "
        f"SSIM {_pm(h['ssim'], 3)}, FID {_pm(h['fid'], 3)}; scratch: PSNR {_pm(h['scratch_psnr'])} dB.",
        "",
        "MAC ratios (teacher / student) at each size: "
        + "; ".join(
            f"w{w}: " + ", ".join(f"{v:.2f}× @ {s} px" for s, v in r.items()) for w, r in res["mac_ratios"].items()
        )
        + ".",
    ]
    if res["speed"]:
        fp = res["fingerprint"]
        first = next(iter(res["speed"].values()))
        p = first["protocol"]
        lines += [
            "",
            f"Speed: one interleaved pass per size (teacher and the full-recipe seed-0 students, A B A B ..., "
            f"{p['rounds']} rounds of {p['latency_calls']} batch-1 calls, eager PyTorch and ONNX Runtime) on "
            f"{fp.get('cpu')}, {fp.get('torch_threads')} torch thread(s); speed-up = teacher time / student time "
            "per round, median (min–max). Eager b1: "
            + "; ".join(f"{s} px " + ", ".join(f"{n} {_x(v.get('eager'))}" for n, v in ups[s].items()) for s in sizes)
            + ".",
        ]  # fmt: skip
    else:
        lines += ["", f"Speed: not measured ({res['speed_note']})."]
    prot = t.get("protocol") or {}
    notes = [f"FID/KID features: `{prot.get('extractor')}` ({prot.get('extractor_reason', '')})."] if prot else []
    notes += [f"LPIPS: {v}" for k, v in t.get("skipped", {}).items() if k == "lpips"]
    notes += t.get("warnings", [])
    if res.get("headline_note"):
        notes.append(res["headline_note"])
    if res["smoke"]:
        notes.append("SMOKE RUN (--smoke): tiny budgets, the numbers mean nothing.")
    lines += ["", *[f"- {n}" for n in notes]]
    lines += ["", render_targets(res["targets"])]
    lines += ["", "## Commands", "", f"`{res['command']}`", "", "Each cell is equivalent to:", "", "```"]
    lines += [c["command"] for c in res["cells"].values()]
    lines += ["```", "", "Files: `results.json` (every number), `psnr_vs_macs.png`, `grid.png` "
              f"({res['grid']['columns_text']})."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(res: dict) -> bytes:
    """PNG: PSNR vs target against MACs at the trained size, one line per recipe (error bars:
    std over seeds), the teacher as a star, the source's PSNR as a dashed line."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    trained = str(res["trained_size"])
    fig = Figure(figsize=(6.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colors = {"full": "tab:blue", "scratch": "tab:orange"}
    for recipe in RECIPES:
        pts = sorted((r for r in res["summary"].values() if r["recipe"] == recipe and r["psnr"]["mean"] is not None),
                     key=lambda r: r["macs"][trained])  # fmt: skip
        if not pts:
            continue
        x = [r["macs"][trained] for r in pts]
        y = [r["psnr"]["mean"] for r in pts]
        e = [r["psnr"]["std"] or 0.0 for r in pts]
        ax.errorbar(x, y, yerr=e, marker="o", capsize=4, color=colors[recipe], label=recipe)
        for r, xi, yi in zip(pts, x, y):
            ax.annotate(f"w{r['width']:g}", (xi, yi), textcoords="offset points", fontsize=8,
                        xytext=(5, 5) if recipe == "full" else (5, -12))  # fmt: skip
    t = res["teacher_eval"]
    ax.scatter([t["efficiency"]["model"]["macs"][trained]], [t["vs_target"]["psnr_db"]["mean"]], marker="*", s=220,
               c="tab:red", zorder=3, label="teacher")  # fmt: skip
    ax.axhline(t["source_vs_target"]["psnr_db"]["mean"], ls="--", c="gray", lw=1, label="source (do nothing)")
    ax.set_xscale("log")
    ax.set_xlabel(f"MACs per image at {trained} px")
    ax.set_ylabel("PSNR vs target (dB, higher is better)")
    ax.set_title(f"{res['teacher_meta']['task']}: {t['num_pairs']} test pairs" + (" (SMOKE)" if res["smoke"] else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def comparison_grid(teacher: Path, students: dict[str, Path], n: int = 8, device: str = "cpu") -> tuple:
    """Rows of test pairs; columns source | teacher | each student | target. Returns (grid, columns)."""
    t = adapter_for(load_generator(teacher, device))
    pairs = model_pairs(t, teacher, "test")
    k = min(n, len(pairs))
    src = to_float(pairs.sources[:k])
    name = t.spec.image().name
    cols = [src, check_finite_images(generate(t, {name: src}, device=device), "the teacher")]
    for label, folder in students.items():
        g = adapter_for(load_generator(folder, device))
        cols.append(check_finite_images(generate(g, {g.spec.image().name: src}, device=device), label))
    cols.append(to_float(pairs.images[:k]))
    c = max(x.shape[1] for x in cols)
    cols = [x.expand(-1, c, -1, -1) if x.shape[1] != c else x for x in cols]
    return grid(torch.stack(cols, dim=1).flatten(0, 1), nrow=len(cols)), ["source", "teacher", *students, "target"], k


# ------------------------------------------------------------------ main
def _floats(text: str, flag: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"{flag} {text!r} is not a comma list of numbers") from None
    if not vals or min(vals) <= 0:
        raise SystemExit(f"{flag} {text!r}: give positive numbers, e.g. 0.5,0.25")
    return vals


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True, help="image-to-image teacher: generator folder or train-teacher run")
    ap.add_argument("--minutes", type=float, help="wall-clock training budget per cell (--smoke: 0.05)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 for the headline width (others: seed 0)")
    ap.add_argument("--batch-size", type=int, default=16, help="pairs per step, every cell (the teacher's: 16)")
    ap.add_argument("--widths", default="0.5,0.25,0.125")
    ap.add_argument("--headline", type=float, default=0.25, help="the width trained with every seed")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "i2i_matrix"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "i2i"))
    ap.add_argument("--sizes", default="256,512", help="input sides (px) for MACs and speed besides the trained one")
    ap.add_argument("--no-speed", action="store_true", help="skip the interleaved speed pass")
    ap.add_argument("--num-samples", type=int, help="score at most this many test pairs (default: all)")
    ap.add_argument("--device", default="cpu", help="train and evaluate on cpu or cuda (speed: cpu)")
    ap.add_argument("--smoke", action="store_true", help="tiny budgets (tests)")
    args = ap.parse_args(argv)
    if args.minutes is None:
        if not args.smoke:
            ap.error("--minutes is required (the wall budget of each cell)")
        args.minutes = SMOKE["minutes"]
    if args.minutes <= 0 or args.seeds < 1:
        ap.error("--minutes must be > 0 and --seeds >= 1")
    if args.smoke and args.num_samples is None:
        args.num_samples = SMOKE["num_samples"]
    args.widths = _floats(args.widths, "--widths")
    args.sizes = [int(s) for s in _floats(args.sizes, "--sizes")] if args.sizes.strip() else []
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/i2i_matrix.py", *(sys.argv[1:] if argv is None else argv)])
    torch.set_num_threads(1)
    out = Path(args.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    teacher = teacher_folder(args.teacher)
    t_meta = load_json(teacher / CONFIG)
    t_gen = adapter_for(load_generator(teacher))
    if not t_gen.is_i2i:
        raise SystemExit(f"--teacher {args.teacher} is a noise-to-image generator: this benchmark needs an "
                         "image-to-image teacher (gankd train-teacher --task ...)")  # fmt: skip
    trained = t_gen.spec.image().shape[-1]
    headline, headline_note = args.headline, None
    if headline not in args.widths:
        headline = args.widths[0]
        headline_note = (f"--headline {args.headline:g} is not among --widths: the headline width (all seeds) is "
                         f"{headline:g}")  # fmt: skip
        print(f"[i2i_matrix] {headline_note}", file=sys.stderr)

    cells: dict[str, dict] = {}
    evals: dict[str, dict] = {}
    for w, recipe, seed in plan_cells(args.widths, headline, args.seeds):
        c = train_cell(args, teacher, w, recipe, seed)
        student = Path(args.runs) / c["name"] / "student"
        evals[c["name"]] = eval_cell(args, out, c["name"], student, teacher, eval_command(args, student, teacher))
        cells[c["name"]] = c
    t_eval = eval_cell(args, out, "teacher", teacher, None, eval_command(args, teacher, None))

    summary = summarize(cells, evals)
    fulls = {f"w{w:g}": Path(args.runs) / cell_name(w, "full", 0) / "student" for w in args.widths}
    speed, speed_note = None, "--no-speed" if args.no_speed else None
    if not args.no_speed:
        models = {"teacher": load_generator(teacher), **{n: load_generator(p) for n, p in fulls.items()}}
        knobs = SMOKE["speed"] if args.smoke else SPEED
        speed = {}
        for s in [trained, *[x for x in args.sizes if x != trained]]:
            print(f"[i2i_matrix] interleaved speed at {s} px", flush=True)
            speed[str(s)] = interleaved_speed(models, "teacher", ("eager", "onnx"), options=Options(size=s), **knobs)
    ups = speedups(speed)
    teacher_psnr = t_eval["vs_target"]["psnr_db"]["mean"]
    hl_full, hl_scratch = summary.get(f"w{headline:g} full", {}), summary.get(f"w{headline:g} scratch", {})
    g, columns, k = comparison_grid(teacher, fulls, 8, args.device)
    save_png(g, out / "grid.png")
    res = {
        "schema": "gankd.i2i-matrix/1",
        "command": command,
        "smoke": args.smoke,
        "teacher": portable_path(teacher),
        "teacher_meta": {
            "family": t_meta.get("family"),
            "data": t_meta.get("data"),
            "task": t_meta.get("task"),
            "task_params": t_meta.get("task_params"),
            "trained_steps": t_meta.get("trained_steps"),
        },
        "trained_size": trained,
        "minutes": args.minutes,
        "widths": args.widths,
        "headline_width": headline,
        "headline_note": headline_note,
        "seeds": args.seeds,
        "sizes": args.sizes,
        "recipes": {
            "full": "gankd compress defaults (init prune; pixel + feature to the teacher; adversarial with "
            "the teacher's D; perceptual/KD as the data allows)",
            "scratch": {"fields": SCRATCH, "what": "pix2pix recipe on the same pruned architecture"},
        },
        "cells": cells,
        "evals": evals,
        "teacher_eval": t_eval,
        "summary": summary,
        "headline": {
            "width": headline,
            "psnr": hl_full.get("psnr"),
            "ssim": hl_full.get("ssim"),
            "fid": hl_full.get("fid"),
            "scratch_psnr": hl_scratch.get("psnr"),
            "scratch_ssim": hl_scratch.get("ssim"),
            "scratch_fid": hl_scratch.get("fid"),
        },
        "mac_ratios": {f"{w:g}": summary[f"w{w:g} full"]["mac_ratio"] for w in args.widths},
        "speed": speed,
        "speed_note": speed_note,
        "speedups": ups,
        "targets": check_targets(summary, teacher_psnr, ups, trained, headline, speed_note),
        "fingerprint": fingerprint(args.device),
        "grid": {
            "file": "grid.png",
            "columns": columns,
            "pairs": k,
            "columns_text": f"{k} test pairs; columns: " + " | ".join(columns),
        },
        "plot": "psnr_vs_macs.png",
    }
    _write_json(out / "results.json", res)
    atomic_write_bytes(out / "psnr_vs_macs.png", plot(res))
    md = render(res)
    atomic_write_bytes(out / "RESULTS.md", md.encode())
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
