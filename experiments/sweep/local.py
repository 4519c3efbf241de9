"""Running a sweep's runs: subprocesses, `jobs` at a time, each logged and recorded in its
workdir (`sweep.log`: the command, stdout and stderr; `sweep_run.json`: every attempt's command,
exit code, outcome, wall time and, for a failure, its error line and the end of its log), with a
progress line per run.

SIGTERM, SIGINT and SIGHUP to the sweep are forwarded (as SIGTERM: the trainer's preemption, a
checkpoint at the current step) to every running run; the sweep waits for them and raises
`Stopped` (exit 128 + signal). A run whose workdir another process holds (an earlier sweep's
run still going, another sweep) is not started, and is never recorded as failed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnjax.checkpoint.lock import describe_holder, holder_of
from experiments.sweep import results

LOG_FILE = "sweep.log"
ERROR_LINES = 20  # lines of a failed run's log kept in its record and shown in the report
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Exit codes of a run stopped by a signal (the trainer's 128 + signal, or killed by it).
_STOPPED_CODES = {c for s in FORWARDED for c in (128 + s, -s)}


class Stopped(Exception):
    """The sweep got `signum`; its running runs were stopped (checkpointed) and waited for."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


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


def start(run: Run, slot: int, cpus: list[int]) -> _Job:
    """Start `run`'s command in its own session, stdout and stderr appended to its sweep.log
    (pinned to `cpus` when given); `slot` is the caller's bookkeeping."""
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


def _error_line(lines: list[str], script: str) -> str:
    """The run's own one-line error (`experiments.<script>: error: ...`) if it printed one,
    else its last line: a log shared with another writer may end with that writer's lines."""
    prefix = f"experiments.{script}:"
    own = [line for line in lines if line.startswith(prefix)]
    return (own or [line for line in lines if line.strip()] or [""])[-1]


