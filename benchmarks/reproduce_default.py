"""Does ``gankd compress`` with no recipe flag give the recipe study's committed numbers?

Takes a committed cell of benchmarks/recipes.py whose recipe is what ``gankd compress`` runs with no
flag (its overrides build :class:`gankd.distill.DistillConfig`'s defaults), runs the user's command
for it in a fresh process, only the teacher, width, data, the cell's step count and seed given,
scores the student on the cell's val and test sides with the study's own scorer, and compares every
headline number (and, when the cell's run folder is here, every weight) with the cell:

    python benchmarks/reproduce_default.py --cell fmnist__nofeat-advlate-90-rt-cap4k-lrp__c5__s0

The cell ran on one torch thread, so the command does too (``--set threads=1``): float sums then
come out the same: the weights must be equal bit for bit and every number agree to a relative 1e-4 (two
processes scoring the same weights gave FID/KID that differed in their last digits). A wall budget
(``--max-minutes``) buys a different number of steps on another machine; the step count is what
a wall budget becomes here. Writes benchmarks/results/recipes/reproduce/<cell>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "thirdparty"))

import torch  # noqa: E402
from recipes import OUT, RECIPES, RUNS, SETTINGS, domain_extractor, score_sides  # noqa: E402

from gankd.checkpoint import load_generator  # noqa: E402
from gankd.distill import DistillConfig  # noqa: E402
from gankd.evaluate import save_result  # noqa: E402
from gankd.fileio import portable_path  # noqa: E402
from gankd.metrics.efficiency import fingerprint  # noqa: E402

# the same weights scored in two processes: FID/KID differed in their last digits (a relative 4e-5)
METRIC_RTOL = 1e-4
HEADLINE = ("fid_vs_teacher", "kid_vs_teacher", "fid_vs_data", "kid_vs_data", "psnr_to_teacher", "ssim_to_teacher")


def user_command(cell: dict, out: Path) -> list[str]:
    """What a user types for this cell: teacher, width, data, the cell's steps and seed; one thread, as the cell
    ran."""
    s = SETTINGS[cell["setting"]]
    return ["gankd", "compress", "--teacher", s.teacher, "--width", f"{s.width:g}", "--data", s.data,
            "--steps", str(cell["budget"]["steps"]), "--seed", str(cell["seed"]), "--set", "threads=1",
            "--out", portable_path(out)]  # fmt: skip


def same_weights(a: Path, b: Path) -> bool | None:
    """Every tensor of the two students equal bit for bit (None: the cell's run folder is not on this machine)."""
    if not b.exists():
        return None
    sa, sb = (load_generator(p).state_dict() for p in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def reproduce(name: str, out: Path, runs: Path, device: str = "cpu") -> dict:
    cell = json.loads((out / "cells" / f"{name}.json").read_text())
    recipe = RECIPES[cell["recipe"]]
    if dataclasses.asdict(DistillConfig(**recipe)) != dataclasses.asdict(DistillConfig()):
        raise SystemExit(f"--cell {name}: its recipe {cell['recipe']} is not what gankd compress runs with no flag; "
                         "pick a cell of the default recipe (results.json: compress_default)")  # fmt: skip
    if not cell["budget"].get("steps"):
        raise SystemExit(f"--cell {name} ran on a wall budget (no step count to rerun); pick a calibrated cell")
    run = runs / "reproduce" / name
    argv = user_command(cell, run)
    t0 = time.monotonic()
    shutil.rmtree(run, ignore_errors=True)  # this script's own scratch run: a fresh one each time
    # where an imported teacher's class lives (the README's `export PYTHONPATH=benchmarks/thirdparty`)
    path = os.pathsep.join(p for p in (str(ROOT / "benchmarks" / "thirdparty"), os.environ.get("PYTHONPATH")) if p)
    subprocess.run([sys.executable, "-m", "gankd", *argv[1:]], check=True, cwd=ROOT, env={**os.environ,
                   "PYTHONPATH": path})  # fmt: skip
    train_s = time.monotonic() - t0
    student = run / "student"
    ex = domain_extractor(cell["setting"], device)
    sides = score_sides(student, cell["setting"], cell["num_samples"], ex, device)
    compare = {side: {k: {"cell": cell[side].get(k), "command": sides[side].get(k)} for k in HEADLINE
                      if cell[side].get(k) is not None} for side in ("val", "test")}  # fmt: skip
    rel = max(abs(v["cell"] - v["command"]) / max(abs(v["cell"]), 1e-12) for d in compare.values() for v in d.values())
    equal = all(v["cell"] == v["command"] for side in compare.values() for v in side.values())
    cell_run = ROOT / cell["train"]["run"] / "student"
    rec = {"schema": "gankd.reproduce/1", "cell": name, "cell_command": cell["command"],
           "command": shlex.join(argv), "environment": "PYTHONPATH=benchmarks/thirdparty",
           "recipe": cell["recipe"], "steps": cell["budget"]["steps"],
           "numbers": compare, "all_numbers_equal": equal, "max_relative_difference": rel,
           "agrees": rel <= METRIC_RTOL, "metric_rtol": METRIC_RTOL,
           "weights_equal_to_cell_run": same_weights(student, cell_run), "train_s": round(train_s, 1),
           "fingerprint": fingerprint(device),
           "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    save_result(rec, out / "reproduce" / f"{name}.json")
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", required=True, help="a committed cell of the default recipe (benchmarks/results/"
                    "recipes/cells/NAME.json), e.g. fmnist__nofeat-advlate-90-rt-cap4k-lrp__c5__s0")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--runs", default=str(RUNS))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rec = reproduce(a.cell, Path(a.out), Path(a.runs))
    for side, nums in rec["numbers"].items():
        print(side, ", ".join(f"{k} {v['cell']:.6g} / {v['command']:.6g}" for k, v in nums.items()))
    print(f"all numbers equal: {rec['all_numbers_equal']} (largest relative difference "
          f"{rec['max_relative_difference']:.2g}); weights equal: {rec['weights_equal_to_cell_run']}")
    return 0 if rec["agrees"] and rec["weights_equal_to_cell_run"] is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
