"""Training from data: GANs (the teacher) and classifiers (evaluator, perceptual net).

``train_gan`` writes into a run folder: ``state.pt`` (resumable training state),
``generator/`` (EMA generator + discriminator, a loadable model folder, the checkpoint
selected by ``select``), ``last/`` (the latest checkpoint), ``selection.json``,
``metrics.jsonl``, ``samples/*.png`` and TensorBoard logs under ``tb/``.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gankd import checkpoint as ckpt
from gankd.augment import diff_augment, parse_policy
from gankd.config import load_json, save_json, to_dict
from gankd.data import DataError, load_dataset, resolve_shape
from gankd.loop import (
    BatchStream,
    Recipe,
    RunSchedule,
    RunSkeleton,
    ema_update,
    sample_labels,
    selected_on,
    set_threads,
    step_generator,
)  # fmt: skip
from gankd.losses import ADVERSARIAL, classifier_kd_loss, d_loss, g_loss
from gankd.models import ClassifierConfig, DiscriminatorConfig, GeneratorConfig
from gankd.paired import TaskParams
from gankd.registry import CLASSIFIERS, DISCRIMINATORS, GENERATORS
from gankd.runlock import holds_run_lock
from gankd.sampling import pair_grid, sample_grid
from gankd.selection import DEFAULT_SELECT, Selector, build_paired_selector, build_selector, check_rule

log = logging.getLogger(__name__)


@dataclass
class GANTrainConfig:
    data: str = "fashion-mnist"  # dataset spec: fashion-mnist, folder:PATH or wesnoth-units
    split: str = "train"  # split to train on
    image_channels: int | None = None  # 1 = gray, 3 = RGB, for G and D together; None = the data's
    resolution: int | None = None  # image size (power of two), for G and D together; None = from the data
    num_classes: int | None = None  # 0 = unconditional, for G and D together; None = the data's class count
    g_family: str = "dcgan"  # generator family (registry name)
    d_family: str = "dcgan"  # discriminator family (registry name)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)  # generator shape
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)  # D shape
    loss: str = "auto"  # adversarial loss: hinge, ns (non-saturating), or auto = the recipe measured for the data:
    # RGB noise-to-image data gets ns with a BatchNorm discriminator (the classic DCGAN D: on 32-px Wesnoth
    # sprites in-domain FID 68 at 40 CPU minutes, where the spectral-norm D with hinge sat at chance, 259-319),
    # gray data and image-to-image hinge with spectral norm (the shipped Fashion-MNIST teacher's recipe)
    steps: int = 10000  # generator updates
    batch_size: int = 64  # images per step
    lr_g: float = 2e-4  # generator learning rate
    lr_d: float = 2e-4  # discriminator learning rate (two time-scale: may differ)
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas for both
    ema_decay: float = 0.999  # EMA of generator weights (0 disables)
    diffaug: str = ""  # DiffAugment policy, e.g. "translation,cutout"; empty = off
    diffaug_p: float = 1.0  # share of images each DiffAugment op reaches (1 = all, as in DiffAugment)
    d_steps: int = 1  # discriminator updates per generator update (n_dis; each on a fresh batch and noise)
    r1: float = 0.0  # R1 penalty weight gamma (Mescheder et al., 2018): gamma/2 * E|grad D(real)|^2 on D's input
    r1_every: int = 16  # apply R1 on every N-th D update, weighted x N (lazy regularisation, as in StyleGAN2)
    seed: int = 0  # the one seed for init, data order, noise
    threads: int = 0  # torch CPU threads (0 = torch default)
    channels_last: bool = True  # NHWC memory format (faster convs on CPU)
    log_every: int = 50  # steps between metrics.jsonl lines
    sample_every: int = 1000  # steps between sample grids
    checkpoint_every: int = 500  # steps between atomic checkpoints
    max_minutes: float = 0.0  # stop (with a checkpoint) after this wall time, resumed sessions included; 0 = none
    snapshot_minutes: tuple[float, ...] = ()  # save the EMA generator as it is at these wall minutes (snapshots/)
    eval_every: int = 500  # steps between held-out validations for checkpoint selection (0 = only at the end)
    eval_samples: int = 2000  # samples per held-out validation
    select: str = DEFAULT_SELECT  # checkpoint selection: perceptual-fid (val split) or last (teacher-l1: compress)
    select_net: str | None = None  # classifier folder for perceptual-fid (default: shipped fmnist-perceptual)
    device: str = "cpu"  # cpu or cuda
    # image-to-image (pix2pix recipe): source -> target pairs instead of noise -> image
    task: str = ""  # a degradation of --data (denoise, inpaint, sr4, deblur, colorize, edges2img; join with +),
    # "paired" for --data paired:SRC,TGT; empty = a noise-to-image GAN
    task_params: TaskParams = field(default_factory=TaskParams)  # degradation parameters (--noise-sigma, ...)
    l1: float = 100.0  # image-to-image: weight of the L1 loss to the target (pix2pix's lambda)
    perceptual: float = 0.0  # image-to-image: weight of a perceptual loss to the target (LPIPS when its trunk
    # is present, the shipped net on Fashion-MNIST; else off with one warning)
    perceptual_off: str | None = None  # set by the run: why the perceptual term is off
    g_options: dict = field(default_factory=dict)  # image-to-image G options, e.g. {"base_channels": 32, "depth": 4}
    d_options: dict = field(default_factory=dict)  # image-to-image D options, e.g. {"n_layers": 3}

    def __post_init__(self):
        check_rule(self.select, distill=False)
        if self.task:
            from gankd.paired import check_task

            check_task(self.task)
            if self.diffaug:
                raise ValueError("--diffaug augments noise-to-image GANs; drop it with --task")
            if self.l1 < 0 or self.perceptual < 0:
                raise ValueError(f"--l1 and --perc must be >= 0, got {self.l1}, {self.perceptual}")
        elif self.select == "val-l1":
            raise ValueError("--select val-l1 scores image-to-image generators: pass --task, or --select "
                             "perceptual-fid or last")  # fmt: skip
        if self.eval_every < 0:
            raise ValueError(f"--eval-every must be >= 0 (0 = only at the end), got {self.eval_every}")
        if self.loss != "auto" and self.loss not in ADVERSARIAL:
            raise ValueError(f"--loss must be one of auto, {', '.join(ADVERSARIAL.names())}, got '{self.loss}'")
        if self.steps < 1 or self.batch_size < 1 or self.d_steps < 1:
            raise ValueError("--steps, --batch-size and --d-steps must be >= 1")
        if not self.max_minutes >= 0:  # NaN too
            raise ValueError(f"--max-minutes must be >= 0 (0 = no time budget), got {self.max_minutes}")
        if self.r1 < 0 or self.r1_every < 1:
            raise ValueError(f"--r1 must be >= 0 (0 = off) and --set r1_every=N >= 1, got {self.r1}, {self.r1_every}")
        if self.lr_g <= 0 or self.lr_d <= 0:
            raise ValueError("--lr-g and --lr-d must be > 0")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        parse_policy(self.diffaug)
        if not 0 < self.diffaug_p <= 1:
            raise ValueError(f"--diffaug-p must be in (0, 1], got {self.diffaug_p}")
        if self.diffaug_p < 1 and not self.diffaug:
            raise ValueError("--diffaug-p sets how often --diffaug's ops apply: add --diffaug POLICY")
        g, d = self.generator, self.discriminator
        for key in ("resolution", "image_channels", "num_classes"):
            # a mismatched D still runs (convs take any size), on the wrong images or labels
            if getattr(g, key) != getattr(d, key):
                raise ValueError(
                    f"generator.{key}={getattr(g, key)} but discriminator.{key}={getattr(d, key)}; "
                    f"set both with --{key.replace('_', '-')} V"
                )


SHAPE_KEYS = ("image_channels", "resolution", "num_classes")


def _requested(cfg, key: str, parts: tuple[str, ...]):
    """A shape the user asked for: the top-level field (flag), else a nested value set away from
    its default (``--set generator.KEY=V``), else None (take it from the data)."""
    if getattr(cfg, key) is not None:
        return getattr(cfg, key)
    for part in parts:
        sub = getattr(cfg, part)
        if getattr(sub, key) != getattr(type(sub)(), key):
            return getattr(sub, key)
    return None


def resolve_gan_shapes(cfg: GANTrainConfig) -> GANTrainConfig:
    """``cfg`` with image channels, resolution and class count taken from the data unless asked
    for (``--image-channels``, ``--resolution``, ``--num-classes``), set on G and D together.
    A request the data cannot meet is refused in one line naming the flag. Image-to-image
    runs (``--task``) are unconditional and default to the ``unet`` G and ``patch`` D."""
    if cfg.task:
        from gankd.paired import pair_shape

        if cfg.num_classes:
            raise ValueError("--num-classes: image-to-image generators (--task) are unconditional; leave it out")
        ch, res = pair_shape(cfg.data, cfg.image_channels, cfg.resolution)
        return replace(cfg, image_channels=ch, resolution=res, num_classes=0,
                       loss="hinge" if cfg.loss == "auto" else cfg.loss,
                       g_family="unet" if cfg.g_family == "dcgan" else cfg.g_family,
                       d_family="patch" if cfg.d_family == "dcgan" else cfg.d_family)  # fmt: skip
    ch, res, nc = resolve_shape(cfg.data, *(_requested(cfg, k, ("generator", "discriminator")) for k in SHAPE_KEYS))
    shape = dict(image_channels=ch, resolution=res, num_classes=nc)
    d_cfg = replace(cfg.discriminator, **shape)
    loss = cfg.loss
    if loss == "auto":  # the recipe measured for the data, unless the user chose the D's norm
        rgb = ch == 3 and d_cfg.norm == type(d_cfg)().norm
        loss = "ns" if rgb else "hinge"
        if rgb:
            d_cfg = replace(d_cfg, norm="batch")
            log.info("RGB data: --loss ns with a BatchNorm discriminator (the recipe measured on RGB sprites; "
                     "pass --loss hinge for the spectral-norm D)")  # fmt: skip
    return replace(cfg, **shape, loss=loss, generator=replace(cfg.generator, **shape), discriminator=d_cfg)


def _fmt(model: torch.nn.Module, channels_last: bool, device: str) -> torch.nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


# fields a resumed run may change: they do not alter what is trained (threads and memory
# format change float rounding, so keep them too for a bitwise-exact resume)
RESUME_MAY_CHANGE = ("steps", "max_minutes", "snapshot_minutes", "log_every", "sample_every", "checkpoint_every",
                     "device", "threads", "channels_last", "eval_every")  # fmt: skip


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_resume_config(cfg: GANTrainConfig | ClassifierTrainConfig, path: Path) -> None:
    """A resumed run must train the same thing: refuse silent changes of model, data, optimiser."""
    if not path.is_file():
        return
    # a key missing from an older run's file had the default value then
    saved = {**_flat(to_dict(type(cfg)())), **_flat(load_json(path))}  # also ClassifierTrainConfig
    for k in SHAPE_KEYS:  # runs saved before the shape flags: their nested values were in effect
        if saved.get(k) is None:
            saved[k] = saved.get(f"generator.{k}", saved.get(f"model.{k}"))
    now = _flat(to_dict(cfg))
    diff = [f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now))
            if k.split(".")[0] not in RESUME_MAY_CHANGE and saved.get(k) != now.get(k)]  # fmt: skip
    if diff:
        raise ValueError(
            f"--resume with a config that differs from the run's {path}: {'; '.join(diff)}; "
            "resume with the run's own config or start a new --out"
        )


def build_gan(cfg: GANTrainConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Generator and discriminator of a (shape-resolved) config: the dcgan-style configs
    ``generator``/``discriminator``, or for image-to-image the family's Config built from the
    data's shape and ``g_options``/``d_options``."""
    if not cfg.task:
        return GENERATORS.get(cfg.g_family)(cfg.generator), DISCRIMINATORS.get(cfg.d_family)(cfg.discriminator)
    shape = {"resolution": cfg.resolution, "in_channels": cfg.image_channels, "image_channels": cfg.image_channels}
    out = []
    for reg, family, opts, flag in ((GENERATORS, cfg.g_family, cfg.g_options, "g_options"),
                                    (DISCRIMINATORS, cfg.d_family, cfg.d_options, "d_options")):  # fmt: skip
        cls = reg.get(family)
        if not hasattr(cls.Config, "__dataclass_fields__") or "in_channels" not in cls.Config.__dataclass_fields__:
            raise ValueError(f"--task needs image-to-image families; '{family}' is not one (G: unet or resnet, "
                             "D: patch)")  # fmt: skip
        bad = sorted(set(opts) - set(cls.Config.__dataclass_fields__) | set(opts) & set(shape))
        if bad:
            raise ValueError(f"--set {flag}: unknown or shape key(s) {bad} for {family}; valid: "
                             f"{sorted(set(cls.Config.__dataclass_fields__) - set(shape))}")  # fmt: skip
        out.append(cls(cls.Config(**shape, **opts)))
    return out[0], out[1]


