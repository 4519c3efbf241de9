"""Per-example augmentation (NumPy + PIL, on uint8 records) and batch-level mixup/cutmix.

Every per-example op is called as `op(record, rng, train)` with a `numpy.random.Generator`
that the pipeline derives from (seed, position of the example in the repeated stream), so
results are reproducible and do not depend on the number of workers. With `train=False` a
random op does its deterministic evaluation counterpart (random crop -> centre crop, random
resized crop -> resize + centre crop, flips/photometric/cutout -> nothing). Geometric ops
move `image` and `mask` together; masks always use nearest-neighbour sampling.

Declarative specs (what a config file writes), see `parse_spec`:
  "random_crop(padding=4)|hflip"
  ["hflip", ("affine", {"degrees": 10}), {"op": "mixup", "alpha": 0.2}]
  "crop_flip"  (a preset name, see `PRESETS`)
"""

from __future__ import annotations

import ast
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from cnnjax.data.info import DataInfo

Record = dict[str, Any]

PRESETS: dict[str, str] = {
    "none": "",
    "flip": "hflip",
    "crop_flip": "random_crop(padding=4)|hflip",
    "inception": "random_resized_crop(size=224)|hflip",
    "inception_color": "random_resized_crop(size=224)|hflip|brightness(max_delta=0.2)"
    "|contrast(lower=0.8, upper=1.2)",
    "mnist": "affine(degrees=10, translate=0.1, scale=(0.9, 1.1))",
    "segmentation": "hflip|vflip|affine(degrees=15, scale=(0.9, 1.1))",
}

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


