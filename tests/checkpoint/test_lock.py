"""Workdir lock: one run per workdir, with real processes (issue 15 item 2, issue 23 item 1)."""

import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cnnjax.checkpoint import LOCK_FILE, WorkdirLockedError, acquire

REPO = Path(__file__).resolve().parents[2]
HOLD = """
    import sys
    from cnnjax.checkpoint import acquire
    lock = acquire(sys.argv[1], process_index=0)
    print("locked", flush=True)
    sys.stdin.readline()
"""
TRY = """
    import sys
    from cnnjax.checkpoint import WorkdirLockedError, acquire
    try:
        acquire(sys.argv[1], process_index=0)
    except WorkdirLockedError as e:
        print(e)
        sys.exit(3)
"""


def python(code: str, workdir: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(workdir)],
                            env=env, cwd=REPO, text=True, **kwargs)


def start_holder(workdir: Path) -> subprocess.Popen:
    holder = python(HOLD, workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_second_process_fails_at_once_naming_the_holder(tmp_path):
    holder = start_holder(tmp_path)
    try:
        started = time.monotonic()
        second = python(TRY, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 3, err
        assert f"host {socket.gethostname()!r}, PID {holder.pid}, started 20" in out
        assert "is the job already running?" in out
        assert time.monotonic() - started < 60
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    assert not (tmp_path / LOCK_FILE).exists()  # released at exit (atexit)


def test_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    holder = start_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid
    with caplog.at_level(logging.WARNING, logger="cnnjax.checkpoint"):
        with acquire(tmp_path, process_index=0) as lock:
            assert lock.held
            assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()
    assert any(f"PID {holder.pid}" in r.getMessage() and "has ended" in r.getMessage()
               for r in caplog.records)
    assert [p.name for p in tmp_path.iterdir()] == []  # no stale copy left behind


def write_lock(workdir: Path, **fields) -> None:
    """A lock file as a process that has ended leaves it: text, but no flock held."""
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": "then", **fields}
    (workdir / LOCK_FILE).write_text(json.dumps(holder))


def hold_flock(workdir: Path, text: bytes = b"") -> int:
    """Lock the file as another holder would (a separate open file description)."""
    fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, text)
    return fd


def test_the_flock_is_the_authority_not_the_text(tmp_path):
    # The text names this live process, yet nobody holds the flock: it is free.
    write_lock(tmp_path)
    with acquire(tmp_path, process_index=0) as lock:
        assert lock.held
    # Text naming a dead PID on another host, but the flock is held: it is in use.
    fd = hold_flock(tmp_path, json.dumps({"host": "elsewhere", "pid": 1,
                                          "start_time": "then"}).encode())
    try:
        with pytest.raises(WorkdirLockedError, match=r"host 'elsewhere', PID 1, started then"):
            acquire(tmp_path, process_index=0)
    finally:
        os.close(fd)
    with acquire(tmp_path, process_index=0) as lock:
        assert lock.held


@pytest.mark.parametrize("text", [b"", b"\xff\xfe garbage", b"[1, 2]",
                                  b'{"pid": 99999999999999999999999}', b"x" * 100_000])
def test_any_lock_text_held_or_left_is_handled(tmp_path, text):
    """Empty, non-UTF-8, non-object, huge-PID or huge lock files: a clear error while held,
    taken over once free (issue 23 item 13)."""
    fd = hold_flock(tmp_path, text)
    try:
        with pytest.raises(WorkdirLockedError, match="in use by another run"):
            acquire(tmp_path, process_index=0)
    finally:
        os.close(fd)
    with acquire(tmp_path, process_index=0) as lock:
        assert lock.held
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_only_process_zero_locks(tmp_path):
    with acquire(tmp_path, process_index=1) as lock:
        assert not lock.held and not (tmp_path / LOCK_FILE).exists()
        with acquire(tmp_path, process_index=0) as lock0:
            assert lock0.held
            with pytest.raises(WorkdirLockedError):
                acquire(tmp_path, process_index=0)
    with pytest.raises(ValueError, match="process_index must be an int >= 0, got -1"):
        acquire(tmp_path, process_index=-1)


def test_release_keeps_a_lock_file_that_is_no_longer_ours(tmp_path):
    lock = acquire(tmp_path, process_index=0)
    (tmp_path / LOCK_FILE).unlink()
    fd = hold_flock(tmp_path, b'{"pid": 7}')
    try:
        lock.release()
        assert json.loads((tmp_path / LOCK_FILE).read_text()) == {"pid": 7}
    finally:
        os.close(fd)


def _can_unshare_pid() -> str | None:
    if os.geteuid() != 0:
        return "needs root for unshare --pid"
    if shutil.which("unshare") is None:
        return "needs util-linux unshare"
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True)
    return None if probe.returncode == 0 else f"unshare --pid fails here: {probe.stderr!r}"


@pytest.mark.skipif(_can_unshare_pid() is not None, reason=str(_can_unshare_pid()))
def test_holder_in_another_pid_namespace_blocks(tmp_path):
    """Issue 23 item 1: a run inside `unshare --pid` records PID 1; the PID told the old lock
    nothing and a second run outside took it over as stale. The flock is namespace-blind."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    holder = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
         textwrap.dedent(HOLD), str(tmp_path)],
        env=env, cwd=REPO, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == 1
        with pytest.raises(WorkdirLockedError,
                           match=r"PID 1, .*another PID namespace.*already running"):
            acquire(tmp_path, process_index=0)
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    with acquire(tmp_path, process_index=0) as lock:
        assert lock.held
