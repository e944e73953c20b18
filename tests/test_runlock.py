"""One process per run folder: the advisory lock of gankd.runlock, in the API and the CLI."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import one_line_error

from gankd import cli
from gankd.checkpoint import RUN_MARKER, WEIGHTS, load_generator, load_state
from gankd.runlock import LOCK, RunFolderBusy, run_lock

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
COMPRESS = ["--width", "0.5", "--batch-size", "4", "--eval-every", "0", "--no-progress", "--data", "none",
            "--select", "teacher-l1", "--perc", "0", "--kd", "0", "--set", "threads=1"]  # fmt: skip
HOLD = "import sys, time; from gankd.runlock import run_lock\nwith run_lock(sys.argv[1]):\n" \
       "    print('held', flush=True); time.sleep(120)\n"  # fmt: skip


def _holder(folder: Path) -> subprocess.Popen:
    """A process holding ``folder``'s lock until killed."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_second_process_is_refused_in_one_line_and_writes_nothing(gen_dir, tmp_path, capsys):
    out = tmp_path / "run"
    holder = _holder(out)
    try:
        before = sorted(os.listdir(out))
        msg = one_line_error(capsys, "compress", "--teacher", gen_dir, "--out", out, "--steps", 1, *COMPRESS)
        assert msg == (f"gankd compress: error: --out {out} is in use by another gankd run (pid {holder.pid}); "
                       "wait for it to finish or choose another --out")  # fmt: skip
        assert sorted(os.listdir(out)) == before == [LOCK]
        for cmd in (["train-teacher", "--data", "fashion-mnist"], ["train-classifier"]):
            assert "in use by another gankd run" in one_line_error(capsys, *cmd, "--out", out)
        assert sorted(os.listdir(out)) == [LOCK]
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: the kernel drops the lock, the file stays
        holder.wait()
    assert (out / LOCK).read_text().strip() == str(holder.pid)
    code = cli.main(["compress", "--teacher", str(gen_dir), "--out", str(out), "--steps", "1", *COMPRESS])
    assert code == 0, capsys.readouterr().err
    assert (out / "student" / WEIGHTS).is_file() and not (out / LOCK).exists()  # taken over, released


def test_an_orphaned_lock_of_a_dead_process_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT)
    os.write(fd, f"{_dead_pid()}\n".encode())
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a descriptor that outlived its process still holds it
    try:
        with run_lock(folder):
            assert (folder / LOCK).read_text().strip() == str(os.getpid())
        assert not (folder / LOCK).exists()
    finally:
        os.close(fd)


def test_a_live_holder_is_never_taken_over_and_nesting_is_allowed(tmp_path):
    folder = tmp_path / "run"
    holder = _holder(folder)
    try:
        with pytest.raises(RunFolderBusy, match=rf"pid {holder.pid}.*--out"):
            with run_lock(folder):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(folder), run_lock(folder):  # one process may nest its own lock
        assert (folder / LOCK).is_file()
    assert not (folder / LOCK).exists()


def test_a_failed_run_leaves_no_folder_or_marker_behind(tmp_path):
    for existed in (False, True):
        folder = tmp_path / f"new{existed}" / "deeper"
        if existed:
            folder.mkdir(parents=True)
        with pytest.raises(ValueError, match="refused"):
            with run_lock(folder):
                (folder / RUN_MARKER).write_text("x")
                raise ValueError("refused")
        assert folder.exists() == existed and (not existed or os.listdir(folder) == [])
        assert not (tmp_path / f"new{existed}").exists() or existed


def test_two_processes_started_together_into_one_out(gen_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gankd", "compress", "--teacher", str(gen_dir), "--out", str(out), "--steps", "40",
           "--set", "checkpoint_every=5", *COMPRESS]  # fmt: skip
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    lines = loser[2].strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in loser[2], loser[2]
    assert f"--out {out}" in lines[0] and ("in use by another gankd run" in lines[0]
                                           or "already holds a gankd run" in lines[0]), lines[0]  # fmt: skip
    # the folder holds one run, whole: its state, the selected student and the last checkpoint agree
    assert load_state(out / "state.pt")["step"] == 40
    assert load_generator(out / "student") is not None and load_generator(out / "last") is not None
    names = set(os.listdir(out))
    assert {"config.json", "state.pt", "student", "last", "metrics.jsonl", RUN_MARKER} <= names
    assert LOCK not in names and not [n for n in names if n.endswith(".tmp") or ".tmp-" in n or ".old-" in n]
