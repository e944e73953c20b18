"""Training-loop pieces: deterministic batches and noise, EMA, logging, divergence guard."""

import json
import math

import pytest
import torch

from gankd.data import ImageDataset
from gankd.loop import (
    BatchStream,
    Budget,
    RunLogger,
    TrainingDiverged,
    check_finite,
    check_finite_modules,
    ema_update,
    sample_labels,
    selected_on,
    set_lr,
    step_generator,
)  # fmt: skip


def dataset(n=10):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageDataset(images, torch.arange(n), 10, "toy")


def test_step_generator_is_unique_and_repeatable():
    draws = {(s, r, k): torch.rand(4, generator=step_generator(1, s, r, k)) for s in (0, 1) for r in (0, 1)
             for k in (0, 1)}  # fmt: skip
    assert torch.equal(draws[(0, 0, 0)], torch.rand(4, generator=step_generator(1, 0, 0, 0)))
    flat = [tuple(v.tolist()) for v in draws.values()]
    assert len(set(flat)) == len(flat)
    assert not torch.equal(torch.rand(4, generator=step_generator(2, 0)), draws[(0, 0, 0)])


def test_batch_stream_covers_each_epoch_once_and_is_repeatable():
    ds = dataset(10)
    s = BatchStream(ds, 5, seed=3)
    epoch0 = torch.cat([s.indices(0), s.indices(1)])
    assert sorted(epoch0.tolist()) == list(range(10))
    epoch1 = torch.cat([s.indices(2), s.indices(3)])
    assert sorted(epoch1.tolist()) == list(range(10)) and not torch.equal(epoch0, epoch1)
    # a fresh stream (a resumed run) gives the same batch for the same step, in any order
    fresh = BatchStream(ds, 5, seed=3)
    assert torch.equal(fresh.indices(3), s.indices(3)) and torch.equal(fresh.indices(0), epoch0[:5])
    x, y = fresh.batch(1)
    assert x.shape == (5, 1, 2, 2) and x.dtype == torch.float32
    assert torch.equal(y, epoch0[5:])  # labels follow the images
    assert torch.allclose(x[:, 0, 0, 0], y.float() / 127.5 - 1)
    assert s.epoch_of(3) == 1.5
    batch_crossing_epochs = BatchStream(ds, 4, seed=3).indices(2)  # samples 8..11
    assert len(batch_crossing_epochs) == 4


def test_batch_stream_ranks_are_disjoint():
    ds = dataset(12)
    r0, r1 = BatchStream(ds, 3, 0, rank=0, world=2), BatchStream(ds, 3, 0, rank=1, world=2)
    seen = torch.cat([r0.indices(0), r1.indices(0), r0.indices(1), r1.indices(1)])
    assert sorted(seen.tolist()) == list(range(12))


def test_ema_update():
    a, b = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        a.weight.fill_(0.0)
        b.weight.fill_(1.0)
        b.running_mean.fill_(5.0)
    ema_update(a, b, 0.9)
    assert torch.allclose(a.weight, torch.full((3,), 0.1))
    assert torch.equal(a.running_mean, b.running_mean)  # buffers are copied


def test_check_finite():
    check_finite({"a": 1.0, "b": -3.0}, 5, None)
    with pytest.raises(TrainingDiverged, match="step 7 .*b not finite.*no checkpoint yet"):
        check_finite({"a": 1.0, "b": math.nan}, 7, None)
    with pytest.raises(TrainingDiverged, match="last good checkpoint is /x/state.pt"):
        check_finite({"a": math.inf}, 7, "/x/state.pt")


def test_run_logger_truncates_on_resume(tmp_path):
    log = RunLogger(tmp_path, tensorboard=False)
    for s in (1, 2, 3, 4):
        log.scalars(s, {"loss": float(s)})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # a process killed mid-write
    RunLogger(tmp_path, tensorboard=False, resume_step=2)
    lines = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines] == [1, 2]
    RunLogger(tmp_path, tensorboard=False)  # a fresh run starts a fresh file
    assert not (tmp_path / "metrics.jsonl").exists()


def test_budget_and_labels():
    assert not Budget(0).exhausted() and not Budget(None).exhausted()
    assert Budget(1e-9).exhausted()
    assert sample_labels(4, 0, step_generator(0, 0)) is None
    y = sample_labels(100, 3, step_generator(0, 0))
    assert y.dtype == torch.int64 and set(y.tolist()) == {0, 1, 2}


