"""Paired data (gankd.paired): folders matched by name, degradation tasks deterministic per
image index, splits, the PairStream and the one-line refusals."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from gankd.data import DataError, to_float, to_uint8
from gankd.loop import BatchStream
from gankd.paired import (
    TASKS,
    PairedDataset,
    PairStream,
    TaskParams,
    check_task,
    degrade,
    degrade_batch,
    is_paired,
    load_pairs,
    pair_seed,
    pair_shape,
    pairs_info,
    parse_task,
)

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def write_rgb(root: Path, names, size: int = 24, seed: int = 0, mode: str = "RGB", ext: str = ".png") -> Path:
    """Smooth random images (a few blobs, so blur and edges do something) named ``names``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for name in names:
        arr = np.zeros((size, size, 3))
        for _ in range(3):
            cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 8, size / 3)]
            arr[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.uniform(40, 120, 3)
        arr += rng.uniform(0, 20, (size, size, 3))
        im = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
        im.convert(mode).save(root / f"{name}{ext}")
    return root


def names(n: int, start: int = 0) -> list[str]:
    return [f"{i:03d}" for i in range(start, start + n)]


@pytest.fixture
def pair_dirs(tmp_path):
    """30 matched pairs (sources 24 px, targets 32 px), 2 sources and 3 targets without a
    namesake, the targets in .jpg under another extension than the sources."""
    src = write_rgb(tmp_path / "src", names(30) + ["extra_a", "extra_b"], size=24, seed=1)
    tgt = write_rgb(tmp_path / "tgt", names(30) + ["lone_1", "lone_2", "lone_3"], size=32, seed=2, ext=".jpg")
    return src, tgt


@pytest.fixture
def rgb_folder(tmp_path):
    return write_rgb(tmp_path / "rgb", names(30), size=32, seed=3)


def image(seed: int = 0, c: int = 3, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((c, size, size), generator=g) * 2 - 1


# ---------------------------------------------------------------- paired folders


def test_pairs_matched_by_name_with_unmatched_and_corrupt_counted(pair_dirs, caplog):
    src, tgt = pair_dirs
    (tgt / "005.jpg").write_bytes(b"not an image")  # index 5: split fit, so in train
    spec = f"paired:{src},{tgt}"
    assert is_paired(spec) and not is_paired("fashion-mnist") and not is_paired(None)
    with caplog.at_level(logging.WARNING, logger="gankd.paired"):
        ds = load_pairs(spec, "train")
    warn = [r.getMessage() for r in caplog.records if r.name == "gankd.paired" and r.levelno == logging.WARNING]
    assert len(warn) == 1, warn
    assert "2 source image(s) without a target (first: extra_a)" in warn[0]
    assert "3 target image(s) without a source (first: lone_1)" in warn[0]
    assert "1 unreadable image(s) skipped" in warn[0] and "005.jpg" in warn[0]
    # 30 pairs: train = all but test (index 4, 14, 24) = 27, minus the corrupt one
    assert isinstance(ds, PairedDataset) and len(ds) == 26
    assert ds.images.dtype == torch.uint8 and ds.sources.dtype == torch.uint8
    assert ds.images.shape == ds.sources.shape == (26, 3, 32, 32)  # the target folder's resolution
    assert ds.labels.dtype == torch.int64 and not ds.labels.any() and ds.num_classes == 0
    assert ds.task == "paired" and ds.class_names == () and ds.resolution == 32 and ds.channels == 3
    s, t = ds[0]
    assert s.shape == t.shape == (3, 32, 32) and s.min() >= -1 and t.max() <= 1

    with pytest.raises(DataError, match=r"005\.jpg.*remove it or drop --strict"):
        load_pairs(spec, "train", strict=True)


def test_pairs_are_the_namesakes(tmp_path):
    """The source of each pair is the file with the target's name, whatever the extension."""
    src = write_rgb(tmp_path / "s", names(12), size=32, seed=4)
    tgt = write_rgb(tmp_path / "t", names(12), size=32, seed=4, ext=".bmp")  # same pixels, lossless
    ds = load_pairs(f"paired:{src},{tgt}", "train", resolution=32)
    assert torch.equal(ds.sources, ds.images)


def test_zero_matches_and_bad_specs(tmp_path):
    a = write_rgb(tmp_path / "a", ["x1", "x2"])
    b = write_rgb(tmp_path / "b", ["y1", "y2"])
    with pytest.raises(DataError) as e:
        load_pairs(f"paired:{a},{b}")
    msg = str(e.value)
    assert str(a) in msg and str(b) in msg and "matched by name" in msg
    with pytest.raises(DataError, match="paired:SRC_DIR,TGT_DIR"):
        load_pairs(f"paired:{a}")
    with pytest.raises(DataError, match="does not exist"):
        load_pairs(f"paired:{a},{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="paired data brings its own sources: drop --task"):
        load_pairs(f"paired:{a},{b}", task="denoise")
    write_rgb(a, ["x1"], ext=".jpg")
    with pytest.raises(DataError, match="two images named x1"):
        load_pairs(f"paired:{a},{b}")


def test_paired_channels_and_resolution_follow_the_target(tmp_path):
    src = write_rgb(tmp_path / "s", names(10), size=40, seed=5, mode="L")  # gray sources
    tgt = write_rgb(tmp_path / "t", names(10), size=64, seed=6)  # colour targets
    spec = f"paired:{src},{tgt}"
    info = pairs_info(spec)
    assert (info.spec, info.channels, info.resolution, info.num_images, info.num_classes) == (spec, 3, 64, 10, 0)
    assert pair_shape(spec) == (3, 64) and pair_shape(spec, 1, 32) == (1, 32)
    with pytest.raises(ValueError, match="--resolution must be a power of two"):
        pair_shape(spec, None, 48)
    ds = load_pairs(spec, "fit")
    assert ds.sources.shape == (8, 3, 64, 64)  # gray replicated to the target's 3 channels
    assert torch.equal(ds.sources[:, 0], ds.sources[:, 1])
    ds = load_pairs(spec, "fit", resolution=32, channels=1)
    assert ds.images.shape == ds.sources.shape == (8, 1, 32, 32)


def test_paired_splits_disjoint_and_covering(pair_dirs):
    spec = f"paired:{pair_dirs[0]},{pair_dirs[1]}"
    sets = {s: load_pairs(spec, s) for s in ("fit", "val", "test", "train")}
    assert {s: len(d) for s, d in sets.items()} == {"fit": 24, "val": 3, "test": 3, "train": 27}

    def rows(ds):
        return {bytes(x.numpy().tobytes()) for x in ds.images}

    fit, val, test, train = (rows(sets[s]) for s in ("fit", "val", "test", "train"))
    assert len(fit | val | test) == 30 and not (fit & val) and not (fit & test) and not (val & test)
    assert train == fit | val
    with pytest.raises(DataError, match="unknown split"):
        load_pairs(spec, "dev")


# ---------------------------------------------------------------- degradations


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("c", [1, 3])
def test_each_task_deterministic_in_range_and_keeps_shape(task, c):
    if task == "colorize" and c == 1:
        with pytest.raises(ValueError, match="colorize needs colour"):
            degrade(image(0, c), task, 0)
        return
    x = image(0, c)
    a, b = degrade(x, task, 7, seed=3), degrade(x.clone(), task, 7, seed=3)
    assert torch.equal(a, b)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, x)
    if task in ("denoise", "inpaint"):
        assert not torch.equal(a, degrade(x, task, 8, seed=3))
        assert not torch.equal(a, degrade(x, task, 7, seed=4))
    else:  # no randomness: the index does not matter
        assert torch.equal(a, degrade(x, task, 8, seed=4))
    if task in ("colorize", "edges2img") and c == 3:
        assert torch.equal(a[0], a[1]) and torch.equal(a[1], a[2])  # gray, replicated to 3 channels
    if task == "edges2img":
        assert set(a.unique().tolist()) <= {-1.0, 1.0}


def test_task_details():
    x = image(1)
    hole = degrade(x, "inpaint", 0, params=TaskParams(hole_frac=0.25))
    changed = (hole != x).any(0)
    assert int(changed.sum()) == 8 * 8 and (hole[:, changed] == 0).all()  # an 8 px mid-gray square
    noisy = degrade(torch.zeros(1, 64, 64), "denoise", 0, params=TaskParams(noise_sigma=0.1))
    assert abs(float(noisy.std()) - 0.1) < 0.01
    flat = torch.full((3, 32, 32), 0.3)
    for t in ("sr4", "deblur"):
        assert torch.allclose(degrade(flat, t, 0), flat, atol=1e-5)  # nothing to lose in a flat image
    assert (degrade(flat, "edges2img", 0) == -1).all()  # no edges: black
    step = torch.full((1, 32, 32), -1.0)
    step[:, :, 16:] = 1.0
    edges = degrade(step, "edges2img", 0)
    assert (edges[0, :, 15:17] == 1).all() and (edges[0, :, :14] == -1).all()  # white on black
    sr = degrade(x, "sr4", 0, params=TaskParams(scale=2))
    assert not torch.equal(sr, degrade(x, "sr4", 0))


def test_joined_task_applies_left_to_right():
    x = image(2)
    both = degrade(x, "denoise+inpaint", 5)
    assert torch.equal(both, degrade(x, " denoise + inpaint ", 5))
    assert parse_task("denoise+inpaint") == ("denoise", "inpaint")
    assert int((both == 0).all(0).sum()) == 64  # the hole was cut after the noise: clean gray
    rev = degrade(x, "inpaint+denoise", 5)
    assert int((rev == 0).all(0).sum()) < 64  # noise over the hole
    assert not torch.equal(both, degrade(x, "denoise+inpaint", 6))
    assert both.min() >= -1 and both.max() <= 1


def test_batch_and_single_agree_and_seed_mix_is_stable():
    xs = torch.stack([image(i) for i in range(6)])
    batch = degrade_batch(xs, "denoise+inpaint", range(10, 16), seed=9)
    for i in range(6):
        assert torch.equal(batch[i], degrade(xs[i], "denoise+inpaint", 10 + i, seed=9))
    rev = degrade_batch(xs.flip(0), "denoise+inpaint", range(15, 9, -1), seed=9)
    assert torch.equal(rev.flip(0), batch)  # order does not matter
    assert pair_seed(0, 1) == pair_seed(0, 1) != pair_seed(1, 0) != pair_seed(0, 0)
    assert 0 <= pair_seed(-5, 2**70) < 2**63


def test_bad_task_and_params_messages():
    want = "unknown --task 'x'; choose from denoise, inpaint, sr4, deblur, colorize, edges2img (join with +)"
    with pytest.raises(ValueError) as e:
        degrade(image(), "x", 0)
    assert str(e.value) == want
    assert check_task("paired") == "paired" and check_task("denoise + sr4") == "denoise+sr4"
    with pytest.raises(ValueError, match="unknown --task 'blur'"):
        check_task("blur")
    with pytest.raises(ValueError, match="unknown --task 'blur'"):
        parse_task("denoise+blur")
    with pytest.raises(ValueError, match="unknown --task"):
        parse_task("denoise+")
    for kw, flag in [(dict(noise_sigma=-0.1), "--noise-sigma"), (dict(hole_frac=0), "--hole-frac"),
                     (dict(hole_frac=1.5), "--hole-frac"), (dict(blur_sigma=0), "--blur-sigma"),
                     (dict(scale=1), "--scale"), (dict(scale=2.5), "--scale"),
                     (dict(noise_sigma=float("nan")), "--noise-sigma")]:  # fmt: skip
        with pytest.raises(ValueError, match=flag):
            TaskParams(**kw)
    assert TaskParams(scale=2.0).scale == 2 and isinstance(TaskParams(scale=2.0).scale, int)
    with pytest.raises(ValueError, match="--scale 8 is larger"):
        degrade(torch.zeros(1, 4, 4), "sr4", 0, params=TaskParams(scale=8))
    with pytest.raises(TypeError, match="float images"):
        degrade(torch.zeros(1, 8, 8, dtype=torch.uint8), "denoise", 0)


# ---------------------------------------------------------------- degraded datasets


def test_task_required_for_plain_data(rgb_folder):
    spec = f"folder:{rgb_folder}"
    for task in (None, "paired"):
        with pytest.raises(DataError) as e:
            load_pairs(spec, task=task)
        assert str(e.value) == (f"--task is needed to make pairs from {spec}: choose from denoise, inpaint, sr4, "
                                "deblur, colorize, edges2img (join with +)")  # fmt: skip
    with pytest.raises(ValueError, match="unknown --task 'nope'"):
        load_pairs(spec, task="nope")


def test_degraded_folder_pairs(rgb_folder):
    spec = f"folder:{rgb_folder}"
    assert pairs_info(spec).channels == 3
    ds = load_pairs(spec, "train", task="denoise", seed=1)
    assert ds.images.shape == ds.sources.shape == (27, 3, 32, 32) and ds.task == "denoise"
    assert ds.name.endswith("+denoise") and not ds.labels.any()
    for i in (0, 5, 26):  # index = position in the loaded split
        want = to_uint8(degrade(to_float(ds.images[i]), "denoise", i, seed=1))
        assert torch.equal(ds.sources[i], want)
    again = load_pairs(spec, "train", task="denoise", seed=1)
    assert torch.equal(again.sources, ds.sources) and again.content_hash() == ds.content_hash()
    hashes = {
        ds.content_hash(),
        load_pairs(spec, "train", task="denoise", seed=2).content_hash(),
        load_pairs(spec, "train", task="inpaint", seed=1).content_hash(),
        load_pairs(spec, "train", task="denoise+inpaint", seed=1).content_hash(),
        load_pairs(spec, "train", task="denoise", seed=1, params=TaskParams(noise_sigma=0.3)).content_hash(),
    }
    assert len(hashes) == 5
    small = load_pairs(spec, "val", resolution=16, task="colorize")
    assert small.sources.shape == (3, 3, 16, 16) and torch.equal(small.sources[:, 0], small.sources[:, 2])


def test_gray_data_keeps_one_channel_and_refuses_colorize(tmp_path):
    gray = write_rgb(tmp_path / "g", names(10), size=32, mode="L")
    spec = f"folder:{gray}"
    ds = load_pairs(spec, "fit", task="edges2img")
    assert ds.sources.shape == (8, 1, 32, 32)
    assert pair_shape(spec) == (1, 32)
    with pytest.raises(ValueError, match="--image-channels 3 but"):
        pair_shape(spec, 3)
    with pytest.raises(DataError, match="colorize needs colour images"):
        load_pairs(spec, "fit", task="denoise+colorize")


def test_pair_stream_deterministic(rgb_folder):
    ds = load_pairs(f"folder:{rgb_folder}", "train", task="denoise")
    a, b = PairStream(ds, 4, seed=3), PairStream(ds, 4, seed=3)
    for step in (0, 1, 9):
        (sa, ta), (sb, tb) = a.batch(step), b.batch(step)
        assert torch.equal(sa, sb) and torch.equal(ta, tb)
        idx = a.indices(step)
        assert torch.equal(sa, to_float(ds.sources[idx])) and torch.equal(ta, to_float(ds.images[idx]))
        assert sa.shape == ta.shape == (4, 3, 32, 32)
    assert not torch.equal(a.batch(0)[1], a.batch(1)[1])
    # the plain BatchStream sees the duck type: targets and zero labels, same indices
    t, y = BatchStream(ds, 4, seed=3).batch(1)
    assert torch.equal(t, a.batch(1)[1]) and not y.any()
    r0, r1 = PairStream(ds, 2, seed=3, rank=0, world=2), PairStream(ds, 2, seed=3, rank=1, world=2)
    assert torch.equal(torch.cat([r0.indices(0), r1.indices(0)]), a.indices(0))


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST is not installed")
def test_fashion_mnist_pairs():
    ds = load_pairs("fashion-mnist", "val", task="sr4")
    assert ds.images.shape == ds.sources.shape == (5000, 1, 32, 32)
    assert pairs_info("fashion-mnist").channels == 1
    assert torch.equal(ds.sources[3], to_uint8(degrade(to_float(ds.images[3]), "sr4", 3)))
    with pytest.raises(DataError, match="colorize needs colour images but fashion-mnist is loaded gray"):
        load_pairs("fashion-mnist", "val", task="colorize")
