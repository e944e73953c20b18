"""Model families; importing this package registers them."""

from gankd.models import classifiers, dcgan, i2i  # noqa: F401  (registration side effect)
from gankd.models.classifiers import ClassifierConfig
from gankd.models.dcgan import DiscriminatorConfig, GeneratorConfig

__all__ = ["ClassifierConfig", "DiscriminatorConfig", "GeneratorConfig"]
