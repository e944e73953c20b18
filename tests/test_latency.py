"""--target-latency: parsing, the per-machine cache, the width search and its refusal."""

from __future__ import annotations

import json
import time

import pytest
from test_export import tiny

from gankd import latency
from gankd.adapter import adapter_for
from gankd.students import build_student


def test_parse_latency_units_and_refusals():
    assert latency.parse_latency("0.4ms") == pytest.approx(0.4)
    assert latency.parse_latency("400us") == pytest.approx(0.4)
    assert latency.parse_latency("0.002s") == pytest.approx(2.0)
    assert latency.parse_latency("3") == 3.0
    for bad in ("fast", "0ms", "-1ms"):
        with pytest.raises(ValueError, match="--target-latency"):
            latency.parse_latency(bad)


def test_width_search_uses_measurements_and_caches_them_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKD_CACHE", str(tmp_path))
    teacher = tiny(num_classes=0)
    calls = []

    def fake(gen, runtime, batch, threads, rounds=5, calls_=20, size=None):  # ms grows with the parameter count
        calls.append(runtime)
        return sum(p.numel() for p in adapter_for(gen).model.parameters()) / 1000

    monkeypatch.setattr(latency, "measure_ms", fake)

    def build(w):
        return adapter_for(build_student(teacher, w, None, "random", 0))

    full = fake(teacher, "eager", 1, 1)
    width, rec = latency.width_for_latency(build, teacher, full / 4, runtime="eager")
    assert rec["measured_ms"] <= full / 4 and rec["met"] and 0.2 < width < 0.8
    assert rec["teacher_ms"] == full and len(rec["candidates"]) == 7
    assert any(not c["cached"] for c in rec["candidates"])  # widths that round to one student share a timing
    n = len(calls)
    width2, rec2 = latency.width_for_latency(build, teacher, full / 4, runtime="eager")
    assert width2 == width and len(calls) == n  # every candidate from this machine's cache
    assert all(c["cached"] for c in rec2["candidates"])
    cache = json.loads(next((tmp_path / "latency").glob("*.json")).read_text())
    assert cache["fingerprint"]["cpu"] and len(cache["ms"]) == n - 1  # one measurement per call but the first
    now = time.time()  # a day later the machine is measured again
    monkeypatch.setattr(latency.time, "time", lambda: now + latency.CACHE_MAX_AGE_S + 1)
    latency.width_for_latency(build, teacher, full / 4, runtime="eager")
    assert len(calls) == n + len(cache["ms"])  # each entry measured again, once
    with pytest.raises(ValueError, match="raise --target-latency"):
        latency.width_for_latency(build, teacher, 1e-9, runtime="eager")


def test_compress_to_a_latency_budget_records_the_measurement(tmp_path, monkeypatch, capsys):
    from gankd.cli import main

    monkeypatch.setenv("GANKD_CACHE", str(tmp_path / "cache"))
    code = main(["compress", "--teacher", "fmnist-teacher", "--target-latency", "10s", "--latency-runtime", "eager",
                 "--steps", "1", "--out", str(tmp_path / "run"), "--no-progress", "--set", "eval_samples=8"])
    out = capsys.readouterr().out
    assert code == 0 and "latency:" in out and "budget of 1e+04 ms" in out
    lat = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["latency_budget"]
    assert lat["met"] and lat["runtime"] == "eager" and lat["width"] > 0.9  # a loose budget keeps the width


def test_an_image_to_image_budget_is_timed_at_the_size_asked_for(tmp_path, monkeypatch):
    from testkit import write_images

    from gankd.cli import main

    monkeypatch.setenv("GANKD_CACHE", str(tmp_path / "cache"))
    folder = write_images(tmp_path / "rgb", {"": 24}, size=(32, 32), mode="RGB")
    assert main(["train-teacher", "--data", f"folder:{folder}", "--task", "denoise", "--out", str(tmp_path / "t"),
                 "--steps", "1", "--batch-size", "4", "--no-progress", "--select", "last",
                 "--set", 'g_options={"base_channels": 4, "depth": 3}',
                 "--set", 'd_options={"base_channels": 4}']) == 0  # fmt: skip
    sizes = []
    real = latency.measure_ms

    def spy(gen, runtime, batch, threads, rounds=5, calls=20, size=None):
        sizes.append(size)
        return real(gen, runtime, batch, threads, rounds=1, calls=2, size=size)

    monkeypatch.setattr(latency, "measure_ms", spy)
    code = main(["compress", "--teacher", str(tmp_path / "t" / "generator"), "--data", f"folder:{folder}",
                 "--target-latency", "10s", "--latency-runtime", "eager", "--latency-size", "64", "--steps", "1",
                 "--out", str(tmp_path / "run"), "--no-progress", "--set", "eval_samples=4"])  # fmt: skip
    assert code == 0 and sizes and set(sizes) == {64}
    lat = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["latency_budget"]
    assert lat["size"] == 64 and lat["met"]
    cache = json.loads(next((tmp_path / "cache" / "latency").glob("*.json")).read_text())
    assert all(k.endswith("|s64") for k in cache["ms"])
    with pytest.raises(ValueError, match="drop --latency-size"):
        from gankd.distill import DistillConfig, Distiller

        Distiller(DistillConfig(teacher="fmnist-teacher", target_latency="10s", latency_size=64, steps=1),
                  tmp_path / "noise")  # fmt: skip


