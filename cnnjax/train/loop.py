"""One generic trainer for every task: `train_and_evaluate(config, workdir)` and `evaluate`.

`train_and_evaluate` validates the config, sets the determinism switches, writes the run
metadata, builds data/model/task/optimizer/mesh/steps, resumes from the latest good checkpoint
in `workdir` (train state + data iterator state + pending metrics), trains with periodic
logging, validation and checkpointing, and finishes with a final validation, test and
checkpoint. Running the same command again on the same workdir resumes; a run that is killed
(SIGKILL included) and resumed ends bitwise identical to one that was not (same devices).

Order of events at a step s (what makes resume exact): train step -> train metrics logged
(every `log_every_steps`) -> validation logged (every `eval_every_steps`) -> checkpoint s
(every `checkpoint_every_steps`, and at every validation when `keep_best > 0`). Everything
logged for steps <= s is written before checkpoint s, so on resume `metrics.jsonl` is cut back
to the restored step and continues as if uninterrupted. Train metrics not yet logged are
saved in the checkpoint (`loop` item) so the next log line is the same too.

Preemption: SIGTERM sets a flag; after the current step the loop saves a checkpoint at that
step, waits for it to be written and returns `{"status": "preempted", ...}`.
NaN/Inf guard: the train step keeps the last good state on a non-finite loss or gradient; the
loop checks the flag every step, checkpoints the last good state (data iterator positioned
before the offending batch) and raises `NonFiniteError` naming the step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from cnnjax import data as data_lib
from cnnjax import models
from cnnjax.checkpoint import (
    CheckpointManager,
    ensure_writable,
    run_metadata,
    to_json,
    write_run_metadata,
)
from cnnjax.train import logging as log_lib
from cnnjax.train.config import resolve_config, validate_config
from cnnjax.train.determinism import configure_determinism
from cnnjax.train.metrics import NonFiniteError, is_finite, merge_metrics
from cnnjax.train.optim import make_optimizer, make_schedule
from cnnjax.train.parallel import make_mesh
from cnnjax.train.state import TrainState, create_train_state
from cnnjax.train.steps import make_eval_step, make_train_step
from cnnjax.train.tasks import Task, binary, classification, segmentation

__all__ = [
    "Components",
    "build",
    "evaluate",
    "train_and_evaluate",
]

log = logging.getLogger("cnnjax.train")

CHECKPOINT_DIR = "checkpoints"
SUMMARY_FILE = "summary.json"


# --------------------------------------------------------------------------- building blocks


@dataclasses.dataclass
class Components:
    """Everything `train_and_evaluate` builds from a config (reusable by scripts and tests)."""

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    info: data_lib.DataInfo
    train_source: Any
    model: Any
    task: Task
    tx: Any
    schedule: Callable[[Any], Any]
    total_steps: int
    steps_per_epoch: int
    best_metric: str | None
    best_mode: str
    train_step: Callable[..., Any]
    eval_step: Callable[..., Any]

    def init_state(self) -> TrainState:
        shape = (1, *self.info.image_shape)
        if any(d is None for d in shape):
            raise ValueError(
                f"data set {self.info.name!r} has variable image sizes {self.info.image_shape}; "
                "resize them in the pipeline (augment='resize(...)')"
            )
        return create_train_state(self.model, self.tx, self.config.seed, shape, mesh=self.mesh)


def _non_none(group: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if v is not None}


def optimizer_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """`config.optimizer` + `config.schedule` as one `make_optimizer` config (None dropped)."""
    opt = _non_none(config.optimizer.to_dict())
    schedule = _non_none(config.schedule.to_dict())
    opt["schedule"] = schedule.pop("name")
    if isinstance(opt.get("freeze"), list | tuple):
        opt["freeze"] = tuple(opt["freeze"])
    if "boundaries" in schedule:
        schedule["boundaries"] = list(schedule["boundaries"])
    return {**opt, **schedule}


def make_task(config: ml_collections.ConfigDict, info: data_lib.DataInfo) -> Task:
    """The task of `config.task.name`, or the data set's own ("classification"/"segmentation")."""
    name = config.task.name or info.task
    if name == "classification":
        return classification(label_smoothing=float(config.task.label_smoothing))
    if name == "segmentation":
        return segmentation(
            info.num_classes,
            ignore_label=config.task.ignore_label,
            loss=config.task.segmentation_loss,
            dice_smooth=float(config.task.dice_smooth),
        )
    if name == "binary":
        return binary()
    raise ValueError(f"config.task.name={name!r}; expected classification, segmentation, binary")


def _best(config: ml_collections.ConfigDict, task: Task) -> tuple[str | None, str]:
    metric = config.best_metric
    if metric is None:
        metric = {"segmentation": "mean_iou"}.get(task.name, "accuracy")
    mode = config.best_mode or ("min" if "loss" in metric else "max")
    return metric, mode


