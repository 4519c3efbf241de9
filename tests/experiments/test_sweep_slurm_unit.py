"""The SLURM launcher's parts that need no cluster (issue 24 item 1): what a task does with its
run (records it, forwards SIGTERM, exits 143 so that SLURM's requeue runs it again), how
squeue's answer is read, what is asked of sbatch, and the error when there is no SLURM.
The real cluster: tests/experiments/test_sweep_slurm.py (slow)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from experiments import sweep
from experiments.sweep import slurm
from experiments.sweep.local import LOG_FILE, Run

pytest.importorskip("submitit")

ROOT = Path(__file__).resolve().parents[2]
TINY = "experiments/configs/tiny.py"

# Stands in for the trainer: on SIGTERM it "checkpoints" and exits 143; else it completes.
CHILD = """
import os, signal, sys, time
from pathlib import Path
workdir = Path(sys.argv[1])
def stop(signum, frame):
    (workdir / "checkpointed").write_text(str(signum))
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
(workdir / "pid").write_text(str(os.getpid()))
print("training", flush=True)
time.sleep(float(sys.argv[2]))
(workdir / "summary.json").write_text('{"status": "completed"}')
"""


class ScriptRun(Run):
    @property
    def command(self) -> list[str]:
        return [sys.executable, "-c", CHILD, str(self.workdir), str(self.settings["sleep"])]


def _task(tmp_path: Path, sleep: float) -> slurm.RunTask:
    run = ScriptRun("r", tmp_path / "r", {"sleep": sleep}, 0, "classify", [], None)
    run.workdir.mkdir()
    return slurm.RunTask(run, str(tmp_path))


@pytest.fixture
def signals_restored(monkeypatch):
    """RunTask installs its handlers as the job's main program would: put them back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR2)}
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    cwd = os.getcwd()
    yield
    os.chdir(cwd)
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_a_task_runs_its_command_and_records_it(tmp_path, signals_restored):
    attempt = _task(tmp_path, 0.1)()
    assert attempt["outcome"] == "completed" and attempt["returncode"] == 0
    assert attempt["slurm"] == {"SLURM_JOB_ID": "41", "SLURM_RESTART_COUNT": "2"}
    record = json.loads((tmp_path / "r" / "sweep_run.json").read_text())
    assert record["attempts"] == [attempt]
    assert "training" in (tmp_path / "r" / LOG_FILE).read_text()


def test_sigterm_to_a_task_stops_its_run_at_a_checkpoint_and_exits_143(tmp_path,
                                                                        signals_restored):
    task = _task(tmp_path, 60)
    pid_file = tmp_path / "r" / "pid"

    def preempt() -> None:  # what SLURM does on `scontrol requeue` or a preemption
        while not (pid_file.exists() and pid_file.read_text()):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=preempt, daemon=True).start()
    with pytest.raises(SystemExit) as stopped:
        task()
    assert stopped.value.code == 143  # no result for submitit: SLURM's requeue runs it again
    assert (tmp_path / "r" / "checkpointed").read_text() == str(int(signal.SIGTERM))
    record = json.loads((tmp_path / "r" / "sweep_run.json").read_text())
    assert [(a["outcome"], a["returncode"]) for a in record["attempts"]] == [("stopped", 143)]


def test_the_time_limit_hook_stops_the_run_and_requeues_the_same_task(tmp_path,
                                                                      signals_restored):
    task = _task(tmp_path, 60)
    task._job = slurm.start(task.run, 0, [])
    while not (tmp_path / "r" / "pid").exists():
        time.sleep(0.05)
    delayed = task.checkpoint()
    assert (tmp_path / "r" / "checkpointed").exists()
    assert delayed.function.run.args == task.run.args and delayed.function._job is None
    record = json.loads((tmp_path / "r" / "sweep_run.json").read_text())
    assert record["attempts"][-1]["stopped_by"] == "SIGUSR2"


def _fake_squeue(tmp_path: Path, monkeypatch, script: str) -> None:
    path = tmp_path / "bin" / "squeue"
    path.parent.mkdir()
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{path.parent}{os.pathsep}{os.environ['PATH']}")


def test_active_jobs_are_the_queued_and_running_ones(tmp_path, monkeypatch):
    _fake_squeue(tmp_path, monkeypatch, 'echo "12_0 RUNNING"; echo "12_1 PENDING"; '
                 'echo "12_2 COMPLETED"; echo "13 COMPLETING"')
    assert slurm.active_jobs(["12_0", "12_1", "12_2", "12_3", "13"]) == {"12_0", "12_1", "13"}
    assert slurm.active_jobs([]) == set()


def test_squeue_failures(tmp_path, monkeypatch):
    _fake_squeue(tmp_path, monkeypatch, 'echo "slurm_load_jobs error: Invalid job id '
                 'specified" >&2; exit 1')
    assert slurm.active_jobs(["9_0"]) == set()  # long gone from the controller
    (tmp_path / "bin" / "squeue").write_text("#!/bin/sh\necho 'Unable to contact' >&2; exit 1\n")
    with pytest.raises(OSError, match=r"squeue failed .*Unable to contact"):
        slurm.active_jobs(["9_0"])


def test_what_each_task_asks_of_sbatch(tmp_path, monkeypatch):
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")
    options = slurm.SlurmOptions(partition="gpu", time_min=30, gpus=2, cpus=4, mem="16G",
                                 parallel=3)
    text = slurm.executor(tmp_path / "logs", options)._make_submission_file_text("CMD", "u")
    for line in ["--requeue", "--partition=gpu", "--time=30", "--gpus-per-node=2",
                 "--cpus-per-task=4", "--mem=16G", "--signal=USR2@90"]:
        assert f"#SBATCH {line}\n" in text, text


def test_no_slurm_here_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch, no squeue
    code = sweep.main(["sweep", f"--workdir={tmp_path / 's'}", f"--config={TINY}",
                       "--launcher=slurm", "--noplots"])
    err = capsys.readouterr().err
    assert code == 1 and "SLURM submission failed" in err and "srun" in err, err


def test_the_local_slurm_script_refuses_clearly_without_root(tmp_path):
    """Where SLURM cannot be started (here: not root) the script exits 3 with its reason, which
    the slow test shows as its skip reason."""
    script = ROOT / "scripts" / "slurm" / "start_local_slurm.sh"
    cmd = [str(script), str(tmp_path / "slurm")]
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("root without runuser: cannot run the script as another user")
        cmd = [runuser, "-u", "nobody", "--", *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "start_local_slurm: cannot start SLURM here:" in result.stderr
    assert "root" in result.stderr
