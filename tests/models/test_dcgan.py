"""Every registered generator and discriminator: shapes, range, features, width scaling."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from gankd.checkpoint import build
from gankd.models.layers import ConditionalBatchNorm2d, scaled
from gankd.registry import DISCRIMINATORS, GENERATORS

# noise-to-image families (latent + labels); image-to-image ones are tested in test_i2i.py
NOISE_GENERATORS = [n for n in GENERATORS.names() if "z_dim" in GENERATORS.get(n).Config.__dataclass_fields__]
NOISE_DISCRIMINATORS = [n for n in DISCRIMINATORS.names()
                        if "in_channels" not in DISCRIMINATORS.get(n).Config.__dataclass_fields__]

B = 3
VARIANTS = [  # (resolution, image_channels, num_classes)
    (32, 1, 10),
    (32, 1, 0),
    (64, 3, 5),
    (8, 3, 0),
    (128, 3, 0),
    (256, 1, 3),
    (256, 3, 0),
]


def make_g(family, res, ch, nc, **kw):
    torch.manual_seed(0)
    cfg = {"resolution": res, "image_channels": ch, "num_classes": nc, "base_channels": 4, **kw}
    return build("generator", family, cfg)


def make_d(family, res, ch, nc, **kw):
    torch.manual_seed(0)
    cfg = {"resolution": res, "image_channels": ch, "num_classes": nc, "base_channels": 4, **kw}
    return build("discriminator", family, cfg)


def labels(nc):
    return torch.arange(B) % nc if nc else None


@pytest.mark.parametrize("family", NOISE_GENERATORS)
@pytest.mark.parametrize("res, ch, nc", VARIANTS)
def test_generator_forward(family, res, ch, nc):
    g = make_g(family, res, ch, nc)
    z = torch.randn(B, g.z_dim) * 3  # wide latents push tanh towards saturation
    for mode in (g.train, g.eval):
        mode()
        img, feats = g(z, labels(nc), return_features=True)
        assert img.shape == (B, ch, res, res)
        assert torch.isfinite(img).all()
        assert img.min() >= -1 and img.max() <= 1
        assert len(feats) == len(g.feature_channels)
        for f, c in zip(feats, g.feature_channels, strict=True):
            assert f.shape[:2] == (B, c) and torch.isfinite(f).all()
        assert feats[-1].shape[-1] == res  # the last map is at full resolution
        assert torch.equal(g.eval()(z, labels(nc)), g(z, labels(nc), return_features=True)[0])


@pytest.mark.parametrize("family", NOISE_GENERATORS)
def test_generator_conditioning(family):
    g = make_g(family, 32, 1, 10).eval()
    z = torch.randn(1, g.z_dim).repeat(2, 1)
    # the embeddings start as identity; perturb them so classes differ
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, ConditionalBatchNorm2d) and m.num_classes:
                m.gamma.weight.add_(torch.randn_like(m.gamma.weight))
    a = g(z, torch.tensor([0, 1]))
    assert not torch.allclose(a[0], a[1])
    with pytest.raises(ValueError, match="labels"):
        g(z)
    with pytest.raises(ValueError, match="z must have shape"):
        g(torch.randn(2, g.z_dim + 1), torch.tensor([0, 1]))


@pytest.mark.parametrize("family", NOISE_GENERATORS)
def test_unconditional_generator_ignores_labels(family):
    g = make_g(family, 32, 1, 0).eval()
    z = torch.randn(2, g.z_dim)
    assert torch.equal(g(z), g(z, torch.tensor([3, 4])))


def conv_params(m: nn.Module) -> int:
    return sum(
        p.numel()
        for mod in m.modules()
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d))
        for p in mod.parameters()
    )


def macs(m: nn.Module, *inputs) -> int:
    with FlopCounterMode(display=False) as fc:
        m(*inputs)
    return fc.get_total_flops() // 2


@pytest.mark.parametrize("family", NOISE_GENERATORS)
def test_generator_width_scaling(family):
    full = make_g(family, 32, 1, 10, base_channels=16).eval()
    half = make_g(family, 32, 1, 10, base_channels=16, width=0.5).eval()
    assert half.feature_channels == [c // 2 for c in full.feature_channels]
    assert conv_params(half) / conv_params(full) == pytest.approx(0.25, rel=0.02)
    z, y = torch.randn(1, full.z_dim), torch.tensor([1])
    assert macs(half, z, y) / macs(full, z, y) == pytest.approx(0.25, rel=0.1)


def test_generator_explicit_channels_and_mults():
    g = make_g("dcgan", 32, 1, 0, channels=(12, 6, 5, 3))
    assert g.feature_channels == [12, 6, 5, 3]
    g = make_g("dcgan", 32, 1, 0, channel_mults=(4, 4, 2, 1), width=0.5)
    assert g.feature_channels == [8, 8, 4, 2]
    assert g(torch.randn(2, g.z_dim)).shape == (2, 1, 32, 32)


@pytest.mark.parametrize("family", NOISE_DISCRIMINATORS)
@pytest.mark.parametrize("res, ch, nc", VARIANTS)
def test_discriminator_forward(family, res, ch, nc):
    d = make_d(family, res, ch, nc)
    x = torch.rand(B, ch, res, res) * 2 - 1
    out, feats = d(x, labels(nc), return_features=True)
    assert out.shape == (B,) and torch.isfinite(out).all()
    assert len(feats) == len(d.feature_channels)
    for f, c in zip(feats, d.feature_channels, strict=True):
        assert f.shape[:2] == (B, c)
    assert feats[-1].shape[-1] == 4  # down to 4x4
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.parameters())


@pytest.mark.parametrize("family", NOISE_DISCRIMINATORS)
def test_conditional_discriminator_needs_labels(family):
    d = make_d(family, 32, 1, 10).eval()
    x = torch.zeros(2, 1, 32, 32)
    with pytest.raises(ValueError, match="labels"):
        d(x)
    # the projection head makes the logit depend on the class
    assert not torch.allclose(d(x + 0.3, torch.tensor([0, 0])), d(x + 0.3, torch.tensor([0, 1])))


@pytest.mark.parametrize("family", NOISE_DISCRIMINATORS)
def test_discriminator_width_scaling(family):
    full = make_d(family, 32, 1, 0, base_channels=16)
    half = make_d(family, 32, 1, 0, base_channels=16, width=0.5)
    assert half.feature_channels == [c // 2 for c in full.feature_channels]
    ratio = conv_params(half) / conv_params(full)
    assert 0.24 < ratio < 0.27  # the 1-channel stem and biases scale linearly


def test_scaled_never_below_one():
    assert scaled(64, 0.25) == 16 and scaled(3, 0.5) == 2 and scaled(4, 0.01) == 1


def test_channel_growth_is_capped_at_8x_base():
    """At 256 px the doubling per stage would reach 64x the base channels (2048 at base 32):
    both G and D stop at 8x, and 32 px models keep their shape."""
    from gankd.models.dcgan import MAX_MULT

    assert MAX_MULT == 8
    g32 = make_g("dcgan", 32, 1, 0, base_channels=4)
    assert g32.feature_channels == [32, 16, 8, 4]
    d32 = make_d("dcgan", 32, 1, 0, base_channels=4)
    assert d32.feature_channels == [4, 8, 16, 32]
    g = make_g("dcgan", 256, 3, 0, base_channels=4)
    d = make_d("dcgan", 256, 3, 0, base_channels=4)
    assert max(g.feature_channels) == 32 == g.feature_channels[0] and g.feature_channels[-1] == 4
    assert max(d.feature_channels) == 32 and d.feature_channels == [4, 8, 16, 32, 32, 32, 32]


def test_discriminator_convs_per_stage():
    """convs_per_stage=2 adds one 3x3 conv per halving (SNGAN's standard depth): same stages,
    features and blocks (--d-freeze counts them), more layers; 1 keeps the shipped state-dict keys."""
    one = make_d("dcgan", 32, 3, 0)
    two = make_d("dcgan", 32, 3, 0, convs_per_stage=2)
    assert two.feature_channels == one.feature_channels and len(two.blocks()) == len(one.blocks())
    convs = [sum(isinstance(m, nn.Conv2d) for m in d.modules()) for d in (one, two)]
    assert convs == [4, 7]
    assert "downs.0.parametrizations.weight.original" in one.state_dict()
    x = torch.rand(B, 3, 32, 32) * 2 - 1
    out, feats = two(x, return_features=True)
    assert out.shape == (B,) and [f.shape[1] for f in feats] == two.feature_channels
    with pytest.raises(ValueError, match="convs_per_stage must be >= 1"):
        make_d("dcgan", 32, 3, 0, convs_per_stage=0)


@pytest.mark.parametrize("norm", ["spectral", "batch", "none"])
def test_discriminator_norms(norm):
    """spectral (default) parametrizes every layer; batch adds BatchNorm after every conv but the
    stem (the classic DCGAN D); none leaves plain layers. An unknown name is refused."""
    d = make_d("dcgan", 32, 3, 0, norm=norm)
    keys = d.state_dict()
    assert any("parametrizations" in k for k in keys) == (norm == "spectral")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == (3 if norm == "batch" else 0)
    out, feats = d(torch.rand(B, 3, 32, 32) * 2 - 1, return_features=True)
    assert out.shape == (B,) and [f.shape[1] for f in feats] == d.feature_channels and len(d.blocks()) == 4
    with pytest.raises(ValueError, match="discriminator.norm must be one of spectral, batch, none"):
        make_d("dcgan", 32, 3, 0, norm="layer")


@pytest.mark.parametrize("res", [8, 32, 64])
def test_latency_layout_has_one_stage_fewer_and_fewer_ops(res):
    from gankd.models.dcgan import DCGANGenerator, GeneratorConfig

    std = DCGANGenerator(GeneratorConfig(resolution=res, base_channels=8, z_dim=16))
    lat = DCGANGenerator(GeneratorConfig(resolution=res, base_channels=8, z_dim=16, layout="latency"))
    assert lat.feature_channels == std.feature_channels[:-1]
    assert lat.feature_taps == tuple(i for i in (1, 2, 3) if i < len(lat.feature_channels))
    assert type(lat).feature_taps == (1, 2, 3)  # the instance's taps shadow the class's, for this model only
    z, y = torch.randn(2, 16), torch.tensor([3, 4])
    img, feats = lat(z, y, return_features=True)
    assert img.shape == (2, 1, res, res) and feats[-1].shape[-1] == res // 2
    assert macs(lat, z, y) < macs(std, z, y)


@pytest.mark.parametrize("kw, folded", [({"layout": "latency"}, 3), ({"num_classes": 0}, 4), ({}, 0),
                                        ({"layout": "latency", "upsample": "nearest-conv"}, 3)])  # fmt: skip
def test_fold_norms_keeps_the_function(kw, folded):
    import copy

    from gankd.models.dcgan import DCGANGenerator, FoldedNorm, GeneratorConfig

    torch.manual_seed(0)
    g = DCGANGenerator(GeneratorConfig(base_channels=8, z_dim=16, **kw))
    y = torch.arange(16) % 10 if g.num_classes else None
    with torch.no_grad():  # non-trivial running statistics, scales and shifts
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d) and m.affine:
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)
        g(torch.randn(16, 16), y)
    g.eval()
    f = copy.deepcopy(g)
    assert f.fold_norms() == folded
    assert sum(isinstance(n, FoldedNorm) for n in f.norms) == folded
    z = torch.randn(16, 16)
    assert torch.allclose(f(z, y), g(z, y), atol=1e-5)
