"""Dataclass configs: JSON round trip and ``--set a.b=v`` overrides.

Every config in gankd is a dataclass whose field defaults are the single source of
defaults. ``from_dict`` rejects unknown keys (with the list of valid ones) so a typo
in a saved config or a ``--set`` flag fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(cfg: Any) -> dict:
    """Dataclass -> plain JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], data: dict) -> T:
    """Build ``cls`` from ``data``; nested dataclass fields are rebuilt recursively."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown key(s) {unknown}; valid keys: {sorted(names)}"
        )
    kwargs = {key: _coerce(hints[key], value, f"{cls.__name__}.{key}") for key, value in data.items()}
    return cls(**kwargs)


class _Mismatch(ValueError):
    pass


def _coerce(typ: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the field type (JSON lists -> tuples, ints -> floats).

    A wrong type must fail here with the field's name: left to ``__post_init__`` it
    would surface as a ``TypeError`` traceback (``'<' not supported between str and int``).
    """
    try:
        return _coerce_inner(typ, value)
    except _Mismatch:
        name = getattr(typ, "__name__", None) or str(typ).replace("typing.", "")
        raise ValueError(f"{where} expects {name}, got {value!r}") from None


def _coerce_inner(typ: Any, value: Any) -> Any:
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is not type(None):
                try:
                    return _coerce_inner(a, value)
                except _Mismatch:
                    pass
        raise _Mismatch
    if dataclasses.is_dataclass(typ):
        if isinstance(value, typ):
            return value
        if isinstance(value, dict):
            return from_dict(typ, value)
        raise _Mismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce_inner(args[0], v) for v in value)
        if args and len(args) != len(value):
            raise _Mismatch
        return tuple(_coerce_inner(a, v) for a, v in zip(args, value, strict=True)) if args else tuple(value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        return [_coerce_inner(args[0], v) for v in value] if args else list(value)
    if typ is bool:
        if not isinstance(value, bool):
            raise _Mismatch
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch
        return float(value)
    elif typ is str:
        if not isinstance(value, str):
            raise _Mismatch
    return value  # other annotations (Any, dict, Literal, ...) pass through unchecked


def save_json(data: dict, path: str | Path) -> None:
    """Write JSON atomically (temp file + rename)."""
    from gankd.fileio import atomic_write_bytes

    atomic_write_bytes(Path(path), (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def load_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}; point to a folder made by gankd")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore or regenerate it") from e


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # bare strings need no quotes: --set loss.adv=hinge


def apply_overrides(cfg: T, assignments: list[str] | None) -> T:
    """Return a copy of ``cfg`` with ``["a.b=1", "c=[1,2]"]`` applied (JSON values)."""
    data = to_dict(cfg)
    for item in assignments or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ValueError(f"--set {key}: '{p}' is not a config section")
            node = node[p]
        if parts[-1] not in node:
            raise ValueError(
                f"--set {key}: unknown key '{parts[-1]}'; valid keys: {sorted(node)}"
            )
        node[parts[-1]] = _parse_value(raw)
    return from_dict(type(cfg), data)
