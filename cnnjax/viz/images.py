"""Arrays as images: image grids, first-layer filters and feature maps of one input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cnnjax.checks import check_int
from cnnjax.viz._common import (
    PathLike,
    annotate_cells,
    as_numpy,
    check_ndim,
    finish,
    grid_figure,
)


def plot_images(
    images: Any,
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    cmap: str = "gray",
    annotate: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    symmetric: bool = False,
    cell_inches: float = 1.2,
    suptitle: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """A grid of images, one axes each (exactly ``len(images)`` axes).

    images: ``(N, H, W)`` grayscale, ``(N, H, W, 1)`` or ``(N, H, W, 3)`` RGB (floats in
        [0, 1] or uint8 for RGB), one ``(H, W)`` array, or a list of ``(H, W[, C])`` arrays
        of different sizes (e.g. an image, a filter and its response). A 1D signal can be
        shown as ``x[None]`` (one row).
    titles: one string per image. annotate: write each value in its cell (small arrays, e.g.
        the 6x6 worked examples). vmin/vmax: shared colour limits of grayscale images
        (default: each image its own range). symmetric: each image's limits are
        ``[-max|x|, max|x|]`` so that 0 is the middle colour (signed responses, "RdBu_r").
    Returns the Figure; saves a PNG when `path`.
    """
    imgs = _image_list(images)
    n = len(imgs)
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have one entry per image ({n}), got {len(titles)}")
    ncols = check_int(ncols, "ncols")
    if annotate:  # room for the numbers: about 0.4 inch per cell
        cell_inches = max(cell_inches, 0.4 * max(max(img.shape[:2]) for img in imgs))
    fig, axes = grid_figure(n, ncols, cell_inches)
    for i, ax in enumerate(axes):
        img = imgs[i]
        if img.ndim == 3:
            ax.imshow(img)
        else:
            lo, hi = vmin, vmax
            if symmetric:
                hi = float(np.max(np.abs(img))) or 1.0
                lo = -hi
            ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            if annotate:
                annotate_cells(ax, img.astype(float))
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return finish(fig, path)


def _image_list(images: Any) -> list[np.ndarray]:
    """Every accepted spelling of `images` as a list of ``(H, W)`` or ``(H, W, 3)`` arrays."""
    if isinstance(images, list | tuple) and (not images or np.ndim(images[0]) >= 2):
        if not images:
            raise ValueError("images must contain at least one image, got an empty list")
        imgs = []
        for i, item in enumerate(images):
            img = as_numpy(item, f"images[{i}]")
            check_ndim(img, f"images[{i}]", (2, 3), "(H, W) or (H, W, 1 or 3)")
            imgs.append(_squeeze_channels(img, f"images[{i}]"))
        return imgs
    arr = as_numpy(images, "images")
    check_ndim(arr, "images", (2, 3, 4), "(N, H, W), (N, H, W, 1 or 3) or (H, W)")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape[0] == 0:
        raise ValueError(f"images must contain at least one image, got shape {arr.shape}")
    return [_squeeze_channels(a, "images") for a in arr]


def _squeeze_channels(img: np.ndarray, name: str) -> np.ndarray:
    if img.ndim == 3:
        if img.shape[-1] == 1:
            return img[..., 0]
        if img.shape[-1] != 3:
            raise ValueError(
                f"{name}: images with a channel axis must have 1 or 3 channels, "
                f"got shape {img.shape}"
            )
    return img


def plot_filters(
    kernel: Any,
    *,
    in_channel: int = 0,
    rgb: bool = True,
    max_filters: int = 64,
    ncols: int = 8,
    cmap: str = "gray",
    title: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The filters of a 2D conv layer as a grid of small images, one axes per output channel.

    kernel: ``(kh, kw, in_channels, out_channels)`` (Flax layout) or one ``(kh, kw)`` filter.
        A 1D kernel ``(k, in, out)`` can be shown as ``kernel[None]``.
    With 3 input channels and ``rgb=True`` each filter is an RGB image, min-max scaled per
    filter (as in the AlexNet figure); otherwise input channel `in_channel` is shown in
    grayscale on one colour scale symmetric about 0 shared by all filters, so mid-grey is 0
    and relative magnitudes compare across filters. At most `max_filters` are drawn.
    """
    arr = as_numpy(kernel, "kernel").astype(np.float64)
    check_ndim(arr, "kernel", (2, 4), "(kh, kw, in_channels, out_channels) or (kh, kw)")
    if arr.ndim == 2:
        arr = arr[:, :, None, None]
    max_filters = check_int(max_filters, "max_filters")
    kh, kw, cin, cout = arr.shape
    n = min(cout, max_filters)
    show_rgb = rgb and cin == 3
    if not show_rgb and not 0 <= in_channel < cin:
        raise ValueError(f"in_channel must be in [0, {cin}), got {in_channel}")
    fig, axes = grid_figure(n, check_int(ncols, "ncols"), 0.9)
    bound = float(np.max(np.abs(arr[:, :, in_channel, :n]))) if not show_rgb else 0.0
    bound = bound or 1.0
    for i, ax in enumerate(axes):
        if show_rgb:
            f = arr[:, :, :, i]
            span = f.max() - f.min()
            ax.imshow((f - f.min()) / span if span > 0 else np.zeros_like(f))
        else:
            ax.imshow(
                arr[:, :, in_channel, i],
                cmap=cmap,
                vmin=-bound,
                vmax=bound,
                interpolation="nearest",
            )
        ax.set_title(str(i), fontsize=7)
    what = "RGB" if show_rgb else f"input channel {in_channel}"
    fig.suptitle(title or f"{n} of {cout} filters {kh}x{kw} ({what})", fontsize=10)
    return finish(fig, path)


def plot_feature_maps(
    features: Any,
    layer: str | None = None,
    *,
    index: int = 0,
    max_channels: int = 16,
    ncols: int = 8,
    cmap: str = "viridis",
    title: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The channels of one layer's feature map for one input, one axes per channel.

    features: the ordered dict a model returns with ``return_features=True`` (pick `layer`
        by name; default the first entry), or one array ``(batch, H, W, C)`` / ``(H, W, C)``.
    index: which example of the batch. Each channel gets its own colour range (the title of
    each axes is the channel number); at most `max_channels` are drawn.
    """
    name = layer
    if isinstance(features, Mapping):
        if not features:
            raise ValueError("features is an empty mapping: no layer to plot")
        if layer is None:
            name = next(iter(features))
        elif layer not in features:
            raise ValueError(f"layer must be one of {list(features)}, got {layer!r}")
        fmap = as_numpy(features[name], f"features[{name!r}]")
    else:
        fmap = as_numpy(features, "features")
    label = f"features[{name!r}]" if name is not None else "features"
    check_ndim(fmap, label, (3, 4), "(batch, H, W, C) or (H, W, C) (a 2D feature map)")
    if fmap.ndim == 4:
        if not -fmap.shape[0] <= index < fmap.shape[0]:
            raise ValueError(f"index must be in [0, {fmap.shape[0]}), got {index}")
        fmap = fmap[index]
    max_channels = check_int(max_channels, "max_channels")
    h, w, c = fmap.shape
    n = min(c, max_channels)
    fig, axes = grid_figure(n, check_int(ncols, "ncols"), 1.1)
    for i, ax in enumerate(axes):
        ax.imshow(fmap[:, :, i], cmap=cmap, interpolation="nearest")
        ax.set_title(str(i), fontsize=7)
    head = f"{name}: " if name is not None else ""
    fig.suptitle(title or f"{head}{n} of {c} channels, {h}x{w}", fontsize=10)
    return finish(fig, path)
