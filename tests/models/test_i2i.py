"""Image-to-image families: U-Net and ResNet generators, conditional PatchGAN discriminator."""

import pytest
import torch
from torch import nn

import gankd  # noqa: F401  (registers model families)
from gankd.checkpoint import build
from gankd.models.i2i import (
    PatchConfig,
    PatchDiscriminator,
    ResnetConfig,
    ResnetGenerator,
    UNetConfig,
    UNetGenerator,
)
from gankd.registry import DISCRIMINATORS, GENERATORS

TINY = {  # family: (class, config class, tiny kwargs)
    "unet": (UNetGenerator, UNetConfig, {"base_channels": 4, "depth": 4}),
    "resnet": (ResnetGenerator, ResnetConfig, {"base_channels": 4, "n_blocks": 3}),
}
NORMS = ["batch", "instance", "none"]


def make(family, **kw):
    torch.manual_seed(0)
    cls, _, tiny = TINY[family]
    return cls(**{**tiny, **kw})


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("family", TINY)
def test_generator_runs_at_two_resolutions_with_the_same_weights(family, norm):
    g = make(family, norm=norm)
    for mode in (g.train, g.eval):
        mode()
        for size in (32, 64):
            img = g(torch.randn(2, 3, size, size) * 3)
            assert img.shape == (2, 3, size, size)
            assert torch.isfinite(img).all() and img.min() >= -1 and img.max() <= 1
    assert g.z_dim == 0 and g.num_classes == 0


@pytest.mark.parametrize("family", TINY)
def test_one_channel_source_to_rgb(family):
    g = make(family, in_channels=1, image_channels=3).eval()
    assert g.in_channels == 1 and g.image_channels == 3
    assert g(torch.randn(2, 1, 32, 32)).shape == (2, 3, 32, 32)


