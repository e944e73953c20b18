"""Ship distilled students in pretrained/ with model cards, so that `gankd sample` and `gankd eval`
work on them without retraining.

    python benchmarks/ship_students.py   # --pick WIDTH:MINUTES[:RECIPE[:RUNS]],... (default: what is shipped)

Each shipped student is a snapshot of a quality-vs-time run (benchmarks/curves.py, seed 0):
``--pick WIDTH:MINUTES[:RECIPE[:RUNS]]`` names the run (recipe ``--recipe`` when the pick names
none; RUNS a folder under runs/ holding it, default ``--runs``: a decaying schedule's longer
budget lives in its own folder under the same run name) and the snapshot (the model as it was
after that much training wall time: no checkpoint selection). The snapshot is copied to
``pretrained/fmnist-student-w<WIDTH>`` and measured with gankd's own code under the teacher's
protocol (evaluator FID/IS/KID/precision/recall on 10k samples vs the test split, class
consistency, PSNR/SSIM to the teacher, params/MACs, eager and ONNX Runtime speed timed
interleaved with the teacher). The card also quotes the curve's FID mean ± std over seeds at
that point, from the curves results that list this very run, when they hold more than one
seed. Writes metrics.json and MODEL_CARD.md per folder.

``--budget-pick WIDTH:FRACTION:RECIPE[:SEED]`` ships the final student of a step-budget cell
(benchmarks/step_budget.py: a run whose schedule spans FRACTION of the teacher's steps, no
selection), quoting that cell's FID mean ± std over seeds from its results.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

import torch

from gankd.checkpoint import CONFIG, WEIGHTS, atomic_write_bytes, pretrained_dir, replace_folder
from gankd.config import load_json
from gankd.evaluate import Quality, Speed, evaluate, save_result
from gankd.fileio import file_sha256, portable_path
from gankd.loop import snapshot_dir

ROOT = Path(__file__).resolve().parents[1]
# what is shipped: width 1/2 from the full recipe at 20 min, 1/4 from full+lr8x-cosine over a 60-min budget
# (its runs in runs/curves_cos60), 1/8 from the step-budget cell at 75 % of the teacher's steps whose run is
# on this machine (seed 2; seeds 0 and 1 ran on a lent GPU)
DEFAULT_PICK = "0.5:20,0.25:60:full+lr8x-cosine:curves_cos60"
DEFAULT_BUDGET_PICK = "0.125:0.75:full+lr8x-cosine+perc0:2"


def shipped_name(width: float) -> str:
    return f"fmnist-student-w{width:g}".replace(".", "")


def parse_pick(text: str, recipe: str = "full") -> list[tuple[float, float, str, str | None]]:
    """WIDTH:MINUTES[:RECIPE[:RUNS]],... -> (width, minutes, recipe, runs folder or None)."""
    try:
        parts = [x.split(":") for x in text.split(",")]
        if any(len(p) not in (2, 3, 4) or not all(p) for p in parts):
            raise ValueError
        out = [(float(p[0]), float(p[1]), p[2] if len(p) > 2 else recipe, p[3] if len(p) > 3 else None)
               for p in parts]  # fmt: skip
    except ValueError:
        raise SystemExit("--pick: expected WIDTH:MINUTES[:RECIPE[:RUNS]][,...] such as 0.25:40:full+lr8x or "
                         f"0.25:60:full+lr8x-cosine:curves_cos60, got '{text}'") from None  # fmt: skip
    return out


def copy_snapshot(snap: Path, dest: Path) -> None:
    """config.json + model.safetensors of the snapshot into ``dest``, replacing it as a whole."""
    if not (snap / WEIGHTS).exists():
        raise SystemExit(f"{snap} holds no {WEIGHTS}: train it first (python benchmarks/curves.py ...)")
    meta = load_json(snap / CONFIG)
    meta["shipped_from"] = portable_path(snap)

    def fill(tmp: Path) -> None:
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
        shutil.copy2(snap / WEIGHTS, tmp / WEIGHTS)

    replace_folder(dest, fill, carry_over=False)


def parse_budget_pick(text: str) -> list[tuple[float, float, str, int | None]]:
    """WIDTH:FRACTION:RECIPE[:SEED],... -> (width, fraction, recipe, seed or None)."""
    try:
        parts = [x.split(":") for x in text.split(",")]
        if any(len(p) not in (3, 4) or not all(p) for p in parts):
            raise ValueError
        return [(float(p[0]), float(p[1]), p[2], int(p[3]) if len(p) > 3 else None) for p in parts]
    except ValueError:
        raise SystemExit("--budget-pick: expected WIDTH:FRACTION:RECIPE[:SEED][,...] such as "
                         f"0.125:0.75:full+lr8x-cosine+perc0:2, got '{text}'") from None  # fmt: skip


def budget_point(results: dict, recipe: str, width: float, fraction: float) -> dict | None:
    """The step-budget row of this recipe, width and fraction: FID mean ± std over its seeds."""
    for r in results.get("rows", []):
        if (r["recipe"], r["width"], r["fraction"]) == (recipe, width, fraction):
            return {"seeds": len(r["fids"]), "fid_mean": r["fid_mean"], "fid_std": r["fid_std"],
                    "results": results.get("source")}  # fmt: skip
    return None


def curve_point(curves: list[dict], run: str, recipe: str, width: float, minutes: float) -> dict | None:
    """The point at ``minutes`` of the first curves results that list ``run`` (a portable path)
    among their runs: a curve is named by recipe and width, so only the run tells a 40-minute
    cosine from a 60-minute one."""
    for c in curves:
        if run not in {r.get("run") for r in c.get("runs", [])}:
            continue
        g = c.get("curves", {}).get(f"w{width:g} {recipe}")
        p = next((p for p in (g or {}).get("points", []) if p["minutes"] == minutes), None)
        if p:
            return {**p, "results": c.get("source")}
    return None


def card(name: str, m: dict) -> str:
    e, c = m["efficiency"], m["curve"]
    pt = c.get("curve_point")
    seeds = "" if not pt or pt["seeds"] < 2 else (
        f" Over {pt['seeds']} seeds of the same recipe at this point: FID {pt['fid_mean']:.2f} ± {pt['fid_std']:.2f}.")
    where = (f"the final student of a step-budget run whose schedule spans {c['fraction']:.0%} of the teacher's "
             f"steps" if c.get("fraction") else f"the snapshot of a quality-vs-time run after {c['minutes']:g} min of "
             "training wall time")  # fmt: skip
    lines = [
        f"# {name}", "",
        f"A width-{c['width']:g} student of `fmnist-teacher` distilled by gankd's `{c['recipe']}` recipe: {where} "
        "(no checkpoint selection).", "",
        f"- Family: `dcgan` generator, class-conditional (10 classes), 32x32 gray, stage channels "
        f"{m['model_info'].get('feature_channels')}; pruned from the teacher by L1 channel norm, then distilled.",
        f"- Size: {e['params']:,} parameters, {e['macs'] / 1e6:.2f} M MACs per image "
        f"(teacher: {m['teacher_efficiency']['params']:,} and {m['teacher_efficiency']['macs'] / 1e6:.1f} M).",
        f"- Training: {c['steps']} steps in {c['minutes']:g} min on one CPU thread of a 2-core machine (another "
        f"training on the other core) = {c['steps'] / m['teacher_steps']:.2f} of the teacher's "
        f"{m['teacher_steps']:,} steps. Command: "
        f"`{c['train_command']}` (run `{c['run']}`).",
        "", "## Measured (`python benchmarks/ship_students.py`)", "",
        *_quality_rows(m), "",
        f"Single model, seed {c['seed']}.{seeds}", "",
        *_tail_lines(m),
    ]  # fmt: skip
    return "\n".join(lines)


def _quality_rows(m: dict) -> list[str]:
    """The card's protocol line and its student-vs-teacher quality table."""
    q, cc = m["quality"], m.get("class_consistency", {})
    t = m["teacher_quality"]
    return [f"Protocol: {m['protocol'].get('extractor')} features, {m['protocol'].get('num_generated')} samples "
            f"(seeds 0..N-1, class-balanced) vs {m['protocol'].get('num_reference')} images of "
            f"{m['protocol'].get('reference')}, the same protocol as the teacher's card.", "",
            "| | FID | IS | KID | precision | recall | class consistency |", "|---|---|---|---|---|---|---|",
            f"| this student | {q.get('fid', float('nan')):.3f} | {q.get('isc_mean', float('nan')):.3f} | "
            f"{q.get('kid_mean', float('nan')):.4f} | {q.get('precision', float('nan')):.3f} | "
            f"{q.get('recall', float('nan')):.3f} | {cc.get('accuracy', float('nan')):.3f} |",
            f"| fmnist-teacher (its card) | {t['fid']:.3f} | {t['isc_mean']:.3f} | {t['kid_mean']:.4f} | "
            f"{t['precision']:.3f} | {t['recall']:.3f} | {m['teacher_cc']:.3f} |"]  # fmt: skip


