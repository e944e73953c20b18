"""benchmarks/own_data_progress.py: scores a teacher run's snapshots, also a run stopped before its final save."""

import json

from testkit import load_benchmark, tiny_generator, write_images

from gankd.checkpoint import save_model


def test_a_run_stopped_early_is_scored_from_its_snapshots(tmp_path):
    prog = load_benchmark("own_data_progress")
    data = write_images(tmp_path / "imgs", {"": 200}, size=(32, 32), mode="RGB")
    run = tmp_path / "run"
    for minutes, steps in ((1, 5), (2, 9)):
        g = tiny_generator(num_classes=0, image_channels=3, seed=steps)
        save_model(run / "snapshots" / f"t{minutes}min", g, "generator",
                   extra={"data": f"folder:{data}", "trained_steps": steps})  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "wall_s": 6.0 * s}) + "\n" for s in range(1, 10)))
    out = tmp_path / "out"
    prog.main(["--run", str(run), "--num-samples", "64", "--out", str(out)])  # no run/generator: stopped early
    res = json.loads((out / "progress.json").read_text())
    assert [r["name"] for r in res["rows"]] == ["t1min", "t2min"] and [r["step"] for r in res["rows"]] == [5, 9]
    assert res["extractor"] and res["data"] == f"folder:{data}" and (out / "grid_t2min.png").exists()
    assert "| t2min | 9 |" in (out / "PROGRESS.md").read_text()


def test_a_generator_saved_mid_run_is_not_called_final(tmp_path):
    prog = load_benchmark("own_data_progress")
    data = write_images(tmp_path / "imgs", {"": 200}, size=(32, 32), mode="RGB")
    run = tmp_path / "run"
    save_model(run / "generator", tiny_generator(num_classes=0, image_channels=3), "generator",
               extra={"data": f"folder:{data}", "trained_steps": 4})  # fmt: skip
    lines = [json.dumps({"step": s, "wall_s": 6.0 * s, "loss_d": 1.0}) for s in range(1, 10)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    prog.main(["--run", str(run), "--num-samples", "64", "--out", str(tmp_path / "out")])  # killed at step 9
    res = json.loads((tmp_path / "out" / "progress.json").read_text())
    assert [r["name"] for r in res["rows"]] == ["generator_step4"]
