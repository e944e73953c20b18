"""How much of a difference between two recipes can FID against teacher samples resolve?

Scores students of the recipe study (benchmarks/recipes.py cells) against the teacher's samples on three
disjoint seed blocks per sample count, with the domain's extractor, and writes the spread:

    python benchmarks/fid_noise.py --setting wesnoth64-free --recipes plain,lean-nofeat --budget c5

(writes benchmarks/results/recipes/fid_noise_SETTING.json; another budget than c5: fid_noise_SETTING_BUDGET.json)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "thirdparty"))

import torch  # noqa: E402
from recipes import OUT, RUNS, _teacher, cell_name, domain_extractor  # noqa: E402

from gankd.checkpoint import atomic_write_bytes, load_generator  # noqa: E402
from gankd.fileio import portable_path  # noqa: E402
from gankd.metrics import fidelity as fid  # noqa: E402

STUDENT_FIRST, TEACHER_FIRST, BLOCK = 5_000_000, 6_000_000, 100_000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", default="wesnoth64-free")
    ap.add_argument("--recipes", default="plain,lean-nofeat")
    ap.add_argument("--budget", default="c5", help="budget tag of the cells (c5 = calibrated 5 minutes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="2000,5000")
    ap.add_argument("--blocks", type=int, default=3)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    ex = domain_extractor(a.setting)
    teacher = _teacher(a.setting, "cpu")
    blocks = {"student": f"{STUDENT_FIRST:,} + k*{BLOCK:,}..", "teacher": f"{TEACHER_FIRST:,} + k*{BLOCK:,}.."}
    argv = argv if argv is not None else sys.argv[1:]
    res = {"setting": a.setting, "extractor": ex.info(), "students": {}, "fid_vs_teacher": {}, "seed_blocks": blocks,
           "command": "python benchmarks/fid_noise.py " + " ".join(argv)}  # fmt: skip
    for recipe in a.recipes.split(","):
        folder = RUNS / cell_name(a.setting, recipe, a.budget, a.seed) / "student"
        student = load_generator(folder)
        res["students"][recipe] = portable_path(folder)
        res["fid_vs_teacher"][recipe] = {}
        for n in (int(x) for x in a.sizes.split(",")):
            vals = []
            for k in range(a.blocks):
                s = fid.generated_set(student, n, STUDENT_FIRST + k * BLOCK, name=f"{recipe} block {k}")
                t = fid.generated_set(teacher, n, TEACHER_FIRST + k * BLOCK, name=f"teacher block {k}")
                vals.append(fid.fidelity_metrics(s, t, ("fid",), n, extractor=ex)["fid"])
            res["fid_vs_teacher"][recipe][str(n)] = vals
            print(recipe, n, [round(v, 4) for v in vals], flush=True)
    out = OUT / f"fid_noise_{a.setting}{'' if a.budget == 'c5' else '_' + a.budget}.json"
    atomic_write_bytes(out, (json.dumps(res, indent=1) + "\n").encode())
    print(portable_path(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
