"""benchmarks/i2i_matrix.py: the whole script in --smoke on a tiny image-to-image teacher (train,
evaluate, speed, tables, plot, grid, resume), its per-cell commands, and the targets check."""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from pathlib import Path

import pytest
from evalkit import private_cache_fixture  # noqa: F401  (fixture)
from testkit import load_benchmark, write_images

from gankd import cli

TINY_UNET = ["--set", 'g_options={"base_channels": 4, "depth": 3}', "--set", 'd_options={"base_channels": 4}']


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("i2i_matrix")


def _teacher(tmp_path: Path) -> Path:
    """A 2-step denoising U-Net on 40 random 32x32 RGB images (test 4, val 4, fit 32): its run folder."""
    folder = write_images(tmp_path / "rgb", {"": 40}, size=(32, 32), mode="RGB")
    code = cli.main(["train-teacher", "--data", f"folder:{folder}", "--task", "denoise", "--out", str(tmp_path / "t"),
                     "--steps", "2", "--batch-size", "4", "--no-progress", "--select", "last", *TINY_UNET])  # fmt: skip
    assert code == 0
    return tmp_path / "t"


@pytest.mark.usefixtures("private_cache")
def test_smoke_run_writes_every_number_and_resumes(bench, tmp_path, capsys):
    teacher = _teacher(tmp_path)  # the run folder: the script finds its generator/
    runs, out = tmp_path / "runs", tmp_path / "out"
    argv = ["--teacher", str(teacher), "--smoke", "--widths", "0.5", "--seeds", "1", "--sizes", "256",
            "--runs", str(runs), "--out", str(out)]  # fmt: skip
    assert bench.main(argv) == 0
    capsys.readouterr()
    for f in ("results.json", "RESULTS.md", "psnr_vs_macs.png", "grid.png", "cells/teacher.json",
              "cells/w0.5_full_s0.json", "cells/w0.5_scratch_s0.json"):  # fmt: skip
        assert (out / f).stat().st_size > 0, f
    res = json.loads((out / "results.json").read_text())
    assert res["teacher"].endswith("t/generator") and res["trained_size"] == 32 and res["headline_width"] == 0.5
    assert res["headline_note"]  # --headline 0.25 is not among --widths: said so, not silently
    full, scratch = res["summary"]["w0.5 full"], res["summary"]["w0.5 scratch"]
    for row in (full, scratch):
        assert row["seeds"] == [0] and row["steps"][0] >= 1
        for k in ("psnr", "ssim", "fid", "psnr_to_teacher", "psnr_gap_db"):
            assert math.isfinite(row[k]["mean"]), k
        assert set(row["mac_ratio"]) == {"32", "256"} and row["mac_ratio"]["32"] > 1
    assert full["params"] == scratch["params"] and full["macs"] == scratch["macs"]  # the same architecture
    assert res["headline"]["psnr"]["mean"] == full["psnr"]["mean"]

    cells = res["cells"]
    assert set(cells) == {"w0.5_full_s0", "w0.5_scratch_s0"}
    for c in cells.values():
        assert c["command"].startswith("gankd compress ") and c["train"]["last_step"] >= 1
        assert (runs / c["name"] / "DONE").exists() and (runs / c["name"] / "student" / "model.safetensors").exists()
    sc = cells["w0.5_scratch_s0"]["command"]
    for flag in ("--init random", "--pixel 0", "--perc 0", "--feat 0", "--kd 0", "--gt 100", "--adv 1", "--real data",
                 "--d-init fresh", "--select val-l1"):  # fmt: skip
        assert flag in sc, flag
    for name in cells:  # both recipes were selected by val-l1 on the val split, D as asked
        run_cfg = json.loads((runs / name / "config.json").read_text())
        assert run_cfg["selection"]["rule"] == "val-l1" and ":val" in run_cfg["selection"]["reference"]
        assert run_cfg["resolved"]["d_init"] == ("fresh" if "scratch" in name else "teacher")

    assert set(res["speed"]) == {"32", "256"} and set(res["speedups"]["256"]) == {"w0.5"}
    assert res["speedups"]["256"]["w0.5"]["onnx"]["median"] > 0
    targets = res["targets"]
    assert len(targets) == 2 and all(t["met"] in (True, False) for t in targets)  # computed, both measured
    assert targets[0]["met"] is False and "no width reaches 8x" in targets[0]["value"]  # w0.5: ~2.7x fewer MACs
    md = (out / "RESULTS.md").read_text()
    assert "| 0.5 | full | 1 |" in md and "| 0.5 | scratch | 1 |" in md and "| 1 | teacher |" in md
    assert "source (do nothing)" in md and "## Targets" in md and "ONNX b1 speed-up @ 256 px" in md
    assert cells["w0.5_scratch_s0"]["command"] in md
    assert res["grid"]["columns"] == ["source", "teacher", "w0.5", "target"] and res["grid"]["pairs"] == 4

    # a second invocation keeps finished cells and evaluations; without speed the target says why
    kept = {p: p.stat().st_mtime_ns for p in [*out.glob("cells/*.json"), *runs.glob("*/DONE")]}
    assert bench.main([*argv, "--no-speed"]) == 0
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    res2 = json.loads((out / "results.json").read_text())
    assert res2["speed"] is None and res2["summary"]["w0.5 full"]["psnr"] == full["psnr"]
    assert res2["targets"][1]["met"] is None and "--no-speed" in res2["targets"][1]["value"]
    assert "not measured" in (out / "RESULTS.md").read_text()


