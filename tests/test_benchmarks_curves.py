"""benchmarks/curves.py: time-to-teacher-quality and the table follow the measured points."""

import json
from pathlib import Path

import pytest
from testkit import assert_plot, load_benchmark


@pytest.fixture(scope="module")
def curves():
    return load_benchmark("curves")


TEACHER = {"fid": 2.0, "floor_fid": 0.06, "train_steps": 10000, "train_wall_minutes": 5.0, "train_device": "x"}


def _point(recipe, minutes, fid, seed=0, steps=None):
    return {"quality": {"fid": fid}, "curve": {"recipe": recipe, "width": 0.25, "seed": seed, "minutes": minutes,
                                               "steps": steps or int(minutes * 100)}}


def test_time_to_teacher_quality_is_the_first_point_within_ten_percent(curves):
    pts = [_point("full", 5, 4.0), _point("full", 10, 2.3), _point("full", 20, 2.15), _point("full", 40, 2.0),
           _point("scratch", 5, 9.0), _point("scratch", 10, 8.0)]
    s = curves.summarise(pts, TEACHER)
    t = s["w0.25 full"]["time_to_teacher_quality"]
    assert t["minutes"] == 20 and t["fraction_of_teacher_steps"] == pytest.approx(2000 / 10000)
    assert s["w0.25 scratch"]["time_to_teacher_quality"] is None
    assert s["w0.25 scratch"]["trend_last_two"] == pytest.approx(-1.0)
    ratios = [r["x"] for r in s["w0.25 full"]["fid_ratio_per_interval"]]
    assert ratios == pytest.approx([4.0 / 2.3, 2.3 / 2.15, 2.15 / 2.0])
    md = curves.render(s, TEACHER, "")
    assert "not reached" in md and "20 min" in md and "1.74x (5->10 min)" in md


def test_seeds_are_averaged_per_point(curves):
    pts = [_point("full", 5, 2.0, 0), _point("full", 5, 3.0, 1)]
    row = curves.summarise(pts, TEACHER)["w0.25 full"]["points"][0]
    assert row["fid_mean"] == pytest.approx(2.5) and row["seeds"] == 2 and row["fid_std"] > 0
    # the mean (2.5) is above 1.1 x 2.0: not reached even though one seed was
    assert curves.summarise(pts, TEACHER)["w0.25 full"]["time_to_teacher_quality"] is None


def test_a_finished_run_is_extended_to_later_points_and_never_retrained(curves, tmp_path, monkeypatch):
    calls = []

    def fake_compress(cfg, run, resume=False):
        calls.append((cfg.max_minutes, resume))
        for m in cfg.snapshot_minutes:
            d = curves.snapshot_dir(run, m)
            d.mkdir(parents=True, exist_ok=True)
            (d / curves.WEIGHTS).write_bytes(b"x")
        (Path(run) / "state.pt").write_bytes(b"x")

    monkeypatch.setattr(curves, "compress", fake_compress)
    monkeypatch.setattr(curves, "teacher_sha", lambda t: "sha")
    teacher = tmp_path / "teacher"
    args = type("A", (), {"runs": str(tmp_path / "runs"), "points": [5.0, 10.0], "device": "cpu"})()
    run = curves.train_curve(args, teacher, "full", 0.25, 0)
    assert calls == [(10.0, False)]
    curves.train_curve(args, teacher, "full", 0.25, 0)  # every point there: skipped
    assert len(calls) == 1
    args.points = [5.0, 10.0, 20.0]  # a later point: the run resumes and trains on
    curves.train_curve(args, teacher, "full", 0.25, 0)
    assert calls[-1] == (20.0, True)
    assert json.loads((run / "DONE").read_text())["points_minutes"] == [5.0, 10.0, 20.0]
    args.points = [5.0, 10.0]
    curves.train_curve(args, teacher, "full+cosine", 0.25, 0)
    args.points = [5.0, 10.0, 20.0]
    with pytest.raises(SystemExit, match="cannot be extended"):
        curves.train_curve(args, teacher, "full+cosine", 0.25, 0)


def test_plot_marks_the_teacher_and_its_training_steps(curves, tmp_path):
    pts = [_point("full", 5, 4.0), _point("full", 10, 2.3), _point("scratch", 5, 9.0)]
    curves.plot(curves.summarise(pts, TEACHER), TEACHER, tmp_path / "c.png")
    assert_plot(tmp_path / "c.png")


