"""A user's own GAN end to end: gankd import -> compress (pruned student, data-free and with
data) -> sample -> eval -> export, for three generator styles gankd did not define."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from foreign_models import (
    TINY_FASTGAN,
    TINY_STYLEGAN2,
    FastGANGenerator,
    ResNetGenerator,
    StyleGAN2Generator,
    TutorialDCGAN,
    UNetGenerator,
    calibrated_bn,
    trained_like,
)
from testkit import write_images

from gankd.adapter import adapter_for
from gankd.checkpoint import load_generator
from gankd.cli import main
from gankd.metrics.efficiency import count_macs, generator_inputs

TESTS = Path(__file__).resolve().parent
STYLES = {
    # name: (class path, kwargs, factory, extra import flags)
    "tutorial": ("foreign_models:TutorialDCGAN", {"nz": 16, "ngf": 8, "nc": 3}, lambda: TutorialDCGAN(16, 8, 3), []),
    "resnet-cond": ("foreign_models:ResNetGenerator", {"num_classes": 5}, lambda: ResNetGenerator(num_classes=5),
                    ["--num-classes", "5"]),
    "unet": ("foreign_models:UNetGenerator", {}, lambda: UNetGenerator(), ["--output-range", "0,1"]),
    # modulated convolutions, noise (fixed by noise_mode=const, set by import), toRGB skips: the probe pruner
    "stylegan2": ("stylegan2_style:Generator", TINY_STYLEGAN2, lambda: StyleGAN2Generator(**TINY_STYLEGAN2), []),
    # GLU halves, skip-layer excitation, noise drawn inside (set to zero), spectral norm, two output heads
    "fastgan": ("fastgan_style:Generator", TINY_FASTGAN,
                lambda: calibrated_bn(FastGANGenerator(**TINY_FASTGAN), (TINY_FASTGAN["nz"],)), []),
}  # fmt: skip
COMPRESS = ["--width", "0.5", "--steps", "2", "--batch-size", "4", "--perc", "0", "--kd", "0", "--no-progress",
            "--set", "eval_samples=4", "--set", "threads=1", "--set", "checkpoint_every=1"]  # fmt: skip


def _teacher(tmp_path: Path, name: str) -> Path:
    cls, kwargs, make, flags = STYLES[name]
    torch.manual_seed(1)
    g = trained_like(make())
    ckpt = tmp_path / "checkpoint.tar"
    torch.save({"netG_state_dict": g.state_dict(), "epoch": 5}, ckpt)  # the tutorial's way of saving
    out = tmp_path / "teacher"
    assert main(["import", "--class", cls, "--kwargs", json.dumps(kwargs), "--weights", str(ckpt),
                 "--out", str(out), *flags]) == 0  # fmt: skip
    return out


def _outputs(folder: Path) -> torch.Tensor:
    gen = adapter_for(load_generator(folder))
    with torch.no_grad():
        return gen(gen.seeded_inputs(list(range(4))))


@pytest.mark.parametrize("name", sorted(STYLES))
def test_import_compress_sample_eval_export(tmp_path, name, capsys):
    teacher = _teacher(tmp_path, name)
    run = tmp_path / "run"
    # perceptual-fid asked for (the default keeps the last step): data-free, it falls back to teacher-l1
    assert main(["compress", "--teacher", str(teacher), "--out", str(run), "--select", "perceptual-fid",
                 *COMPRESS]) == 0, capsys.readouterr().err  # fmt: skip
    student = run / "student"
    cfg = json.loads((run / "config.json").read_text())
    # no data recorded and none given: data-free, the real side is the teacher, D is fresh, taps by module path
    assert cfg["resolved"]["data"] == "none" and cfg["resolved"]["real"] == "teacher"
    assert cfg["resolved"]["d_init"] == "fresh" and cfg["selection"]["rule"] == "teacher-l1"
    assert isinstance(cfg["resolved"]["feature_taps"], list) and cfg["resolved"]["feature_taps"]
    meta = json.loads((student / "config.json").read_text())
    assert meta["family"] == "module" and meta["prune"]["width"] == 0.5
    assert meta["io"]["noise"] == ("zero" if name == "fastgan" else "as-is")  # only FastGAN draws noise inside
    t, s = adapter_for(load_generator(teacher)), adapter_for(load_generator(student))
    ex = generator_inputs(t, 1)
    ratio = count_macs(s.model, ex)["macs"] / count_macs(t.model, ex)["macs"]
    assert 0.15 < ratio < 0.6, ratio  # ~width^2 where every stage prunes
    assert s.output_shape() == t.output_shape() and s.spec.inputs == t.spec.inputs
    assert torch.isfinite(_outputs(student)).all()

    png = tmp_path / "grid.png"
    assert main(["sample", "--model", str(student), "--seeds", "0-7", "--out", str(png)]) == 0
    assert png.stat().st_size > 0

    out_json = tmp_path / "eval.json"
    assert main(["eval", "--model", str(student), "--teacher", str(teacher), "--reference", str(teacher),
                 "--metrics", "fid", "--num-samples", "16", "--out", str(out_json)]) == 0  # fmt: skip
    r = json.loads(out_json.read_text())
    assert r["teacher_fidelity"]["num_samples"] > 0 and r["quality"]["fid"] >= 0
    assert r["model_info"]["inputs"] == json.loads(json.dumps({i.name: [i.kind, list(i.shape), i.num_classes]
                                                               for i in s.spec.inputs}))  # fmt: skip

    exp = tmp_path / "g.onnx"
    assert main(["export", "--model", str(student), "--format", "onnx", "--out", str(exp)]) == 0
    assert json.loads(exp.with_name("g.onnx.json").read_text())["max_abs_diff"] <= 1e-4


def test_compressed_student_reloads_identically_in_a_fresh_process(tmp_path):
    teacher = _teacher(tmp_path, "resnet-cond")
    run = tmp_path / "run"
    assert main(["compress", "--teacher", str(teacher), "--out", str(run), *COMPRESS]) == 0
    mine = _outputs(run / "student")
    code = ("import sys, torch; from gankd.adapter import adapter_for; from gankd.checkpoint import load_generator\n"
            "g = adapter_for(load_generator(sys.argv[1]))\n"
            "with torch.no_grad(): torch.save(g(g.seeded_inputs(list(range(4)))), sys.argv[2])\n")  # fmt: skip
    path = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # same reduction order
    res = subprocess.run([sys.executable, "-c", code, str(run / "student"), str(tmp_path / "out.pt")], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr[-1500:]
    assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True), mine)


def test_compress_with_data_and_target_macs(tmp_path):
    teacher = _teacher(tmp_path, "tutorial")
    data = write_images(tmp_path / "imgs", {"": 40}, size=(32, 32), mode="RGB")
    run = tmp_path / "run"
    args = ["--teacher", str(teacher), "--out", str(run), "--data", f"folder:{data}", "--target-macs", "0.3",
            "--select", "teacher-l1", "--real", "data", *COMPRESS[2:]]  # fmt: skip
    assert main(["compress", *args]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["resolved"]["real"] == "data" and cfg["resolved"]["data"] == f"folder:{data}"
    info = json.loads((run / "student" / "config.json").read_text())["prune"]
    assert info["student_macs"] <= 0.3 * info["teacher_macs"] * 1.05


def test_foreign_bad_inputs_are_one_line(tmp_path, capsys):
    teacher = _teacher(tmp_path, "tutorial")
    capsys.readouterr()
    cases = [
        (["--feat-layers", "main.99"], "no module 'main.99'"),
        (["--channels", "8,4,2"], "--channels sets per-stage channels"),
        (["--real", "data", "--data", "none"], "needs real images"),
    ]
    for i, (extra, message) in enumerate(cases):
        rc = main(["compress", "--teacher", str(teacher), "--out", str(tmp_path / f"bad{i}"), *COMPRESS, *extra])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
