"""Convolution layers: Flax Linen modules over `cnnjax.ops.conv` and `cnnjax.ops.conv_transpose`.

Parameters follow the Flax/TF layout: `Conv` kernels are `(*kernel_size, in_ch // groups,
features)`; `ConvTranspose` kernels are `(*kernel_size, features // groups, in_ch)`, the kernel
of the convolution it is the adjoint of. Both keep their parameters in `param_dtype` and
compute in `dtype` (None: the promoted dtype of input and parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from cnnjax import ops

Initializer = Any
IntOrSeq = int | Sequence[int]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def kernel_tuple(kernel_size: Any, x_ndim: int, name: str = "kernel_size") -> tuple[int, ...]:
    """`kernel_size` (an int, or one int per spatial dim) as a tuple matching an input of rank
    `x_ndim` = batch + spatial dims + channels."""
    spatial = x_ndim - 2
    if spatial not in (1, 2, 3):
        raise ValueError(
            f"input must be (batch, *spatial, channels) with 1, 2 or 3 spatial dims; "
            f"got rank {x_ndim}"
        )
    if _is_int(kernel_size):
        sizes = (kernel_size,) * spatial
    elif isinstance(kernel_size, Sequence) and all(_is_int(k) for k in kernel_size):
        sizes = tuple(kernel_size)
        if len(sizes) != spatial:
            raise ValueError(
                f"{name}={kernel_size!r} has {len(sizes)} entries but the input has "
                f"{spatial} spatial dims (rank {x_ndim}, channels-last)"
            )
    else:
        raise TypeError(f"{name} must be an int or a sequence of ints; got {kernel_size!r}")
    if any(k < 1 for k in sizes):
        raise ValueError(f"{name} entries must be >= 1; got {kernel_size!r}")
    return sizes


def check_groups(groups: Any, in_ch: int, out_ch: int, layer: str) -> int:
    """`groups` is a positive int dividing both channel counts."""
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"{layer}: groups must be a positive int; got {groups!r}")
    if in_ch % groups or out_ch % groups:
        raise ValueError(
            f"{layer}: groups={groups} must divide both the input channels ({in_ch}) and "
            f"the output features ({out_ch})"
        )
    return groups


def _check_features(features: Any, layer: str) -> int:
    if not _is_int(features) or features < 1:
        raise ValueError(f"{layer}: features must be a positive int; got {features!r}")
    return features


class Conv(nn.Module):
    """N-d convolution (cross-correlation) of `(batch, *spatial, in_ch)` inputs.

    Every option of `cnnjax.ops.conv` (stride, padding as int / per-dim / (lo, hi) pairs /
    "valid" / "same" / "causal", dilation, groups, padding_mode "zeros" / "reflect" /
    "replicate" / "circular"). The default padding is 0 ("valid"), as in PyTorch and Keras.
    Output: `(batch, *out_spatial, features)`.
    """

    features: int
    kernel_size: IntOrSeq
    stride: IntOrSeq = 1
    padding: Any = 0
    dilation: IntOrSeq = 1
    groups: int = 1
    padding_mode: str = "zeros"
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        features = _check_features(self.features, "Conv")
        ksize = kernel_tuple(self.kernel_size, jnp.ndim(x))
        in_ch = x.shape[-1]
        groups = check_groups(self.groups, in_ch, features, "Conv")
        kernel = self.param(
            "kernel", self.kernel_init, (*ksize, in_ch // groups, features), self.param_dtype
        )
        bias = (
            self.param("bias", self.bias_init, (features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        return ops.conv(
            x,
            kernel,
            bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=groups,
            padding_mode=self.padding_mode,
        )


class ConvTranspose(nn.Module):
    """N-d transposed convolution, the adjoint (input gradient) of `Conv` with the same kernel.

    Output size per dim: `(n - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1`
    (PyTorch's ConvTranspose). `kernel_size=2, stride=2` is U-Net's "up-conv 2x2".
    Kernel: `(*kernel_size, features // groups, in_ch)`.
    """

    features: int
    kernel_size: IntOrSeq
    stride: IntOrSeq = 1
    padding: Any = 0
    output_padding: IntOrSeq = 0
    dilation: IntOrSeq = 1
    groups: int = 1
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        features = _check_features(self.features, "ConvTranspose")
        ksize = kernel_tuple(self.kernel_size, jnp.ndim(x))
        in_ch = x.shape[-1]
        groups = check_groups(self.groups, in_ch, features, "ConvTranspose")
        kernel = self.param(
            "kernel", self.kernel_init, (*ksize, features // groups, in_ch), self.param_dtype
        )
        bias = (
            self.param("bias", self.bias_init, (features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        return ops.conv_transpose(
            x,
            kernel,
            bias,
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            dilation=self.dilation,
            groups=groups,
        )
