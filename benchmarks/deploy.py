"""Deployment: fp32 / fp16 / int8 students against the fp32 teacher, and compressing to latency budgets.

    python benchmarks/deploy.py [--gate-samples 2000] [--budgets 0.5,0.25,0.125]

1. Students of ``fmnist-teacher``: the shipped widths 1/2, 1/4, 1/8 (ConvTranspose upsampling), and
   a width-1/4 student with nearest-conv upsampling (``--student-upsample nearest-conv``, trained
   here with the default recipe for ``--upconv-steps`` steps) whose every conv quantizes, and a
   width-1/4 student in the latency layout (``--student-layout latency``: the class enters once as
   an input embedding, plain BatchNorm, the last doubling writes the pixels), trained here with the
   two recipes of :data:`LATENCY_RECIPES` (seed 0, two threads) and the one chosen on val kept.
2. Each exported by ``gankd export`` at fp32, fp16 and int8 (``--max-fid-rise inf``: the gate's
   numbers are recorded, nothing refused): FID of each precision against the test split (the
   domain's extractor, ``--gate-samples`` samples), PSNR/SSIM to its fp32 self, which ops run in
   which precision.
3. One interleaved ONNX Runtime run (one thread): the fp32 teacher and every exported file, batch 1
   and 64, ``--rounds`` rounds (A B C ... with the start rotating); latency = median over rounds of
   each round's median call; speed-up = teacher / model per round (median, min-max).
4. ``gankd compress --target-latency`` at budgets given as fractions of the teacher's measured
   batch-1 latency: the width picked and its latency, then each picked student re-timed fresh
   (not from the cache) to check the budget holds within 10 %; ``--layout-budgets`` searches
   latency-layout students (1/12 of the teacher's latency by default: the 12x target).

Writes benchmarks/results/deploy/results.json (every number, the commands) and RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from render_docs import deploy_tables

from gankd.adapter import adapter_for
from gankd.checkpoint import atomic_write_bytes, load_generator, resolve_model_path
from gankd.distill import PRESETS, DistillConfig, compress
from gankd.export import export_generator, load_exported
from gankd.fileio import portable_path
from gankd.latency import measure_ms
from gankd.metrics.efficiency import count_macs, fingerprint, generator_inputs
from gankd.precision import PRECISIONS

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "deploy"
RUNS = ROOT / "runs" / "deploy"
STUDENTS = {"w0.5": "fmnist-student-w05", "w0.25": "fmnist-student-w025", "w0.125": "fmnist-student-w0125"}


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def upconv_student(steps: int) -> Path:
    run = RUNS / "w0.25-nearest-conv"
    if not (run / "student" / "model.safetensors").exists() or not (run / "DONE").exists():
        compress(DistillConfig(teacher="fmnist-teacher", width=0.25, student_upsample="nearest-conv", steps=steps,
                               threads=1, seed=0), run, resume=(run / "state.pt").exists())  # fmt: skip
        (run / "DONE").write_text("done\n")
    return run / "student"


# the latency-layout student's recipes, declared before any of them ran: the full preset, and the same over three
# times its steps (the layout's last layer starts fresh); the benchmark keeps the one whose selected student scored
# lowest on the val split (the preset's selection metric), and reports the test split for it alone
LATENCY_RECIPES = {"full": {}, "full-3x": {"steps": 3 * PRESETS["full"]["steps"]}}


def latency_run(name: str, threads: int = 2, seed: int = 0) -> Path:
    """A width-1/4 student in the latency layout (``--student-layout latency``: the class as an input embedding,
    plain BatchNorm, the last doubling writing the pixels), trained with recipe ``name`` (seed 0 unless told)."""
    run = RUNS / ("w0.25-latency" + ("" if name == "full" else f"-{name}") + (f"-s{seed}" if seed else ""))
    if not (run / "student" / "model.safetensors").exists() or not (run / "DONE").exists():
        compress(DistillConfig(**{**PRESETS["full"], **LATENCY_RECIPES[name], "teacher": "fmnist-teacher",
                                  "width": 0.25, "student_layout": "latency", "threads": threads, "seed": seed}),
                 run, resume=(run / "state.pt").exists())  # fmt: skip
        (run / "DONE").write_text("done\n")
    return run


def selected_val(run: Path) -> float:
    """The val-split selection metric of the student a run kept (the lowest its evaluations logged)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return min(r["val/select"] for r in rows if "val/select" in r)


def latency_student() -> tuple[Path, dict]:
    """Every :data:`LATENCY_RECIPES` run, and the student of the one chosen on val, with the choice's record."""
    val = {name: selected_val(latency_run(name)) for name in LATENCY_RECIPES}
    chosen = min(val, key=val.get)
    return latency_run(chosen) / "student", {"val_select": val, "chosen": chosen, "rule": "lowest val/select"}


VARIANTS = {"int8-ct": "keep", "int8-sp": "rewrite"}  # int8 with ConvTranspose kept fp32 / rewritten (--convtranspose)


