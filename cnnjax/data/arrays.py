"""`ArraySource`: random-access records over in-memory arrays (the local archives, and any
arrays of your own: wrap them and register them with `cnnjax.data.register_source`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnjax.data.checks import IGNORE_LABEL, check_labels, check_masks
from cnnjax.data.info import DataInfo

__all__ = ["ArraySource"]


class ArraySource:
    """Random-access source over in-memory arrays.

    Args:
      images: uint8 (N, H, W, C), (N, H, W) (a channel axis is added) or (N, L, C) for signals.
      labels: int (N,) for classification, or None.
      masks: uint8 (N, H, W) for segmentation, or None.
      info: the data set's metadata.
      indices: optional int (M,) selection of records (a split of the arrays), in order.
      split: the split's name, for error messages.
      ignore_label: the one mask value allowed besides 0..num_classes-1 (None: none).

    Raises ValueError when a selected record's label is outside 0..num_classes-1, or a mask
    pixel is neither a class id nor `ignore_label` (see `cnnjax.data.checks`).
    """

    def __init__(
        self,
        images: np.ndarray,
        *,
        labels: np.ndarray | None = None,
        masks: np.ndarray | None = None,
        info: DataInfo,
        indices: np.ndarray | None = None,
        split: str | None = None,
        ignore_label: int | None = IGNORE_LABEL,
    ) -> None:
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"images.dtype={images.dtype}: expected uint8")
        if images.ndim == 3 and len(info.image_shape) == 3:
            images = images[..., None]
        if images.ndim != len(info.image_shape) + 1:
            raise ValueError(
                f"images.shape={images.shape}: expected (N, *{info.image_shape})"
            )
        n = images.shape[0]
        for argument, array in (("labels", labels), ("masks", masks)):
            if array is not None and np.shape(array)[0] != n:
                raise ValueError(
                    f"{argument}.shape={np.shape(array)}: expected {n} records like images"
                )
        if masks is not None and np.shape(masks)[1:] != images.shape[1:3]:
            raise ValueError(
                f"masks.shape={np.shape(masks)}: expected (N, H, W) = {(n, *images.shape[1:3])}"
            )
        self._images = images
        self._labels = None if labels is None else np.asarray(labels)
        self._masks = None if masks is None else np.asarray(masks, np.uint8)
        self._indices = (
            np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
        )
        if self._indices.size and (self._indices.min() < 0 or self._indices.max() >= n):
            raise ValueError(f"indices must lie in [0, {n}), got {self._indices.min()}..")
        self.info = info
        self._check_ranges(split, ignore_label)

    def _check_ranges(self, split: str | None, ignore_label: int | None) -> None:
        """Check the labels / masks of this source's records: the whole arrays first (one
        min/max pass), then, if they hold bad values, only the records of this split."""
        k, name = self.info.num_classes, self.info.name
        for array, check, extra in (
            (self._labels, check_labels, {}),
            (self._masks, check_masks, {"ignore_label": ignore_label}),
        ):
            if array is None:
                continue
            try:
                check(array, k, name, split, **extra)
            except ValueError:
                check(array[self._indices], k, name, split, **extra)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = self._indices[index]
        record: dict[str, Any] = {"image": self._images[i]}
        if self._labels is not None:
            record["label"] = np.int64(self._labels[i])
        if self._masks is not None:
            record["mask"] = self._masks[i]
        return record

    def take(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Records `indices` stacked per key, with one gather per array (what a batch needs;
        `source[i]` for each index gives the same)."""
        rows = self._indices[np.asarray(indices, np.int64)]
        out: dict[str, np.ndarray] = {"image": self._images[rows]}
        if self._labels is not None:
            out["label"] = self._labels[rows].astype(np.int64, copy=False)
        if self._masks is not None:
            out["mask"] = self._masks[rows]
        return out

    @property
    def labels(self) -> np.ndarray | None:
        """The int labels (M,) of this source's records, or None (no labels)."""
        return None if self._labels is None else self._labels[self._indices]

    def __repr__(self) -> str:
        return f"ArraySource(name={self.info.name!r}, num_records={len(self)})"
