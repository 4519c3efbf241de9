"""receptive_field_table / plot_receptive_field against published receptive fields."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from cnnjax.viz import format_receptive_field_table, plot_receptive_field, receptive_field_table

# AlexNet feature extractor (Krizhevsky et al. 2012): pool5 sees 195 input pixels
# (Araujo, Norris & Sim, "Computing Receptive Fields of CNNs", Distill 2019, table 1).
ALEXNET = [(11, 4), (3, 2), 5, (3, 2), 3, 3, 3, (3, 2)]
ALEXNET_NAMES = ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"]


def _vgg16():
    layers, names = [], []
    for block, convs in enumerate((2, 2, 3, 3, 3), 1):
        for i in range(1, convs + 1):
            layers.append(3)
            names.append(f"conv{block}_{i}")
        layers.append((2, 2))
        names.append(f"pool{block}")
    return layers, names


def test_table_matches_published_alexnet_and_vgg16():
    rows = receptive_field_table(ALEXNET, ALEXNET_NAMES)
    assert [r["layer"] for r in rows] == ALEXNET_NAMES
    assert rows[-1]["rf_size"] == 195
    assert rows[-1]["jump"] == 32  # 4 * 2 * 2 * 2
    layers, names = _vgg16()
    vgg = receptive_field_table(layers, names)
    by_name = {r["layer"]: r for r in vgg}
    assert by_name["conv5_3"]["rf_size"] == 196
    assert by_name["pool5"]["rf_size"] == 212


def test_table_follows_the_closed_form_for_stacked_3x3():
    # n stacked 3x3 stride-1 convs see 2n + 1 pixels (the VGG argument)
    rows = receptive_field_table([3] * 5)
    assert [r["rf_size"] for r in rows] == [3, 5, 7, 9, 11]
    assert {r["jump"] for r in rows} == {1}
    dilated = receptive_field_table([(3, 1, 1), (3, 1, 2), (3, 1, 4)])
    assert [r["rf_size"] for r in dilated] == [3, 7, 15]


def test_format_table_has_a_row_per_layer():
    text = format_receptive_field_table(receptive_field_table(ALEXNET, ALEXNET_NAMES))
    lines = text.splitlines()
    assert len(lines) == 2 + len(ALEXNET)
    assert lines[-1].split() == ["pool5", "3", "2", "1", "195", "32"]


def test_plot_bars_and_diagram_rows(tmp_path):
    fig = plot_receptive_field(ALEXNET, ALEXNET_NAMES, path=tmp_path / "rf.png")
    assert isinstance(fig, Figure)
    diagram, bars = fig.axes
    widths = [p.get_width() for p in bars.patches]
    assert widths == [11, 19, 51, 67, 99, 131, 163, 195]
    # one tick per feeding unit: (195 - rf) / jump + 1 units of each layer
    tick_counts = [len(line.get_xdata()) for line in diagram.get_lines()]
    assert tick_counts == [195, 47, 23, 19, 9, 7, 5, 3, 1]
    np.testing.assert_allclose(diagram.get_lines()[-1].get_xdata(), [97.0])
    assert (tmp_path / "rf.png").stat().st_size > 1000


def test_bad_layers_raise():
    with pytest.raises(TypeError):
        receptive_field_table([(3, 1, 1, 1)])
    with pytest.raises(ValueError, match="names"):
        receptive_field_table([3, 3], ["only"])
    with pytest.raises(ValueError, match="at least one layer"):
        plot_receptive_field([])
