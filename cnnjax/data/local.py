"""The local NumPy archives of `../shared/data/README.md`, read into `ArraySource`s.

Data directory: the `data_dir` argument (a run config passes its `data_dir` here) or else the
environment variable `CNNJAX_DATA_DIR`. How each archive is split:

- `mnist`, `fashion_mnist`: the standard 60000 train / 10000 test images. With option
  `val_size=k` (default 0), a deterministic hold-out of k train images (the last k of a
  permutation drawn from `split_seed`, default 0) becomes "val" and is removed from "train";
  with `val_size=0`, "train" keeps the original order and "val" is not available.
  Fashion-MNIST's archive is grouped by class: training pipelines shuffle, and any hold-out is
  drawn from a permutation, never a slice.
- `cifar10`: only the 10000 test images exist locally (JPEG-decoded, grouped by class). A
  permutation drawn from `split_seed` (default 0) is cut into "test" (first `test_size`,
  default 2000), "val" (next `val_size`, default 0) and "train" (the rest, 8000 by default).
- `isbi2012`: the 30 labelled 512x512 EM images: "train" is the first 30 - `val_size`
  (default `val_size=5`, so 25) and "val" the last `val_size`; "unlabeled" gives the 30
  challenge test images (records with `image` only). There is no labelled "test" split.
"""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cnnjax.checks import check_int
from cnnjax.data.arrays import ArraySource
from cnnjax.data.info import DataInfo, check_split

ENV_DATA_DIR = "CNNJAX_DATA_DIR"


def resolve_data_dir(data_dir: str | os.PathLike | None, name: str, filename: str) -> Path:
    """The archive `filename` of data set `name`: under `data_dir`, else under `$CNNJAX_DATA_DIR`.

    Raises FileNotFoundError saying where it looked and how to provide the data.
    """
    how = (
        f"Provide the data set {name!r}: pass data_dir=<folder> (or the run config's data_dir) "
        f"or set the environment variable {ENV_DATA_DIR}=<folder>, where <folder> holds "
        f"{filename!r} in the layout of shared/data/README.md (NumPy .npz, uint8 images)."
    )
    if data_dir is None:
        env = os.environ.get(ENV_DATA_DIR)
        if not env:
            raise FileNotFoundError(
                f"No data directory for {name!r}: data_dir is None and {ENV_DATA_DIR} is not set. "
                + how
            )
        base, origin = Path(env), f"{ENV_DATA_DIR}={env!r}"
    else:
        base, origin = Path(data_dir), f"data_dir={str(data_dir)!r}"
    if not base.is_dir():
        raise FileNotFoundError(
            f"Data directory {str(base)!r} (from {origin}) does not exist. " + how
        )
    path = base / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"{filename!r} not found in {str(base)!r} (from {origin}); looked for {str(path)!r}. "
            + how
        )
    return path


@functools.lru_cache(maxsize=8)
def _load_npz_cached(path: str, mtime_ns: int, size: int) -> Mapping[str, np.ndarray]:
    del mtime_ns, size  # only part of the cache key: a changed file is read again
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ValueError(
            f"Cannot read the archive {path!r}: {type(error).__name__}: {error}. "
            "It is corrupt or not a NumPy .npz file: replace it with a fresh copy."
        ) from error


def load_npz(
    path: Path, expected: Mapping[str, tuple[str, tuple]]
) -> Mapping[str, np.ndarray]:
    """Arrays of a .npz archive, checked against `expected` {key: (dtype kind, shape with None
    for any size)}; a corrupt or incomplete archive raises ValueError naming the file."""
    stat = path.stat()
    arrays = _load_npz_cached(str(path), stat.st_mtime_ns, stat.st_size)
    for key, (kind, shape) in expected.items():
        if key not in arrays:
            raise ValueError(
                f"The archive {str(path)!r} has no array {key!r} (it has {sorted(arrays)}): "
                "it is incomplete or corrupt; replace it with a fresh copy."
            )
        array = arrays[key]
        shape_ok = array.ndim == len(shape) and all(
            s is None or s == a for s, a in zip(shape, array.shape, strict=True)
        )
        if array.dtype.kind != kind or not shape_ok:
            raise ValueError(
                f"The archive {str(path)!r} has {key!r} with dtype {array.dtype} and shape "
                f"{array.shape}; expected dtype kind {kind!r} and shape {shape}: "
                "it is corrupt; replace it with a fresh copy."
            )
    return arrays


def _names(arrays: Mapping[str, np.ndarray], default: tuple[str, ...]) -> tuple[str, ...]:
    if "class_names" in arrays:
        return tuple(str(n) for n in arrays["class_names"])
    return default


def _mnist_like_info(
    name: str, class_names: tuple[str, ...], mean: float, std: float, description: str
) -> DataInfo:
    return DataInfo(name=name, task="classification", num_classes=10, class_names=class_names,
                    image_shape=(28, 28, 1), mean=(mean,), std=(std,), description=description)


