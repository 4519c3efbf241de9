"""What one training run keeps between steps, and writes: `Run`.

`Run` owns the run's checkpoint manager, its training batches (a `Prefetch`, which hands
out each batch placed on the devices with the iterator state before it), the metrics file,
the progress display and the train metrics not yet logged; the loop in `cnnjax.train.runner.loop`
calls it at each event.

Nothing here waits for the devices between two checks: `train_step` dispatches a step and
keeps its metrics (device arrays) and data position; `check_finite` (at log, validation,
checkpoint, preemption and the end) fetches one flag and, only when a step was non-finite,
finds the first one, saves the state before it and raises.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from cnnjax.checkpoint import (
    CheckpointManager,
    CorruptCheckpointError,
    NonFiniteCheckpointError,
    refuse_to_start_over,
    to_json,
    workdir_history,
)
from cnnjax.data.prefetch import Prefetch
from cnnjax.train.metrics import NonFiniteError, merge_metrics
from cnnjax.train.runner.components import Components
from cnnjax.train.runner.dispatch import InFlight
from cnnjax.train.runner.evaluation import run_eval
from cnnjax.train.runner.init_from import initialise
from cnnjax.train.runner.reporting import (
    MetricsWriter,
    Progress,
    format_metrics,
    process_age_s,
    warn_config_changes,
)
from cnnjax.train.runner.trackers import open_writers, run_artifacts, run_params
from cnnjax.train.runner.workdir_history import PREVIOUS_RUNS, move_history_aside
from cnnjax.train.state import TrainState

__all__ = ["Run"]


def _host_pairs(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Step metric pairs (already on the host) as JSON-safe values (saved in checkpoints)."""
    return to_json({k: [np.asarray(s), np.asarray(c)] for k, (s, c) in metrics.items()})


def _from_host_pairs(saved: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (np.asarray(s), np.asarray(c)) for k, (s, c) in saved.items()}


