"""A thin layer over Orbax's `CheckpointManager`: one checkpoint per step, exact resume.

Each step directory `<directory>/<step>/` holds four items:

- `state`: the train state pytree (Orbax `StandardSave`, OCDBT with CRC-32C checksums);
- `data`: the data iterator state (JSON; `bytes` are stored base64-encoded), one file PER
  PROCESS: every process reads its own rows of each batch, so each saves and restores its own
  iterator state (`data/metadata` for process 0, `data/metadata.process_<i>` for the others);
- `loop`: the trainer's own bookkeeping (JSON: pending metrics, epoch, ...);
- `meta`: config and run metadata plus a fingerprint of every array of `state` (JSON);

plus Orbax's `metrics` (the evaluation metrics that rank checkpoints for best-K retention).
The item handlers live in `items.py`, the corruption checks in `integrity.py`, what is kept in
`retention.py`. A state holding NaN/Inf is never saved.

Safety (Orbax 0.12.x, local file systems): a step is written into
`<step>.orbax-checkpoint-tmp-*` and renamed only when complete, so a process that dies mid-write
never replaces the previous good checkpoint (leftover tmp directories are ignored and cleaned up).
Restoring checks the structure against the target first (a mismatch names the parameters),
then the bytes (Orbax's CRC checks and our fingerprint); a corrupt step (unreadable bytes,
metadata or files) is reported, moved to `<directory>/../corrupt_checkpoints/`, and the previous
step is restored instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import jax
import numpy as np
import orbax.checkpoint as ocp

from cnnjax.checkpoint.integrity import (
    CorruptCheckpointError,
    NonFiniteCheckpointError,
    check_restored,
    check_structure,
    quarantine,
    short,
)
from cnnjax.checkpoint.items import (
    JSON_ITEMS,
    data_filename,
    from_json,
    handler_registry,
    to_json,
)
from cnnjax.checkpoint.orbax_reports import os_error
from cnnjax.checkpoint.retention import manager_options, rank_by_metric
from cnnjax.checkpoint.structure import abstract_like, nonfinite_paths, tree_fingerprint
from cnnjax.checkpoint.workdir import ensure_writable

__all__ = [
    "CheckpointManager",
    "CorruptCheckpointError",
    "NonFiniteCheckpointError",
    "Restored",
    "data_filename",
    "from_json",
    "to_json",
]

log = logging.getLogger("cnnjax.checkpoint")

def _this_process() -> int:
    return jax.process_index()


@dataclasses.dataclass(frozen=True)
class Restored:
    """What `CheckpointManager.restore` gives back.

    `state` is placed on the shardings of the target it was restored into; `data` is THIS
    process's data iterator state (None when the checkpoint was saved by fewer processes);
    `loop` and `meta` are the JSON items as saved; `metrics` the evaluation metrics (or None).
    """

    step: int
    state: Any
    data: Any
    loop: Any
    meta: Any
    metrics: Mapping[str, Any] | None
    skipped: tuple[str, ...] = ()  # one message per corrupt step that was passed over


class CheckpointManager:
    """Save and restore train state + data state + metadata, one checkpoint per step.

    Retention: the `keep` most recent steps, plus the `keep_best` steps with the best
    `metrics[best_metric]` (`best_mode` "max" or "min") among steps saved with metrics.
    Saves are asynchronous by default: `save` returns once the arrays are copied to host
    memory and the files are written by a background thread (`wait()` blocks until done).
    Use as a context manager or call `close()`.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep: int = 3,
        keep_best: int = 0,
        best_metric: str | None = None,
        best_mode: Literal["max", "min"] = "max",
        async_save: bool = True,
        read_only: bool = False,
    ) -> None:
        options = manager_options(keep=keep, keep_best=keep_best, best_metric=best_metric,
                                  best_mode=best_mode, async_save=async_save,
                                  read_only=read_only)
        self.directory = Path(directory).expanduser().absolute()
        self.read_only = read_only
        self._pending: int | None = None  # the last step handed to save()
        if not read_only:
            ensure_writable(self.directory)
        self.best_metric = best_metric
        self.best_mode = best_mode
        self._closed = False
        self._mngr = ocp.CheckpointManager(
            self.directory, options=options,
            handler_registry=handler_registry(_this_process()),
        )

    # -- queries ---------------------------------------------------------------------------
    def all_steps(self) -> list[int]:
        return sorted(self._mngr.all_steps())

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def best_step(self) -> int | None:
        """Step with the best `best_metric` among steps saved with metrics (None if none)."""
        if not self.best_metric:
            return None
        ranked = self._ranked_by_metric()
        return ranked[0] if ranked else None

    def metrics(self, step: int) -> Mapping[str, Any] | None:
        return self._mngr.metrics(step)

    def _ranked_by_metric(self) -> list[int]:
        """Steps saved with `best_metric`, best first (ties: the later step first)."""
        return rank_by_metric({s: self._mngr.metrics(s) for s in self.all_steps()},
                              self.best_metric, self.best_mode)

    # -- saving ----------------------------------------------------------------------------
    def save(
        self,
        step: int,
        state: Any,
        *,
        data: Any = None,
        loop: Any = None,
        meta: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> bool:
        """Save one checkpoint at `step` (asynchronously when enabled).

        Returns False (and saves nothing) if `step` is already saved. `metrics` rank this step
        for best-K retention and must contain `best_metric` when given. Raises
        `NonFiniteCheckpointError` (and saves nothing) when a floating array of `state` holds
        NaN or Inf: a checkpoint is always a state a run can resume from.
        """
        self._check_open()
        if self.read_only:
            raise ValueError(f"CheckpointManager on {self.directory} is read-only; cannot save")
        step = int(step)
        if step in self._mngr.all_steps():
            return False
        bad = nonfinite_paths(state)  # on device, before the asynchronous write starts
        if bad:
            raise NonFiniteCheckpointError(
                f"refusing to save checkpoint step {step} in {self.directory}: NaN/Inf in "
                f"{len(bad)} arrays: {', '.join(bad[:10])}{', ...' if len(bad) > 10 else ''}"
            )
        if metrics is not None:
            metrics = {k: float(v) for k, v in to_json(dict(metrics)).items()}
            if self.best_metric and self.best_metric not in metrics:
                raise ValueError(
                    f"best_metric {self.best_metric!r} not in the metrics saved at step {step}: "
                    f"{sorted(metrics)}"
                )
        meta_item = {**to_json(dict(meta or {})), "step": step,
                     "fingerprint": tree_fingerprint(state)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(to_json({"value": data})),
            loop=ocp.args.JsonSave(to_json({"value": loop})),
            meta=ocp.args.JsonSave(meta_item),
        )
        with self._save_errors(step):
            self._pending = step
            return bool(self._mngr.save(step, args=args, metrics=metrics, force=True))

    def wait(self) -> None:
        """Block until every pending asynchronous save is on disk (raises its errors; a full
        disk, a quota or a read-only file system as one OSError naming the step and folder)."""
        self._check_open()
        with self._save_errors(self._pending):
            self._mngr.wait_until_finished()
            self._mngr.check_for_errors()

    @contextlib.contextmanager
    def _save_errors(self, step: int | None) -> Iterator[None]:
        try:
            yield
        except Exception as e:
            cause = os_error(e)
            if cause is None:
                raise
            which = f"checkpoint step {step}" if step is not None else "a checkpoint"
            raise OSError(
                cause.errno,
                f"{which} could not be written to {self.directory} ({cause.strerror}); the "
                "checkpoints before it are intact: free space (or fix the file system) and run "
                "the same command to resume") from None

    def close(self) -> None:
        """Finish pending saves and release Orbax's threads (idempotent; closes even when
        the last save failed, then raises that failure)."""
        if self._closed:
            return
        self._closed = True
        try:
            with self._save_errors(self._pending):
                self._mngr.wait_until_finished()
        finally:
            self._mngr.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"CheckpointManager on {self.directory} is closed")

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- restoring -------------------------------------------------------------------------
    def restore(
        self,
        target: Any,
        step: int | Literal["latest", "best"] = "latest",
    ) -> Restored | None:
        """Restore `step` ("latest", "best" or an int) into the structure and shardings of `target`.

        `target` is a pytree of arrays or `ShapeDtypeStruct`s (e.g. a freshly created train
        state on the current mesh), so a checkpoint saved on N devices restores onto M.
        A corrupt "latest"/"best" step (unreadable bytes, metadata or files) is reported
        (warning + `skipped`), moved to `corrupt_checkpoints/` (unless read-only) and the next
        candidate is tried. Returns None when there is no checkpoint at all.
        Raises `StructureMismatchError` naming the mismatching parameters of a readable
        checkpoint, `CorruptCheckpointError` when no candidate can be read (a given step: that
        it is corrupt, and the other steps), and `ValueError` for a step that does not exist.
        """
        self._check_open()
        self._mngr.reload()
        steps = self.all_steps()
        if not steps:
            return None
        candidates = self._candidates(step, steps)
        abstract = abstract_like(target)
        skipped: list[str] = []
        for _ in range(_RETRIES_AFTER_ROTATION):
            try:
                return self._restore_first(candidates, step, steps, abstract, skipped)
            except _RemovedWhileReadError as removed:
                # A running job rotated the step away (keep_checkpoints) while this process
                # read it: not corruption. Look again at what is there now.
                log.warning("checkpoint step %d in %s was removed by the running job while "
                            "it was being read; trying the current checkpoints",
                            removed.step, self.directory)
                if step not in ("latest", "best"):
                    self._mngr.reload()
                    raise ValueError(
                        f"checkpoint step {removed.step} in {self.directory} was removed by "
                        "the running job (it keeps only its latest/best checkpoints) while "
                        f"it was being read; saved steps now: {self.all_steps()}: choose one "
                        "of them or 'latest'") from None
                self._mngr.reload()
                steps = self.all_steps()
                if not steps:
                    return None
                candidates = self._candidates(step, steps)
        raise CorruptCheckpointError(
            f"the checkpoints in {self.directory} kept being removed while they were read "
            f"({_RETRIES_AFTER_ROTATION} tries): is a job rotating them very fast?")

    def _gone(self, step: int) -> bool:
        """Whether `step` was removed (by the job that writes this directory) rather than
        damaged: its folder vanishes, at once or within a second (a deletion in progress)."""
        wait = 1.0 if self.read_only else 0.0
        deadline = time.monotonic() + wait
        while True:
            if not (self.directory / str(step)).exists():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def _restore_first(self, candidates: list[int], step: int | str, steps: list[int],
                       abstract: Any, skipped: list[str]) -> Restored:
        for candidate in candidates:
            try:
                restored = self._restore_step(candidate, abstract)
            except CorruptCheckpointError as e:
                if self._gone(candidate):
                    raise _RemovedWhileReadError(candidate) from None
                message = f"checkpoint step {candidate} in {self.directory} is corrupt: {e}"
                log.warning("%s", message)
                skipped.append(message)
                self._quarantine(candidate)
                continue
            if skipped:
                log.warning(
                    "restored the previous good checkpoint, step %d, instead", candidate
                )
            return dataclasses.replace(restored, skipped=tuple(skipped))
        if len(candidates) == 1 and step not in ("latest", "best"):
            others = [s for s in steps if s != candidates[0]]
            raise CorruptCheckpointError(
                f"{skipped[0]}; choose another step ({others or 'none left'}) or 'latest'"
            )
        raise CorruptCheckpointError(
            "no readable checkpoint among steps "
            f"{candidates} in {self.directory}:\n" + "\n".join(skipped)
        )

    def _candidates(self, step: int | str, steps: list[int]) -> list[int]:
        """The steps `restore(step=...)` tries, in order."""
        if step == "latest":
            return steps[::-1]
        if step == "best":
            if not self.best_metric:
                raise ValueError("restore(step='best') needs a best_metric on the manager")
            candidates = self._ranked_by_metric()
            if not candidates:
                raise ValueError(
                    f"no checkpoint in {self.directory} was saved with metrics "
                    f"(needed for step='best'); steps: {steps}"
                )
            return candidates
        if isinstance(step, int | np.integer) and not isinstance(step, bool):
            if int(step) not in steps:
                raise ValueError(f"step {step} is not in {self.directory}; saved steps: {steps}")
            return [int(step)]
        raise ValueError(f"step must be 'latest', 'best' or an int, got {step!r}")

    def check_structure(self, step: int, target: Any) -> None:
        """Raise `StructureMismatchError` if step's `state` arrays differ from `target`'s
        (`CorruptCheckpointError` when its array metadata cannot be trusted; see
        `integrity.check_structure`)."""
        check_structure(self._mngr, step, target, self.directory)

    def _restore_step(self, step: int, abstract: Any) -> Restored:
        self.check_structure(step, abstract)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            **{name: ocp.args.JsonRestore() for name in JSON_ITEMS},
        )
        try:
            out = self._mngr.restore(step, args=args)
        except Exception as e:
            raise CorruptCheckpointError(f"{type(e).__name__}: {short(e)}") from e
        check_restored(out["state"], out["meta"])
        return Restored(
            step=step,
            state=out["state"],
            data=from_json((out["data"] or {}).get("value")),
            loop=from_json(out["loop"]["value"]),
            meta=out["meta"],
            metrics=self._mngr.metrics(step),
        )

    def _quarantine(self, step: int) -> None:
        """Move a corrupt step aside (so the step can be saved again); read-only: leave it."""
        if not self.read_only and quarantine(self.directory, step):
            self._mngr.reload()


_RETRIES_AFTER_ROTATION = 5


class _RemovedWhileReadError(Exception):
    """The step's folder vanished while it was read (rotated away by the running job)."""

    def __init__(self, step: int) -> None:
        super().__init__(step)
        self.step = step
