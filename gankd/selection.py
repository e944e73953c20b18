"""Checkpoint selection during training: which saved weights become the run's model.

One rule per run (config field ``select``, flag ``--select``), the same default for
distillation and GAN training, so every recipe in a comparison is selected alike:

``perceptual-fid``  FID of ``eval_samples`` samples (seeds 1_000_000.., disjoint from the
                    reported seeds 0..N) against the data's held-out ``val`` split, with
                    features of the *perceptual* network (``pretrained/fmnist-perceptual``
                    or ``select_net``), never the evaluator that scores reported numbers:
                    selecting on the scorer inflates its FID.
``teacher-l1``      mean pixel L1 distance to the teacher on the same latents
                    (distillation only).
``val-l1``          image-to-image only (and their default): mean L1 of the outputs on the
                    ``val`` split's source images to its targets (``val_psnr`` is logged too).
``last``            no selection: the latest checkpoint is the model.

Lower scores are better. A model whose samples are not finite scores ``inf`` and is
never selected. Where the perceptual net does not fit the data (other channel count)
the rule falls back to ``teacher-l1`` (distillation) or ``last`` (GAN training), with
one log line, and the fallback is recorded in :meth:`Selector.info`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gankd.fileio import portable_path

log = logging.getLogger(__name__)

SELECT_RULES = ("perceptual-fid", "teacher-l1", "val-l1", "last")
DEFAULT_SELECT = "perceptual-fid"
DEFAULT_SELECT_NET = "fmnist-perceptual"
VAL_FIRST_SEED = 1_000_000
# FID needs a covariance, so at least 2 images on each side; below NOISY_FID_IMAGES it is
# computed but noisy (the perceptual embedding has 128 dimensions), and a warning says so
MIN_FID_IMAGES = 2
NOISY_FID_IMAGES = 200



def check_rule(select: str, distill: bool) -> None:
    """Validate a ``--select`` value for a distillation (``distill=True``) or GAN run."""
    if select not in SELECT_RULES:
        raise ValueError(f"--select must be one of {', '.join(SELECT_RULES)}, got '{select}'")
    if select == "teacher-l1" and not distill:
        raise ValueError("--select teacher-l1 needs a teacher (compress only): use --select perceptual-fid or last")


@dataclass
class Selector:
    """Scores a generator on held-out data; ``score(model)`` -> {"val_*": ..., "select": float}."""

    rule: str  # the rule in effect (after any fallback)
    requested: str  # the rule the config asked for
    eval_samples: int = 2000
    z_dim: int = 128
    num_classes: int = 0
    device: str = "cpu"
    net: Path | None = None  # perceptual-fid: the classifier folder used as feature extractor
    net_sha256: str | None = None
    reference: str | None = None  # perceptual-fid: data spec of the val split
    reference_size: int | None = None
    fallback: str | None = None  # why ``rule`` differs from ``requested``
    teacher: nn.Module | None = field(default=None, repr=False)
    _teacher_images: torch.Tensor | None = field(default=None, repr=False)

    def info(self) -> dict:
        """JSON-able description of the rule, for run files and model folders."""
        out = {"rule": self.rule, "requested": self.requested, "first_seed": VAL_FIRST_SEED}
        if self.rule != "last":
            out["eval_samples"] = self.eval_samples
        if self.rule == "perceptual-fid":
            out.update(net=portable_path(self.net), net_sha256=self.net_sha256, reference=self.reference,
                       reference_size=self.reference_size)  # fmt: skip
        if self.fallback:
            out["fallback"] = self.fallback
        return out

    def _inputs(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Validation inputs (seeds 10^6..), built by the generator's adapter (teacher and
        student share one IOSpec, so they see the same latents and classes)."""
        from gankd.adapter import adapter_for

        seeds = list(range(VAL_FIRST_SEED, VAL_FIRST_SEED + self.eval_samples))
        return adapter_for(self.teacher if self.teacher is not None else model).seeded_inputs(seeds)

    def teacher_images(self) -> torch.Tensor:
        """The teacher's images on the validation latents (computed once: the teacher is frozen)."""
        from gankd.sampling import generate

        if self._teacher_images is None:
            self._teacher_images = generate(self.teacher, self._inputs(self.teacher), device=self.device)
        return self._teacher_images

    @torch.no_grad()
    def score(self, model: nn.Module) -> dict:
        """Validation numbers of ``model`` (lower ``select`` is better; ``inf`` = never selected).

        Always ``val_pixel_l1`` when a teacher is known; ``val_fid`` under perceptual-fid.
        Under ``last`` (no teacher) it returns ``{}``: nothing to compute.
        """
        if self.rule == "last" and self.teacher is None:
            return {}
        from gankd.data import to_uint8
        from gankd.sampling import generate

        images = generate(model, self._inputs(model), device=self.device)
        if not torch.isfinite(images).all():
            log.warning("validation samples are not finite: this checkpoint is never selected")
            return {"val_finite": 0.0, "select": math.inf}
        out: dict = {}
        if self.teacher is not None:
            out["val_pixel_l1"] = (images - self.teacher_images()).abs().mean().item()
        if self.rule == "perceptual-fid":
            from gankd.metrics import fidelity as fid

            q = fid.fidelity_metrics(to_uint8(images), self.reference, ("fid",), self.eval_samples, None,
                                     fid.Features(fid.EVALUATOR, self.net), device=self.device)  # fmt: skip
            out["val_fid"] = q["fid"]
        key = {"perceptual-fid": "val_fid", "teacher-l1": "val_pixel_l1"}.get(self.rule)
        if key is not None:
            out["select"] = out[key] if math.isfinite(out[key]) else math.inf
        return out

    def better(self, val: dict, best: dict | None) -> bool:
        """Whether ``val`` (from :meth:`score`) replaces ``best`` (None: nothing selected yet)."""
        if self.rule == "last":
            return math.isfinite(val.get("select", 0.0))
        s = val.get("select", math.inf)
        if not math.isfinite(s):
            return False
        return best is None or best.get("rule", self.rule) != self.rule or s < best.get("select", math.inf)


