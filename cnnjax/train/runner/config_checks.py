"""Validation of a resolved run config: `validate_config` (every field checked before
anything expensive, each error naming the field, its value and what was expected)."""

from __future__ import annotations

import math
from typing import Any

import jax
import ml_collections

from cnnjax import data, models
from cnnjax.checks import check_choice, check_int
from cnnjax.train.optim import OPTIMIZERS, SCHEDULES
from cnnjax.train.runner.dataset_info import info_from_config
from cnnjax.train.runner.trackers import check_trackers
from cnnjax.train.steps import PRECISIONS, STRATEGIES
from cnnjax.train.tasks import (
    CLASSIFICATION_LOSS_REGISTRY,
    SEGMENTATION_LOSS_REGISTRY,
    TASK_NAMES,
    TASKS,
    check_metric_names,
    parse_loss,
    parse_metrics,
)

__all__ = ["MAX_SEED", "validate_config"]


MAX_SEED = 2**63 - 1  # jax.random.key takes a signed 64-bit seed


def _int(config: Any, name: str, *, minimum: int, allow_none: bool = False,
         maximum: int | None = None) -> None:
    value = _get(config, name)
    if value is None and allow_none:
        return
    check_int(value, f"config.{name}", minimum=minimum, maximum=maximum)


def _get(config: Any, name: str) -> Any:
    value = config
    for part in name.split("."):
        value = value[part]
    return value


def _choice(config: Any, name: str, choices: tuple[str, ...]) -> None:
    check_choice(_get(config, name), f"config.{name}", choices)


def _check_names(config: ml_collections.ConfigDict) -> None:
    """Names looked up in a registry or a fixed list, and the learning rate."""
    _int(config, "seed", minimum=0, maximum=MAX_SEED)
    if config.model not in models.list_models():
        raise ValueError(
            f"config.model={config.model!r}: unknown model; expected one of {models.list_models()}"
            " (a model of your own: list the module or .py file that registers it in "
            "config.imports)")
    dataset = config.dataset
    if not isinstance(dataset, str) or not (dataset in data.NAMES or dataset.startswith("tfds:")):
        raise ValueError(f"config.dataset={dataset!r}: unknown data set; expected one of "
                         f"{data.NAMES} (a data set of your own: list the module or .py file "
                         "that registers it in config.imports)")
    _choice(config, "optimizer.name", OPTIMIZERS)
    _choice(config, "schedule.name", SCHEDULES)
    _choice(config, "parallel.strategy", STRATEGIES)
    _choice(config, "precision", tuple(PRECISIONS))
    for field, registry in (("segmentation_loss", SEGMENTATION_LOSS_REGISTRY),
                            ("classification_loss", CLASSIFICATION_LOSS_REGISTRY)):
        try:  # terms joined by "+", each registered, with options its function takes
            parse_loss(config.task[field], registry=registry)
        except ValueError as e:
            raise ValueError(f"config.task.{field}: {e}") from e
    check_trackers(config.trackers, config.tracker_options)
    if config.task.name is not None:
        _choice(config, "task.name", tuple(TASK_NAMES))
    _check_metrics(config)
    if config.best_mode is not None:
        _choice(config, "best_mode", ("max", "min"))
    _float(config, "optimizer.learning_rate", minimum=0.0)
    for name in ("optimizer.momentum", "optimizer.b1", "optimizer.b2", "optimizer.eps",
                 "optimizer.weight_decay", "optimizer.grad_clip_norm",
                 "schedule.final_learning_rate", "task.label_smoothing", "task.dice_smooth"):
        _float(config, name, minimum=0.0, allow_none=True)


def _check_metrics(config: ml_collections.ConfigDict) -> None:
    """`config.metrics`: registered names with options they take; against the task's kind of
    metrics when `task.name` says it (else its data set does, when the task is built)."""
    if config.metrics is None:
        return
    check_metric_names(config.metrics)
    entry = TASKS.get(config.task.name) if config.task.name is not None else None
    if entry is not None and entry.metrics is not None:
        parse_metrics(config.metrics, entry.metrics)


# The largest float32: a learning rate (or other factor) above it is Inf once on a device.
_FLOAT32_MAX = 3.4028234663852886e38


def _float(config: Any, name: str, *, minimum: float, allow_none: bool = False) -> None:
    """A finite number >= `minimum` that float32 can hold (a NaN, Inf or 1e39 learning rate
    would poison the first update, and then every checkpoint after it)."""
    value = _get(config, name)
    if value is None and allow_none:
        return
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not minimum <= value <= _FLOAT32_MAX):
        raise ValueError(f"config.{name}={value!r}; expected a finite number >= {minimum} "
                         f"and <= {_FLOAT32_MAX:.4g} (the largest float32)")


def _check_numbers(config: ml_collections.ConfigDict) -> None:
    """Counts, sizes and intervals."""
    _int(config, "batch_size", minimum=1)
    _int(config, "eval_batch_size", minimum=1, allow_none=True)
    _int(config, "num_epochs", minimum=1, allow_none=True)
    _int(config, "num_train_steps", minimum=1, allow_none=True)
    if config.num_epochs is None and config.num_train_steps is None:
        raise ValueError("set config.num_epochs or config.num_train_steps (both are None)")
    _int(config, "eval_every_steps", minimum=0, allow_none=True)
    _int(config, "checkpoint_every_steps", minimum=0, allow_none=True)
    _int(config, "log_every_steps", minimum=1)
    _int(config, "keep_checkpoints", minimum=1)
    _int(config, "keep_best", minimum=0)
    _int(config, "optimizer.accumulate_steps", minimum=1)
    _int(config, "data.worker_count", minimum=0)
    _int(config, "data.read_threads", minimum=0)
    _int(config, "data.prefetch_buffer_size", minimum=0)
    _int(config, "data.prefetch_batches", minimum=1)
    _int(config, "parallel.num_devices", minimum=1, allow_none=True)
    decay = _get(config, "ema_decay")
    if (isinstance(decay, bool) or not isinstance(decay, int | float) or not math.isfinite(decay)
            or not 0.0 <= decay < 1.0):
        raise ValueError(f"config.ema_decay={decay!r}; expected 0 (no EMA) or a number in "
                         "(0, 1), e.g. 0.999")


def validate_config(config: ml_collections.ConfigDict, *, num_devices: int | None = None) -> None:
    """Check every field before anything expensive; raise `ValueError`/`TypeError` naming it.

    Checks names against the registries (model, data set, optimizer, schedule, strategy,
    precision), numbers, and that the global batch sizes split evenly over `num_devices`
    (default: `config.parallel.num_devices` or every device).
    """
    _check_names(config)
    _check_numbers(config)
    info_from_config(config)  # a stated dataset_info must be a whole, consistent DataInfo
    if num_devices is None:
        available = jax.device_count()
        num_devices = config.parallel.num_devices or available
        if num_devices > available:
            raise ValueError(
                f"config.parallel.num_devices={num_devices}, but only {available} devices "
                "are present"
            )
    for name in ("batch_size", "eval_batch_size"):
        value = config[name]
        if value is not None and value % num_devices:
            raise ValueError(
                f"config.{name}={value} is not divisible by the {num_devices} devices; use a "
                f"multiple of {num_devices} (e.g. {max(num_devices, value - value % num_devices)})"
            )
    if config.parallel.strategy == "pmap" and jax.process_count() > 1:
        raise ValueError("config.parallel.strategy='pmap' is single-host; use 'jit' across hosts")

    # Model options are checked by the registry without building any array.
    models.create(config.model, **dict(config.model_options))
