"""Augmentation ops against independent references (NumPy slicing, a naive inverse-mapping
loop, closed forms), image/mask alignment, mixup/cutmix label consistency, and the spec syntax."""

from __future__ import annotations

import numpy as np
import pytest

from cnnjax.data import AUGMENTATIONS, OP_NAMES, PRESETS, build_ops, parse_spec
from cnnjax.data.geometric import (
    Affine,
    CenterCrop,
    Flip,
    RandomCrop,
    RandomResizedCrop,
    Resize,
)
from cnnjax.data.mixing import CutMix, MixUp, mix_batch
from cnnjax.data.transforms import Brightness, Contrast, Cutout, Op, Record, apply_ops


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def blocky_record(h=24, w=20, channels=3, seed=0):
    """A mask of random 4x4 blocks with values 1..5 and an image equal to 40 x mask."""
    r = rng(seed)
    mask = np.kron(r.integers(1, 6, (h // 4, w // 4)), np.ones((4, 4), int)).astype(np.uint8)
    image = np.repeat((mask * 40)[..., None], channels, axis=-1).astype(np.uint8)
    return {"image": image, "mask": mask}


GEOMETRIC = [
    RandomCrop(size=(16, 12), padding=3),
    RandomCrop(padding=4, pad_mode="reflect"),
    RandomCrop(padding=2, pad_mode="edge"),
    RandomResizedCrop(size=(18, 14), interpolation="nearest"),
    Flip(p=0.5, axis=1),
    Flip(p=0.5, axis=0),
    Affine(degrees=30, translate=0.2, scale=(0.7, 1.3), shear=10, interpolation="nearest"),
    Resize(size=(30, 17), interpolation="nearest"),
    CenterCrop(size=10),
]


@pytest.mark.parametrize("op", GEOMETRIC, ids=lambda op: op.name)
@pytest.mark.parametrize("channels", [1, 3, 2])
def test_geometric_ops_keep_image_and_mask_aligned(op, channels):
    for seed in range(6):
        record = blocky_record(channels=channels, seed=seed)
        out = op(record, rng(seed), True)
        assert out["image"].shape[:2] == out["mask"].shape
        assert out["image"].shape[2] == channels and out["mask"].dtype == np.uint8
        for c in range(channels):
            np.testing.assert_array_equal(out["image"][..., c], out["mask"].astype(int) * 40)


def test_bilinear_affine_stays_aligned_inside_regions():
    record = blocky_record(h=40, w=40)
    op = Affine(degrees=25, scale=(0.9, 1.1))
    out = op(record, rng(1), True)
    mask = out["mask"].astype(int)
    # where the nearest-neighbour mask is constant over a 3x3 neighbourhood, the bilinear
    # image must show that region's value
    interior = np.ones_like(mask, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            interior &= np.roll(mask, (dy, dx), axis=(0, 1)) == mask
    interior[[0, -1], :] = interior[:, [0, -1]] = False
    assert interior.sum() > 300
    diff = np.abs(out["image"][..., 0].astype(int) - 40 * mask)[interior]
    assert diff.max() <= 1


def test_affine_nearest_matches_naive_inverse_mapping():
    image = rng(0).integers(0, 256, (15, 19, 1)).astype(np.uint8)
    op = Affine(degrees=40, translate=0.1, scale=(0.8, 1.2), shear=15, fill=7,
                interpolation="nearest")
    out = op({"image": image}, rng(5), True)["image"][..., 0]
    matrix = op.matrix(rng(5), 15, 19)  # the same draws as the call above
    expected = np.full((15, 19), 7)
    for i in range(15):
        for j in range(19):
            x, y, _ = matrix @ (j + 0.5, i + 0.5, 1.0)
            col, row = int(np.floor(x)), int(np.floor(y))
            if 0 <= row < 15 and 0 <= col < 19:
                expected[i, j] = image[row, col, 0]
    assert np.mean(out != expected) < 0.02  # only pixels sampled exactly on a cell border


def test_affine_matrix_is_a_similarity_about_the_centre():
    op = Affine(degrees=90, scale=(2.0, 2.0))
    matrix = op.matrix(rng(3), 10, 16)
    np.testing.assert_allclose(matrix @ (8, 5, 1), (8, 5, 1), atol=1e-12)  # centre fixed
    linear = matrix[:2, :2]
    np.testing.assert_allclose(linear @ linear.T, np.eye(2) / 4, atol=1e-12)  # zoom 2 inverted


def test_affine_translation_bounds_follow_each_axis():
    op = Affine(degrees=0, translate=0.25)
    shifts = np.array([op.matrix(rng(seed), 8, 80)[:2, 2] for seed in range(50)])
    # output (x, y) samples input (x - tx, y - ty): |tx| <= 0.25 * 80, |ty| <= 0.25 * 8
    assert np.abs(shifts[:, 0]).max() <= 20 and np.abs(shifts[:, 0]).max() > 10
    assert np.abs(shifts[:, 1]).max() <= 2
    image = rng(0).integers(0, 256, (8, 80, 1)).astype(np.uint8)
    out = Affine(degrees=0, translate=0.25, interpolation="nearest")({"image": image}, rng(7), True)
    tx, ty = -op.matrix(rng(7), 8, 80)[:2, 2]
    dx, dy = int(np.floor(tx + 0.5)), int(np.floor(ty + 0.5))
    shifted = np.zeros_like(image)
    src = image[max(-dy, 0) : 8 - max(dy, 0), max(-dx, 0) : 80 - max(dx, 0)]
    shifted[max(dy, 0) : max(dy, 0) + src.shape[0], max(dx, 0) : max(dx, 0) + src.shape[1]] = src
    assert np.mean(out["image"] != shifted) < 0.03


def test_flip_reference():
    record = blocky_record(seed=2)
    flipped = Flip(p=1.0, axis=1)(record, rng(0), True)
    np.testing.assert_array_equal(flipped["image"], record["image"][:, ::-1])
    np.testing.assert_array_equal(flipped["mask"], record["mask"][:, ::-1])
    vflipped = Flip(p=1.0, axis=0)(record, rng(0), True)
    np.testing.assert_array_equal(vflipped["image"], record["image"][::-1])
    assert Flip(p=0.0)(record, rng(0), True) is record
    assert Flip(p=1.0)(record, rng(0), False) is record  # eval: no flip


def test_random_crop_is_a_window_of_the_padded_image():
    image = rng(1).integers(0, 256, (8, 9, 3)).astype(np.uint8)
    padded = np.pad(image, ((2, 2), (2, 2), (0, 0)))
    offsets = set()
    for seed in range(60):
        out = RandomCrop(padding=2)({"image": image}, rng(seed), True)["image"]
        matches = [(t, l) for t in range(5) for l in range(5)
                   if np.array_equal(padded[t : t + 8, l : l + 9], out)]
        assert matches
        offsets.update(matches)
    assert {(0, 0), (4, 4)} <= offsets  # both extremes are reachable
    centre = RandomCrop(size=4, padding=2)({"image": image}, rng(0), False)["image"]
    np.testing.assert_array_equal(centre, image[2:6, 2:6])
    whole = RandomCrop(size=4, eval_crop=False)({"image": image}, rng(0), False)["image"]
    assert whole is image


def test_random_resized_crop_full_box_is_resize_and_eval_is_centre_crop():
    image = rng(2).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    full = RandomResizedCrop(size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_array_equal(
        full({"image": image}, rng(0), True)["image"],
        Resize(size=16)({"image": image}, rng(0), True)["image"],
    )
    big = rng(3).integers(0, 256, (256, 300, 3)).astype(np.uint8)
    out = RandomResizedCrop(size=224)({"image": big}, rng(0), False)["image"]
    # shorter side 256 = 224 / 0.875: no rescaling, just the centre 224 x 224
    np.testing.assert_array_equal(out, big[16:240, 38:262])
    train = RandomResizedCrop(size=(20, 30))({"image": big}, rng(0), True)["image"]
    assert train.shape == (20, 30, 3)


def test_brightness_and_contrast_closed_forms():
    image = rng(4).integers(60, 190, (10, 10, 3)).astype(np.uint8)
    for seed in range(10):
        out = Brightness(max_delta=0.2)({"image": image}, rng(seed), True)["image"]
        shift = out.astype(int) - image
        assert shift.max() - shift.min() <= 1 and np.abs(shift).max() <= 0.2 * 255 + 1
        out = Contrast(lower=0.5, upper=1.5)({"image": image}, rng(seed), True)["image"]
        dev_in = image - image.mean()
        dev_out = out - image.mean()
        big = np.abs(dev_in) > 20
        factors = dev_out[big] / dev_in[big]
        assert 0.5 - 0.05 < factors.mean() < 1.5 + 0.05 and factors.std() < 0.05
    assert Brightness()({"image": image}, rng(0), False)["image"] is image


def test_cutout_changes_one_square_only():
    image = np.full((16, 16, 3), 200, np.uint8)
    for seed in range(20):
        out = Cutout(size=6, mean_fill=(10, 20, 30))({"image": image}, rng(seed), True)["image"]
        changed = np.any(out != image, axis=-1)
        rows, cols = np.nonzero(changed)
        assert 0 < changed.sum() <= 36
        assert changed.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        np.testing.assert_array_equal(out[changed], np.tile([10, 20, 30], (changed.sum(), 1)))


def test_eval_mode_is_deterministic():
    ops, _ = build_ops("random_resized_crop(size=12)|hflip|vflip|affine|brightness|cutout")
    record = blocky_record(seed=4)
    a = apply_ops(ops, dict(record), rng(0), False)
    b = apply_ops(ops, dict(record), rng(99), False)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["mask"], b["mask"])


def test_mixup_and_cutmix_labels_describe_the_pixels():
    b, h, w = 6, 8, 8
    images = np.broadcast_to(np.arange(b, dtype=np.float32)[:, None, None, None], (b, h, w, 1))
    batch = {"image": np.ascontiguousarray(images), "label": np.arange(b, dtype=np.int32),
             "valid": np.ones(b, np.float32)}
    for seed in range(5):
        mixed = mix_batch([MixUp(alpha=0.5)], batch, rng(seed), b)
        weights = mixed["label"]
        assert weights.shape == (b, b) and weights.dtype == np.float32
        np.testing.assert_allclose(weights.sum(1), 1, rtol=1e-6)
        # each image is the label-weighted sum of the inputs (labels are one-hot row ids)
        np.testing.assert_allclose(mixed["image"], np.einsum("ik,khwc->ihwc", weights, images),
                                   rtol=1e-5, atol=1e-5)
        cut = mix_batch([CutMix(alpha=1.0)], batch, rng(seed), b)
        for i in range(b):
            values, counts = np.unique(cut["image"][i], return_counts=True)
            fractions = dict(zip(values.astype(int), counts / (h * w), strict=True))
            for k in range(b):
                assert cut["label"][i, k] == pytest.approx(fractions.get(k, 0.0), abs=1e-6)


def test_spec_forms_are_equivalent_and_errors_are_clear():
    text = "random_crop(padding=4, pad_mode='reflect')|hflip|mixup(alpha=0.2)"
    listed = [("random_crop", {"padding": 4, "pad_mode": "reflect"}), "hflip",
              {"op": "mixup", "alpha": 0.2}]
    assert parse_spec(text) == parse_spec(listed)
    assert parse_spec("crop_flip") == [("random_crop", {"padding": 4}), ("hflip", {})]
    assert parse_spec(None) == parse_spec("none") == parse_spec("") == []
    with pytest.raises(ValueError, match="'spin': unknown"):
        parse_spec("hflip|spin")
    with pytest.raises(ValueError, match="cannot parse"):
        parse_spec("hflip(p=")
    with pytest.raises(TypeError, match=r"'affine'.*degree"):
        build_ops("affine(degree=3)")
    with pytest.raises(ValueError, match="padding=-1"):
        build_ops("random_crop(padding=-1)")
    with pytest.raises(ValueError, match="must precede"):
        build_ops("mixup|hflip")
    with pytest.raises(TypeError, match="augment=3"):
        parse_spec(3)
    with pytest.raises(ValueError, match="2D images"):
        RandomCrop(padding=1)({"image": np.zeros((10, 1), np.uint8)}, rng(0), True)


def test_mask_of_another_size_is_rejected():
    record = {"image": np.zeros((8, 8, 1), np.uint8), "mask": np.zeros((8, 6), np.uint8)}
    with pytest.raises(ValueError, match=r"mask shape \(8, 6\) differs"):
        RandomCrop(padding=1)(record, rng(0), True)


def test_an_op_and_a_preset_registered_by_name_work_in_specs():
    @AUGMENTATIONS.register("test_invert")
    class Invert(Op):
        def __call__(self, record: Record, rng: np.random.Generator, train: bool) -> Record:
            return {**record, "image": 255 - record["image"]} if train else record

    PRESETS.register("test_invert_flip")("test_invert|hflip(p=1.0)")
    try:
        assert "test_invert" in OP_NAMES  # the exported name list follows the registry
        ops, batch_ops = build_ops("test_invert_flip")
        assert [type(op) for op in ops] == [Invert, Flip] and batch_ops == []
        record = blocky_record(seed=2)
        out = apply_ops(ops, dict(record), rng(0), True)
        expected = 255 - record["image"][:, ::-1]  # independent reference: invert, mirror
        np.testing.assert_array_equal(out["image"], expected)
        np.testing.assert_array_equal(out["mask"], record["mask"][:, ::-1])
        with pytest.raises(ValueError, match="already registered"):
            AUGMENTATIONS.register("hflip")(Invert)
    finally:  # keep the registries as other tests expect them
        del AUGMENTATIONS._entries["test_invert"], PRESETS._entries["test_invert_flip"]
