"""Distillation recipes at equal wall time (or equal steps): which recipe should ``gankd compress`` default to?

A recipe is a named set of DistillConfig overrides (:data:`RECIPES`, the one table of them); a
teacher setting is a teacher, its training data and a student width (:data:`SETTINGS`). A cell
= (setting, recipe, budget, seed) trains ONE student with ``gankd.distill.compress`` on one
torch thread, then scores it twice, on sides that never share an image or a seed:

- ``val`` (choose recipes here): FID/KID of 2,000 student samples (seeds 1,000,000.., gankd's
  selection block) against teacher samples of a block of their own (seeds 3,000,000..) and
  against the data's ``val`` split; PSNR/SSIM to the teacher on the val latents.
- ``test`` (report these): the protocol of ``gankd eval`` and benchmarks/foreign_gan.py:
  student seeds 0.. against teacher samples from seeds 2,000,000.. and against the data's
  ``test`` split; PSNR/SSIM to the teacher on the test latents.

Image-to-image teachers (``restore64``) are scored by ``gankd.evaluate_i2i`` on the val and test
pairs (sources degraded with seed 0): PSNR/SSIM to the teacher's outputs and to the targets,
FID/KID of the outputs against the targets and against the teacher's outputs.
Features come from the extractor gankd chooses for the domain (recorded per cell). Each
setting also gets a teacher record (the teacher under the same protocol, and the real-data
floor): ``OUT/teachers/``.

    python benchmarks/recipes.py --settings wesnoth64-free,fmnist --recipes plain,default --minutes 5 --seeds 0
    python benchmarks/recipes.py --settings fmnist --recipes lean --steps 3000 --seeds 0,1,2 --device cuda
    python benchmarks/recipes.py --table          # RESULTS.md and results.json from OUT/cells/*.json

``--minutes M``: max_minutes=M with a step count that never binds, so the wall budget stops the
run and a cosine schedule decays over exactly M minutes (gankd's schedule progress is the larger
of step/steps and elapsed/max_minutes). ``--steps N``: N steps, no wall cap (device-independent).
Validation that a recipe runs inside its training (``default`` selects a checkpoint every 500
steps) counts against its own budget.

Resumable: a cell whose JSON exists in OUT/cells is never redone; a trained run (RUNS/<cell>/DONE)
is not trained again; a killed run resumes from its state.pt. Paths in the JSONs are relative to
the repository root; every JSON holds the command that made it.
"""

import argparse
import dataclasses
import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "thirdparty"))  # the generators of wesnoth-dcgan64, fmnist-stylegan2..

import torch  # noqa: E402
from i2i_matrix import stats  # noqa: E402

from gankd.adapter import adapter_for  # noqa: E402
from gankd.checkpoint import atomic_write_bytes, load_generator, load_state, resolve_model_path  # noqa: E402
from gankd.config import to_dict  # noqa: E402
from gankd.data import to_uint8  # noqa: E402
from gankd.distill import PRESETS, DistillConfig, adv_cap_binds, compress  # noqa: E402
from gankd.evaluate import REFERENCE_FIRST_SEED, Quality, real_floor, save_result  # noqa: E402
from gankd.evaluate_i2i import evaluate_i2i, model_pairs  # noqa: E402
from gankd.fileio import portable_path  # noqa: E402
from gankd.metrics import fidelity as fid  # noqa: E402
from gankd.metrics.efficiency import efficiency, fingerprint  # noqa: E402
from gankd.sampling import generate  # noqa: E402
from gankd.selection import VAL_FIRST_SEED  # noqa: E402

log = logging.getLogger("recipes")
SCHEMA = "gankd.recipes/1"
OUT = ROOT / "benchmarks" / "results" / "recipes"
RUNS = ROOT / "runs" / "recipes"
UNBOUNDED_STEPS = 10**9  # --minutes: the wall budget stops the run, never the step count

# --------------------------------------------------------------------------- the recipes
# One table: name -> DistillConfig overrides (everything else: DistillConfig's defaults). The harness adds
# only what every cell shares: teacher, data, width, seed, threads=1, device and the budget (steps, max_minutes).
# (real: auto, as every cell of these recipes ran before the study made real=teacher the default)
_LEAN = {"pixel": 1.0, "feat": 1.0, "adv": 0.0, "perceptual": 0.0, "kd": 0.0, "batch_size": 32, "lr_g": 1e-3,
         "lr_schedule": "cosine", "ema_decay": 0.999, "select": "last", "eval_every": 0, "real": "auto",
         "adv_max_steps": 0, "lr_phases": False}  # fmt: skip
RECIPES: dict[str, dict] = {
    # what a user writes in 40 lines: the pruned student, L1 to the teacher's output, Adam, nothing else
    "plain": dict(PRESETS["plain"]),
    # gankd compress with no flags, and its defaults before the budget-aware recipe
    "default": {},
    "classic": dict(PRESETS["classic"]),
    # candidates from existing flags
    "lean": dict(_LEAN),
    "lean-nofeat": {**_LEAN, "feat": 0.0},
    # cheap adversarial terms: a slim fresh discriminator (a quarter of the width) only in the last part of the
    # budget (--adv-start) after a pixel (and feature) phase
    "lean-advlate": {**_LEAN, "adv": 0.05, "d_init": "fresh", "d_width": 0.25, "adv_start": 0.75},
    "nofeat-advlate": {**_LEAN, "feat": 0.0, "adv": 0.05, "d_init": "fresh", "d_width": 0.25, "adv_start": 0.75},
    "nofeat-advlate-02": {**_LEAN, "feat": 0.0, "adv": 0.02, "d_init": "fresh", "d_width": 0.25, "adv_start": 0.75},
    "nofeat-advlate-90": {**_LEAN, "feat": 0.0, "adv": 0.05, "d_init": "fresh", "d_width": 0.25, "adv_start": 0.9},
    # the same, the discriminator's real side = the teacher's images on the batch's latents (data or not): the
    # adversarial phase then pulls toward the teacher's distribution, which FID vs teacher samples measures
    "nofeat-advlate-90-rt": {**_LEAN, "feat": 0.0, "adv": 0.05, "d_init": "fresh", "d_width": 0.25, "adv_start": 0.9,
                             "real": "teacher"},
    # the default recipe on the pruned shapes with fresh weights: a narrower copy of the teacher's family trained from
    # scratch, for comparison with the pruned start (modern teachers)
    "nofeat-advlate-90-scratch": {**_LEAN, "feat": 0.0, "adv": 0.05, "d_init": "fresh", "d_width": 0.25,
                                  "adv_start": 0.9, "init": "random"},
    # the default with its adversarial phase capped at 2,000 steps, about its length at 10 calibrated minutes on
    # every study teacher (1,030-1,920 steps), where it was chosen: at longer budgets the phase no longer grows
    # with the budget (unchanged wherever a tenth of the run is at most 2,000 steps)
    "nofeat-advlate-90-rt-cap2k": {**_LEAN, "feat": 0.0, "adv": 0.05, "d_init": "fresh", "d_width": 0.25,
                                   "adv_start": 0.9, "real": "teacher", "adv_max_steps": 2000},
    # the same, the learning rates decaying over each phase as at 10 minutes (--lr-phases): the cap alone put the
    # adversarial phase where the cosine is near 0
    "nofeat-advlate-90-rt-cap2k-lrp": {**_LEAN, "feat": 0.0, "adv": 0.05, "d_init": "fresh", "d_width": 0.25,
                                       "adv_start": 0.9, "real": "teacher", "adv_max_steps": 2000, "lr_phases": True},
    # the phase capped at 4,000 steps, about its length at 20 calibrated minutes on the sprite teachers (3,842-3,861
    # steps), where the default kept its val FID edge with PSNR within 0.3 dB of plain's; 2,000 steps gave PSNR back
    # but lost the edge. With --lr-phases the capped phase starts at the rate the default's last tenth starts at.
    # It binds only at 40 minutes among the study's cells (declared before its 40-minute cells ran)
    "nofeat-advlate-90-rt-cap4k-lrp": {**_LEAN, "feat": 0.0, "adv": 0.05, "d_init": "fresh", "d_width": 0.25,
                                       "adv_start": 0.9, "real": "teacher", "adv_max_steps": 4000, "lr_phases": True},
    # candidates for FID against the user's data (the Fashion-MNIST target: within 1.2x the teacher's FID
    # against the test split at 20 minutes), which the default, chosen for fidelity to the teacher, misses (3.2x): the
    # slim fresh discriminator with the data as its real side (real auto = the data) over a longer share of the
    # budget, or with a heavier weight. nofeat-advlate (the last quarter) is the fourth candidate; see DATA_RULE
    "nofeat-adv50": {**_LEAN, "feat": 0.0, "adv": 0.05, "d_init": "fresh", "d_width": 0.25, "adv_start": 0.5},
    "nofeat-adv00": {**_LEAN, "feat": 0.0, "adv": 0.05, "d_init": "fresh", "d_width": 0.25, "adv_start": 0.0},
    "nofeat-adv50-a20": {**_LEAN, "feat": 0.0, "adv": 0.2, "d_init": "fresh", "d_width": 0.25, "adv_start": 0.5},
}  # fmt: skip

