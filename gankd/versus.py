"""A finished ``gankd compress`` run beside the plain baseline a user would write instead.

``gankd vs-plain RUN`` trains the plain baseline, ``--preset plain`` (the pruned student, pixel L1 to
the teacher's output, batch 32, Adam 2e-4, no discriminator, no feature or perceptual term, the
last weights), on the run's teacher, student shape, data and seed, for the wall time the run's
training took (equal wall time on this machine; RUN/plain), then scores both students the same
way: noise-to-image, FID/KID against teacher samples from seeds 2,000,000.. (the extractor gankd
picks for the domain) and PSNR/SSIM to the teacher on the same latents (seeds 0..); image-to-image,
PSNR/SSIM to the teacher's outputs and to the targets and FID against the targets on the test
pairs. A noise-to-image run with data is also scored by FID/KID against the data's test split, and one whose
discriminator learned the data (``--preset data``, ``--real data``) is judged on that: lower FID against the
data than plain's. Writes RUN/vs_plain.json.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from gankd.checkpoint import load_state
from gankd.config import from_dict, load_json
from gankd.evaluate import REFERENCE_FIRST_SEED, Fidelity, Quality, Reference, evaluate, save_result
from gankd.fileio import portable_path

log = logging.getLogger(__name__)

PLAIN_DIR = "plain"
RESULT = "vs_plain.json"
# what the two students share: the teacher, the student's shape, the data, the seed and where they run
SHARED = ("teacher", "data", "width", "channels", "target_macs", "student_upsample", "student_layout", "keep_layers",
          "student_kwargs", "task", "task_params", "real_split", "seed", "device", "threads",
          "channels_last")  # fmt: skip
UNBOUNDED_STEPS = 10**9  # the wall budget stops the plain run, never the step count
PSNR_TOLERANCE_DB = 0.3  # "ahead": lower FID against teacher samples, PSNR at most this far below plain's


def plain_config(run: Path):
    """The plain baseline's config for a finished run: its shared fields, ``--preset plain``, and the run's
    training wall time as the budget (a latency-budget run's picked width, not the search)."""
    from gankd.distill import PRESETS, DistillConfig

    if not (run / "config.json").is_file() or not (run / "state.pt").is_file():
        raise FileNotFoundError(f"{run} is not a gankd compress run (no config.json and state.pt); "
                                "pass the --out folder of a finished gankd compress")  # fmt: skip
    ran = load_json(run / "config.json")
    wall = float(load_state(run / "state.pt").get("wall_s", 0.0))
    if wall <= 0:
        raise ValueError(f"{run}: its state.pt records no training time; finish it with gankd compress --resume")
    names = {f.name for f in dataclasses.fields(DistillConfig)}
    shared = {k: ran[k] for k in SHARED if k in ran and k in names}
    picked = (ran.get("resolved") or {}).get("latency_budget")
    if picked:
        shared["width"] = picked["width"]
    return from_dict(DistillConfig, {**shared, **PRESETS["plain"], "steps": UNBOUNDED_STEPS,
                                     "max_minutes": wall / 60})  # fmt: skip


def score(student: Path, teacher: Path, num_samples: int, device: str, data: str | None = None) -> dict:
    """The headline numbers of one student against its teacher, and against ``data``'s test split when given (see
    the module doc)."""
    from gankd.evaluate_i2i import is_i2i_model

    fi = Fidelity(teacher_samples=num_samples, lpips=False)
    if is_i2i_model(student):
        q = Quality(metrics=("psnr", "ssim", "fid", "kid"), num_samples=num_samples)
        r = evaluate(student, teacher, quality=q, fidelity=fi, device=device)
        vt, vd = r["vs_teacher"], r["vs_target"]
        return {"psnr_to_teacher": vt["psnr_db"]["mean"], "ssim_to_teacher": vt["ssim"]["mean"],
                "psnr_to_target": vd["psnr_db"]["mean"], "fid_vs_data": r["distribution"]["fid"],
                "pairs": r["num_pairs"]}  # fmt: skip
    q = Quality(metrics=("fid", "kid"), num_samples=num_samples, class_consistency=False)
    r = evaluate(student, teacher, quality=q, reference=Reference(str(teacher)), fidelity=fi, device=device)
    row = {"fid_vs_teacher": r["quality"]["fid"], "kid_vs_teacher": r["quality"]["kid_mean"],
           "psnr_to_teacher": r["teacher_fidelity"]["psnr_db"], "ssim_to_teacher": r["teacher_fidelity"]["ssim"]}
    if data:
        d = evaluate(student, quality=q, reference=Reference(f"{data}:test"), device=device)["quality"]
        row.update(fid_vs_data=d["fid"], kid_vs_data=d["kid_mean"])
    return row


def verdict(gankd: dict, plain: dict, goal: str = "teacher") -> str:
    """The recipe study's test, on this run: lower FID against teacher samples than plain's and PSNR to the
    teacher at most 0.3 dB below plain's (image-to-image: PSNR alone); ``goal="data"``: lower FID against the
    data's test split than plain's."""
    if goal == "data":
        return "ahead" if gankd["fid_vs_data"] < plain["fid_vs_data"] else "behind"
    dpsnr = gankd["psnr_to_teacher"] - plain["psnr_to_teacher"]
    fid = "fid_vs_teacher" in gankd
    if dpsnr >= 0 and (not fid or gankd["fid_vs_teacher"] < plain["fid_vs_teacher"]):
        return "ahead"
    if dpsnr >= -PSNR_TOLERANCE_DB and fid and gankd["fid_vs_teacher"] < plain["fid_vs_teacher"]:
        return f"ahead (PSNR {dpsnr:+.2f} dB, within {PSNR_TOLERANCE_DB} dB)"
    return "behind"


def versus_plain(run: str | Path, num_samples: int = 2000, device: str = "cpu", progress: bool = False) -> dict:
    """Train the plain baseline for ``run``'s wall time (kept and resumed in RUN/plain) and score both students;
    returns (and writes to RUN/vs_plain.json) both rows, the budget and the verdict."""
    from gankd.checkpoint import resolve_model_path
    from gankd.distill import compress
    from gankd.evaluate_i2i import is_i2i_model

    run = Path(run)
    cfg = plain_config(run)
    plain_run = run / PLAIN_DIR
    log.info("plain baseline: %.2f minutes (the run's training time) into %s", cfg.max_minutes, plain_run)
    plain = compress(cfg, plain_run, resume=(plain_run / "state.pt").is_file(), progress=progress)
    teacher = resolve_model_path(cfg.teacher)
    steps = {k: int(load_state(r / "state.pt")["step"]) for k, r in (("gankd", run), ("plain", plain_run))}
    ran = load_json(run / "config.json")
    resolved = ran.get("resolved") or {}
    data = resolved.get("data") if resolved.get("data") not in (None, "none") and not is_i2i_model(plain) else None
    goal = "data" if data and ran.get("adv", 0) > 0 and resolved.get("real") == "data" else "teacher"
    rows = {"gankd": score(run / "student", teacher, num_samples, device, data),
            "plain": score(plain, teacher, num_samples, device, data)}  # fmt: skip
    rec = {"schema": "gankd.vs-plain/1", "run": portable_path(run), "teacher": portable_path(teacher),
           "plain_run": portable_path(plain_run), "wall_minutes": round(cfg.max_minutes, 3), "steps": steps,
           "num_samples": num_samples, "teacher_reference_seeds": f"{REFERENCE_FIRST_SEED}..",
           "goal": goal, **rows, "verdict": verdict(rows["gankd"], rows["plain"], goal)}  # fmt: skip
    save_result(rec, run / RESULT)
    return rec


def summary(rec: dict) -> str:
    """The two rows as a small table (what ``gankd vs-plain`` prints)."""
    keys = [k for k in ("fid_vs_teacher", "psnr_to_teacher", "ssim_to_teacher", "psnr_to_target", "fid_vs_data")
            if k in rec["gankd"]]  # fmt: skip
    lines = [f"{'':8s} {'steps':>8s} " + " ".join(f"{k:>16s}" for k in keys)]
    for name in ("plain", "gankd"):
        lines.append(f"{name:8s} {rec['steps'][name]:8d} " + " ".join(f"{rec[name][k]:16.4g}" for k in keys))
    goal = "FID against the data" if rec.get("goal") == "data" else "fidelity to the teacher"
    lines.append(f"equal wall time: {rec['wall_minutes']:.3g} min each; gankd vs plain, judged on {goal}: "
                 f"{rec['verdict']}")
    return "\n".join(lines)
