"""`npz`: classification from a NumPy archive of your own, in the layout of the local archives.

    get_source("npz", "train", "my_data.npz")          # data_dir = the .npz file
    # run config: --config.dataset=npz --config.data_dir=my_data.npz

Arrays (uint8 images, (N, H, W) for grey or (N, H, W, C)):

    train_images, train_labels (int, (N,))   required
    test_images, test_labels                 "test" (optional)
    val_images, val_labels                   "val" (optional; else `val_size=k` holds out k
                                             train images, drawn with `split_seed`)
    class_names (str, (K,))                  optional: default "0", "1", ... up to the
                                             largest train label

`python -m experiments.folder_to_npz IMAGE_DIR OUT.npz` writes one from an image folder.
Mean and std are measured on the train images each time the archive is opened (in memory).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnnjax.checks import check_int
from cnnjax.data.arrays import ArraySource
from cnnjax.data.info import DataInfo, check_split
from cnnjax.data.local import load_npz

__all__ = ["npz_source"]

NAME = "npz"


def _info(arrays: dict, images: np.ndarray) -> DataInfo:
    """Classes, shape and the train images' per-channel mean/std."""
    train = arrays["train_images"]
    train = train[..., None] if train.ndim == 3 else train
    labels = arrays["train_labels"]
    if "class_names" in arrays:
        names = tuple(str(n) for n in arrays["class_names"])
    else:
        names = tuple(str(k) for k in range(int(labels.max()) + 1 if labels.size else 0))
    x = train.reshape(-1, train.shape[-1]).astype(np.float64) / 255.0
    std = x.std(0)
    return DataInfo(
        name=NAME, task="classification", num_classes=len(names), class_names=names,
        image_shape=(int(images.shape[1]), int(images.shape[2]), int(train.shape[-1])),
        mean=tuple(float(m) for m in x.mean(0)),
        std=tuple(float(s) if s > 1e-6 else 1.0 for s in std),
        description="a NumPy archive of your own (cnnjax.data.npz_source)",
    )


def npz_source(split: str, data_dir: str | os.PathLike | None = None, *, val_size: int = 0,
               split_seed: int = 0) -> ArraySource:
    """Split `split` of the archive `data_dir` (module docstring)."""
    check_split(NAME, split, ("train", "val", "test"))
    check_int(val_size, "val_size", minimum=0)
    if data_dir is None or not Path(data_dir).is_file():
        raise FileNotFoundError(f"data set 'npz': data_dir={str(data_dir)!r} is not a file: "
                                "pass the .npz archive (--config.data_dir=my_data.npz)")
    path = Path(data_dir)
    arrays = dict(load_npz(path, {"train_labels": ("i", (None,))}))  # images checked below
    if val_size and "val_images" in arrays:
        raise ValueError(f"val_size={val_size}, but {str(path)!r} has its own val_images: "
                         "drop val_size (or the archive's val split)")
    prefix = "train" if split == "val" and "val_images" not in arrays else split
    if f"{prefix}_images" not in arrays or f"{prefix}_labels" not in arrays:
        raise ValueError(f"{str(path)!r} has no {prefix}_images / {prefix}_labels (it has "
                         f"{sorted(arrays)}): split {split!r} is not available")
    images, labels = arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"]
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
        raise ValueError(f"{str(path)!r}: {prefix}_images must be uint8 with one label each; "
                         f"(N, H, W[, C]); got {images.dtype} {images.shape} and {len(labels)} "
                         "labels")
    indices = None
    if prefix == "train" and "val_images" not in arrays:
        if split == "val" and val_size == 0:
            raise ValueError(f"split 'val' of {str(path)!r}: the archive has no val_images; "
                             "pass dataset_options.val_size=<train images to hold out>")
        if val_size >= len(images):
            raise ValueError(f"val_size={val_size}: expected fewer than the {len(images)} "
                             "train images")
        order = np.random.default_rng(split_seed).permutation(len(images))
        cut = len(images) - val_size
        indices = np.sort(order[cut:] if split == "val" else order[:cut])
    return ArraySource(images, labels=labels, info=_info(arrays, images), indices=indices,
                       split=split)
