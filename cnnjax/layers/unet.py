"""U-Net stages (Ronneberger et al. 2015): `DoubleConv`, the encoder's `UNetDown`, the
decoder's `UNetUp`, and the copy-and-crop / pad helpers. Factories and dimensionality as in
`cnnjax.layers.blocks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.checks import check_choice
from cnnjax.layers.blocks import Activation, ConvNormAct, ModuleFactory
from cnnjax.layers.conv import Conv, ConvTranspose
from cnnjax.layers.norm import NormFactory
from cnnjax.layers.pooling import MaxPool

UPSAMPLE_MODES: tuple[str, ...] = ("transpose", "resize")
UNET_PADDINGS: tuple[str, ...] = ("same", "valid")


def check_unet_padding(padding: Any) -> str:
    """One of `UNET_PADDINGS`."""
    return check_choice(padding, "padding", UNET_PADDINGS)


class _Stage(nn.Module):
    """The fields of `DoubleConv` and `UNetDown`: output channels, padding ("same"/"valid")
    and the conv, norm and activation factories of their conv -> norm -> act steps."""

    features: int
    padding: str = "same"
    conv: ModuleFactory = Conv
    norm: NormFactory | None = None
    act: Activation = nn.relu


class DoubleConv(_Stage):
    """U-Net's two 3x3 conv -> norm -> act steps. `padding="valid"` (the paper) shrinks each
    spatial dim by 4; `"same"` keeps it."""

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


class UNetDown(_Stage):
    """Encoder stage: 2x2 max pool (stride 2) then `DoubleConv`."""

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
        if check_choice(self.upsample, "upsample", UPSAMPLE_MODES) == "transpose":
            up = self.conv_transpose(features=self.features, kernel_size=2, stride=2, name="up")(x)
        else:
            shape = (x.shape[0], *(2 * n for n in x.shape[1:-1]), x.shape[-1])
            up = jax.image.resize(x, shape, method=self.resize_method)
            up = self.conv(features=self.features, kernel_size=1, name="up")(up)
        target = up.shape[1:-1]
        if padding == "valid":
            skip = center_crop(skip, target)
        else:
            up = pad_to(up, skip.shape[1:-1])
        y = jnp.concatenate([skip, up.astype(skip.dtype)], axis=-1)
        return DoubleConv(
            self.features, padding, self.conv, self.norm, self.act, name="double_conv"
        )(y)