def _tail_lines(m: dict) -> list[str]:
    """The card's fidelity-to-the-teacher and speed lines, then its sha256 section."""
    tf, e = m.get("teacher_fidelity", {}), m["efficiency"]
    r = e.get("speed_vs_teacher", {}).get("ratio", {})
    fp = e.get("speed_vs_teacher", {}).get("fingerprint", {})

    def ratio(rt, kind):
        x = r.get(rt, {}).get(kind)
        return "n/a" if not x else f"{x['median']:.1f}x ({x['min']:.1f}-{x['max']:.1f})"

    return [f"- Fidelity to the teacher (same seeds and labels): PSNR {tf.get('psnr_db', float('nan')):.1f} dB, "
            f"SSIM {tf.get('ssim', float('nan')):.3f}.",
            "- Speed: not measured (--no-speed)." if not r else
            f"- Speed-up over the teacher, timed interleaved in one process (median over rounds, min-max) on "
            f"{fp.get('cpu', '?')}, {fp.get('torch_threads', '?')} torch thread(s), "
            f"{e.get('speed_vs_teacher', {}).get('created_utc', '')}: eager batch 1 {ratio('eager', 'latency')}, "
            f"ONNX Runtime batch 1 {ratio('onnx', 'latency')}, ONNX batch 256 {ratio('onnx', 'throughput')}.",
            "", "## sha256", "", *[f"- `{k}`: `{v}`" for k, v in m["sha256"].items()], ""]  # fmt: skip


