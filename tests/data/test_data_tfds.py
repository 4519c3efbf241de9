"""`tfds:<name>` sources through `tfds.data_source`, with TFDS's mock data (no download, no
TensorFlow), and the error for a data set that was never prepared."""

from __future__ import annotations

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from cnnjax.data import get_source, make_pipeline  # noqa: E402


def test_tfds_mnist_records_and_pipeline():
    with tfds.testing.mock_data(num_examples=12):
        source = get_source("tfds:mnist", "train")
        assert len(source) == 12
        record = source[3]
        assert record["image"].shape == (28, 28, 1) and record["image"].dtype == np.uint8
        assert 0 <= int(record["label"]) < 10
        info = source.info
        assert info.name == "tfds:mnist" and info.num_classes == 10
        assert info.image_shape == (28, 28, 1) and info.task == "classification"
        # statistics estimated from the records themselves
        pixels = np.stack([source[i]["image"] for i in range(12)]) / 255.0
        assert info.mean[0] == pytest.approx(pixels.mean(), abs=1e-3)
        assert info.std[0] == pytest.approx(pixels.std(), abs=1e-3)
        batches = list(make_pipeline(source, batch_size=4, seed=0, train=True, num_epochs=1,
                                     augment="random_crop(padding=2)"))
        assert len(batches) == 3 and batches[0]["image"].shape == (4, 28, 28, 1)


def test_tfds_unknown_name_and_unprepared_data(tmp_path):
    with pytest.raises(ValueError, match="not in the TFDS catalog"):
        get_source("tfds:no_such_dataset_xyz", "train")
    with pytest.raises(FileNotFoundError, match=r"tfds build mnist --file_format=array_record"):
        get_source("tfds:mnist", "train", tmp_path)


def _pets(builder, split, **kwargs):
    """Aligned fake oxford_iiit_pet records: trimap 1 inside a square, 2 outside."""
    del builder, split, kwargs
    records = []
    for i in range(6):
        size = 20 + 4 * i
        mask = np.full((size, size + 3, 1), 2, np.int64)
        mask[4:12, 5:15] = 1
        image = np.where(mask == 1, 200, 30).repeat(3, axis=-1).astype(np.uint8)
        records.append({"image": image, "segmentation_mask": mask, "label": i % 3})
    return records


def test_tfds_segmentation_with_mask_offset_and_resize():
    with tfds.testing.mock_data(as_data_source_fn=_pets):
        source = get_source("tfds:oxford_iiit_pet", "train", mask_key="segmentation_mask",
                            mask_offset=1, num_classes=3)
        assert source.info.task == "segmentation" and source.info.num_classes == 3
        record = source[2]
        assert record["mask"].shape == (28, 31) and set(np.unique(record["mask"])) == {0, 1}
        batches = list(make_pipeline(source, batch_size=3, seed=0, train=False,
                                     augment="resize(size=16, interpolation='nearest')"))
        assert len(batches) == 2
        for batch in batches:
            assert batch["image"].shape == (3, 16, 16, 3) and batch["mask"].shape == (3, 16, 16)
            # image and mask stay aligned: bright pixels are exactly the pet (mask 0)
            np.testing.assert_array_equal(batch["image"][..., 0] > 0, batch["mask"] == 0)
    with tfds.testing.mock_data(as_data_source_fn=_pets):
        with pytest.raises(ValueError, match="num_classes=None"):
            get_source("tfds:oxford_iiit_pet", "train", mask_key="segmentation_mask")
