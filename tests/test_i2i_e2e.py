"""Image-to-image end to end through the CLI: train-teacher --task (pix2pix recipe, U-Net and
ResNet) -> sample -> compress (torch-pruned student, conditional PatchGAN from the teacher's)
-> eval (PSNR/SSIM vs target and teacher, FID with a named extractor, MACs at other sizes) ->
export (ONNX with dynamic spatial size, parity); paired folders; a foreign U-Net brought in
with gankd import; one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from evalkit import private_cache_fixture  # noqa: F401  (fixture)
from testkit import one_line_error, write_images
from testkit import run_cli as run

from gankd.adapter import adapter_for
from gankd.checkpoint import load_generator

pytestmark = pytest.mark.usefixtures("private_cache")
TINY_UNET = ["--set", 'g_options={"base_channels": 4, "depth": 3}', "--set", 'd_options={"base_channels": 4}']
FAST = ["--batch-size", "4", "--no-progress"]


@pytest.fixture
def rgb_folder(tmp_path):
    """40 RGB 32x32 images: test 4, val 4, fit 32."""
    return write_images(tmp_path / "rgb", {"": 40}, size=(32, 32), mode="RGB")


def _teacher(capsys, tmp_path, data, *extra, tag="t") -> Path:
    code, out, err = run(capsys, "train-teacher", "--data", data, "--out", tmp_path / tag, "--steps", 3,
                         "--eval-every", 2, *FAST, *TINY_UNET, *extra)  # fmt: skip
    assert code == 0, err
    return Path(out.strip().splitlines()[-1])


def test_denoise_inpaint_chain(capsys, tmp_path, rgb_folder):
    data = f"folder:{rgb_folder}"
    teacher = _teacher(capsys, tmp_path, data, "--task", "denoise+inpaint", "--noise-sigma", 0.3)
    meta = json.loads((teacher / "config.json").read_text())
    assert meta["family"] == "unet" and meta["task"] == "denoise+inpaint"
    assert meta["task_params"]["noise_sigma"] == 0.3 and meta["data"] == data
    assert (teacher / "discriminator.safetensors").exists() or any(teacher.glob("*disc*"))
    assert json.loads((tmp_path / "t" / "selection.json").read_text())["rule"] == "val-l1"
    assert sorted((tmp_path / "t" / "samples").glob("*.png"))
    code, out, err = run(capsys, "sample", "--model", teacher, "--seeds", "0-3", "--out", tmp_path / "t.png")
    assert code == 0, err
    assert (tmp_path / "t.png").stat().st_size > 0

    code, out, err = run(capsys, "compress", "--teacher", teacher, "--out", tmp_path / "c", "--steps", 3,
                         "--width", 0.5, "--gt", 1, "--eval-every", 2, "--preset", "classic", *FAST)  # fmt: skip
    assert code == 0, err
    student = Path(out.strip().splitlines()[-1])
    smeta = json.loads((student / "config.json").read_text())
    assert smeta["task"] == "denoise+inpaint" and smeta["task_params"]["noise_sigma"] == 0.3
    s, t = adapter_for(load_generator(student)), adapter_for(load_generator(teacher))
    assert s.is_i2i and sum(p.numel() for p in s.parameters()) < sum(p.numel() for p in t.parameters())
    run_cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert run_cfg["selection"]["rule"] == "val-l1" and run_cfg["resolved"]["d_init"] == "teacher"
    assert (tmp_path / "c" / "teacher_vs_student.png").exists()
    lines = [json.loads(x) for x in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert any("train/gt" in x or "gt" in x for x in lines)

    out_json = tmp_path / "eval.json"
    code, out, err = run(capsys, "eval", "--model", student, "--teacher", teacher, "--metrics", "psnr,ssim,fid",
                         "--sizes", "64", "--out", out_json)  # fmt: skip
    assert code == 0, err
    r = json.loads(out_json.read_text())
    assert r["kind"] == "eval-i2i" and r["split"] == "test" and r["num_pairs"] == 4
    assert r["vs_target"]["psnr_db"]["mean"] > 0 and "vs_teacher" in r and "source_vs_target" in r
    assert r["protocol"]["extractor"] and "PSNR gap to teacher" in out
    assert set(r["efficiency"]["model"]["macs"]) == {"32", "64"}
    assert r["efficiency"]["model"]["macs"]["64"] == pytest.approx(4 * r["efficiency"]["model"]["macs"]["32"], 0.01)
    assert r["efficiency"]["mac_ratio"]["32"] > 1
    code, out, err = run(capsys, "report", out_json, "--out", tmp_path / "rep")
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "source (do nothing)" in md and "PSNR→T" in md and (tmp_path / "rep" / "quality_vs_speed.png").exists()
    assert "separately" in one_line_error(capsys, "report", out_json, "pretrained/fmnist-teacher/metrics.json",
                                          "--out", tmp_path / "rep2")  # fmt: skip

    code, out, err = run(capsys, "export", "--model", student, "--format", "onnx")
    assert code == 0, err
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(out.strip().splitlines()[0], providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 64, 64) * 2 - 1  # another size than trained: dynamic spatial axes
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = s.eval()({"src": x}).numpy()
    assert got.shape == (2, 3, 64, 64) and np.abs(got - want).max() < 1e-4


def test_resnet_teacher_and_resume(capsys, tmp_path, rgb_folder):
    data = f"folder:{rgb_folder}"
    extra = ["--task", "sr4", "--g-family", "resnet", "--set", 'g_options={"base_channels": 4, "n_blocks": 2}',
             "--set", 'd_options={"base_channels": 4}']  # fmt: skip
    code, out, err = run(capsys, "train-teacher", "--data", data, "--out", tmp_path / "r", "--steps", 2,
                         *FAST, *extra)  # fmt: skip
    assert code == 0, err
    code, out, err = run(capsys, "train-teacher", "--data", data, "--out", tmp_path / "r", "--steps", 4,
                         "--resume", *FAST)  # fmt: skip
    assert code == 0, err
    meta = json.loads((tmp_path / "r" / "generator" / "config.json").read_text())
    assert meta["family"] == "resnet" and meta["trained_steps"] == 4 and meta["task"] == "sr4"


def test_paired_data_needs_no_task_with_a_teacher_of_another_task(capsys, tmp_path, rgb_folder):
    """A denoise+inpaint teacher on --data paired:SRC,TGT without --task: the pairs are the task (the
    teacher's recorded one used to leak in and be refused)."""
    teacher = _teacher(capsys, tmp_path, f"folder:{rgb_folder}", "--task", "denoise+inpaint")
    src = write_images(tmp_path / "src", {"": 20}, size=(32, 32), mode="RGB", seed=1)
    tgt = write_images(tmp_path / "tgt", {"": 20}, size=(32, 32), mode="RGB", seed=2)
    data = f"paired:{src},{tgt}"
    code, out, err = run(capsys, "compress", "--teacher", teacher, "--data", data, "--out", tmp_path / "c",
                         "--steps", 1, "--width", 0.5, "--eval-every", 0, *FAST)  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "c" / "student" / "config.json").read_text())["task"] == "paired"
    code, out, err = run(capsys, "eval", "--model", teacher, "--data", data, "--metrics", "psnr", "--sizes", 32,
                         "--out", tmp_path / "e.json")  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "e.json").read_text())["task"] == "paired"
    code, out, err = run(capsys, "sample", "--model", teacher, "--data", data, "--seeds", "0-1", "--out",
                         tmp_path / "s.png")  # fmt: skip
    assert code == 0, err


