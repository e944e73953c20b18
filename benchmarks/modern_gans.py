"""StyleGAN2- and FastGAN-style teachers trained outside gankd: ship them, compress them, report.

    python benchmarks/thirdparty/stylegan2_style.py --out runs/stylegan2 --minutes 40 --threads 1
    python benchmarks/thirdparty/fastgan_style.py --out runs/fastgan --minutes 30 --threads 1
    python benchmarks/modern_gans.py --ship
    python benchmarks/recipes.py --calibrate --settings sg2-fmnist,sg2-fmnist-w2,fastgan64,fastgan64-w2 \\
        --recipes plain,nofeat-advlate-90-rt
    python benchmarks/recipes.py --settings sg2-fmnist,sg2-fmnist-w2,fastgan64,fastgan64-w2 \\
        --recipes plain,nofeat-advlate-90-rt --cost-minutes 5 --seeds 0
    python benchmarks/modern_gans.py --report
    python benchmarks/modern_gans.py --mapping

``--ship``: ``gankd import`` of each checkpoint's EMA generator (``g_ema``, as those code bases
sample from it) into ``pretrained/<name>`` and a 64-sample grid in ``samples/``.
The students are cells of the recipe study (benchmarks/recipes.py): the pruned teacher trained
at equal calibrated cost by ``plain`` (what a user writes: L1 to the teacher's output) and by
gankd's default recipe (``nofeat-advlate-90-rt``), widths 1/2 and 1/4, scored there on the val
and test sides. ``--report``: one interleaved speed run per family (teacher and its four
students, eager PyTorch and ONNX Runtime, batch 1 and 64, one thread), a teacher / plain / gankd
grid on the same seeds, the teachers' model cards (numbers from the study's teacher records)
and ``benchmarks/results/modern/``: results.json (every number, the commands) and RESULTS.md.
``--mapping``: what the StyleGAN2-style mapping network (kept whole by gankd's pruner) weighs in the teacher
and its students: parameters, MACs, and its share of eager batch-1 latency (the mapping network called
alone and the whole generator, interleaved, one thread), into ``mapping.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "thirdparty"))  # the teachers' own modules

import torch  # noqa: E402
from recipes import OUT as RECIPES_OUT  # noqa: E402
from recipes import cell_name, teacher_key  # noqa: E402

from gankd.adapter import adapter_for, positional  # noqa: E402
from gankd.checkpoint import WEIGHTS, atomic_write_bytes, file_sha256, load_generator  # noqa: E402
from gankd.fileio import portable_path  # noqa: E402
from gankd.importer import import_generator  # noqa: E402
from gankd.metrics.efficiency import fingerprint, interleaved_speed  # noqa: E402
from gankd.sampling import generate, grid, save_png  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "modern"
RECIPES = {"plain": "plain", "gankd": "nofeat-advlate-90-rt"}  # row label -> recipe of the study
BUDGET = "c5"
NUM_SAMPLES = 2000
FAMILIES = {
    "stylegan2": {
        "teacher": "fmnist-stylegan2",
        "checkpoint": "runs/stylegan2/checkpoint.pt",
        "class": "stylegan2_style:Generator",
        "kwargs": lambda a: {"channel_max": a["channel_max"]},
        "train": "python benchmarks/thirdparty/stylegan2_style.py --out runs/stylegan2 --minutes 40 --threads 1",
        "settings": {0.5: "sg2-fmnist-w2", 0.25: "sg2-fmnist"},
        "what": "StyleGAN2-style generator (mapping network z -> w with equalized learning rate, learned 4x4 "
                "constant, modulated/demodulated 3x3 convolutions, noise inputs with learned strengths, bilinear "
                "upsampling, toRGB skips; `benchmarks/thirdparty/stylegan2_style.py`), trained with the official "
                "small-resolution recipe (logistic loss, lazy R1, Adam 0.002 betas (0, 0.99), EMA) on "
                "Fashion-MNIST's 60,000 training images at 32x32 (28 px zero-padded), one channel",
    },
    "fastgan": {
        "teacher": "wesnoth-fastgan64",
        "checkpoint": "runs/fastgan/checkpoint.pt",
        "class": "fastgan_style:Generator",
        "kwargs": lambda a: {"ngf": a["ngf"]},
        "train": "python benchmarks/thirdparty/fastgan_style.py --out runs/fastgan --minutes 30 --threads 1",
        "settings": {0.5: "fastgan64-w2", 0.25: "fastgan64"},
        "what": "FastGAN-style generator (GLU up-sampling blocks, noise injection, skip-layer excitation from 4 "
                "to 32 px and 8 to 64 px, spectral norm, 64 px and 32 px output heads; "
                "`benchmarks/thirdparty/fastgan_style.py`), trained with FastGAN's recipe (hinge loss, a "
                "discriminator with a reconstruction decoder, DiffAugment color+translation, Adam 2e-4, batch 8, "
                "EMA) on the Wesnoth unit sprites at 64x64 RGB (gankd's test split left out)",
    },
}  # fmt: skip


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def _checkpoint(fam: dict) -> dict:
    return torch.load(ROOT / fam["checkpoint"], map_location="cpu", weights_only=True)


def ship(name: str) -> Path:
    """Import a family's EMA generator into pretrained/ and save its sample grid (kept when present)."""
    fam = FAMILIES[name]
    out = ROOT / "pretrained" / fam["teacher"]
    if not (out / WEIGHTS).exists():
        st = _checkpoint(fam)
        import_generator(fam["class"], fam["kwargs"](st["args"]), ROOT / fam["checkpoint"], out, state_key="g_ema")
    g = adapter_for(load_generator(out))
    save_png(grid(generate(g, g.seeded_inputs(list(range(64)))), nrow=8), ROOT / "samples" / f"{fam['teacher']}.png")
    return out


