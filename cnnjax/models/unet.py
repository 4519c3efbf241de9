"""U-Net (Ronneberger et al. 2015) in 1, 2 or 3 spatial dims.

`depth` resolution levels (depth - 1 max pools), `base_features` channels at the top level,
doubling per level. `padding="valid"` is the paper's: unpadded 3x3 convs and copy-and-crop
skips, so the output is smaller than the input (572 -> 388 at depth 5); `"same"` returns the
input's size (any size >= 2**(depth - 1): odd sizes are handled by padding the up-sampled
maps). The paper's network is `create("unet", num_classes=2, padding="valid", norm="none")`
on a 1-channel input: 31,030,658 parameters.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.checks import check_choice, check_int
from cnnjax.layers import UNET_PADDINGS, UPSAMPLE_MODES, DoubleConv, UNetDown, UNetUp
from cnnjax.models.common import (
    NormModelDtypes,
    check_input,
    check_options,
    choice,
    conv_transpose_factory,
    model_norm,
    output,
)
from cnnjax.models.registry import register


def unet_output_size(size: int, depth: int, padding: str) -> int:
    """Output length along one spatial dim of a U-Net on an input of length `size`.

    "same": `size` (needs `size >= 2**(depth - 1)`). "valid": each level's two 3x3 convs
    remove 4, pools halve (floor), up-convs double. Raises ValueError when a level would be
    empty, naming the smallest input that works.
    """
    check_int(depth, "unet: depth")
    check_choice(padding, "unet: padding", UNET_PADDINGS)
    out = _output_size_or_none(size, depth, padding)
    if out is None:
        smallest = next(n for n in range(1, 1 << 20) if _output_size_or_none(n, depth, padding))
        raise ValueError(
            f"unet: spatial size {size} is too small for depth {depth} with padding "
            f"{padding!r}: the smallest that works is {smallest}"
            + (" (use padding='same' or a smaller depth)" if padding == "valid" else "")
        )
    return out


def _output_size_or_none(size: int, depth: int, padding: str) -> int | None:
    if padding == "same":
        return size if size >= 2 ** (depth - 1) else None
    n = size
    for level in range(depth):
        n -= 4
        if n < 1:
            return None
        if level < depth - 1:
            if n < 2:
                return None
            n //= 2
    for _ in range(depth - 1):
        n = 2 * n - 4
        if n < 1:
            return None
    return n


class UNet(NormModelDtypes):
    """U-Net segmentation network: per-pixel logits `(batch, *out_spatial, num_classes)`.

    Fields:
      spatial_dims: 1, 2 or 3 (inputs `(batch, *spatial, channels)`).
      depth: resolution levels; the bottleneck has `base_features * 2**(depth - 1)` channels.
      norm: "batch" (default), "group", "layer", "instance" or "none" (the paper).
      padding: "same" (output size = input size) or "valid" (the paper, copy-and-crop).
      upsample: "transpose" (2x2 up-conv, stride 2) or "resize" (`resize_method` x2, 1x1 conv).
    Features: enc1..enc{depth} (enc{depth} is the bottleneck), dec{depth-1}..dec1.
    """

    num_classes: int = 2
    spatial_dims: int = 2
    depth: int = 5
    base_features: int = 64
    norm: str = "batch"
    num_groups: int = 8
    padding: str = "same"
    upsample: str = "transpose"
    resize_method: str = "linear"
    act: Any = nn.relu

    def __post_init__(self) -> None:
        check_options(
            self,
            "unet",
            num_classes=check_int,
            spatial_dims=choice(1, 2, 3),
            depth=check_int,
            base_features=check_int,
            padding=choice(*UNET_PADDINGS),
            upsample=choice(*UPSAMPLE_MODES),
        )
        super().__post_init__()

    @nn.compact
    def __call__(self, x, *, train: bool = False, return_features: bool = False):
        check_input(x, "unet", self.spatial_dims)
        depth = self.depth
        for n in x.shape[1:-1]:
            unet_output_size(n, depth, self.padding)
        norm = model_norm(self, train, self.spatial_dims)
        conv = self._conv()
        stage = dict(padding=self.padding, conv=conv, norm=norm, act=self.act)
        feats: dict[str, jnp.ndarray] = {}
        skips = []
        x = DoubleConv(self.base_features, name="enc1", **stage)(x)
        feats["enc1"] = x
        for level in range(2, depth + 1):
            skips.append(x)
            x = UNetDown(self.base_features * 2 ** (level - 1), name=f"enc{level}", **stage)(x)
            feats[f"enc{level}"] = x
        for level in range(depth - 1, 0, -1):
            x = UNetUp(
                self.base_features * 2 ** (level - 1),
                upsample=self.upsample,
                resize_method=self.resize_method,
                conv_transpose=conv_transpose_factory(self.dtype, self.param_dtype),
                name=f"dec{level}",
                **stage,
            )(x, skips[level - 1])
            feats[f"dec{level}"] = x
        logits = conv(self.num_classes, 1, name="head")(x)
        return output(logits, feats, return_features)


register("unet")(UNet)
register("unet_original")(
    functools.partial(UNet, num_classes=2, depth=5, base_features=64, padding="valid", norm="none")
)
# Fast tests and smoke runs: depth 2, 8 base channels, batch norm, same padding.
register("unet_tiny")(functools.partial(UNet, depth=2, base_features=8))
