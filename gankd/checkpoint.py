"""Model folders and training state, written atomically, loaded without executing code.

A model folder holds ``config.json`` (kind, family, config) and ``model.safetensors``;
a generator folder may also hold ``discriminator.safetensors`` (its config sits in
``config.json`` under ``"discriminator"``). Training state (optimizers, step, RNG) is
a ``torch.save`` of plain tensors/dicts and is read with ``weights_only=True``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gankd.adapter import GeneratorAdapter, adapter_for
from gankd.config import from_dict, load_json, save_json, to_dict

# atomic_write_bytes and file_sha256 are re-exported: report, export, evaluate, metrics import them here
from gankd.fileio import TMP_SUFFIX, atomic_write_bytes, atomic_write_with, file_sha256  # noqa: F401
from gankd.registry import CLASSIFIERS, DISCRIMINATORS, GENERATORS
from gankd.runlock import LOCK

WEIGHTS = "model.safetensors"
D_WEIGHTS = "discriminator.safetensors"
CONFIG = "config.json"
STATE = "state.pt"
RUN_MARKER = ".gankd-run"  # written into every run folder gankd prepares
_REGISTRIES = {"generator": GENERATORS, "discriminator": DISCRIMINATORS, "classifier": CLASSIFIERS}


def save_weights(module: nn.Module, path: str | Path) -> None:
    """Save a module's state_dict as safetensors, atomically."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    atomic_write_with(path, lambda tmp: save_file(state, tmp))


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


def _tmp_sibling(folder: Path, tag: str) -> Path:
    return folder.parent / f".{folder.name}.{tag}-{os.getpid()}"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # same filesystem: no bytes copied
    except OSError:
        shutil.copy2(src, dst)


def replace_folder(folder: str | Path, fill: Callable[[Path], None], carry_over: bool = True,
                   replaced: tuple[str, ...] = ()) -> Path:
    """Build ``folder`` as a whole: ``fill(tmp)`` writes into a hidden sibling
    (``.<name>.tmp-<pid>``), which is swapped in by renames (old folder aside, new one in, old
    one removed), so a reader or a crash sees the old complete folder or the new complete one.
    ``carry_over``: other files of an existing folder (not those named in ``replaced``) are
    carried into the new one (hard links where possible)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = _tmp_sibling(folder, "tmp"), _tmp_sibling(folder, "old")
    for leftover in (tmp, old):  # from an earlier crash of a process with our pid
        if leftover.exists():
            shutil.rmtree(leftover)
    try:
        tmp.mkdir()
        if carry_over and folder.is_dir():
            for entry in folder.iterdir():
                if entry.name in replaced or entry.name.endswith(TMP_SUFFIX):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, tmp / entry.name, symlinks=True, copy_function=_link_or_copy)
                elif entry.is_symlink():
                    os.symlink(os.readlink(entry), tmp / entry.name)
                else:
                    _link_or_copy(str(entry), str(tmp / entry.name))
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if folder.exists():
            os.rename(folder, old)
            try:
                os.rename(tmp, folder)
            except BaseException:
                os.rename(old, folder)  # the old folder back in place
                raise
            shutil.rmtree(old)
        else:
            os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # no hidden half-built folder left beside --out
        raise
    return folder


def write_model_folder(folder: str | Path, meta: dict, weights: nn.Module,
                       discriminator: nn.Module | None = None, carry_over: bool = True) -> Path:  # fmt: skip
    """Write ``folder`` (config.json = ``meta``, model.safetensors, optional discriminator) as a whole
    (:func:`replace_folder`): never a new D beside an old G. Other files in an existing folder
    (``export/``, ``state.pt``, a model card) are carried over; a ``discriminator.safetensors``
    is not when this save ships none; ``carry_over=False`` keeps none of them (a new model).
    """
    meta = dict(meta)

    def fill(tmp: Path) -> None:
        if discriminator is not None:
            meta["discriminator"] = {
                "family": discriminator.family,
                "config": to_dict(discriminator.cfg),
            }
            save_weights(discriminator, tmp / D_WEIGHTS)
        save_weights(weights, tmp / WEIGHTS)
        save_json(meta, tmp / CONFIG)

    return replace_folder(folder, fill, carry_over=carry_over, replaced=(WEIGHTS, D_WEIGHTS, CONFIG))


def save_model(
    folder: str | Path,
    model: nn.Module,
    kind: str,
    discriminator: nn.Module | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` (+ discriminator), as a whole
    (see :func:`write_model_folder`). ``model`` is a registered gankd family."""
    meta: dict[str, Any] = {"kind": kind, "family": model.family, "config": to_dict(model.cfg)}
    if extra:
        meta.update(extra)
    return write_model_folder(folder, meta, model, discriminator)


def save_generator(folder: str | Path, generator: nn.Module, discriminator: nn.Module | None = None,
                   extra: dict | None = None) -> Path:  # fmt: skip
    """Save any generator behind the seam: a gankd family (module or its adapter) as
    :func:`save_model` does, an imported ``nn.Module`` generator as a ``family: module``
    folder (class, kwargs and IOSpec in config.json; pruned shapes in the safetensors)."""
    model = generator.model if isinstance(generator, GeneratorAdapter) else generator
    origin = getattr(generator, "origin", None)
    if origin is None:
        if getattr(model, "family", None) not in GENERATORS.names():
            raise ValueError(f"cannot save {type(model).__name__}: it is neither a gankd family nor an "
                             "imported generator (bring it in with gankd import)")  # fmt: skip
        return save_model(folder, model, "generator", discriminator=discriminator, extra=extra)
    from gankd.importer import module_meta

    return write_model_folder(folder, module_meta(origin["class"], origin["kwargs"], generator.spec, None, extra),
                              model, discriminator)  # fmt: skip