# The rule that picks the recipe for FID against the user's data, declared before its cells ran; val side only
DATA_CANDIDATES = ("nofeat-advlate", "nofeat-adv50", "nofeat-adv00", "nofeat-adv50-a20")
DATA_RULE = ("on Fashion-MNIST (width 1/4) at 20 calibrated minutes, val side: among the data candidates, the lowest "
             "FID against the data's val split; it is worth a preset only if that FID is below both the default's "
             "and plain's at the same budget")  # fmt: skip


@dataclass(frozen=True)
class Setting:  # (no `from __future__ import annotations`: tests load this file outside sys.modules)
    teacher: str  # shipped name or generator folder
    data: str  # what compress trains with (--data); "none" = data-free
    width: float
    eval_data: str | None  # the data the scores compare with (val and test splits); None: teacher-only scores
    i2i: bool = False
    student_kwargs: tuple[tuple[str, int], ...] = ()  # --student-kwargs: a narrower copy of the teacher's class
    student_upsample: str | None = None  # --student-upsample: the student's decoder doubles by nearest + conv


SETTINGS: dict[str, Setting] = {
    "fmnist": Setting("fmnist-teacher", "fashion-mnist", 0.25, "fashion-mnist"),
    "fmnist-w8": Setting("fmnist-teacher", "fashion-mnist", 0.125, "fashion-mnist"),
    # data-free training; the sprites still score it (foreign_gan.py does the same)
    "wesnoth64-free": Setting("wesnoth-dcgan64", "none", 0.25, "wesnoth-units"),
    "wesnoth64-data": Setting("wesnoth-dcgan64", "wesnoth-units", 0.25, "wesnoth-units"),
    "restore64": Setting("wesnoth-restore64", "wesnoth-units", 0.25, "wesnoth-units", i2i=True),
    # the same U-Net student upsampling by nearest + 3x3 conv (fresh weights), which quantizes to int8 throughout
    "restore64-nc": Setting("wesnoth-restore64", "wesnoth-units", 0.25, "wesnoth-units", i2i=True,
                            student_upsample="nearest-conv"),
    # modern generators trained outside gankd (benchmarks/thirdparty, shipped by benchmarks/modern_gans.py)
    "sg2-fmnist": Setting("fmnist-stylegan2", "fashion-mnist", 0.25, "fashion-mnist"),
    "sg2-fmnist-w2": Setting("fmnist-stylegan2", "fashion-mnist", 0.5, "fashion-mnist"),
    # the class built narrower from its constructor arguments (fresh weights): every stage at 1/4 of the teacher's
    # 128, 128, 64, 32 channels, the shapes of sg2-fmnist's pruned student
    "sg2-fmnist-copy": Setting("fmnist-stylegan2", "fashion-mnist", 0.25, "fashion-mnist",
                               student_kwargs=(("channel_base", 256), ("channel_max", 32))),
    "fastgan64": Setting("wesnoth-fastgan64", "wesnoth-units", 0.25, "wesnoth-units"),
    "fastgan64-w2": Setting("wesnoth-fastgan64", "wesnoth-units", 0.5, "wesnoth-units"),
}

# noise-to-image seed blocks: student samples / latents, and the teacher's samples FID compares with
VAL_TEACHER_FIRST_SEED = 3_000_000
SEEDS = {"val": {"student": VAL_FIRST_SEED, "teacher_reference": VAL_TEACHER_FIRST_SEED},
         "test": {"student": 0, "teacher_reference": REFERENCE_FIRST_SEED}}  # fmt: skip


def seed_blocks(n: int) -> dict[str, list[range]]:
    """The seeds each side draws for ``n`` samples (student latents, teacher reference samples)."""
    if not 1 <= n <= 10**6:
        raise SystemExit(f"--num-samples {n}: pick 1..1,000,000 (the val and test seed blocks are 10^6 apart)")
    return {side: [range(s["student"], s["student"] + n), range(s["teacher_reference"], s["teacher_reference"] + n)]
            for side, s in SEEDS.items()}  # fmt: skip


def _span(r: range) -> str:
    return f"{r.start}..{r.stop - 1}"


# --------------------------------------------------------------------------- cells
def budget_tag(args) -> str:
    if getattr(args, "cost_minutes", None):
        return f"c{args.cost_minutes:g}"
    return f"m{args.minutes:g}" if args.minutes else f"n{args.steps}"


# --------------------------------------------------------------------------- calibrated budgets
# On a shared 2-core machine the wall time a cell gets depends on what else runs, so "equal wall time" is
# measured once, interleaved (recipe A, B, C, A, B, C, ... in one process, one thread), as seconds per step of
# each recipe on each setting; a calibrated budget of M minutes is then M*60 / (s per step) steps, which any
# machine (or a GPU) reruns exactly. The cells' own wall times are recorded beside it.
COST_FILE = "step_cost.json"


