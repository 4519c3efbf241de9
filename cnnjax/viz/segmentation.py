"""Segmentation overlays: image, ground-truth mask and predicted mask side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from cnnjax.checks import check_int
from cnnjax.viz._common import PathLike, as_numpy, finish, grid_figure


def class_colors(num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` RGB colours in [0, 1]: tab10 (tab20 beyond 10 classes)."""
    cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N)[:3] for i in range(num_classes)])


def mask_overlay(
    mask: np.ndarray, num_classes: int, alpha: float, background: int | None = 0
) -> np.ndarray:
    """``(H, W, 4)`` RGBA layer: each class in its colour with opacity `alpha`, the
    `background` class fully transparent."""
    colors = class_colors(num_classes)
    rgba = np.zeros((*mask.shape, 4))
    rgba[..., :3] = colors[mask]
    rgba[..., 3] = alpha
    if background is not None:
        rgba[mask == background, 3] = 0.0
    return rgba


def luminance(image: np.ndarray) -> np.ndarray:
    """Grey level of an ``(H, W, 3)`` RGB image (ITU-R BT.601 weights); ``(H, W)`` as is."""
    if image.ndim == 2:
        return image
    return image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _labels(x: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = as_numpy(x, name)
    if arr.ndim == len(shape) + 1 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape != shape:
        raise ValueError(
            f"{name} must have shape {shape} (integer class ids per pixel; argmax logits "
            f"first), got shape {tuple(arr.shape)}"
        )
    if not np.issubdtype(arr.dtype, np.integer) and not np.issubdtype(arr.dtype, np.bool_):
        if not np.all(arr == np.round(arr)):
            raise TypeError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must hold class ids >= 0, got minimum {arr.min()}")
    return arr


def plot_segmentation(
    images: Any,
    masks: Any,
    predictions: Any | None = None,
    *,
    num_classes: int | None = None,
    background: int | None = 0,
    alpha: float = 0.55,
    max_rows: int = 4,
    row_titles: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    path: PathLike | None = None,
) -> Figure:
    """One row per example: the image, the ground truth over it and the prediction over it.

    images: ``(N, H, W)``, ``(N, H, W, 1)`` or ``(N, H, W, 3)``; or one example without
        the batch axis (then masks is ``(H, W)``).
    masks, predictions: integer class ids ``(N, H, W)`` (or ``(N, H, W, 1)``); predictions
        optional (two columns then). Classes are drawn in tab10 colours with opacity
        `alpha`, except `background` (transparent; None colours every class), over the
        image in grey (the luminance of an RGB image) so that the class colours stand out.
    row_titles: one string per drawn row (e.g. per-image IoU), shown on the image column.
    class_names: one name per class; adds a legend of the class colours.
    Axes: ``rows * columns`` with ``rows = min(N, max_rows)``.
    """
    img = as_numpy(images, "images")
    m_raw = as_numpy(masks, "masks")
    single = m_raw.ndim == 2
    if single:
        img, m_raw = img[None], m_raw[None]
        predictions = None if predictions is None else as_numpy(predictions, "predictions")[None]
    if img.ndim == 4 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (3, 4) or (img.ndim == 4 and img.shape[-1] != 3):
        raise ValueError(
            "images must have shape (N, H, W), (N, H, W, 1) or (N, H, W, 3), or one example "
            f"(H, W[, C]) with a (H, W) mask, got shape {tuple(as_numpy(images, 'images').shape)}"
        )
    shape = tuple(img.shape[:3])
    m = _labels(m_raw, "masks", shape)
    p = None if predictions is None else _labels(predictions, "predictions", shape)
    if num_classes is None:
        num_classes = int(max(m.max(), 0 if p is None else p.max())) + 1
    num_classes = check_int(num_classes, "num_classes")
    top = max(m.max(), 0 if p is None else p.max())
    if top >= num_classes:
        raise ValueError(f"class id {top} found but num_classes is {num_classes}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rows = min(shape[0], check_int(max_rows, "max_rows"))
    if row_titles is not None and len(row_titles) < rows:
        raise ValueError(f"row_titles must have at least {rows} entries, got {len(row_titles)}")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f"class_names must have num_classes={num_classes} entries, got {len(class_names)}"
        )
    cols = 2 if p is None else 3
    fig, axes = grid_figure(rows * cols, cols, 2.2)
    column_names = ["image", "ground truth", "prediction"]
    for r in range(rows):
        base = img[r]
        for c in range(cols):
            ax = axes[r * cols + c]
            if base.ndim == 2 or c > 0:
                ax.imshow(luminance(base), cmap="gray", interpolation="nearest")
            else:
                ax.imshow(base)
            if c > 0:
                labels = m[r] if c == 1 else p[r]
                ax.imshow(mask_overlay(labels, num_classes, alpha, background))
            if r == 0:
                ax.set_title(column_names[c], fontsize=10)
        if row_titles is not None:
            axes[r * cols].set_ylabel(row_titles[r], fontsize=8)
    if class_names is not None:
        colors = class_colors(num_classes)
        handles = [
            Patch(color=colors[k], label=str(class_names[k]))
            for k in range(num_classes)
            if k != background
        ]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=8,
                   frameon=False)
        return finish(fig, path, rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    return finish(fig, path)
