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
from cnnjax.train.tasks.segmentation import (
    confusion_metrics,
    finalize_segmentation,
    segmentation,
)

__all__ = [
    "CLASSIFICATION_LOSSES",
    "CLASSIFICATION_LOSS_REGISTRY",
    "SEGMENTATION_LOSSES",
    "SEGMENTATION_LOSS_REGISTRY",
    "TASKS",
    "TASK_NAMES",
    "Batch",
    "Pair",
    "PairFn",
    "Task",
    "TaskEntry",
    "binary",
    "classification",
    "combine_loss_terms",
    "confusion_metrics",
    "finalize_pairs",
    "finalize_segmentation",
    "make_task",
    "parse_loss",
    "register_classification_loss",
    "register_segmentation_loss",
    "register_task",
    "segmentation",
    "valid_weights",
]


@dataclasses.dataclass(frozen=True)
class TaskEntry:
    """A registered task: `build(task_config, info) -> Task` (a run config's `task` group and
    the data set's `DataInfo`), and the `kind` of targets it trains on: "classification"
    (labels; `experiments.classify`) or "segmentation" (masks; `experiments.segment`)."""

    build: Callable[[Any, Any], Task]
    kind: str

    @property
    def registry_origin(self) -> tuple[str, str] | None:
        return origin_of(self.build)


TASKS: Registry[TaskEntry] = Registry("task")
TASK_NAMES: Sequence[str] = NameList(TASKS)
"""The registered task names (a live view: later registrations count)."""


def register_task(name: str, kind: str) -> Callable[[Callable[[Any, Any], Task]],
                                                    Callable[[Any, Any], Task]]:
    """Decorator registering `build(task_config, info) -> Task` as task `name` of `kind`."""
    if kind not in ("classification", "segmentation"):
        raise ValueError(f"register_task({name!r}): kind={kind!r}; expected 'classification' "
                         "or 'segmentation'")

    def add(build: Callable[[Any, Any], Task]) -> Callable[[Any, Any], Task]:
        TASKS.register(name)(TaskEntry(build, kind))
        return build

    return add


@register_task("classification", "classification")
def _classification(task_config: Any, info: Any) -> Task:
    return classification(label_smoothing=float(task_config.label_smoothing),
                          loss=task_config.classification_loss)


@register_task("segmentation", "segmentation")
def _segmentation(task_config: Any, info: Any) -> Task:
    return segmentation(info.num_classes, ignore_label=task_config.ignore_label,
                        loss=task_config.segmentation_loss,
                        dice_smooth=float(task_config.dice_smooth))


@register_task("binary", "classification")
def _binary(task_config: Any, info: Any) -> Task:
    return binary()


def make_task(task_config: Any, info: Any) -> Task:
    """The task of a run config's `task` group; `name=None` takes the data set's own
    (`info.task`: "classification" or "segmentation")."""
    name = task_config.name or info.task
    if name not in TASKS:
        raise ValueError(f"config.task.name={name!r}; expected one of {tuple(TASK_NAMES)}")
    return TASKS.get(name).build(task_config, info)