def test_compress_export_gates_and_times_the_exported_file(tmp_path, monkeypatch, capsys):
    from gankd.cli import main

    monkeypatch.setenv("GANKD_CACHE", str(tmp_path / "cache"))
    base = ["compress", "--teacher", "fmnist-teacher", "--steps", "1", "--no-progress", "--set", "eval_samples=8",
            "--set", "gate_samples=64"]  # fmt: skip
    code = main([*base, "--target-latency", "10s", "--latency-runtime", "eager", "--export", "int8",
                 "--max-fid-rise", "inf", "--out", str(tmp_path / "run")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "export:" in out and "budget of 1e+04 ms: met" in out
    d = json.loads((tmp_path / "run" / "deploy.json").read_text())
    assert d["precision"] == "int8" and (tmp_path / "run" / "student" / "export" / "generator.int8.onnx").is_file()
    assert d["quality_gate"]["reference"] == "fashion-mnist:test" and d["latency"]["met"]
    assert d["latency"]["exported_ms"] > 0 and d["latency"]["search_runtime"] == "eager"
    # a refused gate: one line naming the flag, the trained student kept, nothing exported
    code = main([*base, "--export", "fp16", "--max-fid-rise", "-1", "--out", str(tmp_path / "r2")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--max-fid-rise" in err and "kept in" in err
    assert (tmp_path / "r2" / "student" / "model.safetensors").is_file()
    assert not (tmp_path / "r2" / "student" / "export").exists() and not (tmp_path / "r2" / "deploy.json").exists()


def test_a_budget_for_an_int8_export_times_the_int8_export(tmp_path, monkeypatch):
    from gankd.distill import DistillConfig, timed_runtime
    from gankd.runtimes import RUNTIMES, Options

    assert timed_runtime(DistillConfig(target_latency="1ms", export="int8")) == "onnx-int8"
    assert timed_runtime(DistillConfig(target_latency="1ms", export="fp16")) == "onnxruntime"
    assert timed_runtime(DistillConfig(target_latency="1ms", export="int8", latency_runtime="eager")) == "eager"
    ready = RUNTIMES.get("onnxruntime-int8").prepare(tiny(num_classes=0), (1,), Options(workdir=tmp_path))
    assert ready.info["precision"] == "int8" and ready.run[1]()[0].shape == (1, 1, 32, 32)
    monkeypatch.setenv("GANKD_CACHE", str(tmp_path / "cache"))
    assert latency.measure_ms(tiny(num_classes=0), "onnx-int8", rounds=1) > 0


def test_a_latency_layout_budget_searches_latency_layout_students(tmp_path, monkeypatch):
    from gankd.distill import DistillConfig, latency_width

    monkeypatch.setenv("GANKD_CACHE", str(tmp_path))
    seen = []

    def fake(gen, runtime, batch, threads, rounds=5, calls_=20, size=None):
        seen.append(adapter_for(gen).model.cfg.layout)
        return sum(p.numel() for p in adapter_for(gen).model.parameters()) / 1000

    monkeypatch.setattr(latency, "measure_ms", fake)
    teacher = tiny()
    full = fake(teacher, "eager", 1, 1)
    seen.clear()
    width, rec = latency_width(teacher, None, DistillConfig(target_latency=f"{full / 4}ms", student_layout="latency"))
    assert seen[0] == "standard" and set(seen[1:]) == {"latency"}  # the teacher, then the candidates
    assert rec["met"] and rec["measured_ms"] <= full / 4
