"""AlexNet and VGG in the torchvision layout (adaptive average pool before the classifier,
so inputs smaller than 224 work), with `width` and `hidden` options for scaled-down copies.

Parameter counts at 1000 classes equal torchvision's: alexnet 61,100,840, vgg11
132,863,336, vgg13 133,047,848, vgg16 138,357,544, vgg19 143,667,240; with batch norm
vgg11_bn 132,868,840, vgg13_bn 133,053,736, vgg16_bn 138,365,992, vgg19_bn 143,678,248.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.checks import check_int, check_rate
from cnnjax.layers import AdaptiveAvgPool, Dropout, Flatten, MaxPool
from cnnjax.models.common import (
    ModelDtypes,
    NormModelDtypes,
    check_input,
    check_options,
    classifier_head,
    model_norm,
    output,
    require_min_size,
)
from cnnjax.models.registry import register

# Channels of the 3x3 convs; "M" is a 2x2 max pool (Simonyan & Zisserman 2014, table 1).
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
    ),
    "vgg19": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip


def _scaled(channels: int, width: int) -> int:
    """Channel count scaled by `width / 64` (64 = the published first-layer width)."""
    return max(1, channels * width // 64)


class VGG(NormModelDtypes):
    """VGG: 3x3 same-padded convs (with bias, then batch norm when `norm="batch"`, as
    torchvision's `vgg*_bn`) and ReLU, 2x2 max pools, adaptive average pool to
    `pool_size`, then Dense `hidden` -> ReLU -> dropout, twice, and Dense `num_classes`.
    Inputs need at least `2**pools` (32) pixels per side. `width` scales every conv's
    channels by `width / 64`. Features: block1..block5 (after each pool), pool, fc1, fc2.
    `num_classes=0`: no head; the model returns the features after fc2 (and dropout).
    """

    config: Sequence[int | str] = VGG_CONFIGS["vgg16"]
    num_classes: int = 1000
    norm: str = "none"
    num_groups: int = 32
    width: int = 64
    hidden: int = 4096
    dropout: float = 0.5
    pool_size: int = 7

    def __post_init__(self) -> None:
        check_options(
            self, "vgg", width=check_int, hidden=check_int, pool_size=check_int, dropout=check_rate
        )
        super().__post_init__()

    @nn.compact
    def __call__(self, x, *, train: bool = False, return_features: bool = False):
        check_input(x, "vgg", 2)
        pools = sum(1 for c in self.config if c == "M")
        require_min_size(x, "vgg", 2**pools, f"{pools} 2x2 max pools")
        norm = model_norm(self, train)
        conv = self._conv()
        dense = self._dense()
        feats: dict[str, jnp.ndarray] = {}
        n_conv = n_pool = 0
        for c in self.config:
            if c == "M":
                n_pool += 1
                x = feats[f"block{n_pool}"] = MaxPool(2, name=f"pool{n_pool}")(x)
                continue
            n_conv += 1
            x = conv(_scaled(c, self.width), 3, padding=1, name=f"conv{n_conv}")(x)
            if norm is not None:
                x = norm(name=f"norm{n_conv}")(x)
            x = nn.relu(x)
        x = feats["pool"] = AdaptiveAvgPool(self.pool_size, name="avgpool")(x)
        x = Flatten(name="flatten")(x)
        for i in (1, 2):
            x = feats[f"fc{i}"] = nn.relu(dense(self.hidden, name=f"fc{i}")(x))
            x = Dropout(self.dropout, name=f"dropout{i}")(x, train=train)
        logits = classifier_head(x, self.num_classes, dense)
        return output(logits, feats, return_features)


class AlexNet(ModelDtypes):
    """AlexNet as torchvision's (one-GPU variant of Krizhevsky et al. 2012): convs 11x11/4
    (64), 5x5 (192), 3x3 (384, 256, 256) with ReLU and 3x3/2 max pools, adaptive average
    pool to 6x6, then dropout -> Dense `hidden` -> ReLU, twice, and Dense `num_classes`.
    Inputs need at least 63x63. `width` scales conv channels by `width / 64`.
    Features: conv1..conv5, pool, fc1, fc2. `num_classes=0`: no head; returns fc2.
    """

    num_classes: int = 1000
    width: int = 64
    hidden: int = 4096
    dropout: float = 0.5

    def __post_init__(self) -> None:
        check_options(self, "alexnet", width=check_int, hidden=check_int, dropout=check_rate)
        super().__post_init__()

    @nn.compact
    def __call__(self, x, *, train: bool = False, return_features: bool = False):
        check_input(x, "alexnet", 2)
        require_min_size(x, "alexnet", 63, "an 11x11/4 conv and three 3x3/2 max pools")
        conv = self._conv()
        dense = self._dense()
        w = functools.partial(_scaled, width=self.width)
        feats: dict[str, jnp.ndarray] = {}
        x = feats["conv1"] = nn.relu(conv(w(64), 11, stride=4, padding=2, name="conv1")(x))
        x = MaxPool(3, stride=2, name="pool1")(x)
        x = feats["conv2"] = nn.relu(conv(w(192), 5, padding=2, name="conv2")(x))
        x = MaxPool(3, stride=2, name="pool2")(x)
        x = feats["conv3"] = nn.relu(conv(w(384), 3, padding=1, name="conv3")(x))
        x = feats["conv4"] = nn.relu(conv(w(256), 3, padding=1, name="conv4")(x))
        x = feats["conv5"] = nn.relu(conv(w(256), 3, padding=1, name="conv5")(x))
        x = MaxPool(3, stride=2, name="pool5")(x)
        x = feats["pool"] = AdaptiveAvgPool(6, name="avgpool")(x)
        x = Flatten(name="flatten")(x)
        for i in (1, 2):
            x = Dropout(self.dropout, name=f"dropout{i}")(x, train=train)
            x = feats[f"fc{i}"] = nn.relu(dense(self.hidden, name=f"fc{i}")(x))
        logits = classifier_head(x, self.num_classes, dense)
        return output(logits, feats, return_features)


register("alexnet")(AlexNet)
# Fast tests: 1/8 of the channels and a 64-unit classifier.
register("alexnet_tiny")(functools.partial(AlexNet, width=8, hidden=64, num_classes=10))
for _name, _config in VGG_CONFIGS.items():
    register(_name)(functools.partial(VGG, config=_config))
    register(f"{_name}_bn")(functools.partial(VGG, config=_config, norm="batch"))
# Fast tests: VGG-11 layout with batch norm, 1/8 of the channels, 64-unit classifier, 1x1 pool.
register("vgg_tiny")(
    functools.partial(
        VGG,
        config=VGG_CONFIGS["vgg11"],
        norm="batch",
        width=8,
        hidden=64,
        pool_size=1,
        num_classes=10,
    )
)
