"""Geometric augmentation ops (NumPy + PIL on uint8 records): resize, crops, flips, affine.

Each op moves `image` and `mask` together; masks always use nearest-neighbour sampling. See
`cnnjax.data.transforms` for the op protocol (`op(record, rng, train)`) and the eval
counterparts of the random ops.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from cnnjax.data.transforms import AUGMENTATIONS, Op, Record, check_image, check_range

__all__ = ["Affine", "CenterCrop", "Flip", "RandomCrop", "RandomResizedCrop", "Resize", "hflip",
           "rotate", "vflip"]

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


def _size_pair(size: int | Sequence[int], argument: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise ValueError(f"{argument}={size!r}: expected a positive int or (height, width)")
    return pair  # type: ignore[return-value]


def _pil_map(image: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Apply a PIL operation to a uint8 (H, W, C) image, channel by channel unless RGB."""
    if image.shape[-1] == 3:
        return np.asarray(fn(Image.fromarray(image)))
    planes = [np.asarray(fn(Image.fromarray(image[..., c]))) for c in range(image.shape[-1])]
    return np.stack(planes, axis=-1)


def _pil_record(
    record: Record, image_fn: Callable[[Image.Image], Image.Image],
    mask_fn: Callable[[Image.Image], Image.Image],
) -> Record:
    """`record` with `image_fn` applied to the image and `mask_fn` to the mask (if any)."""
    out = dict(record)
    out["image"] = _pil_map(record["image"], image_fn)
    if "mask" in record:
        out["mask"] = np.asarray(mask_fn(Image.fromarray(record["mask"])))
    return out


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in _RESAMPLE:
        raise ValueError(f"interpolation={interpolation!r}: expected {tuple(_RESAMPLE)}")


def _crop(record: Record, top: int, left: int, height: int, width: int) -> Record:
    out = dict(record)
    out["image"] = record["image"][top : top + height, left : left + width]
    if "mask" in record:
        out["mask"] = record["mask"][top : top + height, left : left + width]
    return out


def _center_offsets(h: int, w: int, height: int, width: int, op: str) -> tuple[int, int]:
    if height > h or width > w:
        raise ValueError(f"{op}: crop ({height}, {width}) is larger than the image ({h}, {w})")
    return (h - height) // 2, (w - width) // 2


def _resize_box(
    record: Record, box: tuple[float, float, float, float], size: tuple[int, int], interp: str
) -> Record:
    """Crop box (left, top, right, bottom) in pixels and resize it to size (height, width)."""
    target = (size[1], size[0])
    return _pil_record(
        record,
        lambda im: im.resize(target, _RESAMPLE[interp], box=box),
        lambda im: im.resize(target, Image.Resampling.NEAREST, box=box),
    )


@AUGMENTATIONS.register("resize")
@dataclasses.dataclass(frozen=True)
class Resize(Op):
    """Resize to `size` (int or (height, width)); deterministic, train and eval."""

    size: int | tuple[int, int]
    interpolation: str = "bilinear"
    name: ClassVar[str] = "resize"

    def __post_init__(self) -> None:
        _size_pair(self.size, "size")
        _check_interpolation(self.interpolation)

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        h, w = check_image(record, self.name).shape[:2]
        return _resize_box(record, (0, 0, w, h), _size_pair(self.size, "size"), self.interpolation)


@AUGMENTATIONS.register("center_crop")
@dataclasses.dataclass(frozen=True)
class CenterCrop(Op):
    """Crop the centre `size` (int or (height, width)); deterministic, train and eval."""

    size: int | tuple[int, int]
    name: ClassVar[str] = "center_crop"

    def __post_init__(self) -> None:
        _size_pair(self.size, "size")

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        h, w = check_image(record, self.name).shape[:2]
        height, width = _size_pair(self.size, "size")
        top, left = _center_offsets(h, w, height, width, self.name)
        return _crop(record, top, left, height, width)


