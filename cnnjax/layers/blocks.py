"""Blocks built from the layers: conv -> norm -> activation (-> pool), ResNet residual blocks
(v1.5 and pre-activation) and U-Net stages.

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
import jax
import jax.numpy as jnp

from cnnjax.layers.conv import Conv, ConvTranspose, kernel_tuple
from cnnjax.layers.norm import NormFactory
from cnnjax.layers.pooling import MaxPool

ModuleFactory = Callable[..., nn.Module]
Activation = Callable[[jnp.ndarray], jnp.ndarray]
IntOrSeq = int | Sequence[int]

UPSAMPLE_MODES: tuple[str, ...] = ("transpose", "resize")
UNET_PADDINGS: tuple[str, ...] = ("same", "valid")


def symmetric_padding(kernel_size: IntOrSeq, dilation: IntOrSeq, x_ndim: int) -> tuple:
    """PyTorch-style padding `dilation*(k - 1)//2` on both sides of every spatial dim."""
    ks = kernel_tuple(kernel_size, x_ndim)
    ds = kernel_tuple(dilation, x_ndim, "dilation")
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
    strides = kernel_tuple(stride, jnp.ndim(x), "stride")
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


class BasicBlock(nn.Module):
    """ResNet basic block: 3x3 conv (stride) -> norm -> act -> 3x3 conv -> norm, plus the
    shortcut (identity or 1x1 projection), then act. Output channels: `features`.

    `zero_init_last` zero-initialises the last norm's scale (the last conv's kernel when there
    is no norm), so the block starts as the identity (Goyal et al. 2017).
    """

    features: int
    stride: IntOrSeq = 1
    conv: ModuleFactory = Conv
    norm: NormFactory | None = None
    act: Activation = nn.relu
    zero_init_last: bool = False

    expansion = 1

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        bias = self.norm is None
        y = self.conv(
            features=self.features,
            kernel_size=3,
            stride=self.stride,
            padding=1,
            use_bias=bias,
            name="conv1",
        )(x)
        y = self.act(_apply_norm(self.norm, y, "norm1"))
        last_conv = _last_kernel_init(self.conv, self.zero_init_last and self.norm is None)
        y = last_conv(
            features=self.features, kernel_size=3, padding=1, use_bias=bias, name="conv2"
        )(y)
        y = _apply_norm(self.norm, y, "norm2", zero_init=self.zero_init_last)
        shortcut = _projection(x, self.features, self.stride, self.conv, self.norm)
        return self.act(y + shortcut)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 conv -> 3x3 conv (stride here, not on the 1x1) -> 1x1 conv
    to `features * 4`, each followed by norm, act after the sum with the shortcut."""

    features: int
    stride: IntOrSeq = 1
    conv: ModuleFactory = Conv
    norm: NormFactory | None = None
    act: Activation = nn.relu
    zero_init_last: bool = False

    expansion = 4

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        bias = self.norm is None
        out = self.features * self.expansion
        y = self.conv(features=self.features, kernel_size=1, use_bias=bias, name="conv1")(x)
        y = self.act(_apply_norm(self.norm, y, "norm1"))
        y = self.conv(
            features=self.features,
            kernel_size=3,
            stride=self.stride,
            padding=1,
            use_bias=bias,
            name="conv2",
        )(y)
        y = self.act(_apply_norm(self.norm, y, "norm2"))
        last_conv = _last_kernel_init(self.conv, self.zero_init_last and self.norm is None)
        y = last_conv(features=out, kernel_size=1, use_bias=bias, name="conv3")(y)
        y = _apply_norm(self.norm, y, "norm3", zero_init=self.zero_init_last)
        shortcut = _projection(x, out, self.stride, self.conv, self.norm)
        return self.act(y + shortcut)


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, "Identity mappings"): norm -> act -> conv,
    twice, added to the shortcut with no activation after the sum. A projection shortcut
    takes the pre-activated input. `zero_init_last` zero-initialises the last conv kernel."""

    features: int
    stride: IntOrSeq = 1
    conv: ModuleFactory = Conv
    norm: NormFactory | None = None
    act: Activation = nn.relu
    zero_init_last: bool = False

    expansion = 1

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        bias = self.norm is None
        pre = self.act(_apply_norm(self.norm, x, "norm1"))
        shortcut = _projection(pre, self.features, self.stride, self.conv, None, False)
        if shortcut is pre:
            shortcut = x
        y = self.conv(
            features=self.features,
            kernel_size=3,
            stride=self.stride,
            padding=1,
            use_bias=bias,
            name="conv1",
        )(pre)
        y = self.act(_apply_norm(self.norm, y, "norm2"))
        last_conv = _last_kernel_init(self.conv, self.zero_init_last)
        y = last_conv(
            features=self.features, kernel_size=3, padding=1, use_bias=bias, name="conv2"
        )(y)
        return y + shortcut


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: (norm -> act -> conv) with 1x1, 3x3 (stride), 1x1 convs,
    output `features * 4`, added to the shortcut."""

    features: int
    stride: IntOrSeq = 1
    conv: ModuleFactory = Conv
    norm: NormFactory | None = None
    act: Activation = nn.relu
    zero_init_last: bool = False

    expansion = 4

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        bias = self.norm is None
        out = self.features * self.expansion
        pre = self.act(_apply_norm(self.norm, x, "norm1"))
        shortcut = _projection(pre, out, self.stride, self.conv, None, False)
        if shortcut is pre:
            shortcut = x
        y = self.conv(features=self.features, kernel_size=1, use_bias=bias, name="conv1")(pre)
        y = self.act(_apply_norm(self.norm, y, "norm2"))
        y = self.conv(
            features=self.features,
            kernel_size=3,
            stride=self.stride,
            padding=1,
            use_bias=bias,
            name="conv2",
        )(y)
        y = self.act(_apply_norm(self.norm, y, "norm3"))
        last_conv = _last_kernel_init(self.conv, self.zero_init_last)
        y = last_conv(features=out, kernel_size=1, use_bias=bias, name="conv3")(y)
        return y + shortcut


