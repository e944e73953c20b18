"""A user's own images, end to end through the CLI with no --set overrides: an RGB folder
(unconditional, and with class folders of RGBA PNGs) and a gray 28 px folder go through
train-teacher -> sample -> compress -> eval -> report -> export; shapes come from the data;
every refusal is one line; every JSON names the extractor it used."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from evalkit import private_cache_fixture  # noqa: F401  (fixture)
from testkit import one_line_error, write_images
from testkit import run_cli as run

from gankd.checkpoint import load_generator

pytestmark = pytest.mark.usefixtures("private_cache")
FAST = ["--batch-size", "4", "--no-progress", "--select", "last"]


def write_rgba(root: Path, classes: dict[str, int], size: int = 36, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
            arr[..., 3] = np.where(rng.random((size, size)) < 0.3, 0, 255)  # transparent pixels
            Image.fromarray(arr, mode="RGBA").save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture
def rgb_folder(tmp_path):
    """60 RGB 32x32 images, no class folders: test split 6, val 6, fit 48."""
    return write_images(tmp_path / "rgb", {"": 60}, size=(32, 32), mode="RGB")


def _pipeline(capsys, tmp_path: Path, data: str, tag: str, *compress_flags: str) -> dict:
    """train-teacher -> sample -> compress -> eval (+ real floor) -> report -> export; returns the eval JSONs."""
    run_dir = tmp_path / f"teacher-{tag}"
    code, out, err = run(capsys, "train-teacher", "--data", data, "--out", run_dir, "--steps", 2, *FAST)
    assert code == 0, err
    teacher = Path(out.strip().splitlines()[-1])
    code, out, err = run(capsys, "sample", "--model", teacher, "--seeds", "0-7", "--out", tmp_path / f"{tag}.png")
    assert code == 0, err
    code, out, err = run(capsys, "compress", "--teacher", teacher, "--out", tmp_path / f"c-{tag}", "--steps", 2,
                         "--width", 0.25, *compress_flags, *FAST)  # fmt: skip
    assert code == 0, err
    student = Path(out.strip().splitlines()[-1])
    assert json.loads((student / "config.json").read_text())["data"] == data  # the student remembers its data
    jsons = {}
    for role, model in (("teacher", teacher), ("student", student)):
        extra = ["--real-floor"] if role == "teacher" else ["--teacher", teacher, "--teacher-samples", 4]
        code, out, err = run(capsys, "eval", "--model", model, "--num-samples", 12, "--metrics", "fid,isc,kid,prc",
                             "--role", role, "--out", tmp_path / f"{tag}-{role}.json", *extra)  # fmt: skip
        assert code == 0, err
        jsons[role] = json.loads((tmp_path / f"{tag}-{role}.json").read_text())
        p = jsons[role]["protocol"]
        assert p["reference"].startswith(f"{data}:test")  # the model's own held-out split, by default
        assert p["extractor"] and p["extractor_sha256_16"] and p["extractor_reason"]
        assert f"{p['extractor']} (sha256 {p['extractor_sha256_16']}" in out
    code, out, err = run(capsys, "report", tmp_path / f"{tag}-teacher.json", tmp_path / f"{tag}-student.json",
                         "--out", tmp_path / f"report-{tag}")  # fmt: skip
    assert code == 0, err
    md = (tmp_path / f"report-{tag}" / "report.md").read_text()
    assert "Real-data floor" in md and jsons["teacher"]["protocol"]["extractor_sha256_16"] in md
    code, out, err = run(capsys, "export", "--model", student, "--format", "torchscript")
    assert code == 0, err
    return jsons


def test_rgb_folder_end_to_end_without_overrides(rgb_folder, tmp_path, capsys, caplog):
    data = f"folder:{rgb_folder}"
    with caplog.at_level(logging.WARNING):
        jsons = _pipeline(capsys, tmp_path, data, "rgb", "--perc", "1", "--kd", "0.1")  # the terms asked for
    g = load_generator(tmp_path / "teacher-rgb" / "generator")
    assert (g.cfg.image_channels, g.cfg.resolution, g.num_classes) == (3, 32, 0)  # from the data, not gray
    # the shipped gray perceptual net does not fit RGB: asked for, one warning, recorded in the run's config
    warned = [r.getMessage() for r in caplog.records if "perceptual and KD terms are off" in r.getMessage()]
    assert len(warned) == 1 and "--perceptual lpips-alex" in warned[0]
    cfg = json.loads((tmp_path / "c-rgb" / "config.json").read_text())
    assert cfg["perceptual"] == 0 and cfg["kd"] == 0 and "Fashion-MNIST" in cfg["perceptual_off"]
    t, s = jsons["teacher"], jsons["student"]
    for r in (t, s, t["real_floor"]):  # never the Fashion-MNIST evaluator on RGB data
        assert r["protocol"]["extractor"] == "random-conv" and r["protocol"]["extractor_weights"] is None
        assert "isc" in r["quality"]["skipped"] and "fid" in r["quality"]
    floor = t["real_floor"]["protocol"]
    assert floor["generated"].startswith(f"{data}:fit") and floor["reference"].startswith(f"{data}:test")
    assert s["teacher_fidelity"]["evaluator_lpips_style"] is None  # no classifier of this domain


def test_class_folders_of_rgba_pngs_end_to_end(tmp_path, capsys):
    root = write_rgba(tmp_path / "sprites", {"knights": 30, "orcs": 30})
    data = f"folder:{root}"
    jsons = _pipeline(capsys, tmp_path, data, "cls")
    g = load_generator(tmp_path / "teacher-cls" / "generator")
    assert (g.cfg.image_channels, g.cfg.resolution, g.num_classes) == (3, 32, 2)
    for r in jsons.values():
        assert r["protocol"]["extractor"] == "random-conv"
        assert "no classifier of this domain" in r["class_consistency"]["skipped"]


def test_gray_folder_at_28px(tmp_path, capsys):
    root = write_images(tmp_path / "gray", {"": 40}, size=(28, 28))
    data = f"folder:{root}"
    code, out, err = run(capsys, "train-teacher", "--data", data, "--out", tmp_path / "t", "--steps", 1, *FAST)
    assert code == 0, err
    g = load_generator(Path(out.strip().splitlines()[-1]))
    assert (g.cfg.image_channels, g.cfg.resolution, g.num_classes) == (1, 32, 0)
    code, out, err = run(capsys, "eval", "--model", g_dir := Path(out.strip().splitlines()[-1]),
                         "--num-samples", 8, "--metrics", "fid", "--out", tmp_path / "e.json")  # fmt: skip
    assert code == 0, err
    r = json.loads((tmp_path / "e.json").read_text())
    # gray 32 px, but not Fashion-MNIST: the shipped evaluator is not used
    assert r["protocol"]["extractor"] == "random-conv" and r["protocol"]["reference"].startswith(f"{data}:test")
    assert g_dir.is_dir()


def test_refusals_are_one_line(rgb_folder, tmp_path, capsys, evaluator_dir_for_refusals):
    gray = write_images(tmp_path / "gray", {"a": 10, "b": 10}, size=(28, 28))
    rgb, gray_spec = f"folder:{rgb_folder}", f"folder:{gray}"
    msg = one_line_error(capsys, "train-teacher", "--data", gray_spec, "--out", tmp_path / "x", "--image-channels", 3)
    assert "--image-channels 1" in msg
    msg = one_line_error(capsys, "train-teacher", "--data", rgb, "--out", tmp_path / "x", "--num-classes", 5)
    assert "--num-classes 0" in msg and "--num-classes 5" in msg
    msg = one_line_error(capsys, "train-teacher", "--data", rgb, "--out", tmp_path / "x", "--resolution", 48)
    assert "--resolution must be a power of two" in msg
    msg = one_line_error(capsys, "train-classifier", "--data", rgb, "--out", tmp_path / "x")
    assert "needs labelled data" in msg
    # an RGB model: a gray reference and an evaluator of other channels are refused before generating
    code, out, _ = run(capsys, "train-teacher", "--data", rgb, "--out", tmp_path / "t", "--steps", 1, *FAST)
    assert code == 0
    model = out.strip().splitlines()[-1]
    msg = one_line_error(capsys, "eval", "--model", model, "--reference", gray_spec, "--num-samples", 100000)
    assert "is gray but" in msg and "--reference" in msg
    msg = one_line_error(capsys, "eval", "--model", model, "--evaluator", evaluator_dir_for_refusals,
                         "--num-samples", 100000)  # fmt: skip
    assert "takes 1x32x32 images" in msg and "--evaluator DIR" in msg


@pytest.fixture
def evaluator_dir_for_refusals(tmp_path):
    from evalkit import make_evaluator

    return make_evaluator(tmp_path / "gray-evaluator")
