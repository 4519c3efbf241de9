"""plot_training_curves and load_metrics: the lines carry exactly the jsonl values."""

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from cnnjax.viz import final_value, load_metrics, plot_training_curves


def _write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _records(scale):
    train = [{"step": s, "epoch": s // 4, "split": "train", "loss": scale / (s + 1),
              "accuracy": 0.1 * s} for s in range(1, 9)]
    val = [{"step": s, "epoch": s // 4, "split": "val", "loss": scale * 1.5 / s,
            "accuracy": 0.09 * s} for s in (4, 8)]
    # interleaved as a trainer writes them
    return train[:4] + val[:1] + train[4:] + val[1:]


def test_lines_carry_the_jsonl_values_of_every_run_and_split(tmp_path):
    a = _write(tmp_path / "run_a" / "metrics.jsonl", _records(1.0))
    b = _write(tmp_path / "run_b" / "metrics.jsonl", _records(2.0))
    out = tmp_path / "curves.png"
    fig = plot_training_curves([a, b], metrics=["loss", "accuracy"], path=out)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    loss_ax = fig.axes[0]
    lines = {line.get_label(): line for line in loss_ax.get_lines()}
    assert set(lines) == {"run_a (train)", "run_a (val)", "run_b (train)", "run_b (val)"}
    np.testing.assert_allclose(lines["run_b (train)"].get_xdata(), np.arange(1, 9))
    np.testing.assert_allclose(lines["run_b (train)"].get_ydata(), 2.0 / np.arange(2, 10))
    np.testing.assert_allclose(lines["run_a (val)"].get_xdata(), [4, 8])
    np.testing.assert_allclose(lines["run_a (val)"].get_ydata(), [1.5 / 4, 1.5 / 8])
    assert lines["run_a (val)"].get_linestyle() == "--"
    assert lines["run_a (train)"].get_color() != lines["run_b (train)"].get_color()
    assert out.stat().st_size > 1000


def test_records_directory_mapping_labels_and_epoch_axis(tmp_path):
    _write(tmp_path / "w" / "metrics.jsonl", _records(1.0))
    fig = plot_training_curves({"mine": tmp_path / "w"}, "accuracy", x="epoch", splits=["val"])
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    assert line.get_label() == "val"
    np.testing.assert_allclose(line.get_xdata(), [1, 2])
    np.testing.assert_allclose(line.get_ydata(), [0.36, 0.72])
    assert ax.get_xlabel() == "epoch"


def test_default_metrics_are_the_numeric_keys(tmp_path):
    records = [{"step": 1, "split": "train", "loss": 1.0, "lr": 0.1, "note": "x"}]
    fig = plot_training_curves(records)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "lr"]


def test_load_metrics_skips_blank_lines_and_names_bad_ones(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n\n{"step": 2, "loss": 1.0}\n')
    assert load_metrics(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]
    path.write_text('{"step": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        load_metrics(path)


def test_final_value():
    recs = _records(1.0)
    assert final_value(recs, "loss", "val") == pytest.approx(1.5 / 8)
    assert np.isnan(final_value(recs, "loss", "test"))


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="'missing' has no numeric value"):
        plot_training_curves(_records(1.0), "missing")
    with pytest.raises(TypeError, match="runs"):
        plot_training_curves(42)
    with pytest.raises(ValueError, match="labels"):
        plot_training_curves([_records(1.0), _records(2.0)], "loss", labels=["one"])
    with pytest.raises(FileNotFoundError):
        plot_training_curves(tmp_path / "nope.jsonl")
