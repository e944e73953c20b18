"""Quantization-aware distillation (gankd.qat, compress --qat-start): the int8 rounding of the export, trained
through with straight-through gradients, resumable exactly, and a student that loses less to int8."""

from __future__ import annotations

import pytest
import torch
from test_distill import _cfg, setup  # noqa: F401  (fixture)
from torch import nn

from gankd import qat
from gankd.checkpoint import load_state
from gankd.distill import DistillConfig, compress
from gankd.models.layers import SubPixelConvTranspose


def test_weights_round_per_output_channel_and_gradients_pass_straight_through():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3) * torch.tensor([1.0, 0.1, 10.0, 0.01]).view(4, 1, 1, 1)
    w.requires_grad_(True)
    q = qat.fake_quant_weight(w)
    for c in range(4):
        scale = w[c].abs().max().item() / 127
        levels = torch.round(q[c] / scale)
        assert torch.allclose(levels * scale, q[c], atol=1e-6 * max(scale, 1e-12) * 128)
        assert levels.abs().max() <= 127 and (q[c] - w[c]).abs().max() <= scale / 2 + 1e-7
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_activations_take_256_levels_and_keep_zero_exact():
    x = torch.linspace(-0.3, 2.0, 1000)
    q = qat.fake_quant_activation(x, -0.3, 2.0)
    assert len(torch.unique(q)) <= 256 and (q - x).abs().max() <= 2.3 / 255 / 2 + 1e-6
    assert qat.fake_quant_activation(torch.zeros(3), -0.3, 2.0).abs().max() == 0


@pytest.mark.parametrize("k,s,p,op", [(4, 2, 1, 0), (3, 2, 1, 1), (3, 1, 1, 0), (6, 3, 2, 1)])
def test_convtranspose_rounds_on_the_grid_of_its_exported_form(k, s, p, op):
    """The export quantizes a ConvTranspose as its sub-pixel Conv, one scale per output channel of that Conv: QAT's
    rounding of the ConvTranspose weight, rewritten, is that Conv's weight rounded per channel."""
    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(3, 4, k, s, p, output_padding=op)
    with torch.no_grad():  # channels and taps of very different sizes, so that a shared scale would show
        ct.weight.mul_(torch.logspace(-2, 1, 4).view(1, 4, 1, 1) * torch.rand(1, 1, k, k).add(0.05))
    assert qat.rounded(ct)
    rounded = nn.ConvTranspose2d(3, 4, k, s, p, output_padding=op)
    rounded.load_state_dict({"weight": qat.fake_quant_convtranspose_weight(ct.weight, s, p), "bias": ct.bias})
    exported = SubPixelConvTranspose(ct).conv.weight
    assert torch.allclose(SubPixelConvTranspose(rounded).conv.weight, qat.fake_quant_weight(exported), atol=1e-6)
    assert not torch.allclose(qat.fake_quant_weight(ct.weight.transpose(0, 1)).transpose(0, 1),
                              qat.fake_quant_convtranspose_weight(ct.weight, s, p), atol=1e-6) or s == 1  # fmt: skip


def test_enable_rounds_what_the_export_quantizes_and_disable_restores():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.Unflatten(1, (1, 4, 4)), nn.ConvTranspose2d(1, 2, 4, 2, 1),
                      nn.Conv2d(2, 3, 3, padding=1), nn.ConvTranspose2d(3, 2, 3, 2, 0))  # fmt: skip
    x = torch.randn(5, 8)
    plain = m(x)
    # the last ConvTranspose (9 -> 19 px) has no sub-pixel form: the export keeps it fp32, so QAT leaves it alone
    assert qat.enable(m) == 3 and qat.enabled(m) and "forward" not in m[4].__dict__
    rounded = m(x)
    assert not torch.equal(rounded, plain) and (rounded - plain).abs().max() < 0.1
    assert set(qat.ranges(m)) == {"0", "2", "3"}
    assert list(m.state_dict()) == [f"{i}.{p}" for i in (0, 2, 3, 4) for p in ("weight", "bias")]
    qat.disable(m)
    assert not qat.enabled(m) and torch.equal(m(x), plain)


def test_compress_with_a_quantization_aware_phase_resumes_exactly(setup):  # noqa: F811
    root, teacher, _, perc = setup
    kw = dict(steps=4, qat_start=0.25, adv=0.0, perceptual=0.0, kd=0.0, feat=0.0)
    compress(_cfg(teacher, perc, **kw), root / "straight")
    compress(_cfg(teacher, perc, **{**kw, "steps": 2}), root / "split")
    compress(_cfg(teacher, perc, **kw), root / "split", resume=True)
    compress(_cfg(teacher, perc, **{**kw, "qat_start": 1.0}), root / "fp32")
    a, b, c = (load_state(root / r / "state.pt") for r in ("straight", "split", "fp32"))
    assert a["qat_ranges"] == b["qat_ranges"] and "qat_ranges" not in c
    assert all(torch.equal(a["student"][k], b["student"][k]) for k in a["student"])
    assert any(not torch.equal(a["student"][k], c["student"][k]) for k in a["student"])


def test_qat_start_is_checked():
    with pytest.raises(ValueError, match="--qat-start must be in"):
        DistillConfig(qat_start=1.5)
