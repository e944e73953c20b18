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

import dataclasses
import datetime
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gankd.adapter import adapter_for, spec_summary
from gankd.checkpoint import CONFIG, atomic_write_bytes, load_generator, resolve_model_path
from gankd.config import load_json
from gankd.data import is_fmnist
from gankd.fileio import portable_path
from gankd.metrics.distribution import FIDELITY_METRICS as METRICS
from gankd.metrics.efficiency import Speed

log = logging.getLogger(__name__)

SCHEMA = "gankd.eval/1"


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


def check_counts(**counts: int | None) -> None:
    """Counts given as flags (``num_reference`` = --num-reference, ...) must be >= 1; None = default."""
    for name, v in counts.items():
        if v is not None and v < 1:
            default = " (leave it out for all of the reference)" if name == "num_reference" else ""
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1{default}, got {v}")


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


def model_data(folder: Path | None) -> str | None:
    """The dataset a model folder records (config.json ``data``; a student without one: its
    teacher's), or None."""
    if folder is None or not (folder / CONFIG).is_file():
        return None
    meta = load_json(folder / CONFIG)
    data = meta.get("data") if isinstance(meta, dict) else None
    teacher = teacher_of(folder) if data in (None, "", "none") else None  # data-free: the teacher's data
    if teacher is not None:
        data = load_json(teacher / CONFIG).get("data")
    return None if data in (None, "", "none") else str(data)


REFERENCE_FIRST_SEED = 2_000_000  # a generator as --reference samples seeds 2*10^6.. (disjoint from eval, val)


def teacher_of(folder: Path | None) -> Path | None:
    """The teacher folder a student's config.json records, when it exists, else None."""
    meta = load_json(folder / CONFIG) if folder is not None and (folder / CONFIG).is_file() else None
    if not isinstance(meta, dict) or not meta.get("teacher"):
        return None
    try:
        t = resolve_model_path(meta["teacher"])
    except (FileNotFoundError, ValueError):
        return None
    return t if (t / CONFIG).is_file() else None