@AUGMENTATIONS.register("random_crop")
@dataclasses.dataclass(frozen=True)
class RandomCrop(Op):
    """Pad by `padding` pixels on every side, then crop `size` (default: the input size) at a
    uniformly random position. `pad_mode` "constant" (image `fill`, mask `mask_fill`),
    "reflect" or "edge". Eval: centre crop of `size` without padding, or the whole image with
    `eval_crop=False` (e.g. a fully convolutional U-Net trained on tiles, evaluated on full
    images)."""

    size: int | tuple[int, int] | None = None
    padding: int = 0
    pad_mode: str = "constant"
    fill: int = 0
    mask_fill: int = 0
    eval_crop: bool = True
    name: ClassVar[str] = "random_crop"

    def __post_init__(self) -> None:
        if self.size is not None:
            _size_pair(self.size, "size")
        if not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"padding={self.padding!r}: expected an int >= 0")
        if self.pad_mode not in ("constant", "reflect", "edge"):
            raise ValueError(f"pad_mode={self.pad_mode!r}: expected constant, reflect or edge")

    def _pad(self, record: Record) -> Record:
        """`record` with image and mask padded by `padding` pixels on every side."""
        p, out = self.padding, dict(record)
        for key, fill in (("image", self.fill), ("mask", self.mask_fill)):
            if key in record:
                pads = ((p, p), (p, p)) + ((0, 0),) * (record[key].ndim - 2)
                kwargs = {"constant_values": fill} if self.pad_mode == "constant" else {}
                out[key] = np.pad(record[key], pads, self.pad_mode, **kwargs)
        return out

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        h, w = check_image(record, self.name).shape[:2]
        height, width = (h, w) if self.size is None else _size_pair(self.size, "size")
        if not train:
            if (height, width) == (h, w) or not self.eval_crop:
                return record
            top, left = _center_offsets(h, w, height, width, self.name)
            return _crop(record, top, left, height, width)
        p = self.padding
        out = self._pad(record) if p else dict(record)
        hp, wp = h + 2 * p, w + 2 * p
        if height > hp or width > wp:
            raise ValueError(f"{self.name}: crop ({height}, {width}) exceeds padded ({hp}, {wp})")
        top = int(rng.integers(0, hp - height + 1))
        left = int(rng.integers(0, wp - width + 1))
        return _crop(out, top, left, height, width)


@AUGMENTATIONS.register("random_resized_crop")
@dataclasses.dataclass(frozen=True)
class RandomResizedCrop(Op):
    """Inception-style crop: a box of area `scale` x image area and aspect `ratio`
    (log-uniform), resized to `size`. Eval: resize the shorter side to size / crop_fraction,
    then centre crop `size`."""

    size: int | tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    crop_fraction: float = 0.875
    interpolation: str = "bilinear"
    name: ClassVar[str] = "random_resized_crop"

    def __post_init__(self) -> None:
        _size_pair(self.size, "size")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale={self.scale}: expected 0 < low <= high <= 1")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio={self.ratio}: expected 0 < low <= high")
        if not 0 < self.crop_fraction <= 1:
            raise ValueError(f"crop_fraction={self.crop_fraction}: expected in (0, 1]")

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        h, w = check_image(record, self.name).shape[:2]
        size = _size_pair(self.size, "size")
        if not train:
            # resize the shorter side to size / crop_fraction, then centre crop `size`: the
            # same as resizing a centred box of size / factor input pixels.
            factor = round(min(size) / self.crop_fraction) / min(h, w)
            box_h, box_w = min(size[0] / factor, h), min(size[1] / factor, w)
            top, left = (h - box_h) / 2, (w - box_w) / 2
            box = (left, top, left + box_w, top + box_h)
            return _resize_box(record, box, size, self.interpolation)
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            box_w = math.sqrt(target * aspect)
            box_h = math.sqrt(target / aspect)
            if box_w <= w and box_h <= h:
                left = rng.uniform(0, w - box_w)
                top = rng.uniform(0, h - box_h)
                return _resize_box(record, (left, top, left + box_w, top + box_h), size,
                                   self.interpolation)
        side = min(h, w)  # fallback: centre square
        left, top = (w - side) / 2, (h - side) / 2
        return _resize_box(record, (left, top, left + side, top + side), size, self.interpolation)