def calibrate(settings: list[str], recipes: list[str], args, out: Path, rounds: int = 7, per_round: int = 5,
              anchor: str | None = None) -> dict:
    """Seconds per training step of each recipe on each setting, timed interleaved (``rounds`` x
    ``per_round`` steps each, the first round dropped as warm-up), at the run's start (progress 0)
    and end (progress ~1) in alternate rounds: a recipe whose discriminator starts at ``adv_start``
    costs ``adv_start`` x the first phase's median + the rest x the second's. Merged into
    OUT/step_cost.json.

    ``anchor``: a recipe already calibrated on each setting; it is timed interleaved with the new
    recipes, and a new recipe's cost is the anchor's committed cost x the measured ratio, so a
    recipe added later is priced on the same scale as the cells already run (the anchor's own
    entry is left as it was)."""
    import statistics
    import tempfile

    from gankd.distill import Distiller

    capped = {r: uncapped_twin(r) for r in recipes if RECIPES[r].get("adv_max_steps")}
    if capped:
        raise SystemExit(f"{', '.join(capped)}: a capped adversarial phase is priced from its uncapped twin "
                         f"({', '.join(str(t) for t in capped.values())}); calibrate that one")
    path = out / COST_FILE
    res = json.loads(path.read_text()) if path.exists() else {"schema": SCHEMA, "settings": {}}
    ends = (0.0, 0.999)
    for setting in settings:
        tmp = Path(tempfile.mkdtemp(prefix="gankd-cost-"))
        rec = res["settings"].setdefault(setting, {})
        if anchor is not None and anchor not in rec:
            raise SystemExit(f"--anchor {anchor} has no committed step cost on {setting}: calibrate it first")
        timed = [*recipes, anchor] if anchor is not None and anchor not in recipes else list(recipes)
        try:
            ds = {}
            for r in timed:
                budget = argparse.Namespace(**{**vars(args), "cost_minutes": None, "minutes": None, "steps": 10**6})
                d = Distiller(cell_config(setting, r, 0, budget), tmp / r)
                d.train_mode()
                ds[r] = d
            times: dict[str, dict[float, list[float]]] = {r: {p: [] for p in ends} for r in timed}
            step = 0
            for k in range(rounds):
                progress = ends[k % 2]
                for r, d in ds.items():
                    t0 = time.perf_counter()
                    for j in range(per_round):
                        d.before_step(step + j, progress)
                        d.step(step + j)
                    if k:  # round 0 warms up
                        times[r][progress].append((time.perf_counter() - t0) / per_round)
                step += per_round
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        measured = {}
        for r, t in times.items():
            start, end = (statistics.median(t[p]) for p in ends)
            a = RECIPES[r].get("adv_start", 0.0)
            measured[r] = {"s_per_step": a * start + (1 - a) * end if a else statistics.median(t[0.0] + t[0.999]),
                           "s_per_step_start": start, "s_per_step_end": end, "adv_start": a,
                           "rounds": rounds - 1, "steps_per_round": per_round}  # fmt: skip
        for r in recipes:
            if anchor is None:
                rec[r] = measured[r]
            elif r != anchor:
                ratio = measured[r]["s_per_step"] / measured[anchor]["s_per_step"]
                rec[r] = {**measured[r], "s_per_step": rec[anchor]["s_per_step"] * ratio, "anchored_to": anchor,
                          "ratio_to_anchor": ratio, "measured_s_per_step": measured[r]["s_per_step"]}  # fmt: skip
        log.info("step cost %s: %s", setting, {r: round(v["s_per_step"], 4) for r, v in rec.items()})
    res.update(threads=1, fingerprint=fingerprint(args.device), loadavg_1_5_15=[round(x, 2) for x in os.getloadavg()],
               command=_command(args))  # fmt: skip
    atomic_write_bytes(path, (json.dumps(res, indent=1) + "\n").encode())
    return res


CAP_KEYS = ("adv_max_steps", "lr_phases")  # lr_phases acts only where the cap binds


def uncapped_twin(recipe: str) -> str | None:
    """The recipe this one is without its ``adv_max_steps`` cap (and ``lr_phases``): the same training step, so
    the same step costs in each phase; only the phases' lengths differ (None: no cap, or no twin)."""
    over = RECIPES[recipe]
    if not over.get("adv_max_steps"):
        return None
    def without_cap(o: dict) -> dict:
        return {k: v for k, v in o.items() if k not in CAP_KEYS}

    return next((r for r, o in RECIPES.items() if not o.get("adv_max_steps") and without_cap(o) == without_cap(over)),
                None)  # fmt: skip


def calibrated_steps(setting: str, recipe: str, minutes: float, out: Path) -> tuple[int, float]:
    """(steps, seconds per step) of a calibrated budget of ``minutes`` (see :func:`calibrate`). A recipe with a
    capped adversarial phase is priced from its uncapped twin's two phases: where a ``1 - adv_start`` share of
    the twin's steps exceeds the cap, the budget buys the cap's steps at the adversarial phase's cost and the
    rest at the cheap phase's (on the twin's committed scale); elsewhere the twin's steps, the same run."""
    path = out / COST_FILE
    costs = json.loads(path.read_text())["settings"].get(setting, {}) if path.exists() else {}
    twin = uncapped_twin(recipe)
    priced = twin or recipe
    cost = costs.get(priced) or costs.get(same_run_as(setting, priced) or "")
    if cost is None:
        raise SystemExit(f"no step cost for {setting}/{priced} in {portable_path(path)}: run "
                         f"python benchmarks/recipes.py --calibrate --settings {setting} --recipes {priced}")
    seconds, per = minutes * 60, cost["s_per_step"]
    steps = max(1, round(seconds / per))
    cap = RECIPES[recipe].get("adv_max_steps", 0)
    a = cost.get("adv_start", 0.0)
    if twin and adv_cap_binds(steps, a, cap):
        start, end = cost["s_per_step_start"], cost["s_per_step_end"]
        scale = per / (a * start + (1 - a) * end)  # measured phases -> the committed (anchored) scale
        steps = max(1, round((seconds / scale - cap * (end - start)) / start))
        per = seconds / steps
    return steps, per


def cell_name(setting: str, recipe: str, tag: str, seed: int) -> str:
    return f"{setting}__{recipe}__{tag}__s{seed}"


def cell_config(setting: str, recipe: str, seed: int, args) -> DistillConfig:
    s = SETTINGS[setting]
    if getattr(args, "cost_minutes", None):
        budget = {"steps": calibrated_steps(setting, recipe, args.cost_minutes, Path(args.out))[0], "max_minutes": 0.0}
    else:
        budget = ({"steps": UNBOUNDED_STEPS, "max_minutes": float(args.minutes)} if args.minutes
                  else {"steps": int(args.steps), "max_minutes": 0.0})  # fmt: skip
    copy = {"student_kwargs": dict(s.student_kwargs)} if s.student_kwargs else {}
    if s.student_upsample:
        copy["student_upsample"] = s.student_upsample
    return DistillConfig(teacher=s.teacher, data=s.data, width=s.width, seed=seed, threads=1, device=args.device,
                         **budget, **RECIPES[recipe], **copy)  # fmt: skip


