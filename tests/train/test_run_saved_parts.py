"""What a run saves besides its weights: `config.imports` (a user's own code, imported before
anything is built) and `config.dataset_info` (classes, shape, normalisation), and building a
run from them without its data."""

from __future__ import annotations

import json

import pytest

from cnnjax.data import SOURCES, get_source
from cnnjax.train.runner import user_code
from cnnjax.train.runner.components import build
from cnnjax.train.runner.config import prepare_config, resolve_config
from cnnjax.train.runner.dataset_info import check_matches, info_from_config, with_info

PLUGIN = '''
from cnnjax.data import register_source
from cnnjax.data.shapes import ShapesSource

COUNT = globals().get("COUNT", 0) + 1


@register_source("plugin_shapes")
def plugin_shapes(split, data_dir, **options):
    return ShapesSource(split, task="classification", **options)
'''


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "my plugin.py"
    path.write_text(PLUGIN)
    yield path
    SOURCES._entries.pop("plugin_shapes", None)
    user_code._loaded.pop(str(path.resolve()), None)


def test_a_file_in_imports_registers_before_the_names_are_checked(plugin, monkeypatch):
    monkeypatch.chdir(plugin.parent)
    config = prepare_config({"imports": [plugin.name], "dataset": "plugin_shapes",
                             "dataset_options": {"num_examples": 8, "image_size": 8}})
    assert config.imports == (str(plugin.resolve()),)  # saved absolute
    assert "plugin_shapes" in SOURCES
    again = resolve_config(json.loads(config.to_json()))  # a later command: no re-execution
    assert again.imports == config.imports
    plugin.write_text(PLUGIN + "\n# changed\n")  # a changed file runs again: no "taken" error
    resolve_config({"imports": [str(plugin)]})


def test_import_errors_name_the_entry(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.py"):
        resolve_config({"imports": [str(tmp_path / "nothere.py")]})
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        resolve_config({"imports": ["no_such_module_xyz"]})
    with pytest.raises(ValueError, match=r"config\.imports entry 3"):
        resolve_config({"imports": [3]})
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_dependency_xyz\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):  # user's own bug
        resolve_config({"imports": [str(broken)]})


def test_unknown_data_set_points_at_imports():
    with pytest.raises(ValueError, match=r"config\.imports"):
        prepare_config({"dataset": "myshapes"})


SMALL = {"dataset_options": {"num_examples": 32, "image_size": 8}, "batch_size": 8,
         "model": "cnn2d", "model_options": {"widths": [4, 4, 4]}, "num_train_steps": 2}


def test_build_fills_dataset_info_and_a_model_builds_from_it_alone():
    c = build(prepare_config(SMALL))
    info = info_from_config(c.config)
    assert info == c.info == c.train_source.info
    assert c.config.dataset_info.train_records == len(c.train_source)
    saved = prepare_config(json.loads(c.config.to_json()))  # as config.json gives it back
    offline = build(saved, open_data=False)
    assert offline.train_source is None and offline.info == c.info
    assert offline.steps_per_epoch == c.steps_per_epoch
    assert repr(offline.model) == repr(c.model)


def test_a_stated_dataset_info_wins_but_must_fit_the_data():
    source = get_source("shapes", "train", num_examples=32, image_size=8)
    pinned = with_info(prepare_config(SMALL), source.info, 99)
    pinned.dataset_info.mean = [0.5, 0.5, 0.5]
    c = build(prepare_config(pinned))
    assert c.info.mean == (0.5, 0.5, 0.5) and c.config.dataset_info.train_records == 99
    other = get_source("shapes", "train", num_examples=32, image_size=10).info
    with pytest.raises(ValueError, match=r"image_shape=\(10, 10, 3\).*trained"):
        check_matches(source.info, other)
    with pytest.raises(ValueError, match="dataset_info lacks"):
        prepare_config({**SMALL, "dataset_info": {"name": "shapes"}})


def test_without_data_nor_saved_size_the_warm_up_is_not_clipped(caplog):
    config = prepare_config({**SMALL, "num_train_steps": None, "num_epochs": 2,
                             "schedule": {"name": "warmup_cosine", "warmup_steps": 50}})
    with caplog.at_level("WARNING", logger="cnnjax.train"):
        c = build(config, open_data=False)  # no dataset_info: steps per epoch unknown
    assert c.train_source is None and "warmup_steps" not in caplog.text
