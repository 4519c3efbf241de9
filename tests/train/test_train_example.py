"""The ten-line training script of cnnjax.train's docstring, with every strategy: a model
learns a small synthetic task (loss falls, held-out accuracy rises) in a few dozen steps.
Also: segmentation metrics exact across devices with padding and an ignore label."""

from __future__ import annotations

import numpy as np
import pytest
from train_testutil import quadrant_batch

from cnnjax import models, train


@pytest.mark.parametrize("strategy", ["jit", "shard_map", "pmap"])
def test_ten_line_script_trains_with_every_strategy(strategy):
    rng = np.random.default_rng(0)
    batches = [quadrant_batch(rng, 32) for _ in range(30)]
    held_out = quadrant_batch(np.random.default_rng(1), 64)

    # --- the script -------------------------------------------------------------------
    mesh = train.make_mesh()
    model = models.create("cnn2d", num_classes=4, widths=(8, 16))
    task = train.classification()
    tx = train.make_optimizer({"name": "adam", "learning_rate": 1e-2})
    state = train.create_train_state(model, tx, 0, (1, 8, 8, 3), mesh=mesh)
    step = train.make_train_step(model, task, tx, strategy=strategy, mesh=mesh)
    losses = []
    for i, batch in enumerate(batches):
        state, metrics = step(state, batch)
        train.check_finite(metrics, i)
        losses.append(task.finalize(train.merge_metrics(None, metrics))["loss"])
    # -------------------------------------------------------------------------------------

    evaluate = train.make_eval_step(model, task, strategy=strategy, mesh=mesh)
    after = task.finalize(train.merge_metrics(None, evaluate(state, held_out)))
    start = train.create_train_state(model, tx, 0, (1, 8, 8, 3), mesh=mesh)
    before = task.finalize(train.merge_metrics(None, evaluate(start, held_out)))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    assert after["accuracy"] >= 0.9 > before["accuracy"] + 0.3, (before, after)
    assert after["loss"] < before["loss"]
    assert int(state.step) == 30


def test_segmentation_eval_exact_across_devices_with_padding_and_ignore_label():
    """U-Net-tiny, 11 images in batches of 8 on 8 devices (the second batch: 3 real rows,
    5 padding rows) with 255 = ignore: confusion matrix and mIoU equal NumPy's on all 11."""
    rng = np.random.default_rng(2)
    images = rng.normal(size=(11, 8, 8, 1)).astype(np.float32)
    masks = rng.integers(0, 3, (11, 8, 8)).astype(np.int32)
    masks[rng.random(masks.shape) < 0.25] = 255
    mesh = train.make_mesh()
    model = models.create("unet_tiny", num_classes=3)
    task = train.segmentation(3, ignore_label=255, loss="ce+dice")
    tx = train.make_optimizer({"name": "sgd", "learning_rate": 0.1})
    state = train.create_train_state(model, tx, 3, (1, 8, 8, 1), mesh=mesh)
    evaluate = train.make_eval_step(model, task, strategy="shard_map", mesh=mesh)
    total = None
    for start in (0, 8):
        n = min(8, 11 - start)
        batch = {
            "image": np.zeros((8, 8, 8, 1), np.float32),
            "mask": np.zeros((8, 8, 8), np.int32),
            "valid": (np.arange(8) < n).astype(np.float32),
        }
        batch["image"][:n] = images[start : start + n]
        batch["mask"][:n] = masks[start : start + n]
        total = train.merge_metrics(total, evaluate(state, batch))
    variables = {"params": state.params, **state.model_state}
    pred = np.asarray(model.apply(variables, images, train=False)).argmax(-1)
    counted = masks != 255
    cm = np.zeros((3, 3), np.int64)
    np.add.at(cm, (masks[counted], pred[counted]), 1)
    np.testing.assert_array_equal(total["confusion"][0], cm)
    out = task.finalize(total)
    ious = [
        ((pred == c) & (masks == c)).sum() / (((pred == c) & counted) | (masks == c)).sum()
        for c in range(3)
    ]
    assert out["mean_iou"] == pytest.approx(np.mean(ious))
    assert out["pixel_accuracy"] == pytest.approx((pred == masks)[counted].mean())
    assert total["loss"][1] == 11