def _cell(setting: str, recipe: str) -> dict:
    path = RECIPES_OUT / "cells" / f"{cell_name(setting, recipe, BUDGET, 0)}.json"
    if not path.exists():
        raise SystemExit(f"missing {portable_path(path)}: run python benchmarks/recipes.py --settings {setting} "
                         f"--recipes {recipe} --cost-minutes 5 --seeds 0")  # fmt: skip
    return json.loads(path.read_text())


def report_family(name: str) -> dict:
    fam = FAMILIES[name]
    teacher = ROOT / "pretrained" / fam["teacher"]
    any_setting = next(iter(fam["settings"].values()))
    rec_path = RECIPES_OUT / "teachers" / f"{teacher_key(any_setting, NUM_SAMPLES)}.json"
    record = json.loads(rec_path.read_text())
    rows: dict = {}
    folders = {"teacher": teacher}
    for width, setting in fam["settings"].items():
        for label, recipe in RECIPES.items():
            c = _cell(setting, recipe)
            key = f"{label} w{width:g}"
            rows[key] = {"cell": portable_path(RECIPES_OUT / "cells" / f"{c['name']}.json"), "width": width,
                         "recipe": recipe, "steps": c["train"]["steps"], "efficiency": c["efficiency"],
                         "test": {k: c["test"][k] for k in ("fid_vs_data", "fid_vs_teacher", "psnr_to_teacher",
                                                            "ssim_to_teacher") if k in c["test"]},
                         "val": {k: c["val"][k] for k in ("fid_vs_data", "fid_vs_teacher", "psnr_to_teacher")
                                 if k in c["val"]}}  # fmt: skip
            folders[key] = ROOT / c["train"]["student"]
    loaded = {k: load_generator(p) for k, p in folders.items()}
    speed = interleaved_speed(loaded, "teacher", ("eager", "onnx"), rounds=5, big_batch=64)
    seeds = list(range(10))
    t = adapter_for(loaded["teacher"])
    order = ["teacher", "plain w0.25", "gankd w0.25"]
    images = [generate(adapter_for(loaded[k]), t.seeded_inputs(seeds)) for k in order]
    png = ROOT / "samples" / f"modern_{name}.png"
    save_png(grid(torch.cat(images), nrow=len(seeds)), png)
    t_eff = {"params": sum(p.numel() for p in t.model.parameters()),
             "macs": json.loads((folders["plain w0.25"] / "config.json").read_text())["prune"]["teacher_macs"]}
    return {"teacher": portable_path(teacher), "teacher_record": portable_path(rec_path), "teacher_efficiency": t_eff,
            "teacher_test": {"fid_vs_data": record["test"]["fid_vs_data"],
                             "fid_vs_teacher": record["test"]["fid_vs_teacher"],
                             "floor_fid_vs_data": record["test"].get("floor", {}).get("fid_vs_data")},
            "extractor": record["extractor"], "students": rows, "speed": speed, "grid": portable_path(png),
            "grid_rows": order, "prune": json.loads((folders["plain w0.25"] / "config.json").read_text())["prune"]}


