"""The generator seam: everything gankd needs to know about one generator.

A :class:`GeneratorAdapter` wraps a generator module (gankd's own families or a user's
``nn.Module``) together with an :class:`IOSpec` that says

- which inputs it takes, in call order (a latent of any per-sample shape such as
  ``(100,)`` or ``(100, 1, 1)``, optional class labels, later a source image),
- the range of its output (mapped to gankd's [-1, 1] here and nowhere else),
- where its intermediate features come from: ``native`` (the module's
  ``forward(..., return_features=True)``) or a list of module paths captured with
  forward hooks, resolved once into module references when the adapter is built.

Distillation, sampling, metrics, speed and export build inputs and call models
through this class, so nothing downstream assumes ``z_dim``, classes or a resolution.

Latents are reproducible: the latent for seed ``s`` is ``randn(prod(shape))`` from
``torch.Generator().manual_seed(s)``, reshaped; for gankd's (z_dim,) latents this is
the same tensor the earlier ``sampling.latents`` drew.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

INPUT_KINDS = ("latent", "label", "image")


NOISE_MODES = ("as-is", "zero")


@dataclass
class InputSpec:
    name: str  # argument name, e.g. "z", "y", "src"
    kind: str  # latent (standard normal), label (int64 class index) or image (in [-1, 1])
    shape: tuple[int, ...] = ()  # per-sample shape, e.g. (100, 1, 1); () for labels
    num_classes: int = 0  # labels only: number of classes

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"input '{self.name}': kind must be one of {INPUT_KINDS}, got '{self.kind}'")
        if self.kind == "latent" and (not self.shape or min(self.shape) < 1):
            raise ValueError(f"input '{self.name}': a latent needs a positive shape such as (100,) or (100,1,1)")
        if self.kind == "label" and self.num_classes < 1:
            raise ValueError(f"input '{self.name}': a label input needs num_classes >= 1")
        if self.kind == "image" and (len(self.shape) != 3 or min(self.shape) < 1):
            raise ValueError(f"input '{self.name}': an image input needs a shape (C, H, W), got {self.shape}")


@dataclass
class IOSpec:
    inputs: list[InputSpec]  # in call order
    output_range: tuple[float, float] = (-1.0, 1.0)  # value range of the raw output
    features: str | list[str] = "native"  # "native", "none", or module paths for forward hooks
    image_channels: int = 0  # output channels (0 = unknown until a dry run)
    resolution: int = 0  # output height = width (0 = unknown until a dry run)
    input_range: tuple[float, float] = (-1.0, 1.0)  # value range the model expects of source images
    # keyword arguments every call of the module gets (JSON values): a StyleGAN-style generator's
    # truncation_psi, noise_mode="const" (so the same latent gives the same image, for teacher and student)
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    # a module returning several images (FastGAN: [full size, half size]): the one gankd uses
    output_index: int | None = None  # None: the only one, or the largest
    # "zero": Gaussian noise drawn inside the forward (torch.randn...) is zeros, for a generator that
    # offers no argument to fix its noise (FastGAN's noise injection); "as-is": left alone
    noise: str = "as-is"

    def __post_init__(self):
        self.inputs = [i if isinstance(i, InputSpec) else InputSpec(**i) for i in self.inputs]
        self.output_range = tuple(float(v) for v in self.output_range)
        self.input_range = tuple(float(v) for v in self.input_range)
        if len(self.output_range) != 2 or self.output_range[0] >= self.output_range[1]:
            raise ValueError(f"--output-range must be LOW,HIGH with LOW < HIGH, got {self.output_range}")
        if len(self.input_range) != 2 or self.input_range[0] >= self.input_range[1]:
            raise ValueError(f"--input-range must be LOW,HIGH with LOW < HIGH, got {self.input_range}")
        if not any(i.kind == "latent" for i in self.inputs) and not any(i.kind == "image" for i in self.inputs):
            raise ValueError("a generator needs a latent or an image input")
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {names}")
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
        self.call_kwargs = dict(self.call_kwargs or {})
        for k, v in self.call_kwargs.items():
            if not isinstance(v, (str, int, float, bool)) or v is None:
                raise ValueError(f"--forward-kwargs: {k}={v!r} is not a number, string or boolean")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output_range"] = list(self.output_range)
        d["input_range"] = list(self.input_range)
        for i in d["inputs"]:
            i["shape"] = list(i["shape"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> IOSpec:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    # convenient views
    def latent(self) -> InputSpec | None:
        return next((i for i in self.inputs if i.kind == "latent"), None)

    def label(self) -> InputSpec | None:
        return next((i for i in self.inputs if i.kind == "label"), None)

    def image(self) -> InputSpec | None:
        """The source-image input of an image-to-image generator (None for noise-to-image)."""
        return next((i for i in self.inputs if i.kind == "image"), None)


def native_spec(model: nn.Module) -> IOSpec:
    """The IOSpec of a gankd family generator: ``z`` (``z_dim``) and ``y`` (``num_classes``) for
    noise-to-image families, ``src`` (``in_channels`` x the trained resolution) for
    image-to-image ones (``gankd.models.i2i``)."""
    cfg = getattr(model, "cfg", None)
    if int(getattr(model, "in_channels", 0) or 0) > 0:
        r = int(getattr(cfg, "resolution", 0))
        return IOSpec([InputSpec("src", "image", (int(model.in_channels), r, r))], (-1.0, 1.0), "native",
                      int(getattr(cfg, "image_channels", 0)), r)  # fmt: skip
    inputs = [InputSpec("z", "latent", (int(model.z_dim),))]
    if int(getattr(model, "num_classes", 0)) > 0:
        inputs.append(InputSpec("y", "label", (), int(model.num_classes)))
    return IOSpec(inputs, (-1.0, 1.0), "native", int(getattr(cfg, "image_channels", 0)),
                  int(getattr(cfg, "resolution", 0)))  # fmt: skip


def module_paths(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def resolve_modules(model: nn.Module, paths: list[str], flag: str = "--feat-layers") -> list[nn.Module]:
    """Module paths -> module references, once; an unknown path is a one-line error."""
    table = dict(model.named_modules())
    out = []
    for p in paths:
        if p not in table or not p:
            valid = ", ".join(module_paths(model)[:40])
            more = " ..." if len(table) > 41 else ""
            raise ValueError(f"{flag}: no module '{p}' in {type(model).__name__}; valid paths: {valid}{more}")
        out.append(table[p])
    return out


_NOISE_FUNCS = ("randn", "randn_like", "normal")  # on torch; and Tensor.normal_


@contextlib.contextmanager
def _noise_functions(make):
    """For the ``with`` block, torch's Gaussian noise functions are ``make(name, original)``: swapped on
    the torch module, so eager runs and export tracing see the same thing."""
    saved = [getattr(torch, n) for n in _NOISE_FUNCS] + [torch.Tensor.normal_]
    for n, f in zip(_NOISE_FUNCS, saved):
        setattr(torch, n, make(n, f))
    torch.Tensor.normal_ = make("normal_", saved[-1])
    try:
        yield
    finally:
        for n, f in zip(_NOISE_FUNCS, saved):
            setattr(torch, n, f)
        torch.Tensor.normal_ = saved[-1]


def _zeros(name: str, _original):
    """The mean (zeros) of what ``torch.<name>`` would draw, same shape."""

    def randn(*size, **kw):
        kw.pop("generator", None)
        if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
            size = tuple(size[0])
        return torch.zeros(*size, **kw)

    def randn_like(t, **kw):
        kw.pop("generator", None)
        return torch.zeros_like(t, **kw)

    def normal(mean=0.0, std=1.0, *args, size=None, **kw):
        kw.pop("generator", None)
        if size is None and args and not isinstance(args[0], torch.Generator):
            size = args[0]
        if size is not None:
            return torch.full(tuple(size), float(mean), **kw)
        return (torch.as_tensor(mean) + torch.zeros_like(torch.as_tensor(std))).clone()

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        with torch.no_grad():
            return self.fill_(mean)

    return {"randn": randn, "randn_like": randn_like, "normal": normal, "normal_": normal_}[name]


def zero_noise():
    """While a generator's forward runs: Gaussian noise it draws (``torch.randn``, ``randn_like``,
    ``normal``, ``Tensor.normal_``) comes out as its mean (zeros) of the same shape."""
    return _noise_functions(_zeros)


@contextlib.contextmanager
def noise_draws():
    """Counts the Gaussian noise a forward draws (the same functions): ``with noise_draws() as n:
    model(z)``, then ``n[0]``."""
    count = [0]

    def counting(_name, fn):
        def wrapped(*a, **k):
            count[0] += 1
            return fn(*a, **k)

        return wrapped

    with _noise_functions(counting):
        yield count


def pick_output(out):
    """(image, index) of a module's output: the tensor, or the largest image of a list/tuple."""
    if not isinstance(out, (list, tuple)):
        return out, None
    images = [(i, o) for i, o in enumerate(out) if isinstance(o, torch.Tensor) and o.dim() == 4]
    if not images:
        return out, None
    i, img = max(images, key=lambda t: (t[1].shape[-1] * t[1].shape[-2], -t[0]))
    return img, i


