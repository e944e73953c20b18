"""Export a generator to ONNX or TorchScript with a dynamic batch, and check parity with eager.

Exported graph inputs are the generator's own, named and ordered by its IOSpec (see
``gankd.adapter``): for gankd's families ``z`` float32 (B, z_dim) and, for class-conditional
models, ``y`` int64 (B,); for an imported generator e.g. ``z`` (B, 100, 1, 1). Output
``image`` float32 (B, C, H, W) in [-1, 1] (the output range is mapped inside the graph).
B is dynamic.

ONNX goes through ``torch.onnx.export(..., dynamo=True)``; weights land in an external
``<name>.onnx.data`` file beside the model. TorchScript goes through ``torch.jit.trace``.
Files are written to a temporary folder, checked against eager PyTorch on fixed seeds,
and only then moved into place, so a failed export never replaces a good one. A small
``<name>.json`` sidecar records the inputs for users running the file without gankd.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gankd.adapter import GeneratorAdapter, PositionalGenerator, adapter_for
from gankd.checkpoint import atomic_write_bytes, load_generator, resolve_model_path
from gankd.fileio import check_out_file
from gankd.registry import Registry

FORMATS = Registry("export format", ordered=True)  # filled below: ExportFormat per name (the first is the default)
PARITY_BATCHES = (1, 3, 8)


GeneratorForExport = PositionalGenerator  # the exported module: positional inputs in IOSpec order


def example_inputs(generator: nn.Module, batch: int, first_seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Fixed positional inputs from seeds first_seed.. (e.g. ``(z,)`` or ``(z, y)``, y balanced;
    a stand-in source image for image-to-image generators)."""
    return adapter_for(generator).example_inputs(batch, first_seed=first_seed)


def _as_generator(folder_or_model) -> tuple[GeneratorAdapter, Path | None]:
    if isinstance(folder_or_model, nn.Module):
        return adapter_for(copy.deepcopy(folder_or_model).cpu().eval()), None
    folder = resolve_model_path(folder_or_model)  # a shipped name reads its folder's records too
    return adapter_for(load_generator(folder).eval()), folder


def default_export_path(folder: str | Path, format: str) -> Path:
    """``<model folder>/export/generator.onnx`` (or ``.pt``)."""
    return Path(folder) / "export" / f"generator{FORMATS.get(format).suffix}"


def per_sample_conv2d(x: torch.Tensor, weight: torch.Tensor, bias, stride, padding, dilation, groups) -> torch.Tensor:
    """``F.conv2d(x, weight, groups=B)`` of a batch folded into channels (x ``(1, B*Cin, H, W)``, weight
    ``(B*Cout, Cin, kh, kw)``: StyleGAN2's modulated convolution) as ``kh*kw`` batched matmuls over
    shifted slices, the same numbers with ``B`` free: an ONNX Conv takes its group count as a constant."""
    b = groups
    cin, kh, kw = weight.shape[1], weight.shape[2], weight.shape[3]
    cout = weight.shape[0] // b
    sh, sw = (stride, stride) if isinstance(stride, int) else tuple(stride)
    ph, pw = (padding, padding) if isinstance(padding, int) else tuple(padding)
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    h, w = x.shape[-2], x.shape[-1]
    xb = torch.nn.functional.pad(x.reshape(b, cin, h, w), (pw, pw, ph, ph))
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    wb = weight.reshape(b, cout, cin, kh, kw)
    out = None
    for i in range(kh):
        for j in range(kw):
            patch = xb[:, :, i * dh: i * dh + (ho - 1) * sh + 1: sh, j * dw: j * dw + (wo - 1) * sw + 1: sw]
            term = torch.matmul(wb[:, :, :, i, j], patch.reshape(b, cin, ho * wo))
            out = term if out is None else out + term
    out = out.reshape(1, b * cout, ho, wo)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


