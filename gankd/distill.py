"""Generator distillation (``gankd compress``): teacher -> slim student.

Per step, teacher and student see the same latents and classes:

    loss = pixel * L1(s, t) + perceptual * P(s, t) + feat * mean_i MSE(adapter_i(s_i), t_i)
           + adv * G_adv(D(s)) + kd * T^2 * KL(softmax(c(t)/T) || softmax(c(s)/T))

then one discriminator step on "real" (data, teacher images, or both) against the
student's images. The loop needs only a teacher callable with ``return_features``,
a student, and optional feature taps, so it does not depend on one model family.

Run folder: ``config.json`` (resolved), ``state.pt`` (resumable), ``student/`` (best
on the held-out selection), ``last/``, ``metrics.jsonl``, ``samples/``, ``tb/``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gankd import checkpoint as ckpt
from gankd import qat
from gankd.adapter import GeneratorAdapter, IOSpec, adapter_for, positional
from gankd.config import load_json, save_json, to_dict
from gankd.data import load_dataset
from gankd.fileio import portable_path
from gankd.loop import (
    BatchStream,
    Recipe,
    RunSchedule,
    RunSkeleton,
    ema_update,
    selected_on,
    set_lr,
    set_threads,
    step_generator,
)  # fmt: skip
from gankd.losses import ADVERSARIAL, PIXEL, FeatureAdapters, d_loss, g_loss, kd_loss, pixel_loss
from gankd.perceptual import PERCEPTUAL_NETS, perceptual_for_data
from gankd.runlock import holds_run_lock
from gankd.sampling import generate, grid, pair_grid, sample_grid, save_png
from gankd.selection import Selector, build_paired_selector, build_selector, check_rule
from gankd.students import INITS, build_student, frozen_copy, scales_by_width, student_channels

log = logging.getLogger(__name__)
REAL_SOURCES = ("auto", "data", "teacher", "both")
LR_SCHEDULES = ("constant", "cosine", "linear")


def adversarial_phase(cfg: DistillConfig, step: int, progress: float) -> bool:
    """Whether ``step`` (at ``progress`` of the run) is in the adversarial phase: from ``adv_start`` on and,
    with ``adv_max_steps``, among the run's last that many steps. With a wall budget the steps left are
    the fewer of ``steps - step`` and what the time left buys at the pace so far."""
    if progress < cfg.adv_start:
        return False
    return not cfg.adv_max_steps or steps_left(cfg, step, progress) <= cfg.adv_max_steps


def adversarial_start(cfg: DistillConfig, step: int, progress: float) -> float:
    """The progress at which the adversarial phase starts (``--adv-warmup`` ramps from there): ``adv_start``, or
    where ``adv_max_steps`` binds, the cap's steps before the end of the run's length (see :func:`steps_left`)."""
    if not cfg.adv_max_steps:
        return cfg.adv_start
    return max(cfg.adv_start, 1 - cfg.adv_max_steps / max(step + steps_left(cfg, step, progress), 1))


def steps_left(cfg: DistillConfig, step: int, progress: float) -> float:
    """The steps the run has left after ``step``: ``steps - step``, or with a wall budget the fewer of that and
    what the time left buys at the pace so far."""
    left = cfg.steps - step
    if cfg.max_minutes and 0 < progress < 1:
        left = min(left, step * (1 - progress) / progress)
    return left


def adv_cap_binds(steps: int, adv_start: float, cap: int) -> bool:
    """Whether an adversarial phase from ``adv_start`` of ``steps`` would run more than ``cap`` steps (0 = no cap):
    only then does ``--adv-max-steps`` change the run."""
    return bool(cap) and steps - math.ceil(adv_start * steps) > cap


def schedule_progress(cfg: DistillConfig, step: int, progress: float) -> float:
    """The progress the learning-rate schedule reads: ``progress`` itself, or with ``lr_phases`` where the
    ``adv_max_steps`` cap binds, each phase mapped onto its share of a run whose phases fit ``adv_start``: the
    cheap phase onto [0, adv_start), the capped adversarial phase onto [adv_start, 1]. The run's length is
    ``step`` + :func:`steps_left` (by ``steps``, or under a wall budget at the pace so far); where it is about
    the length at which the cap starts to bind, both mappings give ``progress``, so an estimate that crosses it
    moves the rate smoothly."""
    cap = cfg.adv_max_steps
    if not (cfg.lr_phases and cap and cfg.adv > 0):
        return progress
    left = steps_left(cfg, step, progress)
    if not adv_cap_binds(round(step + left), cfg.adv_start, cap):
        return progress
    if left > cap:
        return cfg.adv_start * step / (step + left - cap)
    return cfg.adv_start + (1 - cfg.adv_start) * (cap - left) / cap


def lr_factor(schedule: str, progress: float) -> float:
    """Multiplier on the base learning rates at ``progress`` in [0, 1] of the run."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    if schedule == "linear":
        return 1.0 - p
    return 1.0
D_INITS = ("auto", "teacher", "fresh")

# The presets are the measured best recipe (benchmarks/results/curves_levers and curves_lr8x_cosine, width 1/4
# on Fashion-MNIST): the student's learning rate 8x the GAN default (--lr-g 1.6e-3: FID 4.31 against 15.75 at 10
# CPU minutes; 2x and 4x in between; feature matching through D did not help). The classic preset keeps the
# GAN rate 2e-4, which every committed matrix result used; the default recipe is the recipe study's choice.
PRESET_LR_G = 1.6e-3
# gankd's defaults before the budget-aware recipe: batch 64, the GAN rate, perceptual + KD + feature terms and the
# adversarial term from the first step, the teacher's D (or a full-width fresh one), checkpoints selected on val;
# the quick and full presets build on them (so a change of the defaults does not change a preset)
CLASSIC = {"batch_size": 64, "lr_g": 2e-4, "lr_d": 2e-4, "lr_schedule": "constant", "pixel": 1.0, "perceptual": 1.0,
           "kd": 0.1, "feat": 1.0, "adv": 0.05, "adv_start": 0.0, "d_init": "auto", "d_width": 1.0,
           "ema_decay": 0.999, "select": "perceptual-fid", "eval_every": 500, "eval_samples": 2000,
           "real": "auto", "adv_max_steps": 0, "lr_phases": False}  # fmt: skip
PRESETS = {
    "classic": dict(CLASSIC),
    # 6 minutes of training (about 9 with the evaluation of `gankd demo`) on a 2-core CPU; without the perceptual
    # and KD terms the demo's student made 622 steps and reached FID 4.06 (with them: 437 steps, 7.72)
    "quick": {**CLASSIC, "steps": 1200, "eval_every": 300, "eval_samples": 1000, "max_minutes": 6.0,
              "lr_g": PRESET_LR_G, "perceptual": 0.0, "kd": 0.0},
    # the plain baseline: what a user writes in forty lines instead of gankd (the pruned student, pixel L1 to the
    # teacher's output, batch 32, Adam 2e-4, nothing else, last weights); every result stands beside it
    "plain": {"init": "prune", "pixel": 1.0, "pixel_kind": "l1", "gt": 0.0, "batch_size": 32, "lr_g": 2e-4,
              "betas": (0.5, 0.999), "lr_schedule": "constant", "adv": 0.0, "feat": 0.0, "perceptual": 0.0,
              "kd": 0.0, "d_feat": 0.0, "ema_decay": 0.0, "select": "last", "eval_every": 0, "adv_max_steps": 0,
              "lr_phases": False},
    # the 8x rate decayed to 0 by a cosine over 2,712 steps (25 % of the fmnist teacher's 10,850) with no
    # perceptual or KD term (they cost a third of a step on CPU and do worse at equal steps): FID 1.64 +- 0.23
    # at width 1/4 over 3 seeds, 1.02x the teacher (benchmarks/results/step_budget, on a GPU); 33.5 min and
    # FID 1.44 end to end on one CPU thread (benchmarks/results/preset_full, seed 0); with both terms the same
    # steps gave 2.12 (seed 0), and 4,061 steps (60 CPU min) 1.72 +- 0.23
    "full": {**CLASSIC, "steps": 2712, "eval_every": 500, "eval_samples": 5000, "max_minutes": 0.0,
             "lr_g": PRESET_LR_G, "lr_schedule": "cosine", "perceptual": 0.0, "kd": 0.0},
    # for FID against the user's data rather than fidelity to the teacher: the default's cheap pixel-L1 steps (5x
    # the rate, cosine over the budget, EMA) with a slim fresh discriminator (a quarter of the width) on the data
    # from the first step. The recipe study chose it on val among four such candidates (benchmarks/recipes.py
    # DATA_RULE; Fashion-MNIST, width 1/4, 20 calibrated minutes: FID against the val split 1.12x the teacher's,
    # the default 3.2x); it gives up fidelity to the teacher for it (PSNR to the teacher 2.7 dB below plain's)
    "data": {"pixel": 1.0, "feat": 0.0, "perceptual": 0.0, "kd": 0.0, "adv": 0.05, "adv_start": 0.0,
             "adv_max_steps": 0, "lr_phases": False, "d_init": "fresh", "d_width": 0.25, "real": "data",
             "batch_size": 32, "lr_g": 1e-3, "lr_schedule": "cosine", "ema_decay": 0.999, "select": "last",
             "eval_every": 0},
}


