"""Perceptual distances for training losses (never for scoring).

``fmnist``: an LPIPS-style distance on the shipped fmnist-perceptual network: each
layer's features are unit-normalised over channels, squared differences averaged
over channels and space, summed over layers. Its class head also serves soft-label
KD. ``lpips-alex`` / ``lpips-vgg``: the ``lpips`` package with ImageNet trunks, used
only when the trunk weights exist locally (this machine cannot download them).

Loading never unpickles code: weight files are read with safetensors or
``torch.load(weights_only=True)`` (:func:`load_tensor_file`), and the ``lpips`` package is
built with ``pretrained=False, pnet_rand=True`` so it neither downloads nor loads anything
itself (:func:`lpips_model` loads its heads and trunk).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

PERCEPTUAL_NETS = ("fmnist", "lpips-alex", "lpips-vgg")
LPIPS_TRUNK_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def load_tensor_file(path: str | Path, label: str) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` dict from ``.safetensors`` or a ``torch.save`` file, on the CPU.

    ``torch.save`` files are read with ``weights_only=True``: a pickle that holds code or
    other objects is refused (ValueError, one line) and nothing in it runs. ``label`` names
    the file in messages (e.g. ``"--inception-weights PATH"``).
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError, SafetensorError, OSError, ...
        # torch's own message spans many lines and suggests weights_only=False: keep neither
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in reason.lower() or "weights only" in reason.lower():
            reason = "it holds objects other than tensors (code or classes), which are never unpickled"
        raise ValueError(
            f"{label}: cannot be read as weights ({reason[:200]}); "
            "pass a .safetensors file or a torch.save'd state dict of tensors"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{label}: not a flat state dict of tensors; pass the weights file itself")
    return dict(state)


def check_state(module: nn.Module, state: dict[str, torch.Tensor], label: str, strict: bool = True) -> None:
    """Raise a one-line ValueError unless ``state`` has ``module``'s keys and shapes
    (``strict=False``: a subset of them is enough)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state)) if strict else []
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(
            f"{label}: does not match the network (missing keys {missing[:3]}, unexpected keys {extra[:3]}); "
            "pass the original weights file"
        )
    for k, v in state.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise ValueError(
                f"{label}: tensor {k!r} has shape {tuple(v.shape)}, the network needs {tuple(own[k].shape)}; "
                "pass the original weights file"
            )


def lpips_hub_file(net: str) -> Path:
    """Where torch.hub (``$TORCH_HOME/hub/checkpoints``) keeps the ImageNet trunk of ``net``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_TRUNK_FILES[net]


def lpips_model(net: str, trunk: str | Path | None, label: str | None = None) -> nn.Module:
    """``lpips.LPIPS(net)`` with its calibrated linear heads and the ImageNet trunk loaded from
    ``trunk`` (a torchvision ``alexnet``/``vgg16`` state dict; None: random trunk, for tests).

    Nothing is downloaded and nothing is unpickled: the package is built with
    ``pretrained=False, pnet_rand=True`` and both files go through :func:`load_tensor_file`.
    """
    import lpips
    import torchvision

    if net not in LPIPS_TRUNK_FILES:
        raise ValueError(f"LPIPS net {net!r} is not supported; choose one of: {', '.join(LPIPS_TRUNK_FILES)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's 'pretrained=' deprecation inside lpips
        model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    heads_file = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    heads = load_tensor_file(heads_file, f"lpips' linear heads {heads_file}")
    check_state(model, heads, f"lpips' linear heads {heads_file}", strict=False)
    # lin0..lin4 (``lins.*`` are the same modules listed again)
    if not all(k in heads for k in model.state_dict() if k.startswith("lin") and not k.startswith("lins.")):
        raise ValueError(f"lpips' linear heads {heads_file} are incomplete; reinstall the lpips package")
    model.load_state_dict(heads, strict=False)
    if trunk is not None:
        label = label or f"LPIPS trunk {trunk}"
        state = load_tensor_file(trunk, label)
        feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tv = torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16()
        check_state(tv.features, feats, f"{label} (expected torchvision's {LPIPS_TRUNK_FILES[net]})")
        tv.features.load_state_dict(feats)
        # lpips' slices index torchvision's ``features``
        for name, sl in model.net.named_children():
            if name.startswith("slice"):
                for idx, layer in sl.named_children():
                    layer.load_state_dict(tv.features[int(idx)].state_dict())
    return model.eval()


def _normalize(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class ClassifierPerceptual(nn.Module):
    """LPIPS-style distance and class logits from a frozen gankd classifier.

    ``forward(x, y)`` with x, y (B, C, H, W) in [-1, 1] -> distance (B,).
    ``features(x)`` -> (list of maps, logits) for reuse across losses.
    """

    has_logits = True

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.net = classifier.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):  # the loss network always stays in eval mode
        return super().train(False)

    def features(self, x: torch.Tensor):
        return self.net.features_and_logits(x)

    @staticmethod
    def distance(fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        d = [(_normalize(a) - _normalize(b)).pow(2).mean(dim=(1, 2, 3)) for a, b in zip(fa, fb)]
        return torch.stack(d).sum(0)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distance(self.features(x)[0], self.features(y)[0])


class LPIPSPerceptual(nn.Module):
    """The ``lpips`` package (calibrated heads on ImageNet trunks); gray is tiled to RGB,
    images under 64 px are upsampled to 64 (AlexNet's maps collapse below that)."""

    has_logits = False

    def __init__(self, net: str):
        super().__init__()
        hub = lpips_hub_file(net)
        if not hub.is_file():
            raise FileNotFoundError(
                f"--perceptual lpips-{net} needs the ImageNet trunk {hub.name}: copy it to {hub.parent}/ "
                "(or set TORCH_HOME), or use --perceptual fmnist"
            )
        self.lpips = lpips_model(net, hub, f"--perceptual lpips-{net}: {hub}")
        for p in self.lpips.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x, y = x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)
        if x.shape[-1] < 64:
            x = F.interpolate(x, size=64, mode="bilinear", align_corners=False)
            y = F.interpolate(y, size=64, mode="bilinear", align_corners=False)
        return self.lpips(x, y, normalize=False).flatten()


