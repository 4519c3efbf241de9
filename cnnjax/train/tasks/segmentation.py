"""Segmentation task: per-pixel cross-entropy and/or soft Dice, confusion-matrix metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.train.tasks.base import Batch, Pair, Task, finalize_pairs, require_key, valid_weights
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
        c = self.num_classes
        target, w, logits = self.prepare(logits, batch)
        pred = jnp.argmax(logits, axis=-1)
        counts = jax.ops.segment_sum(
            w.astype(jnp.int32).ravel(), (target * c + pred).ravel(), num_segments=c * c
        )
        return {"confusion": (counts.reshape(c, c), jnp.sum(w.astype(jnp.int32)))}


def finalize_segmentation(summed: Mapping[str, Pair]) -> dict[str, float]:
    """`finalize_pairs` for the scalar pairs plus `confusion_metrics` of `confusion`."""
    out = finalize_pairs({k: v for k, v in summed.items() if k != "confusion"})
    if "confusion" in summed:
        out.update(confusion_metrics(np.asarray(summed["confusion"][0])))
    return out


def segmentation(
    num_classes: int,
    ignore_label: int | None = None,
    loss: str = "ce",
    *,
    dice_smooth: float = 1.0,
    mask_key: str = "mask",
) -> Task:
    """Per-pixel softmax segmentation: CE, soft Dice or their sum; confusion-matrix metrics.

    Logits (B, *spatial, C), `batch[mask_key]` int (B, *spatial). Pixels equal to
    `ignore_label` and rows with `valid == 0` count nowhere.

    - "ce": mean per-pixel cross-entropy over the counted pixels of the global batch.
    - "dice": per image, `1 - mean_c (2 sum(p t) + s) / (sum(p) + sum(t) + s)` with softmax
      probabilities p, one-hot targets t, smoothing s = `dice_smooth` (or "dice(smooth=s)");
      mean over images.
    - "ce+dice": their sum; any registered terms joined by "+" (`losses`).

    Metrics: one pair `confusion` = ((C, C) int32 counts, rows true class, columns
    predicted; number of counted pixels). `finalize` derives pixel accuracy, per-class
    IoU and Dice, and their means over the classes that occur (NaN-skipping), from the
    confusion matrix summed over devices and batches, so they are exact.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"num_classes={num_classes!r}; expected an int >= 2 (use 2 for binary masks)"
        )
    terms = parse_loss(loss, {"dice": {"smooth": dice_smooth}})
    if ignore_label is not None and not isinstance(ignore_label, int):
        raise TypeError(f"ignore_label={ignore_label!r}; expected an int or None")
    fns = _Segmentation(num_classes, ignore_label, terms, mask_key)
    return Task("segmentation", fns.loss_terms, fns.metrics, finalize_segmentation)


def confusion_metrics(confusion: np.ndarray) -> dict[str, float]:
    """Pixel accuracy, IoU and Dice per class and their means from a (C, C) confusion matrix.

    Rows are true classes, columns predicted. A class absent from both truth and
    prediction has an undefined IoU/Dice (NaN) and is left out of the means.
    """
    cm = np.asarray(confusion, np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix has shape {cm.shape}; expected (C, C)")
    tp = np.diag(cm)
    true_total = cm.sum(axis=1)
    pred_total = cm.sum(axis=0)
    union = true_total + pred_total - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        dice = np.where(true_total + pred_total > 0, 2 * tp / (true_total + pred_total), np.nan)
    total = cm.sum()
    out = {"pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan")}
    out["mean_iou"] = float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")
    out["mean_dice"] = float(np.nanmean(dice)) if np.any(~np.isnan(dice)) else float("nan")
    for i in range(cm.shape[0]):
        out[f"iou/{i}"] = float(iou[i])
        out[f"dice/{i}"] = float(dice[i])
    return out
