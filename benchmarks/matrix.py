"""Quality-vs-speed matrix on Fashion-MNIST: floor, teacher, and students at several widths,
each trained by three recipes at the same wall-clock budget:

  scratch  the student trained as a plain GAN on data, no teacher (random init)
  pixel    pixel-only distillation from the teacher (random init): the prior-work baseline
  full     the gankd recipe: prune init + pixel + perceptual + feature + adversarial + KD

Every cell is evaluated with gankd's own protocol (evaluator features, 10k samples from
seeds 0..9999 vs the 10k test split; checkpoints selected on the val split, never test).
Resumable: finished cells (their JSON in --out/cells) are skipped; unfinished runs resume.

    python benchmarks/matrix.py --quick          # width 1/4, 3 recipes, 1 seed, 2-min budgets (10.4 min here)
    python benchmarks/matrix.py                  # widths 1/2,1/4,1/8 x 3 recipes x 3 seeds

On a 2-core machine, two workers side by side (one core each), then one finishing pass
(floor, teacher, any cell left, the quiet speed pass, tables and plots):

    python benchmarks/matrix.py --minutes 4 --shard 0/2 --eval-each &
    python benchmarks/matrix.py --minutes 4 --shard 1/2 --eval-each &
    wait; python benchmarks/matrix.py --minutes 4

Each cell trains on ONE CPU thread for --minutes of wall time (so two cells may run side
by side on a 2-core machine without changing each other's budget: `--train-only` runs only
the trainings). Speed is measured afterwards in one quiet pass per matrix run (all cores,
nothing else running): the teacher and one student per width (speed depends on the
architecture, not on the weights) timed interleaved in one process, A B A B ... over rounds;
speed-ups over the teacher come from that run with their spread. Never cached across runs.

Writes --out/speed.json (that run), results.json (every number, the commands, the machine;
paths relative to the repository), RESULTS.md, pareto.png (all atomically), and
teacher/student grids on the same seeds under samples/.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from gankd.checkpoint import (
    WEIGHTS,
    atomic_write_bytes,
    file_sha256,
    load_discriminator,
    load_generator,
    resolve_model_path,
)
from gankd.config import to_dict
from gankd.distill import CLASSIC, DistillConfig, compress
from gankd.evaluate import Quality, evaluate, real_floor, save_result
from gankd.fileio import portable_path
from gankd.metrics.efficiency import interleaved_speed
from gankd.report import aggregate, load_results, plot_quality_vs_speed, render_table, value_of
from gankd.sampling import balanced_labels, generate, grid, latents, save_png
from gankd.students import build_student
from gankd.train import GANTrainConfig, train_gan

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("scratch", "pixel", "full")
# every recipe is selected alike, inside its own budget: FID against the val split with the
# perceptual net (never the evaluator that scores the cells), every 250 steps, 2000 samples
SELECTION = dict(select="perceptual-fid", eval_every=250, eval_samples=2000)


def recipe_config(recipe: str, teacher: str, width: float, seed: int, minutes: float,
                  device: str = "cpu", **overrides) -> DistillConfig:  # fmt: skip
    # the classic recipe every committed matrix and curve cell ran (the defaults of their time)
    common = {**CLASSIC, **dict(teacher=teacher, width=width, seed=seed, steps=10**6, max_minutes=minutes,
                                threads=1, device=device, **{**SELECTION, **overrides})}  # fmt: skip
    if recipe == "pixel":
        return DistillConfig(**{**common, **dict(init="random", pixel=1.0, perceptual=0.0, feat=0.0, adv=0.0, kd=0.0)})
    if recipe == "full":
        return DistillConfig(**common)
    raise ValueError(recipe)


def train_scratch(teacher_dir: Path, width: float, seed: int, minutes: float, run: Path, device: str = "cpu",
                  **overrides) -> Path:  # fmt: skip
    """The student architecture trained as a GAN from data alone, same budget and selection."""
    teacher = load_generator(teacher_dir)
    student = build_student(teacher, width, init="random")
    d_cfg = dataclasses.replace(load_discriminator(teacher_dir).cfg)  # same D architecture, fresh weights
    cfg = GANTrainConfig(generator=student.cfg, discriminator=d_cfg, split="fit", steps=10**6, seed=seed,
                         max_minutes=minutes, sample_every=10**6, checkpoint_every=250, threads=1,
                         device=device, **{**SELECTION, **overrides})  # fmt: skip
    return train_gan(cfg, run, resume=(run / "state.pt").exists())


@functools.cache
def teacher_sha(teacher_dir: Path) -> str:
    return file_sha256(teacher_dir / WEIGHTS)


def train_cell(args, teacher_dir: Path, width: float, recipe: str, seed: int) -> Path:
    """Train one cell (skipped when its DONE marker exists); returns the student folder."""
    run = Path(args.runs) / f"w{width:g}_{recipe}_s{seed}"
    student = run / ("generator" if recipe == "scratch" else "student")
    if (run / "DONE").exists():
        done = json.loads((run / "DONE").read_text())
        if done.get("teacher_sha256", teacher_sha(teacher_dir)) != teacher_sha(teacher_dir):
            raise SystemExit(f"{run} was trained from another teacher: move --runs away or pick a new one")
        return student
    t0 = time.monotonic()
    if recipe == "scratch":
        student = train_scratch(teacher_dir, width, seed, args.minutes, run, args.device)
    else:
        cfg = recipe_config(recipe, str(teacher_dir), width, seed, args.minutes, args.device)
        student = compress(cfg, run, resume=(run / "state.pt").exists())
    selected = json.loads((student / "config.json").read_text()).get("selected_on", {})
    done = {"train_wall_s": round(time.monotonic() - t0, 1), "teacher_sha256": teacher_sha(teacher_dir),
            "selected_on": selected}  # fmt: skip
    atomic_write_bytes(run / "DONE", json.dumps(done).encode())
    return student


def eval_cell(args, teacher_dir: Path, width: float, recipe: str, seed: int, student: Path) -> Path:
    name = f"w{width:g}_{recipe}_s{seed}"
    out = Path(args.out) / "cells" / f"{name}.json"
    if out.exists():
        return out
    run = Path(args.runs) / name
    r = evaluate(student, teacher_dir, quality=Quality(num_samples=args.num_samples), role=recipe,
                 device=args.device, command=" ".join(map(shlex.quote, sys.argv)))  # fmt: skip
    r["group"] = f"w{width:g} {recipe}"
    r["benchmark"] = {"width": width, "recipe": recipe, "seed": seed, "budget_minutes": args.minutes,
                      "threads": 1, "device": args.device, **json.loads((run / "DONE").read_text()),
                      "run": portable_path(run)}  # fmt: skip
    save_result(r, out)
    return out


def speed_pass(out: Path, teacher_dir: Path, students: dict[float, Path], **speed_kw) -> dict:
    """One interleaved speed run per matrix run, never cached: the teacher and one student per
    width (speed depends on the architecture, not the weights) timed A B A B ... in this
    process (:func:`gankd.metrics.efficiency.interleaved_speed`, ``speed_kw`` passed on).

    Writes ``out/speed.json`` (the record: per-model numbers, speed-ups over the teacher with
    their spread, UTC time, machine) and puts into every cell its width's numbers
    (``efficiency.speed``), its speed-up (``efficiency.speed_vs_teacher``) and the record's
    stamp (``speed_record``). A cell of a width not timed in this run loses its old speed.
    """
    folders = {"teacher": teacher_dir, **{f"w{w:g}": p for w, p in sorted(students.items(), reverse=True)}}
    rec = interleaved_speed({k: load_generator(f) for k, f in folders.items()}, "teacher", **speed_kw)
    rec["measured_on"] = {k: portable_path(f) for k, f in folders.items()}
    save_result(rec, out / "speed.json")
    stamp = {"file": "speed.json", "created_utc": rec["created_utc"], "fingerprint": rec["fingerprint"],
             "interleaved": rec["order"]}  # fmt: skip
    for cell in sorted((out / "cells").glob("*.json")):
        r = json.loads(cell.read_text())
        key = "teacher" if r.get("role") == "teacher" else (
            f"w{r['benchmark']['width']:g}" if "benchmark" in r else None)  # fmt: skip
        if key is None:
            continue  # the real floor: no generator to time
        eff = r.setdefault("efficiency", {})
        eff.pop("speed_vs_teacher", None)
        if key not in rec["models"]:
            eff.pop("speed", None)
            r.pop("speed_record", None)
            r["speed_note"] = f"not timed in the matrix run of {rec['created_utc']} (speed.json)"
            save_result(r, cell)
            continue
        eff["speed"] = rec["models"][key]
        if key != "teacher":
            eff["speed_vs_teacher"] = {k: rec[k] for k in ("created_utc", "fingerprint", "protocol")}
            eff["speed_vs_teacher"].update(teacher=rec["models"]["teacher"], ratio=rec["ratios"][key])
        if r.get("fingerprint") != rec["fingerprint"]:
            r.setdefault("eval_fingerprint", r.get("fingerprint"))  # where training/evaluation ran
        r["fingerprint"] = rec["fingerprint"]
        r["speed_record"] = {**stamp, "measured_on": rec["measured_on"][key]}
        r["speed_note"] = (f"timed interleaved with {', '.join(rec['order'])} in one process at {rec['created_utc']} "
                           f"on {rec['measured_on'][key]} (same architecture as this cell; speed.json)")  # fmt: skip
        save_result(r, cell)
    return rec


def sample_grids(teacher_dir: Path, widths, runs: Path, seed: int, paths: list[Path]) -> None:
    """Teacher and each full-recipe student on the same seeds and classes (one class per column)."""
    z = latents(list(range(20)), 128)
    y = balanced_labels(20, 10)
    rows = [generate(load_generator(teacher_dir), z, y)]
    for w in widths:
        folder = runs / f"w{w:g}_full_s{seed}" / "student"
        if folder.exists():
            rows.append(generate(load_generator(folder), z, y))
    g = grid(torch.cat(rows), nrow=20)
    for path in paths:
        save_png(g, path)


def check_targets(results: list[dict]) -> list[dict]:
    """The benchmark's targets, each with the measured value and whether it is met."""
    rows = aggregate(results)
    by = {x["group"]: x for x in rows if x.get("group")}
    teacher = next((x for x in rows if x["is_teacher"]), None)
    if teacher is None:
        return []
    out = []
    t_fid = value_of(teacher["fid"])
    for w, tol in ((0.25, 0.10), (0.125, 0.50)):
        if f"w{w:g} full" in by:
            gap = value_of(by[f"w{w:g} full"]["fid"]) / t_fid - 1
            out.append({"target": f"w{w:g} full recipe FID within {tol:.0%} of the teacher's",
                        "value": f"{gap:+.0%} ({value_of(by[f'w{w:g} full']['fid']):.3g} vs {t_fid:.3g})",
                        "met": gap <= tol})  # fmt: skip
    for key, full in sorted(by.items()):
        w = key.split()[0]
        if key.endswith(" full") and f"{w} scratch" in by:
            f, sc = value_of(full["fid"]), value_of(by[f"{w} scratch"]["fid"])
            out.append({"target": f"{w}: full recipe FID at least 30% below scratch at equal time",
                        "value": f"{1 - f / sc:.0%} lower ({f:.3g} vs {sc:.3g})",
                        "met": 1 - f / sc >= 0.30})  # fmt: skip
    student = by.get("w0.25 full")
    if student and value_of(student.get("x_onnx")):  # interleaved with the teacher: the ratio to trust
        up, lo, hi = (value_of(student[k]) for k in ("x_onnx", "x_onnx_lo", "x_onnx_hi"))
        out.append({"target": "w0.25 ONNX Runtime batch-1 speed-up over the teacher at least 8x",
                    "value": f"{up:.1f}x (rounds {lo:.1f}-{hi:.1f}x; teacher and student interleaved in one run)",
                    "met": up >= 8})  # fmt: skip
    elif student and value_of(teacher.get("onnx_ms")) and value_of(student.get("onnx_ms")):
        up = value_of(teacher["onnx_ms"]) / value_of(student["onnx_ms"])
        out.append({"target": "w0.25 ONNX Runtime batch-1 speed-up over the teacher at least 8x",
                    "value": f"{up:.1f}x ({value_of(student['onnx_ms']):.3g} vs {value_of(teacher['onnx_ms']):.3g} ms)",
                    "met": up >= 8})  # fmt: skip
    return out


