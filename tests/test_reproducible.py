"""Every path is reproducible: the same command twice gives the same weight bytes, whatever
the global random generator held before (noise-to-image compress, an imported generator,
image-to-image compress, train-teacher, train-classifier)."""

from __future__ import annotations

import json

import pytest
import torch
from foreign_models import TutorialDCGAN, trained_like
from safetensors.torch import save_file
from testkit import run_cli, write_images

TINY_UNET = ["--set", 'g_options={"base_channels": 4, "depth": 3}', "--set", 'd_options={"base_channels": 4}']
COMPRESS = ["--steps", "2", "--width", "0.5", "--batch-size", "4", "--eval-every", "0", "--no-progress",
            "--set", "threads=1", "--perc", "0", "--kd", "0", "--adv", "0.1"]  # fmt: skip


def _twice(capsys, tmp_path, argv: list, weights: str) -> tuple[bytes, bytes]:
    """Run ``gankd ARGV --out A`` and ``... --out B`` with the global generator in different
    states; return the bytes of ``A/weights`` and ``B/weights``."""
    got = []
    for i, tag in enumerate(("a", "b")):
        torch.manual_seed(1000 + i)  # a different global state before each run
        torch.rand(3 + 5 * i)
        out = tmp_path / tag
        code, _, err = run_cli(capsys, *argv, "--out", out)
        assert code == 0, err
        got.append((out / weights).read_bytes())
    return got[0], got[1]


@pytest.fixture
def rgb_folder(tmp_path):
    return write_images(tmp_path / "rgb", {"": 40}, size=(32, 32), mode="RGB")


def test_noise_to_image_compress_is_reproducible(capsys, tmp_path, gen_dir):
    a, b = _twice(capsys, tmp_path, ["compress", "--teacher", gen_dir, "--data", "none", "--select", "teacher-l1",
                                     *COMPRESS], "student/model.safetensors")  # fmt: skip
    assert a == b


def test_imported_generator_compress_is_reproducible(capsys, tmp_path):
    torch.manual_seed(1)
    g = trained_like(TutorialDCGAN(16, 8, 3))
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(tmp_path / "g.safetensors"))
    code, _, err = run_cli(capsys, "import", "--class", "foreign_models:TutorialDCGAN", "--kwargs",
                           json.dumps({"nz": 16, "ngf": 8, "nc": 3}), "--weights", tmp_path / "g.safetensors",
                           "--out", tmp_path / "teacher")  # fmt: skip
    assert code == 0, err
    a, b = _twice(capsys, tmp_path, ["compress", "--teacher", tmp_path / "teacher", "--data", "none", "--select",
                                     "teacher-l1", *COMPRESS], "student/model.safetensors")  # fmt: skip
    assert a == b


def test_image_to_image_paths_are_reproducible(capsys, tmp_path, rgb_folder):
    """train-teacher --task twice, then compress of that teacher twice (feature adapters and a
    fresh PatchGAN discriminator were drawn from the unseeded global generator here)."""
    data = f"folder:{rgb_folder}"
    argv = ["train-teacher", "--data", data, "--task", "denoise", "--steps", "2", "--eval-every", "0",
            "--batch-size", "4", "--no-progress", "--set", "threads=1", *TINY_UNET]  # fmt: skip
    a, b = _twice(capsys, tmp_path / "t", argv, "generator/model.safetensors")
    assert a == b
    teacher = tmp_path / "t" / "a" / "generator"
    a, b = _twice(capsys, tmp_path / "c", ["compress", "--teacher", teacher, "--d-init", "fresh", "--feat", "1",
                                           *COMPRESS], "student/model.safetensors")  # fmt: skip
    assert a == b
    run = json.loads((tmp_path / "c" / "a" / "config.json").read_text())
    assert run["resolved"]["d_init"] == "fresh" and run["feat"] == 1  # the draws this test is about happened


def test_noise_train_teacher_and_train_classifier_are_reproducible(capsys, tmp_path):
    imgs = write_images(tmp_path / "imgs", {"a": 6, "b": 6}, size=(32, 32))
    a, b = _twice(capsys, tmp_path / "g", [
        "train-teacher", "--data", f"folder:{imgs}", "--steps", "2", "--batch-size", "4", "--no-progress",
        "--select", "last", "--set", "generator.base_channels=4", "--set", "discriminator.base_channels=4",
        "--set", "threads=1"], "generator/model.safetensors")  # fmt: skip
    assert a == b
    a, b = _twice(capsys, tmp_path / "k", [
        "train-classifier", "--data", f"folder:{imgs}", "--epochs", "1", "--batch-size", "4", "--no-progress",
        "--set", "model.base_channels=4", "--set", "model.feature_dim=8", "--set", "threads=1"],
        "model.safetensors")  # fmt: skip
    assert a == b