def _total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    if config.num_train_steps is not None:  # wins over num_epochs
        return int(config.num_train_steps)
    return int(config.num_epochs) * steps_per_epoch


def build(config: ml_collections.ConfigDict | Mapping[str, Any]) -> Components:
    """Validate `config` and build data source, model, task, optimizer, mesh and steps.

    Cheap: no parameter is initialised and no step is compiled here.
    """
    config = resolve_config(config)
    validate_config(config)
    mesh = make_mesh(config.parallel.num_devices)
    options = dict(config.dataset_options)
    train_source = data_lib.get_source(
        config.dataset, config.train_split, config.data_dir, **options
    )
    info = train_source.info
    steps_per_epoch = len(train_source) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"config.batch_size={config.batch_size} is larger than the {len(train_source)} "
            f"examples of {config.dataset!r}/{config.train_split!r}"
        )
    total = _total_steps(config, steps_per_epoch)
    task = make_task(config, info)
    model = models.create(config.model, num_classes=info.num_classes, **dict(config.model_options))
    opt_cfg = optimizer_config(config)
    updates = max(1, total // int(config.optimizer.accumulate_steps))
    tx = make_optimizer(opt_cfg, updates)
    schedule = make_schedule(opt_cfg, updates)
    kw = {"strategy": config.parallel.strategy, "mesh": mesh, "precision": config.precision}
    best_metric, best_mode = _best(config, task)
    return Components(
        config=config,
        mesh=mesh,
        info=info,
        train_source=train_source,
        model=model,
        task=task,
        tx=tx,
        schedule=schedule,
        total_steps=total,
        steps_per_epoch=steps_per_epoch,
        best_metric=best_metric,
        best_mode=best_mode,
        train_step=make_train_step(model, task, tx, **kw),
        eval_step=make_eval_step(model, task, **kw),
    )


def _train_pipeline(c: Components) -> data_lib.BatchIterator:
    cfg = c.config
    return data_lib.make_pipeline(
        c.train_source,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        train=True,
        num_epochs=None,  # the loop counts steps
        augment=cfg.augment or None,
        normalize=cfg.data.normalize,
        worker_count=cfg.data.worker_count,
        read_threads=cfg.data.read_threads,
        prefetch_buffer_size=cfg.data.prefetch_buffer_size,
    )


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float | np.floating | np.integer) and not isinstance(v, bool)
    }


def run_eval(
    c: Components, state: TrainState, split: str, *, progress_stream: Any = None
) -> dict[str, float]:
    """Metrics of `state` on one full pass over `split` (exact: padding rows do not count)."""
    cfg = c.config
    source = data_lib.get_source(cfg.dataset, split, cfg.data_dir, **dict(cfg.dataset_options))
    batches = data_lib.make_pipeline(
        source,
        batch_size=cfg.eval_batch_size or cfg.batch_size,
        seed=cfg.seed,
        train=False,
        augment=cfg.augment or None,
        normalize=cfg.data.normalize,
        worker_count=cfg.data.worker_count,
        read_threads=cfg.data.read_threads,
        prefetch_buffer_size=cfg.data.prefetch_buffer_size,
    )
    total = None
    with log_lib.Progress(
        len(batches), desc=f"eval {split}", stream=progress_stream, leave=False
    ) as bar:
        for i, batch in enumerate(batches):
            total = merge_metrics(total, c.eval_step(state, batch))
            bar.advance(i + 1)
    batches.close()
    if total is None:
        raise ValueError(f"split {split!r} of {cfg.dataset!r} is empty")
    return c.task.finalize(total)


# --------------------------------------------------------------------------- train loop


class _Preemption:
    """SIGTERM -> a flag the loop polls after every step (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        del frame
        self.requested = True
        log.warning("received signal %d: saving a checkpoint after the current step", signum)

    def __enter__(self) -> _Preemption:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _host_pairs(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Step metric pairs fetched to the host as JSON-safe values (saved in checkpoints)."""
    return to_json({k: [np.asarray(s), np.asarray(c)] for k, (s, c) in jax.device_get(
        dict(metrics)).items()})


def _from_host_pairs(saved: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (np.asarray(s), np.asarray(c)) for k, (s, c) in saved.items()}


