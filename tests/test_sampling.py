"""Seeds, latents, grids and PNG bytes."""

import io

import pytest
import torch
from PIL import Image
from testkit import tiny_generator

from gankd.checkpoint import load_generator
from gankd.sampling import (
    balanced_labels,
    generate,
    grid,
    latents,
    parse_seeds,
    png_bytes,
    sample_grid,
    save_png,
)  # fmt: skip


@pytest.mark.parametrize(
    "text, seeds",
    [
        ("0-3", [0, 1, 2, 3]),
        ("7", [7]),
        ("1,5,9", [1, 5, 9]),
        ("0-2,10", [0, 1, 2, 10]),
        (" 4 - 5 , 8 ", [4, 5, 8]),
        ("3-3", [3]),
        ("1,,2,", [1, 2]),
    ],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", ",", "a", "5-3", "1-b", "0-", "1.5", "-3-5", "-5", "2,-1"])
def test_parse_seeds_errors(text):
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds(text)


def test_latents_are_per_seed_and_batch_independent():
    z = latents(list(range(10)), 16)
    assert z.shape == (10, 16)
    assert torch.equal(latents([3, 7], 16), z[[3, 7]])
    assert torch.equal(latents([7], 16)[0], torch.randn(16, generator=torch.Generator().manual_seed(7)))
    assert not torch.equal(z[0], z[1])


def test_generate_is_batch_size_independent_and_restores_mode():
    g = tiny_generator().train()
    stats = {k: v.clone() for k, v in g.state_dict().items()}
    z, y = latents(list(range(7)), g.z_dim), balanced_labels(7, 10)
    a = generate(g, z, y, batch_size=3)
    assert g.training  # the caller's mode is restored (sampling mid-training is safe)
    # eval inside: BatchNorm statistics are used, not updated, so no sample depends on its batch
    assert all(torch.equal(v, g.state_dict()[k]) for k, v in stats.items())
    b = torch.cat([generate(g, z[i : i + 1], y[i : i + 1]) for i in range(7)])
    assert a.shape == (7, 1, 32, 32)
    assert torch.allclose(a, b, atol=1e-6)


def test_balanced_labels():
    assert balanced_labels(5, 3).tolist() == [0, 1, 2, 0, 1]
    assert balanced_labels(5, 0) is None


def test_grid_layout():
    imgs = torch.full((5, 3, 4, 6), -1.0)
    imgs[4] = 1.0
    g = grid(imgs, nrow=2, padding=1)
    assert g.dtype == torch.uint8 and g.shape == (3, 3 * 5 + 1, 2 * 7 + 1)
    # image 4 sits in row 2, column 0; the empty sixth cell stays black
    assert (g[:, 11:15, 1:7] == 255).all()
    assert g.sum() == 255 * 3 * 4 * 6


def test_grid_rejects_a_bad_nrow():
    with pytest.raises(ValueError, match="--nrow"):
        grid(torch.zeros(2, 1, 4, 4), nrow=0)


def test_same_seeds_same_png_bytes(gen_dir, tmp_path):
    a = png_bytes(sample_grid(load_generator(gen_dir), parse_seeds("0-11"), nrow=4))
    b = png_bytes(sample_grid(load_generator(gen_dir), parse_seeds("0-11"), nrow=4))
    assert a == b
    c = png_bytes(sample_grid(load_generator(gen_dir), parse_seeds("1-12"), nrow=4))
    assert c != a
    path = save_png(
        sample_grid(load_generator(gen_dir), parse_seeds("0-11"), nrow=4), tmp_path / "x" / "g.png"
    )
    assert path.read_bytes() == a
    im = Image.open(io.BytesIO(a))
    assert im.mode == "L" and im.size == (4 * 34 + 2, 3 * 34 + 2)


def test_one_class_per_row(gen_dir):
    g = load_generator(gen_dir)
    out = sample_grid(g, parse_seeds("0-9"), classes=[2, 5, 7], nrow=4)
    # 3 rows (one per class) of 4 images (the first 4 seeds)
    assert out.shape == (1, 3 * 34 + 2, 4 * 34 + 2)
    z = latents([0, 1, 2, 3], g.z_dim)
    expect = grid(generate(g, z.repeat(3, 1), torch.tensor([2, 5, 7]).repeat_interleave(4)), nrow=4)
    assert torch.equal(out, expect)
    with pytest.raises(ValueError, match="class 10 out of range"):
        sample_grid(g, [0], classes=[10])


def test_rgb_grid_png(tmp_path):
    g = tiny_generator(num_classes=0, image_channels=3, resolution=16)
    im = Image.open(io.BytesIO(png_bytes(sample_grid(g, [0, 1, 2], nrow=3))))
    assert im.mode == "RGB" and im.size == (3 * 18 + 2, 18 + 2)


def test_sample_refuses_a_model_with_non_finite_output(tmp_path, capsys):
    from gankd import cli
    from gankd.checkpoint import save_model

    g = tiny_generator()
    with torch.no_grad():
        g.to_img.weight[0, 0, 0, 0] = float("nan")  # broken weights: every image is NaN somewhere
    folder = save_model(tmp_path / "broken", g, "generator")
    out = tmp_path / "grid.png"
    rc = cli.main(["sample", "--model", str(folder), "--seeds", "0-3", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert str(folder) in err and "non-finite" in err and "4 of 4" in err
    assert not out.exists()  # nothing is written
    # one bad image among good ones is named too
    with pytest.raises(ValueError, match="the generator produced non-finite pixels .* 1 of 3"):
        sample_grid(_Inf(tiny_generator()), [0, 1, 2], nrow=3)


class _Inf(torch.nn.Module):
    """Wraps a generator; its second image gets an inf pixel."""

    def __init__(self, g):
        super().__init__()
        self.g, self.z_dim, self.num_classes = g, g.z_dim, g.num_classes

    def forward(self, z, y=None):
        x = self.g(z, y).clone()
        x[1, 0, 0, 0] = float("inf")
        return x