@dataclass
class DistillConfig:
    teacher: str = "fmnist-teacher"  # teacher generator folder (gankd's or from `gankd import`) or shipped name
    data: str = "auto"  # fashion-mnist, folder:PATH, none (data-free); auto = the teacher's recorded data, else none
    real_split: str = "fit"  # split of real images (never test; val is for selection)
    width: float | None = 0.25  # student width relative to the teacher
    channels: tuple[int, ...] | None = None  # explicit per-stage student channels (overrides width; gankd families)
    target_macs: float | None = None  # student MACs as a fraction of the teacher's (overrides width)
    target_latency: str | None = None  # e.g. "0.4ms": the widest student this fast here (overrides width)
    latency_runtime: str = "onnxruntime"  # how --target-latency times: onnxruntime or eager
    latency_batch: int = 1
    latency_threads: int = 1
    latency_size: int | None = None  # image-to-image: the source side in px --target-latency times (default: trained)
    student_upsample: str | None = None  # dcgan and U-Net students: nearest-conv (int8-friendly); None = the teacher's
    student_layout: str | None = None  # dcgan students: latency (fewer, larger ops for batch 1); None = the teacher's
    keep_layers: tuple[str, ...] | None = None  # imported generators: module paths whose channels stay whole
    # imported generators: the student is the teacher's class built with these constructor arguments over the
    # teacher's (a narrower copy, random init, e.g. {"channel_max": 32}) instead of the pruned teacher
    student_kwargs: dict | None = None
    init: str = "prune"  # prune (inherit top-L1 teacher channels) or random
    init_from: str | None = None  # prune the student from this wider student (a generator folder of the
    # teacher's family) instead of the teacher: iterative prune-and-distill (1/2 -> 1/4 -> 1/8)
    steps: int = 4000  # student updates
    batch_size: int = 32  # latents per step (per process under DDP)
    lr_g: float = 1e-3  # student learning rate (5x the GAN rate: the cosine decay takes it to 0 by the budget)
    lr_d: float = 2e-4  # discriminator learning rate
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas
    pixel: float = 1.0  # weight of the pixel loss (0 = off)
    pixel_kind: str = "l1"  # l1 or l2
    perceptual: float = 0.0  # weight of the perceptual loss (0 = off)
    perceptual_net: str = "fmnist"  # fmnist (shipped), lpips-alex or lpips-vgg
    perceptual_path: str | None = None  # folder of the fmnist perceptual net (default: shipped)
    perceptual_off: str | None = None  # set by the run: why the perceptual/KD terms changed to fit the data
    feat: float = 0.0  # weight of the intermediate-feature loss (0 = off)
    feat_layers: tuple | None = None  # feature taps matched via 1x1 adapters: indices (gankd families, default
    # 1,2,3) or module paths (imported generators, default: the taps chosen at import)
    adv: float = 0.05  # weight of the adversarial loss (0 = off, no discriminator)
    adv_loss: str = "hinge"  # hinge or ns
    d_init: str = "fresh"  # teacher (start from the teacher's D), fresh, or auto (the teacher's if it ships one)
    d_freeze: int = 0  # keep the first N blocks of the teacher's discriminator frozen (FreezeD; 0 = train all)
    adv_warmup: float = 0.0  # fraction of the run over which the adversarial weight ramps from 0 to --adv (from the
    # adversarial phase's start)
    adv_start: float = 0.9  # fraction of the run before which there is no discriminator step or adversarial
    # term: a cheap pixel/feature phase first, the adversarial phase after it (0 = adversarial from the start)
    adv_max_steps: int = 4000  # the adversarial phase's most steps: it starts at the later of --adv-start and this
    # many steps before the end, so it does not grow with the budget (0 = no cap; a wall budget without --steps
    # estimates the steps left at the pace so far, and adversarial steps cost more, so it then runs fewer). The
    # recipe study chose 4,000 with lr_phases on val (its phase's length at 20 calibrated minutes on the sprites):
    # at 40 minutes the uncapped tenth cost 0.68 dB PSNR against plain; it binds only past 40,000 steps
    lr_phases: bool = True  # where --adv-max-steps binds: the learning-rate schedule runs over each
    # phase as over a run whose phases fit --adv-start: the cheap phase ends at --adv-start's rate, the capped
    # adversarial phase decays from there to 0 (without it the cap puts that phase in the schedule's last breath)
    d_width: float = 0.25  # width multiplier of a fresh discriminator (a slimmer D makes a step cheaper)
    export: str | None = None  # after training: the selected student exported to ONNX at this precision (fp32,
    # fp16, int8) through export's quality gate, and re-timed against --target-latency (run_dir/deploy.json)
    max_fid_rise: float = 0.10  # --export: the gate's limit on the FID rise over fp32 (a fraction; inf: record only)
    gate_samples: int = 2000  # --export: samples of the gate's FIDs (export's --gate-samples)
    qat_start: float = 1.0  # fraction of the budget after which the student trains through the int8 rounding of
    # `gankd export --precision int8` (quantization-aware distillation, gankd.qat); 1 = never
    # (a loss-weight schedule: pixel, perceptual and feature terms lead early; 0 = full weight from the start)
    real: str = "teacher"  # what D sees as real: teacher (its images on the batch's inputs), data, both; auto =
    # data if there is data, else teacher. The recipe study chose teacher on val: with data, a D that learns the
    # real images pulls the student off the teacher (FID vs teacher samples and PSNR both worse than plain's)
    kd: float = 0.0  # weight of soft-label KD through the perceptual net's class head
    kd_temperature: float = 4.0  # KD temperature T
    d_feat: float = 0.0  # weight of feature matching through the discriminator (DCD-style): MSE of D's
    # intermediate features of student vs teacher images (0 = off; needs --adv > 0)
    lr_schedule: str = "cosine"  # constant, cosine or linear decay of both learning rates to 0 over the run
    # (progress = the larger of step/steps and elapsed/max_minutes)
    ema_decay: float = 0.999  # EMA of student weights (0 = off)
    eval_every: int = 0  # steps between held-out validations for checkpoint selection (0 = only at the end)
    eval_samples: int = 2000  # samples per held-out validation
    select: str = "last"  # checkpoint selection: last (where the cosine decay ends), perceptual-fid (val) or teacher-l1
    select_net: str | None = None  # classifier folder for perceptual-fid (default: perceptual_path, else shipped)
    seed: int = 0  # init, data order and noise
    threads: int = 0  # torch CPU threads (0 = default)
    channels_last: bool = True  # NHWC memory format
    log_every: int = 50  # steps between metrics.jsonl lines
    sample_every: int = 500  # steps between sample grids
    checkpoint_every: int = 250  # steps between atomic checkpoints
    max_minutes: float = 0.0  # wall budget; 0 = none
    snapshot_minutes: tuple[float, ...] = ()  # save the EMA student as it is at these wall minutes (snapshots/)
    device: str = "cpu"  # cpu or cuda
    # image-to-image teachers (inputs are source images from --data)
    task: str = "auto"  # degradation that makes the pairs (see gankd.paired); auto = the teacher's recorded task
    task_params: dict | None = None  # degradation parameters; None = the teacher's recorded ones
    gt: float = 0.0  # weight of L1 to the ground-truth target (image-to-image only; 0 = teacher only)

    def __post_init__(self):
        if self.channels is None and (self.width is None or self.width <= 0):
            raise ValueError(f"--width must be > 0, got {self.width}")
        if self.init not in INITS:
            raise ValueError(f"--init must be one of {INITS}, got '{self.init}'")
        ADVERSARIAL.check(self.adv_loss, "--adv-loss")
        PIXEL.check(self.pixel_kind, "pixel_kind")
        if self.real not in REAL_SOURCES:
            raise ValueError(f"--real must be one of {REAL_SOURCES}, got '{self.real}'")
        if self.d_init not in D_INITS:
            raise ValueError(f"--d-init must be one of {', '.join(D_INITS)}, got '{self.d_init}'")
        if self.target_macs is not None and not 0 < self.target_macs <= 1:
            raise ValueError(f"--target-macs must be a fraction in (0, 1], got {self.target_macs}")
        if self.target_latency is not None:
            from gankd.latency import RUNTIMES, parse_latency

            parse_latency(self.target_latency)
            if self.target_macs is not None or self.channels:
                raise ValueError("--target-latency picks the width itself: drop --target-macs / --channels")
            if self.latency_runtime not in RUNTIMES:
                raise ValueError(f"--latency-runtime must be one of {', '.join(RUNTIMES.accepted())}")
            if self.latency_batch < 1 or self.latency_threads < 1 or (self.latency_size or 1) < 1:
                raise ValueError("--latency-batch, --latency-threads and --latency-size must be >= 1")
        if self.perceptual_net not in PERCEPTUAL_NETS:
            raise ValueError(f"--perceptual must be one of {PERCEPTUAL_NETS}")
        if self.real_split == "test":
            raise ValueError("--real-split test is reserved for reported numbers; use fit or train")
        if min(self.pixel, self.perceptual, self.feat, self.adv, self.kd) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.gt < 0 or self.d_feat < 0:
            raise ValueError(f"--gt and --d-feat must be >= 0, got {self.gt}, {self.d_feat}")
        if self.d_feat > 0 and self.adv <= 0:
            raise ValueError("--d-feat matches features of the discriminator: it needs --adv > 0")
        if self.d_freeze < 0 or not 0 <= self.adv_warmup <= 1:
            raise ValueError(f"--d-freeze must be >= 0 and --adv-warmup in [0, 1], got {self.d_freeze}, "
                             f"{self.adv_warmup}")  # fmt: skip
        if (self.d_freeze or self.adv_warmup) and self.adv <= 0:
            raise ValueError("--d-freeze and --adv-warmup act on the adversarial loss: they need --adv > 0")
        if not 0 <= self.adv_start < 1 or self.d_width <= 0:
            raise ValueError(f"--adv-start must be in [0, 1) and --d-width > 0, got {self.adv_start}, {self.d_width}")
        if self.adv_max_steps < 0:
            raise ValueError(f"--adv-max-steps must be >= 0 (0 = no cap), got {self.adv_max_steps}")
        if self.student_kwargs is not None:
            if not isinstance(self.student_kwargs, dict) or not self.student_kwargs:
                raise ValueError("--student-kwargs must be a non-empty JSON object such as '{\"channel_max\": 32}'")
            clash = [f for f, v in (("--channels", self.channels), ("--target-macs", self.target_macs),
                                    ("--target-latency", self.target_latency), ("--init-from", self.init_from),
                                    ("--student-upsample", self.student_upsample),
                                    ("--student-layout", self.student_layout)) if v]  # fmt: skip
            if clash:
                raise ValueError(f"--student-kwargs builds the student itself: drop {', '.join(clash)}")
        if self.export is not None:
            from gankd.precision import PRECISIONS

            if self.export not in PRECISIONS:
                raise ValueError(f"--export must be one of {', '.join(PRECISIONS)}, got {self.export!r}")
        if not 0 <= self.qat_start <= 1:
            raise ValueError(f"--qat-start must be in [0, 1] (1 = no quantization-aware phase), got {self.qat_start}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got '{self.lr_schedule}'")
        if self.pixel + self.perceptual + self.feat + self.adv + self.kd + self.gt == 0:
            raise ValueError("all loss weights are 0: turn at least one on (e.g. --pixel 1)")
        if self.kd_temperature <= 0:
            raise ValueError(f"--kd-temperature must be > 0, got {self.kd_temperature}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("--steps and --batch-size must be >= 1")
        if not self.max_minutes >= 0:  # NaN too
            raise ValueError(f"--max-minutes must be >= 0 (0 = no time budget), got {self.max_minutes}")
        if self.eval_every < 0:
            raise ValueError(f"--set eval_every must be >= 0 (0 = only at the end), got {self.eval_every}")
        check_rule(self.select, distill=True)


def _dist_info() -> tuple[int, int]:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


def _maybe_ddp(module: nn.Module, world: int, device: str) -> nn.Module:
    if world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(module, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") else m


def resolve_data(data: str, teacher_dir: Path) -> str:
    """``--data auto``: the data the teacher records (its config.json ``data``), else ``none``
    (data-free: the discriminator's real side is teacher samples)."""
    if data != "auto":
        return data
    meta = load_json(teacher_dir / ckpt.CONFIG)
    recorded = meta.get("data") if isinstance(meta, dict) else None
    if recorded:
        return str(recorded)
    log.info("%s records no training data: distilling data-free (pass --data to use real images)", teacher_dir)
    return "none"


def teacher_task_params(teacher: str) -> dict:
    """The degradation parameters an image-to-image teacher's folder records ({} if none)."""
    meta = load_json(ckpt.resolve_model_path(teacher) / ckpt.CONFIG)
    return dict(meta.get("task_params") or {}) if isinstance(meta, dict) else {}


def _feature_taps(cfg: DistillConfig, teacher: nn.Module) -> IOSpec | None:
    """The teacher's IOSpec with the feature taps ``--feat-layers`` names (module paths,
    imported generators only); None keeps the spec the teacher came with."""
    layers = list(cfg.feat_layers or ())
    paths = [v for v in layers if isinstance(v, str) and not v.lstrip("-").isdigit()]
    if not paths:
        return None
    if adapter_for(teacher).native_family is not None:
        raise ValueError(f"--feat-layers {','.join(map(str, layers))}: gankd's own generators take stage "
                         "indices such as 1,2,3 (module paths are for imported generators)")  # fmt: skip
    if len(paths) != len(layers):
        raise ValueError("--feat-layers: give either indices or module paths, not both")
    return IOSpec(teacher.spec.inputs, teacher.spec.output_range, paths, teacher.spec.image_channels,
                  teacher.spec.resolution)  # fmt: skip


def _feat_indices(cfg: DistillConfig, teacher: GeneratorAdapter) -> list[int]:
    """Indices into the teacher's feature list matched by the feature loss."""
    if teacher.spec.features == "none":
        return []
    layers = list(cfg.feat_layers or ())
    if layers and all(isinstance(v, int) or str(v).lstrip("-").isdigit() for v in layers):
        return [int(v) for v in layers]
    if teacher.spec.features == "native":  # the family's own choice (dcgan: after the 4x4 stage), else all taps
        taps = getattr(teacher.model, "feature_taps", None)
        return list(taps) if taps is not None else list(range(len(teacher.model.feature_channels)))
    return list(range(len(teacher.spec.features)))


def timed_runtime(cfg: DistillConfig) -> str:
    """What ``--target-latency`` times: ``--latency-runtime``; with ``--export int8`` and the default ONNX
    Runtime, the int8 export (what deploys), so the budget buys the width int8 can afford."""
    from gankd.runtimes import RUNTIMES

    if cfg.export == "int8" and RUNTIMES.canonical(cfg.latency_runtime) == "onnx":
        return "onnx-int8"
    return cfg.latency_runtime


def latency_width(teacher: nn.Module, spec: IOSpec | None, cfg: DistillConfig) -> tuple[float, dict]:
    """``--target-latency``: the widest student that meets the budget on this machine (:mod:`gankd.latency`)."""
    from gankd.latency import parse_latency, width_for_latency

    runtime = timed_runtime(cfg)

    if scales_by_width(adapter_for(teacher).native_family):
        def build(w):
            return adapter_for(build_student(teacher, w, None, "random", cfg.seed, cfg.student_upsample,
                                             cfg.student_layout))  # fmt: skip
    elif other_upsample(teacher, cfg):
        def build(w):
            return upsample_student(teacher, spec, dataclasses.replace(cfg, target_latency=None, width=w))
    else:
        from gankd.pruning import prune_generator

        def build(w):
            return prune_generator(adapter_for(teacher, spec), width=w, init="prune", seed=cfg.seed,
                                   keep_layers=list(cfg.keep_layers or ()))
    if cfg.latency_size and not adapter_for(teacher).is_i2i:
        raise ValueError("--latency-size sets the source image side of image-to-image teachers; this teacher draws "
                         "from noise at one resolution: drop --latency-size")  # fmt: skip
    width, rec = width_for_latency(build, adapter_for(teacher, spec), parse_latency(cfg.target_latency),
                                   runtime, cfg.latency_batch, cfg.latency_threads,
                                   size=cfg.latency_size)  # fmt: skip
    log.info("--target-latency %s: width %.4g measures %.4g ms (%s, batch %d, %d thread(s); teacher %.4g ms)",
             cfg.target_latency, width, rec["measured_ms"], runtime, cfg.latency_batch,
             cfg.latency_threads, rec["teacher_ms"])  # fmt: skip
    return width, rec


def make_student(teacher: nn.Module, spec: IOSpec | None, cfg: DistillConfig) -> GeneratorAdapter:
    """The student behind the seam: gankd's families by their own width scaling and top-L1
    channel inheritance (``gankd.students``); imported generators by torch-pruning
    (``gankd.pruning``), to ``--width``, ``--target-macs`` or ``--target-latency`` (then the
    student has ``latency_budget``, the measurements)."""
    if cfg.student_kwargs:
        return copy_student(teacher, spec, cfg)
    family = adapter_for(teacher).native_family
    if cfg.student_layout and not scales_by_width(family):
        raise ValueError("--student-layout changes gankd's dcgan students; this teacher's student keeps the "
                         "teacher's layout (drop --student-layout)")  # fmt: skip
    if cfg.target_latency is not None:
        width, rec = latency_width(teacher, spec, cfg)
        student = make_student(teacher, spec, dataclasses.replace(cfg, target_latency=None, width=width))
        student.latency_budget = rec
        return student
    if scales_by_width(family):
        width = cfg.width
        if cfg.target_macs is not None:
            width = width_for_macs(teacher, cfg.target_macs, cfg.student_upsample, cfg.student_layout)
            log.info("--target-macs %g: width %.4g", cfg.target_macs, width)
        channels = list(cfg.channels) if cfg.channels else None
        if cfg.init_from:  # the teacher's channel plan, the weights of a wider student
            src = ckpt.load_generator(ckpt.resolve_model_path(cfg.init_from))
            if src.native_family != family:
                raise ValueError(f"--init-from {cfg.init_from} is not a {family} generator like the teacher")
            want = student_channels(teacher, None if channels else width, channels)
            have = list(src.model.feature_channels)
            if len(want) != len(have) or any(w > h for w, h in zip(want, have)):
                raise ValueError(f"--init-from {cfg.init_from} has channels {have}: the student needs {want}, "
                                 "so start from a wider student (or drop --init-from)")  # fmt: skip
            log.info("student pruned from %s (%s -> %s channels)", cfg.init_from, have, want)
            return adapter_for(build_student(src, None, want, "prune", cfg.seed, cfg.student_upsample,
                                             cfg.student_layout))  # fmt: skip
        return adapter_for(build_student(teacher, None if channels else width, channels, cfg.init, cfg.seed,
                                         cfg.student_upsample, cfg.student_layout))  # fmt: skip
    if other_upsample(teacher, cfg):
        return upsample_student(teacher, spec, cfg)
    if cfg.channels:
        raise ValueError("--channels sets per-stage channels of gankd's own generators; for an imported "
                         "generator use --width or --target-macs")  # fmt: skip
    if cfg.init_from:
        raise ValueError("--init-from (iterative pruning) works for gankd's dcgan family so far; drop it")
    from gankd.pruning import prune_generator

    student = prune_generator(adapter_for(teacher, spec), width=None if cfg.target_macs else cfg.width,
                              target_macs=cfg.target_macs, init=cfg.init, seed=cfg.seed,
                              keep_layers=list(cfg.keep_layers or ()))  # fmt: skip
    # the class and kwargs it is saved and rebuilt with (gankd's other families: their Config)
    student.origin = getattr(teacher, "origin", None) or family_origin(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    return student.train()


def copy_student(teacher: nn.Module, spec: IOSpec | None, cfg: DistillConfig) -> GeneratorAdapter:
    """``--student-kwargs``: the teacher's own class built with those constructor arguments over the teacher's,
    fresh weights from ``cfg.seed``, called as the teacher is (same inputs, output, forward arguments)."""
    from gankd.importer import instantiate, resolve_class
    from gankd.metrics.efficiency import count_macs

    t = adapter_for(teacher, spec)
    if scales_by_width(t.native_family):
        raise ValueError(f"--student-kwargs builds an imported generator's class with other arguments; gankd's "
                         f"{t.native_family} students are built by --width or --channels")  # fmt: skip
    origin = getattr(teacher, "origin", None) or family_origin(teacher)
    kwargs = {**(origin.get("kwargs") or {}), **cfg.student_kwargs}
    torch.manual_seed(cfg.seed)
    model = instantiate(resolve_class(origin["class"], "--student-kwargs"), kwargs, origin["class"])
    student = GeneratorAdapter(model.train(), IOSpec.from_dict(t.spec.to_dict()))
    with torch.no_grad():
        was = model.training
        model.eval()
        got = tuple(student.call_positional(*t.example_inputs(2)).shape[1:])
        model.train(was)
    if got != tuple(t.output_shape()):
        raise ValueError(f"--student-kwargs {cfg.student_kwargs}: the student draws {got}, the teacher "
                         f"{tuple(t.output_shape())}; change only widths, not the output size")  # fmt: skip
    student.origin = {"class": origin["class"], "kwargs": kwargs}
    inputs = t.example_inputs(1)
    t_macs = count_macs(positional(t), inputs)["macs"]
    s_macs = count_macs(positional(student), inputs)["macs"]
    student.prune_info = {"method": "the teacher's class with --student-kwargs", "student_kwargs": cfg.student_kwargs,
                          "init": "random", "seed": cfg.seed, "teacher_macs": t_macs, "student_macs": s_macs,
                          "macs_ratio": s_macs / t_macs if t_macs else None,
                          "teacher_params": sum(p.numel() for p in t.model.parameters()),
                          "student_params": sum(p.numel() for p in model.parameters())}  # fmt: skip
    log.info("student: %s(**%s), fresh weights, %.3g of the teacher's MACs", origin["class"], kwargs,
             student.prune_info["macs_ratio"] or 0)  # fmt: skip
    return student


def other_upsample(teacher: nn.Module, cfg: DistillConfig) -> bool:
    """Whether ``--student-upsample`` asks for another upsampling than the teacher's (a teacher without the choice,
    an imported generator: any)."""
    teacher_kind = getattr(getattr(adapter_for(teacher).model, "cfg", None), "upsample", None)
    return bool(cfg.student_upsample) and cfg.student_upsample != teacher_kind


def upsample_student(teacher: nn.Module, spec: IOSpec | None, cfg: DistillConfig) -> GeneratorAdapter:
    """``--student-upsample`` on a family whose config has an ``upsample`` field (gankd's U-Net): the teacher's class
    at ``--width`` with that upsampling, fresh weights (its decoder's shapes differ from the teacher's), built and
    saved as ``--student-kwargs`` builds a student."""
    m = adapter_for(teacher).model
    if adapter_for(teacher).native_family is None or not hasattr(getattr(m, "cfg", None), "upsample"):
        raise ValueError("--student-upsample changes gankd's dcgan and U-Net students; this generator's student "
                         "keeps its layers (drop --student-upsample)")  # fmt: skip
    if cfg.width is None or cfg.target_macs is not None or cfg.channels:
        raise ValueError("--student-upsample on a U-Net teacher builds the student at --width: drop --target-macs "
                         "and --channels")  # fmt: skip
    kwargs = {"width": m.cfg.width * cfg.width, "upsample": cfg.student_upsample}
    student = copy_student(teacher, spec, dataclasses.replace(cfg, student_kwargs=kwargs, student_upsample=None))
    student.prune_info["method"] = f"the teacher's class at --width with --student-upsample {cfg.student_upsample}"
    return student


def family_origin(model: nn.Module) -> dict:
    """``{"class": "module:Class", "kwargs": config}`` of a gankd family other than dcgan, so a
    torch-pruned student of it is saved and rebuilt like an imported generator."""
    m = model.model if isinstance(model, GeneratorAdapter) else model
    return {"class": f"{type(m).__module__}:{type(m).__qualname__}", "kwargs": to_dict(m.cfg)}


def width_for_macs(teacher: nn.Module, target: float, upsample: str | None = None, layout: str | None = None) -> float:
    """The largest width whose student (with that ``upsample`` and ``layout``) has at most ``target`` x the
    teacher's MACs (bisection)."""
    from gankd.metrics.efficiency import count_macs
    from gankd.pruning import largest_width

    t = adapter_for(teacher)
    ex = t.example_inputs(1)
    full = count_macs(t.model, ex)["macs"]

    def macs(w: float) -> int:
        return count_macs(build_student(teacher, w, None, "random", 0, upsample, layout), ex)["macs"]

    best = largest_width(lambda w: (macs(w) <= target * full, None), steps=20)
    if best is None:
        raise ValueError(f"--target-macs {target} is below what the narrowest student reaches")
    return best[0]


def freeze_first_blocks(D: nn.Module, n: int, d_init: str) -> None:
    """FreezeD (Mo et al., 2020): the first ``n`` blocks of the teacher's discriminator keep their
    weights; the later blocks and the head train. Needs a D started from the teacher's."""
    if d_init != "teacher":
        raise ValueError("--d-freeze keeps blocks of the teacher's discriminator, but this run starts a fresh one: "
                         "pass --d-init teacher with a teacher that ships a discriminator, or --d-freeze 0")
    blocks = D.blocks() if hasattr(D, "blocks") else None
    if blocks is None:
        raise ValueError(f"--d-freeze: the {type(D).__name__} discriminator does not list its blocks; use --d-freeze 0")
    if n >= len(blocks):
        raise ValueError(f"--d-freeze {n}: this discriminator has {len(blocks)} blocks and the last must train; "
                         f"pass at most --d-freeze {len(blocks) - 1}")  # fmt: skip
    for block in blocks[:n]:  # no gradient, and no spectral-norm or BatchNorm statistics update either
        block.requires_grad_(False)
        block.register_forward_pre_hook(_stay_in_eval)


def _stay_in_eval(module: nn.Module, args) -> None:
    if module.training:  # D.train() elsewhere must not wake a frozen block
        module.eval()


def fresh_discriminator(teacher_dir: Path, channels: int, height: int, width: int, num_classes: int,
                        i2i: bool = False, in_channels: int = 0, d_width: float = 1.0) -> nn.Module:  # fmt: skip
    """A new discriminator for the teacher's images: the family the teacher's folder names,
    else gankd's dcgan (any power-of-two resolution, 1 or 3 channels, projection for classes)."""
    from gankd.registry import DISCRIMINATORS

    if i2i:  # a conditional PatchGAN on (source, image)
        cls = DISCRIMINATORS.get("patch")
        return cls(cls.Config(resolution=height, in_channels=in_channels, image_channels=channels, width=d_width))
    if height != width or height < 8 or height & (height - 1) or channels not in (1, 3):
        raise ValueError(f"a fresh discriminator needs square power-of-two images with 1 or 3 channels; the "
                         f"teacher makes {channels}x{height}x{width}: pass --adv 0")  # fmt: skip
    meta = load_json(teacher_dir / ckpt.CONFIG)
    family = (meta.get("discriminator") or {}).get("family", "dcgan") if isinstance(meta, dict) else "dcgan"
    cls = DISCRIMINATORS.get(family)
    return cls(cls.Config(resolution=height, image_channels=channels, num_classes=num_classes, width=d_width))


class Distiller(Recipe):
    """The distillation recipe: teacher, student, losses and optimisers, and one step;
    ``run()`` trains to ``steps`` in the run skeleton."""

    name, out_name, log_prefix = "compress", "student", "train/"

    def __init__(self, cfg: DistillConfig, run_dir: str | Path, resume: bool = False,
                 progress: bool = False, selector: Selector | None = None):  # fmt: skip
        """``selector``: the checkpoint-selection rule; default built from ``cfg.select`` (see
        :mod:`gankd.selection`), checked here, before any training."""
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        self.rank, self.world = _dist_info()
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if cfg.device.startswith("cuda") else "gloo"
            torch.distributed.init_process_group(backend)
        if cfg.device.startswith("cuda") and self.world > 1:
            cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        set_threads(cfg.threads)
        self.state_path = self.run_dir / "state.pt"
        if self.rank == 0:  # one process prepares --out (others would race on its temp files)
            ckpt.prepare_run_dir(self.run_dir, resume)  # refuses a foreign --out, or a run without --resume
        elif not resume and self.state_path.exists():
            raise FileExistsError(f"{self.run_dir} already holds a run; pass --resume or choose another --out")
        teacher, teacher_dir = self._setup_teacher(selector)
        self._setup_student(teacher)
        self._setup_discriminator(teacher_dir)
        self._setup_losses(teacher_dir)
        self._setup_data()
        self.start, self.best, self.wall_s = 0, None, 0.0
        if resume:
            self._resume(teacher_dir)
        self._setup_ddp()

    def _setup_teacher(self, selector: Selector | None) -> tuple[nn.Module, Path]:
        """The teacher (frozen, behind the seam), what D sees as real, image-to-image pairs and the selector."""
        cfg, dev = self.cfg, self.cfg.device
        teacher_dir = ckpt.resolve_model_path(cfg.teacher)
        teacher = ckpt.load_generator(teacher_dir)  # a gankd family module, or an imported generator's adapter
        self.teacher_dir = teacher_dir
        self.teacher_sha256 = ckpt.file_sha256(teacher_dir / ckpt.WEIGHTS)
        self.data_spec = resolve_data(cfg.data, teacher_dir)
        self.real = cfg.real if cfg.real != "auto" else ("data" if self.data_spec != "none" else "teacher")
        if self.data_spec == "none" and self.real in ("data", "both"):
            raise ValueError(f"--real {self.real} needs real images but there is no data: pass --data "
                             "(fashion-mnist or folder:PATH) or --real teacher (data-free)")  # fmt: skip
        taps = _feature_taps(cfg, teacher)
        self.teacher = frozen_copy(adapter_for(teacher, taps)).to(dev)
        self.nc = self.teacher.num_classes
        c_out, h_out, w_out = self.teacher.output_shape()
        self.image_channels, self.resolution, self.out_width = c_out, h_out, w_out
        self.i2i = self.teacher.is_i2i
        self.pairs = self.val_pairs = None
        self.task_meta: dict = {}
        if self.i2i:  # inputs are source images: pairs of the teacher's task on --data
            self._load_pairs(teacher_dir)
            if selector is None:
                no_val = self.val_pairs is None
                selector = build_paired_selector(
                    "teacher-l1" if cfg.select == "perceptual-fid" and no_val else cfg.select,
                    pairs=self.pairs if no_val else self.val_pairs, eval_samples=cfg.eval_samples, device=dev,
                    teacher=self.teacher)  # fmt: skip
        elif cfg.gt > 0:
            raise ValueError("--gt weighs L1 to a ground-truth target: image-to-image teachers only; drop it")
        if selector is None:
            net = cfg.select_net or (cfg.perceptual_path if cfg.perceptual_net == "fmnist" else None)
            select = cfg.select
            if self.data_spec == "none" and select == "perceptual-fid":
                log.warning("checkpoint selection: no data (data-free), so perceptual-fid has no val split: "
                            "selected on teacher-l1 instead")  # fmt: skip
                select = "teacher-l1"
            selector = build_selector(
                select, data=self.data_spec, resolution=self.resolution,
                image_channels=self.image_channels, z_dim=0, num_classes=self.nc,
                eval_samples=cfg.eval_samples, device=dev, net=net, teacher=self.teacher,
            )  # fmt: skip
            if select != cfg.select:
                selector.requested, selector.fallback = cfg.select, "no data (data-free): no val split"
        self.selector = selector
        self.taps = taps
        return teacher, teacher_dir

    def _setup_student(self, teacher: nn.Module) -> None:
        """The student (pruned or built), its EMA, the feature adapters and the generator's optimizer params."""
        cfg, dev = self.cfg, self.cfg.device
        taps = self.taps
        if teacher.native_family is not None and not scales_by_width(teacher.native_family):
            torch.manual_seed(cfg.seed)  # gankd's i2i families: no loader or builder seeds student, adapters, D
        student = make_student(teacher, taps, cfg)
        self.latency_budget = getattr(student, "latency_budget", None)
        # DDP buckets expect contiguous grads: keep NCHW there
        # NHWC for 4-D weights; a module with 5-D ones (a modulated conv's (1, out, in, k, k)) stays as it is
        use_cl = cfg.channels_last and self.world == 1 and all(t.dim() != 5 for t in student.state_dict().values())
        self.cl = torch.channels_last if use_cl else torch.contiguous_format
        self.student = student.to(dev).to(memory_format=self.cl)
        self.ema = copy.deepcopy(self.student).eval()
        params = list(self.student.parameters())
        self.adapters = None
        if cfg.feat > 0:
            layers = _feat_indices(cfg, self.teacher)
            n_student = len(student.feature_channels())
            if any(i >= n_student for i in layers):  # a student with fewer stages (--student-layout latency)
                layers = [i for i in layers if i < n_student]
                log.info("feature loss on taps %s: the student has %d feature maps", layers, n_student)
            if layers:
                self.adapters = FeatureAdapters(student.feature_channels(), self.teacher.feature_channels(),
                                                layers).to(dev)  # fmt: skip
                params += list(self.adapters.parameters())
            else:
                log.warning("the teacher has no feature taps: the feature loss is off (pass --feat-layers "
                            "with module paths, or --feat 0)")  # fmt: skip
        self.g_params = params

    def _setup_discriminator(self, teacher_dir: Path) -> None:
        """D for the adversarial term: the teacher's or a fresh one (``--d-init``, ``--d-width``), and its optimizer."""
        cfg, dev = self.cfg, self.cfg.device
        self.D = None
        self.adv_scale = 1.0  # --adv-warmup ramps it from 0 (set by the loop before each step)
        self.adv_on = True  # False during the cheap phase before --adv-start
        if cfg.adv > 0:
            has_d = ckpt.has_discriminator(teacher_dir)
            d_init = cfg.d_init if cfg.d_init != "auto" else ("teacher" if has_d else "fresh")
            if cfg.d_init == "auto" and not has_d:
                log.info("%s ships no discriminator: the adversarial loss starts a fresh one", teacher_dir)
            if d_init == "teacher":
                if not has_d:
                    raise FileNotFoundError(
                        f"the adversarial loss starts its discriminator from the teacher's, but {teacher_dir} "
                        "ships none: pass --d-init fresh or --adv 0"
                    )
                D = ckpt.load_discriminator(teacher_dir)
            else:
                D = fresh_discriminator(teacher_dir, self.image_channels, self.resolution, self.out_width, self.nc,
                                        self.i2i, self.teacher.spec.image().shape[0] if self.i2i else 0,
                                        cfg.d_width)  # fmt: skip
            self.d_init = d_init
            if cfg.d_freeze:
                freeze_first_blocks(D, cfg.d_freeze, d_init)
            self.D = D.to(dev).to(memory_format=self.cl).train()
            trainable = [p for p in self.D.parameters() if p.requires_grad]
            self.opt_d = torch.optim.Adam(trainable, lr=cfg.lr_d, betas=cfg.betas)

    def _setup_losses(self, teacher_dir: Path) -> None:
        """The perceptual / KD network that fits the data, and the generator's optimizer."""
        cfg, dev = self.cfg, self.cfg.device
        self.perc = None
        if cfg.perceptual > 0 or cfg.kd > 0:  # a net that does not fit the data: LPIPS or off, one warning
            self.perc, changes = perceptual_for_data(
                cfg.perceptual_net, cfg.perceptual_path, data=self.data_spec, image_channels=self.image_channels,
                perceptual=cfg.perceptual, kd=cfg.kd, teacher_dir=teacher_dir)  # fmt: skip
            for k, v in changes.items():  # recorded in the run's config.json
                setattr(cfg, k, v)
            self.perc = self.perc.to(dev) if self.perc is not None else None
        self.opt_g = torch.optim.Adam(self.g_params, lr=cfg.lr_g, betas=cfg.betas)

    def _setup_data(self) -> None:
        """The batches of real images (or pairs) D and the paired losses draw from."""
        cfg = self.cfg
        self.data = None
        if self.i2i:
            from gankd.paired import PairStream

            self.data = self.pairs
            self.stream = PairStream(self.pairs, cfg.batch_size, cfg.seed, self.rank, self.world)
        elif self.D is not None and self.real in ("data", "both"):
            self.data = load_dataset(self.data_spec, cfg.real_split, self.resolution, self.image_channels)
            self.stream = BatchStream(self.data, cfg.batch_size, cfg.seed, self.rank, self.world)

    def _resume(self, teacher_dir: Path) -> None:
        """Every state of the run from state.pt (the same teacher weights or a refusal)."""
        cfg = self.cfg
        st = ckpt.load_state(self.state_path)
        if st.get("teacher_sha256", self.teacher_sha256) != self.teacher_sha256:
            raise ValueError(f"{self.run_dir} was distilled from other teacher weights than {teacher_dir} "
                             "holds now: start a new --out (or restore that teacher)")  # fmt: skip
        self.student.load_state_dict(st["student"])
        self.ema.load_state_dict(st["ema"])
        self.opt_g.load_state_dict(st["opt_g"])
        # the optimizer state carries the old rate; a schedule sets it again before every step
        if cfg.lr_schedule == "constant":
            set_lr(self.opt_g, cfg.lr_g, "--lr-g")
        if self.adapters is not None:
            self.adapters.load_state_dict(st["adapters"])
        if self.D is not None:
            self.D.load_state_dict(st["D"])
            self.opt_d.load_state_dict(st["opt_d"])
            if cfg.lr_schedule == "constant":
                set_lr(self.opt_d, cfg.lr_d, "--lr-d")
        self.start, self.wall_s = int(st["step"]), float(st.get("wall_s", 0.0))
        self._qat_ranges = st.get("qat_ranges")
        # the selected model on disk is the truth (state.pt may predate its last validation)
        self.best = selected_on(self.run_dir / "student")

    def _setup_ddp(self) -> None:
        dev = self.cfg.device
        self.s_ddp = _maybe_ddp(self.student, self.world, dev)
        self.a_ddp = _maybe_ddp(self.adapters, self.world, dev) if self.adapters is not None else None
        self.d_batch_norm = self.D is not None and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                       for m in self.D.modules())  # fmt: skip
        if self.d_batch_norm and self.world > 1:
            raise ValueError("this discriminator has BatchNorm layers, which DDP would see called twice per step: "
                             "compress it in one process, or pass --adv 0 or --d-init fresh")  # fmt: skip
        self.d_ddp = _maybe_ddp(self.D, self.world, dev) if self.D is not None else None
        self.is_main = self.rank == 0

    def _load_pairs(self, teacher_dir: Path) -> None:
        """Training (``real_split``) and val pairs of an image-to-image teacher's task on the data."""
        from gankd.paired import TaskParams, load_pairs

        cfg = self.cfg
        if self.data_spec == "none":
            raise ValueError(f"{teacher_dir} maps source images to images: it needs data to take sources from; "
                             "pass --data (e.g. folder:PATH or paired:SRC_DIR,TGT_DIR)")  # fmt: skip
        meta = load_json(teacher_dir / ckpt.CONFIG)
        meta = meta if isinstance(meta, dict) else {}
        task = cfg.task if cfg.task != "auto" else "paired" if self.data_spec.startswith("paired:") else \
            meta.get("task")  # paired folders are their own task, whatever the teacher was trained on
        if not task:
            raise ValueError(f"{teacher_dir} records no image-to-image task: pass --task (e.g. denoise+inpaint, "
                             "or paired with --data paired:SRC_DIR,TGT_DIR)")  # fmt: skip
        params = cfg.task_params if cfg.task_params is not None else meta.get("task_params") or {}
        params = TaskParams(**params)
        self.task_meta = {"task": task, "task_params": to_dict(params)}
        c_in = self.teacher.spec.image().shape[0]
        if c_in != self.image_channels:
            raise ValueError(f"the teacher takes {c_in}-channel sources and makes {self.image_channels}-channel "
                             "images; gankd's pairs keep one channel count: use a teacher that maps C to C")

        def pairs(split):
            return load_pairs(self.data_spec, split, self.resolution, self.image_channels, task, params, cfg.seed)

        self.pairs = pairs(cfg.real_split)
        try:
            self.val_pairs = pairs("val")
        except (RuntimeError, ValueError) as e:
            log.warning("no val pairs (%s): selection falls back to teacher-l1 on training sources", e)
            self.val_pairs = None

    def _grid_pairs(self):
        return self.val_pairs if self.val_pairs is not None else self.pairs

    # ------------------------------------------------------------------ one step
    def step(self, step: int) -> dict[str, float]:
        cfg, dev = self.cfg, self.cfg.device
        gen = step_generator(cfg.seed, step, self.rank)
        self._target = None
        if self.i2i:  # a batch of pairs: the source is the input and the D's condition
            src, self._target = (t.to(dev) for t in self.stream.batch(step))
            inputs, y = {self.teacher.spec.image().name: src}, src
        else:
            inputs = {k: v.to(dev) for k, v in self.teacher.random_inputs(cfg.batch_size, gen).items()}
            lab = self.teacher.spec.label()
            y = inputs[lab.name] if lab is not None else None
        feats = self.adapters is not None
        with torch.no_grad():
            t_img, t_feats = self.teacher(inputs, return_features=feats) if feats else (self.teacher(inputs), None)
        s_img, s_feats = self.s_ddp(inputs, return_features=True) if feats else (self.s_ddp(inputs), None)
        values: dict[str, float] = {}
        losses = []
        if cfg.pixel > 0:
            loss = pixel_loss(s_img, t_img, cfg.pixel_kind)
            losses.append(cfg.pixel * loss)
            values["pixel"] = loss.item()
        if self._target is not None and cfg.gt > 0:
            loss = pixel_loss(s_img, self._target, "l1")
            losses.append(cfg.gt * loss)
            values["gt"] = loss.item()
        if self.perc is not None:
            s_pf, s_logits = self.perc.features(s_img) if hasattr(self.perc, "features") else (None, None)
            if cfg.perceptual > 0:
                if s_pf is not None:
                    with torch.no_grad():
                        t_pf, t_logits = self.perc.features(t_img)
                    loss = self.perc.distance(s_pf, t_pf).mean()
                else:
                    loss = self.perc(s_img, t_img).mean()
                losses.append(cfg.perceptual * loss)
                values["perceptual"] = loss.item()
            if cfg.kd > 0:
                if cfg.perceptual <= 0:
                    with torch.no_grad():
                        t_logits = self.perc.features(t_img)[1]
                loss = kd_loss(s_logits, t_logits, cfg.kd_temperature)
                losses.append(cfg.kd * loss)
                values["kd"] = loss.item()
        if self.a_ddp is not None:
            loss = self.a_ddp(s_feats, t_feats)
            losses.append(cfg.feat * loss)
            values["feat"] = loss.item()
        if self.D is not None and self.adv_on:
            real, y_real = self._real(step, t_img, y)
            n = real.shape[0]
            if self.d_batch_norm:  # real and fake batches apart, as the G step sees fakes alone: mixed
                # batch statistics let a BatchNorm D separate them in its step and not in G's
                loss_d = d_loss(self.d_ddp(real.contiguous(memory_format=self.cl), y_real),
                                self.d_ddp(s_img.detach().contiguous(memory_format=self.cl), y), cfg.adv_loss)
            else:
                both = torch.cat([real, s_img.detach()]).contiguous(memory_format=self.cl)
                y_both = torch.cat([y_real, y]) if y is not None else None
                logits = self.d_ddp(both, y_both)  # one D forward: DDP sees one call per backward
                loss_d = d_loss(logits[:n], logits[n:], cfg.adv_loss)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            values["d"] = loss_d.item()
            if cfg.d_feat > 0:  # one D pass gives the adversarial logits and the features to match
                logits_s, f_s = self.D(s_img.contiguous(memory_format=self.cl), y, return_features=True)
                with torch.no_grad():
                    _, f_t = self.D(t_img.contiguous(memory_format=self.cl), y, return_features=True)
                loss_f = torch.stack([F.mse_loss(a, b) for a, b in zip(f_s, f_t)]).mean()
                losses.append(cfg.d_feat * loss_f)
                values["d_feat"] = loss_f.item()
            else:
                logits_s = self.D(s_img.contiguous(memory_format=self.cl), y)
            loss = g_loss(logits_s, cfg.adv_loss)
            losses.append(cfg.adv * self.adv_scale * loss)
            values["adv"] = loss.item()
        total = torch.stack(losses).sum()
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        if self.D is not None and self.adv_on:
            self.D.zero_grad(set_to_none=True)  # grads from the student step are not D's
        if cfg.ema_decay > 0:
            ema_update(self.ema, self.student, min(cfg.ema_decay, (1 + step) / (10 + step)))
        else:
            self.ema.load_state_dict(self.student.state_dict())
        values["total"] = total.item()
        return values

    def _real(self, step: int, t_img: torch.Tensor, y: torch.Tensor | None):
        cfg = self.cfg
        if self.real == "teacher":
            return t_img, y
        if self.i2i:  # the batch's targets, conditioned on the same sources
            x, yr = self._target, y
            if self.real == "both":
                h = x.shape[0] // 2
                x = torch.cat([x[:h], t_img[h:]])
            return x, yr
        x, yr = self.stream.batch(step)
        x = x.to(cfg.device)
        yr = yr.to(cfg.device) if self.nc else None
        if self.real == "both":
            h = x.shape[0] // 2
            x = torch.cat([x[:h], t_img[h:]])
            yr = torch.cat([yr[:h], y[h:]]) if yr is not None else None
        return x, yr

    # ------------------------------------------------------------ evaluation
    # ------------------------------------------------------------ the skeleton's hooks
    def validate(self) -> dict[str, float]:
        """Held-out validation of the EMA student under the run's selection rule
        (:mod:`gankd.selection`): ``val_pixel_l1`` to the teacher, ``val_fid`` under
        perceptual-fid, and ``select`` (lower is better, ``inf`` = never selected)."""
        return self.selector.score(self.ema)

    def train_mode(self) -> None:
        self.student.train()

    def before_step(self, step: int, progress: float) -> None:
        cfg = self.cfg
        on = adversarial_phase(cfg, step, progress)
        if on and not self.adv_on and self.D is not None:
            log.info("adversarial phase from step %d (progress %.3f)", step, progress)
        self.adv_on = on
        if cfg.qat_start < 1 and progress >= cfg.qat_start and not qat.enabled(self.student):
            n = qat.enable(self.student)
            qat.set_ranges(self.student, getattr(self, "_qat_ranges", None) or {})
            log.info("quantization-aware phase from step %d: %d layers train through the int8 rounding", step, n)
        if cfg.adv_warmup > 0:
            self.adv_scale = min(1.0, (progress - adversarial_start(cfg, step, progress)) / cfg.adv_warmup)
        if cfg.lr_schedule != "constant":
            f = lr_factor(cfg.lr_schedule, schedule_progress(cfg, step, progress))
            for opt, base in ((self.opt_g, cfg.lr_g), (getattr(self, "opt_d", None), cfg.lr_d)):
                for g in opt.param_groups if opt is not None else ():
                    g["lr"] = base * f

    def postfix(self, values: dict) -> dict:
        return {"total": f"{values['total']:.3f}"}

    def modules(self) -> dict:
        return {"student": self.student, "ema": self.ema, "D": self.D, "adapters": self.adapters}

    def state(self, step: int, wall_s: float) -> dict:
        st = {"student": self.student.state_dict(), "ema": self.ema.state_dict(),
              "opt_g": self.opt_g.state_dict(), "step": step, "best": self.best,
              "teacher_sha256": self.teacher_sha256, "wall_s": wall_s}  # fmt: skip
        if self.adapters is not None:
            st["adapters"] = self.adapters.state_dict()
        if self.D is not None:
            st["D"], st["opt_d"] = self.D.state_dict(), self.opt_d.state_dict()
        if qat.enabled(self.student):
            st["qat_ranges"] = qat.ranges(self.student)
        return st

    def extra(self, step: int) -> dict:
        """What a saved student records besides its weights: steps, teacher, data, how it was built."""
        out = {"trained_steps": step, "teacher": portable_path(self.teacher_dir), "data": self.data_spec,
               "real": self.real, **self.task_meta}  # fmt: skip
        info = getattr(_unwrap(self.student), "prune_info", None)
        if info:
            out["prune"] = info
        return out

    def grid(self) -> torch.Tensor:
        if self.i2i:
            return pair_grid(self.ema, self._grid_pairs(), 8, device=self.cfg.device, teacher=self.teacher)
        return sample_grid(self.ema, list(range(64)), nrow=10 if self.nc == 10 else 8, device=self.cfg.device)

    def agree(self, stop: bool) -> bool:
        """Every rank stops at the same step: one rank out of budget stops them all."""
        if self.world > 1:
            flag = torch.tensor([float(stop)])
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def finish(self) -> None:
        """Teacher row above student row for the same seeds and classes (image-to-image: one row
        per val pair, source | teacher | student | target)."""
        best = ckpt.load_generator(self.run_dir / "student", self.cfg.device)
        if self.i2i:
            g = pair_grid(best, self._grid_pairs(), 8, device=self.cfg.device, teacher=self.teacher)
            save_png(g, self.run_dir / "teacher_vs_student.png")
            return
        seeds = list(range(10))
        inputs = self.teacher.seeded_inputs(seeds)
        t = generate(self.teacher, inputs, device=self.cfg.device)
        s = generate(best, inputs, device=self.cfg.device)
        save_png(grid(torch.cat([t, s]), nrow=len(seeds)), self.run_dir / "teacher_vs_student.png")

    # ------------------------------------------------------------ the run
    def run(self) -> Path:
        """Train to ``cfg.steps`` or the wall budget (all ranks stop at the same step) in the run
        skeleton (:class:`gankd.loop.RunSkeleton`); returns the selected student folder."""
        cfg = self.cfg
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_json({**to_dict(cfg), "world_size": self.world, "selection": self.selector.info(),
                       "resolved": self._resolved()}, self.run_dir / "config.json")  # fmt: skip
        schedule = RunSchedule(cfg.steps, cfg.max_minutes, cfg.log_every, cfg.sample_every, cfg.checkpoint_every,
                               cfg.eval_every, cfg.snapshot_minutes)  # fmt: skip
        skeleton = RunSkeleton(self, schedule, resumed=self.start > 0, progress=self.progress)
        out = skeleton.run()
        self.steps_done, self.stopped_by = skeleton.steps_done, skeleton.stopped_by
        if self.world > 1:
            # DDP keeps parameters in step; BatchNorm statistics are per-rank, so end on rank 0's
            for m in (self.student, self.ema, self.D):
                for b in m.buffers() if m is not None else ():
                    torch.distributed.broadcast(b, src=0)
            torch.distributed.barrier()
        return out

    def _resolved(self) -> dict:
        """The choices ``auto`` settings made for this run (data, real side, D start, taps, task)."""
        taps = self.teacher.spec.features
        return {"data": self.data_spec, "real": self.real, "d_init": getattr(self, "d_init", None), **self.task_meta,
                "feature_taps": taps, "io": self.teacher.spec.to_dict(),
                "student_params": sum(p.numel() for p in self.student.parameters()),
                "latency_budget": self.latency_budget}  # fmt: skip


@holds_run_lock("run_dir")  # one process per --out (torchrun: rank 0 holds it)
def compress(cfg: DistillConfig, run_dir: str | Path, resume: bool = False, progress: bool = False,
             selector: Selector | None = None) -> Path:  # fmt: skip
    """Distil ``cfg.teacher`` into a student; returns the selected student folder.

    Checkpoints are selected by ``cfg.select`` (:mod:`gankd.selection`); ``selector``
    replaces that rule with a hand-built :class:`~gankd.selection.Selector`. With ``cfg.export`` the
    selected student is then exported and checked (:func:`gankd.export.deploy_student`)."""
    student = Distiller(cfg, run_dir, resume=resume, progress=progress, selector=selector).run()
    if cfg.export and int(os.environ.get("RANK", "0")) == 0:
        from gankd.export import deploy_student

        run_cfg = load_json(Path(run_dir) / "config.json")
        deploy_student(student, cfg.export, cfg.max_fid_rise, (run_cfg.get("resolved") or {}).get("latency_budget"),
                       Path(run_dir) / "deploy.json", gate_samples=cfg.gate_samples)  # fmt: skip
    return student
