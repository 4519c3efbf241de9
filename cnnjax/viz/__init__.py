"""Plots for convolutional networks, as matplotlib Figures that need no display.

Every ``plot_*`` function returns a `matplotlib.figure.Figure` built without `pyplot` (so
it works headless, in tests and CI, and shows inline when it is a notebook cell's value)
and saves a PNG when given ``path=``. Arrays may be NumPy or JAX.

* `plot_images`: a grid of images (optionally with each value written in its cell).
* `plot_filters`: first-layer kernels ``(kh, kw, in, out)`` as a grid of images.
* `plot_feature_maps`: the channels of one layer's feature map for one input.
* `plot_training_curves`: metrics from one or several ``metrics.jsonl`` files overlaid.
* `plot_confusion_matrix`: a ``(K, K)`` confusion matrix with class names.
* `plot_segmentation`: image, ground truth and prediction overlays.
* `plot_receptive_field` / `receptive_field_table`: receptive-field growth of a layer stack.

The plots of a trained run (curves, filters, confusion matrix or overlays) are written by
`cnnjax.viz.run_plots.write_plots`; it is not imported here, since it needs `cnnjax.train`.
"""

from cnnjax.viz.confusion import plot_confusion_matrix
from cnnjax.viz.curves import final_value, load_metrics, metric_names, plot_training_curves
from cnnjax.viz.images import plot_feature_maps, plot_filters, plot_images
from cnnjax.viz.receptive import (
    format_receptive_field_table,
    plot_receptive_field,
    receptive_field_table,
)
from cnnjax.viz.segmentation import class_colors, mask_overlay, plot_segmentation

__all__ = [
    "class_colors",
    "final_value",
    "format_receptive_field_table",
    "load_metrics",
    "mask_overlay",
    "metric_names",
    "plot_confusion_matrix",
    "plot_feature_maps",
    "plot_filters",
    "plot_images",
    "plot_receptive_field",
    "plot_segmentation",
    "plot_training_curves",
    "receptive_field_table",
]
