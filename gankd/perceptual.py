"""Perceptual distances for training losses (never for scoring).

``fmnist``: an LPIPS-style distance on the shipped fmnist-perceptual network: each
layer's features are unit-normalised over channels, squared differences averaged
over channels and space, summed over layers. Its class head also serves soft-label
KD. ``lpips-alex`` / ``lpips-vgg``: the ``lpips`` package with ImageNet trunks, used
only when the trunk weights exist locally (this machine cannot download them).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

PERCEPTUAL_NETS = ("fmnist", "lpips-alex", "lpips-vgg")
LPIPS_TRUNK_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def _normalize(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class ClassifierPerceptual(nn.Module):
    """LPIPS-style distance and class logits from a frozen gankd classifier.

    ``forward(x, y)`` with x, y (B, C, H, W) in [-1, 1] -> distance (B,).
    ``features(x)`` -> (list of maps, logits) for reuse across losses.
    """

    has_logits = True

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.net = classifier.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):  # the loss network always stays in eval mode
        return super().train(False)

    def features(self, x: torch.Tensor):
        return self.net.features_and_logits(x)

    @staticmethod
    def distance(fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        d = [(_normalize(a) - _normalize(b)).pow(2).mean(dim=(1, 2, 3)) for a, b in zip(fa, fb)]
        return torch.stack(d).sum(0)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distance(self.features(x)[0], self.features(y)[0])


class LPIPSPerceptual(nn.Module):
    """The ``lpips`` package (calibrated heads on ImageNet trunks); gray is tiled to RGB,
    images under 64 px are upsampled to 64 (AlexNet's maps collapse below that)."""

    has_logits = False

    def __init__(self, net: str):
        super().__init__()
        hub = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_TRUNK_FILES[net]
        if not hub.is_file():
            raise FileNotFoundError(
                f"--perceptual lpips-{net} needs the ImageNet trunk {hub.name}: copy it to {hub.parent}/ "
                "(or set TORCH_HOME), or use --perceptual fmnist"
            )
        import lpips

        self.lpips = lpips.LPIPS(net=net, verbose=False).eval()
        for p in self.lpips.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x, y = x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)
        if x.shape[-1] < 64:
            x = F.interpolate(x, size=64, mode="bilinear", align_corners=False)
            y = F.interpolate(y, size=64, mode="bilinear", align_corners=False)
        return self.lpips(x, y, normalize=False).flatten()


def build_perceptual(name: str, path: str | Path | None = None) -> nn.Module:
    """A frozen perceptual distance by name (see module doc)."""
    if name == "fmnist":
        from gankd.checkpoint import load_classifier

        try:
            return ClassifierPerceptual(load_classifier(path or "fmnist-perceptual"))
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"perceptual network not found ({e}); train it with `gankd train-classifier --family resnet "
                "--out pretrained/fmnist-perceptual`, pass --set perceptual_path=DIR, or use --perc 0 --kd 0"
            ) from e
    if name in ("lpips-alex", "lpips-vgg"):
        return LPIPSPerceptual(name.split("-")[1])
    raise ValueError(f"unknown --perceptual '{name}'; choose one of: {', '.join(PERCEPTUAL_NETS)}")
