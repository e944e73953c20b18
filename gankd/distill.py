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
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gankd import checkpoint as ckpt
from gankd.config import save_json, to_dict
from gankd.data import load_dataset
from gankd.loop import (
    BatchStream,
    Budget,
    RunLogger,
    TrainingDiverged,
    check_finite,
    check_finite_modules,
    ema_update,
    follow_budget,
    sample_labels,
    selected_on,
    set_lr,
    set_threads,
    step_generator,
)  # fmt: skip
from gankd.losses import ADV_LOSSES, FeatureAdapters, d_loss, g_loss, kd_loss, pixel_loss
from gankd.perceptual import PERCEPTUAL_NETS, build_perceptual
from gankd.sampling import balanced_labels, generate, grid, latents, sample_grid, save_png
from gankd.selection import DEFAULT_SELECT, Selector, build_selector, check_rule
from gankd.students import INITS, build_student, frozen_copy

log = logging.getLogger(__name__)
REAL_SOURCES = ("data", "teacher", "both")

PRESETS = {
    # 6 minutes of training (about 10 with the evaluation of `gankd demo`) on a 2-core CPU
    "quick": {"steps": 1200, "eval_every": 300, "eval_samples": 1000, "max_minutes": 6.0},
    "full": {"steps": 8000, "eval_every": 1000, "eval_samples": 5000, "max_minutes": 0.0},
}


