"""Evaluation of image-to-image generators (``gankd eval`` on a model whose input is an image).

On the **test** split's pairs of the model's data and task (its folder records both;
degradations seeded with seed 0, the same for every model, so numbers compare):

- fidelity to the ground truth: PSNR (dB), SSIM and LPIPS (the ``lpips`` package, when its
  ImageNet trunk is present; otherwise skipped with the reason) per image, mean and std;
  the same for the *source* itself (the do-nothing baseline every restorer must beat);
- with ``teacher``: the teacher's own numbers and the model's PSNR/SSIM/LPIPS to the
  teacher's outputs;
- FID/KID of the outputs against the targets with the named extractor (chosen for the
  domain as for noise-to-image models; a warning below 2,000 images);
- cost: parameters and MACs at the trained size and at each of ``sizes`` (e.g. 256, 512);
  with ``speed``, batch-1 latency (eager and ONNX Runtime) for the model (and the teacher,
  timed interleaved in one process) at each size.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from torch import nn

from gankd import checkpoint as ckpt
from gankd.adapter import adapter_for, positional
from gankd.config import load_json
from gankd.data import to_uint8
from gankd.evaluate import Fidelity, Pairs, Quality, Speed
from gankd.fileio import portable_path
from gankd.runtimes import Options

log = logging.getLogger(__name__)

I2I_METRICS = ("psnr", "ssim", "lpips", "fid", "kid")
REPORT_SEED = 0  # degradation seed of the reported test pairs: the same for every model
SMALL_REFERENCE = 2000


def is_i2i_model(model_or_dir) -> bool:
    """Whether a generator (module, or folder: read from its config.json alone, nothing loaded)
    maps a source image to an image. A folder that cannot be read is not (the caller's own
    checks then say what is wrong with it)."""
    if not isinstance(model_or_dir, (str, Path)):
        return adapter_for(model_or_dir).is_i2i
    try:
        meta = load_json(ckpt.resolve_model_path(model_or_dir) / ckpt.CONFIG)
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict):
        return False
    inputs = ((meta.get("io") or {}).get("inputs")) or []  # imported and torch-pruned generators
    if any(isinstance(i, dict) and i.get("kind") == "image" for i in inputs):
        return True
    return int((meta.get("config") or {}).get("in_channels", 0) or 0) > 0  # gankd's image-to-image families


def _folder_meta(folder: Path | None) -> dict:
    meta = load_json(folder / ckpt.CONFIG) if folder is not None else {}
    return meta if isinstance(meta, dict) else {}


def _load(model_or_dir, device: str) -> tuple[nn.Module, Path | None]:
    if isinstance(model_or_dir, (str, Path)):
        folder = ckpt.resolve_model_path(model_or_dir)
        return ckpt.load_generator(folder, map_location=device), folder
    return model_or_dir, None


def _stats(values: torch.Tensor) -> dict:
    v = values.double()
    return {"mean": float(v.mean()), "std": float(v.std()) if len(v) > 1 else 0.0}


def _paired_scores(a: torch.Tensor, b: torch.Tensor, lpips_fn) -> dict:
    from gankd.metrics.fidelity import psnr, ssim

    out = {"psnr_db": _stats(psnr(a, b)), "ssim": _stats(ssim(a, b))}
    if lpips_fn is not None:
        vals = torch.cat([lpips_fn(a[i : i + 64], b[i : i + 64]).cpu() for i in range(0, len(a), 64)])
        out["lpips"] = _stats(vals)
    return out


def _lpips(metrics, lpips_weights, device) -> tuple[object | None, str | None]:
    if "lpips" not in metrics:
        return None, None
    from gankd.metrics.fidelity import lpips_distance

    try:
        return lpips_distance("alex", lpips_weights, device=device), None
    except FileNotFoundError as e:
        return None, f"LPIPS skipped: {e}"


def cost_at_sizes(model: nn.Module, sizes) -> dict:
    """Parameters and MACs of an image-to-image generator at its trained size and ``sizes``."""
    from gankd.metrics.efficiency import count_macs, count_params

    gen = adapter_for(model)
    trained = gen.spec.image().shape[-1]
    out = {"params": count_params(gen.model), "macs": {}}
    for s in [trained, *[x for x in sizes if x != trained]]:
        ex = gen.example_inputs(1, next(gen.model.parameters()).device, size=s)
        out["macs"][str(s)] = count_macs(positional(gen), ex)["macs"]
    return out


def model_pairs(gen, folder: Path | None, split: str = "test", data: str | None = None, task: str | None = None,
                task_params: dict | None = None, label: str = "the model"):  # fmt: skip
    """The ``split`` pairs an image-to-image model is scored or shown on: its folder's data,
    task and degradation parameters unless given, at its input size, degradation seed
    :data:`REPORT_SEED`. The dataset gets ``spec_data`` and ``params`` attributes."""
    from gankd.paired import TaskParams, load_pairs

    meta = _folder_meta(folder)
    data = data or meta.get("data")
    # paired folders are their own task, whatever the model was trained on
    task = task or ("paired" if data and data.startswith("paired:") else meta.get("task"))
    if not data or not task:
        raise ValueError(f"{label} records no data or task: pass --data and --task (e.g. --data folder:PATH "
                         "--task denoise)")  # fmt: skip
    params = TaskParams(**{**(meta.get("task_params") or {}), **(task_params or {})})
    spec = adapter_for(gen).spec.image()
    pairs = load_pairs(data, split, spec.shape[-1], spec.shape[0], task, params, REPORT_SEED)
    pairs.spec_data, pairs.params = data, params
    return pairs


def speed_by_size(models: dict, sizes: list[int], rounds: int, device: str) -> dict:
    """Interleaved speed of image-to-image ``models`` (the first is the reference) at each side in ``sizes``."""
    from gankd.metrics.efficiency import interleaved_speed

    return {str(s): interleaved_speed(models, next(iter(models)), rounds=rounds, latency_calls=5 if s >= 512 else 10,
                                      throughput_calls=1, big_batch=4, options=Options(device=device, size=s))
            for s in sizes}  # fmt: skip


def evaluate_i2i(
    model,
    teacher=None,
    *,
    quality: Quality | None = None,
    fidelity: Fidelity | None = None,
    speed: Speed | bool | None = None,
    pairs: Pairs | None = None,
    device: str = "cpu",
    command: str | None = None,
    split: str = "test",
) -> dict:
    """Evaluate an image-to-image generator on the test pairs (see the module docstring), with the
    option groups of :func:`gankd.evaluate.evaluate`: ``quality.metrics`` from psnr, ssim, lpips, fid,
    kid (default all), on at most ``quality.num_samples`` pairs (default all) with ``quality``'s
    extractor; ``fidelity.lpips_weights``; ``pairs.data``/``task``/``task_params`` (default the model
    folder's) and ``pairs.sizes``, the sides in px ``speed`` (``speed.rounds``) is timed at."""
    q, fi, pp = quality or Quality(), fidelity or Fidelity(), pairs or Pairs()
    sp = Speed(rounds=5) if speed is True else (speed or None)
    data, task, task_params, metrics = pp.data, pp.task, pp.task_params, q.metrics or I2I_METRICS
    num_samples, features = q.num_samples, q.features()
    lpips_weights, sizes = fi.lpips_weights, tuple(pp.sizes)
    from gankd.metrics import fidelity as fid
    from gankd.sampling import generate

    t0 = time.perf_counter()
    metrics = tuple(m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m)
    bad = [m for m in metrics if m not in I2I_METRICS]
    if bad:
        raise ValueError(f"--metrics: unknown {bad} for an image-to-image model; choose from {', '.join(I2I_METRICS)}")
    if split != "test":
        log.warning("scoring the %s split: reported numbers belong on test", split)
    gen, folder = _load(model, device)
    gen = adapter_for(gen)
    if not gen.is_i2i:
        raise ValueError(f"{model} is a noise-to-image generator: evaluate it without --task")
    pairs = model_pairs(gen, folder, split, data, task, task_params, label=str(model))
    data, task, params = pairs.spec_data, pairs.task, pairs.params
    r = gen.spec.image().shape[-1]
    n = len(pairs) if not num_samples else min(num_samples, len(pairs))
    if n < 1:
        raise ValueError(f"the {split} split of {data} holds no pairs: add images")
    src = pairs.sources[:n].float().div(127.5).sub(1)
    tgt = pairs.images[:n].float().div(127.5).sub(1)
    name = gen.spec.image().name
    out_img = generate(gen, {name: src}, batch_size=32, device=device)
    if not torch.isfinite(out_img).all():
        raise ValueError(f"{model} produced non-finite pixels: its weights are broken; retrain or restore them")
    lpips_fn, lpips_skip = _lpips(metrics, lpips_weights, device)
    result: dict = {
        "schema": "gankd.eval-i2i/1",
        "kind": "eval-i2i",
        "model": portable_path(folder) if folder is not None else type(gen.model).__name__,
        "teacher": None,
        "data": data,
        "task": task,
        "task_params": {k: getattr(params, k) for k in params.__dataclass_fields__},
        "split": split,
        "num_pairs": n,
        "vs_target": _paired_scores(out_img, tgt, lpips_fn),
        "source_vs_target": _paired_scores(src, tgt, lpips_fn),
        "skipped": {},
    }
    if lpips_skip:
        result["skipped"]["lpips"] = lpips_skip
    t_gen = None
    if teacher is not None:
        t_gen, t_folder = _load(teacher, device)
        t_gen = adapter_for(t_gen)
        if not t_gen.is_i2i:
            raise ValueError(f"--teacher {teacher} is a noise-to-image generator; pass the image-to-image teacher")
        t_img = generate(t_gen, {t_gen.spec.image().name: src}, batch_size=32, device=device)
        result["teacher"] = portable_path(t_folder) if t_folder is not None else type(t_gen.model).__name__
        result["teacher_vs_target"] = _paired_scores(t_img, tgt, lpips_fn)
        result["vs_teacher"] = _paired_scores(out_img, t_img, lpips_fn)
        result["psnr_gap_db"] = result["vs_target"]["psnr_db"]["mean"] - result["teacher_vs_target"]["psnr_db"]["mean"]
    dist = [m for m in metrics if m in ("fid", "kid")]
    if dist:
        ref = to_uint8(tgt)
        if not data.startswith("paired:"):  # named after its data, so the extractor is chosen for that domain
            ref = fid.ImageSet(ref, None, f"{data}:{split}", fid.tensor_digest(ref), f"{n} {split} targets ({task})")
        q = fid.fidelity_metrics(to_uint8(out_img), ref, dist, n, None, features, device=device)
        result["distribution"] = {k: v for k, v in q.items() if k in ("fid", "kid_mean", "kid_std")}
        result["protocol"] = q.get("protocol", {})
        if n < SMALL_REFERENCE:
            result.setdefault("warnings", []).append(
                f"FID/KID on {n} test pairs (< {SMALL_REFERENCE}): biased upwards and noisy; compare only "
                "models scored on the same pairs")  # fmt: skip
    result["efficiency"] = {"model": cost_at_sizes(gen, sizes)}
    if t_gen is not None:
        result["efficiency"]["teacher"] = cost_at_sizes(t_gen, sizes)
        result["efficiency"]["mac_ratio"] = {s: result["efficiency"]["teacher"]["macs"][s] / m
                                             for s, m in result["efficiency"]["model"]["macs"].items()}  # fmt: skip
    if sp is not None:  # the adapters as loaded: an imported teacher is timed on its recorded IOSpec
        models = {k: v for k, v in {"teacher": t_gen, "model": gen}.items() if v is not None}
        result["speed"] = speed_by_size(models, [r, *[x for x in sizes if x != r]], sp.rounds, device)
    result["command"] = command
    result["time_s"] = round(time.perf_counter() - t0, 2)
    return result


def summary_lines_i2i(result: dict) -> list[str]:
    """A short printout of :func:`evaluate_i2i`'s result."""

    def trio(d: dict) -> str:
        parts = [f"PSNR {d['psnr_db']['mean']:.2f} dB", f"SSIM {d['ssim']['mean']:.3f}"]
        if "lpips" in d:
            parts.append(f"LPIPS {d['lpips']['mean']:.3f}")
        return ", ".join(parts)

    lines = [f"{'model':<26}{result['model']}",
             f"{'test pairs':<26}{result['num_pairs']} of {result['data']} ({result['task']})",
             f"{'source vs target':<26}{trio(result['source_vs_target'])}",
             f"{'model vs target':<26}{trio(result['vs_target'])}"]  # fmt: skip
    if result.get("teacher"):
        lines += [f"{'teacher vs target':<26}{trio(result['teacher_vs_target'])}",
                  f"{'model vs teacher':<26}{trio(result['vs_teacher'])}",
                  f"{'PSNR gap to teacher':<26}{result['psnr_gap_db']:+.2f} dB"]  # fmt: skip
    d = result.get("distribution")
    if d:
        ex = result.get("protocol", {}).get("extractor", {})
        exname = ex.get("name") if isinstance(ex, dict) else ex
        vals = ", ".join(f"{k} {v:.4g}" for k, v in d.items() if isinstance(v, float) and math.isfinite(v))
        lines.append(f"{'outputs vs targets':<26}{vals} ({exname})")
    eff = result["efficiency"]
    lines.append(f"{'params':<26}{eff['model']['params']:,}")
    for s, m in eff["model"]["macs"].items():
        ratio = eff.get("mac_ratio", {}).get(s)
        lines.append(f"{'MACs @ ' + s + ' px':<26}{m / 1e6:,.1f} M" + (f" ({ratio:.1f}x fewer)" if ratio else ""))
    for s, sp in result.get("speed", {}).items():
        for rt in sp["protocol"]["runtimes"]:
            ms = sp["models"]["model"][rt]["latency"]["median_ms"]
            line = f"{rt} b1 @ {s} px: {ms:.2f} ms"
            if "model" in sp.get("ratios", {}):
                rr = sp["ratios"]["model"][rt]["latency"]
                line += f" ({rr['median']:.2f}x vs teacher, {rr['min']:.2f}-{rr['max']:.2f})"
            lines.append(f"{'speed':<26}{line}")
    for k, v in result.get("skipped", {}).items():
        lines.append(f"{'skipped ' + k:<26}{v}")
    for w in result.get("warnings", []):
        lines.append(f"{'warning':<26}{w}")
    return lines
