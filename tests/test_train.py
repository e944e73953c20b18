"""Teacher and classifier training end to end, at toy sizes: CLI runs, exact resume,
the divergence guard, and the time budget."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from testkit import write_images

import gankd.loop
import gankd.train
from gankd import cli
from gankd.checkpoint import load_classifier, load_discriminator, load_generator, load_state
from gankd.config import from_dict
from gankd.data import load_dataset
from gankd.loop import TrainingDiverged
from gankd.registry import CLASSIFIERS
from gankd.train import ClassifierTrainConfig, GANTrainConfig, train_classifier, train_gan

REPO = Path(__file__).resolve().parents[1]
TINY_GAN = [
    "--batch-size", "4", "--no-progress", "--diffaug", "translation,cutout,color",
    "--set", "generator.base_channels=4", "--set", "discriminator.base_channels=4",
    "--set", "generator.num_classes=2", "--set", "discriminator.num_classes=2",
    "--set", "threads=1", "--set", "channels_last=true",
    "--set", "checkpoint_every=2", "--set", "log_every=1", "--set", "ema_decay=0.9",
    "--select", "last",  # 12 images: the val split (every 10th) is too small for perceptual-fid
]  # fmt: skip


@pytest.fixture
def two_class_folder(tmp_path):
    return write_images(tmp_path / "imgs", {"a": 6, "b": 6}, size=(32, 32))


def teacher(capsys, data, out, *extra):
    code = cli.main(
        ["train-teacher", "--data", f"folder:{data}", "--out", str(out), *TINY_GAN, *map(str, extra)]
    )
    _, err = capsys.readouterr()
    return code, err


def tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_teacher_end_to_end(two_class_folder, tmp_path, capsys):
    run = tmp_path / "run"
    code, err = teacher(capsys, two_class_folder, run, "--steps", "3")
    assert code == 0, err
    g = load_generator(run / "generator")
    assert g.feature_channels()[-1] == 4 and g.num_classes == 2
    img = g(torch.randn(2, g.z_dim), torch.tensor([0, 1]))
    assert img.shape == (2, 1, 32, 32) and torch.isfinite(img).all()
    load_discriminator(run / "generator")
    meta = json.loads((run / "generator" / "config.json").read_text())
    assert meta["trained_steps"] == 3 and "discriminator" in meta
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3] and all(
        set(x) >= {"loss_d", "loss_g", "epoch"} for x in lines
    )
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step0000003.png"]
    saved = from_dict(GANTrainConfig, json.loads((run / "train_config.json").read_text()))
    assert saved.steps == 3 and saved.generator.base_channels == 4
    assert load_state(run / "state.pt")["step"] == 3
    # a second run into the same folder without --resume is refused
    code, err = teacher(capsys, two_class_folder, run, "--steps", "3")
    assert code == 2 and "--resume" in err and len(err.strip().splitlines()) == 1


# the share-p masks and the extra discriminator steps' batches and noise come from the run's RNG too
@pytest.mark.parametrize("extra", [[], ["--diffaug-p", "0.5"], ["--d-steps", "2"],
                                   ["--r1", "1", "--set", "r1_every=3", "--set", "discriminator.norm=none"]])
def test_resume_is_bitwise_exact(two_class_folder, tmp_path, capsys, monkeypatch, extra):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert teacher(capsys, two_class_folder, straight, "--steps", "6", *extra)[0] == 0

    # the second run dies during step 4 (after the checkpoint at step 2, before the one at 4)
    calls = {"n": 0}
    real_g_loss = gankd.train.g_loss

    def dying_g_loss(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_g_loss(*a, **k)

    monkeypatch.setattr(gankd.train, "g_loss", dying_g_loss)
    assert teacher(capsys, two_class_folder, split, "--steps", "6", *extra)[0] == 130
    monkeypatch.undo()
    assert load_state(split / "state.pt")["step"] == 2

    # resume in a fresh process; the run's saved config supplies every setting
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "gankd", "train-teacher", "--out", str(split), "--resume", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr

    a, b = load_state(straight / "state.pt"), load_state(split / "state.pt")
    assert a["step"] == b["step"] == 6
    for key in ("G", "D", "G_ema"):
        assert tensors_equal(a[key], b[key]), key
    assert tensors_equal(a["opt_g"]["state"][0], b["opt_g"]["state"][0])
    for f in ("model.safetensors", "discriminator.safetensors"):
        assert tensors_equal(load_file(straight / "generator" / f), load_file(split / "generator" / f)), f
    # metrics written after the checkpoint by the dead run were dropped and redone
    steps = [json.loads(x)["step"] for x in (split / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_with_a_different_config_is_refused(two_class_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert teacher(capsys, two_class_folder, run, "--steps", "2")[0] == 0
    code, err = teacher(capsys, two_class_folder, run, "--steps", "4", "--resume", "--set", "lr_g=0.001")
    assert code == 2 and "lr_g" in err and len(err.strip().splitlines()) == 1
    assert load_state(run / "state.pt")["step"] == 2
    # fields that do not change what is trained may differ
    code, err = teacher(capsys, two_class_folder, run, "--steps", "3", "--resume", "--set", "log_every=5")
    assert code == 0, err
    assert load_state(run / "state.pt")["step"] == 3


def test_divergence_guard_names_the_last_good_checkpoint(two_class_folder, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_d_loss = gankd.train.d_loss

    def nan_after_3(*a, **k):
        calls["n"] += 1
        out = real_d_loss(*a, **k)
        return out * float("nan") if calls["n"] > 3 else out

    monkeypatch.setattr(gankd.train, "d_loss", nan_after_3)
    cfg = GANTrainConfig(
        data=f"folder:{two_class_folder}", steps=10, batch_size=4, checkpoint_every=2, log_every=1,
        threads=1, select="last", generator=gankd.models.GeneratorConfig(base_channels=4, num_classes=2),
        discriminator=gankd.models.DiscriminatorConfig(base_channels=4, num_classes=2),
    )  # fmt: skip
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as e:
        train_gan(cfg, run)
    msg = str(e.value)
    assert "step 3" in msg and "loss_d" in msg and str(run / "state.pt") in msg
    st = load_state(run / "state.pt")
    assert st["step"] == 2
    assert all(torch.isfinite(v).all() for v in st["G"].values() if v.is_floating_point())
    g = load_generator(run / "generator")
    assert torch.isfinite(g(torch.randn(2, g.z_dim), torch.tensor([0, 1]))).all()
    assert json.loads((run / "generator" / "config.json").read_text())["trained_steps"] == 2


def test_d_steps_update_the_discriminator_n_times_per_generator_step(two_class_folder, tmp_path, capsys,
                                                                     monkeypatch):
    """--d-steps 3: three D losses (each on its own real batch) per G loss; the data stream
    advances three batches per step, and the epoch in metrics.jsonl counts them."""
    seen = {"d": [], "g": 0}
    real_g_loss, real_batch = gankd.train.g_loss, gankd.loop.BatchStream.batch

    def batch(self, index):
        seen["d"].append(index)
        return real_batch(self, index)

    monkeypatch.setattr(gankd.loop.BatchStream, "batch", batch)
    monkeypatch.setattr(gankd.train, "g_loss", lambda *a, **k: (seen.__setitem__("g", seen["g"] + 1),
                                                               real_g_loss(*a, **k))[1])  # fmt: skip
    assert teacher(capsys, two_class_folder, tmp_path / "run", "--steps", "2", "--d-steps", "3")[0] == 0
    assert seen["d"] == [0, 1, 2, 3, 4, 5] and seen["g"] == 2
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == pytest.approx([3 * 4 / 11, 6 * 4 / 11])  # 11 train images (one is val)
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["d_steps"] == 3
    code, err = teacher(capsys, two_class_folder, tmp_path / "bad", "--steps", "2", "--d-steps", "0")
    assert code == 2 and "--d-steps must be >= 1" in err


def test_r1_penalises_the_discriminators_input_gradient_lazily(two_class_folder, tmp_path, capsys):
    """--r1 with r1_every=2: the penalty is measured on D updates 0, 2, 4 and logged; a D without
    spectral norm has plain weights (no parametrization) in its saved state."""
    run = tmp_path / "run"
    code, err = teacher(capsys, two_class_folder, run, "--steps", "5", "--r1", "10", "--set", "r1_every=2",
                        "--set", "discriminator.norm=none")  # fmt: skip
    assert code == 0, err
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(x["r1"] > 0 for x in lines) and lines[0]["r1"] == lines[1]["r1"] != lines[2]["r1"]
    assert not any("parametrizations" in k for k in load_state(run / "state.pt")["D"])
    code, err = teacher(capsys, two_class_folder, tmp_path / "bad", "--steps", "2", "--r1", "-1")
    assert code == 2 and "--r1 must be >= 0" in err


def test_time_budget_stops_with_a_checkpoint(two_class_folder, tmp_path):
    cfg = GANTrainConfig(
        data=f"folder:{two_class_folder}", steps=1000, batch_size=4, max_minutes=1e-6, threads=1, select="last",
        generator=gankd.models.GeneratorConfig(base_channels=4, num_classes=0),
        discriminator=gankd.models.DiscriminatorConfig(base_channels=4, num_classes=0),
    )  # fmt: skip
    out = train_gan(cfg, tmp_path / "run")
    assert load_state(tmp_path / "run" / "state.pt")["step"] == 1
    assert load_generator(out).num_classes == 0
    assert (tmp_path / "run" / "samples" / "step0000001.png").exists()  # a grid at every stop


def test_teacher_class_count_must_match_the_data(two_class_folder, tmp_path):
    cfg = GANTrainConfig(
        data=f"folder:{two_class_folder}", steps=1, num_classes=10,  # --num-classes 10
        generator=gankd.models.GeneratorConfig(base_channels=4),
        discriminator=gankd.models.DiscriminatorConfig(base_channels=4),
    )  # fmt: skip
    with pytest.raises(ValueError, match="--num-classes 10 does not match .* which has 2 classes"):
        train_gan(cfg, tmp_path / "run")


@pytest.mark.parametrize("family", CLASSIFIERS.names())
def test_train_classifier_end_to_end(family, image_folder, tmp_path, capsys):
    out = tmp_path / family
    code = cli.main(
        ["train-classifier", "--data", f"folder:{image_folder}", "--family", family, "--out", str(out),
         "--epochs", "2", "--batch-size", "8", "--no-progress", "--set", "model.num_classes=2",
         "--set", "model.base_channels=4", "--set", "model.feature_dim=8", "--set", "threads=1"]
    )  # fmt: skip
    stdout, err = capsys.readouterr()
    assert code == 0, err
    res = json.loads(stdout)
    assert res == {"train_steps": 4, "split": "train", "test_acc": res["test_acc"]}  # the folder's test split
    m = load_classifier(out)
    assert m.family == family and m.cfg.num_classes == 2
    assert m(torch.zeros(1, 1, 32, 32)).shape == (1, 2)
    meta = json.loads((out / "config.json").read_text())
    assert meta["train"]["family"] == family and meta["result"]["train_steps"] == 4


def test_classifier_refuses_class_mismatch(image_folder, tmp_path):
    cfg = ClassifierTrainConfig(data=f"folder:{image_folder}", epochs=1, num_classes=10)  # --num-classes 10
    with pytest.raises(ValueError, match="--num-classes 10 does not match .*2 classes"):
        train_classifier(cfg, tmp_path / "c")


def test_classifier_val_accuracy_only_when_val_is_held_out(tmp_path, monkeypatch):
    """val is the end of train: accuracy on it is a held-out number only after training on fit."""
    real = gankd.train.load_dataset
    small = {}

    def tiny_fmnist(spec, split="train", *a, **k):
        ds = real(spec, split, *a, **k) if spec.startswith("folder:") else None
        if ds is not None:
            return ds
        if split not in small:
            small[split] = write_images(tmp_path / split, {str(c): 1 for c in range(10)}, seed=len(small))
        return load_dataset(f"folder:{small[split]}", "train")

    monkeypatch.setattr(gankd.train, "load_dataset", tiny_fmnist)
    kw = dict(data="fashion-mnist", epochs=1, batch_size=10, threads=1, augment=False)
    model = gankd.models.ClassifierConfig(base_channels=4, feature_dim=8)
    fit = train_classifier(ClassifierTrainConfig(split="fit", model=model, **kw), tmp_path / "out_fit")
    assert set(fit) == {"train_steps", "split", "val_acc", "test_acc"}
    assert 0 <= fit["val_acc"] <= 1 and 0 <= fit["test_acc"] <= 1
    full = train_classifier(ClassifierTrainConfig(split="train", model=model, **kw), tmp_path / "out_train")
    assert "val_acc" not in full and "test_acc" in full


def tiny_gan_cfg(data, **kw) -> GANTrainConfig:
    base = dict(data=f"folder:{data}", batch_size=4, threads=1, checkpoint_every=2, log_every=1, eval_samples=8,
                generator=gankd.models.GeneratorConfig(base_channels=4, num_classes=2),
                discriminator=gankd.models.DiscriminatorConfig(base_channels=4, num_classes=2))  # fmt: skip
    return GANTrainConfig(**{**base, **kw})


@pytest.fixture
def forty_images(tmp_path):
    """40 images in two classes: the folder's val split holds 4."""
    return write_images(tmp_path / "forty", {"a": 20, "b": 20}, size=(32, 32))


