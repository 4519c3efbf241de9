"""What an augmentation op is, the registry of ops by name, and the pixel-value ops.

Every per-example op is called as `op(record, rng, train)` with a `numpy.random.Generator`
that the pipeline derives from (seed, position of the example in the repeated stream), so
results are reproducible and do not depend on the number of workers. With `train=False` a
random op does its deterministic evaluation counterpart (random crop -> centre crop, random
resized crop -> resize + centre crop, flips/photometric/cutout -> nothing); it still draws
from `rng`, so train and eval consume the same numbers. Records hold uint8 images.

Ops are registered by name in `AUGMENTATIONS` (one decorated definition each): the
geometric ops live in `cnnjax.data.geometric`, mixup/cutmix in `cnnjax.data.mixing`, and
`cnnjax.data.augment` turns a spec ("random_crop(padding=4)|hflip") into op instances.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from cnnjax.registry import Registry

Record = dict[str, Any]

__all__ = [
    "AUGMENTATIONS",
    "Brightness",
    "Contrast",
    "Cutout",
    "Op",
    "Record",
    "apply_ops",
    "check_image",
    "check_range",
]


@dataclasses.dataclass(frozen=True)
class Op:
    """Base of the augmentation ops: `op(record, rng, train) -> record`.

    `batch_level` ops (mixup, cutmix) are not called per example: the pipeline applies them
    to whole batches with `cnnjax.data.mixing.mix_batch`.
    """

    name: ClassVar[str] = ""
    batch_level: ClassVar[bool] = False

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        raise NotImplementedError


AUGMENTATIONS: Registry[Callable[..., Op]] = Registry("augment op")


def check_range(value: float, argument: str, low: float, high: float) -> None:
    """Raise a ValueError naming `argument` unless low <= value <= high."""
    if not low <= value <= high:
        raise ValueError(f"{argument}={value}: expected in [{low}, {high}]")


def check_image(record: Record, op: str) -> np.ndarray:
    """The record's image after checking it is uint8 (H, W, C) with a mask of the same (H, W)."""
    image = record["image"]
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"{op}: image has shape {image.shape} and dtype {image.dtype}; expected uint8 "
            "(H, W, C) (geometric and photometric ops are for 2D images)"
        )
    if "mask" in record and record["mask"].shape != image.shape[:2]:
        raise ValueError(
            f"{op}: mask shape {record['mask'].shape} differs from the image's {image.shape[:2]}"
        )
    return image


def apply_ops(ops: Sequence[Op], record: Record, rng: np.random.Generator, train: bool) -> Record:
    """Run per-example ops in order (each consumes draws from `rng`, also in eval mode)."""
    for op in ops:
        record = op(record, rng, train)
    return record


def _apply_lut(image: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Map uint8 pixels through a 256-entry table of float values (rounded, clipped to uint8):
    one table lookup instead of float arithmetic on every pixel."""
    lut = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.take(lut, image)


@AUGMENTATIONS.register("brightness")
@dataclasses.dataclass(frozen=True)
class Brightness(Op):
    """Add a uniform random offset in +-`max_delta` (0..1 scale) to every pixel."""

    max_delta: float = 0.2
    name: ClassVar[str] = "brightness"

    def __post_init__(self) -> None:
        check_range(self.max_delta, "max_delta", 0, 1)

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        delta = rng.uniform(-self.max_delta, self.max_delta)
        if not train:
            return record
        image = check_image(record, self.name)
        return {**record, "image": _apply_lut(image, np.arange(256.0) + 255.0 * delta)}


@AUGMENTATIONS.register("contrast")
@dataclasses.dataclass(frozen=True)
class Contrast(Op):
    """Scale deviations from the image's mean value (over pixels and channels, as
    torchvision's adjust_contrast uses one grey mean) by a factor uniform in [lower, upper]."""

    lower: float = 0.8
    upper: float = 1.2
    name: ClassVar[str] = "contrast"

    def __post_init__(self) -> None:
        if not 0 <= self.lower <= self.upper:
            raise ValueError(
                f"lower={self.lower}, upper={self.upper}: expected 0 <= lower <= upper"
            )

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        factor = rng.uniform(self.lower, self.upper)
        if not train:
            return record
        image = check_image(record, self.name)
        mean = float(image.mean())
        return {**record, "image": _apply_lut(image, (np.arange(256.0) - mean) * factor + mean)}


@AUGMENTATIONS.register("cutout")
@dataclasses.dataclass(frozen=True)
class Cutout(Op):
    """Fill a `size` x `size` square at a uniformly random centre (clipped at the borders)
    with `fill` (default: the data set's mean colour `mean_fill`, i.e. 0 after
    normalisation; `cnnjax.data.augment.build_ops` passes it)."""

    size: int = 8
    fill: int | None = None
    mean_fill: tuple[int, ...] = ()
    name: ClassVar[str] = "cutout"

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        h, w = check_image(record, self.name).shape[:2]
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        if not train:
            return record
        half = self.size // 2
        top, bottom = max(cy - half, 0), min(cy - half + self.size, h)
        left, right = max(cx - half, 0), min(cx - half + self.size, w)
        image = record["image"].copy()
        fill = self.fill if self.fill is not None else np.asarray(self.mean_fill or (0,), np.uint8)
        image[top:bottom, left:right] = fill
        return {**record, "image": image}