def test_an_iterative_lever_starts_from_the_parent_snapshot_and_counts_its_time(curves, tmp_path, monkeypatch):
    seen = []

    def fake_compress(cfg, run, resume=False):
        seen.append(cfg.init_from)
        for m in cfg.snapshot_minutes:
            d = curves.snapshot_dir(run, m)
            d.mkdir(parents=True, exist_ok=True)
            (d / curves.WEIGHTS).write_bytes(b"x")
            (d / "config.json").write_text(json.dumps({"trained_steps": int(m * 70), "snapshot": {"wall_s": m * 60}}))

    monkeypatch.setattr(curves, "compress", fake_compress)
    monkeypatch.setattr(curves, "teacher_sha", lambda t: "sha")
    monkeypatch.setattr(curves, "evaluate", lambda *a, **k: {"quality": {"fid": 3.0}})
    monkeypatch.setattr(curves, "save_result", lambda r, p: None)
    args = type("A", (), {"runs": str(tmp_path / "runs"), "points": [2.5], "device": "cpu", "out": str(tmp_path),
                          "num_samples": 10})()  # fmt: skip
    with pytest.raises(SystemExit, match="--widths 0.5 --recipes full --points 5"):  # no parent yet: names the fix
        curves.train_curve(args, tmp_path, "full+from-w0.5", 0.25, 0)
    parent = curves.snapshot_dir(Path(args.runs) / curves.run_name("full", 0.5, 0), 5.0)
    parent.mkdir(parents=True)
    (parent / curves.WEIGHTS).write_bytes(b"x")
    (parent / "config.json").write_text(json.dumps({"trained_steps": 250}))
    curves.train_curve(args, tmp_path, "full+from-w0.5", 0.25, 0)
    assert seen == [str(parent)]
    c = curves.score_point(args, tmp_path, "full+from-w0.5", 0.25, 0, 2.5)["curve"]
    assert (c["minutes"], c["steps"], c["own_minutes"], c["own_steps"]) == (7.5, 250 + 175, 2.5, 175)


@pytest.fixture
def trained(curves, tmp_path, monkeypatch):
    """run name -> the config curves.main trained it with (a fake compress writes the snapshots)."""
    seen = {}

    def fake_compress(cfg, run, resume=False):
        seen[Path(run).name] = cfg
        for m in cfg.snapshot_minutes:
            d = curves.snapshot_dir(run, m)
            d.mkdir(parents=True, exist_ok=True)
            (d / curves.WEIGHTS).write_bytes(b"x")

    monkeypatch.setattr(curves, "compress", fake_compress)
    monkeypatch.setattr(curves, "teacher_sha", lambda t: "sha")
    monkeypatch.setattr(curves, "resolve_model_path", lambda name: tmp_path)
    return seen


def test_pixel_takes_the_rate_levers_and_refuses_the_others(curves, tmp_path, trained):
    curves.main(["--recipes", "pixel+lr8x-cosine", "--widths", "0.25", "--points", "2.5", "--runs",
                 str(tmp_path / "runs"), "--train-only"])  # fmt: skip
    (cfg,) = trained.values()
    assert (cfg.lr_g, cfg.lr_schedule, cfg.adv, cfg.perceptual, cfg.init) == (1.6e-3, "cosine", 0.0, 0.0, "random")
    with pytest.raises(SystemExit, match="pixel\\+LEVER with LEVER one of cosine, batch128"):
        curves.main(["--recipes", "pixel+dfeat", "--runs", str(tmp_path / "runs")])
    with pytest.raises(SystemExit, match="unknown \\['scratch\\+lr8x'\\]"):
        curves.main(["--recipes", "scratch+lr8x", "--runs", str(tmp_path / "runs")])


def test_levers_stack_left_to_right(curves, tmp_path, trained):
    curves.main(["--recipes", "full+lr8x-cosine+fresh-d,full+lr8x-cosine+adv-late,full+lr8x-cosine+freeze-d",
                 "--widths", "0.25", "--points", "5", "--runs", str(tmp_path / "runs"), "--train-only"])  # fmt: skip
    a, b, c = (trained[f"w0.25_full+lr8x-cosine+{lv}_s0"] for lv in ("fresh-d", "adv-late", "freeze-d"))
    for cfg in (a, b, c):
        assert (cfg.lr_g, cfg.lr_schedule) == (1.6e-3, "cosine")
    assert (a.d_init, b.adv_warmup, c.d_freeze) == ("fresh", 0.5, 2)
    assert (a.adv_warmup, b.d_freeze, c.d_init) == (0.0, 0, "auto")  # each one change against its base
    with pytest.raises(SystemExit, match="levers stack"):
        curves.main(["--recipes", "full+lr8x+nope", "--runs", str(tmp_path / "runs")])