def _meta(folder):
    return json.loads((folder / "config.json").read_text())


@pytest.fixture
def user_net(tmp_path):
    """A classifier folder standing in for one the user trained on their data (a copy of the
    shipped perceptual net: the shipped one is used for selection only on Fashion-MNIST)."""
    import shutil

    from gankd.checkpoint import resolve_model_path

    return shutil.copytree(resolve_model_path("fmnist-perceptual"), tmp_path / "user_net")


def test_train_gan_selects_on_perceptual_fid_by_default(forty_images, tmp_path, user_net):
    from gankd.checkpoint import WEIGHTS, file_sha256

    run = tmp_path / "run"
    out = train_gan(tiny_gan_cfg(forty_images, steps=4, eval_every=2, select_net=str(user_net)), run)
    assert out == run / "generator"
    sel = _meta(out)["selected_on"]
    assert sel["rule"] == "perceptual-fid" and sel["step"] in (2, 4) and sel["reference_size"] == 4
    assert sel["net_sha256"] == file_sha256(user_net / WEIGHTS)
    assert _meta(run / "last")["trained_steps"] == 4 and _meta(run / "last")["selected_on"]["rule"] == "last"
    assert json.loads((run / "selection.json").read_text())["rule"] == "perceptual-fid"
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if "val/val_fid" in r] == [2, 4]
    assert load_state(run / "state.pt")["wall_s"] >= max(r["val/wall_s"] for r in recs if "val/wall_s" in r) - 1


