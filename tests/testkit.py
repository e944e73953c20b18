"""Helpers shared by test modules: tiny models, tiny image folders, the Fashion-MNIST marker.

Import them with ``from testkit import ...``, never ``from conftest import ...``: with
several conftest.py files (tests/ and tests/metrics/) the name ``conftest`` points at
whichever pytest loaded last.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gankd.data import SYSTEM_DIR
from gankd.models.dcgan import DCGANDiscriminator, DCGANGenerator, DiscriminatorConfig, GeneratorConfig

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(script: str):
    """Import ``benchmarks/<script>.py`` as a module (benchmarks/ is not a package; its
    scripts import each other, so benchmarks/ goes on sys.path)."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"bench_{script}", ROOT / "benchmarks" / f"{script}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


FMNIST_PRESENT = (SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz").is_file()
needs_fmnist = pytest.mark.skipif(not FMNIST_PRESENT, reason="dataset-fashion-mnist is not installed")


def tiny_generator(num_classes: int = 10, seed: int = 0, **kw) -> DCGANGenerator:
    """A DCGAN generator with base_channels=4 (unless given), eval mode, varied outputs."""
    torch.manual_seed(seed)
    cfg = GeneratorConfig(base_channels=kw.pop("base_channels", 4), num_classes=num_classes, **kw)
    g = DCGANGenerator(cfg).eval()
    with torch.no_grad():  # DCGAN's N(0, 0.02) init draws near-constant images: make them vary
        g.to_img.weight.normal_(0.0, 0.5)
    return g


def tiny_discriminator(num_classes: int = 10, seed: int = 1, **kw) -> DCGANDiscriminator:
    """A DCGAN discriminator with base_channels=4 (unless given)."""
    torch.manual_seed(seed)
    cfg = DiscriminatorConfig(base_channels=kw.pop("base_channels", 4), num_classes=num_classes, **kw)
    return DCGANDiscriminator(cfg)


def write_images(root: Path, classes: dict[str, int], size=(20, 24), mode: str = "L", seed: int = 0) -> Path:
    """Write ``classes[name]`` random PNGs (size = (W, H)) into ``root/name/``; '' = root itself."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, n in classes.items():
        d = root / name if name else root
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            arr = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(arr).save(d / f"{i:03d}.png")
    return root


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``gankd ARGV`` in this process -> (exit code, stdout, stderr)."""
    from gankd import cli

    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv) -> str:
    """Run ``gankd ARGV``, assert it fails with exit code 2 and ONE stderr line (no traceback); return it."""
    code, _, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def assert_plot(path: Path, min_size: tuple[int, int] = (300, 200)) -> None:
    """``path`` is a PNG of at least ``min_size`` (width, height) px with something drawn on it:
    more than a few colours and more than 1 % of its pixels not background."""
    from PIL import Image

    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as im:
        assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1], (path, im.size)
        rgb = np.asarray(im.convert("RGB"))
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    assert len(colours) > 8, (path, len(colours))
    flat = rgb.reshape(-1, 3)
    values, counts = np.unique(flat, axis=0, return_counts=True)
    background = values[counts.argmax()]
    drawn = (np.abs(flat.astype(int) - background).sum(axis=1) > 30).mean()
    assert drawn > 0.01, (path, drawn)


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder no file can be created in: a read-only folder under ``tmp_path``, or for root (whom
    permission bits do not stop) the root of sysfs; skips the test where neither exists."""
    if os.geteuid() != 0:
        d = tmp_path / "read-only"
        d.mkdir()
        d.chmod(0o555)
        return d
    d = Path("/sys")
    try:
        fd, probe = tempfile.mkstemp(dir=d)
    except OSError:
        return d
    os.close(fd)
    os.unlink(probe)
    pytest.skip("no unwritable folder on this machine")


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (hidden ones too) -> its bytes (None for a folder): 'nothing written or lost'."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}
