"""`gankd eval`, `gankd export` and `gankd report` end to end on tiny models: JSON with every
number, protocol, command and fingerprint; one-line errors; report.md + PNG."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from evalkit import blobs, evaluator_dir_fixture, private_cache_fixture, tiny_gen  # noqa: F401  (fixtures)
from PIL import Image

from gankd import cli
from gankd.checkpoint import save_model
from gankd.evaluate import Fidelity, Quality, Speed, evaluate, real_floor
from gankd.fileio import portable_path
from gankd.report import load_results, render_table

pytestmark = pytest.mark.usefixtures("private_cache")


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def setup(tmp_path, evaluator_dir):
    """Teacher and student folders and a 64-image reference folder."""
    teacher = save_model(tmp_path / "teacher", tiny_gen(seed=0, base=8), "generator")
    student = save_model(tmp_path / "student", tiny_gen(seed=1, base=4), "generator")
    ref = tmp_path / "ref"
    ref.mkdir()
    for i, x in enumerate(blobs(64, seed=3)):
        Image.fromarray(x[0].numpy()).save(ref / f"{i:03d}.png")
    return teacher, student, f"folder:{ref}", evaluator_dir


def test_eval_cli_writes_json_and_report_renders(setup, tmp_path, capsys):
    teacher, student, ref, ev = setup
    common = ["--num-samples", 48, "--reference", ref, "--evaluator", ev]
    code, out, err = run_cli(capsys, "eval", "--model", student, *common, "--teacher", teacher,
                             "--teacher-samples", 16, "--speed", "--no-onnx", "--big-batch", 8,
                             "--out", tmp_path / "s.json")  # fmt: skip
    assert code == 0, err
    assert "FID" in out and "PSNR to teacher" in out and "eager speed" in out and "s.json" in out
    r = json.loads((tmp_path / "s.json").read_text())
    assert r["kind"] == "eval" and r["role"] == "student" and r["teacher"] == portable_path(teacher)
    assert not r["teacher"].startswith("/") and not r["model"].startswith("/")
    assert set(r["quality"]) >= {"fid", "isc_mean", "kid_mean", "precision", "recall"}
    # folder:PATH without a split is its train split: 58 of 64 (every 10th from the 5th is test)
    assert r["protocol"]["num_generated"] == 48 and r["protocol"]["num_reference"] == 58
    # the evaluator actually used is named, with its path and hash (never "fmnist-evaluator" for a user's)
    p = r["protocol"]
    assert p["extractor"] == "evaluator:eval" and p["resize"] == "none" and p["extractor_weights"] == portable_path(ev)
    assert p["extractor_sha256_16"] and "evaluator:eval (sha256" in out
    assert any("58 images" in w for w in p["warnings"])  # a reference under 2,000 images is flagged
    assert out.count("(unreliable: k-NN radii over 58 reference images, < 500)") == 2  # precision and recall
    assert 0 <= r["class_consistency"]["accuracy"] <= 1
    tf = r["teacher_fidelity"]
    assert tf["psnr_db"] > 0 and tf["evaluator_lpips_style"] > 0 and tf["num_samples"] == 16
    assert r["efficiency"]["macs"] > 0 and r["efficiency"]["speed"]["eager"]["latency"]["median_ms"] > 0
    assert r["fingerprint"]["cpu"] and r["fingerprint"]["torch"]
    assert r["command"].startswith("gankd eval --model") and "--speed" in r["command"]
    # with --teacher, speed is timed interleaved with the teacher: speed-ups with their spread
    vt = r["efficiency"]["speed_vs_teacher"]
    assert vt["protocol"]["rounds"] >= 5 and vt["created_utc"] and vt["fingerprint"]["cpu"]
    x = vt["ratio"]["eager"]["latency"]
    assert x["min"] <= x["median"] <= x["max"] and len(x["rounds"]) == vt["protocol"]["rounds"]
    assert r["efficiency"]["speed"]["eager"]["method"] == "interleaved"
    assert vt["teacher"]["eager"]["latency"]["median_ms"] > 0 and "eager × teacher" in out

    # the teacher under the same protocol, through the API, then the report of both
    t = evaluate(teacher, quality=Quality(num_samples=48, evaluator=ev, kid_subsets=5), reference=ref, role="teacher")
    (tmp_path / "t.json").write_text(json.dumps(t))
    code, out, err = run_cli(
        capsys, "report", tmp_path / "s.json", tmp_path / "t.json", "--out", tmp_path / "rep"
    )
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "**teacher** (teacher)" in md and "| student |" in md and "evaluator:eval (sha256" in md
    assert "no real-data floor" in md and "58 images" in md  # report sanity notes
    assert f"{x['median']:.2f}× ({x['min']:.2f}–{x['max']:.2f})" in md and "interleaved" in md
    png = (tmp_path / "rep" / "quality_vs_speed.png").read_bytes()
    assert (
        png[:8] == b"\x89PNG\r\n\x1a\n"
        and Image.open(tmp_path / "rep" / "quality_vs_speed.png").size[0] > 500
    )


def test_same_seeds_give_same_numbers_and_runs_aggregate(setup):
    _, student, ref, ev = setup
    q = Quality("fid", 32, evaluator=ev, kid_subsets=5)
    a, b = evaluate(student, quality=q, reference=ref), evaluate(student, quality=q, reference=ref)
    assert a["quality"]["fid"] == b["quality"]["fid"]
    c = evaluate(student, quality=dataclasses.replace(q, first_seed=1000), reference=ref)
    assert c["quality"]["fid"] != a["quality"]["fid"] and "seeds 1000..1031" in c["protocol"]["generated"]
    table = render_table(load_results([a, c]))
    assert "(2 runs)" in table and "±" in table
    assert "32 generated vs" in table  # protocol settings are never averaged (32.0) into a mismatch


def test_eval_errors_are_one_line(setup, tmp_path, capsys, monkeypatch):
    _, student, ref, ev = setup
    code, out, err = run_cli(capsys, "eval")
    assert code == 2 and "--model" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "eval", "--model", student, "--metrics", "fid,ppl")
    assert code == 2 and "ppl" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    code, _, err = run_cli(capsys, "eval", "--model", student, "--extractor", "inception-v3-compat",
                           "--reference", ref)  # fmt: skip
    assert (
        code == 2
        and "weights-inception-2015-12-05-6726825d.pth" in err
        and len(err.strip().splitlines()) == 1
    )
    code, _, err = run_cli(capsys, "eval", "--model", tmp_path / "nope", "--evaluator", ev)
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(capsys, "report", tmp_path / "missing.json", "--out", tmp_path / "r")
    assert code == 2 and "gankd eval --out" in err


def test_export_cli_prints_path_and_parity(setup, capsys):
    _, student, _, _ = setup
    code, out, err = run_cli(capsys, "export", "--model", student, "--format", "torchscript")
    assert code == 0, err
    path, parity = out.strip().splitlines()
    assert path == str(student / "export" / "generator.pt") and "parity max abs diff" in parity


def test_real_floor_through_the_same_protocol(tmp_path, evaluator_dir):
    real = tmp_path / "real"
    real.mkdir()
    for i, x in enumerate(blobs(40, seed=11)):
        Image.fromarray(x[0].numpy()).save(real / f"{i:03d}.png")
    ref = tmp_path / "ref"
    ref.mkdir()
    for i, x in enumerate(blobs(40, seed=12)):
        Image.fromarray(x[0].numpy()).save(ref / f"{i:03d}.png")
    r = real_floor(f"folder:{ref}", real=f"folder:{real}",
                   quality=Quality(num_samples=30, metrics="fid,prc", evaluator=evaluator_dir, kid_subsets=5))
    assert r["kind"] == "real-floor" and r["role"] == "floor" and r["quality"]["fid"] >= 0
    assert r["protocol"]["num_generated"] == 30 and "random subset of 30" in r["protocol"]["generated"]
    assert r["fingerprint"]["cpu"] and "real_floor" in r["command"]


def test_result_paths_are_relative_never_absolute(setup, tmp_path, monkeypatch):
    teacher, student, ref, ev = setup
    shipped = tmp_path / "shipped"
    save_model(shipped / "tiny-teacher", tiny_gen(seed=0, base=8), "generator")
    monkeypatch.setenv("GANKD_PRETRAINED", str(shipped))
    monkeypatch.chdir(tmp_path)
    r = evaluate(student, "tiny-teacher", quality=Quality("none", evaluator=ev, class_consistency=False),
                 fidelity=Fidelity(8, lpips=False))  # fmt: skip
    assert r["model"] == "student" and r["teacher"] == "pretrained/tiny-teacher"
    assert r["efficiency"]["weights_source"] == "student/model.safetensors"
    assert "'student'" in r["command"] and str(tmp_path) not in json.dumps(r)


def test_demo_pair_times_teacher_and_student_in_one_interleaved_run(setup, tmp_path):
    from gankd.demo import evaluate_pair
    from gankd.report import write_report

    teacher, student, ref, ev = setup
    paths = evaluate_pair(teacher, student, tmp_path / "demo", "student w0.5", command="gankd demo",
                          quality=Quality("fid", 32, evaluator=ev, kid_subsets=5), reference=ref,
                          fidelity=Fidelity(8), speed=Speed(("eager",), 8, rounds=5))  # fmt: skip
    t, s = (json.loads(p.read_text()) for p in paths)
    vt = s["efficiency"]["speed_vs_teacher"]
    assert t["efficiency"]["speed"] == vt["teacher"] and "interleaved" in t["speed_note"]
    stamps = {t["efficiency"]["speed"]["eager"]["measured_utc"], s["efficiency"]["speed"]["eager"]["measured_utc"]}
    assert stamps == {vt["created_utc"]}
    assert vt["protocol"]["rounds"] == 5 and t["role"] == "teacher" and s["role"] == "student w0.5"
    md = Path(write_report(paths, tmp_path / "demo")["markdown"]).read_text()
    assert "×*" not in md and f"{vt['ratio']['eager']['latency']['median']:.2f}× (" in md


def test_a_data_free_student_is_scored_against_its_teachers_samples(tmp_path, caplog):
    import logging

    from testkit import tiny_generator

    from gankd.evaluate import REFERENCE_FIRST_SEED, plan_quality

    g = tiny_generator(num_classes=0, image_channels=3)
    teacher = save_model(tmp_path / "teacher", g, "generator")  # records no data
    student = save_model(tmp_path / "student", g, "generator", extra={"data": "none", "teacher": str(teacher)})
    with caplog.at_level(logging.WARNING, logger="gankd.evaluate"):
        plan = plan_quality(g, student, None, "auto", num_samples=8, load_reference=False)
    assert plan["reference"] == str(teacher)
    assert "distilled data-free" in caplog.text and f"seeds {REFERENCE_FIRST_SEED}" in caplog.text
    lone = save_model(tmp_path / "lone", g, "generator")  # neither data nor teacher: still a one-line refusal
    with pytest.raises(ValueError, match="--reference"):
        plan_quality(g, lone, None, "auto", num_samples=8, load_reference=False)
