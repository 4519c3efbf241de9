"""TFDS catalog data sets (`tfds:<name>`) read through `tfds.data_source`: random access to
array_record files, no TensorFlow at training time.

Preparing a catalog data set needs network access and, for most builders, TensorFlow, once:
`tfds build <name> --file_format=array_record --data_dir=<dir>` (or
`tfds.builder(name, data_dir=dir, file_format="array_record").download_and_prepare()`), then
copy `<dir>` to the training machines and pass it as `data_dir` (or set `TFDS_DATA_DIR`).
Data sets prepared in the default TFRecord format cannot be read randomly: rebuild them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cnnjax.data.checks import IGNORE_LABEL, check_masks
from cnnjax.data.info import DataInfo

PREPARE_HINT = (
    "Prepare it once on a machine with network access: "
    "`tfds build {name} --file_format=array_record --data_dir=<dir>`, "
    "then pass data_dir=<dir> (or set TFDS_DATA_DIR)."
)


def _tfds():
    import tensorflow_datasets as tfds

    return tfds


def _tfds_split(split: str, splits: tuple[str, ...]) -> str:
    """Map cnnjax split names onto TFDS ones: "val" -> "validation" when the builder has it.
    Other strings (including TFDS slices such as "train[:90%]") pass through unchanged."""
    if split == "val" and "val" not in splits:
        if "validation" in splits:
            return "validation"
        raise ValueError(
            f"split='val': this TFDS data set has splits {splits} and no validation split; "
            "pass a TFDS slice instead, e.g. split='train[90%:]' (and 'train[:90%]' for train)"
        )
    return split


def _open(name: str, split: str, data_dir: str | os.PathLike | None) -> tuple[Any, Any, tuple]:
    """(TFDS builder, `tfds.data_source` of the split, the data set's split names); errors
    name the data set and say how to prepare it."""
    tfds = _tfds()
    builder_name = name.split(":")[0]
    dir_arg = None if data_dir is None else os.fspath(data_dir)
    try:
        builder = tfds.builder(name, data_dir=dir_arg)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(
            f"name='tfds:{name}': {builder_name!r} is not in the TFDS catalog "
            "(see https://www.tensorflow.org/datasets/catalog)"
        ) from error
    try:
        splits = tuple(builder.info.splits.keys())
        tfds_split = _tfds_split(split, splits)
        data = tfds.data_source(name, split=tfds_split, data_dir=dir_arg, download=False)
    except ValueError:
        raise
    except Exception as error:
        raise FileNotFoundError(
            f"TFDS data set {name!r} (split {split!r}) is not available as array_record "
            f"in data_dir={data_dir!r}: {type(error).__name__}: {str(error)[:300]}. "
            + PREPARE_HINT.format(name=builder_name)
        ) from error
    return builder, data, splits


def _class_names(
    features: Any, label_key: str, mask_key: str | None, num_classes: int | None
) -> tuple[tuple[str, ...], str]:
    """(class names, task): the label feature's names, or num_classes mask values."""
    if mask_key is None:
        return tuple(features[label_key].names), "classification"
    if num_classes is None:
        raise ValueError(
            f"num_classes=None with mask_key={mask_key!r}: pass the number of mask values"
        )
    return tuple(str(i) for i in range(num_classes)), "segmentation"


class TfdsSource:
    """Random-access source over a prepared TFDS data set, records in the cnnjax contract.

    Args:
      name: TFDS catalog name, e.g. "mnist", "cifar10", "oxford_iiit_pet:4.0.0".
      split: "train", "val" (TFDS "validation"), "test", or any TFDS split string.
      data_dir: the TFDS data directory (default: TFDS's own, `TFDS_DATA_DIR`).
      image_key, label_key, mask_key: feature names to read; a `mask_key` (e.g.
        "segmentation_mask") makes it a segmentation source.
      mask_offset: subtracted from every mask value (e.g. 1 for oxford_iiit_pet's trimap
        1, 2, 3 -> 0, 1, 2).
      ignore_label: the one mask value allowed besides 0..num_classes-1 (None: none); a
        record with any other value raises ValueError when read (checking every mask at
        opening would read the whole data set). Labels come from TFDS's ClassLabel feature,
        in range by construction.
      num_classes: number of mask values for segmentation (the label feature's for
        classification is read from the metadata).
      mean, std: per-channel statistics on the 0..1 scale; default: estimated from up to
        256 records spread over the split.
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_dir: str | os.PathLike | None = None,
        *,
        image_key: str = "image",
        label_key: str = "label",
        mask_key: str | None = None,
        mask_offset: int = 0,
        ignore_label: int | None = IGNORE_LABEL,
        num_classes: int | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> None:
        builder, self._data, splits = _open(name, split, data_dir)
        features = builder.info.features
        for key in (image_key, mask_key if mask_key else label_key):
            if key not in features:
                raise ValueError(
                    f"TFDS data set {name!r} has no feature {key!r}; it has {sorted(features)}"
                )
        self._image_key, self._label_key, self._mask_key = image_key, label_key, mask_key
        self._mask_offset = int(mask_offset)
        self._ignore_label = ignore_label
        self._split = split
        image_shape = tuple(features[image_key].shape)
        names, task = _class_names(features, label_key, mask_key, num_classes)
        self._name, self._num_classes = f"tfds:{name}", len(names)
        if mean is None or std is None:
            mean, std = self._estimate_stats(image_shape[-1])
        self.info = DataInfo(
            name=f"tfds:{name}",
            task=task,
            num_classes=len(names),
            class_names=names,
            image_shape=image_shape,
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
            splits=("train", "val", "test", *splits),
            description=f"TFDS {name!r} via tfds.data_source (array_record).",
        )

    def _estimate_stats(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        n = len(self._data)
        picks = np.unique(np.linspace(0, n - 1, num=min(n, 256)).astype(np.int64))
        total = np.zeros(channels)
        total_sq = np.zeros(channels)
        count = 0
        for i in picks:
            image = self[int(i)]["image"].astype(np.float64) / 255.0
            pixels = image.reshape(-1, image.shape[-1])
            total += pixels.sum(0)
            total_sq += (pixels**2).sum(0)
            count += pixels.shape[0]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
        return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        raw = self._data[int(index)]
        image = np.asarray(raw[self._image_key], dtype=np.uint8)
        if image.ndim == 2:
            image = image[..., None]
        if self._mask_key is None:
            return {"image": image, "label": np.int64(raw[self._label_key])}
        mask = np.asarray(raw[self._mask_key])
        if mask.ndim == 3:
            mask = mask[..., 0]
        if self._mask_offset:
            mask = mask.astype(np.int64) - self._mask_offset
        if mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
            raise ValueError(
                f"record {index}: mask values {mask.min()}..{mask.max()} (after "
                f"mask_offset={self._mask_offset}) do not fit uint8 0..255"
            )
        mask = mask.astype(np.uint8)
        try:
            check_masks(mask, self._num_classes, self._name, self._split, self._ignore_label)
        except ValueError as error:
            raise ValueError(f"record {index}: {error}") from None
        return {"image": image, "mask": mask}

    def __repr__(self) -> str:
        return f"TfdsSource(name={self.info.name!r}, num_records={len(self)})"
