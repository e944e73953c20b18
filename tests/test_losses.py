import pytest
import torch
import torch.nn.functional as F

from gankd.losses import FeatureAdapters, classifier_kd_loss, d_loss, g_loss, kd_loss, pixel_loss


def _descends(loss_fn, params, steps=30, lr=0.05):
    opt = torch.optim.Adam(params, lr=lr)
    first = loss_fn().item()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    return first, loss_fn().item()


def test_pixel_loss_decreases():
    torch.manual_seed(0)
    target = torch.rand(4, 1, 8, 8) * 2 - 1
    x = torch.zeros(4, 1, 8, 8, requires_grad=True)
    for kind in ("l1", "l2"):
        a, b = _descends(lambda: pixel_loss(x, target, kind), [x])
        assert b < 0.5 * a


def test_kd_loss_matches_definition_and_decreases():
    torch.manual_seed(0)
    t = torch.randn(5, 10)
    s = torch.randn(5, 10, requires_grad=True)
    T = 3.0
    p_t = F.softmax(t / T, 1)
    ref = (p_t * (p_t.log() - F.log_softmax(s / T, 1))).sum(1).mean() * T * T
    assert torch.allclose(kd_loss(s, t, T), ref, atol=1e-6)
    assert kd_loss(t, t, T).abs() < 1e-6
    a, b = _descends(lambda: kd_loss(s, t, T), [s])
    assert b < 0.2 * a
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(s, t, 0)
    loss = classifier_kd_loss(s, t, torch.zeros(5, dtype=torch.long), T, 0.5)
    assert torch.isfinite(loss)


def test_feature_adapters_decrease_and_validate():
    torch.manual_seed(0)
    s_feats = [torch.randn(2, 3, 4, 4), torch.randn(2, 2, 8, 8)]
    t_feats = [torch.randn(2, 6, 4, 4), torch.randn(2, 4, 8, 8)]
    ad = FeatureAdapters([3, 2], [6, 4], [0, 1])
    a, b = _descends(lambda: ad(s_feats, t_feats), list(ad.parameters()))
    assert b < a
    with pytest.raises(ValueError, match="out of range"):
        FeatureAdapters([3], [6], [2])


@pytest.mark.parametrize("kind", ["hinge", "ns"])
def test_adversarial_losses(kind):
    real = torch.tensor([2.0, 3.0])
    fake = torch.tensor([-2.0, -3.0])
    assert d_loss(real, fake, kind) < d_loss(fake, real, kind)
    assert g_loss(real, kind) < g_loss(fake, kind)
    with pytest.raises(ValueError, match="unknown adversarial"):
        d_loss(real, fake, "wgan")


def test_feature_adapters_map_student_to_teacher_channels_and_never_train_the_teacher():
    from testkit import tiny_generator

    from gankd.students import build_student

    teacher = tiny_generator(base_channels=8).train()  # grads left ON: the loss itself must cut them
    student = build_student(teacher, 0.25, init="random").train()
    s_ch, t_ch = student.feature_channels, teacher.feature_channels
    assert all(s < t for s, t in zip(s_ch, t_ch))
    layers = [0, 2, len(t_ch) - 1]
    ad = FeatureAdapters(s_ch, t_ch, layers)
    # adapter k is a 1x1 conv from student stage layers[k]'s channels to the teacher's same stage
    for a, i in zip(ad.adapters, layers):
        assert (a.in_channels, a.out_channels, a.kernel_size) == (s_ch[i], t_ch[i], (1, 1))
    z, y = torch.randn(4, teacher.z_dim), torch.arange(4)
    _, t_feats = teacher(z, y, return_features=True)
    _, s_feats = student(z, y, return_features=True)
    assert all(t.requires_grad for t in t_feats)  # the teacher graph is live
    for a, i in zip(ad.adapters, layers):
        assert a(s_feats[i]).shape == t_feats[i].shape
    loss = ad(s_feats, t_feats)
    ref = torch.stack([F.mse_loss(a(s_feats[i]), t_feats[i]) for a, i in zip(ad.adapters, layers)]).mean()
    assert torch.allclose(loss, ref)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters()), "the feature loss moved the teacher"
    assert all(a.weight.grad is not None and a.weight.grad.abs().sum() > 0 for a in ad.adapters)
    # the student gets gradient through every chosen layer (its first stage feeds them all)
    assert student.fc.weight.grad is not None and student.fc.weight.grad.abs().sum() > 0
