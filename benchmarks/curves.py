"""Quality-vs-time curves on Fashion-MNIST: does the student-teacher gap close with time, and
which recipe closes it first?

For each recipe (full, pixel, scratch; see benchmarks/matrix.py) and width, ONE long run per
seed saves its EMA student as it is at fixed wall-clock points (``--snapshot-minutes``: no
checkpoint selection, so the curves do not depend on the selection rule), and every
snapshot is scored on the test split (evaluator FID, 10k samples from seeds 0..). The
teacher's FID and the real-data floor are drawn as lines; time-to-teacher-quality is the
first point within 10 % of the teacher's FID, given in minutes and in student steps as a
fraction of the teacher's training steps.

    python benchmarks/curves.py                                  # 2.5,5,10,20 min; w1/4, 1/8; 1 seed
    python benchmarks/curves.py --points 5,10,20,40,80 --seeds 0,1,2 --widths 0.25

Each run trains on ONE CPU thread (run one curve at a time on a 2-core machine, or two with
``--shard``); resumable: a killed run resumes from its checkpoint (snapshots already written
are kept), scored snapshots (cells/*.json) are not scored again.

Writes --out/results.json (every point, the commands, the machine), RESULTS.md and curves.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import sys
import time
from pathlib import Path

from matrix import RECIPES, parse_shard, recipe_config, teacher_sha, train_scratch  # noqa: E402

from gankd.checkpoint import WEIGHTS, atomic_write_bytes, resolve_model_path  # noqa: E402
from gankd.distill import compress  # noqa: E402
from gankd.evaluate import Quality, evaluate, save_result  # noqa: E402
from gankd.fileio import portable_path  # noqa: E402
from gankd.loop import snapshot_dir  # noqa: E402
from gankd.metrics.efficiency import fingerprint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WITHIN = 1.10  # "teacher quality": FID within 10 % of the teacher's
# recipe levers, each one change against the full recipe on the same curve: --recipes full+cosine,...;
# levers stack left to right (full+lr8x-cosine+fresh-d: one change against full+lr8x-cosine)
LEVERS = {
    "cosine": {"lr_schedule": "cosine"},  # both learning rates decay to 0 over the run
    "dfeat": {"d_feat": 1.0},  # feature matching through the discriminator (DCD-style)
    "fresh-d": {"d_init": "fresh"},  # a new discriminator instead of the teacher's
    "batch128": {"batch_size": 128},  # twice the batch
    "perc0": {"perceptual": 0.0, "kd": 0.0},  # no perceptual and KD terms
    "lr2x": {"lr_g": 4e-4},  # twice the student's learning rate (D's unchanged)
    "lr4x": {"lr_g": 8e-4},  # four times the student's learning rate
    "lr8x": {"lr_g": 1.6e-3},  # eight times
    "lr8x-cosine": {"lr_g": 1.6e-3, "lr_schedule": "cosine"},  # eight times, decayed to 0 over the run's budget
    "adv-late": {"adv_warmup": 0.5},  # loss-weight schedule: the adversarial weight ramps up over the first half
    "freeze-d": {"d_freeze": 2},  # the teacher D's first two blocks frozen (FreezeD)
}
# the levers that also apply to the pixel-only recipe (it has no discriminator, perceptual or KD term):
# --recipes pixel+lr8x-cosine puts it on the same schedule as full+lr8x-cosine
PIXEL_LEVERS = ("cosine", "batch128", "lr2x", "lr4x", "lr8x", "lr8x-cosine")
# iterative prune-and-distill: the student is pruned from a wider full-recipe run's snapshot (same seed)
# instead of the teacher; its points sit at the parent's time and steps plus its own
PARENTS = {"from-w0.5": (0.5, 5.0)}  # lever: (parent width, parent snapshot minutes)


def levers_of(recipe: str) -> list[str]:
    """The levers of a recipe name, in order: full+lr8x-cosine+fresh-d -> [lr8x-cosine, fresh-d]."""
    return recipe.split("+")[1:]


def lever_overrides(recipe: str) -> dict:
    """The config changes of a recipe's levers, later levers winning."""
    out: dict = {}
    for lever in levers_of(recipe):
        out.update(LEVERS.get(lever, {}))
    return out


