"""How fast does a teacher on your own images become recognisable? Score the checkpoints a
train-teacher run left along the way, under one protocol, and tabulate them against the
training wall time.

    python benchmarks/own_data_progress.py --run runs/wesnoth_da/teacher --snapshots runs/wesnoth_da/snaps

Inputs: model folders (``--snapshots``: every sub-folder, e.g. ``step2000/`` copies of the
run's ``last/``, or a run's ``snapshots/tNmin/`` from ``--snapshot-minutes``) plus the run's
final ``generator/``; the run's ``metrics.jsonl`` gives the wall time at each step. Each
model is scored against the data's held-out test split (the extractor gankd picks for the
domain, named in the JSON; FID, KID, precision, recall from ``--num-samples`` samples) and
the real-data floor (fit vs test) is scored once under the same protocol. A grid of each
checkpoint (same seeds, one class per row) goes next to the JSON.

Writes ``--out``: ``<name>.json`` per checkpoint, ``floor.json``, ``progress.json`` (the
table, the commands) and ``PROGRESS.md``, ``grid_<name>.png``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from gankd.adapter import adapter_for
from gankd.checkpoint import atomic_write_bytes, load_generator
from gankd.config import load_json
from gankd.evaluate import Quality, evaluate, real_floor, save_result
from gankd.fileio import portable_path
from gankd.sampling import sample_grid, save_png

ROOT = Path(__file__).resolve().parents[1]


def wall_at(run: Path) -> dict[int, float]:
    """step -> wall seconds, from the run's metrics.jsonl (training lines)."""
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "wall_s" in r and "loss_d" in r:
            out[int(r["step"])] = float(r["wall_s"])
    return out


def nearest_wall(walls: dict[int, float], step: int) -> float | None:
    if not walls:
        return None
    s = min(walls, key=lambda k: abs(k - step))
    return walls[s]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the train-teacher run folder")
    ap.add_argument("--snapshots", help="folder of checkpoint folders (default: RUN/snapshots)")
    ap.add_argument("--num-samples", type=int, default=2000)
    ap.add_argument("--evaluator", help="a classifier of this data (gankd train-classifier) as the feature "
                    "extractor, adding IS; default: the extractor gankd picks for the domain")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "own_data" / "progress"))
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where the samples are drawn and scored")
    args = ap.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    snaps = Path(args.snapshots) if args.snapshots else run / "snapshots"
    models = {p.name: p for p in sorted(snaps.iterdir()) if (p / "config.json").exists()} if snaps.is_dir() else {}
    walls = wall_at(run)
    if (run / "generator" / "config.json").exists():  # "final" only when it holds the run's last step
        g_steps = int(load_json(run / "generator" / "config.json").get("trained_steps", 0))
        models["final" if g_steps >= max(walls, default=0) else f"generator_step{g_steps}"] = run / "generator"
    if not models:
        raise SystemExit(f"{run} holds no snapshots and no generator/: train it with --snapshot-minutes first")
    ref_model = next(iter(models.values()))  # any of them: they share the data and the image shape
    cmd = " ".join(map(shlex.quote, ["python", *sys.argv]))
    metrics = ("fid", "isc", "kid", "prc") if args.evaluator else ("fid", "kid", "prc")
    rows = []
    data = load_json(ref_model / "config.json").get("data")
    for name, folder in models.items():
        path = out / f"{name}.json"
        if not path.exists():
            r = evaluate(folder, quality=Quality(metrics, args.num_samples, evaluator=args.evaluator,
                                                 class_consistency=False), device=args.device, command=cmd)  # fmt: skip
            save_result(r, path)
        r = json.loads(path.read_text())
        step = int(load_json(folder / "config.json")["trained_steps"])
        gen = load_generator(folder)
        nc = getattr(gen, "num_classes", 0)
        g = sample_grid(gen, list(range(8)), list(range(min(nc, 8))) if nc else None, nrow=8)
        save_png(g, out / f"grid_{name}.png")
        q = r["quality"]
        rows.append({"name": name, "step": step, "wall_minutes": round((nearest_wall(walls, step) or 0) / 60, 1),
                     "fid": q.get("fid"), "isc": q.get("isc_mean"), "kid": q.get("kid_mean"),
                     "precision": q.get("precision"), "recall": q.get("recall"),
                     "model": portable_path(folder)})  # fmt: skip
    rows.sort(key=lambda x: x["step"])
    floor_path = out / "floor.json"
    if not floor_path.exists():
        c, h, _ = adapter_for(load_generator(ref_model)).output_shape()
        floor = real_floor(f"{data}:test", resolution=h, channels=c, device=args.device, command=cmd,
                           quality=Quality(metrics=metrics, num_samples=args.num_samples, evaluator=args.evaluator))
        save_result(floor, floor_path)
    floor = json.loads(floor_path.read_text())["quality"]
    proto = json.loads((out / f"{rows[-1]['name']}.json").read_text())["protocol"]
    res = {"run": portable_path(run), "data": data, "rows": rows, "floor": {k: floor.get(k) for k in
           ("fid", "isc_mean", "kid_mean", "precision", "recall")}, "extractor": proto.get("extractor"),
           "extractor_sha256_16": proto.get("extractor_sha256_16"), "reference": proto.get("reference"),
           "num_samples": args.num_samples, "command": cmd}  # fmt: skip
    save_result(res, out / "progress.json")
    md = [f"# Teacher progress: {portable_path(run)} on {data}", "",
          f"Scored against `{proto.get('reference')}` with `{proto.get('extractor')}` "
          f"(sha256 {proto.get('extractor_sha256_16')}), {args.num_samples} samples; real floor (fit vs test): "
          f"FID {floor.get('fid'):.3g}, precision {floor.get('precision'):.2f}, recall {floor.get('recall'):.2f}"
          + ("" if floor.get("isc_mean") is None else f", IS {floor['isc_mean']:.2f}") + ".", "",
          "| checkpoint | step | wall min | FID | IS | KID | precision | recall |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for x in rows:
        isc = "–" if x.get("isc") is None else f"{x['isc']:.2f}"
        md.append(f"| {x['name']} | {x['step']} | {x['wall_minutes']} | {x['fid']:.3g} | {isc} | {x['kid']:.3g} | "
                  f"{x['precision']:.2f} | {x['recall']:.3f} |")  # fmt: skip
    atomic_write_bytes(out / "PROGRESS.md", ("\n".join(md) + "\n").encode())
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
