"""Tiny image folders written with Pillow, for the folder-source tests (no shared data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("circle", "square", "triangle")


def class_image(label: int, index: int, size: int = 12) -> np.ndarray:
    """An RGB uint8 image whose class shows: channel `label` is bright, the others carry
    `index` (so images of one class differ)."""
    x = np.full((size, size, 3), (index * 7) % 60, np.uint8)
    x[..., label] = 200 + label * 10
    x[: size // 2, : size // 2, label] = 120
    return x


def write_class_folder(root: Path, per_class: int = 10, *, size: int = 12,
                       classes: tuple[str, ...] = CLASSES, suffix: str = ".png") -> Path:
    """root/<class>/img_<i><suffix> for each class; returns root."""
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(class_image(label, i, size)).save(folder / f"img_{i:03d}{suffix}")
    return root


def write_seg_folder(root: Path, count: int = 10, *, size: int = 16,
                     num_classes: int = 3) -> Path:
    """root/images/s_<i>.png (grey) and root/masks/s_<i>.png (class ids); returns root."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[: size // 2] = 1
        mask[size // 2 :, : size // 2] = (i % (num_classes - 1)) + 1
        image = (mask * 60 + i).astype(np.uint8)
        Image.fromarray(image, mode="L").save(root / "images" / f"s_{i:03d}.png")
        Image.fromarray(mask, mode="L").save(root / "masks" / f"s_{i:03d}.png")
    return root