def test_paired_folders(capsys, tmp_path):
    src = write_images(tmp_path / "src", {"": 20}, size=(32, 32), mode="RGB", seed=1)
    tgt = write_images(tmp_path / "tgt", {"": 20}, size=(32, 32), mode="RGB", seed=2)
    data = f"paired:{src},{tgt}"
    teacher = _teacher(capsys, tmp_path, data, "--task", "paired")
    assert json.loads((teacher / "config.json").read_text())["data"] == data
    code, out, err = run(capsys, "compress", "--teacher", teacher, "--out", tmp_path / "c", "--steps", 2,
                         "--width", 0.5, *FAST)  # fmt: skip
    assert code == 0, err


def test_foreign_unet_import_and_compress(capsys, tmp_path, rgb_folder):
    """A user's U-Net (skip concatenations) imported with its class path, then pruned and distilled."""
    from gankd.models.i2i import UNetGenerator

    g = UNetGenerator(in_channels=3, image_channels=3, base_channels=8, depth=3, resolution=32)
    torch.save({"model": g.state_dict()}, tmp_path / "unet.pt")
    code, out, err = run(capsys, "import", "--class", "gankd.models.i2i:UNetGenerator", "--weights",
                         tmp_path / "unet.pt", "--kwargs", '{"in_channels": 3, "base_channels": 8, "depth": 3, '
                         '"resolution": 32}', "--input-image", "3,32,32", "--out", tmp_path / "imported")  # fmt: skip
    assert code == 0, err
    code, out, err = run(capsys, "compress", "--teacher", tmp_path / "imported", "--data", f"folder:{rgb_folder}",
                         "--task", "denoise", "--out", tmp_path / "c", "--steps", 2, "--width", 0.5, *FAST)  # fmt: skip
    assert code == 0, err
    student = adapter_for(load_generator(Path(out.strip().splitlines()[-1])))
    assert student.is_i2i and student({"src": torch.zeros(1, 3, 64, 64)}).shape == (1, 3, 64, 64)


