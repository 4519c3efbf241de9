# %% [markdown]
# # 03 · Segmentation with a U-Net
#
# Classification gives one label per image; **segmentation** gives one per pixel, so the
# output must be as large as the input. The U-Net (Ronneberger et al. 2015) does it with
# an encoder (3x3 convolutions and 2x2 max pools: a growing receptive field and a deep
# latent space down to the *bottleneck*), a decoder of "up-conv 2x2" (transposed
# convolutions, stride 2) that restores the resolution, and skip connections that copy
# each encoder level's maps to the decoder level of the same size ("copy and crop"), so
# fine detail is not lost. A final 1x1 convolution maps the features to per-pixel class
# logits.
#
# 1. `shapes_seg`: procedural scenes of one to four overlapping shapes, 7 classes
#    (background + 6 shapes), no download.
# 2. ISBI 2012 electron-microscopy membranes (the data set of the U-Net paper), when the
#    archive is in `$CNNJAX_DATA_DIR` or `../../shared/data` and not in fast mode.
#
# Quality is measured per class by the **IoU** (intersection over union,
# `TP / (TP + FP + FN)`) and the **Dice** coefficient (`2 TP / (2 TP + FP + FN)`), both
# from the pixel confusion matrix. `CNNJAX_NOTEBOOK_FAST=1` (CI) trains for 120 steps.

# %%
import os
import tempfile
import time
from pathlib import Path

import jax
import matplotlib
import numpy as np

from cnnjax import data, models, viz
from cnnjax.checkpoint import CheckpointManager
from cnnjax.train.runner.config import default_config
from cnnjax.train.runner.components import build
from cnnjax.train.runner.loop import train_and_evaluate

# cnnjax.viz returns matplotlib Figures (built without pyplot); this shows them inline
%matplotlib inline
matplotlib.rcParams["figure.dpi"] = 80

FAST = os.environ.get("CNNJAX_NOTEBOOK_FAST", "0") not in ("", "0", "false", "False")


def find_data_dir():
    """`$CNNJAX_DATA_DIR` if set, else ../../shared/data (next to the repository), when it
    holds the ISBI 2012 archive; None otherwise."""
    candidate = Path(os.environ.get("CNNJAX_DATA_DIR") or "../../shared/data")
    return candidate if (candidate / "isbi2012_em_membrane.npz").is_file() else None


DATA_DIR = find_data_dir()
RUN_ISBI = DATA_DIR is not None and not FAST
print(f"fast mode: {FAST} | ISBI 2012 archive: {DATA_DIR} | ISBI section runs: {RUN_ISBI}")

# %% [markdown]
# ## 1. The data: images and per-pixel masks

# %%
train_source = data.get_source("shapes_seg", "train")
info = train_source.info
print(info.class_names, info.image_shape)
samples = [train_source[i] for i in range(4)]
viz.plot_segmentation(np.stack([s["image"] for s in samples]),
                      np.stack([s["mask"] for s in samples]), num_classes=info.num_classes,
                      class_names=info.class_names)

# %% [markdown]
# ## 2. The network
#
# `create("unet", ...)` builds the paper's architecture with options: here 3 resolution
# levels with 16 channels at the top (doubling per level), "same" padding so the output
# is exactly the input's size, batch norm. The paper's network is
# `create("unet_original")` (5 levels, 64 channels, unpadded convolutions:
# 572x572 -> 388x388, 31,030,658 parameters).

# %%
unet_options = {"depth": 3, "base_features": 16}
model = models.create("unet", num_classes=info.num_classes, **unet_options)
print(models.summary(model, (1, *info.image_shape), depth=1))
print("the paper's U-Net:", f"{models.summary(models.create('unet_original'), (1, 572, 572, 1)).total_params:,}",
      "parameters; output size for a 572x572 input:", models.unet_output_size(572, 5, "valid"))

# %% [markdown]
# ## 3. Training on `shapes_seg`
#
# The generic trainer again: the data set's task is segmentation, so the loss is the
# per-pixel cross-entropy and the metrics come from the pixel confusion matrix (pixel
# accuracy, IoU and Dice per class and their means). The best checkpoint is chosen by the
# validation mean IoU.

# %%
config = default_config()
config.seed = 0
config.model = "unet"
config.model_options = unet_options
config.dataset = "shapes_seg"
config.batch_size = 32
config.augment = "hflip|vflip"
if FAST:
    config.dataset_options = {"num_examples": 512}
    config.num_train_steps = 120
    config.eval_every_steps = 40
    config.log_every_steps = 20
