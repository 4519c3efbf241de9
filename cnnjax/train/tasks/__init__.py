"""Tasks: a loss and metrics as pure functions of `(logits, batch)` (see `base`).

`classification` and `binary` (sigmoid, also multilabel) live in `classification`,
`segmentation` in `segmentation`; `make_task` picks one from a run config's `task` group
through the `TASKS` registry (a task of your own: `@register_task(name, kind)`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from cnnjax.registry import NameList, Registry, origin_of
from cnnjax.train.tasks.base import (
    Batch,
    Pair,
    PairFn,
    Task,
    combine_loss_terms,
    finalize_pairs,
    valid_weights,
)
from cnnjax.train.tasks.classification import binary, classification
from cnnjax.train.tasks.losses import (
    CLASSIFICATION_LOSS_REGISTRY,
    CLASSIFICATION_LOSSES,
    SEGMENTATION_LOSS_REGISTRY,
    SEGMENTATION_LOSSES,
    parse_loss,
    register_classification_loss,
    register_segmentation_loss,
)
from cnnjax.train.tasks.metric_registry import (
    DEFAULT_METRICS,
    METRIC_KINDS,
    METRIC_REGISTRIES,
    MetricInputs,
    check_metric_names,
    parse_metrics,
    register_metric,
)
from cnnjax.train.tasks.segmentation import (
    confusion_metrics,
    finalize_segmentation,
    segmentation,
)

__all__ = [
    "CLASSIFICATION_LOSSES",
    "CLASSIFICATION_LOSS_REGISTRY",
    "DEFAULT_METRICS",
    "METRIC_KINDS",
    "METRIC_REGISTRIES",
    "SEGMENTATION_LOSSES",
    "SEGMENTATION_LOSS_REGISTRY",
    "TASKS",
    "TASK_NAMES",
    "Batch",
    "MetricInputs",
    "Pair",
    "PairFn",
    "Task",
    "TaskEntry",
    "binary",
    "check_metric_names",
    "classification",
    "combine_loss_terms",
    "confusion_metrics",
    "finalize_pairs",
    "finalize_segmentation",
    "make_task",
    "parse_loss",
    "parse_metrics",
    "register_classification_loss",
    "register_metric",
    "register_segmentation_loss",
    "register_task",
    "segmentation",
    "valid_weights",
]


@dataclasses.dataclass(frozen=True)
class TaskEntry:
    """A registered task: `build(task_config, info) -> Task` (a run config's `task` group and
    the data set's `DataInfo`), and the `kind` of targets it trains on: "classification"
    (labels; `experiments.classify`) or "segmentation" (masks; `experiments.segment`);
    `metrics`: the kind of registered metrics `config.metrics` picks from (`build` then takes
    them as `metrics=`), None for a task that reports its own."""

    build: Callable[..., Task]
    kind: str
    metrics: str | None = None

    @property
    def registry_origin(self) -> tuple[str, str] | None:
        return origin_of(self.build)


TASKS: Registry[TaskEntry] = Registry("task")
TASK_NAMES: Sequence[str] = NameList(TASKS)
"""The registered task names (a live view: later registrations count)."""


def register_task(name: str, kind: str, *, metrics: str | None = None
                  ) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator registering `build(task_config, info) -> Task` as task `name` of `kind`;
    with `metrics` (a kind of `METRIC_REGISTRIES`), `build(task_config, info, metrics=...)`
    gets `config.metrics`."""
    if kind not in ("classification", "segmentation"):
        raise ValueError(f"register_task({name!r}): kind={kind!r}; expected 'classification' "
                         "or 'segmentation'")
    if metrics is not None and metrics not in METRIC_REGISTRIES:
        raise ValueError(f"register_task({name!r}): metrics={metrics!r}; expected None or one "
                         f"of {METRIC_KINDS}")

    def add(build: Callable[..., Task]) -> Callable[..., Task]:
        TASKS.register(name)(TaskEntry(build, kind, metrics))
        return build

    return add


@register_task("classification", "classification", metrics="classification")
def _classification(task_config: Any, info: Any, metrics: Any = None) -> Task:
    return classification(label_smoothing=float(task_config.label_smoothing),
                          loss=task_config.classification_loss, metrics=metrics)


@register_task("segmentation", "segmentation", metrics="segmentation")
def _segmentation(task_config: Any, info: Any, metrics: Any = None) -> Task:
    return segmentation(info.num_classes, ignore_label=task_config.ignore_label,
                        loss=task_config.segmentation_loss,
                        dice_smooth=float(task_config.dice_smooth), metrics=metrics)


@register_task("binary", "classification", metrics="binary")
def _binary(task_config: Any, info: Any, metrics: Any = None) -> Task:
    return binary(metrics=metrics)


def make_task(task_config: Any, info: Any, metrics: Any = None) -> Task:
    """The task of a run config's `task` group; `name=None` takes the data set's own
    (`info.task`: "classification" or "segmentation"). `metrics`: `config.metrics` (None:
    the task's default), checked against the task's kind of metrics."""
    name = task_config.name or info.task
    if name not in TASKS:
        raise ValueError(f"config.task.name={name!r}; expected one of {tuple(TASK_NAMES)}")
    entry = TASKS.get(name)
    if metrics is None:
        return entry.build(task_config, info)
    if entry.metrics is None:
        raise ValueError(f"config.metrics={metrics!r}, but task {name!r} reports its own "
                         "metrics (it was registered without metrics=...); leave "
                         "config.metrics None")
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    parse_metrics(metrics, entry.metrics)  # the names of this kind, listed if unknown
    return entry.build(task_config, info, metrics=metrics)
