"""Classification tasks: softmax cross-entropy (`classification`) and sigmoid (`binary`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cnnjax.train.tasks import metric_defs  # noqa: F401  (registers the built-in metrics)
from cnnjax.train.tasks.base import Batch, Pair, Task, require_key, valid_weights
from cnnjax.train.tasks.losses import CLASSIFICATION_LOSS_REGISTRY, parse_loss
from cnnjax.train.tasks.metric_registry import MetricInputs, metric_functions

# --------------------------------------------------------------------------- classification


def _class_targets(logits: jax.Array, batch: Batch, label_key: str
                   ) -> tuple[jax.Array, jax.Array]:
    """(hard (B,) int, soft (B, K) float32) targets from int labels or soft labels."""
    if logits.ndim != 2:
        raise ValueError(
            f"classification logits have shape {logits.shape}; expected (batch, classes)"
        )
    b, k = logits.shape
    labels = require_key(batch, label_key, "classification")
    if labels.shape == (b,):
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise TypeError(
                f"batch[{label_key!r}] of shape ({b},) has dtype {labels.dtype}; "
                "expected integer class indices"
            )
        hard = labels.astype(jnp.int32)
        return hard, jax.nn.one_hot(hard, k, dtype=jnp.float32)
    if labels.shape == (b, k):
        soft = labels.astype(jnp.float32)
        return jnp.argmax(soft, axis=-1), soft
    raise ValueError(
        f"batch[{label_key!r}] has shape {labels.shape}; expected ({b},) class "
        f"indices or ({b}, {k}) soft labels for logits of shape {logits.shape}"
    )


def _class_loss_terms(logits: jax.Array, batch: Batch, *,
                      terms: tuple[tuple[str, dict[str, Any]], ...], label_key: str
                      ) -> dict[str, Pair]:
    _, soft = _class_targets(logits, batch, label_key)
    w = valid_weights(batch, logits.shape[0])
    logits = logits.astype(jnp.float32)
    return {name: CLASSIFICATION_LOSS_REGISTRY.get(name)(logits, soft, w, **options)
            for name, options in terms}


def _class_metrics(logits: jax.Array, batch: Batch, *, label_key: str,
                   pairs: Callable[[MetricInputs], dict[str, Pair]]) -> dict[str, Pair]:
    hard, _ = _class_targets(logits, batch, label_key)
    w = valid_weights(batch, logits.shape[0])
    return pairs(MetricInputs(logits, hard, w, logits.shape[-1]))


def classification(label_smoothing: float = 0.0, *, label_key: str = "label",
                   loss: str = "ce", metrics: Sequence[str] | None = None) -> Task:
    """Softmax classification: a loss of registered terms (default "ce", cross-entropy,
    label-smoothed by `label_smoothing`), accuracy, top-5.

    Logits (B, K). Labels `batch[label_key]`: int (B,) class indices, or float (B, K)
    soft labels (mixup/cutmix), which are also smoothed when `label_smoothing > 0`:
    target = (1 - eps) * labels + eps / K. `loss`: terms joined by "+"
    (`cnnjax.train.tasks.losses`, e.g. "ce+confidence_penalty(weight=0.1)"). `metrics`:
    registered classification metrics (`metric_defs`; None: accuracy, which compares
    argmax(logits) with the label (argmax of soft labels), and `top5_accuracy`, reported
    when K > 5).
    """
    if not isinstance(label_smoothing, int | float) or not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing!r}; expected a float in [0, 1)")
    terms = parse_loss(loss, {"ce": {"label_smoothing": float(label_smoothing)}},
                       CLASSIFICATION_LOSS_REGISTRY)
    pairs, finalize = metric_functions("classification", metrics)
    return Task(
        "classification",
        functools.partial(_class_loss_terms, terms=terms, label_key=label_key),
        functools.partial(_class_metrics, label_key=label_key, pairs=pairs),
        finalize,
    )


# --------------------------------------------------------------------------- binary


def _binary_prepare(logits: jax.Array, batch: Batch, label_key: str
                    ) -> tuple[jax.Array, jax.Array]:
    labels = require_key(batch, label_key, "binary")
    if logits.ndim == labels.ndim + 1 and logits.shape[-1] == 1:
        logits = logits[..., 0]
    if logits.shape != labels.shape:
        raise ValueError(
            f"binary logits {logits.shape} and batch[{label_key!r}] {labels.shape} "
            "must have the same shape (a trailing logits axis of size 1 is allowed)"
        )
    return logits.astype(jnp.float32), labels.astype(jnp.float32)


def _binary_loss_terms(logits: jax.Array, batch: Batch, *, label_key: str,
                       pos_weight: float | None) -> dict[str, Pair]:
    logits, labels = _binary_prepare(logits, batch, label_key)
    # -[y log s(x) + (1 - y) log(1 - s(x))], with log s(x) = -softplus(-x).
    pos = labels * jax.nn.softplus(-logits)
    neg = (1.0 - labels) * jax.nn.softplus(logits)
    per_element = (pos * pos_weight if pos_weight is not None else pos) + neg
    b = logits.shape[0]
    per_example = jnp.mean(per_element.reshape(b, -1), axis=-1)
    w = valid_weights(batch, b)
    return {"bce": (jnp.sum(w * per_example), jnp.sum(w))}


def _binary_metrics(logits: jax.Array, batch: Batch, *, label_key: str,
                    pairs: Callable[[MetricInputs], dict[str, Pair]]) -> dict[str, Pair]:
    logits, labels = _binary_prepare(logits, batch, label_key)
    return pairs(MetricInputs(logits, labels, valid_weights(batch, logits.shape[0]), 1))


def binary(*, label_key: str = "label", pos_weight: float | None = None,
           metrics: Sequence[str] | None = None) -> Task:
    """Sigmoid cross-entropy for binary or multilabel targets (also binary masks).

    Logits (B, ...) and `batch[label_key]` of the same shape with values in [0, 1]
    (a trailing logits axis of size 1 may be absent from the labels). Per example the
    loss is the mean over its elements; the batch loss is the mean over valid examples.
    `pos_weight` multiplies the positive term (class imbalance). Metrics: `accuracy`
    per element (logit > 0 vs label > 0.5) and, when an example has several labels,
    `exact_match` (all of its labels right); `metrics`: registered binary metrics instead.
    """
    if pos_weight is not None and (not isinstance(pos_weight, int | float) or pos_weight <= 0):
        raise ValueError(f"pos_weight={pos_weight!r}; expected a positive float or None")
    return Task(
        "binary",
        functools.partial(_binary_loss_terms, label_key=label_key, pos_weight=pos_weight),
        functools.partial(_binary_metrics, label_key=label_key,
                          pairs=metric_functions("binary", metrics)[0]),
        metric_functions("binary", metrics)[1],
    )
