"""Pooling over sliding windows, channels-last, 1D/2D/3D: max, average, Lp, Gaussian-weighted.

Global and adaptive pooling (output size fixed, windows derived) are in `adaptive.py`.

Semantics follow PyTorch: `stride` defaults to the window; padding is implicit (``-inf``
for max, zeros for the averages) and at most half the (dilated) window on each side;
``ceil_mode`` keeps a partial last window when it starts inside the input or the low
padding. The number of spatial dims is ``x.ndim - 2``. Averages of half-precision inputs
accumulate in float32 and return the input dtype.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax.checks import check_bool, check_positive_number, int_tuple
from cnnjax.ops.arithmetic import output_sizes, resolve_padding
from cnnjax.ops.spec import DIMENSION_NUMBERS, Pairs, accumulation_dtype, effective_kernel_size
from cnnjax.ops.validation import as_array, check_floating, check_input_rank, lowest_value


class _Pool(NamedTuple):
    """A validated pooling window: padding already includes ceil_mode's extra high rows."""

    window: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: Pairs
    out: tuple[int, ...]
    declared_padding: Pairs


def _pool_setup(
    x: jax.Array,
    window: Any,
    stride: Any,
    padding: Any,
    dilation: Any = 1,
    ceil_mode: Any = False,
) -> _Pool:
    nd = check_input_rank(x, "x")
    if any(s < 1 for s in x.shape[1:]):
        raise ValueError(f"x must not have empty spatial or channel dims, got {tuple(x.shape)}")
    window = int_tuple(window, nd, "window", minimum=1)
    stride = window if stride is None else int_tuple(stride, nd, "stride", minimum=1)
    dilation = int_tuple(dilation, nd, "dilation", minimum=1)
    ceil_mode = check_bool(ceil_mode, "ceil_mode")
    spatial = tuple(x.shape[1:-1])
    pairs = resolve_padding(
        padding, spatial, window, stride, dilation, allowed_strings=("valid", "same")
    )
    for dim, ((lo, hi), k, d) in enumerate(zip(pairs, window, dilation, strict=True)):
        half = effective_kernel_size(k, d) // 2
        if lo > half or hi > half:
            raise ValueError(
                f"padding must be at most half the (dilated) window, got ({lo}, {hi}) along "
                f"spatial dim {dim} for window {k} with dilation {d} (max {half})"
            )
    out = output_sizes(spatial, window, stride, pairs, dilation, ceil_mode)
    padded = tuple(
        (lo, max(hi, (o - 1) * s + effective_kernel_size(k, d) - n - lo))
        for n, o, k, s, d, (lo, hi) in zip(
            spatial, out, window, stride, dilation, pairs, strict=True
        )
    )
    return _Pool(window, stride, dilation, padded, out, pairs)


def _is_tiling(pool: _Pool) -> bool:
    """Window == stride, no dilation, no padding: non-overlapping blocks (reshape path)."""
    return (
        pool.window == pool.stride
        and all(d == 1 for d in pool.dilation)
        and all(lo == 0 and hi == 0 for lo, hi in pool.padding)
    )


def _blocks(x: jax.Array, pool: _Pool) -> jax.Array:
    """``x`` without the floor-mode tail, as ``(batch, o1, k1, o2, k2, ..., ch)`` blocks."""
    batch, *_, ch = x.shape
    slices = (
        slice(None),
        *(slice(0, o * k) for o, k in zip(pool.out, pool.window, strict=True)),
        slice(None),
    )
    shape = [batch]
    for o, k in zip(pool.out, pool.window, strict=True):
        shape += [o, k]
    return x[slices].reshape(*shape, ch)


def _block_axes(pool: _Pool) -> tuple[int, ...]:
    return tuple(range(2, 2 * len(pool.out) + 1, 2))


def _block_reduce(x: jax.Array, pool: _Pool, reduce: Callable[..., jax.Array]) -> jax.Array:
    """Reduces non-overlapping ``window`` blocks by reshaping (the tail that fits no block
    is dropped, as in floor mode). Chosen over `lax.reduce_window` for tiling windows
    because XLA's CPU backend runs the reshape + reduce, and its gradient, much faster (the
    measurement is in the README's lever table)."""
    return reduce(_blocks(x, pool), axis=_block_axes(pool))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _tiled_max(x: jax.Array, pool: _Pool) -> jax.Array:
    """Max over non-overlapping blocks of floating ``x`` whose derivative takes each
    window's FIRST maximal element (row-major within the window), as `lax.reduce_window`'s
    does, ties included; `jnp.max`'s own derivative would share a tie equally."""
    return _block_reduce(x, pool, jnp.max)


