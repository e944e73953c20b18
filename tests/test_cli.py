"""The CLI end to end: `gankd sample`, argument errors, exit codes, one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from gankd import cli
from gankd.checkpoint import load_generator
from gankd.sampling import png_bytes, sample_grid

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_writes_the_api_grid(gen_dir, tmp_path, capsys):
    out_png = tmp_path / "out" / "grid.png"
    code, out, err = run_cli(capsys, "sample", "--model", gen_dir, "--seeds", "0-9", "--nrow", "5",
                             "--out", out_png)  # fmt: skip
    assert code == 0 and err == ""
    assert out.strip() == str(out_png)
    expect = png_bytes(sample_grid(load_generator(gen_dir), list(range(10)), nrow=5))
    assert out_png.read_bytes() == expect
    assert Image.open(out_png).size == (5 * 34 + 2, 2 * 34 + 2)


@pytest.mark.parametrize("classes, rows", [("0,3,9", 3), ("all", 10)])
def test_sample_one_class_per_row(gen_dir, tmp_path, capsys, classes, rows):
    code, _, err = run_cli(capsys, "sample", "--model", gen_dir, "--seeds", "0-3", "--nrow", "4",
                           "--classes", classes, "--out", tmp_path / "c.png")  # fmt: skip
    assert code == 0, err
    assert Image.open(tmp_path / "c.png").size == (4 * 34 + 2, rows * 34 + 2)


def test_sample_via_python_m(gen_dir, tmp_path):
    out_png = tmp_path / "grid.png"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "gankd", "sample", "--model", str(gen_dir), "--seeds", "0-7",
         "--out", str(out_png)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out_png)
    # same seeds, same bytes, across processes
    assert out_png.read_bytes() == png_bytes(sample_grid(load_generator(gen_dir), list(range(8))))


def assert_one_line_error(err: str, *needles: str):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("gankd ")
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--model", "{missing}"], ["does not exist"]),
        (["--model", "{gen}", "--seeds", "9-1"], ["--seeds"]),
        (["--model", "{gen}", "--classes", "0,x"], ["--classes"]),
        (["--model", "{gen}", "--classes", "12"], ["class 12 out of range"]),
        (["--model", "{gen}", "--nrow", "0"], ["--nrow"]),
        (["--model", "{bad}"], ["not a valid safetensors file"]),
    ],
)
def test_sample_user_errors_exit_2_with_one_line(gen_dir, tmp_path, capsys, args, needles):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((gen_dir / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"\x80\x04junk")
    paths = {"missing": tmp_path / "no-such-model", "gen": gen_dir, "bad": bad}
    args = [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]
    code, out, err = run_cli(capsys, "sample", *args, "--out", tmp_path / "x.png")
    assert code == 2 and out == ""
    assert_one_line_error(err, *needles)
    assert not (tmp_path / "x.png").exists()


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["sample", "--seeds", "0-3"])  # --model and --out are required
    assert e.value.code == 2
    assert "--model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["train-classifier", "--family", "alexnet", "--out", "x"])
    assert e.value.code == 2 and "resnet" in capsys.readouterr().err


def test_train_commands_report_bad_overrides_in_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train-teacher", "--out", tmp_path / "r", "--set", "steps=abc",
                           "--no-progress")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "steps")
    code, _, err = run_cli(capsys, "train-classifier", "--out", tmp_path / "c", "--set", "model.widht=2")
    assert code == 2
    assert_one_line_error(err, "widht", "width")
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


def test_config_file_then_set(tmp_path, capsys, monkeypatch):
    import gankd.train

    seen = {}

    def fake_train(cfg, out, resume=False, progress=False):
        seen["cfg"] = cfg
        return Path(out)

    monkeypatch.setattr(gankd.train, "train_gan", fake_train)
    (tmp_path / "c.json").write_text('{"steps": 5, "generator": {"base_channels": 8}, "seed": 3}')
    code, _, err = run_cli(capsys, "train-teacher", "--out", tmp_path / "r", "--config", tmp_path / "c.json",
                           "--seed", "4", "--set", "generator.width=0.5")  # fmt: skip
    assert code == 0, err
    cfg = seen["cfg"]
    # file < direct flags < --set; untouched nested defaults survive the file's partial section
    assert cfg.steps == 5 and cfg.seed == 4 and cfg.generator.base_channels == 8
    assert cfg.generator.width == 0.5 and cfg.generator.z_dim == 128
    torch.testing.assert_close(cfg.lr_g, 2e-4)


# ---------------------------------------------------------------- train-classifier --teacher (issue 15)
def _teacher_folder(folder: Path, num_classes: int) -> Path:
    from gankd.checkpoint import save_model
    from gankd.models import ClassifierConfig
    from gankd.registry import CLASSIFIERS

    torch.manual_seed(3)
    cfg = ClassifierConfig(num_classes=num_classes, base_channels=4, feature_dim=8)
    return save_model(folder, CLASSIFIERS.get("vgg")(cfg), "classifier")


TINY_STUDENT = ["--family", "vgg", "--epochs", "1", "--batch-size", "8", "--no-progress",
                "--set", "model.num_classes=2", "--set", "model.base_channels=8", "--set", "model.feature_dim=8",
                "--set", "threads=1"]  # fmt: skip


def test_train_classifier_with_a_teacher_two_steps_end_to_end(image_folder, tmp_path, capsys):
    import json

    from gankd.checkpoint import file_sha256, load_classifier

    teacher = _teacher_folder(tmp_path / "teacher", 2)
    out = tmp_path / "student"
    code, stdout, err = run_cli(capsys, "train-classifier", "--data", f"folder:{image_folder}", "--teacher", teacher,
                                "--kd-temperature", "4", "--kd-alpha", "0.9", "--width", "0.5", "--out", out,
                                *TINY_STUDENT)  # fmt: skip
    assert code == 0, err
    res = json.loads(stdout)
    assert (res["train_steps"], res["split"]) == (2, "train")  # 16 images, batch 8, 1 epoch
    m = load_classifier(out)
    assert m.cfg.width == 0.5 and m.feature_channels == [4, 8, 16]
    assert m(torch.zeros(1, 1, 32, 32)).shape == (1, 2)
    meta = json.loads((out / "config.json").read_text())
    assert meta["train"]["teacher"] == str(teacher) and meta["train"]["kd_temperature"] == 4.0
    assert meta["train"]["kd_alpha"] == 0.9
    assert meta["teacher"]["sha256"] == file_sha256(teacher / "model.safetensors")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "loss" in x]
    assert train_lines[-1]["step"] == 2 and train_lines[-1]["kd"] > 0 and train_lines[-1]["ce"] > 0


def test_train_classifier_refuses_a_teacher_with_another_class_count(image_folder, tmp_path, capsys):
    teacher = _teacher_folder(tmp_path / "teacher", 3)
    out = tmp_path / "student"
    code, stdout, err = run_cli(capsys, "train-classifier", "--data", f"folder:{image_folder}", "--teacher", teacher,
                                "--out", out, *TINY_STUDENT)  # fmt: skip
    assert code == 2 and stdout == ""
    assert_one_line_error(err, "predicts 3 classes", "the data has 2")
    assert not out.exists()


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--kd-temperature", "2"], ["--kd-temperature", "need --teacher"]),
        (["--teacher", "{gen}"], ["not a classifier"]),
        (["--teacher", "{missing}"], ["does not exist"]),
        (["--teacher", "{teacher}", "--kd-alpha", "1.5"], ["--kd-alpha must be in [0, 1]"]),
        (["--teacher", "{teacher}", "--kd-temperature", "0"], ["--kd-temperature must be > 0"]),
    ],
)
def test_train_classifier_kd_user_errors_in_one_line(image_folder, gen_dir, tmp_path, capsys, args, needles):
    paths = {"gen": gen_dir, "missing": tmp_path / "nope", "teacher": _teacher_folder(tmp_path / "t", 2)}
    args = [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]
    code, _, err = run_cli(capsys, "train-classifier", "--data", f"folder:{image_folder}", "--out",
                           tmp_path / "s", *TINY_STUDENT, *args)  # fmt: skip
    assert code == 2
    assert_one_line_error(err, *needles)


def test_compress_presets_carry_the_measured_learning_rate_and_flags_win(tmp_path, capsys, monkeypatch):
    import gankd.distill

    seen = []
    monkeypatch.setattr(gankd.distill, "compress", lambda cfg, out, resume=False, progress=True: seen.append(cfg))
    for extra in ([], ["--lr-g", "3e-4", "--steps", "7", "--d-freeze", "1", "--adv-warmup", "0.25", "--perc", "0.5"]):
        code, _, err = run_cli(capsys, "compress", "--out", tmp_path / "r", "--preset", "full", *extra)
        assert code == 0, err
    preset, flagged = seen
    assert preset.lr_g == gankd.distill.PRESET_LR_G and preset.steps == gankd.distill.PRESETS["full"]["steps"]
    assert (preset.lr_schedule, preset.perceptual, preset.kd, flagged.perceptual) == ("cosine", 0.0, 0.0, 0.5)
    assert flagged.lr_g == 3e-4 and flagged.steps == 7  # a flag overrides its preset value
    assert (preset.d_freeze, preset.adv_warmup, flagged.d_freeze, flagged.adv_warmup) == (0, 0.0, 1, 0.25)
    run_cli(capsys, "compress", "--out", tmp_path / "r", "--preset", "classic")
    assert seen[-1].lr_g == 2e-4  # the classic recipe: the rate every committed matrix result used
    assert (seen[-1].perceptual, seen[-1].kd, seen[-1].batch_size, seen[-1].adv_start) == (1.0, 0.1, 64, 0.0)
    run_cli(capsys, "compress", "--out", tmp_path / "r", "--preset", "quick")
    assert (seen[-1].max_minutes, seen[-1].perceptual, seen[-1].kd) == (6.0, 0.0, 0.0)
    assert (seen[-1].batch_size, seen[-1].select) == (64, "perceptual-fid")  # built on classic, not the defaults
    run_cli(capsys, "compress", "--out", tmp_path / "r", "--preset", "data")
    assert (seen[-1].real, seen[-1].adv_start, seen[-1].d_width, seen[-1].adv) == ("data", 0.0, 0.25, 0.05)
    run_cli(capsys, "compress", "--out", tmp_path / "r", "--preset", "plain")
    p = seen[-1]
    assert (p.batch_size, p.lr_g, p.lr_schedule, p.adv, p.feat, p.perceptual, p.kd, p.ema_decay, p.select) == (
        32, 2e-4, "constant", 0.0, 0.0, 0.0, 0.0, 0.0, "last")
