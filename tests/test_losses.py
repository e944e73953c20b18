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


# ---------------------------------------------------------------- soft-label KD (issue 15)
def test_kd_loss_equals_a_hand_computed_value_with_t_squared_and_batchmean():
    import math

    # row 0: teacher (ln 3, 0) vs a uniform student (0, 0); row 1: student == teacher (KL 0)
    s = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    t = torch.tensor([[math.log(3.0), 0.0], [1.0, -1.0]])
    # T = 1: p_t = (3/4, 1/4), p_s = (1/2, 1/2): KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812...
    kl1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert abs(kl1 - 0.1308120) < 1e-6
    # batchmean: divided by the batch (2), not by batch x classes (4)
    torch.testing.assert_close(kd_loss(s, t, 1.0), torch.tensor(kl1 / 2))
    # T = 2: p_t = (sqrt3, 1) / (1 + sqrt3), p_s uniform; the KL is multiplied by T^2 = 4
    p = math.sqrt(3) / (1 + math.sqrt(3))
    kl2 = p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))
    torch.testing.assert_close(kd_loss(s, t, 2.0), torch.tensor(4 * kl2 / 2))
    assert abs(4 * kl2 - 0.1453631) < 1e-6
    # the classic mistake (probabilities as KLDivLoss's input) gives another number
    wrong = torch.nn.KLDivLoss(reduction="batchmean")(F.softmax(s, 1), F.softmax(t, 1))
    assert not torch.allclose(wrong, kd_loss(s, t, 1.0), atol=1e-3)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 8.0])
def test_kd_loss_gradient_pulls_the_student_toward_the_teacher(T):
    torch.manual_seed(1)
    t = torch.randn(3, 5) * 3
    s = torch.randn(3, 5, requires_grad=True)
    kd_loss(s, t, T).backward()
    # d/ds T^2 KL(p_t || p_s) = T (p_s - p_t) / B: T^2 keeps it on the CE's scale
    expect = T * (F.softmax(s.detach() / T, 1) - F.softmax(t / T, 1)) / 3
    torch.testing.assert_close(s.grad, expect)
    # one small step against the gradient lowers the loss and moves p_s toward p_t
    with torch.no_grad():
        s2 = s - 0.1 * s.grad
        before = (F.softmax(s / T, 1) - F.softmax(t / T, 1)).abs().sum()
        after = (F.softmax(s2 / T, 1) - F.softmax(t / T, 1)).abs().sum()
    assert kd_loss(s2, t, T) < kd_loss(s.detach(), t, T) and after < before
    # the teacher side gets no gradient
    t2 = t.clone().requires_grad_(True)
    kd_loss(s.detach().requires_grad_(True), t2, T).backward()
    assert t2.grad is None


def test_classifier_kd_loss_mixes_ce_and_kd_and_alpha_zero_is_ce():
    torch.manual_seed(2)
    s, t = torch.randn(6, 4), torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ce = F.cross_entropy(s, y)
    # alpha = 0 is exactly cross-entropy: the teacher is not even looked at
    assert torch.equal(classifier_kd_loss(s, torch.full_like(t, float("nan")), y, 4.0, 0.0), ce)
    assert torch.equal(classifier_kd_loss(s, None, y, 4.0, 0.9), ce)
    assert torch.equal(classifier_kd_loss(s, t, y, 3.0, 1.0), kd_loss(s, t, 3.0))
    loss, parts = classifier_kd_loss(s, t, y, 4.0, 0.9, return_parts=True)
    torch.testing.assert_close(loss, 0.1 * ce + 0.9 * kd_loss(s, t, 4.0))
    assert set(parts) == {"ce", "kd"} and torch.equal(parts["ce"], ce)
    with pytest.raises(ValueError, match="--kd-alpha"):
        classifier_kd_loss(s, t, y, 4.0, 1.5)
    with pytest.raises(ValueError, match="number of classes"):
        kd_loss(s, torch.randn(6, 3), 4.0)


def test_generator_and_classifier_paths_share_one_kd_loss():
    import gankd.distill
    import gankd.losses
    import gankd.train

    assert gankd.distill.kd_loss is gankd.losses.kd_loss
    assert gankd.train.classifier_kd_loss is gankd.losses.classifier_kd_loss
