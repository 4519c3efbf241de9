"""`image_folder_seg`: segmentation from a folder of your own images and their masks.

    DIR/images/**/<name>.<ext>   DIR/masks/**/<name>.png      one folder, seeded hold-outs
    DIR/train/{images,masks}/ [DIR/val/{images,masks}/] [DIR/test/{images,masks}/]

    get_source("image_folder_seg", "train", "DIR", image_size=128, channels=1, num_classes=2)

An image and its mask have the same path under `images/` and `masks/` without the suffix
(`a/b.jpg` <-> `a/b.png`). A mask holds one class id per pixel (grey "L" or palette "P" PNG;
value 255 is "ignore", see `cnnjax.data.checks`); it is resized with nearest-neighbour, its
image as in `image_folder` (options: `FolderOptions`, plus `num_classes`, default the largest
mask value + 1, and `class_names`, default "0", "1", ...). Pairs are split uniformly (not
stratified): a permutation from `split_seed` gives "test" round(test_fraction * n), "val" the
next round(val_fraction * n), "train" the rest, where DIR has no `val/` / `test/`.

Errors name the path: an image without a mask (or back), two files of one name (`a.png`,
`a.jpg`), an image and mask of different sizes, an unreadable file, a mask value >= num_classes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnnjax.data.checks import IGNORE_LABEL
from cnnjax.data.folder_common import (
    SPLITS,
    ChannelStats,
    FolderOptions,
    fraction_split,
    scan_once,
    split_folders,
)
from cnnjax.data.image_files import image_files, read_image, read_mask
from cnnjax.data.image_folder import first_size, folder_root
from cnnjax.data.info import DataInfo, check_split

__all__ = ["ImageMaskSource", "image_folder_seg_source"]

NAME = "image_folder_seg"
Pair = tuple[Path, Path]


def _by_stem(folder: Path) -> dict[str, Path]:
    """{relative path without suffix: file} of the image files under `folder`."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{str(folder)!r} is missing: expected {folder.parent}/images/ "
                                f"and {folder.parent}/masks/ with files of the same names")
    out: dict[str, Path] = {}
    for f in image_files(folder):
        stem = f.relative_to(folder).with_suffix("").as_posix()
        if stem in out:
            raise ValueError(f"{str(out[stem])!r} and {str(f)!r} have the same name: which one "
                             "pairs with the mask is ambiguous; rename or remove one")
        out[stem] = f
    if not out:
        raise ValueError(f"{str(folder)!r} holds no image files")
    return out


def _pairs(folder: Path) -> list[Pair]:
    """(image, mask) pairs of `folder`/images and `folder`/masks, sorted by name."""
    images, masks = _by_stem(folder / "images"), _by_stem(folder / "masks")
    for what, a, b in (("mask", images, masks), ("image", masks, images)):
        missing = sorted(set(a) - set(b))
        if missing:
            where = folder / ("masks" if what == "mask" else "images")
            raise ValueError(f"{len(missing)} file(s) have no {what} in {str(where)!r} "
                             f"(e.g. {str(a[missing[0]])!r}); every image needs a mask of "
                             "the same name")
    return [(images[s], masks[s]) for s in sorted(images)]


def _split_pairs(root: Path, opts: FolderOptions) -> dict[str, list[Pair]]:
    folders = split_folders(root) or {"train": root}
    per_split = {s: _pairs(f) for s, f in folders.items()}
    train = per_split["train"]
    parts = fraction_split(len(train), tuple(per_split), opts, ())
    out = {s: [train[i] for i in parts[s]] for s in parts}
    out.update({s: p for s, p in per_split.items() if s != "train"})
    if not out["train"]:
        raise ValueError(f"{str(root)!r}: no training pair is left after the val/test hold-out "
                         f"({len(train)} pairs)")
    return out


