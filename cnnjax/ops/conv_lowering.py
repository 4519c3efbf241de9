"""Alternative lowerings of a convolution to matrix products (same function as
`lax.conv_general_dilated`, different XLA programs).

XLA's CPU backend runs some convolution shapes, and their gradients, far below the speed of
its matrix product. `conv_slices_gemm` turns a conv into one GEMM: the input is padded
once, each of the ``prod(kernel_size)`` kernel offsets takes one strided slice of it, the
slices are concatenated on the channel axis (an im2col built from slices) and multiplied by
the kernel reshaped to ``(prod(kernel_size) * in_ch // groups, out_ch)``. Its gradient is a
GEMM plus pads and adds, which XLA fuses.

It computes exactly the products and sums of the direct conv, in a different summation
order (float32 rounding only). `cnnjax.ops.lowering.choose_conv_lowering` decides, per shape
and backend, when it runs; `tests/perf` checks it against the `lax` path. (The im2col by
`lax.conv_general_dilated_patches` never won; it lives on in `benchmarks/_conv_shapes.py`.)
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax.ops.spec import ConvSpec, accumulation_dtype, conv_output_spatial


def grouped_gemm(cols: jax.Array, kernel2d: jax.Array, groups: int, dtype: jnp.dtype) -> jax.Array:
    """``cols (..., groups * K) @ kernel2d`` blockwise per group -> ``(..., out_ch)``.

    `cols` holds, per group, `K` consecutive features; `kernel2d` is ``(K, groups, out/g)``.
    """
    acc = accumulation_dtype(dtype)
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
        return grouped_gemm(cols, kernel.reshape(num * sub_in, 1, out_ch), 1, x.dtype)
    # each group's K offsets x sub_in channels consecutive: (.., K, g, sub) -> (.., g, K, sub)
    cols = jnp.stack(slices, axis=-2).reshape(batch, *out, num, g, sub_in)
    cols = jnp.moveaxis(cols, -3, -2).reshape(batch, *out, g * num * sub_in)
    k2 = kernel.reshape(num * sub_in, g, out_ch // g)
    return grouped_gemm(cols, k2, g, x.dtype)