def known_recipe(recipe: str) -> bool:
    """A base recipe with levers it takes (at most one iterative parent)."""
    base, levers = recipe.split("+")[0], levers_of(recipe)
    allowed = {"full": {**LEVERS, **PARENTS}, "pixel": PIXEL_LEVERS}.get(base, ())
    return base in RECIPES and all(lv in allowed for lv in levers) and sum(lv in PARENTS for lv in levers) <= 1


def parent_snapshot(args, recipe: str, seed: int) -> tuple[Path, dict] | None:
    """The parent snapshot of an iterative lever and its time and steps, or None."""
    parents = [lv for lv in levers_of(recipe) if lv in PARENTS]
    if not parents:
        return None
    width, minutes = PARENTS[parents[0]]
    snap = snapshot_dir(Path(args.runs) / run_name("full", width, seed), minutes)
    if not (snap / WEIGHTS).exists():
        raise SystemExit(f"{recipe} starts from {snap}, which does not exist: run the width-{width:g} full curve "
                         f"to {minutes:g} min first (--widths {width:g} --recipes full --points {minutes:g})")
    meta = json.loads((snap / "config.json").read_text())
    return snap, {"minutes": minutes, "steps": meta["trained_steps"], "snapshot": portable_path(snap)}
# no selection (the snapshot is the model as it is), no validation inside the budget
CURVE_RUN = dict(select="last", eval_every=0)


def run_name(recipe: str, width: float, seed: int) -> str:
    return f"w{width:g}_{recipe}_s{seed}"


def train_curve(args, teacher_dir: Path, recipe: str, width: float, seed: int) -> Path:
    """One long run with snapshots at ``args.points`` minutes. A run that has every requested
    snapshot is skipped; a finished run asked for later points resumes from its checkpoint and
    trains on to them (earlier snapshots are kept as they are: the curve is one run)."""
    run = Path(args.runs) / run_name(recipe, width, seed)
    minutes, points = max(args.points), tuple(args.points)
    missing = [m for m in points if not (snapshot_dir(run, m) / WEIGHTS).exists()]
    done = json.loads((run / "DONE").read_text()) if (run / "DONE").exists() else {}
    if done and done.get("teacher_sha256") != teacher_sha(teacher_dir):
        raise SystemExit(f"{run} was trained from another teacher: move --runs away or pick a new one")
    if done and not missing:
        return run
    if done and any("cosine" in lv for lv in levers_of(recipe)):
        raise SystemExit(f"{run}: a decaying schedule cannot be extended to later points (its decay spans the "
                         "first budget): pick another --runs for the longer curve")  # fmt: skip
    t0 = time.monotonic()
    if recipe == "scratch":
        train_scratch(teacher_dir, width, seed, minutes, run, args.device, snapshot_minutes=points, **CURVE_RUN)
    else:
        base = recipe.split("+")[0]
        parent = parent_snapshot(args, recipe, seed)
        extra = {**lever_overrides(recipe), **({"init_from": str(parent[0])} if parent else {})}
        cfg = recipe_config(base, str(teacher_dir), width, seed, minutes, args.device, snapshot_minutes=points,
                            checkpoint_every=250, sample_every=10**6, **CURVE_RUN, **extra)  # fmt: skip
        compress(cfg, run, resume=(run / "state.pt").exists())
    missing = [m for m in points if not (snapshot_dir(run, m) / WEIGHTS).exists()]
    if missing:
        raise SystemExit(f"{run}: no snapshot at {missing} min although the budget was spent (killed?): rerun")
    done = {"train_wall_s": round(done.get("train_wall_s", 0.0) + time.monotonic() - t0, 1),
            "teacher_sha256": teacher_sha(teacher_dir), "points_minutes": list(points)}  # fmt: skip
    atomic_write_bytes(run / "DONE", json.dumps(done).encode())
    return run