class PerSampleConvs(torch.overrides.TorchFunctionMode):
    """While exporting: a 2-D convolution whose group count follows the (symbolic) batch runs as
    :func:`per_sample_conv2d`; every other call is left alone."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.nn.functional.conv2d, torch.conv2d):
            names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
            defaults = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
            a = {**defaults, **dict(zip(names, args)), **kwargs}
            if isinstance(a["groups"], torch.SymInt) and not isinstance(a["padding"], str):
                return per_sample_conv2d(a["input"], a["weight"], a["bias"], a["stride"], a["padding"],
                                         a["dilation"], a["groups"])  # fmt: skip
        return func(*args, **kwargs)


def _export_onnx(wrapper: GeneratorForExport, path: Path, opset: int | None) -> None:
    args = example_inputs(wrapper.gen, 2)
    batch = torch.export.Dim("batch", min=1)
    names = wrapper.gen.input_names
    # image inputs (fully convolutional image-to-image generators): height and width dynamic too,
    # with whatever divisibility the model needs inferred by the exporter
    auto = torch.export.Dim.AUTO
    dyn = (tuple({0: batch, 2: auto, 3: auto} if s.kind == "image" else {0: batch}
                 for s in wrapper.gen.spec.inputs),)  # forward(*args): one entry, the args tuple  # fmt: skip
    with warnings.catch_warnings(), PerSampleConvs():
        warnings.simplefilter("ignore")  # exporter chatter (axis renames, deprecations)
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            dynamo=True,
            input_names=names,
            output_names=["image"],
            dynamic_shapes=dyn,
            external_data=True,
            opset_version=opset,
            verbose=False,
        )


def _export_torchscript(wrapper: GeneratorForExport, path: Path, opset: int | None = None) -> None:  # no opset
    args = example_inputs(wrapper.gen, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit deprecation + shape-check tracer warnings
        traced = torch.jit.trace(wrapper, args, check_trace=False)
        traced.save(str(path))


def _load_onnx(path: Path, threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: graph clean-up notes (unused initializers) are not the user's concern
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    specs = sess.get_inputs()

    def run(*args: torch.Tensor) -> torch.Tensor:
        feed = {}
        for spec, a in zip(specs, args):
            if a is None:
                continue
            feed[spec.name] = a.to(torch.int64).numpy() if "int" in spec.type else a.float().numpy()
        return torch.from_numpy(sess.run(None, feed)[0])

    run.session = sess
    return run


def _load_torchscript(path: Path, threads: int | None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")

    @torch.no_grad()
    def run_ts(*args: torch.Tensor) -> torch.Tensor:
        return module(*[a for a in args if a is not None])

    return run_ts


@dataclass(frozen=True)
class ExportFormat:
    """One file format of ``gankd export``: its suffix, its writer (positional wrapper, path,
    opset) and its loader (path, threads) -> ``f(*inputs) -> image``."""

    suffix: str
    write: Callable[[GeneratorForExport, Path, int | None], None]
    load: Callable[[Path, int | None], Callable]


FORMATS.add("onnx", ExportFormat(".onnx", _export_onnx, _load_onnx))
FORMATS.add("torchscript", ExportFormat(".pt", _export_torchscript, _load_torchscript))


def load_exported(path: str | Path, format: str | None = None, threads: int | None = None):
    """A callable ``f(*inputs) -> image`` (torch tensors in IOSpec order in, torch tensor out)."""
    path = Path(path)
    if format is None:
        format = next((n for n in FORMATS if FORMATS.get(n).suffix == path.suffix), "torchscript")
    return FORMATS.get(format).load(path, threads)


@torch.no_grad()
def parity(generator: nn.Module, exported, batches=PARITY_BATCHES) -> float:
    """Max abs difference between eager and exported outputs over fixed seeds at several batch sizes."""
    worst = 0.0
    gen = adapter_for(generator)
    for b in batches:
        args = example_inputs(gen, b, first_seed=100 * b)
        ref = gen.call_positional(*args)
        got = exported(*args)
        if got.shape != ref.shape:
            raise ValueError(
                f"exported model returned {tuple(got.shape)} for batch {b}, eager {tuple(ref.shape)}"
            )
        worst = max(worst, float((got.float() - ref.float()).abs().max()))
    return worst


def _reduce(fp32_file: Path, precision: str, feeds) -> Path:
    """The fp32 ONNX file converted to ``precision`` in place (one self-contained file); ``feeds()``: the
    calibration inputs (int8)."""
    from gankd import precision as prec

    dst = fp32_file.with_name(fp32_file.stem + f".{precision}.onnx")
    prec.PRECISIONS.get(precision)(fp32_file, dst, feeds)
    for f in list(fp32_file.parent.iterdir()):
        if f != dst:
            f.unlink()
    return dst.rename(fp32_file)


class GateRefused(ValueError):
    """A reduced-precision export whose FID rose past ``--max-fid-rise`` (``.gate``: the gate's numbers)."""

    def __init__(self, gate: dict, message: str):
        super().__init__(message)
        self.gate = gate


def _reduced_record(generator: GeneratorAdapter, folder: Path | None, fp32_file: Path, precision: str,
                    max_fid_rise: float, gate_samples: int, fp32_run=None) -> dict:  # fmt: skip
    """Convert, compare with the fp32 file (ops, outputs, quality gate, latency); refuse a failed gate.
    ``fp32_run``: the fp32 model to time against when ``fp32_file`` is a rewritten form of it."""

    from gankd import precision as prec

    rewritten = fp32_run is not None
    if fp32_run is None:  # the session holds the model: the file may go
        fp32_run = load_exported(fp32_file, "onnx", threads=1)
    feeds, calibration = prec.calibration_feeds(generator, folder)
    path = _reduce(fp32_file, precision, feeds)
    run = load_exported(path, "onnx", threads=1)
    worst = parity(generator, run)
    gate = None
    if gate_samples > 0:
        gate = prec.quality_gate(generator, run, folder, max_fid_rise, gate_samples)
        if not gate["passed"]:
            raise GateRefused(gate, f"the {precision} model's FID rises {100 * gate['fid_rise']:.1f}% over fp32 "
                             f"({gate['fid_fp32']:.3g} -> {gate['fid_reduced']:.3g}) > --max-fid-rise "
                             f"{max_fid_rise:g}; nothing was written. Try --precision fp16, distil the student "
                             "through the int8 rounding (gankd compress --qat-start 0.9), or raise --max-fid-rise")
    med, times = _interleaved_b1_ms({"fp32": fp32_run, precision: run}, example_inputs(generator, 1))
    return {"max_abs_diff": worst, "ops": prec.op_report(path), "quality_gate": gate,
            "calibration": calibration if precision == "int8" else None,
            "latency_b1_ms": {"fp32": med["fp32"], precision: med[precision], "rounds": times, "threads": 1,
                              "fp32_timed": "the unmodified fp32 export" if rewritten else "the fp32 export"},
            "speedup_b1": med["fp32"] / med[precision]}  # fmt: skip


CONVTRANSPOSE = ("auto", "rewrite", "keep")  # int8: what becomes of ConvTranspose layers (see export_generator)
REWRITE_NOTE = ("Conv + PixelShuffle (DepthToSpace), the same function: int8 Conv kernels exist on CPU, int8 "
                "ConvTranspose kernels do not")  # fmt: skip


def _deploy_forms(generator: GeneratorAdapter, folder: Path | None, precision: str, mode: str, tmp: Path,
                  opset: int | None) -> list[tuple[GeneratorAdapter, dict]]:  # fmt: skip
    """The modules to export, in the order to try them, each with its record: plain BatchNorms folded into the
    layers before them where the family can (``fold_norms``: the dcgan family's latency layout and unconditional
    models); then, for int8, ``rewrite`` exports a copy whose qualifying ConvTranspose layers are their sub-pixel
    Conv form, ``keep`` the generator as it is, and ``auto`` both, the one that runs a batch of 1 faster here
    first (both quantized and timed interleaved, one thread): the other is the export when the first fails the
    quality gate."""
    if mode not in CONVTRANSPOSE:
        raise ValueError(f"--convtranspose {mode!r} is unknown; choose one of: {', '.join(CONVTRANSPOSE)}")
    generator, folded = _fold_norms(generator)
    if precision != "int8":
        return [(generator, {"ConvTranspose": 0, "qualifying": 0, "mode": mode, "norms_folded": folded})]
    from gankd.models.layers import subpixel_form

    copied = copy.deepcopy(generator)
    n = subpixel_form(copied)
    record = {"ConvTranspose": n, "qualifying": n, "mode": mode, "as": REWRITE_NOTE, "norms_folded": folded}
    kept = (generator, {**record, "ConvTranspose": 0})
    if n == 0 or mode == "keep":
        return [kept]
    if mode == "rewrite":
        return [(copied, record)]
    ms = _time_int8_forms({"rewrite": copied, "keep": generator}, generator, folder, tmp, opset)
    forms = [(copied, {**record, "timed_b1_ms": ms}), (kept[0], {**kept[1], "timed_b1_ms": ms})]
    return forms if ms["rewrite"] <= ms["keep"] else forms[::-1]


def _fold_norms(generator: GeneratorAdapter) -> tuple[GeneratorAdapter, int]:
    """A copy of ``generator`` with its plain BatchNorms folded into the layers before them (its model's
    ``fold_norms``), and how many; the generator itself where there are none."""
    if not callable(getattr(generator.model, "fold_norms", None)):
        return generator, 0
    copied = copy.deepcopy(generator)
    n = copied.model.fold_norms()
    return (copied, n) if n else (generator, 0)


def _time_int8_forms(forms: dict[str, nn.Module], generator: GeneratorAdapter, folder: Path | None, tmp: Path,
                     opset: int | None) -> dict[str, float]:  # fmt: skip
    """Batch-1 latency (ms, one thread, :func:`_interleaved_b1_ms`) of each form's int8 export, calibrated as
    the export is."""
    from gankd import precision as prec

    feeds, _ = prec.calibration_feeds(generator, folder)
    runs = {}
    for name, form in forms.items():
        work = tmp / f"form-{name}"
        work.mkdir()
        _export_onnx(GeneratorForExport(form).eval(), work / "fp32.onnx", opset)
        prec.to_int8(work / "fp32.onnx", work / "int8.onnx", feeds())
        runs[name] = load_exported(work / "int8.onnx", "onnx", threads=1)
        shutil.rmtree(work)
    return _interleaved_b1_ms(runs, example_inputs(generator, 1))[0]


def _interleaved_b1_ms(runs: dict, args: tuple, rounds: int = 5) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Batch-1 latency in ms of each exported model on the same ``args``: per round the median of 20 calls, the
    models interleaved (A B A B ...); returns (median over rounds, every round)."""
    import statistics

    from gankd.metrics.efficiency import time_callable

    times: dict[str, list[float]] = {n: [] for n in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            times[name].append(1000 * statistics.median(time_callable(lambda fn=fn: fn(*args), warmup=2, repeats=20)))
    return {n: statistics.median(t) for n, t in times.items()}, times


def _write_checked(deployed: GeneratorAdapter, generator: GeneratorAdapter, path: Path, format: str,
                   opset: int | None, tolerance: float, folder: Path | None) -> float:  # fmt: skip
    """Write ``deployed`` in ``format`` to ``path`` and return the file's largest difference from the eager
    ``generator`` (the model as given, before any rewrite); one-line refusals when either step fails."""
    try:
        FORMATS.get(format).write(GeneratorForExport(deployed).eval(), path, opset)
    except Exception as e:  # noqa: BLE001 - the exporters' messages are pages of graph dumps
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        other = " or ".join(n for n in FORMATS if n != format)
        raise ValueError(f"exporting {folder or 'the generator'} to {format} failed ({type(e).__name__}: "
                         f"{first}); nothing was written; try --format {other}") from None  # fmt: skip
    diff = parity(generator, load_exported(path, format))
    if not diff <= tolerance:
        raise ValueError(f"exported {format} model differs from eager PyTorch by {diff:.3g} > tolerance "
                         f"{tolerance:g}; nothing was written. Raise --tolerance if that precision is acceptable")
    return diff


def _write_first_passing(forms: list, generator: GeneratorAdapter, folder: Path | None, tmp_file: Path, format: str,
                         opset: int | None, tolerance: float,
                         gate: tuple[str, float, int]) -> tuple[float, dict | None]:  # fmt: skip
    """Write the first of ``forms`` (:func:`_deploy_forms`) whose reduced model passes the quality gate into
    ``tmp_file``'s folder; ``gate``: (precision, max_fid_rise, gate_samples). Returns (largest difference from
    eager, the reduced record or None for fp32); the last form's refusal is raised when none passes."""
    precision, max_fid_rise, gate_samples = gate
    refused = []
    for i, (deployed, rewritten) in enumerate(forms):
        diff = _write_checked(deployed, generator, tmp_file, format, opset, tolerance, folder)
        if precision == "fp32":
            return diff, None
        reference = _plain_reference(generator, tmp_file.parent, opset) if rewritten["ConvTranspose"] else None
        try:
            reduced = _reduced_record(generator, folder, tmp_file, precision, max_fid_rise, gate_samples, reference)
        except GateRefused as e:  # the faster form failed the gate: the other one, when there is one
            if i + 1 == len(forms):
                raise
            refused.append({"ConvTranspose": rewritten["ConvTranspose"], "quality_gate": e.gate})
            for f in tmp_file.parent.iterdir():
                shutil.rmtree(f) if f.is_dir() else f.unlink()
            continue
        reduced["ops"]["rewritten"] = {**rewritten, **({"refused_by_gate": refused} if refused else {})}
        return reduced.pop("max_abs_diff"), reduced
    raise AssertionError("no export form to write")  # _deploy_forms returns at least one


