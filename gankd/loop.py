"""The one training loop (:class:`RunSkeleton`) and what it is built from: deterministic
batches and noise, EMA, run logging (metrics.jsonl + TensorBoard), wall-clock budget,
divergence guard. A training plugs in as a :class:`Recipe` (its step, modules and state).

Every random draw at step ``s`` comes from a generator seeded by (seed, s, rank),
so a run resumed at step ``s`` continues exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """A loss or weight became NaN/inf; the last good checkpoint is kept."""


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """A CPU generator unique to (seed, step, rank, stream)."""
    g = torch.Generator()
    g.manual_seed(((seed * 1_000_003 + step) * 257 + rank) * 17 + stream)
    return g


class BatchStream:
    """Deterministic minibatches: sample k of the stream is perm_epoch(k // N)[k % N].

    Rank r of a world of w takes a disjoint slice of each global batch.
    """

    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.data, self.bs, self.seed = dataset, batch_size, seed
        self.rank, self.world = rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._perms = {epoch: torch.randperm(len(self.data), generator=g)}
        return self._perms[epoch]

    def indices(self, step: int) -> torch.Tensor:
        n = len(self.data)
        start = (step * self.world + self.rank) * self.bs
        ks = torch.arange(start, start + self.bs)
        return torch.stack([self._perm(int(k) // n)[int(k) % n] for k in ks])

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.indices(step)
        from gankd.data import to_float

        return to_float(self.data.images[idx]), self.data.labels[idx]

    def epoch_of(self, step: int) -> float:
        return step * self.bs * self.world / len(self.data)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers are copied."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def check_finite(values: dict[str, float], step: int, checkpoint: Path | None) -> None:
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        where = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint yet"
        raise TrainingDiverged(
            f"training diverged at step {step} ({', '.join(bad)} not finite); {where}; "
            "lower the learning rates or resume from the checkpoint with another seed"
        )


def check_finite_modules(modules: dict, step: int, checkpoint: Path | None) -> None:
    """Refuse to save or select weights that hold NaN/inf: raise :class:`TrainingDiverged`
    naming the first bad tensor and the last good checkpoint. ``modules``: name -> module or None."""
    for name, m in modules.items():
        if m is None:
            continue
        for key, t in list(m.named_parameters()) + list(m.named_buffers()):
            if t.is_floating_point() and not torch.isfinite(t).all():
                where = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint yet"
                raise TrainingDiverged(
                    f"training diverged by step {step} ({name}.{key} holds NaN/inf; nothing was saved); {where}; "
                    "lower the learning rates or resume from the checkpoint with another seed"
                )


def set_lr(opt: torch.optim.Optimizer, lr: float, flag: str) -> None:
    """Apply the configured learning rate after loading an optimizer state (which carries its own)."""
    for group in opt.param_groups:
        if group["lr"] != lr:
            log.info("%s: learning rate %g from the checkpoint replaced by %g", flag, group["lr"], lr)
            group["lr"] = lr


def selected_on(model_dir: Path) -> dict | None:
    """The ``selected_on`` record of a model folder written by a training loop, or None."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text()).get("selected_on")
    except (json.JSONDecodeError, AttributeError):
        return None
    return rec if isinstance(rec, dict) else None


def _parse_line(line: str) -> dict | None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) else None


