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
    assert len(ds) == 16 and ds.num_classes == 2 and ds.class_names == ("cats", "dogs")
    assert ds.images.shape == (16, 1, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0] * 8 + [1] * 8


def test_folder_without_classes_and_rgb(tmp_path):
    root = write_images(tmp_path / "flat", {"": 5}, size=(40, 30), mode="RGB")
    ds = load_folder(root, resolution=8, channels=3)
    assert ds.num_classes == 0 and ds.class_names == () and ds.labels.tolist() == [0] * 5
    assert ds.images.shape == (5, 3, 8, 8)
    assert ds.channels == 3 and ds.resolution == 8


def test_folder_fit_val_split_keeps_class_indices(tmp_path):
    # files sort a/0..9, b/0..8, c/0..10; every 10th (index 9, 19, 29) is val: no 'b' in val
    root = write_images(tmp_path / "f", {"a": 10, "b": 9, "c": 11})
    full, fit, val = (load_folder(root, split) for split in ("train", "fit", "val"))
    assert len(fit) + len(val) == len(full) == 30 and len(val) == 3
    assert full.class_names == fit.class_names == val.class_names == ("a", "b", "c")
    assert val.num_classes == fit.num_classes == 3
    # the same file must get the same label in every split
    by_image = {full.images[i].numpy().tobytes(): int(full.labels[i]) for i in range(len(full))}
    for ds in (fit, val):
        for i in range(len(ds)):
            assert by_image[ds.images[i].numpy().tobytes()] == int(ds.labels[i])
    with pytest.raises(DataError, match="not available for folders"):
        load_folder(root, "test")
    with pytest.raises(DataError, match="split 'val' .* is empty"):
        load_folder(write_images(tmp_path / "small", {"a": 3}), "val")


def test_corrupt_image_is_skipped_with_a_counted_warning(image_folder, caplog):
    (image_folder / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (image_folder / "dogs" / "empty.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="gankd.data"):
        ds = load_folder(image_folder)
    assert len(ds) == 16
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
