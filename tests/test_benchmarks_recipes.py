"""benchmarks/recipes.py on a tiny teacher and a tiny image folder, a few steps per cell: the plain recipe is
exactly what it says (no D), a finished cell is never redone, val and test draw disjoint seeds, and the
table renders from the cell JSONs."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from evalkit import private_cache_fixture  # noqa: F401  (fixture)
from testkit import load_benchmark, tiny_discriminator, tiny_generator, write_images

from gankd import cli
from gankd.checkpoint import load_generator, save_model
from gankd.distill import DistillConfig


@pytest.fixture(scope="module")
def rec():
    return load_benchmark("recipes")


@pytest.fixture
def tiny(rec, tmp_path, monkeypatch, private_cache):
    """A setting 'tiny': an unconditional 32px gray DCGAN teacher (ships a D) and 40 gray images
    (fit 32, val 4, test 4); compress counted."""
    teacher = save_model(tmp_path / "teacher", tiny_generator(num_classes=0), "generator",
                         discriminator=tiny_discriminator(num_classes=0))  # fmt: skip
    data = f"folder:{write_images(tmp_path / 'imgs', {'': 40}, size=(32, 32))}"
    monkeypatch.setitem(rec.SETTINGS, "tiny", rec.Setting(str(teacher), data, 0.25, data))
    calls = []
    real = rec.compress
    monkeypatch.setattr(rec, "compress", lambda cfg, run, **kw: calls.append(cfg) or real(cfg, run, **kw))
    return {"teacher": teacher, "data": data, "calls": calls, "out": tmp_path / "out", "runs": tmp_path / "runs"}


def _main(rec, tiny, *extra):
    argv = ["--settings", "tiny", "--steps", "2", "--num-samples", "8", "--out", str(tiny["out"]),
            "--runs", str(tiny["runs"]), *extra]  # fmt: skip
    assert rec.main(argv) == 0


PLAIN = {"init": "prune", "pixel": 1.0, "pixel_kind": "l1", "gt": 0.0, "batch_size": 32, "lr_g": 2e-4,
         "betas": (0.5, 0.999), "lr_schedule": "constant", "adv": 0.0, "feat": 0.0, "perceptual": 0.0, "kd": 0.0,
         "d_feat": 0.0, "ema_decay": 0.0, "select": "last", "eval_every": 0,
         "adv_max_steps": 0, "lr_phases": False}  # fmt: skip  (no adversarial phase to cap: pinned off)


def test_plain_is_exactly_as_specified_and_trains_without_a_discriminator(rec, tiny, capsys):
    _main(rec, tiny, "--recipes", "plain")
    (cfg,) = tiny["calls"]
    want = DistillConfig(teacher=str(tiny["teacher"]), data=tiny["data"], width=0.25, seed=0, threads=1, steps=2,
                         max_minutes=0.0, device="cpu", **PLAIN)  # fmt: skip
    assert dataclasses.asdict(cfg) == dataclasses.asdict(want)
    cell = json.loads((tiny["out"] / "cells" / "tiny__plain__n2__s0.json").read_text())
    assert cell["train"]["has_discriminator"] is False and cell["train"]["resolved"]["d_init"] is None
    assert cell["train"]["selected_on"]["rule"] == "last" and cell["train"]["model_step"] == 2
    assert cell["changed_by_run"] == {} and cell["config"]["adv"] == 0.0
    assert cell["train"]["steps"] == 2 and cell["train"]["s_per_step"] > 0 and cell["train"]["stopped_by"] == "steps"
    for side in ("val", "test"):  # both sides, every headline number, kept apart
        assert {"fid_vs_teacher", "kid_vs_teacher", "fid_vs_data", "kid_vs_data", "psnr_to_teacher",
                "ssim_to_teacher"} <= set(cell[side])  # fmt: skip
    assert (cell["val"]["data_split"], cell["test"]["data_split"]) == (f"{tiny['data']}:val", f"{tiny['data']}:test")
    assert cell["extractor"]["extractor"] == "random-conv"
    assert cell["command"].startswith("python benchmarks/recipes.py --settings tiny --recipes plain --steps 2 ")
    assert not cell["train"]["run"].startswith("/") and not cell["teacher"].startswith("/")
    capsys.readouterr()


def test_default_is_distillconfigs_defaults_and_minutes_bind_not_steps(rec):
    args = rec.parse_args(["--settings", "fmnist", "--recipes", "default", "--minutes", "5"])
    cfg = rec.cell_config("fmnist", "default", 3, args)
    harness = {"teacher": "fmnist-teacher", "data": "fashion-mnist", "width": 0.25, "seed": 3, "threads": 1,
               "device": "cpu", "steps": rec.UNBOUNDED_STEPS, "max_minutes": 5.0}  # fmt: skip
    assert dataclasses.asdict(cfg) == dataclasses.asdict(DistillConfig(**harness))
    assert rec.cell_config("fmnist-w8", "lean", 0, args).width == 0.125
    assert set(rec.RECIPES) >= {"plain", "default", "classic", "lean"} and 5 <= len(rec.RECIPES) <= 20


def test_a_done_cell_is_not_redone_and_a_trained_one_is_not_retrained(rec, tiny, capsys):
    _main(rec, tiny, "--recipes", "plain")
    cell = tiny["out"] / "cells" / "tiny__plain__n2__s0.json"
    stamp = cell.stat().st_mtime_ns
    _main(rec, tiny, "--recipes", "plain")
    assert len(tiny["calls"]) == 1 and cell.stat().st_mtime_ns == stamp
    cell.unlink()  # scored again from its DONE run, not trained again
    _main(rec, tiny, "--recipes", "plain")
    assert len(tiny["calls"]) == 1 and cell.exists()
    capsys.readouterr()


def test_val_and_test_seeds_are_disjoint(rec, tiny, capsys):
    for n in (8, 2000, 10**6):
        blocks = {side: set().union(*rs) for side, rs in rec.seed_blocks(n).items()}
        assert not blocks["val"] & blocks["test"] and len(blocks["val"]) == len(blocks["test"]) == 2 * n
    with pytest.raises(SystemExit, match="num-samples"):
        rec.seed_blocks(10**6 + 1)
    _main(rec, tiny, "--recipes", "plain")
    cell = json.loads((tiny["out"] / "cells" / "tiny__plain__n2__s0.json").read_text())
    assert cell["val"]["seeds"] == {"student": "1000000..1000007", "teacher_reference": "3000000..3000007"}
    assert cell["test"]["seeds"] == {"student": "0..7", "teacher_reference": "2000000..2000007"}
    assert cell["val"]["detail"]["teacher_fidelity"]["seeds"] == "1000000..1000007"
    assert cell["test"]["detail"]["teacher_fidelity"]["seeds"] == "0..7"
    capsys.readouterr()


def test_the_table_renders_from_the_jsons(rec, tiny, capsys):
    _main(rec, tiny, "--recipes", "lean-nofeat,plain", "--seeds", "0,1")
    (tiny["out"] / "RESULTS.md").unlink()
    assert rec.main(["--table", "--out", str(tiny["out"])]) == 0
    md = (tiny["out"] / "RESULTS.md").read_text()
    assert "## tiny:" in md and "2 steps" in md and "*teacher*" in md and "random-conv" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "| 0,1 |" in line]
    assert [r.split(" | ")[0] for r in rows] == ["| plain", "| lean-nofeat"]  # plain first, seeds pooled
    assert "±" in rows[0] and "real-data floor" in md
    res = json.loads((tiny["out"] / "results.json").read_text())
    assert [r["recipe"] for r in res["rows"]] == ["plain", "lean-nofeat"] and res["rows"][0]["seeds"] == [0, 1]
    assert res["rows"][0]["test"]["fid_vs_teacher"]["n"] == 2 and "detail" not in json.dumps(res)
    assert res["command"] == f"python benchmarks/recipes.py --table --out {tiny['out']}"
    capsys.readouterr()


def test_an_image_to_image_cell_scores_on_the_val_and_test_pairs(rec, tiny, tmp_path, monkeypatch, capsys):
    folder = write_images(tmp_path / "rgb", {"": 40}, size=(32, 32), mode="RGB")
    assert cli.main(["train-teacher", "--data", f"folder:{folder}", "--task", "denoise", "--out", str(tmp_path / "t"),
                     "--steps", "1", "--batch-size", "4", "--no-progress", "--select", "last",
                     "--set", 'g_options={"base_channels": 4, "depth": 3}',
                     "--set", 'd_options={"base_channels": 4}']) == 0  # fmt: skip
    data = f"folder:{folder}"
    monkeypatch.setitem(rec.SETTINGS, "tiny", rec.Setting(str(tmp_path / "t" / "generator"), data, 0.5, data, True))
    _main(rec, tiny, "--recipes", "plain")
    cell = json.loads((tiny["out"] / "cells" / "tiny__plain__n2__s0.json").read_text())
    assert cell["train"]["has_discriminator"] is False and cell["i2i"] is True
    for side in ("val", "test"):
        assert f"{data}:{side}" in cell[side]["pairs"] and "4 pairs" in cell[side]["pairs"]
        for k in ("psnr_to_teacher", "ssim_to_teacher", "psnr_to_target", "fid_vs_data", "fid_vs_teacher"):
            assert isinstance(cell[side][k], float), (side, k)
    md = (tiny["out"] / "RESULTS.md").read_text()
    assert "test PSNR→target dB" in md and "| plain | 0 | 2 |" in md and "degraded sources" in md
    capsys.readouterr()


def test_calibrated_budgets_turn_minutes_into_each_recipes_steps(rec, tiny, monkeypatch):
    """--calibrate times every recipe's step interleaved; --cost-minutes then runs M minutes' worth of
    each recipe's steps (a late-adversarial recipe costs its two phases in proportion)."""
    monkeypatch.setitem(rec.RECIPES, "late", {**rec.RECIPES["lean"], "adv": 0.05, "adv_start": 0.5})
    args = rec.parse_args(["--calibrate", "--settings", "tiny", "--recipes", "plain,late", "--out", str(tiny["out"])])
    cost = rec.calibrate(["tiny"], ["plain", "late"], args, tiny["out"], rounds=3, per_round=1)["settings"]["tiny"]
    late = cost["late"]
    assert late["s_per_step"] == pytest.approx(0.5 * late["s_per_step_start"] + 0.5 * late["s_per_step_end"])
    args = rec.parse_args(["--settings", "tiny", "--recipes", "plain", "--cost-minutes", "0.01",
                           "--out", str(tiny["out"])])  # fmt: skip
    cfg = rec.cell_config("tiny", "plain", 0, args)
    assert cfg.steps == max(1, round(0.6 / cost["plain"]["s_per_step"])) and cfg.max_minutes == 0
    assert rec.budget_tag(args) == "c0.01"
    with pytest.raises(SystemExit, match="--calibrate"):
        rec.cell_config("tiny", "lean", 0, args)  # not calibrated: the refusal names the command