class RunLogger:
    """Appends scalars to ``metrics.jsonl`` and, when available, TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_step: int | None = None):
        from gankd.fileio import atomic_write_bytes

        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            # drop lines written after the checkpoint we resume from: they will be redone;
            # also a half-written last line left by a killed process
            recs = [(ln, _parse_line(ln)) for ln in self.path.read_text().splitlines()]
            keep = [ln for ln, rec in recs if rec is not None and rec.get("step", 0) <= resume_step]
            # atomic: a crash here must not lose the lines before the checkpoint
            atomic_write_bytes(self.path, "".join(k + "\n" for k in keep).encode())
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(run_dir) / "tb"))
            except ImportError:
                log.info("tensorboard not installed; logging to metrics.jsonl only")

    def scalars(self, step: int, values: dict, prefix: str = "") -> None:
        rec = {"step": step, **{f"{prefix}{k}": v for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{prefix}{k}", v, step)

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        """grid: (C, H, W) uint8."""
        if self.tb is not None:
            self.tb.add_image(tag, grid, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class Budget:
    """Wall-clock budget in minutes (None or <= 0 = unlimited).

    ``used_s``: seconds already spent by earlier sessions of a resumed run (stored in its
    state.pt), counted against the same budget; time after the last checkpoint of a killed
    session is lost, not counted.
    """

    def __init__(self, max_minutes: float | None, used_s: float = 0.0):
        self.start = time.monotonic()
        self.used = float(used_s)
        self.limit = max_minutes * 60 if max_minutes and max_minutes > 0 else None

    def elapsed(self) -> float:
        """Seconds used so far, earlier sessions included."""
        return self.used + time.monotonic() - self.start

    def eta_steps(self, steps_done: int) -> int | None:
        """Steps this session can still take at its measured rate (None: no limit or no data)."""
        run = time.monotonic() - self.start
        if self.limit is None or steps_done <= 0 or run <= 0:
            return None
        return max(0, int((self.limit - self.elapsed()) / (run / steps_done)))

    def exhausted(self) -> bool:
        return self.limit is not None and self.elapsed() >= self.limit


def snapshot_dir(run_dir: str | Path, minutes: float) -> Path:
    """``RUN/snapshots/t{minutes}min``: the model as it was after that much training wall time."""
    return Path(run_dir) / "snapshots" / f"t{minutes:g}min"


def due_snapshots(minutes, elapsed_s: float, run_dir: str | Path) -> list[float]:
    """Wall-clock points (in minutes) that ``elapsed_s`` has passed and whose snapshot is not yet
    written (``snapshot_minutes`` of a run: quality-vs-time curves without checkpoint selection)."""
    from gankd.checkpoint import WEIGHTS

    return [m for m in minutes or () if elapsed_s >= m * 60 and not (snapshot_dir(run_dir, m) / WEIGHTS).exists()]


def follow_budget(bar, budget: Budget, step: int, session_steps: int, steps: int) -> None:
    """Make a tqdm bar's total (and so its ETA) the step the wall budget will reach, when it binds."""
    left = budget.eta_steps(session_steps)
    if left is not None and session_steps % 10 == 0:
        total = min(steps, step + left)
        if total != bar.total:
            bar.total = total
            bar.refresh()


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def sample_labels(n: int, num_classes: int, gen: torch.Generator) -> torch.Tensor | None:
    if num_classes <= 0:
        return None
    return torch.randint(0, num_classes, (n,), generator=gen)


class Recipe:
    """What a training plugs into :class:`RunSkeleton`: its modules, its step and its state.

    A recipe builds its models, optimisers, input source and selector in ``__init__`` (loading
    ``state.pt`` itself when resumed) and sets ``start``, ``wall_s`` and ``best``. The skeleton
    owns everything else: budget, schedules' progress, progress bar, logs, grids, snapshots,
    checkpoints, validation and selection, the finiteness guard.
    """

    name = "train"  # progress-bar label
    out_name = "student"  # folder of the selected model inside the run folder
    log_prefix = ""  # prefix of the training scalars in metrics.jsonl
    run_dir: Path
    selector = None  # gankd.selection.Selector: validation and selection rule
    ema: nn.Module  # the model that is validated, saved and selected
    D: nn.Module | None = None  # saved beside the model when present
    start: int = 0  # first step of this session (> 0 when resumed)
    wall_s: float = 0.0  # budget seconds used by earlier sessions
    best: dict | None = None  # ``selected_on`` record of the selected model, or None
    is_main = True  # rank 0 writes; other ranks train only

    def train_mode(self) -> None:
        """Put the trained modules in training mode before the first step."""

    def before_step(self, step: int, progress: float) -> None:
        """Schedules: ``progress`` in [0, 1] is the larger of step/steps and elapsed/budget."""

    def step(self, step: int) -> dict[str, float]:
        """One update; returns the scalars to log (all must be finite)."""
        raise NotImplementedError

    def postfix(self, values: dict) -> dict:
        """Progress-bar fields of a step's scalars."""
        return {}

    def log_values(self, step: int, values: dict) -> dict:
        """The scalars written to metrics.jsonl after ``step`` steps."""
        return values

    def modules(self) -> dict:
        """name -> module (or None), checked finite before anything is saved."""
        return {}

    def state(self, step: int, wall_s: float) -> dict:
        """The plain dict saved as ``state.pt`` (weights, optimisers, step, wall time)."""
        raise NotImplementedError

    def extra(self, step: int) -> dict:
        """What a saved model folder records besides its weights."""
        return {"trained_steps": step}

    def grid(self) -> torch.Tensor | None:
        """(C, H, W) uint8 sample grid of the current model (None: a recipe with nothing to draw)."""
        raise NotImplementedError

    def save(self, folder: Path, extra: dict, with_d: bool = True) -> None:
        """The model as a loadable folder (a generator and its D by default; a classifier recipe saves a
        classifier)."""
        from gankd.checkpoint import save_generator

        save_generator(folder, self.ema, discriminator=self.D if with_d else None, extra=extra)

    def agree(self, stop: bool) -> bool:
        """Every process stops at the same step (DDP recipes override)."""
        return stop

    def finish(self) -> dict | None:
        """After the last step, once the selected model is on disk (rank 0); scalars it returns are logged
        at the last step (e.g. a classifier's test accuracy)."""

    def pace_detail(self, steps: int) -> str:
        """What ``steps`` steps mean for this recipe (e.g. epochs), for the pace note."""
        return ""

    def pace_hint(self, steps: int) -> str | None:
        """A warning with the flags to change when ``steps`` are far too few for this recipe, else None."""
        return None


