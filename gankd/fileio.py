"""Atomic file writes, hashing and the paths results record: a leaf module (no gankd imports), so config,
checkpoint, sampling, report and export can all use it without an import cycle.

Temp files are siblings named ``.<name>.<random>.tmp``; ``checkpoint.clean_stale_tmp``
removes those an interrupted process left behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

TMP_SUFFIX = ".tmp"


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_with(path: str | Path, writer: Callable[[str], object]) -> None:
    """Call ``writer(tmp_path)`` on a temp file beside ``path``, then rename it onto ``path``.

    A reader sees the old file or the new one, never a half-written one; on any error the
    temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, _umask_mode())  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync and a rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_write_with(path, write)


def file_sha256(*paths: str | Path) -> str:
    """sha256 (hex) of the bytes of ``paths``, in order: the fingerprint of a weights file or folder."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def repo_root() -> Path | None:
    """The source checkout gankd runs from (the folder above the package holding
    pyproject.toml or .git), or None for an installed package."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() or (root / ".git").exists() else None


def portable_path(path: str | Path | None) -> str | None:
    """A path as a record should hold it: ``pretrained/<name>`` for a shipped model, relative
    to the repository root inside the checkout, else relative to the current directory.

    Never absolute when a relative form exists, so committed JSON does not depend on (or
    reveal) where the checkout lived. ``None`` stays ``None``.
    """
    if path is None:
        return None
    from gankd.checkpoint import pretrained_dir  # lazy: fileio stays a leaf at import time

    p = Path(path).expanduser()
    a = Path(os.path.abspath(p))  # no symlink resolution: keep the user's spelling
    for base, prefix in ((Path(os.path.abspath(pretrained_dir())), Path("pretrained")), (repo_root(), Path())):
        if base is None:
            continue
        for b, x in ((Path(os.path.abspath(base)), a), (base.resolve(), a.resolve())):
            if x == b or b in x.parents:
                return (prefix / x.relative_to(b)).as_posix()
    if not p.is_absolute():
        return p.as_posix()
    try:
        return Path(os.path.relpath(a, os.getcwd())).as_posix()
    except ValueError:  # another drive on Windows: no relative form exists
        return a.as_posix()


# ------------------------------------------------------------------ static cost
