"""Name -> constructor registries (timm style).

``@GENERATORS.register("dcgan")`` adds a class; ``GENERATORS.get(name)`` returns it
or raises ``KeyError`` whose message lists the valid names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry:
    """A named table of constructors with helpful errors for unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        if name not in self._items:
            raise KeyError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


GENERATORS = Registry("generator")
DISCRIMINATORS = Registry("discriminator")
CLASSIFIERS = Registry("classifier")
