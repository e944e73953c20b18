"""Datasets: the real Fashion-MNIST files, image folders, and the missing-data message."""

import gzip
import logging

import numpy as np
import pytest
import torch
from testkit import needs_fmnist, write_images

from gankd import data as gdata
from gankd.data import DataError, load_dataset, load_fmnist, load_folder, to_float, to_uint8


def raw_idx(name: str) -> np.ndarray:
    with gzip.open(gdata.SYSTEM_DIR / name) as f:
        buf = f.read()
    ndim = buf[3]
    dims = [int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(buf, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.fixture(scope="module")
def fmnist_train():
    return load_fmnist("train")


@needs_fmnist
def test_fmnist_train_matches_raw_idx(fmnist_train, monkeypatch):
    monkeypatch.delenv("GANKD_DATA", raising=False)
    ds = fmnist_train
    assert len(ds) == 60000 and ds.num_classes == 10 and len(ds.class_names) == 10
    assert ds.images.shape == (60000, 1, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64
    assert set(ds.labels.unique().tolist()) == set(range(10))
    raw = raw_idx("train-images-idx3-ubyte.gz")
    # padding keeps every original pixel: the 28x28 centre is the raw data, the border is black
    assert np.array_equal(ds.images[:, 0, 2:30, 2:30].numpy(), raw)
    border = ds.images.clone()
    border[:, :, 2:30, 2:30] = 0
    assert border.max() == 0
    assert np.array_equal(ds.labels.numpy(), raw_idx("train-labels-idx1-ubyte.gz"))
    x, y = ds[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and -1 <= x.min() <= x.max() <= 1
    assert int(y) == int(ds.labels[0])


@needs_fmnist
def test_fmnist_splits(fmnist_train):
    test = load_fmnist("test")
    assert len(test) == 10000 and test.images.shape[1:] == (1, 32, 32)
    assert np.array_equal(test.images[:, 0, 2:30, 2:30].numpy(), raw_idx("t10k-images-idx3-ubyte.gz"))
    fit, val = load_fmnist("fit"), load_dataset("fashion-mnist", "val")
    assert len(fit) == 55000 and len(val) == 5000
    # fit and val partition train, in order
    assert torch.equal(torch.cat([fit.images, val.images]), fmnist_train.images)
    assert torch.equal(torch.cat([fit.labels, val.labels]), fmnist_train.labels)
    assert fit.content_hash() != val.content_hash()
    with pytest.raises(DataError, match="unknown split"):
        load_fmnist("holdout")
    with pytest.raises(DataError, match="gray"):
        load_dataset("fashion-mnist", channels=3)


@needs_fmnist
def test_fmnist_other_resolution():
    ds = load_fmnist("val", resolution=16)
    assert ds.images.shape == (5000, 1, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.images.float().mean() > 10  # resized content, not an empty image


def test_uint8_float_round_trip():
    u = torch.arange(256, dtype=torch.uint8)
    f = to_float(u)
    assert f.min() == -1 and f.max() == 1
    assert torch.equal(to_uint8(f), u)
    assert to_uint8(torch.tensor([-3.0, 5.0])).tolist() == [0, 255]


def test_folder_with_classes(image_folder):
    ds = load_dataset(f"folder:{image_folder}", resolution=16)
    # train = fit + val: 2 of the 16 images are test
    assert len(ds) == 14 and ds.num_classes == 2 and ds.class_names == ("cats", "dogs")
    assert ds.images.shape == (14, 1, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0] * 7 + [1] * 7


def test_folder_without_classes_and_rgb(tmp_path):
    root = write_images(tmp_path / "flat", {"": 5}, size=(40, 30), mode="RGB")
    ds = load_folder(root, resolution=8, channels=3)
    assert ds.num_classes == 0 and ds.class_names == () and ds.labels.tolist() == [0] * 4
    assert ds.images.shape == (4, 3, 8, 8)
    assert ds.channels == 3 and ds.resolution == 8


def test_folder_splits_are_deterministic_and_keep_class_indices(tmp_path):
    # files sort a/0..9, b/0..8, c/0..10: index 9, 19, 29 are val, 4, 14, 24 are test
    root = write_images(tmp_path / "f", {"a": 10, "b": 9, "c": 11})
    train, fit, val, test = (load_folder(root, split) for split in ("train", "fit", "val", "test"))
    assert len(val) == len(test) == 3 and len(fit) == 24 and len(train) == len(fit) + len(val) == 27
    assert train.class_names == fit.class_names == val.class_names == test.class_names == ("a", "b", "c")
    assert val.num_classes == fit.num_classes == test.num_classes == 3
    assert [gdata.folder_split_of(i) for i in (4, 9, 14, 19, 0)] == ["test", "val", "test", "val", "fit"]
    # the same file gets the same label in every split; train never holds a test image
    split_of = {}
    for name, ds in (("fit", fit), ("val", val), ("test", test)):
        for i in range(len(ds)):
            split_of[ds.images[i].numpy().tobytes()] = (name, int(ds.labels[i]))
    assert len(split_of) == 30
    for i in range(len(train)):
        name, label = split_of[train.images[i].numpy().tobytes()]
        assert name in ("fit", "val") and label == int(train.labels[i])
    assert torch.equal(load_folder(root, "test").images, test.images)  # deterministic
    with pytest.raises(DataError, match="split 'val' .* is empty"):
        load_folder(write_images(tmp_path / "small", {"a": 3}), "val")
    with pytest.raises(DataError, match="split 'test' .* is empty.*at least 5"):
        load_folder(tmp_path / "small", "test")


def test_shapes_come_from_the_data(tmp_path):
    rgb = write_images(tmp_path / "rgb", {"": 6}, size=(72, 72), mode="RGB")
    gray = write_images(tmp_path / "gray", {"x": 5, "y": 5}, size=(28, 28))
    i = gdata.data_info(f"folder:{rgb}")
    assert (i.channels, i.resolution, i.source_size, i.num_classes, i.num_images) == (3, 64, 72, 0, 6)
    i = gdata.data_info(f"folder:{gray}")
    assert (i.channels, i.resolution, i.num_classes, i.class_names) == (1, 32, 2, ("x", "y"))
    assert gdata.data_info("fashion-mnist").fmnist and not i.fmnist
    assert [gdata.default_resolution(s) for s in (8, 28, 45, 72, 100, 200, 1000)] == [32, 32, 32, 64, 128, 256, 256]
    ds = load_dataset(f"folder:{rgb}")  # no shape given: the data's
    assert ds.images.shape == (5, 3, 64, 64)  # train: all but the test image (index 4)
    assert gdata.resolve_shape(f"folder:{gray}") == (1, 32, 2)
    assert gdata.resolve_shape(f"folder:{gray}", resolution=64, num_classes=0) == (1, 64, 0)
    assert gdata.resolve_shape(f"folder:{rgb}", image_channels=1) == (1, 64, 0)  # gray on request
    for kw, flag in ((dict(image_channels=3), "--image-channels 1"), (dict(num_classes=10), "--num-classes 2"),
                     (dict(resolution=48), "--resolution")):  # fmt: skip
        with pytest.raises(ValueError, match=flag) as e:
            gdata.resolve_shape(f"folder:{gray}", **kw)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="--num-classes 0 .unconditional"):
        gdata.resolve_shape(f"folder:{rgb}", num_classes=3)


def test_transparency_is_composited_onto_white_and_said_once(tmp_path, caplog):
    from PIL import Image

    root = tmp_path / "alpha"
    root.mkdir()
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255  # hidden red under full transparency ...
    rgba[10:30, 10:30] = (0, 0, 255, 255)  # ... and an opaque blue square
    for i in range(5):
        Image.fromarray(rgba).save(root / f"{i}.png")
    la = np.zeros((40, 40, 2), np.uint8)
    Image.fromarray(la, mode="LA").save(root / "5.png")
    pal = Image.fromarray(np.zeros((40, 40), np.uint8), mode="P")
    pal.putpalette([0, 0, 0] * 256)
    pal.info["transparency"] = 0
    pal.save(root / "6.png", transparency=0)
    gdata._SAID.clear()
    with caplog.at_level(logging.WARNING, logger="gankd.data"):
        ds = load_folder(root, resolution=32)
        load_folder(root, resolution=32)
    assert ds.images.shape == (6, 3, 32, 32)  # train: file 4 is in test
    x = ds.images[0]
    assert x[:, 0, 0].tolist() == [255, 255, 255]  # transparent -> white, not the hidden red
    assert x[:, 16, 16].tolist() == [0, 0, 255]
    assert ds.images[4].min() == 255 and ds.images[5].min() == 255  # LA and palette transparency
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("composited onto white" in m for m in msgs) == 1
    assert sum("resized" in m and "32 px" in m for m in msgs) == 1  # 40 -> 32 px is said, once


def test_colour_dropped_only_on_request_and_said(tmp_path, caplog):
    root = write_images(tmp_path / "rgb", {"": 5}, size=(32, 32), mode="RGB")
    gdata._SAID.clear()
    with caplog.at_level(logging.WARNING, logger="gankd.data"):
        ds = load_folder(root, channels=1)
    assert ds.images.shape == (4, 1, 32, 32)
    assert any("converted to gray" in r.getMessage() for r in caplog.records)


def test_wesnoth_units_named_dataset(monkeypatch, tmp_path):
    root, install = gdata.NAMED_FOLDERS["wesnoth-units"]
    assert install == "apt-get install -y wesnoth-1.16-data"
    if root.is_dir():
        info = gdata.data_info("wesnoth-units")
        assert info.channels == 3 and info.resolution == 64 and info.num_classes >= 20
        assert "drakes" in info.class_names and "unknown-unit" not in info.class_names
    monkeypatch.setitem(gdata.NAMED_FOLDERS, "wesnoth-units", (tmp_path / "absent", install))
    with pytest.raises(DataError, match="apt-get install -y wesnoth-1.16-data") as e:
        load_dataset("wesnoth-units", "fit")
    assert "\n" not in str(e.value)


def test_corrupt_image_is_skipped_with_a_counted_warning(image_folder, caplog):
    (image_folder / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (image_folder / "dogs" / "empty.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="gankd.data"):
        ds = load_folder(image_folder)
    assert len(ds) == 14
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(msgs) == 1 and "skipped 2 unreadable" in msgs[0]
    with pytest.raises(DataError, match="broken.png"):
        load_folder(image_folder, strict=True)


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'absent'}")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="no readable images"):
        load_folder(tmp_path / "bad")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("cifar10")


def test_missing_fmnist_gives_one_line_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(gdata, "SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(gdata.Path, "home", classmethod(lambda cls: tmp_path / "home"))
    monkeypatch.setenv("GANKD_DATA", str(tmp_path / "also-nowhere"))

    class NoNetwork:
        def __init__(self, *a, **k):
            raise OSError("Name or service not known")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", NoNetwork)
    with pytest.raises(DataError) as e:
        load_fmnist("train")
    msg = str(e.value)
    assert "\n" not in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "GANKD_DATA" in msg
    assert "train-images-idx3-ubyte.gz" in msg
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*.gz"))


def test_gankd_data_env_is_searched_first(tmp_path, monkeypatch):
    import shutil

    if not gdata.SYSTEM_DIR.is_dir():
        pytest.skip("needs the system Fashion-MNIST files to copy")
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(gdata.SYSTEM_DIR / f, tmp_path / f)
    # tiny fake train files: the loader must read these, not the system ones
    for name, header, body in [
        ("train-images-idx3-ubyte.gz", [0x803, 2, 28, 28], np.full((2, 28, 28), 7, np.uint8)),
        ("train-labels-idx1-ubyte.gz", [0x801, 2], np.array([3, 4], np.uint8)),
    ]:
        raw = b"".join(int(v).to_bytes(4, "big") for v in header) + body.tobytes()
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(raw)
    monkeypatch.setenv("GANKD_DATA", str(tmp_path))
    ds = load_fmnist("train")
    assert len(ds) == 2 and ds.labels.tolist() == [3, 4] and int(ds.images[0, 0, 5, 5]) == 7


def test_truncated_idx_is_a_clear_error(tmp_path, monkeypatch):
    raw = b"".join(int(v).to_bytes(4, "big") for v in [0x803, 5, 28, 28]) + bytes(100)
    with gzip.open(tmp_path / "x.gz", "wb") as f:
        f.write(raw)
    with pytest.raises(DataError, match="truncated"):
        gdata._read_idx(tmp_path / "x.gz")
    (tmp_path / "y.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read"):
        gdata._read_idx(tmp_path / "y.gz")
