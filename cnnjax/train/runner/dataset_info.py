"""`config.dataset_info`: what a run learned about its data set, saved with its config.

A training run fills it from its train split (`cnnjax.train.runner.components.build`): the
`DataInfo` fields (name, task, num_classes, class_names, image_shape, mean, std) and
`train_records` (the train split's size, for steps per epoch). It is saved in the run's
`config.json` and checkpoints, so the model, its normalisation and its class names can be
rebuilt from the config alone: export and predict need no data set, and a folder of images
whose statistics or classes changed later cannot change an existing run's preprocessing.

A config that states `dataset_info` itself keeps it (eval of a saved run, or a user pinning
mean/std); an empty one (the default) is filled from the data.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from cnnjax.data import DataInfo

__all__ = ["INFO_FIELDS", "check_matches", "info_from_config", "train_records", "with_info"]

INFO_FIELDS = tuple(f.name for f in dataclasses.fields(DataInfo))


def info_from_config(config: ml_collections.ConfigDict) -> DataInfo | None:
    """The `DataInfo` stated in `config.dataset_info`, or None when it is empty.

    Raises ValueError naming the field when it is incomplete or inconsistent.
    """
    saved = config.get("dataset_info")
    if not saved:
        return None
    saved = saved.to_dict() if hasattr(saved, "to_dict") else dict(saved)
    missing = [f for f in ("name", "task", "num_classes", "class_names", "image_shape",
                           "mean", "std") if f not in saved]
    if missing:
        raise ValueError(f"config.dataset_info lacks {missing}: give every field of a "
                         "DataInfo or none (then it is read from the data set)")
    fields = {k: saved[k] for k in INFO_FIELDS if k in saved}
    for k in ("class_names", "image_shape", "mean", "std", "splits"):
        if k in fields:
            fields[k] = tuple(fields[k])
    try:
        return DataInfo(**fields)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config.dataset_info: {e}") from e


def train_records(config: ml_collections.ConfigDict) -> int | None:
    """The train split's size saved in `config.dataset_info`, or None."""
    value = (config.get("dataset_info") or {}).get("train_records")
    return None if value is None else int(value)


def with_info(config: ml_collections.ConfigDict, info: DataInfo, records: int
              ) -> ml_collections.ConfigDict:
    """A copy of `config` whose `dataset_info` holds `info` and `records` (train size)."""
    out = ml_collections.ConfigDict(config.to_dict())
    fields = {k: getattr(info, k) for k in INFO_FIELDS}
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    out.dataset_info = ml_collections.ConfigDict({**fields, "train_records": int(records)})
    return out


def check_matches(saved: DataInfo, found: DataInfo) -> None:
    """The data opened now must fit the run's saved info (classes, image shape); mean and std
    may differ (the saved ones are used)."""
    for field in ("task", "num_classes", "class_names", "image_shape"):
        a, b = getattr(saved, field), getattr(found, field)
        if _norm(a) != _norm(b):
            raise ValueError(
                f"the data set {found.name!r} has {field}={_norm(b)!r}, but the run was trained "
                f"with {field}={_norm(a)!r} (config.dataset_info): the data changed since "
                "training; restore it or train a new run")


def _norm(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value
