"""gankd vs-plain: the plain baseline trained for a finished run's wall time on the same teacher, student shape,
data and seed, both students scored the same way; a folder that is not a finished run is refused."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from evalkit import private_cache_fixture  # noqa: F401  (fixture)
from testkit import run_cli, tiny_generator, write_images

from gankd.checkpoint import load_state, save_model
from gankd.distill import PRESETS, DistillConfig, compress
from gankd.versus import plain_config, verdict


@pytest.fixture
def run(tmp_path, private_cache):
    teacher = save_model(tmp_path / "teacher", tiny_generator(num_classes=0), "generator")
    cfg = DistillConfig(teacher=str(teacher), data="none", width=0.5, steps=3, seed=4, threads=1, eval_every=0,
                        select="last", adv=0.0, perceptual=0.0, kd=0.0, batch_size=4)  # fmt: skip
    compress(cfg, tmp_path / "run")
    return tmp_path / "run"


def test_plain_gets_the_runs_teacher_shape_seed_and_wall_time_and_nothing_else(run):
    cfg = plain_config(run)
    wall = load_state(run / "state.pt")["wall_s"]
    want = DistillConfig(teacher=cfg.teacher, data="none", width=0.5, seed=4, threads=1, **PRESETS["plain"],
                         steps=10**9, max_minutes=wall / 60)  # fmt: skip
    assert dataclasses.asdict(cfg) == dataclasses.asdict(want)
    assert cfg.adv == 0 and cfg.batch_size == 32 and cfg.lr_g == 2e-4 and cfg.max_minutes > 0


def test_vs_plain_trains_plain_scores_both_and_prints_the_two_rows(run, capsys):
    code, out, _ = run_cli(capsys, "vs-plain", str(run), "--num-samples", "16", "--no-progress")
    assert code == 0 and "plain" in out and "gankd" in out and "equal wall time" in out
    rec = json.loads((run / "vs_plain.json").read_text())
    assert (run / "plain" / "student").is_dir() and rec["steps"]["gankd"] == 3 and rec["steps"]["plain"] >= 1
    for name in ("gankd", "plain"):
        assert all(math.isfinite(rec[name][k]) for k in ("fid_vs_teacher", "psnr_to_teacher", "ssim_to_teacher"))
    assert rec["verdict"] == verdict(rec["gankd"], rec["plain"]) and rec["num_samples"] == 16


def test_the_verdict_is_the_studys_test():
    plain = {"fid_vs_teacher": 1.0, "psnr_to_teacher": 20.0}
    assert verdict({"fid_vs_teacher": 0.9, "psnr_to_teacher": 20.1}, plain) == "ahead"
    assert verdict({"fid_vs_teacher": 0.9, "psnr_to_teacher": 19.8}, plain).startswith("ahead (PSNR -0.20 dB")
    assert verdict({"fid_vs_teacher": 0.9, "psnr_to_teacher": 19.6}, plain) == "behind"
    assert verdict({"fid_vs_teacher": 1.1, "psnr_to_teacher": 21.0}, plain) == "behind"
    assert verdict({"psnr_to_teacher": 20.5}, {"psnr_to_teacher": 20.0}) == "ahead"  # image-to-image: PSNR


def test_a_run_whose_discriminator_learned_the_data_is_judged_on_fid_against_the_data(tmp_path, private_cache, capsys):
    teacher = save_model(tmp_path / "teacher", tiny_generator(num_classes=0), "generator")
    data = f"folder:{write_images(tmp_path / 'gray', {'': 40}, size=(32, 32))}"
    cfg = DistillConfig(teacher=str(teacher), data=data, width=0.5, seed=1, threads=1,
                        **{**PRESETS["data"], "batch_size": 4}, steps=3)  # fmt: skip
    compress(cfg, tmp_path / "run")
    code, out, _ = run_cli(capsys, "vs-plain", str(tmp_path / "run"), "--num-samples", "16", "--no-progress")
    assert code == 0 and "judged on FID against the data" in out
    rec = json.loads((tmp_path / "run" / "vs_plain.json").read_text())
    assert rec["goal"] == "data" and all(math.isfinite(rec[n]["fid_vs_data"]) for n in ("gankd", "plain"))
    assert rec["verdict"] == verdict(rec["gankd"], rec["plain"], "data")
    assert verdict({"fid_vs_data": 1.0, "fid_vs_teacher": 9.0, "psnr_to_teacher": 1.0},
                   {"fid_vs_data": 2.0, "fid_vs_teacher": 1.0, "psnr_to_teacher": 30.0}, "data").startswith("ahead")


def test_a_folder_that_is_not_a_finished_run_is_refused_naming_compress(tmp_path, capsys):
    code, _, err = run_cli(capsys, "vs-plain", str(tmp_path))
    assert code == 2 and "gankd compress" in err and len(err.strip().splitlines()) == 1
