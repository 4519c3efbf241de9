"""Loop failures that must be clear and early, evaluation of a workdir, and restore on 1 device."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from loop_helpers import run_driver, tiny_config

from cnnjax.checkpoint import WorkdirNotWritableError
from cnnjax.train.runner.loop import train_and_evaluate
from cnnjax.train.runner.reporting import read_metrics


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_unwritable_workdir_fails_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    start = time.perf_counter()
    with pytest.raises(WorkdirNotWritableError, match="is not writable"):
        train_and_evaluate(tiny_config(), blocker / "workdir")
    assert time.perf_counter() - start < 10  # no compilation, no training happened


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"model": "resnet_nope"}, "config.model='resnet_nope': unknown model"),
        ({"dataset": "imagenet_nope"}, "config.dataset='imagenet_nope': unknown data set"),
        ({"optimizer": {"name": "adamax"}}, "config.optimizer.name must be one of .*'adamax'"),
        ({"parallel": {"strategy": "vmap"}}, "config.parallel.strategy must be one of .*'vmap'"),
        ({"batch_size": 12}, "config.batch_size=12 is not divisible by the 8 devices"),
        ({"precision": "float16"}, "config.precision must be one of .*; got 'float16'"),
        ({"optimiser": {}}, "unknown config field 'optimiser'"),
        ({"num_epochs": None, "num_train_steps": None}, "set config.num_epochs or"),
    ],
)
def test_bad_config_fails_before_anything(tmp_path, override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train_and_evaluate(tiny_config(**override), tmp_path / "w")
    assert not (tmp_path / "w").exists()  # nothing written either


def test_other_architecture_names_mismatching_parameters(reference_run, tmp_path):
    ref_dir, _ = reference_run
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir / "checkpoints", workdir / "checkpoints")
    proc = run_driver(workdir, tiny_config(model_options={"width": 4}))
    assert proc.returncode != 0
    assert "StructureMismatchError" in proc.stderr
    assert "does not match the model" in proc.stderr
    # parameter paths with both shapes, e.g. params/.../kernel: checkpoint (3, 3, 3, 8) ...
    assert "params/" in proc.stderr and "checkpoint (3, 3, 3, 8) float32, model (3, 3, 3, 4)" \
        in proc.stderr


def test_nan_guard_stops_with_the_step_and_keeps_the_last_good_state(tmp_path):
    workdir = tmp_path / "run"
    config = tiny_config(optimizer={"name": "sgd", "learning_rate": 1e30},
                         checkpoint_every_steps=0, eval_every_steps=0)
    proc = run_driver(workdir, config)
    assert proc.returncode != 0
    assert "NonFiniteError: non-finite loss or gradients at step" in proc.stderr
    bad = int(proc.stderr.split("non-finite loss or gradients at step ")[1].split()[0])
    steps = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert steps == [bad - 1]  # the last good state, saved although no checkpoint was due


def test_evaluate_best_matches_logged_validation_and_restores_on_one_device(reference_run):
    ref_dir, summary = reference_run
    best = summary["best_step"]
    logged = next(r for r in read_metrics(ref_dir) if r["split"] == "val" and r["step"] == best)
    # 8 devices saved it; evaluate on 1 device (restore onto another device count)
    proc = run_driver(ref_dir, tiny_config(), "--evaluate", "best", "--split", "val", devices=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc)
    assert result["step"] == best and result["split"] == "val"
    assert result["accuracy"] == logged["accuracy"]  # counts: exact
    assert result["loss"] == pytest.approx(logged["loss"], rel=1e-5)
    assert not (ref_dir / "checkpoints" / "corrupt_checkpoints").exists()
