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


def _planted_teacher(num_classes, seed=0):
    """A teacher whose important channels are known: in every stage a random subset of
    output channels gets 10x larger filters, so it has the largest L1 norms."""
    t = _trained_like(num_classes)
    gen = torch.Generator().manual_seed(seed)
    s_ch = [c // 2 for c in t.feature_channels]
    planted = [torch.randperm(c, generator=gen)[:k].sort().values for c, k in zip(t.feature_channels, s_ch)]
    with torch.no_grad():
        for p in t.parameters():  # every slice below must be told apart from its neighbours
            p.copy_(torch.randn(p.shape, generator=gen))
        for norm in t.norms:
            norm.bn.running_mean.copy_(torch.randn(norm.bn.running_mean.shape, generator=gen))
            norm.bn.running_var.copy_(torch.rand(norm.bn.running_var.shape, generator=gen) + 0.5)
        for c in planted[0].tolist():  # stage 0: the linear layer's rows c*16 .. c*16+15
            t.fc.weight[c * 16 : (c + 1) * 16] *= 10
        for up, keep in zip(t.ups, planted[1:]):  # ConvTranspose2d weight: (C_in, C_out, k, k)
            up.weight[:, keep] *= 10
    return t, s_ch, planted


@pytest.mark.parametrize("num_classes", [0, 10])
def test_prune_keeps_the_top_l1_channels_and_slices_every_connected_tensor(num_classes):
    t, s_ch, planted = _planted_teacher(num_classes)
    s = build_student(t, 0.5, init="prune")
    assert s.feature_channels == s_ch and all(len(k) < c for k, c in zip(planted, t.feature_channels))
    k0 = planted[0]
    # stage 0: output rows of the kept channels, in index order
    assert torch.equal(s.fc.weight.view(s_ch[0], 16, -1), t.fc.weight.view(-1, 16, t.z_dim)[k0])
    for i, (s_up, t_up) in enumerate(zip(s.ups, t.ups)):
        k_in, k_out = planted[i], planted[i + 1]
        # the next layer's INPUT channels are the previous stage's kept ones
        assert torch.equal(s_up.weight, t_up.weight[k_in][:, k_out]), f"ups[{i}]"
    for i, (s_n, t_n, keep) in enumerate(zip(s.norms, t.norms, planted)):
        assert torch.equal(s_n.bn.running_mean, t_n.bn.running_mean[keep]), f"norms[{i}] mean"
        assert torch.equal(s_n.bn.running_var, t_n.bn.running_var[keep]), f"norms[{i}] var"
        if num_classes:  # conditional BatchNorm: per-class scale and shift, sliced on channels
            assert torch.equal(s_n.gamma.weight, t_n.gamma.weight[:, keep]), f"norms[{i}] gamma"
            assert torch.equal(s_n.beta.weight, t_n.beta.weight[:, keep]), f"norms[{i}] beta"
        else:
            assert torch.equal(s_n.bn.weight, t_n.bn.weight[keep]), f"norms[{i}] weight"
            assert torch.equal(s_n.bn.bias, t_n.bn.bias[keep]), f"norms[{i}] bias"
    assert torch.equal(s.to_img.weight, t.to_img.weight[:, planted[-1]])
    assert torch.equal(s.to_img.bias, t.to_img.bias)
    # and the planted channels are not simply the first ones (a "keep the first k" bug fails)
    assert any(not torch.equal(k, torch.arange(len(k))) for k in planted)


def test_nearest_conv_student_inherits_what_fits_and_quantizes_every_conv():
    from gankd.models.dcgan import DCGANGenerator, GeneratorConfig
    from gankd.students import build_student

    torch.manual_seed(0)
    t = DCGANGenerator(GeneratorConfig(base_channels=8, z_dim=16, num_classes=0)).eval()
    s = build_student(t, 0.5, upsample="nearest-conv").eval()
    assert s.cfg.upsample == "nearest-conv" and all(isinstance(u, torch.nn.Sequential) for u in s.ups)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in s.modules())
    p = build_student(t, 0.5).eval()  # the same channels kept: fc, norms and the image layer inherited alike
    assert torch.equal(s.fc.weight, p.fc.weight) and torch.equal(s.to_img.weight, p.to_img.weight)
    z = torch.randn(3, 16)
    assert s(z).shape == t(z).shape
    with pytest.raises(ValueError, match="--student-upsample"):
        GeneratorConfig(upsample="bilinear")


def test_latency_layout_student_inherits_what_fits():
    from gankd.models.dcgan import DCGANGenerator, GeneratorConfig
    from gankd.students import build_student

    torch.manual_seed(0)
    t = DCGANGenerator(GeneratorConfig(base_channels=8, z_dim=16, num_classes=10))
    with torch.no_grad():  # classes that differ, so the averaged scale and shift are not the identity
        for n in t.norms:
            n.gamma.weight.normal_(1, 0.3)
            n.beta.weight.normal_(0, 0.3)
    t.eval()
    s = build_student(t, 0.5, layout="latency").eval()
    p = build_student(t, 0.5).eval()  # the standard student of the same width: the same channels kept
    assert s.cfg.layout == "latency" and len(s.ups) == len(p.ups) - 1 and len(s.norms) == len(p.norms) - 1
    assert s.feature_channels == p.feature_channels[:-1]
    assert torch.equal(s.fc.weight, p.fc.weight)
    for su, pu in zip(s.ups, p.ups):
        assert torch.equal(su.weight, pu.weight)
    for sn, pn in zip(s.norms, p.norms):  # a plain BatchNorm: the conditional one's scale and shift, class mean
        assert sn.num_classes == 0 and torch.equal(sn.bn.running_var, pn.bn.running_var)
        assert torch.allclose(sn.bn.weight, pn.gamma.weight.mean(0))
        assert torch.allclose(sn.bn.bias, pn.beta.weight.mean(0))
    # the last doubling writes the pixels (fresh weights); the class enters once, as an embedding added to z
    assert isinstance(s.to_img, torch.nn.ConvTranspose2d) and s.to_img.out_channels == 1
    assert torch.count_nonzero(s.embed.weight) == 0
    z, y = torch.randn(3, 16), torch.tensor([0, 1, 2])
    img, feats = s(z, y, return_features=True)
    assert img.shape == t(z, y).shape and len(feats) == len(s.feature_channels)
    with torch.no_grad():
        s.embed.weight.normal_()
    a = s(z[:1].repeat(2, 1), torch.tensor([0, 1]))
    assert not torch.allclose(a[0], a[1])
    with pytest.raises(ValueError, match="labels"):
        s(z)
    with pytest.raises(ValueError, match="--student-layout"):
        GeneratorConfig(layout="fast")
