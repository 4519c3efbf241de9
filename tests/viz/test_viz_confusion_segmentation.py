"""plot_confusion_matrix and plot_segmentation: the image data shown equals the input."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from cnnjax.viz import class_colors, plot_confusion_matrix, plot_segmentation
from cnnjax.viz.segmentation import luminance


def test_confusion_matrix_image_equals_input(tmp_path):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    fig = plot_confusion_matrix(cm, ["cat", "dog", "eel"], path=tmp_path / "cm.png")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # matrix + colour bar
    ax = fig.axes[0]
    (image,) = ax.get_images()
    np.testing.assert_array_equal(np.asarray(image.get_array()), cm)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "eel"]
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(cm.ravel().tolist())
    assert "84.00%" in ax.get_title()  # (5 + 7 + 9) / 25
    assert (tmp_path / "cm.png").stat().st_size > 1000


def test_confusion_matrix_normalized_rows_are_recalls():
    cm = np.array([[3, 1], [0, 0]])
    fig = plot_confusion_matrix(cm, normalize=True)
    (image,) = fig.axes[0].get_images()
    np.testing.assert_allclose(np.asarray(image.get_array()), [[0.75, 0.25], [0.0, 0.0]])


@pytest.mark.parametrize("cm", [np.zeros(3), np.zeros((2, 3)), np.zeros((2, 2, 2))])
def test_confusion_matrix_rejects_non_square(cm):
    with pytest.raises(ValueError, match="cm must"):
        plot_confusion_matrix(cm)


def test_confusion_matrix_rejects_wrong_class_names():
    with pytest.raises(ValueError, match="class_names must have 2 entries"):
        plot_confusion_matrix(np.eye(2), ["a", "b", "c"])


def _seg_batch(n=3, size=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((n, size, size))
    masks = rng.integers(0, 3, (n, size, size))
    preds = rng.integers(0, 3, (n, size, size))
    return images, masks, preds


def test_segmentation_rows_columns_and_overlay_colours(tmp_path):
    images, masks, preds = _seg_batch()
    fig = plot_segmentation(images, masks, preds, num_classes=3, alpha=0.5, path=tmp_path / "s.png")
    assert len(fig.axes) == 3 * 3
    colors = class_colors(3)
    for r in range(3):
        img_ax, gt_ax, pred_ax = fig.axes[3 * r : 3 * r + 3]
        np.testing.assert_array_equal(np.asarray(img_ax.get_images()[0].get_array()), images[r])
        for ax, labels in ((gt_ax, masks[r]), (pred_ax, preds[r])):
            _, overlay = ax.get_images()
            rgba = np.asarray(overlay.get_array())
            np.testing.assert_allclose(rgba[..., 3], np.where(labels == 0, 0.0, 0.5))
            np.testing.assert_allclose(rgba[..., :3], colors[labels])
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_segmentation_without_predictions_single_example_and_max_rows():
    images, masks, _ = _seg_batch(n=6)
    assert len(plot_segmentation(images, masks, max_rows=4).axes) == 4 * 2
    fig = plot_segmentation(images[0], masks[0], masks[0])
    assert len(fig.axes) == 3
    rgb = np.random.default_rng(1).random((2, 8, 8, 3))
    assert len(plot_segmentation(rgb, masks[:2, ..., None], background=None).axes) == 4


def test_segmentation_errors():
    images, masks, preds = _seg_batch()
    with pytest.raises(ValueError, match="images must have shape"):
        plot_segmentation(images[..., None, None], masks)
    with pytest.raises(ValueError, match="predictions must have shape"):
        plot_segmentation(images, masks, preds[:, :4])
    with pytest.raises(ValueError, match="num_classes"):
        plot_segmentation(images, masks, preds, num_classes=2)
    with pytest.raises(TypeError, match="masks must hold integer class ids"):
        plot_segmentation(images, masks + 0.5)


def test_segmentation_rgb_overlays_sit_on_grey_and_legend_names_classes():
    rng = np.random.default_rng(2)
    rgb = rng.random((2, 6, 6, 3))
    masks = rng.integers(0, 3, (2, 6, 6))
    fig = plot_segmentation(rgb, masks, masks, class_names=["bg", "cat", "dog"])
    image_ax, gt_ax, _ = fig.axes[:3]
    np.testing.assert_allclose(np.asarray(image_ax.get_images()[0].get_array()), rgb[0])
    base = np.asarray(gt_ax.get_images()[0].get_array())
    np.testing.assert_allclose(base, rgb[0] @ [0.299, 0.587, 0.114])
    np.testing.assert_allclose(luminance(np.ones((2, 2, 3))), np.ones((2, 2)))
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["cat", "dog"]
    with pytest.raises(ValueError, match="class_names must have num_classes=3"):
        plot_segmentation(rgb, masks, class_names=["a"])
