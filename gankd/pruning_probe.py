"""Students of StyleGAN-style generators: channel groups found by gradient probes.

torch-pruning traces modules; a modulated convolution (StyleGAN2) is functional inside: its
weight ``(1, out, in, k, k)`` is scaled per sample by a style ``Linear`` on ``w`` and run as one
grouped convolution over a reshaped batch, with the per-channel bias and noise added by hand.
No module graph shows which channels are tied. This pruner measures the ties instead:

1. **Styled layers**: modules with a 4-D or 5-D ``weight`` of their own and a child layer with a
   2-D weight whose rows match the input channels (the style ``Linear``: its outputs scale the
   input channels).
2. **Probes**: one forward pass records each styled layer's input map ``x``; for input channel
   ``j`` the gradient of ``x[:, j].sum()`` reaches every parameter upstream. A parameter whose
   gradient is non-zero at index ``j`` alone along a dimension of the map's width is tied to that
   channel (the producing convolution's output rows, its bias, a learned constant input, a
   normalisation's scale). Two probes (``j = 0, 1``) must agree, so the tie is one-to-one.
3. **Groups**: a layer's ties plus its own input side (the weight's ``in`` dimension, the style
   layer's rows) form a group; groups that share a tensor dimension merge (the next convolution
   and the toRGB layer reading one map). A group with no producer found (the map comes from the
   inputs) is kept whole, as are the mapping network and the image layers (no styled layer reads
   them).
4. **Pruning**: each group keeps ``round(C * width)`` channels of the highest summed L1 magnitude
   (each tensor's slice norms divided by their mean), every tensor sliced along its tied
   dimension; buffers of the same size beside a sliced 1-D parameter (running statistics) follow.
   Integer attributes that recorded the old width (``in_channel``, ``out_features``...) are updated.
   A dry run must give the teacher's output shape, else a one-line error names the layer.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

METHOD = "gankd gradient-probe channel groups"
IMPORTANCE = "L1 magnitude of each channel across the group's tensors (each normalised by its mean)"


def _style_child(m: nn.Module, in_ch: int) -> nn.Module | None:
    for c in m.children():
        w = getattr(c, "weight", None)
        if isinstance(w, nn.Parameter) and w.dim() == 2 and w.shape[0] == in_ch:
            return c
    return None


def styled_layers(model: nn.Module) -> dict[str, tuple[nn.Module, int, nn.Module]]:
    """path -> (module, input-channel dim of its weight, its style layer) for every modulated conv."""
    out = {}
    for name, m in model.named_modules():
        w = m._parameters.get("weight")
        if w is None or w.dim() not in (4, 5):
            continue
        in_dim = 2 if w.dim() == 5 else 1
        style = _style_child(m, int(w.shape[in_dim]))
        if style is not None:
            out[name] = (m, in_dim, style)
    return out


def is_styled(model: nn.Module) -> bool:
    return bool(styled_layers(model))


def consumer_layers(model: nn.Module, skip: set[str] = frozenset()) -> dict[str, tuple[nn.Module, int, nn.Module]]:
    """Every layer whose input channels can shrink: the styled layers, and convolutions (groups 1;
    ConvTranspose weights are (in, out, k, k)). Fully connected layers are left whole (a mapping
    network reads no map)."""
    out = dict(styled_layers(model))
    for name, m in model.named_modules():
        if name in out or name in skip or not isinstance(m, nn.modules.conv._ConvNd) or m.groups != 1:
            continue
        out[name] = (m, 0 if m.transposed else 1, None)
    return out


F = torch.nn.functional
_GATES = {torch.sigmoid, torch.Tensor.sigmoid, torch.sigmoid_, torch.Tensor.sigmoid_}
_SQUASH = {torch.tanh, torch.Tensor.tanh, torch.tanh_, torch.Tensor.tanh_, F.hardtanh}
_RECTIFIERS = {torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.leaky_relu, F.leaky_relu_, F.silu, F.gelu, F.elu,
               F.softplus, F.hardswish, F.mish, F.selu, torch.Tensor.relu, torch.Tensor.relu_}  # fmt: skip


def _soft(x: torch.Tensor) -> torch.Tensor:
    return x / (1 + x.abs())


class _Unsaturated(torch.overrides.TorchFunctionMode):
    """While probing: activations that can have zero slope get stand-ins that never do (sigmoid ->
    0.5 + softsign/2, tanh -> softsign, rectifiers -> leaky ReLU 0.1, ``F.glu`` on that sigmoid), so a
    tie shows as a non-zero gradient whatever the weights (a saturated gate or a dead ReLU would hide
    it). Shapes and which channel meets which are unchanged, and only those are read."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _GATES:
            return 0.5 + 0.5 * _soft(args[0])
        if func in _SQUASH:
            return _soft(args[0])
        if func in _RECTIFIERS:
            return F.leaky_relu(args[0], 0.1)
        if func is F.glu:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else -1)
            a, b = args[0].chunk(2, dim)
            return a * (0.5 + 0.5 * _soft(b))
        return func(*args, **kwargs)


