"""Shared checks and factories for the model zoo.

Option values are checked when a model is created (each model's `__post_init__` calls
`check_options`), so `create("resnet18", stem="foo")` fails at once; the input is checked
when the model is applied (`check_input`, `require_min_size`).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnjax.checks import check_choice, check_int
from cnnjax.layers import Conv, ConvTranspose, make_norm
from cnnjax.layers.norm import NORMS, NormFactory


class ModelDtypes(nn.Module, kw_only=True):
    """The dtype fields every model of the zoo takes, declared once: `dtype` of the
    computation and `param_dtype` of the parameters. Keyword-only, so each model's own fields
    keep their positional order; parameter paths do not depend on fields."""

    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _conv(self, kernel_init: Any = None) -> functools.partial:
        """`Conv` with the model's dtypes (and `kernel_init`) bound."""
        return conv_factory(self.dtype, self.param_dtype, kernel_init)

    def _dense(self) -> functools.partial:
        """`flax.linen.Dense` with the model's dtypes bound."""
        return dense_factory(self.dtype, self.param_dtype)


class NormModelDtypes(ModelDtypes, kw_only=True):
    """`ModelDtypes` plus `axis_name`, the mapped axis over which batch norm averages its
    statistics (None: this device's batch only); for models that offer batch norm."""

    axis_name: str | None = None


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


def check_options(model: nn.Module, label: str, **checks: Callable[[Any, str], Any]) -> None:
    """Runs `check(value, "label: field")` for each `field=check`, plus the options every
    model shares: `num_classes` (0 allowed: no head, pooled features) and, when the model has
    them, `norm` and `num_groups`."""
    checks = {"num_classes": _classes_or_features, **checks}
    if hasattr(model, "norm"):
        checks.update(norm=choice(*NORMS), num_groups=check_int)
    for field, check in checks.items():
        check(getattr(model, field), f"{label}: {field}")


def _classes_or_features(value: Any, name: str) -> int:
    return check_int(value, name, minimum=0)


def choice(*choices: Any) -> Callable[[Any, str], Any]:
    """A check (for `check_options`) that the value is one of `choices`."""
    return lambda value, name: check_choice(value, name, choices)


def model_norm(model: nn.Module, train: bool, spatial_dims: int = 2) -> NormFactory | None:
    """`make_norm` with the model's `norm`, `num_groups`, `axis_name` and dtypes bound."""
    return make_norm(
        model.norm,
        train=train,
        axis_name=model.axis_name,
        dtype=model.dtype,
        param_dtype=model.param_dtype,
        num_groups=model.num_groups,
        spatial_dims=spatial_dims,
    )




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
