"""The plots of a trained run: curves, first-layer filters, confusion matrix or overlays.

`write_plots(c, state, workdir, split)` draws what `experiments.classify`/`segment` write
after training and evaluation; `first_conv_kernel` finds the kernel to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.train.runner.components import Components
from cnnjax.train.runner.predict import local_view, split_predictions
from cnnjax.viz.confusion import plot_confusion_matrix
from cnnjax.viz.curves import load_metrics, metric_names, plot_training_curves
from cnnjax.viz.images import plot_filters
from cnnjax.viz.segmentation import plot_segmentation
from cnnjax.workdir_layout import METRICS_FILE

__all__ = ["PLOT_EXAMPLES", "denormalize", "first_conv_kernel", "write_overlays", "write_plots"]

PLOT_EXAMPLES = 4  # segmentation overlays drawn per plot
CURVES = ("loss", "accuracy", "mean_iou", "mean_dice", "learning_rate")


def first_conv_kernel(model: nn.Module, state: Any, input_shape: Sequence[int]) -> Any:
    """The kernel of the first convolution the model applies (call order, not name order).

    Found by intercepting module calls under `jax.eval_shape` (no compute); None if the model
    has no convolution.
    """
    paths: list[tuple[str, ...]] = []

    def interceptor(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
        module = context.module
        name = type(module).__name__
        if (not paths and context.method_name == "__call__" and "Conv" in name
                and "Transpose" not in name and module.has_variable("params", "kernel")):
            paths.append(tuple(module.path))
        return next_fun(*args, **kwargs)

    variables = {"params": state.params, **dict(state.model_state or {})}
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    if not paths:
        return None
    node = state.params
    for part in paths[0]:
        node = node[part]
    return node["kernel"]


def denormalize(images: Any, c: Components) -> np.ndarray:
    """Undo the pipeline's normalisation for display (values 0..1)."""
    if not c.config.data.normalize:
        return np.clip(images, 0, 1)
    mean = np.asarray(c.info.mean, np.float32)
    std = np.asarray(c.info.std, np.float32)
    return np.clip(images * std + mean, 0, 1)


def write_overlays(c: Components, names: Sequence[str], inputs: Sequence[np.ndarray],
                   masks: Sequence[np.ndarray], output: Path) -> list[Path]:
    """`output/overlays.png`: the first `PLOT_EXAMPLES` predicted masks over their images
    (preprocessed, (1, H, W, C) each), when they share one size; else nothing. The
    `overlays` argument of `cnnjax.train.runner.predict_io.write_predictions`."""
    n = min(PLOT_EXAMPLES, len(masks))
    if not n or len({np.shape(m) for m in masks[:n]}) != 1:
        return []
    shown = np.stack([denormalize(x[0], c) for x in inputs[:n]])
    path = Path(output) / "overlays.png"
    plot_segmentation(shown, np.stack(masks[:n]), num_classes=c.info.num_classes,
                      class_names=c.info.class_names, row_titles=list(names[:n]), path=path)
    return [path]


def _iou_title(target: np.ndarray, pred: np.ndarray, num_classes: int) -> str:
    ious = []
    for k in range(num_classes):
        union = np.logical_or(target == k, pred == k).sum()
        if union:
            ious.append(np.logical_and(target == k, pred == k).sum() / union)
    return f"mIoU {np.mean(ious):.3f}"


def _filters(c: Components, state: Any, workdir: Path) -> list[Path]:
    kernel = first_conv_kernel(c.model, state, c.info.image_shape)
    if kernel is None:
        return []
    k = np.asarray(jax.device_get(kernel))
    if k.ndim == 3:  # 1D conv (k, in, out): one row of width k per filter
        k = k[None]
    elif k.ndim == 5:  # 3D conv: the middle depth slice
        k = k[k.shape[0] // 2]
    path = workdir / "filters.png"
    plot_filters(k, title="first-layer filters", path=path)
    return [path]


def _split_plot(c: Components, state: Any, workdir: Path, split: str, suffix: str
                ) -> list[Path]:
    info = c.info
    if info.task == "classification" and c.task.name == "classification":
        res = split_predictions(c, state, split)
        cm = np.zeros((info.num_classes, info.num_classes), np.int64)
        np.add.at(cm, (res["targets"].astype(int), res["predictions"].astype(int)), 1)
        path = workdir / f"confusion_matrix_{split}{suffix}.png"
        plot_confusion_matrix(cm, info.class_names, title=f"{split} confusion matrix",
                              path=path)
        return [path]
    if info.task == "segmentation":
        res = split_predictions(c, state, split, max_batches=1)
        n = min(PLOT_EXAMPLES, len(res["images"]))
        targets, preds = res["targets"][:n], res["predictions"][:n]
        titles = [_iou_title(t, p, info.num_classes) for t, p in zip(targets, preds, strict=True)]
        path = workdir / f"segmentation_{split}{suffix}.png"
        plot_segmentation(denormalize(res["images"][:n], c), targets, preds,
                          num_classes=info.num_classes, row_titles=titles,
                          class_names=info.class_names, path=path)
        return [path]
    return []


def write_plots(c: Components, state: Any, workdir: str | Path, split: str | None, *,
                tag: str = "") -> list[Path]:
    """Training curves, first-layer filters, and a confusion matrix (classification) or
    image/ground-truth/prediction overlays (segmentation) on `split`; returns the PNG paths.

    Process 0 only (others return []); `tag` is appended to the split plot's file name.
    """
    if jax.process_index() != 0:
        return []
    workdir = Path(workdir)
    c, state = local_view(c, state)
    written: list[Path] = []
    metrics_path = workdir / METRICS_FILE
    if metrics_path.exists() and metrics_path.stat().st_size > 0:
        records = load_metrics(metrics_path)
        names = [m for m in CURVES if m in metric_names(records)]
        path = workdir / "training_curves.png"
        plot_training_curves(records, names or None, logy=("loss",), path=path,
                             title=f"{c.config.model} on {c.config.dataset}")
        written.append(path)
    written += _filters(c, state, workdir)
    if split:
        written += _split_plot(c, state, workdir, split, f"_{tag}" if tag else "")
    return written
