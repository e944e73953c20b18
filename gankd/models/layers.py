"""Building blocks shared by model families."""

from __future__ import annotations

import torch
from torch import nn


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift come from the class label (BigGAN/SNGAN style).

    With ``num_classes == 0`` it is a plain affine BatchNorm and ``y`` is ignored.
    Input (B, C, H, W), labels (B,) int64 in [0, num_classes).
    """

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.num_features = num_features
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(num_features, affine=num_classes == 0)
        if num_classes > 0:
            self.gamma = nn.Embedding(num_classes, num_features)
            self.beta = nn.Embedding(num_classes, num_features)
            nn.init.ones_(self.gamma.weight)
            nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.bn(x)
        if self.num_classes == 0:
            return h
        if y is None:
            raise ValueError("this model is class-conditional: pass labels y (B,) int64")
        return h * self.gamma(y)[:, :, None, None] + self.beta(y)[:, :, None, None]


class SubPixelConvTranspose(nn.Module):
    """A ``ConvTranspose2d`` rewritten as the same function built from ops every int8 runtime has:
    stride 1, ``Conv(K, padding K-1-p)`` with the flipped kernel; stride s, a ``Conv`` to s*s times the
    output channels (one group per output-pixel phase, each holding the kernel taps that land on
    that phase, zeros elsewhere) and a ``PixelShuffle(s)`` that interleaves the phases (sub-pixel
    convolution). The outputs equal the layer's up to float rounding; the stride-s form does
    (2r+1)^2/(K/s)^2 times the MACs (2.25x for K=4, s=2) with zeros in the kernel, which an int8
    Conv kernel runs faster than ONNX Runtime's fp32 ConvTranspose on CPU, where there is no int8
    ConvTranspose. Build with :func:`subpixel_form`, which checks the layer qualifies."""

    def __init__(self, ct: nn.ConvTranspose2d):
        super().__init__()
        k, s, p = ct.kernel_size[0], ct.stride[0], ct.padding[0]
        w = ct.weight.detach()  # (C_in, C_out, K, K)
        cin, cout = w.shape[0], w.shape[1]
        bias = ct.bias is not None
        if s == 1:
            self.conv = nn.Conv2d(cin, cout, k, 1, k - 1 - p, bias=bias)
            self.conv.weight.data = w.flip(2, 3).transpose(0, 1).contiguous()
            self.shuffle = nn.Identity()
        else:  # output pixel s*m + a takes kernel tap k from input m + d, d = -(k - a - p) / s
            phase = tap_phases(k, s, p)
            taps = [[(-((t - a - p) // s), t) for t in range(k) if phase[t] == a] for a in range(s)]
            r = max(abs(d) for phase in taps for d, _ in phase)
            kern = torch.zeros(cout, s, s, cin, 2 * r + 1, 2 * r + 1, dtype=w.dtype)
            for a in range(s):
                for b in range(s):
                    for dy, ty in taps[a]:
                        for dx, tx in taps[b]:
                            kern[:, a, b, :, dy + r, dx + r] = w[:, :, ty, tx].t()
            self.conv = nn.Conv2d(cin, cout * s * s, 2 * r + 1, 1, r, bias=bias)
            self.conv.weight.data = kern.reshape(cout * s * s, cin, 2 * r + 1, 2 * r + 1)
            self.shuffle = nn.PixelShuffle(s)
        if bias:
            self.conv.bias.data = ct.bias.detach().repeat_interleave(s * s).clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


def tap_phases(k: int, s: int, p: int) -> list[int]:
    """The output-pixel phase each kernel tap of a ConvTranspose (kernel ``k``, stride ``s``, padding ``p``) lands on,
    per dimension: tap ``t`` feeds outputs ``s*m + a`` with ``a = (t - p) mod s``."""
    return [(t - p) % s for t in range(k)]


def subpixel_ok(ct: nn.ConvTranspose2d) -> bool:
    """Square, ungrouped, undilated, and (stride > 1) growing by exactly the stride: K + op - 2p == s."""
    k, s, p, op = ct.kernel_size, ct.stride, ct.padding, ct.output_padding
    if len({k[0], k[1]}) > 1 or len({s[0], s[1]}) > 1 or len({p[0], p[1]}) > 1 or len({op[0], op[1]}) > 1:
        return False
    if ct.groups != 1 or ct.dilation != (1, 1) or ct.padding_mode != "zeros":
        return False
    if s[0] == 1:
        return op[0] == 0 and k[0] - 1 - p[0] >= 0
    return k[0] + op[0] - 2 * p[0] == s[0]


def subpixel_form(model: nn.Module) -> int:
    """Replace, in place, every qualifying ``ConvTranspose2d`` of ``model`` by its
    :class:`SubPixelConvTranspose` (for int8 export: every layer then quantizes). Returns how many."""
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, nn.ConvTranspose2d) and subpixel_ok(child):
            setattr(model, name, SubPixelConvTranspose(child))
            count += 1
        else:
            count += subpixel_form(child)
    return count


UPSAMPLES = ("convtranspose", "nearest-conv")


def upsample2x(c_in: int, c_out: int, kind: str, bias: bool) -> nn.Module:
    """A layer that doubles H and W: a 4x4 stride-2 ConvTranspose, or (``nearest-conv``) a nearest 2x upsample and
    a 3x3 conv, which int8 runtimes quantize (ONNX Runtime's CPU provider has no int8 ConvTranspose)."""
    if kind == "nearest-conv":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias))
    if kind != "convtranspose":
        raise ValueError(f"--student-upsample must be one of {', '.join(UPSAMPLES)}, got {kind!r}")
    return nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)


def out_channels(layer: nn.Module) -> int:
    """Output channels of a conv, or of the last conv in a Sequential (an :func:`upsample2x` layer)."""
    convs = [m for m in layer.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    return convs[-1].out_channels


def scaled(channels: int, width: float) -> int:
    """Channel count at a width multiplier, never below 1."""
    return max(1, int(round(channels * width)))
