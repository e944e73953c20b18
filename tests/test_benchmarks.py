"""benchmarks/matrix.py helpers: shard parsing, the targets check and the interleaved speed pass
(tiny models, no training here)."""

from pathlib import Path

import pytest
from testkit import load_benchmark

from gankd.runtimes import Options

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def matrix():
    return load_benchmark("matrix")


def _result(role, fid, group=None, onnx_ms=None):
    r = {"kind": "eval", "role": role, "group": group, "name": group or role, "quality": {"fid": fid},
         "protocol": {"extractor": "fmnist-evaluator", "num_generated": 10000,
                      "reference": "fashion-mnist:test"}}  # fmt: skip
    if onnx_ms is not None:
        r["efficiency"] = {"speed": {"onnx": {"latency": {"median_ms": onnx_ms}}}}
    return r


def _cells(student_fid, scratch_fid, student_ms=0.3):
    return [
        _result("teacher", 2.0, onnx_ms=3.0),
        *[_result("full", f, "w0.25 full", student_ms) for f in student_fid],
        *[_result("scratch", f, "w0.25 scratch", student_ms) for f in scratch_fid],
    ]


def test_targets_met_and_missed_follow_the_numbers(matrix):
    met = {t["target"]: t["met"] for t in matrix.check_targets(_cells([2.1, 2.1], [4.0]))}
    assert met == {
        "w0.25 full recipe FID within 10% of the teacher's": True,  # 2.1 vs 2.0: +5 %
        "w0.25: full recipe FID at least 30% below scratch at equal time": True,  # 47.5 % lower
        "w0.25 ONNX Runtime batch-1 speed-up over the teacher at least 8x": True,  # 10x
    }
    missed = {t["target"]: t["met"] for t in matrix.check_targets(_cells([2.0, 2.8], [3.4], student_ms=0.5))}
    assert set(missed.values()) == {False}  # mean 2.4: +20 %; 29 % below scratch; 6x


def test_targets_use_the_seed_mean(matrix):
    t = matrix.check_targets(_cells([1.0, 3.0], [10.0]))[0]
    assert t["value"].startswith("+0%") and t["met"]


def test_render_targets_marks_missed_targets(matrix):
    md = matrix.render_targets(matrix.check_targets(_cells([3.0], [3.2])))
    assert md.count("**no**") == 2 and "| yes |" in md


@pytest.mark.parametrize("text,expected", [("0/1", (0, 1)), ("1/2", (1, 2))])
def test_parse_shard(matrix, text, expected):
    assert matrix.parse_shard(text) == expected


@pytest.mark.parametrize("text", ["2/2", "a/b", "1"])
def test_parse_shard_rejects_bad_input(matrix, text):
    with pytest.raises(SystemExit, match="--shard"):
        matrix.parse_shard(text)


def _ratio_cell(role, fid, group, x_onnx, onnx_ms):
    r = _result(role, fid, group, onnx_ms)
    r["efficiency"]["speed_vs_teacher"] = {"ratio": {"onnx": {"latency": {"median": x_onnx, "min": x_onnx - 1,
                                                                           "max": x_onnx + 1}}}}  # fmt: skip
    return r


def test_speed_target_uses_the_interleaved_ratio_not_separate_timings(matrix):
    # separate timings say 3.0 / 0.5 = 6x; the interleaved run says 8.5x: the target follows the latter
    cells = [_result("teacher", 2.0, onnx_ms=3.0), _ratio_cell("full", 2.0, "w0.25 full", 8.5, 0.5)]
    t = next(t for t in matrix.check_targets(cells) if "ONNX" in t["target"])
    assert t["met"] and t["value"].startswith("8.5x (rounds 7.5-9.5x") and "interleaved" in t["value"]


FAST = dict(runtimes=("eager",), rounds=5, latency_calls=5, throughput_calls=2, big_batch=8,
            options=Options(warmup=1, channels_last="off"))  # fmt: skip


