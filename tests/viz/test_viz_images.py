"""plot_images, plot_filters, plot_feature_maps: axes counts, the pixels shown, PNGs, errors."""

from collections import OrderedDict

import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from cnnjax.viz import plot_feature_maps, plot_filters, plot_images

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _shown(ax) -> np.ndarray:
    (image,) = ax.get_images()
    return np.asarray(image.get_array())


def test_plot_images_one_axes_per_image_with_its_pixels(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((5, 7, 9))
    path = tmp_path / "sub" / "grid.png"
    fig = plot_images(images, titles=list("abcde"), ncols=2, path=path)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 5
    for i, ax in enumerate(fig.axes):
        np.testing.assert_array_equal(_shown(ax), images[i])
        assert ax.get_title() == "abcde"[i]
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_plot_images_annotates_every_cell_with_its_value():
    x = np.arange(6).reshape(2, 3)
    fig = plot_images(x, annotate=True)
    (ax,) = fig.axes
    texts = sorted(int(t.get_text()) for t in ax.texts)
    assert texts == list(range(6))


def test_plot_images_accepts_rgb_and_single_channel():
    rgb = np.random.default_rng(1).random((2, 4, 4, 3))
    assert _shown(plot_images(rgb).axes[1]).shape == (4, 4, 3)
    one = np.zeros((3, 4, 4, 1))
    assert len(plot_images(one).axes) == 3


@pytest.mark.parametrize("shape", [(4,), (1, 2, 3, 4, 5), (2, 4, 4, 2)])
def test_plot_images_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="images"):
        plot_images(np.zeros(shape))


def test_plot_images_rejects_wrong_number_of_titles():
    with pytest.raises(ValueError, match="titles"):
        plot_images(np.zeros((2, 3, 3)), titles=["only one"])


def test_plot_filters_grid_shows_each_output_channel(tmp_path):
    kernel = np.random.default_rng(2).normal(size=(3, 3, 2, 10))
    fig = plot_filters(jnp.asarray(kernel), in_channel=1, ncols=4, path=tmp_path / "f.png")
    assert len(fig.axes) == 10
    bound = np.abs(kernel[:, :, 1, :]).max()
    for i, ax in enumerate(fig.axes):
        np.testing.assert_allclose(_shown(ax), kernel[:, :, 1, i], rtol=1e-6)
        (image,) = ax.get_images()
        np.testing.assert_allclose(image.get_clim(), (-bound, bound), rtol=1e-6)
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_plot_filters_rgb_is_min_max_scaled_per_filter():
    kernel = np.random.default_rng(3).normal(size=(5, 5, 3, 4))
    fig = plot_filters(kernel)
    for i, ax in enumerate(fig.axes):
        f = kernel[..., i]
        np.testing.assert_allclose(_shown(ax), (f - f.min()) / (f.max() - f.min()), rtol=1e-6)


def test_plot_filters_caps_the_number_drawn_and_takes_a_single_filter():
    assert len(plot_filters(np.ones((3, 3, 1, 100)), max_filters=12).axes) == 12
    single = np.array([[1.0, 0, -1]] * 3)
    (ax,) = plot_filters(single).axes
    np.testing.assert_array_equal(_shown(ax), single)


@pytest.mark.parametrize("shape", [(3,), (3, 3, 8), (3, 3, 3, 1, 8)])
def test_plot_filters_rejects_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"kernel must have shape .*got ndim"):
        plot_filters(np.zeros(shape))


def test_plot_filters_rejects_bad_in_channel():
    with pytest.raises(ValueError, match="in_channel"):
        plot_filters(np.zeros((3, 3, 2, 4)), in_channel=2)


def test_plot_feature_maps_picks_layer_and_example(tmp_path):
    rng = np.random.default_rng(4)
    features = OrderedDict(conv1=rng.random((3, 8, 8, 6)), conv2=rng.random((3, 4, 4, 20)))
    fig = plot_feature_maps(features, "conv2", index=2, max_channels=16, path=tmp_path / "m.png")
    assert len(fig.axes) == 16
    for c, ax in enumerate(fig.axes):
        np.testing.assert_array_equal(_shown(ax), features["conv2"][2, :, :, c])
    assert "conv2" in fig.get_suptitle()
    first = plot_feature_maps(features)
    assert len(first.axes) == 6
    assert (tmp_path / "m.png").read_bytes()[:8] == PNG_MAGIC


def test_plot_feature_maps_accepts_one_array_without_batch():
    fmap = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    fig = plot_feature_maps(fmap)
    assert len(fig.axes) == 4
    np.testing.assert_array_equal(_shown(fig.axes[3]), fmap[..., 3])


def test_plot_feature_maps_errors():
    with pytest.raises(ValueError, match="layer must be one of"):
        plot_feature_maps({"a": np.zeros((1, 2, 2, 1))}, "b")
    with pytest.raises(ValueError, match=r"features\['dense'\] must have shape"):
        plot_feature_maps({"dense": np.zeros((2, 10))}, "dense")
    with pytest.raises(ValueError, match="index"):
        plot_feature_maps(np.zeros((2, 3, 3, 1)), index=5)
    with pytest.raises(TypeError, match="features must be an array"):
        plot_feature_maps("conv1")


def test_plot_images_takes_a_list_of_different_sizes():
    image, kernel = np.arange(36.0).reshape(6, 6), np.ones((3, 3))
    fig = plot_images([image, kernel, [[1.0, 2.0]]], annotate=True)
    assert [(_shown(ax).shape) for ax in fig.axes] == [(6, 6), (3, 3), (1, 2)]
    # a nested list of numbers is one image, not a list of images
    (ax,) = plot_images([[1.0, 2.0], [3.0, 4.0]]).axes
    np.testing.assert_array_equal(_shown(ax), [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match=r"images\[1\] must have shape"):
        plot_images([image, np.ones((2, 2, 2, 2))])