def _size_pair(size: int | Sequence[int], argument: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise ValueError(f"{argument}={size!r}: expected a positive int or (height, width)")
    return pair  # type: ignore[return-value]


def _check_image(record: Record, op: str) -> np.ndarray:
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


def _pil_map(image: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Apply a PIL operation to a uint8 (H, W, C) image, channel by channel unless RGB."""
    if image.shape[-1] == 3:
        return np.asarray(fn(Image.fromarray(image)))
    planes = [np.asarray(fn(Image.fromarray(image[..., c]))) for c in range(image.shape[-1])]
    return np.stack(planes, axis=-1)


def _mask_map(mask: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    return np.asarray(fn(Image.fromarray(mask)))


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
    out = dict(record)
    target = (size[1], size[0])
    out["image"] = _pil_map(
        record["image"], lambda im: im.resize(target, _RESAMPLE[interp], box=box)
    )
    if "mask" in record:
        out["mask"] = _mask_map(
            record["mask"], lambda im: im.resize(target, Image.Resampling.NEAREST, box=box)
        )
    return out


@dataclasses.dataclass(frozen=True)
class Op:
    """Base of the per-example ops: `op(record, rng, train) -> record`."""

    name: ClassVar[str] = ""
    batch_level: ClassVar[bool] = False

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Resize(Op):
    """Resize to `size` (int or (height, width)); deterministic, train and eval."""

    size: int | tuple[int, int]
    interpolation: str = "bilinear"
    name: ClassVar[str] = "resize"

    def __post_init__(self) -> None:
        _size_pair(self.size, "size")
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation={self.interpolation!r}: expected {tuple(_RESAMPLE)}")

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        h, w = _check_image(record, self.name).shape[:2]
        return _resize_box(record, (0, 0, w, h), _size_pair(self.size, "size"), self.interpolation)


@dataclasses.dataclass(frozen=True)
class CenterCrop(Op):
    """Crop the centre `size` (int or (height, width)); deterministic, train and eval."""

    size: int | tuple[int, int]
    name: ClassVar[str] = "center_crop"

    def __post_init__(self) -> None:
        _size_pair(self.size, "size")

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        h, w = _check_image(record, self.name).shape[:2]
        height, width = _size_pair(self.size, "size")
        top, left = _center_offsets(h, w, height, width, self.name)
        return _crop(record, top, left, height, width)


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

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        h, w = _check_image(record, self.name).shape[:2]
        height, width = (h, w) if self.size is None else _size_pair(self.size, "size")
        if not train:
            if (height, width) == (h, w) or not self.eval_crop:
                return record
            top, left = _center_offsets(h, w, height, width, self.name)
            return _crop(record, top, left, height, width)
        p = self.padding
        out = dict(record)
        if p:
            kwargs = {"constant_values": self.fill} if self.pad_mode == "constant" else {}
            pads = ((p, p), (p, p), (0, 0))
            out["image"] = np.pad(record["image"], pads, self.pad_mode, **kwargs)
            if "mask" in record:
                mask_kwargs = (
                    {"constant_values": self.mask_fill} if self.pad_mode == "constant" else {}
                )
                out["mask"] = np.pad(record["mask"], ((p, p), (p, p)), self.pad_mode, **mask_kwargs)
        hp, wp = h + 2 * p, w + 2 * p
        if height > hp or width > wp:
            raise ValueError(f"{self.name}: crop ({height}, {width}) exceeds padded ({hp}, {wp})")
        top = int(rng.integers(0, hp - height + 1))
        left = int(rng.integers(0, wp - width + 1))
        return _crop(out, top, left, height, width)


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
        h, w = _check_image(record, self.name).shape[:2]
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
        if not 0 <= self.p <= 1:
            raise ValueError(f"p={self.p}: expected a probability in [0, 1]")

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        flip = rng.random() < self.p
        if not train or not flip:
            return record
        out = dict(record)
        out["image"] = np.flip(record["image"], axis=self.axis)
        if "mask" in record:
            out["mask"] = np.flip(record["mask"], axis=self.axis)
        return out


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
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation={self.interpolation!r}: expected {tuple(_RESAMPLE)}")

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
        h, w = _check_image(record, self.name).shape[:2]
        matrix = self.matrix(rng, h, w)
        if not train:
            return record
        data = tuple(matrix[:2].ravel())
        out = dict(record)
        out["image"] = _pil_map(
            record["image"],
            lambda im: im.transform(
                (w, h), Image.Transform.AFFINE, data, _RESAMPLE[self.interpolation],
                fillcolor=self.fill,
            ),
        )
        if "mask" in record:
            out["mask"] = _mask_map(
                record["mask"],
                lambda im: im.transform(
                    (w, h), Image.Transform.AFFINE, data, Image.Resampling.NEAREST,
                    fillcolor=self.mask_fill,
                ),
            )
        return out


def _apply_lut(image: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Map uint8 pixels through a 256-entry table of float values (rounded, clipped to uint8):
    one table lookup instead of float arithmetic on every pixel."""
    lut = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.take(lut, image)


@dataclasses.dataclass(frozen=True)
class Brightness(Op):
    """Add a uniform random offset in +-`max_delta` (0..1 scale) to every pixel."""

    max_delta: float = 0.2
    name: ClassVar[str] = "brightness"

    def __post_init__(self) -> None:
        if not 0 <= self.max_delta <= 1:
            raise ValueError(f"max_delta={self.max_delta}: expected in [0, 1]")

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        delta = rng.uniform(-self.max_delta, self.max_delta)
        if not train:
            return record
        image = _check_image(record, self.name)
        return {**record, "image": _apply_lut(image, np.arange(256.0) + 255.0 * delta)}


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
        image = _check_image(record, self.name)
        mean = float(image.mean())
        return {**record, "image": _apply_lut(image, (np.arange(256.0) - mean) * factor + mean)}


@dataclasses.dataclass(frozen=True)
class Cutout(Op):
    """Fill a `size` x `size` square at a uniformly random centre (clipped at the borders)
    with `fill` (default: the data set's mean colour, i.e. 0 after normalisation)."""

    size: int = 8
    fill: int | None = None
    mean_fill: tuple[int, ...] = ()
    name: ClassVar[str] = "cutout"

    def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
        h, w = _check_image(record, self.name).shape[:2]
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


@dataclasses.dataclass(frozen=True)
class MixUp(Op):
    """Batch-level: x = lam x + (1 - lam) x[perm], soft labels likewise,
    lam ~ Beta(alpha, alpha)."""

    alpha: float = 0.2
    name: ClassVar[str] = "mixup"
    batch_level: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ValueError(f"alpha={self.alpha}: expected > 0")


@dataclasses.dataclass(frozen=True)
class CutMix(Op):
    """Batch-level: paste a box of x[perm] covering a fraction (1 - lam) of the image,
    lam ~ Beta(alpha, alpha); labels mixed by the pasted area."""

    alpha: float = 1.0
    name: ClassVar[str] = "cutmix"
    batch_level: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ValueError(f"alpha={self.alpha}: expected > 0")


_OPS: dict[str, Callable[..., Op]] = {
    "resize": Resize,
    "center_crop": CenterCrop,
    "random_crop": RandomCrop,
    "random_resized_crop": RandomResizedCrop,
    "hflip": lambda p=0.5: Flip(p=p, axis=1),
    "vflip": lambda p=0.5: Flip(p=p, axis=0),
    "affine": Affine,
    "rotate": lambda degrees=10.0, **kw: Affine(degrees=degrees, **kw),
    "brightness": Brightness,
    "contrast": Contrast,
    "cutout": Cutout,
    "mixup": MixUp,
    "cutmix": CutMix,
}
OP_NAMES: tuple[str, ...] = tuple(_OPS)

Spec = str | Sequence[str | tuple[str, Mapping[str, Any]] | Mapping[str, Any]] | None


def _parse_call(text: str) -> tuple[str, dict[str, Any]]:
    """"name" or "name(key=literal, ...)" -> (name, kwargs)."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
        if isinstance(node, ast.Name):
            return node.id, {}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args:
            return node.func.id, {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except (SyntaxError, ValueError) as error:
        raise ValueError(f"augment op {text!r}: cannot parse ({error})") from error
    raise ValueError(f"augment op {text!r}: expected 'name' or 'name(key=value, ...)'")


def parse_spec(spec: Spec) -> list[tuple[str, dict[str, Any]]]:
    """Normalise an augmentation spec to [(op name, kwargs), ...], expanding presets."""
    if spec is None:
        return []
    if isinstance(spec, str):
        items: list[Any] = [s for s in spec.split("|") if s.strip()]
    elif isinstance(spec, Sequence):
        items = list(spec)
    else:
        raise TypeError(f"augment={spec!r}: expected a str, a sequence of ops or None")
    parsed: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if isinstance(item, str):
            name, kwargs = _parse_call(item)
        elif isinstance(item, Mapping):
            kwargs = dict(item)
            name = kwargs.pop("op", None) or kwargs.pop("name", None)
        elif isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[1], Mapping):
            name, kwargs = item[0], dict(item[1])
        else:
            raise TypeError(
                f"augment item {item!r}: expected 'name(k=v)', (name, kwargs) "
                "or {'op': name, ...}"
            )
        if name in PRESETS and not kwargs:
            parsed.extend(parse_spec(PRESETS[name]))
            continue
        if name not in _OPS:
            raise ValueError(
                f"augment op {name!r}: unknown; expected one of {OP_NAMES} or a preset "
                f"{tuple(PRESETS)}"
            )
        parsed.append((name, kwargs))
    return parsed


def build_ops(spec: Spec, info: DataInfo | None = None) -> tuple[list[Op], list[Op]]:
    """Instantiate a spec: (per-example ops, batch-level ops), in order.

    `info` supplies the data set's mean colour to `cutout` and is used to reject mixup/cutmix
    on segmentation data.
    """
    example_ops: list[Op] = []
    batch_ops: list[Op] = []
    for name, kwargs in parse_spec(spec):
        if name == "cutout" and info is not None and "fill" not in kwargs:
            kwargs = {**kwargs, "mean_fill": tuple(round(255 * m) for m in info.mean)}
        try:
            op = _OPS[name](**kwargs)
        except TypeError as error:
            raise TypeError(f"augment op {name!r} with {kwargs}: {error}") from error
        if op.batch_level:
            if info is not None and info.task != "classification":
                raise ValueError(f"augment op {name!r}: only for classification, not {info.task}")
            batch_ops.append(op)
        else:
            if batch_ops:
                raise ValueError(f"augment op {name!r}: per-example ops must precede mixup/cutmix")
            example_ops.append(op)
    return example_ops, batch_ops


def apply_ops(ops: Sequence[Op], record: Record, rng: np.random.Generator, train: bool) -> Record:
    """Run per-example ops in order (each consumes draws from `rng`, also in eval mode)."""
    for op in ops:
        record = op(record, rng, train)
    return record


def mix_batch(
    ops: Sequence[Op], batch: Record, rng: np.random.Generator, num_classes: int
) -> Record:
    """Apply mixup/cutmix to a batch of normalised float images and int labels.

    Returns the batch with `label` as float32 (B, num_classes) soft labels. With several
    ops, one is chosen uniformly per batch. Padding rows (valid == 0) are not special-cased:
    mixing is for training batches, which have none.
    """
    labels = np.asarray(batch["label"])
    soft = np.eye(num_classes, dtype=np.float32)[labels]
    out = dict(batch)
    if not ops:
        out["label"] = soft
        return out
    op = ops[int(rng.integers(len(ops)))]
    lam = float(rng.beta(op.alpha, op.alpha))  # type: ignore[attr-defined]
    perm = rng.permutation(labels.shape[0])
    images = np.asarray(batch["image"])
    if isinstance(op, MixUp):
        out["image"] = (lam * images + (1.0 - lam) * images[perm]).astype(np.float32)
    else:
        h, w = images.shape[1:3]
        cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h - cut_h // 2, h)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w - cut_w // 2, w)
        mixed = images.copy()
        mixed[:, top:bottom, left:right] = images[perm, top:bottom, left:right]
        out["image"] = mixed
        lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    out["label"] = (lam * soft + (1.0 - lam) * soft[perm]).astype(np.float32)
    return out