def task_meta(cfg) -> dict:
    """What an image-to-image model folder records about its task (empty for noise-to-image)."""
    if not getattr(cfg, "task", ""):
        return {}
    return {"task": cfg.task, "task_params": to_dict(cfg.task_params)}


MIN_TEACHER_STEPS = 1000  # fewer steps than this in the budget: the pace note warns (the GAN will not learn)


class GANTrainer(Recipe):
    """The teacher-training recipe: a GAN from data (noise -> image, or pix2pix on pairs), one
    D and one G update per step (``d_steps`` D updates), EMA generator; run by the skeleton."""

    name, out_name = "train-gan", "generator"

    def __init__(self, cfg: GANTrainConfig, run_dir: str | Path, resume: bool = False):
        self.run_dir = run_dir = Path(run_dir)
        set_threads(cfg.threads)
        state_path = run_dir / "state.pt"
        cfg = resolve_gan_shapes(cfg)  # shapes from the data unless asked for
        g_cfg = cfg.generator
        self.i2i = i2i = bool(cfg.task)
        self.val_pairs = None
        if i2i:
            from gankd.paired import load_pairs

            def pairs(split):
                return load_pairs(cfg.data, split, cfg.resolution, cfg.image_channels, cfg.task, cfg.task_params,
                                  cfg.seed)  # fmt: skip

            data, self.val_pairs = pairs(cfg.split), pairs("val")
            self.selector = build_paired_selector(cfg.select, pairs=self.val_pairs,
                                                  eval_samples=cfg.eval_samples, device=cfg.device)  # fmt: skip
        else:
            data = load_dataset(cfg.data, cfg.split, g_cfg.resolution, g_cfg.image_channels)
            self.selector = build_selector(
                cfg.select, data=cfg.data, resolution=g_cfg.resolution,
                image_channels=g_cfg.image_channels, z_dim=g_cfg.z_dim, num_classes=g_cfg.num_classes,
                eval_samples=cfg.eval_samples, device=cfg.device, net=cfg.select_net,
            )  # fmt: skip
        torch.manual_seed(cfg.seed)
        G, D = build_gan(cfg)
        self.perc = None
        if i2i and cfg.perceptual > 0:  # a net that fits the data, else off with one warning (recorded)
            from gankd.perceptual import perceptual_for_data

            perc, changes = perceptual_for_data("fmnist", None, data=cfg.data, image_channels=cfg.image_channels,
                                                perceptual=cfg.perceptual, kd=0.0)  # fmt: skip
            cfg = replace(cfg, **{k: v for k, v in changes.items() if k in ("perceptual", "perceptual_off")})
            self.perc = perc.to(cfg.device) if perc is not None else None
        G_ema = copy.deepcopy(G).eval()
        self.G, self.D, self.ema = (_fmt(m, cfg.channels_last, cfg.device) for m in (G, D, G_ema))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        self.start, self.wall_s, self.best = 0, 0.0, None
        if resume:
            _check_resume_config(cfg, run_dir / "train_config.json")
            st = ckpt.load_state(state_path)
            self.G.load_state_dict(st["G"])
            self.D.load_state_dict(st["D"])
            self.ema.load_state_dict(st["G_ema"])
            self.opt_g.load_state_dict(st["opt_g"])
            self.opt_d.load_state_dict(st["opt_d"])
            self.start, self.wall_s = int(st["step"]), float(st.get("wall_s", 0.0))
            self.best = selected_on(run_dir / self.out_name)  # the selected model on disk is the truth
            log.info("resumed from %s at step %d (%.0f s of the budget used)", state_path, self.start, self.wall_s)
        ckpt.prepare_run_dir(run_dir, resume)  # refuses a foreign --out, or a run without --resume
        save_json(to_dict(cfg), run_dir / "train_config.json")
        save_json(self.selector.info(), run_dir / "selection.json")
        if i2i:
            from gankd.paired import PairStream

            self.stream = PairStream(data, cfg.batch_size, cfg.seed)
        else:
            self.stream = BatchStream(data, cfg.batch_size, cfg.seed)
        self.cfg, self.nc = cfg, g_cfg.num_classes
        self.cl = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self._extra = {"data": cfg.data, **task_meta(cfg)}
        self.last_r1 = None

    def schedule(self) -> RunSchedule:
        c = self.cfg
        return RunSchedule(c.steps, c.max_minutes, c.log_every, c.sample_every, c.checkpoint_every, c.eval_every,
                           c.snapshot_minutes)  # fmt: skip

    # ------------------------------------------------------------ the skeleton's hooks
    def train_mode(self) -> None:
        self.G.train()
        self.D.train()

    def postfix(self, values: dict) -> dict:
        return {"d": f"{values['loss_d']:.3f}", "g": f"{values['loss_g']:.3f}"}

    def log_values(self, step: int, values: dict) -> dict:
        return {**values, "epoch": self.stream.epoch_of(step * self.cfg.d_steps)}

    def modules(self) -> dict:
        return {"G": self.G, "G_ema": self.ema, "D": self.D}

    def pace_detail(self, steps: int) -> str:
        return f" ({self.stream.epoch_of(steps * self.cfg.d_steps):.2g} epochs of {len(self.stream.data)} images)"

    def pace_hint(self, steps: int) -> str | None:
        if self.i2i or steps >= MIN_TEACHER_STEPS:
            return None
        g = self.cfg.generator
        return (f"far too few for a GAN to learn the data (a recognisable 32-px Wesnoth teacher took ~2,500 steps, "
                f"the Fashion-MNIST teacher 10,850): raise --max-minutes, or make a step cheaper with a lower "
                f"--resolution (now {g.resolution}) or --set generator.base_channels=N (now {g.base_channels})")

    def state(self, step: int, wall_s: float) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.ema.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "step": step,
                "wall_s": wall_s}  # fmt: skip

    def extra(self, step: int) -> dict:
        return {**self._extra, "trained_steps": step}

    def grid(self) -> torch.Tensor:
        if self.i2i:
            return pair_grid(self.ema, self.val_pairs, 8, device=self.cfg.device)
        return sample_grid(self.ema, list(range(64)), nrow=10 if self.nc == 10 else 8, device=self.cfg.device)

    # ------------------------------------------------------------ one step
    def _draw(self, index: int, g: torch.Generator):
        """(real, its condition, G's input, the fake's condition) of stream batch ``index``."""
        cfg = self.cfg
        if self.i2i:  # pix2pix: D sees (source, image) pairs
            src, real = (t.to(cfg.device).contiguous(memory_format=self.cl) for t in self.stream.batch(index))
            return real, src, src, src
        real, y_real = self.stream.batch(index)
        real = real.to(cfg.device).contiguous(memory_format=self.cl)
        y_real = y_real.to(cfg.device) if self.nc else None
        z = torch.randn(cfg.batch_size, cfg.generator.z_dim, generator=g).to(cfg.device)
        y_fake = sample_labels(cfg.batch_size, self.nc, g)
        return real, y_real, z, (y_fake.to(cfg.device) if y_fake is not None else None)

    def _aug(self, x, g):
        cfg = self.cfg
        return diff_augment(x, cfg.diffaug, g, cfg.diffaug_p) if cfg.diffaug and not self.i2i else x

    def _fake(self, g_in, y):
        return self.G(g_in) if self.i2i else self.G(g_in, y)

    def step(self, step: int) -> dict[str, float]:
        cfg, D = self.cfg, self.D
        gen = step_generator(cfg.seed, step)
        # d_steps - 1 extra D updates first, each on its own batch and noise; the last one's fake
        # also serves the G step (G does not change during D steps). d_steps = 1: one batch per step.
        for k in range(cfg.d_steps):
            last = k == cfg.d_steps - 1
            g_k = gen if last else step_generator(cfg.seed, step, stream=k + 1)
            real, y_real, g_in, y_fake = self._draw(step * cfg.d_steps + k, g_k)
            with torch.set_grad_enabled(last):
                fake = self._fake(g_in, y_fake)
            x_real = self._aug(real, g_k)
            r1_now = cfg.r1 > 0 and (step * cfg.d_steps + k) % cfg.r1_every == 0
            if r1_now:  # the penalty's gradient is taken at D's input (the augmented image)
                x_real = x_real.detach().requires_grad_(True)
            d_real = D(x_real, y_real)
            loss_d = total_d = d_loss(d_real, D(self._aug(fake.detach(), g_k), y_fake), cfg.loss)
            if r1_now:
                (grad,) = torch.autograd.grad(d_real.sum(), x_real, create_graph=True)
                loss_r1 = grad.pow(2).flatten(1).sum(1).mean()
                total_d = loss_d + cfg.r1 / 2 * cfg.r1_every * loss_r1
                self.last_r1 = loss_r1.item()
            self.opt_d.zero_grad(set_to_none=True)
            total_d.backward()
            self.opt_d.step()
        loss_g = g_loss(D(self._aug(fake, gen), y_fake), cfg.loss)
        total_g = loss_g
        if self.i2i and cfg.l1 > 0:
            loss_l1 = (fake - real).abs().mean()
            total_g = total_g + cfg.l1 * loss_l1
        if self.perc is not None:
            loss_perc = self.perc(fake, real).mean()
            total_g = total_g + cfg.perceptual * loss_perc
        self.opt_g.zero_grad(set_to_none=True)
        total_g.backward()
        self.opt_g.step()
        if cfg.ema_decay > 0:
            ema_update(self.ema, self.G, min(cfg.ema_decay, (1 + step) / (10 + step)))
        else:
            self.ema.load_state_dict(self.G.state_dict())
        values = {"loss_d": loss_d.item(), "loss_g": loss_g.item()}
        if self.last_r1 is not None:
            values["r1"] = self.last_r1  # the latest penalty measured (every r1_every-th D update)
        if self.i2i and cfg.l1 > 0:
            values["l1"] = loss_l1.item()
        if self.perc is not None:
            values["perceptual"] = loss_perc.item()
        return values


