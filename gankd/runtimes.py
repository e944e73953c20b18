"""Runtimes a generator is timed in: one registered :class:`Runtime` per name.

Every timing in gankd goes through this table: the interleaved speed comparison of
``gankd eval`` and the benchmarks (:func:`gankd.metrics.efficiency.interleaved_speed`) and the
latency budget of ``gankd compress --target-latency`` (:mod:`gankd.latency`). A runtime turns
one generator into zero-argument callables that each run one fixed batch; the callers time
those. Adding a runtime is one registration here.

- ``eager``: PyTorch in ``inference_mode``; per batch size the faster memory format
  (contiguous or channels-last, from timed warm-up calls) unless one is forced.
- ``onnx``: exported with ``gankd export`` (parity checked), run by ONNX Runtime's CPU
  execution provider (CUDA first on a GPU when onnxruntime has it) with torch's thread count;
  ORT returns only when done, so host wall-clock timing is right on any device.
- ``onnx-int8``: the same, exported as ``gankd export --precision int8`` writes it (ConvTranspose
  rewritten where that is faster here, calibrated on seeded inputs; no quality gate: this times,
  it does not judge).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import io
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from gankd.adapter import adapter_for, positional
from gankd.registry import Registry

MEMORY_FORMATS = {"auto": ("contiguous", "channels_last"), "on": ("channels_last",), "off": ("contiguous",)}


# ------------------------------------------------------------------ clocks and inputs
def host_timer(device: str):
    """-> fn(callable) -> seconds, with CUDA events on GPUs and perf_counter on CPU."""
    if str(device).startswith("cuda"):

        def cuda_time(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0

        return cuda_time

    def cpu_time(fn):
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    return cpu_time


def time_callable(fn: Callable[[], object], warmup: int = 3, repeats: int = 20, min_time_s: float = 0.0,
                  max_repeats: int = 1000, device: str = "cpu") -> list[float]:  # fmt: skip
    """Seconds per call: ``warmup`` untimed calls, then at least ``repeats`` timed calls
    (more until ``min_time_s`` has passed, at most ``max_repeats``)."""
    timer = host_timer(device)
    for _ in range(warmup):
        timer(fn)
    times: list[float] = []
    t0 = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - t0 < min_time_s and len(times) < max_repeats):
        times.append(timer(fn))
    return times


def generator_inputs(model: nn.Module, batch: int, device: str = "cpu", first_seed: int = 0,
                     size: int | None = None) -> tuple:  # fmt: skip
    """Positional inputs in the generator's IOSpec order from fixed seeds (e.g. ``(z,)``, ``(z, y)``
    with balanced int64 labels, or a stand-in source image ``size`` px square), through its
    adapter (:mod:`gankd.adapter`)."""
    return adapter_for(model).example_inputs(batch, device, first_seed, size)


@torch.no_grad()
def to_channels_last(model: nn.Module) -> nn.Module:
    """``model.to(memory_format=torch.channels_last)`` for its 4-D tensors only: a modulated convolution's
    5-D weight (StyleGAN2: (1, out, in, k, k)) has no channels-last layout and stays as it is."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.dim() == 4:
            t.data = t.data.contiguous(memory_format=torch.channels_last)
    return model


def eager_runner(model: nn.Module, device: str, size: int | None = None):
    """batch -> a callable running ``model`` (positional, ``inference_mode``) on fixed inputs."""
    model = positional(model)

    def for_batch(b: int):
        inputs = generator_inputs(model, b, device, size=size)

        def run():
            with torch.inference_mode():
                return model(*inputs)

        return run

    return for_batch


