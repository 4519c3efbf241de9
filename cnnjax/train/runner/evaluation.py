"""Evaluating a run: one pass over a split, and a workdir's checkpoint restored and evaluated.

`run_eval(c, state, split)` gives exact metrics (padding rows do not count); `restore(c,
workdir, which)` loads a "best", "latest" or given-step checkpoint read-only; `evaluate`
combines them for a workdir, with the config the run saved (`load_config`) by default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from cnnjax import workdir_layout as layout
from cnnjax.checkpoint import CheckpointManager
from cnnjax.data.prefetch import Prefetch
from cnnjax.train.ema import resolve_weights, select_weights
from cnnjax.train.metrics import merge_metrics
from cnnjax.train.runner.components import Components, build, make_batches
from cnnjax.train.runner.config import prepare_config
from cnnjax.train.runner.dispatch import InFlight
from cnnjax.train.runner.reporting import Progress
from cnnjax.train.state import TrainState

__all__ = ["CHECKPOINT_DIR", "check_best_metric", "evaluate", "load_config", "restore", "run_eval"]

CHECKPOINT_DIR = layout.CHECKPOINT_DIR


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The plain-number entries of `metrics`, as floats (what `metrics.jsonl` holds)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float | np.floating | np.integer) and not isinstance(v, bool)
    }


def run_eval(
    c: Components, state: TrainState, split: str, *, progress_stream: Any = None,
    weights: str | None = None,
) -> dict[str, float]:
    """Metrics of `state` on one full pass over `split` (exact: padding rows do not count).

    `weights`: "ema" or "raw" (`cnnjax.train.ema.select_weights`); None: the state's EMA
    when it has one, so training-time validation of a run with `ema_decay > 0` reports the
    EMA weights. Batches are prepared ahead by a thread and the steps dispatched without
    waiting for their results; the per-batch sums are fetched once at the end and added in
    float64."""
    state = select_weights(state, weights)
    iterator = make_batches(c.config, split, train=False)
    num_batches = len(iterator)
    batches = Prefetch(iterator, place=c.eval_step.place, size=c.config.data.prefetch_batches)
    outputs, in_flight = [], InFlight(c.config.data.prefetch_batches)
    try:
        with Progress(num_batches, desc=f"eval {split}", stream=progress_stream,
                      leave=False) as bar:
            for i, (batch, _) in enumerate(batches):
                outputs.append(c.eval_step.placed(state, batch))  # dispatched, not fetched
                in_flight.add(outputs[-1]["loss"][1])
                bar.advance(i + 1)
    finally:
        batches.close()
    total = None
    for metrics in jax.device_get(outputs):  # one transfer; summed in float64 on the host
        total = merge_metrics(total, metrics)
    if total is None:
        raise ValueError(f"split {split!r} of {c.config.dataset!r} is empty")
    return scalars(c.task.finalize(total))


def checkpoints(c: Components, workdir: str | Path, **kw: Any) -> CheckpointManager:
    """The checkpoint manager of a run in `workdir` (ranking by the run's best metric)."""
    return CheckpointManager(Path(workdir) / CHECKPOINT_DIR, best_metric=c.best_metric,
                             best_mode=c.best_mode, **kw)


def restore(c: Components, workdir: str | Path, which: str | int = "latest"
            ) -> tuple[TrainState, int, str | int]:
    """(state, step, which) of a workdir's "best", "latest" or given-step checkpoint.

    Read-only. "best" falls back to "latest" when no validation ranked any checkpoint
    (e.g. `eval_split=None`); the returned `which` says which one was used.
    """
    directory = Path(workdir) / CHECKPOINT_DIR
    if not directory.exists():
        raise FileNotFoundError(f"no checkpoints in {directory}: train first")
    with checkpoints(c, workdir, read_only=True) as ckpt:
        if which == "best" and ckpt.best_step() is None:
            which = "latest"
        restored = ckpt.restore(c.init_state(), which)
    if restored is None:
        raise FileNotFoundError(f"no checkpoint {which!r} in {directory}")
    return restored.state, int(restored.step), which


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The resolved, validated config a run wrote to `workdir/config.json`."""
    value = read_config_json(workdir)
    try:
        return prepare_config(value)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"{Path(workdir) / layout.CONFIG_FILE}: {e}") from None


def read_config_json(workdir: str | Path) -> dict[str, Any]:
    """The object in `workdir/config.json`, or an error naming the file and what is wrong
    with it (no workdir, no file, not UTF-8, not JSON, not an object)."""
    path = Path(workdir) / layout.CONFIG_FILE
    if not Path(workdir).is_dir():
        raise FileNotFoundError(f"workdir {str(workdir)!r} does not exist (or is not a folder)")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {str(workdir)!r} is not a trained cnnjax workdir (its run "
            "writes config.json when it starts); pass --config=FILE to name the config")
    damaged = "the workdir's config is damaged; pass --config=FILE to name the config"
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}): {damaged}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column "
                         f"{e.colno}): {damaged}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not a config object: "
                         f"{damaged}")
    return value


def evaluate_checkpoint(c: Components, workdir: str | Path, split: str = "test",
                        which: str | int = "best", weights: str | None = None
                        ) -> tuple[dict[str, Any], TrainState]:
    """(`{"step", "split", "which", "weights", **metrics}`, the restored state with the
    evaluated weights selected) for built components.

    `weights`: "ema" | "raw" | None (the EMA when the run has one); "ema" on a run without
    EMA is a ValueError (checked before anything is restored)."""
    used = resolve_weights(weights, c.ema is not None)
    state, step, which = restore(c, workdir, which)
    state = select_weights(state, used)
    metrics = run_eval(c, state, split, weights="raw")
    return {"step": step, "split": split, "which": which, "weights": used, **metrics}, state


def evaluate(
    config: ml_collections.ConfigDict | Mapping[str, Any] | None,
    workdir: str | Path,
    split: str = "test",
    which: str | int = "best",
    weights: str | None = None,
) -> dict[str, Any]:
    """Metrics of a workdir's "best", "latest" or given-step checkpoint on `split`.

    `config=None` uses the workdir's own `config.json`. Read-only: the workdir is not
    changed. `weights`: "ema", "raw" or None (the EMA when the run has one). Returns
    `{"step", "split", "which", "weights", **metrics}`.
    """
    config = load_config(workdir) if config is None else prepare_config(config)
    # only `split` is opened: the model and normalisation come from config.dataset_info
    return evaluate_checkpoint(build(config, open_data=False), workdir, split, which,
                               weights)[0]


def check_best_metric(c: Components, state: TrainState) -> None:
    """Before training: `best_metric` must be a metric of this task, else no best checkpoint
    could ever be ranked. Evaluates one batch of the validation split to learn the names."""
    cfg = c.config
    if not cfg.eval_split or cfg.keep_best <= 0:
        return
    batches = make_batches(cfg, cfg.eval_split, train=False)
    try:
        names = sorted(c.task.finalize(c.eval_step(state, next(iter(batches)))))
    finally:
        batches.close()
    if c.best_metric not in names:
        raise ValueError(
            f"config.best_metric={c.best_metric!r} is not a validation metric of this task; "
            f"available: {names}"
        )
