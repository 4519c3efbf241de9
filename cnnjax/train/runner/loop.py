"""The training run: `train_and_evaluate(config, workdir)`, one `for step` loop.

`train_and_evaluate` resolves and validates the config once, builds the run's parts
(`cnnjax.train.runner.components.build`) and calls `train`, which resumes from the latest good
checkpoint in `workdir` (train state + data iterator state + pending metrics), trains with
periodic logging, validation and checkpointing, and finishes with a final validation, test
and checkpoint. Running the same command again on the same workdir resumes; a run that is
killed (SIGKILL included) and resumed ends bitwise identical to one that was not (same devices).

Order of events at a step s (what makes resume exact): train step -> train metrics logged
(every `log_every_steps`) -> validation logged (every `eval_every_steps`) -> checkpoint s
(every `checkpoint_every_steps`, and at every validation when `keep_best > 0`). Everything
logged for steps <= s is written before checkpoint s, so on resume `metrics.jsonl` is cut back
to the restored step and continues as if uninterrupted. Train metrics not yet logged are
saved in the checkpoint (`loop` item) so the next log line is the same too.

Preemption: SIGTERM or SIGINT (Ctrl-C) sets a flag; after the current step the loop saves a
checkpoint at that step, waits for it to be written and returns `{"status": "preempted",
"signal": signum, ...}` (the experiment scripts then exit with `128 + signum`: 143, 130).
With several processes the checkpoint is collective, so they must stop at the same step
although a signal reaches each at its own moment: they agree at the next log, validation or
checkpoint step (one all-gather of their flags there), and all stop after it when any
process was signalled.
No host-device sync between those events: each step is dispatched while the one before it
runs, its batch prepared and placed on the devices ahead by a background thread
(`cnnjax.data.prefetch`), and its metrics kept on the devices until the next train log line.
NaN/Inf guard, decided on the devices: a step with a non-finite loss or gradient keeps the
last good state, and so does every step after it (each step gets the previous one's
`nonfinite` flag as `halted`); at the next log, validation, checkpoint or preemption the loop
reads the last flag and, if set, checkpoints the frozen last good state (data iterator
positioned before the first offending batch) and raises `NonFiniteError` naming that step.
A state that is itself non-finite (an update that overflowed) is never saved: the run stops
with `NonFiniteError` and the last good checkpoint stays the latest.
Safety: one run per workdir (`cnnjax.checkpoint.acquire`, process 0); a workdir with history
but no usable checkpoint is refused unless `config.fresh_start` (then the history is moved to
`previous_runs/<time>/`); `config.json` is written only once the restore (or fresh start)
succeeded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from cnnjax.checkpoint import (
    acquire,
    ensure_writable,
    run_metadata,
    to_json,
    write_run_metadata,
)
from cnnjax.data.prefetch import Prefetch
from cnnjax.train.determinism import configure_determinism
from cnnjax.train.runner.components import Components, build, make_batches
from cnnjax.train.runner.config import prepare_config
from cnnjax.train.runner.evaluation import check_best_metric, checkpoints
from cnnjax.train.runner.run import Run
from cnnjax.train.state import TrainState
from cnnjax.workdir_layout import SUMMARY_FILE

__all__ = ["SUMMARY_FILE", "itstime", "train", "train_and_evaluate"]

log = logging.getLogger("cnnjax.train")



def itstime(step: int, every: int, total: int) -> bool:
    """Is `step` due for something done every `every` steps (0: never) and at the last one?"""
    return (every > 0 and step % every == 0) or step == total


@dataclasses.dataclass(frozen=True)
class Intervals:
    """How often a run logs, validates and checkpoints, in steps (0: only at the end)."""

    log: int
    eval: int
    checkpoint: int

    @classmethod
    def of(cls, c: Components) -> Intervals:
        """None in the config means once per epoch (checkpoints: with each validation)."""
        cfg = c.config
        every_eval = c.steps_per_epoch if cfg.eval_every_steps is None else cfg.eval_every_steps
        every_ckpt = cfg.checkpoint_every_steps
        return cls(int(cfg.log_every_steps), every_eval,
                   every_eval if every_ckpt is None else every_ckpt)


class _Preemption:
    """SIGTERM or SIGINT -> a flag the loop polls after every step (main thread only)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def stop_after(self, step_is_boundary: bool) -> bool:
        """Whether the run stops after this step. One process: as soon as it was signalled.
        Several: only at a boundary (log, validation or checkpoint step, the same steps in
        every process), where the processes gather their flags and all stop when any was
        signalled (taking its signal), so that they write one checkpoint together."""
        if jax.process_count() == 1:
            return self.requested
        if not step_is_boundary:
            return False
        signums = multihost_utils.process_allgather(np.int32(self.signum or 0))
        gathered = int(np.max(signums))  # not self.signum: a signal during the gather waits
        if gathered and self.signum is None:
            self.signum = gathered
        return gathered > 0

    def _handler(self, signum: int, frame: Any) -> None:
        del frame
        self.signum = signum
        log.warning("received signal %d: saving a checkpoint after the current step", signum)

    def __enter__(self) -> _Preemption:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)


