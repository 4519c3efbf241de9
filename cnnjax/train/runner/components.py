"""Building a run's parts from a resolved config: data, model, task, optimizer, mesh, steps.

`build(config)` is cheap: it creates no parameter and compiles no step. The config must come
from `cnnjax.train.runner.config.prepare_config` (resolved and validated once, at the entry point);
`build` does not check it again. `build(config, open_data=False)` opens no data set: the
model, task and normalisation come from `config.dataset_info` (what a trained run saved, see
`cnnjax.train.runner.dataset_info`), which is what export and predict use.
`make_batches(config, split, train=...)` is the one place a run's input pipeline is made
(training, periodic evaluation and prediction use it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from cnnjax import data as data_lib
from cnnjax import models
from cnnjax.train.ema import EmaSpec, config_ema
from cnnjax.train.optim import make_optimizer, make_schedule
from cnnjax.train.parallel import make_mesh
from cnnjax.train.runner.compile_cache import enable_compilation_cache
from cnnjax.train.runner.dataset_info import (
    check_matches,
    info_from_config,
    train_records,
    with_info,
)
from cnnjax.train.schedules import SCHEDULE_REGISTRY
from cnnjax.train.state import TrainState, create_train_state
from cnnjax.train.steps import make_eval_step, make_train_step
from cnnjax.train.tasks import Task, make_task

__all__ = ["Components", "build", "make_batches"]

log = logging.getLogger("cnnjax.train")



@dataclasses.dataclass
class Components:
    """Everything a run builds from its config (reusable by scripts and tests).

    `config` is the resolved config as given, with `dataset_info` filled (saved in
    checkpoints and config.json); `tx` and `schedule` may use a shorter warm-up than it states
    (clipped to the run, see `build`). `train_source` is None when built without data.
    """

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
        """Freshly initialised parameters, optimizer state and step 0, placed on the mesh."""
        shape = (1, *self.info.image_shape)
        if any(d is None for d in shape):
            raise ValueError(
                f"data set {self.info.name!r} has variable image sizes {self.info.image_shape}; "
                "resize them in the pipeline (augment='resize(...)')"
            )
        return create_train_state(self.model, self.tx, self.config.seed, shape, mesh=self.mesh,
                                  ema=self.ema is not None)

    @property
    def ema(self) -> EmaSpec | None:
        """The run's EMA of the weights (`config.ema_decay`), or None when it has none."""
        return config_ema(self.config)


def make_batches(
    config: ml_collections.ConfigDict,
    split: str,
    *,
    train: bool,
    source: Any = None,
    whole_split: bool = False,
) -> data_lib.BatchIterator:
    """The input pipeline of a run for `split`: shuffled, endless and augmented when `train`,
    one ordered pass otherwise (eval batch size, padding rows marked `valid == 0`).

    `source`: an already opened source of that split (else it is opened here).
    `whole_split`: every batch of the split in THIS process (prediction and plots on one
    host), instead of this process's share.
    """
    if source is None:
        source = data_lib.get_source(config.dataset, split, config.data_dir,
                                     **dict(config.dataset_options))
    local = {"process_index": 0, "process_count": 1} if whole_split else {}
    saved = info_from_config(config)  # the run's own normalisation, once it has one
    return data_lib.make_pipeline(
        source,
        batch_size=config.batch_size if train else config.eval_batch_size or config.batch_size,
        seed=config.seed,
        train=train,
        num_epochs=None,  # training: the loop counts steps; evaluation: one pass
        augment=config.augment or None,
        normalize=config.data.normalize,
        worker_count=config.data.worker_count,
        read_threads=config.data.read_threads,
        prefetch_buffer_size=config.data.prefetch_buffer_size,
        info=saved,
        **local,
    )


def _best(config: ml_collections.ConfigDict, task: Task) -> tuple[str | None, str]:
    metric = config.best_metric
    if metric is None:
        metric = {"segmentation": "mean_iou"}.get(task.name, "accuracy")
    mode = config.best_mode or ("min" if "loss" in metric else "max")
    return metric, mode


