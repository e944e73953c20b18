"""gankd export --precision fp16|int8: which ops run how, the quality gate, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from test_export import tiny
from testkit import one_line_error, write_images

from gankd.checkpoint import save_model
from gankd.cli import main
from gankd.export import export_generator, load_exported
from gankd.precision import op_report


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("prec") / "gen", tiny(num_classes=0), "generator")


def test_int8_rewrites_conv_transpose_so_every_layer_quantizes(folder, tmp_path):
    r = export_generator(folder, precision="int8", gate_samples=0, convtranspose="rewrite")
    path = folder / "export" / "generator.int8.onnx"
    assert r["path"] == str(path) and path.is_file() and r["precision"] == "int8"
    assert not (folder / "export" / "generator.int8.onnx.data").exists()  # one self-contained file
    ops = r["reduced"]["ops"]
    n_up = r["reduced"]["ops"]["rewritten"]["ConvTranspose"]
    assert n_up == 3 and "ConvTranspose" not in ops["ops"] and not ops["why_fp32"]  # tiny(): 3 upsampling stages
    assert ops["ops"]["Conv"] == {"int8": n_up + 1, "fp16": 0, "fp32": 0}  # + the image layer
    assert r["reduced"]["latency_b1_ms"]["fp32_timed"] == "the unmodified fp32 export"  # not the slower rewrite
    # kept as they are on request: ConvTranspose stays fp32, with the reason and the flag
    k = export_generator(folder, tmp_path / "keep.onnx", precision="int8", gate_samples=0, convtranspose="keep")
    k = k["reduced"]["ops"]
    assert k["ops"]["ConvTranspose"] == {"int8": 0, "fp16": 0, "fp32": 3}
    assert k["rewritten"]["ConvTranspose"] == 0 and k["rewritten"]["qualifying"] == 3
    why = k["why_fp32"]["ConvTranspose"]
    assert "int8 ConvTranspose" in why and "--convtranspose" in why
    # auto: both forms quantized and timed here, the faster one written (and what it chose recorded)
    a = export_generator(folder, tmp_path / "auto.onnx", precision="int8", gate_samples=0)["reduced"]["ops"]
    ms = a["rewritten"]["timed_b1_ms"]
    assert a["rewritten"]["mode"] == "auto" and set(ms) == {"rewrite", "keep"} and min(ms.values()) > 0
    assert a["rewritten"]["ConvTranspose"] == (3 if ms["rewrite"] <= ms["keep"] else 0)
    assert ("ConvTranspose" in a["ops"]) == (ms["rewrite"] > ms["keep"])
    assert r["reduced"]["quality_gate"] is None and r["reduced"]["speedup_b1"] > 0
    assert json.loads(path.with_name(path.name + ".json").read_text())["precision"] == "int8"
    # the file runs with a dynamic batch, close to (not equal to) fp32
    z = torch.randn(5, 16)
    out = load_exported(path)(z)
    assert out.shape == (5, 1, 32, 32) and 0 < r["max_abs_diff"] < 0.5


def test_fp16_gate_passes_and_records_fid_psnr(folder, tmp_path):
    r = export_generator(folder, out=tmp_path / "g16.onnx", precision="fp16", gate_samples=64)
    g = r["reduced"]["quality_gate"]
    assert g["passed"] and g["num_samples"] == 64 and g["fid_fp32"] >= 0 and g["psnr_to_fp32_db"] > 40
    assert g["reference"].startswith("the fp32 model's samples")  # no data recorded by this generator
    assert all(c["fp16"] > 0 for c in r["reduced"]["ops"]["ops"].values())
    assert op_report(tmp_path / "g16.onnx")["bytes"] < 0.7 * op_report(folder / "export" / "generator.int8.onnx")[
        "bytes"] * 4  # fmt: skip


def test_a_failed_gate_writes_nothing_and_says_which_flag(folder, tmp_path, capsys):
    out = tmp_path / "x" / "g.onnx"
    err = one_line_error(capsys, "export", "--model", folder, "--out", out, "--precision", "int8",
                         "--max-fid-rise", "-1", "--gate-samples", "32")  # fmt: skip
    assert "--max-fid-rise" in err and "nothing was written" in err
    assert not (tmp_path / "x").exists()
    err = one_line_error(capsys, "export", "--model", folder, "--format", "torchscript", "--precision", "fp16")
    assert "--format torchscript" in err


def test_auto_writes_the_other_form_when_the_faster_fails_the_gate(folder, tmp_path, monkeypatch, capsys):
    import gankd.export
    import gankd.precision

    monkeypatch.setattr(gankd.export, "_time_int8_forms", lambda *a: {"rewrite": 1.0, "keep": 2.0})
    calls = []

    def gate(generator, run, folder, max_fid_rise, num_samples=2000):  # the rewritten form fails, the kept passes
        calls.append(1)
        rise = 0.5 if len(calls) == 1 else 0.0
        return {"fid_fp32": 1.0, "fid_reduced": 1.0 + rise, "fid_rise": rise, "passed": rise <= max_fid_rise,
                "max_fid_rise": max_fid_rise, "psnr_to_fp32_db": 40.0, "ssim_to_fp32": 0.99}

    monkeypatch.setattr(gankd.precision, "quality_gate", gate)
    r = export_generator(folder, tmp_path / "g.onnx", precision="int8", gate_samples=8)["reduced"]
    rw = r["ops"]["rewritten"]
    assert len(calls) == 2 and rw["ConvTranspose"] == 0 and r["quality_gate"]["passed"]
    assert [(f["ConvTranspose"], f["quality_gate"]["fid_reduced"], f["quality_gate"]["passed"])
            for f in rw["refused_by_gate"]] == [(3, 1.5, False)]  # fmt: skip
    assert r["ops"]["ops"]["ConvTranspose"] == {"int8": 0, "fp16": 0, "fp32": 3}  # the written file: the kept form
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx", "g.onnx.json"]
    calls.clear()
    assert main(["export", "--model", str(folder), "--out", str(tmp_path / "c.onnx"), "--precision", "int8",
                 "--gate-samples", "8"]) == 0  # fmt: skip
    assert "the rewritten form failed the quality gate (FID 1 -> 1.5)" in capsys.readouterr().out


@pytest.fixture(scope="module")
def i2i_folder(tmp_path_factory):
    """A tiny denoising U-Net trained 3 steps on 40 RGB 32 px images (test 4, val 4): it records its data."""
    root = tmp_path_factory.mktemp("prec-i2i")
    data = write_images(root / "rgb", {"": 40}, size=(32, 32), mode="RGB")
    code = main(["train-teacher", "--data", f"folder:{data}", "--task", "denoise", "--out", str(root / "t"),
                 "--steps", "3", "--eval-every", "2", "--batch-size", "4", "--no-progress", "--set",
                 'g_options={"base_channels": 4, "depth": 3}', "--set", 'd_options={"base_channels": 4}'])  # fmt: skip
    assert code == 0
    return root / "t" / "generator"


def test_image_to_image_int8_calibrates_on_val_sources_and_gates_on_test_pairs(i2i_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("GANKD_CACHE", str(tmp_path / "cache"))
    r = export_generator(i2i_folder, out=tmp_path / "g8.onnx", precision="int8", max_fid_rise=float("inf"))
    red = r["reduced"]
    assert red["calibration"].startswith("4 val source images of folder:")  # the val split, not stand-ins
    g = red["quality_gate"]
    assert g["num_samples"] == 4 and "test pairs" in g["reference"] and g["passed"]
    assert g["psnr_to_fp32_db"] > 20 and set(g["psnr_to_target_db"]) == {"fp32", "reduced"}
    assert red["ops"]["ops"]["Conv"]["int8"] >= 1
    x = torch.rand(2, 3, 48, 40) * 2 - 1  # fully convolutional: other sizes run too
    assert load_exported(tmp_path / "g8.onnx")(x).shape == (2, 3, 48, 40)


def test_image_to_image_export_by_shipped_name_reads_its_folder(i2i_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("GANKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANKD_PRETRAINED", str(i2i_folder.parent))  # the folder as if shipped, by its name
    r = export_generator(i2i_folder.name, out=tmp_path / "n16.onnx", precision="fp16", gate_samples=4)
    gate = r["reduced"]["quality_gate"]
    assert gate["num_samples"] == 4 and "test pairs" in gate["reference"]


def test_image_to_image_failed_gate_writes_nothing(i2i_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GANKD_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "y" / "g.onnx"
    err = one_line_error(capsys, "export", "--model", i2i_folder, "--out", out, "--precision", "fp16",
                         "--max-fid-rise", "-1")  # fmt: skip
    assert "--max-fid-rise" in err and "nothing was written" in err and not (tmp_path / "y").exists()


def test_image_to_image_without_data_names_the_flag_that_skips_the_gate(tmp_path, capsys):
    from gankd.models.i2i import UNetConfig, UNetGenerator

    torch.manual_seed(0)
    folder = save_model(tmp_path / "u", UNetGenerator(UNetConfig(resolution=32, base_channels=4, depth=3)).eval(),
                        "generator")  # fmt: skip
    err = one_line_error(capsys, "export", "--model", folder, "--out", tmp_path / "x.onnx", "--precision", "fp16")
    assert "--gate-samples 0" in err and not (tmp_path / "x.onnx").exists()
    r = export_generator(folder, out=tmp_path / "y.onnx", precision="int8", gate_samples=0)
    assert r["reduced"]["quality_gate"] is None and "stand-in" in r["reduced"]["calibration"]
