"""How a search starts, follows and stops its trials' runs: the same launchers as a grid.

Both launchers give `start(run) -> handle`, `alive(handles) -> [bool]`, `stop(handle)` (a
checkpoint at the current step: SIGTERM), `finish(handle, stopped) -> attempt` (the run's
record in its sweep_run.json) and `interrupt(handles)` (the sweep itself got a signal).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.sweep import local, results, slurm
from experiments.sweep.local import Run


class LocalTrials:
    """Trials as local subprocesses (their own sessions, logged like grid runs)."""

    poll_s = 0.5  # between looks at the runs
    detached = False  # the runs end with the sweep (stopped at a checkpoint)

    def start(self, run: Run) -> Any:
        return local.start(run, 0, [])

    def alive(self, handles: Sequence[Any]) -> list[bool]:
        return [h.process.poll() is None for h in handles]

    def stop(self, handle: Any) -> None:
        handle.process.send_signal(signal.SIGTERM)

    def finish(self, handle: Any, *, stopped: bool) -> dict[str, Any]:
        """Record the attempt; a run that ended 0 before the stop reached it completed."""
        by = signal.SIGTERM if stopped and handle.process.returncode != 0 else None
        return local.finish(handle, stopped_by=by)

    def interrupt(self, handles: Sequence[Any]) -> None:
        """Stop the running trials at a checkpoint and wait for them (the study keeps them
        RUNNING: the same command resumes them)."""
        for h in handles:
            self.stop(h)
        while any(h.process.poll() is None for h in handles):
            time.sleep(0.1)
        for h in handles:
            local.finish(h, stopped_by=signal.SIGTERM)


class SlurmTrials:
    """Trials as SLURM jobs (one each, submitit), followed with squeue."""

    poll_s = 5.0  # squeue is asked once per look
    detached = True  # the jobs go on without the sweep

    def __init__(self, directory: Path, fv: Any) -> None:
        self.directory = directory
        self.options = slurm.options_from(fv)

    def start(self, run: Run) -> tuple[Run, str]:
        """Submit `run`, or adopt its job when an earlier sweep's is still queued/running."""
        if slurm.still_queued(self.directory, [run.name]):
            known = results.read_json(self.directory / slurm.JOBS_FILE) or {}
            return run, str(known[run.name])
        return run, slurm.submit(self.directory, [run], self.options, array=False)[run.name]

    def alive(self, handles: Sequence[tuple[Run, str]]) -> list[bool]:
        active = slurm.active_jobs([job for _, job in handles])
        return [job in active for _, job in handles]

    def stop(self, handle: tuple[Run, str]) -> None:
        subprocess.run(["scancel", handle[1]], check=False, capture_output=True, timeout=60)

    def finish(self, handle: tuple[Run, str], *, stopped: bool) -> dict[str, Any]:
        """The attempt the task recorded (none: it died before it could, e.g. cancelled
        while pending)."""
        run, job = handle
        record = results.read_json(run.workdir / results.RUN_RECORD)
        attempts = record.get("attempts") if isinstance(record, dict) else None
        if attempts and isinstance(attempts[-1], dict):
            return attempts[-1]
        reason = (f"SLURM job {job} ended without running it (see "
                  f"{self.directory / slurm.LOG_DIR})")
        return {"outcome": "stopped" if stopped else "failed", "returncode": None,
                "reason": reason}

    def interrupt(self, handles: Sequence[tuple[Run, str]]) -> None:
        """Nothing: the jobs go on; the same command adopts them again."""
