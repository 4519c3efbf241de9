"""Tasks: a loss and metrics as pure functions of `(logits, batch)` (see `base`).

`classification` and `binary` (sigmoid, also multilabel) live in `classification`,
`segmentation` in `segmentation`; `make_task` picks one from a run config's `task` group.
"""

from __future__ import annotations

from typing import Any

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
    "Batch",
    "Pair",
    "PairFn",
    "Task",
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
    "segmentation",
    "valid_weights",
]


def make_task(task_config: Any, info: Any) -> Task:
    """The task of a run config's `task` group; `name=None` takes the data set's own
    (`info.task`: "classification" or "segmentation")."""
    name = task_config.name or info.task
    if name == "classification":
        return classification(label_smoothing=float(task_config.label_smoothing),
                              loss=task_config.classification_loss)
    if name == "segmentation":
        return segmentation(
            info.num_classes,
            ignore_label=task_config.ignore_label,
            loss=task_config.segmentation_loss,
            dice_smooth=float(task_config.dice_smooth),
        )
    if name == "binary":
        return binary()
    raise ValueError(f"config.task.name={name!r}; expected classification, segmentation, binary")