def _export(folder: Path, path: Path, precision: str, gate_samples: int) -> dict:
    """One export (kept when its record exists and was written by today's int8 rules), its record."""
    meta = path.with_name(path.name + ".json")
    rec = json.loads(meta.read_text()) if meta.exists() else None
    if rec is None or (precision.startswith("int8") and "mode" not in rec["reduced"]["ops"].get("rewritten", {})):
        export_generator(folder, path, precision="int8" if precision in VARIANTS else precision, force=True,
                         max_fid_rise=float("inf"), gate_samples=gate_samples,
                         convtranspose=VARIANTS.get(precision, "auto"))  # fmt: skip
    return json.loads(meta.read_text())


def exports(folders: dict[str, Path], gate_samples: int, runs: Path = RUNS) -> dict:
    """Each folder exported at every precision into ``runs/exports`` (kept when its record exists), the gate's
    numbers recorded and nothing refused. Where int8 had a choice for ConvTranspose layers (``--convtranspose
    auto``), the form it did not choose is exported too (``int8-ct`` kept fp32, ``int8-sp`` rewritten), so one
    timing run shows both."""
    out = {}
    for name, folder in folders.items():
        for p in PRECISIONS:
            path = runs / "exports" / f"{name}.{p}.onnx"
            out[f"{name} {p}"] = {"path": path, "record": _export(folder, path, p, gate_samples)}
        rw = out[f"{name} int8"]["record"]["reduced"]["ops"]["rewritten"]
        if rw["qualifying"]:
            other = "int8-ct" if rw["ConvTranspose"] else "int8-sp"
            path = runs / "exports" / f"{name}.{other}.onnx"
            out[f"{name} {other}"] = {"path": path, "record": _export(folder, path, other, gate_samples)}
    return out


def interleaved_onnx(files: dict[str, Path], reference: str, model, rounds: int, size: int | None = None,
                     batches: tuple[int, ...] = (1, 64)) -> dict:  # fmt: skip
    """Latency at ``batches`` of ONNX files, interleaved, one thread; speed-ups vs ``reference``. ``size``: the
    source side in px of image-to-image generators (default: the trained one)."""
    runs = {n: load_exported(p, "onnx", threads=1) for n, p in files.items()}
    args = {b: adapter_for(model).example_inputs(b, size=size) for b in batches}
    calls = {b: 20 if b == 1 else 3 for b in batches}
    times: dict = {n: {b: [] for b in batches} for n in runs}
    names = list(runs)
    for n in names:  # warm-up
        for b in batches:
            runs[n](*args[b])
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for b in batches:
            for n in order:
                ts = []
                for _ in range(calls[b]):
                    t0 = time.perf_counter()
                    runs[n](*args[b])
                    ts.append(time.perf_counter() - t0)
                times[n][b].append(1000 * statistics.median(ts))
    out = {}
    for n in names:
        rec = {}
        for b in batches:
            ratios = [t / m for t, m in zip(times[reference][b], times[n][b])]
            rec[f"b{b}"] = {"median_ms": statistics.median(times[n][b]), "rounds_ms": times[n][b],
                            "speedup_median": statistics.median(ratios), "speedup_min": min(ratios),
                            "speedup_max": max(ratios)}  # fmt: skip
        out[n] = rec
    return out


def budgets(fractions: list[float], teacher_ms: float, steps: int = 1, teacher: str = "fmnist-teacher",
            size: int | None = None, runs: Path = RUNS, runtime: str = "onnxruntime",
            layout: str | None = None) -> list[dict]:  # fmt: skip
    """``compress --target-latency`` at fractions of the teacher's batch-1 latency (``size``: an image-to-image
    teacher's source side; ``runtime``: what the search times, e.g. ``onnx-int8``; ``layout``: the students'
    ``--student-layout``), each picked student re-timed fresh (not from the cache) in that runtime."""
    res = []
    for f in fractions:
        run = runs / (f"budget-{f:g}" + (f"-{size}px" if size else "") + ("" if runtime == "onnxruntime" else
                                                                           f"-{runtime}") + (f"-{layout}" if layout
                                                                                             else ""))  # fmt: skip
        shutil.rmtree(run, ignore_errors=True)  # searched again each time, as its re-timing is: not on another day
        compress(DistillConfig(teacher=teacher, target_latency=f"{teacher_ms * f:.6f}ms", latency_size=size,
                               latency_runtime=runtime, student_layout=layout, steps=steps, threads=1, seed=0,
                               eval_samples=64),
                 run)  # fmt: skip
        lat = json.loads((run / "config.json").read_text())["resolved"]["latency_budget"]
        fresh = measure_ms(load_generator(run / "student"), runtime, 1, 1, rounds=7, size=size)
        res.append({"fraction_of_teacher": f, **({"size": size} if size else {}), "runtime": runtime,
                    **({"layout": layout} if layout else {}),
                    "budget_ms": lat["budget_ms"],
                    "width": lat["width"], "measured_in_search_ms": lat["measured_ms"], "remeasured_ms": fresh,
                    "within_10pct": fresh <= 1.1 * lat["budget_ms"], "candidates": lat["candidates"],
                    "run": portable_path(run)})  # fmt: skip
    return res


