"""Teacher / plain / gankd default on the same inputs, one grid per teacher setting of the recipe study.

Noise-to-image: rows teacher, plain, default (test seeds 0-9). Image-to-image: one row per test pair,
columns source | teacher | plain | default | target. Students come from the study's cells
(benchmarks/recipes.py), the seed-0 cell of each recipe at the budget:

    python benchmarks/recipe_grids.py --budget c5         # samples/recipes_<setting>.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "thirdparty"))

import torch  # noqa: E402
from recipes import RUNS, SETTINGS, _teacher, cell_name, same_run_as  # noqa: E402

from gankd.adapter import adapter_for  # noqa: E402
from gankd.checkpoint import load_generator  # noqa: E402
from gankd.data import to_float  # noqa: E402
from gankd.evaluate_i2i import model_pairs  # noqa: E402
from gankd.fileio import portable_path  # noqa: E402
from gankd.sampling import generate, grid, save_png  # noqa: E402


def run_dir(setting: str, recipe: str, budget: str, seed: int) -> Path:
    """The cell's run folder (a recipe that is the same run as another on this setting: that one's)."""
    return RUNS / cell_name(setting, same_run_as(setting, recipe) or recipe, budget, seed)


def grid_for(setting: str, recipes: list[str], budget: str, seed: int = 0, n: int = 10) -> torch.Tensor:
    teacher = adapter_for(_teacher(setting, "cpu"))
    students = [load_generator(run_dir(setting, r, budget, seed) / "student") for r in recipes]
    if SETTINGS[setting].i2i:
        folder = run_dir(setting, recipes[0], budget, seed) / "student"
        pairs = model_pairs(teacher, folder, "test")
        src = to_float(pairs.sources[:n])
        name = teacher.spec.image().name
        cols = [src, *(generate(g, {name: src}) for g in (teacher, *students)), to_float(pairs.images[:n])]
        return grid(torch.stack(cols, dim=1).flatten(0, 1), nrow=len(cols))
    inputs = teacher.seeded_inputs(list(range(n)))
    rows = [generate(g, inputs) for g in (teacher, *students)]
    return grid(torch.cat(rows), nrow=n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", default="c5")
    ap.add_argument("--settings", default="wesnoth64-free,wesnoth64-data,fmnist,restore64")
    ap.add_argument("--recipes", default="plain,nofeat-advlate-90-rt",
                    help="student rows after the teacher's (default: plain, then gankd's default recipe)")
    ap.add_argument("--out", default=str(ROOT / "samples"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    for setting in a.settings.split(","):
        path = save_png(grid_for(setting, a.recipes.split(","), a.budget), Path(a.out) / f"recipes_{setting}.png")
        print(portable_path(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