def _same_as_evaluator(folder: Path) -> bool:
    from gankd.checkpoint import WEIGHTS, file_sha256
    from gankd.metrics import fidelity as fid

    try:
        ev = fid.resolve_evaluator(None)
    except FileNotFoundError:
        return False
    return file_sha256(ev / WEIGHTS) == file_sha256(folder / WEIGHTS)


def build_selector(select: str, *, data: str, resolution: int, image_channels: int,
                   z_dim: int, num_classes: int, eval_samples: int, device: str = "cpu",
                   net: str | Path | None = None, teacher: nn.Module | None = None) -> Selector:  # fmt: skip
    """The selection rule of a run, checked when the run is built (before any training).

    ``select``: one of :data:`SELECT_RULES`. ``teacher``: the teacher of a distillation (compress;
    None: a teacher's own training), which teacher-l1 compares against.
    ``data``/``resolution``/``image_channels``: the data whose ``val`` split perceptual-fid
    scores against. ``net``: the classifier folder for perceptual-fid (default the shipped
    ``fmnist-perceptual``); refused when it holds the evaluator's weights. Raises with
    the fix when the val split is missing, unreadable or holds fewer than
    :data:`MIN_FID_IMAGES` images.
    """
    distill = teacher is not None
    check_rule(select, distill)
    if select == "val-l1":
        raise ValueError("--select val-l1 scores image-to-image generators (--task); use perceptual-fid, "
                         f"{'teacher-l1' if distill else 'last'} or last")  # fmt: skip
    sel = Selector(select, select, eval_samples, z_dim, num_classes, device, teacher=teacher)
    if select == "last":
        return sel
    if eval_samples < MIN_FID_IMAGES:
        raise ValueError(f"--select {select} needs eval_samples >= {MIN_FID_IMAGES}, got {eval_samples}: "
                         "pass --set eval_samples=N (e.g. 2000)")  # fmt: skip
    if select == "teacher-l1":
        return sel
    from gankd.checkpoint import WEIGHTS, file_sha256, read_meta, resolve_model_path
    from gankd.data import is_fmnist, load_dataset

    folder = resolve_model_path(net or DEFAULT_SELECT_NET)
    alt = "teacher-l1" if distill else "last"
    try:
        meta = read_meta(folder, "classifier")
    except (FileNotFoundError, ValueError) as e:
        raise FileNotFoundError(f"the selection network is unusable ({e}); pass --set select_net=DIR "
                                f"(a classifier folder) or --select {alt}") from None  # fmt: skip
    net_channels = meta["config"].get("image_channels", 1)
    shipped = folder.resolve() == resolve_model_path(DEFAULT_SELECT_NET).resolve()
    if shipped and not is_fmnist(data):
        # the shipped perceptual net knows Fashion-MNIST only: its FID elsewhere would rank by noise
        sel.rule = alt
        sel.fallback = (f"the shipped perceptual net {folder.name} is trained on Fashion-MNIST, the data is {data}: "
                        f"selected on {alt} instead (a classifier of this data: --set select_net=DIR)")  # fmt: skip
        log.warning("checkpoint selection: %s", sel.fallback)
        return sel
    if net_channels != image_channels:
        sel.rule = alt
        sel.fallback = (f"the perceptual net {folder} takes {net_channels}-channel images, the data has "
                        f"{image_channels}: selected on {alt} instead")  # fmt: skip
        log.warning("checkpoint selection: %s", sel.fallback)
        return sel
    if _same_as_evaluator(folder):
        raise ValueError(f"the selection network {folder} has the evaluator's weights: selecting on the network "
                         "that scores the result inflates its FID; pass --set select_net=DIR of another "
                         f"classifier (the perceptual net) or --select {alt}")  # fmt: skip
    try:
        val = load_dataset(data, "val", resolution, image_channels)
    except (RuntimeError, ValueError, OSError) as e:
        raise ValueError(f"--select perceptual-fid scores against the val split of {data}, which cannot be "
                         f"loaded ({e}); add images or pass --select {alt}") from None  # fmt: skip
    n = len(val)
    if n < MIN_FID_IMAGES:
        raise ValueError(f"the val split of {data} holds {n} image(s); --select perceptual-fid needs at least "
                         f"{MIN_FID_IMAGES} (a folder's val split is every 10th image): add images or pass "
                         f"--select {alt}")  # fmt: skip
    if n < NOISY_FID_IMAGES:
        log.warning("the val split of %s holds only %d images: selection FID is noisy", data, n)
    sel.net, sel.net_sha256 = folder, file_sha256(folder / WEIGHTS)
    sel.reference, sel.reference_size = f"{data}:val", n
    return sel


