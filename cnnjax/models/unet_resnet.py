"""U-Net with a ResNet encoder (the zoo's `ResNet`, so torchvision ResNet weights load into
it with `from_torchvision("unet_resnet34", "resnet34.pth", num_classes=K)`) and U-Net's
decoder: 2x2 up-convs, concatenation with the encoder map of the same stride, two 3x3
conv -> norm -> ReLU per stage, then a 1x1 conv to per-pixel logits at the input's size.

Skips are the encoder's maps at strides 16, 8, 4 (stage3, stage2, stage1) and 2 (the stem's
activation before its max pool); the last decoder stage up-samples to stride 1 without a
skip. The encoder's maps have size `ceil(n / stride)` (PyTorch's symmetric padding), so an
up-sampled map can be one pixel larger than its skip: its last row/column is cropped, which
keeps every pixel aligned with the input's top-left corner and lets any input size through.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.checks import check_int_sequence
from cnnjax.layers import DoubleConv
from cnnjax.models.common import (
    NormModelDtypes,
    check_input,
    conv_transpose_factory,
    model_norm,
    output,
)
from cnnjax.models.registry import register
from cnnjax.models.resnet import ResNet

_SKIPS = ("stage3", "stage2", "stage1", "stem_act", None)


def crop_to(x: jnp.ndarray, spatial: Sequence[int]) -> jnp.ndarray:
    """Keeps the first `spatial` rows/columns of `(batch, *spatial, ch)` (top-left aligned)."""
    sizes = (x.shape[0], *spatial, x.shape[-1])
    if any(s > n for s, n in zip(sizes, x.shape, strict=True)):
        raise ValueError(f"crop_to: cannot crop shape {x.shape} to spatial size {tuple(spatial)}")
    return jax.lax.slice(x, (0,) * x.ndim, sizes)


class UNetResNet(NormModelDtypes):
    """U-Net whose encoder is `ResNet(stage_sizes, block)` (ImageNet stem, no head) named
    "encoder"; per-pixel logits `(batch, height, width, num_classes)` for any input size.

    Fields: `decoder_features`, the channels of the five decoder stages (stride 16 to 1);
    `norm` (encoder and decoder), `num_groups`, `act`, dtypes and `axis_name` as the zoo's.
    Features: `encoder_<name>` for the encoder's maps (stem_act, stem, stage1..stage4),
    decoder1..decoder5.
    """

    num_classes: int = 2
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: str = "basic"
    decoder_features: Sequence[int] = (256, 128, 64, 32, 16)
    norm: str = "batch"
    num_groups: int = 8
    act: Any = nn.relu

    @nn.compact
    def __call__(self, x, *, train: bool = False, return_features: bool = False):
        check_input(x, "unet_resnet", 2)
        widths = check_int_sequence(self.decoder_features, "unet_resnet: decoder_features")
        if len(widths) != len(_SKIPS):
            raise ValueError(
                f"unet_resnet: decoder_features must have {len(_SKIPS)} entries (strides 16 "
                f"to 1); got {self.decoder_features!r}"
            )
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(
                f"unet_resnet: num_classes must be a positive int; got {self.num_classes!r}"
            )
        if len(self.stage_sizes) != 4:
            raise ValueError(
                f"unet_resnet: stage_sizes must have 4 entries (strides 4 to 32); "
                f"got {self.stage_sizes!r}"
            )
        encoder = ResNet(
            stage_sizes=self.stage_sizes,
            block=self.block,
            num_classes=0,
            norm=self.norm,
            num_groups=self.num_groups,
            act=self.act,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            axis_name=self.axis_name,
            name="encoder",
        )
        _, enc = encoder(x, train=train, return_features=True)
        feats = {f"encoder_{k}": v for k, v in enc.items() if k != "pool"}
        norm = model_norm(self, train)
        conv = self._conv()
        up_conv = conv_transpose_factory(self.dtype, self.param_dtype)
        y = enc["stage4"]
        for i, (features, skip_name) in enumerate(zip(widths, _SKIPS, strict=True)):
            skip = enc[skip_name] if skip_name else None
            target = (skip if skip is not None else x).shape[1:-1]
            y = up_conv(features=features, kernel_size=2, stride=2, name=f"up{i + 1}")(y)
            y = crop_to(y, target)
            if skip is not None:
                y = jnp.concatenate([skip, y.astype(skip.dtype)], axis=-1)
            y = DoubleConv(features, "same", conv, norm, self.act, name=f"decoder{i + 1}")(y)
            feats[f"decoder{i + 1}"] = y
        logits = conv(self.num_classes, 1, name="head")(y)
        return output(logits, feats, return_features)


def _variant(name: str, stage_sizes: tuple[int, ...], block: str) -> None:
    register(name)(functools.partial(UNetResNet, stage_sizes=stage_sizes, block=block))


_variant("unet_resnet18", (2, 2, 2, 2), "basic")
_variant("unet_resnet34", (3, 4, 6, 3), "basic")
_variant("unet_resnet50", (3, 4, 6, 3), "bottleneck")