def cell_command(setting: str, recipe: str, seed: int, args) -> str:
    """The command that (re)makes this one cell."""
    argv = ["python", "benchmarks/recipes.py", "--settings", setting, "--recipes", recipe,
            *(["--cost-minutes", f"{args.cost_minutes:g}"] if getattr(args, "cost_minutes", None) else
              ["--minutes", f"{args.minutes:g}"] if args.minutes else ["--steps", str(args.steps)]),
            "--seeds", str(seed), "--num-samples", str(args.num_samples)]  # fmt: skip
    if args.device != "cpu":
        argv += ["--device", args.device]
    for flag, value, default in (("--out", args.out, OUT), ("--runs", args.runs, RUNS)):
        if Path(value).resolve() != default.resolve():
            argv += [flag, portable_path(value)]
    return shlex.join(argv)


def train(cfg: DistillConfig, run: Path) -> dict:
    """Train a cell's student (kept when DONE; a killed run resumes from state.pt)."""
    done = run / "DONE"
    if not done.exists():
        resume = (run / "state.pt").exists()
        if run.exists() and not resume:  # killed before its first checkpoint: nothing to keep
            shutil.rmtree(run)
        log.info("%s %s", "resuming" if resume else "training", run.name)
        t0 = time.monotonic()
        student = compress(cfg, run, resume=resume)
        st = load_state(run / "state.pt")
        steps, wall = int(st["step"]), float(st.get("wall_s", 0.0))
        meta = json.loads((student / "config.json").read_text())
        rec = {"steps": steps, "wall_s": round(wall, 2), "s_per_step": wall / max(steps, 1),
               "stopped_by": "steps" if steps >= cfg.steps else "budget",
               "model_step": meta.get("trained_steps"), "selected_on": meta.get("selected_on"),
               "has_discriminator": "D" in st, "resolved": json.loads((run / "config.json").read_text())["resolved"],
               "this_invocation_s": round(time.monotonic() - t0, 1), "run": portable_path(run),
               "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],  # a shared machine slows s/step
               "student": portable_path(student)}  # fmt: skip
        atomic_write_bytes(done, (json.dumps(rec, indent=1, default=str) + "\n").encode())
    return json.loads(done.read_text())


def domain_extractor(setting: str, device: str = "cpu"):
    """The extractor gankd chooses for the setting's images and data (as ``gankd eval`` does)."""
    s = SETTINGS[setting]
    c, r, _ = adapter_for(_teacher(setting, device)).output_shape()
    return fid.choose_extractor(fid.AUTO, channels=c, resolution=r, data=s.eval_data)


_CACHE: dict = {}


def _teacher(setting: str, device: str):
    key = ("teacher", SETTINGS[setting].teacher, device)
    if key not in _CACHE:
        _CACHE[key] = load_generator(resolve_model_path(SETTINGS[setting].teacher), device)
    return _CACHE[key]


def _teacher_samples(setting: str, first_seed: int, n: int, device: str, side: str):
    """The teacher's samples a side compares with (the teacher is frozen: made once per process)."""
    key = ("samples", SETTINGS[setting].teacher, first_seed, n, device)
    if key not in _CACHE:
        _CACHE[key] = fid.generated_set(_teacher(setting, device), n, first_seed, device=device,
                                        name=f"teacher {side} samples")  # fmt: skip
    return _CACHE[key]


def _headline(q: dict, prefix: str) -> dict:
    return {f"fid_{prefix}": q.get("fid"), f"kid_{prefix}": q.get("kid_mean")}


def score_noise(model, setting: str, side: str, n: int, ex, device: str, self_teacher: bool = False) -> dict:
    """One side of a noise-to-image model's scores (see the module doc); ``self_teacher``: the
    model is the teacher (its FID to its own samples of the other block: the column's floor)."""
    s, seeds = SETTINGS[setting], SEEDS[side]
    blocks = dict(zip(("student", "teacher_reference"), seed_blocks(n)[side], strict=True))
    teacher = _teacher(setting, device)
    name = "teacher" if self_teacher else "student"
    images = fid.generated_set(model, n, seeds["student"], device=device, name=f"{name} {side} samples")
    ref = _teacher_samples(setting, seeds["teacher_reference"], n, device, side)
    out: dict = {"seeds": {k: _span(v) for k, v in blocks.items()}}
    q = fid.fidelity_metrics(images, ref, ("fid", "kid"), n, extractor=ex, device=device)
    out.update(_headline(q, "vs_teacher"), detail={"vs_teacher": q})
    if s.eval_data:
        split = f"{s.eval_data}:{side}"
        q = fid.fidelity_metrics(images, split, ("fid", "kid"), n, num_reference=n if ex.kind == "inception" else None,
                                 extractor=ex, device=device)  # fmt: skip
        out.update(_headline(q, "vs_data"), data_split=split)
        out["detail"]["vs_data"] = q
    if not self_teacher:
        tf = fid.teacher_fidelity(model, teacher, n, first_seed=seeds["student"], device=device)
        out.update(psnr_to_teacher=tf["psnr_db"], ssim_to_teacher=tf["ssim"])
        out["detail"]["teacher_fidelity"] = tf
    return out


def score_i2i(folder: Path, setting: str, side: str, n: int, ex, device: str, self_teacher: bool = False) -> dict:
    """One side (the val or test pairs) of an image-to-image model's scores; ``folder`` records the
    data and task (a student's folder does)."""
    teacher = _teacher(setting, device)
    r = evaluate_i2i(folder, None if self_teacher else teacher, device=device, split=side,
                     quality=Quality(metrics=("psnr", "ssim", "fid", "kid"), num_samples=n, extractor=ex.name))
    out = {"pairs": f"{r['data']}:{side} ({r['task']}, degradation seed 0), {r['num_pairs']} pairs",
           "fid_vs_data": r["distribution"]["fid"], "kid_vs_data": r["distribution"]["kid_mean"],
           "psnr_to_target": r["vs_target"]["psnr_db"]["mean"], "ssim_to_target": r["vs_target"]["ssim"]["mean"],
           "source_psnr_to_target": r["source_vs_target"]["psnr_db"]["mean"],
           "detail": {"evaluate_i2i": r}}  # fmt: skip
    if not self_teacher:
        out.update(psnr_to_teacher=r["vs_teacher"]["psnr_db"]["mean"], ssim_to_teacher=r["vs_teacher"]["ssim"]["mean"])
        # FID of the outputs against the teacher's outputs on the same sources
        gen = adapter_for(load_generator(folder, device))
        src = model_pairs(gen, folder, side).sources[: r["num_pairs"]].float().div(127.5).sub(1)
        outs = [to_uint8(generate(g, {g.spec.image().name: src}, batch_size=32, device=device))
                for g in (gen, adapter_for(teacher))]  # fmt: skip
        q = fid.fidelity_metrics(outs[0], outs[1], ("fid", "kid"), len(src), extractor=ex, device=device)
        out.update(_headline(q, "vs_teacher"))
        out["detail"]["vs_teacher"] = q
    return out


