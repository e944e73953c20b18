"""benchmarks/ship_students.py: names, picks and the whole-folder copy of a snapshot."""

import pytest
from testkit import load_benchmark


@pytest.fixture(scope="module")
def ship():
    return load_benchmark("ship_students")


def test_names_and_picks(ship):
    assert ship.shipped_name(0.25) == "fmnist-student-w025"
    assert ship.shipped_name(0.125) == "fmnist-student-w0125"
    assert ship.parse_pick("0.5:20,0.25:40:full+lr8x") == [(0.5, 20.0, "full", None), (0.25, 40.0, "full+lr8x", None)]
    assert ship.parse_pick("0.25:80", recipe="pixel") == [(0.25, 80.0, "pixel", None)]
    pick = ship.parse_pick("0.25:60:full+lr8x-cosine:curves_cos60")
    assert pick == [(0.25, 60.0, "full+lr8x-cosine", "curves_cos60")]
    for bad in ("0.25", "0.25:x", "0.25:40:", "0.25:40:full:", "0.25:40:full:r:1"):
        with pytest.raises(SystemExit, match="WIDTH:MINUTES"):
            ship.parse_pick(bad)


def test_copy_snapshot_replaces_the_folder_whole_and_refuses_a_missing_snapshot(ship, tmp_path):
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "config.json").write_text('{"kind": "generator", "trained_steps": 7}')
    (snap / "model.safetensors").write_bytes(b"new")
    dest = tmp_path / "out" / "fmnist-student-w025"
    dest.mkdir(parents=True)
    (dest / "model.safetensors").write_bytes(b"old")
    (dest / "stale.txt").write_text("x")
    ship.copy_snapshot(snap, dest)
    assert (dest / "model.safetensors").read_bytes() == b"new" and not (dest / "stale.txt").exists()
    assert '"shipped_from"' in (dest / "config.json").read_text()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["fmnist-student-w025"]  # no temp left
    with pytest.raises(SystemExit, match="train it first"):
        ship.copy_snapshot(tmp_path / "nothing", dest)


def test_curve_point_comes_from_the_results_that_list_the_run(ship):
    pt = {"minutes": 40.0, "seeds": 3, "fid_mean": 2.4, "fid_std": 0.3}
    curve = "w0.25 full+lr8x-cosine"
    a = {"source": "a.json", "runs": [{"run": "runs/curves/w0.25_full+lr8x-cosine_s0"}],
         "curves": {curve: {"points": [{**pt, "fid_mean": 2.9}]}}}  # the same name over a 40-min budget
    b = {"source": "b.json", "runs": [{"run": "runs/curves_cos60/w0.25_full+lr8x-cosine_s0"}],
         "curves": {curve: {"points": [pt]}}}  # fmt: skip
    assert ship.curve_point([a, b], "runs/curves_cos60/w0.25_full+lr8x-cosine_s0", "full+lr8x-cosine", 0.25,
                            40.0) == {**pt, "results": "b.json"}  # fmt: skip
    assert ship.curve_point([a, b], "runs/curves/w0.25_full+lr8x-cosine_s0", "full+lr8x-cosine", 0.25,
                            40.0)["fid_mean"] == 2.9  # fmt: skip
    assert ship.curve_point([a, b], "runs/curves/w0.25_full+lr8x-cosine_s0", "full+lr8x-cosine", 0.25, 20.0) is None
    assert ship.curve_point([a, b], "runs/other/w0.25_full+lr8x-cosine_s0", "full+lr8x-cosine", 0.25, 40.0) is None


def test_budget_picks_and_their_seed_spread(ship):
    assert ship.parse_budget_pick("0.125:0.75:full+lr8x-cosine+perc0:2,0.25:0.25:full") == [
        (0.125, 0.75, "full+lr8x-cosine+perc0", 2), (0.25, 0.25, "full", None)]
    for bad in ("0.125:0.75", "0.125:x:full", "0.125:0.75:", "0.125:0.75:full:r", "0.125:0.75:full:1:2"):
        with pytest.raises(SystemExit, match="WIDTH:FRACTION:RECIPE"):
            ship.parse_budget_pick(bad)
    row = {"recipe": "r", "width": 0.125, "fraction": 0.75, "fids": [2.2, 2.5, 2.4], "fid_mean": 2.37, "fid_std": 0.15}
    res = {"source": "sb.json", "rows": [{**row, "fraction": 0.5, "fid_mean": 3.0}, row]}
    assert ship.budget_point(res, "r", 0.125, 0.75) == {"seeds": 3, "fid_mean": 2.37, "fid_std": 0.15,
                                                        "results": "sb.json"}
    assert ship.budget_point(res, "r", 0.25, 0.75) is None and ship.budget_point({}, "r", 0.125, 0.75) is None


def test_a_run_pick_card_says_what_the_student_is_and_why(ship):
    q = {"fid": 1.2, "isc_mean": 4.0, "kid_mean": 0.001, "precision": 0.7, "recall": 0.6}
    m = {"quality": q, "class_consistency": {"accuracy": 0.9}, "teacher_quality": {**q, "fid": 1.8},
         "teacher_cc": 0.95, "protocol": {"extractor": "evaluator", "num_generated": 10000, "num_reference": 10000,
                                          "reference": "fashion-mnist:test"},
         "efficiency": {"params": 1000, "macs": 4.59e6}, "teacher_efficiency": {"params": 9000, "macs": 85.2e6},
         "teacher_fidelity": {"psnr_db": 21.3, "ssim": 0.77}, "model_info": {"feature_channels": [128, 64, 32]},
         "run_pick": ship.RUN_PICKS["fmnist-student-w025-latency"], "trained_steps": 8136,
         "run_config": {"width": 0.25, "student_layout": "latency", "seed": 0, "threads": 2},
         "selected_on": {"rule": "perceptual-fid", "step": 8136, "select": 0.45}, "sha256": {"model.safetensors": "ab"},
         "vs_plain": {"wall_minutes": 24.6, "run": "runs/x", "num_samples": 2000, "goal": "data", "verdict": "ahead",
                      "gankd": {"fid_vs_data": 1.15, "fid_vs_teacher": 0.85, "psnr_to_teacher": 21.35},
                      "plain": {"fid_vs_data": 6.72, "fid_vs_teacher": 3.17, "psnr_to_teacher": 24.44}}}
    text = ship.run_card("fmnist-student-w025-latency", m)
    for part in ("width-0.25 student of `fmnist-teacher` in the `latency` layout", "`perceptual-fid` at step 8136",
                 "8,136 steps, seed 0, 2 CPU threads", "seed 0 is the only seed trained", "| this student | 1.200",
                 "| fmnist-teacher (its card) | 1.800", "4.59 M MACs", "PSNR 21.3 dB", "not measured",
                 "test split 1.15 against plain's 6.72", "21.35 dB against plain's 24.44"):
        assert part in text, part
    with pytest.raises(SystemExit, match="--run-pick nope: unknown"):
        ship.main(["--pick", "", "--budget-pick", "", "--run-pick", "nope"])
