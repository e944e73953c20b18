"""Sampling from generators with explicit seeds, and PNG grids.

Latent for seed s is ``randn(z_dim)`` from ``torch.Generator().manual_seed(s)``, so
the same seed gives the same image on any machine and any batch size.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from gankd.adapter import adapter_for
from gankd.data import to_float, to_uint8
from gankd.fileio import PNG_SOFTWARE, atomic_write_bytes

MAX_IMAGES = 1024  # default cap of `gankd sample` (--max-images): a larger grid is rarely meant


def seed_ranges(text: str) -> list[range]:
    """'0-63' / '1,5,9' / '0-3,10' -> ranges, not expanded (a huge range costs nothing here).
    Seeds (and image-to-image pair indices) are >= 0."""
    out: list[range] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.append(range(lo, hi + 1))
            elif part:
                out.append(range(int(part), int(part) + 1))
    except ValueError:
        raise ValueError(f"--seeds '{text}' is not a list like 0-63 or 1,5,9") from None
    if not out:
        raise ValueError("--seeds is empty; give e.g. 0-63")
    neg = [r.start for r in out if r.start < 0]
    if neg:
        raise ValueError(f"--seeds {neg[0]} is negative; seeds count from 0, e.g. --seeds 0-63")
    return out


def parse_seeds(text: str) -> list[int]:
    """'0-63' / '1,5,9' / '0-3,10' -> list of ints (>= 0)."""
    return [s for r in seed_ranges(text) for s in r]


def grid_px(n: int, nrow: int, h: int, w: int, padding: int = 2) -> tuple[int, int]:
    """(width, height) in px of :func:`grid` of ``n`` images of ``h`` x ``w``, ``nrow`` per row."""
    cols = max(1, min(nrow, n))
    rows = -(-n // max(1, nrow))
    return cols * (w + padding) + padding, rows * (h + padding) + padding


def check_seed_count(text: str, cap: int, size: Callable[[int], tuple[int, int]]) -> int:
    """The number of seeds ``text`` names, refused in one line above ``cap`` (--max-images),
    with the pixel size ``size(n)`` the grid PNG would have."""
    if cap < 1:
        raise ValueError(f"--max-images must be >= 1, got {cap}")
    n = sum(len(r) for r in seed_ranges(text))
    if n > cap:
        w, h = size(n)
        raise ValueError(f"--seeds {text} asks for {n:,} images, over the cap of {cap:,} (the grid PNG would be "
                         f"{w:,} x {h:,} px); pass fewer --seeds or raise the cap with --max-images {n}")  # fmt: skip
    return n


def latents(seeds: list[int], z_dim: int) -> torch.Tensor:
    """(len(seeds), z_dim) standard normal, one generator per seed."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])


def balanced_labels(n: int, num_classes: int) -> torch.Tensor | None:
    """0,1,..,K-1,0,1,.. (class-balanced), or None for unconditional models."""
    if num_classes <= 0:
        return None
    return torch.arange(n) % num_classes