class Run:
    """The checkpoints, batches, metrics file, progress and pending train metrics of a run."""

    def __init__(self, c: Components, workdir: Path, meta: Mapping[str, Any],
                 ckpt: CheckpointManager, batches: Prefetch, progress_stream: Any = None
                 ) -> None:
        cfg = c.config
        self.c, self.workdir, self.progress_stream = c, workdir, progress_stream
        self.meta, self.ckpt, self.batches = meta, ckpt, batches
        self.ckpt_meta = {"config": cfg.to_dict(), "run": {k: meta[k] for k in (
            "git", "versions", "seed", "command_line")}}
        self.pending: list[Any] = []  # metrics of the steps since the last train log line
        self.unchecked: list[tuple[int, Any]] = []  # (step, data state before it) since check
        self.halted: tuple[Any, ...] = ()  # the last step's non-finite flag, fed to the next
        self.in_flight = InFlight(cfg.data.prefetch_batches)
        self.first_step_done = False
        # one compiled program for the logged learning rate (op by op, the schedule's dozen
        # jnp operations would each compile once at the first log line)
        self.learning_rate = jax.jit(c.schedule)
        self.writer: MetricsWriter | None = None
        self.progress: Progress | None = None
        self.images = 0
        self.window_start = time.perf_counter()

    def resume(self) -> tuple[TrainState, int]:
        """(state, step) of the latest good checkpoint (data iterator and pending metrics
        restored too), or of a fresh start; opens the metrics file cut back to that step."""
        state = self.c.init_state()
        try:
            restored = self.ckpt.restore(state, "latest")
        except CorruptCheckpointError as e:  # every step was corrupt (now moved aside)
            restored, reason = None, str(e)
        else:
            reason = ""
        fresh = None
        if restored is None:
            fresh = self._start_over(reason)
        state = initialise(self.c, state, resumed=restored is not None)  # config.init_from
        if restored is not None:
            state = restored.state
            if restored.data is None:
                raise ValueError(
                    f"checkpoint step {restored.step} in {self.ckpt.directory} holds no data "
                    f"iterator state for process {jax.process_index()}: it was saved by a run "
                    "with fewer processes (or by a cnnjax that saved process 0's state only); "
                    "resume with the number of processes that saved it (this run has "
                    f"{jax.process_count()})"
                )
            self.batches.set_state(restored.data)
            loop = restored.loop or {}
            self.pending = [_from_host_pairs(p) for p in loop.get("pending", [])]
        start = int(jax.device_get(state.step))
        self.writer = open_writers(  # config.trackers; a resume continues their runs
            self.c.config, self.workdir, resume_step=None if restored is None else start,
            hparams=run_params(to_json(self.c.config.to_dict()), self.meta))
        self.progress = Progress(self.c.total_steps, start, stream=self.progress_stream)
        if fresh:
            self.progress.write(fresh)
        if restored is not None:
            warn_config_changes(restored.meta.get("config", {}),
                                to_json(self.c.config.to_dict()), self.progress)
            self.progress.write(
                f"resumed from checkpoint step {start} in {self.ckpt.directory}"
                + (f" (skipped corrupt: {len(restored.skipped)})" if restored.skipped else "")
            )
        self.window_start = time.perf_counter()
        return state, start

    def _start_over(self, reason: str) -> str | None:
        """Nothing to resume from: refuse if the workdir has history, unless
        `config.fresh_start` (then move that history to `previous_runs/<UTC time>/`)."""
        if jax.process_index() != 0:
            return None
        refuse_to_start_over(
            self.workdir, fresh_start=bool(self.c.config.fresh_start), reason=reason,
            how_to_start_fresh="pass --config.fresh_start=True (the old history is then "
            f"moved to {PREVIOUS_RUNS}/)")
        if not workdir_history(self.workdir):
            return None
        return f"fresh start: the earlier run's history is in {move_history_aside(self.workdir)}"

    def save(self, step: int, state: TrainState, metrics: Mapping[str, float] | None = None,
             data_state: Any = None) -> None:
        """Checkpoint `state` as step `step`, with the data iterator state (default: after
        the batches handed out) and the pending train metrics."""
        data_state = self.batches.state() if data_state is None else data_state
        loop_state = {"pending": [_host_pairs(p) for p in jax.device_get(self.pending)]}
        try:
            self.ckpt.save(step, state, data=data_state, loop=loop_state, meta=self.ckpt_meta,
                           metrics=metrics)
        except NonFiniteCheckpointError as e:
            self.ckpt.wait()
            raise NonFiniteError(
                f"training diverged: the state after step {step} holds NaN/Inf ({e}); it was "
                f"not saved. The last good checkpoint is step {self.ckpt.latest_step()} (None: "
                "none, the run starts over). Lower the learning rate or clip gradients "
                "(optimizer.grad_clip_norm) and run again: it resumes from there."
            ) from e

    def train_step(self, step: int, state: TrainState) -> TrainState:
        """Dispatch step `step` on the next batch; keep its metrics and data position.

        Returns at once (no value is fetched): the step runs while the host prepares the
        next one. A non-finite step freezes the state (see `cnnjax.train.steps`) until
        `check_finite` looks."""
        batch, data_before = next(self.batches)
        state, metrics = self.c.train_step.placed(state, batch, *self.halted)
        self.halted = (metrics["nonfinite"][0],)
        self.in_flight.add(self.halted[0])
        self.pending.append(metrics)
        self.unchecked.append((step, data_before))
        self.images += int(self.c.config.batch_size)
        self.progress.advance(step)
        if not self.first_step_done:
            self._report_first_step(step)
        return state

    def _report_first_step(self, step: int) -> None:
        """Say when this process's first step finished (it waits for it, once): the time a
        user waits for training to start (imports, data, restore, compilation)."""
        jax.block_until_ready(self.halted)
        self.first_step_done = True
        age = process_age_s()
        self.progress.write(f"step {step} done {age:.1f} s after the command started "
                            "(imports, data, compilation)" if age is not None else
                            f"step {step} done")
        self.window_start = time.perf_counter()  # images/s leave out compilation
        self.images = 0

    def check_finite(self, state: TrainState) -> None:
        """Raise `NonFiniteError` (after checkpointing the last good state) if a step since
        the last check was non-finite. Fetches one flag; the flags of every unchecked step
        only when that one is set (non-finite steps halt the ones after them)."""
        if not self.unchecked:
            return
        if float(jax.device_get(self.halted[0])) == 0.0:
            self.unchecked = []
            return
        window = len(self.unchecked)
        flags = jax.device_get([m["nonfinite"][0] for m in self.pending[-window:]])
        first = next(i for i, f in enumerate(flags) if float(f) != 0.0)
        step, data_before = self.unchecked[first]
        del self.pending[len(self.pending) - window + first:]
        self._stop_non_finite(step, state, data_before)

    def _stop_non_finite(self, step: int, state: TrainState, data_before: Any) -> None:
        """Checkpoint the last good state (step - 1, before `step`'s batch) and raise."""
        good = int(jax.device_get(state.step))
        if good != step - 1:
            raise AssertionError(f"halted state is at step {good}, expected {step - 1}")
        self.save(step - 1, state, data_state=data_before)
        self.ckpt.wait()
        raise NonFiniteError(
            f"non-finite loss or gradients at step {step} (the update from step {step - 1}); "
            f"stopped, and the last good state (step {step - 1}) is saved in "
            f"{self.ckpt.directory}. Lower the learning rate, clip gradients "
            "(optimizer.grad_clip_norm) or check the data."
        )

    def log_train(self, step: int) -> None:
        """One `train` row from the pending metrics, learning rate and images per second."""
        total = None
        for metrics in jax.device_get(self.pending):  # one transfer for the whole window
            total = merge_metrics(total, metrics)
        total = {k: v for k, v in total.items() if k != "nonfinite"}
        row = dict(self.c.task.finalize(total))
        accumulate = int(self.c.config.optimizer.accumulate_steps)
        row["learning_rate"] = float(self.learning_rate(max(step - 1, 0) // accumulate))
        elapsed = time.perf_counter() - self.window_start
        row["images_per_s"] = self.images / elapsed if elapsed > 0 else float("nan")
        self.writer.write(step, "train", row, epoch=step / self.c.steps_per_epoch)
        self.progress.report(step, row)
        self.pending, self.images, self.window_start = [], 0, time.perf_counter()

    def evaluate(self, state: TrainState, step: int, name: str, split: str, *, label: str,
                 log_it: bool = True) -> dict[str, float]:
        """Metrics on `split`, written as rows `name` (when `log_it`) and shown as `label`."""
        metrics = run_eval(self.c, state, split, progress_stream=self.progress_stream)
        if name == "val" and self.c.config.keep_best > 0 and self.c.best_metric not in metrics:
            raise ValueError(
                f"config.best_metric={self.c.best_metric!r} is not a validation metric of this "
                f"task; available: {sorted(metrics)}"
            )
        if log_it:
            self.writer.write(step, name, metrics, epoch=step / self.c.steps_per_epoch)
        self.progress.write(f"{label} step {step}: {format_metrics(metrics)}")
        return metrics

    def periodic(self, step: int, state: TrainState, *, validate: bool, checkpoint: bool
                 ) -> None:
        """Validation and checkpoint due at a step before the last (not timed as training)."""
        paused = time.perf_counter()
        metrics = None
        if validate:
            metrics = self.evaluate(state, step, "val", self.c.config.eval_split, label="val")
        if (metrics is not None and self.c.config.keep_best > 0) or checkpoint:
            self.save(step, state, metrics)
        self.window_start += time.perf_counter() - paused

    def preempted(self, step: int, state: TrainState, signum: int | None = None) -> None:
        self.save(step, state)
        self.ckpt.wait()
        name = signal.Signals(signum).name if signum else "SIGTERM"
        self.progress.write(
            f"preempted ({name}): saved a checkpoint at step {step} in {self.ckpt.directory}; "
            "run the same command again to resume"
        )

    def finish(self, state: TrainState, step: int, *, logged: bool) -> dict[str, Any]:
        """Final validation and test, and the last checkpoint. When nothing was trained in
        this process (`logged=False`: the run had already finished) they are recomputed but
        not logged again."""
        cfg, out = self.c.config, {}
        for name, split in (("val", cfg.eval_split), ("test", cfg.test_split)):
            if split:
                out[name] = self.evaluate(state, step, name, split, label=f"{name} ({split})",
                                          log_it=logged)
        if self.ckpt.latest_step() != step:
            self.save(step, state, out.get("val") if cfg.keep_best > 0 else None)
        return out

    def log_artifacts(self) -> None:
        """config.json and the plots in the workdir, to the trackers that keep files."""
        if self.writer is not None:
            self.writer.write_artifacts(run_artifacts(self.workdir))

    def close(self) -> None:
        for part in (self.progress, self.writer):
            if part is not None:
                part.close()