@holds_run_lock("run_dir")  # one process per --out
def train_gan(cfg: GANTrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = False) -> Path:
    """Train a GAN; returns the folder of the selected (EMA) generator with its discriminator.

    ``generator/`` holds the checkpoint chosen by ``cfg.select`` (:mod:`gankd.selection`,
    validated every ``cfg.eval_every`` steps inside the wall budget), ``last/`` the latest
    one; ``selection.json`` records the rule in effect. The wall time used is stored in
    ``state.pt``, so a resumed run counts it against ``max_minutes``.
    """
    recipe = GANTrainer(cfg, run_dir, resume)
    return RunSkeleton(recipe, recipe.schedule(), resumed=resume, progress=progress).run()


@dataclass
class ClassifierTrainConfig:
    data: str = "fashion-mnist"  # dataset spec
    split: str = "train"  # training split (never the test split)
    family: str = "vgg"  # classifier family: vgg or resnet
    model: ClassifierConfig = field(default_factory=ClassifierConfig)  # classifier shape
    image_channels: int | None = None  # input channels (1 = gray, 3 = RGB); None = the data's
    resolution: int | None = None  # input size (power of two); None = from the data
    num_classes: int | None = None  # output classes; None = the data's (a classifier needs >= 2)
    epochs: int = 10  # passes over the data
    batch_size: int = 128  # images per step
    lr: float = 2e-3  # AdamW peak learning rate (cosine decay)
    weight_decay: float = 5e-4  # AdamW weight decay
    augment: bool = True  # random 2-px shifts and horizontal flips
    seed: int = 0  # init and data order
    threads: int = 0  # torch CPU threads (0 = default)
    device: str = "cpu"  # cpu or cuda
    teacher: str = ""  # teacher classifier folder or shipped name for soft-label KD; empty = labels only
    kd_temperature: float = 4.0  # KD temperature T (with a teacher)
    kd_alpha: float = 0.9  # weight of the T^2-scaled KD term; 1 - alpha weighs cross-entropy (with a teacher)
    train_images: int = 0  # train on the first N images of the split only (0 = all of it)
    log_every: int = 50  # steps between metrics.jsonl / TensorBoard lines
    checkpoint_every: int = 500  # steps between atomic checkpoints (state.pt + the model folder)
    max_minutes: float = 0.0  # stop (with a checkpoint) after this wall time; 0 = no limit

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("--epochs, --batch-size must be >= 1 and --lr > 0")
        if not self.max_minutes >= 0:  # NaN too
            raise ValueError(f"--max-minutes must be >= 0 (0 = no time budget), got {self.max_minutes}")
        if self.split == "test":
            raise ValueError("--split test is reserved for reported numbers; train on train or fit")
        if self.kd_temperature <= 0:
            raise ValueError(f"--kd-temperature must be > 0, got {self.kd_temperature}")
        if not 0 <= self.kd_alpha <= 1:
            raise ValueError(f"--kd-alpha must be in [0, 1], got {self.kd_alpha}")
        if self.train_images < 0:
            raise ValueError(f"--set train_images must be >= 0 (0 = all), got {self.train_images}")
        if self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError("--set log_every and checkpoint_every must be >= 1")