def onnx_runner(path: str | Path, model: nn.Module, device: str = "cpu", size: int | None = None):
    """-> (session, for_batch): an ONNX Runtime session (CPU EP with torch's thread count; CUDA
    EP first when ``device`` is cuda and available) and batch -> callable running it."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    sess = ort.InferenceSession(str(path), so, providers=providers)
    names = [i.name for i in sess.get_inputs()]

    def for_batch(b: int):
        feed = {n: x.numpy() for n, x in zip(names, generator_inputs(model, b, "cpu", size=size))}
        return lambda: sess.run(None, feed)

    return sess, for_batch


# ------------------------------------------------------------------ the registry
@dataclass
class Prepared:
    """One generator made ready in one runtime: ``run[b]`` runs a batch of ``b`` (warmed up);
    ``per_batch[b]`` and ``info`` are what the record keeps (memory format, providers, parity)."""

    run: dict[int, Callable[[], object]]
    per_batch: dict[int, dict] = field(default_factory=dict)
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    """How to prepare: the device, the source side for image-to-image generators, the memory
    format rule of eager (auto/on/off), the untimed warm-up calls, and a folder for files."""

    device: str = "cpu"
    size: int | None = None
    channels_last: str = "auto"
    warmup: int = 3
    workdir: Path | None = None


@dataclass(frozen=True)
class Runtime:
    """``prepare(model, batches, options) -> Prepared``; ``host_clock``: the call returns only
    when the work is done, so the host's wall clock times it on any device."""

    prepare: Callable[[nn.Module, tuple[int, ...], Options], Prepared]
    host_clock: bool


RUNTIMES = Registry("runtime", ordered=True)


def _prepare_eager(model: nn.Module, batches: tuple[int, ...], opt: Options) -> Prepared:
    copies = {}
    for fmt in MEMORY_FORMATS[opt.channels_last]:
        m = copy.deepcopy(model).to(opt.device).eval()
        copies[fmt] = to_channels_last(m) if fmt == "channels_last" else m
    out = Prepared(run={})
    for b in batches:
        fns = {fmt: eager_runner(m, opt.device, opt.size)(b) for fmt, m in copies.items()}
        warm = {fmt: statistics.median(time_callable(fn, warmup=1, repeats=max(1, opt.warmup), device=opt.device))
                for fmt, fn in fns.items()}  # fmt: skip
        best = min(warm, key=warm.get)
        out.run[b], out.per_batch[b] = fns[best], {"memory_format": best}
    return out


def _prepare_onnx(model: nn.Module, batches: tuple[int, ...], opt: Options, precision: str = "fp32") -> Prepared:
    from gankd.export import export_generator

    if opt.workdir is None:
        raise ValueError("the onnx runtime needs Options.workdir for its exported file")
    # Exporter and ORT may write progress to stdout; library code stays silent. A reduced precision is
    # exported as `gankd export --precision` writes it (int8 calibrated on seeded inputs), ungated: timing only.
    with contextlib.redirect_stdout(io.StringIO()):
        exp = export_generator(model, Path(opt.workdir) / "generator.onnx", "onnx", precision=precision,
                               max_fid_rise=float("inf"), gate_samples=0)  # fmt: skip
    sess, for_batch = onnx_runner(exp["path"], model, opt.device, opt.size)
    out = Prepared(run={}, info={"providers": sess.get_providers(), "parity_max_abs_diff": exp["max_abs_diff"],
                                 "intra_op_threads": torch.get_num_threads(), "precision": precision})  # fmt: skip
    for b in batches:
        out.run[b] = for_batch(b)
        time_callable(out.run[b], warmup=0, repeats=max(1, opt.warmup))  # warm-up, once, before any timing
    return out


RUNTIMES.add("eager", Runtime(_prepare_eager, host_clock=False))
RUNTIMES.add("onnx", Runtime(_prepare_onnx, host_clock=True), aliases=("onnxruntime",))
RUNTIMES.add("onnx-int8", Runtime(functools.partial(_prepare_onnx, precision="int8"), host_clock=True),
             aliases=("onnxruntime-int8",))  # fmt: skip


def prepare_all(models: Mapping[str, nn.Module], runtimes: tuple[str, ...], batches: tuple[int, ...],
                opt: Options, stack: contextlib.ExitStack) -> dict[str, dict[str, Prepared]]:  # fmt: skip
    """``out[runtime][name]``: every model prepared in every runtime (each in its own folder under a
    temporary one that ``stack`` removes)."""
    import tempfile

    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gankd-runtimes-")))
    out: dict[str, dict[str, Prepared]] = {}
    for rt in runtimes:
        out[rt] = {}
        for i, (n, m) in enumerate(models.items()):
            work = tmp / rt / f"m{i}"
            work.mkdir(parents=True)
            out[rt][n] = RUNTIMES.get(rt).prepare(m, batches, dataclasses.replace(opt, workdir=work))
    return out


__all__ = ["RUNTIMES", "Runtime", "Prepared", "Options", "prepare_all", "time_callable", "host_timer",
           "generator_inputs", "to_channels_last", "eager_runner", "onnx_runner"]
