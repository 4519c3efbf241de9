"""Pooling to a fixed output size, channels-last, 1D/2D/3D: global (one value per channel)
and adaptive (PyTorch's `AdaptiveAvgPool`/`AdaptiveMaxPool` bins). Averages of half-precision
inputs accumulate in float32 and return the input dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnnjax.checks import int_tuple
from cnnjax.ops.spec import accumulation_dtype
from cnnjax.ops.validation import as_array, check_floating, check_input_rank, lowest_value


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over all spatial dims: ``(batch, *spatial, ch) -> (batch, ch)``."""
    x = as_array(x, "x")
    check_input_rank(x, "x")
    check_floating(x, "x")
    acc = accumulation_dtype(x.dtype) or x.dtype
    return jnp.mean(x.astype(acc), axis=tuple(range(1, x.ndim - 1))).astype(x.dtype)


def global_max_pool(x: jax.Array) -> jax.Array:
    """Max over all spatial dims: ``(batch, *spatial, ch) -> (batch, ch)``."""
    x = as_array(x, "x")
    check_input_rank(x, "x")
    return jnp.max(x, axis=tuple(range(1, x.ndim - 1)))


def _adaptive_sizes(x: jax.Array, output_size: Any) -> tuple[int, ...]:
    nd = check_input_rank(x, "x")
    spatial = x.shape[1:-1]
    if output_size is None or isinstance(output_size, str):
        raise TypeError(
            f"output_size must be an int or {nd} ints/None (one per spatial dim), "
            f"got {output_size!r}"
        )
    if isinstance(output_size, Sequence) and any(o is None for o in output_size):
        if len(output_size) != nd:
            raise ValueError(
                f"output_size must have {nd} entries (one per spatial dim), got {output_size!r}"
            )
        output_size = tuple(
            n if o is None else o for n, o in zip(spatial, output_size, strict=True)
        )
    sizes = int_tuple(output_size, nd, "output_size", minimum=1)
    if any(n < 1 for n in spatial):
        raise ValueError(f"x must not have empty spatial dims, got {tuple(x.shape)}")
    return sizes


def adaptive_bins(n: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive bins: ``[floor(i*n/out), ceil((i+1)*n/out))`` for ``i < out``."""
    return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]


def _adaptive(x: jax.Array, sizes: tuple[int, ...], reduce: Callable[..., jax.Array]) -> jax.Array:
    """Separable adaptive pooling: each axis in turn (exact for mean and max over boxes)."""
    for axis, out in enumerate(sizes, start=1):
        n = x.shape[axis]
        if out == n:
            continue
        if n % out == 0:
            k = n // out
            x = reduce(x.reshape(*x.shape[:axis], out, k, *x.shape[axis + 1 :]), axis=axis + 1)
            continue
        parts = [
            reduce(lax.slice_in_dim(x, lo, hi, axis=axis), axis=axis, keepdims=True)
            for lo, hi in adaptive_bins(n, out)
        ]
        x = jnp.concatenate(parts, axis=axis)
    return x


def adaptive_avg_pool(x: jax.Array, output_size: int | Sequence[int | None]) -> jax.Array:
    """Average pooling to a fixed ``output_size`` (int, or one int/None per dim; None keeps
    the size) with PyTorch's bins, which overlap when ``n`` is not a multiple of ``out``."""
    x = as_array(x, "x")
    check_floating(x, "x")
    sizes = _adaptive_sizes(x, output_size)
    acc = accumulation_dtype(x.dtype) or x.dtype
    return _adaptive(x.astype(acc), sizes, jnp.mean).astype(x.dtype)


def adaptive_max_pool(x: jax.Array, output_size: int | Sequence[int | None]) -> jax.Array:
    """Max pooling to a fixed ``output_size`` with PyTorch's bins (see `adaptive_avg_pool`)."""
    x = as_array(x, "x")
    sizes = _adaptive_sizes(x, output_size)
    lowest_value(x.dtype)
    return _adaptive(x, sizes, jnp.max)
