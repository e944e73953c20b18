"""StyleGAN2-style generators: probe-found channel groups, pruning, MACs of modulated convs, export."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from foreign_models import TINY_FASTGAN, TINY_STYLEGAN2, FastGANGenerator, StyleGAN2Generator, calibrated_bn

from gankd.adapter import GeneratorAdapter
from gankd.cli import main
from gankd.export import per_sample_conv2d
from gankd.importer import _spec
from gankd.metrics.efficiency import count_macs
from gankd.pruning import prune_generator
from gankd.pruning_probe import channel_groups, styled_layers


def _teacher(seed: int = 0) -> GeneratorAdapter:
    torch.manual_seed(seed)
    g = StyleGAN2Generator(**TINY_STYLEGAN2).eval()
    with torch.no_grad():  # trained-looking: non-zero biases and noise strengths
        for name, p in g.named_parameters():
            if name.endswith("bias") or name.endswith("noise_strength"):
                p.add_(torch.randn_like(p) * 0.1)
    return GeneratorAdapter(g, _spec((16,), 0, (-1.0, 1.0), call_kwargs={"noise_mode": "const"}))


def _out(gen: GeneratorAdapter) -> torch.Tensor:
    gen.model.eval()
    with torch.no_grad():
        return gen(gen.seeded_inputs([0, 1, 2]))


def test_styled_layers_and_groups_follow_the_feature_stream():
    t = _teacher()
    assert set(styled_layers(t.model)) == {"conv1.conv", "to_rgb1.conv", *(f"convs.{i}.conv" for i in range(4)),
                                           "to_rgbs.0.conv", "to_rgbs.1.conv"}  # fmt: skip
    groups, whole = channel_groups(t.model, t.model_inputs(2))
    by_consumers = {tuple(g["consumers"]): g for g in groups}
    # the map a block ends with is read by the next block's first conv and by the block's toRGB
    assert ("convs.0.conv", "to_rgb1.conv") in by_consumers and ("convs.2.conv", "to_rgbs.0.conv") in by_consumers
    g = by_consumers[("convs.0.conv", "to_rgb1.conv")]
    members = {n: d for n, d, _ in g["members"]}
    # the producer's rows, its bias; the consumers' input dims and their style layers' rows
    assert members["conv1.conv.weight"] == 1 and members["conv1.bias"] == 0
    assert members["convs.0.conv.weight"] == 2 and members["to_rgb1.conv.weight"] == 2
    assert members["convs.0.conv.modulation.weight"] == 0 and members["to_rgb1.conv.modulation.bias"] == 0
    # the learned constant feeds the first conv; the mapping network is never touched
    assert "input" in {n for n, _, _ in by_consumers[("conv1.conv",)]["members"]}
    assert not any(n.startswith("mapping.") for g in groups for n, _, _ in g["members"]) and whole == []


def test_width_one_is_the_teacher_and_a_quarter_prunes_every_group():
    t = _teacher()
    assert torch.allclose(_out(prune_generator(t, width=1.0)), _out(t), atol=1e-6)
    s = prune_generator(t, width=0.25)
    assert _out(s).shape == _out(t).shape and torch.isfinite(_out(s)).all()
    info = s.prune_info
    assert info["method"].startswith("gankd gradient-probe") and len(info["groups"]) == 6
    assert all(g["kept"] == max(1, round(g["channels"] * 0.25)) for g in info["groups"])
    assert s.model.input.shape[1] == 4 and s.model.convs[0].conv.modulation.weight.shape[0] == 4
    assert 0.05 < info["macs_ratio"] < 0.12  # ~width^2 plus the whole mapping network


def test_the_strongest_channels_are_kept():
    t = _teacher()
    with torch.no_grad():  # channel 5 of conv1's output made the strongest by far, channel 2 the weakest
        t.model.conv1.conv.weight[:, 5] *= 50
        t.model.conv1.conv.weight[:, 2] *= 0.0
    s = prune_generator(t, width=0.25)
    kept = s.model.conv1.bias.detach()
    assert torch.isclose(kept, t.model.conv1.bias[5]).any() and not torch.isclose(kept, t.model.conv1.bias[2]).any()


def test_keep_layers_and_random_init():
    t = _teacher()
    s = prune_generator(t, width=0.5, keep_layers=["convs.0"])
    assert any("convs.0.conv" in w and "--keep-layers" in w for w in s.prune_info["kept_whole"])
    assert s.model.convs[0].conv.weight.shape[2] == 16  # its input (conv1's output) kept whole
    r = prune_generator(t, width=0.5, init="random", seed=3)
    p = prune_generator(t, width=0.5)
    assert r.model.conv1.conv.weight.shape == p.model.conv1.conv.weight.shape
    assert not torch.allclose(r.model.conv1.conv.weight, p.model.conv1.conv.weight)  # no reset_parameters: redrawn


def test_macs_of_modulated_convs_by_hand():
    g = StyleGAN2Generator(**TINY_STYLEGAN2).eval()
    ch = {4: 16, 8: 16, 16: 8}  # min(channel_base // r, channel_max)
    hand = 16 * 16 * 2  # mapping: 2 layers 16 -> 16
    convs = [(4, 16, 16, 3), (8, 16, 16, 3), (8, 16, 16, 3), (16, 16, 8, 3), (16, 8, 8, 3)]  # (res, in, out, k)
    rgbs = [(4, ch[4]), (8, ch[8]), (16, ch[16])]
    for r, cin, cout, k in convs:
        hand += cout * cin * k * k * r * r + 16 * cin  # the conv + its style layer (w_dim -> in)
    for r, cin in rgbs:
        hand += 3 * cin * r * r + 16 * cin
    got = count_macs(g, (torch.randn(1, 16),))["macs"]
    assert got == hand


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 0, 1), (1, 2, 2)])
def test_per_sample_conv_matches_the_grouped_conv(stride, padding, dilation):
    b, cin, cout = 3, 4, 5
    x = torch.randn(1, b * cin, 9, 9)
    w = torch.randn(b * cout, cin, 3, 3)
    bias = torch.randn(b * cout)
    want = F.conv2d(x, w, bias, stride, padding, dilation, groups=b)
    got = per_sample_conv2d(x, w, bias, stride, padding, dilation, b)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)


class _NoisyEveryCall(torch.nn.Module):
    """A forward that draws Gaussian noise (FastGAN's noise injection) and offers no argument to fix it."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 3 * 8 * 8)

    def forward(self, z):
        return torch.tanh(self.fc(z).view(-1, 3, 8, 8) + torch.randn(z.shape[0], 3, 8, 8))


class _UniformEveryCall(_NoisyEveryCall):
    def forward(self, z):
        return torch.tanh(self.fc(z).view(-1, 3, 8, 8) + torch.rand(z.shape[0], 3, 8, 8))


def test_import_sets_fixed_noise_records_truncation_and_refuses_random_forwards(tmp_path, capsys, monkeypatch):
    import sys
    import types

    torch.manual_seed(0)
    g = StyleGAN2Generator(**TINY_STYLEGAN2)
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"g": g.state_dict(), "g_ema": g.state_dict(), "d": {"w": torch.zeros(1)}, "step": 3}, ckpt)
    out = tmp_path / "t"
    assert main(["import", "--class", "stylegan2_style:Generator", "--kwargs", json.dumps(TINY_STYLEGAN2),
                 "--weights", str(ckpt), "--out", str(out), "--forward-kwargs", '{"truncation_psi": 0.7}']) == 0
    meta = json.loads((out / "config.json").read_text())
    assert meta["io"]["inputs"][0]["shape"] == [16]  # the mapping network's first layer
    assert meta["io"]["call_kwargs"] == {"noise_mode": "const", "truncation_psi": 0.7}
    assert meta["io"]["noise"] == "as-is"  # noise_mode=const draws none: nothing to zero
    assert meta["truncation"] == {"argument": "truncation_psi", "value": 0.7, "set_by": "--forward-kwargs"}
    assert meta["source"]["state_key"] == "g_ema" and len(meta["io"]["features"]) == 3
    capsys.readouterr()
    assert main(["import", "--class", "stylegan2_style:Generator", "--kwargs", json.dumps(TINY_STYLEGAN2),
                 "--weights", str(ckpt), "--out", str(tmp_path / "u"), "--forward-kwargs", '{"psi": 1}']) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "takes no 'psi'" in err and "truncation_psi" in err

    mod = types.ModuleType("noisy_gen")
    mod.Noisy, mod.Uniform = _NoisyEveryCall, _UniformEveryCall
    monkeypatch.setitem(sys.modules, "noisy_gen", mod)
    torch.save(_NoisyEveryCall().state_dict(), tmp_path / "n.pt")
    # Gaussian noise drawn inside the forward: set to zero, recorded, and one latent gives one image
    assert main(["import", "--class", "noisy_gen:Noisy", "--weights", str(tmp_path / "n.pt"),
                 "--out", str(tmp_path / "n")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "n" / "config.json").read_text())["io"]["noise"] == "zero"
    from gankd.checkpoint import load_generator

    g = load_generator(tmp_path / "n")
    x = g.seeded_inputs([0, 1])
    assert torch.equal(g(x), g(x))
    capsys.readouterr()
    assert main(["import", "--class", "noisy_gen:Uniform", "--weights", str(tmp_path / "n.pt"),
                 "--out", str(tmp_path / "u2")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--forward-kwargs" in err and "two different images" in err


def _fastgan() -> GeneratorAdapter:
    torch.manual_seed(0)
    g = calibrated_bn(FastGANGenerator(**TINY_FASTGAN), (16,))
    spec = _spec((16,), 0, (-1.0, 1.0))
    spec.output_index, spec.noise = 0, "zero"
    return GeneratorAdapter(g, spec)


def test_fastgan_glu_pairs_and_excitation_gates_are_tied():
    t = _fastgan()
    s = prune_generator(t, width=0.5)  # torch-pruning cannot slice the GLU halves: the probes take over
    info = s.prune_info
    assert info["method"].startswith("gankd gradient-probe") and info["spectral_norm_folded"]
    roots = {g["root"]: g for g in info["groups"]}
    # the 4 px map feeds the 8 px block and the 32 px excitation gate; the 32 px gate's rows follow the map it gates
    assert "feat_8.1, se_32.main.1" in roots and "feat_64.1, to_32" in roots
    assert all(g["kept"] == round(g["channels"] * 0.5) for g in info["groups"])
    assert s.model.feat_8[1].weight.shape[0] == 2 * s.model.feat_8[5].weight.shape[1]  # GLU: twice the rows
    assert s.model.se_32.main[3].weight.shape[0] == s.model.feat_64[1].weight.shape[1]
    assert _out(s).shape == _out(t).shape and torch.isfinite(_out(s)).all()
    assert torch.allclose(_out(prune_generator(t, width=1.0)), _out(t), atol=1e-5)
    assert 0.15 < info["macs_ratio"] < 0.4


def _import_tiny_stylegan2(tmp_path) -> None:
    """The tiny StyleGAN2-style generator saved as its code base saves it, imported into tmp_path/t."""
    g = StyleGAN2Generator(**TINY_STYLEGAN2)
    ckpt = tmp_path / "c.pt"
    torch.save({"g_ema": g.state_dict()}, ckpt)
    assert main(["import", "--class", "stylegan2_style:Generator", "--kwargs", json.dumps(TINY_STYLEGAN2),
                 "--weights", str(ckpt), "--out", str(tmp_path / "t")]) == 0  # fmt: skip


def test_compress_keep_layers_flag_reaches_the_pruner(tmp_path, capsys):
    _import_tiny_stylegan2(tmp_path)
    args = ["compress", "--teacher", str(tmp_path / "t"), "--width", "0.5", "--steps", "1", "--no-progress",
            "--set", "eval_samples=4", "--set", "threads=1"]  # fmt: skip
    assert main([*args, "--keep-layers", "convs.0", "--out", str(tmp_path / "r")]) == 0
    info = json.loads((tmp_path / "r" / "student" / "config.json").read_text())["prune"]
    assert any("convs.0.conv" in w and "--keep-layers" in w for w in info["kept_whole"])
    capsys.readouterr()
    assert main([*args, "--keep-layers", "nope.1", "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--keep-layers: no module 'nope.1'" in err


def test_student_kwargs_builds_a_narrower_copy_of_the_teachers_class(tmp_path, capsys):
    import subprocess
    import sys

    _import_tiny_stylegan2(tmp_path)
    args = ["compress", "--teacher", str(tmp_path / "t"), "--steps", "2", "--no-progress", "--set", "eval_samples=4",
            "--set", "threads=1"]  # fmt: skip
    narrow = {"channel_base": 32, "channel_max": 4}  # every stage at 1/4 of the tiny teacher's 16, 16, 8
    assert main([*args, "--student-kwargs", json.dumps(narrow), "--out", str(tmp_path / "r")]) == 0
    meta = json.loads((tmp_path / "r" / "student" / "config.json").read_text())
    assert meta["kwargs"] == {**TINY_STYLEGAN2, **narrow} and meta["prune"]["init"] == "random"
    assert 0 < meta["prune"]["macs_ratio"] < 0.2 and meta["prune"]["student_kwargs"] == narrow
    # a fresh process rebuilds the class from the recorded kwargs: same weights, same images
    code = ("import sys, torch; sys.path.insert(0, 'benchmarks/thirdparty'); from gankd import load_generator; "
            f"g = load_generator({str(tmp_path / 'r' / 'student')!r}).eval(); "
            "print(g.model.convs[0].conv.weight.shape[1], float(g(g.seeded_inputs([0, 1])).abs().sum()))")  # fmt: skip
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]  # fmt: skip
    assert outs[0] == outs[1] and outs[0].split()[0] == "4"
    capsys.readouterr()
    assert main([*args, "--student-kwargs", '{"resolution": 32}', "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "change only widths" in err and not (tmp_path / "r2" / "student").exists()
    assert main([*args, "--student-kwargs", json.dumps(narrow), "--width", "0.5", "--target-macs", "0.3",
                 "--out", str(tmp_path / "r3")]) == 2  # fmt: skip
    assert "drop --target-macs" in capsys.readouterr().err
    assert main(["compress", "--teacher", "fmnist-teacher", "--student-kwargs", json.dumps(narrow), "--steps", "1",
                 "--out", str(tmp_path / "r4")]) == 2  # fmt: skip
    assert "built by --width or --channels" in capsys.readouterr().err
