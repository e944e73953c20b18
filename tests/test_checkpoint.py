"""Model folders and training state: round trips, strictness, and no code execution."""

import json
import os
import pickle
import shutil

import pytest
import torch
from testkit import tiny_discriminator, tiny_generator

import gankd
from gankd import checkpoint as ckpt
from gankd.checkpoint import (
    has_discriminator,
    load_classifier,
    load_discriminator,
    load_generator,
    load_state,
    save_model,
    save_state,
)  # fmt: skip
from gankd.models.classifiers import ClassifierConfig, ResNetClassifier


class _Evil:
    """Unpickling this creates ``path``: proof that code from the file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_generator_round_trip_with_discriminator(gen_dir, tmp_path):
    g = load_generator(gen_dir)
    assert not g.training
    z, y = torch.randn(5, g.z_dim), torch.tensor([0, 3, 9, 1, 2])
    again = save_model(tmp_path / "copy", g, "generator")
    g2 = gankd.load_generator(again)
    assert torch.equal(g(z, y), g2(z, y))
    for k, v in g.state_dict().items():
        assert torch.equal(v, g2.state_dict()[k]), k
    meta = json.loads((gen_dir / "config.json").read_text())
    assert meta["kind"] == "generator" and meta["family"] == "dcgan" and meta["config"]["base_channels"] == 4
    assert has_discriminator(gen_dir) and not has_discriminator(again)
    with pytest.raises(FileNotFoundError, match="ships no discriminator"):
        load_discriminator(again)


def test_discriminator_round_trip(tmp_path):
    d = tiny_discriminator()
    x, y = torch.rand(4, 1, 32, 32) * 2 - 1, torch.tensor([0, 1, 2, 3])
    d(x, y)  # train-mode forwards move the spectral-norm power-iteration vectors
    d(x, y)
    folder = save_model(tmp_path / "g", tiny_generator(), "generator", discriminator=d)
    d2 = load_discriminator(folder)
    assert torch.equal(d.eval()(x, y), d2.eval()(x, y))


def test_classifier_round_trip(tmp_path):
    torch.manual_seed(0)
    m = ResNetClassifier(ClassifierConfig(base_channels=4, feature_dim=8, num_classes=3))
    m.train()
    m(torch.randn(8, 1, 32, 32))  # non-trivial BatchNorm statistics
    m.eval()
    folder = save_model(tmp_path / "c", m, "classifier", extra={"result": {"val_acc": 0.5}})
    m2 = load_classifier(folder)
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(m(x), m2(x)) and torch.equal(m.embed(x), m2.embed(x))
    assert json.loads((folder / "config.json").read_text())["result"] == {"val_acc": 0.5}
    with pytest.raises(ValueError, match="holds a 'classifier' model, not a generator"):
        load_generator(folder)


def test_channels_last_model_round_trip(tmp_path):
    g = tiny_generator().to(memory_format=torch.channels_last)
    g2 = load_generator(save_model(tmp_path / "g", g, "generator"))
    assert all(torch.equal(v, g2.state_dict()[k]) for k, v in g.state_dict().items())
    z, y = torch.randn(2, g.z_dim), torch.tensor([1, 2])
    # other memory format, other conv kernels: equal up to float rounding; same format, same bits
    assert torch.allclose(g(z, y), g2(z, y), atol=1e-5)
    assert torch.equal(g(z, y), g2.to(memory_format=torch.channels_last)(z, y))


def test_mismatched_config_is_a_clear_error(gen_dir):
    meta = json.loads((gen_dir / "config.json").read_text())
    meta["config"]["base_channels"] = 8  # same keys, other shapes
    (gen_dir / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="has shape .* different model"):
        load_generator(gen_dir)
    meta["config"]["base_channels"] = 4
    meta["config"]["num_classes"] = 0  # CBN embeddings go away: key sets differ
    (gen_dir / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unexpected keys .*gamma"):
        load_generator(gen_dir)


def test_unknown_family_and_bad_config(gen_dir):
    meta = json.loads((gen_dir / "config.json").read_text())
    (gen_dir / "config.json").write_text(json.dumps({**meta, "family": "stylegan9"}))
    with pytest.raises(KeyError, match="stylegan9.*dcgan"):
        load_generator(gen_dir)
    (gen_dir / "config.json").write_text(json.dumps({**meta, "config": {**meta["config"], "depth": 3}}))
    with pytest.raises(ValueError, match="unknown key"):
        load_generator(gen_dir)


@pytest.mark.parametrize("content", [["a", "list"], {"family": "dcgan"}, {"kind": "generator"}])
def test_malformed_config_json_is_a_clear_error(gen_dir, content):
    (gen_dir / "config.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"config\.json is not a gankd model config"):
        load_generator(gen_dir)


def test_pickle_disguised_as_safetensors_is_refused_and_never_run(gen_dir, tmp_path):
    marker = tmp_path / "PWNED"
    (gen_dir / "model.safetensors").write_bytes(pickle.dumps({"fc.weight": _Evil(marker)}))
    with pytest.raises(ValueError, match="not a valid safetensors file.*pickled checkpoints are refused"):
        load_generator(gen_dir)
    assert not marker.exists()
    # a torch.save zip archive under the safetensors name: refused as well
    torch.save({"x": _Evil(marker)}, gen_dir / "model.safetensors")
    assert not marker.exists()  # saving does not run it; loading must not either
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_generator(gen_dir)
    assert not marker.exists()


def test_the_evil_pickle_really_runs_when_unpickled(tmp_path):
    """Guard for the test above: the payload works, so its absence there means something."""
    marker = tmp_path / "PWNED"
    pickle.loads(pickle.dumps(_Evil(marker)))
    assert marker.exists()


@pytest.mark.parametrize("cut", [0, 7, 100, -10])
def test_truncated_weights_are_a_clear_error(gen_dir, cut):
    path = gen_dir / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_generator(gen_dir)


def test_missing_pieces_are_clear_errors(gen_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_generator(tmp_path / "nope")
    d = tmp_path / "copy"
    shutil.copytree(gen_dir, d)
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing weights file"):
        load_generator(d)
    (d / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_generator(d)
    (gen_dir / "config.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_generator(gen_dir)


def test_atomic_writes_leave_no_temp_files(tmp_path, monkeypatch):
    g, d = tiny_generator(), tiny_discriminator()
    folder = save_model(tmp_path / "m", g, "generator", discriminator=d)
    save_model(folder, g, "generator", discriminator=d)  # overwrite in place
    save_state({"step": 3}, folder / "state.pt")
    assert sorted(os.listdir(folder)) == ["config.json", "discriminator.safetensors", "model.safetensors",
                                          "state.pt"]  # fmt: skip
    before = (folder / "model.safetensors").read_bytes()

    def crash(state, path):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_weights(g, folder / "model.safetensors")
    # the old file is intact and the temp file is gone
    assert (folder / "model.safetensors").read_bytes() == before
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]
    load_generator(folder)


def test_atomic_write_bytes_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "a.json"
    ckpt.atomic_write_bytes(target, b"one")
    monkeypatch.setattr(ckpt.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("rename failed")))
    with pytest.raises(OSError):
        ckpt.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"one" and os.listdir(target.parent) == ["a.json"]


def test_state_round_trip(tmp_path):
    g = tiny_generator()
    opt = torch.optim.Adam(g.parameters())
    g(torch.randn(2, g.z_dim), torch.tensor([0, 1])).sum().backward()
    opt.step()
    state = {"G": g.state_dict(), "opt": opt.state_dict(), "step": 7, "rng": ckpt.rng_state(), "note": "x"}
    save_state(state, tmp_path / "state.pt")
    back = load_state(tmp_path / "state.pt")
    assert back["step"] == 7 and back["note"] == "x"
    assert all(torch.equal(v, back["G"][k]) for k, v in state["G"].items())
    opt2 = torch.optim.Adam(g.parameters())
    opt2.load_state_dict(back["opt"])
    r = torch.rand(3)
    ckpt.set_rng_state(back["rng"])
    assert torch.equal(torch.rand(3), r)


def test_load_state_is_weights_only(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"step": 1, "payload": _Evil(marker)}, tmp_path / "state.pt")
    with pytest.raises(ValueError) as e:
        load_state(tmp_path / "state.pt")
    assert not marker.exists()
    msg = str(e.value)
    assert "not a gankd training state" in msg and "\n" not in msg
    assert "weights_only=False" not in msg  # never advise the unsafe path


def test_load_state_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="without --resume"):
        load_state(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 50)
    with pytest.raises(ValueError, match="not a gankd training state"):
        load_state(tmp_path / "junk.pt")


def test_file_sha256_is_the_sha256_of_the_concatenated_files(tmp_path):
    import hashlib

    from gankd.checkpoint import file_sha256

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * (3 << 20) + b"tail")  # several read blocks
    b.write_bytes(b"second")
    assert file_sha256(a) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert file_sha256(a, b) == hashlib.sha256(a.read_bytes() + b.read_bytes()).hexdigest()
    assert file_sha256(b, a) != file_sha256(a, b)


# ---------------------------------------------------------------- whole-folder atomic saves
def _weights(folder):
    from safetensors.torch import load_file

    return {n: load_file(str(folder / n)) for n in ("model.safetensors", "discriminator.safetensors")}


def _same(a: dict, b: dict) -> bool:
    return all(a[n].keys() == b[n].keys() and all(torch.equal(a[n][k], b[n][k]) for k in a[n]) for n in a)


def test_save_model_crash_mid_write_keeps_the_old_folder(tmp_path, monkeypatch):
    folder = save_model(tmp_path / "student", tiny_generator(seed=0), "generator",
                        discriminator=tiny_discriminator(seed=1), extra={"trained_steps": 1})  # fmt: skip
    before = _weights(folder)

    def crash(data, path):  # D and G are written, config.json is not: the process dies here
        raise OSError("killed")

    monkeypatch.setattr(ckpt, "save_json", crash)
    with pytest.raises(OSError, match="killed"):
        save_model(folder, tiny_generator(seed=5), "generator", discriminator=tiny_discriminator(seed=6),
                   extra={"trained_steps": 2})  # fmt: skip
    monkeypatch.undo()
    # the old folder is complete: old G, old D, old config, and nothing left beside it
    assert _same(_weights(folder), before)
    assert json.loads((folder / "config.json").read_text())["trained_steps"] == 1
    load_generator(folder), load_discriminator(folder)
    assert sorted(os.listdir(tmp_path)) == ["student"]


def test_save_model_crash_between_renames_is_repaired_by_clean_stale_tmp(tmp_path, monkeypatch):
    run = tmp_path / "run"
    folder = save_model(run / "student", tiny_generator(seed=0), "generator", discriminator=tiny_discriminator())
    before = _weights(folder)
    real_rename, calls = os.rename, []

    def rename(src, dst):  # the process dies after the old folder went aside: no rename after that
        calls.append(dst)
        if len(calls) >= 2:
            raise OSError("killed")
        real_rename(src, dst)

    monkeypatch.setattr(ckpt.os, "rename", rename)
    with pytest.raises(OSError, match="killed"):
        save_model(folder, tiny_generator(seed=5), "generator", discriminator=tiny_discriminator(seed=6))
    monkeypatch.undo()
    assert not folder.exists()  # the window the next start must repair
    ckpt.clean_stale_tmp(run)
    assert sorted(os.listdir(run)) == ["student"] and _same(_weights(folder), before)
    load_generator(folder)


def test_a_failed_swap_in_a_live_process_puts_the_old_folder_back(tmp_path, monkeypatch):
    folder = save_model(tmp_path / "student", tiny_generator(seed=0), "generator", discriminator=tiny_discriminator())
    before = _weights(folder)
    real_rename = os.rename

    def rename(src, dst):  # the new folder cannot be renamed in
        if ".tmp-" in str(src):
            raise OSError("disk gone")
        real_rename(src, dst)

    monkeypatch.setattr(ckpt.os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        save_model(folder, tiny_generator(seed=5), "generator")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["student"] and _same(_weights(folder), before)


def test_save_model_replaces_the_whole_folder_and_keeps_other_files(tmp_path):
    folder = save_model(tmp_path / "m", tiny_generator(seed=0), "generator", discriminator=tiny_discriminator())
    (folder / "export").mkdir()
    (folder / "export" / "generator.onnx").write_bytes(b"onnx")
    (folder / "MODEL_CARD.md").write_text("card")
    g2 = tiny_generator(seed=3)
    save_model(folder, g2, "generator")  # no discriminator this time
    assert sorted(os.listdir(folder)) == ["MODEL_CARD.md", "config.json", "export", "model.safetensors"]
    assert (folder / "export" / "generator.onnx").read_bytes() == b"onnx"
    assert not has_discriminator(folder)  # a stale D from the last save does not linger
    z, y = torch.randn(2, g2.z_dim), torch.tensor([0, 1])
    assert torch.equal(load_generator(folder)(z, y), g2(z, y))
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_clean_stale_tmp_removes_litter_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    save_model(run / "last", tiny_generator(), "generator")
    save_model(run / "best", tiny_generator(), "generator")
    (run / "last" / ".model.safetensors.k2j3h4.tmp").write_bytes(b"x" * 1000)  # a killed save_weights
    (run / ".metrics.jsonl.abc.tmp").write_bytes(b"half")
    (run / ".student.tmp-4242").mkdir()  # a half-built model folder
    (run / ".student.tmp-4242" / "model.safetensors").write_bytes(b"partial")
    (run / ".last.old-4242").mkdir()  # set aside, and the new one was renamed in: drop it
    (run / "samples").mkdir()
    (run / "samples" / "step0000002.png").write_bytes(b"png")
    (run / "metrics.jsonl").write_text("{}\n")
    (run / ".gankd-run").write_text("")
    removed = ckpt.clean_stale_tmp(run)
    assert len(removed) == 4
    assert sorted(os.listdir(run)) == [".gankd-run", "best", "last", "metrics.jsonl", "samples"]
    assert sorted(os.listdir(run / "last")) == ["config.json", "model.safetensors"]
    load_generator(run / "last")
    assert ckpt.clean_stale_tmp(tmp_path / "absent") == []


# ---------------------------------------------------------------- --out folders
def test_prepare_run_dir_new_and_empty_folders(tmp_path):
    run = ckpt.prepare_run_dir(tmp_path / "a" / "run", resume=False)
    assert run.is_dir() and ckpt.is_run_dir(run) and os.listdir(run) == [".gankd-run"]
    (tmp_path / "empty").mkdir()
    assert ckpt.is_run_dir(ckpt.prepare_run_dir(tmp_path / "empty", resume=False))
    # a run that died before its first checkpoint starts again without --resume
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    (run / "last").mkdir()
    (run / "last" / ".model.safetensors.x1.tmp").write_bytes(b"x")
    ckpt.prepare_run_dir(run, resume=False)
    assert os.listdir(run / "last") == []  # and its litter is cleaned


def test_prepare_run_dir_refuses_a_foreign_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "own"}')
    for resume in (False, True):
        with pytest.raises(FileExistsError) as e:
            ckpt.prepare_run_dir(mine, resume=resume)
        msg = str(e.value)
        assert "not a gankd run" in msg and "choose an empty --out, or pass --resume" in msg and "\n" not in msg
    assert os.listdir(mine) == ["config.json"] and (mine / "config.json").read_text() == '{"my": "own"}'
    with pytest.raises(FileExistsError) as e:
        ckpt.prepare_run_dir(mine, resume=False, can_resume=False)
    assert "--resume" not in str(e.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        ckpt.prepare_run_dir(tmp_path / "file", resume=False)


def test_prepare_run_dir_with_a_state(tmp_path):
    run = ckpt.prepare_run_dir(tmp_path / "run", resume=False)
    with pytest.raises(FileNotFoundError, match="no training state .*start without --resume"):
        ckpt.prepare_run_dir(tmp_path / "run", resume=True)
    with pytest.raises(FileNotFoundError, match="start without --resume"):
        ckpt.prepare_run_dir(tmp_path / "new", resume=True)
    assert not (tmp_path / "new").exists()
    save_state({"step": 2}, run / "state.pt")
    with pytest.raises(FileExistsError, match="already holds a gankd run; pass --resume"):
        ckpt.prepare_run_dir(run, resume=False)
    (run / ".state.pt.zz.tmp").write_bytes(b"half")
    assert ckpt.prepare_run_dir(run, resume=True) == run
    assert sorted(os.listdir(run)) == [".gankd-run", "state.pt"]
    # a run from before the marker existed: its state.pt marks it
    (run / ".gankd-run").unlink()
    assert ckpt.prepare_run_dir(run, resume=True) == run


def _foreign(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "metrics.jsonl").write_text("my own\n")
    return out


def _one_line_refusal(capsys, rc, out):
    err = capsys.readouterr().err
    assert rc == 2 and "not a gankd run" in err and len(err.strip().splitlines()) == 1, err
    assert os.listdir(out) == ["metrics.jsonl"] and (out / "metrics.jsonl").read_text() == "my own\n"
    return err


def test_commands_refuse_a_foreign_out(gen_dir, image_folder, tmp_path, capsys):
    from gankd import cli

    out = _foreign(tmp_path)
    rc = cli.main(["compress", "--teacher", str(gen_dir), "--out", str(out), "--steps", "1", "--no-progress",
                   "--no-select-on-val"])  # fmt: skip
    _one_line_refusal(capsys, rc, out)
    rc = cli.main(["train-teacher", "--data", f"folder:{image_folder}", "--out", str(out), "--steps", "1",
                   "--no-progress", "--set", "generator.base_channels=4", "--set", "discriminator.base_channels=4",
                   "--set", "generator.num_classes=2", "--set", "discriminator.num_classes=2",
                   "--select", "last"])  # fmt: skip
    _one_line_refusal(capsys, rc, out)
    rc = cli.main(["train-classifier", "--data", f"folder:{image_folder}", "--out", str(out), "--epochs", "1",
                   "--no-progress", "--set", "model.num_classes=2"])  # fmt: skip
    _one_line_refusal(capsys, rc, out)