def check_unet_padding(padding: Any) -> str:
    if padding not in UNET_PADDINGS:
        raise ValueError(f"padding must be one of {UNET_PADDINGS}; got {padding!r}")
    return padding


class DoubleConv(nn.Module):
    """U-Net's two 3x3 conv -> norm -> act steps. `padding="valid"` (the paper) shrinks each
    spatial dim by 4; `"same"` keeps it."""

    features: int
    padding: str = "same"
    conv: ModuleFactory = Conv
    norm: NormFactory | None = None
    act: Activation = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        pad = 1 if check_unet_padding(self.padding) == "same" else 0
        for i in (1, 2):
            x = ConvNormAct(
                self.features,
                3,
                padding=pad,
                conv=self.conv,
                norm=self.norm,
                act=self.act,
                name=f"block{i}",
            )(x)
        return x


class UNetDown(nn.Module):
    """Encoder stage: 2x2 max pool (stride 2) then `DoubleConv`."""

    features: int
    padding: str = "same"
    conv: ModuleFactory = Conv
    norm: NormFactory | None = None
    act: Activation = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = MaxPool(2, name="pool")(x)
        return DoubleConv(
            self.features, self.padding, self.conv, self.norm, self.act, name="double_conv"
        )(x)


def center_crop(x: jnp.ndarray, spatial: Sequence[int]) -> jnp.ndarray:
    """Crops the spatial dims of `(batch, *spatial, ch)` to `spatial`, centred (the extra row
    of an odd difference is dropped from the high side): U-Net's copy-and-crop."""
    starts = [0] + [(n - t) // 2 for n, t in zip(x.shape[1:-1], spatial, strict=True)] + [0]
    sizes = [x.shape[0], *spatial, x.shape[-1]]
    return jax.lax.slice(x, starts, [s + n for s, n in zip(starts, sizes, strict=True)])


def pad_to(x: jnp.ndarray, spatial: Sequence[int]) -> jnp.ndarray:
    """Zero-pads the spatial dims of `x` up to `spatial`, half on each side (extra on high)."""
    pads = [(0, 0)]
    for n, t in zip(x.shape[1:-1], spatial, strict=True):
        d = t - n
        pads.append((d // 2, d - d // 2))
    pads.append((0, 0))
    return jnp.pad(x, pads)


class UNetUp(nn.Module):
    """Decoder stage: up-sample x2 to `features` channels, match the skip connection's size
    (crop the skip for "valid", pad the up-sampled map for "same", which lets odd sizes
    through), concatenate `[skip, up]` on channels, then `DoubleConv`.

    `upsample="transpose"`: 2x2 transposed conv with stride 2 (the paper's "up-conv 2x2").
    `upsample="resize"`: `jax.image.resize` by 2 (`resize_method`) then a 1x1 conv.
    """

    features: int
    padding: str = "same"
    upsample: str = "transpose"
    resize_method: str = "linear"
    conv: ModuleFactory = Conv
    conv_transpose: ModuleFactory = ConvTranspose
    norm: NormFactory | None = None
    act: Activation = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray, skip: jnp.ndarray) -> jnp.ndarray:
        padding = check_unet_padding(self.padding)
        if self.upsample == "transpose":
            up = self.conv_transpose(features=self.features, kernel_size=2, stride=2, name="up")(x)
        elif self.upsample == "resize":
            shape = (x.shape[0], *(2 * n for n in x.shape[1:-1]), x.shape[-1])
            up = jax.image.resize(x, shape, method=self.resize_method)
            up = self.conv(features=self.features, kernel_size=1, name="up")(up)
        else:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}; got {self.upsample!r}")
        target = up.shape[1:-1]
        if padding == "valid":
            skip = center_crop(skip, target)
        else:
            up = pad_to(up, skip.shape[1:-1])
        y = jnp.concatenate([skip, up.astype(skip.dtype)], axis=-1)
        return DoubleConv(
            self.features, padding, self.conv, self.norm, self.act, name="double_conv"
        )(y)
