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


def require_key(batch: Batch, key: str, task: str) -> jax.Array:
    if key not in batch:
        raise ValueError(f"{task} task needs batch[{key!r}]; the batch has keys {sorted(batch)}")
    return jnp.asarray(batch[key])
