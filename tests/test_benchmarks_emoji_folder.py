"""benchmarks/emoji_folder.py: a folder of RGBA PNGs from a colour emoji font, and its refusals."""

import json
from pathlib import Path

import pytest
from testkit import load_benchmark

from gankd.data import load_dataset


def test_missing_font_is_refused_naming_the_fix(tmp_path, capsys):
    emoji = load_benchmark("emoji_folder")
    assert emoji.main(["--out", str(tmp_path / "e"), "--font", str(tmp_path / "none.ttf")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fonts-noto-color-emoji" in err and "--font" in err
    assert not (tmp_path / "e").exists()


def test_a_foreign_folder_is_never_written_into(tmp_path, capsys):
    emoji = load_benchmark("emoji_folder")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "photo.png").write_bytes(b"x")
    assert emoji.main(["--out", str(out), "--font", __file__]) == 2
    assert "pass another --out" in capsys.readouterr().err and sorted(p.name for p in out.iterdir()) == ["photo.png"]


@pytest.mark.skipif(not Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf").is_file(),
                    reason="fonts-noto-color-emoji is not installed")  # fmt: skip
def test_renders_a_folder_gankd_loads_as_rgb(tmp_path):
    emoji = load_benchmark("emoji_folder")
    out = tmp_path / "emoji"
    assert emoji.main(["--out", str(out), "--size", "32"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["images"] == len(list(out.glob("*.png"))) > 1000 and "U+1F600" in index["code_points"]
    data = load_dataset(f"folder:{out}", "train", 32, None)
    assert data.images.shape[1:] == (3, 32, 32) and data.num_classes == 0