def _optimizer_config(config: ml_collections.ConfigDict, updates: int
                      ) -> ml_collections.ConfigDict:
    """`config`, with a warm-up longer than the run clipped to it (and a warning), so that
    shortening a run with `--config.num_train_steps=N` alone works."""
    warmup = int(config.schedule.warmup_steps or 0)
    # schedules of a known length reject warmup_steps >= it (the others never leave warm-up)
    if not SCHEDULE_REGISTRY.get(config.schedule.name).needs_total or warmup < updates:
        return config
    clipped = updates - 1
    log.warning("config.schedule.warmup_steps=%d is not shorter than the run's %d optimizer "
                "updates; using warmup_steps=%d", warmup, updates, clipped)
    config = ml_collections.ConfigDict(config.to_dict())
    config.schedule.warmup_steps = clipped
    return config


def _data(config: ml_collections.ConfigDict, open_data: bool
          ) -> tuple[ml_collections.ConfigDict, data_lib.DataInfo, Any, int | None]:
    """(config with dataset_info, info, train source or None, train size or None).

    With data: the train split is opened (and the eval/test splits, so that a bad split fails
    before training); a saved `dataset_info` must match it. Without: the saved info, else
    the data set's registered metadata (`get_info`, which opens nothing for most data sets).
    """
    saved = info_from_config(config)
    if not open_data:
        if saved is not None:
            return config, saved, None, train_records(config)
        info = data_lib.get_info(config.dataset, config.data_dir, **dict(config.dataset_options))
        return config, info, None, None
    options = dict(config.dataset_options)
    source = data_lib.get_source(config.dataset, config.train_split, config.data_dir, **options)
    for split in {config.eval_split, config.test_split} - {None, config.train_split}:
        data_lib.get_source(config.dataset, split, config.data_dir, **options)
    if saved is None:
        return with_info(config, source.info, len(source)), source.info, source, len(source)
    check_matches(saved, source.info)
    return config, saved, source, len(source)


def build(config: ml_collections.ConfigDict, *, open_data: bool = True) -> Components:
    """Data source, model, task, optimizer, mesh and steps of a resolved, validated `config`.

    `open_data=False`: no data set is opened (export, predict): the info comes from
    `config.dataset_info` and `train_source` is None; steps per epoch come from the saved
    train size (1 when unknown: only the optimizer's schedule values depend on it, not the
    structure of a checkpoint).

    Also turns on JAX's persistent compilation cache unless `config.compilation_cache` is
    False (`cnnjax.train.runner.compile_cache`): every entry point builds before it compiles.
    """
    enable_compilation_cache(bool(config.compilation_cache))
    mesh = make_mesh(config.parallel.num_devices)
    config, info, train_source, records = _data(config, open_data)
    steps_per_epoch = (records if records is not None else config.batch_size) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"config.batch_size={config.batch_size} is larger than the {records} "
            f"examples of {config.dataset!r}/{config.train_split!r}"
        )
    if config.num_train_steps is not None:  # wins over num_epochs
        total = int(config.num_train_steps)
    else:
        total = int(config.num_epochs) * steps_per_epoch
    task = make_task(config.task, info, metrics=config.get("metrics"))
    model = models.create(config.model, num_classes=info.num_classes, **dict(config.model_options))
    updates = max(1, total // int(config.optimizer.accumulate_steps))
    if records is None and config.num_train_steps is None:
        # length unknown (an older run's config without dataset_info, built without data):
        # only the optimizer's structure matters then; keep the warm-up whole, no warning
        updates = max(updates, int(config.schedule.warmup_steps or 0) + 1)
    opt_config = _optimizer_config(config, updates)
    tx = make_optimizer(opt_config, updates)
    kw = {"strategy": config.parallel.strategy, "mesh": mesh, "precision": config.precision}
    best_metric, best_mode = _best(config, task)
    return Components(
        config=config, mesh=mesh, info=info, train_source=train_source, model=model,
        task=task, tx=tx, schedule=make_schedule(opt_config, updates), total_steps=total,
        steps_per_epoch=steps_per_epoch, best_metric=best_metric, best_mode=best_mode,
        train_step=make_train_step(model, task, tx, **kw,
                                   freeze_batch_stats=tuple(config.freeze_batch_stats),
                                   ema=config_ema(config)),
        eval_step=make_eval_step(model, task, **kw),
    )