@dataclass
class PairedSelector(Selector):
    """Selection for image-to-image generators, on the ``val`` split's pairs: ``val-l1`` (L1 of
    the outputs to the targets; the default), ``teacher-l1`` (L1 to the teacher's outputs on
    the same sources) or ``last``. Scores ``val_l1``, ``val_psnr`` and, with a teacher,
    ``val_pixel_l1``."""

    pairs: Any = field(default=None, repr=False)  # gankd.paired.PairedDataset of the val split

    def info(self) -> dict:
        out = {"rule": self.rule, "requested": self.requested}
        if self.rule != "last":
            out.update(eval_samples=self.eval_samples, reference=self.reference, reference_size=self.reference_size)
        if self.fallback:
            out["fallback"] = self.fallback
        return out

    def _inputs(self, model: nn.Module) -> dict[str, torch.Tensor]:
        from gankd.adapter import adapter_for
        from gankd.data import to_float

        name = adapter_for(self.teacher if self.teacher is not None else model).spec.image().name
        return {name: to_float(self.pairs.sources[: self.eval_samples])}

    @torch.no_grad()
    def score(self, model: nn.Module) -> dict:
        if self.rule == "last" and self.teacher is None:
            return {}
        from gankd.data import to_float
        from gankd.metrics.fidelity import psnr
        from gankd.sampling import generate

        images = generate(model, self._inputs(model), device=self.device)
        if not torch.isfinite(images).all():
            log.warning("validation outputs are not finite: this checkpoint is never selected")
            return {"val_finite": 0.0, "select": math.inf}
        target = to_float(self.pairs.images[: self.eval_samples])
        out = {"val_l1": (images - target).abs().mean().item(), "val_psnr": psnr(images, target).mean().item()}
        if self.teacher is not None:
            out["val_pixel_l1"] = (images - self.teacher_images()).abs().mean().item()
        key = {"val-l1": "val_l1", "teacher-l1": "val_pixel_l1"}.get(self.rule)
        if key is not None:
            out["select"] = out[key] if math.isfinite(out[key]) else math.inf
        return out


def build_paired_selector(select: str, *, pairs, eval_samples: int, device: str = "cpu",
                          teacher: nn.Module | None = None) -> PairedSelector:  # fmt: skip
    """The selection rule of an image-to-image run. ``pairs``: the val split's PairedDataset; ``teacher``:
    the teacher of a distillation (None: a teacher's own training). ``perceptual-fid`` (the config default)
    means ``val-l1`` here, recorded as such."""
    check_rule(select, teacher is not None)
    rule = "val-l1" if select == "perceptual-fid" else select
    sel = PairedSelector(rule, select, eval_samples, 0, 0, device, teacher=teacher, pairs=pairs)
    if rule != select:
        sel.fallback = "image-to-image: selected on L1 to the val split's targets"
    if rule == "last":
        return sel
    if eval_samples < 1 or len(pairs) < 1:
        raise ValueError(f"--select {rule} needs val pairs: the val split holds {len(pairs)}; add images or "
                         "pass --select last")  # fmt: skip
    sel.reference, sel.reference_size = f"{pairs.name}:val", min(len(pairs), eval_samples)
    return sel
