"""`image_folder`: classification from a folder of your own images, one sub-folder per class.

    DIR/<class>/**/*.png                 one folder: val/test held out by seeded fractions
    DIR/train/<class>/**/*.png           or split folders; a missing val/ or test/ is held
    DIR/val/<class>/...  DIR/test/...    out of train/ by the same fractions

    get_source("image_folder", "train", "DIR", image_size=64, channels=3)
    # run config: --config.dataset=image_folder --config.data_dir=DIR
    #             --config.dataset_options.image_size=64

Files: PNG, JPEG, BMP, TIFF (GIF, WebP) by suffix, any depth under a class folder; hidden
files and other files are skipped. Class names are the class folders' names, sorted (label k
is the k-th); a run saves them (`config.dataset_info`) and exports write them to
`export.json`. Each class is split on its own (stratified): a permutation from
`[split_seed, k]` gives "test" round(test_fraction * n) images, "val" the next
round(val_fraction * n), "train" the rest. Options and pixel conversion:
`cnnjax.data.folder_common.FolderOptions`, `cnnjax.data.image_files`. Mean and std are
measured on the train split once and cached (`folder_common.scan_once`).

Errors name the path: a missing folder, a class folder without images, images outside class
folders, fewer than 2 classes, a val/test class unknown to train, an unreadable file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cnnjax.data.folder_common import (
    SPLITS,
    ChannelStats,
    FolderOptions,
    fraction_split,
    scan_once,
    split_folders,
)
from cnnjax.data.image_files import IMAGE_SUFFIXES, image_files, read_image
from cnnjax.data.info import DataInfo, check_split

__all__ = ["ImageFolderSource", "folder_root", "image_folder_source"]

NAME = "image_folder"


def folder_root(name: str, data_dir: str | os.PathLike | None) -> Path:
    """`data_dir` as an existing folder; FileNotFoundError/ValueError saying what to pass."""
    if data_dir is None or str(data_dir) == "":
        raise ValueError(f"data set {name!r} needs the folder of images: pass data_dir=DIR "
                         "(a run config: --config.data_dir=DIR)")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data set {name!r}: data_dir={str(data_dir)!r} is not a folder")
    return root


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """{class name: image files} of the class folders under `folder`, names sorted."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise ValueError(
            f"{str(folder)!r} holds image files outside class folders (e.g. {loose[0].name!r}): "
            f"expected one sub-folder per class, {folder}/<class>/<image>")
    if not classes:
        raise ValueError(f"{str(folder)!r} has no class folders: expected {folder}/<class>/"
                         f"<image> with image files ({', '.join(IMAGE_SUFFIXES)})")
    out = {}
    for c in classes:
        files = image_files(folder / c)
        if not files:
            raise ValueError(f"class folder {str(folder / c)!r} holds no image files "
                             f"({', '.join(IMAGE_SUFFIXES)}); add images or remove it")
        out[c] = files
    return out


def _records(root: Path, opts: FolderOptions
             ) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]]]:
    """(class names, {split: [(file, label), ...]}) of the folder (module docstring)."""
    folders = split_folders(root)
    per_split = {s: _class_files(f) for s, f in (folders or {"train": root}).items()}
    names = tuple(per_split["train"])
    if len(names) < 2:
        raise ValueError(f"{str(folders['train'] if folders else root)!r} has {len(names)} class "
                         f"folder ({names[0]!r}): classification needs at least 2 classes")
    records: dict[str, list[tuple[Path, int]]] = {s: [] for s in SPLITS}
    for split, classes in per_split.items():
        unknown = sorted(set(classes) - set(names))
        if unknown:
            raise ValueError(f"{str(root / split)!r} has class folders {unknown} that train/ "
                             f"lacks; expected only {list(names)}")
    for label, name in enumerate(names):
        files = per_split["train"][name]
        parts = fraction_split(len(files), tuple(per_split), opts, (label,))
        if len(parts["train"]) == 0:
            raise ValueError(f"class folder {name!r} under {str(root)!r} keeps no training "
                             f"image after the val/test hold-out ({len(files)} images)")
        for split, positions in parts.items():
            records[split] += [(files[i], label) for i in positions]
        for split in set(per_split) - {"train"}:
            records[split] += [(f, label) for f in per_split[split].get(name, [])]
    return names, records


def _scan(records: dict[str, list[tuple[Path, int]]], opts: FolderOptions,
          size: tuple[int, int]) -> dict[str, Any]:
    """Read every file once (an unreadable one raises, naming it); train mean/std."""
    stats = ChannelStats(opts.channels)
    for split in SPLITS:
        for path, _ in records[split]:
            image = read_image(path, opts.channels, size, opts.fit)
            if split == "train":
                stats.add(image)
    mean, std = stats.mean_std()
    return {"mean": mean, "std": std}


class ImageFolderSource:
    """The records of one split: `image` uint8 (H, W, C), decoded at each access, `label`."""

    def __init__(self, records: list[tuple[Path, int]], info: DataInfo, opts: FolderOptions
                 ) -> None:
        self._paths = [p for p, _ in records]
        self._labels = np.asarray([lab for _, lab in records], np.int64)
        self._opts = opts
        self.info = info

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        h, w, c = self.info.image_shape
        image = read_image(self._paths[index], c, (h, w), self._opts.fit)
        return {"image": image, "label": self._labels[index]}

    @property
    def labels(self) -> np.ndarray:
        """int64 (N,) labels of the split's records (for few-label subsets)."""
        return self._labels

    @property
    def paths(self) -> list[Path]:
        return list(self._paths)

    def __repr__(self) -> str:
        return f"ImageFolderSource({self.info.description!r}, num_records={len(self)})"


def first_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file as stored."""
    image = read_image(path, 1)
    return int(image.shape[0]), int(image.shape[1])


def image_folder_source(split: str, data_dir: str | os.PathLike | None = None,
                        **options: Any) -> ImageFolderSource:
    """Split `split` of the image folder `data_dir` (module docstring; options:
    `FolderOptions`)."""
    check_split(NAME, split, SPLITS)
    opts = FolderOptions.of(NAME, **options)
    root = folder_root(NAME, data_dir)
    names, records = _records(root, opts)
    size = opts.image_size or first_size(records["train"][0][0])
    all_files = [p for s in SPLITS for p, _ in records[s]]
    key = {"kind": NAME, "size": size, "fit": opts.fit, "channels": opts.channels,
           "split": [len(records[s]) for s in SPLITS]}
    stats = scan_once(all_files, key, lambda: _scan(records, opts, size))
    if not records[split]:
        raise ValueError(f"split {split!r} of {str(root)!r} is empty: add {root}/{split}/ or "
                         f"set dataset_options.{split}_fraction > 0")
    info = DataInfo(
        name=NAME, task="classification", num_classes=len(names), class_names=names,
        image_shape=(*size, opts.channels), mean=tuple(stats["mean"]), std=tuple(stats["std"]),
        description=f"image folder {str(root)!r}: {len(names)} classes, "
        + ", ".join(f"{s} {len(records[s])}" for s in SPLITS),
    )
    return ImageFolderSource(records[split], info, opts)
