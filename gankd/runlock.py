"""One process per run folder: an advisory lock held for the run's life.

``with run_lock(folder):`` creates ``folder`` if needed and takes an exclusive ``fcntl.flock``
on ``folder/.gankd-lock``, which records the holder's PID. A second process asking for the
same folder is refused at once with a one-line :class:`RunFolderBusy` naming ``--out``. The
kernel drops the lock when its holder exits or crashes; a lock file left by a dead process
is taken over (and, should an orphaned file descriptor still hold it, replaced). On a clean
exit the lock file is removed; a run that fails before writing anything leaves no folder
(or, for a folder that existed, no marker) behind.

:func:`holds_run_lock` wraps an API entry point (``compress``, ``train_gan``,
``train_classifier``). Under ``torchrun`` only rank 0 takes the lock (all ranks share --out).
A process may take the lock of a folder it already holds (nested calls).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

LOCK = ".gankd-lock"
_held: dict[str, int] = {}  # folders this process holds -> nesting depth


class RunFolderBusy(FileExistsError):
    """Another live process holds the run folder."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
        return int(text.split()[0]) if text else None
    except (OSError, ValueError, IndexError):
        return None


def _busy(folder: Path, pid: int | None) -> RunFolderBusy:
    who = f"pid {pid}" if pid else "another process"
    return RunFolderBusy(f"--out {folder} is in use by another gankd run ({who}); wait for it to finish or "
                         "choose another --out")  # fmt: skip


def _acquire(folder: Path) -> tuple[int, int | None]:
    """An fd holding the exclusive lock on ``folder/LOCK`` and the PID a dead holder left there."""
    path = folder / LOCK
    for attempt in range(4):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise PermissionError(f"--out {folder} is not writable; choose a folder you can write to as --out") \
                from None  # fmt: skip
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            pid = _read_pid(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            if pid is not None and not _pid_alive(pid) and attempt == 0:
                # its holder died and an orphaned descriptor keeps the lock: replace the file
                log.warning("%s: the lock of dead process %d is still held; taking the run folder over", folder, pid)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            raise _busy(folder, pid) from None
        try:  # still the file at the path? (a holder may have removed or replaced it meanwhile)
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        stale = _read_pid(fd)
        if stale is not None and stale != os.getpid():
            log.info("%s: taking over the lock left by process %d, which is gone", folder, stale)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd, stale
    raise _busy(folder, None)


def _missing_parents(folder: Path) -> list[Path]:
    """``folder`` and those of its ancestors that do not exist yet, deepest first."""
    out = []
    p = folder
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def _undo(folder: Path, created: list[Path], had_marker: bool) -> None:
    """After a failed run: remove what only the lock and run preparation put there."""
    from gankd.checkpoint import RUN_MARKER

    try:
        names = set(os.listdir(folder))
    except OSError:
        return
    if names <= {RUN_MARKER} and not had_marker:
        with contextlib.suppress(OSError):
            os.unlink(folder / RUN_MARKER)
        for p in created:  # deepest first; stops at the first that is not empty
            try:
                os.rmdir(p)
            except OSError:
                break


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold the run folder ``folder`` (created if missing) for the block; see the module docstring."""
    folder = Path(folder)
    if int(os.environ.get("RANK", "0") or 0) != 0:  # torchrun: rank 0 holds --out for all ranks
        yield folder
        return
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"--out {folder} is a file; choose an empty or new folder for --out")
    key = os.path.realpath(folder)
    if key in _held:
        _held[key] += 1
        try:
            yield folder
        finally:
            _held[key] -= 1
        return
    from gankd.checkpoint import RUN_MARKER

    created = _missing_parents(folder)
    had_marker = (folder / RUN_MARKER).exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise PermissionError(f"--out {folder} cannot be created (permission denied); choose a folder you can "
                              "write to as --out") from None  # fmt: skip
    try:
        fd, _ = _acquire(folder)
    except BaseException:
        _undo(folder, created, had_marker)
        raise
    _held[key] = 1
    ok = False
    try:
        yield folder
        ok = True
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            os.unlink(folder / LOCK)  # while still held: a waiter re-checks the path and starts afresh
        os.close(fd)
        if not ok:
            _undo(folder, created, had_marker)


def holds_run_lock(arg: str) -> Callable:
    """Decorator: the wrapped function runs under :func:`run_lock` of its argument ``arg``."""

    def wrap(fn: Callable) -> Callable:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            with run_lock(sig.bind(*args, **kwargs).arguments[arg]):
                return fn(*args, **kwargs)

        return locked

    return wrap


__all__ = ["LOCK", "RunFolderBusy", "holds_run_lock", "run_lock"]
