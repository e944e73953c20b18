"""The README's main job in one call: compress the shipped teacher with the quick preset,
then measure teacher and student under the same protocol and write the report.

Run folder (default ``runs/demo``): the compress run (student/, teacher_vs_student.png,
metrics.jsonl, ...), ``eval_teacher.json``, ``eval_student.json`` (speed: teacher and student
timed interleaved in one process), ``report.md`` and ``quality_vs_speed.png``. A second call
reuses what exists (resumes or skips).
"""

from __future__ import annotations

import logging
from pathlib import Path

from gankd.checkpoint import resolve_model_path
from gankd.distill import PRESETS, DistillConfig, compress
from gankd.evaluate import Quality, Speed, evaluate, save_result
from gankd.report import render_table, write_report

log = logging.getLogger(__name__)


def run_demo(out: str | Path = "runs/demo", teacher: str = "fmnist-teacher", width: float = 0.25,
             preset: str = "quick", num_samples: int = 10000, speed: bool = True, device: str = "cpu",
             progress: bool = True, max_minutes: float | None = None) -> dict:  # fmt: skip
    """Compress ``teacher`` at ``width`` and evaluate both; returns paths and the markdown table."""
    out = Path(out)
    teacher_dir = resolve_model_path(teacher)
    budget = PRESETS[preset] if max_minutes is None else {**PRESETS[preset], "max_minutes": max_minutes}
    cfg = DistillConfig(teacher=str(teacher), width=width, device=device, **budget)
    resume = (out / "state.pt").exists()
    student = compress(cfg, out, resume=resume, progress=progress)
    results = evaluate_pair(teacher_dir, student, out, f"student w{width:g}", speed=Speed() if speed else None,
                            command=f"gankd demo --out {out}", quality=Quality(num_samples=num_samples),
                            device=device)  # fmt: skip
    paths = write_report(results, out)
    return {"student": str(student), "grid": str(out / "teacher_vs_student.png"),
            "table": render_table([__import__("json").loads(Path(p).read_text()) for p in results]),
            **{k: str(v) for k, v in paths.items()}}  # fmt: skip


def evaluate_pair(teacher_dir: str | Path, student: str | Path, out: str | Path, student_role: str = "student",
                  speed: Speed | None = None, command: str | None = None, **options) -> list[Path]:  # fmt: skip
    """Evaluate teacher and student under one protocol into ``out/eval_teacher.json`` and
    ``out/eval_student.json``; returns both paths.

    Speed (``speed``: a :class:`gankd.evaluate.Speed`) is measured once, teacher and student interleaved in one process
    (the student's ``efficiency.speed_vs_teacher``: speed-ups with their spread); the teacher's
    ``efficiency.speed`` is its side of that same run, so every number in the report comes
    from one measurement. ``options`` (quality, reference, fidelity, device) go to
    :func:`gankd.evaluate.evaluate`.
    """
    out = Path(out)
    t = evaluate(teacher_dir, role="teacher", command=command, **options)
    s = evaluate(student, teacher_dir, speed=speed, role=student_role, command=command, **options)
    vt = s.get("efficiency", {}).get("speed_vs_teacher")
    if vt:
        t["efficiency"]["speed"] = vt["teacher"]
        t["speed_note"] = f"timed interleaved with {s['model'] or 'the student'} in one process (eval_student.json)"
    paths = [out / "eval_teacher.json", out / "eval_student.json"]
    for r, path in zip((t, s), paths):
        save_result(r, path)
    return paths
