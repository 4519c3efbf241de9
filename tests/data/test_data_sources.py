"""Data sources: procedural data sets against independent references, local archives against
the counts documented in shared/data/README.md, and the errors for bad names/dirs/archives."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as PolygonPath

from cnnjax.data import (
    ENV_DATA_DIR,
    NAMES,
    SOURCES,
    ArraySource,
    DataInfo,
    get_info,
    get_source,
    register_source,
)
from cnnjax.data.shapes import SHAPE_NAMES, Shape, shape_mask
from cnnjax.data.signals import CLASS_NAMES as SIGNAL_CLASSES
from cnnjax.data.signals import SAMPLE_RATE

# ---------------------------------------------------------------- shapes: an independent rasteriser


def _polygon(shape: Shape) -> np.ndarray | None:
    """Vertices (x, y) in pixels of a polygonal shape, built from the geometry in words."""
    unit = {
        1: [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
        2: [(0.0, 1.0), (-np.sqrt(3) / 2, -0.5), (np.sqrt(3) / 2, -0.5)],
        3: [(0.3, 1), (0.3, 0.3), (1, 0.3), (1, -0.3), (0.3, -0.3), (0.3, -1),
            (-0.3, -1), (-0.3, -0.3), (-1, -0.3), (-1, 0.3), (-0.3, 0.3), (-0.3, 1)],
        5: [(-1, -0.15), (1, -0.15), (1, 0.15), (-1, 0.15)],
    }.get(shape.cls)
    if unit is None:
        return None
    uv = np.asarray(unit, float) * shape.radius
    c, s = np.cos(shape.angle), np.sin(shape.angle)
    # (u, v) are coordinates along the rotated axes: x = cx + u cos - v sin, y = cy + u sin + v cos
    x = shape.cx + uv[:, 0] * c - uv[:, 1] * s
    y = shape.cy + uv[:, 0] * s + uv[:, 1] * c
    return np.stack([x, y], axis=1)


def _reference_mask(shape: Shape, size: int) -> np.ndarray:
    centres = np.array([(j + 0.5, i + 0.5) for i in range(size) for j in range(size)])
    poly = _polygon(shape)
    if poly is not None:
        return PolygonPath(poly).contains_points(centres).reshape(size, size)
    distance = np.hypot(centres[:, 0] - shape.cx, centres[:, 1] - shape.cy).reshape(size, size)
    if shape.cls == 0:
        return distance <= shape.radius
    return (distance <= shape.radius) & (distance >= 0.55 * shape.radius)


@pytest.mark.parametrize("cls", range(len(SHAPE_NAMES)))
def test_shape_mask_matches_independent_rasteriser(cls):
    rng = np.random.default_rng(cls)
    for _ in range(5):
        shape = Shape(cls, *rng.uniform(10, 22, 2), rng.uniform(4, 10), rng.uniform(0, 6.3), (1.0,))
        ours = shape_mask(shape, 32, 32)
        ref = _reference_mask(shape, 32)
        assert ours.sum() > 0
        # pixel centres exactly on an edge are measure-zero events; allow one
        assert np.sum(ours != ref) <= 1, SHAPE_NAMES[cls]


def test_shapes_labels_match_pixels():
    source = get_source("shapes", "train", num_examples=40, image_size=32, channels=3)
    for i in range(len(source)):
        record = source[i]
        scene = source.describe(i)
        (shape,) = scene.shapes
        assert record["label"] == shape.cls
        assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.uint8
        covered = _reference_mask(shape, 32)
        image = record["image"].astype(float) / 255
        # inside the shape the pixels are near the shape's colour, outside near the background
        inside = image[covered].mean(0)
        outside = image[~covered].mean(0)
        assert np.all(np.abs(inside - np.asarray(shape.color)) < 0.12)
        assert np.all(np.abs(outside - np.asarray(scene.background)) < 0.12)
        assert np.all(np.abs(inside - outside) > 0.15)


def test_shapes_seg_mask_is_top_shape_per_pixel():
    source = get_source("shapes_seg", "val", num_examples=10, image_size=40, channels=1)
    assert source.info.task == "segmentation" and source.info.num_classes == len(SHAPE_NAMES) + 1
    for i in range(len(source)):
        record = source[i]
        expected = np.zeros((40, 40), np.uint8)
        for shape in source.describe(i).shapes:  # drawn in order: later shapes on top
            expected[_reference_mask(shape, 40)] = shape.cls + 1
        assert record["mask"].dtype == np.uint8
        assert np.sum(record["mask"] != expected) <= 2


def test_shapes_deterministic_and_seed_dependent():
    a = get_source("shapes", "train", num_examples=5, seed=3)
    b = get_source("shapes", "train", num_examples=5, seed=3)
    c = get_source("shapes", "train", num_examples=5, seed=4)
    t = get_source("shapes", "test", num_examples=5, seed=3)
    for i in range(5):
        np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
        assert a[i]["label"] == b[i]["label"]
    assert any(not np.array_equal(a[i]["image"], c[i]["image"]) for i in range(5))
    assert any(not np.array_equal(a[i]["image"], t[i]["image"]) for i in range(5))
    # random access: record 4 does not depend on having drawn 0..3
    np.testing.assert_array_equal(
        get_source("shapes", "train", num_examples=5, seed=3)[4]["image"], a[4]["image"]
    )


def test_shapes_classes_balanced_and_info_stats():
    source = get_source("shapes", "train", num_examples=600, image_size=16)
    counts = np.bincount([source[i]["label"] for i in range(600)], minlength=6)
    assert counts.min() > 60  # 100 expected per class
    info = get_info("shapes", image_size=16)
    assert info == source.info and info.image_shape == (16, 16, 3)
    images = np.stack([source[i]["image"] for i in range(200)]) / 255
    np.testing.assert_allclose(images.mean((0, 1, 2)), info.mean, atol=0.05)
    np.testing.assert_allclose(images.std((0, 1, 2)), info.std, atol=0.05)


# ---------------------------------------------------------------- signals


def test_signals_heart_rate_matches_label():
    source = get_source("signals", "train", num_examples=60, length=1024, channels=2)
    assert source[0]["image"].shape == (1024, 2) and source[0]["image"].dtype == np.uint8
    rates = {name: [] for name in SIGNAL_CLASSES}
    for i in range(len(source)):
        record = source[i]
        assert record["label"] == source.label(i)
        x = record["image"][:, 0].astype(float)
        x = (x - np.convolve(x, np.ones(25) / 25, mode="same"))[20:-20]  # remove wander
        x = x * np.sign(x[np.argmax(np.abs(x))])  # R peaks point up whatever the lead's sign
        threshold = 0.5 * x.max()
        peaks = [t for t in range(1, len(x) - 1)
                 if x[t] > threshold and x[t] >= x[t - 1] and x[t] > x[t + 1]]
        peaks = [p for k, p in enumerate(peaks) if k == 0 or p - peaks[k - 1] > 20]
        rate = 60 * SAMPLE_RATE / np.median(np.diff(peaks))
        rates[SIGNAL_CLASSES[record["label"]]].append(rate)
    assert max(rates["bradycardia"]) < 60 < min(rates["tachycardia"]) - 40
    assert all(55 < r < 105 for r in rates["normal"])


# ---------------------------------------------------------------- local archives


def test_mnist_documented_counts(data_dir):
    train = get_source("mnist", "train", data_dir)
    test = get_source("mnist", "test", data_dir)
    assert len(train) == 60000 and len(test) == 10000
    assert [int(train[i]["label"]) for i in range(5)] == [5, 0, 4, 1, 9]
    labels = np.array([train[i]["label"] for i in range(len(train))])
    assert np.sum(labels == 1) == 6742 and np.sum(labels == 5) == 5421
    assert np.sum(np.array([test[i]["label"] for i in range(len(test))]) == 1) == 1135
    assert train[0]["image"].shape == (28, 28, 1) and train[0]["image"].dtype == np.uint8
    counts = np.bincount(np.stack([train[i]["image"] for i in range(60000)]).ravel(), minlength=256)
    values = np.arange(256) / 255.0
    mean = (counts * values).sum() / counts.sum()
    std = np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
    assert abs(mean * 255 - 33.318) < 1e-3  # the README's check
    assert abs(mean - train.info.mean[0]) < 1e-4 and abs(std - train.info.std[0]) < 1e-4


def test_mnist_val_holdout_is_a_partition(data_dir):
    train = get_source("mnist", "train", data_dir, val_size=1000)
    val = get_source("mnist", "val", data_dir, val_size=1000)
    assert len(train) == 59000 and len(val) == 1000
    # every train image is in exactly one of the two splits: compare by pixel hash
    key = lambda r: r["image"].tobytes()  # noqa: E731
    full = get_source("mnist", "train", data_dir)
    all_keys = sorted(key(full[i]) for i in range(len(full)))
    split_keys = sorted([key(train[i]) for i in range(len(train))]
                        + [key(val[i]) for i in range(len(val))])
    assert split_keys == all_keys
    with pytest.raises(ValueError, match="val_size"):
        get_source("mnist", "val", data_dir)


def test_fashion_cifar_isbi_splits(data_dir):
    fashion = get_source("fashion_mnist", "test", data_dir)
    assert len(fashion) == 10000 and fashion.info.class_names[0] == "T-shirt/top"
    train = get_source("cifar10", "train", data_dir)
    test = get_source("cifar10", "test", data_dir)
    assert (len(train), len(test)) == (8000, 2000)
    assert train[0]["image"].shape == (32, 32, 3)
    train_labels = np.bincount([train[i]["label"] for i in range(len(train))], minlength=10)
    assert train_labels.min() > 700  # the seeded permutation mixes the class-grouped archive
    seg = get_source("isbi2012", "train", data_dir)
    val = get_source("isbi2012", "val", data_dir)
    assert (len(seg), len(val)) == (25, 5)
    record = val[0]
    assert record["image"].shape == (512, 512, 1) and record["mask"].shape == (512, 512)
    assert set(np.unique(record["mask"])) <= {0, 1}
    with pytest.raises(ValueError, match="no masks"):
        get_source("isbi2012", "test", data_dir)


# ---------------------------------------------------------------- errors


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match=r"name='nope'.*shapes"):
        get_source("nope", "train")
    with pytest.raises(ValueError, match=r"split='dev'"):
        get_source("shapes", "dev")
    with pytest.raises(TypeError, match="image_sz"):
        get_source("shapes", "train", image_sz=3)
    with pytest.raises(ValueError, match="num_examples must be >= 1, got 0"):
        get_source("shapes", "train", num_examples=0)


def test_a_data_set_registered_by_one_decorated_definition():
    info = DataInfo(name="test_tiny", task="classification", num_classes=2,
                    class_names=("a", "b"), image_shape=(2, 2, 1), mean=(0.5,), std=(0.25,))
    built = []

    @register_source("test_tiny", info=info)
    def _tiny(split, data_dir, *, num_examples=3):
        built.append((split, data_dir))
        images = np.arange(num_examples * 4, dtype=np.uint8).reshape(num_examples, 2, 2, 1)
        return ArraySource(images, labels=np.arange(num_examples) % 2, info=info)

    try:
        assert "test_tiny" in NAMES  # what configs validate against follows the registry
        source = get_source("test_tiny", "val", "somewhere", num_examples=5)
        assert built == [("val", "somewhere")] and len(source) == 5
        np.testing.assert_array_equal(source[4]["image"].ravel(), [16, 17, 18, 19])
        assert get_info("test_tiny", num_examples=5) is info and len(built) == 1  # no build
        with pytest.raises(TypeError, match=r"get_source\('test_tiny'.*bad"):
            get_source("test_tiny", "train", bad=1)
        with pytest.raises(ValueError, match="already registered"):
            register_source("shapes")(_tiny)
    finally:  # keep the registry as other tests expect it
        del SOURCES._entries["test_tiny"]


def test_get_info_without_an_info_builds_the_train_source():
    calls = []

    @register_source("test_noinfo")
    def _noinfo(split, data_dir, **options):
        calls.append(split)
        return get_source("shapes", split, num_examples=2, **options)

    try:
        assert get_info("test_noinfo", image_size=16) == get_info("shapes", image_size=16)
        assert calls == ["train"]
    finally:
        del SOURCES._entries["test_noinfo"]


def test_missing_data_dir_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    with pytest.raises(FileNotFoundError, match=ENV_DATA_DIR):
        get_source("mnist", "train")
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist.*data_dir="):
        get_source("mnist", "train", missing)
    with pytest.raises(FileNotFoundError, match=r"'mnist.npz' not found in .*looked for"):
        get_source("mnist", "train", tmp_path)
    monkeypatch.setenv(ENV_DATA_DIR, str(missing))
    with pytest.raises(FileNotFoundError, match=f"from {ENV_DATA_DIR}="):
        get_source("mnist", "train")


def test_env_var_used_and_argument_wins(tmp_path, monkeypatch):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    np.savez(good / "mnist.npz", train_images=images, train_labels=np.array([3, 7]),
             test_images=images[:1], test_labels=np.array([1]))
    monkeypatch.setenv(ENV_DATA_DIR, str(good))
    assert [int(r["label"]) for r in get_source("mnist", "train")] == [3, 7]
    with pytest.raises(FileNotFoundError, match="bad"):
        get_source("mnist", "train", bad)


def test_corrupt_archive_gives_clear_error(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match=r"corrupt.*fresh copy"):
        get_source("mnist", "train", tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    np.savez(broken / "mnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"no array 'train_labels'"):
        get_source("mnist", "train", broken)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    np.savez(wrong / "mnist.npz", train_images=np.zeros((2, 28, 28), np.float32),
             train_labels=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"dtype float32"):
        get_source("mnist", "train", wrong)