def plan_quality(model: nn.Module, folder: Path | None, reference: str | None, extractor: str,
                 evaluator=None, inception_weights=None, num_reference: int | None = None,
                 num_samples: int = 10000, load_reference: bool = True) -> dict:  # fmt: skip
    """Everything the quality metrics need, checked BEFORE any image is generated.

    The reference defaults to the model's own data, test split (``<data>:test``); it must fit
    the model (a colour model is never scored against gray data; a conditional model's class
    count must match the reference's), and is loaded here. The extractor is chosen for the
    domain (:func:`gankd.metrics.fidelity.choose_extractor`); a user's ``evaluator`` must not
    be the model's selection network or the shipped perceptual net. Returns ``{"reference",
    "data", "ref_set", "extractor", "class_net", "class_skip"}``: ``class_net`` is the
    classifier of this domain for class consistency and the evaluator distance (None: skipped,
    ``class_skip`` says why).
    """
    from gankd.checkpoint import WEIGHTS, file_sha256
    from gankd.data import data_info
    from gankd.metrics import fidelity as fid

    ch, res, _ = adapter_for(model).output_shape()
    nc = adapter_for(model).num_classes
    data = model_data(folder)
    name = portable_path(folder) if folder is not None else "the model"
    if reference is None:
        if data:
            reference = f"{data}:test"
        elif (ch, res) == (1, 32):
            log.warning("%s records no data set: scoring against %s (pass --reference)", name, fid.DEFAULT_REFERENCE)
            reference = fid.DEFAULT_REFERENCE
        elif teacher_of(folder) is not None:  # a data-free student: its teacher's samples are the reference
            reference = str(teacher_of(folder))
            log.warning("%s was distilled data-free and no data is recorded: scoring against its teacher's samples "
                        "(%s, seeds %d..); pass --reference for real images", name, portable_path(reference),
                        REFERENCE_FIRST_SEED)  # fmt: skip
        else:
            raise ValueError(f"{name} records no data set: pass --reference (e.g. folder:PATH:test, the held-out "
                             "split of the model's data)")  # fmt: skip
    user_num_reference = num_reference
    auto_inception = extractor == fid.AUTO and not evaluator and _inception_present(inception_weights)
    if extractor == fid.INCEPTION or auto_inception:
        num_reference = num_samples if num_reference is None else num_reference
    if fid.is_generator_dir(reference):  # another generator's samples (e.g. the teacher's) as the reference
        ref_gen = adapter_for(load_generator(reference))
        rch, rres, _ = ref_gen.output_shape()
        if (rch, rres, ref_gen.num_classes) != (ch, res, nc):
            raise ValueError(f"--reference {reference} makes {rch}x{rres}x{rres} images with {ref_gen.num_classes} "
                             f"classes but {name} makes {ch}x{res}x{res} with {nc}: pass the model's teacher")
        ref_data = model_data(Path(reference)) or f"generator:{portable_path(reference)}"
        n_ref = num_samples if num_reference is None else num_reference
        ref_set = (fid.generated_set(ref_gen, n_ref, REFERENCE_FIRST_SEED, name=f"{portable_path(reference)} samples")
                   if load_reference else None)  # fmt: skip
    else:
        ref_data, _ = fid.parse_data_spec(str(reference))
        info = data_info(ref_data)
        if ch == 3 and info.channels == 1:
            raise ValueError(f"--reference {reference} is gray but {name} makes RGB images: pass --reference with "
                             f"the model's data{f' ({data}:test)' if data else ''}")  # fmt: skip
        if nc > 0 and info.num_classes not in (0, nc):
            raise ValueError(f"--reference {reference} has {info.num_classes} classes but {name} is conditional on "
                             f"{nc}: pass --reference with the model's data{f' ({data}:test)' if data else ''}")
        if ch == 1 and info.channels == 3:
            log.warning("the reference %s is colour and the model gray: the reference is converted to gray", reference)
        flag = "--num-reference" if user_num_reference is not None else "--num-samples"
        ref_set = fid.load_image_set(str(reference), res, ch, num_reference, flag=flag) if load_reference else None
    ex = fid.choose_extractor(fid.AUTO if not load_reference else extractor, channels=ch, resolution=res,
                              data=ref_data, evaluator=evaluator, inception_weights=inception_weights)  # fmt: skip
    if ex.kind == "classifier" and evaluator:
        sha = file_sha256(ex.weights / WEIGHTS)
        forbidden = {}
        sel = ((load_json(folder / CONFIG).get("selected_on") or {}) if folder is not None else {})
        if sel.get("net_sha256"):
            forbidden[sel["net_sha256"]] = f"the network {name} was selected with"
        shipped_perc = resolve_model_path("fmnist-perceptual") / WEIGHTS
        if shipped_perc.is_file():
            forbidden[file_sha256(shipped_perc)] = "the shipped perceptual net (training losses only)"
        if sha in forbidden:
            raise ValueError(f"--evaluator {evaluator} is {forbidden[sha]}: scoring with it inflates the numbers; "
                             "pass --evaluator with a classifier trained separately (gankd train-classifier)")
    class_net, class_skip = None, None
    if ex.kind == "classifier" and ex.in_domain:
        class_net = ex.weights
    elif evaluator:
        class_net = fid.resolve_evaluator(evaluator)
    elif fid.fmnist_like(ref_data, ch, res):
        try:
            class_net = fid.resolve_evaluator(None)
        except FileNotFoundError as e:
            class_skip = str(e)
    else:
        class_skip = (f"no classifier of this domain ({ch}x{res}x{res} images of {ref_data}): train one with "
                      f"gankd train-classifier --data {ref_data} and pass --evaluator DIR")  # fmt: skip
    return {"reference": str(reference), "data": ref_data, "ref_set": ref_set, "extractor": ex,
            "class_net": class_net, "class_skip": class_skip}


