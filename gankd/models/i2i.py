"""Image-to-image families (pix2pix / CycleGAN style): a U-Net and a ResNet generator that
map a source image to an output image, and the conditional PatchGAN discriminator.

All three are fully convolutional: the same weights run at any H, W that the down-sampling
allows (a multiple of ``2**depth`` for the U-Net, of ``2**n_down`` for the ResNet), so
``resolution`` in the configs only records the size a model was trained at. Images are
NCHW floats in [-1, 1]; the generators take the source image where the DCGAN family takes
a latent (``z_dim == 0``, ``num_classes == 0``).

Every layer is its own named submodule (no activation module used twice, no in-place ops),
so torch-pruning traces the graph, including the U-Net's skip concatenations, and prunes
channels consistently. ``feature_channels`` is read from the live layers, so it stays
right after pruning.

Every class is built from its config dataclass, a dict, or keyword arguments:
``UNetGenerator(UNetConfig(base_channels=8))``, ``UNetGenerator({"base_channels": 8})`` and
``UNetGenerator(base_channels=8)`` are the same model (an importer can rebuild it as
``cls(**kwargs)``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gankd.config import from_dict
from gankd.models.layers import UPSAMPLES, out_channels, scaled, upsample2x
from gankd.registry import DISCRIMINATORS, GENERATORS

NORMS = ("batch", "instance", "none")

T = TypeVar("T")


def _make_cfg(cls: type[T], cfg: T | dict | None, kwargs: dict[str, Any]) -> T:
    """The config from a ``cls`` instance, a dict or keyword arguments (kwargs override)."""
    if cfg is None:
        return from_dict(cls, dict(kwargs))
    if isinstance(cfg, dict):
        return from_dict(cls, {**cfg, **kwargs})
    if isinstance(cfg, cls):
        if kwargs:
            return from_dict(cls, {**dataclasses.asdict(cfg), **kwargs})
        return cfg
    raise TypeError(f"expected a {cls.__name__}, a dict or keyword arguments, got {type(cfg).__name__}")


def _check_sizes(cfg, width_flag: str = "--width") -> None:
    """The channel and width fields every image-to-image config shares, each refusal naming its flag."""
    for name in ("in_channels", "image_channels", "base_channels"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.width <= 0:
        raise ValueError(f"{width_flag} must be > 0, got {cfg.width}")


def _init_i2i(model: nn.Module, cls, cfg, kwargs):
    """Config from ``cfg``/kwargs, and the attributes gankd's seam reads from an image-to-image
    generator (source channels, output channels, no classes, no latent)."""
    cfg = _make_cfg(cls, cfg, kwargs)
    model.cfg = cfg
    model.in_channels, model.image_channels = cfg.in_channels, cfg.image_channels
    model.num_classes, model.z_dim = 0, 0
    return cfg


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"--norm must be one of {', '.join(NORMS)}, got {norm!r}")


def _norm_layer(norm: str, channels: int) -> list[nn.Module]:
    """The norm layer after a conv ([] for 'none')."""
    if norm == "batch":
        return [nn.BatchNorm2d(channels)]
    if norm == "instance":
        return [nn.InstanceNorm2d(channels, affine=True)]
    return []


def _init_weights(model: nn.Module) -> None:
    """Conv weights ~ N(0, 0.02), conv biases 0 (DCGAN / pix2pix); norm layers keep (1, 0)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _check_src(src: torch.Tensor, in_channels: int, multiple: int, minimum: int, why: str) -> None:
    if src.dim() != 4 or src.shape[1] != in_channels:
        raise ValueError(
            f"src must be an image batch (B, {in_channels}, H, W), got {tuple(src.shape)}: "
            f"pass NCHW images with {in_channels} channel(s)"
        )
    h, w = src.shape[-2:]
    if h % multiple or w % multiple or h < minimum or w < minimum:
        fix_h = max(minimum, -(-h // multiple) * multiple)
        fix_w = max(minimum, -(-w // multiple) * multiple)
        raise ValueError(
            f"src is {h}x{w}, but H and W must be multiples of {multiple} and at least {minimum} ({why}): "
            f"resize or pad it (e.g. to {fix_h}x{fix_w})"
        )


# ---------------------------------------------------------------------------------- U-Net


@dataclass
class UNetConfig:
    resolution: int = 64  # size the model was trained at (recorded only; any multiple of 2**depth runs)
    in_channels: int = 3  # source image channels
    image_channels: int = 3  # output image channels
    base_channels: int = 32  # channels of the first (half-resolution) encoder level at width 1
    width: float = 1.0  # multiplier on every level's channels (students use < 1)
    depth: int = 4  # number of stride-2 downsamplings (the bottleneck is at 1 / 2**depth)
    max_mult: int = 8  # cap on a level's channel multiplier (x base_channels)
    norm: str = "batch"  # batch | instance | none
    # how the decoder doubles: convtranspose (4x4, stride 2, pix2pix) or nearest-conv (nearest 2x upsample + 3x3
    # conv: every layer then quantizes to int8 in ONNX Runtime, whose CPU provider has no int8 ConvTranspose)
    upsample: str = "convtranspose"

    def __post_init__(self):
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"--student-upsample must be one of {', '.join(UPSAMPLES)}, got {self.upsample!r}")
        if self.depth < 3:
            raise ValueError(f"--depth must be >= 3 (features are tapped at 1/4 and 1/2), got {self.depth}")
        if self.resolution < 2**self.depth or self.resolution % 2**self.depth:
            raise ValueError(f"--resolution must be a multiple of 2**depth = {2**self.depth}, got {self.resolution}")
        _check_sizes(self)
        if self.max_mult < 1:
            raise ValueError(f"--max-mult must be >= 1, got {self.max_mult}")
        _check_norm(self.norm)

    def level_channels(self) -> list[int]:
        """Channels of encoder level i (at 1 / 2**(i+1) of the input), finest first."""
        return [scaled(self.base_channels * min(2**i, self.max_mult), self.width) for i in range(self.depth)]


@GENERATORS.register("unet")
class UNetGenerator(nn.Module):
    """src (B, in_channels, H, W) -> image (B, image_channels, H, W) in [-1, 1]; the U-Net of pix2pix.

    Encoder (``downs``): a 4x4 stride-2 conv + LeakyReLU(0.2) (no norm), then per level a
    4x4 stride-2 conv + norm + LeakyReLU(0.2); the innermost level (the bottleneck, at
    1 / 2**depth) has no norm, as in pix2pix (a 1x1 map has no statistics to normalize).
    Decoder (``ups``): per level a 4x4 stride-2 ConvTranspose + norm + ReLU whose input is the
    level below concatenated (channels) with the mirrored encoder map, except the innermost,
    which sees the bottleneck alone; ``to_img`` (ConvTranspose to image_channels) + tanh.
    ``upsample="nearest-conv"``: each ConvTranspose is a nearest 2x upsample + 3x3 conv instead.

    ``return_features=True`` also returns 3 maps: the bottleneck, and the decoder outputs at
    1/4 and 1/2 of the input size (post-activation).
    """

    family = "unet"
    Config = UNetConfig

    def __init__(self, cfg: UNetConfig | dict | None = None, **kwargs):
        super().__init__()
        cfg = _init_i2i(self, UNetConfig, cfg, kwargs)
        self.depth = cfg.depth
        ch = cfg.level_channels()
        d = cfg.depth
        bias = cfg.norm != "batch"  # BatchNorm's shift makes a conv bias redundant
        downs = [nn.Sequential(nn.Conv2d(cfg.in_channels, ch[0], 4, 2, 1), nn.LeakyReLU(0.2))]
        for i in range(1, d - 1):
            downs.append(nn.Sequential(
                nn.Conv2d(ch[i - 1], ch[i], 4, 2, 1, bias=bias), *_norm_layer(cfg.norm, ch[i]), nn.LeakyReLU(0.2)
            ))  # fmt: skip
        downs.append(nn.Sequential(nn.Conv2d(ch[d - 2], ch[d - 1], 4, 2, 1), nn.LeakyReLU(0.2)))
        self.downs = nn.ModuleList(downs)
        ups = []
        for i in range(d - 2, -1, -1):  # output level i, at 1 / 2**(i+1)
            c_in = ch[d - 1] if i == d - 2 else 2 * ch[i + 1]
            ups.append(nn.Sequential(
                upsample2x(c_in, ch[i], cfg.upsample, bias), *_norm_layer(cfg.norm, ch[i]), nn.ReLU()
            ))  # fmt: skip
        self.ups = nn.ModuleList(ups)
        self.to_img = upsample2x(2 * ch[0], cfg.image_channels, cfg.upsample, bias=True)
        _init_weights(self)

    @property
    def feature_channels(self) -> list[int]:
        """Channels of the bottleneck, the 1/4 and the 1/2 decoder maps (read from the layers)."""
        return [self.downs[-1][0].out_channels, out_channels(self.ups[-2][0]), out_channels(self.ups[-1][0])]

    def forward(self, src: torch.Tensor, return_features: bool = False):
        m = 2**self.depth
        _check_src(src, self.in_channels, m, m, f"the U-Net downsamples {self.depth} times")
        skips = []
        h = src
        for down in self.downs:
            h = down(h)
            skips.append(h)
        feats = [h]
        for j, up in enumerate(self.ups):
            if j > 0:
                h = torch.cat([h, skips[-1 - j]], dim=1)
            h = up(h)
            if j >= len(self.ups) - 2:  # the decoder maps at 1/4 and 1/2
                feats.append(h)
        img = torch.tanh(self.to_img(torch.cat([h, skips[0]], dim=1)))
        return (img, feats) if return_features else img


# --------------------------------------------------------------------------------- ResNet


@dataclass
class ResnetConfig:
    resolution: int = 64  # size the model was trained at (recorded only; any multiple of 2**n_down runs)
    in_channels: int = 3  # source image channels
    image_channels: int = 3  # output image channels
    base_channels: int = 32  # channels of the full-resolution stem at width 1
    width: float = 1.0  # multiplier on every layer's channels (students use < 1)
    n_down: int = 2  # stride-2 downsamplings (each doubles the channels) before the residual blocks
    n_blocks: int = 6  # residual blocks at 1 / 2**n_down of the input
    norm: str = "instance"  # batch | instance | none

    def __post_init__(self):
        if self.n_down < 0:
            raise ValueError(f"--n-down must be >= 0, got {self.n_down}")
        if self.n_blocks < 1:
            raise ValueError(f"--n-blocks must be >= 1, got {self.n_blocks}")
        if self.resolution < 2 ** (self.n_down + 1) or self.resolution % 2**self.n_down:
            raise ValueError(
                f"--resolution must be a multiple of 2**n_down = {2**self.n_down} and at least "
                f"{2 ** (self.n_down + 1)}, got {self.resolution}"
            )
        _check_sizes(self)
        _check_norm(self.norm)

    def level_channels(self) -> list[int]:
        """Channels of the stem and of each downsampled level (the last one is the blocks')."""
        return [scaled(self.base_channels * 2**i, self.width) for i in range(self.n_down + 1)]


class ResnetBlock(nn.Module):
    """x + (reflect-pad, conv3x3, norm, ReLU, reflect-pad, conv3x3, norm)(x)."""

    def __init__(self, channels: int, norm: str):
        super().__init__()
        bias = norm != "batch"
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), *_norm_layer(norm, channels), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), *_norm_layer(norm, channels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@GENERATORS.register("resnet")
class ResnetGenerator(nn.Module):
    """src (B, in_channels, H, W) -> image (B, image_channels, H, W) in [-1, 1]; the ResNet
    generator of CycleGAN / pix2pix.

    ``stem``: reflect-pad 3, 7x7 conv + norm + ReLU; ``downs``: n_down 3x3 stride-2 convs +
    norm + ReLU doubling the channels; ``blocks``: n_blocks residual blocks; ``ups``: n_down
    3x3 stride-2 ConvTransposes + norm + ReLU halving them; ``to_img``: reflect-pad 3, 7x7
    conv to image_channels, then tanh.

    ``return_features=True`` also returns 3 maps: the outputs of the first, the middle
    (index n_blocks // 2) and the last residual block.
    """

    family = "resnet"
    Config = ResnetConfig

    def __init__(self, cfg: ResnetConfig | dict | None = None, **kwargs):
        super().__init__()
        cfg = _init_i2i(self, ResnetConfig, cfg, kwargs)
        self.n_down = cfg.n_down
        ch = cfg.level_channels()
        bias = cfg.norm != "batch"
        self.stem = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(cfg.in_channels, ch[0], 7, bias=bias), *_norm_layer(cfg.norm, ch[0]),
            nn.ReLU(),
        )  # fmt: skip
        self.downs = nn.ModuleList([
            nn.Sequential(nn.Conv2d(ch[i], ch[i + 1], 3, 2, 1, bias=bias), *_norm_layer(cfg.norm, ch[i + 1]), nn.ReLU())
            for i in range(cfg.n_down)
        ])  # fmt: skip
        self.blocks = nn.ModuleList([ResnetBlock(ch[-1], cfg.norm) for _ in range(cfg.n_blocks)])
        self.ups = nn.ModuleList([
            nn.Sequential(
                nn.ConvTranspose2d(ch[i + 1], ch[i], 3, 2, 1, output_padding=1, bias=bias),
                *_norm_layer(cfg.norm, ch[i]), nn.ReLU(),
            )
            for i in range(cfg.n_down - 1, -1, -1)
        ])  # fmt: skip
        self.to_img = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ch[0], cfg.image_channels, 7))
        self.taps = (0, cfg.n_blocks // 2, cfg.n_blocks - 1)
        _init_weights(self)

    @property
    def feature_channels(self) -> list[int]:
        """Channels of the tapped residual blocks' outputs (read from the layers)."""
        convs = [[m for m in self.blocks[i].body if isinstance(m, nn.Conv2d)] for i in self.taps]
        return [c[-1].out_channels for c in convs]

    def forward(self, src: torch.Tensor, return_features: bool = False):
        m = 2**self.n_down
        _check_src(src, self.in_channels, m, 2 * m,
                   f"the ResNet downsamples {self.n_down} times and reflect-pads the result")  # fmt: skip
        h = self.stem(src)
        for down in self.downs:
            h = down(h)
        feats = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i in self.taps:
                feats.extend([h] * self.taps.count(i))
        for up in self.ups:
            h = up(h)
        img = torch.tanh(self.to_img(h))
        return (img, feats) if return_features else img


# ------------------------------------------------------------------------------- PatchGAN


@dataclass
class PatchConfig:
    resolution: int = 64  # size the model was trained at (recorded only; any size >= 3 * 2**n_layers runs)
    in_channels: int = 3  # channels of the condition (the source image)
    image_channels: int = 3  # channels of the judged (real or generated) image
    base_channels: int = 64  # channels of the first layer at width 1
    width: float = 1.0  # multiplier on every layer's channels
    n_layers: int = 3  # stride-2 layers (3 = the 70x70 PatchGAN of pix2pix)
    spectral: bool = True  # spectral norm on every conv and no norm layers; False = BatchNorm (pix2pix)
    num_classes: int = 0  # must be 0: conditioned on the source image, not on labels

    def __post_init__(self):
        if self.n_layers < 1:
            raise ValueError(f"--n-layers must be >= 1, got {self.n_layers}")
        if self.resolution < 3 * 2**self.n_layers:
            raise ValueError(
                f"--resolution must be >= {3 * 2**self.n_layers} for n_layers={self.n_layers}, got {self.resolution}"
            )
        _check_sizes(self, "--d-width")
        if self.num_classes != 0:
            raise ValueError(
                f"--num-classes must be 0 for the patch discriminator (it is conditioned on the source "
                f"image, not on labels), got {self.num_classes}"
            )

    def layer_channels(self) -> list[int]:
        """Channels of the n_layers + 1 activations returned as features."""
        return [scaled(self.base_channels * min(2**i, 8), self.width) for i in range(self.n_layers + 1)]


@DISCRIMINATORS.register("patch")
class PatchDiscriminator(nn.Module):
    """x (B, image_channels, H, W), cond (B, in_channels, H, W) -> logits (B, 1, h, w).

    The conditional PatchGAN of pix2pix on ``cat([cond, x])``: a 4x4 stride-2 conv +
    LeakyReLU(0.2), n_layers - 1 4x4 stride-2 convs + norm + LeakyReLU, one 4x4 stride-1
    conv + norm + LeakyReLU, and a 4x4 stride-1 conv to 1 channel (``head``): each logit
    judges a 70x70 patch for n_layers=3 (h = H / 2**n_layers - 2). Norm is spectral norm on
    every conv (``spectral=True``) or BatchNorm after the inner convs (pix2pix).
    ``return_features=True`` also returns the n_layers + 1 LeakyReLU outputs.
    """

    family = "patch"
    Config = PatchConfig

    def __init__(self, cfg: PatchConfig | dict | None = None, **kwargs):
        super().__init__()
        cfg = _make_cfg(PatchConfig, cfg, kwargs)
        self.cfg = cfg
        self.in_channels = cfg.in_channels
        self.image_channels = cfg.image_channels
        self.num_classes = 0
        self.n_layers = cfg.n_layers
        ch = cfg.layer_channels()
        self.feature_channels = list(ch)

        def conv(c_in: int, c_out: int, stride: int, bias: bool = True) -> nn.Module:
            c = nn.Conv2d(c_in, c_out, 4, stride, 1, bias=bias)
            _init_weights(c)
            return spectral_norm(c) if cfg.spectral else c

        def norm(c: int) -> list[nn.Module]:
            return [] if cfg.spectral else [nn.BatchNorm2d(c)]

        inner_bias = cfg.spectral  # BatchNorm's shift makes a conv bias redundant
        layers = [nn.Sequential(conv(cfg.in_channels + cfg.image_channels, ch[0], 2), nn.LeakyReLU(0.2))]
        for i in range(1, cfg.n_layers + 1):
            stride = 2 if i < cfg.n_layers else 1
            layers.append(nn.Sequential(conv(ch[i - 1], ch[i], stride, inner_bias), *norm(ch[i]), nn.LeakyReLU(0.2)))
        self.layers = nn.ModuleList(layers)
        self.head = conv(ch[-1], 1, 1)

    def blocks(self) -> list[nn.Module]:
        """The feature blocks from input to output (what ``--d-freeze`` counts); the head is not one."""
        return list(self.layers)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, return_features: bool = False):
        if cond is None:
            raise ValueError("this discriminator is conditional: pass the source image")
        minimum = 3 * 2**self.n_layers
        if x.dim() != 4 or x.shape[1] != self.image_channels:
            raise ValueError(f"x must be an image batch (B, {self.image_channels}, H, W), got {tuple(x.shape)}")
        if cond.dim() != 4 or cond.shape[1] != self.in_channels or cond.shape[0] != x.shape[0] \
                or cond.shape[-2:] != x.shape[-2:]:  # fmt: skip
            raise ValueError(
                f"cond (the source image) must have shape ({x.shape[0]}, {self.in_channels}, "
                f"{x.shape[-2]}, {x.shape[-1]}) to match x, got {tuple(cond.shape)}"
            )
        if min(x.shape[-2:]) < minimum:
            raise ValueError(
                f"x is {x.shape[-2]}x{x.shape[-1]}, but the patch discriminator with n_layers={self.n_layers} "
                f"needs H and W >= {minimum}: use larger images or fewer layers"
            )
        h = torch.cat([cond, x], dim=1)
        feats = []
        for layer in self.layers:
            h = layer(h)
            feats.append(h)
        out = self.head(h)
        return (out, feats) if return_features else out
