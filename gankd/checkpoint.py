"""Model folders and training state, written atomically, loaded without executing code.

A model folder holds ``config.json`` (kind, family, config) and ``model.safetensors``;
a generator folder may also hold ``discriminator.safetensors`` (its config sits in
``config.json`` under ``"discriminator"``). Training state (optimizers, step, RNG) is
a ``torch.save`` of plain tensors/dicts and is read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gankd.config import from_dict, load_json, save_json, to_dict
from gankd.registry import CLASSIFIERS, DISCRIMINATORS, GENERATORS

WEIGHTS = "model.safetensors"
D_WEIGHTS = "discriminator.safetensors"
CONFIG = "config.json"
_REGISTRIES = {"generator": GENERATORS, "discriminator": DISCRIMINATORS, "classifier": CLASSIFIERS}


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic(path: Path, writer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def file_sha256(*paths: str | Path) -> str:
    """sha256 (hex) of the bytes of ``paths``, in order: the fingerprint of a weights file or folder."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def save_weights(module: nn.Module, path: str | Path) -> None:
    """Save a module's state_dict as safetensors, atomically."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    _atomic(Path(path), lambda tmp: save_file(state, tmp))


def load_weights(module: nn.Module, path: str | Path) -> nn.Module:
    """Load safetensors weights into ``module`` with strict key and shape matching."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing weights file {path}; train or copy the model first")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(
            f"{path} is not a valid safetensors file ({e}); pickled checkpoints are refused "
            "because loading them can execute code: re-save the weights with safetensors"
        ) from e
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(
            f"{path} does not match its config.json: missing keys {missing[:5]}, "
            f"unexpected keys {extra[:5]}; the weights belong to a different model"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise ValueError(
                f"{path}: tensor '{k}' has shape {tuple(v.shape)} but config.json builds "
                f"{tuple(own[k].shape)}; the weights belong to a different model"
            )
    module.load_state_dict(state, strict=True)
    return module


def build(kind: str, family: str, cfg: dict | Any) -> nn.Module:
    """Instantiate a registered model from its family name and config (dict or dataclass)."""
    cls = _REGISTRIES[kind].get(family)
    if isinstance(cfg, dict):
        cfg = from_dict(cls.Config, cfg)
    return cls(cfg)


def save_model(
    folder: str | Path,
    model: nn.Module,
    kind: str,
    discriminator: nn.Module | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` (+ discriminator)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"kind": kind, "family": model.family, "config": to_dict(model.cfg)}
    if discriminator is not None:
        meta["discriminator"] = {
            "family": discriminator.family,
            "config": to_dict(discriminator.cfg),
        }
        save_weights(discriminator, folder / D_WEIGHTS)
    if extra:
        meta.update(extra)
    save_weights(model, folder / WEIGHTS)
    save_json(meta, folder / CONFIG)
    return folder


def read_meta(folder: str | Path, kind: str) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"model folder {folder} does not exist; pass a folder holding config.json and "
            f"{WEIGHTS} (for example pretrained/fmnist-teacher)"
        )
    meta = load_json(folder / CONFIG)
    if not isinstance(meta, dict) or not {"kind", "family", "config"} <= set(meta):
        raise ValueError(
            f"{folder / CONFIG} is not a gankd model config (needs kind, family, config); "
            "restore it or re-save the model with gankd"
        )
    if meta["kind"] != kind:
        raise ValueError(f"{folder} holds a {meta['kind']!r} model, not a {kind}")
    return meta


def pretrained_dir() -> Path:
    """Folder of shipped models: $GANKD_PRETRAINED, else ``pretrained/`` beside the package."""
    env = os.environ.get("GANKD_PRETRAINED")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "pretrained"


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A model folder path as given, or a shipped model's name (e.g. ``fmnist-teacher``)."""
    p = Path(name_or_path)
    if p.exists() or p.is_absolute() or len(p.parts) > 1:
        return p
    shipped = pretrained_dir() / p
    return shipped if shipped.exists() else p


def load_model(folder: str | Path, kind: str, map_location: str = "cpu") -> nn.Module:
    """Rebuild a ``kind`` model from its folder (config.json + model.safetensors), eval mode."""
    folder = resolve_model_path(folder)
    meta = read_meta(folder, kind)
    model = build(kind, meta["family"], meta["config"])
    load_weights(model, folder / WEIGHTS)
    return model.to(map_location).eval()


def load_generator(folder: str | Path, map_location: str = "cpu") -> nn.Module:
    """Load a generator folder; returns the module in eval mode."""
    return load_model(folder, "generator", map_location)


def load_classifier(folder: str | Path, map_location: str = "cpu") -> nn.Module:
    return load_model(folder, "classifier", map_location)


def has_discriminator(folder: str | Path) -> bool:
    folder = resolve_model_path(folder)
    return (folder / D_WEIGHTS).is_file() and "discriminator" in load_json(folder / CONFIG)


def load_discriminator(folder: str | Path, map_location: str = "cpu") -> nn.Module:
    """Load the discriminator shipped beside a generator."""
    folder = resolve_model_path(folder)
    meta = read_meta(folder, "generator")
    if "discriminator" not in meta or not (folder / D_WEIGHTS).is_file():
        raise FileNotFoundError(
            f"{folder} ships no discriminator ({D_WEIGHTS}); use a fresh discriminator "
            "(--d-init fresh) or turn the adversarial loss off (--adv 0)"
        )
    d = meta["discriminator"]
    model = build("discriminator", d["family"], d["config"])
    load_weights(model, folder / D_WEIGHTS)
    return model.to(map_location)


def save_state(state: dict, path: str | Path) -> None:
    """Save training state (tensors, numbers, strings, nested dicts/lists) atomically."""
    _atomic(Path(path), lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict:
    """Load training state with ``weights_only=True``: no code from the file is run."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training state at {path}; start without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError and friends
        # torch's own message spans many lines and suggests weights_only=False: keep neither
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in reason or "Weights only" in reason:
            reason = "it holds objects other than tensors, numbers, strings and containers"
        raise ValueError(f"{path} is not a gankd training state ({reason}); start without --resume") from e


def rng_state() -> dict:
    return {"torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
