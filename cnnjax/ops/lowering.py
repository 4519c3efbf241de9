"""How each convolution is lowered to XLA: the one place that chooses between equivalent
implementations (by shape, dtype and backend). Every lowering computes the same function;
tests check each one against the general `lax` path.

`conv` and `conv_transpose` in `cnnjax.ops.conv` validate their arguments, resolve padding
to explicit ``(low, high)`` pairs, then call `conv_lowered` / `conv_transpose_lowered`.
To add a lowering: write ``f(x, kernel, spec) -> y`` below, register it in
`CONV_LOWERINGS` (or `CONV_TRANSPOSE_LOWERINGS`) and teach the matching ``choose_*``
function when to pick it.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax.ops import onednn
from cnnjax.ops.conv_lowering import conv_slices_gemm
from cnnjax.ops.spec import (
    DIMENSION_NUMBERS,
    ConvSpec,
    ConvTransposeSpec,
    accumulation_dtype,
    conv_output_spatial,
)

__all__ = [
    "CONV_LOWERINGS",
    "CONV_TRANSPOSE_LOWERINGS",
    "ConvSpec",
    "ConvTransposeSpec",
    "choose_conv_lowering",
    "choose_conv_transpose_lowering",
    "conv_lowered",
    "conv_transpose_lowered",
]


# --------------------------------------------------------------------------- conv


def conv_xla(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """General path: `lax.conv_general_dilated` (any stride, dilation, groups, padding)."""
    nd = kernel.ndim - 2
    y = lax.conv_general_dilated(
        x,
        kernel,
        window_strides=spec.stride,
        padding=spec.padding,
        rhs_dilation=spec.dilation,
        dimension_numbers=DIMENSION_NUMBERS[nd],
        feature_group_count=spec.groups,
        preferred_element_type=accumulation_dtype(x.dtype),
    )
    return y.astype(x.dtype)


CONV_LOWERINGS: dict[str, Callable[[jax.Array, jax.Array, ConvSpec], jax.Array]] = {
    "xla": conv_xla,
    "slices_gemm": conv_slices_gemm,
    "onednn": onednn.conv,  # oneDNN hook (cnnjax/ops/onednn)
}


def choose_conv_lowering(
    x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], spec: ConvSpec, dtype: jnp.dtype
) -> str:
    """Name of the `CONV_LOWERINGS` entry for this conv (the single dispatch point).

    Off the CPU, XLA's native convolution (cuDNN / TPU convs). On the CPU, one GEMM over
    kernel-offset slices (`conv_slices_gemm`) for pointwise (1x1) convs and for convs with at
    most 16 output positions per image (ResNet's last stage), where XLA's CPU conv and its
    gradient run far below the speed of its matrix product; XLA's conv elsewhere. The
    measurements behind these rules are in the README and `python -m benchmarks._conv_shapes`.
    """
    if jax.default_backend() != "cpu":
        return "xla"
    if onednn.wants_conv(x_shape, kernel_shape, spec.groups, dtype):  # oneDNN hook
        return "onednn"
    nd = len(kernel_shape) - 2
    ks = tuple(kernel_shape[:nd])
    out_positions = math.prod(conv_output_spatial(tuple(x_shape[1:-1]), ks, spec))
    if all(k == 1 for k in ks):
        return "slices_gemm"
    if out_positions <= 16 and spec.groups == 1:
        return "slices_gemm"
    return "xla"


def conv_lowered(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """Runs the lowering `choose_conv_lowering` picks."""
    name = choose_conv_lowering(x.shape, kernel.shape, spec, x.dtype)
    return CONV_LOWERINGS[name](x, kernel, spec)


# ------------------------------------------------------------------ conv_transpose


def conv_transpose_xla(x: jax.Array, kernel: jax.Array, spec: ConvTransposeSpec) -> jax.Array:
    """General path: the input gradient of `conv` written as a conv with input dilation.

    `kernel` is the forward conv's ``(*k, out_ch // groups, in_ch)``; it is flipped in space
    and its channel axes swapped within each group.
    """
    nd = kernel.ndim - 2
    *ks, sub_out, in_ch = kernel.shape
    g = spec.groups
    k = jnp.flip(kernel, axis=tuple(range(nd)))
    k = k.reshape(*ks, sub_out, g, in_ch // g)
    k = k.transpose(*range(nd), nd + 2, nd + 1, nd).reshape(*ks, in_ch // g, g * sub_out)
    padding = tuple(
        (d * (kk - 1) - lo, d * (kk - 1) - hi + op)
        for kk, d, (lo, hi), op in zip(
            ks, spec.dilation, spec.padding, spec.output_padding, strict=True
        )
    )
    y = lax.conv_general_dilated(
        x,
        k,
        window_strides=(1,) * nd,
        padding=padding,
        lhs_dilation=spec.stride,
        rhs_dilation=spec.dilation,
        dimension_numbers=DIMENSION_NUMBERS[nd],
        feature_group_count=g,
        preferred_element_type=accumulation_dtype(x.dtype),
    )
    return y.astype(x.dtype)


def conv_transpose_kernel_eq_stride(
    x: jax.Array, kernel: jax.Array, spec: ConvTransposeSpec
) -> jax.Array:
    """Fast path when kernel size == stride and dilation == 1 (U-Net "up-conv 2x2").

    Windows do not overlap, so every input pixel writes its own ``k1 x k2 ...`` block: one
    einsum then depth-to-space, then the padding crop / output_padding as a `lax.pad`.
    Chosen because it avoids the input-dilated conv, which wastes most of its products on
    inserted zeros.
    """
    nd = kernel.ndim - 2
    *ks, sub_out, in_ch = kernel.shape
    g = spec.groups
    batch, *spatial, _ = x.shape
    letters = iter(
        string.ascii_letters.replace("b", "").replace("g", "").replace("i", "").replace("o", "")
    )
    n = [next(letters) for _ in range(nd)]
    k = [next(letters) for _ in range(nd)]
    blocks = "".join(a + b for a, b in zip(n, k, strict=True))
    expr = f"b{''.join(n)}gi,{''.join(k)}ogi->b{blocks}go"
    y = jnp.einsum(
        expr,
        x.reshape(batch, *spatial, g, in_ch // g),
        kernel.reshape(*ks, sub_out, g, in_ch // g),
        preferred_element_type=accumulation_dtype(x.dtype),
    )
    y = y.reshape(batch, *(s * kk for s, kk in zip(spatial, ks, strict=True)), g * sub_out)
    if any(lo or hi or op for (lo, hi), op in zip(spec.padding, spec.output_padding, strict=True)):
        zero = np.zeros((), y.dtype)  # a constant, not a tracer (see pooling._lowest)
        config = [(0, 0, 0)]
        config += [
            (-lo, op - hi, 0)
            for (lo, hi), op in zip(spec.padding, spec.output_padding, strict=True)
        ]
        config += [(0, 0, 0)]
        y = lax.pad(y, zero, config)
    return y.astype(x.dtype)


CONV_TRANSPOSE_LOWERINGS: dict[
    str, Callable[[jax.Array, jax.Array, ConvTransposeSpec], jax.Array]
] = {
    "xla": conv_transpose_xla,
    "kernel_eq_stride": conv_transpose_kernel_eq_stride,
    "onednn": onednn.conv_transpose,  # oneDNN hook (cnnjax/ops/onednn)
}


def choose_conv_transpose_lowering(
    x_shape: tuple[int, ...],
    kernel_shape: tuple[int, ...],
    spec: ConvTransposeSpec,
    dtype: jnp.dtype,
) -> str:
    """Name of the `CONV_TRANSPOSE_LOWERINGS` entry for this transposed conv."""
    if onednn.wants_conv_transpose(  # oneDNN hook
        x_shape, kernel_shape, spec.stride, spec.output_padding, spec.groups, dtype
    ):
        return "onednn"
    if tuple(kernel_shape[:-2]) == spec.stride and all(d == 1 for d in spec.dilation):
        return "kernel_eq_stride"
    return "xla"


def conv_transpose_lowered(x: jax.Array, kernel: jax.Array, spec: ConvTransposeSpec) -> jax.Array:
    """Runs the lowering `choose_conv_transpose_lowering` picks."""
    name = choose_conv_transpose_lowering(x.shape, kernel.shape, spec, x.dtype)
    return CONV_TRANSPOSE_LOWERINGS[name](x, kernel, spec)
