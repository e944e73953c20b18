"""Compress to a latency budget measured on this machine (``gankd compress --target-latency 0.4ms``).

MACs are a proxy; users ask "will it run in 2 ms here". :func:`width_for_latency` measures what
candidate students cost on the machine the command runs on and picks the widest whose median
latency meets the budget:

- a candidate = the student at one width (gankd's families: width scaling; imported generators:
  the pruner), timed as the deployed model runs: ``onnxruntime`` (exported to ONNX, CPU execution
  provider) or ``eager`` PyTorch, at ``batch`` and ``threads``; latency = the median over
  ``rounds`` rounds of the median of ``calls`` calls, after warm-up;
- the width is found by bisection on (0, 1] (latency grows with width), 7 candidates;
- measurements are cached per machine fingerprint (CPU, cores, thread counts, library versions:
  ``~/.cache/gankd/latency/<fingerprint hash>.json``), keyed by the candidate's architecture (its
  tensor shapes and call), the runtime, batch and threads; never reused on another machine, and
  measured again after :data:`CACHE_MAX_AGE_S` (a day): the same machine measured on another day ran
  the same students 5-7 % slower, enough to miss a budget by more than the 10 % it promises.

The result records the budget, every candidate measured (width, ms, cached or not), the chosen
width's measured latency and the teacher's, so a user sees the promise and the measurement side by side.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from gankd.runtimes import RUNTIMES, Options, time_callable

log = logging.getLogger(__name__)

_UNITS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}


def parse_latency(text: str | float) -> float:
    """``0.4ms``, ``400us``, ``0.002s`` or a bare number (milliseconds) -> milliseconds."""
    if isinstance(text, (int, float)):
        value, unit = float(text), "ms"
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(ms|us|µs|s)?\s*", str(text))
        if not m:
            raise ValueError(f"--target-latency {text!r}: write a time such as 0.4ms, 400us or 0.002s")
        value, unit = float(m.group(1)), m.group(2) or "ms"
    ms = value * _UNITS[unit]
    if not ms > 0:
        raise ValueError(f"--target-latency must be positive, got {text!r}")
    return ms


def _cache_path(fp: dict) -> Path:
    root = Path(os.environ.get("GANKD_CACHE", Path.home() / ".cache" / "gankd")) / "latency"
    key = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
    return root / f"{key}.json"


def architecture_key(gen: nn.Module) -> str:
    """What latency depends on besides the machine: the tensor shapes, the module classes and the call."""
    from gankd.adapter import adapter_for

    a = adapter_for(gen)
    shapes = [(k, tuple(v.shape)) for k, v in a.model.state_dict().items()]
    spec = a.spec.to_dict()
    spec.pop("features", None)
    text = json.dumps([type(a.model).__name__, shapes, spec], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def median_ms(fn: Callable[[], object], rounds: int = 5, calls: int = 20) -> float:
    """Latency in ms of ``fn``: the median over ``rounds`` of each round's median of ``calls`` timed calls."""
    meds = [statistics.median(time_callable(fn, warmup=3 if r == 0 else 1, repeats=calls)) for r in range(rounds)]
    return 1000 * statistics.median(meds)


@torch.no_grad()
def measure_ms(gen: nn.Module, runtime: str = "onnxruntime", batch: int = 1, threads: int = 1, rounds: int = 5,
               calls: int = 20, size: int | None = None) -> float:  # fmt: skip
    """Median latency in ms of one call at ``batch`` in a registered runtime (see the module docstring);
    ``size``: an image-to-image generator's source side in px (default its trained resolution)."""
    from gankd.adapter import adapter_for

    a = adapter_for(gen)
    was = a.model.training
    a.model.eval()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="gankd-latency-") as tmp:
            ready = RUNTIMES.get(runtime).prepare(a, (batch,), Options(size=size, workdir=Path(tmp)))
            return median_ms(ready.run[batch], rounds, calls)
    finally:
        torch.set_num_threads(old_threads)
        a.model.train(was)


CACHE_MAX_AGE_S = 24 * 3600  # a cached measurement older than this is measured again


def cached_ms(gen: nn.Module, runtime: str, batch: int, threads: int, size: int | None = None) -> tuple[float, bool]:
    """(latency ms, whether it came from this machine's cache, measured there within :data:`CACHE_MAX_AGE_S`)."""
    from gankd.metrics.efficiency import fingerprint

    fp = fingerprint("cpu")
    fp.pop("torch_threads", None)  # the thread count is part of the key below
    path = _cache_path(fp)
    key = f"{architecture_key(gen)}|{runtime}|b{batch}|t{threads}" + (f"|s{size}" if size else "")
    cache = json.loads(path.read_text()) if path.is_file() else {"fingerprint": fp, "ms": {}}
    when = cache.setdefault("measured_at", {})  # unix seconds per key (a key without one: a stale older cache)
    if key in cache["ms"] and time.time() - when.get(key, 0) <= CACHE_MAX_AGE_S:
        return float(cache["ms"][key]), True
    ms = measure_ms(gen, runtime, batch, threads, size=size)
    cache["ms"][key], when[key] = ms, time.time()
    path.parent.mkdir(parents=True, exist_ok=True)
    from gankd.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(cache, indent=1) + "\n").encode())
    return ms, False


def width_for_latency(build: Callable[[float], nn.Module], teacher: nn.Module, budget_ms: float,
                      runtime: str = "onnxruntime", batch: int = 1, threads: int = 1,
                      steps: int = 7, size: int | None = None) -> tuple[float, dict]:  # fmt: skip
    """The widest width whose student (``build(width)``) meets ``budget_ms``: (width, record). ``size``: the
    source side in px an image-to-image generator is timed at (default its trained resolution)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"--latency-runtime {runtime!r} is unknown; choose one of: {', '.join(RUNTIMES.accepted())}")
    from gankd.metrics.efficiency import fingerprint
    from gankd.pruning import largest_width

    teacher_ms, _ = cached_ms(teacher, runtime, batch, threads, size)
    tried: list[dict] = []

    def fits(w: float):
        ms, hit = cached_ms(build(w), runtime, batch, threads, size)
        tried.append({"width": round(w, 6), "ms": ms, "cached": hit})
        log.info("--target-latency: width %.4g takes %.4g ms (%s)", w, ms, "cached" if hit else "measured")
        return ms <= budget_ms, ms

    best = largest_width(fits, steps=steps)
    record = {"budget_ms": budget_ms, "runtime": runtime, "batch": batch, "threads": threads, "size": size,
              "teacher_ms": teacher_ms, "candidates": tried, "fingerprint": fingerprint("cpu")}  # fmt: skip
    if best is None:
        fastest = min(t["ms"] for t in tried)
        raise ValueError(f"--target-latency {budget_ms:g} ms is below what any student reaches here with "
                         f"{runtime}, batch {batch}, {threads} thread(s) (fastest tried: {fastest:.3g} ms, teacher "
                         f"{teacher_ms:.3g} ms); raise --target-latency or pass --latency-threads")  # fmt: skip
    width, ms = best
    record.update(width=round(width, 6), measured_ms=ms, met=ms <= budget_ms)
    return width, record


__all__ = ["parse_latency", "measure_ms", "cached_ms", "width_for_latency", "architecture_key", "RUNTIMES"]
