"""Range checks of class labels and segmentation masks, run when a source is opened.

A label outside 0..num_classes-1 trains without error (the one-hot row is all zeros, or the
gather wraps) and gives meaningless metrics, so a source refuses it up front, naming the data
set, the split, the offending values and how often each occurs. Vectorised: a min/max pass,
then `np.unique` (labels) or `np.bincount` (uint8 masks) only over what is out of range.

Masks may hold one extra value outside the classes, the ignore label (default
`IGNORE_LABEL` = 255, the "void" convention of PASCAL VOC), for pixels that count in no loss
or metric; configure the trainer's `task.ignore_label` to the same value.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IGNORE_LABEL", "check_labels", "check_masks"]

IGNORE_LABEL = 255
_SHOWN = 10  # at most this many offending values are listed in a message


def _where(name: str, split: str | None) -> str:
    return f"data set {name!r}" + ("" if split is None else f", split {split!r}")


def _describe(values: np.ndarray, counts: np.ndarray, unit: str) -> str:
    parts = [f"{int(v)} ({int(c)} {unit})" for v, c in zip(values[:_SHOWN], counts[:_SHOWN],
                                                             strict=True)]
    more = f" and {len(values) - _SHOWN} more values" if len(values) > _SHOWN else ""
    return ", ".join(parts) + more


def check_labels(labels: np.ndarray, num_classes: int, name: str, split: str | None) -> None:
    """Raise ValueError when an entry of int `labels` (N,) is outside [0, num_classes)."""
    labels = np.asarray(labels)
    if labels.size == 0 or (labels.min() >= 0 and labels.max() < num_classes):
        return
    bad = labels[(labels < 0) | (labels >= num_classes)]
    values, counts = np.unique(bad, return_counts=True)
    raise ValueError(
        f"{_where(name, split)}: {bad.size} of {labels.size} labels are out of range: "
        f"{_describe(values, counts, 'records')}; expected class ids 0..{num_classes - 1} "
        f"(num_classes={num_classes}). The archive is wrong for this data set, or its "
        "num_classes is."
    )


def check_masks(
    masks: np.ndarray, num_classes: int, name: str, split: str | None,
    ignore_label: int | None = IGNORE_LABEL,
) -> None:
    """Raise ValueError when a pixel of uint8 `masks` (N, H, W) is neither a class id in
    [0, num_classes) nor `ignore_label`."""
    masks = np.asarray(masks)
    if masks.size == 0:
        return
    if masks.dtype != np.uint8:
        raise TypeError(f"masks.dtype={masks.dtype}: expected uint8")
    if masks.max() < num_classes:
        return
    counts = np.bincount(masks.reshape(-1), minlength=256)
    counts[:num_classes] = 0
    if ignore_label is not None and 0 <= ignore_label < 256:
        counts[ignore_label] = 0
    values = np.flatnonzero(counts)
    if values.size == 0:
        return
    allowed = f"class ids 0..{num_classes - 1} (num_classes={num_classes})"
    if ignore_label is not None:
        allowed += f" or the ignore label {ignore_label}"
    raise ValueError(
        f"{_where(name, split)}: {int(counts.sum())} mask pixels hold values out of range: "
        f"{_describe(values, counts[values], 'pixels')}; expected {allowed}. Pass "
        "ignore_label=<value> to the source if that value marks pixels to ignore."
    )
