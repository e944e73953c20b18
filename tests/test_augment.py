"""DiffAugment: shapes, gradients, explicit-generator determinism."""

import pytest
import torch

from gankd.augment import POLICIES, diff_augment, parse_policy

ALL = ",".join(POLICIES)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("policy", [*POLICIES, ALL])
@pytest.mark.parametrize("shape", [(4, 1, 32, 32), (3, 3, 16, 16), (2, 3, 15, 17)])
def test_shape_dtype_and_gradient(policy, shape):
    x = (torch.rand(shape) * 2 - 1).requires_grad_()
    out = diff_augment(x, policy, gen())
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("policy", [*POLICIES, ALL])
def test_same_generator_seed_same_output(policy):
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    a, b = diff_augment(x, policy, gen(5)), diff_augment(x, policy, gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, diff_augment(x, policy, gen(6)))
    assert not torch.equal(a, x)


def test_global_rng_is_untouched():
    torch.manual_seed(0)
    expect = torch.rand(3)
    torch.manual_seed(0)
    diff_augment(torch.zeros(2, 1, 8, 8), ALL, gen())
    assert torch.equal(torch.rand(3), expect)


def test_translation_moves_content_and_fills_black():
    x = torch.full((64, 1, 16, 16), -1.0)
    x[:, :, 7:9, 7:9] = 1.0  # a bright 2x2 dot in the middle
    out = diff_augment(x, "translation", gen())
    assert ((out == 1).sum(dim=(1, 2, 3)) == 4).all()  # a shift of at most 2 px keeps the dot
    assert set(out.unique().tolist()) == {-1.0, 1.0}
    moved = [(o != x[0]).any() for o in out]
    assert sum(moved) > 32  # most of the batch is shifted
    edge = torch.ones(8, 1, 16, 16)
    assert (diff_augment(edge, "translation", gen()) == -1).any()  # exposed borders are black


def test_cutout_blacks_out_a_square():
    x = torch.ones(16, 1, 16, 16)
    out = diff_augment(x, "cutout", gen())
    black = (out == -1).sum(dim=(1, 2, 3))
    assert ((black > 0) & (black <= 64)).all()  # at most an 8x8 square per image
    assert set(out.unique().tolist()) <= {-1.0, 1.0}


def test_parse_policy():
    assert parse_policy(" translation , cutout ,") == ["translation", "cutout"]
    assert parse_policy("") == []
    with pytest.raises(ValueError, match="unknown --diffaug policy 'flip'"):
        parse_policy("translation,flip")
    x = torch.rand(2, 1, 8, 8)
    assert diff_augment(x, "", gen()) is x


def test_a_share_p_of_the_images_is_augmented_and_p_1_is_unchanged():
    x = torch.rand(400, 3, 8, 8) * 2 - 1
    assert torch.equal(diff_augment(x, "color", gen(3), p=1.0), diff_augment(x, "color", gen(3)))
    out = diff_augment(x, "color", gen(3), p=0.5)
    touched = (out != x).flatten(1).any(1)
    assert 150 < int(touched.sum()) < 250  # about half of the 400 images
    assert torch.equal(out, diff_augment(x, "color", gen(3), p=0.5))  # same generator, same images
    x.requires_grad_(True)
    diff_augment(x, "color,translation", gen(), p=0.3).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_diffaug_p_refusals_name_the_flags():
    from gankd.train import GANTrainConfig

    with pytest.raises(ValueError, match="--diffaug-p must be in \\(0, 1\\]"):
        GANTrainConfig(diffaug="color", diffaug_p=0.0)
    with pytest.raises(ValueError, match="add --diffaug POLICY"):
        GANTrainConfig(diffaug_p=0.5)