def _inception_present(path) -> bool:
    from gankd.metrics import fidelity as fid

    try:
        fid.find_inception_weights(path, verify=False)
        return True
    except FileNotFoundError:
        return False


@dataclass
class Quality:
    """What quality is measured and how: ``metrics`` (fid, isc, kid, prc; image-to-image: psnr, ssim,
    lpips, fid, kid; None = the kind's default) on ``num_samples`` images (None: 10,000; image-to-image:
    every test pair) from seeds ``first_seed..``, with the features of ``extractor`` (``auto`` picks for
    the domain; ``evaluator``: a classifier folder of the domain, also for class consistency;
    ``inception_weights``: the Inception-V3 file)."""

    metrics: Sequence[str] | str | None = None
    num_samples: int | None = None
    extractor: str = "auto"
    evaluator: str | Path | None = None
    inception_weights: str | Path | None = None
    first_seed: int = 0
    class_consistency: bool = True
    batch_size: int = 256
    kid_subsets: int = 100
    cache: bool = True

    def features(self):
        """The extractor as :func:`gankd.metrics.fidelity.fidelity_metrics` takes it: a name with its files,
        or the :class:`~gankd.metrics.fidelity.Extractor` already chosen."""
        from gankd.metrics import fidelity as fid

        if isinstance(self.extractor, fid.Extractor):
            return self.extractor
        return fid.Features(self.extractor, self.evaluator, self.inception_weights)


@dataclass
class Reference:
    """What quality is measured against: ``data`` (a split such as ``folder:PATH:test`` or a generator
    folder; None = the test split of the data the model records), ``num_reference`` of its images (None:
    all with a classifier extractor, ``num_samples`` with Inception), and the real-data floor under the
    same protocol (``real_floor``)."""

    data: str | None = None
    num_reference: int | None = None
    real_floor: bool = False


@dataclass
class Fidelity:
    """Fidelity to the teacher on the same inputs: ``teacher_samples`` samples, LPIPS when its trunk
    exists (``lpips``: auto, True to require it, False to skip; ``lpips_weights``: the trunk file)."""

    teacher_samples: int = 1000
    lpips: str | bool = "auto"
    lpips_weights: str | Path | None = None


@dataclass
class Pairs:
    """Image-to-image generators: the pairs they are scored on (``data``, ``task``, ``task_params``;
    None = the model folder's) and the sizes in px their speed is timed at."""

    data: str | None = None
    task: str | None = None
    task_params: dict | None = None
    sizes: tuple[int, ...] = (256, 512)