class _Groups:
    """Union-find over (parameter name, dim) members."""

    def __init__(self):
        self.parent: dict = {}

    def find(self, a):
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)

    def groups(self) -> list[list]:
        out: dict = {}
        for a in self.parent:
            out.setdefault(self.find(a), []).append(a)
        return list(out.values())


def _ties(x: torch.Tensor, j: int, params: list[tuple[str, nn.Parameter]]) -> set[tuple[str, int, int]]:
    """(param, dim, k) whose gradient of ``x[:, j].sum()`` is non-zero at indices ``j, j+C, .., j+(k-1)C``
    alone along dim (of size k*C; k = 2 where a GLU gates one half of a map with the other)."""
    c = x.shape[1]
    # a random weighting of the channel's values: a plain sum of a normalised map is a constant
    r = torch.rand(x[:, j].shape, generator=torch.Generator().manual_seed(j), dtype=x.dtype).to(x.device) + 0.5
    grads = torch.autograd.grad((x[:, j] * r).sum(), [p for _, p in params], retain_graph=True, allow_unused=True)
    found = set()
    for (name, p), g in zip(params, grads):
        if g is None:
            continue
        for d, size in enumerate(p.shape):
            if size % c or size == 0:
                continue
            k = size // c
            support = g.abs().transpose(0, d).reshape(size, -1).sum(1)
            nz = torch.nonzero(support).flatten().tolist()
            if nz == [j + i * c for i in range(k)]:
                found.add((name, d, k))
    return found


