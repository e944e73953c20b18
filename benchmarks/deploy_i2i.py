"""Deployment of an image-to-image generator: fp32 / fp16 / int8 exports of ``wesnoth-restore64`` and its
width-1/4 students, timed at 64 and 256 px, and a latency budget at 256 px.

    python benchmarks/deploy_i2i.py [--gate-samples 2000] [--rounds 7]

1. Students: the recipe study's width-1/4 cells at 10 calibrated minutes, seed 0 (``plain`` and gankd's
   default), trained here when their run folder is missing, exactly as
   ``python benchmarks/recipes.py --settings restore64 --recipes plain,nofeat-advlate-90-rt --cost-minutes 10``
   trains them (same config, same steps); and gankd's default on a width-1/4 student whose decoder upsamples by
   nearest + 3x3 conv (``--student-upsample nearest-conv``, study setting ``restore64-nc``), trained for the
   ConvTranspose student's steps (its step costs more, so this is equal steps, not equal time).
2. Each model exported by ``gankd export`` at fp32, fp16 and int8 (``--max-fid-rise inf``: the gate's numbers
   are recorded, nothing refused). int8 is calibrated on the val split's source images; the gate scores the
   test pairs as ``gankd eval`` does: FID of the outputs against the targets (the domain's extractor), PSNR
   to the targets, PSNR to the model's own fp32 outputs.
3. One interleaved ONNX Runtime run per source size (one thread; A B C ... with the start rotating): 64 px at
   batch 1 and 64, 256 px at batch 1; speed-up = fp32 teacher / model per round (median, min-max).
4. ``gankd compress --target-latency --latency-size 256`` at budgets given as fractions of the teacher's
   measured 256 px batch-1 latency: the width picked, then the picked student re-timed fresh at 256 px.

Writes benchmarks/results/deploy_i2i/results.json (every number, the commands) and RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from argparse import Namespace
from pathlib import Path

import torch
from deploy import budgets, exports, interleaved_onnx, render_page
from recipes import OUT as RECIPES_OUT
from recipes import RUNS as RECIPES_RUNS
from recipes import budget_tag, calibrated_steps, cell_command, cell_config, cell_name, train
from render_docs import deploy_i2i_tables

from gankd.checkpoint import atomic_write_bytes, load_generator, resolve_model_path
from gankd.fileio import portable_path
from gankd.metrics.efficiency import count_macs, fingerprint, generator_inputs

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "deploy_i2i"
RUNS = ROOT / "runs" / "deploy_i2i"
SETTING, RECIPES, COST_MINUTES = "restore64", {"plain": "plain", "gankd": "nofeat-advlate-90-rt"}, 10.0


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def students() -> tuple[dict[str, Path], dict[str, str]]:
    """The study's seed-0 students at 10 calibrated minutes (trained when missing), the nearest-conv student at
    the gankd student's steps, and their commands."""
    args = Namespace(cost_minutes=COST_MINUTES, minutes=None, steps=None, out=str(RECIPES_OUT),
                     runs=str(RECIPES_RUNS), device="cpu", num_samples=2000)  # fmt: skip
    steps = calibrated_steps(SETTING, RECIPES["gankd"], COST_MINUTES, RECIPES_OUT)[0]
    by_steps = Namespace(**{**vars(args), "cost_minutes": None, "steps": steps})
    folders, commands = {}, {}
    for label, setting, recipe, budget in [*((k, SETTING, r, args) for k, r in RECIPES.items()),
                                           ("gankd nearest-conv", "restore64-nc", RECIPES["gankd"], by_steps)]:
        run = RECIPES_RUNS / cell_name(setting, recipe, budget_tag(budget), 0)
        train(cell_config(setting, recipe, 0, budget), run)
        folders[f"student w0.25 {label}"] = run / "student"
        commands[label] = cell_command(setting, recipe, 0, budget)
    return folders, commands


