"""Loss functions: adversarial (hinge, non-saturating), reconstruction, feature
matching through 1x1 adapters, perceptual distance, and soft-label KD.

Shared by GAN training, generator distillation and classifier distillation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gankd.registry import Registry


@dataclass(frozen=True)
class AdversarialLoss:
    """A GAN objective on the discriminator's logits (B,): ``d(real, fake)`` for D, ``g(fake)`` for G."""

    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g: Callable[[torch.Tensor], torch.Tensor]


ADVERSARIAL = Registry("adversarial loss", ordered=True)  # --loss, --adv-loss
ADVERSARIAL.add("hinge", AdversarialLoss(d=lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
                                         g=lambda fake: -fake.mean()))  # fmt: skip
ADVERSARIAL.add("ns", AdversarialLoss(d=lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
                                      g=lambda fake: F.softplus(-fake).mean()))  # fmt: skip

PIXEL = Registry("pixel loss", ordered=True)  # --pixel-kind: (student, teacher) images of one shape -> scalar
PIXEL.add("l1", lambda s, t: (s - t).abs().mean())
PIXEL.add("l2", lambda s, t: (s - t).pow(2).mean())


def _adversarial(kind: str) -> AdversarialLoss:
    if kind not in ADVERSARIAL:
        raise ValueError(f"unknown adversarial loss '{kind}'; choose from {', '.join(ADVERSARIAL.names())}")
    return ADVERSARIAL.get(kind)


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Discriminator loss on logits (B,) for real and generated images."""
    return _adversarial(kind).d(real_logits, fake_logits)


def g_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Generator adversarial loss on the discriminator's logits (B,) for its images."""
    return _adversarial(kind).g(fake_logits)


def pixel_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Mean L1 or L2 (or another registered :data:`PIXEL` loss) between images of equal shape."""
    if kind not in PIXEL:
        raise ValueError(f"unknown pixel loss '{kind}'; choose {' or '.join(PIXEL.names())}")
    return PIXEL.get(kind)(student, teacher)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft-label KD (Hinton et al., 2015): T^2 * KL(softmax(t/T) || softmax(s/T)), batch mean.

    The one KD term of gankd: the classifier path (``train-classifier --teacher``) and
    the generator path (``compress --kd``, on a classifier's logits of generated images)
    both call it. student_logits, teacher_logits: (B, K) raw logits; the teacher side is
    detached. ``F.kl_div`` takes the student's LOG-probabilities as input (feeding it
    probabilities is the classic mistake) and the teacher's probabilities as target.
    T^2 keeps the gradient, T * (softmax(s/T) - softmax(t/T)) / B, on the scale of the
    cross-entropy's as T changes. Returns a scalar >= 0 (0 when s == t).
    """
    if temperature <= 0:
        raise ValueError(f"--kd-temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"KD needs logits of one shape: student {tuple(student_logits.shape)}, teacher "
            f"{tuple(teacher_logits.shape)}; use a teacher with the student's number of classes"
        )
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * temperature**2


def classifier_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    return_parts: bool = False,
):
    """Classic classifier distillation: (1 - alpha) * CE(s, labels) + alpha * kd_loss(s, t, T).

    student_logits, teacher_logits: (B, K); labels: (B,) int64. alpha = 0 (or no teacher
    logits) is plain cross-entropy, and the KD term is then not computed at all.
    ``return_parts=True`` returns ``(loss, {"ce": ..., "kd": ...})`` for logging.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"--kd-alpha must be in [0, 1], got {alpha}")
    ce = F.cross_entropy(student_logits, labels)
    parts = {"ce": ce}
    if teacher_logits is None or alpha == 0:
        loss = ce
    else:
        kd = kd_loss(student_logits, teacher_logits, temperature)
        parts["kd"] = kd
        loss = alpha * kd if alpha == 1 else (1 - alpha) * ce + alpha * kd
    return (loss, parts) if return_parts else loss


class FeatureAdapters(nn.Module):
    """Learned 1x1 convs mapping student feature maps to the teacher's channels.

    ``forward(s_feats, t_feats)`` -> mean over chosen layers of MSE(adapter(s), t).
    """

    def __init__(self, student_channels: list[int], teacher_channels: list[int], layers: list[int]):
        super().__init__()
        for i in layers:
            if not 0 <= i < len(teacher_channels):
                raise ValueError(
                    f"--feat-layers index {i} out of range; the teacher has "
                    f"{len(teacher_channels)} feature maps (0..{len(teacher_channels) - 1})"
                )
        self.layers = list(layers)
        self.adapters = nn.ModuleList(
            [nn.Conv2d(student_channels[i], teacher_channels[i], 1) for i in layers]
        )

    def forward(self, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor]) -> torch.Tensor:
        losses = [
            F.mse_loss(a(s_feats[i]), t_feats[i].detach()) for a, i in zip(self.adapters, self.layers)
        ]
        return torch.stack(losses).mean()
