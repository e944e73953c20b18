"""Every registered classifier: logits, embeddings, feature maps, width scaling."""

import pytest
import torch
from torch import nn

from gankd.checkpoint import build
from gankd.registry import CLASSIFIERS


def make(family, **kw):
    torch.manual_seed(0)
    cfg = {"base_channels": 4, "feature_dim": 16, **kw}
    return build("classifier", family, cfg)


@pytest.mark.parametrize("family", CLASSIFIERS.names())
@pytest.mark.parametrize("res, ch, nc", [(32, 1, 10), (64, 3, 4), (16, 1, 2)])
def test_classifier_forward(family, res, ch, nc):
    m = make(family, resolution=res, image_channels=ch, num_classes=nc).eval()
    x = torch.rand(3, ch, res, res) * 2 - 1
    logits = m(x)
    assert logits.shape == (3, nc) and torch.isfinite(logits).all()
    emb = m.embed(x)
    assert emb.shape == (3, 16) and torch.isfinite(emb).all()
    maps = m.feature_maps(x)
    assert len(maps) == len(m.feature_channels)
    for f, c in zip(maps, m.feature_channels, strict=True):
        assert f.shape[:2] == (3, c)
    assert maps[0].shape[-1] == res
    # in eval mode dropout is off: the head applied to embed() gives forward()
    assert torch.allclose(m.head(emb), logits, atol=1e-6)


@pytest.mark.parametrize("family", CLASSIFIERS.names())
def test_classifier_trains(family):
    m = make(family).train()
    x, y = torch.rand(8, 1, 32, 32) * 2 - 1, torch.arange(8) % 4
    before = {k: v.detach().clone() for k, v in m.state_dict().items()}
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        grads = [p.grad for p in m.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        opt.step()
        losses.append(loss.item())
    # every parameter moved, and eight steps on one batch fit it better than the first
    after = dict(m.named_parameters())
    assert all(not torch.equal(before[k], p.detach()) for k, p in after.items()), family
    assert losses[-1] < 0.85 * losses[0], (family, losses)
    m.eval()
    with torch.no_grad():
        assert nn.functional.cross_entropy(m(x), y).item() < losses[0], family


@pytest.mark.parametrize("family", CLASSIFIERS.names())
def test_classifier_width_scaling(family):
    full, half = make(family, base_channels=16), make(family, base_channels=16, width=0.5)
    assert half.feature_channels == [c // 2 for c in full.feature_channels]

    def conv_params(m):
        return sum(p.numel() for mod in m.modules() if isinstance(mod, nn.Conv2d) for p in mod.parameters())

    assert 0.24 < conv_params(half) / conv_params(full) < 0.27
