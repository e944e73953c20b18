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


def scaled(channels: int, width: float) -> int:
    """Channel count at a width multiplier, never below 1."""
    return max(1, int(round(channels * width)))
