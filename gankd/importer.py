"""Bring a user's own generator (an ``nn.Module`` class and a state dict) into a gankd folder.

``gankd import --class mypkg.models:Generator --kwargs '{"nz": 100}' --weights ckpt.tar
--out teachers/faces`` writes ``teachers/faces/config.json`` and ``model.safetensors``::

    {"kind": "generator", "family": "module",
     "class": "mypkg.models:Generator", "kwargs": {"nz": 100},
     "config": {"class": ..., "kwargs": ...},        # the same two, for checkpoint.read_meta
     "io": IOSpec.to_dict(),                          # inputs, output range, feature taps
     "source": {"weights": "ckpt.tar", "sha256": ..., "format": ..., "state_key": ...,
                "stripped_prefixes": [...]}}

Trust model. Weights are data: ``.safetensors`` files, or ``torch.load(...,
weights_only=True)`` for pickled checkpoints (a pickle that would run code is refused,
nothing from it is executed). The class, however, is code: importing ``pkg.mod`` runs that
module, exactly as ``python -c "import pkg.mod"`` would, and so does loading a
``family: module`` folder later (its config.json names the class). Import and load only
classes and folders you would run yourself. Only ``nn.Module`` subclasses are ever
instantiated, with keyword arguments from JSON.

A folder may hold a pruned student of such a generator: the class builds the full-width
module, and :func:`load_module_generator` shrinks its layers to the shapes recorded in the
safetensors header before loading the weights.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gankd.adapter import (
    GeneratorAdapter,
    InputSpec,
    IOSpec,
    auto_feature_taps,
    noise_draws,
    pick_output,
    resolve_modules,
)
from gankd.config import load_json
from gankd.fileio import file_sha256

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"  # the same names as gankd.checkpoint.WEIGHTS / CONFIG
CONFIG = "config.json"
FAMILY = "module"
PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile
# names under which common GAN code stores its generator, best first (EMA weights first)
STATE_KEYS = ("g_ema", "params_ema", "G_ema", "netG_ema", "ema", "netG_state_dict", "netG", "generator",
              "generator_state_dict", "gen", "G", "g", "state_dict", "model_state_dict", "model", "params")  # fmt: skip


# ------------------------------------------------------------------ class
def resolve_class(class_path: str, flag: str = "--class") -> type[nn.Module]:
    """``pkg.mod:Name`` (or ``pkg.mod.Name``) -> the class; only ``nn.Module`` subclasses pass.

    Importing the module runs its code (the user's own); nothing is instantiated here.
    """
    if ":" in class_path:
        mod_name, _, attr = class_path.partition(":")
    else:
        mod_name, _, attr = class_path.rpartition(".")
    if not mod_name or not attr:
        raise ValueError(f"{flag} must look like package.module:ClassName, got '{class_path}'")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise ValueError(
            f"{flag} {class_path}: cannot import '{mod_name}' ({e}); the module must be importable: "
            "add its folder to PYTHONPATH or pip install its package"
        ) from None
    except Exception as e:  # the user's module failed while importing
        raise ValueError(f"{flag} {class_path}: importing '{mod_name}' failed: {type(e).__name__}: {e}") from None
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{flag} {class_path}: module '{mod_name}' has no '{attr}'; check the class name")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(f"{flag} {class_path} is not a torch.nn.Module subclass; name the generator's class")
    return obj


def instantiate(cls: type[nn.Module], kwargs: dict, class_path: str) -> nn.Module:
    """``cls(**kwargs)`` with errors as one line naming --kwargs."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"--kwargs must be a JSON object such as '{{\"nz\": 100}}', got {type(kwargs).__name__}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"--kwargs do not fit {class_path}: {e}") from None
    except Exception as e:  # the user's constructor rejected the values
        raise ValueError(f"{class_path}(**kwargs) failed: {type(e).__name__}: {e}; check --kwargs") from None


def parse_kwargs(text: str | None, flag: str = "--kwargs") -> dict:
    """--kwargs (or ``flag``): a JSON object, or the path of a .json file holding one."""
    if not text:
        return {}
    if not text.lstrip().startswith(("{", "[", '"')):  # not JSON: the path of a .json file
        path = Path(text).expanduser()
        if path.is_file():
            text = path.read_text()
        elif path.suffix or os.sep in text:
            what = "is a folder" if path.is_dir() else "does not exist"
            raise FileNotFoundError(f"{flag} file {text} {what}; pass an existing .json file or a JSON object "
                                    'such as \'{"nz": 100}\'')  # fmt: skip
    try:
        out = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f'{flag} is not valid JSON ({e}); write it as \'{{"nz": 100, "ngf": 64}}\'') from None
    if not isinstance(out, dict):
        raise ValueError(f"{flag} must be a JSON object such as '{{\"nz\": 100}}'")
    return out


