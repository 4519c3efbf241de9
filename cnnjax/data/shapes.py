"""Procedural geometric shapes: the default classification (`shapes`) and segmentation
(`shapes_seg`) data sets. No files, no download; every record is drawn on the fly from
`numpy.random.default_rng([seed, split, index])`, so a record depends only on its seed, split
and index, and any number of records of any size can be generated.

Each image has a random background colour with a random linear gradient, one shape (`shapes`)
or one to four possibly overlapping shapes (`shapes_seg`) of random class, position, size,
rotation and colour, and Gaussian pixel noise of random strength. Shape and background differ
by at least 0.3 (on the 0..1 scale) in every channel, so the label is always visible, but the
classes (circle, square, triangle, cross, ring, line) must be told apart from their outline
under rotation, scale, colour and noise: a model has to learn.

Geometry: pixel (row i, column j) has its centre at x = j + 0.5, y = i + 0.5. A shape of
class c, centre (cx, cy), radius r and angle t covers the pixels whose rotated, scaled
coordinates u = ((x-cx) cos t + (y-cy) sin t) / r, v = (-(x-cx) sin t + (y-cy) cos t) / r
satisfy the class's inequality (see `inside`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from cnnjax.checks import check_int
from cnnjax.data.info import DataInfo, check_split

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "line")
SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_NUM_EXAMPLES = {"train": 10_000, "val": 1_000, "test": 1_000}
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_SQRT3 = float(np.sqrt(3.0))


@dataclasses.dataclass(frozen=True)
class Shape:
    """One shape of a scene: class index into `SHAPE_NAMES`, centre (x, y) and radius in pixels,
    angle in radians, colour per channel on the 0..1 scale."""

    cls: int
    cx: float
    cy: float
    radius: float
    angle: float
    color: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Scene:
    """Everything that determines one image: shapes (drawn in order, later ones on top),
    background colour, gradient (added value per pixel along x and y), noise std (0..1 scale)
    and the seed of the noise."""

    shapes: tuple[Shape, ...]
    background: tuple[float, ...]
    gradient: tuple[float, float]
    noise_std: float
    noise_seed: int


def inside(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of the points (u, v), in the shape's unit coordinates, inside class `cls`."""
    au, av = np.abs(u), np.abs(v)
    if cls == 0:  # circle of radius 1
        return u * u + v * v <= 1.0
    if cls == 1:  # square of half-side 0.8
        return np.maximum(au, av) <= 0.8
    if cls == 2:  # equilateral triangle with circumradius 1, apex up (+v)
        return (v >= -0.5) & (v <= 1.0 - _SQRT3 * au)
    if cls == 3:  # plus sign, arms of half-width 0.3
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if cls == 4:  # annulus 0.55 <= radius <= 1
        rr = u * u + v * v
        return (rr <= 1.0) & (rr >= 0.55 * 0.55)
    if cls == 5:  # bar of half-length 1, half-width 0.15
        return (au <= 1.0) & (av <= 0.15)
    raise ValueError(f"cls={cls}: expected a shape class in 0..{len(SHAPE_NAMES) - 1}")