def build_perceptual(name: str, path: str | Path | None = None) -> nn.Module:
    """A frozen perceptual distance by name (see module doc)."""
    if name == "fmnist":
        from gankd.checkpoint import load_classifier

        try:
            return ClassifierPerceptual(load_classifier(path or "fmnist-perceptual"))
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"perceptual network not found ({e}); train it with `gankd train-classifier --family resnet "
                "--out pretrained/fmnist-perceptual`, pass --set perceptual_path=DIR, or use --perc 0 --kd 0"
            ) from e
    if name in ("lpips-alex", "lpips-vgg"):
        return LPIPSPerceptual(name.split("-")[1])
    raise ValueError(f"unknown --perceptual '{name}'; choose one of: {', '.join(PERCEPTUAL_NETS)}")


def perceptual_for_data(name: str, path: str | Path | None, *, data: str | None, image_channels: int,
                        perceptual: float, kd: float, teacher_dir: str | Path | None = None
                        ) -> tuple[nn.Module | None, dict]:  # fmt: skip
    """The perceptual network of a distillation, chosen to fit its data; never a shape error later.

    ``name``/``path``: the configured net (``--perceptual``, ``perceptual_path``). ``data``: the
    run's data spec (``none`` = data-free: the teacher's recorded data decides the domain).
    The shipped ``fmnist-perceptual`` fits only Fashion-MNIST (gray); a net of ``path`` must take
    ``image_channels``. A net that does not fit is replaced by LPIPS (``lpips-alex``) when its
    ImageNet trunk is present, else the perceptual and KD terms switch off; LPIPS has no class
    head, so KD switches off with it. Each case logs ONE warning saying why and which flag turns
    the terms on. Returns ``(module or None, config changes)``: the changes (``perceptual``,
    ``kd``, ``perceptual_net``, ``perceptual_off``) are what the run's config records.
    """
    import logging

    log = logging.getLogger(__name__)
    changes: dict = {}
    fix = (f"--perceptual lpips-alex (needs the ImageNet trunk {LPIPS_TRUNK_FILES['alex']} in "
           f"{lpips_hub_file('alex').parent}/) or a classifier trained on this data (gankd train-classifier "
           "--data ... --out DIR, then --set perceptual_path=DIR)")  # fmt: skip
    if name != "fmnist":
        module = build_perceptual(name, path)
        if kd > 0:
            why = f"--perceptual {name} has no class head: the KD term is off; a class head comes with {fix}"
            log.warning(why)
            changes.update(kd=0.0, perceptual_off=why)
        return module, changes
    from gankd.checkpoint import resolve_model_path
    from gankd.config import load_json
    from gankd.data import is_fmnist

    why = None
    if path:
        module = build_perceptual(name, path)
        net_channels = module.net.cfg.image_channels
        if net_channels != image_channels:
            why = f"the perceptual net {path} takes {net_channels}-channel images, the teacher makes {image_channels}"
    else:
        domain = data
        if (not domain or domain == "none") and teacher_dir is not None:
            meta = load_json(resolve_model_path(teacher_dir) / "config.json")
            domain = meta.get("data") if isinstance(meta, dict) else None
        if not is_fmnist(domain) or image_channels != 1:
            what = f"{image_channels}-channel images of {domain or 'unknown data'}"
            why = f"the shipped perceptual net is trained on Fashion-MNIST (gray), not on {what}"
        else:
            module = build_perceptual(name, None)
    if why is None:
        return module, changes
    if perceptual > 0 and lpips_hub_file("alex").is_file():
        note = f"{why}: the perceptual term uses lpips-alex instead" + (
            "; the KD term is off (LPIPS has no class head; a classifier trained on this data brings one: "
            "--set perceptual_path=DIR)" if kd > 0 else "")  # fmt: skip
        log.warning(note)
        changes.update(perceptual_net="lpips-alex", kd=0.0, perceptual_off=note)
        return build_perceptual("lpips-alex"), changes
    note = f"{why}: the perceptual and KD terms are off; turn them on with {fix}"
    log.warning(note)
    changes.update(perceptual=0.0, kd=0.0, perceptual_off=note)
    return None, changes
