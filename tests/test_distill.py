import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from testkit import tiny_discriminator, tiny_generator, write_images

import gankd.distill
from gankd import cli
from gankd.checkpoint import WEIGHTS, file_sha256, load_generator, load_state, save_model
from gankd.distill import CLASSIC, DistillConfig, Distiller, compress
from gankd.loop import TrainingDiverged
from gankd.models.classifiers import ClassifierConfig, ResNetClassifier
from gankd.selection import Selector, build_selector
from gankd.train import GANTrainConfig


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
    """The classic recipe (adversarial from the first step, the teacher's D, ...) at toy sizes: most tests
    here exercise its terms; the budget-aware defaults have tests of their own."""
    base = {**CLASSIC, **dict(teacher=str(teacher), perceptual_path=str(perc), width=0.5, batch_size=8,
                              eval_samples=16, eval_every=0, checkpoint_every=2, sample_every=1000, threads=1,
                              real="teacher", select="teacher-l1", data="fashion-mnist")}  # fmt: skip
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
        return [{k: v for k, v in r.items() if not k.endswith("wall_s")} for r in recs if r["step"] == 4]

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
                   "--width", "0.5", "--batch-size", "4", "--no-progress", "--select", "teacher-l1",
                   "--set", f'perceptual_path="{perc}"', "--set", "eval_samples=8"])  # fmt: skip
    assert rc == 0
    student = load_generator(root / "cli" / "student")
    assert student.feature_channels() == [c // 2 for c in load_generator(teacher).feature_channels()]
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
        (["--teacher", "NOD", "--adv", "0.1", "--d-init", "teacher"], "ships none: pass --d-init fresh or --adv 0"),
        (["--teacher", "NOD", "--real", "data", "--data", "none"], "needs real images but there is no data"),
        (["--d-freeze", "2", "--d-init", "fresh"], "pass --d-init teacher"),
        (["--d-freeze", "9", "--d-init", "teacher"], "has 4 blocks and the last must train; pass at most --d-freeze 3"),
        (["--d-freeze", "1", "--adv", "0"], "they need --adv > 0"),
        (["--adv-warmup", "2"], "--adv-warmup in [0, 1]"),
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


@pytest.fixture
def imgs(tmp_path):
    """40 gray 32x32 images in two classes: the folder's val split holds 4 of them."""
    return write_images(tmp_path / "imgs", {"a": 20, "b": 20}, size=(32, 32))


def _meta(folder):
    return json.loads((folder / "config.json").read_text())


def test_default_selection_is_perceptual_fid_on_val_never_the_evaluator(setup, imgs, monkeypatch):
    root, teacher, _, perc = setup
    from gankd.selection import DEFAULT_SELECT as default

    # train-teacher selects on val by default; compress's budget-aware default keeps the last step (its cosine
    # decay ends there), and --select perceptual-fid is the rule whenever a run selects on val
    assert default == GANTrainConfig.__dataclass_fields__["select"].default == "perceptual-fid"
    assert DistillConfig.__dataclass_fields__["select"].default == "last"
    import gankd.metrics.fidelity as fid

    calls = []
    real = fid.fidelity_metrics

    def spy(source, reference, metrics, n, n_ref, extractor, *a, **k):
        calls.append((reference, str(extractor.evaluator)))
        return real(source, reference, metrics, n, n_ref, extractor, *a, **k)

    monkeypatch.setattr(fid, "fidelity_metrics", spy)
    run = root / "pfid"
    compress(_cfg(teacher, perc, steps=2, eval_every=1, eval_samples=8, data=f"folder:{imgs}", select=default), run)
    assert calls == [(f"folder:{imgs}:val", str(perc))] * 2  # steps 1 and 2, the perceptual net's features
    sel = _meta(run / "student")["selected_on"]
    assert sel["rule"] == "perceptual-fid" and sel["net_sha256"] == file_sha256(perc / WEIGHTS)
    assert sel["reference_size"] == 4 and math.isfinite(sel["val_fid"]) and sel["step"] in (1, 2)
    assert _meta(run)["selection"]["rule"] == "perceptual-fid"
    assert _meta(run / "last")["selected_on"] == {"rule": "last", "step": 2}
    vals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in vals if "val/val_fid" in r] == [1, 2]
    # the network that scores reported numbers is refused as the selection network
    monkeypatch.setenv("GANKD_EVALUATOR", str(perc))
    with pytest.raises(ValueError, match="evaluator's weights"):
        Distiller(_cfg(teacher, perc, data=f"folder:{imgs}", select=default), root / "refused")


