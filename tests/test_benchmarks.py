"""benchmarks/matrix.py helpers: shard parsing and the targets check (no training here)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def matrix():
    spec = importlib.util.spec_from_file_location("bench_matrix", ROOT / "benchmarks" / "matrix.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
