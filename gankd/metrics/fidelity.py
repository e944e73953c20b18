"""Image-quality metrics: FID, IS, KID, precision/recall (through torch-fidelity),
class consistency, and paired student-vs-teacher fidelity (PSNR, LPIPS).

Protocol (see DESIGN.md, "Evaluation protocol"):

- Generated set: ``num_samples`` images from seeds ``first_seed .. first_seed+N-1``
  (the generator's adapter, :mod:`gankd.adapter`), class-balanced labels 0,1,..,K-1,0,.. for
  conditional models (:func:`gankd.sampling.balanced_labels`). gankd generates the
  images itself and hands torch-fidelity a Dataset of uint8 images, so torch-fidelity
  never samples latents or labels (its conditional path crashes on numpy 2).
- Reference set: a dataset split (default ``fashion-mnist:test``, 10k), at the
  generator's resolution and channels.
- Feature extractors, chosen for the domain (:func:`choose_extractor`, ``--extractor auto``):
  an evaluator classifier the user passes (``--evaluator DIR``: trained on their own
  labelled data; its input channels and resolution must fit); else torch-fidelity's
  standard Inception-V3 (``inception-v3-compat``) when its weight file is present locally
  (gray images are tiled to 3 channels); else the shipped ``fmnist-evaluator``
  (``pretrained/fmnist-evaluator``) for Fashion-MNIST data at 1 channel, 32 px (the only
  domain it is trained on); else ``random-conv``: a seed-fixed (seed 0) randomly
  initialised conv net whose globally pooled features are a domain-agnostic embedding,
  as used for non-ImageNet data in the precision/recall/density/coverage literature
  (Naeem et al. 2020). Its construction is hashed, so a result names it exactly. A network
  trained on another domain is used only when ``--extractor`` names it explicitly.
  Classifier extractors: FID/KID/PRC use the penultimate embedding, IS the logits; IS and
  class consistency need a classifier of the domain and are skipped, with the reason,
  under ``random-conv``.
- Reference features are cached by gankd (``$GANKD_CACHE/fidelity`` or
  ``~/.cache/gankd/fidelity``) as safetensors files named by the data's content hash,
  the extractor weights' hash, the sample count, the image size and the feature layers.
  torch-fidelity's own cache is never used: its key ignores data and weights, and it
  reads its files with ``torch.load(weights_only=False)``.

Loading never executes code: Inception weights are read with safetensors or
``torch.load(weights_only=True)``, checked against torch-fidelity's module and handed to it
as a verified state dict (:class:`SafeInceptionV3`); cache files are safetensors; LPIPS
trunks go through :func:`gankd.perceptual.lpips_model`.

Images are uint8 (N, C, H, W) at the torch-fidelity boundary and float [-1, 1] inside gankd.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from gankd.adapter import adapter_for
from gankd.checkpoint import CONFIG, WEIGHTS, file_sha256, load_classifier, load_generator
from gankd.config import load_json
from gankd.data import SPLITS, is_fmnist, load_dataset, to_float, to_uint8
from gankd.fileio import portable_path
from gankd.metrics.distribution import FIDELITY_METRICS
from gankd.perceptual import LPIPS_TRUNK_FILES, check_state, load_tensor_file, lpips_hub_file, lpips_model
from gankd.sampling import balanced_labels

log = logging.getLogger(__name__)

EVALUATOR = "fmnist-evaluator"
INCEPTION = "inception-v3-compat"
AUTO = "auto"
RANDOM_CONV = "random-conv"
EXTRACTORS = (AUTO, EVALUATOR, INCEPTION, RANDOM_CONV)
MIN_REFERENCE = 2000  # fewer reference images than this: FID/PRC are noisy, and results say so
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
DEFAULT_REFERENCE = "fashion-mnist:test"
LPIPS_TRUNKS = LPIPS_TRUNK_FILES
# the name under which gankd's safe Inception loader is registered with torch-fidelity
_SAFE_INCEPTION = "gankd-inception-v3-compat"


# ------------------------------------------------------------------ locations
def package_root() -> Path:
    """The repository root (the folder holding ``gankd/`` and ``pretrained/``)."""
    return Path(__file__).resolve().parents[2]


def default_evaluator_dir() -> Path:
    """``$GANKD_EVALUATOR`` if set, else ``<repo>/pretrained/fmnist-evaluator``."""
    env = os.environ.get("GANKD_EVALUATOR")
    return Path(env).expanduser() if env else package_root() / "pretrained" / "fmnist-evaluator"


def resolve_evaluator(path: str | Path | None = None) -> Path:
    """The evaluator classifier folder to use; raises with the fix when it is missing."""
    folder = Path(path).expanduser() if path else default_evaluator_dir()
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise FileNotFoundError(
            f"evaluator classifier not found at {folder} (needs {CONFIG} + {WEIGHTS}): train it with "
            f"`gankd train-classifier --family vgg --out {folder}`, set GANKD_EVALUATOR "
            "or pass --evaluator DIR"
        )
    return folder


def cache_root() -> Path:
    """Folder for cached reference features/statistics: ``$GANKD_CACHE/fidelity`` or
    ``~/.cache/gankd/fidelity``."""
    base = os.environ.get("GANKD_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "gankd"
    return root / "fidelity"


def find_inception_weights(path: str | Path | None = None, verify: bool = True) -> Path:
    """Path of torch-fidelity's Inception-V3 weights, checked before anything tries a download.

    Looks at ``path`` if given, else ``torch.hub.get_dir()/checkpoints/`` (``$TORCH_HOME``).
    ``verify``: also read the file safely (no unpickling of code) and check every key and
    shape against the network; a bad file raises a one-line ValueError.
    """
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"--inception-weights {p} does not exist; pass the path of {INCEPTION_FILE}")
        label = f"--inception-weights {p}"
    else:
        p = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
        if not p.is_file():
            raise FileNotFoundError(
                f"Inception-V3 weights {INCEPTION_FILE} not found: copy the file to {p.parent}/ "
                "(torch.hub's cache, moved by $TORCH_HOME) or pass --inception-weights PATH "
                "(it cannot be downloaded here); or use --extractor fmnist-evaluator"
            )
        label = f"Inception-V3 weights {p}"
    if verify:
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _VERIFIED:
            verify_inception_state(load_inception_state(p, label), label)
            _VERIFIED.add(key)
    return p


_VERIFIED: set[tuple] = set()


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str | Path) -> str:
    """Short sha256 of a file, or of ``config.json`` + ``model.safetensors`` of a model folder."""
    path = Path(path)
    files = [path / CONFIG, path / WEIGHTS] if path.is_dir() else [path]
    key = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(*files)[:16]
    return _DIGESTS[key]


def tensor_digest(x: torch.Tensor) -> str:
    """Short sha256 of a tensor's bytes (content hash of an image set)."""
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()[:16]


