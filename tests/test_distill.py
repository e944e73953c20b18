import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from testkit import tiny_discriminator, tiny_generator

from gankd import cli
from gankd.checkpoint import load_generator, load_state, save_model
from gankd.distill import DistillConfig, Distiller, compress
from gankd.models.classifiers import ClassifierConfig, ResNetClassifier


@pytest.fixture
def setup(tmp_path):
    """A tiny trained-looking teacher (with D) and a tiny perceptual classifier."""
    t = tiny_generator(base_channels=8)
    with torch.no_grad():
        for p in t.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.1)
        t.train()
        t(torch.randn(32, t.z_dim), torch.arange(32) % 10)
    t.eval()
    teacher = save_model(tmp_path / "teacher", t, "generator", discriminator=tiny_discriminator())
    nod = save_model(tmp_path / "teacher_nod", t, "generator")
    torch.manual_seed(0)
    clf = ResNetClassifier(ClassifierConfig(base_channels=4))
    with torch.no_grad():  # confident logits, so soft-label KD has something to match
        clf.head.weight.mul_(50)
    perc = save_model(tmp_path / "perc", clf, "classifier")
    return tmp_path, teacher, nod, perc


def _cfg(teacher, perc, **kw):
    base = dict(teacher=str(teacher), perceptual_path=str(perc), width=0.5, batch_size=8, eval_samples=16,
                eval_every=0, checkpoint_every=2, sample_every=1000, threads=1, real="teacher")  # fmt: skip
    base.update(kw)
    return DistillConfig(**base)


@pytest.mark.parametrize("loss", ["pixel", "perceptual", "feat", "kd"])
def test_each_distillation_loss_alone_decreases(setup, loss):
    root, teacher, _, perc = setup
    weights = {"pixel": 0.0, "perceptual": 0.0, "feat": 0.0, "adv": 0.0, "kd": 0.0, loss: 1.0}
    d = Distiller(_cfg(teacher, perc, init="random", lr_g=5e-3, batch_size=16, **weights), root / f"run_{loss}")
    hist = [d.step(s)[loss] for s in range(40)]
    assert sum(hist[-5:]) / 5 < 0.7 * sum(hist[:5]) / 5, hist


def test_resume_is_exact(setup):
    root, teacher, _, perc = setup
    cfg = _cfg(teacher, perc, steps=4, real="both", adv=0.1, kd=0.1)
    compress(cfg, root / "straight")
    compress(_cfg(teacher, perc, steps=2, real="both", adv=0.1, kd=0.1), root / "split")
    compress(cfg, root / "split", resume=True)
    a, b = load_state(root / "straight" / "state.pt"), load_state(root / "split" / "state.pt")
    assert a["step"] == b["step"] == 4
    for part in ("student", "ema", "D", "adapters"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    def step4(run):
        import json

        recs = [json.loads(x) for x in (root / run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "train/wall_s"} for r in recs if r["step"] == 4]

    assert step4("split") == step4("straight")


def test_resume_refuses_a_changed_teacher(setup):
    root, teacher, _, perc = setup
    compress(_cfg(teacher, perc, steps=2), root / "run")
    before = (root / "run" / "state.pt").read_bytes()
    t = load_generator(teacher)
    with torch.no_grad():
        next(t.parameters()).add_(1.0)
    save_model(teacher, t, "generator", discriminator=tiny_discriminator())  # same name, other weights
    with pytest.raises(ValueError, match="other teacher weights"):
        compress(_cfg(teacher, perc, steps=4), root / "run", resume=True)
    assert (root / "run" / "state.pt").read_bytes() == before


def test_compress_cli_end_to_end(setup, capsys):
    root, teacher, _, perc = setup
    rc = cli.main(["compress", "--teacher", str(teacher), "--out", str(root / "cli"), "--steps", "2",
                   "--width", "0.5", "--batch-size", "4", "--no-progress", "--no-select-on-val",
                   "--set", f'perceptual_path="{perc}"', "--set", "eval_samples=8"])  # fmt: skip
    assert rc == 0
    student = load_generator(root / "cli" / "student")
    assert student.feature_channels == [c // 2 for c in load_generator(teacher).feature_channels]
    for f in ("config.json", "metrics.jsonl", "teacher_vs_student.png", "state.pt", "last/model.safetensors"):
        assert (root / "cli" / f).exists(), f
    # a second run into the same folder without --resume is refused, nothing overwritten
    before = (root / "cli" / "state.pt").read_bytes()
    rc = cli.main(["compress", "--teacher", str(teacher), "--out", str(root / "cli"), "--steps", "2"])
    assert rc == 2 and (root / "cli" / "state.pt").read_bytes() == before
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--teacher", "/nonexistent/teacher"], "does not exist"),
        (["--width", "0"], "--width must be > 0"),
        (["--width", "-0.5"], "--width must be > 0"),
        (["--teacher", "NOD", "--adv", "0.1"], "ships none: pass --d-init fresh or --adv 0"),
    ],
)
def test_compress_bad_input_one_line(setup, capsys, args, message):
    root, teacher, nod, perc = setup
    args = [str(nod) if a == "NOD" else a for a in args]
    if "--teacher" not in args:
        args += ["--teacher", str(teacher)]
    rc = cli.main(["compress", "--out", str(root / "bad"), "--steps", "1", "--set", f'perceptual_path="{perc}"', *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


DDP_SCRIPT = textwrap.dedent(
    """
    import hashlib, os, sys, torch
    from gankd.distill import DistillConfig, Distiller
    teacher, perc, out = sys.argv[1:4]
    cfg = DistillConfig(teacher=teacher, perceptual_path=perc, width=0.5, steps=3, batch_size=4,
                        eval_samples=8, eval_every=0, threads=1, real="both", adv=0.1)
    d = Distiller(cfg, out)
    d.run()
    h = hashlib.sha256()
    for k, v in sorted(d.student.state_dict().items()):
        h.update(k.encode()); h.update(v.detach().contiguous().numpy().tobytes())
    open(os.path.join(out, f"rank{os.environ['RANK']}.sha"), "w").write(h.hexdigest())
    """
)


def test_ddp_two_gloo_ranks_identical(setup):
    root, teacher, _, perc = setup
    script = root / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    out = root / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(teacher), str(perc), str(out)]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    h0, h1 = (out / "rank0.sha").read_text(), (out / "rank1.sha").read_text()
    assert h0 == h1
    assert (out / "student" / "model.safetensors").exists()
    assert len(list(root.glob("ddp*"))) == 2  # one run folder (plus the script)
    assert hashlib.sha256(b"").hexdigest() != h0