def _train_row(c: Components, pending: list[Any], step: int) -> dict[str, Any]:
    total = None
    for metrics in pending:
        total = merge_metrics(total, metrics)
    assert total is not None
    total = {k: v for k, v in total.items() if k != "nonfinite"}
    row = dict(c.task.finalize(total))
    accumulate = int(c.config.optimizer.accumulate_steps)
    row["learning_rate"] = float(c.schedule(max(step - 1, 0) // accumulate))
    return row


def _epoch(c: Components, step: int) -> float:
    return step / c.steps_per_epoch


def _due(step: int, every: int | None, default: int) -> bool:
    every = default if every is None else every
    return every > 0 and step % every == 0


def _run_meta(config: ml_collections.ConfigDict, extra: Mapping[str, Any]) -> dict[str, Any]:
    return run_metadata(config, extra=extra)


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
    determinism = configure_determinism()
    config = resolve_config(config)
    validate_config(config)
    workdir = ensure_writable(workdir)
    c = build(config)
    meta = _run_meta(config, {"determinism": determinism, "workdir": str(workdir),
                              "total_steps": c.total_steps})
    if jax.process_index() == 0:
        write_run_metadata(workdir, meta)

    ckpt = CheckpointManager(
        workdir / CHECKPOINT_DIR,
        keep=config.keep_checkpoints,
        keep_best=config.keep_best,
        best_metric=c.best_metric,
        best_mode=c.best_mode,
        async_save=config.async_checkpointing,
    )
    train_iter = _train_pipeline(c)
    state = c.init_state()
    restored = ckpt.restore(state, "latest")
    pending: list[Any] = []
    if restored is not None:
        state = restored.state
        if restored.data is None:
            raise ValueError(
                f"checkpoint step {restored.step} in {ckpt.directory} holds no data iterator "
                f"state for process {jax.process_index()}: it was saved by a run with fewer "
                "processes (or by a cnnjax that saved process 0's state only); resume with "
                f"the number of processes that saved it (this run has {jax.process_count()})"
            )
        train_iter.set_state(restored.data)
        loop = restored.loop or {}
        pending = [_from_host_pairs(p) for p in loop.get("pending", [])]
    start_step = int(jax.device_get(state.step))
    writer = log_lib.MetricsWriter(workdir, resume_step=None if restored is None else start_step)
    progress = log_lib.Progress(c.total_steps, start_step, stream=progress_stream)
    if restored is not None:
        _warn_config_changes(restored.meta.get("config", {}), to_json(config.to_dict()),
                             progress)
        progress.write(
            f"resumed from checkpoint step {start_step} in {workdir / CHECKPOINT_DIR}"
            + (f" (skipped corrupt: {len(restored.skipped)})" if restored.skipped else "")
        )
    ckpt_meta = {"config": config.to_dict(), "run": {k: meta[k] for k in (
        "git", "versions", "seed", "command_line")}}

    def save(step: int, metrics: Mapping[str, float] | None, data_state: Any) -> None:
        loop_state = {"pending": [_host_pairs(p) for p in pending]}
        ckpt.save(step, state, data=data_state, loop=loop_state, meta=ckpt_meta,
                  metrics=metrics)

    eval_every = config.eval_every_steps
    summary: dict[str, Any] = {"workdir": str(workdir), "total_steps": c.total_steps}
    status = "completed"
    step = start_step
    images = 0
    window_start = time.perf_counter()
    try:
        with _Preemption() as preemption:
            data_state = train_iter.get_state()
            batch = next(train_iter) if step < c.total_steps else None
            while step < c.total_steps:
                state, metrics = c.train_step(state, batch)
                step += 1
                # Host work overlaps the device step: fetch the next batch first.
                previous_data_state, data_state = data_state, train_iter.get_state()
                batch = next(train_iter) if step < c.total_steps else None
                if not is_finite(metrics):
                    bad = step
                    step -= 1  # the state was not updated: it is the last good one
                    save(step, None, previous_data_state)
                    ckpt.wait()
                    raise NonFiniteError(
                        f"non-finite loss or gradients at step {bad} (the update from step "
                        f"{step}); stopped, and the last good state (step {step}) is saved in "
                        f"{ckpt.directory}. Lower the learning rate, clip gradients "
                        "(optimizer.grad_clip_norm) or check the data."
                    )
                pending.append(metrics)
                images += int(config.batch_size)
                progress.advance(step)
                if step % config.log_every_steps == 0 or step == c.total_steps:
                    row = _train_row(c, pending, step)
                    elapsed = time.perf_counter() - window_start
                    row["images_per_s"] = images / elapsed if elapsed > 0 else float("nan")
                    writer.write(step, "train", row, epoch=_epoch(c, step))
                    progress.report(step, row)
                    pending, images, window_start = [], 0, time.perf_counter()
                if step == c.total_steps:
                    break  # the final evaluation and checkpoint follow
                paused = time.perf_counter()  # evaluation and saving do not count as training
                val_metrics = None
                if config.eval_split and _due(step, eval_every, c.steps_per_epoch):
                    val_metrics = _scalars(run_eval(c, state, config.eval_split,
                                                    progress_stream=progress_stream))
                    writer.write(step, "val", val_metrics, epoch=_epoch(c, step))
                    progress.write(f"val step {step}: {log_lib.format_metrics(val_metrics)}")
                    _check_best_metric(c, val_metrics)
                every_ckpt = config.checkpoint_every_steps
                if every_ckpt is None:
                    every_ckpt = eval_every if eval_every is not None else c.steps_per_epoch
                if (val_metrics is not None and config.keep_best > 0) or _due(
                    step, every_ckpt, c.steps_per_epoch
                ):
                    save(step, val_metrics, data_state)
                window_start += time.perf_counter() - paused
                if preemption.requested:
                    save(step, None, data_state)
                    ckpt.wait()
                    status = "preempted"
                    progress.write(
                        f"preempted (SIGTERM): saved a checkpoint at step {step} in "
                        f"{ckpt.directory}; run the same command again to resume"
                    )
                    break
            if status == "completed":
                summary.update(_finish(c, state, step, start_step, writer, progress,
                                       progress_stream))
                if ckpt.latest_step() != step:
                    save(step, summary.get("val") if config.keep_best > 0 else None,
                         data_state)
            ckpt.wait()
    finally:
        progress.close()
        writer.close()
        train_iter.close()
        ckpt.close()
    summary.update(status=status, step=step, best_metric=c.best_metric,
                   best_step=_best_step(workdir, c))
    if status == "completed" and jax.process_index() == 0:
        (workdir / SUMMARY_FILE).write_text(json.dumps(to_json(summary), indent=2) + "\n")
    return summary


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _warn_config_changes(saved: Mapping[str, Any], current: Mapping[str, Any],
                         progress: log_lib.Progress) -> None:
    """Resuming with another config is allowed (e.g. more steps) but no longer exact: say so."""
    old, new = _flatten(saved), _flatten(current)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:10])
        message = (f"resuming with a config that differs from the checkpoint's ({details}); "
                   "the run will not match an uninterrupted one")
        log.warning("%s", message)
        progress.write(f"warning: {message}")


