import pytest
import torch
from testkit import tiny_generator

from gankd.students import build_student, student_channels


def _trained_like(num_classes=10):
    """A tiny teacher with non-trivial weights and BN statistics."""
    g = tiny_generator(num_classes=num_classes, base_channels=8)
    with torch.no_grad():
        for p in g.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
        g.train()
        for _ in range(3):
            g(torch.randn(32, g.z_dim), torch.arange(32) % 10 if num_classes else None)
    return g.eval()


@pytest.mark.parametrize("num_classes", [0, 10])
def test_prune_width_one_reproduces_teacher(num_classes):
    t = _trained_like(num_classes)
    s = build_student(t, 1.0, init="prune").eval()
    z = torch.randn(6, t.z_dim)
    y = torch.arange(6) if num_classes else None
    assert torch.equal(s(z, y), t(z, y))


def test_prune_starts_closer_than_random():
    t = _trained_like()
    z, y = torch.randn(64, t.z_dim), torch.arange(64) % 10
    with torch.no_grad():
        ref = t(z, y)
        d_prune = (build_student(t, 0.5, init="prune").eval()(z, y) - ref).abs().mean()
        d_rand = (build_student(t, 0.5, init="random").eval()(z, y) - ref).abs().mean()
    assert d_prune < 0.8 * d_rand


def test_student_channels_width_and_explicit():
    t = tiny_generator(base_channels=8)
    assert student_channels(t, 0.5, None) == [c // 2 for c in t.feature_channels]
    s = build_student(t, channels=[4, 3, 2, 1], init="prune")
    assert s.feature_channels == [4, 3, 2, 1]
    with pytest.raises(ValueError, match="--channels needs 4"):
        build_student(t, channels=[4, 3])
    with pytest.raises(ValueError, match="--width must be > 0"):
        build_student(t, 0.0)
    with pytest.raises(ValueError, match="prune only shrinks"):
        build_student(t, 2.0, init="prune")
