"""Loss functions: adversarial (hinge, non-saturating), reconstruction, feature
matching through 1x1 adapters, perceptual distance, and soft-label KD.

Shared by GAN training, generator distillation and classifier distillation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ADV_LOSSES = ("hinge", "ns")


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Discriminator loss on logits (B,) for real and generated images."""
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "ns":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    raise ValueError(f"unknown adversarial loss '{kind}'; choose from {', '.join(ADV_LOSSES)}")


def g_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Generator adversarial loss on the discriminator's logits (B,) for its images."""
    if kind == "hinge":
        return -fake_logits.mean()
    if kind == "ns":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"unknown adversarial loss '{kind}'; choose from {', '.join(ADV_LOSSES)}")


def pixel_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Mean L1 or L2 between images of equal shape."""
    if kind == "l1":
        return (student - teacher).abs().mean()
    if kind == "l2":
        return (student - teacher).pow(2).mean()
    raise ValueError(f"unknown pixel loss '{kind}'; choose l1 or l2")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft-label KD: T^2 * KL(softmax(t/T) || softmax(s/T)), batch mean.

    ``F.kl_div`` takes the student's log-probabilities as input and the teacher's
    probabilities as target; T^2 keeps gradient magnitudes independent of T
    (Hinton et al., 2015).
    """
    if temperature <= 0:
        raise ValueError(f"--kd-temperature must be > 0, got {temperature}")
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * temperature**2


def classifier_kd_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """Classic classifier distillation: alpha * KD + (1 - alpha) * cross-entropy."""
    return alpha * kd_loss(student_logits, teacher_logits, temperature) + (1 - alpha) * F.cross_entropy(
        student_logits, labels
    )


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
