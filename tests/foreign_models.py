"""Tiny generators in the styles of other code bases, written for gankd's import/pruning tests.

- :class:`TutorialDCGAN`: the PyTorch DCGAN tutorial layout, one ``nn.Sequential`` of
  ConvTranspose2d / BatchNorm2d / ReLU ending in Tanh; latent (N, nz, 1, 1); 32x32.
- :class:`ResNetGenerator`: Linear to 4x4, residual up-blocks (nearest upsample + 3x3
  convs, 1x1 shortcut), tanh; latent (N, z); optional classes through an embedding added to z.
- :class:`UNetGenerator`: latent (N, z) -> 4x4 -> up-blocks whose outputs are concatenated
  with an upsampled copy of an earlier stage (a concatenation skip), tanh.
- :class:`UnitRangeRestorer`: an image-to-image net in the style of restoration code bases:
  source and output images in [0, 1] (not [-1, 1]), an encoder-decoder with a residual
  connection to the input, sigmoid output.
- :class:`NotAModule`: a plain class, for the refusal test.
- ``StyleGAN2Generator``: the StyleGAN2-style generator of benchmarks/thirdparty/stylegan2_style.py
  (mapping network, modulated convolutions, noise, toRGB skips), imported as ``stylegan2_style:Generator``.
- ``FastGANGenerator``: the FastGAN-style generator of benchmarks/thirdparty/fastgan_style.py (GLU
  up-blocks, skip-layer excitation, noise injection, spectral norm, two output heads).

Tests import them as ``foreign_models:Name`` with ``tests/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "thirdparty"))
from fastgan_style import Generator as FastGANGenerator  # noqa: E402,F401
from stylegan2_style import Generator as StyleGAN2Generator  # noqa: E402,F401

TINY_FASTGAN = {"ngf": 2, "nz": 16, "nc": 3}
TINY_STYLEGAN2 = {"z_dim": 16, "w_dim": 16, "n_mlp": 2, "resolution": 16, "img_channels": 3, "channel_base": 128,
                  "channel_max": 16}  # fmt: skip


class TutorialDCGAN(nn.Module):
    def __init__(self, nz: int = 16, ngf: int = 8, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),  # 1 -> 4
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # 4 -> 8
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),  # 8 -> 16
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # 16 -> 32
            nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


class ResBlockUp(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResNetGenerator(nn.Module):
    def __init__(self, z_dim: int = 16, ch: int = 16, num_classes: int = 0, img_channels: int = 3):
        super().__init__()
        self.z_dim, self.ch, self.num_classes = z_dim, ch, num_classes
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes > 0 else None
        self.linear = nn.Linear(z_dim, 4 * 4 * ch * 4)
        self.blocks = nn.Sequential(ResBlockUp(ch * 4, ch * 2), ResBlockUp(ch * 2, ch), ResBlockUp(ch, ch))
        self.bn = nn.BatchNorm2d(ch)
        self.to_rgb = nn.Conv2d(ch, img_channels, 3, 1, 1)

    def forward(self, z, y=None):
        if self.embed is not None:
            z = z + self.embed(y)
        h = self.linear(z).view(z.shape[0], self.ch * 4, 4, 4)
        h = self.blocks(h)
        return torch.tanh(self.to_rgb(F.relu(self.bn(h))))


class UNetGenerator(nn.Module):
    """Outputs in [0, 1] (sigmoid), to exercise --output-range 0,1."""

    def __init__(self, z_dim: int = 16, ch: int = 16):
        super().__init__()
        self.ch = ch
        self.fc = nn.Linear(z_dim, ch * 2 * 16)
        self.up1 = nn.Sequential(nn.ConvTranspose2d(ch * 2, ch, 4, 2, 1), nn.BatchNorm2d(ch), nn.ReLU())  # 8
        self.up2 = nn.Sequential(nn.ConvTranspose2d(ch, ch, 4, 2, 1), nn.BatchNorm2d(ch), nn.ReLU())  # 16
        self.skip = nn.Conv2d(ch * 2, ch, 1)  # from the 4x4 stage, upsampled to 16
        self.fuse = nn.Sequential(nn.Conv2d(ch * 2, ch, 3, 1, 1), nn.ReLU())
        self.out = nn.Conv2d(ch, 3, 3, 1, 1)

    def forward(self, z):
        h0 = F.relu(self.fc(z).view(z.shape[0], -1, 4, 4))  # -1: the 4x4 stage can be pruned
        h = self.up2(self.up1(h0))
        s = F.interpolate(self.skip(h0), scale_factor=4, mode="nearest")
        h = self.fuse(torch.cat([h, s], dim=1))
        return torch.sigmoid(self.out(h))


class NotAModule:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial statistics and affine values (as a trained model has)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


@torch.no_grad()
def calibrated_bn(model: nn.Module, latent: tuple[int, ...], seed: int = 0) -> nn.Module:
    """BatchNorm running statistics measured on the model's own activations (as a trained model's are), so a
    random deep generator has unit-scale maps instead of values in the 1e5s."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average
    model.train()
    for _ in range(4):
        model(torch.randn(16, *latent, generator=g))
    return model.eval()


class TokenLatentGenerator(nn.Module):
    """Latent (N, 2, 16) (two tokens): the first layer alone does not reveal it (detection fails)."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.proj = nn.Linear(dim, 96)

    def forward(self, z):
        return torch.tanh(self.proj(z).reshape(z.shape[0], 3, 8, 8))


class UnitRangeRestorer(nn.Module):
    """x in [0, 1] (B, 3, H, W), H and W even -> restored image in [0, 1]."""

    def __init__(self, ch: int = 8):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, ch, 3, 1, 1), nn.ReLU(), nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.ReLU())
        self.dec = nn.Sequential(nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1), nn.ReLU(), nn.Conv2d(ch, 3, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.dec(self.enc(x)) + (x * 6 - 3))