# ------------------------------------------------------------------ weights
def read_weights_file(path: str | Path) -> tuple[Any, str]:
    """The checkpoint's content, loaded without running code: (object, format)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--weights {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), "safetensors"
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"--weights {path} is not a valid safetensors file ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError: nothing was executed
        text = str(e)
        if "weights_only" in text or "Weights only" in text or "Unsupported global" in text:
            raise ValueError(
                f"--weights {path} holds Python objects other than tensors and containers (loading it "
                "could run code), so it was refused; re-save the generator's state_dict() with torch.save "
                "or safetensors"
            ) from None
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise ValueError(f"--weights {path} is not a PyTorch checkpoint gankd can read ({first})") from None
    return obj, "torch (weights_only=True)"


def _is_state(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _candidates(obj: Any) -> dict[str, dict]:
    """Dicts of tensors inside a checkpoint (depth <= 2), by key path ``a`` or ``a/b``."""
    out: dict[str, dict] = {}
    if not isinstance(obj, dict):
        return out
    for k, v in obj.items():
        if _is_state(v):
            out[str(k)] = v
        elif isinstance(v, dict):
            for k2, v2 in v.items():
                if _is_state(v2):
                    out[f"{k}/{k2}"] = v2
    return out


def strip_prefixes(state: dict[str, torch.Tensor], own: set[str] | None = None) -> tuple[dict, list[str]]:
    """Remove ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) from keys."""
    stripped: list[str] = []
    changed = True
    while changed and state:
        changed = False
        for p in PREFIXES:
            if all(k.startswith(p) for k in state) and not (own and all(k.startswith(p) for k in own)):
                state = {k[len(p) :]: v for k, v in state.items()}
                stripped.append(p)
                changed = True
    if any("._orig_mod." in k for k in state):  # a compiled submodule
        state = {k.replace("._orig_mod.", "."): v for k, v in state.items()}
        stripped.append("._orig_mod.")
    return state, stripped


def select_state(obj: Any, state_key: str | None, own_keys: set[str]) -> tuple[dict, str | None]:
    """The generator's state dict inside a checkpoint: (state, the key used)."""
    if state_key:
        if isinstance(obj, dict) and state_key in obj and _is_state(obj[state_key]):
            return obj[state_key], state_key
        cands = _candidates(obj)
        if state_key in cands:
            return cands[state_key], state_key
        if _is_state(obj):  # safetensors / flat file: the key is a prefix of the tensor names
            pre = state_key.rstrip(".") + "."
            sub = {k[len(pre) :]: v for k, v in obj.items() if k.startswith(pre)}
            if sub:
                return sub, state_key
        listed = ", ".join(sorted(cands)) or "none (the file is one flat state dict)"
        raise ValueError(f"--state-key '{state_key}' is not in the checkpoint; dicts of tensors found: {listed}")
    if _is_state(obj):
        return obj, None
    cands = _candidates(obj)
    if not cands:
        kind = type(obj).__name__
        raise ValueError(f"--weights holds no dict of tensors (top level: {kind}); save the generator's state_dict()")
    if len(cands) == 1:
        return next(iter(cands.items()))[::-1]
    matching = [k for k, v in cands.items() if set(strip_prefixes(v, own_keys)[0]) == own_keys]
    pool = matching or list(cands)
    if len(pool) == 1:
        return cands[pool[0]], pool[0]
    for name in STATE_KEYS:
        hits = [k for k in pool if k.split("/")[-1] == name]
        if len(hits) == 1:
            return cands[hits[0]], hits[0]
    raise ValueError(f"--weights holds several state dicts ({', '.join(sorted(pool))}); choose one with --state-key")


def _shape(t) -> str:
    return "(" + ",".join(str(int(s)) for s in t) + ")"


