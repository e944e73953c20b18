"""DCGAN family: transposed-conv generator with (conditional) BatchNorm, and a
discriminator (spectral norm by default, or BatchNorm) with a projection head for
class-conditional models.

Channel counts are ``base_channels * channel_mults[i] * width`` (or explicit
``channels``), so a student is the same family at a smaller ``width``. Both work at any
power-of-two resolution (32, 64, 128, 256 px, ...) with 1 or 3 channels; the default
per-stage multipliers double per stage but stop at :data:`MAX_MULT` (8x the base), so a
256 px model does not grow to thousands of channels at its coarsest stage.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gankd.models.layers import UPSAMPLES, ConditionalBatchNorm2d, scaled, upsample2x
from gankd.registry import DISCRIMINATORS, GENERATORS

D_NORMS = ("spectral", "batch", "none")
# standard: class-conditional BatchNorm in every stage and a 3x3 conv from the last stage to the pixels; latency (a
# student for batch-1 speed): the class enters once, as an embedding added to z, every BatchNorm is plain (folded
# into the convolutions at export), and the last doubling writes the pixels (no full-resolution feature stage, no
# 3x3 image conv): fewer and larger ops, which is what a batch of 1 on a CPU pays for
LAYOUTS = ("standard", "latency")
MAX_MULT = 8  # cap on the default channel multiplier of a stage (x base_channels)


def _default_mults(resolution: int) -> tuple[int, ...]:
    n_up = int(math.log2(resolution // 4))
    # 32 -> (8, 4, 2, 1); 64 -> (8, 8, 4, 2, 1); 256 -> (8, 8, 8, 8, 4, 2, 1)
    return tuple(min(2 ** (n_up - i), MAX_MULT) for i in range(n_up + 1))


@dataclass
class GeneratorConfig:
    resolution: int = 32  # output height = width, a power of two >= 8
    image_channels: int = 1  # 1 = gray, 3 = RGB
    z_dim: int = 128  # latent size
    num_classes: int = 10  # 0 = unconditional
    base_channels: int = 64  # channels of the last (highest-resolution) stage at width 1
    width: float = 1.0  # multiplier on every stage's channels (students use < 1)
    channel_mults: tuple[int, ...] | None = None  # per-stage multipliers, 4x4 first; None = default
    channels: tuple[int, ...] | None = None  # explicit per-stage channels; overrides the above
    # how a stage doubles: convtranspose (4x4, stride 2) or nearest-conv (nearest 2x upsample + 3x3 conv,
    # which int8 runtimes quantize; ONNX Runtime's CPU provider has no int8 ConvTranspose)
    upsample: str = "convtranspose"
    layout: str = "standard"  # one of LAYOUTS

    def __post_init__(self):
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise ValueError(f"--resolution must be a power of two >= 8, got {self.resolution}")
        if self.image_channels not in (1, 3):
            raise ValueError(f"--image-channels must be 1 or 3, got {self.image_channels}")
        if self.width <= 0:
            raise ValueError(f"--width must be > 0, got {self.width}")
        if self.z_dim <= 0 or self.num_classes < 0:
            raise ValueError("--z-dim must be > 0 and --num-classes >= 0")
        if self.base_channels < 1:
            raise ValueError(f"base_channels must be >= 1, got {self.base_channels}")
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"--student-upsample must be one of {', '.join(UPSAMPLES)}, got {self.upsample!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"--student-layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        n = int(math.log2(self.resolution // 4)) + 1
        if self.channel_mults is not None and len(self.channel_mults) != n:
            raise ValueError(f"channel_mults needs {n} entries for resolution {self.resolution}")
        if self.channels is not None and (len(self.channels) != n or min(self.channels) < 1):
            raise ValueError(f"channels needs {n} positive entries for resolution {self.resolution}")

    def stage_channels(self) -> list[int]:
        if self.channels is not None:
            return list(self.channels)
        mults = self.channel_mults or _default_mults(self.resolution)
        return [scaled(self.base_channels * m, self.width) for m in mults]


class FoldedNorm(nn.Module):
    """Where a BatchNorm was folded into the layer before it (:meth:`DCGANGenerator.fold_norms`): the identity."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return x