def test_run_logger_resume_rewrite_is_atomic(tmp_path, monkeypatch):
    import os

    log = RunLogger(tmp_path, tensorboard=False)
    for s in (1, 2, 3):
        log.scalars(s, {"loss": float(s)})
    before = (tmp_path / "metrics.jsonl").read_bytes()

    def killed(*a):  # the process dies before the rewritten file is renamed in
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(OSError, match="killed"):
        RunLogger(tmp_path, tensorboard=False, resume_step=1)
    monkeypatch.undo()
    # the old log is whole (not truncated to nothing) and no temp file is left beside it
    assert (tmp_path / "metrics.jsonl").read_bytes() == before
    assert os.listdir(tmp_path) == ["metrics.jsonl"]


def test_budget_counts_time_used_by_earlier_sessions():
    b = Budget(1.0, used_s=59.0)
    assert 59.0 <= b.elapsed() < 60.0 and not b.exhausted()
    assert Budget(1.0, used_s=60.0).exhausted()
    assert Budget(0, used_s=1e9).exhausted() is False  # no limit
    assert Budget(1.0, used_s=30.0).eta_steps(0) is None


def test_progress_bar_total_follows_a_binding_budget(monkeypatch):
    import gankd.loop
    from gankd.loop import follow_budget

    clock = {"t": 100.0}
    monkeypatch.setattr(gankd.loop.time, "monotonic", lambda: clock["t"])
    b = Budget(1.0, used_s=20.0)  # 40 s left

    class Bar:
        total = 1000

        def refresh(self):
            pass

    bar = Bar()
    clock["t"] += 10.0  # 10 steps in 10 s: 30 s left -> 30 more steps
    follow_budget(bar, b, 10, 10, 1000)
    assert bar.total == 40
    follow_budget(bar, Budget(0), 10, 10, 1000)  # no budget: the total stays
    assert bar.total == 40


def test_check_finite_modules_and_set_lr(tmp_path):
    ok, bad = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    check_finite_modules({"a": ok, "none": None}, 3, None)
    bad.running_var.fill_(math.inf)  # buffers count too
    with pytest.raises(TrainingDiverged, match="step 3 .*D.running_var.*last good checkpoint is /x/state.pt"):
        check_finite_modules({"a": ok, "D": bad}, 3, "/x/state.pt")
    opt = torch.optim.Adam(ok.parameters(), lr=1e-3)
    set_lr(opt, 5e-4, "--lr-g")
    assert opt.param_groups[0]["lr"] == 5e-4
    assert selected_on(tmp_path) is None
    (tmp_path / "config.json").write_text('{"selected_on": {"rule": "last", "step": 4}}')
    assert selected_on(tmp_path) == {"rule": "last", "step": 4}


def test_a_recipe_plugs_into_the_run_skeleton(tmp_path):
    """The skeleton needs only a recipe's step, modules and state: a toy recipe gets checkpoints,
    last/, the selected folder, logs, grids, and stops at its budget of steps."""
    import torch
    from testkit import tiny_generator

    from gankd.checkpoint import load_generator, load_state
    from gankd.loop import Recipe, RunSchedule, RunSkeleton
    from gankd.sampling import sample_grid
    from gankd.selection import Selector

    class Toy(Recipe):
        name, out_name = "toy", "model"

        def __init__(self, run_dir):
            self.run_dir = run_dir
            torch.manual_seed(0)
            self.ema = tiny_generator(base_channels=4)
            self.opt = torch.optim.SGD(self.ema.parameters(), lr=0.1)
            self.selector = Selector(rule="last", requested="last")

        def step(self, step):
            z = torch.randn(4, self.ema.z_dim, generator=torch.Generator().manual_seed(step))
            loss = self.ema(z, torch.zeros(4, dtype=torch.long)).abs().mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            return {"l1": loss.item()}

        def modules(self):
            return {"ema": self.ema}

        def state(self, step, wall_s):
            return {"ema": self.ema.state_dict(), "step": step, "wall_s": wall_s}

        def grid(self):
            return sample_grid(self.ema, list(range(4)))

    run = tmp_path / "toy"
    out = RunSkeleton(Toy(run), RunSchedule(steps=6, log_every=2, sample_every=3, checkpoint_every=4,
                                            eval_every=0), resumed=False).run()  # fmt: skip
    assert out == run / "model"
    assert load_state(run / "state.pt")["step"] == 6
    assert json.loads((out / "config.json").read_text())["selected_on"]["step"] == 6
    assert load_generator(run / "last").z_dim == load_generator(out).z_dim
    logged = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == [2, 4, 6]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step0000003.png", "step0000006.png"]