def mismatch_message(own: dict[str, torch.Size], state: dict[str, torch.Size], what: str) -> str | None:
    """One line with counts and the first few missing / unexpected / mis-shaped keys, or None."""
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shaped = [k for k in own if k in state and tuple(own[k]) != tuple(state[k])]
    if not (missing or extra or shaped):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (" + ", ".join(f"{k} {_shape(own[k])}" for k in missing[:3]) + ")")
    if extra:
        parts.append(f"{len(extra)} unexpected (" + ", ".join(f"{k} {_shape(state[k])}" for k in extra[:3]) + ")")
    if shaped:
        pairs = ", ".join(f"{k} file {_shape(state[k])} vs model {_shape(own[k])}" for k in shaped[:3])
        parts.append(f"{len(shaped)} of another shape ({pairs})")
    return f"{what}: " + "; ".join(parts)


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    own = {k: v.shape for k, v in model.state_dict().items()}
    msg = mismatch_message(own, {k: v.shape for k, v in state.items()}, what)
    if msg:
        raise ValueError(msg)
    model.load_state_dict(state, strict=True)


# ------------------------------------------------------------------ latent and dry run
def parse_ints(text: str | None, flag: str) -> tuple[int, ...] | None:
    if text is None or text == "":
        return None
    try:
        out = tuple(int(v) for v in str(text).replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers such as 100 or 100,1,1, got '{text}'") from None
    if not out or min(out) < 1:
        raise ValueError(f"{flag} must be positive integers such as 100 or 100,1,1, got '{text}'")
    return out


def parse_range(text: str | tuple | None, flag: str = "--output-range") -> tuple[float, float]:
    if text is None:
        return (-1.0, 1.0)
    if isinstance(text, (tuple, list)):
        vals = list(text)
    else:
        try:
            vals = [float(v) for v in str(text).split(",")]
        except ValueError:
            vals = []
    if len(vals) != 2 or float(vals[0]) >= float(vals[1]):
        raise ValueError(
            f"{flag} must be LOW,HIGH with LOW < HIGH (e.g. {flag}=-1,1 or 0,1), got '{text}'"
        )
    return (float(vals[0]), float(vals[1]))


def _spec(latent: tuple[int, ...], num_classes: int, output_range, features="none",
          image: tuple[int, ...] | None = None, input_range=(-1.0, 1.0), call_kwargs=None) -> IOSpec:  # fmt: skip
    if image is not None:  # image-to-image: one source-image input
        return IOSpec([InputSpec("src", "image", image)], output_range, features, input_range=input_range,
                      call_kwargs=call_kwargs or {})  # fmt: skip
    inputs = [InputSpec("z", "latent", latent)]
    if num_classes > 0:
        inputs.append(InputSpec("y", "label", (), num_classes))
    return IOSpec(inputs, output_range, features, call_kwargs=call_kwargs or {})


# keyword arguments of the public StyleGAN code bases that make the forward deterministic (fixed noise
# buffers instead of fresh noise): set unless the user passes them, so that one latent gives one image,
# the same noise reaches teacher and student, and paired metrics mean something
DETERMINISTIC_KWARGS = {"noise_mode": "const", "randomize_noise": False}
TRUNCATION_NAMES = ("truncation_psi", "truncation", "psi")


def forward_kwargs(model: nn.Module, given: dict | None) -> tuple[dict, dict]:
    """The keyword arguments every call gets (``given`` plus the deterministic-noise conventions the
    forward accepts), and a record of the forward's truncation argument (name and value used)."""
    import inspect

    try:
        params = inspect.signature(type(model).forward).parameters
    except (TypeError, ValueError):
        params = {}
    given = dict(given or {})
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for k in given:
        if k not in params and not takes_any:
            names = ", ".join(n for n in params if n != "self") or "none"
            raise ValueError(f"--forward-kwargs: {type(model).__name__}.forward takes no '{k}' (its arguments: "
                             f"{names})")  # fmt: skip
    kwargs = {**{k: v for k, v in DETERMINISTIC_KWARGS.items() if k in params and k not in given}, **given}
    trunc = next((n for n in TRUNCATION_NAMES if n in params), None)
    record = {}
    if trunc is not None:
        default = params[trunc].default
        value = kwargs.get(trunc, None if default is inspect.Parameter.empty else default)
        record = {"argument": trunc, "value": value, "set_by": "--forward-kwargs" if trunc in given else "default"}
    return kwargs, record


@torch.no_grad()
def dry_run(model: nn.Module, spec: IOSpec) -> torch.Tensor:
    """Two seeded samples through the model (eval mode); checks the output is (B, 1|3, H, H)."""
    adapter = GeneratorAdapter(model, IOSpec.from_dict({**spec.to_dict(), "features": "none"}))
    was = model.training
    model.eval()
    try:
        out, _ = pick_output(model(*adapter.model_inputs(2)))  # several images: the largest
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the generator returns {type(out).__name__}; gankd needs one image tensor (B, C, H, W)")
    if out.dim() != 4 or out.shape[1] not in (1, 3) or out.shape[2] != out.shape[3]:
        raise ValueError(f"the generator returns shape {tuple(out.shape)}; gankd needs (B, 1 or 3, H, H) images")
    return out


def _latent_candidates(model: nn.Module) -> list[tuple[int, ...]]:
    """Latent shapes to try, most likely first: from the first layer with parameters (nn.Linear or
    a convolution), then from every fully connected layer (a 2-D ``weight``, e.g. an equalized-lr
    layer of a mapping network, wherever the module registers it)."""
    out: list[tuple[int, ...]] = []
    first = True
    for _, m in model.named_modules():
        if list(m.children()) or not any(True for _ in m.parameters(recurse=False)):
            continue
        if isinstance(m, nn.Embedding):  # class labels, not the latent
            continue
        if first and isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
            out += [(m.in_channels, 1, 1), (m.in_channels,)]
        first = False
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor) and w.dim() == 2:
            out += [(int(w.shape[1]),), (int(w.shape[1]), 1, 1)]
    return list(dict.fromkeys(out))[:8]


