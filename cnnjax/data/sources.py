"""One entry point for every data source: `get_source(name, split, data_dir=None, **options)`.

Names: `shapes`, `shapes_seg` (procedural, the defaults), `signals` (procedural 1D),
`mnist`, `fashion_mnist`, `cifar10`, `isbi2012` (local .npz archives, see `cnnjax.data.local`
for the splits) and `tfds:<catalog name>` (see `cnnjax.data.tfds_source`).

A source has `len(source)`, `source[i]` -> dict of NumPy arrays (`image` uint8 (H, W, C) or
(L, C); `label` int64 scalar or `mask` uint8 (H, W)) and `source.info` (a `DataInfo`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from cnnjax.data import local, shapes, signals
from cnnjax.data.info import DataInfo


class Source(Protocol):
    """Random-access records with metadata (what `get_source` returns)."""

    info: DataInfo

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


def _shapes(split: str, data_dir: Any, **options: Any) -> Source:
    del data_dir
    return shapes.ShapesSource(split, task="classification", **options)


def _shapes_seg(split: str, data_dir: Any, **options: Any) -> Source:
    del data_dir
    return shapes.ShapesSource(split, task="segmentation", **options)


def _signals(split: str, data_dir: Any, **options: Any) -> Source:
    del data_dir
    return signals.SignalsSource(split, **options)


_BUILDERS: dict[str, Callable[..., Source]] = {
    "shapes": _shapes,
    "shapes_seg": _shapes_seg,
    "signals": _signals,
    "mnist": lambda split, data_dir, **o: local.mnist_like_source("mnist", split, data_dir, **o),
    "fashion_mnist": lambda split, data_dir, **o: local.mnist_like_source(
        "fashion_mnist", split, data_dir, **o
    ),
    "cifar10": lambda split, data_dir, **o: local.cifar10_source(split, data_dir, **o),
    "isbi2012": lambda split, data_dir, **o: local.isbi2012_source(split, data_dir, **o),
}

_STATIC_INFO = {
    "mnist": local.MNIST_INFO,
    "fashion_mnist": local.FASHION_MNIST_INFO,
    "cifar10": local.CIFAR10_INFO,
    "isbi2012": local.ISBI2012_INFO,
}

NAMES: tuple[str, ...] = (*_BUILDERS, "tfds:<name>")


def get_source(
    name: str, split: str = "train", data_dir: str | os.PathLike | None = None, **options: Any
) -> Source:
    """The records of data set `name`, split `split`.

    Args:
      name: one of `NAMES` ("tfds:mnist" etc. for TFDS).
      split: "train", "val" or "test" (see each data set's documentation for how it is split).
      data_dir: folder of the local archives (falls back to `$CNNJAX_DATA_DIR`) or the TFDS
        data directory; ignored by the procedural data sets.
      **options: data-set specific, e.g. `num_examples`, `image_size`, `channels`, `seed` for
        `shapes`; `val_size`, `split_seed` for `mnist`.
    """
    if not isinstance(name, str):
        raise TypeError(f"name={name!r}: expected a data set name (str), one of {NAMES}")
    if name.startswith("tfds:"):
        from cnnjax.data.tfds_source import TfdsSource

        return TfdsSource(name[len("tfds:") :], split, data_dir, **options)
    if name not in _BUILDERS:
        raise ValueError(f"name={name!r}: unknown data set; expected one of {NAMES}")
    try:
        return _BUILDERS[name](split, data_dir, **options)
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            raise TypeError(f"get_source({name!r}, ...): {error}") from error
        raise


def get_info(name: str, data_dir: str | os.PathLike | None = None, **options: Any) -> DataInfo:
    """Metadata of data set `name` (with the same options `get_source` would get).

    For the local archives this needs no file; for TFDS it reads the prepared data set.
    """
    if isinstance(name, str) and name in _STATIC_INFO:
        return _STATIC_INFO[name]
    if name in ("shapes", "shapes_seg"):
        task = "classification" if name == "shapes" else "segmentation"
        return shapes.shapes_info(
            task, options.get("image_size", 32), options.get("channels", 3)
        )
    if name == "signals":
        return signals.signals_info(
            options.get("length", signals.DEFAULT_LENGTH), options.get("channels", 1)
        )
    return get_source(name, "train", data_dir, **options).info
