"""The transfer experiment's configs validate, the probe trains only the head, and the curve
plot reads val rows from metrics.jsonl files."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from cnnjax import models
from cnnjax.train.optim import freeze_labels
from cnnjax.train.runner.config import resolve_config, validate_config
from experiments import transfer_plot
from experiments.configs import transfer_fashion_mnist


@pytest.mark.parametrize("arg", ["scratch", "probe", "finetune", "finetune_lr01"])
def test_transfer_configs_validate(arg):
    c = resolve_config(transfer_fashion_mnist.get_config(arg))
    validate_config(c, num_devices=1)  # as measured (batch 50 does not split over 8 devices)
    assert c.dataset_options.num_labelled == 1000 and c.dataset == "fashion_mnist"


def test_probe_freezes_all_but_the_head():
    c = transfer_fashion_mnist.get_config("probe")
    params = jax.eval_shape(models.create(c.model).init, jax.random.key(0),
                            jnp.zeros((1, 28, 28, 1)))["params"]
    labels = jax.tree_util.tree_leaves_with_path(freeze_labels(params, c.optimizer.freeze))
    trainable = {path[0].key for path, label in labels if label == "trainable"}
    assert trainable == {"logits"}


def test_transfer_plot_reads_val_rows(tmp_path: Path, capsys):
    for name, accs in (("a", [0.5, 0.7]), ("b", [0.6, 0.8])):
        (tmp_path / name).mkdir()
        rows = [{"split": "train", "step": 1, "accuracy": 0.1}]
        rows += [{"split": "val", "step": 10 * (i + 1), "accuracy": a} for i, a in enumerate(accs)]
        (tmp_path / name / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    assert transfer_plot.val_curve(tmp_path / "b") == ([10, 20], [0.6, 0.8])
    out = tmp_path / "plot.png"
    assert transfer_plot.main([str(tmp_path / "a"), str(tmp_path / "b"), f"--out={out}"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "empty").mkdir()
    assert transfer_plot.main([str(tmp_path / "empty"), f"--out={out}"]) == 2
    assert "no validation 'accuracy'" in capsys.readouterr().err
