"""Your own images and your own code, with the README commands (`experiments.classify`):
a run on a folder of PNGs through a data source and a model registered in a user's file
(`config.imports`), then eval / predict / export starting from the run's config.json, with
`--config.FIELD` overrides, a warning for a different `--config` file, and predict / export
from a copy of the workdir after the image folder is gone."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnnjax.data import SOURCES
from cnnjax.data.folder_common import ENV_CACHE_DIR
from cnnjax.models.registry import MODELS
from cnnjax.train.optimizers import OPTIMIZER_REGISTRY
from cnnjax.train.runner import user_code
from cnnjax.train.runner.config import prepare_config
from cnnjax.train.runner.dataset_info import info_from_config
from cnnjax.train.tasks import CLASSIFICATION_LOSS_REGISTRY, make_task
from experiments import classify

CLASSES = ("circle", "square", "triangle")

PLUGIN = '''
import optax

from cnnjax import models
from cnnjax.train.optimizers import register_optimizer
from cnnjax.train.tasks import register_classification_loss
from cnnjax.data import register_source
from cnnjax.data.image_folder import image_folder_source


@register_source("my_pngs")
def my_pngs(split, data_dir, **options):
    return image_folder_source(split, data_dir, image_size=12, **options)


@register_optimizer("my_sgd")
def my_sgd(cfg, schedule):
    return [optax.sgd(schedule, momentum=0.9)]


@register_classification_loss("logit_penalty")
def logit_penalty(logits, targets, valid, weight=1.0):
    per_example = weight * (logits ** 2).mean(-1)
    return (valid * per_example).sum(), valid.sum()


@models.register("my_cnn")
def my_cnn(num_classes=10, **options):
    return models.create("cnn2d", num_classes=num_classes, **options)
'''

CONFIG = '''
from cnnjax.train.runner.config import default_config


def get_config():
    c = default_config()
    c.imports = ({plugin!r},)
    c.dataset = "my_pngs"
    c.model = "my_cnn"
    c.model_options.widths = (8, 8, 8)
    c.optimizer.name = "my_sgd"
    c.task.classification_loss = "ce+logit_penalty(weight=0.01)"
    c.optimizer.learning_rate = 0.05
    c.batch_size = 8
    c.num_train_steps = 4
    c.num_epochs = None
    c.eval_every_steps = 2
    c.checkpoint_every_steps = 2
    c.log_every_steps = 2
    c.async_checkpointing = False
    return c
'''


def _pngs(root: Path, per_class: int) -> Path:
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            x = np.full((16, 16, 3), (i * 9) % 50, np.uint8)
            x[..., label] = 220  # the class is the bright channel
            Image.fromarray(x).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    """The folder statistics are cached in a temporary folder, not in ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_CACHE_DIR, str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(workdir, image folder, config file) of a 4-step run trained with an override that
    the config file does not state (model_options.widths)."""
    base = tmp_path_factory.mktemp("own")
    (base / "plugin.py").write_text(PLUGIN)
    config = base / "my_config.py"
    config.write_text(CONFIG.format(plugin=str(base / "plugin.py")))
    images = _pngs(base / "images", per_class=10)
    workdir = base / "run"
    command = ["prog", f"--workdir={workdir}", f"--config={config}",
               f"--config.data_dir={images}", "--config.model_options.widths=(4,8,8)",
               "--noplots"]
    assert classify.main([*command, "--config.num_train_steps=2"]) == 0
    _forget_user_code()  # a new process resumes: the config file's imports register again
    assert classify.main(command) == 0
    return workdir, images, config


def _forget_user_code() -> None:
    """What a new process starts with: no registration from the plugin, no file loaded."""
    SOURCES._entries.pop("my_pngs", None)
    MODELS._entries.pop("my_cnn", None)
    OPTIMIZER_REGISTRY._entries.pop("my_sgd", None)
    CLASSIFICATION_LOSS_REGISTRY._entries.pop("logit_penalty", None)
    user_code._loaded.clear()


def test_the_run_resumed_with_its_own_code(trained):
    workdir, _, _ = trained
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [2, 4]
    _forget_user_code()  # the saved config alone brings the run's own loss term back
    config = prepare_config(json.loads((workdir / "config.json").read_text()))
    task = make_task(config.task, info_from_config(config))
    logits = jnp.ones((2, 3))
    terms = task.loss_terms(logits, {"label": jnp.zeros(2, jnp.int32)})
    assert sorted(terms) == ["ce", "logit_penalty"]
    np.testing.assert_allclose(terms["logit_penalty"][0] / terms["logit_penalty"][1], 0.01)
    runs = json.loads((workdir / "run_metadata.json").read_text())["runs"]
    assert len(runs) == 2


def test_the_run_saves_its_imports_and_what_it_learned_of_the_data(trained):
    workdir, images, _ = trained
    config = json.loads((workdir / "config.json").read_text())
    assert config["imports"] == [str(images.parent / "plugin.py")]
    info = config["dataset_info"]
    assert info["class_names"] == list(CLASSES) and info["image_shape"] == [12, 12, 3]
    assert info["train_records"] == 24 and len(info["mean"]) == 3
    assert config["model_options"]["widths"] == [4, 8, 8]


def test_eval_starts_from_config_json_with_overrides(trained, capfd):
    workdir, _, _ = trained
    _forget_user_code()
    assert classify.main(["prog", f"--workdir={workdir}", "--mode=eval", "--noplots",
                          "--config.test_split=val", "--config.eval_batch_size=16"]) == 0
    result = json.loads((workdir / "eval_val_best.json").read_text())  # the override's split
    assert result["split"] == "val" and 0 <= result["accuracy"] <= 1
    assert "my_pngs" in SOURCES and "my_cnn" in MODELS  # re-registered by config.imports
    assert "warning" not in capfd.readouterr().err


def test_predict_and_export_need_no_data_and_warn_about_another_config(trained, tmp_path,
                                                                        capfd):
    workdir, images, config = trained
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in CLASSES:
        shutil.copy(images / name / "0.png", inputs / f"{name}.png")
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(workdir, copy)
    moved = tmp_path / "moved"
    images.rename(moved)  # the training data is gone
    try:
        _forget_user_code()
        assert classify.main(["prog", f"--workdir={copy}", "--mode=predict",
                              f"--input={inputs}", f"--config={config}"]) == 0
        err = capfd.readouterr().err
        assert "warning" in err and "model_options.widths" in err and "data_dir" in err
        with (copy / "predictions" / "predictions.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert [r["input"] for r in rows] == [f"{n}.png" for n in CLASSES]
        assert {r["class_name"] for r in rows} <= set(CLASSES)
        assert classify.main(["prog", f"--workdir={copy}", "--mode=export",
                              "--format=stablehlo", f"--output={tmp_path / 'out'}"]) == 0
        exported = json.loads((tmp_path / "out" / "export.json").read_text())
        assert exported["class_names"] == list(CLASSES)
        assert exported["input"]["shape"] == [None, 12, 12, 3]
    finally:
        moved.rename(images)