def test_shipped_perceptual_net_selects_only_on_fashion_mnist(forty_images, tmp_path, caplog):
    run = tmp_path / "run"
    out = train_gan(tiny_gan_cfg(forty_images, steps=2, eval_every=2), run)
    sel = _meta(out)["selected_on"]
    assert sel["rule"] == "last" and sel["requested"] == "perceptual-fid" and "Fashion-MNIST" in sel["fallback"]
    assert sum("checkpoint selection" in r.getMessage() for r in caplog.records) == 1


def test_train_teacher_refuses_a_too_small_val_split_in_one_line(two_class_folder, tmp_path, capsys, user_net):
    run = tmp_path / "run"
    code = cli.main(["train-teacher", "--data", f"folder:{two_class_folder}", "--out", str(run), "--steps", "1",
                     "--no-progress", "--set", "generator.num_classes=2", "--set", "discriminator.num_classes=2",
                     "--set", f'select_net="{user_net}"'])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "val split" in err and "holds 1 image(s)" in err and "--select last" in err
    assert not (run / "state.pt").exists()


def test_train_gan_resume_counts_the_wall_time_already_used(two_class_folder, tmp_path, caplog):
    run = tmp_path / "run"
    train_gan(tiny_gan_cfg(two_class_folder, steps=2, select="last"), run)
    used = load_state(run / "state.pt")["wall_s"]
    assert used > 0
    train_gan(tiny_gan_cfg(two_class_folder, steps=50, select="last", max_minutes=used / 60), run, resume=True)
    assert load_state(run / "state.pt")["step"] == 2
    assert any("already used" in r.getMessage() for r in caplog.records)


