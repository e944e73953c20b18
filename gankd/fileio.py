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


# ------------------------------------------------------------------ output paths
PNG_SOFTWARE = "gankd"  # the tEXt "Software" entry of every PNG gankd writes (how a rerun knows it)


def written_by_gankd(path: str | Path) -> bool:
    """Whether the existing file ``path`` is one gankd wrote, read as data: a PNG tagged
    ``Software: gankd``, a JSON with a ``gankd.*`` schema (evaluations, export records), or an
    exported model whose ``<name>.json`` record beside it is gankd's."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if head.startswith(b"\x89PNG"):
        return b"tEXtSoftware\x00" + PNG_SOFTWARE.encode() in head
    if path.suffix == ".json":
        import json

        try:
            obj = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(obj, dict):
            return False
        legacy_export = {"format", "max_abs_diff", "parity_batches"} <= set(obj)  # records before their schema
        return str(obj.get("schema", "")).startswith("gankd.") or legacy_export
    record = path.with_name(path.name + ".json")
    return record.is_file() and written_by_gankd(record)


def writable_location(path: str | Path, flag: str = "--out") -> Path:
    """Refuse, in one line naming ``flag``, a ``path`` that cannot be written: its nearest
    existing ancestor is a file, or creating a file there fails (a probe file, removed at
    once: permission bits do not stop root, a read-only file system does). Nothing is left."""
    path = Path(path)
    base = path.parent if not path.is_dir() else path
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise NotADirectoryError(f"{flag} {path}: {base} is a file, not a folder; choose another {flag}")
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".gankd-probe.", suffix=TMP_SUFFIX)
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise PermissionError(f"{flag} {path} cannot be written ({base}: {why.lower()}); choose a writable "
                              f"{flag}") from None  # fmt: skip
    os.close(fd)
    os.unlink(probe)
    return path


def check_out_file(path: str | Path, force: bool = False, example: str = "out.png", flag: str = "--out",
                   extra: tuple[str, ...] = ()) -> Path:  # fmt: skip
    """The rule for a file a command writes: ``path`` must not be a folder, must be writable, and
    an existing file there (or at a sibling named ``path.name + e`` for ``e`` in ``extra``) is
    replaced only when gankd wrote it or ``force`` is set. Checked before any work; raises a
    one-line error naming ``flag`` (and ``--force``)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder; give a file path, e.g. {flag} {path / example}")
    for p in (path, *(path.with_name(path.name + e) for e in extra)) if not force else ():
        # a companion file (an export's weights) is gankd's when the file it belongs to is
        if p.exists() and not (written_by_gankd(p) or (p != path and written_by_gankd(path))):
            what = f"{flag} {path}" if p == path else f"{flag} {path}: {p.name} beside it"
            raise FileExistsError(f"{what} exists and gankd did not write it; pass --force to replace it, or "
                                  f"choose another {flag}")  # fmt: skip
    return writable_location(path, flag)


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
