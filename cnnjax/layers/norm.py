"""Normalization chosen by name, built from Flax's own norm layers.

`make_norm("batch", train=True)` returns a factory (a `functools.partial` of a Flax norm
class, or `None` for `"none"`) that blocks and models call as `norm(name="bn1")`, in the
style of Flax's ImageNet example. The mode (`train`) is bound when the factory is made, so
blocks do not need a `train` argument of their own.

Norms are a registry (`NORM_REGISTRY`): `@register_norm("name")` on
`build(options: NormOptions) -> factory | None` adds one (here, or in a file listed in a run
config's `imports`), and models accept its name as their `norm` option.

Batch norm across devices: with `axis_name` set (inside `shard_map`/`pmap` over that axis),
Flax averages E[x] and E[x^2] over the devices (`use_fast_variance=True`) and derives the
variance from those, which equals the variance of the global batch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.checks import check_choice, check_int
from cnnjax.layers.batch_norm import BatchNorm
from cnnjax.registry import NameList, Registry

NormFactory = Callable[..., nn.Module]


@dataclasses.dataclass(frozen=True)
class NormOptions:
    """What `make_norm` passes to a registered norm's `build` (see `make_norm`'s Args)."""

    train: bool
    axis_name: str | None
    dtype: Any
    param_dtype: Any
    num_groups: int
    momentum: float
    epsilon: float
    spatial_dims: int

    @property
    def common(self) -> dict[str, Any]:
        """dtype, param_dtype and epsilon: what every Flax norm takes."""
        return {"dtype": self.dtype, "param_dtype": self.param_dtype, "epsilon": self.epsilon}


NORM_REGISTRY: Registry[Callable[[NormOptions], NormFactory | None]] = Registry("norm")
NORMS: Sequence[str] = NameList(NORM_REGISTRY, in_order=True)
"""The registered norm names, in registration order (a live view)."""


def register_norm(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering `build(options: NormOptions) -> factory | None` as `name`."""
    return NORM_REGISTRY.register(name)


@register_norm("batch")
def _batch(o: NormOptions) -> NormFactory:
    return functools.partial(BatchNorm, use_running_average=not o.train,
                             momentum=o.momentum, axis_name=o.axis_name, **o.common)


@register_norm("group")
def _group(o: NormOptions) -> NormFactory:
    check_int(o.num_groups, "num_groups")
    return functools.partial(nn.GroupNorm, num_groups=o.num_groups, **o.common)


@register_norm("layer")
def _layer(o: NormOptions) -> NormFactory:
    check_choice(o.spatial_dims, "spatial_dims", (0, 1, 2, 3))
    axes = tuple(range(-(o.spatial_dims + 1), 0))
    return functools.partial(nn.LayerNorm, reduction_axes=axes, feature_axes=-1, **o.common)


@register_norm("instance")
def _instance(o: NormOptions) -> NormFactory:
    return functools.partial(nn.InstanceNorm, **o.common)


@register_norm("none")
def _none(o: NormOptions) -> None:
    return None


def check_norm_name(norm: Any) -> str:
    """`norm` is one of `NORMS`; returns it."""
    return check_choice(norm, "norm", tuple(NORMS))


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
      norm: "batch" (`cnnjax.layers.batch_norm.BatchNorm`: `nn.BatchNorm` with a faster
        training pass; running statistics in the "batch_stats" collection),
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
    options = NormOptions(train, axis_name, dtype, param_dtype, num_groups, momentum, epsilon,
                          spatial_dims)
    return NORM_REGISTRY.get(norm)(options)