def score_sides(student: Path, setting: str, n: int, ex, device: str) -> dict:
    """A student folder's val and test scores (:func:`score_i2i` or :func:`score_noise`)."""
    if SETTINGS[setting].i2i:
        return {side: score_i2i(student, setting, side, n, ex, device) for side in ("val", "test")}
    model = load_generator(student, device)
    return {side: score_noise(model, setting, side, n, ex, device) for side in ("val", "test")}


def efficiency_of(student: Path, device: str) -> dict:
    e = efficiency(load_generator(student, device), student, device=device)
    return {k: e[k] for k in ("params", "macs", "weights_bytes")}


def teacher_key(setting: str, n: int) -> str:
    s = SETTINGS[setting]
    data = re.sub(r"[^A-Za-z0-9.-]+", "-", s.eval_data or "nodata").strip("-")[-60:]
    return f"{Path(s.teacher).name}__{data}__n{n}"


def teacher_record(setting: str, args, out: Path) -> dict:
    """The teacher under the cells' protocol, the real-data floor and where its committed numbers are
    (once per teacher, data and sample count: OUT/teachers/<key>.json)."""
    s = SETTINGS[setting]
    key = teacher_key(setting, args.num_samples)
    path = out / "teachers" / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    log.info("teacher record %s", key)
    folder = resolve_model_path(s.teacher)
    ex = domain_extractor(setting, args.device)
    rec: dict = {"schema": SCHEMA, "kind": "teacher", "key": key, "teacher": portable_path(folder),
                 "eval_data": s.eval_data, "num_samples": args.num_samples, "extractor": ex.info(),
                 "command": _command(args)}  # fmt: skip
    for side in ("val", "test"):
        if s.i2i:
            rec[side] = score_i2i(folder, setting, side, args.num_samples, ex, args.device, self_teacher=True)
            continue
        rec[side] = score_noise(_teacher(setting, args.device), setting, side, args.num_samples, ex, args.device,
                                self_teacher=True)  # fmt: skip
        if s.eval_data:  # real images of the fit split against the side's split, same extractor
            fl = real_floor(f"{s.eval_data}:{side}", real=f"{s.eval_data}:fit", device=args.device,
                            quality=Quality(metrics=("fid", "kid"), num_samples=args.num_samples, extractor=ex))
            rec[side]["floor"] = {"fid_vs_data": fl["quality"]["fid"], "kid_vs_data": fl["quality"]["kid_mean"],
                                  "detail": fl}  # fmt: skip
    committed = folder / "metrics.json"
    if committed.exists():
        rec["committed_metrics"] = portable_path(committed)
    rec["fingerprint"] = fingerprint(args.device)
    save_result(rec, path)
    return rec


def same_run_as(setting: str, recipe: str) -> str | None:
    """The recipe listed earlier whose cell is this one's run: on a data-free setting ``real: teacher`` is what
    ``real: auto`` resolves to, so a recipe that differs from another only by it trains the same student bit for bit
    (:class:`gankd.distill.Distiller` resolves ``real`` once and reads nothing else of it)."""
    if SETTINGS[setting].data != "none":
        return None

    def plain_real(r: str) -> dict:
        return {k: v for k, v in RECIPES[r].items() if not (k == "real" and v in ("teacher", "auto"))}

    if RECIPES[recipe].get("real") != "teacher":
        return None
    names = list(RECIPES)
    return next((r for r in names[: names.index(recipe)] if plain_real(r) == plain_real(recipe)), None)


def unbound_cap_twin(setting: str, recipe: str, seed: int, args) -> str | None:
    """The uncapped twin of a capped recipe when the cap does not bind at this budget (the phase from
    ``adv_start`` is no longer than the cap): the same run bit for bit (see :func:`gankd.distill.adversarial_phase`).
    A wall budget (``--minutes``) has no known step count: None."""
    twin = uncapped_twin(recipe)
    if twin is None or getattr(args, "minutes", None):
        return None
    cfg = cell_config(setting, recipe, seed, args)
    return None if adv_cap_binds(cfg.steps, cfg.adv_start, cfg.adv_max_steps) else twin


