"""Compress a GAN gankd did not define: the DCGAN-tutorial generator of benchmarks/thirdparty.

    python benchmarks/thirdparty/dcgan_tutorial.py --out runs/tutorial --ngf 32 --ndf 32 --minutes 50 --threads 1
    python benchmarks/foreign_gan.py --checkpoint runs/tutorial/checkpoint.tar --minutes 4

1. ``gankd import`` of the tutorial checkpoint (``netG_state_dict`` in a ``torch.save`` dict)
   into ``--teacher-out`` (default ``pretrained/wesnoth-dcgan64``), unless it exists.
2. ``gankd compress`` at widths 1/2 and 1/4, each with the data (``wesnoth-units``) and
   data-free (``--data none``: the discriminator's real side is teacher samples), the same
   wall-clock budget and one CPU thread each. Students come from torch-pruning (L1 magnitude).
3. Evaluation of the teacher and every student: FID/KID/precision/recall against the
   teacher's samples and against the data's held-out test split, both under the extractor
   gankd chooses for the domain (named in the JSON), PSNR/SSIM to the teacher on the same
   latents, params and MACs; then one interleaved speed run (teacher and students A B A B
   ..., eager PyTorch and ONNX Runtime, batch 1 and 256).
4. ``benchmarks/results/foreign/``: results.json (every number, the commands), RESULTS.md
   and a grid (teacher row, then one row per student, same latents).

Resumable: finished runs (DONE marker) and evaluations (cells/*.json) are kept.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "thirdparty"))  # the tutorial's module: dcgan_tutorial

import torch  # noqa: E402

from gankd.adapter import adapter_for  # noqa: E402
from gankd.checkpoint import atomic_write_bytes, load_generator  # noqa: E402
from gankd.distill import CLASSIC, DistillConfig, compress  # noqa: E402
from gankd.evaluate import Quality, evaluate, real_floor  # noqa: E402
from gankd.fileio import portable_path  # noqa: E402
from gankd.importer import import_generator  # noqa: E402
from gankd.metrics.efficiency import fingerprint, interleaved_speed  # noqa: E402
from gankd.sampling import generate, grid, save_png  # noqa: E402

CELLS = [(0.5, "wesnoth-units"), (0.5, "none"), (0.25, "wesnoth-units"), (0.25, "none")]


def _write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def import_teacher(args) -> Path:
    out = Path(args.teacher_out)
    if (out / "model.safetensors").exists():
        return out
    st = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    kwargs = {"nz": int(st.get("nz", 100)), "ngf": int(st.get("ngf", 64)), "nc": 3}
    return import_generator("dcgan_tutorial:Generator", kwargs, args.checkpoint, out, state_key="netG_state_dict")


def train(args, teacher: Path, width: float, data: str) -> Path:
    run = Path(args.runs) / f"w{width:g}_{'data' if data != 'none' else 'datafree'}"
    if (run / "DONE").exists():
        return run / "student"
    cfg = DistillConfig(**{**CLASSIC, **dict(teacher=str(teacher), data=data, width=width, steps=10**6,
                        max_minutes=args.minutes, eval_every=250, eval_samples=1000, threads=1, seed=0)})  # fmt: skip
    t0 = time.monotonic()
    student = compress(cfg, run, resume=(run / "state.pt").exists())
    steps = json.loads((student / "config.json").read_text())["trained_steps"]
    _write_json(run / "DONE", {"train_wall_s": round(time.monotonic() - t0, 1), "last_step": steps})
    return student


def evaluate_all(args, teacher: Path, models: dict[str, Path]) -> dict:
    cells = Path(args.out) / "cells"
    out = {}
    for name, folder in models.items():
        path = cells / f"{name}.json"
        if path.exists():
            out[name] = json.loads(path.read_text())
            continue
        is_teacher = folder == teacher
        q = Quality(("fid", "kid", "prc"), args.num_samples)
        vs_teacher = evaluate(folder, None if is_teacher else teacher, quality=q, reference=str(teacher), role=name)
        vs_data = evaluate(folder, quality=q, reference="wesnoth-units:test", role=name)
        out[name] = {"vs_teacher_samples": vs_teacher, "vs_data_test": vs_data}
        _write_json(path, out[name])
    return out


def render(res: dict) -> str:
    sp = res["speed"]
    lines = [
        "# Compressing a GAN gankd did not define (DCGAN-tutorial generator, Wesnoth sprites 64x64 RGB)",
        "",
        f"Teacher: `{res['teacher']}` (imported from `{res['checkpoint']}`). Students: torch-pruning (L1) "
        f"at widths 1/2 and 1/4, {res['minutes']:g} min of distillation each on one CPU thread, with the data "
        "(`wesnoth-units`) or data-free (`--data none`: the discriminator's real side is teacher samples).",
        "",
        "| model | params | MACs/img | steps | FID vs teacher samples | FID vs data (test) | precision / recall "
        "(data) | PSNR→T dB | SSIM→T | eager b1 ms | ONNX b1 ms | ONNX b1 × teacher |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["models"].items():
        e = r["vs_teacher_samples"]["efficiency"]
        qt, qd = r["vs_teacher_samples"]["quality"], r["vs_data_test"]["quality"]
        tf = r["vs_teacher_samples"].get("teacher_fidelity") or {}
        m = sp["models"][name]
        ratio = sp["ratios"].get(name, {}).get("onnx", {}).get("latency")
        x = f"{ratio['median']:.2f}× ({ratio['min']:.2f}–{ratio['max']:.2f})" if ratio else "–"
        psnr = f"{tf['psnr_db']:.2f}" if tf else "–"
        ssim = f"{tf['ssim']:.3f}" if tf else "–"
        lines.append(
            f"| {name} | {e['params'] / 1e6:.3g} M | {e['macs'] / 1e6:.3g} M | {r.get('steps', '–')} | "
            f"{qt['fid']:.3g} | {qd['fid']:.3g} | {qd['precision']:.2f} / {qd['recall']:.2f} | {psnr} | {ssim} | "
            f"{m['eager']['latency']['median_ms']:.3g} | {m['onnx']['latency']['median_ms']:.3g} | {x} |"
        )
    first = next(iter(res["models"].values()))
    p_t, p_d = first["vs_teacher_samples"]["protocol"], first["vs_data_test"]["protocol"]
    lines += [
        "",
        f"Real-data floor (the data's fit split vs its test split, same extractor): FID "
        f"{res['floor']['quality']['fid']:.3g}.",
        "",
        f"Extractor: `{p_t['extractor']}` (sha256 {p_t['extractor_sha256_16']}): {p_t['extractor_reason']}. "
        f"Against the teacher: {p_t['generated']} vs {p_t['reference']}; against the data: "
        f"{p_d['num_generated']} samples vs the {p_d['num_reference']} test images of wesnoth-units "
        "(a small reference: FID is biased upwards at this size; compare rows with each other).",
        f"Speed: one interleaved run ({sp['protocol']['rounds']} rounds, A B A B ...), median over rounds; "
        f"the × column is the per-round teacher/student ratio, median (min–max). Machine: "
        f"{res['fingerprint'].get('cpu')}, {res['fingerprint'].get('torch_threads')} threads.",
        "",
        f"Command: `{res['command']}`",
    ]
    return "\n".join(lines) + "\n"


def write_card(res: dict, teacher: Path, checkpoint: str) -> None:
    """MODEL_CARD.md + metrics.json of the imported teacher, from this run's numbers."""
    from gankd.checkpoint import WEIGHTS, file_sha256

    st = torch.load(checkpoint, map_location="cpu", weights_only=True)
    t = res["models"]["teacher"]
    qd, qt = t["vs_data_test"]["quality"], t["vs_teacher_samples"]["quality"]
    p = t["vs_data_test"]["protocol"]
    e = t["vs_teacher_samples"]["efficiency"]
    _write_json(teacher / "metrics.json", t)
    card = f"""# wesnoth-dcgan64: a DCGAN-tutorial generator trained outside gankd

A generator from "another code base": `benchmarks/thirdparty/dcgan_tutorial.py` (the PyTorch
DCGAN tutorial layout, `nn.Sequential` of ConvTranspose2d/BatchNorm2d/ReLU, Tanh; latent
(N, {st['nz']}, 1, 1); 64x64 RGB; ngf = {st['ngf']}, ndf = {st['ndf']}), trained with the tutorial's
recipe (BCE, Adam 2e-4, betas 0.5/0.999) on the Battle for Wesnoth unit sprites
(`apt-get install -y wesnoth-1.16-data`; {st['images']} images: every file but gankd's folder
test split, transparency on white, 64x64), saved the tutorial's way (`netG_state_dict` in a
`torch.save` dict) and brought in with `gankd import` (`benchmarks/foreign_gan.py`).

- Training: {st['step']} steps (batch 64) in {st['wall_s'] / 60:.1f} min on one CPU thread
  ({res['fingerprint'].get('cpu')}, 2 cores, another 1-thread job beside it):
  `python benchmarks/thirdparty/dcgan_tutorial.py --out runs/tutorial --ngf {st['ngf']}
  --ndf {st['ndf']} --minutes 50 --threads 1`.
- Size: {e['params']:,} parameters, {e['macs'] / 1e6:.1f} M MACs per image.
- Quality ({p['extractor']} features, sha256 {p['extractor_sha256_16']}: no classifier or Inception
  weights exist for this domain here): FID {qd['fid']:.3g} against the {p['num_reference']} test
  images ({p['num_generated']} samples; real-data floor {res['floor']['quality']['fid']:.3g}),
  precision/recall {qd['precision']:.2f}/{qd['recall']:.2f}; FID {qt['fid']:.3g} against its own samples
  from other seeds (the floor of the "vs teacher samples" column).
- Weights: `model.safetensors`, sha256 {file_sha256(teacher / WEIGHTS)}.

Loading this folder imports `dcgan_tutorial` (the class named in config.json): put
`benchmarks/thirdparty` on `PYTHONPATH`, e.g.
`PYTHONPATH=benchmarks/thirdparty gankd sample --model pretrained/wesnoth-dcgan64 --seeds 0-63 --out grid.png`.
Numbers: `benchmarks/results/foreign/results.json` (rerun: `python benchmarks/foreign_gan.py`).
"""
    atomic_write_bytes(teacher / "MODEL_CARD.md", card.encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/tutorial/checkpoint.tar")
    ap.add_argument("--teacher-out", default=str(ROOT / "pretrained" / "wesnoth-dcgan64"))
    ap.add_argument("--minutes", type=float, default=4.0, help="distillation budget per student")
    ap.add_argument("--num-samples", type=int, default=2000)
    ap.add_argument("--runs", default="runs/foreign")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "foreign"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    teacher = import_teacher(args)
    models = {"teacher": teacher}
    steps = {}
    for width, data in CELLS:
        name = f"w{width:g} {'data' if data != 'none' else 'data-free'}"
        models[name] = train(args, teacher, width, data)
        steps[name] = json.loads((models[name] / "config.json").read_text())["trained_steps"]
    results = evaluate_all(args, teacher, models)
    for name in steps:
        results[name]["steps"] = steps[name]
    # one thread for timing too: another 1-thread job may share this 2-core machine, and two torch
    # processes with 2 threads each thrash on 2 cores; ratios come from one interleaved run
    loaded = {n: load_generator(p) for n, p in models.items()}
    speed = interleaved_speed(loaded, "teacher", ("eager", "onnx"), rounds=7)
    floor = real_floor("wesnoth-units:test", quality=Quality(metrics=("fid",), num_samples=args.num_samples))
    seeds = list(range(10))
    t = adapter_for(loaded["teacher"])
    rows = [generate(adapter_for(g), t.seeded_inputs(seeds)) for g in loaded.values()]
    save_png(grid(torch.cat(rows), nrow=len(seeds)), out / "teacher_vs_students.png")
    res = {
        "schema": "gankd.foreign/1",
        "command": shlex.join(["python", "benchmarks/foreign_gan.py", *sys.argv[1:]]),
        "checkpoint": portable_path(args.checkpoint),
        "teacher": portable_path(teacher),
        "minutes": args.minutes,
        "models": results,
        "paths": {n: portable_path(p) for n, p in models.items()},
        "speed": speed,
        "floor": floor,
        "fingerprint": fingerprint(),
        "grid": "teacher_vs_students.png: rows = " + ", ".join(models),
    }
    _write_json(out / "results.json", res)
    atomic_write_bytes(out / "RESULTS.md", render(res).encode())
    write_card(res, teacher, args.checkpoint)
    print(render(res))


if __name__ == "__main__":
    main()
