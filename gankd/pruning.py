"""Students of any generator architecture by structural pruning (torch-pruning's DepGraph).

:func:`prune_generator` deep-copies a :class:`~gankd.adapter.GeneratorAdapter`'s module,
builds torch-pruning's dependency graph from one forward pass of the adapter's example
inputs, and removes, in every group of coupled channels, the channels of least L1
magnitude (``tp.importance.MagnitudeImportance(p=1)``), keeping ``round(C * width)`` of
``C`` (at least 1). Coupled tensors are sliced together: ConvTranspose2d and Conv2d
in/out channels, BatchNorm/GroupNorm/InstanceNorm, residual additions, concatenation
skips, and class embeddings that scale or shift a normalised map (gankd's
ConditionalBatchNorm2d).

Kept whole: the last Conv/ConvTranspose/Linear layer (its outputs are the image channels),
the inputs (latent, labels) and every channel group that reaches them.

A Linear layer whose output is reshaped into a (C, H, W) map (``fc(z).view(B, C, 4, 4)``)
is pruned in whole channels (blocks of H*W rows) from the map's side; torch-pruning's own
grouping for that pattern ranks single rows. When the model's ``forward`` hard-codes C in
the reshape (``view(B, self.ch * 4, 4, 4)``), pruning that stage would break the forward:
a dry run detects it and that stage keeps its width (reported in ``prune_info``).

``target_macs`` instead of ``width``: the width (same for every group) is found by
bisection so that the student's MACs, counted by gankd's own
:func:`gankd.metrics.efficiency.count_macs`, are at most that fraction of the teacher's.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gankd import pruning_probe
from gankd.adapter import GeneratorAdapter, IOSpec
from gankd.registry import Registry

log = logging.getLogger(__name__)

INITS = ("prune", "random")
IMPORTANCE = "L1 magnitude of each channel group (torch-pruning MagnitudeImportance(p=1), group mean)"
_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm)


def _tp():
    try:
        import torch_pruning as tp
    except ImportError as e:  # an optional dependency
        raise RuntimeError("pruning needs torch-pruning: pip install 'torch-pruning>=1.6'") from e
    return tp


def _model_inputs(adapter: GeneratorAdapter, batch: int = 2) -> tuple[torch.Tensor, ...]:
    dev = next((p.device for p in adapter.model.parameters()), torch.device("cpu"))
    return adapter.model_inputs(batch, device=dev)  # the module is traced and called directly


def _forward(model: nn.Module, inputs: tuple) -> torch.Tensor:
    out = model(*inputs)
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def output_layers(model: nn.Module, inputs: tuple) -> list[nn.Module]:
    """The last Conv/ConvTranspose/Linear module called by ``model(*inputs)`` (the image layer)."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in model.modules()
             if isinstance(m, _LAYERS)]  # fmt: skip
    was = model.training
    model.eval()
    try:
        _forward(model, inputs)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return order[-1:]


def _reshape_linears(tp, dg) -> list[tuple[nn.Module, nn.Module, object]]:
    """Linear layers whose output is viewed into a map: (linear, consumer, consumer pruning fn)."""
    found = []
    for m, node in dg.module2node.items():
        if not isinstance(m, nn.Linear):
            continue
        stack, seen, reshaped, consumer = list(node.outputs), set(), False, None
        while stack and consumer is None:
            n = stack.pop(0)
            if id(n) in seen:
                continue
            seen.add(id(n))
            if isinstance(n.module, tp.ops._ReshapeOp):
                reshaped = True
            if isinstance(n.module, _LAYERS + _NORMS):
                consumer = n.module
                break
            stack.extend(n.outputs)
        if reshaped and consumer is not None:
            pruner = dg.get_pruner_of_module(consumer)
            fn = pruner.prune_in_channels if isinstance(consumer, _LAYERS) else pruner.prune_out_channels
            found.append((m, consumer, fn))
    return found


def _keep_count(channels: int, width: float) -> int:
    return max(1, min(channels, int(round(channels * width))))


@torch.no_grad()
def _prune_group(tp, dg, imp, module, fn, channels: int, width: float) -> tuple[int, int] | None:
    keep = _keep_count(channels, width)
    if keep >= channels:
        return None
    full = dg.get_pruning_group(module, fn, list(range(channels)))
    scores = imp(full)
    if scores is None:  # a group without parameters to rank: keep it whole
        return None
    drop = sorted(torch.argsort(scores)[: channels - keep].tolist())
    group = dg.get_pruning_group(module, fn, drop)
    if not dg.check_pruning_group(group):
        return None
    group.prune()
    return channels, keep


