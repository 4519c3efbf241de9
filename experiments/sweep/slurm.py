"""Runs on SLURM through submitit: one job-array task per run, each the run's direct command.

`submit(runs, options)` sends one array (`sbatch --array`, `--requeue`) whose task i runs
`RunTask(run i)` in the job: it starts the run's own command line (`python -m
experiments.classify --workdir=... --config=...`: the same process as a direct or a local sweep
run, so the same results), appends its output to `<workdir>/sweep.log` and records the attempt
(command, exit code, outcome, wall time, SLURM job id) in `<workdir>/sweep_run.json`, exactly as
the local launcher does. Preemption: SLURM's SIGTERM (`scontrol requeue`, a preempting job) reaches
the trainer, which checkpoints at its current step and exits 143; the task then exits 143 too
(no result is written, so submitit does not take the task for finished) and the requeued task
runs the same command, which resumes from that checkpoint. Near the time limit submitit's
SIGUSR2 (`--signal=USR2@signal_delay_s`) makes the task stop the run the same way
(`RunTask.checkpoint`) and requeue itself, at most `requeues` times.

The sweep process never needs SLURM accounting (sacct): it follows the tasks with `squeue`,
and a run's state is its workdir's (summary.json, sweep_run.json).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.sweep import results
from experiments.sweep.extras import require
from experiments.sweep.local import Run, finish, start

JOBS_FILE = "slurm_jobs.json"  # in the sweep dir: run name -> its latest SLURM job id
LOG_DIR = "slurm"  # in the sweep dir: submitit's pickles and the tasks' stdout/stderr
# squeue states of a task that is still queued or running (PENDING after a requeue too)
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
          "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "SUSPENDED", "STOPPED"}


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """What each task asks SLURM for (the --slurm_* flags)."""

    partition: str | None = None
    time_min: int = 60
    gpus: int = 0
    cpus: int = 1
    mem: str | None = None
    parallel: int = 256  # array tasks running at a time
    requeues: int = 3  # time-limit requeues (submitit's max_num_timeout)
    signal_delay_s: int = 90


class RunTask:
    """What one array task executes (pickled by submitit): the run's command, recorded."""

    def __init__(self, run: Run, cwd: str) -> None:
        self.run = dataclasses.replace(run, config=None)  # the command needs no ConfigDict
        self.cwd = cwd
        self._job: Any = None

    def __call__(self) -> dict[str, Any]:
        os.chdir(self.cwd)
        # The run ignores SIGUSR2 (submitit's time-limit signal, sent to every process of the
        # step; its default action would kill the trainer): this task stops it with SIGTERM.
        previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        try:
            self._job = start(self.run, 0, [])
        finally:
            signal.signal(signal.SIGUSR2, previous)
        signal.signal(signal.SIGTERM, self._forward)  # submitit's own handler ignores it
        while self._job.process.poll() is None:
            time.sleep(0.5)
        attempt = finish(self._job, extra=_slurm_ids())
        if attempt["outcome"] == "stopped":  # preempted: exit without a result, resume later
            code = attempt["returncode"]
            sys.exit(code if code > 0 else 128 - code)
        if attempt["outcome"] == "failed":
            raise RuntimeError(f"{self.run.name}: exit {attempt['returncode']}: "
                               f"{attempt['reason']}")
        return attempt

    def _forward(self, signum: int, frame: Any) -> None:
        if self._job is not None and self._job.process.poll() is None:
            self._job.process.send_signal(signal.SIGTERM)

    def checkpoint(self) -> Any:
        """submitit's time-limit hook: stop the run at a checkpoint, then requeue this task."""
        import submitit

        if self._job is not None and self._job.process.poll() is None:
            self._job.process.send_signal(signal.SIGTERM)
            while self._job.process.poll() is None:
                time.sleep(0.5)
            finish(self._job, stopped_by=signal.SIGUSR2, extra=_slurm_ids())
        self._job = None
        return submitit.helpers.DelayedSubmission(RunTask(self.run, self.cwd))


def _slurm_ids() -> dict[str, Any]:
    keys = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT",
            "SLURMD_NODENAME")
    return {"slurm": {k: os.environ[k] for k in keys if k in os.environ}}


def executor(folder: Path, options: SlurmOptions) -> Any:
    """A submitit SlurmExecutor with `options` (sbatch --requeue: preempted tasks come back)."""
    submitit = require("submitit")
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=options.requeues)
    params: dict[str, Any] = {
        "time": options.time_min, "cpus_per_task": options.cpus, "job_name": "cnnjax-sweep",
        "array_parallelism": options.parallel, "signal_delay_s": options.signal_delay_s,
        "additional_parameters": {"requeue": True},
    }
    if options.gpus:
        params["gpus_per_node"] = options.gpus
    if options.partition:
        params["partition"] = options.partition
    if options.mem:
        params["mem"] = options.mem
    ex.update_parameters(**params)
    return ex