def mapping_share(rounds: int = 7, calls: int = 50) -> dict:
    """The mapping network's share of the StyleGAN2-style teacher and its seed-0 students (see the module doc)."""
    import statistics

    from gankd.metrics.efficiency import count_macs
    from gankd.runtimes import time_callable

    fam = FAMILIES["stylegan2"]
    folders = {"teacher": ROOT / "pretrained" / fam["teacher"]}
    for width, setting in fam["settings"].items():
        for label, recipe in RECIPES.items():
            folders[f"{label} w{width:g}"] = ROOT / _cell(setting, recipe)["train"]["student"]
    rows = {}
    for key, folder in folders.items():
        g = adapter_for(load_generator(folder)).eval()
        m = g.model.mapping
        (z,) = g.example_inputs(1)
        whole = {"params": sum(p.numel() for p in g.model.parameters()),
                 "macs": count_macs(positional(g), (z,))["macs"]}
        part = {"params": sum(p.numel() for p in m.parameters()), "macs": count_macs(m, (z,))["macs"]}
        times: dict[str, list[float]] = {"mapping": [], "generator": []}
        with torch.no_grad():
            for r in range(rounds):  # interleaved: mapping, generator, mapping, ...
                for name, fn in (("mapping", lambda: m(z)), ("generator", lambda: g.call_positional(z))):
                    times[name].append(1000 * statistics.median(time_callable(fn, warmup=3 if r == 0 else 1,
                                                                              repeats=calls)))  # fmt: skip
        med = {k: statistics.median(v) for k, v in times.items()}
        rows[key] = {"folder": portable_path(folder), "generator": whole, "mapping": part,
                     "params_share": part["params"] / whole["params"], "macs_share": part["macs"] / whole["macs"],
                     "eager_b1_ms": med, "latency_share": med["mapping"] / med["generator"], "rounds_ms": times}
    return {"schema": "gankd.modern-mapping/1", "family": "stylegan2", "rows": rows, "threads": 1,
            "protocol": f"eager PyTorch, batch 1, {rounds} interleaved rounds of {calls} calls, median of medians",
            "command": shlex.join(["python", "benchmarks/modern_gans.py", *sys.argv[1:]]),
            "fingerprint": fingerprint()}  # fmt: skip


