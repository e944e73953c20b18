"""Distribution metrics of generated images against a reference, on extracted features: one
registered :class:`FidelityMetric` per ``--metrics`` name (FID, IS, KID, precision/recall, computed
by torch-fidelity's functions on the features gankd extracts in :mod:`gankd.metrics.fidelity`).
A new metric is one entry here; its name then feeds ``gankd eval --metrics``, the checks and the
result keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gankd.registry import Registry

FIDELITY_METRICS = Registry("metric", ordered=True)  # name -> FidelityMetric; the order is gankd eval's default


@dataclass(frozen=True)
class FidelityMetric:
    """One distribution metric on extracted features. ``compute(generated features, reference features or None,
    layer, torch-fidelity kwargs) -> {torch-fidelity key: value}``; ``keys``: those keys -> gankd's names;
    ``layer_as``: the torch-fidelity metric whose default feature layer it reads (fid: the embedding, isc: the
    logits); ``binary``: it compares with the reference; ``min_images`` in each set; ``needs_logits``: only an
    extractor with class logits gives it; ``label``: its name in messages."""

    compute: Callable[[dict, dict | None, str, dict], dict]
    keys: dict[str, str]
    layer_as: str
    label: str
    binary: bool = True
    min_images: int = 1
    needs_logits: bool = False


def _fid(f1: dict, f2: dict | None, layer: str, kwargs: dict) -> dict:
    from torch_fidelity.metric_fid import fid_featuresdict_to_statistics, fid_statistics_to_metric

    s1, s2 = fid_featuresdict_to_statistics(f1, layer), fid_featuresdict_to_statistics(f2, layer)
    return fid_statistics_to_metric(s1, s2, False)


def _isc(f1: dict, f2: dict | None, layer: str, kwargs: dict) -> dict:
    from torch_fidelity.metric_isc import isc_featuresdict_to_metric

    return isc_featuresdict_to_metric(f1, layer, **kwargs)


def _kid(f1: dict, f2: dict | None, layer: str, kwargs: dict) -> dict:
    from torch_fidelity.metric_kid import kid_featuresdict_to_metric

    return kid_featuresdict_to_metric(f1, f2, layer, **kwargs)


def _prc(f1: dict, f2: dict | None, layer: str, kwargs: dict) -> dict:
    from torch_fidelity.metric_prc import prc_featuresdict_to_metric

    return prc_featuresdict_to_metric(f1, f2, layer, **kwargs)


# --metrics of noise-to-image generators (the first ones are gankd eval's default); a new metric is one entry
FIDELITY_METRICS.add("fid", FidelityMetric(_fid, {"frechet_inception_distance": "fid"}, "fid", "FID"))
FIDELITY_METRICS.add("isc", FidelityMetric(_isc, {"inception_score_mean": "isc_mean", "inception_score_std": "isc_std"},
                                           "isc", "IS", binary=False, needs_logits=True))  # fmt: skip
FIDELITY_METRICS.add("kid", FidelityMetric(_kid, {"kernel_inception_distance_mean": "kid_mean",
                                                  "kernel_inception_distance_std": "kid_std"}, "kid", "KID",
                                           min_images=2))  # fmt: skip
FIDELITY_METRICS.add("prc", FidelityMetric(_prc, {"precision": "precision", "recall": "recall", "f_score": "f_score"},
                                           "prc", "precision/recall", min_images=5))  # fmt: skip

__all__ = ["FIDELITY_METRICS", "FidelityMetric"]