def detect_latent(model: nn.Module, num_classes: int, output_range, call_kwargs=None) -> tuple[int, ...]:
    """The latent's per-sample shape, from the first layer that consumes it, checked by a dry run."""
    tried = []
    for shape in _latent_candidates(model):
        tried.append(shape)
        try:
            dry_run(model, _spec(shape, num_classes, output_range, call_kwargs=call_kwargs))
            return shape
        except Exception:  # noqa: BLE001 - any failure means "not this shape"
            continue
    tried_s = " and ".join(",".join(map(str, s)) for s in tried)
    hint = f" (tried {tried_s})" if tried else ""
    raise ValueError(
        f"cannot detect the latent shape of {type(model).__name__}{hint}; "
        "pass it, e.g. --latent 100,1,1 or --latent 128"
    )


# ------------------------------------------------------------------ folders
def check_out_folder(out: str | Path, force: bool = False) -> Path:
    """The ``--out`` of an import, checked before any work: not a file, not a folder of other
    files, writable, and an existing model folder (one holding config.json) only with ``force``."""
    from gankd.fileio import writable_location

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; choose a new folder for --out")
    if out.is_dir() and (out / CONFIG).is_file() and not force:
        raise FileExistsError(f"--out {out} already holds a model ({CONFIG}); pass --force to replace it, or "
                              "choose another --out")  # fmt: skip
    if out.is_dir() and any(out.iterdir()) and not (out / CONFIG).is_file():
        raise FileExistsError(f"--out {out} holds files and is not a gankd model folder; choose an empty --out")
    return writable_location(out)


def _write_folder(out: Path, model: nn.Module, meta: dict, discriminator: nn.Module | None = None,
                  carry_over: bool = True) -> Path:  # fmt: skip
    """config.json + model.safetensors, built in a hidden sibling and renamed into place."""
    from gankd.checkpoint import write_model_folder

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; choose a new folder for --out")
    if out.is_dir() and any(out.iterdir()) and not (out / CONFIG).is_file():
        raise FileExistsError(f"--out {out} holds files and is not a gankd model folder; choose an empty --out")
    return write_model_folder(out, meta, model, discriminator, carry_over=carry_over)


def module_meta(class_path: str, kwargs: dict, spec: IOSpec, source: dict | None, extra: dict | None) -> dict:
    """config.json of a ``family: module`` generator folder."""
    meta = {"kind": "generator", "family": FAMILY, "class": class_path, "kwargs": kwargs,
            "config": {"class": class_path, "kwargs": kwargs}, "io": spec.to_dict()}  # fmt: skip
    if source:
        meta["source"] = source
    if extra:
        meta.update(extra)
    return meta


