"""Export to ONNX (dynamo, external data, dynamic batch) and TorchScript, parity with eager,
and ONNX Runtime speed on the exported file."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from gankd.checkpoint import save_model
from gankd.export import example_inputs, export_generator, load_exported
from gankd.metrics import efficiency as ef
from gankd.models.dcgan import DCGANGenerator, GeneratorConfig


def tiny(num_classes: int = 10, seed: int = 0) -> DCGANGenerator:
    torch.manual_seed(seed)
    g = DCGANGenerator(GeneratorConfig(base_channels=4, z_dim=16, num_classes=num_classes))
    g.train()
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        g.to_img.weight.normal_(0.0, 0.5)
        for _ in range(2):
            g(torch.randn(8, 16), torch.arange(8) % num_classes if num_classes else None)
    return g.eval()


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory):
    """One ONNX export per module: the dynamo exporter takes ~10 s on 2 cores."""
    folder = save_model(tmp_path_factory.mktemp("export") / "gen", tiny(), "generator")
    return folder, export_generator(folder, format="onnx")


def test_onnx_export_parity_and_dynamic_batch(onnx_export):
    folder, r = onnx_export
    path = folder / "export" / "generator.onnx"
    assert r["path"] == str(path) and path.is_file()
    assert (folder / "export" / "generator.onnx.data").is_file()  # external weights
    assert r["max_abs_diff"] <= 1e-4 and r["parity_batches"] == [1, 3, 8]
    assert (
        json.loads((folder / "export" / "generator.onnx.json").read_text())["max_abs_diff"]
        == r["max_abs_diff"]
    )
    assert not list((folder / "export").glob(".export-*"))  # temp folder cleaned up
    run = load_exported(path)
    inputs = {i.name: i for i in run.session.get_inputs()}
    assert set(inputs) == {"z", "y"} and inputs["y"].type == "tensor(int64)"
    assert isinstance(inputs["z"].shape[0], str)  # symbolic batch dimension
    g = tiny()
    for b in (1, 5):
        z, y = example_inputs(g, b, first_seed=42)
        with torch.no_grad():
            assert torch.allclose(run(z, y), g(z, y), atol=1e-4)


def test_onnx_runtime_speed_on_exported_file(onnx_export):
    folder, r = onnx_export
    s = ef.measure_onnx(r["path"], tiny(), big_batch=8, repeats=3, min_time_s=0.0)
    assert s["latency"]["median_ms"] > 0 and s["throughput"]["images_per_s"] > 0
    assert s["providers"] == ["CPUExecutionProvider"]


@pytest.mark.parametrize("num_classes", [10, 0])
def test_torchscript_export_parity(tmp_path, num_classes):
    g = tiny(num_classes)
    r = export_generator(g, tmp_path / "g.pt", format="torchscript")
    assert r["max_abs_diff"] <= 1e-4 and (tmp_path / "g.pt").is_file()
    assert ("y" in r["inputs"]) == (num_classes > 0)
    run = load_exported(tmp_path / "g.pt")
    z, *y = example_inputs(g, 4, first_seed=7)
    with torch.no_grad():
        assert torch.allclose(run(z, *y), g(z, *y) if y else g(z), atol=1e-5)


def test_parity_failure_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="tolerance"):
        export_generator(tiny(), tmp_path / "g.pt", format="torchscript", tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="onnx, torchscript"):
        export_generator(tiny(), tmp_path / "g.x", format="tflite")
    with pytest.raises(ValueError, match="out=PATH"):
        export_generator(tiny(), None, format="torchscript")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_generator(tmp_path / "missing", format="torchscript")


def test_an_exporter_failure_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import gankd.export
    from gankd import cli

    folder = save_model(tmp_path / "gen", tiny(), "generator")

    def dump(*a, **k):
        raise RuntimeError("Failed to export the model with torch.export.\n<pages of graph>\nGraphModule(...)")

    fmt = gankd.export.FORMATS.get("torchscript")  # the registered writer fails
    monkeypatch.setitem(gankd.export.FORMATS._items, "torchscript", dataclasses.replace(fmt, write=dump))
    before = sorted(p.name for p in folder.rglob("*"))
    assert cli.main(["export", "--model", str(folder), "--format", "torchscript"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"gankd export: error: exporting {folder} to torchscript failed (RuntimeError: Failed to "
                           "export the model with torch.export.); nothing was written; try --format onnx")  # fmt: skip
    assert sorted(p.name for p in folder.rglob("*")) == before  # not even an empty export/ folder


def test_plain_batchnorms_are_folded_into_the_export(tmp_path):
    import onnx

    torch.manual_seed(0)
    g = DCGANGenerator(GeneratorConfig(base_channels=4, z_dim=16, layout="latency"))
    g(torch.randn(8, 16), torch.arange(8))
    g.eval()
    r = export_generator(g, tmp_path / "g.onnx")
    ops = [n.op_type for n in onnx.load(str(tmp_path / "g.onnx")).graph.node]
    assert r["max_abs_diff"] <= 1e-4 and "BatchNormalization" not in ops  # checked against the unfolded model
    r8 = export_generator(g, tmp_path / "g8.onnx", precision="int8", gate_samples=0, max_fid_rise=float("inf"),
                          convtranspose="rewrite")  # fmt: skip
    assert r8["reduced"]["ops"]["rewritten"]["norms_folded"] == 3
    assert "BatchNormalization" not in [n.op_type for n in onnx.load(str(tmp_path / "g8.onnx")).graph.node]
