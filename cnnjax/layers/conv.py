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
from cnnjax.checks import check_int, int_tuple
from cnnjax.ops.validation import check_groups, check_input_rank

Initializer = Any
IntOrSeq = int | Sequence[int]


class _Parameters(nn.Module, kw_only=True):
    """The parameter fields `Conv` and `ConvTranspose` share (bias or not, dtypes and
    initializers); keyword-only, so each layer's own fields keep their positional order."""

    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros


def _kernel_and_bias(
    module: Conv | ConvTranspose, x: jnp.ndarray, *, transpose: bool
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray | None, int]:
    """Creates the layer's "kernel" (then "bias") parameter for input `x` and promotes all
    three to the compute dtype; returns `(x, kernel, bias, groups)`.

    Kernel `(*kernel_size, in_ch // groups, features)`, or `(*kernel_size, features //
    groups, in_ch)` for the transpose. Only what the shapes need is checked here; the op
    checks the rest.
    """
    nd = check_input_rank(x, "x")
    features = check_int(module.features, "features")
    ksize = int_tuple(module.kernel_size, nd, "kernel_size", minimum=1)
    in_ch = x.shape[-1]
    groups = check_groups(module.groups, in_ch, features)
    io = (features // groups, in_ch) if transpose else (in_ch // groups, features)
    kernel = module.param("kernel", module.kernel_init, (*ksize, *io), module.param_dtype)
    bias = (
        module.param("bias", module.bias_init, (features,), module.param_dtype)
        if module.use_bias
        else None
    )
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=module.dtype)
    return x, kernel, bias, groups


class Conv(_Parameters):
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

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x, kernel, bias, groups = _kernel_and_bias(self, x, transpose=False)
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


class ConvTranspose(_Parameters):
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

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x, kernel, bias, groups = _kernel_and_bias(self, x, transpose=True)
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