def _plain_reference(generator: GeneratorAdapter, tmp: Path, opset: int | None):
    """The unmodified fp32 ONNX model, loaded (its file removed), as the latency baseline of a rewritten export."""
    ref = tmp / "reference"
    ref.mkdir()
    _export_onnx(GeneratorForExport(generator).eval(), ref / "generator.onnx", opset)
    run = load_exported(ref / "generator.onnx", "onnx", threads=1)
    shutil.rmtree(ref)
    return run


def _export_path(folder_or_model, out, format: str, precision: str, force: bool) -> Path:
    """Where the export goes (``<folder>/export/generator[.precision].<suffix>`` by default), every flag and
    the destination checked before the model is loaded."""
    from gankd.precision import PRECISIONS

    if format not in FORMATS:
        raise ValueError(f"--format {format!r} is unknown; choose one of: {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r} is unknown; choose one of: {', '.join(PRECISIONS)}")
    fmt = FORMATS.get(format)
    if precision != "fp32" and format != "onnx":
        raise ValueError(f"--precision {precision} exports ONNX (ONNX Runtime runs it): drop --format {format}")
    folder = None if isinstance(folder_or_model, nn.Module) else Path(folder_or_model)
    if out is None:
        if folder is None:
            raise ValueError("pass out=PATH when exporting a module (no model folder to write into)")
        out = default_export_path(folder, format)
        if precision != "fp32":
            out = out.with_name(f"generator.{precision}{fmt.suffix}")
    out = Path(out)
    if out.is_dir():
        out = out / f"generator{fmt.suffix}"
    check_out_file(out, force, example=f"generator{fmt.suffix}", extra=(".data", ".json"))
    return out