def resolve_classifier_shapes(cfg: ClassifierTrainConfig) -> ClassifierTrainConfig:
    """``cfg`` with input channels, resolution and class count from the data unless asked for
    (``--image-channels``, ``--resolution``, ``--num-classes``); a classifier needs labels."""
    from gankd.data import data_info

    req = [_requested(cfg, k, ("model",)) for k in SHAPE_KEYS]
    info = data_info(cfg.data)
    if info.num_classes < 2:
        raise ValueError(f"train-classifier needs labelled data: put each class's images in its own sub-folder "
                         f"of {cfg.data} (it has {info.num_classes} classes)")  # fmt: skip
    if req[2] is not None and req[2] != info.num_classes:
        raise ValueError(f"--num-classes {req[2]} does not match {cfg.data}, which has {info.num_classes} "
                         "classes: leave --num-classes out")  # fmt: skip
    ch, res, nc = resolve_shape(cfg.data, *req)
    shape = dict(image_channels=ch, resolution=res, num_classes=nc)
    return replace(cfg, **shape, model=replace(cfg.model, **shape))


def _shift_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = F.pad(x, (2, 2, 2, 2), value=-1.0)
    dx, dy = torch.randint(0, 5, (2,), generator=gen).tolist()  # one shift per batch: cheap
    return pad[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


def classifier_accuracy(model: torch.nn.Module, data, batch_size: int = 500, device: str = "cpu") -> float:
    """Top-1 accuracy of ``model`` on an ImageDataset (the metrics code does the counting)."""
    from gankd.metrics.fidelity import classifier_accuracy as accuracy

    return accuracy(data.images, data.labels, model.to(device), batch_size=batch_size)["accuracy"]


def _teacher_weights(name: str) -> Path:
    return ckpt.resolve_model_path(name) / ckpt.WEIGHTS


def load_teacher_classifier(cfg: ClassifierTrainConfig, num_classes: int) -> torch.nn.Module | None:
    """The frozen teacher classifier (eval mode, no grads) of a KD run, or None without one.

    Refuses, in one line, a teacher whose class count differs from the data's or whose
    input (channels, resolution) differs from the student's.
    """
    if not cfg.teacher:
        return None
    from gankd.checkpoint import load_classifier

    teacher = load_classifier(cfg.teacher, map_location=cfg.device)
    tc = teacher.cfg
    if tc.num_classes != num_classes:
        raise ValueError(
            f"--teacher {cfg.teacher} predicts {tc.num_classes} classes but the data has {num_classes}; "
            "use a teacher trained on the same classes as --data"
        )
    if (tc.image_channels, tc.resolution) != (cfg.model.image_channels, cfg.model.resolution):
        raise ValueError(
            f"--teacher {cfg.teacher} takes {tc.image_channels}x{tc.resolution}x{tc.resolution} images, the "
            f"student {cfg.model.image_channels}x{cfg.model.resolution}x{cfg.model.resolution}; set "
            f"--image-channels {tc.image_channels} --resolution {tc.resolution}"
        )
    return teacher.eval().requires_grad_(False)


def _resume_classifier(cfg: ClassifierTrainConfig, out_dir: Path, teacher_sha: str | None, model: nn.Module, opt,
                       sched) -> tuple[int, float]:  # fmt: skip
    """Load state.pt into the model, optimiser, schedule and RNG (the same config and teacher, or a refusal);
    returns the step to continue from and the budget seconds already used."""
    _check_resume_config(cfg, out_dir / "train_config.json")
    state_path = out_dir / "state.pt"
    st = ckpt.load_state(state_path)
    if st.get("teacher_sha256") != teacher_sha:
        raise ValueError(
            f"the teacher's weights differ from the ones {out_dir} was trained with "
            f"({st.get('teacher_sha256')} vs {teacher_sha}); resume with the same --teacher or start a new --out"
        )
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["opt"])
    sched.load_state_dict(st["sched"])
    ckpt.set_rng_state(st["rng"])  # dropout draws from the global generator
    log.info("resumed from %s at step %d", state_path, int(st["step"]))
    return int(st["step"]), float(st.get("wall_s", 0.0))