def test_a_capped_adversarial_phase_is_priced_from_its_twin_and_reuses_its_run_where_the_cap_does_not_bind(
        rec, tiny, monkeypatch, capsys):  # fmt: skip
    late = {**rec.RECIPES["lean"], "feat": 0.0, "adv": 0.04, "d_init": "fresh", "d_width": 0.25, "adv_start": 0.5}
    monkeypatch.setitem(rec.RECIPES, "late", late)
    monkeypatch.setitem(rec.RECIPES, "late-cap", {**late, "adv_max_steps": 2})
    assert rec.uncapped_twin("late-cap") == "late" and rec.uncapped_twin("late") is None
    assert rec.uncapped_twin("nofeat-advlate-90-rt-cap2k-lrp") == "nofeat-advlate-90-rt"  # lr_phases: cap only
    cost = {"s_per_step": 2.0, "s_per_step_start": 1.0, "s_per_step_end": 3.0, "adv_start": 0.5}
    tiny["out"].mkdir(parents=True)
    (tiny["out"] / rec.COST_FILE).write_text(json.dumps({"settings": {"tiny": {"late": cost}}}))
    assert rec.calibrated_steps("tiny", "late", 0.1, tiny["out"]) == (3, 2.0)  # 6 s: 3 steps, cap not binding
    assert rec.calibrated_steps("tiny", "late-cap", 0.1, tiny["out"]) == (3, 2.0)  # the same run
    steps, per = rec.calibrated_steps("tiny", "late-cap", 1.0, tiny["out"])  # 60 s: 2 steps at 3 s, 54 at 1 s
    assert steps == 56 and per == pytest.approx(60 / 56)
    with pytest.raises(SystemExit, match="uncapped twin"):
        rec.calibrate(["tiny"], ["late-cap"], rec.parse_args(["--calibrate"]), tiny["out"])
    argv = ["--settings", "tiny", "--num-samples", "8", "--out", str(tiny["out"]), "--runs", str(tiny["runs"])]
    assert rec.main([*argv, "--steps", "4", "--recipes", "late-cap"]) == 0  # half of 4 steps = the cap: late's run
    assert [c.adv_max_steps for c in tiny["calls"]] == [0]
    cell = json.loads((tiny["out"] / "cells" / "tiny__late-cap__n4__s0.json").read_text())
    assert cell["same_run_as"] == "tiny__late__n4__s0"
    assert rec.main([*argv, "--steps", "6", "--recipes", "late-cap"]) == 0  # 3 > 2: trained with the cap
    assert [c.adv_max_steps for c in tiny["calls"]] == [0, 2]
    capsys.readouterr()