def shape_mask(shape: Shape, height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask of the pixels whose centres the shape covers."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    dx, dy = x - shape.cx, y - shape.cy
    c, s = np.cos(shape.angle), np.sin(shape.angle)
    u = (dx * c + dy * s) / shape.radius
    v = (-dx * s + dy * c) / shape.radius
    return inside(shape.cls, u, v)


def _contrasting_color(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A colour inside 0..1 that differs from `background` by 0.3..0.7 in every channel
    (by as much as the room allows, at least 0.5, where 0.7 does not fit on either side)."""
    delta = rng.uniform(0.3, 0.7, background.shape)
    coin = rng.random(background.shape) < 0.5
    room_up, room_down = 1.0 - background, background
    up_ok, down_ok = room_up >= delta, room_down >= delta
    go_up = np.where(up_ok & down_ok, coin, up_ok | (~down_ok & (room_up > room_down)))
    delta = np.where(up_ok | down_ok, delta, np.maximum(room_up, room_down))
    return np.where(go_up, background + delta, background - delta)


def sample_scene(
    rng: np.random.Generator,
    image_size: int,
    channels: int,
    num_shapes: int,
    radius_range: tuple[float, float],
) -> Scene:
    """Draw a scene: `num_shapes` shapes, radius in `radius_range` (fractions of the image size)."""
    background = rng.uniform(0.0, 1.0, channels)
    gradient = tuple(float(g) for g in rng.uniform(-0.15, 0.15, 2) / image_size)
    shapes = []
    for _ in range(num_shapes):
        cls = int(rng.integers(len(SHAPE_NAMES)))
        radius = float(rng.uniform(*radius_range) * image_size)
        margin = 0.8 * radius
        cx, cy = (float(c) for c in rng.uniform(margin, image_size - margin, 2))
        angle = float(rng.uniform(0.0, 2.0 * np.pi))
        color = tuple(float(c) for c in _contrasting_color(rng, background))
        shapes.append(Shape(cls, cx, cy, radius, angle, color))
    noise_std = float(rng.uniform(0.02, 0.12))
    noise_seed = int(rng.integers(2**31))
    colour = tuple(float(b) for b in background)
    return Scene(tuple(shapes), colour, gradient, noise_std, noise_seed)


def render(scene: Scene, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw a scene: uint8 image (H, W, C) and uint8 mask (H, W) with 0 = background and
    1 + class index for the top-most shape at each pixel."""
    channels = len(scene.background)
    y, x = np.mgrid[0:image_size, 0:image_size].astype(np.float64) + 0.5
    image = np.empty((image_size, image_size, channels))
    image[...] = np.asarray(scene.background)
    ramp = scene.gradient[0] * (x - image_size / 2) + scene.gradient[1] * (y - image_size / 2)
    image += ramp[..., None]
    mask = np.zeros((image_size, image_size), np.uint8)
    for shape in scene.shapes:
        covered = shape_mask(shape, image_size, image_size)
        image[covered] = np.asarray(shape.color)
        mask[covered] = shape.cls + 1
    noise = np.random.default_rng(scene.noise_seed).normal(0.0, scene.noise_std, image.shape)
    image = np.clip(np.rint((image + noise) * 255.0), 0, 255).astype(np.uint8)
    return image, mask


class ShapesSource:
    """Random-access source of procedural shapes; see the module docstring.

    Args:
      split: "train", "val" or "test": independent streams of the same distribution.
      task: "classification" (one shape, record `label`) or "segmentation" (1..4 shapes,
        record `mask` with 0 = background and 1 + class index).
      num_examples: number of records; defaults 10000 / 1000 / 1000 for train / val / test.
      image_size: height and width in pixels (>= 8).
      channels: 1 (grey) or 3 (colour).
      seed: the data set's seed; the same seed gives the same records.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        task: str = "classification",
        num_examples: int | None = None,
        image_size: int = 32,
        channels: int = 3,
        seed: int = 0,
    ) -> None:
        name = "shapes" if task == "classification" else "shapes_seg"
        check_split(name, split, SPLITS)
        if task not in ("classification", "segmentation"):
            raise ValueError(f"task={task!r}: expected 'classification' or 'segmentation'")
        if num_examples is None:
            num_examples = DEFAULT_NUM_EXAMPLES[split]
        self.num_examples = check_int(num_examples, "num_examples")
        self.image_size = check_int(image_size, "image_size", minimum=8)
        if channels not in (1, 3):
            raise ValueError(f"channels={channels!r}: expected 1 or 3")
        self.channels = channels
        self.seed = check_int(seed, "seed", minimum=0)
        self.split = split
        self.task = task

    @property
    def info(self) -> DataInfo:
        return shapes_info(task=self.task, image_size=self.image_size, channels=self.channels)

    def __len__(self) -> int:
        return self.num_examples

    def describe(self, index: int) -> Scene:
        """The scene of record `index` (what `__getitem__` draws)."""
        if not 0 <= index < self.num_examples:
            raise IndexError(f"index={index}: expected 0 <= index < {self.num_examples}")
        rng = np.random.default_rng([self.seed, _SPLIT_CODE[self.split], int(index)])
        if self.task == "classification":
            return sample_scene(rng, self.image_size, self.channels, 1, (0.18, 0.42))
        num_shapes = int(rng.integers(1, 5))
        return sample_scene(rng, self.image_size, self.channels, num_shapes, (0.12, 0.3))

    @property
    def labels(self) -> np.ndarray | None:
        """int64 (N,) labels of every record, without drawing images (None: segmentation)."""
        if self.task != "classification":
            return None
        return np.array([self.describe(i).shapes[0].cls for i in range(len(self))], np.int64)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene = self.describe(int(index))
        image, mask = render(scene, self.image_size)
        if self.task == "classification":
            return {"image": image, "label": np.int64(scene.shapes[0].cls)}
        return {"image": image, "mask": mask}

    def __repr__(self) -> str:
        return (
            f"ShapesSource(split={self.split!r}, task={self.task!r}, "
            f"num_examples={self.num_examples}, image_size={self.image_size}, "
            f"channels={self.channels}, seed={self.seed})"
        )


@functools.lru_cache(maxsize=32)
def _pixel_stats(task: str, image_size: int, channels: int) -> tuple[tuple, tuple]:
    """Per-channel mean and std (0..1 scale) over 64 fixed training records."""
    source = ShapesSource(
        "train", task=task, num_examples=64, image_size=image_size, channels=channels, seed=12345
    )
    images = np.stack([source[i]["image"] for i in range(64)]).astype(np.float64) / 255.0
    axes = tuple(range(images.ndim - 1))
    mean = tuple(round(float(m), 4) for m in images.mean(axis=axes))
    std = tuple(round(float(s), 4) for s in images.std(axis=axes))
    return mean, std


def shapes_info(
    task: str = "classification", image_size: int = 32, channels: int = 3
) -> DataInfo:
    """Metadata of `shapes` (task="classification") or `shapes_seg` (task="segmentation")."""
    mean, std = _pixel_stats(task, image_size, channels)
    if task == "classification":
        return DataInfo(
            name="shapes",
            task="classification",
            num_classes=len(SHAPE_NAMES),
            class_names=SHAPE_NAMES,
            image_shape=(image_size, image_size, channels),
            mean=mean,
            std=std,
            splits=SPLITS,
            description="Procedural shapes, one per image; splits are independent random streams.",
        )
    return DataInfo(
        name="shapes_seg",
        task="segmentation",
        num_classes=len(SHAPE_NAMES) + 1,
        class_names=("background", *SHAPE_NAMES),
        image_shape=(image_size, image_size, channels),
        mean=mean,
        std=std,
        splits=SPLITS,
        description=(
            "Procedural shapes, 1..4 per image, per-pixel mask 0 = background, 1 + class index; "
            "splits are independent random streams."
        ),
    )
