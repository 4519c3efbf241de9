"""Running a sweep's runs: subprocesses, `jobs` at a time, each logged and recorded in its
workdir (`sweep.log`: the command, stdout and stderr; `sweep_run.json`: every attempt's command,
exit code, wall time and, for a failure, the end of its log), with a progress line per run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments import results

LOG_FILE = "sweep.log"
ERROR_LINES = 20  # lines of a failed run's log kept in its record and shown in the report


@dataclasses.dataclass
class Run:
    """One planned run: its workdir name, settings (grid field -> value), seed and command."""

    name: str
    workdir: Path
    settings: dict[str, Any]
    seed: int
    script: str  # classify | segment
    args: list[str]
    config: Any  # the resolved ConfigDict the run will train

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", f"experiments.{self.script}", *self.args]


def cpu_slots(jobs: int) -> list[list[int]]:
    """This process's CPUs dealt out to `jobs` slots (round robin; shared when jobs > CPUs)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if jobs == 1 or not cpus:
        return [cpus] * jobs
    if jobs >= len(cpus):
        return [[cpus[i % len(cpus)]] for i in range(jobs)]
    return [cpus[i::jobs] for i in range(jobs)]


def _record(run: Run, attempt: dict[str, Any]) -> None:
    path = run.workdir / results.RUN_RECORD
    record = results.read_json(path) or {"attempts": []}
    record["attempts"].append(attempt)
    path.write_text(json.dumps(record, indent=2) + "\n")


@dataclasses.dataclass
class _Job:
    run: Run
    process: subprocess.Popen
    slot: int
    start: float
    log_offset: int


def _start(run: Run, slot: int, cpus: list[int]) -> _Job:
    run.workdir.mkdir(parents=True, exist_ok=True)
    log = run.workdir / LOG_FILE
    offset = log.stat().st_size if log.exists() else 0
    env = dict(os.environ)
    if cpus:
        env["OMP_NUM_THREADS"] = str(len(cpus))
    with log.open("a") as f:
        f.write(f"$ {shlex.join(run.command)}\n")
        f.flush()
        # Own session: Ctrl-C reaches the sweep only, which then stops the runs with SIGTERM
        # (the trainer's preemption: a checkpoint at the current step).
        process = subprocess.Popen(run.command, stdout=f, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    if cpus:
        # Set right after the spawn (no preexec_fn: this process runs JAX threads): the
        # child is still starting Python, long before XLA sizes its thread pool.
        os.sched_setaffinity(process.pid, cpus)
    return _Job(run, process, slot, time.monotonic(), offset)


def _finish(job: _Job) -> dict[str, Any]:
    wall = time.monotonic() - job.start
    rc = job.process.returncode
    error = ""
    if rc != 0:
        with (job.run.workdir / LOG_FILE).open("rb") as f:
            f.seek(job.log_offset)
            lines = f.read().decode(errors="replace").splitlines()
        error = "\n".join(lines[-ERROR_LINES:])
    attempt = {"command": job.run.command, "returncode": rc, "wall_s": wall,
               "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "error": error}
    _record(job.run, attempt)
    return attempt


def _progress(done: int, total: int, run: Run, attempt: dict[str, Any]) -> str:
    if attempt["returncode"] != 0:
        last = attempt["error"].splitlines()[-1:] or [""]
        return (f"[{done}/{total}] FAILED {run.name} (exit {attempt['returncode']}, "
                f"{attempt['wall_s']:.1f} s): {last[0]}")
    summary = results.read_json(run.workdir / "summary.json") or {}
    if summary.get("status") != "completed":  # exit 0 after a SIGTERM: checkpointed, stopped
        return (f"[{done}/{total}] stopped {run.name} ({attempt['wall_s']:.1f} s): preempted; "
                "run the sweep again to resume it")
    shown = " ".join(f"{split}_{k}={v:.4g}" for split in ("val", "test")
                     for k, v in (summary.get(split) or {}).items() if "loss" not in k)
    return f"[{done}/{total}] done {run.name} ({attempt['wall_s']:.1f} s) {shown}".rstrip()


def execute(runs: Sequence[Run], jobs: int, *, pin: bool = False, out: Any = None,
            poll_s: float = 0.2) -> list[tuple[Run, dict[str, Any]]]:
    """Run `runs` as subprocesses, `jobs` at a time; returns (run, attempt) for the failures.

    `pin`: each run gets its own share of the CPUs (`cpu_slots`). XLA sizes its CPU thread
    pool from the CPUs it may use, and another thread count changes float reduction order:
    a pinned run equals the direct command run under the same CPUs (`taskset -c`), not the
    plain one. Unpinned (default), concurrent runs share all CPUs and each equals the plain
    direct command bitwise.

    Ctrl-C sends SIGTERM to the running ones (the trainer checkpoints and stops), waits for
    them and re-raises KeyboardInterrupt.
    """
    slots = cpu_slots(jobs) if pin and jobs > 1 else [[] for _ in range(jobs)]
    queue = list(runs)
    running: list[_Job] = []
    failures: list[tuple[Run, dict[str, Any]]] = []
    done = 0
    try:
        while queue or running:
            while queue and len(running) < jobs:
                free = min(set(range(jobs)) - {j.slot for j in running})
                running.append(_start(queue.pop(0), free, slots[free]))
            time.sleep(poll_s)
            for job in [j for j in running if j.process.poll() is not None]:
                running.remove(job)
                attempt = _finish(job)
                done += 1
                if attempt["returncode"] != 0:
                    failures.append((job.run, attempt))
                print(_progress(done, len(runs), job.run, attempt), file=out, flush=True)
    except KeyboardInterrupt:
        for job in running:
            job.process.terminate()
        for job in running:
            job.process.wait()
        raise
    return failures


