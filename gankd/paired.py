"""Paired (image-to-image) data: a degraded source and its clean target.

Two ways to get pairs:

* ``paired:SRC_DIR,TGT_DIR``: two folders of images matched by name. The key of a file is
  its path relative to its folder without the extension (``a/001.png`` matches
  ``a/001.jpg``; in flat folders that is the file stem). Unmatched files on either side and
  unreadable files are skipped with one warning line per load (``strict=True``: an
  unreadable file raises). Splits follow the folder rule of :mod:`gankd.data`
  (:func:`gankd.data.folder_split_of`) over the sorted keys of all matched pairs, so a
  corrupt file never moves another pair to another split.
* any dataset spec of :mod:`gankd.data` (``fashion-mnist``, ``folder:PATH``,
  ``wesnoth-units``) with a degradation ``--task``: the images are the targets and each
  source is :func:`degrade` of its target, computed once at load time and stored as uint8.
  The index that seeds an image's degradation is its position in the loaded split (the
  same image may get another degradation in another split: splits never share images
  except ``train`` = ``fit`` + ``val``).

Tasks (:data:`DEGRADATIONS`; join several with ``+``, applied left to right, each step's output
clamped to [-1, 1]): ``denoise`` (Gaussian noise), ``inpaint`` (a mid-gray square hole),
``sr4`` (area downsampling by ``scale``, bicubic upsampling back to the same size),
``deblur`` (Gaussian blur), ``colorize`` (luma; colour data only), ``edges2img`` (binary
Sobel edge map of the luma, white edges on black). Sources always have the target's
channel count (luma is replicated to 3 channels), so a generator maps C -> C channels.

Every random draw for image ``index`` comes from one generator seeded by a hash-free
integer mix of (seed, index) (:func:`pair_seed`): the same index always gives the same
source, whatever the order, batch or chunk it is computed in.

A :class:`PairedDataset` has the duck type of :class:`gankd.data.ImageDataset` (``images``
are the targets, ``labels`` are zeros, ``num_classes`` is 0), so split code and
:class:`gankd.loop.BatchStream` work on it; :class:`PairStream` serves (source, target).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gankd.data import (
    SPLITS,
    DataError,
    DataInfo,
    ImageShape,
    _say_once,
    _scan,
    data_info,
    folder_split_of,
    load_dataset,
    load_or_skip,
    resolve_shape,
    to_float,
    to_uint8,
)
from gankd.loop import BatchStream
from gankd.registry import Registry

log = logging.getLogger(__name__)

PAIRED_PREFIX = "paired:"
PAIRED_TASK = "paired"  # the task name of data that brings its own sources
EDGE_THRESHOLD = 0.5  # edges2img: Sobel magnitude of the luma in [0, 1]; a step of 1/8 of the range
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights (sum 1: the luma of [-1, 1] RGB is in [-1, 1])
CHUNK = 1024  # images degraded at once at load time
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class TaskParams:
    """Strengths of the degradations (command-line flags in the messages)."""

    noise_sigma: float = 0.2  # denoise: std of the Gaussian noise on the [-1, 1] scale (--noise-sigma)
    hole_frac: float = 0.25  # inpaint: side of the square hole / image side; filled with 0 = mid-gray (--hole-frac)
    blur_sigma: float = 1.5  # deblur: sigma of the Gaussian blur in pixels (--blur-sigma)
    scale: int = 4  # sr4: downsampling factor before the bicubic upsampling back (--scale)

    def __post_init__(self):
        def number(flag, v):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{flag} must be a number, got {v!r}")
            return float(v)

        sigma = number("--noise-sigma", self.noise_sigma)
        if sigma < 0:
            raise ValueError(f"--noise-sigma must be >= 0 (std on the [-1, 1] scale), got {self.noise_sigma}")
        frac = number("--hole-frac", self.hole_frac)
        if not 0 < frac <= 1:
            raise ValueError(f"--hole-frac must be in (0, 1] (hole side / image side), got {self.hole_frac}")
        blur = number("--blur-sigma", self.blur_sigma)
        if blur <= 0:
            raise ValueError(f"--blur-sigma must be > 0 (pixels), got {self.blur_sigma}")
        scale = number("--scale", self.scale)
        if scale != int(scale) or scale < 2:
            raise ValueError(f"--scale must be an integer >= 2, got {self.scale}")
        for k, v in (("noise_sigma", sigma), ("hole_frac", frac), ("blur_sigma", blur), ("scale", int(scale))):
            object.__setattr__(self, k, v)


def parse_task(task: str) -> tuple[str, ...]:
    """The steps of a task string: ``"denoise+inpaint"`` -> ("denoise", "inpaint")."""
    choose = f"choose from {', '.join(DEGRADATIONS.names())} (join with +)"
    if not isinstance(task, str) or not task.strip():
        raise ValueError(f"unknown --task {task!r}; {choose}")
    steps = tuple(s.strip() for s in task.split("+"))
    for s in steps:
        if s not in DEGRADATIONS:
            raise ValueError(f"unknown --task '{s}'; {choose}")
    return steps


def check_task(task: str) -> str:
    """``task`` checked for a config: "paired" or degradation steps joined with ``+``; returns
    it normalized ("denoise + inpaint" -> "denoise+inpaint"). Raises ValueError naming --task."""
    if task == PAIRED_TASK:
        return task
    return "+".join(parse_task(task))


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def pair_seed(seed: int, index: int) -> int:
    """The generator seed (63 bits) of image ``index`` under ``seed``: pure integer arithmetic
    (no ``hash()``, so it is the same in every process)."""
    return _splitmix64(_splitmix64(int(seed) & _MASK64) ^ (int(index) & _MASK64)) >> 1


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W)."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _edges(x: torch.Tensor) -> torch.Tensor:
    y = F.pad((_luma(x) + 1) / 2, (1, 1, 1, 1), mode="replicate")
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    gx = F.conv2d(y, kx.view(1, 1, 3, 3))
    gy = F.conv2d(y, kx.t().contiguous().view(1, 1, 3, 3))
    return torch.where(gx.square() + gy.square() > EDGE_THRESHOLD**2, 1.0, -1.0).to(x.dtype)


# One function per degradation step: (images (N, C, H, W) in [-1, 1], one torch.Generator per
# image, strengths) -> degraded images; a new task is one registered function here.
DEGRADATIONS = Registry("degradation task", ordered=True)


@DEGRADATIONS.register("denoise")
def _denoise(x: torch.Tensor, gens: list[torch.Generator], p: TaskParams) -> torch.Tensor:
    _n, c, h, w = x.shape
    noise = torch.stack([torch.randn((c, h, w), generator=g) for g in gens]).to(x.device, x.dtype)
    return x + p.noise_sigma * noise


@DEGRADATIONS.register("inpaint")
def _inpaint(x: torch.Tensor, gens: list[torch.Generator], p: TaskParams) -> torch.Tensor:
    h, w = x.shape[-2:]
    side = max(1, round(p.hole_frac * min(h, w)))
    x = x.clone()
    for i, g in enumerate(gens):
        top = int(torch.randint(0, h - side + 1, (1,), generator=g))
        left = int(torch.randint(0, w - side + 1, (1,), generator=g))
        x[i, :, top : top + side, left : left + side] = 0.0
    return x


@DEGRADATIONS.register("sr4")
def _sr(x: torch.Tensor, gens: list[torch.Generator], p: TaskParams) -> torch.Tensor:
    h, w = x.shape[-2:]
    if min(h, w) < p.scale:
        raise ValueError(f"--scale {p.scale} is larger than the {min(h, w)} px images")
    small = F.interpolate(x, size=(h // p.scale, w // p.scale), mode="area")
    return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)


@DEGRADATIONS.register("deblur")
def _deblur(x: torch.Tensor, gens: list[torch.Generator], p: TaskParams) -> torch.Tensor:
    return _blur(x, p.blur_sigma)


@DEGRADATIONS.register("colorize")
def _colorize(x: torch.Tensor, gens: list[torch.Generator], p: TaskParams) -> torch.Tensor:
    if x.shape[1] != 3:
        raise ValueError(f"--task colorize needs colour (3-channel) images; these have {x.shape[1]} channel(s)")
    return _luma(x).expand(*x.shape)


@DEGRADATIONS.register("edges2img")
def _edges2img(x: torch.Tensor, gens: list[torch.Generator], p: TaskParams) -> torch.Tensor:
    return _edges(x).expand(*x.shape)


TASKS = DEGRADATIONS.choices()  # the built-in steps (tests and docs); checks read DEGRADATIONS itself


def degrade_batch(targets: torch.Tensor, task: str, indices, seed: int = 0,
                  params: TaskParams | None = None) -> torch.Tensor:  # fmt: skip
    """Sources of float (N, C, H, W) targets in [-1, 1]; image i is seeded by ``indices[i]``
    (same result per image as :func:`degrade`)."""
    steps = parse_task(task)
    p = TaskParams() if params is None else params
    if not targets.is_floating_point():
        raise TypeError("degrade takes float images in [-1, 1] (use gankd.data.to_float on uint8 images)")
    gens = [torch.Generator().manual_seed(pair_seed(seed, int(i))) for i in indices]
    if len(gens) != targets.shape[0]:
        raise ValueError(f"{len(gens)} indices for {targets.shape[0]} images")
    x = targets
    for s in steps:
        x = DEGRADATIONS.get(s)(x, gens, p).clamp(-1.0, 1.0)
    return x.contiguous()


def degrade(target: torch.Tensor, task: str, index: int, seed: int = 0,
            params: TaskParams | None = None) -> torch.Tensor:  # fmt: skip
    """The source of one float (C, H, W) target in [-1, 1] for ``task`` (steps joined with
    ``+``), deterministic per (seed, index); same shape, clamped to [-1, 1]."""
    if target.dim() != 3:
        raise ValueError(f"degrade takes one (C, H, W) image, got shape {tuple(target.shape)}")
    return degrade_batch(target[None], task, [index], seed, params)[0]


@dataclass
class PairedDataset(ImageShape):
    """uint8 targets ``images`` and ``sources`` (N, C, R, R), served as (source, target) float
    in [-1, 1]. ``labels`` are zeros and ``num_classes`` is 0 (the duck type of ImageDataset)."""

    images: torch.Tensor  # targets
    sources: torch.Tensor  # degraded inputs, same shape
    labels: torch.Tensor  # int64 zeros (N,)
    name: str
    task: str = PAIRED_TASK  # the degradation, or "paired" for data with its own sources
    params: TaskParams | None = None  # degradation strengths (None for paired folders)
    seed: int = 0  # seed of the degradations
    num_classes: int = 0
    class_names: tuple[str, ...] = ()

    def __post_init__(self):
        if self.sources.shape != self.images.shape:
            raise ValueError(f"sources {tuple(self.sources.shape)} and targets {tuple(self.images.shape)} differ")

    def __getitem__(self, i: int):
        return to_float(self.sources[i]), to_float(self.images[i])

    def content_hash(self) -> str:
        """Short sha256 of targets, sources, labels, task and its parameters."""
        h = hashlib.sha256(self.images.numpy().tobytes())
        h.update(self.sources.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        params = dataclasses.asdict(self.params) if self.params is not None else None
        h.update(json.dumps({"task": self.task, "params": params, "seed": self.seed}, sort_keys=True).encode())
        return h.hexdigest()[:16]


class PairStream(BatchStream):
    """:class:`gankd.loop.BatchStream` over a PairedDataset: ``batch(step)`` is
    (source, target) float for the same deterministic indices."""

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.indices(step)
        return to_float(self.data.sources[idx]), to_float(self.data.images[idx])


def is_paired(spec) -> bool:
    """Whether a data spec is ``paired:SRC_DIR,TGT_DIR``."""
    return isinstance(spec, str) and spec.startswith(PAIRED_PREFIX)


def _paired_dirs(spec: str) -> tuple[Path, Path]:
    parts = spec[len(PAIRED_PREFIX) :].split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise DataError(f"bad data spec '{spec}': write paired:SRC_DIR,TGT_DIR (two folders, one comma)")
    src, tgt = (Path(p.strip()) for p in parts)
    for side, d in (("source", src), ("target", tgt)):
        if not d.is_dir():
            raise DataError(f"{side} folder {d} of {spec} does not exist")
    return src, tgt


def _keyed(root: Path, side: str) -> dict[str, Path]:
    """key (relative path without extension) -> file; two files with one key raise."""
    files = _scan(root)[0]
    out: dict[str, Path] = {}
    for f in files:
        key = f.relative_to(root).with_suffix("").as_posix()
        if key in out:
            raise DataError(f"{side} folder {root} holds two images named {key} ({out[key].name}, {f.name}): "
                            "pairs are matched by name, rename or remove one")  # fmt: skip
        out[key] = f
    return out


def pairs_info(spec: str) -> DataInfo:
    """:class:`gankd.data.DataInfo` of a spec. For ``paired:SRC,TGT``: the target folder's
    channels and resolution, with this spec, no classes and the number of matched pairs."""
    if not is_paired(spec):
        return data_info(spec)
    src, tgt = _paired_dirs(spec)
    info = data_info(f"folder:{tgt}")
    n = len(_keyed(src, "source").keys() & _keyed(tgt, "target").keys())
    return dataclasses.replace(info, spec=spec, num_classes=0, class_names=(), num_images=n)


def _first(xs: list) -> str:
    return f" (first: {xs[0]})" if xs else ""


def pair_shape(spec: str, image_channels: int | None = None, resolution: int | None = None) -> tuple[int, int]:
    """(image_channels, resolution) of an image-to-image model of ``spec``: each from the data
    (the target folder for ``paired:SRC,TGT``) unless given, with the refusals of
    :func:`gankd.data.resolve_shape` (which names ``folder:TGT`` for paired data)."""
    target = f"folder:{_paired_dirs(spec)[1]}" if is_paired(spec) else spec
    ch, res, _ = resolve_shape(target, image_channels, resolution, 0)
    return ch, res


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")


def _load_paired(spec: str, split: str, resolution: int | None, channels: int | None,
                 strict: bool) -> PairedDataset:  # fmt: skip
    src_dir, tgt_dir = _paired_dirs(spec)
    _check_split(split)
    if resolution is None or channels is None:
        info = data_info(f"folder:{tgt_dir}")
        resolution = info.resolution if resolution is None else resolution
        channels = info.channels if channels is None else channels
    src, tgt = _keyed(src_dir, "source"), _keyed(tgt_dir, "target")
    keys = sorted(src.keys() & tgt.keys())
    if not keys:
        raise DataError(f"no pairs in {spec}: files are matched by name (path without extension) and none of the "
                        f"{len(src)} in {src_dir} has a namesake among the {len(tgt)} in {tgt_dir}")  # fmt: skip
    only_src = sorted(src.keys() - tgt.keys())
    only_tgt = sorted(tgt.keys() - src.keys())
    chosen = [k for i, k in enumerate(keys)
              if ((folder_split_of(i) != "test") if split == "train" else folder_split_of(i) == split)]  # fmt: skip
    if not chosen:
        need = {
            "val": "val takes every 10th pair, so it needs at least 10 pairs",
            "test": "test takes every 10th pair from the 5th, so it needs at least 5 pairs",
        }
        raise DataError(f"split '{split}' of {spec} is empty ({len(keys)} pairs): {need.get(split, 'add images')}")
    sources, targets, bad = [], [], []
    counts = {"alpha": 0, "gray": 0, "resized": 0}
    for k in chosen:
        pair = []
        for f in (src[k], tgt[k]):
            loaded = load_or_skip(f, resolution, channels, strict, bad)
            if loaded is None:
                break
            pair.append(loaded)
        if len(pair) < 2:
            continue
        for _img, done in pair:
            for name, v in done.items():
                counts[name] += bool(v)
        sources.append(pair[0][0])
        targets.append(pair[1][0])
    if only_src or only_tgt or bad:
        log.warning("%s split %s: %d source image(s) without a target%s, %d target image(s) without a source%s, "
                    "%d unreadable image(s) skipped%s; %d pairs", spec, split, len(only_src), _first(only_src),
                    len(only_tgt), _first(only_tgt), len(bad), _first(bad), len(targets))  # fmt: skip
    if not targets:
        raise DataError(f"no readable pairs in split '{split}' of {spec} ({len(bad)} unreadable)")
    n = 2 * len(targets)
    key = (spec,)
    if counts["alpha"]:
        _say_once(key + ("alpha",), "%s: images with transparency (%d of %d in split %s) composited onto white",
                  spec, counts["alpha"], n, split)  # fmt: skip
    if counts["gray"]:
        _say_once(key + ("gray",), "%s: colour images converted to gray (1 channel), as asked (%d of %d in split %s)",
                  spec, counts["gray"], n, split)  # fmt: skip
    if counts["resized"]:
        _say_once(key + ("resize", resolution), "%s: images resized (shorter side) and center-cropped to %d px "
                  "(%d of %d in split %s)", spec, resolution, counts["resized"], n, split)  # fmt: skip
    images = torch.stack(targets)
    return PairedDataset(images, torch.stack(sources), torch.zeros(len(targets), dtype=torch.int64),
                         f"{spec}:{split}")  # fmt: skip


def load_pairs(spec: str, split: str = "train", resolution: int | None = None, channels: int | None = None,
               task: str | None = None, params: TaskParams | None = None, seed: int = 0,
               strict: bool = False) -> PairedDataset:  # fmt: skip
    """(source, target) pairs of ``split``: from ``paired:SRC_DIR,TGT_DIR`` (task None or
    "paired"), or the images of any other spec as targets degraded by ``task`` (see module
    doc). ``resolution``/``channels`` None: the data's own (the target folder's for paired)."""
    if is_paired(spec):
        if task not in (None, PAIRED_TASK):
            raise DataError(f"paired data brings its own sources: drop --task ({task!r} given with {spec})")
        return _load_paired(spec, split, resolution, channels, strict)
    if task in (None, PAIRED_TASK):
        raise DataError(f"--task is needed to make pairs from {spec}: choose from "
                        f"{', '.join(DEGRADATIONS.names())} (join with +)")
    steps = parse_task(task)
    task = "+".join(steps)
    params = TaskParams() if params is None else params
    if "colorize" in steps:
        ch = data_info(spec).channels if channels is None else channels
        if ch != 3:
            raise DataError(f"--task colorize needs colour images but {spec} is loaded gray (1 channel): "
                            "use colour data with --image-channels 3 or another --task")  # fmt: skip
    base = load_dataset(spec, split, resolution, channels, strict)
    sources = torch.empty_like(base.images)
    for a in range(0, len(base), CHUNK):
        b = min(a + CHUNK, len(base))
        sources[a:b] = to_uint8(degrade_batch(to_float(base.images[a:b]), task, range(a, b), seed, params))
    log.info("%s: %d %s pairs made (seed %d)", base.name, len(base), task, seed)
    return PairedDataset(base.images, sources, torch.zeros(len(base), dtype=torch.int64),
                         f"{base.name}+{task}", task, params, int(seed))  # fmt: skip
