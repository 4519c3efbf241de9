"""The three benchmark architectures in plain `flax.linen` with stock layers (`nn.Conv`,
`nn.max_pool`, `nn.BatchNorm`, `nn.ConvTranspose`, `nn.Dense`): the "what a Flax user
writes" column of `benchmarks.train_step`. Shapes and parameter counts equal cnnjax's
`simple_cnn`, CIFAR `resnet18` and `unet` (the benchmark asserts it)."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

_BN = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


class SimpleCNN(nn.Module):
    """Keras MNIST CNN: conv32-pool-conv64-pool-conv64-dense64-dense(classes), valid padding."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(32, (3, 3), padding="VALID")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(64, (3, 3), padding="VALID")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(64, (3, 3), padding="VALID")(x))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(64)(x))
        return nn.Dense(self.num_classes)(x)


class BasicBlock(nn.Module):
    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        s = (self.stride, self.stride)
        y = nn.Conv(self.features, (3, 3), s, padding=1, use_bias=False)(x)
        y = nn.relu(_BN(use_running_average=not train)(y))
        y = nn.Conv(self.features, (3, 3), padding=1, use_bias=False)(y)
        y = _BN(use_running_average=not train)(y)
        if x.shape[-1] != self.features or self.stride != 1:
            x = nn.Conv(self.features, (1, 1), s, padding=0, use_bias=False)(x)
            x = _BN(use_running_average=not train)(x)
        return nn.relu(y + x)


class ResNet18Cifar(nn.Module):
    """ResNet-18 with the CIFAR stem (3x3 conv, no max pool)."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(64, (3, 3), padding=1, use_bias=False)(x)
        x = nn.relu(_BN(use_running_average=not train)(x))
        for i in range(4):
            for j in range(2):
                x = BasicBlock(64 * 2**i, 2 if i > 0 and j == 0 else 1)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


class DoubleConv(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, train: bool):
        for _ in range(2):
            x = nn.Conv(self.features, (3, 3), padding=1, use_bias=False)(x)
            x = nn.relu(_BN(use_running_average=not train)(x))
        return x


class UNet(nn.Module):
    """2D U-Net, same padding, batch norm, 2x2 stride-2 up-convs, 1x1 head."""

    num_classes: int = 2
    depth: int = 4
    base: int = 32

    @nn.compact
    def __call__(self, x, train: bool = False):
        skips = []
        x = DoubleConv(self.base)(x, train)
        for level in range(1, self.depth):
            skips.append(x)
            x = nn.max_pool(x, (2, 2), (2, 2))
            x = DoubleConv(self.base * 2**level)(x, train)
        for level in range(self.depth - 2, -1, -1):
            f = self.base * 2**level
            up = nn.ConvTranspose(f, (2, 2), strides=(2, 2), padding="VALID")(x)
            x = DoubleConv(f)(jnp.concatenate([skips[level], up], axis=-1), train)
        return nn.Conv(self.num_classes, (1, 1))(x)


MODELS = {"simple_cnn": SimpleCNN, "resnet18": ResNet18Cifar, "unet": UNet}