def finish(job: _Job, *, stopped_by: int | None = None,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record the ended `job`'s attempt (with `extra` fields) in its sweep_run.json; returns it.
    Outcome: completed, stopped (a signal: `stopped_by`, or 128 + signal) or failed."""
    wall = time.monotonic() - job.start
    rc = job.process.returncode
    error = reason = ""
    if stopped_by is not None or rc in _STOPPED_CODES:
        outcome = "stopped"
    elif rc == 0:
        summary = results.read_json(job.run.workdir / "summary.json") or {}
        outcome = "completed" if summary.get("status") == "completed" else "stopped"
    else:
        outcome = "failed"
        with (job.run.workdir / LOG_FILE).open("rb") as f:
            f.seek(job.log_offset)
            lines = f.read().decode(errors="replace").splitlines()
        error = "\n".join(lines[-ERROR_LINES:])
        reason = _error_line(lines, job.run.script)
    attempt = {"command": job.run.command, "returncode": rc, "outcome": outcome, "wall_s": wall,
               "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "error": error, "reason": reason}
    if stopped_by is not None:
        attempt["stopped_by"] = signal.Signals(stopped_by).name
    attempt.update(extra or {})
    _record(job.run, attempt)
    return attempt


def _progress(done: int, total: int, run: Run, attempt: dict[str, Any]) -> str:
    if attempt["outcome"] == "failed":
        return (f"[{done}/{total}] FAILED {run.name} (exit {attempt['returncode']}, "
                f"{attempt['wall_s']:.1f} s): {attempt['reason']}")
    if attempt["outcome"] == "stopped":
        return (f"[{done}/{total}] stopped {run.name} ({attempt['wall_s']:.1f} s): preempted; "
                "run the sweep again to resume it")
    summary = results.read_json(run.workdir / "summary.json") or {}
    shown = " ".join(f"{split}_{k}={v:.4g}" for split in ("val", "test")
                     for k, v in (summary.get(split) or {}).items()
                     if "loss" not in k and isinstance(v, int | float))
    return f"[{done}/{total}] done {run.name} ({attempt['wall_s']:.1f} s) {shown}".rstrip()


def _busy(done: int, total: int, run: Run, holder: dict[str, Any]) -> str:
    return (f"[{done}/{total}] BUSY {run.name}: not run, its workdir is in use by another "
            f"process ({describe_holder(holder)}); run the sweep again once it has ended")


class _Signals:
    """While active, SIGTERM/SIGINT/SIGHUP only set `got` (the first one), which the loop of
    `execute` checks: nothing is raised between a spawn and its bookkeeping."""

    def __init__(self) -> None:
        self.got: int | None = None
        self.again = False  # a second signal while the runs stop: kill them
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.got is None:
            self.got = signum
        else:
            self.again = True

    def __enter__(self) -> _Signals:
        for s in FORWARDED:
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: only Ctrl-C (KeyboardInterrupt) works
                break
        return self

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def execute(runs: Sequence[Run], jobs: int, *, pin: bool = False, out: Any = None,
            poll_s: float = 0.2) -> list[tuple[Run, dict[str, Any]]]:
    """Run `runs` as subprocesses, `jobs` at a time; returns (run, attempt) for the failures
    and (run, {"outcome": "busy", ...}) for the runs not started because another process
    holds their workdir.

    `pin`: each run gets its own share of the CPUs (`cpu_slots`). XLA sizes its CPU thread
    pool from the CPUs it may use, and another thread count changes float reduction order:
    a pinned run equals the direct command run under the same CPUs (`taskset -c`), not the
    plain one. Unpinned (default), concurrent runs share all CPUs and each equals the plain
    direct command bitwise.

    SIGTERM, SIGINT (Ctrl-C) or SIGHUP: SIGTERM to the running ones (the trainer checkpoints
    and stops), wait for them, record them as stopped and raise `Stopped(signum)`; a second
    signal meanwhile kills the runs still stopping (SIGKILL: they resume from their last
    checkpoint).
    """
    slots = cpu_slots(jobs) if pin and jobs > 1 else [[] for _ in range(jobs)]
    queue = list(runs)
    running: list[_Job] = []
    failures: list[tuple[Run, dict[str, Any]]] = []
    done = 0
    with _Signals() as signals:
        try:
            while (queue or running) and signals.got is None:
                while queue and len(running) < jobs and signals.got is None:
                    run = queue.pop(0)
                    holder = holder_of(run.workdir)
                    if holder is not None:
                        done += 1
                        failures.append((run, {"outcome": "busy", "holder": holder,
                                               "returncode": None, "error": ""}))
                        print(_busy(done, len(runs), run, holder), file=out, flush=True)
                        continue
                    free = min(set(range(jobs)) - {j.slot for j in running})
                    try:
                        running.append(start(run, free, slots[free]))
                    except OSError as e:  # its workdir or log cannot be written
                        done += 1
                        reason = f"cannot start it in {str(run.workdir)!r}: {e.strerror or e}"
                        failures.append((run, {"outcome": "failed", "returncode": None,
                                               "reason": reason, "error": reason}))
                        print(f"[{done}/{len(runs)}] FAILED {run.name}: {reason}", file=out,
                              flush=True)
                time.sleep(poll_s)
                for job in [j for j in running if j.process.poll() is not None]:
                    running.remove(job)
                    done += 1
                    holder = holder_of(job.run.workdir) if job.process.returncode else None
                    if holder is not None:  # it lost the lock to another process: not failed
                        failures.append((job.run, {"outcome": "busy", "holder": holder,
                                                   "returncode": None, "error": ""}))
                        print(_busy(done, len(runs), job.run, holder), file=out, flush=True)
                        continue
                    attempt = finish(job)
                    if attempt["outcome"] == "failed":
                        failures.append((job.run, attempt))
                    print(_progress(done, len(runs), job.run, attempt), file=out, flush=True)
        except KeyboardInterrupt:
            signals.got = signal.SIGINT
        if signals.got is not None:
            for job in running:
                job.process.send_signal(signal.SIGTERM)
            killed = False
            while any(job.process.poll() is None for job in running):
                if signals.again and not killed:  # a second Ctrl-C/SIGTERM: do not wait
                    print("experiments.sweep: second signal: killing the runs still stopping "
                          "(they resume from their last checkpoint)", file=sys.stderr,
                          flush=True)
                    for job in running:
                        if job.process.poll() is None:
                            job.process.kill()
                    killed = True
                time.sleep(min(poll_s, 0.1))
            for job in running:
                finish(job, stopped_by=signals.got)
            raise Stopped(signals.got)
    return failures
