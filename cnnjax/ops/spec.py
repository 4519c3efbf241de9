"""Types and formulas every op module shares (and nothing else, so any of them can import it):
the validated conv specs handed to the lowerings, the one table of channels-last layout
names for `lax`, the accumulation dtype, and the one output-size formula.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

Pairs = tuple[tuple[int, int], ...]

# `lax.conv_general_dilated` dimension numbers (input, kernel, output) per spatial rank:
# channels-last inputs and Flax/TF kernels `(*kernel_size, in, out)`.
DIMENSION_NUMBERS: dict[int, tuple[str, str, str]] = {
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


def effective_kernel_size(kernel_size: int, dilation: int = 1) -> int:
    """Extent of a dilated kernel: ``dilation*(k-1) + 1`` input positions."""
    return dilation * (kernel_size - 1) + 1


def window_count(
    n: int,
    kernel_size: int,
    stride: int,
    pad: tuple[int, int],
    dilation: int,
    ceil_mode: bool = False,
) -> int:
    """Output length of a conv or pool along one dim (arguments already validated):
    ``floor((n + lo + hi - dilation*(k-1) - 1) / stride) + 1``; with `ceil_mode` a partial
    last window counts when it starts inside the input or the low padding (PyTorch)."""
    lo, hi = pad
    span = n + lo + hi - effective_kernel_size(kernel_size, dilation)
    floor_out = span // stride + 1
    if ceil_mode and span % stride and (floor_out * stride < n + lo):
        return floor_out + 1
    return floor_out


def transpose_count(
    n: int,
    kernel_size: int,
    stride: int,
    pad: tuple[int, int],
    dilation: int,
    output_padding: int,
) -> int:
    """Output length of a transposed conv along one dim (PyTorch's ConvTranspose):
    ``(n-1)*stride - lo - hi + dilation*(k-1) + output_padding + 1`` (may be < 1)."""
    lo, hi = pad
    return (
        (n - 1) * stride - lo - hi + effective_kernel_size(kernel_size, dilation) + output_padding
    )


def conv_output_spatial(
    spatial: tuple[int, ...], kernel_size: tuple[int, ...], spec: ConvSpec
) -> tuple[int, ...]:
    """`window_count` of every spatial dim of a conv described by `spec`."""
    return tuple(
        window_count(n, k, s, p, d)
        for n, k, s, d, p in zip(
            spatial, kernel_size, spec.stride, spec.dilation, spec.padding, strict=True
        )
    )