def evaluate(
    model_dir,
    teacher=None,
    *,
    quality: Quality | None = None,
    reference: Reference | str | None = None,
    fidelity: Fidelity | None = None,
    speed: Speed | bool | None = None,
    pairs: Pairs | None = None,
    device: str = "cpu",
    role: str | None = None,
    command: str | None = None,
) -> dict:
    """Evaluate a generator (folder or module) and return a JSON-able dict. The options come in groups
    (:class:`Quality`, :class:`Reference`, :class:`Fidelity`, :class:`Speed`; ``speed`` None or False:
    not timed; ``reference`` may be a plain spec string). An image-to-image generator (its adapter
    takes a source image) is scored by :func:`gankd.evaluate_i2i.evaluate_i2i` on :class:`Pairs`.

    Quality: ``metrics`` from fid, isc, kid, prc on ``num_samples`` images (seeds
    ``first_seed..``, class-balanced labels) against ``reference`` (default the test split
    of the data the model records; all of it, or ``num_samples`` random images with
    Inception unless ``num_reference`` says otherwise), features from ``extractor``
    (``auto`` chooses for the domain: see :func:`gankd.metrics.fidelity.choose_extractor`).
    Reference, extractor and their fit to the model are checked before any image is
    generated (:func:`plan_quality`).
    Class consistency (conditional models): accuracy of a classifier of the domain (the
    evaluator) vs the conditioning class; skipped, with the reason, without one.
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
    from gankd.evaluate_i2i import is_i2i_model

    q, fi = quality or Quality(), fidelity or Fidelity()
    ref = reference if isinstance(reference, Reference) else Reference(reference)
    sp = Speed() if speed is True else (speed or None)
    if is_i2i_model(model_dir):
        return _evaluate_pairs(model_dir, teacher, q, fi, sp, pairs or Pairs(), device, command)
    t_start = time.perf_counter()
    q = dataclasses.replace(q, num_samples=10000 if q.num_samples is None else q.num_samples,
                            metrics=parse_metrics(q.metrics))  # fmt: skip
    _check_options(q, ref, fi, sp or Speed())
    if command is None:
        command = _call_repr("gankd.evaluate.evaluate", _path_or_name(model_dir), metrics=list(q.metrics),
                             num_samples=q.num_samples, extractor=q.extractor, reference=ref.data,
                             speed=sp is not None,
                             teacher=None if teacher is None else _path_or_name(teacher))  # fmt: skip
    model, folder = _load(model_dir, device)
    nc = adapter_for(model).num_classes
    plan = None
    if q.metrics or (q.class_consistency and nc > 0) or teacher is not None:
        plan = plan_quality(model, folder, ref.data, q.extractor, q.evaluator, q.inception_weights,
                            ref.num_reference, q.num_samples, load_reference=bool(q.metrics))  # fmt: skip
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
    images = _quality(result, timings, model, plan, q, device) if q.metrics else None
    if q.class_consistency and nc > 0:
        _class_consistency(result, timings, model, plan, q, images, device)
    teacher_model = None if teacher is None else _load(teacher, device)[0]
    if teacher is not None:
        _teacher_fidelity(result, timings, model, teacher_model, plan, q, fi, device)
    _cost(result, timings, model, folder, sp, teacher_model, device)
    if ref.real_floor and q.metrics:
        ch, res, _ = adapter_for(model).output_shape()
        result["real_floor"] = real_floor(
            plan["ref_set"], quality=dataclasses.replace(q, extractor=plan["extractor"]),
            num_reference=ref.num_reference, resolution=res, channels=ch, class_net=plan["class_net"], device=device,
            command=command,
        )  # fmt: skip
    result["command"] = command
    result["gankd_version"] = _version()
    result["created_utc"] = _now()
    timings["total_s"] = round(time.perf_counter() - t_start, 3)
    result["timings"] = timings
    return result


def _evaluate_pairs(model_dir, teacher, q: Quality, fi: Fidelity, sp: Speed | None, pp: Pairs, device: str,
                    command: str | None) -> dict:  # fmt: skip
    """An image-to-image generator: :func:`gankd.evaluate_i2i.evaluate_i2i`, with the same option groups."""
    from gankd.evaluate_i2i import evaluate_i2i

    return evaluate_i2i(model_dir, teacher, quality=q, fidelity=fi, speed=sp, pairs=pp, device=device,
                        command=command)  # fmt: skip


def _check_options(q: Quality, ref: Reference, fi: Fidelity, sp: Speed) -> None:
    """Every option checked (and the weights the metrics need found) before any work."""
    from gankd.metrics import fidelity as fid

    if q.extractor not in fid.EXTRACTORS:
        raise ValueError(f"--extractor {q.extractor!r} is unknown; choose one of: {', '.join(fid.EXTRACTORS)}")
    if q.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {q.num_samples}")
    check_counts(num_reference=ref.num_reference, big_batch=sp.big_batch, teacher_samples=fi.teacher_samples)
    if q.extractor == fid.INCEPTION and q.metrics:
        fid.find_inception_weights(q.inception_weights)  # fail before any work
    if fi.lpips is True:
        fid.lpips_distance(trunk_weights=fi.lpips_weights)  # raises with the fix when absent


def _quality(result: dict, timings: dict, model: nn.Module, plan: dict, q: Quality, device: str):
    """FID/IS/KID/PR of ``q.num_samples`` generated images against the plan's reference; returns the images."""
    from gankd.metrics import fidelity as fid

    t = time.perf_counter()
    images = fid.generated_set(model, q.num_samples, q.first_seed, q.batch_size, device,
                               name=result["model"] or "generator")  # fmt: skip
    timings["generate_s"] = round(time.perf_counter() - t, 3)
    scores = fid.fidelity_metrics(images, plan["ref_set"], q.metrics, q.num_samples, None, plan["extractor"],
                                  q.batch_size, device, q.cache, kid_subsets=q.kid_subsets)  # fmt: skip
    result["protocol"] = scores.pop("protocol")
    timings["fidelity_s"] = scores.pop("time_s")
    result["quality"] = scores
    return images