def _first_run(model: nn.Module, spec: IOSpec, class_path: str, input_image, latent, num_classes: int):
    """The module's output on the spec's inputs; a forward that rejects them is one line naming the flags."""
    try:
        return dry_run(model, spec)
    except Exception as e:  # the user's forward rejected the inputs
        if isinstance(e, ValueError) and "gankd needs" in str(e):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if input_image is not None:
            shape = ",".join(map(str, input_image))
            raise ValueError(f"{class_path} fails on a source image (B, {shape}): {first}; check --input-image") \
                from None  # fmt: skip
        lat = ",".join(map(str, latent))
        labels = " and labels" if num_classes else ""
        raise ValueError(
            f"{class_path} fails on latent (B, {lat}){labels}: {first}; check --latent and --num-classes"
        ) from None


def _fix_output_and_noise(model: nn.Module, spec: IOSpec, img: torch.Tensor, class_path: str):
    """(spec, image): the output gankd uses when the module returns several (the largest image), and Gaussian
    noise drawn inside the forward with no argument to fix it set to zero (else one latent would give two
    images); a forward that still differs between two calls is refused, naming --forward-kwargs."""
    with torch.no_grad():
        model.eval()
        raw = model(*GeneratorAdapter(model, spec).model_inputs(2))
    index = pick_output(raw)[1]
    if index is not None:
        spec = IOSpec.from_dict({**spec.to_dict(), "output_index": index})
        log.info("%s returns %d outputs: gankd uses output %d, the largest image %s", class_path, len(raw), index,
                 tuple(img.shape[1:]))  # fmt: skip
    with torch.no_grad():
        args = GeneratorAdapter(model, spec).model_inputs(2)  # the latents are drawn here, not counted below
        with noise_draws() as drawn:  # Gaussian noise drawn inside the forward (a zero strength hides it today)
            model(*args)
    if drawn[0] or not torch.equal(img, dry_run(model, spec)):
        zero = IOSpec.from_dict({**spec.to_dict(), "noise": "zero"})
        if not torch.equal(dry_run(model, zero), dry_run(model, zero)):
            raise ValueError(f"{class_path} gives two different images for one latent (its forward draws noise): "
                             "pass --forward-kwargs with the argument that fixes its noise, e.g. "
                             "'{\"noise_mode\": \"const\"}'")  # fmt: skip
        spec, img = zero, dry_run(model, zero)
        log.warning("%s draws noise inside its forward with no argument to fix it: gankd sets that noise to zero "
                    "(recorded as io.noise = zero), so one latent gives one image for teacher and student", class_path)
    return spec, img


@dataclass
class Declared:
    """What the user declares of a generator's call (the import flags); what is left None is found by dry runs.

    ``latent``: the latent shape (None: detected from the first layer, or a mapping network's
    ``Linear``); ``num_classes``: labels the forward takes after the latent; ``output_range``: the range
    of the output image (B, 1 or 3, H, H); ``input_image`` (C, H, W): an image-to-image generator taking
    one source image of that shape (at its trained size; fully convolutional ones run at other sizes
    too) in ``input_range`` instead of a latent; ``feat_layers``: feature taps (module paths; None:
    :func:`gankd.adapter.auto_feature_taps`); ``call_kwargs``: keyword arguments every call gets
    (``--forward-kwargs``: truncation, noise mode)."""

    latent: tuple[int, ...] | None = None
    num_classes: int = 0
    output_range: Any = (-1.0, 1.0)
    input_image: tuple[int, ...] | None = None
    input_range: Any = (-1.0, 1.0)
    feat_layers: list[str] | None = None
    call_kwargs: dict | None = None