def _classifier_result(cfg: ClassifierTrainConfig, model: nn.Module, step: int, planned: int | None) -> dict:
    """Steps trained and accuracies: val only when val was held out (training on fit), test always."""
    result = {"train_steps": step, "split": cfg.split}
    if planned is not None:
        result["planned_steps"] = planned
    shape = (cfg.model.resolution, cfg.model.image_channels)
    if cfg.split == "fit":  # val is held out only when training on fit
        result["val_acc"] = classifier_accuracy(model, load_dataset(cfg.data, "val", *shape), device=cfg.device)
    else:
        log.warning("split %r contains val: no val_acc reported (train on fit for one)", cfg.split)
    try:  # every dataset has a test split (a folder's: every 10th image from the 5th)
        result["test_acc"] = classifier_accuracy(model, load_dataset(cfg.data, "test", *shape), device=cfg.device)
    except DataError as e:
        log.warning("no test accuracy: %s", e)
    return result


@holds_run_lock("out_dir")  # one process per --out
def train_classifier(cfg: ClassifierTrainConfig, out_dir: str | Path, progress: bool = False,
                     resume: bool = False) -> dict:  # fmt: skip
    """Train a classifier from labels, or distil it from a teacher classifier (``cfg.teacher``).

    Loss without a teacher: CE(s, y). With one: ``(1 - kd_alpha) * CE(s, y) + kd_alpha *
    T^2 * KL(softmax(t/T) || softmax(s/T))`` (:func:`gankd.losses.classifier_kd_loss`), the
    teacher frozen in eval mode and fed the same augmented batch as the student.

    ``out_dir`` is the model folder (``config.json`` + ``model.safetensors``, loadable with
    ``load_classifier``) and the run folder: ``state.pt`` (exact resume with
    ``resume=True``), ``train_config.json``, ``metrics.jsonl``, TensorBoard logs in ``tb/``.
    Checkpoints are atomic, every ``checkpoint_every`` steps, at the end and when
    ``max_minutes`` runs out. Returns ``{"train_steps", "split", "val_acc" (only after
    training on fit), "test_acc", ...}``; nothing is selected on the test split.
    """
    trainer = ClassifierTrainer(cfg, out_dir, resume)
    schedule = RunSchedule(trainer.steps, trainer.cfg.max_minutes, trainer.cfg.log_every, sample_every=10**9,
                           checkpoint_every=trainer.cfg.checkpoint_every, eval_every=0)  # fmt: skip
    RunSkeleton(trainer, schedule, resume, progress).run()
    return trainer.result