def _check_best_metric(c: Components, metrics: Mapping[str, float]) -> None:
    if c.config.keep_best > 0 and c.best_metric not in metrics:
        raise ValueError(
            f"config.best_metric={c.best_metric!r} is not a validation metric of this task; "
            f"available: {sorted(metrics)}"
        )


def _finish(
    c: Components,
    state: TrainState,
    step: int,
    start_step: int,
    writer: log_lib.MetricsWriter,
    progress: log_lib.Progress,
    progress_stream: Any,
) -> dict[str, Any]:
    """Final validation and test. When nothing was trained in this process (the run had
    already finished), they are recomputed but not logged again."""
    out: dict[str, Any] = {}
    log_them = step > start_step
    for name, split in (("val", c.config.eval_split), ("test", c.config.test_split)):
        if not split:
            continue
        metrics = _scalars(run_eval(c, state, split, progress_stream=progress_stream))
        if name == "val":
            _check_best_metric(c, metrics)
        if log_them:
            writer.write(step, name, metrics, epoch=_epoch(c, step))
        progress.write(f"{name} ({split}) step {step}: {log_lib.format_metrics(metrics)}")
        out[name] = metrics
    return out


def _best_step(workdir: Path, c: Components) -> int | None:
    with CheckpointManager(
        workdir / CHECKPOINT_DIR, best_metric=c.best_metric, best_mode=c.best_mode,
        read_only=True,
    ) as m:
        return m.best_step()


# --------------------------------------------------------------------------- evaluation


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The resolved config a run wrote to `workdir/config.json`."""
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a cnnjax workdir?")
    return resolve_config(json.loads(path.read_text()))


def evaluate(
    config: ml_collections.ConfigDict | Mapping[str, Any] | None,
    workdir: str | Path,
    split: str = "test",
    which: str | int = "best",
) -> dict[str, Any]:
    """Metrics of a workdir's "best", "latest" or given-step checkpoint on `split`.

    `config=None` uses the workdir's own `config.json`. Read-only: the workdir is not
    changed. Returns `{"step", "split", "which", **metrics}`.
    """
    configure_determinism()
    config = load_config(workdir) if config is None else resolve_config(config)
    c = build(config)
    with CheckpointManager(
        Path(workdir) / CHECKPOINT_DIR, best_metric=c.best_metric, best_mode=c.best_mode,
        read_only=True,
    ) as ckpt:
        if which == "best" and ckpt.best_step() is None:
            which = "latest"  # no validation ran (e.g. eval_split=None)
        restored = ckpt.restore(c.init_state(), which)
    if restored is None:
        raise FileNotFoundError(f"no checkpoint in {Path(workdir) / CHECKPOINT_DIR}")
    metrics = _scalars(run_eval(c, restored.state, split))
    return {"step": restored.step, "split": split, "which": which, **metrics}