def test_the_default_is_chosen_on_val_numbers_only(rec):
    def row(setting, recipe, fid, psnr, test_fid=0.0):
        return {"setting": setting, "budget": "c5", "recipe": recipe,
                "val": {"fid_vs_teacher": {"mean": fid}, "psnr_to_teacher": {"mean": psnr}},
                "test": {"fid_vs_teacher": {"mean": test_fid}, "psnr_to_teacher": {"mean": 99.0}}}  # fmt: skip

    rows = [row("a", "plain", 1.0, 20.0), row("b", "plain", 2.0, 25.0),
            row("a", "good", 0.5, 19.8), row("b", "good", 1.0, 25.0),  # better FID, PSNR within 0.3 dB
            row("a", "sharp", 0.1, 19.0), row("b", "sharp", 0.2, 25.0),  # best FID but 1 dB of PSNR lost on a
            row("a", "half", 0.1, 21.0)]  # fmt: skip  (not run on b: incomplete)
    c = rec.choose(rows, "c5")
    assert c["chosen"] == "good" and c["split"] == "val"
    assert not c["recipes"]["sharp"]["eligible"] and not c["recipes"]["half"]["complete"]
    for r in rows:  # test numbers never enter the choice
        r["test"]["fid_vs_teacher"]["mean"] = 1e9 if r["recipe"] == "good" else 0.0
    assert rec.choose(rows, "c5")["chosen"] == "good"