class BoundCall:
    """``model.forward`` as gankd calls it: the module's own forward with the spec's keyword arguments,
    its noise setting and one output image. An object (not a closure) so ``copy.deepcopy`` of the
    module binds the copy."""

    def __init__(self, model: nn.Module, spec: IOSpec):
        self.model = model
        self.kwargs = dict(spec.call_kwargs)
        self.output_index = spec.output_index
        self.zero_noise = spec.noise == "zero"

    def __call__(self, *args, **kwargs):
        fn = type(self.model).forward
        if self.zero_noise:
            with zero_noise():
                out = fn(self.model, *args, **{**self.kwargs, **kwargs})
        else:
            out = fn(self.model, *args, **{**self.kwargs, **kwargs})
        if isinstance(out, (list, tuple)):
            return out[self.output_index] if self.output_index is not None else pick_output(out)[0]
        return out


def bind_call(model: nn.Module, spec: IOSpec) -> None:
    """Make ``model(*inputs)`` mean gankd's call (:class:`BoundCall`) for every caller (the adapter,
    pruning, MAC counting, timing, ONNX export); a spec with nothing to bind leaves the module alone."""
    if spec.call_kwargs or spec.output_index is not None or spec.noise != "as-is":
        model.forward = BoundCall(model, spec)
    elif isinstance(model.__dict__.get("forward"), BoundCall):
        del model.forward


