"""Segmentation task: per-pixel cross-entropy and/or soft Dice, confusion-matrix metrics.

`confusion_metrics` lives with the other metrics in `metric_defs` (re-exported here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cnnjax.train.tasks.base import Batch, Pair, Task, require_key, valid_weights
from cnnjax.train.tasks.metric_defs import confusion_metrics
from cnnjax.train.tasks.metric_registry import MetricInputs, metric_functions

__all__ = ["confusion_metrics", "finalize_segmentation", "segmentation"]
from cnnjax.train.tasks.losses import (
    SEGMENTATION_LOSS_REGISTRY,
    parse_loss,
)

# --------------------------------------------------------------------------- segmentation


@dataclasses.dataclass(frozen=True)
class _Segmentation:
    """The pure functions of `segmentation(...)`, over its options."""

    num_classes: int
    ignore_label: int | None
    terms: tuple[tuple[str, dict[str, Any]], ...]  # parsed loss spec (`losses`)
    mask_key: str
    metric_pairs: Callable[[MetricInputs], dict[str, Pair]]  # `metric_registry`

    def prepare(self, logits: jax.Array, batch: Batch
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(target in range, per-pixel weights, float32 logits)."""
        c = self.num_classes
        mask = require_key(batch, self.mask_key, "segmentation")
        if logits.ndim < 3 or logits.shape[-1] != c or mask.shape != logits.shape[:-1]:
            raise ValueError(
                f"segmentation logits {logits.shape} and batch[{self.mask_key!r}] {mask.shape} "
                f"do not fit; expected logits (B, *spatial, {c}) and mask (B, *spatial)"
            )
        if not jnp.issubdtype(mask.dtype, jnp.integer):
            raise TypeError(f"batch[{self.mask_key!r}] has dtype {mask.dtype}; expected integers")
        mask = mask.astype(jnp.int32)
        w = valid_weights(batch, logits.shape[0])
        w = jnp.broadcast_to(w.reshape((-1,) + (1,) * (mask.ndim - 1)), mask.shape)
        if self.ignore_label is not None:
            w = w * (mask != self.ignore_label)
        # Ignored pixels may carry any value (e.g. 255): clip them into range; weight is 0.
        target = jnp.clip(mask, 0, c - 1)
        return target, w, logits.astype(jnp.float32)

    def loss_terms(self, logits: jax.Array, batch: Batch) -> dict[str, Pair]:
        target, w, logits = self.prepare(logits, batch)
        valid = valid_weights(batch, logits.shape[0])
        return {name: SEGMENTATION_LOSS_REGISTRY.get(name)(logits, target, w, valid,
                                                           self.num_classes, **options)
                for name, options in self.terms}

    def metrics(self, logits: jax.Array, batch: Batch) -> dict[str, Pair]:
        target, w, logits = self.prepare(logits, batch)
        return self.metric_pairs(MetricInputs(logits, target, w, self.num_classes))


def finalize_segmentation(summed: Mapping[str, Pair]) -> dict[str, float]:
    """The default segmentation finalize: `finalize_pairs` for the scalar pairs plus
    `confusion_metrics` of `confusion`."""
    return metric_functions("segmentation")[1](summed)


def segmentation(
    num_classes: int,
    ignore_label: int | None = None,
    loss: str = "ce",
    *,
    dice_smooth: float = 1.0,
    mask_key: str = "mask",
    metrics: Sequence[str] | None = None,
) -> Task:
    """Per-pixel softmax segmentation: CE, soft Dice or their sum; confusion-matrix metrics.

    Logits (B, *spatial, C), `batch[mask_key]` int (B, *spatial). Pixels equal to
    `ignore_label` and rows with `valid == 0` count nowhere.

    - "ce": mean per-pixel cross-entropy over the counted pixels of the global batch.
    - "dice": per image, `1 - mean_c (2 sum(p t) + s) / (sum(p) + sum(t) + s)` with softmax
      probabilities p, one-hot targets t, smoothing s = `dice_smooth` (or "dice(smooth=s)");
      mean over images.
    - "ce+dice": their sum; any registered terms joined by "+" (`losses`).

    Metrics (`metrics`: registered segmentation metrics, `metric_defs`; None: pixel_accuracy,
    mean_iou, mean_dice): one pair `confusion` = ((C, C) int32 counts, rows true class,
    columns predicted; number of counted pixels). `finalize` derives pixel accuracy,
    per-class IoU and Dice, and their means over the classes that occur (NaN-skipping), from
    the confusion matrix summed over devices and batches, so they are exact.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"num_classes={num_classes!r}; expected an int >= 2 (use 2 for binary masks)"
        )
    terms = parse_loss(loss, {"dice": {"smooth": dice_smooth}})
    if ignore_label is not None and not isinstance(ignore_label, int):
        raise TypeError(f"ignore_label={ignore_label!r}; expected an int or None")
    pairs, finalize = metric_functions("segmentation", metrics)
    fns = _Segmentation(num_classes, ignore_label, terms, mask_key, pairs)
    return Task("segmentation", fns.loss_terms, fns.metrics, finalize)