def _shape_ok(model: nn.Module, inputs: tuple, want: torch.Size) -> bool:
    try:
        with torch.no_grad():
            out = _forward(model, inputs)
    except (RuntimeError, ValueError):
        return False
    return out.shape == want


def _graph(tp, model: nn.Module, inputs: tuple):
    """torch-pruning's dependency graph, traced through autograd (so grads on, whatever the caller's mode)."""
    import warnings

    with torch.enable_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters")  # a learned constant, a noise strength
        return tp.DependencyGraph().build_dependency(model, inputs, forward_fn=lambda m, x: _forward(m, x))


def spectral_norm_layers(model: nn.Module) -> list[str]:
    """Paths of layers whose weight is spectrally normalised (``torch.nn.utils.spectral_norm`` hooks or
    ``parametrizations.spectral_norm``)."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.spectral_norm import SpectralNorm

    out = []
    for name, m in model.named_modules():
        if any(isinstance(h, SpectralNorm) for h in m._forward_pre_hooks.values()):
            out.append(name)
        elif parametrize.is_parametrized(m, "weight") and any(
            type(p).__name__ == "_SpectralNorm" for p in m.parametrizations["weight"]
        ):
            out.append(name)
    return out


@torch.no_grad()
def fold_spectral_norm(model: nn.Module, only: set[str] | None = None) -> list[str]:
    """Replace spectral normalisation by the weight it gives now (eval mode: no power iteration),
    in place: a pruned student's channels are sliced from plain weights and trained without it
    (distillation needs no Lipschitz bound on G). Returns the layers changed."""
    from torch.nn.utils import parametrize, remove_spectral_norm

    done = []
    was = model.training
    model.eval()
    for name in spectral_norm_layers(model):
        if only is not None and name not in only:
            continue
        m = model.get_submodule(name)
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        else:
            remove_spectral_norm(m)
            # torch leaves its state-dict hooks behind; the load hook would rename "weight" to "weight_orig"
            for hooks in (m._load_state_dict_pre_hooks, m._state_dict_hooks):
                for k, h in list(hooks.items()):
                    if type(getattr(h, "hook", h)).__name__.startswith("SpectralNorm"):
                        del hooks[k]
        done.append(name)
    model.train(was)
    return done


def _prune_module(model: nn.Module, inputs: tuple, width: float, keep_layers: list[str]) -> tuple[nn.Module, dict]:
    """Prune a deep copy of ``model`` at one width; returns it and a record of what happened."""
    tp = _tp()
    imp = tp.importance.MagnitudeImportance(p=1)
    model = copy.deepcopy(model).eval()
    folded = fold_spectral_norm(model)
    for p in model.parameters():  # the graph is traced through autograd; a student trains anyway
        p.requires_grad_(True)
    names = {m: n for n, m in model.named_modules()}
    want = _forward(model, inputs).shape
    ignored = output_layers(model, inputs) + [dict(model.named_modules())[p] for p in keep_layers]
    groups: list[dict] = []
    skipped: list[str] = []
    # 1) channels of reshaped Linear outputs, ranked from the map's side; kept if the forward hard-codes them
    dg = _graph(tp, model, inputs)
    todo = [(names[lin], names[consumer]) for lin, consumer, _ in _reshape_linears(tp, dg) if lin not in ignored]
    for lin_path, consumer_path in todo:
        trial = copy.deepcopy(model)
        tdg = _graph(tp, trial, inputs)
        c_mod = dict(trial.named_modules())[consumer_path]
        pruner = tdg.get_pruner_of_module(c_mod)
        if isinstance(c_mod, _LAYERS):
            fn, ch = pruner.prune_in_channels, pruner.get_in_channels(c_mod)
        else:
            fn, ch = pruner.prune_out_channels, pruner.get_out_channels(c_mod)
        res = _prune_group(tp, tdg, imp, c_mod, fn, ch, width)
        if res is not None and _shape_ok(trial, inputs, want):
            model = trial
            groups.append({"root": f"{lin_path} (reshaped)", "channels": res[0], "kept": res[1]})
        elif res is not None:
            skipped.append(f"{lin_path} (its forward fixes the channels of the reshape)")
    # 2) every other channel group, rooted at Conv/Linear outputs
    table = dict(model.named_modules())
    whole = output_layers(model, inputs) + [table[p] for p in keep_layers]
    dg = _graph(tp, model, inputs)
    ignored = whole + [lin for lin, _, _ in _reshape_linears(tp, dg)]  # done above (or kept on purpose)
    names = {m: n for n, m in model.named_modules()}
    refused: list[str] = []  # groups torch-pruning could not slice (e.g. a GLU's halves)
    for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=[nn.modules.conv._ConvNd, nn.Linear]):
        root = group[0].dep.target.module
        fn = group[0].dep.handler
        ch = len(group[0].idxs)
        res = _prune_group(tp, dg, imp, root, fn, ch, width)
        if res is not None:
            groups.append({"root": names.get(root, str(root)), "channels": res[0], "kept": res[1]})
        elif _keep_count(ch, width) < ch:
            refused.append(names.get(root, str(root)))
    if not _shape_ok(model, inputs, want):
        raise RuntimeError(
            "pruning changed or broke the generator's output (a layer outside torch-pruning's "
            "graph); name the layers to keep whole (keep_layers) or use a width of 1"
        )
    return model, {"groups": groups, "kept_whole": [names[m] for m in whole] + skipped, "spectral_norm_folded": folded,
                   "refused": refused}  # fmt: skip


def macs_of(adapter_or_model: GeneratorAdapter | nn.Module, inputs: tuple | None = None) -> int:
    """MACs per image of a generator (gankd's counter, batch 1)."""
    from gankd.metrics.efficiency import count_macs

    if isinstance(adapter_or_model, GeneratorAdapter):
        model, inputs = adapter_or_model.model, adapter_or_model.model_inputs(1)
    else:
        model = adapter_or_model
    return int(count_macs(model, inputs)["macs"])


@torch.no_grad()
def largest_width(fits, steps: int = 12):
    """Bisection on (0, 1): the largest width ``w`` found whose ``fits(w)`` returns ``(True, result)``;
    returns ``(w, result)``, or None when no width tried fits (``--target-macs`` for gankd's own
    families and for torch-pruned students)."""
    lo, hi, best = 0.0, 1.0, None
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok, result = fits(mid)
        if ok:
            best, lo = (mid, result), mid
        else:
            hi = mid
    return best


@torch.no_grad()
def _reinit(model: nn.Module, seed: int) -> None:
    """Fresh weights, pruned shapes kept: every layer's own ``reset_parameters`` under ``seed``; a
    parameter of a module without one (a custom layer: equalized-lr, modulated conv, a learned
    constant) is drawn from a normal with the pruned tensor's own mean and standard deviation."""
    torch.manual_seed(seed)
    done: set[int] = set()
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters") and callable(m.reset_parameters):
            m.reset_parameters()
            done.update(id(p) for p in m.parameters())
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            m.reset_running_stats()
    for p in model.parameters():
        if id(p) not in done and p.numel() > 1:
            mean, std = p.mean(), p.std()
            p.copy_(torch.randn_like(p) * std + mean)


class PruneRefused(Exception):
    """A pruner cannot make this student (the message says why); the next registered one is tried."""


@dataclass(frozen=True)
class Pruner:
    """``prune(model, inputs, width, keep_layers) -> (pruned deep copy, info)`` with ``info`` holding
    ``groups`` and ``kept_whole`` (raise :class:`PruneRefused` to hand over); ``takes(model)``: False
    skips this pruner for the model; ``method`` and ``importance`` are recorded in ``prune_info``."""

    prune: Callable[[nn.Module, tuple, float, list[str]], tuple[nn.Module, dict]]
    method: str
    importance: str
    takes: Callable[[nn.Module], bool] = lambda model: True


def _torch_pruning(model: nn.Module, inputs: tuple, width: float, keep_layers: list[str]) -> tuple[nn.Module, dict]:
    try:
        pruned, info = _prune_module(model, inputs, width, keep_layers)
    except RuntimeError as e:
        raise PruneRefused(str(e).split(";")[0]) from None
    if info["refused"]:
        raise PruneRefused(f"it could not slice {', '.join(info['refused'])}")
    return pruned, info


def _probes(model: nn.Module, inputs: tuple, width: float, keep_layers: list[str]) -> tuple[nn.Module, dict]:
    return pruning_probe.probe_prune(model, inputs, width, keep_layers, _forward, output_layers)


def _not_styled(model: nn.Module) -> bool:
    return not pruning_probe.is_styled(model)


# Pruners, tried in this order. torch-pruning traces the graph (DepGraph); it cannot see couplings made
# with functional ops (StyleGAN2's modulated convolutions), which skip it. gankd's gradient probes find
# channel groups for any generator and take whatever torch-pruning breaks or cannot slice (GLU halves).
PRUNERS = Registry("pruner", ordered=True)
PRUNERS.add("torch-pruning", Pruner(_torch_pruning, "torch-pruning DepGraph", IMPORTANCE, takes=_not_styled))
PRUNERS.add("probes", Pruner(_probes, pruning_probe.METHOD, pruning_probe.IMPORTANCE))


def prune_generator(
    adapter: GeneratorAdapter,
    width: float | None = None,
    target_macs: float | None = None,
    init: str = "prune",
    seed: int = 0,
    keep_layers: list[str] | None = None,
) -> GeneratorAdapter:
    """A pruned student of ``adapter`` (a new adapter on a deep copy; the teacher is untouched).

    ``width`` in (0, 1]: keep ``round(C * width)`` channels of every prunable group of ``C``.
    ``target_macs`` in (0, 1]: instead, the largest common width whose MACs are at most that
    fraction of the teacher's (bisection, 12 steps). ``init="random"`` keeps the pruned shapes
    with fresh weights (each layer's ``reset_parameters``, seeded; not the model's own init).
    ``keep_layers``: module paths whose output channels stay whole.

    The result has ``prune_info`` (dict): importance, width, MACs of teacher and student
    and their ratio, per-group channel counts, what was kept whole. Its spec is the
    teacher's (same inputs, output range and feature taps, by module path).
    """
    if init not in INITS:
        raise ValueError(f"--init must be one of {INITS}, got '{init}'")
    if (width is None) == (target_macs is None):
        raise ValueError("give one of --width or --target-macs")
    for name, v in (("--width", width), ("--target-macs", target_macs)):
        if v is not None and not 0 < v <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {v}")
    keep_layers = list(keep_layers or [])
    from gankd.adapter import resolve_modules

    resolve_modules(adapter.model, keep_layers, flag="--keep-layers")
    inputs = _model_inputs(adapter)
    teacher_macs = macs_of(adapter)

    # the first registered pruner that takes the model; one that refuses hands it to the next for good
    # (every width of a --target-macs search then comes from the same pruner)
    names = [n for n in PRUNERS if PRUNERS.get(n).takes(adapter.model)]
    used = [0]

    def at(w: float):
        while True:
            name = names[used[0]]
            try:
                model, info = PRUNERS.get(name).prune(adapter.model, inputs, w, keep_layers)
                return model, info, macs_of(model, tuple(x[:1] for x in inputs))
            except PruneRefused as e:
                if used[0] + 1 >= len(names):
                    raise ValueError(f"no pruner takes this generator ({name}: {e}); keep the layer it names "
                                     "whole with --keep-layers") from None
                log.info("%s: %s; using %s", name, e, names[used[0] + 1])
                used[0] += 1

    if width is not None:
        model, info, macs = at(width)
    else:
        best = largest_width(lambda w: (lambda c: (c[2] <= target_macs * teacher_macs, c))(at(w)), steps=12)
        if best is None:
            raise ValueError(f"--target-macs {target_macs} is below what pruning every channel group to 1 reaches")
        width, (model, info, macs) = best
    if init == "random":
        _reinit(model, seed)
    spec = IOSpec.from_dict(adapter.spec.to_dict())
    student = GeneratorAdapter(model.train(adapter.model.training), spec)
    pruner = PRUNERS.get(names[used[0]])
    student.prune_info = {
        "method": pruner.method,
        "importance": pruner.importance,
        "init": init,
        "seed": seed,
        "width": round(float(width), 6),
        "pruning_ratio": round(1.0 - float(width), 6),
        "target_macs": target_macs,
        "teacher_macs": teacher_macs,
        "student_macs": macs,
        "macs_ratio": macs / teacher_macs if teacher_macs else None,
        "teacher_params": sum(p.numel() for p in adapter.model.parameters()),
        "student_params": sum(p.numel() for p in model.parameters()),
        "groups": info["groups"],
        "kept_whole": info["kept_whole"],
    }
    if info.get("spectral_norm_folded"):  # the student's folder loads them as plain weights
        student.prune_info["spectral_norm_folded"] = info["spectral_norm_folded"]
    return student


__all__ = ["prune_generator", "largest_width", "macs_of", "output_layers", "INITS", "IMPORTANCE"]