def render(res: dict) -> str:
    return render_page(
        res, "Deployment of an image-to-image generator (wesnoth-restore64: 64 px sprite restoration)",
        "ONNX Runtime, CPU execution provider, one thread, interleaved with the fp32 teacher per source size. "
        f"Quality on {res['pairs']} test pairs, as `gankd eval` scores them: FID of the outputs against the targets "
        "(the domain's extractor), PSNR to the targets, PSNR to the model's own fp32 outputs. int8 is calibrated on "
        "the val split's source images.", deploy_i2i_tables(res),
        "`--target-latency` at 256 px (budgets as fractions of the teacher's 256 px batch-1 latency; the picked "
        "student re-timed fresh):",
        ("Students: " + "; ".join(f"{k}: `{v}`" for k, v in res["student_commands"].items()) + ".",))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gate-samples", type=int, default=2000, help="test pairs scored at most (default: all)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--budgets", default="0.5,0.25", help="fractions of the teacher's 256 px batch-1 latency")
    ap.add_argument("--load", default="quiet", help="what else ran on the machine (recorded)")
    ap.add_argument("--out", default=str(OUT), help="results.json, RESULTS.md (default benchmarks/results/deploy_i2i)")
    ap.add_argument("--runs", default=str(RUNS), help="exports and budget runs (default runs/deploy_i2i)")
    args = ap.parse_args()
    out, runs = Path(args.out), Path(args.runs)
    torch.set_num_threads(1)
    teacher = resolve_model_path("wesnoth-restore64")
    folders, commands = students()
    ex = exports({"teacher": teacher, **folders}, args.gate_samples, runs)
    models = {}
    for key, e in ex.items():
        name, prec = key.rsplit(" ", 1)
        gen = load_generator(teacher if name == "teacher" else folders[name])
        red = e["record"].get("reduced") or {}
        gate = red.get("quality_gate") or {}
        models[key] = {"key": key, "model": name, "precision": prec, "path": portable_path(e["path"]),
                       "macs": count_macs(gen, generator_inputs(gen, 1))["macs"],
                       "ops": (red.get("ops") or {}).get("ops"), "why_fp32": (red.get("ops") or {}).get("why_fp32"),
                       "calibration": red.get("calibration"), "fid": gate.get("fid_reduced"),
                       "psnr_to_target_db": (gate.get("psnr_to_target_db") or {}).get("reduced"),
                       "psnr_to_fp32_db": gate.get("psnr_to_fp32_db"), "ssim_to_fp32": gate.get("ssim_to_fp32"),
                       "gate": gate or None}  # fmt: skip
    for key, m in models.items():  # an fp32 row's quality: its fp16 gate measured it on the same pairs
        if m["precision"] == "fp32":
            g = models[key.replace(" fp32", " fp16")]["gate"]
            m["fid"], m["psnr_to_target_db"] = g["fid_fp32"], g["psnr_to_target_db"]["fp32"]
    t_gen = load_generator(teacher)
    files = {k: e["path"] for k, e in ex.items()}
    speed = {str(s): interleaved_onnx(files, "teacher fp32", t_gen, args.rounds, size=s, batches=b)
             for s, b in ((64, (1, 64)), (256, (1,)))}  # fmt: skip
    fractions = [float(f) for f in args.budgets.split(",") if f.strip()]
    res = {"schema": "gankd.deploy-i2i/1", "command": shlex.join(["python", "benchmarks/deploy_i2i.py", *sys.argv[1:]]),
           "gate_samples": args.gate_samples, "pairs": models["teacher fp16"]["gate"]["num_samples"],
           "student_commands": commands, "models": models, "speed": speed,
           "budgets": budgets(fractions, speed["256"]["teacher fp32"]["b1"]["median_ms"], teacher="wesnoth-restore64",
                              size=256, runs=runs),
           "fingerprint": fingerprint(), "load": args.load}  # fmt: skip
    _write_json(out / "results.json", res)
    atomic_write_bytes(out / "RESULTS.md", render(res).encode())
    print(render(res))


if __name__ == "__main__":
    main()
