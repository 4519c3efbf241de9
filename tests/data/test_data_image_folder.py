"""The folder sources `image_folder` and `image_folder_seg` on tiny PNG folders made here:
layouts and seeded splits, pixel conversion, the cached statistics, the errors for bad
folders, and exact resume / process sharding through `make_pipeline`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from folder_helpers import CLASSES, class_image, write_class_folder, write_seg_folder
from PIL import Image

from cnnjax.data import folder_common, get_info, get_source, make_pipeline
from cnnjax.data import image_files as image_files_lib
from cnnjax.data.image_files import read_image, read_mask


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test gets an empty statistics cache (disk and memory)."""
    monkeypatch.setenv(folder_common.ENV_CACHE_DIR, str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setattr(folder_common, "_memory", {})


def _paths(source) -> set[str]:
    return {p.as_posix() for p in source.paths}


# ---------------------------------------------------------------- layouts and splits


def test_one_folder_is_split_per_class_by_seeded_fractions(tmp_path):
    root = write_class_folder(tmp_path / "imgs", per_class=20)
    splits = {s: get_source("image_folder", s, root, image_size=8) for s in ("train", "val",
                                                                             "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [48, 6, 6]
    assert splits["train"].info.class_names == CLASSES
    assert splits["train"].info.image_shape == (8, 8, 3)
    for s in ("val", "test"):  # stratified: every class keeps round(0.1 * 20) = 2
        assert sorted(np.bincount(splits[s].labels).tolist()) == [2, 2, 2]
    paths = [_paths(splits[s]) for s in ("train", "val", "test")]
    assert set.union(*paths) == {p.as_posix() for p in root.rglob("*.png")}
    assert sum(len(p) for p in paths) == 60  # disjoint
    again = get_source("image_folder", "val", root, image_size=8)
    other = get_source("image_folder", "val", root, image_size=8, split_seed=1)
    assert _paths(again) == paths[1] and _paths(other) != paths[1]
    record = splits["train"][0]
    assert record["image"].shape == (8, 8, 3) and record["image"].dtype == np.uint8
    assert record["label"] == splits["train"].labels[0]


def test_split_folders_are_used_and_a_missing_test_is_held_out_of_train(tmp_path):
    write_class_folder(tmp_path / "train", per_class=10)
    write_class_folder(tmp_path / "val", per_class=3)
    train = get_source("image_folder", "train", tmp_path, test_fraction=0.2)
    val = get_source("image_folder", "val", tmp_path, test_fraction=0.2)
    test = get_source("image_folder", "test", tmp_path, test_fraction=0.2)
    assert (len(train), len(val), len(test)) == (24, 9, 6)
    assert all("/val/" in p for p in _paths(val))
    assert all("/train/" in p for p in _paths(test) | _paths(train))
    assert train.info.image_shape == (12, 12, 3)  # image_size=None: the first image's size


def test_labels_follow_the_sorted_class_folders_and_the_pixels(tmp_path):
    root = write_class_folder(tmp_path, per_class=4)
    source = get_source("image_folder", "train", root, val_fraction=0.0, test_fraction=0.0)
    for i in range(len(source)):
        record = source[i]
        assert np.argmax(record["image"][-1, -1]) == record["label"]  # the bright channel


# ---------------------------------------------------------------- pixels


def test_modes_are_converted_explicitly(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 100, 0  # fully transparent red
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png", 3)[..., 0], 100)  # alpha dropped
    assert read_image(tmp_path / "a.png", 4).shape == (4, 6, 4)
    grey = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    Image.fromarray(grey, mode="L").save(tmp_path / "g.bmp")
    rgb = read_image(tmp_path / "g.bmp", 3)
    np.testing.assert_array_equal(rgb, np.repeat(grey[..., None], 3, -1))
    np.testing.assert_array_equal(read_image(tmp_path / "g.bmp", 4)[..., 3], 255)
    deep = (np.arange(24, dtype=np.uint16).reshape(4, 6) * 2000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.tif")
    expected = np.round(deep * (255 / 65535)).astype(np.uint8)
    np.testing.assert_array_equal(read_image(tmp_path / "d.tif", 1)[..., 0], expected)
    Image.fromarray(class_image(1, 0)).save(tmp_path / "c.jpg", quality=95)
    assert read_image(tmp_path / "c.jpg", 1).shape == (12, 12, 1)


def test_resize_stretches_and_crop_keeps_the_centre(tmp_path):
    x = np.zeros((10, 20), np.uint8)
    x[:, 5:15] = 255  # the centre 10 x 10 is white
    Image.fromarray(x, mode="L").save(tmp_path / "w.png")
    cropped = read_image(tmp_path / "w.png", 1, (10, 10), "crop")
    np.testing.assert_array_equal(cropped, 255)
    stretched = read_image(tmp_path / "w.png", 1, (10, 10), "resize")
    assert stretched.shape == (10, 10, 1) and stretched.min() == 0
    mask = np.zeros((10, 20), np.uint8)
    mask[:, 10:] = 2
    Image.fromarray(mask, mode="L").save(tmp_path / "m.png")
    assert set(np.unique(read_mask(tmp_path / "m.png", (5, 7)))) == {0, 2}  # nearest: no 1


# ---------------------------------------------------------------- statistics, cached


def test_mean_std_are_the_train_pixels_and_are_cached(tmp_path, monkeypatch):
    root = write_class_folder(tmp_path, per_class=10)
    train = get_source("image_folder", "train", root, image_size=12)
    pixels = np.stack([train[i]["image"] for i in range(len(train))]) / 255.0
    np.testing.assert_allclose(train.info.mean, pixels.mean((0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(train.info.std, pixels.std((0, 1, 2)), atol=1e-5)
    assert len(list(folder_common.cache_dir().glob("*.json"))) == 1
    monkeypatch.setattr(folder_common, "_memory", {})  # a new process: only the disk cache

    def no_reading(*args, **kwargs):
        raise AssertionError("the cached statistics were not used")

    monkeypatch.setattr("cnnjax.data.image_folder.read_image", no_reading)
    assert get_info("image_folder", root, image_size=12) == train.info
    (root / "circle" / "img_000.png").unlink()  # the folder changed: scanned again
    with pytest.raises(AssertionError, match="cached"):
        get_source("image_folder", "train", root, image_size=12)


# ---------------------------------------------------------------- errors name the path


@pytest.mark.parametrize("make, match", [
    (lambda r: (r / "a").mkdir() or (r / "b").mkdir(), "a'? holds no image files"),
    (lambda r: write_class_folder(r, 2, classes=("only",)), "at least 2 classes"),
    (lambda r: Image.fromarray(class_image(0, 0)).save(r / "x.png"), "outside class folders"),
    (lambda r: (write_class_folder(r, 2), (r / "square" / "bad.png").write_bytes(b"no png")),
     "cannot read image .*bad.png"),
    (lambda r: None, "has no class folders"),
])
def test_bad_folders_give_one_clear_error(tmp_path, make, match):
    make(tmp_path)
    with pytest.raises(ValueError, match=match):
        get_source("image_folder", "train", tmp_path)


def test_missing_or_unset_folder_and_unknown_val_class(tmp_path):
    with pytest.raises(ValueError, match="data_dir=DIR"):
        get_source("image_folder", "train")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        get_source("image_folder", "train", tmp_path / "nowhere")
    write_class_folder(tmp_path / "train", 3)
    write_class_folder(tmp_path / "val", 1, classes=("circle", "hexagon"))
    with pytest.raises(ValueError, match="hexagon"):
        get_source("image_folder", "val", tmp_path)
    with pytest.raises(TypeError, match="imagesize"):
        get_source("image_folder", "train", tmp_path, imagesize=3)


# ---------------------------------------------------------------- through the pipeline


def test_pipeline_resumes_exactly_and_shards_over_processes(tmp_path):
    root = write_class_folder(tmp_path, per_class=12)
    source = get_source("image_folder", "train", root, image_size=8)
    kwargs = dict(batch_size=6, seed=3, train=True, augment="hflip")
    reference = [next(it) for it in [make_pipeline(source, **kwargs)] for _ in range(8)]
    first = make_pipeline(source, **kwargs)
    for _ in range(3):
        next(first)
    resumed = make_pipeline(source, **kwargs)
    resumed.set_state(json.loads(json.dumps(first.get_state())))
    for expected in reference[3:]:
        got = next(resumed)
        np.testing.assert_array_equal(got["image"], expected["image"])
        np.testing.assert_array_equal(got["label"], expected["label"])
    parts = [make_pipeline(source, process_index=p, process_count=2, **kwargs) for p in (0, 1)]
    for expected in reference[:4]:
        rows = [next(p) for p in parts]
        np.testing.assert_array_equal(np.concatenate([r["image"] for r in rows]),
                                      expected["image"])


def test_few_label_subset_is_stratified(tmp_path):
    root = write_class_folder(tmp_path, per_class=10)
    subset = get_source("image_folder", "train", root, num_labelled=6)
    assert sorted(np.bincount(subset.labels).tolist()) == [2, 2, 2]


# ---------------------------------------------------------------- segmentation


def test_segmentation_pairs_masks_and_infers_the_classes(tmp_path):
    root = write_seg_folder(tmp_path, count=20, size=16, num_classes=3)
    train = get_source("image_folder_seg", "train", root, image_size=8, channels=1)
    val = get_source("image_folder_seg", "val", root, image_size=8, channels=1)
    assert (len(train), len(val)) == (16, 2)
    assert train.info.num_classes == 3 and train.info.class_names == ("0", "1", "2")
    record = train[0]
    assert record["image"].shape == (8, 8, 1) and record["mask"].shape == (8, 8)
    # the image is mask * 60 + i: away from the edges (blended by bilinear resizing of the
    # image), the nearest-neighbour mask still matches its image
    far = np.ix_([0, 1, 2, 5, 6, 7], [0, 1, 2, 5, 6, 7])
    np.testing.assert_array_equal(record["image"][..., 0][far] // 60, record["mask"][far])
    np.testing.assert_array_equal(record["mask"][:4], 1)
    batch = next(make_pipeline(train, batch_size=4, seed=0, train=False))
    assert batch["mask"].shape == (4, 8, 8)


def test_segmentation_errors_name_the_file(tmp_path):
    root = write_seg_folder(tmp_path / "a", count=4)
    (root / "masks" / "s_001.png").unlink()
    with pytest.raises(ValueError, match=r"no mask .*s_001\.png"):
        get_source("image_folder_seg", "train", root)
    root = write_seg_folder(tmp_path / "b", count=4)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "masks" / "s_002.png")
    with pytest.raises(ValueError, match=r"s_002\.png' is 5x5"):
        get_source("image_folder_seg", "train", root)
    root = write_seg_folder(tmp_path / "c", count=4)
    Image.fromarray(class_image(0, 0)).save(root / "images" / "s_000.jpg")
    with pytest.raises(ValueError, match="same name"):
        get_source("image_folder_seg", "train", root)
    root = write_seg_folder(tmp_path / "d", count=4, num_classes=3)
    with pytest.raises(ValueError, match="hold class id 2"):
        get_source("image_folder_seg", "train", root, num_classes=2)
    Image.fromarray(class_image(0, 0)).save(root / "masks" / "s_000.png")
    with pytest.raises(ValueError, match="one class id per pixel"):
        get_source("image_folder_seg", "train", root)


def test_image_suffixes_are_shared_with_prediction_inputs():
    from cnnjax.train.runner import predict_io

    assert predict_io.IMAGE_SUFFIXES == image_files_lib.IMAGE_SUFFIXES


# ---------------------------------------------------------------- a folder as one .npz


def test_folder_to_npz_writes_what_the_npz_source_reads(tmp_path, capsys):
    from experiments import folder_to_npz

    root = write_class_folder(tmp_path / "imgs", per_class=10)
    out = tmp_path / "mine.npz"
    assert folder_to_npz.main(["prog", str(root), str(out), "--image_size=8",
                               "--channels=1"]) == 0
    assert "train 24, val 3, test 3" in capsys.readouterr().out
    folder = get_source("image_folder", "test", root, image_size=8, channels=1)
    npz = get_source("npz", "test", out)
    assert npz.info.class_names == CLASSES and npz.info.image_shape == (8, 8, 1)
    for i in range(len(folder)):
        np.testing.assert_array_equal(npz[i]["image"], folder[i]["image"])
        assert npz[i]["label"] == folder[i]["label"]
    train = get_source("npz", "train", out)
    np.testing.assert_allclose(train.info.mean, folder.info.mean, atol=1e-5)
    assert len(get_source("npz", "val", out)) == 3  # the archive's own val split
    with pytest.raises(ValueError, match="own val_images"):
        get_source("npz", "train", out, val_size=4)
    plain = tmp_path / "plain.npz"
    np.savez(plain, train_images=np.zeros((10, 4, 4), np.uint8), train_labels=np.arange(10) % 2)
    kept = get_source("npz", "train", plain, val_size=3)
    held = get_source("npz", "val", plain, val_size=3)
    assert (len(kept), len(held), kept.info.class_names) == (7, 3, ("0", "1"))
    assert kept.info.image_shape == (4, 4, 1)
    assert folder_to_npz.main(["prog", str(tmp_path / "none"), str(out)]) == 1
    assert folder_to_npz.main(["prog", str(root)]) == 2
    with pytest.raises(FileNotFoundError, match="not a file"):
        get_source("npz", "train", tmp_path)