def run_cell(setting: str, recipe: str, seed: int, args, out: Path) -> dict:
    """Train and score one cell unless its JSON exists (then it is returned as it is)."""
    name = cell_name(setting, recipe, budget_tag(args), seed)
    path = out / "cells" / f"{name}.json"
    if path.exists():
        log.info("kept %s", portable_path(path))
        return json.loads(path.read_text())
    alias = same_run_as(setting, recipe) or unbound_cap_twin(setting, recipe, seed, args)
    if alias is not None:  # the same training: its cell, under this recipe's name
        src = run_cell(setting, alias, seed, args, out)
        rec = {**src, "name": name, "recipe": recipe, "overrides": RECIPES[recipe], "same_run_as": src["name"],
               "command": cell_command(setting, recipe, seed, args), "invoked_as": _command(args)}  # fmt: skip
        save_result(rec, path)
        log.info("cell %s: the same run as %s", name, src["name"])
        return rec
    s = SETTINGS[setting]
    cfg = cell_config(setting, recipe, seed, args)
    run = Path(args.runs) / name
    teacher_record(setting, args, out)
    config = to_dict(cfg)  # as built: compress may adapt fields to the data (recorded in the run's config.json)
    tr = train(cfg, run)
    ran = json.loads((run / "config.json").read_text())
    changed = {k: ran[k] for k, v in config.items() if k in ran and ran[k] != v}
    t0 = time.monotonic()
    student = run / "student"
    ex = domain_extractor(setting, args.device)
    sides = score_sides(student, setting, args.num_samples, ex, args.device)
    teacher_dir = resolve_model_path(s.teacher)
    rec = {
        "schema": SCHEMA, "kind": "cell", "name": name, "setting": setting, "recipe": recipe, "seed": seed,
        "budget": {"minutes": args.minutes, "steps": cfg.steps if cfg.max_minutes == 0 else None,
                   "cost_minutes": getattr(args, "cost_minutes", None), "tag": budget_tag(args),
                   **({"calibrated_s_per_step": calibrated_steps(setting, recipe, args.cost_minutes, out)[1]}
                      if getattr(args, "cost_minutes", None) else {})},
        "teacher": portable_path(teacher_dir), "data": s.data, "eval_data": s.eval_data, "width": s.width,
        "i2i": s.i2i, "overrides": RECIPES[recipe], "config": config, "changed_by_run": changed,
        "train": tr,
        "val": sides["val"], "test": sides["test"], "extractor": ex.info(), "num_samples": args.num_samples,
        "efficiency": efficiency_of(student, args.device),
        "teacher_record": teacher_key(setting, args.num_samples),
        "score_s": round(time.monotonic() - t0, 1), "device": args.device, "threads": 1,
        "fingerprint": fingerprint(args.device), "command": cell_command(setting, recipe, seed, args),
        "invoked_as": _command(args), "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    rec["config"]["teacher"] = portable_path(teacher_dir)
    save_result(rec, path)
    log.info("cell %s: %d steps, %.3f s/step, test FID vs teacher %.4g, PSNR %.2f dB (scored in %.0f s)", name,
             tr["steps"], tr["s_per_step"], rec["test"]["fid_vs_teacher"], rec["test"]["psnr_to_teacher"],
             rec["score_s"])  # fmt: skip
    return rec


def _command(args) -> str:
    return shlex.join(["python", "benchmarks/recipes.py", *args.argv])


# --------------------------------------------------------------------------- the table
COLUMNS = [  # (header, side, key, digits)
    ("val FID vs T", "val", "fid_vs_teacher", 3),
    ("test FID vs T", "test", "fid_vs_teacher", 3),
    ("test PSNR→T dB", "test", "psnr_to_teacher", 2),
    ("test SSIM→T", "test", "ssim_to_teacher", 3),
    ("test FID vs data", "test", "fid_vs_data", 3),
]
I2I_COLUMNS = [("test PSNR→target dB", "test", "psnr_to_target", 2)]


def _recipe_order(recipe: str) -> tuple:
    names = list(RECIPES)
    return (names.index(recipe) if recipe in names else len(names), recipe)


def summarise(cells: list[dict]) -> list[dict]:
    """One row per (setting, budget, recipe): seeds, steps, s/step and every headline number over seeds."""
    groups: dict = {}
    for c in cells:
        groups.setdefault((c["setting"], c["budget"]["tag"], c["recipe"]), []).append(c)
    rows = []
    order = sorted(groups, key=lambda k: (k[0], k[1], _recipe_order(k[2])))
    for (setting, tag, recipe), cs in ((k, groups[k]) for k in order):
        row = {"setting": setting, "budget": tag, "recipe": recipe, "seeds": sorted(c["seed"] for c in cs),
               "num_samples": sorted({c["num_samples"] for c in cs}), "devices": sorted({c["device"] for c in cs}),
               "steps": stats([c["train"]["steps"] for c in cs]),
               "s_per_step": stats([c["train"]["s_per_step"] for c in cs]),
               "cells": [c["name"] for c in cs]}  # fmt: skip
        for side in ("val", "test"):
            keys = sorted({k for c in cs for k, v in c[side].items() if isinstance(v, (int, float))})
            row[side] = {k: stats([c[side].get(k) for c in cs]) for k in keys}
        rows.append(row)
    return rows


# The rule that picks gankd's default recipe, declared before the cells ran; it reads the val side only.
CHOICE_RULE = ("on the val side of every setting at the budget: the recipe's mean FID against teacher samples is "
               "below plain's and its mean PSNR to the teacher is at most 0.3 dB below plain's (image-to-image: "
               "the FID of its outputs against the teacher's outputs); among those, the lowest mean over settings "
               "of FID / plain's FID; ties by the higher mean PSNR gain. If no recipe meets both everywhere: the "
               "recipe that meets them on the most settings, then the lowest mean FID ratio")  # fmt: skip


# The teachers the choice is made on; the others (StyleGAN2-, FastGAN-style) are teachers the choice never saw,
# which check that it carries over
CHOICE_SETTINGS = ("fmnist", "wesnoth64-free", "wesnoth64-data", "restore64")


def choose(rows: list[dict], budget: str) -> dict:
    """Apply :data:`CHOICE_RULE` to the summary rows of ``budget`` (val numbers only) on :data:`CHOICE_SETTINGS`."""
    at = [r for r in rows if r["budget"] == budget]
    if any(r["setting"] in CHOICE_SETTINGS for r in at):  # the study's teachers (a test may bring its own)
        at = [r for r in at if r["setting"] in CHOICE_SETTINGS]
    settings = sorted({r["setting"] for r in at})
    val = {(r["setting"], r["recipe"]): r["val"] for r in at}
    recipes = sorted({r["recipe"] for r in at} - {"plain"})
    verdict = {}
    for recipe in recipes:
        per = {}
        for st in settings:
            me, base = val.get((st, recipe)), val.get((st, "plain"))
            if not me or not base or "fid_vs_teacher" not in me or "fid_vs_teacher" not in base:
                per[st] = None
                continue
            ratio = me["fid_vs_teacher"]["mean"] / base["fid_vs_teacher"]["mean"]
            dpsnr = me["psnr_to_teacher"]["mean"] - base["psnr_to_teacher"]["mean"]
            per[st] = {"fid_ratio_to_plain": ratio, "psnr_gain_db": dpsnr, "ok": ratio < 1 and dpsnr >= -0.3}
        complete = all(v is not None for v in per.values())
        verdict[recipe] = {"settings": per, "complete": complete,
                           "eligible": complete and all(v["ok"] for v in per.values()),
                           "mean_fid_ratio": (sum(v["fid_ratio_to_plain"] for v in per.values()) / len(per)
                                              if complete else None),
                           "mean_psnr_gain_db": (sum(v["psnr_gain_db"] for v in per.values()) / len(per)
                                                 if complete else None)}  # fmt: skip
    for v in verdict.values():
        v["settings_met"] = sum(bool(x and x["ok"]) for x in v["settings"].values())
    ok = [r for r, v in verdict.items() if v["eligible"]]
    fallback = not ok
    if fallback:  # nobody meets both everywhere: the most settings met, then the lowest mean FID ratio
        ok = [r for r, v in verdict.items() if v["complete"] and v["settings_met"] > 0]
        key = lambda r: (-verdict[r]["settings_met"], verdict[r]["mean_fid_ratio"])  # noqa: E731
    else:
        key = lambda r: (verdict[r]["mean_fid_ratio"], -verdict[r]["mean_psnr_gain_db"])  # noqa: E731
    best = min(ok, key=key) if ok else None
    return {"budget": budget, "split": "val", "rule": CHOICE_RULE, "settings": settings, "recipes": verdict,
            "chosen": best, "by_fallback": fallback and best is not None}


# How the per-budget choices above make one default, declared before the capped candidate's 20- and 40-minute cells
# ran: a default serves every budget, so it is the recipe that meets the test on the most (setting, budget) pairs
DEFAULT_RULE = ("over every budget's choice (val side, the study's teachers): the recipe that meets both conditions "
                "of the per-budget rule on the most (setting, budget) pairs; ties by the lowest mean FID / plain's "
                "FID over the pairs both ran")  # fmt: skip


def choose_default(choices: dict[str, dict]) -> dict:
    """Apply :data:`DEFAULT_RULE` to the per-budget choices (val numbers only)."""
    met: dict[str, int] = {}
    ratios: dict[str, dict] = {}
    for budget, c in choices.items():
        for recipe, v in c["recipes"].items():
            for setting, x in v["settings"].items():
                if x is not None:
                    met[recipe] = met.get(recipe, 0) + bool(x["ok"])
                    ratios.setdefault(recipe, {})[(budget, setting)] = x["fid_ratio_to_plain"]
    if not met:
        return {"rule": DEFAULT_RULE, "split": "val", "chosen": None, "pairs_met": {}}
    top = max(met.values())
    tied = [r for r in sorted(met) if met[r] == top]

    def mean_ratio(r: str) -> float:
        shared = set.intersection(*(set(ratios[t]) for t in tied))
        return sum(ratios[r][k] for k in shared) / max(1, len(shared))

    return {"rule": DEFAULT_RULE, "split": "val", "chosen": min(tied, key=mean_ratio), "pairs_met": met,
            "tied": tied}  # fmt: skip


def choose_data(rows: list[dict], teachers: dict[str, dict], setting: str = "fmnist", budget: str = "c20") -> dict:
    """Apply :data:`DATA_RULE` (val numbers only); the test side and the ratios to the teacher are reported beside."""
    at = {r["recipe"]: r for r in rows if r["setting"] == setting and r["budget"] == budget}

    def fid(recipe: str | None, side: str) -> float | None:
        s = at[recipe][side].get("fid_vs_data") if recipe in at else None
        return s["mean"] if s else None

    n = sorted({n for r in at.values() for n in r["num_samples"]})
    teacher = teachers.get(teacher_key(setting, n[0])) if len(n) == 1 else None
    default = compress_default()
    ran = [r for r in DATA_CANDIDATES if fid(r, "val") is not None]
    best = min(ran, key=lambda r: fid(r, "val")) if ran else None
    bars = [fid(r, "val") for r in ("plain", default)]
    worth = best is not None and all(b is not None and fid(best, "val") < b for b in bars)
    rec = {"rule": DATA_RULE, "split": "val", "setting": setting, "budget": budget, "chosen": best,
           "worth_a_preset": worth, "default": default, "rows": {}}  # fmt: skip
    def numbers(r: str, side: str) -> dict:
        return {"fid_vs_data": fid(r, side),
                "x_teacher": fid(r, side) / teacher[side]["fid_vs_data"] if teacher else None,
                "fid_vs_teacher": at[r][side]["fid_vs_teacher"]["mean"],
                "psnr_to_teacher": at[r][side]["psnr_to_teacher"]["mean"]}  # fmt: skip

    for r in ("plain", default, *DATA_CANDIDATES):
        if r in at:
            rec["rows"][r] = {"seeds": at[r]["seeds"], "val": numbers(r, "val"), "test": numbers(r, "test")}
    return rec


def _pm(s: dict | None, digits: int) -> str:
    if not s or s.get("mean") is None:
        return "–"
    text = f"{s['mean']:.{digits}f}"
    return text + (f" ± {s['std']:.{digits}f}" if s.get("std") is not None else "")


def _num(v, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def render(rows: list[dict], cells: list[dict], teachers: dict[str, dict], command: str) -> str:
    lines = ["# Distillation recipes at equal budget", "",
             "Each table: one teacher setting and budget; a row is a recipe (benchmarks/recipes.py `RECIPES`), mean "
             "± std over seeds. Choose on the val columns (seeds 1,000,000.. and 3,000,000.., the data's val split), "
             "report the test ones (seeds 0.. and 2,000,000.., the data's test split). T = the teacher: FID against "
             "its samples from other seeds, PSNR/SSIM to its images on the same latents (image-to-image: on the "
             "same test sources). One torch thread per run; s/step includes any validation the recipe runs.",
             ""]  # fmt: skip
    by_group: dict = {}
    for r in rows:
        by_group.setdefault((r["setting"], r["budget"]), []).append(r)
    for (setting, tag), rs in by_group.items():
        cs = [c for c in cells if c["setting"] == setting and c["budget"]["tag"] == tag]
        c0 = cs[0]
        budget = f"{c0['budget']['minutes']:g} min" if c0["budget"]["minutes"] else f"{c0['budget']['steps']} steps"
        cols = COLUMNS + (I2I_COLUMNS if c0["i2i"] else [])
        lines += [f"## {setting}: {c0['teacher']} → width {c0['width']:g}, data {c0['data']}, {budget}", "",
                  "| recipe | seeds | steps | s/step | " + " | ".join(h for h, *_ in cols) + " |",
                  "|---|---|---:|---:|" + "---:|" * len(cols)]  # fmt: skip
        for r in rs:
            vals = [_pm(r[side].get(key), d) for _, side, key, d in cols]
            lines.append(f"| {r['recipe']} | {','.join(map(str, r['seeds']))} | {_pm(r['steps'], 0)} | "
                         f"{_pm(r['s_per_step'], 3)} | " + " | ".join(vals) + " |")  # fmt: skip
        t = teachers.get(c0["teacher_record"])
        if t:
            tv = {("val", "fid_vs_teacher"): t["val"].get("fid_vs_teacher"),
                  ("test", "fid_vs_teacher"): t["test"].get("fid_vs_teacher"),
                  ("test", "fid_vs_data"): t["test"].get("fid_vs_data"),
                  ("test", "psnr_to_target"): t["test"].get("psnr_to_target")}  # fmt: skip
            lines.append("| *teacher* | | | | " + " | ".join(_num(tv.get((side, key)), d) for _, side, key, d in cols)
                         + " |")  # fmt: skip
            notes = []
            if not c0["i2i"]:
                notes.append("teacher row: its samples against its own samples from the other seed block (the floor "
                             "of FID vs T) and against the data")  # fmt: skip
                fl = t["test"].get("floor")
                if fl:
                    notes.append(f"real-data floor ({c0['eval_data']}:fit vs :test): FID {fl['fid_vs_data']:.3f}")
            else:
                notes.append(f"teacher row: its outputs against the targets; the degraded sources themselves score "
                             f"PSNR {t['test']['source_psnr_to_target']:.2f} dB to the targets")  # fmt: skip
            if t.get("committed_metrics"):
                notes.append(f"the teacher's committed numbers: `{t['committed_metrics']}`")
            lines += ["", "; ".join(notes) + "."]
        ex = c0["extractor"]
        lines += ["", f"Extractor: `{ex['extractor']}` ({ex['extractor_reason']}); {c0['num_samples']} samples per "
                  f"side. A cell's command, e.g.: `{c0['command']}`.", ""]  # fmt: skip
    lines += [f"Rendered by `{command}` from the cell JSONs beside this file (cells/*.json).", ""]
    return "\n".join(lines)


def compress_default() -> str | None:
    """The recipe ``gankd compress`` runs with no flag: the one whose overrides build :class:`DistillConfig`'s
    defaults (``default`` itself, the defaults of whatever version ran its cells, is left out)."""
    want = dataclasses.asdict(DistillConfig())
    return next((r for r, o in RECIPES.items() if r != "default" and dataclasses.asdict(DistillConfig(**o)) == want),
                None)  # fmt: skip


def write_table(out: Path, command: str) -> str:
    cells = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    if not cells:
        raise SystemExit(f"no cell in {portable_path(out / 'cells')}: run some cells first (see --help)")
    teachers = {p.stem: json.loads(p.read_text()) for p in sorted((out / "teachers").glob("*.json"))}
    rows = summarise(cells)
    md = render(rows, cells, teachers, command)
    res = {"schema": SCHEMA, "kind": "results", "command": command, "recipes": RECIPES,
           "settings": {k: dataclasses.asdict(v) for k, v in SETTINGS.items()},
           "seed_blocks": {side: {k: f"{v}.." for k, v in s.items()} for side, s in SEEDS.items()},
           "rows": rows, "cells": {c["name"]: {k: c.get(k) for k in ("setting", "recipe", "seed", "budget", "train",
                                                                     "val", "test", "command", "same_run_as")}
                                   for c in cells},
           "teachers": teachers, "tabulated_on": fingerprint(), "compress_default": compress_default(),
           "uncapped_twins": {r: t for r in RECIPES if (t := uncapped_twin(r))},
           "choice": {b: choose(rows, b) for b in sorted({r["budget"] for r in rows})}}  # fmt: skip
    res["default_choice"] = choose_default(res["choice"])
    res["data_choice"] = choose_data(rows, teachers)
    _strip_detail(res)
    for b, c in res["choice"].items():
        md += (f"\n## Choice at {b} (val split only)\n\nRule: {c['rule']}.\n\n| recipe | complete | eligible | "
               "mean FID / plain | mean PSNR gain (dB) |\n|---|---|---|---|---|\n")
        for r, v in c["recipes"].items():
            md += (f"| {r} | {'yes' if v['complete'] else 'no'} | {'yes' if v['eligible'] else 'no'} | "
                   f"{_num(v['mean_fid_ratio'], 3)} | {_num(v['mean_psnr_gain_db'], 2)} |\n")
        md += f"\nChosen: **{c['chosen'] or 'none'}**" + (" (by the fallback)" if c["by_fallback"] else "") + "\n"
    d = res["default_choice"]
    md += (f"\n## The default over every budget (val split only)\n\nRule: {d['rule']}.\n\n"
           + "".join(f"- {r}: {n} pairs met\n" for r, n in sorted(d["pairs_met"].items(), key=lambda x: -x[1]))
           + f"\nChosen: **{d['chosen'] or 'none'}**\n")  # fmt: skip
    c = res["data_choice"]
    md += (f"\n## For FID against the data ({c['setting']}, {c['budget']}; val chooses)\n\nRule: {c['rule']}.\n\n"
           "| recipe | seeds | val FID vs data (x teacher) | test FID vs data (x teacher) | test FID vs T | test "
           "PSNR→T |\n|---|---|---|---|---|---|\n")  # fmt: skip
    for r, v in c["rows"].items():
        fids = [f"{_num(v[s]['fid_vs_data'], 2)} ({_num(v[s]['x_teacher'], 2)}x)" for s in ("val", "test")]
        cols = [r, ", ".join(map(str, v["seeds"])), *fids, _num(v["test"]["fid_vs_teacher"], 2),
                _num(v["test"]["psnr_to_teacher"], 2)]  # fmt: skip
        md += "| " + " | ".join(cols) + " |\n"
    verdict = "" if c["chosen"] is None else (" (worth a preset)" if c["worth_a_preset"] else
                                              " (not below both the default and plain: no preset)")  # fmt: skip
    md += f"\nChosen: **{c['chosen'] or 'none'}**{verdict}\n"
    save_result(res, out / "results.json")
    atomic_write_bytes(out / "RESULTS.md", md.encode())
    return md


def _strip_detail(obj) -> None:
    """results.json keeps the headline numbers; the full protocols stay in the cell and teacher JSONs."""
    if isinstance(obj, dict):
        obj.pop("detail", None)
        for v in obj.values():
            _strip_detail(v)
    elif isinstance(obj, list):
        for v in obj:
            _strip_detail(v)


# --------------------------------------------------------------------------- CLI
def _names(text: str, known: dict, flag: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in names if x not in known]
    if bad or not names:
        raise SystemExit(f"{flag}: unknown {bad or names}; choose from {', '.join(known)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default="fmnist", help=f"teacher settings: {', '.join(SETTINGS)}")
    ap.add_argument("--recipes", default=",".join(RECIPES), help=f"recipes: {', '.join(RECIPES)}")
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="wall budget per cell (max_minutes; the steps never bind)")
    budget.add_argument("--steps", type=int, help="steps per cell (no wall cap): device-independent reruns")
    budget.add_argument("--cost-minutes", type=float, help="calibrated wall budget: M minutes at the recipe's "
                        "measured seconds per step (--calibrate), run as steps")
    ap.add_argument("--anchor", help="with --calibrate: price the recipes against this already-calibrated recipe, "
                    "timed interleaved with them (cost = its committed cost x the measured ratio)")
    ap.add_argument("--calibrate", action="store_true", help="time each recipe's step interleaved on each setting "
                    "(one thread) into OUT/step_cost.json, then stop")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--num-samples", type=int, default=2000, help="samples per side and score (default 2000)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", default=str(RUNS), help="run folders (default runs/recipes)")
    ap.add_argument("--out", default=str(OUT), help="cells, teacher records, RESULTS.md, results.json")
    ap.add_argument("--table", action="store_true", help="train nothing: render RESULTS.md and results.json")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not (args.table or args.calibrate) and not (args.minutes or args.steps or args.cost_minutes):
        ap.error("give a budget: --minutes M, --cost-minutes M or --steps N (or --table, or --calibrate)")
    if any(v is not None and v <= 0 for v in (args.minutes, args.cost_minutes)) or (args.steps is not None
                                                                                     and args.steps < 1):
        ap.error("--minutes and --cost-minutes must be > 0 and --steps >= 1")
    seed_blocks(args.num_samples)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    out = Path(args.out)
    if args.calibrate:
        calibrate(_names(args.settings, SETTINGS, "--settings"), _names(args.recipes, RECIPES, "--recipes"), args, out,
                  anchor=args.anchor and _names(args.anchor, RECIPES, "--anchor")[0])
        return 0
    if not args.table:
        settings = _names(args.settings, SETTINGS, "--settings")
        recipes = _names(args.recipes, RECIPES, "--recipes")
        seeds = [int(s) for s in args.seeds.split(",")]
        for setting in settings:
            for seed in seeds:
                for recipe in recipes:
                    run_cell(setting, recipe, seed, args, out)
                    write_table(out, _command(args))  # the table so far, after every cell
    print(write_table(out, _command(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