else:
    config.num_train_steps = 1500
    config.eval_every_steps = 250
    config.log_every_steps = 125
config.optimizer.learning_rate = 3e-3
config.schedule.name = "warmup_cosine"
config.schedule.warmup_steps = 50 if not FAST else 10
config.keep_best = 1

workdir = Path(os.environ.get("CNNJAX_NOTEBOOK_WORKDIR") or tempfile.mkdtemp(prefix="cnnjax_03_"))
start = time.perf_counter()
summary = train_and_evaluate(config, workdir / "shapes_seg")
print(f"trained {summary['step']} steps in {time.perf_counter() - start:.0f} s")
for split in ("val", "test"):
    print(split, {k: round(v, 4) for k, v in summary[split].items() if "/" not in k})

# %%
viz.plot_training_curves(workdir / "shapes_seg" / "metrics.jsonl",
                         metrics=["loss", "pixel_accuracy", "mean_iou", "mean_dice"],
                         logy=["loss"])

# %% [markdown]
# ## 4. Predictions, IoU and Dice
#
# Restore the final checkpoint, predict the test split and recompute the metrics from our
# own confusion matrix: they must equal the trainer's.

# %%
def restore_final(config, run_dir):
    """The model and its variables from the last checkpoint of a run."""
    components = build(config)
    with CheckpointManager(run_dir / "checkpoints", read_only=True) as manager:
        state = manager.restore(components.init_state(), "latest").state
    return components.model, {"params": state.params, **state.model_state}


def predict_split(model, variables, source, batch_size):
    """Normalised images, masks and predicted class ids of a whole split."""
    apply = jax.jit(lambda v, x: model.apply(v, x))
    images, masks, preds = [], [], []
    batches = data.make_pipeline(source, batch_size=batch_size, train=False)
    for batch in batches:
        keep = batch["valid"] > 0
        logits = np.asarray(apply(variables, batch["image"]))
        images.append(batch["image"][keep])
        masks.append(batch["mask"][keep])
        preds.append(logits.argmax(-1)[keep])
    batches.close()
    return np.concatenate(images), np.concatenate(masks), np.concatenate(preds)