def test_unet_rejects_bad_spatial_size_and_channels():
    g = make("unet").eval()  # depth 4: H, W multiples of 16
    with pytest.raises(ValueError, match=r"30x32.*multiples of 16.*resize or pad.*32x32"):
        g(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*\(1, 1, 32, 32\)"):
        g(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        g(torch.randn(3, 32, 32))


def test_resnet_rejects_bad_spatial_size_and_channels():
    g = make("resnet").eval()  # n_down 2: multiples of 4, at least 8 (reflection pad at 1/4)
    with pytest.raises(ValueError, match=r"18x20.*multiples of 4.*resize or pad.*20x20"):
        g(torch.randn(1, 3, 18, 20))
    with pytest.raises(ValueError, match=r"at least 8"):
        g(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        g(torch.randn(1, 4, 32, 32))


@pytest.mark.parametrize(
    "cfg_cls, kw, flag",
    [
        (UNetConfig, {"width": 0}, "--width must be > 0"),
        (UNetConfig, {"depth": 2}, "--depth"),
        (UNetConfig, {"resolution": 40}, "--resolution"),
        (UNetConfig, {"norm": "group"}, "--norm"),
        (UNetConfig, {"base_channels": 0}, "--base-channels"),
        (ResnetConfig, {"n_blocks": 0}, "--n-blocks"),
        (ResnetConfig, {"in_channels": 0}, "--in-channels"),
        (PatchConfig, {"num_classes": 10}, "--num-classes must be 0"),
        (PatchConfig, {"width": -1.0}, "--d-width must be > 0"),
        (PatchConfig, {"resolution": 16}, "--resolution"),
    ],
)
def test_config_validation_names_the_flag(cfg_cls, kw, flag):
    with pytest.raises(ValueError, match=flag):
        cfg_cls(**kw)


@pytest.mark.parametrize("family", [*TINY, "patch"])
def test_kwargs_dict_and_config_construction_agree(family):
    cls, cfg_cls, tiny = (PatchDiscriminator, PatchConfig, {"base_channels": 4}) if family == "patch" else TINY[family]
    kw = {**tiny, "in_channels": 1, "width": 0.5}
    models = [cls(**kw), cls(cfg_cls(**kw)), cls(kw), cls(dict(tiny), in_channels=1, width=0.5)]
    shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in models]
    assert all(s == shapes[0] for s in shapes[1:])
    assert all(m.cfg == models[0].cfg for m in models)
    assert type(models[0]).family == family
    assert cls(cfg_cls(**tiny), width=0.5).cfg.width == 0.5  # kwargs override a config
    with pytest.raises(ValueError, match="unknown key"):
        cls(**tiny, z_dim=16)


@pytest.mark.parametrize("family", TINY)
def test_half_width_has_fewer_parameters(family):
    full, half = make(family, base_channels=8), make(family, base_channels=8, width=0.5)
    assert half.feature_channels == [c // 2 for c in full.feature_channels]
    assert n_params(half) < 0.4 * n_params(full)


@pytest.mark.parametrize("family", TINY)
def test_features_match_feature_channels(family):
    g = make(family).eval()
    src = torch.randn(2, 3, 32, 32)
    img, feats = g(src, return_features=True)
    assert len(feats) == len(g.feature_channels) == 3
    for f, c in zip(feats, g.feature_channels, strict=True):
        assert f.shape[:2] == (2, c) and torch.isfinite(f).all()
    assert torch.equal(img, g(src))
    if family == "unet":  # bottleneck at 1/16, decoder maps at 1/4 and 1/2
        assert [f.shape[-1] for f in feats] == [2, 8, 16]
    else:  # residual blocks at 1/4
        assert [f.shape[-1] for f in feats] == [8, 8, 8]


@pytest.mark.parametrize("spectral", [True, False])
def test_patch_discriminator(spectral):
    torch.manual_seed(0)
    d = PatchDiscriminator(in_channels=1, image_channels=3, base_channels=4, spectral=spectral)
    x, cond = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    out, feats = d(x, cond, return_features=True)
    assert out.shape == (2, 1, 2, 2) and torch.isfinite(out).all()  # 32 / 2**3 - 2
    assert d(torch.randn(1, 3, 64, 64), torch.randn(1, 1, 64, 64)).shape == (1, 1, 6, 6)
    assert [f.shape[1] for f in feats] == d.feature_channels == [4, 8, 16, 32]
    assert any(isinstance(m, nn.BatchNorm2d) for m in d.modules()) != spectral
    assert d.num_classes == 0
    with pytest.raises(ValueError, match="conditional: pass the source image"):
        d(x)
    with pytest.raises(ValueError, match="cond"):
        d(x, torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=">= 24"):
        d(torch.randn(1, 3, 16, 16), torch.randn(1, 1, 16, 16))


@pytest.mark.parametrize("family", TINY)
def test_gradients_flow_through_generator_and_discriminator(family):
    g = make(family)
    d = PatchDiscriminator(base_channels=4)
    src = torch.randn(2, 3, 32, 32)
    out = d(g(src), src)
    out.mean().backward()
    for m in (g, d):
        for name, p in m.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_registry_names_resolve():
    assert GENERATORS.get("unet") is UNetGenerator and GENERATORS.get("resnet") is ResnetGenerator
    assert DISCRIMINATORS.get("patch") is PatchDiscriminator
    g = build("generator", "unet", {"base_channels": 4, "resolution": 32})
    assert isinstance(g, UNetGenerator) and g.cfg.resolution == 32
    d = build("discriminator", "patch", PatchConfig(base_channels=4))
    assert isinstance(d, PatchDiscriminator)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("family", TINY)
def test_torch_pruning_keeps_skips_and_residuals_consistent(family, norm):
    tp = pytest.importorskip("torch_pruning")
    g = make(family, base_channels=8, norm=norm).eval()
    before = n_params(g)
    pruner = tp.pruner.MetaPruner(
        g,
        torch.randn(1, 3, 32, 32),
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.5,
        ignored_layers=[g.to_img],
    )
    pruner.step()
    assert n_params(g) < 0.5 * before
    for size in (32, 64):
        img, feats = g(torch.randn(2, 3, size, size), return_features=True)
        assert img.shape == (2, 3, size, size) and torch.isfinite(img).all()
        assert [f.shape[1] for f in feats] == g.feature_channels  # read from the pruned layers
    full = make(family, base_channels=8, norm=norm)
    assert all(p < f for p, f in zip(g.feature_channels, full.feature_channels, strict=True))