def score_point(args, teacher_dir: Path, recipe: str, width: float, seed: int, minutes: float) -> dict:
    name = f"{run_name(recipe, width, seed)}_t{minutes:g}"
    path = Path(args.out) / "cells" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    snap = snapshot_dir(Path(args.runs) / run_name(recipe, width, seed), minutes)
    r = evaluate(snap, quality=Quality(("fid",), args.num_samples), role=recipe, device=args.device,
                 command=" ".join(map(shlex.quote, sys.argv)))  # fmt: skip
    meta = json.loads((snap / "config.json").read_text())
    r["curve"] = {"recipe": recipe, "width": width, "seed": seed, "minutes": minutes,
                  "wall_s": meta["snapshot"]["wall_s"], "steps": meta["trained_steps"],
                  "snapshot": portable_path(snap)}  # fmt: skip
    parent = parent_snapshot(args, recipe, seed)
    if parent:  # the curve counts the parent's training too
        r["curve"].update(own_minutes=minutes, own_steps=r["curve"]["steps"], parent=parent[1],
                          minutes=minutes + parent[1]["minutes"], steps=r["curve"]["steps"] + parent[1]["steps"])
    save_result(r, path)
    return r


def teacher_reference(teacher_dir: Path) -> dict:
    """The teacher's test FID, the floor and its training steps, from its committed metrics.json
    (written by benchmarks/pretrained_cards.py under the same protocol)."""
    m = json.loads((teacher_dir / "metrics.json").read_text())
    return {"fid": m["quality"]["fid"], "floor_fid": m["real_floor"]["quality"]["fid"],
            "train_steps": m["training"]["steps"], "train_wall_minutes": m["training"]["wall_minutes"],
            "train_device": "the device its MODEL_CARD.md names",
            "source": portable_path(teacher_dir / "metrics.json")}  # fmt: skip


def summarise(points: list[dict], teacher: dict) -> dict:
    """Per recipe and width: FID mean/std over seeds at each minute, and time-to-teacher-quality."""
    groups: dict = {}
    for r in points:
        c = r["curve"]
        groups.setdefault((c["recipe"], c["width"]), {}).setdefault(c["minutes"], []).append(r)
    out = {}
    for (recipe, width), by_min in sorted(groups.items()):
        rows = []
        for m in sorted(by_min):
            fids = [x["quality"]["fid"] for x in by_min[m]]
            steps = [x["curve"]["steps"] for x in by_min[m]]
            fid = statistics.mean(fids)
            rows.append({"minutes": m, "fid_mean": fid, "fid_std": statistics.stdev(fids) if len(fids) > 1 else 0.0,
                         "seeds": len(fids), "steps_mean": statistics.mean(steps),
                         "fid_over_teacher": fid / teacher["fid"],
                         "steps_over_teacher": statistics.mean(steps) / teacher["train_steps"]})  # fmt: skip
        reached = next((x for x in rows if x["fid_mean"] <= WITHIN * teacher["fid"]), None)
        out[f"w{width:g} {recipe}"] = {
            "recipe": recipe, "width": width, "points": rows,
            "time_to_teacher_quality": None if reached is None else {
                "minutes": reached["minutes"], "steps": reached["steps_mean"],
                "fraction_of_teacher_steps": reached["steps_over_teacher"]},
            "trend_last_two": None if len(rows) < 2 else rows[-1]["fid_mean"] - rows[-2]["fid_mean"],
            # how much FID falls per interval (x = earlier / later FID): a ratio sinking towards 1 while
            # FID is still above the teacher's says more time alone will not close the gap
            "fid_ratio_per_interval": [{"from": a["minutes"], "to": b["minutes"], "x": a["fid_mean"] / b["fid_mean"]}
                                       for a, b in zip(rows, rows[1:])],
        }  # fmt: skip
    return out


