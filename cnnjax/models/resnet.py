"""ResNets (He et al. 2015) in the torchvision layout, v1.5 bottlenecks (stride on the 3x3),
with options for a CIFAR stem, pre-activation blocks (He et al. 2016), zero-initialised
last norm scales, widths and stage sizes, and any named normalization.

Parameter counts at 1000 classes equal torchvision's: resnet18 11,689,512, resnet34
21,797,672, resnet50 25,557,032, resnet101 44,549,160, resnet152 60,192,808.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.checks import check_int, check_int_sequence
from cnnjax.layers import GlobalAvgPool, MaxPool, ResidualBlock
from cnnjax.models.common import (
    KAIMING_FAN_OUT,
    NormModelDtypes,
    check_input,
    check_options,
    choice,
    classifier_head,
    model_norm,
    output,
)
from cnnjax.models.registry import register

BLOCK_TYPES = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar")


class ResNet(NormModelDtypes):
    """ResNet classifier for `(batch, height, width, channels)` images.

    Fields:
      stage_sizes: blocks per stage; stage i has `width * 2**i` (x4 for bottlenecks)
        channels and stride 2 in its first block for i > 0.
      block: "basic" (ResNet-18/34) or "bottleneck" (ResNet-50/101/152, v1.5).
      stem: "imagenet" (7x7/2 conv, norm, ReLU, 3x3/2 max pool) or "cifar" (3x3 conv, norm,
        ReLU, no pool) for 32x32 inputs.
      preactivation: pre-activation blocks (norm -> ReLU -> conv) and a final norm + ReLU
        before pooling; the CIFAR stem is then a bare conv.
      zero_init_last_norm: each residual branch ends with a zero-initialised norm scale
        (the last conv kernel for pre-activation blocks or without norm), so blocks start
        as identities (Goyal et al. 2017).
      norm: "batch", "group", "layer", "instance" or "none"; `num_groups` for "group".
      axis_name: device axis for synchronised batch norm under shard_map/pmap.
    Features: stem_act (ImageNet stem: before its pool, stride 2), stem, stage1..stageN,
    pool (pre-logits). `num_classes=0`: no head; the model returns the pooled features.
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: str = "basic"
    num_classes: int = 1000
    width: int = 64
    stem: str = "imagenet"
    preactivation: bool = False
    zero_init_last_norm: bool = False
    norm: str = "batch"
    num_groups: int = 32
    act: Any = nn.relu

    def __post_init__(self) -> None:
        check_options(
            self,
            "resnet",
            stage_sizes=check_int_sequence,
            block=choice(*BLOCK_TYPES),
            width=check_int,
            stem=choice(*STEMS),
        )
        super().__post_init__()

    @nn.compact
    def __call__(self, x, *, train: bool = False, return_features: bool = False):
        check_input(x, "resnet", 2)
        width = self.width
        norm = model_norm(self, train)
        conv = self._conv(KAIMING_FAN_OUT)
        feats: dict[str, jnp.ndarray] = {}

        if self.stem == "imagenet":
            x = conv(width, 7, stride=2, padding=3, use_bias=norm is None, name="stem_conv")(x)
            x = feats["stem_act"] = self.act(norm(name="stem_norm")(x) if norm else x)
            x = MaxPool(3, stride=2, padding=1, name="stem_pool")(x)
        else:
            x = conv(width, 3, padding=1, use_bias=norm is None, name="stem_conv")(x)
            if not self.preactivation:
                x = self.act(norm(name="stem_norm")(x) if norm else x)
        feats["stem"] = x

        for i, n_blocks in enumerate(self.stage_sizes):
            for j in range(n_blocks):
                x = ResidualBlock(
                    features=width * 2**i,
                    stride=2 if i > 0 and j == 0 else 1,
                    conv=conv,
                    norm=norm,
                    act=self.act,
                    zero_init_last=self.zero_init_last_norm,
                    bottleneck=self.block == "bottleneck",
                    preactivation=bool(self.preactivation),
                    name=f"stage{i + 1}_block{j + 1}",
                )(x)
            feats[f"stage{i + 1}"] = x
        if self.preactivation:
            x = self.act(norm(name="final_norm")(x) if norm else x)
        x = feats["pool"] = GlobalAvgPool(name="global_pool")(x)
        logits = classifier_head(x, self.num_classes, self._dense())
        return output(logits, feats, return_features)


def _variant(name: str, stage_sizes: tuple[int, ...], block: str, **defaults: Any) -> None:
    register(name)(functools.partial(ResNet, stage_sizes=stage_sizes, block=block, **defaults))


_variant("resnet18", (2, 2, 2, 2), "basic")
_variant("resnet34", (3, 4, 6, 3), "basic")
_variant("resnet50", (3, 4, 6, 3), "bottleneck")
_variant("resnet101", (3, 4, 23, 3), "bottleneck")
_variant("resnet152", (3, 8, 36, 3), "bottleneck")
# Fast tests and smoke runs: CIFAR stem, two stages of one basic block, width 8, batch norm.
_variant("resnet_tiny", (1, 1), "basic", stem="cifar", width=8, num_classes=10)