MNIST_INFO = _mnist_like_info(
    "mnist", tuple(str(d) for d in range(10)), 0.1307, 0.3081,
    "MNIST digits (LeCun, Cortes, Burges; CC BY-SA 3.0), 60000 train / 10000 test.",
)
FASHION_MNIST_INFO = _mnist_like_info(
    "fashion_mnist",
    (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    0.2860, 0.3530,
    "Fashion-MNIST (Zalando SE 2017, MIT), 60000 train / 10000 test, grouped by class.",
)
CIFAR10_INFO = DataInfo(
    name="cifar10",
    task="classification",
    num_classes=10,
    class_names=(
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ),
    image_shape=(32, 32, 3),
    mean=(0.4941, 0.4851, 0.4504),
    std=(0.2448, 0.2422, 0.2606),
    description=(
        "CIFAR-10 test images (Krizhevsky 2009) decoded from JPEG q75, split by a seeded "
        "permutation into train/val/test."
    ),
)
ISBI2012_INFO = DataInfo(
    name="isbi2012",
    task="segmentation",
    num_classes=2,
    class_names=("membrane", "cell"),
    image_shape=(512, 512, 1),
    mean=(0.4948,),
    std=(0.1726,),
    splits=("train", "val", "unlabeled"),
    description=(
        "ISBI 2012 EM membrane segmentation (Cardona et al. 2010), 30 labelled images: "
        "train = first 30 - val_size, val = last val_size; unlabeled = 30 challenge images."
    ),
)


def _holdout_indices(
    num: int, split: str, val_size: int, split_seed: int, name: str
) -> np.ndarray:
    """Indices of the train/val split of `num` training records (see the module docstring)."""
    check_int(val_size, "val_size", minimum=0)
    if val_size >= num:
        raise ValueError(f"val_size={val_size}: expected fewer than the {num} train records")
    if val_size == 0:
        if split == "val":
            raise ValueError(
                f"split='val' of {name!r} needs a hold-out: pass val_size=<number of train "
                "images to hold out>, e.g. get_source(..., val_size=5000)"
            )
        return np.arange(num, dtype=np.int64)
    order = np.random.default_rng(split_seed).permutation(num)
    return order[num - val_size :] if split == "val" else order[: num - val_size]


def mnist_like_source(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    val_size: int = 0,
    split_seed: int = 0,
) -> ArraySource:
    """`mnist` or `fashion_mnist` from `<name>.npz` (splits in the module docstring)."""
    info = {"mnist": MNIST_INFO, "fashion_mnist": FASHION_MNIST_INFO}[name]
    check_split(name, split, ("train", "val", "test"))
    path = resolve_data_dir(data_dir, name, f"{name}.npz")
    prefix = "test" if split == "test" else "train"
    arrays = load_npz(
        path,
        {
            f"{prefix}_images": ("u", (None, 28, 28)),
            f"{prefix}_labels": ("i", (None,)),
        },
    )
    images, labels = arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"]
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{str(path)!r}: {prefix}_images and {prefix}_labels differ in length")
    indices = None
    if split != "test":
        indices = _holdout_indices(len(images), split, val_size, split_seed, name)
    info = _with_names(info, _names(arrays, info.class_names))
    return ArraySource(images, labels=labels, info=info, indices=indices, split=split)


def _with_names(info: DataInfo, names: tuple[str, ...]) -> DataInfo:
    if names == info.class_names:
        return info
    return DataInfo(**{**info.__dict__, "class_names": names})


def cifar10_source(
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    test_size: int = 2000,
    val_size: int = 0,
    split_seed: int = 0,
) -> ArraySource:
    """`cifar10` from `cifar10_jpg_test.npz`, split by a seeded permutation (module doc)."""
    check_split("cifar10", split, ("train", "val", "test"))
    check_int(test_size, "test_size", minimum=0)
    check_int(val_size, "val_size", minimum=0)
    path = resolve_data_dir(data_dir, "cifar10", "cifar10_jpg_test.npz")
    arrays = load_npz(
        path, {"test_images": ("u", (None, 32, 32, 3)), "test_labels": ("i", (None,))}
    )
    images, labels = arrays["test_images"], arrays["test_labels"]
    num = len(images)
    if test_size + val_size >= num:
        raise ValueError(
            f"test_size={test_size} + val_size={val_size}: expected fewer than {num} images"
        )
    if split == "val" and val_size == 0:
        raise ValueError("split='val' of 'cifar10' needs val_size > 0, e.g. val_size=1000")
    order = np.random.default_rng(split_seed).permutation(num)
    bounds = {"test": (0, test_size), "val": (test_size, test_size + val_size)}
    lo, hi = bounds.get(split, (test_size + val_size, num))
    info = _with_names(CIFAR10_INFO, _names(arrays, CIFAR10_INFO.class_names))
    return ArraySource(images, labels=labels, info=info, indices=order[lo:hi], split=split)


def isbi2012_source(
    split: str, data_dir: str | os.PathLike | None = None, *, val_size: int = 5
) -> ArraySource:
    """`isbi2012` from `isbi2012_em_membrane.npz`: train / val / unlabeled (module doc)."""
    if split == "test":
        raise ValueError(
            "split='test' of 'isbi2012': the challenge test images have no masks; use "
            "split='val' (labelled hold-out) or split='unlabeled' (images only)"
        )
    check_split("isbi2012", split, ISBI2012_INFO.splits)
    path = resolve_data_dir(data_dir, "isbi2012", "isbi2012_em_membrane.npz")
    if split == "unlabeled":
        arrays = load_npz(path, {"test_images": ("u", (None, None, None))})
        return ArraySource(arrays["test_images"], info=ISBI2012_INFO)
    check_int(val_size, "val_size", minimum=0)
    arrays = load_npz(
        path,
        {"train_images": ("u", (None, None, None)), "train_masks": ("u", (None, None, None))},
    )
    images, masks = arrays["train_images"], arrays["train_masks"]
    num = len(images)
    if not 0 < val_size < num:
        raise ValueError(f"val_size={val_size}: expected 0 < val_size < {num}")
    lo, hi = (num - val_size, num) if split == "val" else (0, num - val_size)
    return ArraySource(
        images, masks=masks, info=ISBI2012_INFO, indices=np.arange(lo, hi), split=split
    )