def import_generator(
    class_path: str,
    kwargs: dict,
    weights: str | Path,
    out: str | Path,
    state_key: str | None = None,
    declared: Declared | None = None,
    force: bool = False,
) -> Path:
    """Import a user's generator class + checkpoint into the gankd folder ``out``; returns it.

    An ``out`` that already holds a model (config.json) is refused unless ``force``; then it
    is replaced as a whole (none of its other files carried over: they described other weights).
    ``state_key``: the entry of the checkpoint that holds the generator's state dict (None: found).

    ``declared`` (:class:`Declared`): what the user says of the call. A forward that takes
    ``noise_mode`` or ``randomize_noise`` gets the fixed-noise setting unless given, and a forward
    whose output still differs between two calls on one latent is refused. See the module docstring
    for what runs (the class's module) and what never does (code inside the checkpoint).
    """
    d = declared or Declared()
    latent, num_classes, input_image, feat_layers = d.latent, d.num_classes, d.input_image, d.feat_layers
    if num_classes < 0:
        raise ValueError(f"--num-classes must be >= 0, got {num_classes}")
    check_out_folder(out, force)
    output_range = parse_range(d.output_range)
    cls = resolve_class(class_path)
    torch.manual_seed(0)  # the fresh instance's init is irrelevant (overwritten) but reproducible
    model = instantiate(cls, kwargs, class_path)
    obj, fmt = read_weights_file(weights)
    own_keys = set(model.state_dict())
    state, key = select_state(obj, state_key, own_keys)
    state, stripped = strip_prefixes(state, own_keys)
    load_state_strict(model, state, f"--weights do not match {class_path}(**kwargs)")
    model.eval()
    call_kwargs, truncation = forward_kwargs(model, d.call_kwargs)
    if input_image is not None:
        if len(input_image) != 3 or min(input_image) < 1:
            raise ValueError(f"--input-image must be C,H,W such as 3,256,256, got {','.join(map(str, input_image))}")
        if latent is not None or num_classes:
            raise ValueError("--input-image (image-to-image) takes no --latent or --num-classes")
        latent = ()
    elif latent is None:
        latent = detect_latent(model, num_classes, output_range, call_kwargs)
    input_range = parse_range(d.input_range, "--input-range")
    spec = _spec(tuple(latent), num_classes, output_range, image=tuple(input_image) if input_image else None,
                 input_range=input_range, call_kwargs=call_kwargs)  # fmt: skip
    img = _first_run(model, spec, class_path, input_image, latent, num_classes)
    spec, img = _fix_output_and_noise(model, spec, img, class_path)
    example = GeneratorAdapter(model, spec).model_inputs(2)
    if feat_layers:
        resolve_modules(model, list(feat_layers))
        taps: str | list[str] = list(feat_layers)
    else:
        taps = auto_feature_taps(model, example) or "none"
    spec = IOSpec(spec.inputs, output_range, taps, int(img.shape[1]), int(img.shape[2]), input_range, call_kwargs,
                  spec.output_index, spec.noise)  # fmt: skip
    lo, hi = float(img.min()), float(img.max())
    tol = 1e-3 * (output_range[1] - output_range[0])
    if lo < output_range[0] - tol or hi > output_range[1] + tol:
        log.warning("dry-run output spans [%.3g, %.3g], outside --output-range %s", lo, hi, output_range)
    source = {"weights": Path(weights).name, "sha256": file_sha256(weights), "format": fmt,
              "state_key": key, "stripped_prefixes": stripped}  # fmt: skip
    extra = {"truncation": truncation} if truncation else None
    return _write_folder(Path(out), model, module_meta(class_path, kwargs, spec, source, extra), carry_over=False)


def summary(folder: str | Path) -> str:
    """One line: parameters, latent, labels, output shape, taps."""
    adapter = load_module_generator(folder)
    params = sum(p.numel() for p in adapter.model.parameters())
    c, h, w = adapter.output_shape()
    lat = ",".join(map(str, adapter.latent_shape))
    labels = f", {adapter.num_classes} classes" if adapter.num_classes else ""
    taps = adapter.spec.features if isinstance(adapter.spec.features, str) else ",".join(adapter.spec.features)
    inp = f"source image ({','.join(map(str, adapter.spec.image().shape))})" if adapter.is_i2i else f"latent ({lat})"
    return f"{params / 1e6:.3g}M params, {inp}{labels}, output {c}x{h}x{w}, feature taps: {taps}"


def save_module_generator(
    adapter_or_module: GeneratorAdapter | nn.Module,
    spec: IOSpec | None,
    class_path: str,
    kwargs: dict,
    out: str | Path,
    extra: dict | None = None,
) -> Path:
    """Write a (possibly pruned) module generator as a ``family: module`` folder.

    Pruned channel counts live in the safetensors shapes; :func:`load_module_generator`
    rebuilds the class at full size and shrinks it to them. ``extra`` keys (e.g.
    ``{"prune": adapter.prune_info, "source": ...}``) are added to config.json.
    """
    model = adapter_or_module.model if isinstance(adapter_or_module, GeneratorAdapter) else adapter_or_module
    if spec is None:
        if not isinstance(adapter_or_module, GeneratorAdapter):
            raise ValueError("save_module_generator needs a spec (IOSpec) for a bare module")
        spec = adapter_or_module.spec
    return _write_folder(Path(out), model, module_meta(class_path, kwargs, spec, None, extra))


