"""Which config eval/predict/export run with: the workdir's config.json, the command line's
--config.FIELD overrides on top (tuple fields included, though JSON stores lists), unknown
fields refused, and the fields in which another config differs."""

from __future__ import annotations

import pytest

from cnnjax.train.runner.config import prepare_config, resolve_config
from experiments.run_config import differing_fields, saved_config


@pytest.fixture
def workdir(tmp_path):
    config = prepare_config({"model": "cnn2d", "model_options": {"widths": [4, 8, 8]},
                             "init_exclude": ["a/*"], "batch_size": 16})
    (tmp_path / "config.json").write_text(config.to_json())
    return tmp_path


def test_overrides_apply_on_top_of_config_json(workdir):
    argv = ["prog", f"--workdir={workdir}", "--mode=eval", "--config=ignored.py",
            "--config.model_options.widths=(2,4,4)", "--config.init_exclude=('b/*',)",
            "--config.eval_batch_size=8"]
    config = saved_config(workdir, argv)
    assert config.model_options.widths == (2, 4, 4) and config.init_exclude == ("b/*",)
    assert config.eval_batch_size == 8 and config.batch_size == 16  # the rest as saved
    assert saved_config(workdir, ["prog"]).model_options.widths == (4, 8, 8)


def test_an_unknown_override_is_refused(workdir):
    with pytest.raises(ValueError, match="unknown config field 'batch_sise'"):
        saved_config(workdir, ["prog", "--config.batch_sise=3"])


def test_differing_fields_name_what_another_config_changes(workdir):
    saved = saved_config(workdir, ["prog"])
    other = resolve_config({"model": "cnn2d", "model_options": {"widths": (4, 8, 8)},
                            "init_exclude": ("a/*",), "batch_size": 32, "seed": 1})
    assert differing_fields(other, saved) == ["batch_size", "seed"]
    assert differing_fields(saved, saved) == []