def _input_record(generator: GeneratorAdapter) -> dict:
    """The exported model's inputs as its JSON companion describes them."""
    inputs = {}
    for spec in generator.spec.inputs:
        if spec.kind == "latent":
            inputs[spec.name] = {"shape": ["batch", *spec.shape], "dtype": "float32", "distribution": "N(0, 1)"}
        elif spec.kind == "label":
            inputs[spec.name] = {"shape": ["batch"], "dtype": "int64", "range": [0, spec.num_classes - 1]}
        else:
            inputs[spec.name] = {"shape": ["batch", *spec.shape], "dtype": "float32", "range": [-1, 1]}
    return inputs


def export_generator(
    folder_or_model,
    out: str | Path | None = None,
    format: str = "onnx",
    tolerance: float = 1e-4,
    opset: int | None = None,
    force: bool = False,
    precision: str = "fp32",
    max_fid_rise: float = 0.10,
    gate_samples: int = 2000,
    convtranspose: str = "auto",
) -> dict:
    """Export a generator (folder or module) and check it against eager PyTorch.

    Returns ``{"path", "files", "format", "max_abs_diff", "tolerance", "parity_batches",
    "inputs", "output"}``. ``out`` defaults to ``<folder>/export/generator.onnx|.pt``.
    Raises ValueError when the exported outputs differ from eager by more than
    ``tolerance`` (nothing is written then).

    ``precision`` fp16 or int8 (ONNX, noise-to-image; see :mod:`gankd.precision`): the fp32 export,
    checked as above, is converted; the record adds which ops run in which precision, PSNR/SSIM
    to the fp32 model, the FID of both under gankd's protocol (``gate_samples`` samples) and batch-1
    latency of both, interleaved. A model whose FID rises by more than ``max_fid_rise`` (a
    fraction; ``inf`` never refuses) is refused and nothing is written; ``gate_samples=0`` skips
    the FID measurement. ``convtranspose`` (int8): ``rewrite`` turns every ConvTranspose that qualifies
    into its exact Conv + PixelShuffle form first (:func:`gankd.models.layers.subpixel_form`; the parity
    check against the unmodified eager model proves the rewrite), so those layers quantize too; ``keep``
    leaves them fp32; ``auto`` quantizes both forms and keeps the one faster at batch 1 here, or the other
    when that one fails the quality gate (the record's ``refused_by_gate``). Existing
    files at ``out``
    (and its ``.data`` and
    ``.json`` companions) are replaced only when gankd wrote them, or with ``force``
    (:func:`gankd.fileio.check_out_file`), checked before the model is loaded.
    """
    out = _export_path(folder_or_model, out, format, precision, force)
    generator, folder = _as_generator(folder_or_model)
    made = not out.parent.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".export-"))
    try:
        forms = _deploy_forms(generator, folder, precision, convtranspose, tmp, opset)
        diff, reduced = _write_first_passing(forms, generator, folder, tmp / out.name, format, opset, tolerance,
                                             (precision, max_fid_rise, gate_samples))  # fmt: skip
        files = sorted(
            tmp.iterdir(), key=lambda p: p.name != out.name
        )  # main file last: readers see it whole
        moved = []
        for f in reversed(files):
            os.replace(f, out.parent / f.name)
            moved.append(str(out.parent / f.name))
    except BaseException:
        if made:  # nothing written: not even the folder it would have gone into
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(OSError):
                out.parent.rmdir()
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    inputs = _input_record(generator)
    c, h, w = generator.output_shape()
    result = {
        "schema": "gankd.export/1",
        "path": str(out),
        "files": moved,
        "format": format,
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "parity_batches": list(PARITY_BATCHES),
        "inputs": inputs,
        "output": {
            "name": "image",
            "shape": ["batch", c, h, w],
            "dtype": "float32",
            "range": [-1, 1],
        },
        "source": str(folder) if folder else None,
        "torch": torch.__version__,
        "precision": precision,
    }
    if reduced is not None:
        result["reduced"] = reduced
    atomic_write_bytes(out.with_name(out.name + ".json"), json.dumps(result, indent=2).encode())
    return result


