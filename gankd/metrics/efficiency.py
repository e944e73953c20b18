"""Cost and speed of a generator: parameters, MACs, weight-file size, latency, throughput,
peak memory, always with the fingerprint of the machine that measured them.

- MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (exact for Linear and
  (transposed) convolutions; BN and activations are not counted): MACs = FLOPs / 2.
- Latency is measured at batch 1 (median and p90 over repeats, after warm-up);
  throughput at a large batch (images/s from the median batch time). Runtimes: eager
  PyTorch (contiguous and channels_last, the faster one is reported), optionally
  ``torch.compile`` (freezing on; slow to compile) and ONNX Runtime (CPU EP, or CUDA
  EP on a GPU). On CUDA, times come from CUDA events.
- Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the peak of live
  tensor bytes during one forward (parameters + inputs + activations), tracked per
  operator output, which is deterministic unlike the process RSS.

Timings are noisy on shared machines (20-60 % between runs of the same command): compare
models only by ratios from :func:`interleaved_speed`, which times a reference (the teacher)
and the other models in one process, alternating A B A B ... over several rounds, and
reports each ratio's median with its spread over the rounds. Every speed record carries the
UTC time it was measured and the machine fingerprint; nothing caches timings.

Paths written into records go through :func:`portable_path` (relative to the repository,
``pretrained/<name>`` for shipped models), so committed JSON does not leak a checkout path.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import os
import platform
import statistics
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from gankd.adapter import positional
from gankd.fileio import portable_path
from gankd.runtimes import RUNTIMES, Options, generator_inputs, prepare_all, time_callable, to_channels_last
from gankd.runtimes import eager_runner as _eager_runner
from gankd.runtimes import host_timer as _timer
from gankd.runtimes import onnx_runner as _onnx_runner


# ------------------------------------------------------------------ machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(device: str = "cpu") -> dict:
    """What a speed number depends on: CPU model, cores, torch threads, library versions, platform, GPU."""
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    import numpy

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    fp = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "onnxruntime": ort_version,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        fp["gpu"] = torch.cuda.get_device_name(torch.device(device))
        fp["cuda"] = torch.version.cuda
        fp["cudnn"] = torch.backends.cudnn.version()
    return fp


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-01-02T03:04:05+00:00``)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, inputs: tuple) -> dict:
    """Multiply-accumulates of ``model(*inputs)`` from FlopCounterMode: ``{"macs", "by_op"}``.

    Per image when the inputs have batch 1. Counts Linear, Conv and ConvTranspose (and
    matmuls); BN, activations and embedding look-ups count as 0.
    """
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as fc:
        model(*inputs)
    model.train(was_training)
    by_op: dict[str, int] = {}
    for op, n in fc.get_flop_counts().get("Global", {}).items():
        by_op[str(op)] = int(n) // 2
    return {"macs": int(fc.get_total_flops()) // 2, "by_op": by_op}


def weights_bytes(model: nn.Module | None = None, folder: str | Path | None = None) -> dict:
    """Size of the weights: ``folder/model.safetensors`` if given, else the module's state
    serialised as safetensors in memory. ``{"bytes", "source"}``."""
    if folder is not None:
        f = Path(folder) / "model.safetensors"
        if f.is_file():
            return {"bytes": f.stat().st_size, "source": portable_path(f)}
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return {"bytes": len(save(state)), "source": "safetensors (serialised in memory)"}


# ------------------------------------------------------------------ peak memory
class _LiveTensorBytes(TorchDispatchMode):
    """Tracks bytes of storages created by operators while active; ``peak`` is their maximum."""

    def __init__(self, static: set[int]):
        super().__init__()
        self.static = static
        self.live: dict[int, list[int]] = {}
        self.current = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            self.current -= entry[0]
            del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            st = t.untyped_storage()
            ptr = st.data_ptr()
            if ptr == 0 or ptr in self.static:
                continue
            if ptr in self.live:
                self.live[ptr][1] += 1
            else:
                self.live[ptr] = [st.nbytes(), 1]
                self.current += st.nbytes()
                self.peak = max(self.peak, self.current)
            weakref.finalize(t, self._release, ptr)
        return out


def _storage_bytes(tensors) -> tuple[set[int], int]:
    ptrs, total = set(), 0
    for t in tensors:
        if isinstance(t, torch.Tensor):
            st = t.untyped_storage()
            if st.data_ptr() not in ptrs:
                ptrs.add(st.data_ptr())
                total += st.nbytes()
    return ptrs, total


@torch.no_grad()
def peak_memory(model: nn.Module, inputs: tuple, device: str = "cpu") -> dict:
    """Peak memory of one forward: ``{"bytes", "static_bytes", "activations_bytes", "method"}``."""
    model.eval()
    static_tensors = list(model.parameters()) + list(model.buffers()) + [t for t in inputs if t is not None]
    ptrs, static_bytes = _storage_bytes(static_tensors)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        model(*inputs)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {"bytes": int(peak), "static_bytes": static_bytes, "activations_bytes": int(peak - base),
                "method": "torch.cuda.max_memory_allocated"}  # fmt: skip
    mode = _LiveTensorBytes(ptrs)
    with mode:
        out = model(*inputs)
    del out
    return {
        "bytes": static_bytes + mode.peak,
        "static_bytes": static_bytes,
        "activations_bytes": mode.peak,
        "method": "live tensor bytes per operator output (params + inputs + peak activations)",
    }


# ------------------------------------------------------------------ timing
def summarize(times: list[float], batch: int) -> dict:
    """Latency stats in ms (median, p90, min, mean) and images/s from the median."""
    s = sorted(times)
    p90 = s[min(len(s) - 1, max(0, int(round(0.9 * (len(s) - 1)))))]
    med = statistics.median(s)
    return {
        "batch": batch,
        "median_ms": med * 1e3,
        "p90_ms": p90 * 1e3,
        "min_ms": s[0] * 1e3,
        "mean_ms": statistics.fmean(s) * 1e3,
        "repeats": len(s),
        "images_per_s": batch / med if med > 0 else float("inf"),
    }


def _measure(run_for_batch: Callable[[int], Callable[[], object]], batch: int, big_batch: int,
             repeats: int, min_time_s: float, device: str) -> dict:  # fmt: skip
    stamp = utc_now()
    lat = time_callable(run_for_batch(1), warmup=3, repeats=repeats, min_time_s=min_time_s, device=device)
    thr = time_callable(run_for_batch(big_batch), warmup=1, repeats=max(3, repeats // 4),
                        min_time_s=min_time_s, device=device)  # fmt: skip
    return {"latency": summarize(lat, 1), "throughput": summarize(thr, big_batch), "measured_utc": stamp}


def measure_eager(model: nn.Module, big_batch: int = 256, channels_last: str = "auto", repeats: int = 20,
                  min_time_s: float = 0.5, device: str = "cpu") -> dict:  # fmt: skip
    """Eager PyTorch latency (batch 1) and throughput (``big_batch``).

    ``channels_last``: 'auto' measures contiguous and channels_last and reports, separately
    for latency and for throughput, the faster format (each summary names its
    ``memory_format``; all numbers stay under ``"formats"``); 'on'/'off' measure one.
    On this kind of CPU channels_last can be much slower at batch 1 while faster at large
    batches, which is why the choice is made per measurement.
    """
    if channels_last not in ("auto", "on", "off"):
        raise ValueError(f"channels_last must be auto, on or off, got {channels_last!r}")
    formats = {"auto": ["contiguous", "channels_last"], "on": ["channels_last"], "off": ["contiguous"]}
    results = {}
    for fmt in formats[channels_last]:
        m = copy.deepcopy(model).to(device).eval()
        if fmt == "channels_last":
            m = to_channels_last(m)
        results[fmt] = _measure(_eager_runner(m, device), 1, big_batch, repeats, min_time_s, device)
    lat = min(results, key=lambda k: results[k]["latency"]["median_ms"])
    thr = max(results, key=lambda k: results[k]["throughput"]["images_per_s"])
    return {
        "latency": {**results[lat]["latency"], "memory_format": lat},
        "throughput": {**results[thr]["throughput"], "memory_format": thr},
        "formats": results,
        "measured_utc": results[formats[channels_last][0]]["measured_utc"],
        "method": "solo",
    }


def measure_compile(model: nn.Module, big_batch: int = 256, repeats: int = 20, min_time_s: float = 0.5,
                    device: str = "cpu") -> dict:  # fmt: skip
    """``torch.compile`` (inductor, freezing on) latency/throughput; records compile time (one
    compile per batch shape, ~10 s each on a CPU)."""
    m = positional(copy.deepcopy(model)).to(device).eval()
    compiled = torch.compile(m, options={"freezing": True}, dynamic=False)
    compile_s = {}

    def for_batch(b: int):
        inputs = generator_inputs(m, b, device)

        def run():
            with torch.no_grad():
                return compiled(*inputs)

        t = time.perf_counter()
        run()
        compile_s[str(b)] = round(time.perf_counter() - t, 2)
        return run

    out = _measure(for_batch, 1, big_batch, repeats, min_time_s, device)
    out["compile_s"] = compile_s
    out["options"] = {"backend": "inductor", "freezing": True, "dynamic": False}
    out["method"] = "solo"
    return out


def measure_onnx(path: str | Path, model: nn.Module, big_batch: int = 256, repeats: int = 20,
                 min_time_s: float = 0.5, device: str = "cpu") -> dict:  # fmt: skip
    """ONNX Runtime latency/throughput of an exported generator (CPU EP with torch's thread
    count; CUDA EP when ``device`` is cuda and onnxruntime has it)."""
    sess, for_batch = _onnx_runner(path, model, device)
    # ORT synchronises before returning, so wall-clock timing is right on both EPs.
    out = _measure(for_batch, 1, big_batch, repeats, min_time_s, "cpu")
    out["providers"] = sess.get_providers()
    out["intra_op_threads"] = torch.get_num_threads()
    out["method"] = "solo"
    return out


# ------------------------------------------------------------------ interleaved comparison
INTERLEAVED_RUNTIMES = RUNTIMES  # the registered runtimes (gankd.runtimes)


def _spread(values: list[float]) -> dict:
    """median, min, max and quartiles (inclusive method) of per-round values, plus the values."""
    s = sorted(values)
    q1, q3 = (statistics.quantiles(s, n=4, method="inclusive")[i] for i in (0, 2)) if len(s) > 1 else (s[0], s[0])
    return {"median": statistics.median(s), "min": s[0], "max": s[-1], "q1": q1, "q3": q3,
            "rounds": list(values)}  # fmt: skip


def _interleave(ready: dict, names: list[str], batches: dict, rounds: int, device: str) -> dict:
    """Per model, runtime and batch kind: one value per round (the median of its calls), the
    models timed in turn (A B A B ...) with the first one rotating every round."""
    per_round: dict = {n: {rt: {which: [] for which in batches} for rt in ready} for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for rt in ready:
            t = _timer("cpu" if RUNTIMES.get(rt).host_clock else device)
            for which, (b, calls) in batches.items():
                for n in order:
                    fn = ready[rt][n].run[b]
                    per_round[n][rt][which].append(statistics.median(t(fn) for _ in range(calls)))
    return per_round


def _speed_entry(prepared, per_round: dict, batches: dict, stamp: str) -> dict:
    entry: dict = {}
    for which, (b, calls) in batches.items():
        vals = per_round[which]
        entry[which] = {**summarize(vals, b), "rounds": len(vals), "calls_per_round": calls,
                        "rounds_ms": [v * 1e3 for v in vals], **prepared.per_batch.get(b, {})}  # fmt: skip
    return {**entry, **prepared.info, "measured_utc": stamp, "method": "interleaved"}


def interleaved_speed(
    models: Mapping[str, nn.Module],
    reference: str | None = None,
    runtimes: tuple[str, ...] = INTERLEAVED_RUNTIMES,
    rounds: int = 7,
    latency_calls: int = 20,
    throughput_calls: int = 3,
    big_batch: int = 256,
    options: Options | None = None,
) -> dict:
    """Time several generators in one process, interleaved, and give speed-ups with their spread.

    ``options`` (:class:`gankd.runtimes.Options`): the device; ``size``, for image-to-image generators
    the side in px of the (stand-in) source image, e.g. 256 or 512 (default: the trained resolution;
    ignored by noise-to-image ones); ``channels_last``; the untimed ``warmup`` calls.

    ``models``: name -> generator (batch-1 latency and ``big_batch`` throughput are timed
    for each). ``reference`` (default: the first name, e.g. the teacher) is what every
    other model is compared against. Each runtime (``eager`` PyTorch, ``onnx`` Runtime) is
    warmed up once for every model before the first round; then each of ``rounds`` rounds
    times, for every runtime and batch size, ``latency_calls`` (``throughput_calls``) calls
    of each model in turn (A B A B ...; the starting model rotates every round), so slow
    drifts of the machine hit all models alike. A round's value is the median of its calls.

    ``options.channels_last``: 'auto' picks, per model and batch size, the faster memory format
    from timed warm-up calls (recorded as ``memory_format``); 'on'/'off' force one.

    Returns a JSON-able record: ``created_utc``, ``fingerprint``, ``protocol``,
    ``order``, ``reference``, ``models[name][runtime]`` = ``{"latency", "throughput"}`` (the
    usual summaries over round values: ``median_ms`` is the median over rounds, plus
    ``rounds_ms``), and ``ratios[name][runtime][latency|throughput]`` = reference time /
    model time per round (the speed-up; > 1 means faster than the reference) as
    ``{"median", "min", "max", "q1", "q3", "rounds"}``. Measured fresh on every call.
    """
    names = list(models)
    if not names:
        raise ValueError("interleaved_speed needs at least one model")
    reference = names[0] if reference is None else reference
    if reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models: {', '.join(names)}")
    bad = [r for r in runtimes if r not in RUNTIMES]
    if bad or not runtimes:
        raise ValueError(f"interleaved runtimes must be from {', '.join(RUNTIMES)}, got {list(runtimes)}")
    opt = options or Options()
    device, size, channels_last, warmup = opt.device, opt.size, opt.channels_last, opt.warmup
    if channels_last not in ("auto", "on", "off"):
        raise ValueError(f"channels_last must be auto, on or off, got {channels_last!r}")
    for key, v in (("rounds", rounds), ("latency_calls", latency_calls), ("throughput_calls", throughput_calls),
                   ("big_batch", big_batch)):  # fmt: skip
        if int(v) < 1:
            raise ValueError(f"{key} must be >= 1, got {v}")
    stamp, t_start = utc_now(), time.perf_counter()
    batches = {"latency": (1, latency_calls), "throughput": (big_batch, throughput_calls)}
    with contextlib.ExitStack() as stack:
        ready = prepare_all(models, tuple(runtimes), tuple(dict.fromkeys(b for b, _ in batches.values())), opt, stack)
        per_round = _interleave(ready, names, batches, rounds, device)
    out_models = {n: {rt: _speed_entry(ready[rt][n], per_round[n][rt], batches, stamp) for rt in runtimes}
                  for n in names}  # fmt: skip
    ratios: dict = {}
    for n in names:
        if n == reference:
            continue
        ratios[n] = {
            rt: {which: _spread([a / b for a, b in zip(per_round[reference][rt][which], per_round[n][rt][which])])
                 for which in batches}
            for rt in runtimes
        }  # fmt: skip
    return {
        "schema": "gankd.speed/1",
        "kind": "interleaved-speed",
        "created_utc": stamp,
        "wall_s": round(time.perf_counter() - t_start, 3),
        "fingerprint": fingerprint(device),
        "reference": reference,
        "order": names,
        "protocol": {
            "runtimes": list(runtimes),
            "rounds": rounds,
            "latency_batch": 1,
            "input_size": size,
            "latency_calls": latency_calls,
            "big_batch": big_batch,
            "throughput_calls": throughput_calls,
            "warmup": warmup,
            "channels_last": channels_last,
            "device": str(device),
            "schedule": "warm-up once per model and runtime, then per round, runtime and batch size each "
            "model in turn (A B A B ...), the first model rotating every round",
            "statistic": "round value = median of its calls; reported = median (and spread) over rounds; "
            "ratio = reference time / model time within each round, then median over rounds",
        },
        "models": out_models,
        "ratios": ratios,
    }


# ------------------------------------------------------------------ all together
@dataclass
class Speed:
    """Measured speed: batch-1 latency and ``big_batch`` throughput for ``runtimes`` (eager, compile,
    onnx), ``repeats`` calls (at least ``min_time_s``); with a teacher, ``rounds`` interleaved rounds."""

    runtimes: Sequence[str] = ("eager", "onnx")
    big_batch: int = 256
    repeats: int = 20
    min_time_s: float = 0.5
    rounds: int = 7


def efficiency(
    model: nn.Module,
    folder: str | Path | None = None,
    speed: Speed | None = None,
    channels_last: str = "auto",
    memory: bool = True,
    device: str = "cpu",
    reference: nn.Module | None = None,
) -> dict:
    """Params, MACs per image, weight-file size, and (with ``speed``, a :class:`Speed`) measured speed.

    ``speed.runtimes`` from ``eager``, ``compile``, ``onnx``. Returns a JSON-able dict with
    ``params``, ``macs``, ``macs_by_op``, ``weights_bytes``, ``speed`` (per runtime:
    ``latency`` at batch 1 and ``throughput`` at ``speed.big_batch``, each stamped
    ``measured_utc``), ``peak_memory`` (per batch size) and ``fingerprint``.

    With a ``reference`` (the teacher), eager and ONNX speed come from
    :func:`interleaved_speed` of the reference and this model (``speed.rounds`` rounds,
    ``speed.repeats`` batch-1 calls per round) and ``speed_vs_teacher`` holds ``created_utc``,
    ``fingerprint``, ``protocol``, the reference's own numbers (``teacher``) and the
    speed-ups with their spread (``ratio[runtime][latency|throughput]``).
    """
    sp = speed or Speed()
    runtimes, big_batch, repeats, min_time_s = tuple(sp.runtimes), sp.big_batch, sp.repeats, sp.min_time_s
    bad = [r for r in runtimes if r not in ("eager", "compile", "onnx")]
    if bad:
        raise ValueError(f"unknown runtime(s) {bad}; choose from eager, compile, onnx")
    macs = count_macs(positional(model), generator_inputs(model, 1, next(model.parameters()).device))
    w = weights_bytes(model, folder)
    out: dict = {
        "params": count_params(model),
        "macs": macs["macs"],
        "macs_by_op": macs["by_op"],
        "weights_bytes": w["bytes"],
        "weights_source": w["source"],
    }
    if speed is not None:
        speeds: dict = {}
        vs_teacher = None
        paired = [r for r in runtimes if r in INTERLEAVED_RUNTIMES] if reference is not None else []
        if paired:
            rec = interleaved_speed({"teacher": reference, "model": model}, "teacher", tuple(paired), rounds=sp.rounds,
                                    latency_calls=repeats, throughput_calls=max(1, repeats // 6),
                                    big_batch=big_batch,
                                    options=Options(device=device, channels_last=channels_last))  # fmt: skip
            speeds.update(rec["models"]["model"])
            vs_teacher = {k: rec[k] for k in ("created_utc", "fingerprint", "protocol")}
            vs_teacher.update(teacher=rec["models"]["teacher"], ratio=rec["ratios"]["model"])
        if "eager" in runtimes and "eager" not in speeds:
            speeds["eager"] = measure_eager(model, big_batch, channels_last, repeats, min_time_s, device)
        if "compile" in runtimes:
            speeds["compile"] = measure_compile(model, big_batch, repeats, min_time_s, device)
        if "onnx" in runtimes and "onnx" not in speeds:
            from gankd.export import export_generator

            with tempfile.TemporaryDirectory(prefix="gankd-onnx-") as tmp:
                # Exporter and ORT may write progress to stdout; library code stays silent.
                with contextlib.redirect_stdout(io.StringIO()):
                    exp = export_generator(model, Path(tmp) / "generator.onnx", "onnx")
                speeds["onnx"] = measure_onnx(exp["path"], model, big_batch, repeats, min_time_s, device)
                speeds["onnx"]["parity_max_abs_diff"] = exp["max_abs_diff"]
        out["speed"] = {rt: speeds[rt] for rt in runtimes if rt in speeds}
        if vs_teacher is not None:
            out["speed_vs_teacher"] = vs_teacher
        if "eager" in speeds and "onnx" in speeds:
            e, o = speeds["eager"], speeds["onnx"]
            out["onnx_vs_eager"] = {
                "latency_speedup": e["latency"]["median_ms"] / o["latency"]["median_ms"],
                "throughput_speedup": o["throughput"]["images_per_s"] / e["throughput"]["images_per_s"],
            }
    if memory:
        m = positional(copy.deepcopy(model)).to(device)
        out["peak_memory"] = {str(b): peak_memory(m, generator_inputs(m, b, device), device) for b in (1, big_batch)}
    out["fingerprint"] = fingerprint(device)
    return out
