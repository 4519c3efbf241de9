"""Alternative lowerings of a convolution to matrix products (same function as
`lax.conv_general_dilated`, different XLA programs).

XLA's CPU backend runs some convolution shapes, and their gradients, far below the speed of
its matrix product. Two rewrites turn a conv into one GEMM:

- `conv_slices_gemm`: the input is padded once, each of the ``prod(kernel_size)`` kernel
  offsets takes one strided slice of it, the slices are concatenated on the channel axis
  (an im2col built from slices) and multiplied by the kernel reshaped to
  ``(prod(kernel_size) * in_ch // groups, out_ch)``. Its gradient is a GEMM plus pads and adds,
  which XLA fuses.
- `conv_patches_gemm`: the same im2col built by `lax.conv_general_dilated_patches` (an
  identity-kernel conv), then the GEMM.

Both compute exactly the products and sums of the direct conv, in a different summation
order (float32 rounding only). `cnnjax.ops.lowering.choose_conv_lowering` decides, per shape
and backend, which one runs; `tests/perf` checks them against the `lax` path.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

if TYPE_CHECKING:  # lowering.py imports this module to register the lowerings
    from cnnjax.ops.lowering import ConvSpec

_PATCH_DIMENSION_NUMBERS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}


def conv_output_spatial(
    spatial: tuple[int, ...], kernel_size: tuple[int, ...], spec: ConvSpec
) -> tuple[int, ...]:
    """Output spatial sizes ``floor((n + lo + hi - d*(k - 1) - 1) / s) + 1`` per dim."""
    return tuple(
        (n + lo + hi - d * (k - 1) - 1) // s + 1
        for n, k, s, d, (lo, hi) in zip(
            spatial, kernel_size, spec.stride, spec.dilation, spec.padding, strict=True
        )
    )


def _gemm(cols: jax.Array, kernel2d: jax.Array, groups: int, dtype: jnp.dtype) -> jax.Array:
    """``cols (..., groups * K) @ kernel2d`` blockwise per group -> ``(..., out_ch)``.

    `cols` holds, per group, `K` consecutive features; `kernel2d` is ``(K, groups, out/g)``.
    """
    acc = jnp.float32 if jnp.dtype(dtype).itemsize < 4 else None  # as lowering.py
    if groups == 1:
        y = lax.dot_general(
            cols,
            kernel2d.reshape(kernel2d.shape[0], -1),
            (((cols.ndim - 1,), (0,)), ((), ())),
            preferred_element_type=acc,
        )
        return y.astype(dtype)
    lead = cols.shape[:-1]
    cols = cols.reshape(*lead, groups, -1)
    y = jnp.einsum("...gk,kgo->...go", cols, kernel2d, preferred_element_type=acc)
    return y.reshape(*lead, -1).astype(dtype)


def conv_slices_gemm(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """Convolution as kernel-offset slices of the padded input, concatenated, times one GEMM.

    x ``(batch, *spatial, in_ch)``, kernel ``(*k, in_ch // groups, out_ch)`` ->
    ``(batch, *out_spatial, out_ch)``; any stride, dilation, groups and zero padding.
    """
    *ks, sub_in, out_ch = kernel.shape
    g = spec.groups
    batch, *spatial, in_ch = x.shape
    out = conv_output_spatial(tuple(spatial), tuple(ks), spec)
    zero = np.zeros((), x.dtype)
    xp = lax.pad(x, zero, [(0, 0, 0), *((lo, hi, 0) for lo, hi in spec.padding), (0, 0, 0)])
    slices = []
    for offset in itertools.product(*(range(k) for k in ks)):
        start = [0] + [o * d for o, d in zip(offset, spec.dilation, strict=True)] + [0]
        limit = (
            [batch]
            + [b + (n - 1) * s + 1 for b, n, s in zip(start[1:-1], out, spec.stride, strict=True)]
            + [in_ch]
        )
        slices.append(lax.slice(xp, start, limit, [1, *spec.stride, 1]))
    num = math.prod(ks)
    if g == 1:
        cols = slices[0] if num == 1 else jnp.concatenate(slices, axis=-1)
        return _gemm(cols, kernel.reshape(num * sub_in, 1, out_ch), 1, x.dtype)
    # each group's K offsets x sub_in channels consecutive: (.., K, g, sub) -> (.., g, K, sub)
    cols = jnp.stack(slices, axis=-2).reshape(batch, *out, num, g, sub_in)
    cols = jnp.moveaxis(cols, -3, -2).reshape(batch, *out, g * num * sub_in)
    k2 = kernel.reshape(num * sub_in, g, out_ch // g)
    return _gemm(cols, k2, g, x.dtype)


def conv_patches_gemm(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """Convolution as `lax.conv_general_dilated_patches` (im2col) times one GEMM.

    The patches' features are ordered (in_ch, *kernel offsets); the kernel is permuted to
    match. Same arguments and result as `conv_slices_gemm`.
    """
    nd = kernel.ndim - 2
    *ks, sub_in, out_ch = kernel.shape
    g = spec.groups
    num = math.prod(ks)
    cols = lax.conv_general_dilated_patches(
        x,
        filter_shape=tuple(ks),
        window_strides=spec.stride,
        padding=spec.padding,
        rhs_dilation=spec.dilation,
        dimension_numbers=_PATCH_DIMENSION_NUMBERS[nd],
        precision=lax.Precision.HIGHEST,
    )
    # kernel (*k, sub_in, out) -> (sub_in, *k, out) -> (sub_in * K, g, out // g)
    k2 = jnp.moveaxis(kernel, -2, 0).reshape(sub_in * num, g, out_ch // g)
    return _gemm(cols, k2, g, x.dtype)