def render(res: dict) -> str:
    lines = ["# Modern generators: StyleGAN2- and FastGAN-style teachers trained outside gankd", ""]
    for name, r in res["families"].items():
        sp = r["speed"]
        lines += [f"## {name}: `{r['teacher']}`", "",
                  f"Students: the teacher pruned by {r['prune']['method']}, trained {BUDGET[1:]} calibrated minutes "
                  "each (equal cost: the steps one CPU thread runs in that time at the recipe's measured pace) by "
                  "`plain` (L1 to the teacher's output, Adam 2e-4) and by gankd's default; seed 0. FIDs on the test "
                  f"side ({NUM_SAMPLES} samples, extractor `{r['extractor']['extractor']}`); PSNR/SSIM to the "
                  "teacher on the same latents; speed: one interleaved run, ONNX Runtime batch 1, one thread.", "",
                  "| model | params | MACs/img | steps | FID vs data (test) | FID vs teacher samples | PSNR→T dB | "
                  "SSIM→T | ONNX b1 ms | ONNX b1 × teacher |",
                  "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        te = r["teacher_efficiency"]
        tm = sp["models"]["teacher"]["onnx"]["latency"]["median_ms"]
        lines.append(f"| teacher | {te['params'] / 1e6:.3g} M | {te['macs'] / 1e6:.3g} M | – | "
                     f"{r['teacher_test']['fid_vs_data']:.3g} | {r['teacher_test']['fid_vs_teacher']:.3g} | – | – | "
                     f"{tm:.3g} | 1 |")  # fmt: skip
        for key, s in r["students"].items():
            e, q = s["efficiency"], s["test"]
            ratio = sp["ratios"][key]["onnx"]["latency"]
            ms = sp["models"][key]["onnx"]["latency"]["median_ms"]
            lines.append(f"| {key} | {e['params'] / 1e6:.3g} M | {e['macs'] / 1e6:.3g} M | {s['steps']} | "
                         f"{q['fid_vs_data']:.3g} | {q['fid_vs_teacher']:.3g} | {q['psnr_to_teacher']:.2f} | "
                         f"{q['ssim_to_teacher']:.3f} | {ms:.3g} | {ratio['median']:.2f}× "
                         f"({ratio['min']:.2f}–{ratio['max']:.2f}) |")  # fmt: skip
        floor = r["teacher_test"].get("floor_fid_vs_data")
        lines += ["", f"Real-data floor (fit split vs test split, same extractor): FID {floor:.3g}." if floor else "",
                  f"Grid `{r['grid']}`: rows {', '.join(r['grid_rows'])}, same seeds.", ""]
    lines += [f"Machine: {res['fingerprint'].get('cpu')}; command: `{res['command']}`", ""]
    return "\n".join(lines)


def write_card(name: str, r: dict) -> None:
    fam = FAMILIES[name]
    folder = ROOT / "pretrained" / fam["teacher"]
    st = _checkpoint(fam)
    cfg = json.loads((folder / "config.json").read_text())
    tt = r["teacher_test"]
    _write_json(folder / "metrics.json", {"teacher_record": r["teacher_record"], "test": tt,
                                          "efficiency": r["teacher_efficiency"], "extractor": r["extractor"],
                                          "training": {"steps": st["step"], "wall_s": round(st["elapsed_s"], 1)},
                                          "io": cfg["io"], "results": "benchmarks/results/modern/results.json"})
    floor = f" (real-data floor {tt['floor_fid_vs_data']:.3g})" if tt.get("floor_fid_vs_data") else ""
    card = f"""# {fam['teacher']}: a {name} teacher trained outside gankd

A {fam['what']}.

- Training: {st['step']} steps in {st['elapsed_s'] / 60:.1f} min on one CPU thread: `{fam['train']}`;
  saved as `{{"g", "d", "g_ema", ...}}` in `checkpoint.pt`; imported with
  `gankd import --class {fam['class']} --weights runs/.../checkpoint.pt` (the EMA generator `g_ema`).
- Calls: {json.dumps(cfg['io'].get('call_kwargs') or {})} every call, output index {cfg['io'].get('output_index')},
  noise {cfg['io'].get('noise')} (gankd fixes the noise so one latent gives one image, for teacher and student).
- Size: {r['teacher_efficiency']['params']:,} parameters, {r['teacher_efficiency']['macs'] / 1e6:.1f} M MACs per image.
- Quality ({r['extractor']['extractor']} features): FID {tt['fid_vs_data']:.3g} against the data's test split
  ({NUM_SAMPLES} samples){floor}; FID {tt['fid_vs_teacher']:.3g} against its own samples from other seeds.
- Weights: `model.safetensors`, sha256 {file_sha256(folder / WEIGHTS)}.

Loading this folder imports `{fam['class'].split(':')[0]}` (the class named in config.json): put
`benchmarks/thirdparty` on `PYTHONPATH`, e.g.
`PYTHONPATH=benchmarks/thirdparty gankd sample --model pretrained/{fam['teacher']} --seeds 0-63 --out grid.png`.
Numbers: `{r['teacher_record']}` and `benchmarks/results/modern/results.json` (rerun: the commands at the
top of `benchmarks/modern_gans.py`).
"""
    atomic_write_bytes(folder / "MODEL_CARD.md", card.encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"of {', '.join(FAMILIES)}")
    ap.add_argument("--ship", action="store_true", help="import the trained checkpoints into pretrained/")
    ap.add_argument("--report", action="store_true", help="speed, grids, cards and RESULTS.md from the study's cells")
    ap.add_argument("--mapping", action="store_true", help="the StyleGAN2 mapping network's share: mapping.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    for n in names:
        if n not in FAMILIES:
            raise SystemExit(f"--families: unknown '{n}'; choose from {', '.join(FAMILIES)}")
    if args.ship:
        for n in names:
            print(ship(n))
    if args.report:
        path = OUT / "results.json"
        res = json.loads(path.read_text()) if path.exists() else {"schema": "gankd.modern/1", "families": {}}
        for n in names:
            res["families"][n] = report_family(n)
            write_card(n, res["families"][n])
        res.update(command=shlex.join(["python", "benchmarks/modern_gans.py", *sys.argv[1:]]),
                   fingerprint=fingerprint())  # fmt: skip
        _write_json(path, res)
        atomic_write_bytes(OUT / "RESULTS.md", render(res).encode())
        print(render(res))
    if args.mapping:
        res = mapping_share()
        _write_json(OUT / "mapping.json", res)
        for k, r in res["rows"].items():
            print(f"{k}: params {100 * r['params_share']:.1f} %, MACs {100 * r['macs_share']:.2f} %, "
                  f"eager b1 latency {100 * r['latency_share']:.1f} %")


if __name__ == "__main__":
    main()