def test_perceptual_net_of_other_channels_falls_back_to_teacher_l1(setup, imgs, caplog):
    root, teacher, _, perc = setup
    rgb = save_model(root / "perc_rgb", ResNetClassifier(ClassifierConfig(base_channels=4, image_channels=3)),
                     "classifier")  # fmt: skip
    run = root / "fallback"
    compress(_cfg(teacher, perc, steps=1, data=f"folder:{imgs}", select="perceptual-fid", select_net=str(rgb)), run)
    sel = _meta(run)["selection"]
    assert sel["rule"] == "teacher-l1" and sel["requested"] == "perceptual-fid" and "3-channel" in sel["fallback"]
    assert _meta(run / "student")["selected_on"]["rule"] == "teacher-l1"
    assert sum("selected on teacher-l1 instead" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("kind", ["sparse", "corrupt"])
def test_unusable_val_split_is_refused_before_training(setup, tmp_path, capsys, kind):
    root, teacher, _, perc = setup
    if kind == "sparse":  # 12 images: the val split (every 10th) holds 1
        data = write_images(tmp_path / "few", {"a": 6, "b": 6}, size=(32, 32))
        message = "holds 1 image(s); --select perceptual-fid needs at least 2"
    else:  # 20 images whose 2 val images are unreadable
        data = write_images(tmp_path / "bad", {"a": 10, "b": 10}, size=(32, 32))
        for f in (data / "a" / "009.png", data / "b" / "009.png"):
            f.write_bytes(b"not a png")
        message = "cannot be loaded"
    out = root / f"val_{kind}"
    rc = cli.main(["compress", "--teacher", str(teacher), "--out", str(out), "--steps", "1", "--width", "0.5",
                   "--data", f"folder:{data}", "--real", "teacher", "--no-progress", "--select", "perceptual-fid",
                   "--set", f'perceptual_path="{perc}"', "--set", "eval_samples=8"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert message in err and "val split" in err and "--select teacher-l1" in err
    assert not (out / "state.pt").exists()


def test_final_validation_failure_keeps_the_trained_weights(setup, monkeypatch):
    root, teacher, _, perc = setup

    def boom(self, model):
        raise RuntimeError("validation failed")

    monkeypatch.setattr(Selector, "score", boom)
    run = root / "boom"
    with pytest.raises(RuntimeError, match="validation failed"):
        compress(_cfg(teacher, perc, steps=3, checkpoint_every=100), run)
    assert load_state(run / "state.pt")["step"] == 3
    assert _meta(run / "last")["trained_steps"] == 3
    load_generator(run / "last")


def test_non_finite_weights_are_never_saved(setup, monkeypatch):
    root, teacher, _, perc = setup
    real = gankd.distill.ema_update
    calls = {"n": 0}

    def poisoned(ema, model, decay):
        real(ema, model, decay)
        calls["n"] += 1
        if calls["n"] == 3:  # the losses stay finite: only the EMA weights go bad
            with torch.no_grad():
                next(ema.parameters()).fill_(float("nan"))

    monkeypatch.setattr(gankd.distill, "ema_update", poisoned)
    run = root / "nan"
    with pytest.raises(TrainingDiverged, match=r"ema\..* NaN/inf.*last good checkpoint is .*state.pt"):
        compress(_cfg(teacher, perc, steps=6, checkpoint_every=2), run)
    st = load_state(run / "state.pt")
    assert st["step"] == 2 and all(torch.isfinite(v).all() for v in st["ema"].values() if v.is_floating_point())
    assert _meta(run / "last")["trained_steps"] == 2


def test_non_finite_samples_are_never_selected(setup, imgs):
    root, teacher, _, perc = setup
    t = load_generator(teacher)
    bad = load_generator(teacher)
    with torch.no_grad():
        bad.to_img.weight.fill_(float("nan"))
    kw = dict(data=f"folder:{imgs}", resolution=32, image_channels=1, z_dim=t.z_dim, num_classes=t.num_classes,
              eval_samples=8, net=perc)  # fmt: skip
    for rule, distill in (("perceptual-fid", False), ("teacher-l1", True)):
        sel = build_selector(rule, teacher=t if distill else None, **kw)
        good = sel.score(t)
        assert math.isfinite(good["select"]) and sel.better(good, None)
        val = sel.score(bad)
        assert val["select"] == math.inf and "val_fid" not in val
        assert not sel.better(val, None) and not sel.better(val, {"rule": rule, "select": 1e9})


def test_resume_applies_new_learning_rates(setup, caplog):
    root, teacher, _, perc = setup
    run = root / "lr"
    compress(_cfg(teacher, perc, steps=2, adv=0.1), run)
    assert load_state(run / "state.pt")["opt_g"]["param_groups"][0]["lr"] == 2e-4
    caplog.set_level("INFO", logger="gankd.loop")
    compress(_cfg(teacher, perc, steps=3, adv=0.1, lr_g=1e-3, lr_d=5e-4), run, resume=True)
    st = load_state(run / "state.pt")
    assert [g["lr"] for g in st["opt_g"]["param_groups"]] == [1e-3]
    assert [g["lr"] for g in st["opt_d"]["param_groups"]] == [5e-4]
    assert any("--lr-g" in r.getMessage() for r in caplog.records)


def test_resume_under_a_schedule_is_exact_and_quiet(setup, caplog, monkeypatch):
    root, teacher, _, perc = setup
    cfg = _cfg(teacher, perc, steps=4, adv=0.1, lr_g=1.6e-3, lr_schedule="cosine")
    compress(cfg, root / "straight")
    real_step = Distiller.step

    def killed_after_the_step_2_checkpoint(self, step):
        if step == 3:
            raise KeyboardInterrupt
        return real_step(self, step)

    monkeypatch.setattr(Distiller, "step", killed_after_the_step_2_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        compress(cfg, root / "split")
    monkeypatch.setattr(Distiller, "step", real_step)
    caplog.set_level("INFO", logger="gankd.loop")
    compress(cfg, root / "split", resume=True)
    a, b = load_state(root / "straight" / "state.pt"), load_state(root / "split" / "state.pt")
    for part in ("student", "D"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    # the schedule sets the rate before every step: no "replaced" message about the checkpoint's rate
    assert not any("replaced by" in r.getMessage() for r in caplog.records)


def test_freeze_d_keeps_the_teachers_first_blocks_and_adv_warmup_ramps(setup, monkeypatch):
    root, teacher, _, perc = setup
    scales = []
    real_step = Distiller.step

    def recording(self, step):
        scales.append(self.adv_scale)
        return real_step(self, step)

    monkeypatch.setattr(Distiller, "step", recording)
    compress(_cfg(teacher, perc, steps=4, adv=0.5, d_freeze=2, adv_warmup=0.5, lr_d=1e-2), root / "fd")
    assert scales == [0.0, 0.5, 1.0, 1.0]  # progress 0, 1/4, 2/4, 3/4 over a warm-up of half the run
    before = tiny_discriminator().state_dict()
    after = load_state(root / "fd" / "state.pt")["D"]
    frozen = [k for k in before if k.startswith(("stem.", "downs.0."))]
    trained = [k for k in before if k.startswith("downs.2.") and k.endswith("original")]
    assert frozen and trained
    for k in frozen:
        assert torch.equal(before[k], after[k]), k
    assert not all(torch.equal(before[k], after[k]) for k in trained)


def test_resume_counts_the_wall_time_already_used(setup, caplog):
    root, teacher, _, perc = setup
    run = root / "budget"
    compress(_cfg(teacher, perc, steps=2), run)
    used = load_state(run / "state.pt")["wall_s"]
    assert used > 0
    # the first session already spent this budget: a resumed run trains no further
    out = compress(_cfg(teacher, perc, steps=50, max_minutes=used / 60), run, resume=True)
    assert load_state(run / "state.pt")["step"] == 2 and (out / WEIGHTS).exists()
    assert any("already used" in r.getMessage() for r in caplog.records)


def test_snapshots_keep_the_model_as_it_was_at_each_wall_time(setup):
    root, teacher, _, perc = setup
    run = root / "snap"
    # a point of ~0 minutes is passed at once (after step 1); one of 10^4 minutes never is
    compress(_cfg(teacher, perc, steps=3, snapshot_minutes=(1e-9, 1e4)), run)
    snaps = sorted((run / "snapshots").iterdir())
    assert [p.name for p in snaps] == ["t1e-09min"]
    meta = json.loads((snaps[0] / "config.json").read_text())
    assert meta["trained_steps"] == 1 and meta["snapshot"]["minutes"] == 1e-9 and meta["snapshot"]["wall_s"] > 0
    first = load_state(run / "state.pt")["ema"]
    snap = load_generator(snaps[0])
    assert any(not torch.equal(v, first[k]) for k, v in snap.state_dict().items() if v.is_floating_point())
    # resumed: an existing snapshot is not rewritten
    before = (snaps[0] / WEIGHTS).stat().st_mtime_ns
    compress(_cfg(teacher, perc, steps=4, snapshot_minutes=(1e-9, 1e4)), run, resume=True)
    assert (snaps[0] / WEIGHTS).stat().st_mtime_ns == before


def test_lr_schedules_decay_to_zero():
    from gankd.distill import lr_factor

    assert lr_factor("constant", 0.7) == 1.0
    assert lr_factor("cosine", 0.0) == 1.0 and lr_factor("cosine", 1.0) == pytest.approx(0.0)
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5) and lr_factor("linear", 0.25) == 0.75
    with pytest.raises(ValueError, match="--lr-schedule"):
        DistillConfig(lr_schedule="step")


def test_lr_schedule_and_discriminator_feature_matching_in_a_run(setup):
    root, teacher, _, perc = setup
    d = Distiller(_cfg(teacher, perc, steps=4, adv=0.1, d_feat=1.0, lr_schedule="linear"), root / "levers")
    d.run()
    assert d.opt_g.param_groups[0]["lr"] == pytest.approx(2e-4 * (1 - 3 / 4))  # set before the last step
    lines = [json.loads(x) for x in (root / "levers" / "metrics.jsonl").read_text().splitlines()]
    assert any("train/d_feat" in x and x["train/d_feat"] > 0 for x in lines), lines
    with pytest.raises(ValueError, match="--adv"):
        DistillConfig(d_feat=1.0, adv=0.0)


def test_iterative_pruning_starts_from_a_wider_student(setup):
    root, teacher, _, perc = setup
    wide = compress(_cfg(teacher, perc, steps=2, width=0.5), root / "w05")
    d = Distiller(_cfg(teacher, perc, steps=1, width=0.25, init_from=str(wide)), root / "w025")
    t = load_generator(teacher)
    assert d.student.model.feature_channels == [max(1, round(c * 0.25)) for c in t.feature_channels()]
    from gankd.students import build_student

    direct = build_student(t, 0.25).state_dict()  # pruned from the teacher: other weights
    assert any(not torch.equal(v, direct[k]) for k, v in d.student.state_dict().items() if v.is_floating_point())
    with pytest.raises(ValueError, match="wider student"):
        Distiller(_cfg(teacher, perc, steps=1, width=0.75, init_from=str(wide)), root / "w075")


DDP_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys, torch
    from gankd.checkpoint import load_state
    from gankd.distill import CLASSIC, DistillConfig, Distiller
    teacher, perc, out, data = sys.argv[1:5]

    def digest(m):
        h = hashlib.sha256()
        for k, v in sorted(m.state_dict().items()):
            h.update(k.encode()); h.update(v.detach().contiguous().numpy().tobytes())
        return h.hexdigest()

    kw = {**CLASSIC, **dict(teacher=teacher, perceptual_path=perc, width=0.5, batch_size=4, eval_samples=8,
          threads=1, real="both", adv=0.1, data="folder:" + data, checkpoint_every=100, eval_every=1)}
    # 1) four steps, rank 0 validating (perceptual FID) after each while rank 1 waits
    d = Distiller(DistillConfig(steps=4, **kw), out)
    init = digest(d.student)
    d.run()
    # 2) resumed with 2 ms of budget left: every rank stops after one step, together
    used = load_state(os.path.join(out, "state.pt"))["wall_s"]
    d = Distiller(DistillConfig(steps=1000, max_minutes=(used + 0.002) / 60, **kw), out, resume=True)
    d.run()
    rec = {"init": init, "final": digest(d.student), "steps": d.steps_done, "stopped_by": d.stopped_by}
    open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w").write(json.dumps(rec))
    torch.distributed.destroy_process_group()  # gloo's threads joined before exit (else an abort under load)
    """
)


def test_ddp_two_gloo_ranks_identical(setup, imgs):
    root, teacher, _, perc = setup
    script = root / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    out = root / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(teacher), str(perc), str(out), str(imgs)]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    if res.returncode < 0 or "SIGABRT" in res.stderr:
        # Seen once in ~10 runs, under heavy machine load: rank 0 aborted by a signal (SIGABRT)
        # with no Python error. Kept visible in the log; one clean rerun must then pass.
        print("DDP run aborted by a signal; rerunning once. stderr head:\n" + res.stderr[:3000])
        shutil.rmtree(out, ignore_errors=True)
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    written = all((out / f"rank{r}.json").is_file() for r in (0, 1))
    if res.returncode != 0 and written and "SIGABRT" in res.stderr:
        # Seen under two trainings on the 2 cores: both ranks wrote their record (training, the budget stop and the
        # checkpoint are done) and then aborted in gloo's teardown ("terminate called without an active exception").
        # What this test checks is in the records and the run folder, asserted below.
        print("DDP ranks aborted after writing their records (teardown); checking the records. stderr tail:\n"
              + res.stderr[-1500:])
    else:
        assert res.returncode == 0, res.stderr[:3000] + "\n...\n" + res.stderr[-1500:]
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1  # same step, same weights on both ranks
    assert r0["steps"] == 5 and r0["stopped_by"] == "budget"
    assert r0["final"] != r0["init"]  # training moved the student
    assert load_state(out / "state.pt")["step"] == 5
    vals = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in vals if "val/val_fid" in r] == [1, 2, 3, 4, 5]
    assert _meta(out / "student")["selected_on"]["rule"] == "perceptual-fid"


def test_a_batchnorm_discriminator_sees_real_and_fake_batches_apart(setup, tmp_path, monkeypatch):
    """A teacher whose D has BatchNorm (train-teacher --set discriminator.norm=batch): compress's D
    step passes the real and the fake batch separately, as its G step passes fakes alone (one
    mixed batch let the D separate them by batch statistics and not in the G step: the student
    then chased logits of +18 and lost its teacher). Spectral-norm Ds keep the one mixed call."""
    root, _, _, perc = setup
    t = tiny_generator(base_channels=8)
    bn = save_model(tmp_path / "bn_teacher", t, "generator", discriminator=tiny_discriminator(norm="batch"))
    sizes = {"bn": [], "sn": []}
    for name, teacher in (("bn", bn), ("sn", setup[1])):
        d = Distiller(_cfg(teacher, perc, adv=0.5, steps=2), root / f"run_{name}")
        d.D.register_forward_pre_hook(lambda m, args, _n=name: sizes[_n].append(args[0].shape[0]))
        d.step(0)
    assert sizes["bn"] == [8, 8, 8] and sizes["sn"] == [16, 8]  # D step (real, fake apart | mixed), G step


def test_adv_start_leaves_the_discriminator_alone_in_the_cheap_phase(setup):
    root, teacher, _, perc = setup
    d = Distiller(_cfg(teacher, perc, steps=4, adv=0.1, adv_start=0.5, perceptual=0.0, kd=0.0), root / "late")
    before = {k: v.clone() for k, v in d.D.state_dict().items()}
    d.train_mode()
    for step in range(2):  # progress 0 and 0.25: no D step, no adversarial term
        d.before_step(step, step / 4)
        values = d.step(step)
        assert "adv" not in values and "d" not in values
    assert all(torch.equal(before[k], v) for k, v in d.D.state_dict().items())
    d.before_step(2, 0.5)
    values = d.step(2)
    assert "adv" in values and "d" in values
    assert not all(torch.equal(before[k], v) for k, v in d.D.state_dict().items())
    with pytest.raises(ValueError, match="--adv-start"):
        DistillConfig(adv_start=1.0)


def test_adv_max_steps_caps_the_adversarial_phase():
    from gankd.distill import adversarial_phase

    def on(**kw):
        cfg = DistillConfig(**{"adv_start": 0.5, **kw})
        return [s for s in range(cfg.steps) if adversarial_phase(cfg, s, s / cfg.steps)]

    assert on(steps=100) == list(range(50, 100))  # no cap: from --adv-start on
    assert on(steps=100, adv_max_steps=20) == list(range(80, 100))  # the cap binds: the last 20 steps
    assert on(steps=100, adv_max_steps=60) == list(range(50, 100))  # it does not: --adv-start decides
    # a wall budget (steps unbounded): the steps left at the pace so far, 100 steps a minute here
    cfg = DistillConfig(adv_start=0.5, adv_max_steps=20, steps=10**9, max_minutes=1.0)
    assert not adversarial_phase(cfg, 75, 0.75) and adversarial_phase(cfg, 85, 0.85)
    assert adversarial_phase(cfg, 30, 0.85)  # a slower pace: fewer steps left, the phase has begun
    with pytest.raises(ValueError, match="--adv-max-steps"):
        DistillConfig(adv_max_steps=-1)
    # --adv-warmup ramps from the phase's start: --adv-start, or where the cap binds its steps before the end
    from gankd.distill import adversarial_start

    assert adversarial_start(DistillConfig(steps=100, adv_start=0.5, adv_max_steps=60), 10, 0.1) == 0.5
    assert adversarial_start(DistillConfig(steps=100, adv_start=0.5, adv_max_steps=20), 10, 0.1) == pytest.approx(0.8)


def test_lr_phases_decay_each_phase_as_at_the_budget_where_the_phases_fit():
    from gankd.distill import schedule_progress

    cfg = DistillConfig(steps=1000, adv_start=0.9, adv_max_steps=50, lr_phases=True)
    assert schedule_progress(cfg, 0, 0.0) == 0.0
    assert schedule_progress(cfg, 475, 0.475) == pytest.approx(0.45)  # half the cheap phase: half of 0.9
    assert schedule_progress(cfg, 950, 0.95) == pytest.approx(0.9)  # the capped phase begins at --adv-start's rate
    assert schedule_progress(cfg, 975, 0.975) == pytest.approx(0.95)
    for off in (dict(lr_phases=False), dict(adv_max_steps=100), dict(adv_max_steps=0), dict(adv=0.0)):
        # off, unbinding, no cap, no adversarial phase at all
        other = DistillConfig(**{**dataclasses.asdict(cfg), **off})
        assert schedule_progress(other, 475, 0.475) == 0.475


def test_lr_phases_under_a_wall_budget_read_the_run_length_at_the_pace_so_far():
    from gankd.distill import adversarial_phase, schedule_progress

    # steps unbounded, 1,000 steps in the budget at this pace: the same mapping as --steps 1000
    wall = DistillConfig(steps=10**9, max_minutes=1.0, adv_start=0.9, adv_max_steps=50, lr_phases=True)
    by_steps = DistillConfig(steps=1000, adv_start=0.9, adv_max_steps=50, lr_phases=True)
    for step in (1, 300, 475, 949, 951, 975, 999):  # (at 950 exactly the two differ by float rounding)
        p = step / 1000
        assert schedule_progress(wall, step, p) == pytest.approx(schedule_progress(by_steps, step, p))
        assert adversarial_phase(wall, step, p) == adversarial_phase(by_steps, step, p)
    # runs just shorter and just longer than where the cap starts to bind (500 steps here): the phase mapping then
    # gives about the progress itself, so an estimate that crosses 500 does not make the rate jump
    for total, binds in ((495, False), (515, True)):
        for step in (100, 300, 480):
            p = step / total
            assert (schedule_progress(wall, step, p) != p) == binds
            assert schedule_progress(wall, step, p) == pytest.approx(p, abs=3e-3)


def test_an_unbinding_adv_cap_trains_the_same_student(setup):
    root, teacher, _, perc = setup
    kw = dict(steps=8, adv=0.1, adv_start=0.5, perceptual=0.0, kd=0.0, d_init="fresh", checkpoint_every=100)
    runs = {cap: Distiller(_cfg(teacher, perc, adv_max_steps=cap, **kw), root / f"cap{cap}").run()
            for cap in (0, 4, 2)}  # fmt: skip
    runs["lrp"] = Distiller(_cfg(teacher, perc, adv_max_steps=4, lr_phases=True, **kw), root / "lrp").run()
    weights = {cap: load_file(str(d / WEIGHTS)) for cap, d in runs.items()}
    assert all(torch.equal(weights[0][k], weights[4][k]) for k in weights[0])  # 4 = the last half anyway
    assert all(torch.equal(weights[0][k], weights["lrp"][k]) for k in weights[0])  # lr_phases: only a binding cap
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_d_width_slims_a_fresh_discriminator(setup):
    root, teacher, _, perc = setup
    sizes = {}
    for w in (1.0, 0.25):
        d = Distiller(_cfg(teacher, perc, steps=1, adv=0.1, d_init="fresh", d_width=w), root / f"dw{w}")
        sizes[w] = sum(p.numel() for p in d.D.parameters())
    assert sizes[0.25] < sizes[1.0] / 4
    with pytest.raises(ValueError, match="--d-width"):
        DistillConfig(d_width=0)


def test_latency_layout_student_end_to_end(setup, capsys, tmp_path):
    from gankd.distill import width_for_macs
    from gankd.export import export_generator
    from gankd.metrics.efficiency import count_macs

    root, teacher, _, perc = setup
    rc = cli.main(["compress", "--teacher", str(teacher), "--out", str(root / "lat"), "--steps", "2",
                   "--width", "0.5", "--batch-size", "4", "--no-progress", "--select", "teacher-l1",
                   "--student-layout", "latency", "--feat", "1",
                   "--set", f'perceptual_path="{perc}"', "--set", "eval_samples=8"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    student = load_generator(root / "lat" / "student")
    t = load_generator(teacher)
    assert student.model.cfg.layout == "latency"  # saved and rebuilt with its layout
    assert student.feature_channels() == [c // 2 for c in t.feature_channels()][:-1]
    r = export_generator(root / "lat" / "student", out=tmp_path / "lat.onnx")
    assert r["max_abs_diff"] <= 1e-4
    # --target-macs sizes the student it will build: the latency layout affords a wider one at the same MACs
    t_model = t.model
    w_std, w_lat = width_for_macs(t_model, 0.3), width_for_macs(t_model, 0.3, layout="latency")
    assert w_lat > w_std
    ex = t.example_inputs(1)
    from gankd.students import build_student

    full = count_macs(t_model, ex)["macs"]
    assert count_macs(build_student(t_model, w_lat, layout="latency"), ex)["macs"] <= 0.3 * full