@torch.no_grad()
def _fold_into(layer: nn.Module, scale: torch.Tensor, shift: torch.Tensor, group: int = 1) -> nn.Module:
    """``layer`` (Linear, Conv2d or ConvTranspose2d, or a Sequential ending in one) followed by a per-channel
    ``x * scale + shift`` as one layer with a bias; ``group``: outputs per channel (the 4x4 stage's Linear: 16)."""
    if isinstance(layer, nn.Sequential):
        return nn.Sequential(*layer[:-1], _fold_into(layer[-1], scale, shift, group))
    w = layer.weight
    transposed = isinstance(layer, nn.ConvTranspose2d)  # weight (in, out, k, k); the others (out, ...)
    new = copy.deepcopy(layer)  # no fresh layer: folding draws no random numbers
    new.bias = nn.Parameter(torch.zeros(w.shape[1] if transposed else w.shape[0]))
    s, b = scale.repeat_interleave(group), shift.repeat_interleave(group)
    view = (1, -1, 1, 1) if transposed else (-1,) + (1,) * (w.dim() - 1)
    new.weight.copy_(w * s.view(view))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(b)
    new.bias.copy_(bias * s + b)
    return new


@GENERATORS.register("dcgan")
class DCGANGenerator(nn.Module):
    """z (B, z_dim), y (B,) -> image (B, C, R, R) in [-1, 1].

    Stages: linear to 4x4, then one ConvTranspose(4, stride 2) + CBN + ReLU per
    doubling; a 3x3 conv + tanh maps the last stage to pixels. Features returned by
    ``return_features=True`` are the post-activation maps of every stage. The ``latency``
    layout (:data:`LAYOUTS`) adds a class embedding to z instead, uses plain BatchNorm, and
    its last doubling (to image channels, with a bias) + tanh writes the pixels: one stage
    fewer (the channels' last entry is unused) and feature taps (1, 2) at 32 px.
    """

    family = "dcgan"
    Config = GeneratorConfig
    feature_taps = (1, 2, 3)  # the stages compress matches by default: those after the 4x4 one

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.stage_channels()
        latency = cfg.layout == "latency"
        stages = ch[:-1] if latency else ch
        self.feature_channels = list(stages)
        if latency:  # the stages after the 4x4 one that exist
            self.feature_taps = tuple(i for i in type(self).feature_taps if i < len(stages))
        self.z_dim = cfg.z_dim
        self.num_classes = cfg.num_classes
        self.embed = nn.Embedding(cfg.num_classes, cfg.z_dim) if latency and cfg.num_classes else None
        self.fc = nn.Linear(cfg.z_dim, ch[0] * 16, bias=False)
        self.norms = nn.ModuleList([ConditionalBatchNorm2d(c, 0 if latency else cfg.num_classes) for c in stages])
        self.ups = nn.ModuleList([upsample2x(ch[i], ch[i + 1], cfg.upsample, bias=False)
                                  for i in range(len(stages) - 1)])  # fmt: skip
        if latency:
            self.to_img = upsample2x(ch[-2], cfg.image_channels, cfg.upsample, bias=True)
        else:
            self.to_img = nn.Conv2d(ch[-1], cfg.image_channels, 3, 1, 1)
        self.act = nn.ReLU()
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.02)
        if self.embed is not None:  # starts unconditional; the class offsets are learned
            nn.init.zeros_(self.embed.weight)

    @torch.no_grad()
    def fold_norms(self) -> int:
        """Fold every plain BatchNorm (the latency layout's, an unconditional model's) into the layer before it,
        with its running statistics: the same function in eval mode with fewer ops to export. In place; returns how
        many were folded (class-conditional ones stay)."""
        n = 0
        for i, norm in enumerate(self.norms):
            if not isinstance(norm, ConditionalBatchNorm2d) or norm.num_classes:
                continue
            bn = norm.bn
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - scale * bn.running_mean
            if i == 0:
                self.fc = _fold_into(self.fc, scale, shift, group=16)
            else:
                self.ups[i - 1] = _fold_into(self.ups[i - 1], scale, shift)
            self.norms[i] = FoldedNorm()
            n += 1
        return n

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, return_features: bool = False):
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}")
        if self.num_classes == 0:
            y = None
        if self.embed is not None:
            if y is None:
                raise ValueError("this model is class-conditional: pass labels y (B,) int64")
            z = z + self.embed(y)
        h = self.fc(z).view(z.shape[0], -1, 4, 4)
        h = self.act(self.norms[0](h, y))
        feats = [h]
        for up, norm in zip(self.ups, self.norms[1:]):
            h = self.act(norm(up(h), y))
            feats.append(h)
        img = torch.tanh(self.to_img(h))
        return (img, feats) if return_features else img


