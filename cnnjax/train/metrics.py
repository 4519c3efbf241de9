"""Summing step metrics over batches, and the NaN/Inf guard's error.

Step metrics are `{name: (sum, count)}` pairs already reduced over devices.
`merge_metrics` adds them on the host in float64 (int64 for integer sums such as
confusion matrices), so epoch totals are exact; `task.finalize` divides at the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

Pair = tuple[Any, Any]


class NonFiniteError(FloatingPointError):
    """A train step met a non-finite loss or gradient; the state was not updated."""


def _host(x: Any) -> np.ndarray:
    x = np.asarray(jax.device_get(x))
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        return x.astype(np.int64)
    return x.astype(np.float64)


def merge_metrics(total: Mapping[str, Pair] | None, new: Mapping[str, Pair]) -> dict[str, Pair]:
    """`total + new` pair by pair, on the host (float64/int64). `total=None` starts a sum.

    This fetches `new` from the devices (a sync point); for train logging every few
    steps you may instead keep the pairs on device and merge when you log.
    """
    new = {name: (_host(s), _host(c)) for name, (s, c) in new.items()}
    if total is None:
        return new
    if set(total) != set(new):
        raise ValueError(
            f"cannot merge metrics with names {sorted(new)} into a sum of {sorted(total)}"
        )
    return {name: (total[name][0] + s, total[name][1] + c) for name, (s, c) in new.items()}


def is_finite(metrics: Mapping[str, Pair]) -> bool:
    """False when the step that produced (or the steps summed into) `metrics` was skipped."""
    if "nonfinite" not in metrics:
        raise ValueError(
            f"metrics have no 'nonfinite' entry (train steps add it): {sorted(metrics)}"
        )
    return float(np.asarray(jax.device_get(metrics["nonfinite"][0]))) == 0.0


def check_finite(metrics: Mapping[str, Pair], step: int) -> None:
    """Raise `NonFiniteError` naming `step` if the train step's loss or gradients were not finite.

    The step already kept the previous state, so the caller still holds the last good
    parameters (to save or inspect) when it catches the error.
    """
    if is_finite(metrics):
        return
    loss_sum, count = (float(np.asarray(jax.device_get(v))) for v in metrics["loss"])
    loss = loss_sum / count if count else float("nan")
    raise NonFiniteError(
        f"non-finite loss or gradients at step {step} (loss = {loss}); the update was "
        "skipped, so the state returned by that step is the last good one. Lower the "
        "learning rate, clip gradients (grad_clip_norm) or check the data."
    )
