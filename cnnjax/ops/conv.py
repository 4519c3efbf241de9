"""Convolution and its adjoint, channels-last, 1D/2D/3D.

Shapes: ``x`` is ``(batch, *spatial, channels)``; a conv kernel is
``(*kernel_size, in_ch // groups, out_ch)`` (Flax/TF layout). "Convolution" is
cross-correlation. The output dtype is the dtype of ``x`` (kernel and bias are cast to
it); half-precision inputs accumulate in float32.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from cnnjax.checks import check_int, int_tuple
from cnnjax.ops.arithmetic import check_output_padding, output_sizes, resolve_padding
from cnnjax.ops.lowering import conv_lowered, conv_transpose_lowered
from cnnjax.ops.spec import ConvSpec, ConvTransposeSpec, Pairs, transpose_count
from cnnjax.ops.validation import (
    as_array,
    check_bias,
    check_floating,
    check_groups,
    check_input_rank,
    check_padding_mode,
)

_JNP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _kernel_and_input(x: Any, kernel: Any) -> tuple[jax.Array, jax.Array, int]:
    kernel = as_array(kernel, "kernel")
    if kernel.ndim not in (3, 4, 5):
        raise ValueError(
            f"kernel must have shape (*kernel_size, in_ch // groups, out_ch) with 1, 2 or 3 "
            f"spatial dims (ndim 3, 4 or 5), got shape {tuple(kernel.shape)}"
        )
    nd = kernel.ndim - 2
    x = as_array(x, "x")
    check_input_rank(x, "x", nd)
    check_floating(x, "x")
    check_floating(kernel, "kernel")
    if any(s < 1 for s in kernel.shape):
        raise ValueError(f"kernel must not have empty dims, got shape {tuple(kernel.shape)}")
    if any(s < 1 for s in x.shape[1:]):
        raise ValueError(f"x must not have empty spatial or channel dims, got {tuple(x.shape)}")
    return x, kernel.astype(x.dtype), nd


def _check_kernel_channels(x_ch: int, kernel_shape: tuple[int, ...], groups: int) -> None:
    """A kernel ``(*k, in_ch // groups, out_ch)`` takes ``kernel.shape[-2] * groups`` channels."""
    expected = kernel_shape[-2] * groups
    if expected != x_ch:
        raise ValueError(
            f"channel mismatch: x has {x_ch} channels but kernel {kernel_shape} takes "
            f"kernel.shape[-2] * groups = {kernel_shape[-2]} * {groups} = {expected} input channels"
        )


def _apply_padding_mode(x: jax.Array, pairs: Pairs, padding_mode: str, padding: Any) -> jax.Array:
    """Pads `x` explicitly for the non-zero padding modes (PyTorch's size rules)."""
    spatial = x.shape[1:-1]
    for dim, (n, (lo, hi)) in enumerate(zip(spatial, pairs, strict=True)):
        too_big = (padding_mode == "reflect" and max(lo, hi) >= n) or (
            padding_mode == "circular" and max(lo, hi) > n
        )
        if too_big:
            bound = "smaller than" if padding_mode == "reflect" else "at most"
            source = f"padding={padding!r} resolves to" if isinstance(padding, str) else "padding"
            raise ValueError(
                f"{source} ({lo}, {hi}) along spatial dim {dim}, but padding_mode="
                f"{padding_mode!r} needs padding {bound} the input size {n}"
            )
    config = ((0, 0), *pairs, (0, 0))
    return jnp.pad(x, config, mode=_JNP_PAD_MODE[padding_mode])


def _operands(
    x: Any, kernel: Any, stride: Any, dilation: Any
) -> tuple[jax.Array, jax.Array, int, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The checked arrays, the spatial rank, kernel size, stride and dilation of a conv."""
    x, kernel, nd = _kernel_and_input(x, kernel)
    ks = tuple(kernel.shape[:nd])
    stride = int_tuple(stride, nd, "stride", minimum=1)
    dilation = int_tuple(dilation, nd, "dilation", minimum=1)
    return x, kernel, nd, ks, stride, dilation


def _check_transpose_kernel_channels(in_ch: int, kernel_shape: tuple[int, ...]) -> None:
    if kernel_shape[-1] != in_ch:
        raise ValueError(
            f"channel mismatch: x has {in_ch} channels but kernel {kernel_shape} "
            f"expects in_ch = kernel.shape[-1] = {kernel_shape[-1]} (the transposed kernel is "
            f"(*kernel_size, out_ch // groups, in_ch))"
        )


def _check_transpose_output(
    spatial: tuple[int, ...], ks: tuple[int, ...], spec: ConvTransposeSpec
) -> None:
    """Every output size of the transposed conv is >= 1 (padding may remove it all)."""
    out_spatial = tuple(
        transpose_count(n, k, s, pad, d, op)
        for n, k, s, d, pad, op in zip(
            spatial, ks, spec.stride, spec.dilation, spec.padding, spec.output_padding,
            strict=True,
        )
    )
    if any(o < 1 for o in out_spatial):
        raise ValueError(
            f"padding {spec.padding} removes the whole output of the transposed conv: output "
            f"spatial size would be {out_spatial} for input spatial size {spatial}"
        )


def conv(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: Any = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> jax.Array:
    """N-d convolution (cross-correlation), channels-last.

    Args:
      x: ``(batch, *spatial, in_ch)``, 1 to 3 spatial dims.
      kernel: ``(*kernel_size, in_ch // groups, out_ch)``; its rank sets the spatial rank.
      bias: optional ``(out_ch,)``.
      stride, dilation: int or one int per spatial dim, each >= 1.
      padding: int, one int per dim, ``(low, high)`` pairs per dim, ``"valid"``,
        ``"same"`` (output ``ceil(n/stride)``, odd extra on the high side, as TF/Keras) or
        ``"causal"`` (1D: ``dilation*(k-1)`` on the low side only).
      groups: input and output channels are split into this many independent groups.
      padding_mode: ``"zeros"``, ``"reflect"`` (padding < input size), ``"replicate"`` or
        ``"circular"`` (padding <= input size).

    Returns:
      ``(batch, *out_spatial, out_ch)`` with ``out = floor((n + lo + hi - d*(k-1) - 1)/s) + 1``.
    """
    x, kernel, nd, ks, stride, dilation = _operands(x, kernel, stride, dilation)
    padding_mode = check_padding_mode(padding_mode)
    in_ch, out_ch = x.shape[-1], kernel.shape[-1]
    groups = check_groups(groups, in_ch, out_ch)
    _check_kernel_channels(in_ch, tuple(kernel.shape), groups)
    bias = check_bias(bias, out_ch)
    spatial = tuple(x.shape[1:-1])
    pairs = resolve_padding(padding, spatial, ks, stride, dilation)
    output_sizes(spatial, ks, stride, pairs, dilation)
    if padding_mode != "zeros" and any(lo or hi for lo, hi in pairs):
        x = _apply_padding_mode(x, pairs, padding_mode, padding)
        pairs = ((0, 0),) * nd
    y = conv_lowered(x, kernel, ConvSpec(stride, pairs, dilation, groups))
    return y if bias is None else y + bias.astype(y.dtype)


def conv_transpose(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: Any = 0,
    output_padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
) -> jax.Array:
    """Transposed convolution: the adjoint of `conv` (its gradient w.r.t. the input).

    ``conv_transpose(y, kernel, stride=s, padding=p, ...)`` equals the vector-Jacobian
    product of ``x -> conv(x, kernel, stride=s, padding=p, ...)`` applied to ``y``, for an
    ``x`` of the output size below.

    Args:
      x: ``(batch, *spatial, in_ch)``.
      kernel: the forward conv's kernel, ``(*kernel_size, out_ch // groups, in_ch)``.
      bias: optional ``(out_ch,)``.
      padding: int, one int per dim or ``(low, high)`` pairs (or ``"valid"``): removed from
        the output, as PyTorch's ConvTranspose.
      output_padding: extra rows on the high side (int or per dim), each smaller than the
        stride or the dilation of that dim; it disambiguates the output size when stride > 1.

    Returns:
      ``(batch, *out_spatial, out_ch)`` with
      ``out = (n-1)*stride - lo - hi + dilation*(k-1) + output_padding + 1``.
    """
    x, kernel, nd, ks, stride, dilation = _operands(x, kernel, stride, dilation)
    output_padding = int_tuple(output_padding, nd, "output_padding")
    for op, s, d in zip(output_padding, stride, dilation, strict=True):
        check_output_padding(op, s, d)
    in_ch = x.shape[-1]
    groups = check_groups(check_int(groups, "groups"), in_ch, kernel.shape[-2] * groups)
    out_ch = kernel.shape[-2] * groups
    _check_transpose_kernel_channels(in_ch, tuple(kernel.shape))
    bias = check_bias(bias, out_ch)
    spatial = tuple(x.shape[1:-1])
    pairs = resolve_padding(padding, spatial, ks, stride, dilation, allowed_strings=("valid",))
    spec = ConvTransposeSpec(stride, pairs, output_padding, dilation, groups)
    _check_transpose_output(spatial, ks, spec)
    y = conv_transpose_lowered(x, kernel, spec)
    return y if bias is None else y + bias.astype(y.dtype)
