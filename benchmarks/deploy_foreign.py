"""Deployment of an imported GAN: fp32 / fp16 / int8 of wesnoth-dcgan64 and two of its students.

    python benchmarks/deploy_foreign.py [--samples 2000] [--rounds 7]

The teacher is the DCGAN-tutorial generator imported as ``wesnoth-dcgan64`` (64 px RGB sprites); the students are
the recipe study's width-1/4 students of the ``wesnoth64-data`` setting at 40 calibrated minutes, seed 0: the
default recipe and the plain baseline (``python benchmarks/recipes.py --settings wesnoth64-data --recipes
default,plain --minutes 40 --seeds 0`` makes them under runs/recipes/). Each is exported by ``gankd export`` at
every precision (int8 ``--convtranspose auto``, and the other ConvTranspose form too, ungated: ``--max-fid-rise
inf``); every file is scored the same way, FID of ``--samples`` samples (seeds 0..) against the wesnoth-units
test split under the domain's extractor, so the rows compare; then one interleaved ONNX Runtime run (one
thread) times them at batch 1 and 64 against the fp32 teacher, as benchmarks/deploy.py does.

Writes benchmarks/results/deploy_foreign/results.json and RESULTS.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch
from deploy import RUNS, _write_json, exports, interleaved_onnx
from render_docs import deploy_tables

from gankd.adapter import adapter_for
from gankd.checkpoint import atomic_write_bytes, load_generator, resolve_model_path
from gankd.data import to_uint8
from gankd.export import load_exported
from gankd.fileio import portable_path
from gankd.metrics import fidelity as fid
from gankd.metrics.efficiency import count_macs, fingerprint, generator_inputs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "thirdparty"))  # the teacher's module: dcgan_tutorial
OUT = ROOT / "benchmarks" / "results" / "deploy_foreign"
TEACHER, DATA = "wesnoth-dcgan64", "wesnoth-units"
CELLS = {"default": "wesnoth64-data__nofeat-advlate-90-rt-cap4k-lrp__c40__s0",
         "plain": "wesnoth64-data__plain__c40__s0"}


@torch.no_grad()
def fid_vs_data(path: Path, model, samples: int, batch: int = 100) -> float:
    """FID of an exported file's samples (seeds 0..) against the data's test split, the domain's extractor."""
    run, gen = load_exported(path, "onnx"), adapter_for(model)
    images = [to_uint8(run(*gen.example_inputs(min(batch, samples - i), first_seed=i)).float().clamp(-1, 1))
              for i in range(0, samples, batch)]  # fmt: skip
    c, r, _ = gen.output_shape()
    ex = fid.choose_extractor(fid.AUTO, channels=c, resolution=r, data=DATA)
    return fid.fidelity_metrics(torch.cat(images), f"{DATA}:test", ("fid",), samples, extractor=ex, cache=False)["fid"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--load", default="quiet", help="what else ran on the machine (recorded)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    folders = {"teacher": resolve_model_path(TEACHER)}
    for name, cell in CELLS.items():
        folders[f"w0.25 {name}"] = ROOT / "runs" / "recipes" / cell / "student"
        if not (folders[f"w0.25 {name}"] / "config.json").exists():
            raise SystemExit(f"{folders[f'w0.25 {name}']} is missing: run benchmarks/recipes.py as the doc says")
    ex = exports(folders, gate_samples=0, runs=RUNS / "foreign")
    models = {}
    for key, e in ex.items():
        name, prec = key.rsplit(" ", 1)
        gen = load_generator(folders[name])
        ops = (e["record"].get("reduced") or {}).get("ops") or {}
        models[key] = {"model": name, "precision": prec, "path": portable_path(e["path"]),
                       "macs": count_macs(gen, generator_inputs(gen, 1))["macs"], "ops": ops.get("ops"),
                       "why_fp32": ops.get("why_fp32"), "fid": fid_vs_data(e["path"], gen, args.samples),
                       "psnr_to_fp32_db": None, "source": portable_path(folders[name])}  # fmt: skip
        print(key, f"FID {models[key]['fid']:.3g}", flush=True)
    speed = interleaved_onnx({k: e["path"] for k, e in ex.items()}, "teacher fp32", load_generator(folders["teacher"]),
                             args.rounds)  # fmt: skip
    res = {"schema": "gankd.deploy/1", "command": shlex.join(["python", "benchmarks/deploy_foreign.py", *sys.argv[1:]]),
           "samples": args.samples, "reference": f"{DATA}:test", "models": models, "speed": speed, "budgets": [],
           "cells": CELLS, "fingerprint": fingerprint(), "load": args.load}  # fmt: skip
    _write_json(OUT / "results.json", res)
    table = deploy_tables(res)[0]
    atomic_write_bytes(OUT / "RESULTS.md", "\n".join([
        "# Deployment of an imported GAN (wesnoth-dcgan64)", "",
        f"ONNX Runtime, CPU execution provider, one thread, interleaved with the fp32 teacher; FID of {args.samples} "
        f"samples against the {DATA} test split (the domain's extractor), every row scored alike; PSNR to fp32 is not "
        "measured here.", "", table, "", f"Machine: {res['fingerprint'].get('cpu')}; other jobs: {args.load}.",
        f"Command: `{res['command']}`", ""]).encode())  # fmt: skip
    print(table)


if __name__ == "__main__":
    main()