def _class_consistency(result: dict, timings: dict, model: nn.Module, plan: dict, q: Quality, images,
                       device: str) -> None:  # fmt: skip
    from gankd.metrics import fidelity as fid

    t = time.perf_counter()
    if plan["class_net"] is None:
        result["class_consistency"] = {"skipped": plan["class_skip"]}
    else:
        try:
            result["class_consistency"] = fid.class_consistency(model, q.num_samples, plan["class_net"],
                                                                q.first_seed, q.batch_size, device, images=images)
        except FileNotFoundError as e:
            result["class_consistency"] = {"skipped": str(e)}
    timings["class_consistency_s"] = round(time.perf_counter() - t, 3)


def _teacher_fidelity(result: dict, timings: dict, model: nn.Module, teacher_model: nn.Module, plan: dict,
                      q: Quality, fi: Fidelity, device: str) -> None:  # fmt: skip
    """PSNR and the perceptual distances to the teacher on the same inputs (a distance whose network is
    missing or of another domain: None with the reason)."""
    from gankd.metrics import fidelity as fid

    t = time.perf_counter()
    distances: dict = {}
    skipped: dict = {}
    try:
        if plan["class_net"] is None:  # features of a network of another domain mean nothing here
            raise FileNotFoundError(plan["class_skip"])
        distances["evaluator_lpips_style"] = fid.evaluator_distance(plan["class_net"], device)
    except FileNotFoundError as e:
        skipped["evaluator_lpips_style"] = str(e)
    if fi.lpips is not False:
        try:
            distances["lpips"] = fid.lpips_distance(trunk_weights=fi.lpips_weights, device=device)
        except FileNotFoundError as e:
            skipped["lpips"] = str(e)
    tf = fid.teacher_fidelity(model, teacher_model, fi.teacher_samples, distances, q.first_seed, q.batch_size,
                              device)  # fmt: skip
    tf.update(tf.pop("distances"))
    for k, why in skipped.items():
        tf[k] = None
        tf[f"{k}_skipped"] = why
    if "lpips" in distances:
        tf["lpips_net"] = distances["lpips"].name
    result["teacher_fidelity"] = tf
    timings["teacher_fidelity_s"] = round(time.perf_counter() - t, 3)


def _cost(result: dict, timings: dict, model: nn.Module, folder: Path | None, sp: Speed | None,
          teacher_model: nn.Module | None, device: str) -> None:  # fmt: skip
    """Params, MACs, bytes, memory and (``sp``) measured speed, interleaved with the teacher when there is one."""
    from gankd.metrics import efficiency as eff

    t = time.perf_counter()
    result["efficiency"] = eff.efficiency(model, folder, sp, device=device, reference=teacher_model)
    result["fingerprint"] = result["efficiency"].pop("fingerprint")
    timings["efficiency_s"] = round(time.perf_counter() - t, 3)


def real_split_for(reference: str) -> str:
    """The real images a floor compares with ``reference``: Fashion-MNIST's train split, or the
    same dataset's ``fit`` split (disjoint from its val and test splits)."""
    from gankd.metrics import fidelity as fid

    name, _ = fid.parse_data_spec(reference)
    return "fashion-mnist:train" if is_fmnist(name) else f"{name}:fit"