def test_without_an_eligible_recipe_the_fallback_takes_the_most_settings_met(rec):
    def row(setting, recipe, fid, psnr):
        return {"setting": setting, "budget": "c5", "recipe": recipe,
                "val": {"fid_vs_teacher": {"mean": fid}, "psnr_to_teacher": {"mean": psnr}}}  # fmt: skip

    rows = [row("a", "plain", 1.0, 20.0), row("b", "plain", 1.0, 20.0), row("c", "plain", 1.0, 20.0),
            row("a", "two", 0.9, 20.0), row("b", "two", 0.9, 20.0), row("c", "two", 1.5, 20.0),
            row("a", "one", 0.1, 20.0), row("b", "one", 2.0, 20.0), row("c", "one", 2.0, 20.0)]  # fmt: skip
    c = rec.choose(rows, "c5")
    assert c["chosen"] == "two" and c["by_fallback"] and c["recipes"]["two"]["settings_met"] == 2


def test_compress_default_is_the_recipe_the_committed_study_chose_on_val(rec):
    """gankd compress with no flag runs exactly the recipe the committed study chose over every budget (val side
    only, ``DEFAULT_RULE``); where the default's cells are all its uncapped twin's runs (its cap never bound), the
    two tie and the twin may stand for it."""
    res = json.loads((rec.OUT / "results.json").read_text())
    default = rec.compress_default()
    assert default and res["compress_default"] == default
    assert dataclasses.asdict(DistillConfig()) == dataclasses.asdict(DistillConfig(**rec.RECIPES[default]))
    full = {b for b, c in res["choice"].items() if set(c["settings"]) == set(rec.CHOICE_SETTINGS)}
    assert {"c5", "c10", "c20"} <= full, sorted(full)
    chosen, twin = res["default_choice"]["chosen"], rec.uncapped_twin(default)
    mine = [x for x in res["cells"].values() if x["recipe"] == default]
    same = bool(twin and mine and all(x["same_run_as"] for x in mine))
    assert res["default_choice"]["split"] == "val" and (chosen == default or (same and chosen == twin)), chosen


def test_the_data_preset_is_the_recipe_the_committed_study_chose_on_val(rec):
    """--preset data trains what DATA_RULE chose on val (real auto = the data on the study's setting, which the preset
    spells out as real data so that a data-free run is refused)."""
    from gankd.distill import PRESETS

    c = json.loads((rec.OUT / "results.json").read_text())["data_choice"]
    assert c["split"] == "val" and c["worth_a_preset"] and c["chosen"] in rec.DATA_CANDIDATES
    want = DistillConfig(**{**rec.RECIPES[c["chosen"]], "real": "data"})
    assert dataclasses.asdict(DistillConfig(**PRESETS["data"])) == dataclasses.asdict(want)