# ------------------------------------------------------------------ image sets
@dataclass
class ImageSet:
    """uint8 images (N, C, H, W), optional int64 labels (N,), a name and a content hash."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    digest: str
    description: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]


class UInt8Images(Dataset):
    """torch-fidelity input: serves uint8 (C, H, W) images, optionally tiled to 3 channels."""

    def __init__(self, images: torch.Tensor, tile_to_rgb: bool = False):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.tile = tile_to_rgb and images.shape[1] == 1

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.images[i]
        return x.expand(3, -1, -1).contiguous() if self.tile else x


def parse_data_spec(spec: str) -> tuple[str, str]:
    """'fashion-mnist:test' -> ('fashion-mnist', 'test'); 'folder:PATH[:split]' -> ('folder:PATH', split);
    a plain directory -> ('folder:DIR', 'train')."""
    if spec.startswith("folder:"):
        head, _, tail = spec.rpartition(":")
        if tail in SPLITS and head != "folder":
            return head, tail
        return spec, "train"
    if ":" in spec:
        name, split = spec.split(":", 1)
        return name, split
    if Path(spec).is_dir():
        return f"folder:{spec}", "train"
    return spec, "test" if is_fmnist(spec) else "train"


def subset_indices(n_total: int, n: int | None, seed: int = 0) -> torch.Tensor | None:
    """Sorted deterministic random subset of size n (None: all)."""
    if n is None or n >= n_total:
        return None
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def load_image_set(spec: str, resolution: int = 32, channels: int = 1, num: int | None = None,
                   seed: int = 0, flag: str = "--num-samples") -> ImageSet:  # fmt: skip
    """A dataset split as uint8 images; ``num`` picks a fixed random subset (seed ``seed``);
    ``flag`` is the option that set ``num`` (named when the split holds fewer)."""
    name, split = parse_data_spec(spec)
    ds = load_dataset(name, split, resolution, channels)
    if num is not None and num < 1:
        raise ValueError(f"{flag} must be >= 1, got {num}")
    if num is not None and num > len(ds):
        raise ValueError(f"asked for {num} images of {spec} but it holds {len(ds)}; lower {flag}")
    images, labels = ds.images, ds.labels
    idx = subset_indices(len(ds), num, seed)
    if idx is not None:
        images, labels = images[idx], labels[idx]
    desc = f"{name}:{split}" + (f", random subset of {len(idx)} (seed {seed})" if idx is not None else "")
    return ImageSet(images, labels if ds.num_classes > 0 else None, f"{name}:{split}",
                    tensor_digest(images), desc)  # fmt: skip


@torch.no_grad()
def generate_uint8(generator: nn.Module, num_samples: int, first_seed: int = 0, batch_size: int = 256,
                   device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """Sample a generator on seeds first_seed..first_seed+N-1 (class-balanced labels when
    conditional) -> (uint8 (N, C, R, R), int64 labels (N,) or None)."""
    if num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {num_samples}")
    gen = adapter_for(generator)  # the generator seam builds the inputs and maps the output range
    was_training = gen.model.training
    gen.model.eval()
    labels = balanced_labels(num_samples, gen.num_classes)
    out = []
    try:
        for i in range(0, num_samples, batch_size):
            seeds = list(range(first_seed + i, first_seed + min(i + batch_size, num_samples)))
            inputs = gen.seeded_inputs(seeds, None if labels is None else labels[i : i + len(seeds)])
            out.append(to_uint8(gen({k: v.to(device) for k, v in inputs.items()}).float().cpu()))
    finally:
        gen.model.train(was_training)
    return torch.cat(out), labels


def generated_set(generator: nn.Module, num_samples: int, first_seed: int = 0, batch_size: int = 256,
                  device: str = "cpu", name: str = "generator") -> ImageSet:  # fmt: skip
    images, labels = generate_uint8(generator, num_samples, first_seed, batch_size, device)
    nc = adapter_for(generator).num_classes
    desc = f"{num_samples} samples, seeds {first_seed}..{first_seed + num_samples - 1}" + (
        f", class-balanced labels (0..{nc - 1} cycling)" if nc > 0 else ""
    )
    return ImageSet(images, labels, name, tensor_digest(images), desc)


def is_generator_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / CONFIG).is_file() and load_json(p / CONFIG).get("kind") == "generator"


def as_image_set(source, resolution: int | None = None, channels: int | None = None,
                 num: int | None = None, first_seed: int = 0, batch_size: int = 256,
                 device: str = "cpu") -> ImageSet:  # fmt: skip
    """Turn a metric input into an :class:`ImageSet`.

    ``source``: an ImageSet; a uint8 tensor (N, C, H, W); a generator module or folder
    (``num`` samples from ``first_seed``); or a data spec (``fashion-mnist:train``,
    ``folder:PATH``, an image directory), loaded at ``resolution``/``channels``.
    """
    if isinstance(source, ImageSet):
        return source
    if isinstance(source, torch.Tensor):
        if source.dtype != torch.uint8 or source.dim() != 4:
            raise ValueError("image tensors must be uint8 (N, C, H, W); convert with gankd.data.to_uint8")
        x = source[:num] if num else source
        return ImageSet(x, None, "tensor", tensor_digest(x), f"{len(x)} given images")
    if isinstance(source, nn.Module):
        return generated_set(source, num or 10000, first_seed, batch_size, device)
    if isinstance(source, (str, Path)) and is_generator_dir(source):
        g = load_generator(source, map_location=device)
        return generated_set(g, num or 10000, first_seed, batch_size, device, name=str(source))
    if isinstance(source, (str, Path)):
        return load_image_set(str(source), resolution or 32, channels or 1, num)
    raise ValueError(f"cannot evaluate {type(source).__name__}: pass a generator, a folder or a data spec")


# ------------------------------------------------------------------ evaluator extractor
def classifier_input(x: torch.Tensor, classifier: nn.Module) -> torch.Tensor:
    """uint8 or [-1, 1] float (B, C, H, W) -> float [-1, 1] at the classifier's channels and
    resolution (gray<->RGB by tiling / luma weights, bilinear antialiased resize)."""
    x = to_float(x) if x.dtype == torch.uint8 else x.float()
    cfg = classifier.cfg
    c = x.shape[1]
    if c != cfg.image_channels:
        if c == 1 and cfg.image_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif c == 3 and cfg.image_channels == 1:
            x = (x * x.new_tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)
        else:
            raise ValueError(f"the evaluator takes {cfg.image_channels}-channel images, got {c} channels")
    if x.shape[-2:] != (cfg.resolution, cfg.resolution):
        x = F.interpolate(x, size=(cfg.resolution, cfg.resolution), mode="bilinear", antialias=True,
                          align_corners=False)  # fmt: skip
    return x


class EvaluatorFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor backed by gankd's evaluator classifier.

    Input: uint8 (B, C, H, W), any resolution (resized to the classifier's). Features:
    ``embed`` (B, F) penultimate embedding (FID, KID, PRC) and ``logits`` (B, K) (IS).
    The classifier folder comes in ``feature_extractor_weights_path`` (default
    :func:`default_evaluator_dir`).
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        self.folder = resolve_evaluator(feature_extractor_weights_path)
        self.classifier = load_classifier(self.folder)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list():
        return ("embed", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "embed", "kid": "embed", "prc": "embed"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 32, 32, dtype=torch.uint8)

    def forward(self, x: torch.Tensor):
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4):
            raise ValueError("the fmnist-evaluator extractor expects uint8 images (B, C, H, W)")
        clf = self.classifier
        e = clf.embed(classifier_input(x, clf))
        feats = {"embed": e.float(), "logits": clf.head(clf.drop(e)).float()}
        return tuple(feats[f] for f in self.features_list)


if EVALUATOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(EVALUATOR, EvaluatorFeatureExtractor)


# ------------------------------------------------------------------ domain-agnostic fallback
RANDOM_CONV_SEED = 0
RANDOM_CONV_WIDTHS = (32, 64, 128, 256)
_RANDOM_CONV_TF = "gankd-random-conv"  # its torch-fidelity registry name


def random_conv_net() -> nn.Sequential:
    """The ``random-conv`` extractor's network: 3x3 convs (widths :data:`RANDOM_CONV_WIDTHS`,
    stride 2 after the first) with LeakyReLU(0.2), He-normal weights from a CPU generator
    seeded with :data:`RANDOM_CONV_SEED`, zero biases: the same weights on every machine."""
    g = torch.Generator().manual_seed(RANDOM_CONV_SEED)
    layers: list[nn.Module] = []
    c_in = 3
    for i, c in enumerate(RANDOM_CONV_WIDTHS):
        conv = nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / (c_in * 9)) ** 0.5)
            conv.bias.zero_()
        layers += [conv, nn.LeakyReLU(0.2)]
        c_in = c
    return nn.Sequential(*layers).eval().requires_grad_(False)


@functools.lru_cache(maxsize=1)
def random_conv_digest() -> str:
    """Short sha256 of the ``random-conv`` network's construction (widths, seed) and weights."""
    h = hashlib.sha256(f"random-conv widths={RANDOM_CONV_WIDTHS} seed={RANDOM_CONV_SEED}".encode())
    for k, v in random_conv_net().state_dict().items():
        h.update(k.encode())
        h.update(v.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def random_conv_features(x: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
    """uint8 (B, C, H, W), C = 1 or 3 -> (B, sum(widths)) global-average-pooled features of
    every stage (gray tiled to 3 channels; images in [-1, 1])."""
    net = net or random_conv_net()
    h = to_float(x)
    if h.shape[1] == 1:
        h = h.expand(-1, 3, -1, -1)
    feats = []
    for layer in net:
        h = layer(h)
        if isinstance(layer, nn.LeakyReLU):
            feats.append(h.mean(dim=(2, 3)))
    return torch.cat(feats, 1)


class RandomConvFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor ``random-conv`` (see :func:`random_conv_net`): feature
    ``pool`` (FID, KID, PRC). It has no class logits, so no IS."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.net = random_conv_net()
        self.eval()

    @staticmethod
    def get_provided_features_list():
        return ("pool",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "pool"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

    def forward(self, x: torch.Tensor):
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4):
            raise ValueError("the random-conv extractor expects uint8 images (B, C, H, W)")
        with torch.no_grad():
            return (random_conv_features(x, self.net).float(),)


if _RANDOM_CONV_TF not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(_RANDOM_CONV_TF, RandomConvFeatureExtractor)


# ------------------------------------------------------------------ which extractor
@dataclass
class Extractor:
    """The feature extractor a result uses, named exactly (see :func:`choose_extractor`)."""

    kind: str  # "classifier", "inception" or "random-conv"
    name: str  # what results say: fmnist-evaluator, evaluator:NAME, inception-v3-compat, random-conv
    weights: Path | None  # classifier folder or Inception file; None for random-conv (built in code)
    sha256_16: str  # weights (or construction) hash
    reason: str  # why it was chosen
    in_domain: bool = True  # False: a network of another domain, used because a flag asked for it

    @property
    def has_logits(self) -> bool:
        """IS needs class logits (the classifier's, or Inception's ImageNet head)."""
        return self.kind != "random-conv"

    def info(self) -> dict:
        weights = None if self.weights is None else portable_path(self.weights)
        return {"extractor": self.name, "extractor_weights": weights,
                "extractor_sha256_16": self.sha256_16, "extractor_reason": self.reason,
                "extractor_in_domain": self.in_domain}  # fmt: skip



def fmnist_like(data: str | None, channels: int, resolution: int) -> bool:
    """Whether the shipped evaluator fits: Fashion-MNIST data, 1 channel, 32 px."""
    return is_fmnist(data) and channels == 1 and resolution == 32


def _classifier_extractor(folder: Path, reason: str, in_domain: bool = True) -> Extractor:
    shipped = (package_root() / "pretrained" / "fmnist-evaluator").resolve()
    name = EVALUATOR if folder.resolve() == shipped else f"evaluator:{folder.name}"
    return Extractor("classifier", name, folder, file_digest(folder), reason, in_domain)


def check_evaluator_fits(folder: Path, channels: int, resolution: int, data: str | None = None) -> None:
    """One-line ValueError unless the classifier in ``folder`` takes ``channels`` x ``resolution`` images."""
    cfg = load_json(folder / CONFIG).get("config", {})
    c, r = cfg.get("image_channels", 1), cfg.get("resolution", 32)
    if (c, r) != (channels, resolution):
        raise ValueError(
            f"--evaluator {folder} takes {c}x{r}x{r} images but the evaluated ones are {channels}x{resolution}x"
            f"{resolution}: train one with `gankd train-classifier --data {data or 'DATA'} --image-channels "
            f"{channels} --resolution {resolution} --out DIR` and pass --evaluator DIR"
        )


def choose_extractor(extractor: str = AUTO, *, channels: int, resolution: int, data: str | None = None,
                     evaluator: str | Path | None = None,
                     inception_weights: str | Path | None = None) -> Extractor:  # fmt: skip
    """The feature extractor for images of ``channels`` x ``resolution`` px from ``data`` (a
    dataset spec without split, or None when unknown). See the module doc for the order
    under ``auto``. Named choices are honoured; the shipped evaluator on data that is not
    Fashion-MNIST is logged as out of domain. Raises with the fix when weights are missing."""
    if extractor not in EXTRACTORS:
        raise ValueError(f"--extractor {extractor!r} is unknown; choose one of: {', '.join(EXTRACTORS)}")
    if extractor == RANDOM_CONV:
        return Extractor("random-conv", RANDOM_CONV, None, random_conv_digest(), "asked for (--extractor random-conv)")
    if extractor == INCEPTION:
        w = find_inception_weights(inception_weights)
        return Extractor("inception", INCEPTION, w, file_digest(w), "asked for (--extractor inception-v3-compat)")
    if extractor == EVALUATOR:
        folder = resolve_evaluator(evaluator)
        ex = _classifier_extractor(folder, "asked for (--extractor fmnist-evaluator)")
        if ex.name == EVALUATOR and not fmnist_like(data, channels, resolution):
            ex.in_domain = False
            ex.reason = (f"asked for (--extractor fmnist-evaluator) although it is trained on Fashion-MNIST (1x32x32), "
                         f"not on {channels}x{resolution}x{resolution} images of {data or 'unknown data'}")  # fmt: skip
            log.warning("extractor: %s", ex.reason)
        return ex
    # auto
    if evaluator:
        folder = resolve_evaluator(evaluator)
        check_evaluator_fits(folder, channels, resolution, data)
        return _classifier_extractor(folder, "--evaluator given (a classifier of this domain)")
    try:
        w = find_inception_weights(inception_weights)
        return Extractor("inception", INCEPTION, w, file_digest(w), "Inception-V3 weights present")
    except FileNotFoundError:
        if inception_weights:
            raise
    if fmnist_like(data, channels, resolution):
        try:
            folder = resolve_evaluator(None)
            return _classifier_extractor(folder, "Fashion-MNIST data: the shipped evaluator is trained on it")
        except FileNotFoundError:
            pass
    why = ("no Inception-V3 weights and no evaluator classifier for "
           f"{channels}x{resolution}x{resolution} images of {data or 'unknown data'}: a domain-agnostic seed-fixed "
           "random conv net (a classifier trained on this data: gankd train-classifier, then --evaluator DIR)")
    return Extractor("random-conv", RANDOM_CONV, None, random_conv_digest(), why)


def data_name(source) -> str | None:
    """The dataset (no split) a metric input comes from, when it is a data spec or a loaded set."""
    if isinstance(source, ImageSet):
        source = source.name
    if isinstance(source, (str, Path)) and not is_generator_dir(source):
        return parse_data_spec(str(source))[0]
    return None


# ------------------------------------------------------------------ Inception, loaded safely
def load_inception_state(path: str | Path, label: str | None = None) -> dict[str, torch.Tensor]:
    """Inception-V3 weights as a state dict, read without unpickling code (``.safetensors``
    or ``torch.load(weights_only=True)``); a pickle with code raises a one-line ValueError."""
    return load_tensor_file(path, label or f"Inception-V3 weights {path}")


@functools.lru_cache(maxsize=1)
def _inception_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of torch-fidelity's Inception-V3 state dict (built on the meta device: no weights)."""
    with torch.device("meta"):
        m = SafeInceptionV3(_SAFE_INCEPTION, ["2048"], _structure_only=True)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def verify_inception_state(state: dict[str, torch.Tensor], label: str = "Inception-V3 weights") -> None:
    """One-line ValueError unless ``state`` has exactly the keys and shapes of torch-fidelity's
    ``inception-v3-compat`` network."""
    want = _inception_shapes()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or extra:
        raise ValueError(
            f"{label}: not torch-fidelity's Inception-V3 (missing keys {missing[:3]}, unexpected keys "
            f"{extra[:3]}); pass {INCEPTION_FILE}"
        )
    for k, v in state.items():
        if tuple(v.shape) != want[k]:
            raise ValueError(
                f"{label}: tensor {k!r} has shape {tuple(v.shape)}, Inception-V3 needs {want[k]}; pass {INCEPTION_FILE}"
            )


class SafeInceptionV3(FeatureExtractorInceptionV3):
    """torch-fidelity's ``inception-v3-compat`` network (same modules, same forward), whose
    weights never pass through ``torch.load(weights_only=False)``.

    ``feature_extractor_weights_path``: the weight file, read by :func:`load_inception_state`
    and checked key by key and shape by shape against the module before loading. torch-fidelity's
    own constructor then receives only an in-memory copy of that verified dict of tensors,
    never the user's file, and never downloads.
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, _structure_only=False, **kwargs):
        self._structure_only = _structure_only
        self._label = f"Inception-V3 weights {feature_extractor_weights_path}"
        if _structure_only:
            state = {}
        elif feature_extractor_weights_path is None:
            raise ValueError(f"Inception-V3 needs its weight file: pass --inception-weights PATH ({INCEPTION_FILE})")
        else:
            state = load_inception_state(feature_extractor_weights_path, self._label)
            verify_inception_state(state, self._label)
        buf = io.BytesIO()  # our own serialisation of plain tensors: nothing else to unpickle
        torch.save(state, buf)
        buf.seek(0)
        del state
        super().__init__(name, features_list, feature_extractor_weights_path=buf, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # called by torch-fidelity's constructor once every module exists: check before copying
        if getattr(self, "_structure_only", False):
            return None
        check_state(self, state_dict, getattr(self, "_label", "Inception-V3 weights"))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


if _SAFE_INCEPTION not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(_SAFE_INCEPTION, SafeInceptionV3)


# ------------------------------------------------------------------ reference feature cache
_CACHE_FORMAT = 1


def _cache_file(name: str) -> Path:
    return cache_root() / f"{name}.safetensors"


def load_cached_features(name: str, layers: Sequence[str], num: int) -> dict[str, torch.Tensor] | None:
    """Reference features saved by :func:`save_cached_features`, or None when absent.

    Read with safetensors only (no pickle). A file that is corrupt, planted or of another
    shape is ignored with a warning (the features are recomputed and the file replaced).
    """
    path = _cache_file(name)
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if meta.get("gankd_cache") != str(_CACHE_FORMAT) or keys != set(layers):
                raise ValueError(f"holds {sorted(keys)}, expected {sorted(layers)}")
            out = {k: f.get_tensor(k) for k in layers}
        for k, v in out.items():
            if v.dim() != 2 or v.shape[0] != num or not v.is_floating_point() or not torch.isfinite(v).all():
                raise ValueError(f"feature {k!r} has shape {tuple(v.shape)} {v.dtype}, expected ({num}, F) float")
        return out
    except Exception as e:  # noqa: BLE001  (anything wrong with a cache file means: recompute)
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        log.warning("ignoring unreadable metrics cache file %s (%s); recomputing it", path, reason)
        return None


def save_cached_features(name: str, feats: dict[str, torch.Tensor], info: dict) -> Path:
    """Save reference features as safetensors (atomic write), with ``info`` as metadata."""
    from safetensors.torch import save_file

    from gankd.fileio import atomic_write_with

    path = _cache_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in feats.items()}
    meta = {"gankd_cache": str(_CACHE_FORMAT), "info": json.dumps(info, sort_keys=True)}
    atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return path


# ------------------------------------------------------------------ FID & friends
def _slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[-limit:]


def _feature_layers(metrics: Sequence[str], extractor_name: str) -> dict[str, str]:
    """metric -> feature layer: torch-fidelity's default for the extractor, for the metric whose layer it reads."""
    cls = FEATURE_EXTRACTORS_REGISTRY[extractor_name]
    return {m: cls.get_default_feature_layer_for_metric(FIDELITY_METRICS.get(m).layer_as) for m in metrics}


def _calculate(src: ImageSet, ref: ImageSet, metrics: Sequence[str], rgb: bool, kwargs: dict,
               cache_name: str | None, info: dict) -> dict:  # fmt: skip
    """torch-fidelity's metric functions on features extracted here (what its
    ``calculate_metrics`` does, minus its pickle cache); reference features come from
    gankd's safetensors cache when ``cache_name`` is given."""
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    name = kwargs["feature_extractor"]
    per_metric = _feature_layers(metrics, name)
    layers = sorted(set(per_metric.values()))
    fe = create_feature_extractor(name, layers, **{k: v for k, v in kwargs.items() if k != "feature_extractor"})

    def features(images: ImageSet) -> dict[str, torch.Tensor]:
        ds = UInt8Images(images.images, tile_to_rgb=rgb)
        return get_featuresdict_from_dataset(ds, fe, kwargs["batch_size"], kwargs["cuda"], True, False)

    f1 = features(src)
    binary = [m for m in metrics if FIDELITY_METRICS.get(m).binary]
    f2 = None
    if binary:
        ref_layers = sorted({per_metric[m] for m in binary})
        f2 = load_cached_features(cache_name, ref_layers, len(ref)) if cache_name else None
        if f2 is None:
            f2 = features(ref)
            if cache_name:
                save_cached_features(cache_name, {k: f2[k] for k in ref_layers}, info)
    out: dict = {}
    for m in metrics:
        out.update(FIDELITY_METRICS.get(m).compute(f1, f2, per_metric[m], kwargs))
    return out




@dataclass(frozen=True)
class Features:
    """A feature extractor by name, with the files a named one may need: ``name`` (see
    :func:`choose_extractor`; ``auto`` picks for the reference's domain), ``evaluator`` (a classifier folder
    of the domain: ``fmnist-evaluator``) and ``inception_weights`` (the Inception-V3 file)."""

    name: str = AUTO
    evaluator: str | Path | None = None
    inception_weights: str | Path | None = None


def _as_features(extractor: str | Features | Extractor) -> Features | Extractor:
    return extractor if isinstance(extractor, (Features, Extractor)) else Features(extractor)


def _checked_request(metrics: Sequence[str], extractor: Features | Extractor) -> list[str]:
    """The metric names, checked with the extractor (and a named extractor's weights found) before any work:
    fail in a second, not after sampling 10k images."""
    metrics = [m.strip().lower() for m in metrics]
    bad = [m for m in metrics if m not in FIDELITY_METRICS]
    if bad or not metrics:
        raise ValueError(f"--metrics: unknown {bad or metrics}; choose from {', '.join(FIDELITY_METRICS)}")
    if isinstance(extractor, Extractor):
        return metrics
    if extractor.name not in EXTRACTORS:
        raise ValueError(f"--extractor {extractor.name!r} is unknown; choose one of: {', '.join(EXTRACTORS)}")
    if extractor.name == EVALUATOR:
        resolve_evaluator(extractor.evaluator)
    elif extractor.name == INCEPTION:
        find_inception_weights(extractor.inception_weights)
    return metrics


def _feature_notes(ex: Extractor, res: int, ch: int) -> tuple[str, str, dict]:
    """(resize, channels, feature layers) of the protocol record: how images reach the extractor."""
    if ex.kind == "classifier":
        ccfg = load_json(Path(ex.weights) / CONFIG)["config"]
        r, c = ccfg.get("resolution", 32), ccfg.get("image_channels", 1)
        resize = "none" if r == res else f"{res}px -> {r}px bilinear (antialiased)"
        chan = "as generated" if c == ch else ("RGB -> luma (gray)" if ch == 3 else "gray tiled to 3 channels")
        return resize, chan, {"fid/kid/prc": "embed", "isc": "logits"}
    chan = "gray tiled to 3 channels" if ch == 1 else "RGB"
    if ex.kind == "inception":
        return (f"{res}px -> 299px (torch-fidelity, TF1-compatible bilinear)", chan,
                {"fid/kid/prc": "2048", "isc": "logits_unbiased"})  # fmt: skip
    return ("none (features pooled over the whole image)", chan,
            {"fid/kid/prc": f"pool ({sum(RANDOM_CONV_WIDTHS)}-d, global average of every stage)"})  # fmt: skip


def fidelity_metrics(
    source,
    reference=DEFAULT_REFERENCE,
    metrics: Sequence[str] = FIDELITY_METRICS,
    num_samples: int = 10000,
    num_reference: int | None = None,
    extractor: str | Features | Extractor = AUTO,
    batch_size: int = 256,
    device: str = "cpu",
    cache: bool = True,
    kid_subsets: int = 100,
) -> dict:
    """FID / IS / KID / precision-recall of ``source`` against ``reference`` via torch-fidelity.

    ``source``: generator (module or folder; ``num_samples`` images from seeds ``0..``: other seeds
    through :func:`generated_set`), data spec / image folder (``num_samples`` random images), uint8
    tensor (N, C, H, W) or :class:`ImageSet`. ``reference``: same kinds, default
    ``fashion-mnist:test`` (all of it, or ``num_reference`` random images), loaded at
    the source's resolution and channels. ``metrics`` from ``fid, isc, kid, prc``.

    ``extractor``: a name (see :func:`choose_extractor`; ``auto`` picks for the domain of the
    reference), a name with its files (:class:`Features`) or an :class:`Extractor` already chosen.

    Returns ``{"fid", "isc_mean", "isc_std", "kid_mean", "kid_std", "precision",
    "recall", "f_score"}`` (those asked for; ``"skipped": {metric: reason}`` for those the
    extractor cannot give) plus ``"protocol"`` (extractor name, weights, hash and why it was
    chosen, sample counts, resize, channels, warnings) and ``"time_s"``.
    """
    extractor = _as_features(extractor)
    metrics = _checked_request(metrics, extractor)
    t0 = time.perf_counter()
    src = as_image_set(source, num=num_samples, batch_size=batch_size, device=device)
    res, ch = src.images.shape[-1], src.images.shape[1]
    ref = as_image_set(reference, resolution=res, channels=ch, num=num_reference)
    if isinstance(extractor, Features):
        extractor = choose_extractor(extractor.name, channels=ch, resolution=res, data=data_name(ref),
                                     evaluator=extractor.evaluator,
                                     inception_weights=extractor.inception_weights)  # fmt: skip
    ex = extractor
    weights, w_digest = ex.weights, ex.sha256_16
    skipped = {}
    for m in [m for m in metrics if FIDELITY_METRICS.get(m).needs_logits and not ex.has_logits]:
        skipped[m] = (f"{FIDELITY_METRICS.get(m).label} needs class logits of a classifier for this domain; "
                      f"{ex.name} has none (a classifier trained on this data: gankd train-classifier, then "
                      "--evaluator DIR)")  # fmt: skip
        metrics = [x for x in metrics if x != m]
    if not metrics:
        return {"skipped": skipped, "protocol": {**ex.info(), "metrics": []}, "time_s": 0.0}
    if ref.images.shape[1:] != src.images.shape[1:]:
        raise ValueError(
            f"reference images are {tuple(ref.images.shape[1:])} but evaluated images are "
            f"{tuple(src.images.shape[1:])}; pass a reference of the same size and channels"
        )
    n1, n2 = len(src), len(ref)
    for m in metrics:
        if min(n1, n2) < FIDELITY_METRICS.get(m).min_images:
            raise ValueError(f"{FIDELITY_METRICS.get(m).label} needs at least {FIDELITY_METRICS.get(m).min_images} "
                             "images in each set; raise --num-samples")  # fmt: skip
    rgb = ex.kind == "inception"
    tf_name = {"inception": _SAFE_INCEPTION, "classifier": EVALUATOR, "random-conv": _RANDOM_CONV_TF}[ex.kind]
    kwargs = dict(
        cuda=str(device).startswith("cuda"),
        batch_size=batch_size,
        feature_extractor=tf_name,
        feature_extractor_weights_path=None if weights is None else str(weights),
        kid_subset_size=min(1000, n1, n2),
        kid_subsets=kid_subsets,
        isc_splits=max(1, min(10, n1)),
        save_cpu_ram=True,
        verbose=False,
        cache=False,  # torch-fidelity's cache unpickles its files: gankd caches itself (safetensors)
    )
    cache_name = None
    binary = [m for m in metrics if FIDELITY_METRICS.get(m).binary]  # the reference's features serve these only
    if cache and binary and isinstance(reference, (str, ImageSet)):
        layers = set(_feature_layers(binary, kwargs["feature_extractor"]).values())
        layers_tag = "+".join(sorted(layers)).replace("_", "")
        cache_name = (f"gankd-{_slug(ref.name)}-n{n2}-{ch}x{res}-{ref.digest}-{_slug(ex.name)}-{w_digest}-"
                      f"{layers_tag}")  # fmt: skip
    out = _calculate(src, ref, metrics, rgb, kwargs, cache_name,
                     info={"reference": ref.description, "reference_sha256_16": ref.digest, "num": n2,
                           "image_size": [ch, res, res], "extractor": ex.name,
                           "extractor_sha256_16": w_digest})  # fmt: skip
    keys = {k: v for m in metrics for k, v in FIDELITY_METRICS.get(m).keys.items()}
    result: dict = {keys[k]: float(v) for k, v in out.items() if k in keys}
    if skipped:
        result["skipped"] = skipped

    result["protocol"] = _protocol(ex, metrics, src, ref, kwargs, cache_name)
    result["time_s"] = round(time.perf_counter() - t0, 3)
    return result


def _protocol(ex: Extractor, metrics: Sequence[str], src: ImageSet, ref: ImageSet, kwargs: dict,
              cache_name: str | None) -> dict:  # fmt: skip
    """The protocol record of a :func:`fidelity_metrics` result: how its numbers were made."""
    import torch_fidelity

    n1, n2 = len(src), len(ref)
    ch, res = src.images.shape[1], src.images.shape[-1]
    resize, chan, feats = _feature_notes(ex, res, ch)
    warnings = []
    if n2 < MIN_REFERENCE:
        warnings.append(f"the reference holds {n2} images (< {MIN_REFERENCE}): FID, KID and precision/recall "
                        "are noisy; compare only against the real-data floor measured the same way")  # fmt: skip
    if not ex.in_domain:
        warnings.append(f"extractor {ex.name} is trained on another domain ({ex.reason})")
    return {
        **ex.info(),
        "features": feats,
        "metrics": list(metrics),
        "generated": src.description,
        "num_generated": n1,
        "reference": ref.description,
        "reference_sha256_16": ref.digest,
        "num_reference": n2,
        "image_size": [ch, res, res],
        "resize": resize,
        "channels": chan,
        "kid_subset_size": kwargs["kid_subset_size"],
        "kid_subsets": kwargs["kid_subsets"],
        "isc_splits": kwargs["isc_splits"],
        "prc_neighborhood": 3,
        "reference_cache": cache_name,
        "torch_fidelity": torch_fidelity.__version__,
        "warnings": warnings,
    }


# ------------------------------------------------------------------ class consistency
@torch.no_grad()
def classifier_accuracy(images: torch.Tensor, labels: torch.Tensor, classifier: nn.Module,
                        num_classes: int | None = None, batch_size: int = 500) -> dict:  # fmt: skip
    """Accuracy of ``classifier`` on images (N, C, H, W) (uint8 or [-1, 1] float) against
    ``labels`` (N,): ``{"accuracy", "per_class": [K], "num_samples"}``."""
    classifier.eval()
    dev = next(classifier.parameters()).device
    preds = []
    for i in range(0, images.shape[0], batch_size):
        x = classifier_input(images[i : i + batch_size], classifier).to(dev)
        preds.append(classifier(x).argmax(1).cpu())
    pred = torch.cat(preds)
    k = num_classes or int(classifier.cfg.num_classes)
    correct = (pred == labels).float()
    per_class = []
    for c in range(k):
        m = labels == c
        per_class.append(float(correct[m].mean()) if m.any() else None)
    return {"accuracy": float(correct.mean()), "per_class": per_class, "num_samples": int(labels.numel())}


def class_consistency(generator: nn.Module, num_samples: int = 10000, evaluator: str | Path | None = None,
                      first_seed: int = 0, batch_size: int = 256, device: str = "cpu",
                      images: ImageSet | None = None) -> dict:  # fmt: skip
    """Evaluator accuracy on a conditional generator's samples vs the conditioning class.

    Samples as in :func:`generate_uint8` (or reuses ``images`` made that way). Returns
    ``{"accuracy", "per_class", "num_samples", "evaluator"}``; raises for unconditional models.
    """
    nc = adapter_for(generator).num_classes
    if nc <= 0:
        raise ValueError("class consistency needs a class-conditional generator (num_classes > 0)")
    folder = resolve_evaluator(evaluator)
    clf = load_classifier(folder, map_location=device)
    if clf.cfg.num_classes != nc:
        raise ValueError(f"the evaluator has {clf.cfg.num_classes} classes but the generator {nc}; "
                         "pass --evaluator trained on the generator's classes")  # fmt: skip
    if images is None or images.labels is None:
        images = generated_set(generator, num_samples, first_seed, batch_size, device)
    out = classifier_accuracy(images.images, images.labels, clf, nc)
    out["evaluator"] = portable_path(folder)
    return out


# ------------------------------------------------------------------ paired fidelity
def psnr(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (B, C, H, W), measured on [0, 1]:
    ``10 log10(1 / MSE)``; identical images give 100 dB (MSE floored at ``eps``)."""
    a01, b01 = (a.float() + 1) / 2, (b.float() + 1) / 2
    mse = (a01 - b01).pow(2).flatten(1).mean(1).clamp_min(eps)
    return 10 * torch.log10(1.0 / mse)


def _gauss_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004) of images in [-1, 1] (B, C, H, W), measured on [0, 1]:
    Gaussian window (11 px, sigma 1.5; shrunk for small images), K1 = 0.01, K2 = 0.03, valid
    positions only, mean over positions and channels. Identical images give 1."""
    a01, b01 = (a.float() + 1) / 2, (b.float() + 1) / 2
    c = a01.shape[1]
    size = min(window, a01.shape[-1], a01.shape[-2])
    w = _gauss_window(size, sigma * size / window, c, a01.device, a01.dtype)

    def blur(x):
        return F.conv2d(x, w, groups=c)

    mu_a, mu_b = blur(a01), blur(b01)
    var_a = blur(a01 * a01) - mu_a**2
    var_b = blur(b01 * b01) - mu_b**2
    cov = blur(a01 * b01) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def _prep_lpips(x: torch.Tensor, size: int | None) -> torch.Tensor:
    x = x.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if size and x.shape[-1] < size:
        # AlexNet's maps collapse to 1x1 at 32px: upsample small images first.
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


def lpips_distance(
    net: str = "alex",
    trunk_weights: str | Path | None = None,
    allow_random: bool = False,
    min_size: int = 64,
    device: str = "cpu",
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """LPIPS (the ``lpips`` package, calibrated linear heads) as ``f(a, b) -> (B,)``, images in [-1, 1].

    The ImageNet trunk must exist locally: ``trunk_weights`` or torch.hub's cache
    (``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``), else a FileNotFoundError
    says where to put it. ``allow_random=True`` uses a randomly initialised trunk (tests
    only: the numbers mean nothing). Gray images are tiled to 3 channels and images
    smaller than ``min_size`` are upsampled.
    """
    if net not in LPIPS_TRUNKS:
        raise ValueError(f"LPIPS net {net!r} is not supported; choose one of: {', '.join(LPIPS_TRUNKS)}")
    fname = LPIPS_TRUNKS[net]
    hub_file = lpips_hub_file(net)
    if trunk_weights:
        trunk_weights = Path(trunk_weights).expanduser()
        if not trunk_weights.is_file():
            raise FileNotFoundError(f"LPIPS trunk weights {trunk_weights} do not exist; pass the path of {fname}")
    elif not hub_file.is_file() and not allow_random:
        raise FileNotFoundError(
            f"LPIPS needs the ImageNet {net} trunk {fname}: copy it to {hub_file.parent}/ "
            "(torch.hub's cache, moved by $TORCH_HOME) or pass its path (--lpips-weights); "
            "it cannot be downloaded here"
        )
    if trunk_weights:
        trunk, label = trunk_weights, f"--lpips-weights {trunk_weights}"
    elif hub_file.is_file():
        trunk, label = hub_file, f"LPIPS trunk {hub_file}"
    else:
        trunk, label = None, None
    random_trunk = trunk is None
    # lpips_model never lets lpips/torchvision download or unpickle: both files are read safely
    model = lpips_model(net, trunk, label).to(device).eval().requires_grad_(False)

    @torch.no_grad()
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return model(_prep_lpips(a, min_size).to(device), _prep_lpips(b, min_size).to(device)).flatten()

    distance.name = f"lpips-{net}" + ("-random-trunk" if random_trunk else "")
    return distance


def evaluator_distance(evaluator: str | Path | None = None, device: str = "cpu"
                       ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:  # fmt: skip
    """LPIPS-style distance on the evaluator's feature maps, ``f(a, b) -> (B,)`` for images in [-1, 1].

    Per layer: unit-normalise each position's channel vector, squared difference, sum
    over channels, mean over positions; then mean over layers (LPIPS with all linear
    weights = 1, no calibration). Works offline; comparable only with itself.
    """
    clf = load_classifier(resolve_evaluator(evaluator), map_location=device)

    @torch.no_grad()
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa = clf.feature_maps(classifier_input(a, clf).to(device))
        fb = clf.feature_maps(classifier_input(b, clf).to(device))
        per_layer = []
        for x, y in zip(fa, fb, strict=True):
            x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            y = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            per_layer.append((x - y).pow(2).sum(1).mean((1, 2)))
        return torch.stack(per_layer).mean(0).cpu()

    distance.name = "evaluator-lpips-style"
    return distance


Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def teacher_fidelity(student: nn.Module, teacher: nn.Module, n: int = 1000,
                     distance: Distance | dict[str, Distance] | None = None,
                     first_seed: int = 0, batch_size: int = 256, device: str = "cpu") -> dict:  # fmt: skip
    """How close a student's images are to its teacher's on the same z and y.

    ``n`` latents from seeds ``first_seed..`` with class-balanced labels. Returns
    ``{"psnr_db", "psnr_db_std", "ssim", "ssim_std", "mse", "num_samples", "seeds"}`` (PSNR in
    dB and SSIM on [0, 1] images, means over images; MSE on [0, 1]). ``distance``: a callable ``(a, b) -> (B,)``
    on [-1, 1] images (e.g. :func:`lpips_distance`) adds ``"distance_mean"`` and
    ``"distance_name"``; a dict ``{name: callable}`` adds ``"distances": {name: mean}``.
    """
    student, teacher = adapter_for(student), adapter_for(teacher)
    s_in, t_in = student.spec.inputs, teacher.spec.inputs
    if s_in != t_in:
        s_desc = [(i.name, i.shape, i.num_classes) for i in s_in]
        t_desc = [(i.name, i.shape, i.num_classes) for i in t_in]
        raise ValueError(f"the student takes inputs {s_desc} but the teacher {t_desc}: they do not share inputs")
    if n < 1:
        raise ValueError(f"teacher fidelity needs n >= 1 samples, got {n}")
    modes = (student.model.training, teacher.model.training)
    student.model.eval()
    teacher.model.eval()
    try:
        return _teacher_fidelity(student, teacher, n, distance, first_seed, batch_size, device)
    finally:
        student.model.train(modes[0])
        teacher.model.train(modes[1])


def _teacher_fidelity(student, teacher, n, distance, first_seed, batch_size, device) -> dict:
    fns = distance if isinstance(distance, dict) else ({} if distance is None else {"_": distance})
    labels = balanced_labels(n, teacher.num_classes)
    psnrs, ssims, mses = [], [], []
    dists: dict[str, list[torch.Tensor]] = {k: [] for k in fns}
    for i in range(0, n, batch_size):
        seeds = list(range(first_seed + i, first_seed + min(i + batch_size, n)))
        inputs = teacher.seeded_inputs(seeds, None if labels is None else labels[i : i + len(seeds)])
        inputs = {k: v.to(device) for k, v in inputs.items()}
        s, t = student(inputs).float(), teacher(inputs).float()
        if s.shape != t.shape:
            raise ValueError(f"student images {tuple(s.shape[1:])} differ from the teacher's {tuple(t.shape[1:])}")
        psnrs.append(psnr(s, t).cpu())
        ssims.append(ssim(s, t).cpu())
        mses.append(((s - t) / 2).pow(2).flatten(1).mean(1).cpu())
        for k, fn in fns.items():
            dists[k].append(fn(s, t).float().cpu())
    p = torch.cat(psnrs)
    if not bool(torch.isfinite(p).all()):
        raise ValueError("PSNR is not finite: the student or the teacher produced NaN images")
    out = {
        "psnr_db": float(p.mean()),
        "psnr_db_std": float(p.std()) if p.numel() > 1 else 0.0,
        "ssim": float(torch.cat(ssims).mean()),
        "ssim_std": float(torch.cat(ssims).std()) if p.numel() > 1 else 0.0,
        "mse": float(torch.cat(mses).mean()),
        "num_samples": n,
        "seeds": f"{first_seed}..{first_seed + n - 1}",
    }
    means = {k: float(torch.cat(v).mean()) for k, v in dists.items()}
    if isinstance(distance, dict):
        out["distances"] = means
    elif distance is not None:
        out["distance_mean"] = means["_"]
        out["distance_name"] = getattr(distance, "name", getattr(distance, "__name__", "distance"))
    return out
