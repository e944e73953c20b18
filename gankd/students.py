"""Student construction: the teacher's family at a smaller width, initialised either
randomly or by inheriting the teacher's most important channels.

Pruning keeps, in every stage, the output channels whose filters have the largest L1
norm, and slices every connected tensor consistently: the next layer's input
channels, BatchNorm statistics and conditional-BatchNorm embeddings. At width 1.0 a
pruned student is an exact copy of the teacher.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from gankd.adapter import GeneratorAdapter
from gankd.models.layers import scaled
from gankd.registry import GENERATORS, Registry

INITS = ("prune", "random")


def student_channels(teacher: nn.Module, width: float | None, channels: list[int] | None) -> list[int]:
    """Per-stage channels of the student: explicit ``channels`` or teacher's x ``width``."""
    t_ch = list((teacher.model if isinstance(teacher, GeneratorAdapter) else teacher).feature_channels)
    if channels is not None:
        if len(channels) != len(t_ch) or min(channels) < 1:
            raise ValueError(f"--channels needs {len(t_ch)} positive entries (teacher has {t_ch})")
        return list(channels)
    if width is None or width <= 0:
        raise ValueError(f"--width must be > 0, got {width}")
    return [scaled(c, width) for c in t_ch]


def build_student(teacher: nn.Module, width: float | None = 0.25, channels: list[int] | None = None,
                  init: str = "prune", seed: int = 0, upsample: str | None = None,
                  layout: str | None = None) -> nn.Module:  # fmt: skip
    """A student of the teacher's family with fewer channels (train mode, CPU). ``upsample``: the
    student's own way of doubling a stage (dcgan: ``nearest-conv``); ``layout``: its own layout
    (dcgan: ``latency``); layers whose shapes then differ from the teacher's start from random
    weights, the rest inherit the teacher's top channels."""
    if init not in INITS:
        raise ValueError(f"--init must be one of {INITS}, got '{init}'")
    teacher = teacher.model if isinstance(teacher, GeneratorAdapter) else teacher  # a family module, or its adapter
    ch = student_channels(teacher, width, channels)
    extra = {k: v for k, v in (("upsample", upsample), ("layout", layout)) if v}
    cfg = dataclasses.replace(teacher.cfg, channels=tuple(ch), width=1.0, **extra)
    torch.manual_seed(seed)
    student = GENERATORS.get(teacher.family)(cfg)
    if init == "prune":
        if teacher.family not in WIDTH_PRUNERS:
            raise ValueError(
                f"--init prune is not available for family '{teacher.family}' "
                f"(available: {', '.join(sorted(WIDTH_PRUNERS))}); use --init random"
            )
        WIDTH_PRUNERS.get(teacher.family)(teacher, student)
    return student.train()


def _topk(importance: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest entries, in ascending index order (keeps layout stable)."""
    return importance.topk(k).indices.sort().values


@torch.no_grad()
def _copy_cbn(dst, src, keep: torch.Tensor) -> None:
    dst.bn.running_mean.copy_(src.bn.running_mean[keep])
    dst.bn.running_var.copy_(src.bn.running_var[keep])
    dst.bn.num_batches_tracked.copy_(src.bn.num_batches_tracked)
    if dst.num_classes == 0:  # a plain BatchNorm: a conditional one's scale and shift averaged over the classes
        dst.bn.weight.copy_(src.bn.weight[keep] if src.num_classes == 0 else src.gamma.weight[:, keep].mean(0))
        dst.bn.bias.copy_(src.bn.bias[keep] if src.num_classes == 0 else src.beta.weight[:, keep].mean(0))
    else:
        dst.gamma.weight.copy_(src.gamma.weight[:, keep])
        dst.beta.weight.copy_(src.beta.weight[:, keep])


@torch.no_grad()
def prune_dcgan(teacher: nn.Module, student: nn.Module) -> list[torch.Tensor]:
    """Copy the teacher's top-L1 channels into ``student`` (DCGAN family). Returns kept indices."""
    t_ch, s_ch = teacher.feature_channels, student.feature_channels
    if any(s > t for s, t in zip(s_ch, t_ch)):
        raise ValueError(f"student channels {s_ch} exceed the teacher's {t_ch}; prune only shrinks: pass a --width "
                         f"below 1, or --init random for a student wider than its teacher")  # fmt: skip
    kept = []
    # stage 0: the linear layer emits C0 x 4 x 4, channel-major (view(B, C0, 4, 4))
    w = teacher.fc.weight.view(t_ch[0], 16, -1)
    keep = _topk(w.abs().sum(dim=(1, 2)), s_ch[0])
    student.fc.weight.copy_(w[keep].reshape(-1, w.shape[-1]))
    _copy_cbn(student.norms[0], teacher.norms[0], keep)
    kept.append(keep)
    for i, (s_up, t_up) in enumerate(zip(student.ups, teacher.ups)):  # a latency-layout student has one fewer
        w = t_up.weight  # (C_in, C_out, k, k)
        keep_out = _topk(w.abs().sum(dim=(0, 2, 3)), s_ch[i + 1])
        if isinstance(s_up, type(t_up)):  # another upsampling layer (nearest-conv): its fresh weights stay
            s_up.weight.copy_(w[kept[-1]][:, keep_out])
        _copy_cbn(student.norms[i + 1], teacher.norms[i + 1], keep_out)
        kept.append(keep_out)
    if isinstance(student.to_img, type(teacher.to_img)):  # else the latency layout's last doubling: fresh weights
        student.to_img.weight.copy_(teacher.to_img.weight[:, kept[-1]])
        student.to_img.bias.copy_(teacher.to_img.bias)
    return kept


# families whose students are the family itself at a smaller width (their own channel plan), with a function
# that copies the teacher's top channels into such a student; other families are cut by gankd.pruning.PRUNERS
WIDTH_PRUNERS = Registry("width-scaled family", ordered=True)
WIDTH_PRUNERS.add("dcgan", prune_dcgan)


def scales_by_width(family: str | None) -> bool:
    """Whether ``family``'s students are built at a width (:data:`WIDTH_PRUNERS`) rather than pruned."""
    return family is not None and family in WIDTH_PRUNERS


def frozen_copy(model: nn.Module) -> nn.Module:
    """Deep copy in eval mode with gradients off (for teachers and loss networks)."""
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m