def deploy_student(student_dir: Path, precision: str, max_fid_rise: float, budget: dict | None,
                   record: Path, rounds: int = 5, gate_samples: int = 2000) -> dict:  # fmt: skip
    """``compress --export``: the selected student exported to ONNX at ``precision`` through the quality gate
    (:func:`export_generator`), then, with a latency ``budget`` (the ``--target-latency`` record), the exported
    file itself timed at the budget's batch, threads and size (median over ``rounds`` of the median of 20 calls):
    what deploys, against what was promised. Written to ``record`` (JSON). A refused gate raises with the flags
    that change it; the trained student stays where it is."""
    from gankd.fileio import portable_path
    from gankd.latency import median_ms

    student_dir = Path(student_dir)
    out = student_dir / "export" / ("generator.onnx" if precision == "fp32" else f"generator.{precision}.onnx")
    try:
        rec = export_generator(student_dir, out, "onnx", precision=precision, max_fid_rise=max_fid_rise, force=True,
                               gate_samples=gate_samples)  # fmt: skip
    except ValueError as e:
        raise ValueError(f"compress --export {precision}: {str(e).replace('Try --precision', 'Try --export')} (the "
                         f"trained student is kept in {student_dir})") from None  # fmt: skip
    red = rec.get("reduced") or {}
    res: dict = {"path": portable_path(out), "precision": precision, "max_abs_diff": rec["max_abs_diff"],
                 "quality_gate": red.get("quality_gate"), "ops": (red.get("ops") or {}).get("ops"), "latency": None}
    if budget:
        gen = adapter_for(load_generator(student_dir))
        run = load_exported(out, "onnx", threads=budget["threads"])
        args = gen.example_inputs(budget["batch"], size=budget.get("size"))
        ms = median_ms(lambda: run(*args), rounds)
        res["latency"] = {"budget_ms": budget["budget_ms"], "exported_ms": ms, "met": ms <= budget["budget_ms"],
                          "search_ms": budget.get("measured_ms"), "search_runtime": budget["runtime"],
                          "batch": budget["batch"], "threads": budget["threads"], "size": budget.get("size"),
                          "timed": "the exported file in ONNX Runtime"}  # fmt: skip
    atomic_write_bytes(Path(record), (json.dumps(res, indent=1) + "\n").encode())
    return res
