"""Array checks of the ops (the scalar checks are `cnnjax.checks`): each raises at trace
time with a message that names the argument, the value received and what was expected."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from cnnjax.checks import check_choice, check_int

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def as_array(x: Any, name: str) -> jnp.ndarray:
    """`x` as a JAX array (tracers pass through unchanged)."""
    if isinstance(x, str | bytes) or x is None:
        raise TypeError(f"{name} must be an array, got {type(x).__name__} {x!r}")
    try:
        return jnp.asarray(x)
    except TypeError as err:
        raise TypeError(f"{name} must be an array, got {type(x).__name__}: {err}") from None


def check_floating(x: jnp.ndarray, name: str) -> None:
    """Convolutions and averages are defined on floating point arrays only."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name} must have a floating point dtype (float32, bfloat16, ...), got {x.dtype}; "
            f"cast it first, e.g. {name}.astype(jnp.float32)"
        )


def check_input_rank(x: jnp.ndarray, name: str, spatial_dims: int | None = None) -> int:
    """Checks `x` is `(batch, *spatial, channels)` (1-3 spatial dims); returns that count."""
    if spatial_dims is None:
        if x.ndim not in (3, 4, 5):
            raise ValueError(
                f"{name} must have shape (batch, *spatial, channels) with 1, 2 or 3 spatial "
                f"dims (ndim 3, 4 or 5), got ndim {x.ndim} with shape {tuple(x.shape)}"
            )
        return x.ndim - 2
    if x.ndim != spatial_dims + 2:
        raise ValueError(
            f"{name} must have shape (batch, *spatial, channels) with {spatial_dims} spatial "
            f"dim(s) (ndim {spatial_dims + 2}), got ndim {x.ndim} with shape {tuple(x.shape)}"
        )
    return spatial_dims


def check_padding_mode(padding_mode: Any) -> str:
    """One of `PADDING_MODES`."""
    return check_choice(padding_mode, "padding_mode", PADDING_MODES)


def check_groups(groups: Any, in_ch: int, out_ch: int) -> int:
    """`groups` divides both channel counts."""
    groups = check_int(groups, "groups")
    if in_ch % groups:
        raise ValueError(
            f"groups={groups} must divide the input channels, got {in_ch} input channels"
        )
    if out_ch % groups:
        raise ValueError(
            f"groups={groups} must divide the output channels, got {out_ch} output channels"
        )
    return groups


def check_bias(bias: Any, channels: int) -> jnp.ndarray | None:
    """`bias` is None or a vector of `channels` values."""
    if bias is None:
        return None
    bias = as_array(bias, "bias")
    if bias.shape != (channels,):
        raise ValueError(
            f"bias must have shape ({channels},) (one value per output channel), "
            f"got shape {tuple(bias.shape)}"
        )
    return bias


def lowest_value(dtype: jnp.dtype) -> np.ndarray:
    """The lowest value of `dtype` (-inf for floats): the init value of a max reduction.

    Raises TypeError for a dtype that is neither floating nor integer (e.g. bool, complex).
    """
    # A NumPy (not jnp) init value: lax.reduce_window then lowers to the monoid form that
    # JAX can differentiate under jit; a traced jnp init value cannot be linearized.
    if jnp.issubdtype(dtype, jnp.floating):
        return np.array(-np.inf, dtype)
    if jnp.issubdtype(dtype, jnp.integer):
        return np.array(np.iinfo(dtype).min, dtype)
    raise TypeError(f"x must have a real (floating or integer) dtype, got {dtype}")
