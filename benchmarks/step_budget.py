"""Quality at a fixed share of the teacher's training compute: the compute target of the
quality-vs-time study, counted in student steps (a device-independent budget), not minutes.

Each cell is ONE run of a recipe (see benchmarks/curves.py for the recipe and lever names) whose
learning-rate schedule spans exactly ``fraction x the teacher's training steps`` (the teacher's
step count comes from its committed metrics.json); its final EMA student (no checkpoint
selection) is scored on the test split (evaluator FID, 10k samples from seeds 0..). The table
gives FID mean +- std over seeds and the ratio to the teacher's FID, against the targets
(width 1/4 <= 1.1x, width 1/8 <= 1.5x, at <= 25 % of the teacher's steps).

    python benchmarks/step_budget.py --widths 0.25,0.125 --recipes full+lr8x-cosine+perc0 --seeds 0,1,2
    python benchmarks/step_budget.py --table-only                   # tabulate every scored cell in --out

On one CPU thread a width-1/4 cell at 25 % (2,712 steps) takes about 30 minutes with the
perc0 lever; benchmarks/gpu_budget.sh runs the cells side by side on a GPU. Cells are
resumable (a killed run resumes from its checkpoint) and a scored cell is not scored again.
``--max-minutes`` caps a cell's wall time as a safety net: a cell stopped by it before its
steps is reported with the steps it reached and flagged.

Writes --out/cells/<cell>.json, --out/results.json (the table, the commands), RESULTS.md and
step_budget.png (FID against the share of the teacher's steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import statistics
import sys
from pathlib import Path

from curves import (  # noqa: E402
    add_study_args,
    fid_figure,
    known_recipe,
    lever_overrides,
    save_fid_figure,
    teacher_reference,
    write_study,
)
from matrix import RECIPES, recipe_config, teacher_sha  # noqa: E402

from gankd.checkpoint import atomic_write_bytes, resolve_model_path  # noqa: E402
from gankd.distill import compress  # noqa: E402
from gankd.evaluate import Quality, evaluate, save_result  # noqa: E402
from gankd.fileio import portable_path  # noqa: E402
from gankd.metrics.efficiency import fingerprint  # noqa: E402

TARGETS = {0.25: 1.10, 0.125: 1.50}  # width -> FID within this factor of the teacher's
MAX_FRACTION = 0.25  # ... reached in at most this share of the teacher's training steps


def cell_name(recipe: str, width: float, seed: int, fraction: float) -> str:
    return f"w{width:g}_{recipe}_s{seed}_f{fraction:g}"


def train_cell(args, teacher_dir: Path, recipe: str, width: float, seed: int, steps: int, run: Path) -> Path:
    """Train one cell to its step budget (resumes a killed run); returns its student folder."""
    student = run / "student"
    if (run / "DONE").exists():
        done = json.loads((run / "DONE").read_text())
        if done.get("teacher_sha256") != teacher_sha(teacher_dir):
            raise SystemExit(f"{run} was trained from another teacher: move --runs away or pick a new one")
        return student
    cfg = recipe_config(recipe.split("+")[0], str(teacher_dir), width, seed, args.max_minutes, args.device,
                        checkpoint_every=250, sample_every=10**6, select="last", eval_every=0,
                        **lever_overrides(recipe))  # fmt: skip
    compress(dataclasses.replace(cfg, steps=steps), run, resume=(run / "state.pt").exists())
    atomic_write_bytes(run / "DONE", json.dumps({"teacher_sha256": teacher_sha(teacher_dir)}).encode())
    return student


def score_cell(args, teacher_dir: Path, recipe: str, width: float, seed: int, fraction: float, steps: int) -> dict:
    name = cell_name(recipe, width, seed, fraction)
    path = Path(args.out) / "cells" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    run = Path(args.runs) / name
    student = train_cell(args, teacher_dir, recipe, width, seed, steps, run)
    r = evaluate(student, quality=Quality(("fid",), args.num_samples), role=recipe, device=args.device,
                 command=" ".join(map(shlex.quote, sys.argv)))  # fmt: skip
    meta = json.loads((student / "config.json").read_text())
    walls = [json.loads(line).get("train/wall_s") for line in (run / "metrics.jsonl").read_text().splitlines()]
    walls = [w for w in walls if w is not None]
    r["budget"] = {"recipe": recipe, "width": width, "seed": seed, "fraction": fraction, "steps_target": steps,
                   "steps": meta["trained_steps"], "stopped_early": meta["trained_steps"] < steps,
                   "wall_s": walls[-1] if walls else None, "device": args.device,
                   "run": portable_path(run)}  # fmt: skip
    save_result(r, path)
    return r


def summarise(cells: list[dict], teacher: dict) -> list[dict]:
    groups: dict = {}
    for r in cells:
        b = r["budget"]
        groups.setdefault((b["width"], b["recipe"], b["fraction"]), []).append(r)
    rows = []
    for (width, recipe, fraction), rs in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][1], kv[0][2])):
        fids = [x["quality"]["fid"] for x in rs]
        fid = statistics.mean(fids)
        target = TARGETS.get(width)
        rows.append({
            "width": width, "recipe": recipe, "fraction": fraction, "seeds": sorted(x["budget"]["seed"] for x in rs),
            "steps": statistics.mean(x["budget"]["steps"] for x in rs),
            "stopped_early": any(x["budget"]["stopped_early"] for x in rs),
            "devices": sorted({x["budget"]["device"] for x in rs}),
            "fid_mean": fid, "fid_std": statistics.stdev(fids) if len(fids) > 1 else 0.0, "fids": fids,
            "fid_over_teacher": fid / teacher["fid"], "target_x_teacher": target,
            "target_met": None if target is None else (fid <= target * teacher["fid"] and fraction <= MAX_FRACTION
                                                       and len(fids) >= 3),
        })  # fmt: skip
    return rows


def render(rows: list[dict], teacher: dict, note: str) -> str:
    lines = ["# Quality at a share of the teacher's training steps (Fashion-MNIST, evaluator FID, test split)", ""]
    if note:
        lines += [note, ""]
    lines += [f"Teacher FID {teacher['fid']:.2f}, {teacher['train_steps']:,} training steps; targets: width 1/4 <= "
              f"1.1x, width 1/8 <= 1.5x the teacher's FID in <= {MAX_FRACTION:.0%} of its steps, 3 seeds.", "",
              "| width | recipe | share of teacher's steps | steps | FID (mean ± std, seeds) | x teacher | target |",
              "|---:|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        target = "–" if r["target_x_teacher"] is None else (
            f"<= {r['target_x_teacher']:.1f}x: " + ("**met**" if r["target_met"] else "not met"))
        early = " (time cap hit)" if r["stopped_early"] else ""
        lines.append(f"| {r['width']:g} | {r['recipe']} | {r['fraction']:.3g} | {r['steps']:.0f}{early} | "
                     f"{r['fid_mean']:.2f} ± {r['fid_std']:.2f} ({len(r['fids'])}: "
                     f"{', '.join(f'{f:.2f}' for f in r['fids'])}) | {r['fid_over_teacher']:.2f} | {target} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], teacher: dict, path: Path) -> None:
    """FID against the share of the teacher's steps, one line per width and recipe, with the
    teacher's FID, the targets and the 25 % budget marked."""
    fig, ax = fid_figure()
    for key in sorted({(r["width"], r["recipe"]) for r in rows}, key=lambda k: (-k[0], k[1])):
        pts = sorted((r for r in rows if (r["width"], r["recipe"]) == key), key=lambda r: r["fraction"])
        ax.errorbar([r["fraction"] for r in pts], [r["fid_mean"] for r in pts], yerr=[r["fid_std"] for r in pts],
                    marker="o", capsize=3, label=f"w{key[0]:g} {key[1]}")  # fmt: skip
    ax.axhline(teacher["fid"], color="k", ls="--", lw=1, label=f"teacher {teacher['fid']:.2f}")
    for width, x in TARGETS.items():
        ax.axhline(x * teacher["fid"], color="gray", ls=":", lw=1, label=f"w{width:g} target ({x:g}x)")
    ax.axvline(MAX_FRACTION, color="tab:red", ls=":", lw=1, label=f"{MAX_FRACTION:.0%} of the teacher's steps")
    save_fid_figure(fig, ax, f"student steps / the teacher's {teacher['train_steps']:,} training steps", path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fractions", default="0.25", help="budgets as shares of the teacher's training steps")
    ap.add_argument("--widths", default="0.25,0.125")
    ap.add_argument("--recipes", default="full+lr8x-cosine+perc0",
                    help="full, pixel, full+LEVER (the levers of benchmarks/curves.py)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--table-only", action="store_true", help="train nothing: tabulate the cells scored in --out")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="wall-time cap per cell (0 = none)")
    add_study_args(ap, "step_budget")
    args = ap.parse_args(argv)
    recipes = args.recipes.split(",")
    bad = [r for r in recipes if r == "scratch" or not known_recipe(r)]
    if bad:
        raise SystemExit(f"--recipes: unknown {bad}; choose from {', '.join(x for x in RECIPES if x != 'scratch')} "
                         "or full+LEVER with a lever of benchmarks/curves.py (e.g. full+lr8x-cosine+perc0)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    teacher_dir = resolve_model_path(args.teacher)
    teacher = teacher_reference(teacher_dir)
    out = Path(args.out)
    if not args.table_only:
        (out / "cells").mkdir(parents=True, exist_ok=True)
        for fraction in (float(f) for f in args.fractions.split(",")):
            steps = round(fraction * teacher["train_steps"])
            for width in (float(w) for w in args.widths.split(",")):
                for recipe in recipes:
                    for seed in (int(s) for s in args.seeds.split(",")):
                        score_cell(args, teacher_dir, recipe, width, seed, fraction, steps)
    cells = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    if not cells:
        raise SystemExit(f"--table-only: no scored cell in {out / 'cells'}: run without --table-only first")
    rows = summarise(cells, teacher)
    write_study(out, {"schema": "gankd.step_budget/1", "teacher": teacher, "rows": rows,
                 "cells": [c["budget"] | {"fid": c["quality"]["fid"]} for c in cells],
                 "command": " ".join(map(shlex.quote, sys.argv)), "tabulated_on": fingerprint(args.device),
                 "threads_per_run": 1}, render(rows, teacher, args.note), lambda png: plot(rows, teacher, png),
                "step_budget.png")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