class GeneratorAdapter(nn.Module):
    """One generator behind gankd's seam. ``adapter(inputs)`` -> images in [-1, 1].

    ``inputs`` is a dict of named tensors (see :meth:`seeded_inputs`, :meth:`random_inputs`).
    The wrapped module is ``adapter.model``; ``state_dict`` is the model's own. Declared fields:
    ``native_family`` (the gankd family when the module is one of gankd's generators on its own
    spec, else None: imported generators and their students), ``origin`` (class and kwargs a
    module folder rebuilds it with), ``prune_info`` (how a pruned student was made) and
    ``latency_budget`` (the measurements of ``--target-latency``).
    """

    def __init__(self, model: nn.Module, spec: IOSpec | None = None):
        super().__init__()
        self.model = model
        self.training = model.training  # wrapping changes no mode: an eval model gives an eval adapter
        self.native_family: str | None = getattr(model, "family", None) if spec is None else None
        self.origin: dict | None = None
        self.prune_info: dict | None = None
        self.latency_budget: dict | None = None
        self.spec = spec if spec is not None else native_spec(model)
        bind_call(model, self.spec)
        self._tap_modules: list[nn.Module] | None = None
        if isinstance(self.spec.features, list):
            self._tap_modules = resolve_modules(model, self.spec.features)

    def __getattr__(self, name: str):
        """Attributes the adapter does not define read through to the wrapped module (``G.z_dim``,
        ``G.cfg`` of a gankd family), so a loaded generator is used as the module is."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            model = self.__dict__.get("_modules", {}).get("model")
            if model is None or name.startswith("__"):
                raise
            try:
                return getattr(model, name)
            except AttributeError:
                raise AttributeError(f"'GeneratorAdapter' object has no attribute '{name}', nor has its "
                                     f"{type(model).__name__}") from None

    # ------------------------------------------------------------- properties
    @property
    def num_classes(self) -> int:
        lab = self.spec.label()
        return lab.num_classes if lab is not None else 0

    @property
    def latent_shape(self) -> tuple[int, ...]:
        lat = self.spec.latent()
        return lat.shape if lat is not None else ()

    @property
    def is_i2i(self) -> bool:
        """Whether the generator maps a source image to an image (its inputs come from data)."""
        return self.spec.image() is not None

    @property
    def has_features(self) -> bool:
        return self.spec.features != "none"

    def state_dict(self, *args, **kwargs):  # the model's keys, unprefixed
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state, strict=strict, assign=assign)

    # ----------------------------------------------------------------- inputs
    def seeded_inputs(self, seeds: list[int], labels: torch.Tensor | None = None, stand_in: bool = False,
                      size: int | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        """Inputs for explicit seeds: latent i from seed ``seeds[i]``; labels given or class-balanced.

        Source images come from data; ``stand_in=True`` makes seeded uniform noise in [-1, 1]
        instead (``size`` px square, default the spec's), for dry runs, MACs, timing and export.
        """
        out: dict[str, torch.Tensor] = {}
        for spec in self.spec.inputs:
            if spec.kind == "latent":
                n = math.prod(spec.shape)
                out[spec.name] = torch.stack(
                    [torch.randn(n, generator=torch.Generator().manual_seed(int(s))).view(spec.shape) for s in seeds]
                )
            elif spec.kind == "label":
                lab = labels if labels is not None else torch.arange(len(seeds)) % spec.num_classes
                if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= spec.num_classes):
                    raise ValueError(f"--classes: labels must be in 0..{spec.num_classes - 1}")
                out[spec.name] = lab.long()
            elif stand_in:
                c, h, w = spec.shape if size is None else (spec.shape[0], size, size)
                out[spec.name] = torch.stack(
                    [torch.rand(c * h * w, generator=torch.Generator().manual_seed(int(s))).view(c, h, w)
                     for s in seeds]).mul_(2).sub_(1)  # fmt: skip
            else:
                raise ValueError(f"input '{spec.name}' is a source image: this is an image-to-image generator, "
                                 "whose inputs come from data (pass --data and --task)")  # fmt: skip
        return out

    def random_inputs(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Inputs for one training batch, drawn from ``gen`` in spec order (latent, then labels)."""
        out: dict[str, torch.Tensor] = {}
        for spec in self.spec.inputs:
            if spec.kind == "latent":
                out[spec.name] = torch.randn(n, *spec.shape, generator=gen)
            elif spec.kind == "label":
                out[spec.name] = torch.randint(0, spec.num_classes, (n,), generator=gen)
            else:
                raise ValueError(f"input '{spec.name}' is a source image: draw it from the data")
        return out

    def example_inputs(self, batch: int = 1, device: str | torch.device = "cpu", first_seed: int = 0,
                       size: int | None = None) -> tuple[torch.Tensor, ...]:  # fmt: skip
        """Positional inputs for MACs, timing and ONNX export (seeds first_seed..; source images
        are seeded stand-ins, ``size`` px square when given)."""
        d = self.seeded_inputs(list(range(first_seed, first_seed + batch)), stand_in=True, size=size)
        return tuple(d[s.name].to(device) for s in self.spec.inputs)

    def model_inputs(self, batch: int = 1, device: str | torch.device = "cpu") -> tuple:
        """:meth:`example_inputs` as the wrapped module takes them (source images in its input range),
        for calling or tracing ``self.model`` directly."""
        return tuple(self._args(dict(zip(self.input_names, self.example_inputs(batch, device)))))

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.spec.inputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = {name: {0: "batch"} for name in self.input_names}
        axes["image"] = {0: "batch"}
        if self.is_i2i:  # fully convolutional: any spatial size
            for s in self.spec.inputs:
                if s.kind == "image":
                    axes[s.name] = {0: "batch", 2: "height", 3: "width"}
            axes["image"] = {0: "batch", 2: "height", 3: "width"}
        return axes

    # ------------------------------------------------------------------ call
    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Raw model output -> [-1, 1]."""
        lo, hi = self.spec.output_range
        if (lo, hi) == (-1.0, 1.0):
            return x
        return (x - lo) * (2.0 / (hi - lo)) - 1.0

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """A source image in [-1, 1] -> the model's input range."""
        lo, hi = self.spec.input_range
        if (lo, hi) == (-1.0, 1.0):
            return x
        return (x + 1.0) * ((hi - lo) / 2.0) + lo

    def _args(self, inputs: dict[str, torch.Tensor]) -> list:
        try:
            return [self.from_unit(inputs[s.name]) if s.kind == "image" else inputs[s.name] for s in self.spec.inputs]
        except KeyError as e:
            raise ValueError(f"missing generator input {e}; this generator takes {self.input_names}") from None

    def forward(self, *inputs, return_features: bool = False):
        """``adapter({"z": z, ...})`` or, as the user calls their own module, ``adapter(z, ...)``
        (tensors in spec order) -> images in [-1, 1] (and the feature taps' outputs)."""
        named = inputs[0] if len(inputs) == 1 and isinstance(inputs[0], dict) else dict(zip(self.input_names, inputs))
        args = self._args(named)
        if self.spec.features == "native":
            if return_features:
                img, feats = self.model(*args, return_features=True)
                return self.to_unit(img), list(feats)
            return self.to_unit(self.model(*args))
        if not return_features or self._tap_modules is None:
            img = self.to_unit(self.model(*args))
            return (img, []) if return_features else img
        feats: list[torch.Tensor | None] = [None] * len(self._tap_modules)
        hooks = []
        for i, m in enumerate(self._tap_modules):

            def hook(_m, _inp, out, i=i):
                feats[i] = out

            hooks.append(m.register_forward_hook(hook))
        try:
            img = self.to_unit(self.model(*args))
        finally:
            for h in hooks:
                h.remove()
        return img, feats

    def call_positional(self, *args: torch.Tensor) -> torch.Tensor:
        """Positional call in spec order (source images in [-1, 1]) -> images in [-1, 1] (for export
        and timing)."""
        return self.to_unit(self.model(*self._args(dict(zip(self.input_names, args)))))

    @torch.no_grad()
    def feature_channels(self) -> list[int]:
        """Channels of each feature tap, by one dry run at batch 2 (in eval mode)."""
        was = self.model.training
        self.model.eval()
        try:
            ex = self.seeded_inputs([0, 1], stand_in=True)
            dev = next((p.device for p in self.model.parameters()), torch.device("cpu"))
            _, feats = self({k: v.to(dev) for k, v in ex.items()}, return_features=True)
        finally:
            self.model.train(was)
        return [int(f.shape[1]) for f in feats]

    def output_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one output image, by a dry run."""
        with torch.no_grad():
            was = self.model.training
            self.model.eval()
            try:
                dev = next((p.device for p in self.model.parameters()), torch.device("cpu"))
                img = self({k: v.to(dev) for k, v in self.seeded_inputs([0, 1], stand_in=True).items()})
            finally:
                self.model.train(was)
        return tuple(img.shape[1:])


@torch.no_grad()
def auto_feature_taps(model: nn.Module, example: tuple, max_taps: int = 3) -> list[str]:
    """Module paths at evenly spaced resolution stages, chosen by one dry run.

    Records every leaf module whose output is a 4-D map, groups them by spatial size,
    keeps the last module of each resolution stage (usually its activation), and picks
    up to ``max_taps`` stages evenly spaced from the lowest resolution up, leaving out
    the final output layer. A generator whose maps come only out of composite modules
    (StyleGAN-style: a modulated convolution holds its style layer, so no leaf returns a map)
    is read the same way from every module's output, leaving out image-channel outputs
    (toRGB layers).
    """
    taps = _stage_taps(model, example, max_taps, leaves_only=True)
    return taps or _stage_taps(model, example, max_taps, leaves_only=False)


def _stage_taps(model: nn.Module, example: tuple, max_taps: int, leaves_only: bool) -> list[str]:
    seen: list[tuple[str, int, int]] = []
    hooks = []
    pools = (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd)
    named = [(n, m) for n, m in model.named_modules() if n and not (leaves_only and list(m.children()))
             and not isinstance(m, pools)]  # a pooled copy (an excitation gate's input) is no stage output
    for name, m in named:

        def hook(_m, _i, out, name=name):
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                seen.append((name, int(out.shape[-1]), int(out.shape[1])))

        hooks.append(m.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        image = model(*example)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    image = pick_output(image)[0]
    if isinstance(image, torch.Tensor) and image.dim() == 4:  # image-channel maps (toRGB heads) and gates
        last = seen[-1:] if leaves_only else [("", int(image.shape[-1]), int(image.shape[1]))]
        seen = [s for s in seen[:-1] if s[2] != int(image.shape[1]) and s[1] >= 4] + last
    counts: dict[str, int] = {}
    for name, _, _ in seen:
        counts[name] = counts.get(name, 0) + 1
    # a module called more than once (a shared activation) cannot be one tap: skip it
    seen = [s for s in seen if counts[s[0]] == 1] if any(c == 1 for c in counts.values()) else seen
    if len(seen) < 2:
        return []
    body = seen[:-1]  # the last 4-D output is the image (or its activation)
    out_ch = seen[-1][2]
    body = [s for s in body if not (s[1] == seen[-1][1] and s[2] == out_ch)]
    stages: dict[int, str] = {}
    for name, size, _ in body:
        stages[size] = name  # last module at this resolution
    ordered = [stages[s] for s in sorted(stages)]
    if len(ordered) <= max_taps:
        return ordered
    idx = [round(i * (len(ordered) - 1) / (max_taps - 1)) for i in range(max_taps)] if max_taps > 1 else [0]
    return [ordered[i] for i in sorted(set(idx))]


class PositionalGenerator(nn.Module):
    """``forward(*inputs in IOSpec order)`` -> images in [-1, 1]: a generator without keyword
    options or dicts, for MACs, timing, memory and export (``self.gen`` is its adapter)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.gen = adapter_for(generator)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.gen.call_positional(*args)


def positional(model: nn.Module) -> PositionalGenerator:
    return model if isinstance(model, PositionalGenerator) else PositionalGenerator(model)


def adapter_for(model: nn.Module, spec: IOSpec | dict | None = None) -> GeneratorAdapter:
    """Wrap a module behind the seam. An adapter is returned as is, or, with another ``spec``
    (e.g. other feature taps), re-wrapped around the same module (keeping its ``origin``)."""
    if isinstance(spec, dict):
        spec = IOSpec.from_dict(spec)
    if isinstance(model, PositionalGenerator):
        model = model.gen
    if isinstance(model, GeneratorAdapter):
        if spec is None or spec == model.spec:
            return model
        out = GeneratorAdapter(model.model, spec)
        out.origin, out.native_family = model.origin, model.native_family
        return out
    return GeneratorAdapter(model, spec)


def spec_summary(spec: IOSpec) -> dict[str, Any]:
    """Short description for logs and JSON."""
    return {
        "inputs": {i.name: [i.kind, list(i.shape), i.num_classes] for i in spec.inputs},
        "output_range": list(spec.output_range),
        "input_range": list(spec.input_range),
        "features": spec.features,
    }


__all__ = ["InputSpec", "IOSpec", "GeneratorAdapter", "bind_call", "BoundCall", "zero_noise", "noise_draws",
           "pick_output", "PositionalGenerator", "positional", "native_spec",
           "resolve_modules",
           "auto_feature_taps", "adapter_for", "spec_summary"]  # fmt: skip