def train_and_evaluate(
    config: ml_collections.ConfigDict | Mapping[str, Any],
    workdir: str | Path,
    *,
    progress_stream: Any = None,
) -> dict[str, Any]:
    """Train `config` in `workdir` (resuming if it holds checkpoints); return a summary dict.

    Summary: `status` ("completed" | "preempted"), `step`, `total_steps`, `val` / `test`
    metrics, `best_step`, `best_metric`, `workdir`. Raises `ValueError`/`TypeError` for a bad
    config and `WorkdirNotWritableError` for an unwritable workdir, before any training;
    `NonFiniteError` when a step meets NaN/Inf (after checkpointing the last good state).
    """
    config = prepare_config(config)
    ensure_writable(workdir)
    return train(build(config), workdir, progress_stream=progress_stream)


def train(c: Components, workdir: str | Path, *, progress_stream: Any = None,
          on_completed: Callable[[TrainState], Any] | None = None) -> dict[str, Any]:
    """`train_and_evaluate` for already built components (entry points that built them).

    `on_completed(state)`: called with the final state of a completed run (after the final
    evaluation, while its last checkpoint is written in the background), e.g. to draw plots
    without restoring the checkpoint. Raises `WorkdirLockedError` when another run holds
    the workdir, `NoUsableCheckpointError` when it holds history but no usable checkpoint
    (and not `config.fresh_start`)."""
    determinism = configure_determinism()
    workdir = ensure_writable(workdir)
    meta = run_metadata(c.config, extra={"determinism": determinism, "workdir": str(workdir),
                                         "total_steps": c.total_steps})
    with acquire(workdir), _Preemption() as preemption:
        batches = Prefetch(make_batches(c.config, c.config.train_split, train=True,
                                        source=c.train_source),
                           place=c.train_step.place, size=c.config.data.prefetch_batches)
        try:
            with checkpoints(c, workdir, keep=c.config.keep_checkpoints,
                             keep_best=c.config.keep_best,
                             async_save=c.config.async_checkpointing) as ckpt:
                run = Run(c, workdir, meta, ckpt, batches, progress_stream)
                try:
                    summary = _loop(run, preemption, on_completed)
                finally:
                    run.close()
        finally:
            batches.close()
    if summary["status"] == "completed" and jax.process_index() == 0:
        (Path(workdir) / SUMMARY_FILE).write_text(json.dumps(to_json(summary), indent=2) + "\n")
    return summary


def _loop(run: Run, preemption: _Preemption,
          on_completed: Callable[[TrainState], Any] | None) -> dict[str, Any]:
    """Resume, check the best metric, then the `for step` loop and the final evaluation."""
    c, every, total = run.c, Intervals.of(run.c), run.c.total_steps
    state, start = run.resume()
    check_best_metric(c, state)
    if jax.process_index() == 0:
        write_run_metadata(run.workdir, run.meta)  # only now: the restore succeeded
    step = start
    status = "completed"
    for step in range(start + 1, total + 1):
        state = run.train_step(step, state)  # dispatched; nothing is fetched
        log = itstime(step, every.log, total)
        validate = bool(c.config.eval_split) and itstime(step, every.eval, total)
        checkpoint = itstime(step, every.checkpoint, total)
        boundary = log or validate or checkpoint
        if boundary:
            run.check_finite(state)  # the one sync point: raises on a non-finite step
        if log:
            run.log_train(step)
        if step == total:
            break  # the final evaluation and checkpoint follow the loop
        run.periodic(step, state, validate=validate, checkpoint=checkpoint)
        if preemption.stop_after(boundary):
            run.check_finite(state)  # (nothing left to check at a boundary)
            run.preempted(step, state, preemption.signum)
            status = "preempted"
            break
    summary: dict[str, Any] = {"workdir": str(run.workdir), "total_steps": total}
    if status == "completed":
        summary.update(run.finish(state, step, logged=step > start))
        if on_completed is not None:
            on_completed(state)  # while the last checkpoint is written
        run.log_artifacts()  # config.json and the plots, to trackers that keep files
    else:
        summary["signal"] = preemption.signum
    run.ckpt.wait()
    summary.update(status=status, step=step, best_metric=c.best_metric,
                   best_step=run.ckpt.best_step())
    return summary
