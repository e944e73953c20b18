"""Every path holds (issue 26): each refusal is one line that names the fix and a flag, and
leaves nothing written or lost; overwriting needs --force; broken weights are never scored,
sampled or shipped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from foreign_models import TutorialDCGAN, trained_like
from safetensors.torch import save_file
from testkit import one_line_error, run_cli, tree, unwritable_folder

from gankd.checkpoint import load_model, save_model
from gankd.sampling import MAX_IMAGES

TINY_COMPRESS = ["--steps", "1", "--width", "0.5", "--batch-size", "4", "--no-progress", "--data", "none",
                 "--select", "teacher-l1", "--perc", "0", "--kd", "0", "--set", "threads=1"]  # fmt: skip


def _nan_model(gen_dir: Path, out: Path) -> Path:
    g = load_model(gen_dir, "generator")
    with torch.no_grad():
        g.to_img.weight.fill_(float("nan"))
    return save_model(out, g, "generator")


# ---------------------------------------------------------------- overwriting (--force)
def test_sample_replaces_only_its_own_png_unless_forced(gen_dir, tmp_path, capsys):
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"my holiday photo")
    msg = one_line_error(capsys, "sample", "--model", gen_dir, "--seeds", "0-3", "--out", mine)
    assert msg == (f"gankd sample: error: --out {mine} exists and gankd did not write it; pass --force to replace "
                   "it, or choose another --out")  # fmt: skip
    assert mine.read_bytes() == b"my holiday photo"
    assert run_cli(capsys, "sample", "--model", gen_dir, "--seeds", "0-3", "--out", mine, "--force")[0] == 0
    first = mine.read_bytes()
    assert first.startswith(b"\x89PNG")
    # a PNG gankd wrote is gankd's to replace on a rerun
    assert run_cli(capsys, "sample", "--model", gen_dir, "--seeds", "4-7", "--out", mine)[0] == 0
    assert mine.read_bytes() != first


def test_eval_refuses_a_foreign_out_before_any_metric(gen_dir, tmp_path, capsys, monkeypatch):
    import gankd.evaluate

    def never(*a, **k):
        raise AssertionError("metrics computed before --out was checked")

    monkeypatch.setattr(gankd.evaluate, "evaluate", never)
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    msg = one_line_error(capsys, "eval", "--model", gen_dir, "--out", notes)
    assert msg.endswith(f"--out {notes} exists and gankd did not write it; pass --force to replace it, or choose "
                        "another --out")  # fmt: skip
    assert notes.read_text() == '{"mine": 1}'
    msg = one_line_error(capsys, "eval", "--model", gen_dir, "--out", tmp_path)
    assert msg == (f"gankd eval: error: --out {tmp_path} is a folder; give a file path, e.g. --out "
                   f"{tmp_path / 'eval.json'}")
    ro = unwritable_folder(tmp_path)
    msg = one_line_error(capsys, "eval", "--model", gen_dir, "--out", ro / "e.json")
    assert msg.startswith(f"gankd eval: error: --out {ro / 'e.json'} cannot be written ({ro}: ")
    assert msg.endswith("); choose a writable --out")
    monkeypatch.undo()  # counts are checked by evaluate itself, before it loads anything
    before = tree(tmp_path)
    for flag in ("--big-batch", "--num-reference", "--teacher-samples"):
        msg = one_line_error(capsys, "eval", "--model", gen_dir, flag, 0, "--out", tmp_path / "e.json")
        assert msg.startswith(f"gankd eval: error: {flag} must be >= 1") and msg.endswith("got 0"), msg
    assert tree(tmp_path) == before


def test_export_replaces_only_its_own_files_unless_forced(gen_dir, tmp_path, capsys):
    out = tmp_path / "g.pt"
    out.write_bytes(b"someone's model")
    msg = one_line_error(capsys, "export", "--model", gen_dir, "--format", "torchscript", "--out", out)
    assert msg == (f"gankd export: error: --out {out} exists and gankd did not write it; pass --force to replace "
                   "it, or choose another --out")  # fmt: skip
    assert out.read_bytes() == b"someone's model" and sorted(p.name for p in tmp_path.iterdir()) == ["g.pt", "gen"]
    (tmp_path / "h.pt.json").write_text("{}")  # a companion file that is not gankd's record
    msg = one_line_error(capsys, "export", "--model", gen_dir, "--format", "torchscript", "--out", tmp_path / "h.pt")
    assert "h.pt.json beside it exists and gankd did not write it; pass --force" in msg
    assert run_cli(capsys, "export", "--model", gen_dir, "--format", "torchscript", "--out", out, "--force")[0] == 0
    assert json.loads((tmp_path / "g.pt.json").read_text())["schema"] == "gankd.export/1"
    assert run_cli(capsys, "export", "--model", gen_dir, "--format", "torchscript", "--out", out)[0] == 0  # rerun


def test_report_onto_a_file_and_sample_into_a_folder(gen_dir, tmp_path, capsys):
    f = tmp_path / "report.txt"
    f.write_text("keep")
    msg = one_line_error(capsys, "report", "pretrained/fmnist-teacher/metrics.json", "--out", f)
    assert msg == (f"gankd report: error: --out {f} is a file; a report is a folder (report.md and "
                   "quality_vs_speed.png): choose a folder for --out")  # fmt: skip
    assert f.read_text() == "keep"
    msg = one_line_error(capsys, "sample", "--model", gen_dir, "--out", tmp_path)
    assert msg == (f"gankd sample: error: --out {tmp_path} is a folder; give a file path, e.g. --out "
                   f"{tmp_path / 'grid.png'}")


# ---------------------------------------------------------------- import
def test_import_refusals_leave_nothing_behind(tmp_path, capsys, monkeypatch):
    torch.manual_seed(1)
    g = trained_like(TutorialDCGAN(16, 8, 3))
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(tmp_path / "g.safetensors"))
    base = ["import", "--class", "foreign_models:TutorialDCGAN", "--weights", tmp_path / "g.safetensors"]
    kw = ["--kwargs", '{"nz": 16, "ngf": 8, "nc": 3}']
    before = tree(tmp_path)
    msg = one_line_error(capsys, *base, "--kwargs", tmp_path / "kw.json", "--out", tmp_path / "m")
    assert msg == (f"gankd import: error: --kwargs file {tmp_path / 'kw.json'} does not exist; pass an existing "
                   """.json file or a JSON object such as '{"nz": 100}'""")  # fmt: skip
    ro = unwritable_folder(tmp_path)
    msg = one_line_error(capsys, *base, *kw, "--out", ro / "m")
    assert msg.startswith(f"gankd import: error: --out {ro / 'm'} cannot be written") and "writable --out" in msg
    import gankd.checkpoint

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as mp:
        mp.setattr(gankd.checkpoint, "save_json", full_disk)  # the write fails half way
        msg = one_line_error(capsys, *base, *kw, "--out", tmp_path / "m")
    assert msg == "gankd import: error: no space left on device"
    assert tree(tmp_path) == before  # no --out, and no hidden .m.tmp-PID folder beside it
    # replacing a model (--force) fails at the last rename: the old model stays whole, nothing hidden is left
    assert run_cli(capsys, *base, *kw, "--out", tmp_path / "m")[0] == 0
    before = tree(tmp_path)
    rename = os.rename

    def failing_rename(src, dst):
        if ".tmp-" in str(src):
            raise OSError(5, "Input/output error")
        return rename(src, dst)

    with monkeypatch.context() as mp:
        mp.setattr(os, "rename", failing_rename)
        assert one_line_error(capsys, *base, *kw, "--out", tmp_path / "m", "--force").endswith("input/output error")
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- broken or mismatched weights
def test_nan_weights_are_never_sampled_scored_shipped_or_distilled(gen_dir, tmp_path, capsys):
    bad = _nan_model(gen_dir, tmp_path / "nan")
    line = (f"model {bad} produced non-finite pixels (NaN or inf) in 4 of 4 images: its weights give NaN/inf; "
            "retrain it or restore its model.safetensors")  # fmt: skip
    before = tree(tmp_path)
    for argv in (["sample", "--model", bad, "--out", tmp_path / "s.png"],
                 ["eval", "--model", bad, "--metrics", "none"],
                 ["export", "--model", bad],
                 ["eval", "--model", gen_dir, "--teacher", bad, "--metrics", "none", "--out", tmp_path / "e.json"],
                 ["compress", "--teacher", bad, "--out", tmp_path / "run", *TINY_COMPRESS]):  # fmt: skip
        assert one_line_error(capsys, *argv) == f"gankd {argv[0]}: error: {line}"
    assert tree(tmp_path) == before


def test_a_config_that_no_longer_fits_its_weights_is_one_line(gen_dir, tmp_path, capsys):
    torch.manual_seed(1)
    g = trained_like(TutorialDCGAN(16, 8, 3))
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(tmp_path / "g.safetensors"))
    m = tmp_path / "m"
    assert run_cli(capsys, "import", "--class", "foreign_models:TutorialDCGAN", "--kwargs",
                   '{"nz": 16, "ngf": 8, "nc": 3}', "--weights", tmp_path / "g.safetensors", "--out", m)[0] == 0
    meta = json.loads((m / "config.json").read_text())
    meta["io"]["inputs"][0]["shape"] = [32, 1, 1]  # the latent shape edited away from the weights'
    (m / "config.json").write_text(json.dumps(meta))
    meta = json.loads((gen_dir / "config.json").read_text())
    meta["config"]["z_dim"] = 64  # gankd's own family: the shapes of the tensors say it
    (gen_dir / "config.json").write_text(json.dumps(meta))
    before = tree(tmp_path)
    for cmd in (["eval", "--metrics", "none"], ["export"], ["sample", "--out", tmp_path / "s.png"]):
        msg = one_line_error(capsys, cmd[0], "--model", m, *cmd[1:])
        assert msg.startswith(f"gankd {cmd[0]}: error: model {m}: its config.json does not fit its weights "
                              "(a first batch fails: ")  # fmt: skip
        assert msg.endswith("); restore config.json or re-save the model (gankd import for an imported one)")
    msg = one_line_error(capsys, "export", "--model", gen_dir)
    assert "has shape" in msg and "the weights belong to a different model" in msg
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- nonsense accepted
def test_sample_seeds_cap_and_negative_seeds(gen_dir, tmp_path, capsys):
    out = tmp_path / "s.png"
    msg = one_line_error(capsys, "sample", "--model", gen_dir, "--seeds", "0-100000", "--out", out)
    assert msg == (f"gankd sample: error: --seeds 0-100000 asks for 100,001 images, over the cap of {MAX_IMAGES:,} "
                   "(the grid PNG would be 274 x 425,036 px); pass fewer --seeds or raise the cap with "
                   "--max-images 100001")  # fmt: skip
    # a range too large to list is refused as fast
    assert "asks for 10,000,000,001 images" in one_line_error(capsys, "sample", "--model", gen_dir, "--seeds",
                                                              "0-10000000000", "--out", out)  # fmt: skip
    msg = one_line_error(capsys, "sample", "--model", gen_dir, "--seeds", "-3", "--out", out)
    assert msg == "gankd sample: error: --seeds -3 is negative; seeds count from 0, e.g. --seeds 0-63"
    assert not out.exists()
    assert run_cli(capsys, "sample", "--model", gen_dir, "--seeds", "0-9", "--max-images", 10, "--out", out)[0] == 0
    assert "over the cap of 9" in one_line_error(capsys, "sample", "--model", gen_dir, "--seeds", "0-9",
                                                 "--max-images", 9, "--out", out)  # fmt: skip


@pytest.mark.parametrize("cmd", ["compress", "train-teacher", "train-classifier"])
def test_a_negative_time_budget_is_refused_before_out_exists(cmd, gen_dir, tmp_path, capsys):
    out = tmp_path / "deep" / "run"
    extra = ["--teacher", gen_dir] if cmd == "compress" else []
    msg = one_line_error(capsys, cmd, *extra, "--max-minutes", -1, "--out", out)
    assert msg == f"gankd {cmd}: error: --max-minutes must be >= 0 (0 = no time budget), got -1.0"
    assert not (tmp_path / "deep").exists()


def test_a_refused_run_leaves_no_marker_only_folder(gen_dir, tmp_path, capsys):
    """--gt is refused after the run folder was prepared: what the run created goes again."""
    out = tmp_path / "new" / "run"
    msg = one_line_error(capsys, "compress", "--teacher", gen_dir, "--gt", 1, "--out", out, *TINY_COMPRESS)
    assert "--gt" in msg and not (tmp_path / "new").exists()
    out.mkdir(parents=True)  # an empty folder the user made stays, empty
    one_line_error(capsys, "compress", "--teacher", gen_dir, "--gt", 1, "--out", out, *TINY_COMPRESS)
    assert out.is_dir() and list(out.iterdir()) == []
    ro = unwritable_folder(tmp_path)
    msg = one_line_error(capsys, "compress", "--teacher", gen_dir, "--out", ro / "run", *TINY_COMPRESS)
    assert msg == (f"gankd compress: error: --out {ro / 'run'} cannot be created (permission denied); choose a "
                   "folder you can write to as --out")  # fmt: skip
