"""benchmarks/step_budget.py: a cell's schedule spans its share of the teacher's steps, and the
target is met only by the numbers (enough seeds, within the factor, within the step share)."""

import json

import pytest
from testkit import assert_plot, load_benchmark


@pytest.fixture(scope="module")
def sb():
    return load_benchmark("step_budget")


TEACHER = {"fid": 2.0, "floor_fid": 0.06, "train_steps": 10000, "train_wall_minutes": 5.0}


@pytest.fixture
def fake(sb, tmp_path, monkeypatch):
    """compress and evaluate replaced: records each config; the student 'reached' STOP steps if set."""
    seen = {"cfgs": [], "evals": 0, "stop": None}

    def fake_compress(cfg, run, resume=False):
        seen["cfgs"].append(cfg)
        (run / "student").mkdir(parents=True, exist_ok=True)
        steps = seen["stop"] or cfg.steps
        (run / "student" / "config.json").write_text(json.dumps({"trained_steps": steps}))
        (run / "metrics.jsonl").write_text(json.dumps({"step": steps, "train/wall_s": 12.5}) + "\n")

    def fake_evaluate(model, teacher=None, **kw):
        seen["evals"] += 1
        return {"quality": {"fid": 2.1}}

    monkeypatch.setattr(sb, "compress", fake_compress)
    monkeypatch.setattr(sb, "evaluate", fake_evaluate)
    monkeypatch.setattr(sb, "teacher_sha", lambda t: "sha")
    monkeypatch.setattr(sb, "teacher_reference", lambda t: TEACHER)
    monkeypatch.setattr(sb, "resolve_model_path", lambda name: tmp_path)
    return seen


def _args(tmp_path, *extra):
    return ["--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), *extra]


def test_a_cell_decays_over_its_share_of_the_teachers_steps_and_is_never_redone(sb, fake, tmp_path):
    sb.main(_args(tmp_path, "--widths", "0.125", "--seeds", "0,1", "--fractions", "0.25"))
    a, b = fake["cfgs"]
    assert (a.steps, a.lr_g, a.lr_schedule, a.perceptual, a.kd, a.select, a.eval_every) == \
        (2500, 1.6e-3, "cosine", 0.0, 0.0, "last", 0)  # fmt: skip
    assert (a.width, a.seed, b.seed, a.max_minutes) == (0.125, 0, 1, 0.0)
    cell = json.loads((tmp_path / "out" / "cells" / "w0.125_full+lr8x-cosine+perc0_s1_f0.25.json").read_text())
    assert cell["budget"] | {"run": None} == {"recipe": "full+lr8x-cosine+perc0", "width": 0.125, "seed": 1,
                                             "fraction": 0.25, "steps_target": 2500, "steps": 2500,
                                             "stopped_early": False, "wall_s": 12.5, "device": "cpu", "run": None}
    sb.main(_args(tmp_path, "--widths", "0.125", "--seeds", "0,1", "--fractions", "0.25"))
    assert (len(fake["cfgs"]), fake["evals"]) == (2, 2)  # scored cells are kept
    (tmp_path / "out" / "cells" / "w0.125_full+lr8x-cosine+perc0_s1_f0.25.json").unlink()
    sb.main(_args(tmp_path, "--widths", "0.125", "--seeds", "1", "--fractions", "0.25"))
    assert (len(fake["cfgs"]), fake["evals"]) == (2, 3)  # a trained cell (DONE) is scored again, not retrained


def test_a_cell_cut_by_the_time_cap_is_flagged(sb, fake, tmp_path):
    fake["stop"] = 900
    sb.main(_args(tmp_path, "--widths", "0.25", "--seeds", "0", "--fractions", "0.1", "--max-minutes", "1"))
    assert fake["cfgs"][0].max_minutes == 1.0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    (row,) = res["rows"]
    assert (row["steps"], row["stopped_early"]) == (900, True)
    assert "900 (time cap hit)" in (tmp_path / "out" / "RESULTS.md").read_text()
    assert_plot(tmp_path / "out" / "step_budget.png")


def _cell(width, seed, fraction, fid):
    return {"quality": {"fid": fid}, "budget": {"recipe": "r", "width": width, "seed": seed, "fraction": fraction,
                                                "steps": 10, "stopped_early": False, "device": "cuda"}}


def test_the_target_needs_three_seeds_within_the_factor_and_the_step_share(sb):
    def row(cells):
        (r,) = sb.summarise(cells, TEACHER)
        return r

    assert row([_cell(0.25, s, 0.25, 2.1) for s in range(3)])["target_met"] is True  # 1.05x at 25 %
    assert row([_cell(0.25, s, 0.25, 2.1) for s in range(2)])["target_met"] is False  # two seeds
    assert row([_cell(0.25, s, 0.25, f) for s, f in enumerate((2.0, 2.2, 2.6))])["target_met"] is False  # mean 1.13x
    assert row([_cell(0.25, s, 0.5, 2.0) for s in range(3)])["target_met"] is False  # twice the step share
    assert row([_cell(0.125, s, 0.25, 2.9) for s in range(3)])["target_met"] is True  # width 1/8: 1.5x
    assert row([_cell(0.5, s, 0.25, 2.0) for s in range(3)])["target_met"] is None  # no target at width 1/2
    r = row([_cell(0.125, s, 0.25, f) for s, f in enumerate((3.0, 4.0, 5.0))])
    assert (r["fid_mean"], r["fid_std"], r["fid_over_teacher"], r["devices"]) == (4.0, 1.0, 2.0, ["cuda"])


def test_refusals_name_what_exists(sb, fake, tmp_path):
    with pytest.raises(SystemExit, match="unknown \\['scratch'\\].*full\\+lr8x-cosine\\+perc0"):
        sb.main(_args(tmp_path, "--recipes", "scratch"))
    with pytest.raises(SystemExit, match="unknown \\['full\\+nope'\\]"):
        sb.main(_args(tmp_path, "--recipes", "full+nope"))
    with pytest.raises(SystemExit, match="no scored cell .* run without --table-only first"):
        sb.main(_args(tmp_path, "--table-only"))
