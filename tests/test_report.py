"""report: scores that mean nothing are marked as such (precision/recall over a small reference),
and a model that has not learned the data is told so in words."""

from __future__ import annotations

import pytest

from gankd.report import MIN_PRC_REFERENCE, not_learned, render_table, summary_lines, write_report


def _result(name: str, fid: float, precision: float, recall: float, num_reference: int = 82,
            role: str = "model", kind: str = "eval") -> dict:  # fmt: skip
    return {"kind": kind, "name": name, "model": None if kind == "real-floor" else f"runs/{name}", "role": role,
            "quality": {"fid": fid, "precision": precision, "recall": recall},
            "protocol": {"extractor": "random-conv", "extractor_sha256_16": "ab", "num_generated": 100,
                         "num_reference": num_reference, "reference": "folder:x:test", "resize": "none",
                         "warnings": []}}  # fmt: skip


def _floor(fid: float = 11.7, num_reference: int = 82) -> dict:
    return _result("real floor", fid, 0.7, 0.7, num_reference, role="floor", kind="real-floor")


def test_precision_recall_over_a_small_reference_are_marked_unreliable_in_the_table():
    md = render_table([_result("s", 30.0, 0.531, 0.402), _floor()])
    row = next(line for line in md.splitlines() if line.startswith("| s |"))
    assert "| 0.531 † | 0.402 † |" in row
    assert (f"† precision/recall from k-NN radii over fewer than {MIN_PRC_REFERENCE} reference images (82 here): "
            "unreliable, do not read or compare them") in md  # fmt: skip
    md = render_table([_result("s", 30.0, 0.531, 0.402, num_reference=600), _floor(num_reference=600)])
    assert "| 0.531 | 0.402 |" in md and "†" not in md


def test_summary_marks_them_too():
    lines = summary_lines(_result("s", 30.0, 0.531, 0.402))
    assert "precision                 0.531  (unreliable: k-NN radii over 82 reference images, < 500)" in lines
    assert any(x.startswith("recall") and "unreliable" in x for x in lines)
    assert not any("unreliable" in x for x in summary_lines(_result("s", 30.0, 0.5, 0.4, num_reference=2000)))


def test_a_model_that_has_not_learned_the_data_is_told_so():
    md = render_table([_result("broken", 412.0, 0.01, 0.0), _result("good", 14.0, 0.6, 0.5), _floor()])
    assert ("**This model has not learned the data:** broken (recall 0.000, FID 412 = 35× the real floor 11.7)."
            in md)  # fmt: skip
    assert "broken ⚠ not learned" in md and "good ⚠" not in md and md.count("has not learned") == 1
    # the floor decides: recall 0 near the floor is not the verdict (FID 3x the floor)
    assert "has not learned" not in render_table([_result("close", 35.0, 0.3, 0.0), _floor()])
    r = _result("broken", 412.0, 0.01, 0.0)
    r["real_floor"] = _floor()
    assert (f"{'verdict':<26}this model has not learned the data (recall 0.000, FID 412 = 35× the real floor 11.7)"
            in summary_lines(r))  # fmt: skip
    assert not any(x.startswith("verdict") for x in summary_lines(_result("good", 14.0, 0.6, 0.5)))


@pytest.mark.parametrize("fid, recall, precision, floor, verdict", [
    (412.0, 0.0, 0.5, 11.7, True),     # collapsed, far from the floor
    (412.0, 0.1, 0.0, 11.7, False),    # some recall
    (100.0, 0.0, 0.0, 11.7, False),    # under 10x the floor
    (412.0, 0.0, 0.0, None, True),     # no floor: no overlap either way
    (412.0, 0.0, 0.5, None, False),    # no floor, precise samples of a few modes: not said
    (None, 0.0, 0.0, None, False),
])  # fmt: skip
def test_not_learned_rule(fid, recall, precision, floor, verdict):
    assert bool(not_learned(fid, recall, precision, floor)) == verdict


def test_report_refuses_a_file_as_out(tmp_path):
    f = tmp_path / "r"
    f.write_text("x")
    with pytest.raises(FileExistsError, match="is a file; a report is a folder"):
        write_report([_result("s", 1.0, 0.5, 0.5)], f)
    assert f.read_text() == "x"
