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
