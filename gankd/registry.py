"""Name -> object registries (timm style): one table per kind of plug-in.

``@GENERATORS.register("dcgan")`` adds a class; ``GENERATORS.get(name)`` returns it
or raises ``KeyError`` whose message lists the valid names. A registry's names feed
the command line's choices, the config checks and the reports, so adding an entry is
one registration in one file:

=====================  ===============================  ==============================
kind                   registry                         file
=====================  ===============================  ==============================
generator family       ``GENERATORS``                   gankd/models/
discriminator          ``DISCRIMINATORS``               gankd/models/
classifier             ``CLASSIFIERS``                  gankd/models/classifiers.py
distribution metric    ``FIDELITY_METRICS``             gankd/metrics/distribution.py
adversarial loss       ``gankd.losses.ADVERSARIAL``     gankd/losses.py
pixel loss             ``gankd.losses.PIXEL``           gankd/losses.py
degradation task       ``gankd.paired.DEGRADATIONS``    gankd/paired.py
timing runtime         ``gankd.runtimes.RUNTIMES``      gankd/runtimes.py
export precision       ``gankd.precision.PRECISIONS``   gankd/precision.py
student pruner         ``gankd.pruning.PRUNERS``        gankd/pruning.py
=====================  ===============================  ==============================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry:
    """A named table of constructors with helpful errors for unknown names."""

    def __init__(self, kind: str, ordered: bool = False):
        self.kind = kind
        self.ordered = ordered  # names() in registration order (the first is the default), else sorted
        self._items: dict[str, Any] = {}
        self._aliases: dict[str, str] = {}  # another name -> the registered one

    def register(self, name: str) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: Any, aliases: tuple[str, ...] = ()) -> Any:
        """``register(name)(obj)`` for objects that are not defined with a decorator; ``aliases``
        are other names that :meth:`get` accepts for it (not listed by :meth:`names`)."""
        for a in aliases:
            self._aliases[a] = name
        return self.register(name)(obj)

    def canonical(self, name: str) -> str:
        """The registered name of ``name`` (itself, or what it is an alias of)."""
        return self._aliases.get(name, name)

    def accepted(self) -> tuple[str, ...]:
        """Every name :meth:`get` accepts: the registered ones, then the aliases."""
        return (*self.names(), *self._aliases)

    def get(self, name: str) -> Any:
        name = self.canonical(name)
        if name not in self._items:
            raise KeyError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}"
            )
        return self._items[name]

    def check(self, name: str, flag: str) -> str:
        """``name`` if registered, else ValueError naming ``flag`` and the choices (for configs)."""
        if name not in self:
            raise ValueError(f"{flag} must be one of {', '.join(self.names())}, got {name!r}")
        return name

    def names(self) -> list[str]:
        return list(self._items) if self.ordered else sorted(self._items)

    def choices(self) -> tuple[str, ...]:
        """The names as a tuple (argparse ``choices``)."""
        return tuple(self.names())

    def __contains__(self, name: str) -> bool:
        return self.canonical(name) in self._items

    def __iter__(self):  # the names: a registry stands in for a tuple of choices
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


GENERATORS = Registry("generator")
DISCRIMINATORS = Registry("discriminator")
CLASSIFIERS = Registry("classifier")
