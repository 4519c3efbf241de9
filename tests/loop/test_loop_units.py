"""Unit tests of the loop's pieces: metrics file, progress output, config, determinism."""

from __future__ import annotations

import io
import json
import os

import jax
import pytest

from cnnjax.train.determinism import GPU_DETERMINISTIC_FLAG, configure_determinism, step_key
from cnnjax.train.optim import make_optimizer, make_schedule
from cnnjax.train.runner.components import build
from cnnjax.train.runner.config import default_config, resolve_config, validate_config
from cnnjax.train.runner.loop import Intervals, itstime
from cnnjax.train.runner.reporting import (
    MetricsWriter,
    Progress,
    read_metrics,
    truncate_metrics_file,
)


def test_truncate_keeps_steps_up_to_the_restored_one_and_drops_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "split": "train"} for s in (2, 4, 6)] + [{"step": 4, "split": "val"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 8, "spl')
    assert truncate_metrics_file(path, 4) == 2  # step 6 and the torn line
    assert [(r["step"], r["split"]) for r in read_metrics(path)] == [
        (2, "train"), (4, "train"), (4, "val")]
    truncate_metrics_file(path, None)  # a fresh run starts an empty file
    assert read_metrics(path) == []


def test_writer_rows_tensorboard_and_resume(tmp_path):
    with MetricsWriter(tmp_path) as w:
        w.write(1, "train", {"loss": 0.5, "iou/3": float("nan")}, epoch=0.25)
        w.write(2, "train", {"loss": 0.25}, epoch=0.5)
    rows = read_metrics(tmp_path)
    assert rows[0] == {"step": 1, "split": "train", "epoch": 0.25, "loss": 0.5, "iou/3": None}
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    with MetricsWriter(tmp_path, resume_step=1) as w:
        w.write(2, "train", {"loss": 0.125}, epoch=0.5)
    assert [r["loss"] for r in read_metrics(tmp_path)] == [0.5, 0.125]


def test_progress_plain_lines_when_not_a_terminal():
    out = io.StringIO()  # not a tty
    with Progress(100, 20, stream=out) as p:
        p.advance(30)
        assert out.getvalue() == ""  # advancing alone prints nothing
        p.report(40, {"loss": 0.123456, "accuracy": 0.5, "images_per_s": 1234.5,
                      "learning_rate": 0.001})
    line = out.getvalue().strip()
    assert line.startswith("train step 40/100 (40%) loss=0.1235 accuracy=0.5")
    assert "images_per_s=1234" in line and "lr=0.001" in line and "eta " in line


def test_progress_bar_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    with Progress(10, 0, stream=out) as p:
        p.report(5, {"loss": 1.0})
    assert "5/10" in out.getvalue() and "loss=1" in out.getvalue()


def test_config_has_the_issue_fields_and_resolves_overrides():
    c = default_config()
    for name in ("seed", "model", "model_options", "dataset", "dataset_options", "data_dir",
                 "batch_size", "eval_batch_size", "num_epochs", "num_train_steps",
                 "eval_every_steps", "checkpoint_every_steps", "log_every_steps",
                 "keep_checkpoints", "keep_best", "best_metric", "precision", "augment"):
        assert name in c, name
    assert c.parallel.strategy == "jit" and c.optimizer.name and c.schedule.name
    r = resolve_config({"optimizer": {"learning_rate": 0.5}, "model_options": {"width": 4}})
    assert r.optimizer.learning_rate == 0.5 and r.optimizer.name == c.optimizer.name
    assert dict(r.model_options) == {"width": 4}
    with pytest.raises(ValueError, match=r"unknown config field 'optimizer.lr'"):
        resolve_config({"optimizer": {"lr": 0.1}})


def test_validate_config_messages():
    c = default_config()
    c.batch_size = 10
    with pytest.raises(ValueError, match="batch_size=10 is not divisible by the 4 devices"):
        validate_config(c, num_devices=4)
    c = default_config()
    c.model_options = {"no_such_option": 1}
    with pytest.raises(TypeError, match="no_such_option"):
        validate_config(c)


def test_make_schedule_reads_the_run_configs_groups_like_the_flat_config():
    c = default_config()
    c.optimizer.learning_rate = 0.5
    c.schedule.name = "warmup_cosine"
    c.schedule.warmup_steps = 5
    c.schedule.final_learning_rate = 0.1
    flat = {"name": "adamw", "learning_rate": 0.5, "schedule": "warmup_cosine",
            "warmup_steps": 5, "final_learning_rate": 0.1}
    from_run, from_flat = make_schedule(c, 20), make_schedule(flat, 20)
    for step in (0, 3, 5, 12, 19):
        assert float(from_run(step)) == float(from_flat(step))
    assert float(from_run(3)) == pytest.approx(0.5 * 3 / 5)  # linear warm-up
    make_optimizer(c, 20)  # None fields (momentum, b1, ...) take the optimizer's defaults


def test_a_warmup_longer_than_the_run_is_clipped_with_a_warning(caplog):
    c = default_config()  # shapes: 64-example batches, warm-up cosine of 50 updates below
    c.dataset_options = {"num_examples": 64, "image_size": 16}
    c.batch_size = 16
    c.schedule.name = "warmup_cosine"
    c.schedule.warmup_steps = 50
    c.num_train_steps = 12
    validate_config(c)
    with caplog.at_level("WARNING", logger="cnnjax.train"):
        parts = build(c)
    assert "warmup_steps=50" in caplog.text and "using warmup_steps=11" in caplog.text
    assert parts.config.schedule.warmup_steps == 50  # the run's config is kept as given
    lr = c.optimizer.learning_rate
    assert float(parts.schedule(10)) == pytest.approx(lr * 10 / 11)  # warm-up of 11 updates
    assert float(parts.schedule(11)) == pytest.approx(lr)  # then the cosine from its peak


def test_itstime_and_intervals():
    assert [s for s in range(1, 11) if itstime(s, 4, 10)] == [4, 8, 10]
    assert [s for s in range(1, 11) if itstime(s, 0, 10)] == [10]
    c = default_config()
    c.dataset_options = {"num_examples": 64, "image_size": 16}
    c.batch_size = 16
    parts = build(c)  # 4 steps per epoch
    assert Intervals.of(parts) == Intervals(log=50, eval=4, checkpoint=4)
    c.eval_every_steps, c.checkpoint_every_steps = 3, 0
    assert Intervals.of(build(c)) == Intervals(log=50, eval=3, checkpoint=0)


def test_determinism_settings():
    settings = configure_determinism()
    assert jax.config.jax_threefry_partitionable is True
    assert settings["jax_threefry_partitionable"] is True
    # the backend already started in this test process: the GPU flag is only added before that
    assert (GPU_DETERMINISTIC_FLAG in os.environ.get("XLA_FLAGS", "")) == settings[
        "gpu_deterministic_ops"]
    key = jax.random.key(0)
    assert jax.random.key_data(step_key(key, 3)).tolist() == jax.random.key_data(
        jax.random.fold_in(key, 3)).tolist()