def _scan(pairs: dict[str, list[Pair]], opts: FolderOptions, size: tuple[int, int]
          ) -> dict[str, Any]:
    """Read every pair once (unreadable file or size mismatch raises); train mean/std and the
    largest mask value other than the ignore label."""
    stats, top = ChannelStats(opts.channels), 0
    for split in SPLITS:
        for image_path, mask_path in pairs[split]:
            raw_size = first_size(image_path)
            mask = read_mask(mask_path)
            if mask.shape != raw_size:
                raise ValueError(f"mask {str(mask_path)!r} is {mask.shape[0]}x{mask.shape[1]} but "
                                 f"its image {str(image_path)!r} is {raw_size[0]}x{raw_size[1]}")
            values = mask[mask != IGNORE_LABEL]
            top = max(top, int(values.max()) if values.size else 0)
            if split == "train":
                stats.add(read_image(image_path, opts.channels, size, opts.fit))
    mean, std = stats.mean_std()
    return {"mean": mean, "std": std, "max_mask_value": top}


class ImageMaskSource:
    """Records of one split: `image` uint8 (H, W, C) and `mask` uint8 (H, W), read on access."""

    def __init__(self, pairs: list[Pair], info: DataInfo, opts: FolderOptions) -> None:
        self._pairs = list(pairs)
        self._opts = opts
        self.info = info

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        h, w, c = self.info.image_shape
        image_path, mask_path = self._pairs[index]
        mask = read_mask(mask_path, (h, w), self._opts.fit)
        bad = (mask >= self.info.num_classes) & (mask != IGNORE_LABEL)
        if bad.any():
            raise ValueError(f"mask {str(mask_path)!r} holds class id {int(mask[bad].max())}; "
                             f"expected 0..{self.info.num_classes - 1} or {IGNORE_LABEL} (ignore)")
        return {"image": read_image(image_path, c, (h, w), self._opts.fit), "mask": mask}

    def __repr__(self) -> str:
        return f"ImageMaskSource({self.info.description!r}, num_records={len(self)})"


def image_folder_seg_source(split: str, data_dir: str | os.PathLike | None = None, *,
                            num_classes: int | None = None,
                            class_names: tuple[str, ...] | None = None,
                            **options: Any) -> ImageMaskSource:
    """Split `split` of the image/mask folder `data_dir` (module docstring)."""
    check_split(NAME, split, SPLITS)
    opts = FolderOptions.of(NAME, **options)
    root = folder_root(NAME, data_dir)
    pairs = _split_pairs(root, opts)
    size = opts.image_size or first_size(pairs["train"][0][0])
    files = [p for s in SPLITS for pair in pairs[s] for p in pair]
    key = {"kind": NAME, "size": size, "fit": opts.fit, "channels": opts.channels,
           "split": [len(pairs[s]) for s in SPLITS]}
    stats = scan_once(files, key, lambda: _scan(pairs, opts, size))
    k = stats["max_mask_value"] + 1 if num_classes is None else num_classes
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"{NAME}: num_classes={k!r}; expected an int >= 2 (the masks under "
                         f"{str(root)!r} go up to {stats['max_mask_value']})")
    if k <= stats["max_mask_value"]:
        raise ValueError(f"{NAME}: num_classes={k}, but the masks under {str(root)!r} hold "
                         f"class id {stats['max_mask_value']}; expected num_classes >= "
                         f"{stats['max_mask_value'] + 1}")
    names = tuple(str(i) for i in range(k)) if class_names is None else tuple(class_names)
    if not pairs[split]:
        raise ValueError(f"split {split!r} of {str(root)!r} is empty: add {root}/{split}/ or "
                         f"set dataset_options.{split}_fraction > 0")
    info = DataInfo(
        name=NAME, task="segmentation", num_classes=k, class_names=names,
        image_shape=(*size, opts.channels), mean=tuple(stats["mean"]), std=tuple(stats["std"]),
        description=f"image/mask folder {str(root)!r}: "
        + ", ".join(f"{s} {len(pairs[s])}" for s in SPLITS),
    )
    return ImageMaskSource(pairs[split], info, opts)
