"""Shared fixtures: a tiny generator folder, a tiny image folder, thread hygiene.

Helper functions live in testkit.py (import them from there, not from conftest).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from testkit import tiny_discriminator, tiny_generator, write_images

from gankd.checkpoint import save_model


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    """Training calls torch.set_num_threads; keep one test from changing the next one."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def _gen_dir_src(tmp_path_factory) -> Path:
    g = tiny_generator()
    # a few train-mode steps so BatchNorm running stats are not the trivial defaults
    g.train()
    with torch.no_grad():
        for _ in range(3):
            g(torch.randn(8, g.z_dim), torch.arange(8) % 10)
    g.eval()
    root = tmp_path_factory.mktemp("gen_src")
    return save_model(root / "gen", g, "generator", discriminator=tiny_discriminator())


@pytest.fixture
def gen_dir(_gen_dir_src, tmp_path) -> Path:
    """A loadable conditional generator folder (10 classes) with its discriminator; a fresh
    copy per test, so tests may damage it."""
    return Path(shutil.copytree(_gen_dir_src, tmp_path / "gen"))


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Two classes of 8 gray 32x32 images each."""
    return write_images(tmp_path / "imgs", {"cats": 8, "dogs": 8}, size=(32, 32))