def test_refusals(capsys, tmp_path, rgb_folder):
    data = f"folder:{rgb_folder}"
    assert "--task" in one_line_error(capsys, "train-teacher", "--data", data, "--task", "blurry", "--out",
                                      tmp_path / "x")  # fmt: skip
    assert "--diffaug" in one_line_error(capsys, "train-teacher", "--data", data, "--task", "denoise",
                                         "--diffaug", "translation", "--out", tmp_path / "y")  # fmt: skip
    assert "--gt" in one_line_error(capsys, "compress", "--teacher", "fmnist-teacher", "--gt", "1", "--out",
                                    tmp_path / "z", "--steps", 1)  # fmt: skip
    teacher = _teacher(capsys, tmp_path, data, "--task", "denoise")
    assert "--data" in one_line_error(capsys, "compress", "--teacher", teacher, "--data", "none", "--out",
                                      tmp_path / "w", "--steps", 1)  # fmt: skip


def test_optional_perceptual_loss_fits_the_data_or_says_why(capsys, tmp_path, rgb_folder):
    _teacher(capsys, tmp_path, f"folder:{rgb_folder}", "--task", "deblur", "--perc", "1", tag="p")
    cfg = json.loads((tmp_path / "p" / "train_config.json").read_text())
    lines = [json.loads(x) for x in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()]
    if cfg["perceptual"] == 0:  # no LPIPS trunk on this machine: off, and the run says why
        assert "perceptual" in cfg["perceptual_off"] and not any("perceptual" in x for x in lines)
    else:
        assert any("perceptual" in x for x in lines)


