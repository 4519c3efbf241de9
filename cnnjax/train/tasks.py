"""Tasks: a loss and metrics as pure functions of `(logits, batch)` (scenic style).

A task does not know about devices. Both functions return `(sum, count)` pairs:
the step sums them across devices (and the loop across batches), and only at the
end `finalize` divides. This is what makes metrics exact whatever the batch split,
and the loss exact when a batch holds padding rows (`batch["valid"] == 0`):
padding rows get weight zero in every sum and every count.

- `loss_terms(logits, batch) -> {term: (sum, count)}`; the loss is
  `sum over terms of sum / count`, with counts taken over the *global* batch
  (the step psums the counts before dividing, so gradients are exact too).
- `metrics(logits, batch) -> {name: (sum, count)}`; `sum` may be an array, e.g. the
  (C, C) confusion matrix of segmentation.
- `finalize(summed) -> {name: float}` turns summed pairs into numbers.

Batches are dicts: `image` (B, *spatial, C), `label` int (B,) or float soft labels
(B, K), `mask` int (B, *spatial) for segmentation, optional `valid` (B,).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Pair = tuple[Any, Any]
Batch = Mapping[str, Any]
PairFn = Callable[[jax.Array, Batch], dict[str, Pair]]

SEGMENTATION_LOSSES = ("ce", "dice", "ce+dice")


@dataclasses.dataclass(frozen=True)
class Task:
    """A loss and metrics for one kind of problem; every field is a pure function.

    Attributes:
      name: short name for logs ("classification", "segmentation", "binary").
      loss_terms: `(logits, batch) -> {term: (sum, count)}` over the valid examples.
      metrics: `(logits, batch) -> {name: (sum, count)}` over the valid examples.
      finalize: `{name: (summed sum, summed count)} -> {name: float}`.
    """

    name: str
    loss_terms: PairFn
    metrics: PairFn
    finalize: Callable[[Mapping[str, Pair]], dict[str, float]]

    def loss(self, logits: jax.Array, batch: Batch) -> jax.Array:
        """Scalar loss of one (single-device) batch: sum over terms of `sum / count`."""
        return combine_loss_terms(self.loss_terms(logits, batch))


def combine_loss_terms(terms: Mapping[str, Pair]) -> jax.Array:
    """`sum_t sum_t / max(count_t, 1)`: the loss from its terms (0 for an all-padding batch)."""
    total = jnp.zeros((), jnp.float32)
    for value, count in terms.values():
        total = total + value / jnp.maximum(count, 1.0)
    return total


def valid_weights(batch: Batch, batch_size: int) -> jax.Array:
    """Per-example weights (B,) float32: `batch["valid"]` if present, else ones."""
    if "valid" not in batch:
        return jnp.ones((batch_size,), jnp.float32)
    valid = jnp.asarray(batch["valid"])
    if valid.shape != (batch_size,):
        raise ValueError(
            f"batch['valid'] has shape {valid.shape}; expected ({batch_size},), "
            "one flag per example"
        )
    return valid.astype(jnp.float32)


def finalize_pairs(summed: Mapping[str, Pair]) -> dict[str, float]:
    """Generic finalize: `sum / count` for every pair (NaN when the count is 0)."""
    out = {}
    for name, (value, count) in summed.items():
        value = np.asarray(value, np.float64)
        count = float(np.asarray(count, np.float64))
        if value.ndim != 0:
            raise ValueError(
                f"metric {name!r} has a sum of shape {value.shape}; the generic finalize "
                "handles scalar sums only (use the task's finalize)"
            )
        out[name] = float(value) / count if count > 0 else float("nan")
    return out


def _require(batch: Batch, key: str, task: str) -> jax.Array:
    if key not in batch:
        raise ValueError(f"{task} task needs batch[{key!r}]; the batch has keys {sorted(batch)}")
    return jnp.asarray(batch[key])


# --------------------------------------------------------------------------- classification


def classification(label_smoothing: float = 0.0, *, label_key: str = "label") -> Task:
    """Softmax classification: cross-entropy (optionally label-smoothed), accuracy, top-5.

    Logits (B, K). Labels `batch[label_key]`: int (B,) class indices, or float (B, K)
    soft labels (mixup/cutmix), which are also smoothed when `label_smoothing > 0`:
    target = (1 - eps) * labels + eps / K. Accuracy compares argmax(logits) with the label
    (argmax of soft labels); `top5_accuracy` is reported when K > 5.
    """
    if not isinstance(label_smoothing, int | float) or not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing!r}; expected a float in [0, 1)")
    eps = float(label_smoothing)

    def targets(logits: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
        if logits.ndim != 2:
            raise ValueError(
                f"classification logits have shape {logits.shape}; expected (batch, classes)"
            )
        b, k = logits.shape
        labels = _require(batch, label_key, "classification")
        if labels.shape == (b,):
            if not jnp.issubdtype(labels.dtype, jnp.integer):
                raise TypeError(
                    f"batch[{label_key!r}] of shape ({b},) has dtype {labels.dtype}; "
                    "expected integer class indices"
                )
            hard = labels.astype(jnp.int32)
            soft = jax.nn.one_hot(hard, k, dtype=jnp.float32)
        elif labels.shape == (b, k):
            soft = labels.astype(jnp.float32)
            hard = jnp.argmax(soft, axis=-1)
        else:
            raise ValueError(
                f"batch[{label_key!r}] has shape {labels.shape}; expected ({b},) class "
                f"indices or ({b}, {k}) soft labels for logits of shape {logits.shape}"
            )
        return hard, soft

    def loss_terms(logits: jax.Array, batch: Batch) -> dict[str, Pair]:
        _, soft = targets(logits, batch)
        k = logits.shape[-1]
        if eps > 0.0:
            soft = (1.0 - eps) * soft + eps / k
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        per_example = -jnp.sum(soft * logp, axis=-1)
        w = valid_weights(batch, logits.shape[0])
        return {"ce": (jnp.sum(w * per_example), jnp.sum(w))}

    def metrics(logits: jax.Array, batch: Batch) -> dict[str, Pair]:
        hard, _ = targets(logits, batch)
        w = valid_weights(batch, logits.shape[0])
        n = jnp.sum(w)
        correct = (jnp.argmax(logits, axis=-1) == hard).astype(jnp.float32)
        out = {"accuracy": (jnp.sum(w * correct), n)}
        if logits.shape[-1] > 5:
            _, top = jax.lax.top_k(logits, 5)
            in_top = jnp.any(top == hard[:, None], axis=-1).astype(jnp.float32)
            out["top5_accuracy"] = (jnp.sum(w * in_top), n)
        return out

    return Task("classification", loss_terms, metrics, finalize_pairs)


# --------------------------------------------------------------------------- segmentation


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
      probabilities p, one-hot targets t, smoothing s = `dice_smooth`; mean over images.
    - "ce+dice": their sum.

    Metrics: one pair `confusion` = ((C, C) int32 counts, rows true class, columns
    predicted; number of counted pixels). `finalize` derives pixel accuracy, per-class
    IoU and Dice, and their means over the classes that occur (NaN-skipping), from the
    confusion matrix summed over devices and batches, so they are exact.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"num_classes={num_classes!r}; expected an int >= 2 (use 2 for binary masks)"
        )
    if loss not in SEGMENTATION_LOSSES:
        raise ValueError(f"loss={loss!r}; expected one of {SEGMENTATION_LOSSES}")
    if ignore_label is not None and not isinstance(ignore_label, int):
        raise TypeError(f"ignore_label={ignore_label!r}; expected an int or None")
    c = num_classes

    def prepare(logits: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array, jax.Array]:
        mask = _require(batch, mask_key, "segmentation")
        if logits.ndim < 3 or logits.shape[-1] != c or mask.shape != logits.shape[:-1]:
            raise ValueError(
                f"segmentation logits {logits.shape} and batch[{mask_key!r}] {mask.shape} "
                f"do not fit; expected logits (B, *spatial, {c}) and mask (B, *spatial)"
            )
        if not jnp.issubdtype(mask.dtype, jnp.integer):
            raise TypeError(f"batch[{mask_key!r}] has dtype {mask.dtype}; expected integers")
        mask = mask.astype(jnp.int32)
        w = valid_weights(batch, logits.shape[0])
        w = jnp.broadcast_to(w.reshape((-1,) + (1,) * (mask.ndim - 1)), mask.shape)
        if ignore_label is not None:
            w = w * (mask != ignore_label)
        # Ignored pixels may carry any value (e.g. 255): clip them into range; weight is 0.
        target = jnp.clip(mask, 0, c - 1)
        return target, w, logits.astype(jnp.float32)

    def loss_terms(logits: jax.Array, batch: Batch) -> dict[str, Pair]:
        target, w, logits = prepare(logits, batch)
        terms: dict[str, Pair] = {}
        if loss in ("ce", "ce+dice"):
            logp = jax.nn.log_softmax(logits, axis=-1)
            nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
            terms["ce"] = (jnp.sum(w * nll), jnp.sum(w))
        if loss in ("dice", "ce+dice"):
            p = jax.nn.softmax(logits, axis=-1)
            t = jax.nn.one_hot(target, c, dtype=jnp.float32)
            wc = w[..., None]
            spatial = tuple(range(1, logits.ndim - 1))
            inter = jnp.sum(wc * p * t, axis=spatial)  # (B, C)
            denom = jnp.sum(wc * p, axis=spatial) + jnp.sum(wc * t, axis=spatial)
            dice = (2.0 * inter + dice_smooth) / (denom + dice_smooth)
            per_image = 1.0 - jnp.mean(dice, axis=-1)
            v = valid_weights(batch, logits.shape[0])
            terms["dice"] = (jnp.sum(v * per_image), jnp.sum(v))
        return terms

    def metrics(logits: jax.Array, batch: Batch) -> dict[str, Pair]:
        target, w, logits = prepare(logits, batch)
        pred = jnp.argmax(logits, axis=-1)
        counts = jax.ops.segment_sum(
            w.astype(jnp.int32).ravel(), (target * c + pred).ravel(), num_segments=c * c
        )
        return {"confusion": (counts.reshape(c, c), jnp.sum(w.astype(jnp.int32)))}

    def finalize(summed: Mapping[str, Pair]) -> dict[str, float]:
        rest = {k: v for k, v in summed.items() if k != "confusion"}
        out = finalize_pairs(rest)
        if "confusion" in summed:
            out.update(confusion_metrics(np.asarray(summed["confusion"][0])))
        return out

    return Task("segmentation", loss_terms, metrics, finalize)


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


# --------------------------------------------------------------------------- binary / multilabel


def binary(*, label_key: str = "label", pos_weight: float | None = None) -> Task:
    """Sigmoid cross-entropy for binary or multilabel targets (also binary masks).

    Logits (B, ...) and `batch[label_key]` of the same shape with values in [0, 1]
    (a trailing logits axis of size 1 may be absent from the labels). Per example the
    loss is the mean over its elements; the batch loss is the mean over valid examples.
    `pos_weight` multiplies the positive term (class imbalance). Metrics: `accuracy`
    per element (logit > 0 vs label > 0.5) and, when an example has several labels,
    `exact_match` (all of its labels right).
    """
    if pos_weight is not None and (not isinstance(pos_weight, int | float) or pos_weight <= 0):
        raise ValueError(f"pos_weight={pos_weight!r}; expected a positive float or None")

    def prepare(logits: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
        labels = _require(batch, label_key, "binary")
        if logits.ndim == labels.ndim + 1 and logits.shape[-1] == 1:
            logits = logits[..., 0]
        if logits.shape != labels.shape:
            raise ValueError(
                f"binary logits {logits.shape} and batch[{label_key!r}] {labels.shape} "
                "must have the same shape (a trailing logits axis of size 1 is allowed)"
            )
        return logits.astype(jnp.float32), labels.astype(jnp.float32)

    def per_element_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
        # -[y log s(x) + (1 - y) log(1 - s(x))], with log s(x) = -softplus(-x).
        pos = labels * jax.nn.softplus(-logits)
        neg = (1.0 - labels) * jax.nn.softplus(logits)
        return (pos * pos_weight if pos_weight is not None else pos) + neg

    def loss_terms(logits: jax.Array, batch: Batch) -> dict[str, Pair]:
        logits, labels = prepare(logits, batch)
        b = logits.shape[0]
        per_example = jnp.mean(per_element_loss(logits, labels).reshape(b, -1), axis=-1)
        w = valid_weights(batch, b)
        return {"bce": (jnp.sum(w * per_example), jnp.sum(w))}

    def metrics(logits: jax.Array, batch: Batch) -> dict[str, Pair]:
        logits, labels = prepare(logits, batch)
        b = logits.shape[0]
        right = ((logits > 0) == (labels > 0.5)).reshape(b, -1).astype(jnp.float32)
        w = valid_weights(batch, b)
        per = right.shape[1]
        out = {"accuracy": (jnp.sum(w[:, None] * right), jnp.sum(w) * per)}
        if per > 1:
            out["exact_match"] = (jnp.sum(w * jnp.all(right > 0, axis=-1)), jnp.sum(w))
        return out

    return Task("binary", loss_terms, metrics, finalize_pairs)


multilabel = binary
