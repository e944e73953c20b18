"""Quantization-aware distillation: the student trains through the int8 rounding its export will apply.

``gankd export --precision int8`` quantizes the ops ONNX Runtime's CPU execution provider runs in
int8 (Conv, MatMul, Gemm: in PyTorch ``Conv2d`` and ``Linear``) with static QDQ: per-output-channel
symmetric int8 weights, and int8 activations (asymmetric, from the calibration's min/max) on each
such op's input and output. A ConvTranspose layer quantizes in its rewritten form
(:class:`gankd.models.layers.SubPixelConvTranspose`: a Conv with one output channel per output
channel and output-pixel phase), so its weights round per (output channel, phase): the taps that
land on one phase share a scale. Post-training, that rounding is noise the student never saw; with
``gankd compress --qat-start F`` the last ``1 - F`` of the budget runs every such layer of the
student as the export will: weights rounded on the export's grid, inputs and outputs rounded to
256 levels between running min/max estimates, gradients passed straight through the rounding
(the straight-through estimator). The weights stay fp32 parameters (the state dict, the EMA and
every saved folder are unchanged in shape); only the forward changes while QAT is on.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from gankd.models.layers import subpixel_ok, tap_phases

# the layers the int8 export quantizes as they are; ConvTranspose layers quantize in their rewritten form (see
# rounded(): those that qualify for it, on its grid)
QUANTIZED = (nn.Conv2d, nn.Linear)
MOMENTUM = 0.01  # of the running activation min/max


def _to_grid(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """``x`` rounded to the integers ``lo..hi`` in the forward, the identity in the backward (straight-through)."""
    return x + (torch.round(x).clamp(lo, hi) - x).detach()


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 (levels -127..127), straight-through."""
    flat = w.detach().reshape(w.shape[0], -1).abs().amax(dim=1).clamp_min(1e-12)
    scale = (flat / 127.0).reshape(-1, *([1] * (w.dim() - 1)))
    return _to_grid(w / scale, -127, 127) * scale


def fake_quant_convtranspose_weight(w: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """A ConvTranspose weight ``(C_in, C_out, K, K)`` on the int8 grid of its sub-pixel Conv form: symmetric, one
    scale per output channel and output-pixel phase (:func:`gankd.models.layers.tap_phases`, in each
    dimension; that form's zeros do not change a channel's largest weight), straight-through."""
    phase = torch.tensor(tap_phases(w.shape[-1], stride, padding))
    group = phase[:, None] * stride + phase[None, :]  # (K, K): the phase pair of each tap
    absw = w.detach().abs().amax(dim=0)  # (C_out, K, K)
    scale = torch.ones_like(absw)
    for g in range(stride * stride):
        mask = group == g
        if mask.any():
            scale[:, mask] = absw[:, mask].amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
    return _to_grid(w / scale, -127, 127) * scale


def rounded(m: nn.Module) -> bool:
    """Whether QAT rounds ``m``: a Conv2d or Linear, or a ConvTranspose2d that the int8 export can rewrite."""
    return isinstance(m, QUANTIZED) or (isinstance(m, nn.ConvTranspose2d) and subpixel_ok(m))


def fake_quant_activation(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Asymmetric int8 between ``lo`` and ``hi`` (the range always holds 0, as QDQ's does), straight-through."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-8) / 255.0
    zero = round(-lo / scale) - 128
    return _to_grid(x / scale + zero, -128, 127).sub(zero) * scale


class _Range:
    """Running min/max of a tensor (the first batch sets it; then an exponential average)."""

    def __init__(self):
        self.lo: float | None = None
        self.hi: float | None = None

    def update(self, x: torch.Tensor) -> tuple[float, float]:
        lo, hi = float(x.detach().min()), float(x.detach().max())
        if self.lo is None:
            self.lo, self.hi = lo, hi
        else:
            self.lo += MOMENTUM * (lo - self.lo)
            self.hi += MOMENTUM * (hi - self.hi)
        return self.lo, self.hi


def _qat_forward(self, x: torch.Tensor) -> torch.Tensor:
    x = fake_quant_activation(x, *self._qat_in.update(x))
    if isinstance(self, nn.ConvTranspose2d):
        w = fake_quant_convtranspose_weight(self.weight, self.stride[0], self.padding[0])
        out = F.conv_transpose2d(x, w, self.bias, self.stride, self.padding, self.output_padding, self.groups,
                                 self.dilation)  # fmt: skip
    elif isinstance(self, nn.Conv2d):
        out = self._conv_forward(x, fake_quant_weight(self.weight), self.bias)
    else:
        out = F.linear(x, fake_quant_weight(self.weight), self.bias)
    return fake_quant_activation(out, *self._qat_out.update(out))


def enable(model: nn.Module) -> int:
    """Run every layer of ``model`` the int8 export quantizes (:func:`rounded`) through its rounding (idempotent);
    returns how many."""
    n = 0
    for m in model.modules():
        if rounded(m) and "forward" not in m.__dict__:
            m._qat_in, m._qat_out = _Range(), _Range()
            m.forward = types.MethodType(_qat_forward, m)
            n += 1
    return n


def disable(model: nn.Module) -> None:
    """Back to the plain fp32 forward (the weights are as trained)."""
    for m in model.modules():
        if rounded(m) and "forward" in m.__dict__:
            del m.forward, m._qat_in, m._qat_out


def enabled(model: nn.Module) -> bool:
    return any(rounded(m) and "forward" in m.__dict__ for m in model.modules())


def ranges(model: nn.Module) -> dict[str, list]:
    """The running activation ranges (module path -> [in lo, in hi, out lo, out hi]): part of a resumable state."""
    return {name: [m._qat_in.lo, m._qat_in.hi, m._qat_out.lo, m._qat_out.hi] for name, m in model.named_modules()
            if rounded(m) and "forward" in m.__dict__}  # fmt: skip


def set_ranges(model: nn.Module, saved: dict[str, list]) -> None:
    """Restore :func:`ranges` into a model whose QAT is enabled (a resumed run continues exactly)."""
    for name, m in model.named_modules():
        if name in saved and "forward" in m.__dict__:
            (m._qat_in.lo, m._qat_in.hi, m._qat_out.lo, m._qat_out.hi) = saved[name]


__all__ = ["enable", "disable", "enabled", "ranges", "set_ranges", "fake_quant_weight", "fake_quant_activation",
           "fake_quant_convtranspose_weight", "rounded", "QUANTIZED"]
