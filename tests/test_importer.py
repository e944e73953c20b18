"""gankd import: a user's nn.Module class + checkpoint -> a gankd folder, and the refusals."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from foreign_models import ResNetGenerator, TutorialDCGAN, UNetGenerator, trained_like
from safetensors.torch import save_file

from gankd.cli import main
from gankd.importer import load_module_generator, select_state, strip_prefixes

SEEDS = list(range(6))


def _write(kind: str, model: torch.nn.Module, path: Path) -> Path:
    state = model.state_dict()
    if kind == "tar":  # PyTorch DCGAN tutorial style
        opt = torch.optim.Adam(model.parameters())
        torch.save({"netG_state_dict": state, "optimizerG_state_dict": opt.state_dict(), "epoch": 3}, path)
    elif kind == "ddp":  # DataParallel / DDP keys
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


STYLES = {
    # name: (class path, kwargs, model factory, checkpoint kind, extra flags)
    "tutorial": ("foreign_models:TutorialDCGAN", {"nz": 16, "ngf": 8, "nc": 3},
                 lambda: TutorialDCGAN(16, 8, 3), "tar", []),
    "resnet-cond": ("foreign_models.ResNetGenerator", {"num_classes": 5},
                    lambda: ResNetGenerator(num_classes=5), "ddp", ["--num-classes", "5"]),
    "unet": ("foreign_models:UNetGenerator", {}, lambda: UNetGenerator(), "safetensors",
             ["--output-range", "0,1"]),
}  # fmt: skip


def _import(tmp_path, name, capsys):
    cls, kwargs, make, kind, flags = STYLES[name]
    torch.manual_seed(1)
    g = trained_like(make())
    ext = {"tar": "tar", "ddp": "pth", "safetensors": "safetensors"}[kind]
    weights = _write(kind, g, tmp_path / f"ckpt.{ext}")
    out = tmp_path / "teacher"
    rc = main(["import", "--class", cls, "--kwargs", json.dumps(kwargs), "--weights", str(weights),
               "--out", str(out), *flags])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    return g, out


@pytest.mark.parametrize("name", sorted(STYLES))
def test_import_round_trip(tmp_path, name, capsys):
    g, out = _import(tmp_path, name, capsys)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == str(out) and "params" in printed[1] and "latent" in printed[1]
    meta = json.loads((out / "config.json").read_text())
    assert meta["kind"] == "generator" and meta["family"] == "module"
    assert meta["class"] == STYLES[name][0] and meta["config"]["class"] == meta["class"]
    assert len(meta["source"]["sha256"]) == 64
    a = load_module_generator(out)
    # latent auto-detected; labels and output range as given
    assert a.latent_shape == {"tutorial": (16, 1, 1), "resnet-cond": (16,), "unet": (16,)}[name]
    assert a.num_classes == (5 if name == "resnet-cond" else 0)
    assert isinstance(a.spec.features, list) and a.spec.features
    inputs = a.seeded_inputs(SEEDS)
    with torch.no_grad():
        ref = g(*[inputs[n] for n in a.input_names])
        img, feats = a(inputs, return_features=True)
        positional = a(*[inputs[n] for n in a.input_names])  # as the user calls their own module: G(z)
    assert torch.equal(positional, img)
    if name == "unet":
        assert a.spec.output_range == (0.0, 1.0)
        ref = ref * 2 - 1
    assert torch.equal(img, ref)
    assert img.min() >= -1 and img.max() <= 1
    assert len(feats) == len(a.spec.features) and all(f.dim() == 4 for f in feats)
    if name == "tutorial":
        assert meta["source"]["state_key"] == "netG_state_dict"
    if name == "resnet-cond":
        assert meta["source"]["stripped_prefixes"] == ["module."]


def test_explicit_latent_taps_and_reimport(tmp_path, capsys):
    g = trained_like(TutorialDCGAN(16, 8, 3))
    w = _write("tar", g, tmp_path / "c.pt")
    out = tmp_path / "m"
    args = ["import", "--class", "foreign_models:TutorialDCGAN", "--kwargs", '{"nz": 16, "ngf": 8, "nc": 3}',
            "--weights", str(w), "--state-key", "netG_state_dict", "--latent", "16,1,1",
            "--feat-layers", "main.2,main.5", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(args) == 2  # an existing model folder is kept...
    err = capsys.readouterr().err
    assert err.strip() == (f"gankd import: error: --out {out} already holds a model (config.json); pass --force to "
                           "replace it, or choose another --out")  # fmt: skip
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (out / "export").mkdir()  # ...and replaced as a whole with --force (no files of the old model carried over)
    assert main([*args, "--force"]) == 0 and not (out / "export").exists()
    a = load_module_generator(out)
    assert a.spec.features == ["main.2", "main.5"] and a.feature_channels() == [32, 16]
    assert a.output_shape() == (3, 32, 32)


def test_state_selection_units():
    g, d = TutorialDCGAN(16, 8, 3).state_dict(), {"conv.weight": torch.zeros(1)}
    own = set(g)
    assert select_state({"netG": g, "netD": d}, None, own)[1] == "netG"  # the one matching the model
    assert select_state({"g": g, "g_ema": g, "d": d}, None, own)[1] == "g_ema"  # EMA weights first
    with pytest.raises(ValueError, match="--state-key"):
        select_state({"a": d, "b": {"x": torch.zeros(2)}}, None, own)
    state, stripped = strip_prefixes({f"module._orig_mod.{k}": v for k, v in g.items()}, own)
    assert set(state) == own and stripped == ["module.", "_orig_mod."]


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_refusals_are_one_line(tmp_path, capsys):
    g = trained_like(TutorialDCGAN(16, 8, 3))
    good = _write("tar", g, tmp_path / "good.tar")
    base = ["import", "--out", str(tmp_path / "o")]
    kw = ["--kwargs", '{"nz": 16, "ngf": 8, "nc": 3}']
    tut = ["--class", "foreign_models:TutorialDCGAN"]
    err = _one_line_error(capsys, base + ["--class", "no_such_pkg.models:G", "--weights", str(good)])
    assert "--class" in err and "PYTHONPATH" in err
    err = _one_line_error(capsys, base + ["--class", "foreign_models:Missing", "--weights", str(good)])
    assert "--class" in err and "Missing" in err
    err = _one_line_error(capsys, base + ["--class", "foreign_models:NotAModule", "--weights", str(good)])
    assert "nn.Module" in err
    err = _one_line_error(capsys, base + tut + ["--kwargs", '{"nz": 16, "bogus": 1}', "--weights", str(good)])
    assert "--kwargs" in err and "bogus" in err
    err = _one_line_error(capsys, base + tut + ["--kwargs", "{nz: 16}", "--weights", str(good)])
    assert "--kwargs" in err
    # weights that do not match: other widths (shapes), and missing + unexpected keys
    err = _one_line_error(capsys, base + tut + ["--kwargs", '{"nz": 16, "ngf": 4, "nc": 3}', "--weights", str(good)])
    assert "of another shape" in err and "main.0.weight file (16,32,4,4) vs model (16,16,4,4)" in err
    state = g.state_dict()
    state["extra.weight"] = state.pop("main.1.weight")
    torch.save(state, tmp_path / "keys.pt")
    err = _one_line_error(capsys, base + tut + kw + ["--weights", str(tmp_path / "keys.pt")])
    assert "1 missing (main.1.weight (32))" in err and "1 unexpected (extra.weight (32))" in err
    err = _one_line_error(capsys, base + tut + kw + ["--weights", str(good), "--state-key", "netD"])
    assert "--state-key" in err and "netG_state_dict" in err
    # a pickle that would run code: refused, nothing executed
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"netG_state_dict": state, "x": _Payload(str(marker))}, f)
    err = _one_line_error(capsys, base + tut + kw + ["--weights", str(tmp_path / "evil.pt")])
    assert "refused" in err
    torch.save({"state": state, "x": _Payload(str(marker))}, tmp_path / "evil2.pt")
    _one_line_error(capsys, base + tut + kw + ["--weights", str(tmp_path / "evil2.pt")])
    assert not marker.exists()
    # a latent that cannot be detected
    torch.save({"proj.weight": torch.randn(96, 16), "proj.bias": torch.zeros(96)}, tmp_path / "tok.pt")
    err = _one_line_error(capsys, ["import", "--class", "foreign_models:TokenLatentGenerator", "--weights",
                                   str(tmp_path / "tok.pt"), "--out", str(tmp_path / "t")])  # fmt: skip
    assert "--latent" in err
    # ... but given, it imports
    assert main(["import", "--class", "foreign_models:TokenLatentGenerator", "--weights", str(tmp_path / "tok.pt"),
                 "--latent", "2,16", "--out", str(tmp_path / "t")]) == 0  # fmt: skip
    err = _one_line_error(capsys, base + tut + kw + ["--weights", str(good), "--latent", "7"])
    assert "--latent" in err
    assert not (tmp_path / "o").exists()
