"""Shared checks and factories for the model zoo."""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.layers import Conv, ConvTranspose

# He et al. (2015) init as torchvision uses for ResNet convs: N(0, 2 / fan_out).
KAIMING_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def check_input(x: Any, model: str, spatial_dims: int) -> None:
    """`x` is a floating `(batch, *spatial, channels)` array with `spatial_dims` spatial dims."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise TypeError(f"{model}: input must be an array; got {type(x).__name__}")
    if len(shape) != spatial_dims + 2:
        raise ValueError(
            f"{model}: input must be (batch, {', '.join(['size'] * spatial_dims)}, channels) "
            f"(rank {spatial_dims + 2}, channels-last); got shape {tuple(shape)}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{model}: input must be floating point (convert and scale images first); "
            f"got dtype {x.dtype}"
        )


def require_min_size(x: Any, model: str, min_size: int, why: str = "") -> None:
    """Every spatial size of `x` is at least `min_size` (below it a layer would get an empty
    window); the message says which sizes are too small."""
    spatial = tuple(x.shape[1:-1])
    if any(n < min_size for n in spatial):
        reason = f" ({why})" if why else ""
        raise ValueError(
            f"{model}: input spatial size {spatial} is too small: every spatial dim must be "
            f">= {min_size}{reason}; got input shape {tuple(x.shape)}"
        )


def conv_factory(dtype: Any, param_dtype: Any, kernel_init: Any = None) -> functools.partial:
    """`Conv` with the model's dtypes (and initializer) bound."""
    kwargs: dict[str, Any] = dict(dtype=dtype, param_dtype=param_dtype)
    if kernel_init is not None:
        kwargs["kernel_init"] = kernel_init
    return functools.partial(Conv, **kwargs)


def conv_transpose_factory(dtype: Any, param_dtype: Any) -> functools.partial:
    """`ConvTranspose` with the model's dtypes bound."""
    return functools.partial(ConvTranspose, dtype=dtype, param_dtype=param_dtype)


def dense_factory(dtype: Any, param_dtype: Any) -> functools.partial:
    """`flax.linen.Dense` with the model's dtypes bound."""
    return functools.partial(nn.Dense, dtype=dtype, param_dtype=param_dtype)


def check_positive_ints(values: Sequence[Any], name: str, model: str) -> tuple[int, ...]:
    """A non-empty sequence of positive ints (widths, stage sizes)."""
    try:
        items = tuple(values)
    except TypeError:
        items = None
    if not items or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in items
    ):
        raise ValueError(
            f"{model}: {name} must be a non-empty sequence of positive ints; got {values!r}"
        )
    return items


def check_rate(rate: Any, name: str, model: str) -> float:
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0.0 <= rate < 1.0:
        raise ValueError(f"{model}: {name} must be a number in [0, 1); got {rate!r}")
    return float(rate)


def output(logits: jnp.ndarray, features: dict[str, jnp.ndarray], return_features: bool):
    """`logits`, or `(logits, features)` when `return_features`.

    Features are an `OrderedDict` (input to output order): JAX keeps an OrderedDict's order
    through jit and tree maps, whereas it sorts the keys of a plain dict.
    """
    return (logits, collections.OrderedDict(features)) if return_features else logits


def classifier_head(x: jnp.ndarray, num_classes: int, dense: Any, name: str = "head"):
    """Logits `dense(num_classes)(x)`, or `x` itself when `num_classes == 0`: a model without
    head returns its pooled features (timm's convention), for feature extraction and
    linear probes."""
    return x if num_classes == 0 else dense(num_classes, name=name)(x)
