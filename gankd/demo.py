"""The README's main job in one call: compress the shipped teacher with the quick preset,
then measure teacher and student under the same protocol and write the report.

Run folder (default ``runs/demo``): the compress run (student/, teacher_vs_student.png,
metrics.jsonl, ...), ``eval_teacher.json``, ``eval_student.json``, ``report.md`` and
``quality_vs_speed.png``. A second call reuses what exists (resumes or skips).
"""

from __future__ import annotations

import logging
from pathlib import Path

from gankd.checkpoint import resolve_model_path
from gankd.distill import PRESETS, DistillConfig, compress
from gankd.evaluate import evaluate, save_result
from gankd.report import render_table, write_report

log = logging.getLogger(__name__)


def run_demo(out: str | Path = "runs/demo", teacher: str = "fmnist-teacher", width: float = 0.25,
             preset: str = "quick", num_samples: int = 10000, speed: bool = True, device: str = "cpu",
             progress: bool = True, max_minutes: float | None = None) -> dict:  # fmt: skip
    """Compress ``teacher`` at ``width`` and evaluate both; returns paths and the markdown table."""
    out = Path(out)
    teacher_dir = resolve_model_path(teacher)
    budget = PRESETS[preset] if max_minutes is None else {**PRESETS[preset], "max_minutes": max_minutes}
    cfg = DistillConfig(teacher=str(teacher_dir), width=width, device=device, **budget)
    resume = (out / "state.pt").exists()
    student = compress(cfg, out, resume=resume, progress=progress)
    results = []
    for role, model, ref in (("teacher", teacher_dir, None), (f"student w{width:g}", student, teacher_dir)):
        path = out / f"eval_{role.split()[0]}.json"
        r = evaluate(model, num_samples=num_samples, speed=speed, teacher=ref, role=role, device=device,
                     command=f"gankd demo --out {out}")  # fmt: skip
        save_result(r, path)
        results.append(path)
    paths = write_report(results, out)
    return {"student": str(student), "grid": str(out / "teacher_vs_student.png"),
            "table": render_table([__import__("json").loads(Path(p).read_text()) for p in results]),
            **{k: str(v) for k, v in paths.items()}}  # fmt: skip
