"""Pooling, flattening and dropout layers: parameter-free Linen modules over `cnnjax.ops`.

They exist as modules (rather than bare function calls) so that models read as a list of
layers and `cnnjax.models.summary` shows one row per pooling step. Inputs are
`(batch, *spatial, channels)`; an int window applies to every spatial dim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax import ops
from cnnjax.checks import check_rate

IntOrSeq = int | Sequence[int]



def _fields(module: nn.Module, *names: str) -> dict[str, Any]:
    """The module's fields `names` as keyword arguments for its op."""
    return {name: getattr(module, name) for name in names}

class MaxPool(nn.Module):
    """Max pooling (`ops.max_pool`); `stride=None` means stride = window. Padding counts as
    -inf, so it never wins; `ceil_mode` follows PyTorch."""

    window: IntOrSeq
    stride: IntOrSeq | None = None
    padding: Any = 0
    dilation: IntOrSeq = 1
    ceil_mode: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.max_pool(
            x, self.window, **_fields(self, "stride", "padding", "dilation", "ceil_mode")
        )


class AvgPool(nn.Module):
    """Average pooling (`ops.avg_pool`); `count_include_pad` as in PyTorch."""

    window: IntOrSeq
    stride: IntOrSeq | None = None
    padding: Any = 0
    ceil_mode: bool = False
    count_include_pad: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.avg_pool(
            x,
            self.window,
            **_fields(self, "stride", "padding", "ceil_mode", "count_include_pad"),
        )


class LpPool(nn.Module):
    """Power-average pooling `(sum over window of x^p)^(1/p)` (`ops.lp_pool`)."""

    p: float
    window: IntOrSeq
    stride: IntOrSeq | None = None
    ceil_mode: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.lp_pool(x, self.p, self.window, stride=self.stride, ceil_mode=self.ceil_mode)


class AdaptiveAvgPool(nn.Module):
    """Average pooling to a fixed output size (`ops.adaptive_avg_pool`, PyTorch's bins)."""

    output_size: IntOrSeq

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.adaptive_avg_pool(x, self.output_size)


class AdaptiveMaxPool(nn.Module):
    """Max pooling to a fixed output size (`ops.adaptive_max_pool`, PyTorch's bins)."""

    output_size: IntOrSeq

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.adaptive_max_pool(x, self.output_size)


class GlobalAvgPool(nn.Module):
    """Mean over all spatial dims: `(batch, *spatial, ch) -> (batch, ch)`."""

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.global_avg_pool(x)


class GlobalMaxPool(nn.Module):
    """Max over all spatial dims: `(batch, *spatial, ch) -> (batch, ch)`."""

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.global_max_pool(x)


class Flatten(nn.Module):
    """`(batch, ...) -> (batch, prod(...))`, in channels-last (row-major) order."""

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if jnp.ndim(x) < 1:
            raise ValueError(f"Flatten needs a batch axis; got a scalar of shape {x.shape}")
        return jnp.reshape(x, (x.shape[0], -1))


class Dropout(nn.Module):
    """Dropout active only when `train=True`; draws from the "dropout" rng stream.

    A thin wrapper of `flax.linen.Dropout` whose call takes the models' `train` flag.
    `broadcast_dims` drops whole feature maps, e.g. `(1, 2)` for 2D spatial dropout.
    """

    rate: float
    broadcast_dims: Sequence[int] = ()

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        rate = check_rate(self.rate, "rate")
        return nn.Dropout(rate, broadcast_dims=self.broadcast_dims, name="dropout")(
            x, deterministic=not train
        )