def test_train_gan_never_saves_non_finite_weights(two_class_folder, tmp_path, monkeypatch):
    real = gankd.train.ema_update
    calls = {"n": 0}

    def poisoned(ema, model, decay):
        real(ema, model, decay)
        calls["n"] += 1
        if calls["n"] == 3:  # losses stay finite: only the EMA generator goes bad
            with torch.no_grad():
                next(ema.parameters()).fill_(float("nan"))

    monkeypatch.setattr(gankd.train, "ema_update", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"G_ema\..* NaN/inf.*last good checkpoint is .*state.pt"):
        train_gan(tiny_gan_cfg(two_class_folder, steps=6, select="last"), run)
    assert load_state(run / "state.pt")["step"] == 2
    assert _meta(run / "generator")["trained_steps"] == 2


def test_train_gan_final_validation_failure_keeps_the_weights(forty_images, tmp_path, monkeypatch, user_net):
    from gankd.selection import Selector

    def boom(self, model):
        raise RuntimeError("validation failed")

    monkeypatch.setattr(Selector, "score", boom)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="validation failed"):
        train_gan(tiny_gan_cfg(forty_images, steps=3, checkpoint_every=100, eval_every=0,
                               select_net=str(user_net)), run)  # fmt: skip
    assert load_state(run / "state.pt")["step"] == 3 and _meta(run / "last")["trained_steps"] == 3