def test_speed_pass_measures_afresh_and_stamps_every_cell(matrix, tmp_path):
    import json

    from evalkit import tiny_gen

    from gankd.checkpoint import save_model
    from gankd.evaluate import save_result

    teacher = save_model(tmp_path / "teacher", tiny_gen(seed=0, base=8), "generator")
    students = {w: save_model(tmp_path / f"s{w:g}", tiny_gen(seed=1, base=b), "generator")
                for w, b in ((0.5, 4), (0.25, 2))}  # fmt: skip
    out = tmp_path / "out"
    old = {"kind": "eval", "efficiency": {"speed": {"eager": {"latency": {"median_ms": 123.0}}}}}
    cells = {"teacher": {**old, "role": "teacher"}, "floor": {"kind": "real-floor", "role": "floor"},
             **{f"w{w:g}_full_s0": {**old, "role": "full", "benchmark": {"width": w}} for w in (0.5, 0.25, 0.125)}}
    for name, c in cells.items():
        save_result(c, out / "cells" / f"{name}.json")
    save_result({"teacher": {"speed": "cached numbers of an earlier run"}}, out / "speed.json")

    rec = matrix.speed_pass(out, teacher, students, **FAST)
    on_disk = json.loads((out / "speed.json").read_text())
    assert on_disk["created_utc"] == rec["created_utc"] and on_disk["order"] == ["teacher", "w0.5", "w0.25"]
    assert on_disk["protocol"]["rounds"] == 5 and on_disk["fingerprint"]["cpu"]
    assert set(on_disk["ratios"]) == {"w0.5", "w0.25"} and not on_disk["measured_on"]["w0.5"].startswith("/")
    read = {n: json.loads((out / "cells" / f"{n}.json").read_text()) for n in cells}
    t, s = read["teacher"], read["w0.25_full_s0"]
    assert t["efficiency"]["speed"] == rec["models"]["teacher"] and "speed_vs_teacher" not in t["efficiency"]
    assert s["efficiency"]["speed"] == rec["models"]["w0.25"]
    vt = s["efficiency"]["speed_vs_teacher"]
    assert vt["ratio"] == rec["ratios"]["w0.25"] and vt["teacher"] == rec["models"]["teacher"]
    assert vt["created_utc"] == rec["created_utc"] == s["speed_record"]["created_utc"]
    assert s["fingerprint"] == rec["fingerprint"] and s["speed_record"]["measured_on"] == rec["measured_on"]["w0.25"]
    assert "speed" not in read["w0.125_full_s0"]["efficiency"]  # not timed in this run: the old 123 ms is gone
    assert read["floor"] == cells["floor"]

    again = matrix.speed_pass(out, teacher, students, **{**FAST, "rounds": 6})
    lat = json.loads((out / "cells" / "w0.25_full_s0.json").read_text())["efficiency"]["speed"]["eager"]["latency"]
    assert again["protocol"]["rounds"] == 6 and len(lat["rounds_ms"]) == 6
    assert lat["rounds_ms"] != rec["models"]["w0.25"]["eager"]["latency"]["rounds_ms"]
    md = matrix.render_speed(again)
    assert "| w0.25 |" in md and "interleaved" in md
    assert f"{again['ratios']['w0.5']['eager']['latency']['median']:.2f}x" in md


def test_teacher_card_states_when_and_where_speed_was_timed(tmp_path):
    import json

    cards = load_benchmark("pretrained_cards")
    folder = ROOT / "pretrained" / "fmnist-teacher"
    m = json.loads((folder / "metrics.json").read_text())
    for s in m["efficiency"]["speed"].values():
        s["measured_utc"] = "2030-01-02T03:04:05+00:00"
    card = cards.teacher_card(folder, m)
    assert "timed alone at 2030-01-02T03:04:05+00:00 on " + m["fingerprint"]["cpu"] in card
    assert "interleaved" in card
    cards.write_card(tmp_path / "MODEL_CARD.md", card)
    assert (tmp_path / "MODEL_CARD.md").read_text() == card and not list(tmp_path.glob(".*.tmp"))