def test_the_default_over_budgets_meets_the_test_on_the_most_pairs(rec):
    def choice(per: dict) -> dict:
        return {"recipes": {r: {"settings": {s: None if v is None else {"ok": v[0], "fid_ratio_to_plain": v[1]}
                                             for s, v in st.items()}} for r, st in per.items()}}  # fmt: skip

    choices = {"c10": choice({"a": {"x": (True, 0.5), "y": (True, 0.9)}, "b": {"x": (True, 0.6), "y": (True, 0.8)}}),
               "c40": choice({"a": {"x": (False, 1.3), "y": None}, "b": {"x": (True, 0.9), "y": None}})}  # fmt: skip
    d = rec.choose_default(choices)
    assert d["chosen"] == "b" and d["pairs_met"] == {"a": 2, "b": 3} and d["split"] == "val"
    choices["c40"] = choice({"a": {"x": (True, 0.7)}, "b": {"x": (True, 0.9)}})  # a tie on pairs: the FID ratio
    assert rec.choose_default(choices)["chosen"] == "a"

def test_the_data_recipe_is_chosen_on_val_and_must_beat_both_the_default_and_plain(rec):
    def row(recipe, val_fid, test_fid, budget="c20"):
        side = lambda f: {"fid_vs_data": {"mean": f}, "fid_vs_teacher": {"mean": 1.0},  # noqa: E731
                          "psnr_to_teacher": {"mean": 25.0}}
        return {"setting": "fmnist", "budget": budget, "recipe": recipe, "num_samples": [10], "seeds": [0],
                "val": side(val_fid), "test": side(test_fid)}  # fmt: skip

    default = rec.compress_default()
    a, b, c = rec.DATA_CANDIDATES[:3]
    teachers = {rec.teacher_key("fmnist", 10): {"val": {"fid_vs_data": 2.0}, "test": {"fid_vs_data": 1.0}}}
    rows = [row("plain", 6.0, 6.0), row(default, 5.0, 5.0), row(a, 4.0, 9.0), row(b, 4.5, 0.1),
            row(c, 0.1, 0.1, budget="c10")]  # fmt: skip  (b: best on test, never chosen; c: another budget)
    d = rec.choose_data(rows, teachers)
    assert d["chosen"] == a and d["worth_a_preset"] and d["split"] == "val"
    assert d["rows"][a]["val"]["x_teacher"] == 2.0 and d["rows"][a]["test"]["x_teacher"] == 9.0
    rows[2:4] = [row(a, 5.5, 1.0), row(b, 5.8, 0.1)]  # below plain, not below the default: no preset
    d = rec.choose_data(rows, teachers)
    assert d["chosen"] == a and not d["worth_a_preset"]


def test_on_a_data_free_setting_real_teacher_is_the_same_run_and_is_not_trained_twice(rec, tiny, tmp_path, monkeypatch,
                                                                                        capsys):  # fmt: skip
    monkeypatch.setitem(rec.SETTINGS, "tinyfree", rec.Setting(str(tiny["teacher"]), "none", 0.25, tiny["data"]))
    late = {**rec.RECIPES["lean"], "feat": 0.0, "adv": 0.04, "d_init": "fresh", "d_width": 0.25, "adv_start": 0.5}
    monkeypatch.setitem(rec.RECIPES, "late", late)
    monkeypatch.setitem(rec.RECIPES, "late-rt", {**late, "real": "teacher"})
    assert rec.same_run_as("tinyfree", "late-rt") == "late" and rec.same_run_as("tiny", "late-rt") is None
    assert rec.same_run_as("tinyfree", "late") is None
    # the claim itself: both configs train the same weights on data-free settings (the D phase included)
    args = rec.parse_args(["--settings", "tinyfree", "--steps", "4", "--out", str(tiny["out"])])
    weights = []
    for r in ("late", "late-rt"):
        student = load_generator(rec.compress(rec.cell_config("tinyfree", r, 0, args), tmp_path / r))
        weights.append(student.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    n = len(tiny["calls"])
    argv = ["--settings", "tinyfree", "--steps", "4", "--num-samples", "8", "--out", str(tiny["out"]),
            "--runs", str(tiny["runs"])]  # fmt: skip
    assert rec.main([*argv, "--recipes", "late-rt"]) == 0
    assert len(tiny["calls"]) == n + 1  # late trained once, late-rt copied from it
    cell = json.loads((tiny["out"] / "cells" / "tinyfree__late-rt__n4__s0.json").read_text())
    assert cell["same_run_as"] == "tinyfree__late__n4__s0" and cell["recipe"] == "late-rt"
    assert "--recipes late-rt" in cell["command"]
    capsys.readouterr()
