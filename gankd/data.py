"""Datasets: Fashion-MNIST (from local files), any folder of images, and named folders.

Images are stored as uint8 (N, C, R, R) and served as float in [-1, 1] with an
int64 label. Dataset specs: ``fashion-mnist``, ``folder:PATH`` or a named folder
(``wesnoth-units``).

Shapes come from the data (:func:`data_info`): channels (1 when every image is gray,
else 3), resolution (the power of two nearest to the images' typical shorter side, in
32..256) and class count (immediate sub-folders). Commands override them with
``--image-channels``, ``--resolution`` and ``--num-classes`` (:func:`resolve_shape`).
Dropping colour or resizing is never silent: the loader logs one line per folder.

Fashion-MNIST is 28x28, gray, 10 classes; gankd zero-pads 2 pixels on each side (the
background is black, so padding adds no artefacts and keeps every original pixel) to get
32x32, then resizes (bilinear, antialiased) if another resolution is asked for.
Splits: ``train`` (60k), ``test`` (10k), ``fit`` (first 55k of train) and ``val``
(last 5k of train).

Folders: images are resized (shorter side, bicubic) and center-cropped. Images with
transparency (RGBA, LA, palette or RGB/L with a transparent colour) are composited onto
white, with one log line. Deterministic splits over the sorted file list: every 10th
file (index 9, 19, ...) is ``val``, every 10th from the 5th (index 4, 14, ...) is
``test``, the rest is ``fit``; ``train`` = fit + val (never test).

``val`` is the held-out split for checkpoint selection; ``test`` is reserved for
reported numbers (the default reference of ``gankd eval``).

Named folders (installed from Debian packages; a missing one raises with the apt command):
``wesnoth-units``: the unit sprites of Battle for Wesnoth 1.16
(``apt-get install -y wesnoth-1.16-data``), 72x72 RGBA sprites with some larger ones
(gankd's default resolution for them is 64), one class per sub-folder of
``/usr/share/games/wesnoth/1.16/data/core/images/units`` (21 faction/race folders; the two
loose images at its top level are left out).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FMNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
SPLITS = ("train", "test", "fit", "val")
N_VAL = 5000
FMNIST_NAMES = ("fashion-mnist", "fmnist")


def is_fmnist(spec: str | None) -> bool:
    """Whether a data spec (with or without ``:split``) names Fashion-MNIST: the one domain the
    shipped evaluator and perceptual nets were trained on."""
    return bool(spec) and str(spec).split(":")[0] in FMNIST_NAMES

# named folders: spec -> (path, how to install it)
WESNOTH_UNITS = Path("/usr/share/games/wesnoth/1.16/data/core/images/units")
NAMED_FOLDERS = {"wesnoth-units": (WESNOTH_UNITS, "apt-get install -y wesnoth-1.16-data")}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
MIN_RESOLUTION, MAX_RESOLUTION = 32, 256  # default resolutions chosen from the data
_SAID: set = set()  # log lines already written (one per folder and kind)


def _say_once(key: tuple, msg: str, *args) -> None:
    if key not in _SAID:
        _SAID.add(key)
        log.warning(msg, *args)


class DataError(RuntimeError):
    """A dataset cannot be found or read; the message says how to fix it."""


class ImageShape(Dataset):
    """Length, resolution and channels of a dataset whose ``images`` are uint8 (N, C, R, R)
    (:class:`ImageDataset`, and ``gankd.paired.PairedDataset`` whose images are its targets)."""

    images: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.images.shape[1]


@dataclass
class ImageDataset(ImageShape):
    """uint8 images (N, C, R, R) and int64 labels (N,), served as ([-1, 1] float, label)."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str
    class_names: tuple[str, ...] = ()

    def __getitem__(self, i: int):
        return to_float(self.images[i]), self.labels[i]

    def content_hash(self) -> str:
        """Short sha256 of images and labels: a cache key that changes with the data."""
        h = hashlib.sha256(self.images.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        return h.hexdigest()[:16]


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (rounded, clamped)."""
    return x.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path} ({e}); reinstall the dataset files") from e
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte
        raise DataError(f"{path} is not an IDX ubyte file; reinstall the dataset files")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated; reinstall the dataset files")
    return arr.reshape(dims)


def _fmnist_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("GANKD_DATA")
    if env:
        dirs += [Path(env), Path(env) / "fashion-mnist", Path(env) / "FashionMNIST" / "raw"]
    dirs.append(SYSTEM_DIR)
    dirs.append(Path.home() / ".cache" / "gankd" / "data" / "FashionMNIST" / "raw")
    return dirs


def find_fmnist() -> Path:
    """Folder holding the four Fashion-MNIST .gz files, downloading only as a last resort."""
    needed = [f for pair in FMNIST_FILES.values() for f in pair]
    for d in _fmnist_dirs():
        if all((d / f).is_file() for f in needed):
            return d
    try:  # where a network exists
        from torchvision.datasets import FashionMNIST

        root = Path.home() / ".cache" / "gankd" / "data"
        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
        return root / "FashionMNIST" / "raw"
    except Exception as e:
        raise DataError(
            "Fashion-MNIST not found: run `apt-get install dataset-fashion-mnist` "
            f"(puts it in {SYSTEM_DIR}), or set GANKD_DATA to a folder holding "
            f"{', '.join(needed)} (download failed: {type(e).__name__})"
        ) from e


def _resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution:
        return images
    x = F.interpolate(images.float(), size=(resolution, resolution), mode="bilinear",
                      antialias=True, align_corners=False)  # fmt: skip
    return x.round().clamp(0, 255).to(torch.uint8)


def load_fmnist(split: str, resolution: int = 32) -> ImageDataset:
    """Fashion-MNIST ``split`` as uint8 (N, 1, R, R), padded to 32 px then resized (see module doc)."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    root = find_fmnist()
    base = "test" if split == "test" else "train"
    img_file, lbl_file = FMNIST_FILES[base]
    images = torch.from_numpy(_read_idx(root / img_file).copy())[:, None]  # (N, 1, 28, 28)
    labels = torch.from_numpy(_read_idx(root / lbl_file).astype(np.int64))
    images = F.pad(images, (2, 2, 2, 2), value=0)
    if resolution != 32:
        _say_once(("fmnist", resolution), "fashion-mnist: 32 px images (28 px padded) resized to %d px", resolution)
    images = _resize(images, resolution)
    if split == "fit":
        images, labels = images[:-N_VAL], labels[:-N_VAL]
    elif split == "val":
        images, labels = images[-N_VAL:], labels[-N_VAL:]
    return ImageDataset(images.contiguous(), labels, 10, f"fashion-mnist:{split}", FMNIST_CLASSES)


def _has_alpha(im) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info


def _load_image(path: Path, resolution: int, channels: int) -> tuple[torch.Tensor, dict]:
    """One image as uint8 (C, R, R) and what was done to it: {"alpha", "gray", "resized"}."""
    from PIL import Image

    with Image.open(path) as im:
        done = {"alpha": _has_alpha(im), "gray": channels == 1 and im.mode not in GRAY_MODES,
                "resized": im.size != (resolution, resolution)}  # fmt: skip
        if done["alpha"]:  # composite onto white: a bare convert("RGB") keeps hidden colours
            im = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
        im = im.convert("L" if channels == 1 else "RGB")
        w, h = im.size
        s = resolution / min(w, h)
        im = im.resize((max(resolution, round(w * s)), max(resolution, round(h * s))),
                       Image.BICUBIC)  # fmt: skip
        w, h = im.size
        left, top = (w - resolution) // 2, (h - resolution) // 2
        im = im.crop((left, top, left + resolution, top + resolution))
        arr = np.asarray(im, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(arr.copy()), done


def load_or_skip(path: Path, resolution: int, channels: int, strict: bool,
                 bad: list) -> tuple[torch.Tensor, dict] | None:  # fmt: skip
    """:func:`_load_image`, or ``None`` with ``path`` added to ``bad`` when the file cannot be read; with
    ``strict`` an unreadable file is a one-line :class:`DataError` instead."""
    try:
        return _load_image(path, resolution, channels)
    except Exception as e:  # PIL raises many types for corrupt files
        if strict:
            raise DataError(f"cannot read image {path} ({e}); remove it or drop --strict") from e
        bad.append(path)
        return None


def _folder_source(spec: str) -> tuple[Path, bool]:
    """(root, class folders only) of ``folder:PATH`` or a named folder."""
    if spec in NAMED_FOLDERS:
        root, install = NAMED_FOLDERS[spec]
        if not root.is_dir():
            raise DataError(f"dataset {spec} is not installed ({root} is missing): run `{install}`")
        return root, True
    return Path(spec[len("folder:") :]), False


def _scan(root: Path, class_dirs_only: bool = False) -> tuple[list[Path], list[tuple], bool, tuple[str, ...]]:
    """Sorted image files, their relative parts, whether sub-folders are classes, class names."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; pass --data folder:PATH to a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if class_dirs_only:
        loose = [f for f in files if f.parent == root]
        if loose:
            log.info("%s: %d image(s) at the top level are not in a class folder: left out", root, len(loose))
        files = [f for f in files if f.parent != root]
    if not files:
        raise DataError(f"image folder {root} holds no images ({', '.join(sorted(IMAGE_EXTS))})")
    # classes come from all files, before the split: a class missing from one split
    # must not shift the label indices of the others
    rel_parts = [f.relative_to(root).parts for f in files]
    use_classes = all(len(p) >= 2 for p in rel_parts)
    class_names = tuple(sorted({p[0] for p in rel_parts})) if use_classes else ()
    return files, rel_parts, use_classes, class_names


def folder_split_of(index: int) -> str:
    """The split of the ``index``-th file (sorted order) of a folder: val, test or fit."""
    return {9: "val", 4: "test"}.get(index % 10, "fit")


def load_folder(path: str | Path, split: str = "train", resolution: int | None = None,
                channels: int | None = None, strict: bool = False, class_dirs_only: bool = False,
                name: str | None = None) -> ImageDataset:  # fmt: skip
    """Any tree of images; immediate sub-folders are classes when every image is in one.

    Images are resized (shorter side) and center-cropped to ``resolution`` px, converted to
    ``channels`` (None: both from :func:`data_info`); images with transparency are
    composited onto white. Each of these is logged once per folder. Unreadable files are
    skipped with a counted warning, or raise with ``strict=True``. Splits (see module doc):
    ``fit``, ``val`` (every 10th file), ``test`` (every 10th from the 5th), ``train`` =
    fit + val. ``class_dirs_only``: leave out images at the top level (named folders).
    """
    root = Path(path)
    spec = name or f"folder:{root}"
    if resolution is None or channels is None:
        info = _folder_info(root, class_dirs_only, spec)
        resolution = info.resolution if resolution is None else resolution
        channels = info.channels if channels is None else channels
    files, rel_parts, use_classes, class_names = _scan(root, class_dirs_only)
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    keep = [(folder_split_of(i) != "test") if split == "train" else folder_split_of(i) == split
            for i in range(len(files))]  # fmt: skip
    files = [f for f, k in zip(files, keep, strict=True) if k]
    rel_parts = [p for p, k in zip(rel_parts, keep, strict=True) if k]
    if not files:
        need = {"val": "val takes every 10th image, so the folder needs at least 10 images",
                "test": "test takes every 10th image from the 5th, so the folder needs at least 5 images"}
        raise DataError(f"split '{split}' of {root} is empty: {need.get(split, 'add images')}")  # fmt: skip
    images, labels, bad = [], [], []
    counts = {"alpha": 0, "gray": 0, "resized": 0}
    for f, parts in zip(files, rel_parts, strict=True):
        loaded = load_or_skip(f, resolution, channels, strict, bad)
        if loaded is None:
            continue
        img, done = loaded
        images.append(img)
        for k, v in done.items():
            counts[k] += bool(v)
        labels.append(class_names.index(parts[0]) if use_classes else 0)
    if bad:
        log.warning("skipped %d unreadable image(s) in %s (first: %s)", len(bad), root, bad[0])
    if not images:
        raise DataError(f"no readable images in {root} ({len(bad)} unreadable)")
    if counts["alpha"]:
        _say_once((str(root), "alpha"), "%s: images with transparency (%d in split %s) composited onto white",
                  spec, counts["alpha"], split)  # fmt: skip
    if counts["gray"]:
        _say_once((str(root), "gray"), "%s: colour images converted to gray (1 channel), as asked "
                  "(%d in split %s)", spec, counts["gray"], split)  # fmt: skip
    if counts["resized"]:
        _say_once((str(root), "resize", resolution), "%s: images resized (shorter side) and center-cropped to "
                  "%d px (%d of %d in split %s)", spec, resolution, counts["resized"], len(images), split)  # fmt: skip
    return ImageDataset(
        torch.stack(images), torch.tensor(labels, dtype=torch.int64),
        len(class_names), f"{spec}:{split}", class_names,
    )  # fmt: skip


@dataclass(frozen=True)
class DataInfo:
    """What a dataset is, without loading it: the shapes gankd uses for it by default."""

    spec: str  # the dataset spec (no split)
    channels: int  # 1 = every image is gray, 3 = colour
    resolution: int  # default resolution: power of two nearest to source_size, in 32..256
    source_size: int  # typical (median) shorter side of the source images, px
    num_classes: int  # 0 = no class folders
    class_names: tuple[str, ...]
    num_images: int  # all splits together

    @property
    def fmnist(self) -> bool:
        """Whether this is Fashion-MNIST (the domain of the shipped evaluator and perceptual net)."""
        return self.spec in FMNIST_NAMES


def default_resolution(size: int) -> int:
    """The power of two nearest (in log scale) to ``size``, clamped to 32..256: 28 -> 32, 72 -> 64."""
    r = 2 ** round(math.log2(max(size, 1)))
    return int(min(max(r, MIN_RESOLUTION), MAX_RESOLUTION))


_INFO: dict = {}


def _folder_info(root: Path, class_dirs_only: bool, spec: str) -> DataInfo:
    from PIL import Image

    files, _, _, class_names = _scan(root, class_dirs_only)
    key = (spec, str(root), len(files), max(f.stat().st_mtime_ns for f in files))
    if key in _INFO:
        return _INFO[key]
    modes, sizes = set(), []
    for f in files:
        try:
            with Image.open(f) as im:  # the header only
                modes.add(im.mode)
                sizes.append(min(im.size))
        except Exception:  # noqa: BLE001  (unreadable files are counted when loading)
            continue
    if not sizes:
        raise DataError(f"no readable images in {root}")
    channels = 1 if modes <= GRAY_MODES else 3
    size = int(np.median(sizes))
    info = DataInfo(spec, channels, default_resolution(size), size, len(class_names), class_names, len(files))
    _INFO[key] = info
    return info


def data_info(spec: str) -> DataInfo:
    """Channels, default resolution and class count of a dataset spec (no split), from the
    files' headers (folders) or known facts (Fashion-MNIST: 1 x 32 px, 10 classes)."""
    if spec in FMNIST_NAMES:
        return DataInfo("fashion-mnist", 1, 32, 28, 10, FMNIST_CLASSES, 70000)
    if spec in NAMED_FOLDERS or (isinstance(spec, str) and spec.startswith("folder:")):
        root, only_dirs = _folder_source(spec)
        return _folder_info(root, only_dirs, spec)
    raise DataError(f"unknown dataset '{spec}'; use fashion-mnist, folder:PATH or {', '.join(NAMED_FOLDERS)}")


def resolve_shape(spec: str, image_channels: int | None = None, resolution: int | None = None,
                  num_classes: int | None = None) -> tuple[int, int, int]:  # fmt: skip
    """(image_channels, resolution, num_classes) for a model of ``spec``: each from the data
    unless given. Refuses, in one line naming the flag, colour from gray data and a class
    count other than the data's (0 = unconditional is always allowed). Asking for gray from
    colour data is allowed (the loader logs the conversion)."""
    info = data_info(spec)
    ch = info.channels if image_channels is None else int(image_channels)
    if ch not in (1, 3):
        raise ValueError(f"--image-channels must be 1 (gray) or 3 (RGB), got {ch}")
    if ch == 3 and info.channels == 1:
        raise ValueError(f"--image-channels 3 but {spec} is gray (1 channel): pass --image-channels 1 or leave it out")
    res = info.resolution if resolution is None else int(resolution)
    if res < 8 or res & (res - 1):
        raise ValueError(f"--resolution must be a power of two such as 32, 64, 128 or 256, got {res}")
    nc = info.num_classes if num_classes is None else int(num_classes)
    if nc not in (0, info.num_classes):
        alt = f"{info.num_classes} (its classes), " if info.num_classes else ""
        raise ValueError(f"--num-classes {nc} does not match {spec}, which has {info.num_classes} classes: pass "
                         f"--num-classes {alt}0 (unconditional) or leave it out")  # fmt: skip
    return ch, res, nc


def load_dataset(spec: str | None, split: str = "train", resolution: int | None = None,
                 channels: int | None = None, strict: bool = False) -> ImageDataset:  # fmt: skip
    """Load ``fashion-mnist``, ``folder:PATH`` or a named folder at ``resolution`` px with
    ``channels`` (None: the data's own, see :func:`data_info`)."""
    if not spec or spec == "none":
        raise DataError("no dataset given: pass --data (fashion-mnist, folder:PATH or a named dataset)")
    if spec in FMNIST_NAMES:
        if channels not in (None, 1):
            raise DataError("fashion-mnist is gray (1 channel) and cannot feed a 3-channel model: "
                            "pass --data with colour images (folder:PATH)")  # fmt: skip
        return load_fmnist(split, 32 if resolution is None else resolution)
    if spec in NAMED_FOLDERS:
        root, _ = _folder_source(spec)
        return load_folder(root, split, resolution, channels, strict, class_dirs_only=True, name=spec)
    if spec.startswith("folder:"):
        return load_folder(spec[len("folder:"):], split, resolution, channels, strict)
    raise DataError(f"unknown dataset '{spec}'; use fashion-mnist, folder:PATH or {', '.join(NAMED_FOLDERS)}")
