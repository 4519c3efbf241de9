"""One entry point for every data source: `get_source(name, split, data_dir=None, **options)`.

Names: `shapes`, `shapes_seg` (procedural, the defaults), `signals` (procedural 1D),
`mnist`, `fashion_mnist`, `cifar10`, `isbi2012` (local .npz archives, see `cnnjax.data.local`
for the splits), `image_folder`, `image_folder_seg` (a folder of your own images, `data_dir`
= the folder; see `cnnjax.data.image_folder`, `cnnjax.data.image_folder_seg`) and
`tfds:<catalog name>` (see `cnnjax.data.tfds_source`).

A source has `len(source)`, `source[i]` -> dict of NumPy arrays (`image` uint8 (H, W, C) or
(L, C); `label` int64 scalar or `mask` uint8 (H, W)) and `source.info` (a `DataInfo`).

Adding a data set is one decorated definition, here or in a user's script:

    @register_source("my_data", info=MY_INFO)       # info: optional, see `register_source`
    def _my_data(split, data_dir, **options) -> Source: ...
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from cnnjax.data import local, shapes, signals
from cnnjax.data.image_folder import image_folder_source
from cnnjax.data.image_folder_seg import image_folder_seg_source
from cnnjax.data.info import DataInfo, NameList
from cnnjax.data.npz_source import npz_source
from cnnjax.data.subset import SUBSET_OPTIONS, labelled_subset
from cnnjax.data.tfds_source import TfdsSource
from cnnjax.registry import Registry, origin_of

__all__ = ["NAMES", "SOURCES", "Source", "SourceEntry", "get_info", "get_source",
           "register_source"]


class Source(Protocol):
    """Random-access records with metadata (what `get_source` returns)."""

    info: DataInfo

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class SourceEntry:
    """A registered data set: `build(split, data_dir, **options) -> Source`, and its metadata
    without reading data when known: a `DataInfo`, or `info(**options) -> DataInfo`."""

    build: Callable[..., Source]
    info: DataInfo | Callable[..., DataInfo] | None = None

    @property
    def registry_origin(self) -> tuple[str, str] | None:
        """Where `build` is defined: registering it again from there is a reload."""
        return origin_of(self.build)


SOURCES: Registry[SourceEntry] = Registry("data set")

NAMES: Sequence[str] = NameList(SOURCES, "tfds:<name>")
"""The registered data set names and "tfds:<name>" (a live view: later registrations count)."""


def register_source(
    name: str, *, info: DataInfo | Callable[..., DataInfo] | None = None
) -> Callable[[Callable[..., Source]], Callable[..., Source]]:
    """Decorator registering `build(split, data_dir, **options) -> Source` as data set `name`.

    `info` lets `get_info` answer without building a source: a fixed `DataInfo`, or a
    function of the source's options (it must accept and ignore options it does not use).
    Without it `get_info` builds the "train" source and reads its `info`.
    """

    def add(build: Callable[..., Source]) -> Callable[..., Source]:
        SOURCES.register(name)(SourceEntry(build, info))
        return build

    return add


def _shapes_info(task: str) -> Callable[..., DataInfo]:
    def info(image_size: int = 32, channels: int = 3, **_: Any) -> DataInfo:
        return shapes.shapes_info(task, image_size, channels)

    return info


def _signals_info(length: int = signals.DEFAULT_LENGTH, channels: int = 1, **_: Any) -> DataInfo:
    return signals.signals_info(length, channels)


@register_source("shapes", info=_shapes_info("classification"))
def _shapes(split: str, data_dir: Any, **options: Any) -> Source:
    del data_dir
    return shapes.ShapesSource(split, task="classification", **options)


@register_source("shapes_seg", info=_shapes_info("segmentation"))
def _shapes_seg(split: str, data_dir: Any, **options: Any) -> Source:
    del data_dir
    return shapes.ShapesSource(split, task="segmentation", **options)


@register_source("signals", info=_signals_info)
def _signals(split: str, data_dir: Any, **options: Any) -> Source:
    del data_dir
    return signals.SignalsSource(split, **options)


@register_source("mnist", info=local.MNIST_INFO)
def _mnist(split: str, data_dir: Any, **options: Any) -> Source:
    return local.mnist_like_source("mnist", split, data_dir, **options)


@register_source("fashion_mnist", info=local.FASHION_MNIST_INFO)
def _fashion_mnist(split: str, data_dir: Any, **options: Any) -> Source:
    return local.mnist_like_source("fashion_mnist", split, data_dir, **options)


register_source("cifar10", info=local.CIFAR10_INFO)(local.cifar10_source)
register_source("isbi2012", info=local.ISBI2012_INFO)(local.isbi2012_source)
# Your own images (data_dir = the folder; see their modules). No fixed info: `get_info` opens
# the train split, whose file scan and statistics are cached.
register_source("image_folder")(image_folder_source)
register_source("image_folder_seg")(image_folder_seg_source)
register_source("npz")(npz_source)  # an archive of your own (`experiments.folder_to_npz`)


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
        `shapes`; `val_size`, `split_seed` for `mnist`. Every data set also takes
        `num_labelled` and `subset_seed`: train on a seeded, class-stratified subset of the
        "train" records (few-label transfer; see `cnnjax.data.subset`).
    """
    if not isinstance(name, str):
        raise TypeError(f"name={name!r}: expected a data set name (str), one of {NAMES}")
    subset = {key: options.pop(key) for key in SUBSET_OPTIONS if key in options}
    return labelled_subset(_build(name, split, data_dir, options), split, **subset)


def _build(name: str, split: str, data_dir: Any, options: dict[str, Any]) -> Source:
    if name.startswith("tfds:"):
        return TfdsSource(name[len("tfds:") :], split, data_dir, **options)
    if name not in SOURCES:
        raise ValueError(f"name={name!r}: unknown data set; expected one of {NAMES}")
    try:
        return SOURCES.get(name).build(split, data_dir, **options)
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            raise TypeError(f"get_source({name!r}, ...): {error}") from error
        raise


def get_info(name: str, data_dir: str | os.PathLike | None = None, **options: Any) -> DataInfo:
    """Metadata of data set `name` (with the same options `get_source` would get).

    For the local archives this needs no file; for TFDS it reads the prepared data set.
    """
    entry = SOURCES.get(name) if isinstance(name, str) and name in SOURCES else None
    if entry is None or entry.info is None:
        return get_source(name, "train", data_dir, **options).info
    if isinstance(entry.info, DataInfo):
        return entry.info
    return entry.info(**{k: v for k, v in options.items() if k not in SUBSET_OPTIONS})
