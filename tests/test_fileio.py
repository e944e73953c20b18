"""fileio: the paths results record (atomic writes are tested in test_checkpoint.py)."""

from gankd import fileio


def test_portable_path_is_relative_to_repo_pretrained_or_cwd(tmp_path, monkeypatch):
    from gankd.checkpoint import pretrained_dir

    root = fileio.repo_root()
    assert root is not None and (root / "gankd").is_dir()
    assert fileio.portable_path(root / "runs" / "x" / "student") == "runs/x/student"
    assert fileio.portable_path(pretrained_dir() / "fmnist-teacher") == "pretrained/fmnist-teacher"
    monkeypatch.setenv("GANKD_PRETRAINED", str(tmp_path / "shipped"))
    assert fileio.portable_path(tmp_path / "shipped" / "t" / "model.safetensors") == "pretrained/t/model.safetensors"
    monkeypatch.chdir(tmp_path)
    assert fileio.portable_path(tmp_path / "mine" / "g") == "mine/g"
    assert fileio.portable_path("rel/g") == "rel/g" and fileio.portable_path(None) is None
    assert not fileio.portable_path(root / "gankd").startswith("/")


def test_written_by_gankd_reads_tags_and_schemas(tmp_path):
    import json

    import torch

    from gankd.sampling import png_bytes

    (tmp_path / "g.png").write_bytes(png_bytes(torch.zeros(1, 4, 4, dtype=torch.uint8)))
    (tmp_path / "p.png").write_bytes(b"\x89PNG\r\n\x1a\nsomeone else's")
    (tmp_path / "e.json").write_text(json.dumps({"schema": "gankd.eval/1"}))
    (tmp_path / "n.json").write_text(json.dumps({"mine": 1}))
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    (tmp_path / "m.onnx.json").write_text(json.dumps({"schema": "gankd.export/1"}))
    (tmp_path / "x.onnx").write_bytes(b"onnx")
    got = {p.name: fileio.written_by_gankd(p) for p in tmp_path.iterdir()}
    assert got == {"g.png": True, "p.png": False, "e.json": True, "n.json": False, "m.onnx": True,
                   "m.onnx.json": True, "x.onnx": False}  # fmt: skip


def test_check_out_file_rule(tmp_path):
    import pytest

    (tmp_path / "n.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"n.json exists and gankd did not write it; pass --force"):
        fileio.check_out_file(tmp_path / "n.json")
    assert fileio.check_out_file(tmp_path / "n.json", force=True) == tmp_path / "n.json"
    assert fileio.check_out_file(tmp_path / "new" / "deeper" / "a.png") == tmp_path / "new" / "deeper" / "a.png"
    assert not (tmp_path / "new").exists()  # checked, nothing created
    with pytest.raises(IsADirectoryError, match="is a folder; give a file path"):
        fileio.check_out_file(tmp_path)
    with pytest.raises(NotADirectoryError, match="n.json is a file, not a folder"):
        fileio.check_out_file(tmp_path / "n.json" / "a.png", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.json"]  # no probe file left