class ClassifierTrainer(Recipe):
    """Classifier training (labels, or KD from a teacher classifier) as a recipe of the run skeleton: the
    skeleton owns budget, progress, logs, checkpoints and the finiteness guard; the model folder is the run
    folder itself (``config.json`` + ``model.safetensors`` beside ``state.pt``)."""

    out_name = ""  # the run folder is the model folder
    log_prefix = ""

    def __init__(self, cfg: ClassifierTrainConfig, out_dir: str | Path, resume: bool = False):
        set_threads(cfg.threads)
        self.run_dir = out_dir = Path(out_dir)
        cfg = resolve_classifier_shapes(cfg)  # shapes from the data unless asked for
        data = load_dataset(cfg.data, cfg.split, cfg.model.resolution, cfg.model.image_channels)
        if cfg.train_images:
            if cfg.train_images > len(data):
                raise ValueError(f"--set train_images={cfg.train_images} but {data.name} has {len(data)} images")
            data = replace(data, images=data.images[: cfg.train_images], labels=data.labels[: cfg.train_images])
        self.teacher = load_teacher_classifier(cfg, data.num_classes)
        self.teacher_sha = ckpt.file_sha256(_teacher_weights(cfg.teacher)) if self.teacher is not None else None
        # after the checks above, so a refused run leaves no folder behind
        ckpt.prepare_run_dir(out_dir, resume)  # refuses a foreign --out, or a run without --resume
        torch.manual_seed(cfg.seed)
        self.cfg, self.model = cfg, CLASSIFIERS.get(cfg.family)(cfg.model).to(cfg.device)
        self.ema = self.model  # what the skeleton checks and saves: the model itself (no EMA)
        self.stream = BatchStream(data, cfg.batch_size, cfg.seed)
        self.steps = math.ceil(cfg.epochs * len(data) / cfg.batch_size)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=cfg.lr, total_steps=self.steps,
                                                         pct_start=0.15)  # fmt: skip
        if resume:
            self.start, self.wall_s = _resume_classifier(cfg, out_dir, self.teacher_sha, self.model, self.opt,
                                                         self.sched)  # fmt: skip
        out_dir.mkdir(parents=True, exist_ok=True)
        save_json(to_dict(cfg), out_dir / "train_config.json")
        self.selector = Selector(rule="last", requested="last")
        self.name = f"train-classifier[{cfg.family}{', KD' if self.teacher is not None else ''}]"
        self.done = self.start
        self.result: dict = {}

    def train_mode(self) -> None:
        self.model.train()

    def step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        x, y = self.stream.batch(step)
        if cfg.augment:
            x = _shift_flip(x, step_generator(cfg.seed, step))
        x, y = x.to(cfg.device), y.to(cfg.device)
        t_logits = None
        if self.teacher is not None and cfg.kd_alpha > 0:
            with torch.no_grad():
                t_logits = self.teacher(x)  # same augmented batch as the student
        loss, parts = classifier_kd_loss(self.model(x), t_logits, y, cfg.kd_temperature, cfg.kd_alpha,
                                         return_parts=True)  # fmt: skip
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.done = step + 1
        return {"loss": loss.item(), **{k: v.item() for k, v in parts.items()}}

    def postfix(self, values: dict) -> dict:
        return {"loss": f"{values['loss']:.3f}"}

    def log_values(self, step: int, values: dict) -> dict:
        return {**values, "lr": self.sched.get_last_lr()[0], "epoch": self.stream.epoch_of(step)}

    def pace_detail(self, steps: int) -> str:
        return f" ({self.stream.epoch_of(steps):.2f} epochs)"

    def modules(self) -> dict:
        return {"model": self.model}

    def state(self, step: int, wall_s: float) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "rng": ckpt.rng_state(), "step": step, "teacher_sha256": self.teacher_sha, "wall_s": wall_s}

    def extra(self, step: int) -> dict:
        teacher = {"teacher": {"path": self.cfg.teacher, "sha256": self.teacher_sha}} if self.teacher else {}
        return {"train": to_dict(self.cfg), "trained_steps": step, **teacher,
                "result": self.result or {"train_steps": step, "split": self.cfg.split}}  # fmt: skip

    def save(self, folder: Path, extra: dict, with_d: bool = True) -> None:
        ckpt.save_model(folder, self.model, "classifier", extra=extra)

    def grid(self) -> None:
        return None

    def finish(self) -> dict:
        """Accuracies (val only when trained on fit), recorded in the model folder and logged."""
        self.result = _classifier_result(self.cfg, self.model, self.done,
                                         self.steps if self.done < self.steps else None)  # fmt: skip
        self.save(self.run_dir, {**self.extra(self.done), "selected_on": {"rule": "last", "step": self.done}})
        return {k: v for k, v in self.result.items() if k.endswith("_acc")}