def render_speed(rec: dict) -> str:
    """Markdown: the interleaved speed run's speed-ups over the teacher, median (min-max) over rounds."""
    p, fp = rec["protocol"], rec["fingerprint"]
    lines = ["## Speed-up over the teacher (interleaved)", "",
             f"One run at {rec['created_utc']} on {fp['cpu']}, {fp['torch_threads']} torch threads, torch "
             f"{fp['torch']}, onnxruntime {fp['onnxruntime']}: {', '.join(rec['order'])} timed in turn (A B A B ...) "
             f"in one process, {p['rounds']} rounds of {p['latency_calls']} batch-1 and {p['throughput_calls']} "
             f"batch-{p['big_batch']} calls each. Speed-up = teacher time / student time per round: median "
             "(min-max over rounds). Numbers: speed.json.", "",
             "| model | " + " | ".join(f"{rt} b1 | {rt} b{p['big_batch']}" for rt in p["runtimes"]) + " |",
             "|---|" + "---|---|" * len(p["runtimes"])]  # fmt: skip
    for name, ratio in rec["ratios"].items():
        cells = [f"{ratio[rt][w]['median']:.2f}x ({ratio[rt][w]['min']:.2f}-{ratio[rt][w]['max']:.2f})"
                 for rt in p["runtimes"] for w in ("latency", "throughput")]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_targets(targets: list[dict]) -> str:
    return "\n".join(["## Targets", "", "| target | measured | met |", "|---|---|---|",
                      *[f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |" for t in targets],
                      ""])  # fmt: skip


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SystemExit(f"--shard {text!r} is not K/N, e.g. 0/2") from None
    if not 0 <= k < n:
        raise SystemExit(f"--shard {text!r}: K must be in 0..N-1")
    return k, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="width 1/4 only, one seed, 2-minute budgets")
    ap.add_argument("--widths", default="0.5,0.25,0.125")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--minutes", type=float, help="wall-clock training budget per cell (6; --quick: 2)")
    ap.add_argument("--train-only", action="store_true", help="only train the cells (no evaluation)")
    ap.add_argument("--shard", default="0/1",
                    help="K/N: train (and with --eval-each evaluate) only every N-th cell from K; run N such "
                         "workers side by side, then once without --shard to finish")
    ap.add_argument("--device", default="cpu", help="train and evaluate on cpu or cuda (speed: always cpu)")
    ap.add_argument("--grid", default=str(ROOT / "samples" / "teacher_vs_students.png"),
                    help="where the teacher-vs-students grid goes (also copied into --out)")
    ap.add_argument("--note", default="", help="a sentence for RESULTS.md (e.g. where the cells ran)")
    ap.add_argument("--eval-each", action="store_true", help="evaluate each cell right after its training")
    ap.add_argument("--num-samples", type=int, default=10000)
    ap.add_argument("--teacher", default="fmnist-teacher")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "bench"))
    args = ap.parse_args()
    if args.quick:
        args.widths, args.seeds = "0.25", "0"
        args.minutes = args.minutes or 2.0
        args.out = str(Path(args.out) / "quick") if args.out == ap.get_default("out") else args.out
    args.minutes = args.minutes or 6.0
    args.widths = [float(w) for w in args.widths.split(",")]
    args.recipes = args.recipes.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    teacher_dir = resolve_model_path(args.teacher)
    out = Path(args.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    cmd = " ".join(map(shlex.quote, sys.argv))
    k, n = parse_shard(args.shard)
    if n > 1:
        torch.set_num_threads(1)  # side-by-side workers: one core each, evaluation included
    cells = [(w, recipe, seed) for seed in args.seeds for w in args.widths for recipe in args.recipes]
    students = {}
    for i, (w, recipe, seed) in enumerate(cells):
        if i % n == k:
            students[(w, recipe, seed)] = train_cell(args, teacher_dir, w, recipe, seed)
            if args.eval_each and not args.train_only:
                eval_cell(args, teacher_dir, w, recipe, seed, students[(w, recipe, seed)])
    if args.train_only or n > 1:
        return 0
    torch.set_num_threads(os.cpu_count() or 1)  # trainings pinned one thread; evaluation may use all cores
    if not (out / "cells" / "floor.json").exists():
        floor = real_floor(quality=Quality(num_samples=args.num_samples), command=cmd)
        save_result(floor, out / "cells" / "floor.json")
    if not (out / "cells" / "teacher.json").exists():
        save_result(evaluate(teacher_dir, quality=Quality(num_samples=args.num_samples), role="teacher", command=cmd),
                    out / "cells" / "teacher.json")  # fmt: skip
    for (w, recipe, seed), student in students.items():
        eval_cell(args, teacher_dir, w, recipe, seed, student)
    speed = speed_pass(out, teacher_dir, {w: p for (w, _, _), p in students.items()})
    cells = sorted((out / "cells").glob("*.json"))
    results = load_results(cells)
    targets = check_targets(results)
    args_rec = {k: portable_path(v) if k in ("out", "runs", "grid") else v for k, v in vars(args).items()}
    summary = {"command": cmd, "args": args_rec,
               "recipes": {r: (to_dict(recipe_config(r, portable_path(teacher_dir), 0.25, 0, args.minutes))
                               if r != "scratch" else "GANTrainConfig(student arch, split=fit)")
                           for r in args.recipes},
               "targets": targets, "speed": speed,
               "results": [json.loads(c.read_text()) for c in cells]}  # fmt: skip
    atomic_write_bytes(out / "results.json", (json.dumps(summary, indent=1, default=str) + "\n").encode())
    md = "# gankd benchmark: quality vs speed on Fashion-MNIST\n\n"
    md += f"Command: `{cmd}`; budget {args.minutes:g} min of training per cell.\n\n"
    md += f"{args.note}\n\n" if args.note else ""
    md += render_table(results) + "\n" + render_speed(speed) + "\n" + render_targets(targets)
    md += "\n![pareto](pareto.png)\n"
    atomic_write_bytes(out / "RESULTS.md", md.encode())
    atomic_write_bytes(out / "pareto.png", plot_quality_vs_speed(results, "FID vs cost (Fashion-MNIST, evaluator)"))
    sample_grids(teacher_dir, args.widths, Path(args.runs), args.seeds[0],
                 [out / "teacher_vs_students.png", Path(args.grid)])  # fmt: skip
    print(out / "RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
