"""The tracker interface without training: config checks, row fan-out, process 0 only,
params and artifacts, a tracker of one's own, the run-id file."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from cnnjax.train.runner import trackers
from cnnjax.train.runner.config import default_config, resolve_config, validate_config
from cnnjax.train.runner.trackers import (
    MetricsWriter,
    MetricWriter,
    open_writers,
    read_metrics,
    register_tracker,
    run_artifacts,
    run_params,
)
from cnnjax.train.runner.trackers.registry import TRACKERS
from cnnjax.train.runner.trackers.run_ids import load_run, save_run


class Recorder(MetricWriter):
    """Keeps every call (a tracker of the tests' own)."""

    opened: ClassVar[list[Recorder]] = []

    def __init__(self, ctx=None):
        self.ctx, self.scalars, self.hparams, self.artifacts, self.closed = ctx, [], {}, [], False
        Recorder.opened.append(self)

    def write_scalars(self, step, scalars):
        self.scalars.append((step, dict(scalars)))

    def write_hparams(self, hparams):
        self.hparams.update(hparams)

    def write_artifacts(self, paths):
        self.artifacts += list(paths)

    def close(self):
        self.closed = True


@register_tracker("recorder_for_tests", options=("flavour",))
def _open_recorder(ctx):
    return Recorder(ctx)


def _check(**fields):
    validate_config(resolve_config({"num_train_steps": 2, **fields}), num_devices=1)


def test_default_trackers_and_option_groups():
    c = default_config()
    assert tuple(c.trackers) == ("jsonl", "tensorboard")
    assert set(c.tracker_options.mlflow) == {"tracking_uri", "experiment_name", "run_name"}
    assert set(c.tracker_options.wandb) == {"project", "entity", "name", "mode", "dir"}
    _check(trackers=("jsonl", "mlflow", "wandb"))  # names only: no package needed here


@pytest.mark.parametrize(("fields", "message", "also"), [
    ({"trackers": ("jsonl", "neptune")}, "unknown tracker 'neptune'; expected names from "
                                         "(", "'jsonl', 'mlflow', "),
    ({"trackers": ("tensorboard",)}, "must include 'jsonl'", ""),
    ({"trackers": ("jsonl", "jsonl")}, "names a tracker twice", ""),
    ({"tracker_options": {"mlflow": {"uri": "x"}}},
     "config.tracker_options.mlflow: unknown option(s) ['uri']; mlflow takes ['tracking_uri'",
     ""),
    ({"tracker_options": {"comet": {}}}, "config.tracker_options.comet: unknown tracker",
     "'tensorboard', "),
])
def test_bad_tracker_config_is_refused_with_the_choices(fields, message, also):
    with pytest.raises(ValueError) as e:
        _check(**fields)
    assert message in str(e.value) and also in str(e.value)


def test_a_missing_package_is_named_when_the_writers_open(tmp_path, monkeypatch):
    @register_tracker("needs_a_package_for_tests", package="no_such_package_cnnjax")
    def _open(ctx):
        raise AssertionError("not reached")

    config = resolve_config({"trackers": ("jsonl", "needs_a_package_for_tests")})
    with pytest.raises(ValueError, match=r"package 'no_such_package_cnnjax' is not installed; "
                                         r"pip install 'cnnjax\[trackers\]'"):
        open_writers(config, tmp_path, resume_step=None)


def test_rows_go_to_every_tracker_and_jsonl_keeps_the_row(tmp_path):
    Recorder.opened.clear()
    config = resolve_config({"trackers": ("jsonl", "recorder_for_tests"),
                             "tracker_options": {"recorder_for_tests": {"flavour": "x"}}})
    with open_writers(config, tmp_path, resume_step=None, hparams={"seed": 3}) as w:
        w.write(2, "train", {"loss": 0.5, "iou/1": float("nan"), "ok": True}, epoch=0.5)
        w.write(2, "val", {"accuracy": 0.75})
        w.write_artifacts([tmp_path / "a.png"])
    (rec,) = Recorder.opened
    assert rec.ctx.options == {"flavour": "x"} and rec.ctx.run_name == tmp_path.name
    assert rec.scalars == [(2, {"train/epoch": 0.5, "train/loss": 0.5}),
                           (2, {"val/accuracy": 0.75})]  # NaN (None), bools: not plotted
    assert rec.hparams == {"seed": 3} and rec.artifacts == [tmp_path / "a.png"] and rec.closed
    assert read_metrics(tmp_path) == [
        {"step": 2, "split": "train", "epoch": 0.5, "loss": 0.5, "iou/1": None, "ok": True},
        {"step": 2, "split": "val", "accuracy": 0.75}]
    assert not (tmp_path / "tensorboard").exists()  # not named: not written


def test_only_process_0_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(trackers.jax, "process_index", lambda: 1)
    Recorder.opened.clear()
    config = resolve_config({"trackers": ("jsonl", "recorder_for_tests")})
    with open_writers(config, tmp_path, resume_step=None, hparams={"a": 1}) as w:
        assert w.write(1, "train", {"loss": 1.0})["loss"] == 1.0  # the row, not written
    with MetricsWriter(tmp_path) as w:
        w.write(1, "train", {"loss": 1.0})
    assert Recorder.opened == [] and list(tmp_path.iterdir()) == []


def test_run_params_flatten_config_and_metadata():
    params = run_params({"seed": 3, "optimizer": {"learning_rate": 0.1, "momentum": None},
                         "augment": ("a", "b")},
                        {"seed": 3, "versions": {"jax": "0.10.2"}, "git": {"commit": "abc"},
                         "devices": [{}, {}], "process_count": 1, "host": "ignored"})
    assert params == {"seed": 3, "optimizer.learning_rate": 0.1, "augment": "('a', 'b')",
                      "run.seed": 3, "run.versions.jax": "0.10.2", "run.git.commit": "abc",
                      "run.process_count": 1, "run.device_count": 2}


def test_run_artifacts_are_config_and_plots(tmp_path):
    assert run_artifacts(tmp_path) == []
    for name in ("config.json", "b.png", "a.png", "metrics.jsonl"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in run_artifacts(tmp_path)] == ["config.json", "a.png", "b.png"]


def test_run_ids_round_trip_and_damage(tmp_path):
    assert load_run(tmp_path, "mlflow") is None
    save_run(tmp_path, "mlflow", {"run_id": "r1", "tracking_uri": "u"})
    save_run(tmp_path, "wandb", {"run_id": "w1"})
    assert load_run(tmp_path, "mlflow") == {"run_id": "r1", "tracking_uri": "u"}
    assert json.loads((tmp_path / "tracker_runs.json").read_text())["wandb"]["run_id"] == "w1"
    (tmp_path / "tracker_runs.json").write_text("{torn")
    assert load_run(tmp_path, "wandb") is None  # a damaged file: new runs, not a crash


def test_fresh_start_moves_the_tracker_runs_aside(tmp_path):
    from cnnjax.train.runner.workdir_history import move_history_aside

    save_run(tmp_path, "mlflow", {"run_id": "r1"})
    dest = move_history_aside(tmp_path)
    assert load_run(tmp_path, "mlflow") is None and (dest / "tracker_runs.json").exists()


def test_registry_lists_the_builtin_trackers():
    assert {"jsonl", "tensorboard", "mlflow", "wandb"} <= set(TRACKERS.names())


def test_a_resume_that_changes_trackers_is_not_called_inexact(caplog):
    import io

    from cnnjax.train.runner.reporting import Progress, warn_config_changes

    saved = {"seed": 1, "trackers": ["jsonl"], "tracker_options": {"mlflow": {"run_name": None}}}
    stream = io.StringIO()
    with Progress(4, stream=stream) as progress:
        warn_config_changes(saved, {**saved, "trackers": ["jsonl", "mlflow"],
                                    "tracker_options": {"mlflow": {"run_name": "x"}}}, progress)
        assert stream.getvalue() == ""
        warn_config_changes(saved, {**saved, "seed": 2}, progress)
    assert "seed: 1 -> 2" in stream.getvalue()


class Failing(Recorder):
    def write_scalars(self, step, scalars):
        raise ConnectionError("tracking server gone")


@register_tracker("failing_for_tests")
def _open_failing(ctx):
    return Failing(ctx)


def test_a_tracker_that_fails_mid_run_is_dropped_and_jsonl_goes_on(tmp_path, caplog):
    Recorder.opened.clear()
    config = resolve_config({"trackers": ("jsonl", "failing_for_tests", "recorder_for_tests")})
    with open_writers(config, tmp_path, resume_step=None) as w:
        w.write(1, "train", {"loss": 1.0})
        w.write(2, "train", {"loss": 0.5})
    failing, recorder = Recorder.opened
    assert "tracker 'failing_for_tests' failed in write_row (ConnectionError: tracking " \
           "server gone)" in caplog.text
    assert not failing.closed  # nothing more reached it, close included
    assert [s for s, _ in recorder.scalars] == [1, 2] and recorder.closed
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


@register_tracker("unreachable_for_tests")
def _open_unreachable(ctx):
    raise ConnectionError("no tracking server at http://127.0.0.1:1")


def test_a_tracker_that_cannot_open_stops_the_run_before_training(tmp_path):
    Recorder.opened.clear()
    config = resolve_config({"trackers": ("jsonl", "recorder_for_tests",
                                          "unreachable_for_tests")})
    with pytest.raises(ConnectionError, match="no tracking server"):
        open_writers(config, tmp_path, resume_step=None)
    (recorder,) = Recorder.opened
    assert recorder.closed  # what was opened before it is closed again
