"""Labels and masks out of range are refused when a source is opened, per split, with a message
naming the data set, split, values, counts and valid range; the ignore label is accepted."""

from __future__ import annotations

import numpy as np
import pytest

from cnnjax.data import ArraySource, DataInfo, get_source

_IMAGES = np.zeros((6, 28, 28), np.uint8)


def _mnist_archive(folder, train_labels, test_labels):
    folder.mkdir(exist_ok=True)
    np.savez(folder / "mnist.npz", train_images=_IMAGES, train_labels=np.asarray(train_labels),
             test_images=_IMAGES[:4], test_labels=np.asarray(test_labels))
    return folder


def test_label_above_range_in_train(tmp_path):
    folder = _mnist_archive(tmp_path / "a", [0, 12, 3, 12, 9, 12], [0, 1, 2, 3])
    with pytest.raises(ValueError) as caught:
        get_source("mnist", "train", folder)
    message = str(caught.value)
    for part in ("'mnist'", "split 'train'", "3 of 6 labels", "12 (3 records)", "0..9",
                 "num_classes=10"):
        assert part in message, (part, message)
    assert len(get_source("mnist", "test", folder)) == 4  # the test split is fine


def test_negative_label_in_test(tmp_path):
    folder = _mnist_archive(tmp_path / "b", [0, 1, 2, 3, 4, 5], [0, -1, 2, 11])
    assert len(get_source("mnist", "train", folder)) == 6
    with pytest.raises(ValueError, match=r"split 'test': 2 of 4 labels .*-1 \(1 records\), "
                                         r"11 \(1 records\); expected class ids 0\.\.9"):
        get_source("mnist", "test", folder)


def test_bad_label_only_in_the_val_hold_out_fails_only_val(tmp_path):
    labels = np.arange(6) % 10
    order = np.random.default_rng(0).permutation(6)  # the documented hold-out: last 2
    labels[order[-1]] = 10
    folder = _mnist_archive(tmp_path / "c", labels, [0, 1, 2, 3])
    assert len(get_source("mnist", "train", folder, val_size=2)) == 4
    with pytest.raises(ValueError, match=r"split 'val': 1 of 2 labels .*10 \(1 records\)"):
        get_source("mnist", "val", folder, val_size=2)


def test_cifar10_split_checked(tmp_path):
    labels = np.arange(20) % 10
    labels[np.random.default_rng(0).permutation(20)[0]] = 10  # the first test image
    np.savez(tmp_path / "cifar10_jpg_test.npz", test_images=np.zeros((20, 32, 32, 3), np.uint8),
             test_labels=labels)
    assert len(get_source("cifar10", "train", tmp_path, test_size=4)) == 16
    with pytest.raises(ValueError, match=r"'cifar10', split 'test'.*10 \(1 records\)"):
        get_source("cifar10", "test", tmp_path, test_size=4)


def _isbi(folder, masks):
    folder.mkdir(exist_ok=True)
    np.savez(folder / "isbi2012_em_membrane.npz", train_images=np.zeros((3, 8, 8), np.uint8),
             train_masks=masks)
    return folder


def test_mask_out_of_range_and_ignore_label(tmp_path):
    masks = np.zeros((3, 8, 8), np.uint8)
    masks[0, :2, :2] = 255  # the default ignore label: accepted
    masks[0, 5, 5] = 1
    ok = _isbi(tmp_path / "ok", masks)
    assert len(get_source("isbi2012", "train", ok, val_size=1)) == 2
    masks = masks.copy()
    masks[1, :3, :] = 2  # 24 pixels of class 2 with num_classes=2
    masks[1, 7, 7] = 7
    bad = _isbi(tmp_path / "bad", masks)
    with pytest.raises(ValueError) as caught:
        get_source("isbi2012", "train", bad, val_size=1)
    message = str(caught.value)
    for part in ("'isbi2012'", "split 'train'", "25 mask pixels", "2 (24 pixels)",
                 "7 (1 pixels)", "0..1", "ignore label 255"):
        assert part in message, (part, message)
    masks[1] = 0
    masks[2, 0, 0] = 2  # only in the val record
    assert len(get_source("isbi2012", "train", _isbi(tmp_path / "v", masks), val_size=1)) == 2
    with pytest.raises(ValueError, match="split 'val'"):
        get_source("isbi2012", "val", tmp_path / "v", val_size=1)


_SEG = DataInfo(name="mine", task="segmentation", num_classes=3, class_names=("a", "b", "c"),
                image_shape=(4, 4, 1), mean=(0.5,), std=(0.2,))


def test_array_source_ignore_label_option():
    images = np.zeros((2, 4, 4, 1), np.uint8)
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[1, 0, 0] = 255
    ArraySource(images, masks=masks, info=_SEG)
    with pytest.raises(ValueError, match=r"'mine': 1 mask pixels .*255 \(1 pixels\)"):
        ArraySource(images, masks=masks, info=_SEG, ignore_label=None)
    masks[1, 0, 0] = 100
    ArraySource(images, masks=masks, info=_SEG, ignore_label=100)
    with pytest.raises(ValueError, match="or the ignore label 255"):
        ArraySource(images, masks=masks, info=_SEG)
    # records left out by `indices` are not checked
    ArraySource(images, masks=masks, info=_SEG, indices=np.array([0]))


def test_array_source_labels_checked_and_long_lists_cut():
    info = DataInfo(name="two", task="classification", num_classes=2, class_names=("a", "b"),
                    image_shape=(4, 4, 1), mean=(0.5,), std=(0.2,))
    labels = np.arange(-20, 0)
    with pytest.raises(ValueError, match=r"20 of 20 labels .* and 10 more values; expected "
                                         r"class ids 0\.\.1"):
        ArraySource(np.zeros((20, 4, 4, 1), np.uint8), labels=labels, info=info)


def test_tfds_mask_out_of_range():
    tfds = pytest.importorskip("tensorflow_datasets")

    def pets(builder, split, **kwargs):
        del builder, split, kwargs
        masks = [np.full((8, 8, 1), 1 + i, np.int64) for i in range(4)]  # 1..4 -> 0..3
        return [{"image": np.zeros((8, 8, 3), np.uint8), "segmentation_mask": m, "label": 0}
                for m in masks]

    with tfds.testing.mock_data(as_data_source_fn=pets):
        source = get_source("tfds:oxford_iiit_pet", "train", mask_key="segmentation_mask",
                            mask_offset=1, num_classes=3, mean=(0.5,) * 3, std=(0.2,) * 3)
        assert source[2]["mask"].max() == 2
        with pytest.raises(ValueError, match=r"record 3: .*'tfds:oxford_iiit_pet', split "
                                             r"'train': 64 mask pixels .*3 \(64 pixels\)"):
            source[3]
        # the statistics estimate reads records at opening: a bad one is caught there
        with pytest.raises(ValueError, match="record 3"):
            get_source("tfds:oxford_iiit_pet", "train", mask_key="segmentation_mask",
                       mask_offset=1, num_classes=3)