@dataclass
class DiscriminatorConfig:
    resolution: int = 32  # input height = width
    image_channels: int = 1  # 1 = gray, 3 = RGB
    num_classes: int = 10  # 0 = unconditional (no projection head)
    base_channels: int = 32  # channels of the first (full-resolution) stage at width 1
    width: float = 1.0  # multiplier on every stage's channels
    convs_per_stage: int = 1  # convs per halving: 1 = the 4x4 stride-2 conv; 2 adds a 3x3 conv before it
    # (the depth of SNGAN's "standard CNN" discriminator: 7 convs at 32 px)
    norm: str = "spectral"  # spectral: spectral norm on every layer (SNGAN); batch: BatchNorm after every conv
    # but the first (the classic DCGAN discriminator); none: plain layers (regularise with train-teacher --r1)

    def __post_init__(self):
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise ValueError(f"--resolution must be a power of two >= 8, got {self.resolution}")
        if self.width <= 0:
            raise ValueError(f"--d-width must be > 0, got {self.width}")
        if self.norm not in D_NORMS:
            raise ValueError(f"discriminator.norm must be one of {', '.join(D_NORMS)}, got '{self.norm}'")
        if self.convs_per_stage < 1:
            raise ValueError(f"discriminator.convs_per_stage must be >= 1, got {self.convs_per_stage}")
        if self.image_channels not in (1, 3):
            raise ValueError(f"image_channels must be 1 or 3, got {self.image_channels}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {self.num_classes}")
        if self.base_channels < 1:
            raise ValueError(f"base_channels must be >= 1, got {self.base_channels}")


@DISCRIMINATORS.register("dcgan")
class DCGANDiscriminator(nn.Module):
    """image (B, C, R, R) in [-1, 1], y (B,) -> logits (B,).

    Convs (stride-2 4x4 per halving down to 4x4, after ``convs_per_stage - 1`` 3x3 convs at
    that stage's width), global sum pooling, a linear head plus a class projection
    <embed(y), h> when conditional. ``norm``: spectral norm on every layer (default), BatchNorm
    after every conv but the stem (the classic DCGAN discriminator), or none.
    """

    family = "dcgan"
    Config = DiscriminatorConfig

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        n_down = int(math.log2(cfg.resolution // 4))
        # doubling per halving, capped at MAX_MULT x base (256 px would reach 64x otherwise)
        ch = [scaled(cfg.base_channels * min(2**i, MAX_MULT), cfg.width) for i in range(n_down + 1)]
        self.feature_channels = ch
        self.stem = self._sn(nn.Conv2d(cfg.image_channels, ch[0], 3, 1, 1))
        self.act = nn.LeakyReLU(0.2)
        self.downs = nn.ModuleList([self._stage(ch[i], ch[i + 1], cfg.convs_per_stage) for i in range(n_down)])
        self.head = self._sn(nn.Linear(ch[-1], 1))
        self.embed = (
            self._sn(nn.Embedding(cfg.num_classes, ch[-1])) if cfg.num_classes > 0 else None
        )

    def _sn(self, module: nn.Module) -> nn.Module:
        return spectral_norm(module) if self.cfg.norm == "spectral" else module

    def _conv(self, c_in: int, c_out: int, k: int, s: int) -> nn.Module:
        """A conv with the configured normalisation; with BatchNorm the conv has no bias."""
        if self.cfg.norm == "batch":
            return nn.Sequential(nn.Conv2d(c_in, c_out, k, s, 1, bias=False), nn.BatchNorm2d(c_out))
        return self._sn(nn.Conv2d(c_in, c_out, k, s, 1))

    def _stage(self, c_in: int, c_out: int, n_convs: int) -> nn.Module:
        down = self._conv(c_in, c_out, 4, 2)
        if n_convs == 1:  # the original layout (and state-dict keys) of every shipped discriminator
            return down
        mids = [m for _ in range(n_convs - 1)
                for m in (self._conv(c_in, c_in, 3, 1), nn.LeakyReLU(0.2))]  # fmt: skip
        return nn.Sequential(*mids, down)

    def blocks(self) -> list[nn.Module]:
        """The feature blocks from input to output (what ``--d-freeze`` counts); the head is not one."""
        return [self.stem, *self.downs]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, return_features: bool = False):
        h = self.act(self.stem(x))
        feats = [h]
        for down in self.downs:
            h = self.act(down(h))
            feats.append(h)
        pooled = h.sum(dim=(2, 3))
        out = self.head(pooled).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("this discriminator is class-conditional: pass labels y")
            out = out + (self.embed(y) * pooled).sum(1)
        return (out, feats) if return_features else out