def _finish(m: dict, dest: Path, teacher_m: dict, write_card) -> None:
    """The teacher's numbers beside the student's, the weights' hash, metrics.json and MODEL_CARD.md."""
    m["teacher_quality"], m["teacher_cc"] = teacher_m["quality"], teacher_m["class_consistency"]["accuracy"]
    m["teacher_steps"] = teacher_m["training"]["steps"]
    m["teacher_efficiency"] = {k: teacher_m["efficiency"][k] for k in ("params", "macs")}
    m["sha256"] = {WEIGHTS: file_sha256(dest / WEIGHTS)}
    save_result(m, dest / "metrics.json")
    atomic_write_bytes(dest / "MODEL_CARD.md", write_card(dest.name, m).encode())


def _plain_line(v: dict) -> str:
    """The plain baseline beside the student: ``gankd vs-plain``'s record of the run (equal wall time)."""
    g, p = v["gankd"], v["plain"]
    return (f"Beside the plain baseline (prune + pixel L1, the same layout, width and seed, {v['wall_minutes']:.1f} "
            f"minutes each; `gankd vs-plain {v['run']}`, {v['num_samples']:,} samples): FID against the test split "
            f"{g['fid_vs_data']:.2f} against plain's {p['fid_vs_data']:.2f}, against teacher samples "
            f"{g['fid_vs_teacher']:.2f} against {p['fid_vs_teacher']:.2f}; PSNR to the teacher "
            f"{g['psnr_to_teacher']:.2f} dB against plain's {p['psnr_to_teacher']:.2f} (plain stays closer to the "
            f"teacher's pixels); verdict on the {v['goal']} goal: {v['verdict']}.")