def render(summary: dict, teacher: dict, note: str) -> str:
    lines = ["# Quality-vs-time curves (Fashion-MNIST, evaluator FID on the test split)", ""]
    if note:
        lines += [note, ""]
    lines += [f"Teacher FID {teacher['fid']:.2f} (10 % band: {WITHIN * teacher['fid']:.2f}), real floor "
              f"{teacher['floor_fid']:.3f}; the teacher trained {teacher['train_steps']} steps "
              f"({teacher['train_wall_minutes']:g} min; device: see its MODEL_CARD.md).", "",
              "| curve | minutes | steps | steps / teacher's | FID (mean ± std) | x teacher |",
              "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, g in summary.items():
        for p in g["points"]:
            lines.append(f"| {name} | {p['minutes']:g} | {p['steps_mean']:.0f} | {p['steps_over_teacher']:.3f} | "
                         f"{p['fid_mean']:.2f} ± {p['fid_std']:.2f} ({p['seeds']}) | {p['fid_over_teacher']:.2f} |")
    lines += ["", "## Time to teacher quality (first point within 10 % of the teacher's FID)", ""]
    for name, g in summary.items():
        t = g["time_to_teacher_quality"]
        trend = g["trend_last_two"]
        slope = "" if trend is None else f"; last interval changed FID by {trend:+.2f}"
        if g.get("fid_ratio_per_interval"):
            slope += "; FID fell " + ", ".join(f"{r['x']:.2f}x ({r['from']:g}->{r['to']:g} min)"
                                             for r in g["fid_ratio_per_interval"])  # fmt: skip
        lines.append(f"- {name}: " + ("not reached within the measured time" if t is None else
                     f"{t['minutes']:g} min, {t['steps']:.0f} steps = {t['fraction_of_teacher_steps']:.2f} of the "
                     "teacher's steps") + slope)  # fmt: skip
    return "\n".join(lines) + "\n"


def fid_figure():
    """A figure for FID against a budget (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5))


def save_fid_figure(fig, ax, xlabel: str, path: Path) -> None:
    """Log FID axis, labels, legend and grid; the PNG written atomically."""
    import io

    import matplotlib.pyplot as plt

    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("FID (evaluator, test split, 10k)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())
    plt.close(fig)


def write_study(out: Path, result: dict, table: str, draw, png: str) -> None:
    """A study's results.json, its RESULTS.md table (also printed) and its figure ``draw(out / png)``."""
    save_result(result, out / "results.json")
    atomic_write_bytes(out / "RESULTS.md", table.encode())
    draw(out / png)
    print(table)


def plot(summary: dict, teacher: dict, path: Path) -> None:
    fig, ax = fid_figure()
    for name, g in summary.items():
        xs = [p["minutes"] for p in g["points"]]
        ax.errorbar(xs, [p["fid_mean"] for p in g["points"]], yerr=[p["fid_std"] for p in g["points"]],
                    marker="o", capsize=3, label=name)  # fmt: skip
    ax.axhline(teacher["fid"], color="k", ls="--", lw=1, label=f"teacher {teacher['fid']:.2f}")
    ax.axhline(WITHIN * teacher["fid"], color="k", ls=":", lw=1, label="teacher + 10 %")
    ax.axhline(teacher["floor_fid"], color="gray", ls="-.", lw=1, label=f"real floor {teacher['floor_fid']:.2f}")
    # the teacher's own training, in student time: where the longest full-recipe curve reaches 25 % and
    # 100 % of the teacher's training steps at its own pace (steps per minute of its last point)
    full = max((g for g in summary.values() if g["recipe"] == "full"), key=lambda g: g["points"][-1]["minutes"],
               default=None)  # fmt: skip
    if full:
        last = full["points"][-1]
        pace = last["steps_mean"] / last["minutes"]
        for frac, ls in ((0.25, ":"), (1.0, "--")):
            label = f"{frac:.0%} of the teacher's {teacher['train_steps']:,} steps (w{full['width']:g} full pace)"
            ax.axvline(frac * teacher["train_steps"] / pace, color="tab:red", ls=ls, lw=1, label=label)
    ax.set_xscale("log", base=2)
    save_fid_figure(fig, ax, "student training wall time, minutes (1 CPU thread)", path)


def add_study_args(ap: argparse.ArgumentParser, name: str) -> None:
    """The flags a study of students of the shipped teacher shares: samples, teacher, device, a
    note for its table, and where its results (benchmarks/results/NAME) and runs (runs/NAME) go."""
    ap.add_argument("--num-samples", type=int, default=10000)
    ap.add_argument("--teacher", default="fmnist-teacher")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / name))
    ap.add_argument("--runs", default=str(ROOT / "runs" / name))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", default="2.5,5,10,20", help="wall-clock minutes of the snapshots")
    ap.add_argument("--widths", default="0.25,0.125")
    ap.add_argument("--recipes", default=",".join(RECIPES), help="scratch, pixel, full, full+LEVER "
                    f"and pixel+LEVER ({', '.join(PIXEL_LEVERS)}); levers stack (full+lr8x-cosine+fresh-d); LEVER: "
                    + ", ".join(f"{k} ({', '.join(f'{a}={b}' for a, b in v.items())})" for k, v in LEVERS.items())
                    + ", " + ", ".join(f"{k} (pruned from the width-{w:g} full run at {m:g} min)"
                                       for k, (w, m) in PARENTS.items()))
    ap.add_argument("--seeds", default="0", help="seeds of the first width (the headline); others use the first")
    ap.add_argument("--shard", default="0/1", help="K/N: train only every N-th run from K")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--score-only", action="store_true", help="train nothing: score (and tabulate) the snapshots "
                    "that the listed runs already have at --points (runs trained to different lengths in one table)")
    add_study_args(ap, "curves")
    args = ap.parse_args(argv)
    args.points = sorted(float(v) for v in args.points.split(","))
    widths = [float(w) for w in args.widths.split(",")]
    recipes = args.recipes.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    bad = [r for r in recipes if not known_recipe(r)]
    if bad:
        raise SystemExit(f"--recipes: unknown {bad}; choose from {', '.join(RECIPES)}, full+LEVER with LEVER one "
                         f"of {', '.join({**LEVERS, **PARENTS})}, or pixel+LEVER with LEVER one of "
                         f"{', '.join(PIXEL_LEVERS)} (levers stack: full+lr8x-cosine+fresh-d)")  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    teacher_dir = resolve_model_path(args.teacher)
    runs = [(r, w, s) for w in widths for r in recipes for s in (seeds if w == widths[0] else seeds[:1])]
    k, n = parse_shard(args.shard)
    if args.score_only:
        runs = [x for x in runs if (Path(args.runs) / run_name(*x) / "DONE").exists()]
        if not runs:
            raise SystemExit(f"--score-only: no finished run of these recipes and widths in {args.runs}")
    else:
        for i, (r, w, s) in enumerate(runs):
            if i % n == k:
                train_curve(args, teacher_dir, r, w, s)
    if args.train_only or n > 1:
        return 0
    (Path(args.out) / "cells").mkdir(parents=True, exist_ok=True)
    points = [score_point(args, teacher_dir, r, w, s, m) for r, w, s in runs for m in args.points
              if (snapshot_dir(Path(args.runs) / run_name(r, w, s), m) / WEIGHTS).exists()]
    teacher = teacher_reference(teacher_dir)
    summary = summarise(points, teacher)
    out = Path(args.out)
    result = {"schema": "gankd.curves/1", "teacher": teacher, "points_minutes": args.points,
              "runs": [{"recipe": r, "width": w, "seed": s, "run": portable_path(Path(args.runs) / run_name(r, w, s)),
                        **json.loads((Path(args.runs) / run_name(r, w, s) / "DONE").read_text())} for r, w, s in runs],
              "curves": summary, "command": " ".join(map(shlex.quote, sys.argv)),
              "fingerprint": fingerprint(args.device), "threads_per_run": 1}  # fmt: skip
    write_study(out, result, render(summary, teacher, args.note), lambda png: plot(summary, teacher, png), "curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