@dataclass
class DistillConfig:
    teacher: str = "fmnist-teacher"  # teacher generator folder or shipped name
    data: str = "fashion-mnist"  # dataset for the adversarial "real" side
    real_split: str = "fit"  # split of real images (never test; val is for selection)
    width: float | None = 0.25  # student width relative to the teacher
    channels: tuple[int, ...] | None = None  # explicit per-stage student channels (overrides width)
    init: str = "prune"  # prune (inherit top-L1 teacher channels) or random
    steps: int = 4000  # student updates
    batch_size: int = 64  # latents per step (per process under DDP)
    lr_g: float = 2e-4  # student learning rate
    lr_d: float = 2e-4  # discriminator learning rate
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas
    pixel: float = 1.0  # weight of the pixel loss (0 = off)
    pixel_kind: str = "l1"  # l1 or l2
    perceptual: float = 1.0  # weight of the perceptual loss (0 = off)
    perceptual_net: str = "fmnist"  # fmnist (shipped), lpips-alex or lpips-vgg
    perceptual_path: str | None = None  # folder of the fmnist perceptual net (default: shipped)
    feat: float = 1.0  # weight of the intermediate-feature loss (0 = off)
    feat_layers: tuple[int, ...] = (1, 2, 3)  # teacher feature indices matched via 1x1 adapters
    adv: float = 0.05  # weight of the adversarial loss (0 = off, no discriminator)
    adv_loss: str = "hinge"  # hinge or ns
    d_init: str = "teacher"  # teacher (start from the teacher's D) or fresh
    real: str = "data"  # what D sees as real: data, teacher or both
    kd: float = 0.1  # weight of soft-label KD through the perceptual net's class head
    kd_temperature: float = 4.0  # KD temperature T
    ema_decay: float = 0.999  # EMA of student weights (0 = off)
    eval_every: int = 500  # steps between held-out validations for checkpoint selection (0 = only at the end)
    eval_samples: int = 2000  # samples per held-out validation
    select: str = DEFAULT_SELECT  # checkpoint selection: perceptual-fid (val split), teacher-l1 or last
    select_net: str | None = None  # classifier folder for perceptual-fid (default: perceptual_path, else shipped)
    seed: int = 0  # init, data order and noise
    threads: int = 0  # torch CPU threads (0 = default)
    channels_last: bool = True  # NHWC memory format
    log_every: int = 50  # steps between metrics.jsonl lines
    sample_every: int = 500  # steps between sample grids
    checkpoint_every: int = 250  # steps between atomic checkpoints
    max_minutes: float = 0.0  # wall budget; 0 = none
    device: str = "cpu"  # cpu or cuda

    def __post_init__(self):
        if self.channels is None and (self.width is None or self.width <= 0):
            raise ValueError(f"--width must be > 0, got {self.width}")
        if self.init not in INITS:
            raise ValueError(f"--init must be one of {INITS}, got '{self.init}'")
        if self.adv_loss not in ADV_LOSSES:
            raise ValueError(f"--adv-loss must be one of {ADV_LOSSES}")
        if self.real not in REAL_SOURCES:
            raise ValueError(f"--real must be one of {REAL_SOURCES}, got '{self.real}'")
        if self.d_init not in ("teacher", "fresh"):
            raise ValueError(f"--d-init must be teacher or fresh, got '{self.d_init}'")
        if self.perceptual_net not in PERCEPTUAL_NETS:
            raise ValueError(f"--perceptual must be one of {PERCEPTUAL_NETS}")
        if self.real_split == "test":
            raise ValueError("--real-split test is reserved for reported numbers; use fit or train")
        if min(self.pixel, self.perceptual, self.feat, self.adv, self.kd) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.pixel + self.perceptual + self.feat + self.adv + self.kd == 0:
            raise ValueError("all loss weights are 0: turn at least one on (e.g. --pixel 1)")
        if self.kd_temperature <= 0:
            raise ValueError(f"--kd-temperature must be > 0, got {self.kd_temperature}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("--steps and --batch-size must be >= 1")
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


class Distiller:
    """Holds teacher, student, losses and optimisers; ``run()`` trains to ``steps``."""

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
        dev = cfg.device
        self.state_path = self.run_dir / "state.pt"
        if self.rank == 0:  # one process prepares --out (others would race on its temp files)
            ckpt.prepare_run_dir(self.run_dir, resume)  # refuses a foreign --out, or a run without --resume
        elif not resume and self.state_path.exists():
            raise FileExistsError(f"{self.run_dir} already holds a run; pass --resume or choose another --out")
        teacher_dir = ckpt.resolve_model_path(cfg.teacher)
        teacher = ckpt.load_generator(teacher_dir)
        self.teacher_dir = teacher_dir
        self.teacher_sha256 = ckpt.file_sha256(teacher_dir / ckpt.WEIGHTS)
        self.teacher = frozen_copy(teacher).to(dev)
        self.nc, self.z_dim = teacher.num_classes, teacher.z_dim
        if selector is None:
            net = cfg.select_net or (cfg.perceptual_path if cfg.perceptual_net == "fmnist" else None)
            selector = build_selector(
                cfg.select, distill=True, data=cfg.data, resolution=teacher.cfg.resolution,
                image_channels=teacher.cfg.image_channels, z_dim=self.z_dim, num_classes=self.nc,
                eval_samples=cfg.eval_samples, device=dev, net=net, teacher=self.teacher,
            )  # fmt: skip
        self.selector = selector
        student = build_student(teacher, cfg.width, list(cfg.channels) if cfg.channels else None,
                                cfg.init, cfg.seed)  # fmt: skip
        # DDP buckets expect contiguous grads: keep NCHW there
        use_cl = cfg.channels_last and self.world == 1
        self.cl = torch.channels_last if use_cl else torch.contiguous_format
        self.student = student.to(dev).to(memory_format=self.cl)
        self.ema = copy.deepcopy(self.student).eval()
        params = list(self.student.parameters())
        self.adapters = None
        if cfg.feat > 0:
            self.adapters = FeatureAdapters(student.feature_channels, teacher.feature_channels,
                                            list(cfg.feat_layers)).to(dev)  # fmt: skip
            params += list(self.adapters.parameters())
        self.D = None
        if cfg.adv > 0:
            if cfg.d_init == "teacher":
                if not ckpt.has_discriminator(teacher_dir):
                    raise FileNotFoundError(
                        f"the adversarial loss starts its discriminator from the teacher's, but {teacher_dir} "
                        "ships none: pass --d-init fresh or --adv 0"
                    )
                D = ckpt.load_discriminator(teacher_dir)
            else:
                meta = ckpt.read_meta(teacher_dir, "generator")
                from gankd.registry import DISCRIMINATORS

                dcfg = DISCRIMINATORS.get("dcgan").Config(
                    resolution=teacher.cfg.resolution, image_channels=teacher.cfg.image_channels,
                    num_classes=self.nc,
                )  # fmt: skip
                D = DISCRIMINATORS.get(meta.get("discriminator", {}).get("family", "dcgan"))(dcfg)
            self.D = D.to(dev).to(memory_format=self.cl).train()
            self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        self.perc = None
        if cfg.perceptual > 0 or cfg.kd > 0:
            self.perc = build_perceptual(cfg.perceptual_net, cfg.perceptual_path).to(dev)
            if cfg.kd > 0 and not self.perc.has_logits:
                raise ValueError(f"--kd needs a class head; --perceptual {cfg.perceptual_net} has none: use fmnist")
        self.opt_g = torch.optim.Adam(params, lr=cfg.lr_g, betas=cfg.betas)
        self.data = None
        if self.D is not None and cfg.real in ("data", "both"):
            self.data = load_dataset(cfg.data, cfg.real_split, teacher.cfg.resolution, teacher.cfg.image_channels)
            self.stream = BatchStream(self.data, cfg.batch_size, cfg.seed, self.rank, self.world)
        self.start, self.best, self.wall_s = 0, None, 0.0
        if resume:
            st = ckpt.load_state(self.state_path)
            if st.get("teacher_sha256", self.teacher_sha256) != self.teacher_sha256:
                raise ValueError(f"{self.run_dir} was distilled from other teacher weights than {teacher_dir} "
                                 "holds now: start a new --out (or restore that teacher)")  # fmt: skip
            self.student.load_state_dict(st["student"])
            self.ema.load_state_dict(st["ema"])
            self.opt_g.load_state_dict(st["opt_g"])
            set_lr(self.opt_g, cfg.lr_g, "--lr-g")  # the optimizer state carries the old one
            if self.adapters is not None:
                self.adapters.load_state_dict(st["adapters"])
            if self.D is not None:
                self.D.load_state_dict(st["D"])
                self.opt_d.load_state_dict(st["opt_d"])
                set_lr(self.opt_d, cfg.lr_d, "--lr-d")
            self.start, self.wall_s = int(st["step"]), float(st.get("wall_s", 0.0))
            # the selected model on disk is the truth (state.pt may predate its last validation)
            self.best = selected_on(self.run_dir / "student")
        self.s_ddp = _maybe_ddp(self.student, self.world, dev)
        self.a_ddp = _maybe_ddp(self.adapters, self.world, dev) if self.adapters is not None else None
        self.d_ddp = _maybe_ddp(self.D, self.world, dev) if self.D is not None else None
        self.is_main = self.rank == 0

    # ------------------------------------------------------------------ one step
    def step(self, step: int) -> dict[str, float]:
        cfg, dev = self.cfg, self.cfg.device
        gen = step_generator(cfg.seed, step, self.rank)
        z = torch.randn(cfg.batch_size, self.z_dim, generator=gen).to(dev)
        y = sample_labels(cfg.batch_size, self.nc, gen)
        y = y.to(dev) if y is not None else None
        with torch.no_grad():
            t_img, t_feats = self.teacher(z, y, return_features=True)
        s_img, s_feats = self.s_ddp(z, y, return_features=True)
        values: dict[str, float] = {}
        losses = []
        if cfg.pixel > 0:
            loss = pixel_loss(s_img, t_img, cfg.pixel_kind)
            losses.append(cfg.pixel * loss)
            values["pixel"] = loss.item()
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
        if self.D is not None:
            real, y_real = self._real(step, t_img, y)
            n = real.shape[0]
            both = torch.cat([real, s_img.detach()]).contiguous(memory_format=self.cl)
            y_both = torch.cat([y_real, y]) if y is not None else None
            logits = self.d_ddp(both, y_both)  # one D forward: DDP sees one call per backward
            loss_d = d_loss(logits[:n], logits[n:], cfg.adv_loss)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            values["d"] = loss_d.item()
            loss = g_loss(self.D(s_img.contiguous(memory_format=self.cl), y), cfg.adv_loss)
            losses.append(cfg.adv * loss)
            values["adv"] = loss.item()
        total = torch.stack(losses).sum()
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        if self.D is not None:
            self.D.zero_grad(set_to_none=True)  # grads from the student step are not D's
        if cfg.ema_decay > 0:
            ema_update(self.ema, self.student, min(cfg.ema_decay, (1 + step) / (10 + step)))
        else:
            self.ema.load_state_dict(self.student.state_dict())
        values["total"] = total.item()
        return values

    def _real(self, step: int, t_img: torch.Tensor, y: torch.Tensor | None):
        cfg = self.cfg
        if cfg.real == "teacher":
            return t_img, y
        x, yr = self.stream.batch(step)
        x = x.to(cfg.device)
        yr = yr.to(cfg.device) if self.nc else None
        if cfg.real == "both":
            h = x.shape[0] // 2
            x = torch.cat([x[:h], t_img[h:]])
            yr = torch.cat([yr[:h], y[h:]]) if yr is not None else None
        return x, yr

    # ------------------------------------------------------------ evaluation
    def validate(self) -> dict[str, float]:
        """Held-out validation of the EMA student under the run's selection rule
        (:mod:`gankd.selection`): ``val_pixel_l1`` to the teacher, ``val_fid`` under
        perceptual-fid, and ``select`` (lower is better, ``inf`` = never selected)."""
        return self.selector.score(self.ema)

    def _modules(self) -> dict:
        return {"student": self.student, "ema": self.ema, "D": self.D, "adapters": self.adapters}

    def save(self, step: int, last_good: list, wall_s: float) -> None:
        """state.pt and last/ (and student/ under ``--select last``), after a finiteness check."""
        check_finite_modules(self._modules(), step, last_good[0])
        st = {"student": self.student.state_dict(), "ema": self.ema.state_dict(),
              "opt_g": self.opt_g.state_dict(), "step": step, "best": self.best,
              "teacher_sha256": self.teacher_sha256, "wall_s": wall_s}  # fmt: skip
        if self.adapters is not None:
            st["adapters"] = self.adapters.state_dict()
        if self.D is not None:
            st["D"], st["opt_d"] = self.D.state_dict(), self.opt_d.state_dict()
        ckpt.save_state(st, self.state_path)
        extra = {"trained_steps": step, "teacher": str(self.teacher_dir)}
        ckpt.save_model(self.run_dir / "last", self.ema, "generator", discriminator=self.D,
                        extra={**extra, "selected_on": {"rule": "last", "step": step}})  # fmt: skip
        last_good[0] = self.state_path
        if self.selector.rule == "last":
            self.best = {**self.selector.info(), "step": step}
            ckpt.save_model(self.run_dir / "student", self.ema, "generator", discriminator=self.D,
                            extra={**extra, "selected_on": self.best})  # fmt: skip

    def _select(self, step: int, val: dict, last_good: list) -> None:
        if self.selector.rule == "last" or not self.selector.better(val, self.best):
            return
        check_finite_modules({"ema": self.ema, "D": self.D}, step, last_good[0])
        self.best = {**self.selector.info(), "step": step, **val}
        ckpt.save_model(self.run_dir / "student", self.ema, "generator", discriminator=self.D,
                        extra={"trained_steps": step, "teacher": str(self.teacher_dir),
                               "selected_on": self.best})  # fmt: skip

    def run(self) -> Path:
        """Train to ``cfg.steps`` or the wall budget (all ranks stop at the same step); returns
        the selected student folder. Each checkpoint is written before the validation at the
        same step, so a failing validation never loses trained weights."""
        cfg = self.cfg
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_json({**to_dict(cfg), "world_size": self.world, "selection": self.selector.info()},
                      self.run_dir / "config.json")  # fmt: skip
            logger = RunLogger(self.run_dir, resume_step=self.start if self.start else None)
        budget = Budget(cfg.max_minutes, self.wall_s)
        last_good = [self.state_path if self.start else None]
        bar = None
        if self.progress and self.is_main:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.start, desc="compress", unit="step", dynamic_ncols=True)
        step = self.start
        self.student.train()
        # a resumed run whose budget is spent trains no further (a fresh run takes at least one step)
        stop = self._agree(budget.used > 0 and budget.exhausted())
        self.stopped_by = "budget" if stop else None
        if stop:
            log.warning("time budget of %g min already used (%.0f s) at step %d: nothing to train",
                        cfg.max_minutes, budget.elapsed(), step)  # fmt: skip
        while step < cfg.steps and not stop:
            values = self.step(step)
            check_finite(values, step, last_good[0])
            step += 1
            stop = self._agree(budget.exhausted())
            end = step == cfg.steps or stop
            if bar is not None:
                bar.update(1)
                bar.set_postfix(total=f"{values['total']:.3f}")
                follow_budget(bar, budget, step, step - self.start, cfg.steps)
            if self.is_main:  # rank 0 alone writes and validates; the others wait in the next collective
                self._after_step(step, values, end, budget, logger, last_good)
            if stop:
                self.stopped_by = "budget"
                log.warning("time budget of %g min reached at step %d of %d", cfg.max_minutes, step, cfg.steps)
        self.steps_done = step
        if bar is not None:
            bar.close()
        if self.is_main:
            if step == self.start and not (self.run_dir / "student" / ckpt.WEIGHTS).exists():
                self._after_step(step, {}, True, budget, logger, last_good)  # nothing trained: still a model
            logger.close()
            if not (self.run_dir / "student" / ckpt.WEIGHTS).exists():
                raise TrainingDiverged(f"no validated checkpoint of {self.run_dir} had finite samples; the last "
                                       f"weights are in {self.run_dir / 'last'}: lower the learning rates")  # fmt: skip
            self._comparison_grid()
        if self.world > 1:
            # DDP keeps parameters in step; BatchNorm statistics are per-rank, so end on rank 0's
            for m in (self.student, self.ema, self.D):
                for b in m.buffers() if m is not None else ():
                    torch.distributed.broadcast(b, src=0)
            torch.distributed.barrier()
        return self.run_dir / "student"

    def _agree(self, stop: bool) -> bool:
        """Every rank stops at the same step: one rank out of budget stops them all."""
        if self.world > 1:
            flag = torch.tensor([float(stop)])
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def _after_step(self, step: int, values: dict, end: bool, budget: Budget, logger, last_good: list) -> None:
        cfg = self.cfg
        if values and (step % cfg.log_every == 0 or end):
            logger.scalars(step, {**values, "wall_s": budget.elapsed()}, prefix="train/")
        if step % cfg.sample_every == 0 or end:
            g = sample_grid(self.ema, list(range(64)), nrow=10 if self.nc == 10 else 8, device=cfg.device)
            save_png(g, self.run_dir / "samples" / f"step{step:07d}.png")
            logger.image("samples", g, step)
        if step % cfg.checkpoint_every == 0 or end:
            self.save(step, last_good, budget.elapsed())  # before validation: its failure loses nothing
        if (cfg.eval_every and step % cfg.eval_every == 0) or end:
            val = self.validate()  # inside the wall budget, like every recipe's validation
            logger.scalars(step, {**val, "wall_s": budget.elapsed()}, prefix="val/")
            self._select(step, val, last_good)

    def _comparison_grid(self) -> None:
        """Teacher row above student row for the same seeds and classes."""
        seeds = list(range(10))
        z = latents(seeds, self.z_dim)
        y = balanced_labels(len(seeds), self.nc)
        best = ckpt.load_generator(self.run_dir / "student", self.cfg.device)
        t = generate(self.teacher, z, y, device=self.cfg.device)
        s = generate(best, z, y, device=self.cfg.device)
        save_png(grid(torch.cat([t, s]), nrow=len(seeds)), self.run_dir / "teacher_vs_student.png")


def compress(cfg: DistillConfig, run_dir: str | Path, resume: bool = False, progress: bool = False,
             selector: Selector | None = None) -> Path:  # fmt: skip
    """Distil ``cfg.teacher`` into a student; returns the selected student folder.

    Checkpoints are selected by ``cfg.select`` (:mod:`gankd.selection`); ``selector``
    replaces that rule with a hand-built :class:`~gankd.selection.Selector`."""
    return Distiller(cfg, run_dir, resume=resume, progress=progress, selector=selector).run()
