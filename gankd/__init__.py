"""gankd: compress pretrained GAN generators by knowledge distillation."""

__version__ = "0.1.0"

from gankd import models  # noqa: F401  (registers model families)
from gankd.checkpoint import load_classifier, load_discriminator, load_generator, save_model
from gankd.distill import DistillConfig, compress

__all__ = [
    "DistillConfig", "compress", "load_classifier", "load_discriminator", "load_generator", "save_model",
    "__version__",
]  # fmt: skip