def run_card(name: str, m: dict) -> str:
    """The card of a student shipped from a finished run (``--run-pick``): what it is, how it was trained and
    chosen, what it measures."""
    e, r, cfg = m["efficiency"], m["run_pick"], m["run_config"]
    return "\n".join([
        f"# {name}", "",
        f"A width-{cfg['width']:g} student of `fmnist-teacher` in the `{cfg.get('student_layout') or 'standard'}` "
        f"layout, distilled by gankd: the student the run `{r['run']}` selected on the val split (its selection "
        f"rule `{m['selected_on'].get('rule')}` at step {m['selected_on'].get('step')}: "
        f"{m['selected_on'].get('select'):.3f}).", "",
        f"- Family: `dcgan` generator, class-conditional (10 classes), 32x32 gray, stage channels "
        f"{m['model_info'].get('feature_channels')}; {r['about']}",
        f"- Size: {e['params']:,} parameters, {e['macs'] / 1e6:.2f} M MACs per image "
        f"(teacher: {m['teacher_efficiency']['params']:,} and {m['teacher_efficiency']['macs'] / 1e6:.1f} M).",
        f"- Training: {m['trained_steps']:,} steps, seed {cfg['seed']}, {cfg['threads']} CPU threads. Command: "
        f"`{r['train_command']}`. Why this model: {r['why']}",
        "", "## Measured (`python benchmarks/ship_students.py ...`, the command in metrics.json)", "",
        *_quality_rows(m), "", _plain_line(m["vs_plain"]), "", *_tail_lines(m)])  # fmt: skip


# students shipped from finished runs (--run-pick NAME): the run, what the card says it is and why it is this one
RUN_PICKS = {
    "fmnist-student-w025-latency": {
        "run": "runs/deploy/w0.25-latency-full-3x", "train_command": "python benchmarks/deploy.py",
        "vs_plain": "benchmarks/results/deploy/vs_plain_latency.json",
        "about": "the class enters once as an embedding added to z, plain BatchNorm (folded into the convolutions at "
                 "export), the last doubling writes the pixels (`gankd compress --student-layout latency`); layers "
                 "whose shapes match the teacher's were pruned from it by L1 channel norm, the last layer and the "
                 "embedding started fresh.",
        "why": "benchmarks/deploy.py declared two recipes before either ran (the full preset; the same over 3x its "
               "steps) and kept the one whose selected student scored lower on the val split (0.45 against 0.88: "
               "`latency_choice` in benchmarks/results/deploy/results.json); seed 0 is the only seed trained.",
    },
}