def confusion_matrix(masks, preds, num_classes):
    """Pixel counts: rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (masks.ravel(), preds.ravel()), 1)
    return cm


def iou_and_dice(cm):
    """Per-class IoU = TP / (TP + FP + FN) and Dice = 2 TP / (2 TP + FP + FN); NaN for a
    class absent from both masks and predictions."""
    tp = np.diag(cm).astype(float)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)


model, variables = restore_final(config, workdir / "shapes_seg")
test_source = data.get_source("shapes_seg", "test", **dict(config.dataset_options))
images, masks, preds = predict_split(model, variables, test_source, 64)
cm = confusion_matrix(masks, preds, info.num_classes)
iou, dice = iou_and_dice(cm)
print(f"{'class':10s} {'IoU':>6s} {'Dice':>6s} {'pixels':>8s}")
for name, i, d, n in zip(info.class_names, iou, dice, cm.sum(1), strict=True):
    print(f"{name:10s} {i:6.3f} {d:6.3f} {n:8d}")
print(f"mean IoU {np.nanmean(iou):.4f} (trainer {summary['test']['mean_iou']:.4f}), "
      f"mean Dice {np.nanmean(dice):.4f} (trainer {summary['test']['mean_dice']:.4f})")
np.testing.assert_allclose(np.nanmean(iou), summary["test"]["mean_iou"], atol=1e-6)
np.testing.assert_allclose(np.nanmean(dice), summary["test"]["mean_dice"], atol=1e-6)

# %% [markdown]
# Dice is never below IoU (`Dice = 2 IoU / (1 + IoU)`); both are 1 for a perfect mask.
# The row-normalised confusion matrix shows which classes are confused with which.

# %%
assert np.all(np.isclose(dice, 2 * iou / (1 + iou)) | np.isnan(iou))
viz.plot_confusion_matrix(cm, info.class_names, normalize=True,
                          title="pixel confusion matrix (rows: recall per class)")

# %% [markdown]
# ### Overlays: image, ground truth, prediction
#
# The test images with the lowest and highest IoU (mean over the classes present in the
# image). The first column is the raw image (the model saw it normalised); the masks are
# drawn over its grey levels. A regular grid pattern in a predicted region is the
# checkerboard artefact of stride-2 transposed convolutions (notebook 01, section 6.3)
# that training smooths out.

# %%
def image_iou(mask, pred, num_classes):
    i, _ = iou_and_dice(confusion_matrix(mask, pred, num_classes))
    return float(np.nanmean(i))


scores = np.array([image_iou(m, p, info.num_classes) for m, p in zip(masks, preds, strict=True)])
order = np.argsort(scores)
picked = np.concatenate([order[:2], order[-2:]])
raw = np.stack([test_source[int(i)]["image"] for i in picked])
viz.plot_segmentation(raw, masks[picked], preds[picked], num_classes=info.num_classes,
                      row_titles=[f"IoU {scores[i]:.2f}" for i in picked],
                      class_names=info.class_names)

# %% [markdown]
# ### What the decoder sees
#
# The feature maps of one test image: `enc1` (full resolution), the bottleneck `enc3`
# (a quarter of the resolution, 64 channels) and `dec1`, the last decoder level after the
# skip connection, from which the 1x1 head reads the classes.

# %%
_, features = model.apply(variables, images[picked[-1:]], return_features=True)
print({k: tuple(v.shape) for k, v in features.items()})
viz.plot_feature_maps(features, "enc3", max_channels=16)

# %%
viz.plot_feature_maps(features, "dec1", max_channels=16)

# %% [markdown]
# ## 5. ISBI 2012: membranes in electron microscopy
#
# 30 labelled 512x512 images (mask 1 = cell interior, 78% of the pixels; 0 = membrane);
# 25 train, 5 held out for validation. The U-Net trains on random 128x128 tiles with flips
# and, being fully convolutional, is evaluated on the whole 512x512 images
# (`random_crop(..., eval_crop=False)`). Runs only with the archive and not in fast mode.

# %%
if RUN_ISBI:
    isbi = default_config()
    isbi.seed = 0
    isbi.model = "unet"
    isbi.model_options = {"depth": 4, "base_features": 16}
    isbi.dataset = "isbi2012"
    isbi.data_dir = str(DATA_DIR)
    isbi.dataset_options = {"val_size": 5}
    isbi.test_split = None  # the challenge's test masks are not public
    isbi.augment = "random_crop(size=128, eval_crop=False)|hflip|vflip"
    isbi.batch_size = 8
    isbi.eval_batch_size = 1
    isbi.num_train_steps = 400
    isbi.eval_every_steps = 100
    isbi.log_every_steps = 100
    isbi.optimizer.learning_rate = 3e-3
    isbi.schedule.name = "warmup_cosine"
    isbi.schedule.warmup_steps = 20
    isbi.keep_best = 1
    start = time.perf_counter()
    isbi_summary = train_and_evaluate(isbi, workdir / "isbi2012")
    print(f"trained {isbi_summary['step']} steps in {time.perf_counter() - start:.0f} s")
    print("val", {k: round(v, 4) for k, v in isbi_summary["val"].items() if "/" not in k})
else:
    print("skipped: ISBI 2012 runs only with the archive present and CNNJAX_NOTEBOOK_FAST unset")

# %%
if RUN_ISBI:
    isbi_model, isbi_vars = restore_final(isbi, workdir / "isbi2012")
    val_source = data.get_source("isbi2012", "val", isbi.data_dir, val_size=5)
    _, val_masks, val_preds = predict_split(isbi_model, isbi_vars, val_source, 1)
    val_iou, val_dice = iou_and_dice(confusion_matrix(val_masks, val_preds, 2))
    print("IoU  membrane / interior:", val_iou.round(4), "| Dice:", val_dice.round(4))
    np.testing.assert_allclose(np.nanmean(val_iou), isbi_summary["val"]["mean_iou"], atol=1e-6)
    crop = (slice(None, 2), slice(0, 128), slice(0, 128))  # a 128x128 corner, 2 images
    overlay = viz.plot_segmentation(
        np.stack([val_source[i]["image"] for i in range(2)])[crop], val_masks[crop],
        val_preds[crop], num_classes=2, background=1, alpha=0.6,
        row_titles=["validation image 1", "validation image 2"],
        class_names=["membrane", "interior"],
    )
    display(overlay)  # a figure inside an `if` block is not the cell's value: show it
else:
    print("skipped")
