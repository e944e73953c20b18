"""Reduced-precision ONNX generators (fp16, int8) and the quality gate they must pass.

- **fp16**: ONNX Runtime's float16 converter, inputs and output kept float32 (casts at the
  edges), so the file runs where the fp32 one does.
- **int8**: ONNX Runtime's static quantization in the QDQ format, weights per output channel
  (symmetric int8), activations int8 with ranges calibrated on the generator's own activations
  (``calibration`` batches of seeded inputs; image-to-image: the val split's source images). Only Conv, MatMul and
  Gemm are quantized: the CPU execution provider fuses a QDQ Conv into an int8 kernel, but it has
  none for ConvTranspose, so a quantized ConvTranspose would run as dequantize, fp32
  ConvTranspose, quantize (slower, not faster). The export therefore rewrites each ConvTranspose
  that grows by its stride into the same function made of a Conv and a DepthToSpace
  (:class:`gankd.models.layers.SubPixelConvTranspose`), which quantizes; any other stays fp32,
  and the report says which and why.
- :func:`op_report`: which compute ops run in int8 / fp16 / fp32, and why.
- :func:`quality_gate`: the reduced model against its fp32 self under gankd's protocol: FID of
  both against the same reference (the data's test split the model records, else the fp32
  model's own samples from disjoint seeds) with the domain's extractor, and PSNR/SSIM of the
  reduced images to the fp32 ones (and, for a student, to its teacher's) on the same inputs;
  ``passed`` when the FID rises by at most ``max_fid_rise`` (a fraction of the fp32 FID, or of
  0.01 when that is smaller). Image-to-image generators are scored on their test pairs as
  ``gankd eval`` scores them: FID of the outputs against the targets, PSNR to the targets, and
  the reduced outputs against the fp32 ones on the same source images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from gankd.fileio import portable_path
from gankd.registry import Registry

log = logging.getLogger(__name__)

FID_FLOOR = 0.01  # the rise is relative to max(FID fp32, this): a near-zero FID gives no meaningful ratio
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
WHY_FP32 = {
    "ConvTranspose": "the CPU execution provider has no int8 ConvTranspose kernel (QDQ would run dequantize, "
                     "fp32 ConvTranspose, quantize); gankd export rewrites one that grows by its stride "
                     "(output = stride x input) as Conv + DepthToSpace, which quantizes (--convtranspose rewrite; auto "
                     "when that runs faster): these were kept or do not qualify",
}  # fmt: skip


def _load(path: Path):
    import onnx

    return onnx.load(str(path))  # external data beside it is read in


def to_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(_load(src), keep_io_types=True)
    onnx.save(model, str(dst))


class _Batches:
    """ONNX Runtime's CalibrationDataReader over a list of input feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def to_int8(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """Static QDQ quantization of Conv/MatMul/Gemm, per-channel int8 weights, calibrated on ``feeds``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    single = dst.with_name(dst.stem + ".fp32-single.onnx")  # the quantizer reads one self-contained file
    onnx.save(_load(src), str(single))
    root = logging.getLogger()
    root.addFilter(_no_preprocess_hint)
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # the calibration sessions' graph clean-up notes: errors only
    try:
        quantize_static(str(single), str(dst), _Batches(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QInt8,
                        op_types_to_quantize=list(QUANTIZED_OPS),
                        calibrate_method=CalibrationMethod.MinMax)  # fmt: skip
    finally:
        root.removeFilter(_no_preprocess_hint)
        single.unlink(missing_ok=True)


def _no_preprocess_hint(record: logging.LogRecord) -> bool:
    """The quantizer's advice to run its shape-inference pre-processing (on the root logger): gankd's graphs
    come from the exporter with shapes inferred, so the hint is noise in every export."""
    return "pre-processing before quantization" not in record.getMessage()


def op_report(path: Path) -> dict:
    """Per compute op type: how many run int8 (weights through DequantizeLinear), fp16, fp32; the reasons."""
    model = _load(path)
    producers = {o: n for n in model.graph.node for o in n.output}
    init_types = {i.name: i.data_type for i in model.graph.initializer}
    counts: dict[str, dict[str, int]] = {}
    for n in model.graph.node:
        if n.op_type not in COMPUTE_OPS:
            continue
        w = n.input[1] if len(n.input) > 1 else ""
        src = producers.get(w)
        if src is not None and src.op_type == "DequantizeLinear":
            kind = "int8"
        elif init_types.get(w) == 10 or (src is not None and src.op_type == "Cast"):  # 10 = FLOAT16
            kind = "fp16"
        else:
            kind = "fp32"
        counts.setdefault(n.op_type, {"int8": 0, "fp16": 0, "fp32": 0})[kind] += 1
    why = {op: WHY_FP32[op] for op, c in counts.items() if c["fp32"] and op in WHY_FP32}
    out = {"ops": counts, "why_fp32": why, "bytes": _bytes(path)}
    if any(c["fp16"] for c in counts.values()):
        out["note"] = ("fp16 weights (half the bytes); ONNX Runtime's CPU execution provider computes an op in fp32 "
                       "between casts where it has no fp16 kernel, so on CPU expect fp32 speed; fp16 pays off on GPUs")
    return out


def _bytes(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


@torch.no_grad()
def quality_gate(generator, run, folder: Path | None, max_fid_rise: float, num_samples: int = 2000,
                 batch: int = 100, device: str = "cpu") -> dict:  # fmt: skip
    """FID of the reduced model (``run``: positional inputs -> image) and of the fp32 ``generator``
    against one reference and extractor; PSNR/SSIM reduced vs fp32. ``passed``: FID rise <= the limit."""
    from gankd.adapter import adapter_for
    from gankd.checkpoint import load_generator
    from gankd.data import to_uint8
    from gankd.evaluate import REFERENCE_FIRST_SEED, model_data, teacher_of
    from gankd.metrics import fidelity as fid
    from gankd.metrics.fidelity import generate_uint8, psnr, ssim

    gen = adapter_for(generator)
    t_folder = teacher_of(folder)
    teacher = adapter_for(load_generator(t_folder)).eval() if t_folder is not None else None
    if gen.is_i2i:
        return _i2i_gate(gen, run, folder, teacher, t_folder, max_fid_rise, num_samples, batch)
    full, _ = generate_uint8(generator, num_samples, 0, batch, device)
    reduced, psnrs, ssims, t_psnrs, t_ssims = [], [], [], [], []
    for i in range(0, num_samples, batch):
        args = gen.example_inputs(min(batch, num_samples - i), first_seed=i)
        a = gen.call_positional(*args).float().clamp(-1, 1)
        b = run(*args).float().clamp(-1, 1)
        reduced.append(to_uint8(b))
        psnrs.append(float(psnr(b, a).sum()))
        ssims.append(float(ssim(b, a).sum()))
        if teacher is not None:  # the reduced student against the teacher on the same inputs
            t = teacher.call_positional(*args).float().clamp(-1, 1)
            t_psnrs.append(float(psnr(b, t).sum()))
            t_ssims.append(float(ssim(b, t).sum()))
    reduced_u8 = torch.cat(reduced)
    data = model_data(folder)
    c, r, _ = gen.output_shape()
    if data:
        reference, ref_desc = f"{data}:test", f"{data}:test"
    else:  # no data recorded: the fp32 model's own samples from disjoint seeds
        reference = generate_uint8(generator, num_samples, REFERENCE_FIRST_SEED, batch, device)[0]
        ref_desc = f"the fp32 model's samples, seeds {REFERENCE_FIRST_SEED}.."
    ex = fid.choose_extractor(fid.AUTO, channels=c, resolution=r, data=data)
    f32 = fid.fidelity_metrics(full, reference, ("fid",), num_samples, extractor=ex, cache=False)["fid"]
    fq = fid.fidelity_metrics(reduced_u8, reference, ("fid",), num_samples, extractor=ex, cache=False)["fid"]
    rise = (fq - f32) / max(f32, FID_FLOOR)
    return {"fid_fp32": f32, "fid_reduced": fq, "fid_rise": rise, "max_fid_rise": max_fid_rise,
            "passed": bool(rise <= max_fid_rise), "psnr_to_fp32_db": sum(psnrs) / num_samples,
            "ssim_to_fp32": sum(ssims) / num_samples, "num_samples": num_samples, "reference": ref_desc,
            "teacher": portable_path(t_folder) if t_folder is not None else None,
            "psnr_to_teacher_db": sum(t_psnrs) / num_samples if t_psnrs else None,
            "ssim_to_teacher": sum(t_ssims) / num_samples if t_ssims else None,
            "extractor": ex.info()}  # fmt: skip


@torch.no_grad()
def _i2i_gate(gen, run, folder: Path | None, teacher, t_folder: Path | None, max_fid_rise: float, num_samples: int,
              batch: int) -> dict:  # fmt: skip
    """:func:`quality_gate` of an image-to-image generator, on at most ``num_samples`` of its test pairs."""
    from gankd.data import to_uint8
    from gankd.evaluate_i2i import model_pairs
    from gankd.metrics import fidelity as fid
    from gankd.metrics.fidelity import psnr, ssim

    try:
        pairs = model_pairs(gen, folder, "test", label=str(folder or "the generator"))
    except ValueError as e:
        if "records no data" not in str(e):
            raise
        raise ValueError(f"the quality gate scores an image-to-image model on the test pairs of its data, and "
                         f"{folder or 'this generator'} records none: export with --gate-samples 0 (no gate) or "
                         "distil it on data first") from None  # fmt: skip
    n = min(num_samples, len(pairs))
    src = pairs.sources[:n].float().div(127.5).sub(1)
    tgt = pairs.images[:n].float().div(127.5).sub(1)
    outs: dict[str, list[torch.Tensor]] = {"fp32": [], "reduced": [], "teacher": []}
    for i in range(0, n, batch):
        s = src[i : i + batch]
        outs["fp32"].append(gen.call_positional(s).float().clamp(-1, 1))
        outs["reduced"].append(run(s).float().clamp(-1, 1))
        if teacher is not None:
            outs["teacher"].append(teacher.call_positional(s).float().clamp(-1, 1))
    a, b = torch.cat(outs["fp32"]), torch.cat(outs["reduced"])
    ref_u8 = to_uint8(tgt)
    ref = fid.ImageSet(ref_u8, None, f"{pairs.spec_data}:test", fid.tensor_digest(ref_u8), f"{n} test targets")
    ex = fid.choose_extractor(fid.AUTO, channels=ref_u8.shape[1], resolution=ref_u8.shape[-1],
                              data=fid.data_name(ref))  # fmt: skip
    f32 = fid.fidelity_metrics(to_uint8(a), ref, ("fid",), n, extractor=ex, cache=False)["fid"]
    fq = fid.fidelity_metrics(to_uint8(b), ref, ("fid",), n, extractor=ex, cache=False)["fid"]
    rise = (fq - f32) / max(f32, FID_FLOOR)
    t = torch.cat(outs["teacher"]) if teacher is not None else None
    return {"fid_fp32": f32, "fid_reduced": fq, "fid_rise": rise, "max_fid_rise": max_fid_rise,
            "passed": bool(rise <= max_fid_rise), "psnr_to_fp32_db": float(psnr(b, a).mean()),
            "ssim_to_fp32": float(ssim(b, a).mean()), "num_samples": n,
            "reference": f"{n} test pairs of {pairs.spec_data} ({pairs.task}): outputs against targets",
            "psnr_to_target_db": {"fp32": float(psnr(a, tgt).mean()), "reduced": float(psnr(b, tgt).mean())},
            "teacher": portable_path(t_folder) if t_folder is not None else None,
            "psnr_to_teacher_db": float(psnr(b, t).mean()) if t is not None else None,
            "ssim_to_teacher": float(ssim(b, t).mean()) if t is not None else None,
            "extractor": ex.info()}  # fmt: skip


def calibration_feeds(generator, folder: Path | None, batches: int = 8, batch: int = 16):
    """``(feeds, description)``: int8 calibration inputs (a function giving ``batches`` feeds of ``batch``
    inputs each, by input name). Noise-to-image: seeded latents (and balanced labels) from seeds
    10,000..; image-to-image: the source images of the val split the model folder records (seeded
    stand-ins, said so, when it records none)."""
    from gankd.adapter import adapter_for

    gen = adapter_for(generator)
    names = gen.input_names
    if gen.is_i2i and folder is not None:
        from gankd.evaluate_i2i import model_pairs

        try:
            pairs = model_pairs(gen, folder, "val")
        except (ValueError, FileNotFoundError) as e:
            log.warning("int8 calibration on stand-in source images: %s", e)
        else:
            src = pairs.sources[: batches * batch].float().div(127.5).sub(1)
            return ((lambda: [{names[0]: src[i : i + batch].numpy()} for i in range(0, len(src), batch)]),
                    f"{len(src)} val source images of {pairs.spec_data} ({pairs.task})")  # fmt: skip
    kind = "seeded stand-in source images" if gen.is_i2i else "seeded inputs"
    return ((lambda: [{n: a.numpy() for n, a in zip(names, gen.example_inputs(batch, first_seed=10_000 + batch * i))}
                      for i in range(batches)]), f"{batches * batch} {kind}, seeds 10000..")  # fmt: skip


# ONNX precisions of ``gankd export --precision``: name -> converter(fp32 file, destination, feeds) where
# feeds() gives calibration inputs (called only by converters that calibrate); fp32 converts nothing.
PRECISIONS = Registry("export precision", ordered=True)
PRECISIONS.add("fp32", None)
PRECISIONS.add("fp16", lambda src, dst, feeds: to_fp16(src, dst))
PRECISIONS.add("int8", lambda src, dst, feeds: to_int8(src, dst, feeds()))

__all__ = ["PRECISIONS", "calibration_feeds", "to_fp16", "to_int8", "op_report", "quality_gate"]
