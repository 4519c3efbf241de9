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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax.ops import onednn
from cnnjax.ops.conv_lowering import conv_patches_gemm, conv_slices_gemm

Pairs = tuple[tuple[int, int], ...]

_DIMENSION_NUMBERS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}


class ConvSpec(NamedTuple):
    """A validated convolution: per spatial dim stride, (low, high) zero padding, dilation."""

    stride: tuple[int, ...]
    padding: Pairs
    dilation: tuple[int, ...]
    groups: int


class ConvTransposeSpec(NamedTuple):
    """A validated transposed convolution (the adjoint of the `ConvSpec` conv it mirrors)."""

    stride: tuple[int, ...]
    padding: Pairs
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int


def accumulation_dtype(dtype: jnp.dtype) -> jnp.dtype | None:
    """float32 accumulation for half-precision inputs (bfloat16/float16), else the default."""
    return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else None


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
        dimension_numbers=_DIMENSION_NUMBERS[nd],
        feature_group_count=spec.groups,
        preferred_element_type=accumulation_dtype(x.dtype),
    )
    return y.astype(x.dtype)


CONV_LOWERINGS: dict[str, Callable[[jax.Array, jax.Array, ConvSpec], jax.Array]] = {
    "xla": conv_xla,
    "slices_gemm": conv_slices_gemm,
    "patches_gemm": conv_patches_gemm,
    "onednn": onednn.conv,  # oneDNN hook (cnnjax/ops/onednn)
}


def choose_conv_lowering(
    x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], spec: ConvSpec, dtype: jnp.dtype
) -> str:
    """Name of the `CONV_LOWERINGS` entry for this conv (the single dispatch point).

    Off the CPU, XLA's native convolution (cuDNN / TPU convs). On the CPU, one GEMM over
    kernel-offset slices (`conv_slices_gemm`) where it measured faster, forward + backward,
    on the 2-core AVX-512 machine (jax 0.10.2; `python -m benchmarks._conv_shapes`):
    pointwise (1x1) convs, e.g. ResNet's strided 1x1 projection 75 -> 19 ms and a U-Net
    1x1 head 16 -> 4 ms, and convs with at most 16 output positions per image (ResNet's
    4x4 stage, 52 -> 39 ms and 88 -> 72 ms); whole ResNet-18 CIFAR train step ~1.3x.
    Elsewhere (3x3 convs on larger maps) XLA's conv was 1.3-4x faster than either GEMM
    rewrite; im2col by `conv_general_dilated_patches` never won. Single-input-channel convs
    (MNIST's first layer) were faster alone (12 -> 8 ms) but not inside the whole step.
    """
    if jax.default_backend() != "cpu":
        return "xla"
    if onednn.wants_conv(x_shape, kernel_shape, spec.groups, dtype):  # oneDNN hook
        return "onednn"
    nd = len(kernel_shape) - 2
    ks = tuple(kernel_shape[:nd])
    out_positions = math.prod(
        (n + lo + hi - d * (k - 1) - 1) // s + 1
        for n, k, s, d, (lo, hi) in zip(
            x_shape[1:-1], ks, spec.stride, spec.dilation, spec.padding, strict=True
        )
    )
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
        dimension_numbers=_DIMENSION_NUMBERS[nd],
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
    Measured on the 2-core CPU (jax 0.10.2, forward+backward, (8, 64, 64, 32) -> 16 ch):
    about 3x faster than `conv_transpose_xla` and than `lax.conv_transpose`.
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