def submit(directory: Path, runs: Sequence[Run], options: SlurmOptions, *,
           array: bool = True) -> dict[str, str]:
    """Submit `runs` as one job array (one task each; `array=False`: one plain job each);
    returns run name -> job id, also merged into `directory/slurm_jobs.json`."""
    if not runs:
        return {}
    for run in runs:
        run.workdir.mkdir(parents=True, exist_ok=True)
    ex = executor(directory / LOG_DIR, options)
    tasks = [RunTask(r, os.getcwd()) for r in runs]
    jobs = ex.submit_array(tasks) if array else [ex.submit(t) for t in tasks]
    ids = {r.name: str(j.job_id) for r, j in zip(runs, jobs, strict=True)}
    record_jobs(directory, ids)
    return ids


def record_jobs(directory: Path, ids: dict[str, str]) -> None:
    path = directory / JOBS_FILE
    known = results.read_json(path)
    known = known if isinstance(known, dict) else {}
    path.write_text(json.dumps({**known, **ids}, indent=2) + "\n")


def active_jobs(ids: Sequence[str]) -> set[str]:
    """The job ids of `ids` (`123` or array tasks `123_4`) that squeue still lists as queued or
    running. A squeue that cannot answer (no controller) raises OSError."""
    if not ids:
        return set()
    bases = sorted({i.split("_", 1)[0] for i in ids})
    try:
        out = subprocess.run(["squeue", "--noheader", "--array", "--format=%i %T",
                              f"--jobs={','.join(bases)}"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise OSError(f"squeue failed: {e}") from e
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:  # every one of them ended long ago
            return set()
        raise OSError(f"squeue failed (exit {out.returncode}): {out.stderr.strip()}")
    listed = dict(line.split()[:2] for line in out.stdout.splitlines() if line.strip())
    return {i for i in ids if listed.get(i) in ACTIVE}


def still_queued(directory: Path, names: Sequence[str]) -> set[str]:
    """Of the runs `names`, those an earlier submission of this sweep has still in the queue."""
    known = results.read_json(directory / JOBS_FILE)
    if not isinstance(known, dict):
        return set()
    ids = {n: str(known[n]) for n in names if n in known}
    active = active_jobs(list(ids.values()))
    return {n for n, i in ids.items() if i in active}


def wait(ids: dict[str, str], workdirs: dict[str, Path], *, poll_s: float = 5.0,
         out: Any = None) -> None:
    """Follow the tasks `ids` (run name -> job id) until none is queued or running, printing
    each run's outcome (from its workdir) as its task leaves the queue."""
    pending = dict(ids)
    done = 0
    while pending:
        active = active_jobs(list(pending.values()))
        for name in [n for n, i in pending.items() if i not in active]:
            done += 1
            del pending[name]
            run = results.read_run(workdirs[name]) if (workdirs[name] / "config.json").exists() \
                else None
            status = run.status if run else "not started"
            print(f"[{done}/{len(ids)}] {status} {name} (SLURM job {ids[name]})", file=out,
                  flush=True)
        if pending:
            time.sleep(poll_s)


# --------------------------------------------------------------------------- flags


def define_flags(fv: Any) -> None:
    """The --launcher and --slurm_* flags of `experiments.sweep`."""
    from absl import flags

    flags.DEFINE_enum("launcher", "local", ["local", "slurm"], "where the runs go: local "
                      "subprocesses (--jobs at a time) or one SLURM job-array task each "
                      "(submitit; the sweep dir must be on a filesystem the nodes share)",
                      flag_values=fv)
    flags.DEFINE_string("slurm_partition", None, "SLURM partition (default: the cluster's)",
                        flag_values=fv)
    flags.DEFINE_integer("slurm_time", 60, "time limit per task, minutes (a run that reaches "
                         "it checkpoints and is requeued)", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("slurm_gpus", 0, "GPUs per task", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("slurm_cpus", 1, "CPUs per task", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("slurm_mem", None, "memory per task, e.g. 16G (default: the cluster's)",
                        flag_values=fv)
    flags.DEFINE_integer("slurm_parallel", 256, "array tasks running at a time (%N)",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("slurm_requeues", 3, "requeues at the time limit, per task",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_bool("slurm_wait", True, "wait for the tasks, then write the tables (without: "
                      "submit, exit, and collect later with --report)", flag_values=fv)


def options_from(fv: Any) -> SlurmOptions:
    """The --slurm_* flags as SlurmOptions."""
    return SlurmOptions(partition=fv.slurm_partition, time_min=fv.slurm_time,
                        gpus=fv.slurm_gpus, cpus=fv.slurm_cpus, mem=fv.slurm_mem,
                        parallel=fv.slurm_parallel, requeues=fv.slurm_requeues)