def _first_max_mask(x: jax.Array, y: jax.Array, pool: _Pool) -> jax.Array:
    """Bool ``(batch, o1, k1, ..., ch)``: True at each block's first element equal to its
    max ``y``. One strided slice per window offset, in row-major order, with a running
    "already taken" mask: elementwise passes that XLA fuses (a one-hot of an argmax index
    took ~4x longer on the CPU)."""
    nd = len(pool.window)
    taken = None
    hits = []
    for offset in itertools.product(*(range(k) for k in pool.window)):
        part = x[
            (
                slice(None),
                *(
                    slice(i, o * k, k)
                    for i, o, k in zip(offset, pool.out, pool.window, strict=True)
                ),
                slice(None),
            )
        ]
        hit = part == y
        if taken is None:
            taken = hit
        else:
            hit = hit & ~taken
            taken = taken | hit
        hits.append(hit)
    batch, ch = x.shape[0], x.shape[-1]
    mask = jnp.stack(hits, axis=-2).reshape(batch, *pool.out, *pool.window, ch)
    perm = (0, *itertools.chain.from_iterable((1 + i, 1 + nd + i) for i in range(nd)), 2 * nd + 1)
    return mask.transpose(perm)


@_tiled_max.defjvp
def _tiled_max_jvp(
    pool: _Pool, primals: tuple[jax.Array], tangents: tuple[jax.Array]
) -> tuple[jax.Array, jax.Array]:
    (x,), (t,) = primals, tangents
    y = _block_reduce(x, pool, jnp.max)
    mask = _first_max_mask(x, y, pool)
    picked = jnp.where(mask, _blocks(t, pool), jnp.zeros((), t.dtype))
    return y, jnp.sum(picked, axis=_block_axes(pool))


def _window_config(pool: _Pool) -> dict[str, Any]:
    return {
        "window_dimensions": (1, *pool.window, 1),
        "window_strides": (1, *pool.stride, 1),
        "padding": ((0, 0), *pool.padding, (0, 0)),
        "window_dilation": (1, *pool.dilation, 1),
    }


def max_pool(
    x: jax.Array,
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
) -> jax.Array:
    """Max over each (dilated) window of ``x`` ``(batch, *spatial, ch)``; padding is -inf.

    `window`, `stride` (default: the window), `dilation`: int or one per spatial dim;
    `padding`: int, per dim, ``(low, high)`` pairs, ``"valid"`` or ``"same"``, each side
    at most half the dilated window.
    """
    x = as_array(x, "x")
    pool = _pool_setup(x, window, stride, padding, dilation, ceil_mode)
    init = lowest_value(x.dtype)
    if _is_tiling(pool):
        if jnp.issubdtype(x.dtype, jnp.floating):
            return _tiled_max(x, pool)
        return _block_reduce(x, pool, jnp.max)
    if any(d > 1 for d in pool.dilation):
        return _sliced_max(x, pool, init)
    return lax.reduce_window(x, init, lax.max, **_window_config(pool))


def _sliced_max(x: jax.Array, pool: _Pool, init: jax.Array) -> jax.Array:
    """Max over dilated windows as a maximum of strided slices, one per window offset
    (JAX cannot differentiate `reduce_window` max with window dilation)."""
    xp = lax.pad(x, init, [(0, 0, 0), *((lo, hi, 0) for lo, hi in pool.padding), (0, 0, 0)])
    out = None
    for offset in itertools.product(*(range(k) for k in pool.window)):
        start = (0, *(o * d for o, d in zip(offset, pool.dilation, strict=True)), 0)
        limit = (
            xp.shape[0],
            *(
                (n - 1) * s + b + 1
                for n, s, b in zip(pool.out, pool.stride, start[1:], strict=False)
            ),
            xp.shape[-1],
        )
        part = lax.slice(xp, start, limit, (1, *pool.stride, 1))
        out = part if out is None else jnp.maximum(out, part)
    return out


def _window_sum(x: jax.Array, pool: _Pool) -> jax.Array:
    """Sum over each window with zero padding, accumulated in float32 for half precision."""
    acc = accumulation_dtype(x.dtype) or x.dtype
    x = x.astype(acc)
    if _is_tiling(pool):
        return _block_reduce(x, pool, jnp.sum)
    return lax.reduce_window(x, np.array(0, acc), lax.add, **_window_config(pool))