@dataclass
class RunSchedule:
    """How long a run trains and how often the skeleton logs, draws, saves and validates."""

    steps: int  # updates to take
    max_minutes: float = 0.0  # wall budget, earlier sessions included; 0 = none
    log_every: int = 50  # steps between metrics.jsonl lines
    sample_every: int = 500  # steps between sample grids
    checkpoint_every: int = 250  # steps between atomic checkpoints
    eval_every: int = 500  # steps between validations (0 = only at the end)
    snapshot_minutes: tuple[float, ...] = ()  # wall minutes at which the model is saved as it is


PACE_STEPS = 5  # steps of a session after which the skeleton says what the budget buys at the measured pace


class RunSkeleton:
    """The one training loop: resume, budget, progress, logs, grids, snapshots, checkpoints,
    validate-then-select and the finiteness guard, around a :class:`Recipe`'s step.

    Each checkpoint is written before the validation at the same step, so a failing validation
    never loses trained weights; ``run()`` returns the selected model folder.
    """

    def __init__(self, recipe: Recipe, schedule: RunSchedule, resumed: bool, progress: bool = False):
        self.r, self.s, self.progress = recipe, schedule, progress
        self.run_dir = Path(recipe.run_dir)
        self.state_path = self.run_dir / "state.pt"
        self.out_dir = self.run_dir / recipe.out_name
        self.resumed = resumed
        self.steps_done, self.stopped_by = recipe.start, None

    def run(self) -> Path:
        from gankd.checkpoint import WEIGHTS

        r, s = self.r, self.s
        self.logger = RunLogger(self.run_dir, resume_step=r.start if self.resumed else None) if r.is_main else None
        self.budget = budget = Budget(s.max_minutes, r.wall_s)
        self.last_good = self.state_path if self.resumed else None
        bar = None
        if self.progress and r.is_main:
            from tqdm import tqdm

            bar = tqdm(total=s.steps, initial=r.start, desc=r.name, unit="step", dynamic_ncols=True)
        step = r.start
        r.train_mode()
        stop = r.agree(budget.used > 0 and budget.exhausted())  # a resumed run whose budget is spent stops
        if stop:
            self.stopped_by = "budget"
            log.warning("time budget of %g min already used (%.0f s) at step %d: nothing to train",
                        s.max_minutes, budget.elapsed(), step)  # fmt: skip
        while step < s.steps and not stop:
            r.before_step(step, max(step / s.steps, budget.elapsed() / budget.limit if budget.limit else 0.0))
            values = r.step(step)
            check_finite(values, step, self.last_good)
            step += 1
            stop = r.agree(budget.exhausted())
            end = step == s.steps or stop
            if bar is not None:
                bar.update(1)
                bar.set_postfix(**r.postfix(values))
                follow_budget(bar, budget, step, step - r.start, s.steps)
            if r.is_main and step - r.start == PACE_STEPS and not end:
                self.pace_note(step)
            if r.is_main:  # rank 0 alone writes and validates; the others wait in the next collective
                self.after_step(step, values, end)
            if stop:
                self.stopped_by = "budget"
                log.warning("time budget of %g min reached at step %d of %d", s.max_minutes, step, s.steps)
        self.steps_done = step
        if bar is not None:
            bar.close()
        if r.is_main:
            if step == r.start and not (self.out_dir / WEIGHTS).exists():
                self.after_step(step, {}, True)  # nothing trained in this session: still leave a model
            if not (self.out_dir / WEIGHTS).exists():
                self.logger.close()
                raise TrainingDiverged(f"no validated checkpoint of {self.run_dir} had finite samples; the last "
                                       f"weights are in {self.run_dir / 'last'}: lower the learning rates")  # fmt: skip
            final = r.finish()
            if final:
                self.logger.scalars(step, final)
            self.logger.close()
        return self.out_dir

    def pace_note(self, step: int) -> None:
        """Say, once, what the wall budget buys at the pace measured so far (seconds per step,
        steps, the recipe's detail) and warn with the recipe's hint when that is far too few."""
        r, s, b = self.r, self.s, self.budget
        per = (time.monotonic() - b.start) / (step - r.start)
        if b.limit is None:
            log.info("pace: %.3g s per step: %d steps take about %.1f min", per, s.steps, per * (s.steps - step) / 60)
            return
        n = min(s.steps, step + max(0, int((b.limit - b.elapsed()) / per)))
        msg = f"pace: {per:.3g} s per step: --max-minutes {s.max_minutes:g} buys about {n} steps{r.pace_detail(n)}"
        hint = r.pace_hint(n)
        if hint:
            log.warning("%s; %s", msg, hint)
        else:
            log.info("%s", msg)

    def after_step(self, step: int, values: dict, end: bool) -> None:
        """Log, draw, snapshot, checkpoint, then validate and select (rank 0)."""
        r, s, elapsed = self.r, self.s, self.budget.elapsed
        if values and (step % s.log_every == 0 or end):
            self.logger.scalars(step, {**r.log_values(step, values), "wall_s": elapsed()}, prefix=r.log_prefix)
        if step % s.sample_every == 0 or end:
            from gankd.sampling import save_png

            g = r.grid()
            if g is not None:
                save_png(g, self.run_dir / "samples" / f"step{step:07d}.png")
                self.logger.image("samples", g, step)
        for m in due_snapshots(s.snapshot_minutes, elapsed(), self.run_dir):
            self.save_model(snapshot_dir(self.run_dir, m), step, {"ema": r.ema},
                            snapshot={"minutes": m, "wall_s": round(elapsed(), 2)}, with_d=False)  # fmt: skip
        if step % s.checkpoint_every == 0 or end:
            self.checkpoint(step)  # before validation: its failure loses no trained weights
        if (s.eval_every and step % s.eval_every == 0) or end:
            val = r.selector.score(r.ema)  # inside the wall budget, like every recipe's validation
            if val:
                self.logger.scalars(step, {**val, "wall_s": elapsed()}, prefix="val/")
            if r.selector.rule != "last" and r.selector.better(val, r.best):
                r.best = {**r.selector.info(), "step": step, **val}
                self.save_model(self.out_dir, step, {"ema": r.ema, "D": r.D}, selected_on=r.best)

    def checkpoint(self, step: int) -> None:
        """state.pt and last/ (and the selected folder under ``last``), after a finiteness check."""
        from gankd.checkpoint import save_state

        r = self.r
        check_finite_modules(r.modules(), step, self.last_good)
        save_state(r.state(step, self.budget.elapsed()), self.state_path)
        self.save_model(self.run_dir / "last", step, {}, selected_on={"rule": "last", "step": step})
        self.last_good = self.state_path
        if r.selector.rule == "last":
            r.best = {**r.selector.info(), "step": step}
            self.save_model(self.out_dir, step, {}, selected_on=r.best)

    def save_model(self, folder: Path, step: int, check: dict, with_d: bool = True, **record) -> None:
        """The model (and D) as a loadable folder, never with NaN/inf weights (``check``: modules
        to verify first, when the checkpoint's own check has not just done so)."""
        check_finite_modules(check, step, self.last_good)
        self.r.save(folder, {**self.r.extra(step), **record}, with_d=with_d)