def channel_groups(model: nn.Module, inputs: tuple, keep: set[str] = frozenset(),
                   outputs: set[str] = frozenset()) -> tuple[list[dict], list[str]]:  # fmt: skip
    """The coupled channel groups of a StyleGAN-style generator (see the module docstring):
    ``[{"consumers": [layer paths], "members": [(param, dim)], "channels": C}]`` and the layers
    whose inputs stay whole (with the reason)."""
    layers = consumer_layers(model)
    captured: dict[str, torch.Tensor] = {}

    def capture(name):
        def hook(_m, args):
            captured.setdefault(name, args[0])  # the first call's input (returning None keeps the args)

        return hook

    hooks = [m.register_forward_pre_hook(capture(name)) for name, (m, _, _) in layers.items()]
    # unsaturating activations: no unit saturates or dies (a sigmoid gate stuck at 1 or a dead ReLU has no
    # gradient to show its tie)
    was = model.training
    try:
        with torch.enable_grad(), _Unsaturated():
            model.eval()(*inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return _groups_from_probes(model, layers, captured, keep, outputs)


def _groups_from_probes(model, layers, captured, keep, outputs) -> tuple[list[dict], list[str]]:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    protected = {f"{o}.{k}" for o in outputs for k in model.get_submodule(o)._parameters}  # the image channels
    uf, producers, whole = _Groups(), set(), []
    consumers: dict = {}
    for name, (_, in_dim, style) in layers.items():
        x = captured.get(name)
        if x is None or x.dim() != 4 or not x.requires_grad:
            whole.append(f"{name} (its input is the generator's input, not a feature map)")
            continue
        c = x.shape[1]
        ties = _ties(x, 0, params)
        if c > 1:
            second = _ties(x, 1, params)
            if second != ties:
                whole.append(f"{name} (its input channels are not tied one-to-one to a producer)")
                continue
        own = [(f"{name}.weight", in_dim, 1)]
        if style is not None:
            own += [(f"{_path(model, style)}.{k}", 0, 1) for k, v in style._parameters.items()
                    if v is not None and v.shape[0] == c]  # fmt: skip
        if any(n in protected and d == 0 for n, d, _ in ties):
            whole.append(f"{name} (its input comes from an image layer)")
            continue
        if not ties:
            whole.append(f"{name} (no producer of its input found: it comes from the generator's inputs)")
            continue
        members = sorted(ties) + own
        for a in members[1:]:
            uf.union(members[0], a)
        producers.update(ties)
        consumers.setdefault(members[0], []).append(name)
    out = []
    for g in uf.groups():
        root = uf.find(g[0])
        layer_names = sorted({n for k, ns in consumers.items() if uf.find(k) == root for n in ns})
        if any(n.startswith(k + ".") for n, _, _ in g for k in keep):
            whole.append(f"{', '.join(layer_names)} (--keep-layers)")
            continue
        table = dict(model.named_parameters())
        sizes = {table[n].shape[d] // k for n, d, k in g}
        if len(sizes) != 1 or len({(n, d) for n, d, _ in g}) != len(g):
            whole.append(f"{', '.join(layer_names)} (tied tensors disagree on the width: {sorted(sizes)})")
            continue
        out.append({"consumers": layer_names, "members": sorted(g), "channels": int(sizes.pop())})
    return out, whole


def _path(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def _owner(model: nn.Module, pname: str) -> tuple[nn.Module, str]:
    mod_path, _, attr = pname.rpartition(".")
    return (model.get_submodule(mod_path) if mod_path else model), attr


_INT_ATTRS = ("in_channels", "out_channels", "in_features", "out_features", "num_features", "in_channel",
              "out_channel", "in_ch", "out_ch", "channels", "num_channels")  # fmt: skip


@torch.no_grad()
def prune_groups(model: nn.Module, groups: list[dict], width: float) -> list[dict]:
    """Slice every group to its ``round(C * width)`` strongest channels, in place; returns the record."""
    record = []
    for g in groups:
        c = g["channels"]
        k = max(1, min(c, int(round(c * width))))
        if k >= c:
            continue
        table = dict(model.named_parameters())
        score = torch.zeros(c)
        for n, d, rep in g["members"]:
            norms = table[n].detach().abs().transpose(0, d).reshape(rep * c, -1).sum(1).float().cpu()
            norms = norms.view(rep, c).sum(0)  # a GLU pair counts together
            score += norms / norms.mean().clamp_min(1e-12)
        idx = torch.sort(torch.argsort(score, descending=True)[:k]).values
        for n, d, rep in g["members"]:
            full = torch.cat([idx + i * c for i in range(rep)])
            owner, attr = _owner(model, n)
            p = owner._parameters[attr]
            owner._parameters[attr] = nn.Parameter(p.data.index_select(d, full.to(p.device)).clone(),
                                                   requires_grad=p.requires_grad)  # fmt: skip
            if p.dim() == 1:  # running statistics beside a per-channel scale or shift
                for b, buf in list(owner._buffers.items()):
                    if buf is not None and buf.dim() == 1 and buf.shape[0] == rep * c:
                        owner._buffers[b] = buf.index_select(0, full.to(buf.device)).clone()
            for a in _INT_ATTRS:
                if getattr(owner, a, None) == rep * c and not isinstance(getattr(owner, a), bool):
                    setattr(owner, a, rep * k)
        record.append({"root": ", ".join(g["consumers"]), "channels": c, "kept": k})
    return record


def probe_prune(model: nn.Module, inputs: tuple, width: float, keep_layers: list[str], forward,
                outputs=None) -> tuple[nn.Module, dict]:  # fmt: skip
    """Prune a deep copy of ``model`` at one width: (student, record). ``outputs(model, inputs)``:
    the image layers (their output channels stay; default: none besides what no layer reads)."""
    from gankd.pruning import fold_spectral_norm

    model = copy.deepcopy(model).eval()
    folded = fold_spectral_norm(model)
    for p in model.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        want = forward(model, inputs).shape
    names = {m: n for n, m in model.named_modules()}
    out_layers = {names[m] for m in outputs(model, inputs)} if outputs is not None else set()
    groups, whole = channel_groups(model, inputs, set(keep_layers), out_layers)
    done = prune_groups(model, groups, width)
    try:
        with torch.no_grad():
            got = forward(model, inputs).shape
    except (RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RuntimeError(f"pruning broke the generator's forward ({first}): a layer reads a width the probes "
                           "did not tie; name it in --keep-layers or use --width 1") from None  # fmt: skip
    if got != want:
        raise RuntimeError(f"pruning changed the output shape {tuple(want)} -> {tuple(got)}; name the layer "
                           "in --keep-layers")  # fmt: skip
    log.info("probe pruning: %d channel groups, %d kept whole", len(done), len(whole))
    return model, {"groups": done, "kept_whole": whole, "spectral_norm_folded": folded}


__all__ = ["probe_prune", "channel_groups", "prune_groups", "styled_layers", "consumer_layers", "is_styled", "METHOD",
           "IMPORTANCE"]
