"""Blocks built from the layers: conv -> norm -> activation (-> pool) and ResNet residual
blocks (v1.5 and pre-activation); the U-Net stages are in `cnnjax.layers.unet`.

Blocks take factories, not instances (Flax ImageNet example style): `conv` is a
`functools.partial(Conv, dtype=..., kernel_init=...)`, `norm` comes from
`cnnjax.layers.make_norm` (None for no normalization; convs then get a bias). Blocks work in
1, 2 or 3 spatial dims: the rank of the input decides. Default "padding=None" is PyTorch's
symmetric `dilation*(k - 1)//2`, which keeps the size at stride 1 (odd k) and gives
`ceil(n / stride)` like torchvision's ResNets, with the same window alignment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.checks import int_tuple
from cnnjax.layers.conv import Conv
from cnnjax.layers.norm import NormFactory
from cnnjax.layers.pooling import MaxPool

ModuleFactory = Callable[..., nn.Module]
Activation = Callable[[jnp.ndarray], jnp.ndarray]
IntOrSeq = int | Sequence[int]


def symmetric_padding(kernel_size: IntOrSeq, dilation: IntOrSeq, x_ndim: int) -> tuple:
    """PyTorch-style padding `dilation*(k - 1)//2` on both sides of every spatial dim."""
    ks = int_tuple(kernel_size, x_ndim - 2, "kernel_size", minimum=1)
    ds = int_tuple(dilation, x_ndim - 2, "dilation", minimum=1)
    return tuple((d * (k - 1) // 2,) * 2 for k, d in zip(ks, ds, strict=True))


def _apply_norm(norm: NormFactory | None, x: jnp.ndarray, name: str, zero_init: bool = False):
    if norm is None:
        return x
    if zero_init:
        return norm(name=name, scale_init=nn.initializers.zeros)(x)
    return norm(name=name)(x)


class ConvNormAct(nn.Module):
    """conv -> norm -> activation (-> max pool with stride = window when `pool` is set).

    `use_bias=None` gives the conv a bias only when there is no norm (a norm's shift makes it
    redundant). `act=None` skips the activation.
    """

    features: int
    kernel_size: IntOrSeq = 3
    stride: IntOrSeq = 1
    padding: Any = None
    dilation: IntOrSeq = 1
    groups: int = 1
    conv: ModuleFactory = Conv
    norm: NormFactory | None = None
    act: Activation | None = nn.relu
    pool: IntOrSeq | None = None
    use_bias: bool | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        padding = self.padding
        if padding is None:
            padding = symmetric_padding(self.kernel_size, self.dilation, jnp.ndim(x))
        use_bias = self.norm is None if self.use_bias is None else self.use_bias
        y = self.conv(
            features=self.features,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=padding,
            dilation=self.dilation,
            groups=self.groups,
            use_bias=use_bias,
            name="conv",
        )(x)
        y = _apply_norm(self.norm, y, "norm")
        if self.act is not None:
            y = self.act(y)
        if self.pool is not None:
            y = MaxPool(self.pool, name="pool")(y)
        return y


def _last_kernel_init(conv: ModuleFactory, zero: bool) -> ModuleFactory:
    """The conv factory, with a zero kernel initializer when `zero` (branch starts at 0)."""
    if not zero:
        return conv

    def make(**kwargs):
        return conv(kernel_init=nn.initializers.zeros, **kwargs)

    return make


def _projection(
    x: jnp.ndarray,
    out_features: int,
    stride: IntOrSeq,
    conv: ModuleFactory,
    norm: NormFactory | None,
    with_norm: bool = True,
) -> jnp.ndarray:
    """Identity when shapes already match, else a strided 1x1 conv (+ norm) projection."""
    strides = int_tuple(stride, jnp.ndim(x) - 2, "stride", minimum=1)
    if x.shape[-1] == out_features and all(s == 1 for s in strides):
        return x
    y = conv(
        features=out_features,
        kernel_size=1,
        stride=stride,
        padding=0,
        use_bias=norm is None,
        name="proj_conv",
    )(x)
    return _apply_norm(norm, y, "proj_norm") if with_norm else y


class ResidualBlock(nn.Module):
    """ResNet residual block, post- or pre-activation, basic or bottleneck (one module for
    the four variants, as big_vision's `bit.ResidualUnit`).

    Branch convs `conv1..`: basic 3x3 (stride) -> 3x3; bottleneck 1x1 -> 3x3 (stride, v1.5)
    -> 1x1 to `features * 4`. Shortcut: identity when shapes match, else a strided 1x1
    `proj_conv` (+ `proj_norm`).

    Post-activation (v1, `preactivation=False`): every conv is followed by its norm
    (`norm1..`), ReLU between convs, then `act(branch + shortcut)`.
    Pre-activation (He et al. 2016, "Identity mappings"): `norm1` -> act on the input, then
    conv, and norm -> act between convs; the sum is returned without activation and a
    projection shortcut takes the pre-activated input.

    `zero_init_last` makes the block start as the identity (Goyal et al. 2017): the last
    norm's scale is zero-initialised (post-activation with a norm), else the last conv's
    kernel.
    """

    features: int
    stride: IntOrSeq = 1
    conv: ModuleFactory = Conv
    norm: NormFactory | None = None
    act: Activation = nn.relu
    zero_init_last: bool = False
    bottleneck: bool = False
    preactivation: bool = False

    @property
    def expansion(self) -> int:
        """Output channels per `features`: 4 for bottlenecks, 1 for basic blocks."""
        return 4 if self.bottleneck else 1

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        out = self.features * self.expansion
        # (kernel size, features, strided) of each branch conv
        if self.bottleneck:
            layers = ((1, self.features, False), (3, self.features, True), (1, out, False))
        else:
            layers = ((3, self.features, True), (3, out, False))
        if self.preactivation:
            y = self.act(_apply_norm(self.norm, x, "norm1"))
            shortcut = _projection(y, out, self.stride, self.conv, None, False)
            if shortcut is y:
                shortcut = x
            zero_kernel = self.zero_init_last
        else:
            y = x
            shortcut = _projection(x, out, self.stride, self.conv, self.norm)
            zero_kernel = self.zero_init_last and self.norm is None
        for i, (k, width, strided) in enumerate(layers, start=1):
            last = i == len(layers)
            conv = _last_kernel_init(self.conv, zero_kernel) if last else self.conv
            y = conv(
                features=width,
                kernel_size=k,
                stride=self.stride if strided else 1,
                padding=k // 2,
                use_bias=self.norm is None,
                name=f"conv{i}",
            )(y)
            if self.preactivation:
                if not last:
                    y = self.act(_apply_norm(self.norm, y, f"norm{i + 1}"))
            else:
                y = _apply_norm(self.norm, y, f"norm{i}", zero_init=self.zero_init_last and last)
                if not last:
                    y = self.act(y)
        return y + shortcut if self.preactivation else self.act(y + shortcut)


class BasicBlock(ResidualBlock):
    """ResNet basic block: 3x3 conv (stride) -> norm -> act -> 3x3 conv -> norm, plus the
    shortcut, then act. Output channels: `features`."""


class Bottleneck(ResidualBlock):
    """ResNet v1.5 bottleneck: 1x1 -> 3x3 (stride here, not on the 1x1) -> 1x1 conv to
    `features * 4`, each followed by norm, act after the sum with the shortcut."""

    bottleneck: bool = True


class PreActBasicBlock(ResidualBlock):
    """Pre-activation basic block: (norm -> act -> 3x3 conv) twice, plus the shortcut."""

    preactivation: bool = True


class PreActBottleneck(ResidualBlock):
    """Pre-activation bottleneck: (norm -> act -> conv) with 1x1, 3x3 (stride), 1x1 convs,
    output `features * 4`, plus the shortcut."""

    bottleneck: bool = True
    preactivation: bool = True
