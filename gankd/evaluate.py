"""The evaluation API: one call measures a generator's quality and cost under the
protocol of DESIGN.md and returns a JSON-able dict with every number, the protocol,
the command that made it and the machine fingerprint.

``evaluate(model_dir, ...)``  quality (FID/IS/KID/PRC), class consistency, fidelity to a
                              teacher, params/MACs/size, optionally measured speed.
``real_floor(...)``           the same quality metrics for real train vs real test: the
                              best a generator can hope for under this protocol.
``save_result(result, path)`` atomic JSON write.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from gankd.adapter import adapter_for, spec_summary
from gankd.checkpoint import CONFIG, atomic_write_bytes, load_generator, resolve_model_path
from gankd.config import load_json
from gankd.metrics.efficiency import portable_path

log = logging.getLogger(__name__)

SCHEMA = "gankd.eval/1"
METRICS = ("fid", "isc", "kid", "prc")


def parse_metrics(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """'fid,isc' / ['fid', 'isc'] / 'none' -> ('fid', 'isc'); validates names."""
    if text is None:
        return METRICS
    items = text.split(",") if isinstance(text, str) else list(text)
    items = [m.strip().lower() for m in items if m.strip()]
    if items in (["none"], []):
        return ()
    bad = [m for m in items if m not in METRICS]
    if bad:
        raise ValueError(f"--metrics: unknown {', '.join(bad)}; choose from {', '.join(METRICS)} (or none)")
    return tuple(dict.fromkeys(items))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _version() -> str:
    import gankd

    return gankd.__version__


def _call_repr(fn: str, *args, **kwargs) -> str:
    parts = [repr(portable_path(a)) if isinstance(a, Path) else repr(a) for a in args]
    parts += [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{fn}({', '.join(parts)})"


def _model_info(model: nn.Module, folder: Path | None) -> dict:
    gen = adapter_for(model)
    inner = gen.model
    c, h, _ = gen.output_shape()
    info = {
        "family": getattr(inner, "family", type(inner).__name__),
        "inputs": spec_summary(gen.spec)["inputs"],
        "z_dim": getattr(inner, "z_dim", None),
        "num_classes": gen.num_classes,
        "feature_channels": list(getattr(inner, "feature_channels", []) or []),
        "resolution": h,
        "image_channels": c,
    }
    if folder is not None and (folder / CONFIG).is_file():
        meta = load_json(folder / CONFIG)
        info["config"] = meta.get("config")
        info["folder_meta"] = {k: v for k, v in meta.items() if k not in ("config", "discriminator")}
    return info


def _path_or_name(model_or_dir) -> str:
    """How a record names a model: its portable folder path, or ``<module>``."""
    if isinstance(model_or_dir, nn.Module):
        return "<module>"
    return portable_path(resolve_model_path(model_or_dir))


def _load(model_or_dir, device: str) -> tuple[nn.Module, Path | None]:
    if isinstance(model_or_dir, nn.Module):
        return model_or_dir.to(device).eval(), None
    folder = Path(model_or_dir)
    return load_generator(folder, map_location=device), folder


def evaluate(
    model_dir,
    metrics: Sequence[str] | str = METRICS,
    num_samples: int = 10000,
    extractor: str = "fmnist-evaluator",
    reference: str = "fashion-mnist:test",
    speed: bool = False,
    teacher=None,
    *,
    num_reference: int | None = None,
    evaluator: str | Path | None = None,
    inception_weights: str | Path | None = None,
    first_seed: int = 0,
    class_consistency: bool = True,
    teacher_samples: int = 1000,
    lpips: str | bool = "auto",
    lpips_weights: str | Path | None = None,
    runtimes: Sequence[str] = ("eager", "onnx"),
    big_batch: int = 256,
    repeats: int = 20,
    min_time_s: float = 0.5,
    speed_rounds: int = 7,
    batch_size: int = 256,
    kid_subsets: int = 100,
    device: str = "cpu",
    cache: bool = True,
    real_floor_too: bool = False,
    role: str | None = None,
    command: str | None = None,
) -> dict:
    """Evaluate a generator (folder or module) and return a JSON-able dict.

    Quality: ``metrics`` from fid, isc, kid, prc on ``num_samples`` images (seeds
    ``first_seed..``, class-balanced labels) against ``reference`` (default the
    Fashion-MNIST test split; all of it with the evaluator, ``num_samples`` random
    images with Inception unless ``num_reference`` says otherwise), features from
    ``extractor`` (``fmnist-evaluator`` or ``inception-v3-compat``).
    Class consistency (conditional models): evaluator accuracy vs the conditioning class.
    Teacher fidelity (``teacher`` = generator folder or module): PSNR (dB, [0, 1] images),
    an LPIPS-style distance on the evaluator's features, and LPIPS (lpips package) when
    its ImageNet trunk exists (``lpips='auto'``; ``True`` requires it, ``False`` skips).
    Cost: params, MACs/image, weights bytes, peak memory; ``speed=True`` adds latency
    (batch 1) and throughput (``big_batch``) for ``runtimes`` (eager, compile, onnx). With a
    ``teacher``, eager and ONNX speed are timed interleaved with the teacher in this process
    (``speed_rounds`` rounds of ``repeats`` batch-1 calls each): ``efficiency.speed_vs_teacher``
    holds the speed-ups with their spread over rounds, the teacher's numbers, time and machine.
    Every result carries ``protocol``, ``fingerprint`` and ``command``; paths (``model``,
    ``teacher``, ``weights_source``) are relative to the repository (shipped models as
    ``pretrained/<name>``) or to the current directory.
    """
    from gankd.metrics import efficiency as eff
    from gankd.metrics import fidelity as fid

    t_start = time.perf_counter()
    metrics = parse_metrics(metrics)
    if extractor not in fid.EXTRACTORS:
        raise ValueError(f"--extractor {extractor!r} is unknown; choose one of: {', '.join(fid.EXTRACTORS)}")
    if num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {num_samples}")
    if extractor == fid.INCEPTION and metrics:
        fid.find_inception_weights(inception_weights)  # fail before any work
    if lpips is True:
        fid.lpips_distance(trunk_weights=lpips_weights)  # raises with the fix when absent
    if command is None:
        command = _call_repr(
            "gankd.evaluate.evaluate",
            _path_or_name(model_dir),
            metrics=list(metrics),
            num_samples=num_samples,
            extractor=extractor,
            reference=reference,
            speed=speed,
            teacher=None if teacher is None else _path_or_name(teacher),
        )
    model, folder = _load(model_dir, device)
    nc = adapter_for(model).num_classes
    timings: dict[str, float] = {}
    result: dict = {
        "schema": SCHEMA,
        "kind": "eval",
        "name": folder.name if folder else type(model).__name__,
        "model": portable_path(folder) if folder else None,
        "role": role or ("student" if teacher is not None else "model"),
        "teacher": None if teacher is None else _path_or_name(teacher),
        "model_info": _model_info(model, folder),
    }

    images = None
    if metrics:
        t = time.perf_counter()
        images = fid.generated_set(
            model, num_samples, first_seed, batch_size, device, name=result["model"] or "generator"
        )
        timings["generate_s"] = round(time.perf_counter() - t, 3)
        if num_reference is None and extractor == fid.INCEPTION:
            num_reference = num_samples
        q = fid.fidelity_metrics(
            images,
            reference,
            metrics,
            num_samples,
            num_reference,
            extractor,
            evaluator,
            inception_weights,
            first_seed,
            batch_size,
            device,
            cache,
            kid_subsets=kid_subsets,
        )
        result["protocol"] = q.pop("protocol")
        timings["fidelity_s"] = q.pop("time_s")
        result["quality"] = q

    if class_consistency and nc > 0:
        t = time.perf_counter()
        try:
            result["class_consistency"] = fid.class_consistency(
                model, num_samples, evaluator, first_seed, batch_size, device, images=images
            )
        except FileNotFoundError as e:
            if metrics and extractor == fid.EVALUATOR:
                raise
            result["class_consistency"] = {"skipped": str(e)}
        timings["class_consistency_s"] = round(time.perf_counter() - t, 3)

    teacher_model = None if teacher is None else _load(teacher, device)[0]
    if teacher is not None:
        t = time.perf_counter()
        distances: dict = {}
        skipped: dict = {}
        try:
            distances["evaluator_lpips_style"] = fid.evaluator_distance(evaluator, device)
        except FileNotFoundError as e:
            skipped["evaluator_lpips_style"] = str(e)
        if lpips is not False:
            try:
                distances["lpips"] = fid.lpips_distance(trunk_weights=lpips_weights, device=device)
            except FileNotFoundError as e:
                skipped["lpips"] = str(e)
        tf = fid.teacher_fidelity(
            model, teacher_model, teacher_samples, distances, first_seed, batch_size, device
        )
        tf.update(tf.pop("distances"))
        for k, why in skipped.items():
            tf[k] = None
            tf[f"{k}_skipped"] = why
        if "lpips" in distances:
            tf["lpips_net"] = distances["lpips"].name
        result["teacher_fidelity"] = tf
        timings["teacher_fidelity_s"] = round(time.perf_counter() - t, 3)

    t = time.perf_counter()
    result["efficiency"] = eff.efficiency(
        model,
        folder,
        speed=speed,
        big_batch=big_batch,
        runtimes=tuple(runtimes),
        repeats=repeats,
        min_time_s=min_time_s,
        device=device,
        reference=teacher_model,
        rounds=speed_rounds,
    )
    result["fingerprint"] = result["efficiency"].pop("fingerprint")
    timings["efficiency_s"] = round(time.perf_counter() - t, 3)

    if real_floor_too and metrics:
        cfg = getattr(model, "cfg", None)
        result["real_floor"] = real_floor(
            reference,
            num_samples=num_samples,
            metrics=metrics,
            extractor=extractor,
            evaluator=evaluator,
            inception_weights=inception_weights,
            num_reference=num_reference,
            resolution=getattr(cfg, "resolution", 32),
            channels=getattr(cfg, "image_channels", 1),
            batch_size=batch_size,
            kid_subsets=kid_subsets,
            device=device,
            cache=cache,
            command=command,
        )
    result["command"] = command
    result["gankd_version"] = _version()
    result["created_utc"] = _now()
    timings["total_s"] = round(time.perf_counter() - t_start, 3)
    result["timings"] = timings
    return result


def real_floor(
    reference: str = "fashion-mnist:test",
    real: str = "fashion-mnist:train",
    num_samples: int = 10000,
    metrics: Sequence[str] | str = METRICS,
    extractor: str = "fmnist-evaluator",
    evaluator: str | Path | None = None,
    inception_weights: str | Path | None = None,
    num_reference: int | None = None,
    resolution: int = 32,
    channels: int = 1,
    seed: int = 0,
    batch_size: int = 256,
    kid_subsets: int = 100,
    device: str = "cpu",
    cache: bool = True,
    command: str | None = None,
) -> dict:
    """Quality of real images under the generator protocol: ``num_samples`` random images of
    ``real`` (fixed subset, ``seed``) scored against ``reference``, plus the evaluator's
    accuracy on them (the class-consistency ceiling). Same keys as :func:`evaluate`."""
    from gankd.metrics import efficiency as eff
    from gankd.metrics import fidelity as fid

    t0 = time.perf_counter()
    metrics = parse_metrics(metrics)
    if not metrics:
        raise ValueError("the real floor needs at least one of --metrics fid,isc,kid,prc")
    if command is None:
        command = _call_repr(
            "gankd.evaluate.real_floor",
            reference,
            real=real,
            num_samples=num_samples,
            metrics=list(metrics),
            extractor=extractor,
        )
    if num_reference is None and extractor == fid.INCEPTION:
        num_reference = num_samples
    images = fid.load_image_set(real, resolution, channels, num_samples, seed)
    q = fid.fidelity_metrics(
        images,
        reference,
        metrics,
        num_samples,
        num_reference,
        extractor,
        evaluator,
        inception_weights,
        0,
        batch_size,
        device,
        cache,
        kid_subsets=kid_subsets,
    )
    result: dict = {
        "schema": SCHEMA,
        "kind": "real-floor",
        "name": f"real floor ({images.name} vs {reference})",
        "model": None,
        "role": "floor",
        "protocol": q.pop("protocol"),
    }
    q.pop("time_s")
    result["quality"] = q
    if images.labels is not None:
        try:
            from gankd.checkpoint import load_classifier

            clf = load_classifier(fid.resolve_evaluator(evaluator), map_location=device)
            result["class_consistency"] = fid.classifier_accuracy(images.images, images.labels, clf)
        except FileNotFoundError as e:
            result["class_consistency"] = {"skipped": str(e)}
    result["fingerprint"] = eff.fingerprint(device)
    result["command"] = command
    result["gankd_version"] = _version()
    result["created_utc"] = _now()
    result["timings"] = {"total_s": round(time.perf_counter() - t0, 3)}
    return result


def save_result(result: dict, path: str | Path) -> Path:
    """Write an evaluation dict as pretty JSON, atomically."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(result, indent=2, default=_json_default) + "\n").encode())
    return path


def _json_default(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