# ---------------------------------------------------------------- classifier KD (issue 15)
TINY_CLF = [
    "--family", "vgg", "--batch-size", "4", "--no-progress", "--set", "model.num_classes=2",
    "--set", "model.base_channels=4", "--set", "model.feature_dim=8", "--set", "threads=1",
    "--set", "log_every=1", "--set", "checkpoint_every=2",
]  # fmt: skip


def tiny_teacher(folder: Path, num_classes: int = 2, seed: int = 5, **kw) -> Path:
    from gankd.checkpoint import save_model

    torch.manual_seed(seed)
    cfg = gankd.models.ClassifierConfig(num_classes=num_classes, base_channels=4, feature_dim=8, **kw)
    return save_model(folder, CLASSIFIERS.get("vgg")(cfg), "classifier")


def classifier(capsys, data, out, *extra):
    code = cli.main(["train-classifier", "--data", f"folder:{data}", "--out", str(out), *TINY_CLF, *map(str, extra)])
    _, err = capsys.readouterr()
    return code, err


def test_classifier_kd_logs_both_terms_to_jsonl_and_tensorboard(image_folder, tmp_path, capsys):
    teacher = tiny_teacher(tmp_path / "teacher")
    out = tmp_path / "student"
    code, err = classifier(capsys, image_folder, out, "--teacher", teacher, "--epochs", "1")
    assert code == 0, err
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    lines = [x for x in lines if "test_acc" not in x]  # the final test-split accuracy line
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    assert all(set(x) >= {"loss", "ce", "kd", "lr", "epoch"} for x in lines)
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tb").iterdir())
    meta = json.loads((out / "config.json").read_text())
    assert meta["teacher"]["sha256"] == gankd.checkpoint.file_sha256(teacher / "model.safetensors")
    assert meta["trained_steps"] == 4 and load_state(out / "state.pt")["step"] == 4
    # a second run into the same folder without --resume is refused in one line
    code, err = classifier(capsys, image_folder, out, "--teacher", teacher, "--epochs", "1")
    assert code == 2 and "--resume" in err and len(err.strip().splitlines()) == 1


