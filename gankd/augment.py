"""Differentiable augmentation (DiffAugment-style) applied to both real and fake
images before the discriminator, so D cannot overfit a small dataset.

Policies (comma-separated): ``translation`` (shift by up to 1/8 of the size, zero
fill), ``cutout`` (zero a random square of half the size), ``color`` (brightness,
saturation, contrast jitter). Each op is applied to every image (``p`` = 1, as in
DiffAugment) or to a random share ``p`` of the batch (ADA-style: the discriminator also sees
un-jittered images, so e.g. colour is not hidden from it altogether). Randomness comes from an
explicit ``torch.Generator`` so training resumes exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("translation", "cutout", "color")


def parse_policy(policy: str) -> list[str]:
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for n in names:
        if n not in POLICIES:
            raise ValueError(f"unknown --diffaug policy '{n}'; choose from {', '.join(POLICIES)}")
    return names


def diff_augment(x: torch.Tensor, policy: str, gen: torch.Generator, p: float = 1.0) -> torch.Tensor:
    """Augment a batch (B, C, H, W) in [-1, 1]; gradients flow through. With ``p`` < 1 each op
    reaches each image with probability ``p`` (independently per op)."""
    for name in parse_policy(policy):
        out = _OPS[name](x, gen)
        if p < 1:
            out = torch.where(_rand((x.shape[0], 1, 1, 1), gen, x.device) < p, out, x)
        x = out
    return x


def _rand(shape, gen, device):
    return torch.rand(shape, generator=gen).to(device)


def _color(x, gen):
    b = x.shape[0]
    x = x + (_rand((b, 1, 1, 1), gen, x.device) - 0.5)
    if x.shape[1] == 3:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_rand((b, 1, 1, 1), gen, x.device) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand((b, 1, 1, 1), gen, x.device) + 0.5) + mean


def _translation(x, gen, ratio: float = 0.125):
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, (b,), generator=gen)
    ty = torch.randint(-sw, sw + 1, (b,), generator=gen)
    padded = F.pad(x + 1, (sw, sw, sh, sh))  # pad with "black" (-1) after the shift below
    rows = (torch.arange(h)[None, :] + tx[:, None] + sh).to(x.device)  # (B, H)
    cols = (torch.arange(w)[None, :] + ty[:, None] + sw).to(x.device)  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2) - 1


def _cutout(x, gen, ratio: float = 0.5):
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + 1 - ch % 2, (b,), generator=gen)
    oy = torch.randint(0, w + 1 - cw % 2, (b,), generator=gen)
    r = torch.arange(h)[None, :] - ox[:, None] + ch // 2
    c = torch.arange(w)[None, :] - oy[:, None] + cw // 2
    keep = ~(((r >= 0) & (r < ch))[:, :, None] & ((c >= 0) & (c < cw))[:, None, :])
    mask = keep[:, None].to(x.device, x.dtype)
    return (x + 1) * mask - 1  # cut regions become black (-1)


_OPS = {"translation": _translation, "cutout": _cutout, "color": _color}