def test_foreign_restorer_with_unit_ranges(capsys, tmp_path, rgb_folder, monkeypatch):
    """A model that takes and returns [0, 1] images: gankd maps its [-1, 1] sources in and the output back."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from foreign_models import UnitRangeRestorer

    torch.save(UnitRangeRestorer().state_dict(), tmp_path / "r.pt")
    base = ["import", "--class", "foreign_models:UnitRangeRestorer", "--weights", tmp_path / "r.pt",
            "--input-image", "3,32,32", "--output-range", "0,1"]  # fmt: skip
    assert "--input-range" in one_line_error(capsys, *base, "--input-range", "1,0", "--out", tmp_path / "bad")
    code, out, err = run(capsys, *base, "--input-range", "0,1", "--out", tmp_path / "imp")
    assert code == 0, err
    gen = adapter_for(load_generator(tmp_path / "imp"))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        want = UnitRangeRestorer()
        want.load_state_dict(torch.load(tmp_path / "r.pt", weights_only=True))
        assert torch.allclose(gen({"src": x}), want((x + 1) / 2) * 2 - 1, atol=1e-5)
    code, out, err = run(capsys, "compress", "--teacher", tmp_path / "imp", "--data", f"folder:{rgb_folder}",
                         "--task", "denoise", "--out", tmp_path / "c", "--steps", 2, "--width", 0.5, *FAST)  # fmt: skip
    assert code == 0, err
    code, out, err = run(capsys, "export", "--model", Path(out.strip().splitlines()[-1]), "--format", "onnx")
    assert code == 0, err


def test_an_imported_teachers_recorded_spec_is_what_the_speed_pass_times(capsys, tmp_path, rgb_folder, monkeypatch):
    """evaluate's speed pass times the loaded adapters themselves: an imported image-to-image teacher keeps its
    recorded IOSpec ([0, 1] images here) instead of a spec guessed from its bare module."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from foreign_models import UnitRangeRestorer

    from gankd.evaluate import Pairs, Quality, Speed, evaluate
    from gankd.metrics import efficiency

    torch.save(UnitRangeRestorer().state_dict(), tmp_path / "r.pt")
    code, out, err = run(capsys, "import", "--class", "foreign_models:UnitRangeRestorer", "--weights",
                         tmp_path / "r.pt", "--input-image", "3,32,32", "--output-range", "0,1", "--input-range",
                         "0,1", "--out", tmp_path / "imp")  # fmt: skip
    assert code == 0, err
    seen = {}

    def fake_speed(models, *a, **kw):
        seen.update(models)
        return {}

    monkeypatch.setattr(efficiency, "interleaved_speed", fake_speed)
    evaluate(tmp_path / "imp", tmp_path / "imp", quality=Quality(metrics=("psnr",), num_samples=4),
             speed=Speed(rounds=1), pairs=Pairs(data=f"folder:{rgb_folder}", task="denoise", sizes=()))  # fmt: skip
    assert set(seen) == {"teacher", "model"}
    assert seen["teacher"].spec.output_range == (0.0, 1.0) and seen["teacher"].spec.input_range == (0.0, 1.0)


def test_nearest_conv_unet_student_quantizes_every_conv(capsys, tmp_path, rgb_folder):
    from gankd.export import export_generator

    teacher = _teacher(capsys, tmp_path, f"folder:{rgb_folder}", "--task", "denoise")
    code, out, err = run(capsys, "compress", "--teacher", teacher, "--out", tmp_path / "c", "--steps", 2,
                         "--width", 0.5, "--student-upsample", "nearest-conv", *FAST)  # fmt: skip
    assert code == 0, err
    student = Path(out.strip().splitlines()[-1])
    s, t = load_generator(student), load_generator(teacher)
    assert s.model.cfg.upsample == "nearest-conv" and s.model.cfg.width == 0.5
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in s.model.modules())
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in t.model.modules())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert s.eval()({"src": x}).shape == (2, 3, 32, 32)
    run_cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert "nearest-conv" in json.dumps(run_cfg)
    r = export_generator(student, out=tmp_path / "s8.onnx", precision="int8", max_fid_rise=float("inf"),
                         gate_samples=0)  # fmt: skip
    ops = r["reduced"]["ops"]["ops"]
    n_conv = sum(isinstance(m, torch.nn.Conv2d) for m in s.model.modules())
    assert "ConvTranspose" not in ops and ops["Conv"] == {"int8": n_conv, "fp16": 0, "fp32": 0}
    # a family without an upsample choice, and a U-Net student sized by MACs, are refused in one line naming flags
    err = one_line_error(capsys, "compress", "--teacher", teacher, "--out", tmp_path / "m", "--steps", 1,
                         "--target-macs", 0.2, "--student-upsample", "nearest-conv", *FAST)  # fmt: skip
    assert "--target-macs" in err and "--width" in err
    err = one_line_error(capsys, "compress", "--teacher", teacher, "--out", tmp_path / "l", "--steps", 1,
                         "--student-layout", "latency", *FAST)  # fmt: skip
    assert "drop --student-layout" in err