def test_classifier_teacher_sees_the_students_augmented_batch_frozen(image_folder, tmp_path, monkeypatch):
    from gankd.loop import BatchStream, step_generator

    real_load, seen = gankd.train.load_teacher_classifier, []

    def spy_load(cfg, num_classes):
        t = real_load(cfg, num_classes)
        t.register_forward_pre_hook(
            lambda m, inp: seen.append((inp[0].clone(), m.training, torch.is_grad_enabled(),
                                        any(p.requires_grad for p in m.parameters())))
        )  # fmt: skip
        return t

    monkeypatch.setattr(gankd.train, "load_teacher_classifier", spy_load)
    model = gankd.models.ClassifierConfig(num_classes=2, base_channels=4, feature_dim=8)
    cfg = ClassifierTrainConfig(data=f"folder:{image_folder}", model=model, epochs=1, batch_size=4, threads=1,
                                teacher=str(tiny_teacher(tmp_path / "t")))  # fmt: skip
    train_classifier(cfg, tmp_path / "s")
    stream = BatchStream(load_dataset(f"folder:{image_folder}", "train"), 4, cfg.seed)
    assert len(seen) == 4
    for step, (x, training, grad, trainable) in enumerate(seen):
        expect = gankd.train._shift_flip(stream.batch(step)[0], step_generator(cfg.seed, step))
        assert torch.equal(x, expect) and not training and not grad and not trainable


