"""Shared helpers of the plotting functions: array checks, figure grids, saving.

Figures are built with `matplotlib.figure.Figure` directly (no `pyplot`): no global figure
registry, no display and no backend switch are needed, so the functions work in scripts,
tests, CI and notebooks alike (a notebook shows a returned Figure inline).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

PathLike = str | os.PathLike


def as_numpy(x: Any, name: str) -> np.ndarray:
    """`x` (NumPy, JAX or nested lists) as a NumPy array; TypeError names `name` otherwise."""
    if x is None or isinstance(x, str | bytes):
        raise TypeError(f"{name} must be an array, got {type(x).__name__} {x!r}")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array, got {type(x).__name__}: {err}") from None
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got an object array from {type(x)}")
    return arr


def check_ndim(arr: np.ndarray, name: str, allowed: Sequence[int], expected: str) -> None:
    """ValueError naming the argument, its shape and the accepted layouts."""
    if arr.ndim not in allowed:
        raise ValueError(
            f"{name} must have shape {expected} (ndim {' or '.join(map(str, allowed))}), "
            f"got ndim {arr.ndim} with shape {tuple(arr.shape)}"
        )


def grid_figure(
    n: int, ncols: int, cell_inches: float = 1.2, extra_height: float = 0.4
) -> tuple[Figure, list[Axes]]:
    """A figure with exactly `n` axes laid out row-major on a grid `ncols` wide."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(ncols * cell_inches, nrows * cell_inches + extra_height))
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def finish(
    fig: Figure,
    path: PathLike | None,
    dpi: int = 100,
    rect: tuple[float, float, float, float] = (0, 0, 1, 1),
) -> Figure:
    """Tight layout within `rect` (figure fraction), then save a PNG to `path` (parent
    folders created) when given."""
    fig.tight_layout(rect=rect)
    if path is not None:
        path = os.fspath(path)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        fig.savefig(path, dpi=dpi, format="png")
    return fig


def annotate_cells(
    ax: Axes, values: np.ndarray, fmt: str | None = None, *, dark_low: bool = True
) -> None:
    """Writes each value of a 2D array at its cell centre, in white over the dark half of the
    colour map (low values when `dark_low`, as in "gray"; high values otherwise, as in "Blues")."""
    if fmt is None:
        integral = np.all(np.isfinite(values)) and np.allclose(values, np.round(values))
        fmt = "{:.0f}" if integral else "{:.3g}"
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    mid = (lo + hi) / 2
    for (i, j), v in np.ndenumerate(values):
        dark = (v < mid) if dark_low else (v > mid)
        color = "white" if (hi > lo and dark) else "black"
        ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8, color=color)
