"""Metadata shared by every data source: `DataInfo`, argument checks used across the package,
and `NameList` (re-exported from `cnnjax.registry`), the live list of a registry's names."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from cnnjax.registry import NameList

__all__ = ["DataInfo", "NameList", "Task", "check_split"]

Task = Literal["classification", "segmentation"]


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model and a trainer need to know about a data set.

    Attributes:
      name: registry name, e.g. "mnist" or "tfds:cifar10".
      task: "classification" (records carry `label`) or "segmentation" (records carry `mask`).
      num_classes: number of labels; for segmentation, the number of mask values
        (background included).
      class_names: one name per class, in label order.
      image_shape: shape of one `image` record, channels last: (H, W, C), or (L, C) for 1D signals;
        None entries for sizes that vary between records (some TFDS data sets).
      mean, std: per-channel statistics on the 0..1 scale, used to normalise images.
      splits: the split names `get_source` accepts.
      description: how the data set is made and split, and where it comes from.
    """

    name: str
    task: Task
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int | None, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    splits: tuple[str, ...] = ("train", "val", "test")
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in ("classification", "segmentation"):
            raise ValueError(
                f"task={self.task!r}: expected 'classification' or 'segmentation'"
            )
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} entries, num_classes={self.num_classes}"
            )
        channels = self.image_shape[-1]
        if len(self.mean) != len(self.std) or (channels is not None and len(self.mean) != channels):
            raise ValueError(
                f"mean={self.mean} and std={self.std} must have one entry per channel "
                f"of image_shape={self.image_shape}"
            )

    @property
    def num_channels(self) -> int | None:
        return self.image_shape[-1]


def check_split(name: str, split: str, splits: Sequence[str]) -> None:
    """Raise a ValueError naming the accepted splits when `split` is not one of them."""
    if not isinstance(split, str) or split not in splits:
        raise ValueError(f"split={split!r} for data set {name!r}: expected one of {tuple(splits)}")