def test_classifier_kd_resume_is_bitwise_exact(image_folder, tmp_path, capsys, monkeypatch):
    teacher = tiny_teacher(tmp_path / "teacher")
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert classifier(capsys, image_folder, straight, "--teacher", teacher, "--epochs", "2")[0] == 0
    # the second run dies during step 3 (after the checkpoint at step 2)
    real, calls = gankd.train.classifier_kd_loss, {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(gankd.train, "classifier_kd_loss", dying)
    assert classifier(capsys, image_folder, split, "--teacher", teacher, "--epochs", "2")[0] == 130
    assert load_state(split / "state.pt")["step"] == 2
    monkeypatch.setattr(gankd.train, "classifier_kd_loss", real)
    code = cli.main(["train-classifier", "--out", str(split), "--resume", "--no-progress"])
    assert code == 0
    a, b = load_file(straight / "model.safetensors"), load_file(split / "model.safetensors")
    assert tensors_equal(a, b)  # dropout, augmentation, optimiser and schedule all resumed exactly
    lines = [json.loads(x) for x in (split / "metrics.jsonl").read_text().splitlines()]
    # 14 train images (the folder's 2 test images held out), batch 4, 2 epochs: 7 steps
    assert [x["step"] for x in lines if "test_acc" not in x] == list(range(1, 8))


def test_classifier_time_budget_stops_with_a_checkpoint_then_resumes(image_folder, tmp_path):
    model = gankd.models.ClassifierConfig(num_classes=2, base_channels=4, feature_dim=8)
    kw = dict(data=f"folder:{image_folder}", model=model, epochs=1, batch_size=4, threads=1)
    res = train_classifier(ClassifierTrainConfig(max_minutes=1e-9, **kw), tmp_path / "c")
    assert res == {"train_steps": 1, "split": "train", "planned_steps": 4, "test_acc": res["test_acc"]}
    assert load_state(tmp_path / "c" / "state.pt")["step"] == 1
    assert json.loads((tmp_path / "c" / "config.json").read_text())["trained_steps"] == 1
    res = train_classifier(ClassifierTrainConfig(**kw), tmp_path / "c", resume=True)
    assert res == {"train_steps": 4, "split": "train", "test_acc": res["test_acc"]}  # the folder's test split


def test_classifier_resume_refuses_a_changed_teacher(image_folder, tmp_path, capsys):
    teacher = tiny_teacher(tmp_path / "teacher")
    out = tmp_path / "s"
    assert classifier(capsys, image_folder, out, "--teacher", teacher, "--epochs", "1")[0] == 0
    tiny_teacher(tmp_path / "teacher", seed=6)  # same path, other weights
    code, err = classifier(capsys, image_folder, out, "--teacher", teacher, "--epochs", "1", "--resume")
    assert code == 2 and "teacher's weights differ" in err and len(err.strip().splitlines()) == 1


def test_classifier_refuses_a_teacher_of_another_input_shape(image_folder, tmp_path):
    model = gankd.models.ClassifierConfig(num_classes=2, base_channels=4, feature_dim=8)
    teacher = tiny_teacher(tmp_path / "t", resolution=16)
    cfg = ClassifierTrainConfig(data=f"folder:{image_folder}", model=model, epochs=1, teacher=str(teacher))
    with pytest.raises(ValueError, match="--resolution 16"):
        train_classifier(cfg, tmp_path / "s")


def test_gan_snapshots_at_wall_minutes(forty_images, tmp_path):
    run = tmp_path / "snap"
    train_gan(tiny_gan_cfg(forty_images, steps=3, eval_every=0, select="last", snapshot_minutes=(1e-9, 1e4)), run)
    assert [p.name for p in (run / "snapshots").iterdir()] == ["t1e-09min"]
    meta = json.loads((run / "snapshots" / "t1e-09min" / "config.json").read_text())
    assert meta["trained_steps"] == 1 and meta["snapshot"]["wall_s"] > 0


def test_train_teacher_auto_loss_is_the_recipe_measured_for_the_data(tmp_path):
    from dataclasses import replace

    from gankd.train import resolve_gan_shapes

    rgb = write_images(tmp_path / "rgb", {"a": 6, "b": 6}, size=(32, 32), mode="RGB")
    gray = write_images(tmp_path / "gray", {"a": 6, "b": 6}, size=(32, 32))
    r = resolve_gan_shapes(GANTrainConfig(data=f"folder:{rgb}"))
    assert (r.loss, r.discriminator.norm) == ("ns", "batch")
    r = resolve_gan_shapes(GANTrainConfig(data=f"folder:{gray}"))
    assert (r.loss, r.discriminator.norm) == ("hinge", "spectral")
    r = resolve_gan_shapes(GANTrainConfig(data=f"folder:{rgb}", loss="hinge"))  # asked for: kept
    assert (r.loss, r.discriminator.norm) == ("hinge", "spectral")
    cfg = GANTrainConfig(data=f"folder:{rgb}")
    cfg = replace(cfg, discriminator=replace(cfg.discriminator, norm="none"))
    r = resolve_gan_shapes(cfg)  # a norm the user chose is kept; the loss follows the gray recipe
    assert (r.loss, r.discriminator.norm) == ("hinge", "none")


def test_train_teacher_says_what_the_budget_buys(two_class_folder, tmp_path, caplog):
    import logging

    cfg = tiny_gan_cfg(two_class_folder, steps=8, select="last", max_minutes=60.0)
    with caplog.at_level(logging.INFO, logger="gankd.loop"):
        train_gan(cfg, tmp_path / "run")
    notes = [r for r in caplog.records if "pace:" in r.getMessage()]
    assert len(notes) == 1, caplog.text
    msg = notes[0].getMessage()
    assert "--max-minutes 60 buys about 8 steps" in msg and "epochs of" in msg
    assert notes[0].levelno == logging.WARNING and "--resolution" in msg and "generator.base_channels" in msg
