"""Shared layers: the sub-pixel rewrite of ConvTranspose2d is the same function, layer and model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gankd.models.dcgan import DCGANGenerator, GeneratorConfig
from gankd.models.i2i import ResnetGenerator, UNetGenerator
from gankd.models.layers import SubPixelConvTranspose, subpixel_form


@pytest.mark.parametrize("k,s,p,op,bias", [(4, 2, 1, 0, False), (3, 2, 1, 1, True), (4, 1, 0, 0, False),
                                           (3, 1, 1, 0, True), (6, 2, 2, 0, True), (8, 4, 2, 0, True)])  # fmt: skip
def test_a_qualifying_conv_transpose_becomes_the_same_function(k, s, p, op, bias):
    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(5, 7, k, s, p, output_padding=op, bias=bias)
    m = nn.Sequential(ct)
    assert subpixel_form(m) == 1 and isinstance(m[0], SubPixelConvTranspose)
    assert not any(isinstance(x, nn.ConvTranspose2d) for x in m.modules())
    x = torch.randn(2, 5, 6, 5)
    assert m(x).shape == ct(x).shape
    torch.testing.assert_close(m(x), ct(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("layer", [
    nn.ConvTranspose2d(4, 4, 4, 2, 0), nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2),
    nn.ConvTranspose2d(4, 4, 3, 2, 1, dilation=2), nn.ConvTranspose2d(4, 4, (4, 3), 2, 1),
    nn.ConvTranspose2d(4, 4, 3, stride=1, padding=3),
])  # fmt: skip
def test_a_conv_transpose_that_does_not_qualify_is_left_alone(layer):
    m = nn.Sequential(layer)
    assert subpixel_form(m) == 0 and m[0] is layer


@pytest.mark.parametrize("make,inputs", [
    (lambda: DCGANGenerator(GeneratorConfig(base_channels=4, z_dim=16, num_classes=3)),
     lambda: (torch.randn(4, 16), torch.arange(4) % 3)),
    (lambda: UNetGenerator(base_channels=4, depth=4), lambda: (torch.rand(2, 3, 32, 32) * 2 - 1,)),
    (lambda: ResnetGenerator(base_channels=4, n_blocks=1), lambda: (torch.rand(2, 3, 32, 32) * 2 - 1,)),
])  # fmt: skip
def test_gankds_families_keep_their_outputs(make, inputs):
    torch.manual_seed(0)
    g = make()
    g.train()
    x = inputs()
    g(*x)  # running statistics that are not the defaults
    g.eval()
    ref = g(*x)
    assert subpixel_form(g) == sum(isinstance(m, SubPixelConvTranspose) for m in g.modules()) > 0
    torch.testing.assert_close(g(*x), ref, rtol=0, atol=1e-5)
