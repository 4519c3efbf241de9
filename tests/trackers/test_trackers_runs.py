"""Training runs with MLflow (a real local tracking server, sqlite backend) and W&B (offline):
N steps, then resumed to 2N; each tracker holds ONE run with the metrics at every logged step
once, the config and metadata as params, config.json and the plots as files."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
from tracker_servers import mlflow_server, wandb_offline_history

from cnnjax.train.runner.components import build
from cnnjax.train.runner.config import prepare_config
from cnnjax.train.runner.loop import train
from cnnjax.viz.run_plots import write_plots

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAS_WANDB = importlib.util.find_spec("wandb") is not None
N = 4


def tiny(total: int, trackers: tuple[str, ...], options: dict) -> dict:
    """resnet_tiny on 16x16 shapes, batch 16: logs and validates every 2 steps."""
    return {"seed": 1, "model": "resnet_tiny", "dataset": "shapes",
            "dataset_options": {"num_examples": 64, "image_size": 16}, "batch_size": 16,
            "num_epochs": None, "num_train_steps": total, "log_every_steps": 2,
            "eval_every_steps": 2, "checkpoint_every_steps": 2, "keep_best": 0,
            "test_split": None, "compilation_cache": False,
            "trackers": trackers, "tracker_options": options}


def train_with_plots(config: dict, workdir) -> dict:
    c = build(prepare_config(config))
    return train(c, workdir, on_completed=lambda state: write_plots(c, state, workdir, "val"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local MLflow tracking server (sqlite backend) for this module; None without mlflow."""
    if not HAS_MLFLOW:
        yield None
        return
    root = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(root) as uri:
        yield uri


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory, server):
    """(workdir, what MLflow holds or None): N steps, then the same workdir resumed to 2N."""
    if not (HAS_MLFLOW or HAS_WANDB):
        pytest.skip("neither mlflow nor wandb is installed (pip install 'cnnjax[trackers]')")
    workdir = tmp_path_factory.mktemp("trackers") / "run"
    trackers = ("jsonl", "tensorboard") + ("mlflow",) * HAS_MLFLOW + ("wandb",) * HAS_WANDB
    options = {"mlflow": {"tracking_uri": server, "experiment_name": "trackers25"},
               "wandb": {"project": "cnnjax-tests"}}
    saved = {k: os.environ.get(k) for k in ("WANDB_MODE", "WANDB_SILENT")}
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true")
    try:
        for total in (N, 2 * N):
            assert train_with_plots(tiny(total, trackers, options),
                                    workdir)["status"] == "completed"
        yield workdir, _mlflow_view(server) if server else None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _mlflow_view(uri: str) -> dict:
    """What the server holds for experiment trackers25: runs, histories, params, artifacts."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("trackers25")
    runs = client.search_runs([experiment.experiment_id])
    view = {"run_ids": [r.info.run_id for r in runs]}
    run = runs[0]
    view["status"] = run.info.status
    view["params"] = run.data.params
    view["tags"] = run.data.tags
    view["history"] = {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
                       for k in run.data.metrics}
    view["artifacts"] = sorted(
        [f.path for f in client.list_artifacts(run.info.run_id)]
        + [f.path for f in client.list_artifacts(run.info.run_id, "plots")])
    return view


def _jsonl(workdir, split, name):
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r[name]) for r in rows if r["split"] == split and r.get(name) is not None]


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed")
def test_mlflow_holds_one_run_with_every_step_once(resumed_run):
    workdir, view = resumed_run
    saved = json.loads((workdir / "tracker_runs.json").read_text())["mlflow"]
    assert view["run_ids"] == [saved["run_id"]]  # the resume continued the same run
    assert view["status"] == "FINISHED"
    history = view["history"]
    for split, name in (("train", "loss"), ("train", "learning_rate"), ("val", "accuracy")):
        points = history[f"{split}/{name}"]
        assert [s for s, _ in points] == [2, 4, 6, 8], (split, name, points)  # no duplicates
        # the values are those of metrics.jsonl, exactly
        assert points == _jsonl(workdir, split, name)
    params = view["params"]
    assert params["seed"] == "1" and params["model"] == "resnet_tiny"
    assert params["optimizer.name"] == "adamw" and params["run.seed"] == "1"
    assert "run.versions.jax" in params and params["num_train_steps"] == str(N)
    assert view["tags"]["changed_on_resume.num_train_steps"] == str(2 * N)
    assert "config.json" in view["artifacts"]
    assert "plots/training_curves.png" in view["artifacts"]
    assert "plots/confusion_matrix_val.png" in view["artifacts"]


@pytest.mark.skipif(not HAS_WANDB, reason="wandb is not installed")
def test_wandb_offline_run_gets_the_metrics_and_resumes_the_same_id(resumed_run):
    workdir, _ = resumed_run
    run_id = json.loads((workdir / "tracker_runs.json").read_text())["wandb"]["run_id"]
    folders = sorted((workdir / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(f.name.endswith(f"-{run_id}") for f in folders)
    rows, files, config = [], [], []
    for folder in folders:
        r, f, c = wandb_offline_history(folder / f"run-{run_id}.wandb")
        rows, files, config = rows + r, files + f, config + c
    loss = [(r["_step"], r["train/loss"]) for r in rows if "train/loss" in r]
    assert loss == _jsonl(workdir, "train", "loss")
    assert [s for s, _ in loss] == [2, 4, 6, 8]
    val = [(r["_step"], r["val/accuracy"]) for r in rows if "val/accuracy" in r]
    assert [s for s, _ in val] == [2, 4, 6, 8]
    assert {"config.json", "training_curves.png"} <= set(files)
    assert {"seed", "optimizer.learning_rate", "run.versions.jax"} <= set(config)


def test_jsonl_and_tensorboard_are_unchanged_by_the_trackers(resumed_run):
    workdir, _ = resumed_run
    assert [s for s, _ in _jsonl(workdir, "train", "loss")] == [2, 4, 6, 8]
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed")
def test_mlflow_resume_skips_the_points_logged_after_the_checkpoint(server, tmp_path):
    """A run killed after logging steps 4-5 but checkpointed at 3 logs 4, 5 again on resume:
    the MLflow run keeps one point per step (MLflow's history is append-only)."""
    from mlflow import MlflowClient

    from cnnjax.train.runner.trackers.base import TrackerContext
    from cnnjax.train.runner.trackers.mlflow_writer import MlflowWriter

    options = {"tracking_uri": server, "experiment_name": "dedupe"}
    first = MlflowWriter(TrackerContext(tmp_path, None, options, "killed"))
    for step in range(1, 6):
        first.write_scalars(step, {"train/loss": 1.0 / step, "val/accuracy": None})
    # killed here: never closed; the checkpoint it resumes from is step 3
    second = MlflowWriter(TrackerContext(tmp_path, 3, options, "killed"))
    assert second.run_id == first.run_id
    for step in range(4, 8):
        second.write_scalars(step, {"train/loss": 1.0 / step})
    second.close()
    client = MlflowClient(server)
    (run,) = client.search_runs([client.get_experiment_by_name("dedupe").experiment_id])
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(s, 1.0 / s) for s in range(1, 8)]
    assert run.info.status == "FINISHED"
