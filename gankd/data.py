"""Datasets: Fashion-MNIST (from local files) and any folder of images.

Images are stored as uint8 (N, C, R, R) and served as float in [-1, 1] with an
int64 label. Dataset specs: ``fashion-mnist`` or ``folder:PATH``.

Fashion-MNIST is 28x28; gankd zero-pads 2 pixels on each side (the background is
black, so padding adds no artefacts and keeps every original pixel) to get 32x32,
then resizes (bilinear, antialiased) if another resolution is asked for.

Splits: ``train`` (60k), ``test`` (10k), ``fit`` (first 55k of train) and ``val``
(last 5k of train). ``val`` is the held-out split for checkpoint selection;
``test`` is reserved for reported numbers.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
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


class DataError(RuntimeError):
    """A dataset cannot be found or read; the message says how to fix it."""


@dataclass
class ImageDataset(Dataset):
    """uint8 images (N, C, R, R) and int64 labels (N,), served as ([-1, 1] float, label)."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str
    class_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        return to_float(self.images[i]), self.labels[i]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

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
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    root = find_fmnist()
    base = "test" if split == "test" else "train"
    img_file, lbl_file = FMNIST_FILES[base]
    images = torch.from_numpy(_read_idx(root / img_file).copy())[:, None]  # (N, 1, 28, 28)
    labels = torch.from_numpy(_read_idx(root / lbl_file).astype(np.int64))
    images = F.pad(images, (2, 2, 2, 2), value=0)
    images = _resize(images, resolution)
    if split == "fit":
        images, labels = images[:-N_VAL], labels[:-N_VAL]
    elif split == "val":
        images, labels = images[-N_VAL:], labels[-N_VAL:]
    return ImageDataset(images.contiguous(), labels, 10, f"fashion-mnist:{split}", FMNIST_CLASSES)


def _load_image(path: Path, resolution: int, channels: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
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
    return torch.from_numpy(arr.copy())


def load_folder(path: str | Path, split: str = "train", resolution: int = 32,
                channels: int = 1, strict: bool = False) -> ImageDataset:  # fmt: skip
    """Any tree of images; immediate sub-folders are classes when every image is in one.

    Images are resized (shorter side) and center-cropped. Unreadable files are skipped
    with a counted warning, or raise with ``strict=True``. Splits: ``train`` = all,
    ``fit``/``val`` = a deterministic 90/10 split (every 10th file is val).
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; pass --data folder:PATH to a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DataError(f"image folder {root} holds no images ({', '.join(sorted(IMAGE_EXTS))})")
    # classes come from all files, before the split: a class missing from one split
    # must not shift the label indices of the others
    rel_parts = [f.relative_to(root).parts for f in files]
    use_classes = all(len(p) >= 2 for p in rel_parts)
    class_names = tuple(sorted({p[0] for p in rel_parts})) if use_classes else ()
    if split in ("fit", "val"):
        keep = [(i % 10 == 9) == (split == "val") for i in range(len(files))]
        files = [f for f, k in zip(files, keep, strict=True) if k]
        rel_parts = [p for p, k in zip(rel_parts, keep, strict=True) if k]
        if not files:
            raise DataError(f"split '{split}' of {root} is empty: val takes every 10th image, "
                            "so the folder needs at least 10 images")  # fmt: skip
    elif split != "train":
        raise DataError(f"split '{split}' is not available for folders; use train, fit or val")
    images, labels, bad = [], [], []
    for f, parts in zip(files, rel_parts, strict=True):
        try:
            images.append(_load_image(f, resolution, channels))
        except Exception as e:  # PIL raises many types for corrupt files
            if strict:
                raise DataError(f"cannot read image {f} ({e}); remove it or drop --strict") from e
            bad.append(f)
            continue
        labels.append(class_names.index(parts[0]) if use_classes else 0)
    if bad:
        log.warning("skipped %d unreadable image(s) in %s (first: %s)", len(bad), root, bad[0])
    if not images:
        raise DataError(f"no readable images in {root} ({len(bad)} unreadable)")
    return ImageDataset(
        torch.stack(images), torch.tensor(labels, dtype=torch.int64),
        len(class_names), f"folder:{root}:{split}", class_names,
    )  # fmt: skip


def load_dataset(spec: str, split: str = "train", resolution: int = 32,
                 channels: int = 1, strict: bool = False) -> ImageDataset:  # fmt: skip
    """Load ``fashion-mnist`` or ``folder:PATH`` at ``resolution`` (see module doc)."""
    if spec in ("fashion-mnist", "fmnist"):
        if channels != 1:
            raise DataError("fashion-mnist is gray: use --channels 1")
        return load_fmnist(split, resolution)
    if spec.startswith("folder:"):
        return load_folder(spec[len("folder:"):], split, resolution, channels, strict)
    raise DataError(f"unknown dataset '{spec}'; use fashion-mnist or folder:PATH")
