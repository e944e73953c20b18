"""Small image classifiers trained by gankd: the evaluator (metrics only) and the
perceptual network (training losses only). Two different architectures so that the
network that scores a student is never the one that trained it.

All take images (B, C, R, R) in [-1, 1] and expose:
``forward`` -> logits (B, K); ``embed`` -> penultimate features (B, F), used for
FID/KID/PRC; ``feature_maps`` -> list of intermediate maps, used for LPIPS-style
distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gankd.models.layers import scaled
from gankd.registry import CLASSIFIERS


@dataclass
class ClassifierConfig:
    resolution: int = 32  # input height = width
    image_channels: int = 1  # 1 = gray, 3 = RGB
    num_classes: int = 10  # number of output logits
    base_channels: int = 32  # channels of the first stage
    width: float = 1.0  # multiplier on every stage's channels
    feature_dim: int = 128  # size of the penultimate embedding (FID features)
    dropout: float = 0.3  # dropout before the class head
    convs_per_stage: tuple[int, ...] = (2, 2, 2)  # vgg: 3x3 convs in each of the three stages

    def __post_init__(self):
        if self.num_classes < 2:
            raise ValueError(f"--num-classes must be >= 2 for a classifier, got {self.num_classes}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.width <= 0:  # scaled() would silently build 1-channel stages
            raise ValueError(f"--width must be > 0, got {self.width}")
        if self.base_channels < 1 or self.feature_dim < 1:
            raise ValueError("base_channels and feature_dim must be >= 1")
        if len(self.convs_per_stage) != 3 or min(self.convs_per_stage) < 1:
            raise ValueError(f"convs_per_stage needs 3 entries >= 1, got {self.convs_per_stage}")
        if self.image_channels not in (1, 3):
            raise ValueError(f"image_channels must be 1 or 3, got {self.image_channels}")


class _ClassifierBase(nn.Module):
    Config = ClassifierConfig

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._embed_from(self.feature_maps(x)[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.embed(x)))

    def features_and_logits(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Intermediate maps and class logits from one pass (used by losses)."""
        feats = self.feature_maps(x)
        return feats, self.head(self.drop(self._embed_from(feats[-1])))


@CLASSIFIERS.register("vgg")
class VGGClassifier(_ClassifierBase):
    """Three stages of 3x3 conv+BN+ReLU (``convs_per_stage``), max-pool between; GAP; FC embed; head."""

    family = "vgg"

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        ch = [scaled(cfg.base_channels * 2**i, cfg.width) for i in range(3)]
        c_in = cfg.image_channels
        self.stages = nn.ModuleList()
        for i, c in enumerate(ch):
            stage = [nn.MaxPool2d(2)] if i > 0 else []
            for _ in range(cfg.convs_per_stage[i]):
                stage += [nn.Conv2d(c_in, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
                c_in = c
            self.stages.append(nn.Sequential(*stage))
        self.feature_channels = ch
        self.fc = nn.Sequential(nn.Linear(ch[-1], cfg.feature_dim), nn.ReLU())
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for s in self.stages:
            x = s(x)
            feats.append(x)
        return feats

    def _embed_from(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h.mean(dim=(2, 3)))


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )
        self.act = nn.ReLU()

    def forward(self, x):
        h = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(h)) + self.skip(x))


@CLASSIFIERS.register("resnet")
class ResNetClassifier(_ClassifierBase):
    """A stem conv then three residual blocks (stride 1, 2, 2); GAP; FC embed; head."""

    family = "resnet"

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        ch = [scaled(cfg.base_channels * 2**i, cfg.width) for i in range(3)]
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.image_channels, ch[0], 3, 1, 1, bias=False), nn.BatchNorm2d(ch[0]), nn.ReLU()
        )
        self.blocks = nn.ModuleList(
            [_BasicBlock(ch[0], ch[0], 1), _BasicBlock(ch[0], ch[1], 2), _BasicBlock(ch[1], ch[2], 2)]
        )
        self.feature_channels = [ch[0]] + ch
        self.fc = nn.Sequential(nn.Linear(ch[-1], cfg.feature_dim), nn.ReLU())
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = [x]
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return feats

    def _embed_from(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h.mean(dim=(2, 3)))
