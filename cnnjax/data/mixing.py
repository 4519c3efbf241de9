"""Batch-level augmentation: mixup and cutmix on batches of normalised float images.

These ops are registered with the per-example ones (`cnnjax.data.transforms.AUGMENTATIONS`)
but have `batch_level = True`: the pipeline batches first, then calls `mix_batch`, which
turns int labels into float32 soft labels (B, num_classes).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from cnnjax.data.transforms import AUGMENTATIONS, Op, Record

__all__ = ["BatchMix", "CutMix", "MixUp", "mix_batch"]


@dataclasses.dataclass(frozen=True)
class BatchMix(Op):
    """Base of mixup and cutmix: lam ~ Beta(alpha, alpha) mixes each row with a permuted one."""

    alpha: float = 1.0
    batch_level: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ValueError(f"alpha={self.alpha}: expected > 0")


@AUGMENTATIONS.register("mixup")
@dataclasses.dataclass(frozen=True)
class MixUp(BatchMix):
    """Batch-level: x = lam x + (1 - lam) x[perm], soft labels likewise,
    lam ~ Beta(alpha, alpha)."""

    alpha: float = 0.2
    name: ClassVar[str] = "mixup"


@AUGMENTATIONS.register("cutmix")
@dataclasses.dataclass(frozen=True)
class CutMix(BatchMix):
    """Batch-level: paste a box of x[perm] covering a fraction (1 - lam) of the image,
    lam ~ Beta(alpha, alpha); labels mixed by the pasted area."""

    alpha: float = 1.0
    name: ClassVar[str] = "cutmix"


def mix_batch(
    ops: Sequence[BatchMix], batch: Record, rng: np.random.Generator, num_classes: int
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
    lam = float(rng.beta(op.alpha, op.alpha))
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
