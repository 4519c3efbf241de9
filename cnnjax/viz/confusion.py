"""Confusion matrix as an annotated heat map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cnnjax.viz._common import PathLike, annotate_cells, as_numpy, check_ndim, finish


def plot_confusion_matrix(
    cm: Any,
    class_names: Sequence[str] | None = None,
    *,
    normalize: bool = False,
    annotate: bool | None = None,
    cmap: str = "Blues",
    title: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """A ``(K, K)`` confusion matrix: rows are true classes, columns predicted classes.

    The image shows `cm` itself, or with ``normalize=True`` each row divided by its sum
    (per-class recall; an all-zero row stays 0). Counts (or fractions) are written in the
    cells when `annotate` (default: K <= 15). The figure has two axes: the matrix and its
    colour bar. The title reports the accuracy ``trace / sum``.
    """
    m = as_numpy(cm, "cm")
    check_ndim(m, "cm", (2,), "(K, K)")
    if m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"cm must be a square (K, K) matrix with K >= 1, got shape {m.shape}")
    if not np.issubdtype(m.dtype, np.number) or np.issubdtype(m.dtype, np.complexfloating):
        raise TypeError(f"cm must hold real numbers, got dtype {m.dtype}")
    k = m.shape[0]
    if class_names is None:
        class_names = [str(i) for i in range(k)]
    if len(class_names) != k:
        raise ValueError(
            f"class_names must have {k} entries (one per class), got {len(class_names)}"
        )
    m = m.astype(np.float64)
    total = m.sum()
    accuracy = np.trace(m) / total if total > 0 else float("nan")
    shown = m
    if normalize:
        rows = m.sum(axis=1, keepdims=True)
        shown = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = max(3.5, 0.45 * k + 1.5)
    fig = Figure(figsize=(size + 0.8, size))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap=cmap, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=list(class_names), rotation=45 if k > 5 else 0, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if annotate is None:
        annotate = k <= 15
    if annotate:
        annotate_cells(ax, shown, "{:.2f}" if normalize else None, dark_low=False)
    ax.set_title(title or f"confusion matrix (accuracy {accuracy:.2%})")
    return finish(fig, path)
