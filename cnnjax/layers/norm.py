"""Normalization chosen by name, built from Flax's own norm layers.

`make_norm("batch", train=True)` returns a factory (a `functools.partial` of a Flax norm
class, or `None` for `"none"`) that blocks and models call as `norm(name="bn1")`, in the
style of Flax's ImageNet example. The mode (`train`) is bound when the factory is made, so
blocks do not need a `train` argument of their own.

Batch norm across devices: with `axis_name` set (inside `shard_map`/`pmap` over that axis),
Flax averages E[x] and E[x^2] over the devices (`use_fast_variance=True`) and derives the
variance from those, which equals the variance of the global batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.checks import check_choice, check_int

NORMS: tuple[str, ...] = ("batch", "group", "layer", "instance", "none")

NormFactory = Callable[..., nn.Module]


def check_norm_name(norm: Any) -> str:
    """`norm` is one of `NORMS`; returns it."""
    return check_choice(norm, "norm", NORMS)


def make_norm(
    norm: str,
    *,
    train: bool,
    axis_name: str | None = None,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    num_groups: int = 32,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    spatial_dims: int = 2,
) -> NormFactory | None:
    """A factory of normalization layers for feature maps `(batch, *spatial, channels)`.

    Args:
      norm: "batch" (`nn.BatchNorm`, running statistics in the "batch_stats" collection),
        "group" (`nn.GroupNorm` with `num_groups` groups), "layer" (`nn.LayerNorm` over all
        spatial axes and channels, one scale and bias per channel), "instance"
        (`nn.InstanceNorm`, per sample and channel over the spatial axes) or "none" (returns
        `None`: callers then skip the norm and give their conv a bias).
      train: batch norm uses batch statistics and updates the running ones when True, and
        uses the running statistics when False. The other norms do not depend on it.
      axis_name: device axis over which batch norm averages its statistics (shard_map/pmap).
      dtype, param_dtype: computation and parameter dtypes.
      num_groups: groups of "group"; must divide the channel count (Flax raises a
        ValueError naming both numbers when it does not).
      momentum: running-average momentum of "batch" (0.9 equals PyTorch's 0.1).
      epsilon: added to the variance, for every norm.
      spatial_dims: 1, 2 or 3; sets the reduction axes of "layer".
    Returns:
      A callable `(**module_kwargs) -> nn.Module` (e.g. `name=`, `scale_init=`), or None.
    """
    check_norm_name(norm)
    common = dict(dtype=dtype, param_dtype=param_dtype, epsilon=epsilon)
    if norm == "batch":
        return functools.partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=momentum,
            axis_name=axis_name,
            **common,
        )
    if norm == "group":
        check_int(num_groups, "num_groups")
        return functools.partial(nn.GroupNorm, num_groups=num_groups, **common)
    if norm == "layer":
        check_choice(spatial_dims, "spatial_dims", (0, 1, 2, 3))
        axes = tuple(range(-(spatial_dims + 1), 0))
        return functools.partial(nn.LayerNorm, reduction_axes=axes, feature_axes=-1, **common)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm, **common)
    return None