@dataclasses.dataclass(frozen=True)
class Flip(Op):
    """Mirror with probability `p`: axis 1 (horizontal, "hflip") or axis 0 (vertical, "vflip")."""

    p: float = 0.5
    axis: int = 1
    name: ClassVar[str] = "flip"

    def __post_init__(self) -> None:
        check_range(self.p, "p", 0, 1)

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        flip = rng.random() < self.p
        if not train or not flip:
            return record
        out = dict(record)
        out["image"] = np.flip(record["image"], axis=self.axis)
        if "mask" in record:
            out["mask"] = np.flip(record["mask"], axis=self.axis)
        return out


@AUGMENTATIONS.register("hflip")
def hflip(p: float = 0.5) -> Flip:
    """Mirror left-right with probability `p`."""
    return Flip(p=p, axis=1)


@AUGMENTATIONS.register("vflip")
def vflip(p: float = 0.5) -> Flip:
    """Mirror top-bottom with probability `p`."""
    return Flip(p=p, axis=0)


@AUGMENTATIONS.register("affine")
@dataclasses.dataclass(frozen=True)
class Affine(Op):
    """Random rotation (uniform in +-`degrees`), translation (+-`translate` x size), scale
    (uniform in `scale`) and shear (+-`shear` degrees) about the image centre; out-of-image
    pixels get `fill` (image) and `mask_fill` (mask)."""

    degrees: float = 10.0
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shear: float = 0.0
    fill: int = 0
    mask_fill: int = 0
    interpolation: str = "bilinear"
    name: ClassVar[str] = "affine"

    def __post_init__(self) -> None:
        if self.degrees < 0 or self.translate < 0 or self.shear < 0:
            raise ValueError(
                f"degrees={self.degrees}, translate={self.translate}, shear={self.shear}: "
                "expected >= 0"
            )
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale={self.scale}: expected 0 < low <= high")
        _check_interpolation(self.interpolation)

    def matrix(self, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        """The 3x3 map from output pixel coordinates (x, y) to input ones."""
        angle = math.radians(rng.uniform(-self.degrees, self.degrees))
        shear = math.radians(rng.uniform(-self.shear, self.shear))
        zoom = rng.uniform(*self.scale)
        tx, ty = rng.uniform(-self.translate, self.translate, 2) * (w, h)
        c, s = math.cos(angle), math.sin(angle)
        rotation = np.array([[c, -s], [s, c]])
        shear_m = np.array([[1.0, math.tan(shear)], [0.0, 1.0]])
        forward = zoom * rotation @ shear_m
        centre = np.array([w / 2, h / 2])
        inverse = np.linalg.inv(forward)
        offset = centre - inverse @ (centre + np.array([tx, ty]))
        out = np.eye(3)
        out[:2, :2], out[:2, 2] = inverse, offset
        return out

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        h, w = check_image(record, self.name).shape[:2]
        matrix = self.matrix(rng, h, w)
        if not train:
            return record
        data = tuple(matrix[:2].ravel())

        def warp(resample: Image.Resampling, fill: int) -> Callable[[Image.Image], Image.Image]:
            return lambda im: im.transform(
                (w, h), Image.Transform.AFFINE, data, resample, fillcolor=fill
            )

        return _pil_record(
            record,
            warp(_RESAMPLE[self.interpolation], self.fill),
            warp(Image.Resampling.NEAREST, self.mask_fill),
        )


@AUGMENTATIONS.register("rotate")
def rotate(degrees: float = 10.0, **kwargs: Any) -> Affine:
    """`Affine` with rotation only unless `kwargs` ask for more."""
    return Affine(degrees=degrees, **kwargs)
