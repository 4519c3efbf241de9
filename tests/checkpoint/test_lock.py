"""Workdir lock: one run per workdir, with real processes (issue 15, item 2)."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cnnjax.checkpoint import LOCK_FILE, WorkdirLockedError, acquire
from cnnjax.checkpoint.lock import _process_start_ticks

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
    assert any(f"PID {holder.pid}" in r.getMessage() and "no longer running" in r.getMessage()
               for r in caplog.records)
    assert [p.name for p in tmp_path.iterdir()] == []  # no stale copy left behind


def write_lock(workdir: Path, **fields) -> None:
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": "then",
              "start_ticks": _process_start_ticks(os.getpid()), "token": "t", **fields}
    (workdir / LOCK_FILE).write_text(json.dumps(holder))


def test_live_holder_in_this_process_blocks(tmp_path):
    write_lock(tmp_path)
    with pytest.raises(WorkdirLockedError, match=rf"PID {os.getpid()}, started then"):
        acquire(tmp_path, process_index=0)


@pytest.mark.skipif(_process_start_ticks(os.getpid()) is None, reason="needs Linux /proc")
def test_reused_pid_is_not_the_holder(tmp_path):
    write_lock(tmp_path, start_ticks=_process_start_ticks(os.getpid()) - 1)
    with acquire(tmp_path, process_index=0) as lock:
        assert lock.held


def test_lock_from_another_host_is_never_taken_over(tmp_path):
    write_lock(tmp_path, host="elsewhere", pid=1)
    with pytest.raises(WorkdirLockedError, match=r"host 'elsewhere', PID 1.*delete '.*cnnjax"):
        acquire(tmp_path, process_index=0)


def test_unreadable_lock_waits_for_its_writer_then_is_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_text("")
    with pytest.raises(WorkdirLockedError, match="a process still writing it"):
        acquire(tmp_path, process_index=0)
    old = time.time() - 60
    os.utime(tmp_path / LOCK_FILE, (old, old))
    with acquire(tmp_path, process_index=0) as lock:
        assert lock.held


def test_only_process_zero_locks(tmp_path):
    with acquire(tmp_path, process_index=1) as lock:
        assert not lock.held and not (tmp_path / LOCK_FILE).exists()
        with acquire(tmp_path, process_index=0) as lock0:
            assert lock0.held
            with pytest.raises(WorkdirLockedError):
                acquire(tmp_path, process_index=0)
    with pytest.raises(ValueError, match="process_index must be an int >= 0, got -1"):
        acquire(tmp_path, process_index=-1)


def test_release_keeps_a_lock_that_is_no_longer_ours(tmp_path):
    lock = acquire(tmp_path, process_index=0)
    write_lock(tmp_path, token="someone else")
    lock.release()
    assert (tmp_path / LOCK_FILE).exists()