def render_page(res: dict, title: str, intro: str, tables: tuple[str, str], budgets_intro: str,
                extra: tuple[str, ...] = ()) -> str:  # fmt: skip
    """A deployment RESULTS.md: title, how it was measured, the precision table, why ops stayed fp32, the
    latency-budget table, then ``extra`` lines, the machine and the command."""
    models, budget_rows = tables
    why = sorted({w for r in res["models"].values() for w in (r.get("why_fp32") or {}).values()})
    return "\n".join([f"# {title}", "", intro, "", models, "", *[f"Kept fp32: {w}." for w in why], "",
                      budgets_intro, "", budget_rows, "", *extra,
                      f"Machine: {res['fingerprint'].get('cpu')}; other jobs on the machine: {res['load']}.",
                      f"Command: `{res['command']}`", ""])  # fmt: skip


def render(res: dict) -> str:
    return render_page(
        res, "Deployment: precision and latency budgets (Fashion-MNIST students)",
        "ONNX Runtime, CPU execution provider, one thread, interleaved with the fp32 teacher; FID against the test "
        f"split ({res['gate_samples']} samples, the domain's extractor); PSNR to the model's own fp32 outputs. int8 "
        "(`--convtranspose auto`) quantizes a generator twice, ConvTranspose rewritten as Conv + DepthToSpace (the "
        "same function, which quantizes) and kept fp32, and keeps the form faster at batch 1; the other form is the "
        "row below it.", deploy_tables(res),
        "`--target-latency` (budgets as fractions of the teacher's batch-1 latency; the picked student re-timed "
        "fresh):")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gate-samples", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--budgets", default="0.5,0.25,0.125", help="fractions of the teacher's batch-1 latency")
    ap.add_argument("--int8-budgets", default="0.125", help="the same, the search timing int8 exports")
    ap.add_argument("--layout-budgets", default="0.0833", help="the same, searching latency-layout students")
    ap.add_argument("--upconv-steps", type=int, default=3000)
    ap.add_argument("--load", default="quiet", help="what else ran on the machine (recorded)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    teacher = resolve_model_path("fmnist-teacher")
    folders = {k: resolve_model_path(v) for k, v in STUDENTS.items()}
    folders["w0.25 nearest-conv"] = upconv_student(args.upconv_steps)
    folders["w0.25 latency"], latency_choice = latency_student()
    ex = exports({"teacher": teacher, **folders}, args.gate_samples)
    models = {}
    for key, e in ex.items():
        name, prec = key.rsplit(" ", 1)
        rec = e["record"]
        folder = teacher if name == "teacher" else folders[name]
        gen = load_generator(folder)
        red = rec.get("reduced") or {}
        gate = red.get("quality_gate") or {}
        models[key] = {"model": name, "precision": prec, "path": portable_path(e["path"]),
                       "macs": count_macs(gen, generator_inputs(gen, 1))["macs"],
                       "ops": (red.get("ops") or {}).get("ops"), "why_fp32": (red.get("ops") or {}).get("why_fp32"),
                       "fid": gate.get("fid_reduced"), "fid_fp32": gate.get("fid_fp32"),
                       "psnr_to_fp32_db": gate.get("psnr_to_fp32_db"), "ssim_to_fp32": gate.get("ssim_to_fp32"),
                       "gate": gate or None}  # fmt: skip
    for key, m in models.items():  # an fp32 row's FID: its fp16 gate measured it
        if m["precision"] == "fp32":
            m["fid"] = models[key.replace(" fp32", " fp16")]["fid_fp32"]
    speed = interleaved_onnx({k: e["path"] for k, e in ex.items()}, "teacher fp32", load_generator(teacher),
                             args.rounds)  # fmt: skip
    teacher_ms = speed["teacher fp32"]["b1"]["median_ms"]

    def fractions(text: str) -> list[float]:
        return [float(f) for f in text.split(",") if f.strip()]

    searched = (budgets(fractions(args.budgets), teacher_ms) + budgets(fractions(args.int8_budgets), teacher_ms,
                                                                       runtime="onnx-int8")
                + budgets(fractions(args.layout_budgets), teacher_ms, layout="latency"))  # fmt: skip
    res = {"schema": "gankd.deploy/1", "command": shlex.join(["python", "benchmarks/deploy.py", *sys.argv[1:]]),
           "gate_samples": args.gate_samples, "models": models, "speed": speed, "budgets": searched,
           "latency_choice": latency_choice,
           "fingerprint": fingerprint(),
           "load": args.load}  # fmt: skip
    _write_json(OUT / "results.json", res)
    atomic_write_bytes(OUT / "RESULTS.md", render(res).encode())
    print(render(res))


if __name__ == "__main__":
    main()
