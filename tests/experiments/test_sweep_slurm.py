"""`experiments.sweep --launcher=slurm` and multi-host `--distributed` against a real SLURM
(issue 24 items 1 and 2).

`scripts/slurm/start_local_slurm.sh` starts a one-node SLURM on this machine (installing
slurm-wlm and munge from apt when it is root); where it cannot (exit 3: not root, no apt, no
daemons) every test here is skipped with its reason. Then:

- a 2 learning rates x 2 seeds tiny sweep goes to SLURM as one job array; one task is requeued
  with `scontrol requeue` while it trains (SIGTERM: it checkpoints, exits 143, comes back and
  resumes); the same sweep command again submits nothing, follows the queued tasks and writes
  the tables; the requeued run ends bitwise equal to its own command run directly here;
- a 4-trial Optuna search with pruning runs its trials as SLURM jobs and makes the same
  study as the same search run locally;
- `scripts/slurm/train_multihost.sbatch` (srun inside) runs the tiny config as 2 tasks = 2
  processes x 4 CPU devices with `--distributed`
  (jax.distributed's SLURM auto-detection), equal to 1 process x 8 devices to float32 tolerance
  (gloo sums in another order: not bitwise).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # a SLURM start, 15 tiny trainings: about 3.5 min on 2 cores

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "scripts" / "slurm" / "start_local_slurm.sh"
TINY = "experiments/configs/tiny.py"
LONGER = ["--config.num_train_steps=120", "--config.eval_every_steps=60",
          "--config.checkpoint_every_steps=60"]
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The environment for SLURM commands and the runs (SLURM_CONF, 1 CPU device each), with
    this module's own one-node SLURM (stopped at the end)."""
    pytest.importorskip("submitit")
    if shutil.which("bash") is None:
        pytest.skip("no bash to run scripts/slurm/start_local_slurm.sh")
    directory = tmp_path_factory.mktemp("slurm")
    started = subprocess.run([str(START), str(directory)], capture_output=True, text=True,
                             timeout=900)
    if started.returncode == 3:
        pytest.skip(f"SLURM cannot be started here: {started.stderr.strip()}")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        conf = started.stdout.strip().splitlines()[-1].split("=", 1)[1]
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env.update(SLURM_CONF=conf, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
            [str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        yield env
    finally:
        subprocess.run([str(START), "--stop", str(directory)], capture_output=True, timeout=60)


def _run(cmd: list[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, **kw)


def _sweep(directory: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "experiments.sweep", f"--workdir={directory}",
                 f"--config={TINY}", *LONGER, "--noplots", "--seeds=0,1",
                 "--grid=optimizer.learning_rate=0.01,0.003", "--launcher=slurm", *extra], env)


def _rows(workdir: Path) -> dict[tuple[int, str], dict]:
    """metrics.jsonl by (step, split), wall-clock field dropped (a resumed run's rows may
    repeat a step: the latest is what the run ended with)."""
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {(r["step"], r["split"]): {k: v for k, v in r.items() if k != "images_per_s"}
            for r in rows}


def _squeue_state(job: str, env: dict[str, str]) -> str:
    out = _run(["squeue", "--noheader", "--array", "--format=%T", f"--jobs={job}"], env)
    return out.stdout.strip()


def _requeue_while_training(workdir: Path, job: str, env: dict[str, str]) -> None:
    """`scontrol requeue` the task once it trains, then let the requeued task start at once
    (SLURM holds a requeued job for a while: its begin time is set in the future)."""
    deadline = time.monotonic() + TIMEOUT_S
    while not ((workdir / "metrics.jsonl").exists()
               and '"train"' in (workdir / "metrics.jsonl").read_text()):
        assert time.monotonic() < deadline, f"{workdir} never started training"
        time.sleep(0.2)
    assert not (workdir / "summary.json").exists(), "finished before it could be requeued"
    requeue = _run(["scontrol", "requeue", job], env)
    assert requeue.returncode == 0, requeue.stderr
    while _squeue_state(job, env) != "PENDING":
        assert time.monotonic() < deadline, f"job {job} never went back to PENDING"
        time.sleep(0.5)
    _run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env)


def test_a_sweep_on_slurm_survives_a_requeue_and_equals_direct_runs(slurm, tmp_path):
    directory = tmp_path / "sweep"
    submitted = _sweep(directory, slurm, "--noslurm_wait")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "4 submitted to SLURM as job array" in submitted.stdout
    jobs = json.loads((directory / "slurm_jobs.json").read_text())
    assert len(jobs) == 4 and len({j.split("_")[0] for j in jobs.values()}) == 1  # one array
    name = "optimizer.learning_rate=0.01,seed=0"
    _requeue_while_training(directory / name, jobs[name], slurm)

    followed = _sweep(directory, slurm)  # the same command: nothing resubmitted, waits, tables
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert "; 0 submitted to SLURM" in followed.stdout, followed.stdout  # none twice
    with (directory / "results.csv").open() as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert len(rows) == 4 and {r["status"] for r in rows.values()} == {"completed"}, rows
    assert {r["step"] for r in rows.values()} == {"120"}

    (directory / "results.csv").unlink()
    reported = _run([sys.executable, "-m", "experiments.sweep", "--report", str(directory),
                     "--noplots"], slurm)  # the tables again, from the shared workdirs alone
    assert reported.returncode == 0, reported.stderr
    with (directory / "results.csv").open() as f:
        assert {r["run"]: r["status"] for r in csv.DictReader(f)} == {
            n: "completed" for n in rows}

    attempts = json.loads((directory / name / "sweep_run.json").read_text())["attempts"]
    assert [(a["outcome"], a["returncode"]) for a in attempts] == [
        ("stopped", 143), ("completed", 0)], attempts
    assert attempts[1]["slurm"]["SLURM_RESTART_COUNT"] == "1"
    log = (directory / name / "sweep.log").read_text()
    assert "resumed from checkpoint step" in log

    # Its own command (the one the task ran), run directly here, uninterrupted
    command = attempts[0]["command"]
    direct = tmp_path / "direct"
    cmd = [a if not a.startswith("--workdir=") else f"--workdir={direct}" for a in command]
    result = _run(cmd, slurm)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _rows(directory / name) == _rows(direct)  # bitwise, every logged row
    summary = json.loads((directory / name / "summary.json").read_text())
    reference = json.loads((direct / "summary.json").read_text())
    assert (summary["val"], summary["test"]) == (reference["val"], reference["test"])


def test_two_srun_tasks_train_like_one_process_with_eight_devices(slurm, tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    args = ["-m", "experiments.classify", f"--config={TINY}", "--noplots"]
    assert not (two / "summary.json").exists()
    env4 = {**slurm, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
            "PYTHON": sys.executable}
    log = tmp_path / "multihost.out"
    # the README's sbatch script (srun inside), on this one node: 2 tasks instead of 2 nodes
    ran = _run(["sbatch", "--wait", "--nodes=1", "--ntasks-per-node=2", f"--output={log}",
                str(ROOT / "scripts" / "slurm" / "train_multihost.sbatch"), str(two), TINY,
                "--noplots"], env4)
    assert ran.returncode == 0, ran.stdout + ran.stderr + log.read_text()[-3000:]
    env8 = {**slurm, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    ran = _run([sys.executable, *args, f"--workdir={one}"], env8)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    meta = json.loads((two / "run_metadata.json").read_text())
    devices = meta["runs"][-1]["devices"]  # one JAX run over both tasks' devices
    assert len(devices) == 8 and {d["process_index"] for d in devices} == {0, 1}
    rows2, rows1 = _rows(two), _rows(one)
    assert list(rows2) == list(rows1) == [(2, "train"), (3, "val"), (4, "train"), (6, "train"),
                                          (6, "val"), (6, "test")]
    for key, r2 in rows2.items():
        r1 = rows1[key]
        assert r2.keys() == r1.keys()
        for k, v in r2.items():
            if isinstance(v, float):
                np.testing.assert_allclose(v, r1[k], rtol=1e-5, err_msg=f"{key} {k}")
            else:
                assert v == r1[k], (key, k)


SEARCH = ["--noplots", "--search=optuna", "--trials=4", "--startup_trials=1",
          "--space=optimizer.learning_rate=1e-3:0.3:log", "--config.num_train_steps=240",
          "--config.eval_every_steps=40", "--config.checkpoint_every_steps=120"]


def _trials_csv(directory: Path) -> list[dict]:
    with (directory / "trials.csv").open() as f:
        return [{k: v for k, v in t.items() if k != "workdir"} for t in csv.DictReader(f)]


def test_a_search_on_slurm_is_the_local_search(slurm, tmp_path):
    """Trials as SLURM jobs, pruned ones cancelled (scancel: SIGTERM, a checkpoint): the same
    study, trial for trial, as the same search run locally (the runs are bitwise the same)."""
    here, there = tmp_path / "local", tmp_path / "slurm"
    for directory, launcher in ((here, "local"), (there, "slurm")):
        ran = _run([sys.executable, "-m", "experiments.sweep", f"--workdir={directory}",
                    f"--config={TINY}", *SEARCH, f"--launcher={launcher}"], slurm)
        assert ran.returncode == 0, ran.stdout + ran.stderr
    trials = _trials_csv(there)
    assert trials == _trials_csv(here)
    states = [t["state"] for t in trials]
    assert len(trials) == 4 and "pruned" in states and "complete" in states, trials
    jobs = json.loads((there / "slurm_jobs.json").read_text())
    assert sorted(jobs) == [f"trial={n:04d}" for n in range(4)]
    with (there / "results.csv").open() as f:
        status = {r["run"]: r["status"] for r in csv.DictReader(f)}
    for t in trials:
        name = f"trial={int(t['trial']):04d}"
        record = json.loads((there / name / "sweep_run.json").read_text())
        assert record["attempts"][-1]["slurm"]["SLURM_JOB_ID"] == jobs[name]
        assert status[name] == ("pruned" if t["state"] == "pruned" else "completed")
        assert ("pruned" in record) == (t["state"] == "pruned")
