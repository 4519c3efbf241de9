"""Helpers shared by the training-core tests (imported as `train_testutil`)."""

from __future__ import annotations

import jax
import numpy as np


def quadrant_batch(rng: np.random.Generator, n: int, size: int = 8, channels: int = 3) -> dict:
    """A learnable 4-class task: class k brightens quadrant k of a noisy image."""
    labels = rng.integers(0, 4, n).astype(np.int32)
    images = rng.normal(0.0, 0.5, (n, size, size, channels)).astype(np.float32)
    h = size // 2
    for i, k in enumerate(labels):
        r, c = divmod(int(k), 2)
        images[i, r * h : (r + 1) * h, c * h : (c + 1) * h, :] += 1.5
    return {"image": images, "label": labels}


def host(tree):
    """A pytree fetched to numpy float64 (for comparisons after the device copy is donated)."""
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)).astype(np.float64), tree)


def max_abs_diff(a, b) -> float:
    diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)
    return max(jax.tree.leaves(diffs))
