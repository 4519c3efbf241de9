"""Small classifiers: the Keras MNIST CNN of the lecture notes, LeNet-5, and a plain
conv-norm-act-pool network in 1, 2 or 3 spatial dims (`cnn1d` for sequences such as ECG
signals, `cnn3d` for volumes or video clips). With `num_classes=0` they have no head and
return their last hidden features (dense1, dense2 or the pooled map)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.checks import check_int, check_int_sequence, check_rate
from cnnjax.layers import AvgPool, ConvNormAct, Dropout, Flatten, GlobalAvgPool, MaxPool
from cnnjax.models.common import (
    ModelDtypes,
    NormModelDtypes,
    check_input,
    check_options,
    choice,
    classifier_head,
    model_norm,
    output,
    require_min_size,
)
from cnnjax.models.registry import register


@register("simple_cnn")
class SimpleCNN(ModelDtypes):
    """The Keras MNIST model of the seed notes: Conv 32 3x3 relu, MaxPool 2, Conv 64 3x3 relu,
    MaxPool 2, Conv 64 3x3 relu, Flatten, Dense 64 relu, Dense `num_classes` (logits; the
    notes' softmax belongs to the loss). Valid padding. 93,322 parameters on 28x28x1.
    Needs inputs of at least 18x18. Features: conv1, pool1, conv2, pool2, conv3, dense1.
    """

    num_classes: int = 10
    widths: Sequence[int] = (32, 64, 64)
    hidden: int = 64

    def __post_init__(self) -> None:
        check_options(self, "simple_cnn", widths=_three_widths, hidden=check_int)
        super().__post_init__()

    @nn.compact
    def __call__(self, x, *, train: bool = False, return_features: bool = False):
        check_input(x, "simple_cnn", 2)
        w1, w2, w3 = self.widths
        require_min_size(x, "simple_cnn", 18, "three valid 3x3 convs and two 2x2 pools")
        conv = self._conv()
        dense = self._dense()
        feats: dict[str, jnp.ndarray] = {}
        x = feats["conv1"] = nn.relu(conv(w1, 3, name="conv1")(x))
        x = feats["pool1"] = MaxPool(2, name="pool1")(x)
        x = feats["conv2"] = nn.relu(conv(w2, 3, name="conv2")(x))
        x = feats["pool2"] = MaxPool(2, name="pool2")(x)
        x = feats["conv3"] = nn.relu(conv(w3, 3, name="conv3")(x))
        x = Flatten(name="flatten")(x)
        x = feats["dense1"] = nn.relu(dense(self.hidden, name="dense1")(x))
        logits = classifier_head(x, self.num_classes, dense, name="logits")
        return output(logits, feats, return_features)


def _three_widths(widths: Sequence[int], name: str) -> tuple[int, ...]:
    items = check_int_sequence(widths, name)
    if len(items) != 3:
        raise ValueError(f"{name} must have 3 entries, got {widths!r}")
    return items


@register("lenet5")
class LeNet5(ModelDtypes):
    """LeNet-5 in its modern form: Conv 6 5x5, pool 2, Conv 16 5x5, pool 2, Dense 120, 84,
    `num_classes`; valid padding, `act` (ReLU) and `pool` ("max" or "avg", LeCun's
    subsampling was an average). 61,706 parameters on 32x32x1. Needs inputs of at least 16x16.
    Features: conv1, pool1, conv2, pool2, dense1, dense2.
    """

    num_classes: int = 10
    pool: str = "max"
    act: Any = nn.relu

    def __post_init__(self) -> None:
        check_options(self, "lenet5", pool=choice("max", "avg"))
        super().__post_init__()

    @nn.compact
    def __call__(self, x, *, train: bool = False, return_features: bool = False):
        check_input(x, "lenet5", 2)
        require_min_size(x, "lenet5", 16, "two valid 5x5 convs and two 2x2 pools")
        pool = MaxPool if self.pool == "max" else AvgPool
        conv = self._conv()
        dense = self._dense()
        feats: dict[str, jnp.ndarray] = {}
        x = feats["conv1"] = self.act(conv(6, 5, name="conv1")(x))
        x = feats["pool1"] = pool(2, name="pool1")(x)
        x = feats["conv2"] = self.act(conv(16, 5, name="conv2")(x))
        x = feats["pool2"] = pool(2, name="pool2")(x)
        x = Flatten(name="flatten")(x)
        x = feats["dense1"] = self.act(dense(120, name="dense1")(x))
        x = feats["dense2"] = self.act(dense(84, name="dense2")(x))
        logits = classifier_head(x, self.num_classes, dense, name="logits")
        return output(logits, feats, return_features)


class ConvNet(NormModelDtypes):
    """Plain CNN in `spatial_dims` (1, 2 or 3) dims: per width, conv (`kernel_size`, same
    size) -> norm -> ReLU, then a 2x max pool after every stage but the last; global average
    pool, dropout, Dense `num_classes`. Inputs need at least `2**(len(widths) - 1)` samples
    per spatial dim. Features: stage1..stageN, pool.
    """

    num_classes: int = 10
    spatial_dims: int = 2
    widths: Sequence[int] = (32, 64, 128)
    kernel_size: int = 3
    norm: str = "batch"
    num_groups: int = 8
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_options(
            self,
            "convnet",
            spatial_dims=choice(1, 2, 3),
            widths=check_int_sequence,
            kernel_size=check_int,
            dropout=check_rate,
        )
        super().__post_init__()

    @nn.compact
    def __call__(self, x, *, train: bool = False, return_features: bool = False):
        model, widths = f"cnn{self.spatial_dims}d", self.widths
        check_input(x, model, self.spatial_dims)
        require_min_size(x, model, 2 ** (len(widths) - 1), f"{len(widths) - 1} 2x max pools")
        norm = model_norm(self, train, self.spatial_dims)
        conv = self._conv()
        feats: dict[str, jnp.ndarray] = {}
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            x = ConvNormAct(
                width,
                self.kernel_size,
                conv=conv,
                norm=norm,
                pool=None if last else 2,
                name=f"stage{i + 1}",
            )(x)
            feats[f"stage{i + 1}"] = x
        x = feats["pool"] = GlobalAvgPool(name="global_pool")(x)
        x = Dropout(self.dropout, name="dropout")(x, train=train)
        dense = self._dense()
        logits = classifier_head(x, self.num_classes, dense, name="logits")
        return output(logits, feats, return_features)


register("cnn1d")(functools.partial(ConvNet, spatial_dims=1, kernel_size=7, num_classes=5))
register("cnn2d")(functools.partial(ConvNet, spatial_dims=2))
register("cnn3d")(functools.partial(ConvNet, spatial_dims=3, widths=(16, 32, 64)))