def header_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header (no tensor data read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a valid safetensors file ({e}); re-save the model with gankd") from None


@torch.no_grad()
def shrink_to_shapes(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Give every parameter/buffer the shape recorded for it (a pruned student's) and update the
    layer's size attributes (in/out channels, features). Returns the tensors changed."""
    changed = []
    for prefix, m in model.named_modules():
        pre = f"{prefix}." if prefix else ""
        hit = False
        for store in (m._parameters, m._buffers):
            for name, t in list(store.items()):
                want = shapes.get(pre + name)
                if t is None or want is None or tuple(t.shape) == tuple(want):
                    continue
                new = torch.empty(want, dtype=t.dtype, device=t.device)
                store[name] = nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else new
                changed.append(pre + name)
                hit = True
        if not hit:
            continue
        w = getattr(m, "weight", None)
        if isinstance(m, nn.modules.conv._ConvNd) and w is not None:
            a, b = int(w.shape[0]), int(w.shape[1]) * m.groups  # (out, in/groups) or, transposed, (in, out/groups)
            m.in_channels, m.out_channels = (a, b) if m.transposed else (b, a)
        elif isinstance(m, nn.Linear) and w is not None:
            m.out_features, m.in_features = int(w.shape[0]), int(w.shape[1])
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
            t = w if w is not None else getattr(m, "running_mean", None)
            if t is not None:
                m.num_features = int(t.shape[0])
        elif isinstance(m, nn.GroupNorm) and w is not None:
            m.num_channels = int(w.shape[0])
        elif isinstance(m, nn.Embedding):
            m.num_embeddings, m.embedding_dim = int(w.shape[0]), int(w.shape[1])
        elif isinstance(m, nn.LayerNorm) and w is not None:
            m.normalized_shape = tuple(int(s) for s in w.shape)
    return changed


def load_module_generator(folder: str | Path, map_location: str | torch.device = "cpu") -> GeneratorAdapter:
    """Rebuild a ``family: module`` folder: import the class (runs its module: trusted code
    only), build it from ``kwargs``, shrink to the recorded shapes if pruned, load the weights
    strictly. Returns a :class:`GeneratorAdapter` in eval mode on ``map_location``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist; pass a folder written by gankd import")
    meta = load_json(folder / CONFIG)
    if not isinstance(meta, dict) or meta.get("family") != FAMILY or meta.get("kind") != "generator":
        raise ValueError(f"{folder / CONFIG} is not a gankd imported generator (family 'module'); use gankd import")
    cfg = meta.get("config", {})
    class_path = meta.get("class", cfg.get("class"))
    kwargs = meta.get("kwargs", cfg.get("kwargs", {}))
    cls = resolve_class(class_path, flag=f"{folder / CONFIG} class")
    torch.manual_seed(0)
    model = instantiate(cls, kwargs, class_path)
    shapes = header_shapes(folder / WEIGHTS)
    from gankd.pruning import fold_spectral_norm, spectral_norm_layers

    # a pruned student trained without spectral normalisation: its layers hold plain weights
    plain = {n for n in spectral_norm_layers(model) if f"{n}.weight" in shapes}
    if plain:
        fold_spectral_norm(model, plain)
    shrink_to_shapes(model, shapes)
    from safetensors.torch import load_file

    load_state_strict(model, load_file(str(folder / WEIGHTS)), f"{folder / WEIGHTS} does not match {class_path}")
    spec = IOSpec.from_dict(meta["io"])
    adapter = GeneratorAdapter(model.to(map_location).eval(), spec)
    adapter.origin = {"class": class_path, "kwargs": kwargs}  # how checkpoint.save_generator rebuilds it
    return adapter


def is_module_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds an imported (``family: module``) generator."""
    try:
        meta = json.loads((Path(folder) / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("family") == FAMILY


__all__ = ["Declared", "import_generator", "load_module_generator", "save_module_generator", "resolve_class",
           "shrink_to_shapes", "header_shapes", "summary", "is_module_folder", "parse_ints", "parse_range",
           "module_meta", "parse_kwargs"]  # fmt: skip