def test_cell_commands_build_the_same_config(bench, tmp_path, monkeypatch, capsys):
    """Each cell's `gankd compress` line, parsed by gankd's CLI, gives the DistillConfig the cell ran with."""
    import gankd.distill

    seen = []
    monkeypatch.setattr(gankd.distill, "compress", lambda cfg, out, **kw: seen.append(cfg) or Path(out) / "student")
    monkeypatch.chdir(tmp_path)
    args = bench.parse_args(["--teacher", "x", "--minutes", "2.5"])
    for recipe in bench.RECIPES:
        kw = bench.cell_config(args, Path("runs/t/generator"), 0.25, recipe, 1)
        argv = shlex.split(bench.compress_command(kw, tmp_path / "run"))
        assert argv[:2] == ["gankd", "compress"]
        assert cli.main(argv[1:]) == 0
        want = gankd.distill.DistillConfig(**kw)
        assert dataclasses.asdict(seen[-1]) == dataclasses.asdict(want), recipe
    capsys.readouterr()
    assert seen[0].init == "prune" and seen[0].gt == 0 and seen[0].max_minutes == 2.5 and seen[0].steps == 10**6
    assert seen[1].init == "random" and seen[1].pixel == 0 and seen[1].gt == 100 and seen[1].d_init == "fresh"


def _row(width, psnr, ratio, recipe="full"):
    return {"width": width, "recipe": recipe, "psnr": {"mean": psnr}, "mac_ratio": {"64": ratio, "256": ratio}}


def _ups(x):
    return {"256": {"w0.25": {"onnx": {"median": x, "min": x - 0.2, "max": x + 0.2}}}}


def test_targets_follow_the_numbers(bench):
    rows = {"w0.25 full": _row(0.25, 28.0, 3.9), "w0.125 full": _row(0.125, 27.8, 10.0),
            "w0.125 scratch": _row(0.125, 28.5, 10.0, "scratch")}  # fmt: skip
    t = bench.check_targets(rows, 28.0, _ups(2.0), 64, 0.25)
    assert [x["met"] for x in t] == [True, True]  # w0.125: -0.2 dB at 10x; 2.0x >= 3.9x / 2
    assert "w0.125: -0.20 dB" in t[0]["value"] and "2.00x" in t[1]["value"]

    rows["w0.125 full"] = _row(0.125, 27.6, 10.0)  # -0.4 dB; w0.25 is within 0.3 dB but at only 3.9x
    t = bench.check_targets(rows, 28.0, _ups(1.9), 64, 0.25)
    assert [x["met"] for x in t] == [False, False]  # scratch rows never count for the compression target

    t = bench.check_targets(rows, 28.0, {}, 64, 0.25, "--no-speed")
    assert t[1]["met"] is None and "--no-speed" in t[1]["value"]
    t = bench.check_targets(rows, 28.0, {"512": _ups(5.0)["256"]}, 64, 0.25)
    assert t[1]["met"] is None and "256" in t[1]["value"]
    md = bench.render_targets(t)
    assert "| **no** |" in md and md.endswith("| not measured |")