def real_floor(
    reference="fashion-mnist:test",
    real: str | None = None,
    *,
    quality: Quality | None = None,
    num_reference: int | None = None,
    resolution: int | None = None,
    channels: int | None = None,
    seed: int = 0,
    class_net: str | Path | None = None,
    device: str = "cpu",
    command: str | None = None,
) -> dict:
    """Quality of real images under the generator protocol: ``quality.num_samples`` (default 10,000)
    random images of ``real`` (fixed subset, ``seed``; all of it when it holds fewer) scored against
    ``reference`` (a data spec or a loaded :class:`~gankd.metrics.fidelity.ImageSet`) with
    ``quality``'s metrics, extractor, batch size and cache, plus a domain classifier's accuracy on
    them (the class-consistency ceiling; ``class_net``, else ``quality.evaluator``). ``real``
    defaults to :func:`real_split_for` (a folder: its fit split against its test split);
    ``resolution`` and ``channels`` to the reference data's. Same keys as :func:`evaluate`."""
    from gankd.data import data_info
    from gankd.metrics import efficiency as eff
    from gankd.metrics import fidelity as fid

    q = quality or Quality()
    num_samples, metrics, extractor = 10000 if q.num_samples is None else q.num_samples, q.metrics, q.extractor
    evaluator = q.evaluator
    t0 = time.perf_counter()
    metrics = parse_metrics(metrics)
    if not metrics:
        raise ValueError("the real floor needs at least one of --metrics fid,isc,kid,prc")
    check_counts(num_samples=num_samples, num_reference=num_reference)
    ref_name = reference.name if isinstance(reference, fid.ImageSet) else str(reference)
    real = real or real_split_for(ref_name)
    if resolution is None or channels is None:
        info = data_info(fid.parse_data_spec(ref_name)[0])
        resolution = info.resolution if resolution is None else resolution
        channels = info.channels if channels is None else channels
    if command is None:
        command = _call_repr("gankd.evaluate.real_floor", ref_name, real=real, num_samples=num_samples,
                             metrics=list(metrics), extractor=getattr(extractor, "name", extractor))  # fmt: skip
    if num_reference is None and getattr(extractor, "kind", extractor) in (fid.INCEPTION, "inception"):
        num_reference = num_samples
    full = fid.load_image_set(real, resolution, channels)
    n = min(num_samples, len(full))
    if n < num_samples:
        log.warning("real floor: %s holds %d images, fewer than --num-samples %d: all of them are used",
                    real, len(full), num_samples)  # fmt: skip
    images = fid.load_image_set(real, resolution, channels, n, seed) if n < len(full) else full
    q = fid.fidelity_metrics(
        images,
        reference,
        metrics,
        n,
        num_reference,
        q.features(),
        q.batch_size,
        device,
        q.cache,
        kid_subsets=q.kid_subsets,
    )
    result: dict = {
        "schema": SCHEMA,
        "kind": "real-floor",
        "name": f"real floor ({images.name} vs {ref_name})",
        "model": None,
        "role": "floor",
        "protocol": q.pop("protocol"),
    }
    q.pop("time_s")
    result["quality"] = q
    if images.labels is not None:
        data = fid.parse_data_spec(ref_name)[0]
        if class_net is None and evaluator:
            class_net = evaluator
        elif class_net is None and fid.fmnist_like(data, channels, resolution):
            class_net = fid.default_evaluator_dir()
        try:
            if class_net is None:
                raise FileNotFoundError(f"no classifier of this domain ({data}): train one with gankd "
                                        f"train-classifier --data {data} and pass --evaluator DIR")  # fmt: skip
            from gankd.checkpoint import load_classifier

            clf = load_classifier(fid.resolve_evaluator(class_net), map_location=device)
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