def ship_run(name: str, dest: Path, cmd: str, num_samples: int, speed: bool, teacher_m: dict) -> dict:
    """Copy a :data:`RUN_PICKS` run's selected student to ``dest`` and measure it as the other shipped students."""
    pick = RUN_PICKS[name]
    run = ROOT / pick["run"]
    copy_snapshot(run / "student", dest)
    meta = load_json(dest / CONFIG)
    m = evaluate(dest, "fmnist-teacher", quality=Quality(num_samples=num_samples), speed=Speed() if speed else None,
                 role="student", command=cmd)  # fmt: skip
    cfg = load_json(run / "config.json")
    m["run_pick"], m["run_config"] = pick, {k: cfg.get(k) for k in ("width", "student_layout", "seed", "threads")}
    m["selected_on"], m["trained_steps"] = meta.get("selected_on", {}), meta.get("trained_steps")
    m["vs_plain"] = load_json(ROOT / pick["vs_plain"])
    _finish(m, dest, teacher_m, run_card)
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pick", default=DEFAULT_PICK, help="WIDTH:MINUTES[:RECIPE[:RUNS]],... (curve run and "
                    "snapshot; RUNS: a folder under runs/, default --runs)")
    ap.add_argument("--recipe", default="full", help="recipe of picks that name none")
    ap.add_argument("--budget-pick", default=DEFAULT_BUDGET_PICK, help="WIDTH:FRACTION:RECIPE[:SEED],... "
                    "(step-budget cells in runs/step_budget, benchmarks/step_budget.py; SEED default --seed); "
                    "'' for none, and --pick '' to ship only these")
    ap.add_argument("--run-pick", default="", help=f"students of finished runs to ship, comma-separated: "
                    f"{', '.join(RUN_PICKS)} (with --pick '' --budget-pick '' to ship only these)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default=str(ROOT / "runs" / "curves"))
    ap.add_argument("--curves", default=",".join(str(p) for p in sorted((ROOT / "benchmarks" / "results").glob(
                    "curves*/results.json"))), help="curves results.json files, comma-separated: the first that "
                    "lists a shipped run gives its seeds' FID ± std")  # fmt: skip
    ap.add_argument("--num-samples", type=int, default=10000)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--threads", type=int, help="torch and ONNX Runtime threads for the measurements (default: "
                    "torch's)")
    ap.add_argument("--out", default=str(pretrained_dir()))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cmd = " ".join(map(shlex.quote, ["python", *sys.argv]))
    curves = [{**json.loads(Path(f).read_text()), "source": portable_path(Path(f))}
              for f in args.curves.split(",") if Path(f).exists()]  # fmt: skip
    teacher_m = load_json(pretrained_dir() / "fmnist-teacher" / "metrics.json")
    picks = [(w, m, r, runs, None, args.seed) for w, m, r, runs in
             (parse_pick(args.pick, args.recipe) if args.pick else [])]  # fmt: skip
    picks += [(w, None, r, "step_budget", f, args.seed if s is None else s) for w, f, r, s in
              (parse_budget_pick(args.budget_pick) if args.budget_pick else [])]  # fmt: skip
    for width, minutes, recipe, runs, fraction, seed in picks:
        runs_dir = ROOT / "runs" / runs if runs else Path(args.runs)
        if fraction is None:  # a curve snapshot: its seeds' spread from the curves results that list the run
            run = runs_dir / f"w{width:g}_{recipe}_s{seed}"
            snap = snapshot_dir(run, minutes)
            source = {"train_command": f"python benchmarks/curves.py --widths {width:g} --recipes {recipe} --seeds "
                                       f"{seed} --points ...,{minutes:g} --runs {portable_path(runs_dir)}",
                      "curve_point": curve_point(curves, portable_path(run), recipe, width, minutes)}  # fmt: skip
        else:  # a step-budget cell's final student: its wall time and seeds' spread from the step-budget results
            run = runs_dir / f"w{width:g}_{recipe}_s{seed}_f{fraction:g}"
            snap = run / "student"
            sb = ROOT / "benchmarks" / "results" / "step_budget"
            minutes = round(load_json(sb / "cells" / f"{run.name}.json")["budget"]["wall_s"] / 60, 1)
            results = {**load_json(sb / "results.json"), "source": portable_path(sb / "results.json")}
            source = {"fraction": fraction, "curve_point": budget_point(results, recipe, width, fraction),
                      "train_command": f"python benchmarks/step_budget.py --widths {width:g} --recipes {recipe} "
                                       f"--seeds {seed} --fractions {fraction:g}"}  # fmt: skip
        dest = Path(args.out) / shipped_name(width)
        copy_snapshot(snap, dest)
        meta = load_json(dest / CONFIG)
        m = evaluate(dest, "fmnist-teacher", quality=Quality(num_samples=args.num_samples),
                     speed=None if args.no_speed else Speed(), role="student", command=cmd)  # fmt: skip
        m["curve"] = {"recipe": recipe, "width": width, "seed": seed, "minutes": minutes,
                      "steps": meta.get("trained_steps"), "run": portable_path(run), **source}  # fmt: skip
        _finish(m, dest, teacher_m, card)
        print(f"{dest}: FID {m['quality']['fid']:.3f}")
    for name in [n for n in args.run_pick.split(",") if n]:
        if name not in RUN_PICKS:
            raise SystemExit(f"--run-pick {name}: unknown; choose from {', '.join(RUN_PICKS)}")
        m = ship_run(name, Path(args.out) / name, cmd, args.num_samples, not args.no_speed, teacher_m)
        print(f"{Path(args.out) / name}: FID {m['quality']['fid']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
