"""Task losses and metrics against naive NumPy references (loops over examples and pixels)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import train


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    out = np.empty_like(z)
    for idx in np.ndindex(z.shape[:-1]):
        row = z[idx]
        m = row.max()
        out[idx] = row - m - math.log(sum(math.exp(v - m) for v in row))
    return out


def to_float(pairs):
    return {k: (np.asarray(s, np.float64), float(c)) for k, (s, c) in pairs.items()}


# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_classification_ce_with_smoothing_and_padding_matches_numpy(eps):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 7)).astype(np.float32) * 3
    labels = rng.integers(0, 7, 6).astype(np.int32)
    valid = np.array([1, 1, 0, 1, 1, 0], np.float32)
    task = train.classification(label_smoothing=eps)
    batch = {"label": labels, "valid": valid}
    ((total, count),) = task.loss_terms(jnp.asarray(logits), batch).values()
    logp = np_log_softmax(logits)
    expected = []
    for i in range(6):
        if valid[i]:
            target = np.full(7, eps / 7)
            target[labels[i]] += 1 - eps
            expected.append(-float(np.dot(target, logp[i])))
    assert float(count) == 4
    np.testing.assert_allclose(float(total), sum(expected), rtol=1e-5)
    np.testing.assert_allclose(
        float(task.loss(jnp.asarray(logits), batch)), np.mean(expected), rtol=1e-5
    )


def test_classification_soft_labels_equal_one_hot_and_mix():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 5)).astype(np.float32)
    labels = np.array([0, 3, 4, 1])
    task = train.classification()
    hard = float(task.loss(jnp.asarray(logits), {"label": labels}))
    onehot = np.eye(5, dtype=np.float32)[labels]
    soft = float(task.loss(jnp.asarray(logits), {"label": onehot}))
    np.testing.assert_allclose(soft, hard, rtol=1e-6)
    # A 30/70 mixup target: the loss is the same mixture of the two hard losses.
    other = np.array([2, 2, 0, 4])
    mixed = 0.3 * onehot + 0.7 * np.eye(5, dtype=np.float32)[other]
    logp = np_log_softmax(logits)
    ref = np.mean([-(0.3 * logp[i, labels[i]] + 0.7 * logp[i, other[i]]) for i in range(4)])
    np.testing.assert_allclose(
        float(task.loss(jnp.asarray(logits), {"label": mixed})), ref, rtol=1e-5
    )


def test_classification_accuracy_and_top5_match_numpy():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(50, 12)).astype(np.float32)
    labels = rng.integers(0, 12, 50).astype(np.int32)
    valid = (rng.random(50) > 0.2).astype(np.float32)
    m = to_float(
        train.classification().metrics(jnp.asarray(logits), {"label": labels, "valid": valid})
    )
    correct = top5 = n = 0
    for i in range(50):
        if not valid[i]:
            continue
        n += 1
        order = sorted(range(12), key=lambda j: -logits[i, j])
        correct += order[0] == labels[i]
        top5 += labels[i] in order[:5]
    assert m["accuracy"] == (correct, n)
    assert m["top5_accuracy"] == (top5, n)
    # Few classes: top-5 would always be 1, so it is not reported.
    assert "top5_accuracy" not in train.classification().metrics(
        jnp.asarray(logits[:, :5]), {"label": np.minimum(labels, 4)}
    )


def test_classification_rejects_bad_inputs():
    task = train.classification()
    logits = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match="label"):
        task.loss(logits, {"label": np.zeros((4, 2), np.float32)})
    with pytest.raises(TypeError, match="integer"):
        task.loss(logits, {"label": np.zeros((4,), np.float32)})
    with pytest.raises(ValueError, match="keys"):
        task.loss(logits, {"image": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="valid"):
        task.loss(logits, {"label": np.zeros(4, np.int32), "valid": np.ones(3)})
    with pytest.raises(ValueError, match="label_smoothing"):
        train.classification(label_smoothing=1.5)


# --------------------------------------------------------------------------- segmentation


def seg_example(seed: int, shape=(3, 5, 6), classes: int = 4, ignore: int | None = 255):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(*shape, classes)) * 2).astype(np.float32)
    mask = rng.integers(0, classes, shape).astype(np.int32)
    if ignore is not None:
        mask[rng.random(shape) < 0.2] = ignore
    return logits, mask


def test_segmentation_ce_ignores_label_and_padding():
    logits, mask = seg_example(0)
    valid = np.array([1, 0, 1], np.float32)
    task = train.segmentation(4, ignore_label=255)
    ((total, count),) = task.loss_terms(
        jnp.asarray(logits), {"mask": mask, "valid": valid}
    ).values()
    logp = np_log_softmax(logits)
    terms = [
        -logp[b, i, j, mask[b, i, j]]
        for b in range(3)
        for i in range(5)
        for j in range(6)
        if valid[b] and mask[b, i, j] != 255
    ]
    assert float(count) == len(terms)
    np.testing.assert_allclose(float(total), sum(terms), rtol=1e-5)


def test_segmentation_dice_loss_matches_numpy_loops():
    logits, mask = seg_example(1, ignore=None)
    smooth = 1.0
    task = train.segmentation(4, loss="dice", dice_smooth=smooth)
    got = float(task.loss(jnp.asarray(logits), {"mask": mask}))
    per_image = []
    for b in range(3):
        e = np.exp(logits[b] - logits[b].max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
        dices = []
        for c in range(4):
            t = (mask[b] == c).astype(np.float64)
            inter = float((p[..., c] * t).sum())
            dices.append((2 * inter + smooth) / (p[..., c].sum() + t.sum() + smooth))
        per_image.append(1 - np.mean(dices))
    np.testing.assert_allclose(got, np.mean(per_image), rtol=1e-5)
    both = train.segmentation(4, loss="ce+dice", dice_smooth=smooth)
    ce = float(train.segmentation(4).loss(jnp.asarray(logits), {"mask": mask}))
    np.testing.assert_allclose(
        float(both.loss(jnp.asarray(logits), {"mask": mask})), ce + np.mean(per_image), rtol=1e-5
    )


def test_segmentation_perfect_prediction_has_zero_dice_loss_and_unit_iou():
    mask = np.array([[[0, 1], [2, 1]]], np.int32)
    logits = 50.0 * np.eye(3, dtype=np.float32)[mask]
    task = train.segmentation(3, loss="dice", dice_smooth=0.0)
    assert float(task.loss(jnp.asarray(logits), {"mask": mask})) == pytest.approx(0.0, abs=1e-6)
    out = task.finalize(task.metrics(jnp.asarray(logits), {"mask": mask}))
    assert out["mean_iou"] == 1.0 and out["pixel_accuracy"] == 1.0 and out["mean_dice"] == 1.0


def test_segmentation_confusion_iou_dice_match_numpy_sets():
    logits, mask = seg_example(2, shape=(4, 6, 6), classes=5)
    valid = np.array([1, 1, 1, 0], np.float32)
    task = train.segmentation(5, ignore_label=255)
    pairs = task.metrics(jnp.asarray(logits), {"mask": mask, "valid": valid})
    out = task.finalize(pairs)
    pred = logits.argmax(-1)
    counted = (mask != 255) & (valid[:, None, None] > 0)
    cm = np.zeros((5, 5), np.int64)
    for b, i, j in zip(*np.nonzero(counted), strict=True):
        cm[mask[b, i, j], pred[b, i, j]] += 1
    np.testing.assert_array_equal(np.asarray(pairs["confusion"][0]), cm)
    assert int(pairs["confusion"][1]) == counted.sum()
    assert out["pixel_accuracy"] == pytest.approx((pred == mask)[counted].mean())
    ious, dices = [], []
    for c in range(5):
        p, t = (pred == c) & counted, (mask == c) & counted
        union = (p | t).sum()
        ious.append((p & t).sum() / union if union else np.nan)
        dices.append(2 * (p & t).sum() / (p.sum() + t.sum()) if union else np.nan)
        assert out[f"iou/{c}"] == pytest.approx(ious[-1], nan_ok=True)
        assert out[f"dice/{c}"] == pytest.approx(dices[-1], nan_ok=True)
    assert out["mean_iou"] == pytest.approx(np.nanmean(ious))
    assert out["mean_dice"] == pytest.approx(np.nanmean(dices))


def test_confusion_metrics_skip_absent_classes():
    cm = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # class 2 never seen nor predicted
    out = train.confusion_metrics(cm)
    assert math.isnan(out["iou/2"])
    assert out["iou/0"] == pytest.approx(3 / 4) and out["iou/1"] == pytest.approx(2 / 3)
    assert out["mean_iou"] == pytest.approx((3 / 4 + 2 / 3) / 2)


def test_segmentation_rejects_bad_inputs():
    with pytest.raises(ValueError, match="num_classes"):
        train.segmentation(1)
    with pytest.raises(ValueError, match="loss"):
        train.segmentation(3, loss="focal")
    task = train.segmentation(3)
    with pytest.raises(ValueError, match="mask"):
        task.loss(jnp.zeros((2, 4, 4, 3)), {"mask": np.zeros((2, 4, 5), np.int32)})
    with pytest.raises(TypeError, match="integers"):
        task.loss(jnp.zeros((2, 4, 4, 3)), {"mask": np.zeros((2, 4, 4), np.float32)})


# --------------------------------------------------------------------------- binary


def test_binary_sigmoid_ce_and_metrics_match_numpy():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 3)).astype(np.float32) * 2
    labels = (rng.random((5, 3)) > 0.5).astype(np.float32)
    valid = np.array([1, 1, 1, 0, 1], np.float32)
    task = train.binary(pos_weight=2.0)
    batch = {"label": labels, "valid": valid}
    per_example = []
    for b in range(5):
        if valid[b]:
            s = 1 / (1 + np.exp(-logits[b].astype(np.float64)))
            per_example.append(
                np.mean(-(2.0 * labels[b] * np.log(s) + (1 - labels[b]) * np.log(1 - s)))
            )
    np.testing.assert_allclose(
        float(task.loss(jnp.asarray(logits), batch)), np.mean(per_example), rtol=1e-5
    )
    m = to_float(task.metrics(jnp.asarray(logits), batch))
    right = ((logits > 0) == (labels > 0.5))[valid > 0]
    assert m["accuracy"] == (right.sum(), right.size)
    assert m["exact_match"] == (right.all(axis=1).sum(), 4)


def test_binary_accepts_trailing_channel_and_rejects_mismatch():
    task = train.binary()
    logits = jnp.zeros((2, 4, 4, 1))
    loss = float(task.loss(logits, {"label": np.ones((2, 4, 4), np.float32)}))
    assert loss == pytest.approx(math.log(2.0), rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        task.loss(logits, {"label": np.ones((2, 4, 3), np.float32)})


def test_finalize_pairs_divides_and_marks_empty():
    out = train.finalize_pairs({"a": (3.0, 4.0), "b": (0.0, 0.0)})
    assert out["a"] == 0.75 and math.isnan(out["b"])
