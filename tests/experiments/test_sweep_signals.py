"""`experiments.sweep` under signals and shared workdirs (issue 23 items 2 and 12).

The runs here are stand-in child processes (no JAX; a second each), so that the sweep's own
behaviour is what is tested: signals forwarded to every run and waited for, exit 128 + signal,
a workdir held by another process never recorded as failed, the run's own error line as the
failure reason.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cnnjax.checkpoint import LOCK_FILE
from experiments.sweep import local, results

ROOT = Path(__file__).resolve().parents[2]

# A run that behaves as the trainer does on SIGTERM: checkpoints, then exits 143.
CHILD = """
import os, signal, sys, time
from pathlib import Path
workdir = Path(sys.argv[1])
def stop(signum, frame):
    time.sleep(0.5)  # "writing its checkpoint"
    (workdir / "checkpointed").write_text(str(signum))
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
(workdir / "pid").write_text(str(os.getpid()))
print("[step 1] training", flush=True)
time.sleep(120)
"""

SWEEP = """
import sys
from pathlib import Path
from experiments.sweep import cli, local

class FakeRun(local.Run):
    @property
    def command(self):
        return [sys.executable, "-c", {child!r}, str(self.workdir)]

top = Path(sys.argv[1])
runs = [FakeRun(f"seed={{i}}", top / f"seed={{i}}", {{}}, i, "classify", [], None)
        for i in range(2)]
cli.plan = lambda *a, **k: runs
cli.is_finished = lambda run: False
sys.exit(cli.main(["sweep", f"--workdir={{top}}", "--config=x.py", "--jobs=2"]))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _wait_for(paths: list[Path], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() and p.read_text() for p in paths):
        assert time.monotonic() < deadline, f"{paths} never appeared"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text(
    ).rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130),
                                          (signal.SIGHUP, 129)])
def test_signal_to_the_sweep_stops_every_run_at_a_checkpoint(tmp_path, signum, code):
    """Issue 23 item 2: SIGTERM reached only the sweep; its runs kept training with ppid 1."""
    proc = subprocess.Popen([sys.executable, "-c", SWEEP.format(child=CHILD), str(tmp_path)],
                            env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pids_files = [tmp_path / f"seed={i}" / "pid" for i in range(2)]
    try:
        _wait_for(pids_files)
        pids = [int(p.read_text()) for p in pids_files]
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err and signal.Signals(signum).name in err
    assert "run the same command again to resume" in err
    for i, pid in enumerate(pids):
        workdir = tmp_path / f"seed={i}"
        assert not _alive(pid), f"run {i} (PID {pid}) was left running"
        assert (workdir / "checkpointed").read_text() == str(int(signal.SIGTERM))
        attempt = json.loads((workdir / results.RUN_RECORD).read_text())["attempts"][-1]
        assert attempt["outcome"] == "stopped" and attempt["returncode"] == 143
        assert attempt["stopped_by"] == signal.Signals(signum).name
        (workdir / "config.json").write_text(json.dumps({"seed": i}))
        assert results.read_run(workdir).status != "failed"


def _run(tmp_path: Path, code: str, name: str = "r") -> local.Run:
    class Scripted(local.Run):
        @property
        def command(self):
            return [sys.executable, "-c", textwrap.dedent(code)]

    return Scripted(name, tmp_path / name, {}, 0, "classify", [], None)


def test_a_run_held_by_another_process_is_not_started_nor_failed(tmp_path, capsys):
    """Issue 23 item 2: a rerun while the earlier runs still trained recorded them FAILED
    (status=failed) with a progress line as the reason."""
    run = _run(tmp_path, "import sys; print('experiments.classify: error: locked'); "
                         "sys.exit(1)")
    run.workdir.mkdir()
    (run.workdir / results.RUN_RECORD).write_text(json.dumps(
        {"attempts": [{"returncode": 0, "outcome": "stopped", "wall_s": 1.0, "error": ""}]}))
    fd = os.open(run.workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"host": "h", "pid": 4242, "start_time": "earlier"}).encode())
    try:
        failures = local.execute([run], 1, poll_s=0.01)
    finally:
        os.close(fd)
    out = capsys.readouterr().out
    assert "BUSY r: not run" in out and "PID 4242" in out and "FAILED" not in out
    assert [a["outcome"] for _, a in failures] == ["busy"]
    assert not (run.workdir / local.LOG_FILE).exists()  # never started
    attempts = json.loads((run.workdir / results.RUN_RECORD).read_text())["attempts"]
    assert [a["outcome"] for a in attempts] == ["stopped"]  # nothing recorded as failed


def test_the_failure_reason_is_the_runs_own_error_line(tmp_path, capsys):
    """Issue 23 items 2 and 12: the reason was the last line of a log that another writer (an
    orphaned run, another sweep) appends to."""
    run = _run(tmp_path, """
        import sys
        print("experiments.classify: error: config.dataset='nope' is not registered",
              file=sys.stderr, flush=True)
        print("[step 40/100] loss 0.31 (another process writing this log)", flush=True)
        sys.exit(1)
    """)
    failures = local.execute([run], 1, poll_s=0.01)
    out = capsys.readouterr().out
    (_, attempt), = failures
    assert attempt["outcome"] == "failed"
    assert attempt["reason"] == ("experiments.classify: error: config.dataset='nope' is not "
                                 "registered")
    assert out.rstrip().endswith(attempt["reason"])


STUBBORN = CHILD.replace('time.sleep(0.5)  # "writing its checkpoint"',
                         "time.sleep(300)  # hangs")


def test_a_second_signal_kills_runs_that_do_not_stop(tmp_path):
    """A run that hangs while stopping would hold the sweep forever; a second Ctrl-C kills."""
    assert STUBBORN != CHILD
    proc = subprocess.Popen([sys.executable, "-c", SWEEP.format(child=STUBBORN),
                             str(tmp_path)], env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pids_files = [tmp_path / f"seed={i}" / "pid" for i in range(2)]
    try:
        _wait_for(pids_files)
        pids = [int(p.read_text()) for p in pids_files]
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None  # still waiting for its runs to checkpoint
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "second signal: killing" in err, err
    assert not any(_alive(pid) for pid in pids)
