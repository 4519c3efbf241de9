"""`num_labelled` / `subset_seed`: a seeded, class-stratified subset of the train split of any
source (few-label transfer); val and test untouched; clear errors for bad values."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from cnnjax.data import SOURCES, get_info, get_source, make_pipeline, register_source

# imbalanced classes: class k has 3 + 2k records (class 0: 3 ... class 9: 21), 120 in all
_LABELS = np.repeat(np.arange(10), 3 + 2 * np.arange(10))


@pytest.fixture
def archive(tmp_path):
    """An mnist.npz whose image i is filled with i % 251 and tagged with i in its first
    pixel pair, so records are identifiable."""
    n = len(_LABELS)
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    labels = np.random.default_rng(5).permutation(_LABELS)
    np.savez(tmp_path / "mnist.npz", train_images=images, train_labels=labels,
             test_images=images[:7], test_labels=labels[:7])
    return tmp_path, labels


def _ids(source):
    return [256 * int(source[i]["image"][0, 0, 0]) + int(source[i]["image"][0, 1, 0])
            for i in range(len(source))]


def _class_counts(source):
    return collections.Counter(int(source[i]["label"]) for i in range(len(source)))


def test_counts_per_class_equal_share(archive):
    folder, labels = archive
    subset = get_source("mnist", "train", folder, num_labelled=25)
    counts = _class_counts(subset)
    assert sum(counts.values()) == 25 and sorted(counts) == list(range(10))
    # 25 = 10 x 2 + 5: five classes get 3, five get 2; the extra ones go to the largest classes
    assert sorted(counts.values()) == [2] * 5 + [3] * 5
    assert all(counts[k] == 3 for k in range(5, 10))
    # the records are the archive's records with their own labels
    ids = _ids(subset)
    assert len(set(ids)) == 25 and ids == sorted(ids)
    assert [int(labels[i]) for i in ids] == [int(subset[i]["label"]) for i in range(25)]


def test_small_classes_give_all_and_the_rest_is_shared(archive):
    folder, _ = archive
    counts = _class_counts(get_source("mnist", "train", folder, num_labelled=60))
    # 60 / 10 = 6: classes 0 and 1 (3 and 5 records) give all theirs, 52 left for 8 classes
    assert counts[0] == 3 and counts[1] == 5
    assert sorted(counts[k] for k in range(2, 10)) == [6] * 4 + [7] * 4
    everything = get_source("mnist", "train", folder, num_labelled=len(_LABELS))
    assert _class_counts(everything) == collections.Counter(_LABELS.tolist())


def test_deterministic_and_seed_dependent(archive):
    folder, _ = archive
    first = _ids(get_source("mnist", "train", folder, num_labelled=30, subset_seed=3))
    again = _ids(get_source("mnist", "train", folder, num_labelled=30, subset_seed=3))
    other = _ids(get_source("mnist", "train", folder, num_labelled=30, subset_seed=4))
    default = _ids(get_source("mnist", "train", folder, num_labelled=30))
    assert first == again and first != other and default != first
    assert default == _ids(get_source("mnist", "train", folder, num_labelled=30, subset_seed=0))


def test_val_carved_first_and_val_test_untouched(archive):
    folder, _ = archive
    options = {"val_size": 20, "num_labelled": 40, "subset_seed": 1}
    val_all = _ids(get_source("mnist", "val", folder, val_size=20))
    train_all = _ids(get_source("mnist", "train", folder, val_size=20))
    assert _ids(get_source("mnist", "val", folder, **options)) == val_all
    assert _ids(get_source("mnist", "test", folder, **options)) == list(range(7))
    subset = _ids(get_source("mnist", "train", folder, **options))
    assert len(subset) == 40 and set(subset) <= set(train_all) and not set(subset) & set(val_all)
    with pytest.raises(ValueError, match=r"num_labelled=101: expected at most the 100 records "
                                         r"of split 'train' of 'mnist'"):
        get_source("mnist", "train", folder, val_size=20, num_labelled=101)


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"num_labelled": 0}, ValueError, r"num_labelled must be >= 1, got 0"),
        ({"num_labelled": -5}, ValueError, r"num_labelled must be >= 1, got -5"),
        ({"num_labelled": 2.5}, TypeError, r"num_labelled must be an int, got float 2.5"),
        ({"num_labelled": True}, TypeError, r"num_labelled must be an int, got bool True"),
        ({"num_labelled": "10"}, TypeError, r"num_labelled must be an int, got str '10'"),
        ({"num_labelled": 10, "subset_seed": -1}, ValueError, r"subset_seed must be >= 0, got -1"),
        ({"subset_seed": 1.5}, TypeError, r"subset_seed must be an int, got float 1.5"),
    ],
)
def test_bad_values_name_the_option(archive, options, error, pattern):
    folder, _ = archive
    for split in ("train", "test"):
        with pytest.raises(error, match=pattern):
            get_source("mnist", split, folder, **options)


def test_procedural_sources_and_pipeline():
    shapes = get_source("shapes", "train", num_examples=200, image_size=16)
    subset = get_source("shapes", "train", num_examples=200, image_size=16, num_labelled=12)
    num_classes = shapes.info.num_classes
    counts = _class_counts(subset)
    share = 12 // num_classes
    assert sum(counts.values()) == 12
    assert all(share <= counts[k] <= share + 1 for k in range(num_classes))
    for i in range(len(subset)):  # each kept record is the full source's record
        np.testing.assert_array_equal(subset[i]["image"], shapes[int(subset.indices[i])]["image"])
    batches = list(make_pipeline(subset, batch_size=4, seed=0, train=True, num_epochs=2))
    assert len(batches) == 6 and batches[0]["image"].shape == (4, 16, 16, 3)
    seen = collections.Counter(int(x) for b in batches for x in np.asarray(b["label"]))
    assert seen == collections.Counter({k: 2 * v for k, v in counts.items()})
    seg = get_source("shapes_seg", "train", num_examples=50, image_size=16, num_labelled=9)
    assert len(seg) == 9 and seg[0]["mask"].shape == (16, 16)
    signals = get_source("signals", "train", num_examples=80, num_labelled=10)
    assert len(signals) == 10 and len(set(signals.indices)) == 10
    assert get_info("shapes", num_labelled=12, image_size=16) == shapes.info


class _NoLabelsAttribute:
    """A user's source with records only (no `labels`): the labels are read record by record."""

    def __init__(self, labels):
        self._labels = labels
        self.info = get_info("shapes")
        self.reads = 0

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, index):
        self.reads += 1
        return {"image": np.zeros((32, 32, 3), np.uint8), "label": np.int64(self._labels[index])}


def test_registered_source_without_labels_attribute():
    labels = np.array([0] * 10 + [1] * 2 + [2] * 30)
    inner = _NoLabelsAttribute(labels)

    @register_source("test_plain")
    def _plain(split, data_dir):
        return inner

    try:
        subset = get_source("test_plain", "train", num_labelled=9, subset_seed=2)
        assert inner.reads == len(labels)
        assert collections.Counter(labels[subset.indices].tolist()) == {0: 3, 1: 2, 2: 4}
        assert get_source("test_plain", "test", num_labelled=9) is inner
    finally:
        del SOURCES._entries["test_plain"]
