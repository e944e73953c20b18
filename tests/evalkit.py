"""Helpers for the evaluation tests (metrics, export, CLI): a tiny random evaluator
classifier, synthetic image sets, tiny generators. A plain module, not a conftest: other
tests import ``conftest`` by name, so a second conftest.py would shadow theirs.

The evaluator is a randomly initialised VGG classifier whose BatchNorm statistics are set
from random images, so its features vary: enough to test the plumbing, not the numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gankd.checkpoint import build, save_model
from gankd.data import to_float
from gankd.models.dcgan import DCGANGenerator, GeneratorConfig


def make_evaluator(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random 'vgg' classifier (1x32x32 in, 16-d embed, 10 logits) to ``folder``."""
    torch.manual_seed(seed)
    clf = build("classifier", "vgg", {"base_channels": 4, "feature_dim": 16})
    for m in clf.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration pass
    clf.train()
    with torch.no_grad():
        clf(to_float(blobs(256, seed=1000 + seed)))
    clf.eval()
    return save_model(folder, clf, "classifier")


def blobs(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    """n gray images (n, 1, size, size) uint8 of one Gaussian blob each (random place, width, brightness)."""
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(n, 2, generator=g) * (size / 2) + size / 4
    s = torch.rand(n, 1, 1, generator=g) * 3 + 2
    a = torch.rand(n, 1, 1, generator=g) * 155 + 100
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    d2 = (yy[None] - c[:, 0, None, None]) ** 2 + (xx[None] - c[:, 1, None, None]) ** 2
    img = a * torch.exp(-d2 / (2 * s**2))
    return img.round().clamp(0, 255).to(torch.uint8)[:, None]


def tiny_gen(num_classes: int = 10, seed: int = 0, base: int = 4) -> DCGANGenerator:
    """A tiny DCGAN generator (z_dim 16, 1x32x32) whose samples visibly differ."""
    torch.manual_seed(seed)
    g = DCGANGenerator(GeneratorConfig(base_channels=base, z_dim=16, num_classes=num_classes))
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    g.train()  # BatchNorm statistics from one batch: without them DCGAN's init draws flat images
    with torch.no_grad():
        g(torch.randn(64, 16), torch.arange(64) % num_classes if num_classes else None)
        g.to_img.weight.normal_(0.0, 0.2)  # contrast
    return g.eval()


@pytest.fixture(scope="session", name="evaluator_dir")
def evaluator_dir_fixture(tmp_path_factory) -> Path:
    """Fixture ``evaluator_dir`` (import this function into a test module): a tiny evaluator folder."""
    return make_evaluator(tmp_path_factory.mktemp("evaluator") / "eval")


@pytest.fixture(name="private_cache")
def private_cache_fixture(tmp_path, monkeypatch):
    """Reference statistics go to a per-test cache, never to ~/.cache."""
    monkeypatch.setenv("GANKD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