def _window_counts(
    n: int, out: int, k: int, s: int, pad: tuple[int, int], include_pad: bool
) -> np.ndarray:
    """PyTorch's divisor along one dim: window clipped to the padded input (or the input)."""
    lo, hi = pad
    start = np.arange(out) * s - lo
    end = np.minimum(start + k, n + hi)
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, n)
    return (end - start).astype(np.float64)


def avg_pool(
    x: jax.Array,
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> jax.Array:
    """Mean over each window of ``x`` ``(batch, *spatial, ch)`` with implicit zero padding.

    The divisor counts the window's positions inside the padded input
    (``count_include_pad=True``) or inside the input only (False); positions that
    ``ceil_mode`` adds past the padding never count (PyTorch). TensorFlow's
    ``padding="SAME"`` average pooling is ``padding="same", count_include_pad=False``.
    """
    x = as_array(x, "x")
    check_floating(x, "x")
    pool = _pool_setup(x, window, stride, padding, 1, ceil_mode)
    count_include_pad = check_bool(count_include_pad, "count_include_pad")
    total = _window_sum(x, pool)
    spatial = x.shape[1:-1]
    counts = [
        _window_counts(n, o, k, s, p, count_include_pad)
        for n, o, k, s, p in zip(
            spatial, pool.out, pool.window, pool.stride, pool.declared_padding, strict=True
        )
    ]
    divisor = counts[0]
    for c in counts[1:]:
        divisor = np.multiply.outer(divisor, c)
    if np.all(divisor == divisor.flat[0]):
        return (total / divisor.flat[0]).astype(x.dtype)
    divisor = jnp.asarray(divisor[None, ..., None], total.dtype)
    return (total / divisor).astype(x.dtype)


def lp_pool(
    x: jax.Array,
    p: float,
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    ceil_mode: bool = False,
) -> jax.Array:
    """Power-average pooling ``(sum over window of x**p) ** (1/p)`` (no padding).

    `p` is a finite number > 0 (``p=1``: sum pooling; ``p=2``: L2 pooling; large p
    approaches max pooling of non-negative inputs). With ``ceil_mode`` a partial window sums
    the positions it covers. As in PyTorch, ``x**p`` is not sign-corrected: non-integer `p`
    needs non-negative `x`, and the gradient is infinite where a window sums to 0.
    """
    x = as_array(x, "x")
    check_floating(x, "x")
    p = check_positive_number(p, "p")
    pool = _pool_setup(x, window, stride, 0, 1, ceil_mode)
    total = _window_sum(x.astype(accumulation_dtype(x.dtype) or x.dtype) ** p, pool)
    return (total ** (1.0 / p)).astype(x.dtype)


def weighted_avg_pool(
    x: jax.Array,
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: Any = 0,
    sigma: float = 1.0,
) -> jax.Array:
    """Average weighted by a Gaussian of each position's distance from the window centre.

    Weight of offset ``u`` (per dim ``0..k-1``): ``exp(-|u - (k-1)/2|^2 / (2 sigma^2))``,
    normalised to sum to 1 over the window; `sigma` in pixels (> 0). Padding is zeros
    that keep their weight (like ``count_include_pad=True``).
    """
    x = as_array(x, "x")
    check_floating(x, "x")
    sigma = check_positive_number(sigma, "sigma")
    pool = _pool_setup(x, window, stride, padding)
    weights = gaussian_window(pool.window, sigma)
    acc = accumulation_dtype(x.dtype) or x.dtype
    ch = x.shape[-1]
    kernel = jnp.broadcast_to(jnp.asarray(weights, acc)[..., None, None], (*pool.window, 1, ch))
    nd = len(pool.window)
    dims = DIMENSION_NUMBERS[nd]
    y = lax.conv_general_dilated(
        x.astype(acc),
        kernel,
        window_strides=pool.stride,
        padding=pool.padding,
        dimension_numbers=dims,
        feature_group_count=ch,
    )
    return y.astype(x.dtype)


def gaussian_window(window: Sequence[int], sigma: float) -> np.ndarray:
    """The normalised Gaussian weights of `weighted_avg_pool`, shape `window`."""
    grids = np.meshgrid(*(np.arange(k) - (k - 1) / 2 for k in window), indexing="ij")
    w = np.exp(-sum(g**2 for g in grids) / (2 * sigma**2))
    return w / w.sum()
