"""The one set of argument checks cnnjax uses (ops, layers, models, configs): each returns
the checked value and raises TypeError (wrong type) or ValueError (wrong value) with a
message naming the argument, the value received and what was expected.

Nothing here depends on the rest of cnnjax, so every layer of the library can import it.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "check_bool",
    "check_choice",
    "check_int",
    "check_int_sequence",
    "check_positive_number",
    "check_rate",
    "env_switch",
    "int_tuple",
    "is_int",
]


def is_int(value: Any) -> bool:
    """True for Python/NumPy integers (bools excluded: `True` is not a stride)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def check_int(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An int `>= minimum` (default 1: a size, a count, a stride) and `<= maximum` if given."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


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


def check_int_sequence(values: Any, name: str) -> tuple[int, ...]:
    """A non-empty sequence of ints >= 1 (widths, stage sizes)."""
    items = tuple(values) if isinstance(values, Sequence) and not isinstance(values, str) else ()
    if not items or not all(is_int(v) and v >= 1 for v in items):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {values!r}")
    return tuple(int(v) for v in items)


def check_positive_number(value: Any, name: str) -> float:
    """A finite real number > 0 (e.g. sigma, p)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_rate(value: Any, name: str) -> float:
    """A probability of dropping: a real number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_bool(value: Any, name: str) -> bool:
    """A Python or NumPy bool (not an int: `1` is refused)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """One of `choices` (names of modes, norms, stems...)."""
    if isinstance(value, list | dict | set) or value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}"
        )
    return value


_SWITCH_ON = ("1", "true", "on", "yes", "")
_SWITCH_OFF = ("0", "false", "off", "no")


def env_switch(name: str) -> bool:
    """An on/off environment variable (cnnjax's CPU levers): on for ``1``, ``true``, ``on``,
    ``yes`` (any case), empty or unset; off for ``0``, ``false``, ``off`` or ``no``. Anything
    else (``disabled``, ``of``) is a ValueError naming the variable: a typo must not silently
    mean "on"."""
    value = os.environ.get(name, "1")
    word = value.strip().lower()
    if word in _SWITCH_OFF:
        return False
    if word in _SWITCH_ON:
        return True
    raise ValueError(f"environment variable {name}={value!r}: expected 1/true/on/yes or "
                     "0/false/off/no (any case)")
