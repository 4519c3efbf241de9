"""The built-in metrics (`metric_registry`): what each task reports by default, and more to
choose with `config.metrics`.

classification  accuracy, top5_accuracy (left out when K <= 5), top_k_accuracy(k=5)
                (named top<k>_accuracy), balanced_accuracy (mean recall over the classes
                that occur)
binary          accuracy (per element), exact_match (all labels of an example right; left
                out for one label per example)
segmentation    pixel_accuracy, mean_iou (+ iou/<c>), mean_dice (+ dice/<c>),
                frequency_weighted_iou; all from one confusion matrix summed over devices and
                batches, so they are exact
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.train.tasks.base import Pair
from cnnjax.train.tasks.metric_registry import MetricInputs, register_metric

__all__ = ["confusion_metrics"]

# --------------------------------------------------------------------------- classification


@register_metric("accuracy", "classification")
def accuracy(inputs: MetricInputs) -> dict[str, Pair]:
    """Fraction of examples whose argmax logit is the label."""
    correct = (jnp.argmax(inputs.logits, axis=-1) == inputs.target).astype(jnp.float32)
    return {"accuracy": (jnp.sum(inputs.weights * correct), jnp.sum(inputs.weights))}


def _in_top_k(inputs: MetricInputs, k: int) -> jax.Array:
    _, top = jax.lax.top_k(inputs.logits, k)
    return jnp.any(top == inputs.target[:, None], axis=-1).astype(jnp.float32)


@register_metric("top5_accuracy", "classification")
def top5_accuracy(inputs: MetricInputs) -> dict[str, Pair]:
    """Fraction of examples whose label is among the 5 largest logits (only when K > 5)."""
    if inputs.num_classes <= 5:
        return {}
    w = inputs.weights
    return {"top5_accuracy": (jnp.sum(w * _in_top_k(inputs, 5)), jnp.sum(w))}


@register_metric("top_k_accuracy", "classification")
def top_k_accuracy(inputs: MetricInputs, k: int = 5) -> dict[str, Pair]:
    """`top<k>_accuracy`: the label among the k largest logits (1.0 when k >= K)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"top_k_accuracy: k={k!r}; expected an int >= 1")
    w = inputs.weights
    hit = _in_top_k(inputs, min(k, inputs.num_classes))
    return {f"top{k}_accuracy": (jnp.sum(w * hit), jnp.sum(w))}


def _balanced(summed: Mapping[str, Pair]) -> dict[str, float]:
    hits, counts = (np.asarray(x, np.float64) for x in summed["class_recall"])
    present = counts > 0
    value = float(np.mean(hits[present] / counts[present])) if present.any() else float("nan")
    return {"balanced_accuracy": value}


@register_metric("balanced_accuracy", "classification", finalize=_balanced)
def balanced_accuracy(inputs: MetricInputs) -> dict[str, Pair]:
    """Mean over the classes that occur of the fraction of their examples predicted right
    (macro recall): accuracy that a frequent class cannot dominate."""
    onehot = jax.nn.one_hot(inputs.target, inputs.num_classes, dtype=jnp.float32)
    onehot = onehot * inputs.weights[:, None]
    correct = (jnp.argmax(inputs.logits, axis=-1) == inputs.target).astype(jnp.float32)
    return {"class_recall": (jnp.sum(onehot * correct[:, None], axis=0),
                             jnp.sum(onehot, axis=0))}


# --------------------------------------------------------------------------- binary


def _right(inputs: MetricInputs) -> jax.Array:
    b = inputs.logits.shape[0]
    return ((inputs.logits > 0) == (inputs.target > 0.5)).reshape(b, -1).astype(jnp.float32)


@register_metric("accuracy", "binary")
def binary_accuracy(inputs: MetricInputs) -> dict[str, Pair]:
    """Fraction of elements with logit > 0 exactly where label > 0.5."""
    right, w = _right(inputs), inputs.weights
    return {"accuracy": (jnp.sum(w[:, None] * right), jnp.sum(w) * right.shape[1])}


@register_metric("exact_match", "binary")
def exact_match(inputs: MetricInputs) -> dict[str, Pair]:
    """Fraction of examples with every label right (only with several labels each)."""
    right, w = _right(inputs), inputs.weights
    if right.shape[1] <= 1:
        return {}
    return {"exact_match": (jnp.sum(w * jnp.all(right > 0, axis=-1)), jnp.sum(w))}


# --------------------------------------------------------------------------- segmentation


def _confusion(inputs: MetricInputs) -> dict[str, Pair]:
    """`confusion`: ((C, C) int32 counts, rows true class, columns predicted; pixels)."""
    c, w = inputs.num_classes, inputs.weights.astype(jnp.int32)
    pred = jnp.argmax(inputs.logits, axis=-1)
    counts = jax.ops.segment_sum(w.ravel(), (inputs.target * c + pred).ravel(),
                                 num_segments=c * c)
    return {"confusion": (counts.reshape(c, c), jnp.sum(w))}


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


def _from_confusion(*prefixes: str):
    """A finalize keeping the `confusion_metrics` named `prefixes[0]` and `<prefix>/<c>`."""

    def finalize(summed: Mapping[str, Pair]) -> dict[str, float]:
        all_metrics = confusion_metrics(np.asarray(summed["confusion"][0]))
        return {k: v for k, v in all_metrics.items()
                if k == prefixes[0] or k.split("/")[0] in prefixes[1:]}

    return finalize


register_metric("pixel_accuracy", "segmentation",
                finalize=_from_confusion("pixel_accuracy"))(_confusion)


@register_metric("mean_iou", "segmentation", finalize=_from_confusion("mean_iou", "iou"))
def _confusion_for_iou(inputs: MetricInputs) -> dict[str, Pair]:
    return _confusion(inputs)


@register_metric("mean_dice", "segmentation", finalize=_from_confusion("mean_dice", "dice"))
def _confusion_for_dice(inputs: MetricInputs) -> dict[str, Pair]:
    return _confusion(inputs)


def _frequency_weighted_iou(summed: Mapping[str, Pair]) -> dict[str, float]:
    cm = np.asarray(summed["confusion"][0], np.float64)
    tp, true_total = np.diag(cm), cm.sum(axis=1)
    union = true_total + cm.sum(axis=0) - tp
    total = cm.sum()
    if total == 0:
        return {"frequency_weighted_iou": float("nan")}
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, 0.0)
    return {"frequency_weighted_iou": float(np.sum(true_total / total * iou))}


@register_metric("frequency_weighted_iou", "segmentation", finalize=_frequency_weighted_iou)
def _confusion_for_fwiou(inputs: MetricInputs) -> dict[str, Pair]:
    """IoU per class weighted by the class's share of the true pixels."""
    return _confusion(inputs)