def pack_inputs(model: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Named inputs for ``model`` from a latent batch and optional labels (balanced if the
    model is class-conditional and none are given)."""
    gen = adapter_for(model)
    out = {}
    for spec in gen.spec.inputs:
        if spec.kind == "latent":
            out[spec.name] = z
        elif spec.kind == "label":
            out[spec.name] = y if y is not None else torch.arange(z.shape[0]) % spec.num_classes
        else:
            raise ValueError(f"input '{spec.name}' is a source image: pass a dict of named inputs")
    return out


@torch.no_grad()
def generate(model: nn.Module, z: torch.Tensor | dict, y: torch.Tensor | None = None,
             batch_size: int = 256, device: str = "cpu") -> torch.Tensor:  # fmt: skip
    """Run a generator in eval mode in batches -> (N, C, H, W) in [-1, 1].

    ``z`` is a latent batch (with optional labels ``y``) or a dict of named inputs built by
    the generator's adapter (``gankd.adapter``). The model's train/eval mode is restored
    afterwards (sampling mid-training must not leave a training model's BatchNorm in eval mode).
    """
    gen = adapter_for(model)
    inputs = z if isinstance(z, dict) else pack_inputs(gen, z, y)
    n = len(next(iter(inputs.values())))
    was_training = gen.model.training
    gen.model.eval()
    outs = []
    try:
        for i in range(0, n, batch_size):
            outs.append(gen({k: v[i : i + batch_size].to(device) for k, v in inputs.items()}).float().cpu())
    finally:
        gen.model.train(was_training)
    return torch.cat(outs)


def grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (C, H', W') uint8 grid, N/nrow rows of nrow images."""
    if nrow < 1:
        raise ValueError(f"--nrow must be >= 1, got {nrow}")
    n, c, h, w = images.shape
    ncol = nrow
    nrows = (n + ncol - 1) // ncol
    out = torch.zeros(c, nrows * (h + padding) + padding, ncol * (w + padding) + padding, dtype=torch.uint8)
    imgs = to_uint8(images)
    for i in range(n):
        r, q = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        out[:, top : top + h, left : left + w] = imgs[i]
    return out


def png_bytes(grid_u8: torch.Tensor) -> bytes:
    """(C, H, W) uint8 -> PNG bytes (no timestamps: same pixels, same bytes), tagged ``Software: gankd``."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    arr = grid_u8.permute(1, 2, 0).numpy()
    im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    info = PngInfo()
    info.add_text("Software", PNG_SOFTWARE)  # how a later --out knows gankd wrote the file (fileio.written_by_gankd)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, pnginfo=info)
    return buf.getvalue()


def save_png(grid_u8: torch.Tensor, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_bytes(path, png_bytes(grid_u8))
    return path


def check_finite_images(images: torch.Tensor, name: str = "the generator") -> torch.Tensor:
    """Raise a one-line ``ValueError`` naming the model when ``images`` hold NaN or inf.

    A PNG cannot show NaN (it would become black or noise without a word): broken weights
    must fail loudly before anything is written.
    """
    bad = ~torch.isfinite(images).flatten(1).all(dim=1)
    if bad.any():
        raise ValueError(
            f"{name} produced non-finite pixels (NaN or inf) in {int(bad.sum())} of {len(images)} "
            "images: its weights give NaN/inf; retrain it or restore its model.safetensors"
        )
    return images


def sample_grid(model: nn.Module, seeds: list[int], classes: list[int] | None = None,
                nrow: int = 8, device: str = "cpu", name: str = "the generator") -> torch.Tensor:  # fmt: skip
    """Grid of a generator's samples. Conditional models: with ``classes``, one class per
    row (each row reuses the same seeds, nrow of them); otherwise classes cycle 0..K-1.

    Raises ``ValueError`` (naming the model as ``name``) when a sample is not finite.
    """
    gen = adapter_for(model)
    nc = gen.num_classes
    if nc > 0 and classes is not None:
        for c in classes:
            if not 0 <= c < nc:
                raise ValueError(f"--classes: class {c} out of range; the model has {nc} classes (0..{nc - 1})")
        row_seeds = seeds[:nrow]
        inputs = gen.seeded_inputs(row_seeds * len(classes), torch.tensor(classes).repeat_interleave(len(row_seeds)))
        nrow = len(row_seeds)
    else:
        inputs = gen.seeded_inputs(seeds)
    return grid(check_finite_images(generate(gen, inputs, device=device), name), nrow=nrow)


def pair_grid(model: nn.Module, pairs, n: int = 8, device: str = "cpu", teacher: nn.Module | None = None,
              name: str = "the generator", indices: list[int] | None = None) -> torch.Tensor:  # fmt: skip
    """Grid of an image-to-image generator on the first ``n`` pairs of ``pairs`` (a
    ``gankd.paired.PairedDataset``), or those at ``indices``: one row per pair, columns
    source | teacher (if given) | model | target. Raises ``ValueError`` (naming the model)
    when an output is not finite or an index is out of range."""
    gen = adapter_for(model)
    spec = gen.spec.image()
    if spec is None:
        raise ValueError(f"{name} is not an image-to-image generator: sample it with seeds")
    if indices is None:
        indices = list(range(min(n, len(pairs))))
    bad = [i for i in indices if not 0 <= i < len(pairs)]
    if bad:
        raise ValueError(f"--seeds {bad[0]} is out of range: the split holds {len(pairs)} pairs (0..{len(pairs) - 1})")
    idx = torch.tensor(indices, dtype=torch.long)
    n = len(indices)
    src = to_float(pairs.sources[idx])
    cols = [src]
    if teacher is not None:
        cols.append(generate(teacher, {adapter_for(teacher).spec.image().name: src}, device=device))
    cols.append(check_finite_images(generate(gen, {spec.name: src}, device=device), name))
    cols.append(to_float(pairs.images[idx]))
    c = max(x.shape[1] for x in cols)
    cols = [x.expand(-1, c, -1, -1) if x.shape[1] != c else x for x in cols]
    return grid(torch.stack(cols, dim=1).flatten(0, 1), nrow=len(cols))