_STALE_DIR = re.compile(r"^\.(?P<name>.+)\.(?P<tag>tmp|old)-\d+$")


def clean_stale_tmp(run_dir: str | Path) -> list[Path]:
    """Remove what interrupted writes left under ``run_dir``; returns the paths removed.

    Temp files (``.<name>.<random>.tmp``) and half-built model folders (``.<name>.tmp-<pid>``)
    go; a folder set aside by ``save_model`` (``.<name>.old-<pid>``) is renamed back when the
    crash came before the new one was renamed in, and removed otherwise. Call it only when no
    other process writes into ``run_dir`` (at the start of a run).
    """
    run_dir = Path(run_dir)
    removed: list[Path] = []
    if not run_dir.is_dir():
        return removed
    for path in sorted(run_dir.rglob(".*"), key=lambda p: len(p.parts), reverse=True):
        if not os.path.lexists(path):  # inside a folder removed above
            continue
        m = _STALE_DIR.match(path.name)
        if m and path.is_dir() and not path.is_symlink():
            target = path.with_name(m["name"])
            if m["tag"] == "old" and not os.path.lexists(target):
                os.rename(path, target)
                continue
            shutil.rmtree(path)
            removed.append(path)
        elif path.name.endswith(TMP_SUFFIX) and (path.is_file() or path.is_symlink()):
            path.unlink()
            removed.append(path)
    return removed


def is_run_dir(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a folder gankd prepared for a run (or an older run with a state)."""
    run_dir = Path(run_dir)
    return (run_dir / RUN_MARKER).is_file() or (run_dir / STATE).is_file()


def prepare_run_dir(run_dir: str | Path, resume: bool, can_resume: bool = True) -> Path:
    """Create (or check) the ``--out`` folder of a run, mark it as gankd's, clean stale temps.

    Refuses, with a one-line ``FileExistsError``, a folder that holds files but is not a
    gankd run (its files would be overwritten) and a run that holds a training state when
    ``resume`` is False; ``resume`` without a state is a ``FileNotFoundError``.
    ``can_resume=False`` (commands without ``--resume``) leaves that flag out of the messages.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--out {run_dir} is a file; choose an empty or new folder for --out")
    resume_hint = ", or pass --resume to continue a gankd run" if can_resume else ""
    if run_dir.is_dir():
        state = run_dir / STATE
        if not is_run_dir(run_dir) and any(p.name != LOCK for p in run_dir.iterdir()):
            raise FileExistsError(
                f"--out {run_dir} holds files and is not a gankd run; choose an empty --out{resume_hint}"
            )
        if state.exists() and not resume:
            hint = "pass --resume to continue it, or choose an empty --out" if can_resume else "choose an empty --out"
            raise FileExistsError(f"--out {run_dir} already holds a gankd run; {hint}")
    if resume and not (run_dir / STATE).is_file():
        raise FileNotFoundError(f"no training state at {run_dir / STATE}; start without --resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(run_dir)
    if not (run_dir / RUN_MARKER).is_file():
        atomic_write_bytes(run_dir / RUN_MARKER, b"gankd run folder: training state, models, logs\n")
    return run_dir


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


def load_generator(folder: str | Path, map_location: str = "cpu") -> GeneratorAdapter:
    """Load a generator folder in eval mode behind the seam: always a
    :class:`gankd.adapter.GeneratorAdapter` (a gankd family's module as ``.model`` with
    ``native_family`` set, or an imported generator (``family: module``, see :mod:`gankd.importer`)
    with its recorded IOSpec and ``origin``). It is called as the module is (``G(z)``, ``G(z, y)``,
    ``G(source)``: images in [-1, 1]). Every loaded generator has passed
    :func:`check_generator_runs` (it runs on its recorded inputs and gives finite images), so no
    command scores, samples or ships broken weights."""
    folder = resolve_model_path(folder)
    from gankd.importer import is_module_folder, load_module_generator

    if is_module_folder(folder):
        model = load_module_generator(folder, map_location)
    else:
        model = load_model(folder, "generator", map_location)
    return adapter_for(check_generator_runs(model, folder))


FIRST_BATCH = 4  # seeds 0..3 (seeded stand-in sources for image-to-image generators)


@torch.no_grad()
def check_generator_runs(model: nn.Module, folder: str | Path) -> nn.Module:
    """One first batch through a loaded generator (eval mode; no global random draws): a
    config.json that no longer fits the weights (e.g. another latent shape) or weights that
    give NaN/inf are refused in one line naming ``folder``. Returns ``model``."""
    from gankd.sampling import check_finite_images

    gen = adapter_for(model)
    dev = next((p.device for p in gen.parameters()), torch.device("cpu"))
    try:
        inputs = gen.seeded_inputs(list(range(FIRST_BATCH)), stand_in=True)
        images = gen({k: v.to(dev) for k, v in inputs.items()})
    except Exception as e:  # noqa: BLE001 - torch's shape errors span lines and name no file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"model {folder}: its {CONFIG} does not fit its weights (a first batch fails: {first}); "
                         f"restore {CONFIG} or re-save the model (gankd import for an imported one)") from None
    check_finite_images(images, f"model {folder}")
    return model


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
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))


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
