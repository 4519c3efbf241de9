"""Argument checks shared by the ops: each raises at trace time with a message that names
the argument, the value received and what was expected."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def is_int(value: Any) -> bool:
    """True for Python/NumPy integers (bools excluded: `True` is not a stride)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


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


def int_tuple(value: Any, ndim: int, name: str, *, minimum: int | None = None) -> tuple[int, ...]:
    """An int or a sequence of `ndim` ints as a tuple of `ndim` ints, each `>= minimum`."""
    if is_int(value):
        values = (int(value),) * ndim
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != ndim or not all(is_int(v) for v in value):
            raise _int_tuple_error(value, ndim, name)
        values = tuple(int(v) for v in value)
    else:
        raise _int_tuple_error(value, ndim, name)
    if minimum is not None and any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum} in every spatial dim, got {value!r}")
    return values


def _int_tuple_error(value: Any, ndim: int, name: str) -> Exception:
    expected = f"an int or a sequence of {ndim} ints (one per spatial dim)"
    if isinstance(value, Sequence) and not isinstance(value, str):
        if all(is_int(v) for v in value):
            return ValueError(f"{name} must be {expected}, got {len(value)} values {value!r}")
    return TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")


def check_positive_number(value: Any, name: str) -> float:
    """A finite real number > 0 (e.g. sigma, p)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_padding_mode(padding_mode: Any) -> str:
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    return padding_mode


def check_groups(groups: Any, in_ch: int, out_ch: int) -> int:
    """`groups` divides both channel counts."""
    if not is_int(groups):
        raise TypeError(f"groups must be an int, got {type(groups).__name__} {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if in_ch % groups:
        raise ValueError(
            f"groups={groups} must divide the input channels, got {in_ch} input channels"
        )
    if out_ch % groups:
        raise ValueError(
            f"groups={groups} must divide the output channels, got {out_ch} output channels"
        )
    return int(groups)


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
