"""Quantization-aware distillation against post-training int8, on the shipped Fashion-MNIST teacher.

The same width-1/4 student is distilled twice with gankd's default recipe (same seed and steps, one
thread): once plainly, once with the last part of the budget trained through the int8 rounding of the
export (``--qat-start``). Both are exported with ``gankd export --precision int8`` and its quality gate
(FID of the fp32 and the int8 model against the test split, 2,000 samples, the domain's extractor;
PSNR of int8 to fp32), so the table says what the int8 export costs each:

    python benchmarks/qat.py --steps 3000 --qat-start 0.8     # benchmarks/results/qat/{results.json,RESULTS.md}

``--init-from DIR`` fine-tunes an already trained student instead (``--lr-g``, ``--steps``), once plainly and
once through the rounding from the first step, and adds the student as it was (post-training int8 only):

    python benchmarks/qat.py --init-from pretrained/fmnist-student-w025 --steps 1000 --lr-g 2e-4 --qat-start 0 \\
        --out benchmarks/results/qat/finetune
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from gankd.checkpoint import atomic_write_bytes, resolve_model_path  # noqa: E402
from gankd.distill import PRESETS, DistillConfig, compress  # noqa: E402
from gankd.export import export_generator  # noqa: E402
from gankd.fileio import portable_path  # noqa: E402
from gankd.metrics.efficiency import fingerprint  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "qat"


def run(args, qat_start: float | None, name: str) -> dict:
    """``qat_start`` None: the --init-from student as it is, exported without training."""
    run_dir = Path(args.runs) / name
    if qat_start is None:
        student = resolve_model_path(args.init_from)
    else:
        extra = {"init_from": args.init_from, "lr_g": args.lr_g} if args.init_from else {}
        if args.preset:  # a preset's terms, trained for --steps with the last weights (no selection run)
            extra = {**PRESETS[args.preset], "select": "last", "eval_every": 0, "max_minutes": 0.0, **extra}
        cfg = DistillConfig(**{**extra, "teacher": args.teacher, "width": args.width, "steps": args.steps,
                               "seed": args.seed, "threads": 1, "qat_start": qat_start})  # fmt: skip
        student = compress(cfg, run_dir, resume=(run_dir / "state.pt").exists())
    exp = export_generator(student, run_dir / "int8" / "generator.onnx", "onnx", precision="int8",
                           max_fid_rise=math.inf, gate_samples=args.gate_samples, force=True)  # fmt: skip
    gate, ops = exp["reduced"]["quality_gate"], exp["reduced"]["ops"]["ops"]
    return {"qat_start": qat_start, "trained": qat_start is not None, "student": portable_path(student),
            "fid_fp32": gate["fid_fp32"],
            "fid_int8": gate["fid_reduced"], "fid_rise": gate["fid_rise"],
            "psnr_int8_to_fp32_db": gate["psnr_to_fp32_db"], "psnr_int8_to_teacher_db": gate["psnr_to_teacher_db"],
            "int8_ops": ops, "latency_b1_ms": exp["reduced"]["latency_b1_ms"], "reference": gate["reference"],
            "extractor": gate["extractor"]}  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="fmnist-teacher")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--qat-start", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gate-samples", type=int, default=2000)
    ap.add_argument("--init-from", help="fine-tune this trained student (same width) instead of distilling anew")
    ap.add_argument("--lr-g", type=float, default=2e-4, help="with --init-from: the fine-tuning rate")
    ap.add_argument("--preset", help="train with this preset's terms (e.g. full, the recipe of the shipped students) "
                    "instead of the default recipe")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "qat"))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    tag = ("ft_" if args.init_from else "") + (f"{args.preset}_" if args.preset else "")
    rows = ([run(args, None, "as_shipped")] if args.init_from else []) + [
        run(args, 1.0, f"{tag}ptq_s{args.seed}"), run(args, args.qat_start, f"{tag}qat{args.qat_start:g}_s{args.seed}")]
    res_extra = {**({"init_from": args.init_from, "lr_g": args.lr_g} if args.init_from else {}),
                 "recipe": args.preset or "default"}
    res = {"schema": "gankd.qat/1", "teacher": args.teacher, "width": args.width, "steps": args.steps,
           "seed": args.seed, **res_extra, "rows": rows, "fingerprint": fingerprint("cpu"),
           "command": shlex.join(["python", "benchmarks/qat.py", *(argv if argv is not None else sys.argv[1:])])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "results.json", (json.dumps(res, indent=1) + "\n").encode())
    md = ["| student | FID fp32 | FID int8 | FID rise | PSNR int8 to fp32 (dB) | PSNR int8 to teacher (dB) |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        label = ("as it was, post-training int8" if r["qat_start"] is None else "post-training int8"
                 if r["qat_start"] >= 1 else f"quantization-aware from {r['qat_start']:g}")
        md.append(f"| {label} | {r['fid_fp32']:.3g} | {r['fid_int8']:.3g} | {100 * r['fid_rise']:+.1f} % | "
                  f"{r['psnr_int8_to_fp32_db']:.2f} | {r['psnr_int8_to_teacher_db']:.2f} |")
    text = "\n".join(md) + f"\n\nCommand: `{res['command']}`\n"
    atomic_write_bytes(out / "RESULTS.md", text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
